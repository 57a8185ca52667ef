//! AJP13 end to end against a real Tomcat 10 (Debian's libtomcat10-java): the same requests
//! through ringlb over AJP and over HTTP to the same Tomcat give the same answers; a wrong or
//! missing secret gets Tomcat's own 403, passed through, and a warning in ringlb's log. Sticky
//! sessions over two Tomcats (jvmRoute node1 and node2), over HTTP and over AJP: a session Tomcat
//! made stays on its node by cookie and by `;jsessionid=` URL, and moves (or gets 503 with
//! `nofailover`) when its node is disabled or stopped. Behind a TLS listener Tomcat sees https:
//! `isSecure`, the SSL attributes AJP carries (cipher, key size, session id, protocol), Secure
//! session cookies and https redirects; behind a plain one, none of them. Tomcat's keep-alive
//! timeout, which it gives because ringlb asks, ends ringlb's reuse of its connection first.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::proxy::TempDir;
use crate::support::*;

const CATALINA_HOME: &str = "/usr/share/tomcat10";
const SECRET: &str = "ringlb-test-secret";

const SERVLET: &str = r#"
import java.io.*;
import java.security.MessageDigest;
import jakarta.servlet.http.*;

public class EchoServlet extends HttpServlet {
  protected void service(HttpServletRequest req, HttpServletResponse resp) throws IOException {
    req.setCharacterEncoding("UTF-8");
    String size = req.getParameter("size");
    if (size != null) {
      int left = Integer.parseInt(size);
      resp.setContentType("application/octet-stream");
      OutputStream o = resp.getOutputStream();
      byte[] b = new byte[8192];
      for (int i = 0; i < b.length; i++) b[i] = (byte) ('a' + i % 26);
      while (left > 0) { int k = Math.min(left, b.length); o.write(b, 0, k); left -= k; }
      return;
    }
    if ("/redirect".equals(req.getPathInfo())) {
      resp.sendRedirect("/echo/target");
      return;
    }
    if ("/port".equals(req.getPathInfo())) {
      resp.setContentType("text/plain");
      resp.getWriter().write("port=" + req.getRemotePort() + "\n");
      return;
    }
    HttpSession session = req.getSession(true);
    MessageDigest md;
    try { md = MessageDigest.getInstance("SHA-256"); } catch (Exception e) { throw new IOException(e); }
    InputStream in = req.getInputStream();
    byte[] buf = new byte[65536];
    long total = 0;
    int r;
    while ((r = in.read(buf)) > 0) { md.update(buf, 0, r); total += r; }
    StringBuilder hex = new StringBuilder();
    for (byte x : md.digest()) hex.append(String.format("%02x", x));
    String s = "method=" + req.getMethod() + "\n"
      + "uri=" + req.getRequestURI() + "\n"
      + "query=" + req.getQueryString() + "\n"
      + "q=" + req.getParameter("q") + "\n"
      + "x-test=" + req.getHeader("X-Test") + "\n"
      + "content-type=" + req.getContentType() + "\n"
      + "user-agent=" + req.getHeader("User-Agent") + "\n"
      + "remote=" + req.getRemoteAddr() + "\n"
      + "length=" + total + "\n"
      + "sha256=" + hex + "\n"
      + "node=" + System.getProperty("ringlb.node") + "\n"
      + "session-new=" + session.isNew() + "\n"
      + "secure=" + req.isSecure() + "\n"
      + "scheme=" + req.getScheme() + "\n"
      + "cipher=" + req.getAttribute("jakarta.servlet.request.cipher_suite") + "\n"
      + "key-size=" + req.getAttribute("jakarta.servlet.request.key_size") + "\n"
      + "ssl-session=" + req.getAttribute("jakarta.servlet.request.ssl_session_id") + "\n"
      + "ssl-protocol=" + req.getAttribute("org.apache.tomcat.util.net.secure_protocol_version") + "\n";
    resp.setContentType("text/plain; charset=UTF-8");
    resp.getWriter().write(s);
  }
}
"#;

const WEB_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee" version="6.0" metadata-complete="true">
  <servlet><servlet-name>echo</servlet-name><servlet-class>EchoServlet</servlet-class></servlet>
  <servlet-mapping><servlet-name>echo</servlet-name><url-pattern>/echo/*</url-pattern></servlet-mapping>
</web-app>
"#;

const CONF_WEB_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee" version="6.0" metadata-complete="true">
  <servlet><servlet-name>default</servlet-name>
    <servlet-class>org.apache.catalina.servlets.DefaultServlet</servlet-class></servlet>
  <servlet-mapping><servlet-name>default</servlet-name><url-pattern>/</url-pattern></servlet-mapping>
</web-app>
"#;

struct Tomcat {
    child: Child,
    http: u16,
    ajp: u16,
    _dir: TempDir,
}

/// A free port for a Tomcat connector (`port_below_ephemeral`: the JVM binds it seconds later).
fn free_port() -> u16 {
    crate::support::backend::port_below_ephemeral(20000)
}

fn wait_http_ok(port: u16, deadline: Instant) -> bool {
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ =
                s.write_all(b"GET /echo/ready HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            if out.starts_with(b"HTTP/1.1 200") {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

impl Tomcat {
    /// Starts Tomcat with an AJP connector (secret required), an HTTP connector and `jvmRoute`
    /// `route` (which the servlet also reports as `node=`). Without Tomcat the test fails; `None`
    /// only where `unavailable` lets a run skip it.
    fn start(route: &str) -> Option<Tomcat> {
        Tomcat::start_with(route, "")
    }

    /// As `start`, with `http_attrs` added to the HTTP connector's attributes.
    fn start_with(route: &str, http_attrs: &str) -> Option<Tomcat> {
        if !Path::new(CATALINA_HOME).join("bin/catalina.sh").exists() || !tool("javac") {
            unavailable("Tomcat 10 (libtomcat10-java and tomcat10-common)");
            return None;
        }
        let dir = TempDir::new();
        let base: PathBuf = dir.0.clone();
        for d in [
            "conf",
            "logs",
            "temp",
            "work",
            "webapps/ROOT/WEB-INF/classes",
        ] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        let (http, ajp) = (free_port(), free_port());
        std::fs::write(
            base.join("conf/server.xml"),
            format!(
                r#"<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector port="{http}" address="127.0.0.1" protocol="HTTP/1.1" {http_attrs}/>
    <Connector port="{ajp}" address="127.0.0.1" protocol="AJP/1.3" secretRequired="true" secret="{SECRET}" />
    <Engine name="Catalina" defaultHost="localhost" jvmRoute="{route}">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false" />
    </Engine>
  </Service>
</Server>
"#
            ),
        )
        .unwrap();
        std::fs::write(base.join("conf/web.xml"), CONF_WEB_XML).unwrap();
        // Absolute `Location`s from sendRedirect (made of the request's scheme, name and port).
        std::fs::write(
            base.join("conf/context.xml"),
            "<Context useRelativeRedirects=\"false\" />\n",
        )
        .unwrap();
        std::fs::write(base.join("webapps/ROOT/WEB-INF/web.xml"), WEB_XML).unwrap();
        let src = base.join("EchoServlet.java");
        std::fs::write(&src, SERVLET).unwrap();
        let javac = Command::new("javac")
            .args(["-cp", &format!("{CATALINA_HOME}/lib/servlet-api.jar"), "-d"])
            .arg(base.join("webapps/ROOT/WEB-INF/classes"))
            .arg(&src)
            .output()
            .unwrap();
        assert!(
            javac.status.success(),
            "javac: {}",
            String::from_utf8_lossy(&javac.stderr)
        );
        let child = Command::new(format!("{CATALINA_HOME}/bin/catalina.sh"))
            .arg("run")
            .env("CATALINA_HOME", CATALINA_HOME)
            .env("CATALINA_BASE", &base)
            .env("CATALINA_OUT", base.join("logs/catalina.out"))
            .env(
                "JAVA_OPTS",
                format!("-XX:TieredStopAtLevel=1 -Xmx256m -Dringlb.node={route}"),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(base.join("logs/stderr.log")).unwrap())
            .spawn()
            .unwrap();
        let tomcat = Tomcat {
            child,
            http,
            ajp,
            _dir: dir,
        };
        let ready = wait_http_ok(http, Instant::now() + Duration::from_secs(90));
        assert!(
            ready,
            "Tomcat did not start: {}",
            std::fs::read_to_string(base.join("logs/stderr.log")).unwrap_or_default()
        );
        Some(tomcat)
    }
}

impl Drop for Tomcat {
    fn drop(&mut self) {
        crate::support::proxy::unsafe_kill(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ajp_member(port: u16, secret: Option<&str>) -> String {
    match secret {
        Some(s) => format!("{{ url = \"ajp://127.0.0.1:{port}\", secret = \"{s}\" }}"),
        None => format!("{{ url = \"ajp://127.0.0.1:{port}\" }}"),
    }
}

/// Sends one raw request on a fresh connection and reads the response.
fn ask(addr: std::net::SocketAddr, raw: &[u8], head: bool) -> Resp {
    let mut c = Client::connect(addr);
    c.send(raw);
    c.read_response_to(head).expect("a response")
}

#[test]
fn ajp_and_http_to_the_same_tomcat_answer_alike() {
    let Some(tomcat) = Tomcat::start("node1") else {
        return;
    };
    let over_ajp = Ringlb::start(
        &simple_config(&[ajp_member(tomcat.ajp, Some(SECRET))], ""),
        1,
    );
    let over_http = Ringlb::start(
        &simple_config(
            &[format!("{{ url = \"http://127.0.0.1:{}\" }}", tomcat.http)],
            "",
        ),
        1,
    );
    let big_body = pattern(5 << 20);
    let mut chunked = Vec::new();
    for piece in big_body[..300_000].chunks(70_001) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let mut post = format!(
        "POST /echo/up HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        big_body.len()
    )
    .into_bytes();
    post.extend_from_slice(&big_body);
    let mut chunked_post = b"POST /echo/chunked HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    chunked_post.extend_from_slice(&chunked);
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "GET with a non-ASCII query",
            b"GET /echo/a/b?x=1&q=%C3%A9t%C3%A9 HTTP/1.1\r\nHost: t\r\nX-Test: yes\r\nUser-Agent: ringlb-test\r\n\r\n".to_vec(),
            false,
        ),
        ("POST 5 MB with Content-Length", post, false),
        ("chunked POST", chunked_post, false),
        ("HEAD", b"HEAD /echo/h HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), true),
        ("404", b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), false),
        ("large response", b"GET /echo/big?size=3000000 HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), false),
        ("HTTP/1.0 client", b"GET /echo/old?q=1 HTTP/1.0\r\n\r\n".to_vec(), false),
    ];
    for (what, raw, head) in &cases {
        let a = ask(over_ajp.addr, raw, *head);
        let h = ask(over_http.addr, raw, *head);
        assert_eq!(a.status, h.status, "{what}: status");
        assert_eq!(a.body.len(), h.body.len(), "{what}: body length");
        assert_eq!(
            hash(&a.body),
            hash(&h.body),
            "{what}: body\nAJP:\n{}\nHTTP:\n{}",
            a.text(),
            h.text()
        );
        assert_eq!(
            a.header("content-type"),
            h.header("content-type"),
            "{what}: content-type"
        );
    }
    let a = ask(over_ajp.addr, &cases[0].1, false);
    assert!(a.text().contains("q=été\n"), "{}", a.text());
    assert!(
        a.text().contains("query=x=1&q=%C3%A9t%C3%A9\n"),
        "{}",
        a.text()
    );
    assert!(a.text().contains("uri=/echo/a/b\n"), "{}", a.text());
    let cookie = a.header("set-cookie").expect("a session cookie");
    assert!(
        cookie.starts_with("JSESSIONID=") && cookie.contains(".node1"),
        "{cookie}"
    );
    let up = ask(over_ajp.addr, &cases[1].1, false);
    assert!(
        up.text().contains(&format!("length={}\n", 5 << 20)),
        "{}",
        up.text()
    );
    // Keep-alive to the client and reuse of the AJP connection: several requests, one connection.
    let mut c = Client::connect(over_ajp.addr);
    for i in 0..5 {
        c.send(format!("GET /echo/k{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200);
        assert!(r.text().contains(&format!("uri=/echo/k{i}\n")));
    }
}

/// Tomcat gives its keep-alive timeout only when asked (`Connection: keep-alive`, which ringlb
/// sends): with `keepAliveTimeout="1000"` it answers `Keep-Alive: timeout=1`, and ringlb reuses
/// the connection for half of it, not for its own `idle_ttl` of 60 s.
#[test]
fn tomcat_s_keep_alive_timeout_ends_the_reuse_of_its_connection_first() {
    let Some(tomcat) = Tomcat::start_with("node1", r#"keepAliveTimeout="1000" "#) else {
        return;
    };
    let p = Ringlb::start(
        &simple_config(
            &[format!("{{ url = \"http://127.0.0.1:{}\" }}", tomcat.http)],
            "idle_ttl = \"60s\"",
        ),
        1,
    );
    let port = || {
        let r = get(p.addr, "/echo/port");
        assert_eq!(r.header("keep-alive"), None, "hop-by-hop: never relayed");
        field(&r, "port")
    };
    let first = port();
    // Waiting is the behaviour under test, not synchronisation.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(port(), first, "reused within half of Tomcat's timeout");
    std::thread::sleep(Duration::from_millis(800));
    assert_ne!(
        port(),
        first,
        "reused past half of Tomcat's timeout (it closes it at 1 s)"
    );
}

#[test]
fn an_upload_slower_than_response_timeout_reaches_tomcat_whole() {
    // response_timeout counts from the request's last body packet: Tomcat asks for each piece of
    // a body (GET_BODY_CHUNK) as its servlet reads, and a client sending 1 MiB over ~1.6 s, a
    // piece every 100 ms, is slower than the 500 ms limit but never idle for long.
    let Some(tomcat) = Tomcat::start("node1") else {
        return;
    };
    let p = Ringlb::start(
        &simple_config(
            &[ajp_member(tomcat.ajp, Some(SECRET))],
            "response_timeout = \"500ms\"",
        ),
        1,
    );
    let body = pattern(1 << 20);
    let mut c = Client::connect(p.addr);
    c.send(
        format!(
            "POST /echo/slow HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    for piece in body.chunks(64 << 10) {
        std::thread::sleep(Duration::from_millis(100));
        c.send(piece);
    }
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().contains(&format!("length={}\n", body.len())),
        "{}",
        r.text()
    );
}

#[test]
fn tomcat_behind_a_tls_listener_sees_https_and_the_ssl_attributes() {
    let Some(tomcat) = Tomcat::start("node1") else {
        return;
    };
    let pki = Pki::new();
    let site = pki.issue("site", &["site.test"], 90);
    // The TLS listener first, then a plain one, both in front of the AJP connector.
    let p = Ringlb::start(
        &format!(
            "{}[[listen]]\naddress = \"127.0.0.1:0\"\n\n{}",
            Pki::listen_tls(&[site], ""),
            simple_config(&[ajp_member(tomcat.ajp, Some(SECRET))], "")
        ),
        1,
    );
    let (tls, plain) = (p.addrs[0], p.addrs[1]);
    let mut c = Client::connect_tls(tls, "site.test", pki.client_config()).expect("handshake");
    let host = format!("site.test:{}", tls.port());
    c.send(format!("GET /echo/tls HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
    let r = c.read_response().expect("a response");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(field(&r, "secure"), "true", "{}", r.text());
    assert_eq!(field(&r, "scheme"), "https");
    let cipher = field(&r, "cipher");
    assert!(cipher.starts_with("TLS_AES_"), "{cipher}");
    let key_size = field(&r, "key-size");
    let want = if cipher.contains("AES_128") {
        "128"
    } else {
        "256"
    };
    assert_eq!(key_size, want, "{cipher}");
    let session = field(&r, "ssl-session");
    assert!(
        session.len() == 32 && session.bytes().all(|b| b.is_ascii_hexdigit()),
        "{session}"
    );
    assert_eq!(field(&r, "ssl-protocol"), "TLSv1.3");
    // The session cookie Tomcat sets over https is Secure.
    let cookie = r.header("set-cookie").expect("a session cookie");
    assert!(cookie.contains("; Secure"), "{cookie}");
    // The same TLS connection: the same session id; another connection: another.
    c.send(format!("GET /echo/again HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
    assert_eq!(field(&c.read_response().unwrap(), "ssl-session"), session);
    let mut other = Client::connect_tls(tls, "site.test", pki.client_config()).unwrap();
    other.send(format!("GET /echo/other HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
    let r = other.read_response().unwrap();
    assert_ne!(field(&r, "ssl-session"), session);
    // A TLS 1.2 client: the protocol and an ECDHE suite, by their IANA names.
    let tls12 = pki.client_config_for(&[&rustls::version::TLS12]);
    let mut old = Client::connect_tls(tls, "site.test", tls12).unwrap();
    old.send(format!("GET /echo/old HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
    let r = old.read_response().unwrap();
    assert_eq!(field(&r, "ssl-protocol"), "TLSv1.2", "{}", r.text());
    let cipher = field(&r, "cipher");
    assert!(cipher.starts_with("TLS_ECDHE_"), "{cipher}");
    let want = if cipher.contains("AES_128") {
        "128"
    } else {
        "256"
    };
    assert_eq!(field(&r, "key-size"), want, "{cipher}");
    assert_eq!(field(&r, "secure"), "true");
    // Absolute redirects Tomcat makes are https, to the name and port the client asked for.
    c.send(format!("GET /echo/redirect HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 302, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some(format!("https://{host}/echo/target").as_str())
    );
    // Without a port in Host: the https default (443), which Tomcat leaves out.
    c.send(b"GET /echo/redirect HTTP/1.1\r\nHost: site.test\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(r.header("location"), Some("https://site.test/echo/target"));
    // The same requests over the plain listener: not secure, no SSL attributes, http redirects.
    let plain_host = format!("site.test:{}", plain.port());
    let r = ask(
        plain,
        format!("GET /echo/tls HTTP/1.1\r\nHost: {plain_host}\r\n\r\n").as_bytes(),
        false,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    for (key, value) in [
        ("secure", "false"),
        ("scheme", "http"),
        ("cipher", "null"),
        ("key-size", "null"),
        ("ssl-session", "null"),
        ("ssl-protocol", "null"),
    ] {
        assert_eq!(field(&r, key), value, "plain: {}", r.text());
    }
    assert!(!r.header("set-cookie").unwrap().contains("Secure"));
    let r = ask(
        plain,
        format!("GET /echo/redirect HTTP/1.1\r\nHost: {plain_host}\r\n\r\n").as_bytes(),
        false,
    );
    assert_eq!(
        r.header("location"),
        Some(format!("http://{plain_host}/echo/target").as_str())
    );
}

#[test]
fn wrong_or_missing_secret_gets_tomcats_403_and_a_warning() {
    let Some(tomcat) = Tomcat::start("node1") else {
        return;
    };
    for secret in [Some("not-the-secret"), None] {
        let p = Ringlb::start(&simple_config(&[ajp_member(tomcat.ajp, secret)], ""), 1);
        let r = ask(p.addr, b"GET /echo/x HTTP/1.1\r\nHost: t\r\n\r\n", false);
        assert_eq!(r.status, 403, "{secret:?}: {}", r.text());
        assert!(
            p.wait_log("does not match the connector"),
            "{secret:?}: {:?}",
            p.logs()
        );
        assert!(p
            .logs()
            .iter()
            .any(|l| l.contains(&format!("ajp://127.0.0.1:{}", tomcat.ajp))));
    }
}

/// Starts Tomcats with jvmRoute node1 and node2 side by side (each start takes seconds).
fn start_two() -> Option<(Tomcat, Tomcat)> {
    let one = std::thread::spawn(|| Tomcat::start("node1"));
    let two = Tomcat::start("node2");
    let one = one.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
    Some((one?, two?))
}

/// The value of a `key=value` line of the servlet's answer.
fn field(r: &Resp, key: &str) -> String {
    let text = r.text();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_string))
        .unwrap_or_else(|| panic!("no {key}= in the answer ({}): {text}", r.status))
}

/// The session id a response's `Set-Cookie` gives, if any.
fn new_session(r: &Resp) -> Option<String> {
    let v = r.header("set-cookie")?.strip_prefix("JSESSIONID=")?;
    v.split(';').next().map(str::to_string)
}

/// Asks for `target` with the session `id` as a cookie (or, `by_url`, as `;jsessionid=` in the
/// path).
fn ask_session(addr: std::net::SocketAddr, target: &str, id: &str, by_url: bool) -> Resp {
    let raw = if by_url {
        format!("GET {target};jsessionid={id}?q=1 HTTP/1.1\r\nHost: t\r\n\r\n")
    } else {
        format!("GET {target}?q=1 HTTP/1.1\r\nHost: t\r\nCookie: lang=en; JSESSIONID={id}\r\n\r\n")
    };
    ask(addr, raw.as_bytes(), false)
}

/// Asserts that Tomcat `node` answered within the session (not a new one).
fn assert_kept(r: &Resp, node: &str, what: &str) {
    assert_eq!(r.status, 200, "{what}: {}", r.text());
    assert_eq!(field(r, "node"), node, "{what}");
    assert_eq!(field(r, "session-new"), "false", "{what}");
    assert_eq!(r.header("set-cookie"), None, "{what}");
}

/// Asserts that the session moved: node2 answered with a new session of its own.
fn assert_moved_to_node2(r: &Resp, what: &str) {
    assert_eq!(r.status, 200, "{what}: {}", r.text());
    assert_eq!(field(r, "node"), "node2", "{what}");
    assert_eq!(field(r, "session-new"), "true", "{what}");
    let id = new_session(r).unwrap_or_else(|| panic!("{what}: no new session cookie"));
    assert!(id.ends_with(".node2"), "{what}: {id}");
}

#[test]
fn sticky_sessions_stay_on_their_tomcat_and_move_when_it_is_out() {
    let Some((t1, t2)) = start_two() else {
        return;
    };
    let ports = [(t1.http, t1.ajp), (t2.http, t2.ajp)];
    // Two ringlbs per protocol over the same Tomcats: one moves sessions, one has `nofailover`.
    let start = |ajp: bool, nofailover: bool| -> Ringlb {
        let members: Vec<String> = ports
            .iter()
            .zip(["node1", "node2"])
            .map(|(&(http, ajp_port), route)| {
                if ajp {
                    format!("{{ url = \"ajp://127.0.0.1:{ajp_port}\", secret = \"{SECRET}\", route = \"{route}\" }}")
                } else {
                    format!("{{ url = \"http://127.0.0.1:{http}\", route = \"{route}\" }}")
                }
            })
            .collect();
        let extra =
            format!("sticky_session = \"JSESSIONID|jsessionid\"\nnofailover = {nofailover}");
        Ringlb::start(&with_admin(&simple_config(&members, &extra), ""), 2)
    };
    let mut sessions = std::collections::BTreeMap::new();
    for ajp in [false, true] {
        let proto = if ajp { "ajp" } else { "http" };
        let (p, q) = (start(ajp, false), start(ajp, true));
        // New sessions are balanced: ask until each Tomcat made one (through ringlb).
        sessions.clear();
        for _ in 0..20 {
            let r = ask(
                p.addr,
                b"GET /echo/login HTTP/1.1\r\nHost: t\r\n\r\n",
                false,
            );
            assert_eq!(r.status, 200, "{proto}: {}", r.text());
            let node = field(&r, "node");
            let id = new_session(&r).expect("Tomcat sets a session cookie");
            assert!(
                id.ends_with(&format!(".{node}")),
                "{proto}: {id} from {node}"
            );
            sessions.insert(node, id);
            if sessions.len() == 2 {
                break;
            }
        }
        assert_eq!(sessions.len(), 2, "{proto}: {sessions:?}");
        // Each session stays on its Tomcat, by cookie and by URL, through either ringlb.
        for (node, id) in &sessions {
            for i in 0..20 {
                let via = if i % 2 == 0 { p.addr } else { q.addr };
                for by_url in [false, true] {
                    let r = ask_session(via, &format!("/echo/s{i}"), id, by_url);
                    assert_kept(&r, node, &format!("{proto} {node} by_url={by_url} #{i}"));
                }
            }
        }
        // node1 disabled: its session moves to node2 (a new session there), or gets 503.
        set_member_status(p.admin_addr(), 0, "disabled");
        set_member_status(q.admin_addr(), 0, "disabled");
        for by_url in [false, true] {
            let what = format!("{proto} node1 disabled, by_url={by_url}");
            assert_moved_to_node2(
                &ask_session(p.addr, "/echo/m", &sessions["node1"], by_url),
                &what,
            );
            let r = ask_session(q.addr, "/echo/m", &sessions["node1"], by_url);
            assert_eq!(r.status, 503, "{what}, nofailover: {}", r.text());
            let r = ask_session(q.addr, "/echo/m", &sessions["node2"], by_url);
            assert_kept(&r, "node2", &format!("{what}: node2's session"));
        }
    }
    // node1 stopped: its session (from the AJP round; sessions live in Tomcat, whatever the
    // protocol) moves to node2, or gets 503 with `nofailover`.
    drop(t1);
    for ajp in [false, true] {
        let (p, q) = (start(ajp, false), start(ajp, true));
        for i in 0..3 {
            let what = format!("ajp={ajp} node1 stopped #{i}");
            assert_moved_to_node2(
                &ask_session(p.addr, "/echo/d", &sessions["node1"], false),
                &what,
            );
            let r = ask_session(q.addr, "/echo/d", &sessions["node1"], i % 2 == 1);
            assert_eq!(r.status, 503, "{what}, nofailover: {}", r.text());
            assert_kept(
                &ask_session(q.addr, "/echo/d", &sessions["node2"], false),
                "node2",
                &what,
            );
        }
    }
    drop(t2);
}

/// How the mock container behaves.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    /// Answers "ok" and CPONG.
    Normal,
    /// Answers CPING by closing (as a Tomcat that is shutting down does).
    RefuseCping,
    /// Closes on a FORWARD_REQUEST without answering.
    CloseOnRequest,
    /// Answers a FORWARD_REQUEST with bytes that are not AJP.
    Garbage,
    /// Answers after three seconds.
    Slow,
    /// Answers after 300 ms, and never answers CPING (a hung container).
    HangCping,
}

/// A minimal AJP container: answers every FORWARD_REQUEST (ignoring body packets) with "ok" and
/// CPING with CPONG, unless its mode says otherwise. Counts connections and CPINGs.
struct MockContainer {
    addr: std::net::SocketAddr,
    cpings: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl MockContainer {
    fn start(mode: Mode) -> MockContainer {
        use std::io::Write;
        use std::sync::atomic::Ordering;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let cpings = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (cp, co) = (cpings.clone(), connections.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                co.fetch_add(1, Ordering::SeqCst);
                let cp = cp.clone();
                std::thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
                    loop {
                        let Some(payload) = crate::support::ajp_container::read_packet(&mut s)
                        else {
                            return;
                        };
                        match payload.first() {
                            Some(10) => {
                                cp.fetch_add(1, Ordering::SeqCst);
                                if mode == Mode::RefuseCping {
                                    return;
                                }
                                if mode == Mode::HangCping {
                                    continue;
                                }
                                let _ = s.write_all(&[b'A', b'B', 0, 1, 9]);
                            }
                            Some(2) if mode == Mode::CloseOnRequest => return,
                            Some(2) if mode == Mode::Garbage => {
                                let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
                            }
                            Some(2) => {
                                if mode == Mode::Slow {
                                    std::thread::sleep(Duration::from_secs(3));
                                }
                                if mode == Mode::HangCping {
                                    std::thread::sleep(Duration::from_millis(300));
                                }
                                let mut r = vec![
                                    b'A', b'B', 0, 0, 4, 0, 200, 0xFF, 0xFF, 0, 1, 0xA0, 0x03, 0,
                                    1, b'2', 0,
                                ];
                                let l = (r.len() - 4) as u16;
                                r[2..4].copy_from_slice(&l.to_be_bytes());
                                r.extend_from_slice(&[b'A', b'B', 0, 6, 3, 0, 2, b'o', b'k', 0]);
                                r.extend_from_slice(&[b'A', b'B', 0, 2, 5, 1]);
                                if s.write_all(&r).is_err() {
                                    return;
                                }
                            }
                            _ => {} // body packets
                        }
                    }
                });
            }
        });
        MockContainer {
            addr,
            cpings,
            connections,
        }
    }
}

#[test]
fn cping_before_reusing_an_idle_ajp_connection() {
    use std::sync::atomic::Ordering;
    for refuse in [false, true] {
        let m = MockContainer::start(if refuse {
            Mode::RefuseCping
        } else {
            Mode::Normal
        });
        let member = format!("{{ url = \"ajp://{}\", ping = \"1ms\" }}", m.addr);
        let p = Ringlb::start(&simple_config(&[member], ""), 1);
        for i in 0..3 {
            let r = get(p.addr, &format!("/{i}"));
            assert_eq!(
                (r.status, r.text().as_str()),
                (200, "ok"),
                "refuse_cping={refuse}"
            );
            // Idle past `ping` (1 ms), and long enough for the connection to be back in the pool
            // on a loaded machine (5 ms was not: the next request then opened a new one).
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            m.cpings.load(Ordering::SeqCst),
            2,
            "a CPING before each reuse"
        );
        let expected_connections = if refuse { 3 } else { 1 };
        assert_eq!(
            m.connections.load(Ordering::SeqCst),
            expected_connections,
            "refuse_cping={refuse}: a connection whose CPING failed is dropped for a new one"
        );
    }
}

#[test]
fn one_failed_cping_and_the_members_other_pooled_connections_are_not_tried() {
    use std::sync::atomic::Ordering;
    let m = MockContainer::start(Mode::HangCping);
    let member = format!("{{ url = \"ajp://{}\", ping = \"1ms\" }}", m.addr);
    let p = Ringlb::start(
        &simple_config(&[member], "connect_timeout = \"300ms\"\nidle_ttl = \"60s\""),
        1,
    );
    // Two requests at once (each answered after 300 ms): two pooled connections.
    let two: Vec<_> = (0..2)
        .map(|i| std::thread::spawn(move || get(p.addr, &format!("/{i}")).status))
        .collect();
    for t in two {
        assert_eq!(t.join().unwrap(), 200);
    }
    assert_eq!(m.connections.load(Ordering::SeqCst), 2);
    // Idle past `ping`. The newest then fails its CPING (no CPONG within connect_timeout); the
    // other is not CPINGed too (another wait): the request goes on a fresh connection.
    std::thread::sleep(Duration::from_millis(100));
    let r = get(p.addr, "/third");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    assert_eq!(
        m.cpings.load(Ordering::SeqCst),
        1,
        "one CPING, not one per pooled connection"
    );
    assert_eq!(m.connections.load(Ordering::SeqCst), 3);
}

#[test]
fn ajp_failures_map_to_502_and_504_and_fail_over() {
    for (mode, status) in [
        (Mode::CloseOnRequest, 502),
        (Mode::Garbage, 502),
        (Mode::Slow, 504),
    ] {
        let m = MockContainer::start(mode);
        let member = format!("{{ url = \"ajp://{}\" }}", m.addr);
        let p = Ringlb::start(&simple_config(&[member], "response_timeout = \"300ms\""), 1);
        let r = get(p.addr, "/");
        assert_eq!(
            (r.status, r.header("connection")),
            (status, Some("close")),
            "{mode:?}"
        );
    }
    // A refused AJP member fails over to the next member (here an HTTP one).
    let b = Backend::named("B");
    let p = Ringlb::start(
        &simple_config(
            &[
                format!("{{ url = \"ajp://{}\" }}", closed_port()),
                member(b.addr),
            ],
            "",
        ),
        1,
    );
    for _ in 0..3 {
        assert_eq!(get(p.addr, "/").header("x-backend"), Some("B"));
    }
}
