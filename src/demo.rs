//! `ringlb demo`: two tiny HTTP backends on loopback, each answering with its own name, and a
//! config that balances over them, so that a new user sees round robin at once.
//!
//! Demo only: blocking threads, one per connection; never used on the proxy's path.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use crate::config::Config;

/// Starts a demo backend named `name` on an ephemeral loopback port; returns its address.
pub fn start_backend(name: &'static str) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new()
        .name(format!("demo-{name}"))
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || serve(stream, name, addr));
            }
        })?;
    Ok(addr)
}

fn serve(mut stream: TcpStream, name: &str, addr: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => {
                let path = req.path.unwrap_or("/").to_string();
                let close = req.headers.iter().any(|h| {
                    h.name.eq_ignore_ascii_case("connection")
                        && h.value.eq_ignore_ascii_case(b"close")
                });
                let body_len: usize = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                    .unwrap_or(0);
                while buf.len() < n + body_len {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
                buf.drain(..n + body_len);
                let body =
                    format!("Hello from demo backend {name} ({addr}), you asked for {path}\n");
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nX-Backend: {name}\r\n\r\n{body}",
                    body.len()
                );
                if stream.write_all(response.as_bytes()).is_err() || close {
                    return;
                }
            }
            Ok(httparse::Status::Partial) => match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            },
            Err(_) => return,
        }
    }
}

/// The demo configuration: `listen` in front of the two backends, admin endpoint on `admin`.
pub fn config(listen: SocketAddr, admin: SocketAddr, a: SocketAddr, b: SocketAddr) -> Config {
    let text = format!(
        r#"
[[listen]]
address = "{listen}"

[admin]
address = "{admin}"

[[balancer]]
name = "demo"
retry = "5s"
members = [ {{ url = "http://{a}" }}, {{ url = "http://{b}" }} ]

[[route]]
path = "/"
balancer = "demo"
"#
    );
    Config::parse(&text).expect("the built-in demo config is valid")
}
