//! Routes that map their public prefix onto another member path (Apache's `ProxyPass /os
//! balancer://c/openspecimen` with `ProxyPassReverse` and `ProxyPassReverseCookiePath`), over HTTP
//! and AJP members: the member receives the member path; its redirects (at its own address, or a
//! path under the member path) and its cookie paths come back under the public prefix and the
//! client's Host; a route without a member path leaves them alone unless `reverse = true`.

use std::net::SocketAddr;

use crate::support::ajp_container::{
    body_chunk, end_response, send_headers, AjpContainer, RespName,
};
use crate::support::backend::{Backend, Reply};
use crate::support::client::{Client, Resp};
use crate::support::proxy::Ringlb;

fn route(member: &str, extra: &str) -> String {
    format!(
        "[[balancer]]\nname = \"app\"\nmembers = [{member}]\n\n[[route]]\npath = \"/os\"\n\
         balancer = \"app\"\n{extra}\n"
    )
}

fn ask(addr: SocketAddr, path: &str) -> Resp {
    let mut c = Client::connect(addr);
    c.send(format!("GET {path} HTTP/1.1\r\nHost: www.example.org\r\n\r\n").as_bytes());
    c.read_response().expect("a response")
}

/// A member like Tomcat with an app at /openspecimen: a login that redirects to its own address
/// and sets the session cookie on the context path, a relative redirect, and pages that say
/// which path they were asked for.
fn tomcat_like() -> Backend {
    let me = std::sync::Arc::new(std::sync::OnceLock::<SocketAddr>::new());
    let addr = me.clone();
    let b = Backend::start(move |r| {
        let own = addr.get().copied().unwrap();
        let redirect = |location: String, cookie: Option<&str>| {
            let mut headers = vec![("Location".to_string(), location)];
            if let Some(c) = cookie {
                headers.push(("Set-Cookie".to_string(), c.to_string()));
            }
            Reply::Full {
                status: 302,
                headers,
                body: Vec::new(),
                chunked: false,
            }
        };
        match r.path.as_str() {
            "/openspecimen/login" => redirect(
                format!("http://{own}/openspecimen/home"),
                Some("JSESSIONID=AB12; Path=/openspecimen; HttpOnly"),
            ),
            "/openspecimen/relative" => redirect("/openspecimen/next?x=1".into(), None),
            "/openspecimen/away" => redirect("https://sso.example.net/openspecimen".into(), None),
            p => Reply::Text(format!("page {p}")),
        }
    });
    me.set(b.addr).unwrap();
    b
}

#[test]
fn a_mapped_route_forwards_the_member_path_and_maps_redirects_and_cookies_back() {
    let m = tomcat_like();
    let member = format!("{{ url = \"http://{}\" }}", m.addr);
    let p = Ringlb::start(&route(&member, "member_path = \"/openspecimen\""), 1);
    let r = ask(p.addr, "/os/page?a=1");
    assert_eq!(r.text(), "page /openspecimen/page?a=1");
    assert_eq!(m.requests()[0].path, "/openspecimen/page?a=1");
    let r = ask(p.addr, "/os/login");
    assert_eq!(r.status, 302);
    assert_eq!(r.header("Location"), Some("http://www.example.org/os/home"));
    assert_eq!(
        r.header("Set-Cookie"),
        Some("JSESSIONID=AB12; Path=/os; HttpOnly")
    );
    assert_eq!(
        ask(p.addr, "/os/relative").header("Location"),
        Some("/os/next?x=1")
    );
    // Another site's URL is left as it is.
    let away = ask(p.addr, "/os/away");
    assert_eq!(
        away.header("Location"),
        Some("https://sso.example.net/openspecimen")
    );
    // Outside the route: ringlb's own 404; the member saw nothing more.
    assert_eq!(ask(p.addr, "/openspecimen/page").status, 404);
    assert_eq!(m.requests().len(), 4);
}

#[test]
fn without_a_member_path_redirects_are_left_alone_unless_reverse_is_on() {
    let m = tomcat_like();
    let member = format!("{{ url = \"http://{}\" }}", m.addr);
    let plain = route(&member, "").replace("path = \"/os\"", "path = \"/openspecimen\"");
    let p = Ringlb::start(&plain, 1);
    let r = ask(p.addr, "/openspecimen/login");
    assert_eq!(
        r.header("Location"),
        Some(format!("http://{}/openspecimen/home", m.addr).as_str())
    );
    drop(p);
    let p = Ringlb::start(
        &plain.replace(
            "balancer = \"app\"\n",
            "balancer = \"app\"\nreverse = true\n",
        ),
        1,
    );
    let r = ask(p.addr, "/openspecimen/login");
    assert_eq!(
        r.header("Location"),
        Some("http://www.example.org/openspecimen/home")
    );
    assert_eq!(
        r.header("Set-Cookie"),
        Some("JSESSIONID=AB12; Path=/openspecimen; HttpOnly")
    );
}

#[test]
fn an_ajp_member_gets_the_member_path_and_its_redirects_come_back_mapped() {
    let tomcat = AjpContainer::start(|f| {
        let mut out = if f.uri == b"/openspecimen/login" {
            send_headers(
                302,
                b"Found",
                &[
                    // Location and Set-Cookie as Tomcat codes them.
                    (
                        RespName::Coded(0xA006),
                        b"http://www.example.org/openspecimen/home",
                    ),
                    (
                        RespName::Coded(0xA007),
                        b"JSESSIONID=CD34; Path=/openspecimen; Domain=tomcat.internal",
                    ),
                    (RespName::Coded(0xA003), b"0"),
                ],
            )
        } else {
            send_headers(200, b"OK", &[(RespName::Coded(0xA003), b"2")])
        };
        if f.uri != b"/openspecimen/login" {
            out.extend(body_chunk(b"ok"));
        }
        out.extend(end_response(true));
        out
    });
    let p = Ringlb::start(
        &route(
            &tomcat.member(),
            "member_path = \"/openspecimen\"\n\
             cookie_domains = [{ from = \"tomcat.internal\", to = \"www.example.org\" }]",
        ),
        1,
    );
    let r = ask(p.addr, "/os/login");
    assert_eq!(r.status, 302);
    assert_eq!(r.header("Location"), Some("http://www.example.org/os/home"));
    assert_eq!(
        r.header("Set-Cookie"),
        Some("JSESSIONID=CD34; Path=/os; Domain=www.example.org")
    );
    assert_eq!(ask(p.addr, "/os/x").text(), "ok");
    let uris: Vec<Vec<u8>> = tomcat.forwards().into_iter().map(|f| f.uri).collect();
    assert_eq!(
        uris,
        [b"/openspecimen/login".to_vec(), b"/openspecimen/x".to_vec()]
    );
}

#[test]
fn an_exclusion_answers_404_and_forwards_nothing_on_a_kept_connection() {
    let member = Backend::named("A");
    let p = Ringlb::start(
        &format!(
            "[[balancer]]\nname = \"app\"\nmembers = [{{ url = \"http://{}\" }}]\n\n\
             [[route]]\npath = \"/\"\nbalancer = \"app\"\n\n[[route]]\npath = \"/app/private\"\nexclude = true\n",
            member.addr
        ),
        1,
    );
    let mut c = Client::connect(p.addr);
    // Every spelling of the excluded subtree, one connection: 404s, then a request that passes.
    for path in [
        "/app/private",
        "/app/private/x",
        "/app/private?q=1",
        "/app/private;jsessionid=1/x",
        "/app/%70rivate/x",
        "/app//private/x",
        "/app/./private/x",
        "/app/x/../private/x",
    ] {
        c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let r = c.read_response().expect("an answer");
        assert_eq!(r.status, 404, "{path}");
    }
    // HEAD: the same head, no body (a body would be read as the next response).
    c.send(b"HEAD /app/private/x HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response_to(true).expect("an answer to HEAD");
    assert_eq!(r.status, 404);
    assert!(r.body.is_empty());
    // A body on an excluded path is read whole; the connection goes on.
    c.send(b"POST /app/private/x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(c.read_response().expect("an answer to POST").status, 404);
    c.send(b"GET /app/privatex HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c
        .read_response()
        .expect("the next answer on the same connection");
    assert_eq!(r.status, 200, "/app/privatex is not under /app/private");
    assert_eq!(member.count(), 1, "only /app/privatex reached the member");
}

#[test]
fn cookie_domains_alone_rewrite_an_http_members_cookie_domain() {
    let member = Backend::start(|_| Reply::Full {
        status: 200,
        headers: vec![
            (
                "Set-Cookie".into(),
                "SSO=1; Domain=.Backend.Internal; Path=/os".into(),
            ),
            ("Set-Cookie".into(), "OTHER=2; Domain=elsewhere.org".into()),
        ],
        body: b"ok".to_vec(),
        chunked: false,
    });
    let p = Ringlb::start(
        &route(
            &format!("{{ url = \"http://{}\" }}", member.addr),
            "cookie_domains = [{ from = \"backend.internal\", to = \"example.org\" }]",
        ),
        1,
    );
    let r = ask(p.addr, "/os/x");
    let cookies: Vec<&str> = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        cookies,
        [
            "SSO=1; Domain=.example.org; Path=/os",
            "OTHER=2; Domain=elsewhere.org"
        ]
    );
    assert_eq!(
        member.requests()[0].path,
        "/os/x",
        "no member path: forwarded as it is"
    );
}

#[test]
fn a_redirect_that_mapped_would_name_another_host_comes_back_as_the_member_wrote_it() {
    // Under a public `/` mapped onto `/app/`, a member's `/app/\evil.example/x` (a path on its own
    // host) would become `/\evil.example/x`, which a browser follows to evil.example.
    let m = Backend::start(|r| Reply::Full {
        status: 302,
        headers: vec![(
            "Location".to_string(),
            if r.path == "/app/tab" {
                "/app/\t/evil.example".to_string()
            } else {
                "/app/\\evil.example/x".to_string()
            },
        )],
        body: Vec::new(),
        chunked: false,
    });
    let config = format!(
        "[[balancer]]\nname = \"app\"\nmembers = [{{ url = \"http://{}\" }}]\n\n[[route]]\n\
         path = \"/\"\nmember_path = \"/app/\"\nbalancer = \"app\"\n",
        m.addr
    );
    let p = Ringlb::start(&config, 1);
    let r = ask(p.addr, "/login");
    assert_eq!(m.requests()[0].path, "/app/login");
    assert_eq!(r.header("Location"), Some("/app/\\evil.example/x"));
    let r = ask(p.addr, "/tab");
    assert_eq!(r.header("Location"), Some("/app/\t/evil.example"));
}
