//! `ringlb import-apache`: an OpenSpecimen-style Apache site (two AJP members, round robin, a
//! mapped path, balancer-manager, server-status, TLS, an https redirect) becomes a configuration
//! that `ringlb check` accepts and that the real binary serves the same way (the member gets the
//! mapped path, its redirect comes back mapped); the balancer examples of the Apache 2.4
//! mod_proxy_balancer documentation; Debian's own apache2 tree (includes followed, nothing to
//! proxy: said, exit 1). Everything not carried over is listed with file and line.

use std::path::Path;

use crate::support::admin::tool;
use crate::support::ajp_container::{
    body_chunk, end_response, send_headers, AjpContainer, RespName,
};
use crate::support::client::Client;
use crate::support::pki::Pki;
use crate::support::proxy::{run_cli, Ringlb, TempDir};

fn import(dir: &TempDir, name: &str, apache: &str) -> (i32, String, String) {
    let file = dir.0.join(name);
    std::fs::write(&file, apache).unwrap();
    run_cli(&["import-apache", &file.display().to_string()])
}

fn checks(dir: &TempDir, toml: &str) -> String {
    let file = dir.0.join("imported.toml");
    std::fs::write(&file, toml).unwrap();
    let (code, out, err) = run_cli(&["check", "--config", &file.display().to_string()]);
    assert_eq!(code, 0, "ringlb check refused the import:\n{toml}\n{err}");
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn an_openspecimen_site_imports_checks_and_serves_the_same_way() {
    let dir = TempDir::new();
    let pki = Pki::new();
    let (cert, key) = pki.issue("os", &["os.example.org"], 90);
    let tomcat = |name: &'static str| {
        AjpContainer::start(move |f| {
            let mut out = if f.uri.ends_with(b"/login") {
                let to: &[u8] = b"/openspecimen/home";
                send_headers(
                    302,
                    b"Found",
                    &[
                        (RespName::Coded(0xA006), to),
                        (RespName::Coded(0xA003), b"0"),
                    ],
                )
            } else {
                send_headers(200, b"OK", &[(RespName::Coded(0xA003), b"2")])
            };
            if !f.uri.ends_with(b"/login") {
                out.extend(body_chunk(name.as_bytes()));
            }
            out.extend(end_response(true));
            out
        })
    };
    let (one, two) = (tomcat("t1"), tomcat("t2"));
    let (http, https) = (free_port(), free_port());
    let apache = format!(
        r#"# An OpenSpecimen site as its admins run it.
Listen {http}
Listen {https}
<VirtualHost *:{http}>
    ServerName os.example.org
    RewriteEngine On
    RewriteRule ^(.*)$ https://%{{HTTP_HOST}}$1 [R=301,L]
</VirtualHost>
<VirtualHost *:{https}>
    ServerName os.example.org
    ServerAlias openspecimen.example.org
    SSLEngine on
    SSLCertificateFile "{cert}"
    SSLCertificateKeyFile "{key}"
    Header always set X-Frame-Options SAMEORIGIN
    ProxyPreserveHost On
    ProxyTimeout 300
    <Proxy "balancer://os">
        BalancerMember ajp://{one} route=t1 loadfactor=1 retry=30 ping=5
        BalancerMember ajp://{two} route=t2 loadfactor=1 retry=30 ping=5
        ProxySet lbmethod=byrequests stickysession=JSESSIONID|jsessionid
    </Proxy>
    ProxyPass /os balancer://os/openspecimen
    ProxyPassReverse /os balancer://os/openspecimen
    ProxyPassReverseCookiePath /openspecimen /os
    <Location /balancer-manager>
        SetHandler balancer-manager
        Require ip 10.0.0.0/8
    </Location>
    <Location /server-status>
        SetHandler server-status
    </Location>
</VirtualHost>
"#,
        cert = cert.display(),
        key = key.display(),
        one = one.addr,
        two = two.addr,
    );
    let (code, toml, notes) = import(&dir, "openspecimen.conf", &apache);
    assert_eq!(code, 0, "{notes}\n{toml}");
    let summary = checks(&dir, &toml);
    assert!(summary.contains("listen"), "{summary}");
    for want in [
        "member_path = \"/openspecimen\"",
        "sticky_session = \"JSESSIONID|jsessionid\"",
        "route = \"t1\"",
        "retry = \"30s\"",
        "ping = \"5s\"",
        "response_timeout = \"300s\"",
        "redirect_https = true",
        "preserve_host = true",
        "[admin]",
        "# from ",
    ] {
        assert!(toml.contains(want), "{want} missing from\n{toml}");
    }
    // Not carried over: named with file and line.
    let file = dir.0.join("openspecimen.conf").display().to_string();
    let line = apache
        .lines()
        .position(|l| l.contains("Header always"))
        .unwrap()
        + 1;
    assert!(
        notes.contains(&format!("{file}:{line}: Header: not translated")),
        "{notes}"
    );
    assert!(
        notes.contains("ProxyPassReverseCookiePath /openspecimen /os: covered"),
        "{notes}"
    );
    // The real binary on the import (admin on a free port): the member gets the mapped path, the
    // redirect comes back mapped, the plain port redirects to https.
    let p = Ringlb::start_whole(&toml.replace("127.0.0.1:9900", "127.0.0.1:0"), 1);
    let secure: std::net::SocketAddr = format!("127.0.0.1:{https}").parse().unwrap();
    let mut c = Client::connect_tls(secure, "os.example.org", pki.client_config()).unwrap();
    c.send(b"GET /os/page HTTP/1.1\r\nHost: os.example.org\r\n\r\n");
    let r = c.read_response().unwrap();
    assert!(r.text() == "t1" || r.text() == "t2", "{}", r.text());
    c.send(b"GET /os/login HTTP/1.1\r\nHost: os.example.org\r\n\r\n");
    assert_eq!(
        c.read_response().unwrap().header("Location"),
        Some("/os/home")
    );
    let uris: Vec<Vec<u8>> = [one.forwards(), two.forwards()]
        .concat()
        .into_iter()
        .map(|f| f.uri)
        .collect();
    assert!(uris.contains(&b"/openspecimen/page".to_vec()), "{uris:?}");
    let plain: std::net::SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
    let mut c = Client::connect(plain);
    c.send(b"GET /os/page HTTP/1.1\r\nHost: os.example.org\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 301);
    drop(p);
}

#[test]
fn the_apache_documentation_balancer_examples_import() {
    let dir = TempDir::new();
    // mod_proxy_balancer's first example, and its sticky one (members renamed to loopback).
    let first = r#"<Proxy balancer://mycluster>
    BalancerMember http://127.0.0.1:8001
    BalancerMember http://127.0.0.1:8002
</Proxy>
ProxyPass        "/test" "balancer://mycluster"
ProxyPassReverse "/test" "balancer://mycluster"
Listen 8080
"#;
    let (code, toml, notes) = import(&dir, "first.conf", first);
    assert_eq!(code, 0, "{notes}\n{toml}");
    checks(&dir, &toml);
    // Apache strips the prefix: /test/x reaches a member as /x.
    assert!(
        toml.contains("path = \"/test/\"") && toml.contains("member_path = \"/\""),
        "{toml}"
    );
    assert!(notes.contains("translated as /test/ → /"), "{notes}");
    let sticky = r#"Header add Set-Cookie "ROUTEID=.%{BALANCER_WORKER_ROUTE}e; path=/" env=BALANCER_ROUTE_CHANGED
<Proxy "balancer://mycluster">
    BalancerMember "http://127.0.0.1:8001" route=1
    BalancerMember "http://127.0.0.1:8002" route=2
    ProxySet stickysession=ROUTEID
</Proxy>
ProxyPass "/test" "balancer://mycluster"
ProxyPassReverse "/test" "balancer://mycluster"
Listen 8080
"#;
    let (code, toml, notes) = import(&dir, "sticky.conf", sticky);
    assert_eq!(code, 0, "{notes}\n{toml}");
    checks(&dir, &toml);
    assert!(toml.contains("sticky_session = \"ROUTEID\""), "{toml}");
    assert!(
        notes.contains("sticky.conf:1: Header: not translated"),
        "{notes}"
    );
    // A hot standby, a direct URL and an exclusion (404, nothing forwarded: said).
    let more = "Listen 8080\nListen 9999\n<Proxy balancer://b>\nBalancerMember http://127.0.0.1:8001/app status=+H lbset=1 max=20\n\
                BalancerMember balancer://b\n</Proxy>\nProxyPass /static !\nProxyPass /api http://127.0.0.1:9000/v1 timeout=7\n\
                ProxyPass / balancer://b/\n<Location /admin>\nProxyPass balancer://b/admin timeout=5\nRequire ip 10.0.0.0/8\n</Location>\n";
    let (code, toml, notes) = import(&dir, "more.conf", more);
    assert_eq!(code, 0, "{notes}\n{toml}");
    checks(&dir, &toml);
    for want in [
        "status = \"standby\"",
        "max_conns = 20",
        "url = \"http://127.0.0.1:8001\"",
        "member_path = \"/v1\"",
        "reverse = false",
        "response_timeout = \"7s\"",
        "queue_timeout = \"5s\"",
        "path = \"/admin\"",
        "path = \"/static\"\nexclude = true",
    ] {
        assert!(toml.contains(want), "{want} missing from\n{toml}");
    }
    for want in [
        "more.conf:7: ProxyPass /static !: an exclusion: ringlb answers 404",
        "more.conf:4: BalancerMember http://127.0.0.1:8001/app: a member URL has no path",
        "more.conf:5: BalancerMember names a balancer but no member URL",
        "more.conf:12: Require: access control is not translated",
    ] {
        assert!(notes.contains(want), "{want} missing from\n{notes}");
    }
}

#[test]
fn debians_own_apache2_tree_is_read_whole_and_has_nothing_to_proxy() {
    let root = Path::new("/etc/apache2/apache2.conf");
    if !root.exists() {
        // The same rule as for tools: scripts/test.sh installs Debian's apache2; without it this
        // fails (`tool`), unless the run allows missing tools.
        assert!(
            !tool("apache2ctl"),
            "apache2 is installed but {} is missing",
            root.display()
        );
        return;
    }
    let (code, toml, notes) = run_cli(&["import-apache", "/etc/apache2/apache2.conf"]);
    assert_eq!(code, 1, "{notes}\n{toml}");
    assert!(notes.contains("there is nothing to proxy"), "{notes}");
    // Its includes were followed: directives of the enabled modules, sites and ports are named.
    assert!(notes.contains("/etc/apache2/mods-enabled/"), "{notes}");
    assert!(notes.contains("/etc/apache2/apache2.conf:"), "{notes}");
    let listen = notes
        .lines()
        .find(|l| l.contains("Listen 80: no host on it proxies anything"));
    assert!(
        listen.is_some_and(|l| l.starts_with("/etc/apache2/ports.conf:")),
        "{notes}"
    );
}

#[test]
fn error_documents_become_error_pages_where_the_page_is_there() {
    let dir = TempDir::new();
    std::fs::create_dir_all(dir.0.join("www/errors")).unwrap();
    std::fs::write(dir.0.join("www/errors/502.html"), "<h1>broken</h1>").unwrap();
    let apache = format!(
        "Listen {port}\n<VirtualHost *:{port}>\nDocumentRoot {root}/www/\nErrorDocument 502 /errors/502.html\nErrorDocument 503 /errors/missing.html\nErrorDocument 504 \"Too slow\"\nErrorDocument 404 /errors/404.html\nProxyErrorOverride On\nProxyPass / balancer://app/\n<Proxy balancer://app>\nBalancerMember http://127.0.0.1:8080\n</Proxy>\n</VirtualHost>\n",
        port = free_port(),
        root = dir.0.display(),
    );
    let (code, toml, notes) = import(&dir, "site.conf", &apache);
    assert_eq!(code, 0, "{notes}\n{toml}");
    checks(&dir, &toml);
    let page = dir.0.join("www/errors/502.html").display().to_string();
    assert!(
        toml.contains(&format!("error_pages = {{ 502 = \"{page}\" }}")),
        "{toml}"
    );
    let file = dir.0.join("site.conf").display().to_string();
    for (line, why) in [
        (5, "missing.html is not a file here"),
        (6, "only a local page"),
        (7, "ringlb has pages for the 502, 503 and 504"),
        (8, "ProxyErrorOverride On: not translated"),
    ] {
        let at = format!("{file}:{line}: ");
        assert!(
            notes.lines().any(|l| l.starts_with(&at) && l.contains(why)),
            "{at}{why}: {notes}"
        );
    }
}

#[test]
fn main_server_exclusions_reach_every_virtual_host_and_order_is_said() {
    let dir = TempDir::new();
    let apache = format!(
        "Listen {port}\nProxyPass /manager !\n<Proxy balancer://app>\nBalancerMember http://127.0.0.1:8080\n</Proxy>\n\
         <VirtualHost *:{port}>\nServerName a.example\nProxyPass /app !\nProxyPass /app/api balancer://app/api\nProxyPass / balancer://app/\n</VirtualHost>\n\
         <VirtualHost *:{port}>\nServerName b.example\nProxyPass / balancer://app/\n</VirtualHost>\n",
        port = free_port()
    );
    let (code, toml, notes) = import(&dir, "vhosts.conf", &apache);
    assert_eq!(code, 0, "{notes}\n{toml}");
    checks(&dir, &toml);
    // Apache puts the main server's ProxyPass first in each vhost: so does the import, per host.
    for host in ["a.example", "b.example"] {
        assert!(
            toml.contains(&format!(
                "host = \"{host}\"\npath = \"/manager\"\nexclude = true"
            )),
            "{host}: {toml}"
        );
    }
    let file = dir.0.join("vhosts.conf").display().to_string();
    assert!(
        notes.contains(&format!(
            "{file}:8: ProxyPass /app !: Apache never forwarded /app/api"
        )),
        "{notes}"
    );
}

#[test]
fn cookie_domains_come_with_proxy_pass_reverse() {
    let dir = TempDir::new();
    let apache = format!(
        "Listen {port}\n<VirtualHost *:{port}>\nProxyPass /os balancer://c/openspecimen\n\
         ProxyPassReverse /os balancer://c/openspecimen\nProxyPassReverseCookieDomain tomcat.internal www.example.org\n\
         <Proxy balancer://c>\nBalancerMember ajp://127.0.0.1:8009\n</Proxy>\n</VirtualHost>\n",
        port = free_port()
    );
    let (code, toml, notes) = import(&dir, "cd.conf", &apache);
    assert_eq!(code, 0, "{notes}\n{toml}");
    checks(&dir, &toml);
    assert!(
        toml.contains(
            "cookie_domains = [{ from = \"tomcat.internal\", to = \"www.example.org\" }]"
        ),
        "{toml}"
    );
    let file = dir.0.join("cd.conf").display().to_string();
    assert!(
        notes.contains(&format!(
            "{file}:5: ProxyPassReverseCookieDomain tomcat.internal www.example.org: translated"
        )),
        "{notes}"
    );
}

#[test]
fn websocket_passes_become_routes_that_tunnel() {
    let dir = TempDir::new();
    let apache = format!(
        "Listen {port}\n<VirtualHost *:{port}>\n\
         ProxyPass /ws/ ws://127.0.0.1:8080/ws/\n\
         ProxyPass /live balancer://c/live upgrade=websocket,Foo\n\
         ProxyPass /star balancer://c/star upgrade=*\n\
         ProxyPass /chat balancer://w/chat\n\
         ProxyPass / balancer://c/ upgrade=ANY\n\
         <Proxy balancer://c>\nBalancerMember http://127.0.0.1:8081\n</Proxy>\n</VirtualHost>\n\
         <Proxy balancer://w>\nBalancerMember ws://127.0.0.1:8082\n</Proxy>\n",
        port = free_port()
    );
    let (code, toml, notes) = import(&dir, "ws.conf", &apache);
    assert_eq!(code, 0, "{notes}\n{toml}");
    checks(&dir, &toml);
    // mod_proxy_wstunnel's ws:// is an http:// member on a route that tunnels WebSockets.
    assert!(toml.contains("url = \"http://127.0.0.1:8080\""), "{toml}");
    let route = |path: &str| {
        let start = toml.find(&format!("path = \"{path}\"")).unwrap();
        let end = toml[start..].find("\n\n").map_or(toml.len(), |e| start + e);
        toml[start..end].to_string()
    };
    assert!(
        route("/ws/").contains("upgrade = [\"websocket\"]"),
        "{toml}"
    );
    assert!(
        route("/live").contains("upgrade = [\"websocket\", \"foo\"]"),
        "{toml}"
    );
    assert!(route("/star").contains("upgrade = [\"any\"]"), "{toml}");
    assert!(route("/").contains("upgrade = [\"any\"]"), "{toml}");
    // A ws:// balancer member is an http:// one, and its balancer's routes tunnel WebSockets
    // (defined after the host that routes to it, as Apache allows).
    assert!(toml.contains("url = \"http://127.0.0.1:8082\""), "{toml}");
    assert!(
        route("/chat").contains("upgrade = [\"websocket\"]"),
        "{toml}"
    );
    assert!(!notes.contains("upgrade"), "translated, not noted: {notes}");
}

#[test]
fn ssl_engine_without_certificates_is_noted_at_its_line_in_the_main_server_too() {
    // Found by the apache_conf fuzz target: outside a <VirtualHost> the note named no place.
    let dir = TempDir::new();
    let apache = format!(
        "Listen {port}\nSSLEngine on\nProxyPass /os http://127.0.0.1:8080/os\n",
        port = free_port()
    );
    let (_, toml, notes) = import(&dir, "ssl.conf", &apache);
    let file = dir.0.join("ssl.conf").display().to_string();
    assert!(
        notes.contains(&format!(
            "{file}:2: SSLEngine on without SSLCertificateFile and SSLCertificateKeyFile"
        )),
        "{notes}\n{toml}"
    );
}
