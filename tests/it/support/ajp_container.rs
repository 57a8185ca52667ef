//! A scriptable mock AJP13 container: it decodes and records every FORWARD_REQUEST, answers CPING
//! with CPONG, ignores request body packets, and answers a FORWARD_REQUEST with whatever bytes
//! its script returns (built with `send_headers`, `body_chunk` and `end_response`, which encode
//! any bytes, including ones a real container would never send).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request header name in a FORWARD_REQUEST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AjpName {
    /// 0xA0xx.
    Coded(u16),
    Named(Vec<u8>),
}

/// A decoded FORWARD_REQUEST.
#[derive(Debug, Clone)]
pub struct Forward {
    pub method: u8,
    pub uri: Vec<u8>,
    /// The client address the container is told.
    pub remote_addr: Vec<u8>,
    pub is_ssl: bool,
    pub headers: Vec<(AjpName, Vec<u8>)>,
}

impl Forward {
    /// The values of a header sent by name (any case).
    pub fn named(&self, name: &str) -> Vec<&[u8]> {
        self.headers
            .iter()
            .filter(
                |(n, _)| matches!(n, AjpName::Named(n) if n.eq_ignore_ascii_case(name.as_bytes())),
            )
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    /// The values of a coded header (e.g. 0xA008, content-length).
    pub fn coded(&self, code: u16) -> Vec<&[u8]> {
        self.headers
            .iter()
            .filter(|(n, _)| *n == AjpName::Coded(code))
            .map(|(_, v)| v.as_slice())
            .collect()
    }
}

struct Cursor<'a> {
    p: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.p.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }
    fn int(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.byte()?, self.byte()?]))
    }
    fn string(&mut self) -> Option<Vec<u8>> {
        let len = self.int()?;
        if len == 0xFFFF {
            return Some(Vec::new());
        }
        let end = self.pos + usize::from(len);
        let s = self.p.get(self.pos..end)?.to_vec();
        if self.p.get(end) != Some(&0) {
            return None;
        }
        self.pos = end + 1;
        Some(s)
    }
}

/// Decodes a FORWARD_REQUEST payload (prefix byte included) up to its headers.
pub fn decode_forward(payload: &[u8]) -> Option<Forward> {
    let mut c = Cursor { p: payload, pos: 0 };
    if c.byte()? != 2 {
        return None;
    }
    let method = c.byte()?;
    let _protocol = c.string()?;
    let uri = c.string()?;
    let remote_addr = c.string()?;
    let _remote_host = c.string()?;
    let _server_name = c.string()?;
    let _port = c.int()?;
    let is_ssl = c.byte()? != 0;
    let n = c.int()?;
    let mut headers = Vec::new();
    for _ in 0..n {
        let name = if c.p.get(c.pos) == Some(&0xA0) {
            AjpName::Coded(c.int()?)
        } else {
            AjpName::Named(c.string()?)
        };
        headers.push((name, c.string()?));
    }
    Some(Forward {
        method,
        uri,
        remote_addr,
        is_ssl,
        headers,
    })
}

fn packet(payload: &[u8]) -> Vec<u8> {
    let mut p = vec![b'A', b'B'];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
    out.push(0);
}

/// A response header name for `send_headers`: a code (0xA001..=0xA00B) or a string.
pub enum RespName<'a> {
    Coded(u16),
    Named(&'a [u8]),
}

/// SEND_HEADERS with these bytes, whatever they are.
pub fn send_headers(status: u16, reason: &[u8], headers: &[(RespName, &[u8])]) -> Vec<u8> {
    let mut p = vec![4];
    p.extend_from_slice(&status.to_be_bytes());
    string(&mut p, reason);
    p.extend_from_slice(&(headers.len() as u16).to_be_bytes());
    for (name, value) in headers {
        match name {
            RespName::Coded(code) => p.extend_from_slice(&code.to_be_bytes()),
            RespName::Named(n) => string(&mut p, n),
        }
        string(&mut p, value);
    }
    packet(&p)
}

/// SEND_BODY_CHUNK with Tomcat's trailing NUL.
pub fn body_chunk(data: &[u8]) -> Vec<u8> {
    let mut p = vec![3];
    p.extend_from_slice(&(data.len() as u16).to_be_bytes());
    p.extend_from_slice(data);
    p.push(0);
    packet(&p)
}

pub fn end_response(reuse: bool) -> Vec<u8> {
    packet(&[5, u8::from(reuse)])
}

type Script = dyn Fn(&Forward) -> Vec<u8> + Send + Sync;

pub struct AjpContainer {
    pub addr: SocketAddr,
    forwards: Arc<Mutex<Vec<Forward>>>,
    stop: Arc<AtomicBool>,
}

impl AjpContainer {
    pub fn start(script: impl Fn(&Forward) -> Vec<u8> + Send + Sync + 'static) -> AjpContainer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let forwards = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let (f, st) = (forwards.clone(), stop.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(s) = s else { continue };
                let (f, script) = (f.clone(), script.clone());
                std::thread::spawn(move || serve(s, &f, &*script));
            }
        });
        AjpContainer {
            addr,
            forwards,
            stop,
        }
    }

    pub fn forwards(&self) -> Vec<Forward> {
        self.forwards.lock().unwrap().clone()
    }

    /// The member table for ringlb's config.
    pub fn member(&self) -> String {
        format!("{{ url = \"ajp://{}\" }}", self.addr)
    }
}

impl Drop for AjpContainer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Reads one proxy → container packet and returns its payload (`None` at EOF, on an error or on a
/// bad magic).
pub fn read_packet(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = [0u8; 4];
    if s.read_exact(&mut head).is_err() || head[..2] != [0x12, 0x34] {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).ok()?;
    Some(payload)
}

fn serve(mut s: TcpStream, forwards: &Mutex<Vec<Forward>>, script: &Script) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    loop {
        let Some(payload) = read_packet(&mut s) else {
            return;
        };
        match payload.first() {
            // CPING: CPONG.
            Some(10) if s.write_all(&[b'A', b'B', 0, 1, 9]).is_err() => return,
            Some(10) => {}
            Some(2) => {
                let Some(fwd) = decode_forward(&payload) else {
                    return;
                };
                forwards.lock().unwrap().push(fwd.clone());
                if s.write_all(&script(&fwd)).is_err() {
                    return;
                }
            }
            _ => {} // body packets
        }
    }
}
