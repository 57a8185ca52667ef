//! A small, strict HTTP/1.1 client for the tests: raw bytes out, parsed responses in, every read
//! bounded by a timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub struct Client {
    pub s: TcpStream,
    /// The TLS session, for a client made by `connect_tls`.
    pub tls: Option<Box<rustls::ClientConnection>>,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_nodelay(true).unwrap();
        Client {
            s,
            tls: None,
            buf: Vec::new(),
        }
    }

    /// Connects and completes a TLS handshake, naming `sni` (an IP address: no SNI is sent).
    pub fn connect_tls(
        addr: SocketAddr,
        sni: &str,
        config: std::sync::Arc<rustls::ClientConfig>,
    ) -> std::io::Result<Client> {
        let name = rustls::pki_types::ServerName::try_from(sni.to_string())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let conn = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
        let mut c = Client::connect(addr);
        c.tls = Some(Box::new(conn));
        let tls = c.tls.as_mut().unwrap();
        while tls.is_handshaking() {
            tls.complete_io(&mut c.s)?;
        }
        Ok(c)
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self.tls.as_mut() {
            None => self.s.write_all(bytes),
            Some(t) => rustls::Stream::new(t.as_mut(), &mut self.s).write_all(bytes),
        }
    }

    fn read_some(&mut self, chunk: &mut [u8]) -> std::io::Result<usize> {
        match self.tls.as_mut() {
            None => self.s.read(chunk),
            Some(t) => rustls::Stream::new(t.as_mut(), &mut self.s).read(chunk),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.write_all(bytes).unwrap();
    }

    /// Sends, ignoring errors (the proxy may already have closed).
    pub fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.write_all(bytes).is_ok()
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        loop {
            match self.read_some(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return true;
                }
                // A signal (the suite starts and stops many processes) is not the proxy's doing.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    }

    /// Reads one response; `head_request` says the request was HEAD (no body).
    pub fn read_response_to(&mut self, head_request: bool) -> Option<Resp> {
        let (status, headers, n) = loop {
            let mut hs = [httparse::EMPTY_HEADER; 128];
            let mut p = httparse::Response::new(&mut hs);
            match p.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let headers: Vec<(String, String)> = p
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    break (p.code?, headers, n);
                }
                Ok(httparse::Status::Partial) => {
                    if !self.fill() {
                        return None;
                    }
                }
                Err(e) => panic!(
                    "bad response head {e:?}: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        };
        self.buf.drain(..n);
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        if (100..200).contains(&status) {
            return Some(resp);
        }
        if head_request || status == 204 || status == 304 {
            return Some(resp);
        }
        let te = resp
            .header("transfer-encoding")
            .map(str::to_ascii_lowercase);
        if te.is_some_and(|t| t.contains("chunked")) {
            loop {
                let i = loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    if !self.fill() {
                        return None;
                    }
                };
                let size = usize::from_str_radix(
                    String::from_utf8_lossy(&self.buf[..i])
                        .split(';')
                        .next()?
                        .trim(),
                    16,
                )
                .ok()?;
                self.buf.drain(..i + 2);
                if size == 0 {
                    while !self.buf.windows(2).any(|w| w == b"\r\n") {
                        if !self.fill() {
                            return None;
                        }
                    }
                    let i = self.buf.windows(2).position(|w| w == b"\r\n")?;
                    self.buf.drain(..i + 2);
                    break;
                }
                while self.buf.len() < size + 2 {
                    if !self.fill() {
                        return None;
                    }
                }
                resp.body.extend_from_slice(&self.buf[..size]);
                self.buf.drain(..size + 2);
            }
        } else if let Some(len) = resp
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
        {
            while self.buf.len() < len {
                if !self.fill() {
                    return None;
                }
            }
            resp.body = self.buf.drain(..len).collect();
        } else {
            while self.fill() {}
            resp.body = std::mem::take(&mut self.buf);
        }
        Some(resp)
    }

    pub fn read_response(&mut self) -> Option<Resp> {
        self.read_response_to(false)
    }

    /// True when the proxy closes the connection (EOF or reset) within the read timeout, once
    /// buffered bytes are consumed.
    pub fn is_closed(&mut self) -> bool {
        let mut chunk = [0u8; 1024];
        loop {
            match self.read_some(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    )
                }
            }
        }
    }

    /// Reads until the peer closes; on TLS, an end without close_notify is an error
    /// (`UnexpectedEof`), as a strict client sees it.
    pub fn read_until_close(&mut self) -> std::io::Result<Vec<u8>> {
        let mut all = std::mem::take(&mut self.buf);
        let mut chunk = [0u8; 16384];
        loop {
            match self.read_some(&mut chunk) {
                Ok(0) => return Ok(all),
                Ok(n) => all.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub fn set_timeout(&self, d: Duration) {
        self.s.set_read_timeout(Some(d)).unwrap();
    }
}

/// `GET path` on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> Resp {
    let mut c = Client::connect(addr);
    c.send(format!("GET {path} HTTP/1.1\r\nHost: test.local\r\n\r\n").as_bytes());
    c.read_response().expect("a response")
}
