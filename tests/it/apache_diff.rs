//! Differential test against Apache: Debian's apache2 (mod_proxy_balancer) runs a site
//! configuration, ringlb runs `ringlb import-apache` of the same file, both in front of the same
//! mock members. The same requests (paths inside and outside the mapped prefixes, redirects from
//! members, a cookie path, an exclusion, a disabled member, a hot standby, a balancer with no live
//! member and an `ErrorDocument 503`) must reach the same members with the same forwarded path and give the
//! same status, Location, Set-Cookie and error page. The differences that are deliberate are in
//! docs/migration.md; this test holds ringlb to everything else. Apache as a member: its
//! keep-alive timeout, which it gives because ringlb asks, ends ringlb's reuse of its connection
//! first.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::proxy::{unsafe_kill, TempDir};
use crate::support::*;

/// A member that answers by path: `*/redirect` (302 to an absolute URL at its own address),
/// `*/bare-redirect` (302 to a path), `*/login` (a session cookie with the member's path), else 200.
fn member_at(name: &'static str) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let me = listener.local_addr().unwrap();
    Backend::on(listener, move |r| {
        let mut headers = vec![("X-Backend".to_string(), name.to_string())];
        let status = if r.path.ends_with("/bare-redirect") {
            headers.push(("Location".into(), "/app/next".into()));
            302
        } else if r.path.ends_with("/redirect") {
            headers.push(("Location".into(), format!("http://{me}/app/next?x=1")));
            302
        } else {
            if r.path.ends_with("/login") {
                headers.push((
                    "Set-Cookie".into(),
                    "JSESSIONID=abc.t1; Path=/app; HttpOnly".into(),
                ));
            }
            200
        };
        Reply::Full {
            status,
            headers,
            body: format!("{name} {}", r.path).into_bytes(),
            chunked: false,
        }
    })
}

/// Apache httpd in the foreground on `conf`, stopped (by pid) when dropped.
struct Apache {
    child: Child,
    dir: std::path::PathBuf,
}

impl Apache {
    fn start(dir: &std::path::Path, port: u16, site: &std::path::Path) -> Apache {
        let mods = "/usr/lib/apache2/modules";
        let user = if unsafe_is_root() {
            "User www-data\nGroup www-data\n"
        } else {
            ""
        };
        let conf = dir.join("httpd.conf");
        std::fs::write(
            &conf,
            format!(
                "ServerRoot {d}\nPidFile {d}/httpd.pid\nDefaultRuntimeDir {d}\nMutex file:{d}\n\
Listen 127.0.0.1:{port}\nServerName localhost\nDocumentRoot {d}/htdocs\n\
LoadModule mpm_event_module {mods}/mod_mpm_event.so\n\
LoadModule authz_core_module {mods}/mod_authz_core.so\n\
LoadModule slotmem_shm_module {mods}/mod_slotmem_shm.so\n\
LoadModule proxy_module {mods}/mod_proxy.so\n\
LoadModule proxy_http_module {mods}/mod_proxy_http.so\n\
LoadModule proxy_balancer_module {mods}/mod_proxy_balancer.so\n\
LoadModule lbmethod_byrequests_module {mods}/mod_lbmethod_byrequests.so\n\
{user}ErrorLog {d}/error.log\nLogLevel warn\nStartServers 1\nServerLimit 1\n\
Include {site}\n",
                d = dir.display(),
                site = site.display(),
            ),
        )
        .unwrap();
        std::fs::create_dir_all(dir.join("htdocs")).unwrap();
        let child = Command::new("apache2")
            .args(["-d", &dir.display().to_string(), "-f"])
            .arg(&conf)
            .arg("-DFOREGROUND")
            .env("APACHE_RUN_DIR", dir)
            .env("APACHE_LOCK_DIR", dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("apache2 starts");
        let a = Apache {
            child,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "apache2 did not listen: {}",
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        a
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        // SIGTERM to the parent we started; it stops its own children.
        unsafe_kill(self.child.id(), "TERM");
        let _ = self.child.wait();
        let _ = std::fs::remove_file(self.dir.join("httpd.pid"));
    }
}

fn unsafe_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What a request did, as far as the client and the members can tell.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    member: Option<String>,
    forwarded_path: Option<String>,
    location: Option<String>,
    cookie: Option<String>,
    /// The body of a 5xx (an `ErrorDocument` page).
    page: Option<String>,
}

/// Sends `path` on a fresh connection with `Host: site.example` and reads what it did.
fn send(addr: SocketAddr, path: &str, members: &[&Backend]) -> Seen {
    let before: Vec<usize> = members.iter().map(|m| m.count()).collect();
    let mut c = Client::connect(addr);
    c.send(
        format!("GET {path} HTTP/1.1\r\nHost: site.example\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    let r = c.read_response().expect("a response");
    let forwarded = members
        .iter()
        .zip(&before)
        .filter(|(m, &n)| m.count() > n)
        .map(|(m, _)| m.requests().last().unwrap().path.clone())
        .next();
    Seen {
        status: r.status,
        member: r.header("x-backend").map(str::to_string),
        forwarded_path: forwarded,
        location: r.header("location").map(str::to_string),
        cookie: r.header("set-cookie").map(str::to_string),
        page: (r.status >= 500).then(|| r.text()),
    }
}

#[test]
fn apache_and_the_import_of_its_configuration_answer_alike() {
    if !tool("apache2") {
        return;
    }
    let dir = TempDir::new();
    let (a, b, disabled) = (member_at("A"), member_at("B"), member_at("D"));
    let spare = member_at("H");
    let (down1, down2) = (closed_port(), closed_port());
    let site = dir.0.join("site.conf");
    let (dead1, dead2) = (closed_port(), closed_port());
    std::fs::create_dir_all(dir.0.join("htdocs")).unwrap();
    std::fs::write(dir.0.join("htdocs/503.html"), "<h1>Back soon</h1>\n").unwrap();
    std::fs::write(
        &site,
        format!(
            r#"DocumentRoot {root}/htdocs
ErrorDocument 503 /503.html
<Proxy "balancer://dead">
    BalancerMember http://{dead1}
    BalancerMember http://{dead2}
</Proxy>
<Proxy "balancer://app">
    BalancerMember http://{a} retry=60
    BalancerMember http://{b} retry=60
    BalancerMember http://{disabled} status=+D
    ProxySet lbmethod=byrequests
</Proxy>
<Proxy "balancer://spare">
    BalancerMember http://{down1} retry=60
    BalancerMember http://{down2} retry=60
    BalancerMember http://{spare} status=+H
</Proxy>
ProxyPass /os balancer://app/app
ProxyPassReverse /os balancer://app/app
ProxyPassReverseCookiePath /app /os
ProxyPass /fallback/ balancer://spare/
ProxyPass /plain/hidden !
ProxyPass /plain/ balancer://app/
ProxyPass /dead/ balancer://dead/
"#,
            root = dir.0.display(),
            a = a.addr,
            b = b.addr,
            disabled = disabled.addr,
            spare = spare.addr,
        ),
    )
    .unwrap();
    let apache_port = free_port();
    let apache = Apache::start(&dir.0, apache_port, &site);
    let ringlb_port = free_port();
    let wrapper = dir.0.join("ringlb-site.conf");
    std::fs::write(
        &wrapper,
        format!(
            "Listen 127.0.0.1:{ringlb_port}\nInclude {}\n",
            site.display()
        ),
    )
    .unwrap();
    let (code, toml, notes) = run_cli(&["import-apache", &wrapper.display().to_string()]);
    assert_eq!(code, 0, "{notes}\n{toml}");
    let p = Ringlb::start_whole(&toml.replace("127.0.0.1:9900", "127.0.0.1:0"), 1);
    let apache_addr: SocketAddr = format!("127.0.0.1:{apache_port}").parse().unwrap();
    let ringlb_addr = p.addr;
    let members = [&a, &b, &disabled, &spare];
    let requests = [
        "/os/page",
        "/os/page",
        "/os/page",
        "/os/page",
        "/os",
        "/os/",
        "/os/deep/er?q=1",
        "/os?q=1",
        "/os.html",
        "/os/redirect",
        "/os/bare-redirect",
        "/os/login",
        "/osx",
        "/plain/x",
        "/plain/redirect",
        "/plain/hidden",
        "/plain/hidden/x",
        "/plain/hiddenx",
        "/nothing",
        "/",
        "/fallback/one",
        "/fallback/two",
        "/dead/one",
        "/dead/two",
    ];
    // The deliberate differences of docs/migration.md, held to exactly what it says: (path,
    // Apache's Location, ringlb's Location given the member that answered).
    let addr_of = |name: Option<&str>| if name == Some("A") { a.addr } else { b.addr };
    let mut differ = Vec::new();
    for path in requests {
        let mut from_apache = send(apache_addr, path, &members);
        let mut from_ringlb = send(ringlb_addr, path, &members);
        let deliberate = match path {
            // A bare path under the member path is mapped back (Apache leaves it).
            "/os/bare-redirect" => Some(("/app/next".to_string(), "/os/next".to_string())),
            // A ProxyPassReverse maps its own route's responses only (Apache: the whole vhost's).
            "/plain/redirect" => Some((
                "http://site.example/os/next?x=1".to_string(),
                format!(
                    "http://{}/app/next?x=1",
                    addr_of(from_ringlb.member.as_deref())
                ),
            )),
            _ => None,
        };
        if let Some((apache_location, ringlb_location)) = deliberate {
            assert_eq!(
                from_apache.location.take(),
                Some(apache_location),
                "Apache on {path}"
            );
            assert_eq!(
                from_ringlb.location.take(),
                Some(ringlb_location),
                "ringlb on {path}"
            );
        }
        if path.starts_with("/dead/") {
            // ErrorDocument 503 became the balancer's error page.
            assert_eq!(from_ringlb.status, 503);
            assert_eq!(from_ringlb.page.as_deref(), Some("<h1>Back soon</h1>\n"));
        }
        if from_apache != from_ringlb {
            differ.push(format!(
                "{path}:\n  apache {from_apache:?}\n  ringlb {from_ringlb:?}"
            ));
        }
    }
    // Deliberate: a Tomcat session in the URL at the application's root is under /os in ringlb
    // (Apache: 404). Last, as it takes a round-robin turn in ringlb only.
    let path = "/os;jsessionid=abc";
    let (from_apache, from_ringlb) = (
        send(apache_addr, path, &members),
        send(ringlb_addr, path, &members),
    );
    assert_eq!((from_apache.status, from_apache.member), (404, None));
    assert_eq!(
        (from_ringlb.status, from_ringlb.forwarded_path.as_deref()),
        (200, Some("/app;jsessionid=abc"))
    );
    drop(apache);
    assert!(
        differ.is_empty(),
        "ringlb differs from Apache on the same configuration:\n{}\nimport:\n{toml}\nnotes:\n{notes}",
        differ.join("\n")
    );
    assert_eq!(disabled.count(), 0, "a disabled member was used");
}

/// Apache as a member gives its keep-alive timeout because ringlb asks (`Connection:
/// keep-alive`): with `KeepAliveTimeout 1` it answers `Keep-Alive: timeout=1, …`, and ringlb
/// reuses the connection for half of it, not for its own `idle_ttl` of 60 s. Apache's access log
/// names the port each request came from.
#[test]
fn apache_s_keep_alive_timeout_ends_the_reuse_of_its_connection_first() {
    if !tool("apache2") {
        return;
    }
    let dir = TempDir::new();
    let port = free_port();
    let site = dir.0.join("site.conf");
    let log = dir.0.join("access.log");
    std::fs::create_dir_all(dir.0.join("htdocs")).unwrap();
    std::fs::write(dir.0.join("htdocs/index.html"), "hello\n").unwrap();
    std::fs::write(
        &site,
        format!(
            "KeepAlive On\nKeepAliveTimeout 1\nLogFormat \"%{{remote}}p\" port\nCustomLog {} port\n",
            log.display()
        ),
    )
    .unwrap();
    let _apache = Apache::start(&dir.0, port, &site);
    let p = Ringlb::start(
        &simple_config(
            &[format!("{{ url = \"http://127.0.0.1:{port}\" }}")],
            "idle_ttl = \"60s\"",
        ),
        1,
    );
    let ask = || {
        let r = get(p.addr, "/index.html");
        assert_eq!((r.status, r.text().as_str()), (200, "hello\n"));
        assert_eq!(r.header("keep-alive"), None, "hop-by-hop: never relayed");
    };
    ask();
    // Waiting is the behaviour under test, not synchronisation.
    std::thread::sleep(Duration::from_millis(100));
    ask();
    std::thread::sleep(Duration::from_millis(800));
    ask();
    let deadline = Instant::now() + Duration::from_secs(5);
    let ports = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let ports: Vec<String> = text.lines().map(str::to_string).collect();
        if ports.len() >= 3 || Instant::now() > deadline {
            break ports;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(ports.len(), 3, "three requests logged: {ports:?}");
    assert_eq!(ports[0], ports[1], "reused within half of Apache's timeout");
    assert_ne!(
        ports[1], ports[2],
        "reused past half of Apache's timeout (it closes it at 1 s)"
    );
}
