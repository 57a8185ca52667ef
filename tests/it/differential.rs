//! Differential framing test: ringlb must never be desynchronised from a member (request smuggling).
//!
//! A seeded generator builds inputs, each a pipeline of one to three requests (GET/HEAD/DELETE/
//! OPTIONS without a body, POST/PUT/PATCH with a Content-Length or a chunked body with extensions
//! and trailers, bodies that look like requests), and mutates them: odd bytes (CR, LF, NUL, SP, HTAB,
//! VT, FF, 0x7f, 0x80+, `:`) in header names and values, whitespace before the colon, duplicated
//! and conflicting framing headers (two Content-Lengths, Content-Length with Transfer-Encoding,
//! Transfer-Encoding lists such as `gzip, chunked`, `chunked, identity`, `,chunked`, odd case, split
//! over two fields), `Connection: Transfer-Encoding` / `Connection: Content-Length`, odd
//! Content-Length values and lengths that do not match the body, chunk-size lines with bad hex,
//! `0x`, spaces, control bytes in extensions or a wrong size, chunk data without its CRLF, trailers
//! that look like a request line or have no colon or are folded, obs-fold in the head, bare LF and
//! bare CR line ends, HTTP/1.0 and bad versions, absolute-form targets, `Expect: 100-continue`,
//! a missing or repeated Host, empty lines before the request line, and `Connection: close`. Some
//! chunked bodies are shaped so that a member which ignores their Transfer-Encoding reads a
//! complete smuggled request (`/d/<case>/s`) out of the chunk-size line and chunk data. The bytes
//! go to ringlb in random pieces (each flushed, with pauses up to 1.5 ms), then the client shuts
//! down its write side and reads every response until ringlb closes (bounded).
//!
//! The member is `support::lenient`: it reads what ringlb forwards the careless way (first framing
//! header wins, Transfer-Encoding *containing* chunked, bare LF, trailers end at a line without a
//! colon, ...) and logs every message boundary it sees; each request's target carries a marker
//! `/d/<case>/<n>` so its log maps back to the input and the request in it. The invariant, per input:
//! (a) ringlb answered a request itself: its own error page (`Server: ringlb`, the reason as body);
//! a refusal says `Connection: close`, is the last response, and the connection closes (a 404 or
//! 503 for a whole request may keep it); nothing of that request reached the member; or (b) every
//! other response came from the member, the member saw exactly the requests the client got
//! responses for, in order, each as its own request (bytes the client sent inside another request
//! may reach the member as a request only where ringlb read them as one and the client got its
//! answer), and each body is the one the generator meant, for requests whose framing is
//! unambiguous; or (c) ringlb aborted mid-body: no response for that request, or its own 400 with
//! `Connection: close` (a framing error found in a streamed body), and the member saw only its
//! head and part of its body before ringlb closed the connection. Well-formed requests
//! must be forwarded and answered. Anything the member reads that maps to no response (garbage, an
//! extra request, a wait for bytes that never come) is a failure. After the last input, everything
//! the member logged late is judged again.
//!
//! ringlb runs once (one worker) for all inputs, a fresh client connection per input; after a
//! failing input ringlb is restarted and the member's connections are closed, so one desync does not
//! spill into the next input.
//!
//! Defaults: seed `0x5EED_D1FF_0009`, 1000 inputs (about 10 s in a debug build). Environment:
//! `RINGLB_DIFF_SEED` (decimal or `0x` hex) and `RINGLB_DIFF_CASES` (count) for a longer run;
//! `RINGLB_DIFF_CASE=<i>` runs only input `i` of the seed, to replay a failure (the report prints
//! the seed, the input's index and its bytes, escaped, split as they were sent).

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::support::lenient::{Event, EventKind, Lenient, SeenReq};
use crate::support::{hash, member, simple_config, Ringlb};

const DEFAULT_SEED: u64 = 0x5EED_D1FF_0009;
const DEFAULT_CASES: u64 = 1000;
/// How long the client waits for ringlb to answer and close, per input.
const CLIENT_WAIT: Duration = Duration::from_secs(10);
/// How long the member may take to become quiet after an input.
const SETTLE: Duration = Duration::from_millis(800);
/// Failing inputs printed in full.
const SHOW: usize = 12;

// ------------------------------------------------------------------------------------------------
// A small seeded PRNG (splitmix64).

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 0..n (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// lo..=hi.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }

    /// An index into `weights`, drawn by weight.
    fn weighted(&mut self, weights: &[usize]) -> usize {
        let mut r = self.below(weights.iter().sum());
        for (i, &w) in weights.iter().enumerate() {
            if r < w {
                return i;
            }
            r -= w;
        }
        weights.len() - 1
    }

    /// lo..=hi letters and digits.
    fn alnum(&mut self, lo: usize, hi: usize) -> Vec<u8> {
        const A: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let len = self.range(lo, hi);
        (0..len).map(|_| A[self.below(A.len())]).collect()
    }
}

// ------------------------------------------------------------------------------------------------
// The model of an input.

/// What ringlb may do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    /// Well-formed: must be forwarded, with the intended body.
    Valid,
    /// May be refused; if forwarded, with the intended body.
    Either,
    /// May be refused; if forwarded, only the message boundaries are checked.
    Undefined,
}

#[derive(Debug, Clone)]
struct Line {
    text: Vec<u8>,
    eol: Vec<u8>,
}

fn line(text: impl Into<Vec<u8>>) -> Line {
    Line {
        text: text.into(),
        eol: b"\r\n".to_vec(),
    }
}

#[derive(Debug, Clone)]
struct Chunk {
    size_line: Vec<u8>,
    eol: Vec<u8>,
    data: Vec<u8>,
    end: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Chunked {
    chunks: Vec<Chunk>,
    last: Line,
    trailers: Vec<Line>,
    end: Vec<u8>,
}

#[derive(Debug, Clone)]
enum Body {
    None,
    Raw(Vec<u8>),
    Chunked(Chunked),
}

#[derive(Debug, Clone)]
struct Req {
    n: usize,
    method: String,
    /// Bytes before the request line.
    prefix: Vec<u8>,
    request_line: Line,
    headers: Vec<Line>,
    head_end: Vec<u8>,
    body: Body,
    /// The body the member should see.
    intended: Vec<u8>,
    class: Class,
    /// ringlb closes the connection after answering this one.
    closes: bool,
    notes: Vec<String>,
}

impl Req {
    fn bytes(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(&self.request_line.text);
        out.extend_from_slice(&self.request_line.eol);
        for h in &self.headers {
            out.extend_from_slice(&h.text);
            out.extend_from_slice(&h.eol);
        }
        out.extend_from_slice(&self.head_end);
        match &self.body {
            Body::None => {}
            Body::Raw(b) => out.extend_from_slice(b),
            Body::Chunked(c) => {
                for ch in &c.chunks {
                    out.extend_from_slice(&ch.size_line);
                    out.extend_from_slice(&ch.eol);
                    out.extend_from_slice(&ch.data);
                    out.extend_from_slice(&ch.end);
                }
                out.extend_from_slice(&c.last.text);
                out.extend_from_slice(&c.last.eol);
                for t in &c.trailers {
                    out.extend_from_slice(&t.text);
                    out.extend_from_slice(&t.eol);
                }
                out.extend_from_slice(&c.end);
            }
        }
    }

    fn note(&mut self, class: Class, what: String) {
        self.class = self.class.max(class);
        self.notes.push(format!("{what} [{class:?}]"));
    }

    /// The index of the first header named `name`.
    fn find(&self, name: &str) -> Option<usize> {
        self.headers.iter().position(|h| {
            h.text.len() > name.len()
                && h.text[..name.len()].eq_ignore_ascii_case(name.as_bytes())
                && h.text[name.len()] == b':'
        })
    }

    fn insert(&mut self, rng: &mut Rng, text: impl Into<Vec<u8>>) {
        let at = rng.range(0, self.headers.len());
        self.headers.insert(at, line(text));
    }

    fn target(&self, case: u64) -> String {
        format!("/d/{case}/{}", self.n)
    }

    /// Gives the request a (valid) chunked body in place of what it had; the request line stays.
    fn make_chunked(&mut self, rng: &mut Rng, case: u64) {
        if let Some(i) = self.find("content-length") {
            self.headers.remove(i);
        }
        self.insert(rng, "Transfer-Encoding: chunked");
        let data = body_bytes(rng, case);
        let (body, intended) = chunked_body(rng, case, data);
        self.body = Body::Chunked(body);
        self.intended = intended;
    }
}

struct Case {
    index: u64,
    reqs: Vec<Req>,
    bytes: Vec<u8>,
    /// End offsets of the pieces written, and the pause before each (µs).
    pieces: Vec<(usize, u64)>,
}

impl Case {
    fn valid(&self) -> bool {
        self.reqs.iter().all(|r| r.class == Class::Valid)
    }

    /// How many leading requests must be answered by the member: the well-formed ones up to the
    /// first that closes the connection.
    fn must_answer(&self) -> usize {
        let mut n = 0;
        for r in &self.reqs {
            if r.class != Class::Valid {
                break;
            }
            n += 1;
            if r.closes {
                break;
            }
        }
        n
    }

    fn describe(&self) -> String {
        let mut s = String::new();
        for r in &self.reqs {
            s.push_str(&format!(
                "  request {} {}: {:?}{}\n",
                r.n,
                r.method,
                r.class,
                if r.notes.is_empty() {
                    String::new()
                } else {
                    format!(", {}", r.notes.join("; "))
                }
            ));
        }
        let mut start = 0;
        let pieces: Vec<String> = self
            .pieces
            .iter()
            .map(|&(end, pause)| {
                let p = format!("(+{pause}us) b\"{}\"", esc(&self.bytes[start..end]));
                start = end;
                p
            })
            .collect();
        s.push_str(&format!("  input, as sent: {}\n", pieces.join(" ")));
        s
    }
}

// ------------------------------------------------------------------------------------------------
// The generator.

fn body_bytes(rng: &mut Rng, case: u64) -> Vec<u8> {
    let len = match rng.below(100) {
        0..=9 => 0,
        10..=84 => rng.range(1, 48),
        85..=97 => rng.range(49, 3000),
        _ => rng.range(65 * 1024, 70 * 1024),
    };
    match rng.below(4) {
        0 => {
            // Looks like a request: a smuggling payload, if anything reads it as one.
            let mut b = format!("GET /d/{case}/s HTTP/1.1\r\nHost: t.local\r\n\r\n").into_bytes();
            if b.len() < len {
                let pad = rng.alnum(len - b.len(), len - b.len());
                b.extend_from_slice(&pad);
            }
            b
        }
        1 => (0..len)
            .map(|_| {
                if rng.chance(30) {
                    rng.pick(b"\r\n\0 :0;")
                } else {
                    rng.next() as u8
                }
            })
            .collect(),
        _ => rng.alnum(len, len),
    }
}

fn hex_size(rng: &mut Rng, size: usize) -> String {
    let h = match rng.below(10) {
        0..=5 => format!("{size:x}"),
        6..=7 => format!("{size:X}"),
        _ => format!("00{size:x}"),
    };
    let ext = if rng.chance(20) {
        rng.pick(&[
            ";a",
            ";a=b",
            ";name=\"quoted value\"",
            " ;a=1",
            ";a=1;b=2",
            ";q=\"a;b\"",
            "\t;x=y",
        ])
    } else {
        ""
    };
    format!("{h}{ext}")
}

/// A chunked body for `data`, and the data the member should decode.
fn chunked_body(rng: &mut Rng, case: u64, data: Vec<u8>) -> (Chunked, Vec<u8>) {
    if rng.chance(25) {
        // Shaped for a member that ignores the Transfer-Encoding: the size line reads as the request
        // line of `/d/<case>/s`, the chunk data as its head, and its Content-Length covers the rest
        // of the chunked body. Valid chunked syntax all the same (a quoted extension value).
        let pad = rng.alnum(0, 20);
        let k = pad.len() + b"\r\n0\r\n\r\n".len();
        let mut chunk = format!("Host: t.local\r\nContent-Length: {k}\r\n\r\n").into_bytes();
        chunk.extend_from_slice(&pad);
        let body = Chunked {
            chunks: vec![Chunk {
                size_line: format!("{:x};x=\" /d/{case}/s HTTP/1.1\"", chunk.len()).into_bytes(),
                eol: b"\r\n".to_vec(),
                data: chunk.clone(),
                end: b"\r\n".to_vec(),
            }],
            last: line("0"),
            trailers: vec![],
            end: b"\r\n".to_vec(),
        };
        return (body, chunk);
    }
    let mut chunks = Vec::new();
    let mut rest = &data[..];
    while !rest.is_empty() {
        let size = if rest.len() <= 64 {
            rng.range(1, rest.len())
        } else {
            rng.range(rest.len() / 4, rest.len())
        };
        chunks.push(Chunk {
            size_line: hex_size(rng, size).into_bytes(),
            eol: b"\r\n".to_vec(),
            data: rest[..size].to_vec(),
            end: b"\r\n".to_vec(),
        });
        rest = &rest[size..];
    }
    let last = match rng.below(10) {
        0 => line("000"),
        1 => line("0;a=b"),
        _ => line("0"),
    };
    let trailers = if rng.chance(15) {
        (0..rng.range(1, 2))
            .map(|_| line(rng.pick(&["X-Trailer: 1", "X-Sum: abc def", "Expires: 0"])))
            .collect()
    } else {
        vec![]
    };
    let body = Chunked {
        chunks,
        last,
        trailers,
        end: b"\r\n".to_vec(),
    };
    (body, data)
}

fn base_request(rng: &mut Rng, case: u64, n: usize) -> Req {
    let kind = rng.below(100);
    let method = match kind {
        0..=29 => "GET",
        30..=37 => rng.pick(&["HEAD", "DELETE", "OPTIONS"]),
        38..=67 => rng.pick(&["POST", "PUT", "PATCH"]),
        _ => rng.pick(&["POST", "PUT"]),
    };
    let mut target = format!("/d/{case}/{n}");
    if rng.chance(30) {
        target.push_str("?q=");
        let q = rng.alnum(1, 8);
        target.push_str(&String::from_utf8_lossy(&q));
    }
    let mut req = Req {
        n,
        method: method.into(),
        prefix: vec![],
        request_line: line(format!("{method} {target} HTTP/1.1")),
        headers: vec![line("Host: t.local")],
        head_end: b"\r\n".to_vec(),
        body: Body::None,
        intended: vec![],
        class: Class::Valid,
        closes: false,
        notes: vec![],
    };
    if rng.chance(50) {
        req.insert(rng, "User-Agent: diff/1.0");
    }
    if rng.chance(30) {
        req.insert(rng, "Accept: */*");
    }
    if rng.chance(30) {
        let v = rng.alnum(0, 12);
        let mut h = b"X-Pad: ".to_vec();
        h.extend_from_slice(&v);
        req.insert(rng, h);
    }
    match kind {
        0..=37 => {
            if method == "GET" && rng.chance(10) {
                req.insert(rng, "Content-Length: 0");
            }
        }
        38..=67 => {
            let data = body_bytes(rng, case);
            req.insert(rng, format!("Content-Length: {}", data.len()));
            req.intended = data.clone();
            req.body = Body::Raw(data);
        }
        _ => {
            req.insert(rng, "Transfer-Encoding: chunked");
            let data = body_bytes(rng, case);
            let (body, intended) = chunked_body(rng, case, data);
            req.body = Body::Chunked(body);
            req.intended = intended;
        }
    }
    req
}

/// Bytes that have no business in a header name, and mostly none in a value.
const ODD: &[u8] = &[
    b'\r', b'\n', 0, b' ', b'\t', 0x0b, 0x0c, 0x7f, 0x80, 0xa0, 0xff, b':',
];

type Mutation = fn(&mut Rng, &mut Req, u64) -> bool;

/// (weight, mutation). A mutation returns false when it does not apply to the request.
const MUTATIONS: &[(usize, Mutation)] = &[
    (14, m_connection_names_framing),
    (8, m_te_variant),
    (6, m_cl_and_te),
    (6, m_duplicate_cl),
    (5, m_cl_value),
    (4, m_cl_mismatch),
    (9, m_chunk_size_line),
    (4, m_chunk_data_end),
    (8, m_trailer),
    (6, m_odd_byte_in_name),
    (6, m_odd_byte_in_value),
    (4, m_space_before_colon),
    (4, m_obs_fold),
    (5, m_line_ending),
    (5, m_version),
    (4, m_absolute_form),
    (3, m_expect_continue),
    (3, m_request_line),
    (3, m_no_colon),
    (3, m_host),
    (3, m_leading_empty_line),
    (3, m_connection_close),
];

fn m_connection_names_framing(rng: &mut Rng, req: &mut Req, case: u64) -> bool {
    if matches!(req.body, Body::None) || (matches!(req.body, Body::Raw(_)) && rng.chance(50)) {
        req.make_chunked(rng, case);
    }
    let token = match req.body {
        Body::Chunked(_) => rng.pick(&[
            "Transfer-Encoding",
            "transfer-encoding",
            "TRANSFER-ENCODING",
            "keep-alive, Transfer-Encoding",
            "Transfer-Encoding, keep-alive",
        ]),
        _ => rng.pick(&[
            "Content-Length",
            "content-length",
            "keep-alive, Content-Length",
        ]),
    };
    req.insert(rng, format!("Connection: {token}"));
    req.note(Class::Either, format!("Connection: {token}"));
    true
}

fn m_te_variant(rng: &mut Rng, req: &mut Req, _case: u64) -> bool {
    match req.body {
        Body::Chunked(_) => {
            let Some(i) = req.find("transfer-encoding") else {
                return false;
            };
            if rng.chance(30) {
                let (a, b, class) = rng.pick(&[
                    // Well-formed HTTP, but ringlb implements no coding but chunked (501).
                    ("gzip", "chunked", Class::Either),
                    ("chunked", "gzip", Class::Undefined),
                    ("chunked", "chunked", Class::Undefined),
                    ("chunked", "", Class::Undefined),
                    ("identity", "chunked", Class::Either),
                ]);
                req.headers[i] = line(format!("Transfer-Encoding: {a}"));
                req.headers
                    .insert(i + 1, line(format!("Transfer-Encoding: {b}")));
                req.note(
                    class,
                    format!("two Transfer-Encoding fields: {a:?} then {b:?}"),
                );
            } else {
                let (v, class) = rng.pick(&[
                    ("Chunked", Class::Valid),
                    ("CHUNKED", Class::Valid),
                    // Well-formed HTTP, but ringlb implements no coding but chunked (501).
                    ("gzip, chunked", Class::Either),
                    ("gzip,chunked", Class::Either),
                    ("deflate , chunked", Class::Either),
                    ("chunked\t", Class::Valid),
                    ("identity, chunked", Class::Either),
                    (",chunked", Class::Either),
                    ("chunked,", Class::Either),
                    (" , chunked", Class::Either),
                    ("chunked, identity", Class::Undefined),
                    ("chunked, chunked", Class::Undefined),
                    ("chunked, gzip", Class::Undefined),
                    ("xchunked", Class::Undefined),
                    ("chunk", Class::Undefined),
                    ("chunked;q=1", Class::Undefined),
                    ("\"chunked\"", Class::Undefined),
                    ("identity", Class::Undefined),
                    ("gzip", Class::Undefined),
                    ("chunked\x0b", Class::Undefined),
                    ("chun ked", Class::Undefined),
                    ("", Class::Undefined),
                ]);
                let mut t = b"Transfer-Encoding: ".to_vec();
                t.extend_from_slice(v.as_bytes());
                req.headers[i] = line(t);
                req.note(
                    class,
                    format!("Transfer-Encoding: \"{}\"", esc(v.as_bytes())),
                );
            }
            true
        }
        Body::Raw(_) => {
            let v = rng.pick(&["gzip", "identity", "chunked", "gzip, chunked"]);
            req.insert(rng, format!("Transfer-Encoding: {v}"));
            req.note(
                Class::Undefined,
                format!("Transfer-Encoding: {v} on a Content-Length body"),
            );
            true
        }
        Body::None => {
            req.insert(rng, "Transfer-Encoding: chunked");
            req.note(
                Class::Undefined,
                "Transfer-Encoding: chunked with no chunked body".into(),
            );
            true
        }
    }
}

fn m_cl_and_te(rng: &mut Rng, req: &mut Req, _case: u64) -> bool {
    match &req.body {
        Body::Chunked(c) => {
            let data_len: usize = c.chunks.iter().map(|c| c.data.len()).sum();
            let mut raw = Vec::new();
            req.bytes(&mut raw);
            let v = rng.pick(&[0, 3, data_len, raw.len() % 97]);
            req.insert(rng, format!("Content-Length: {v}"));
            req.note(
                Class::Undefined,
                format!("Content-Length: {v} with Transfer-Encoding: chunked"),
            );
            true
        }
        Body::Raw(_) => {
            req.insert(rng, "Transfer-Encoding: chunked");
            req.note(
                Class::Undefined,
                "Transfer-Encoding: chunked with Content-Length".into(),
            );
            true
        }
        Body::None => false,
    }
}

fn m_duplicate_cl(rng: &mut Rng, req: &mut Req, _case: u64) -> bool {
    let (Body::Raw(b), Some(i)) = (&req.body, req.find("content-length")) else {
        return false;
    };
    let n = b.len();
    match rng.below(4) {
        0 => {
            req.insert(rng, format!("Content-Length: {n}"));
            req.note(Class::Either, "the same Content-Length twice".into());
        }
        1 => {
            req.headers[i] = line(format!("Content-Length: {n}, {n}"));
            req.note(Class::Either, format!("Content-Length: {n}, {n}"));
        }
        2 => {
            let m = rng.pick(&[0, n + 1, n / 2]);
            req.insert(rng, format!("Content-Length: {m}"));
            req.note(Class::Undefined, format!("a second Content-Length: {m}"));
        }
        _ => {
            let m = n + 3;
            req.headers[i] = line(format!("Content-Length: {n},{m}"));
            req.note(Class::Undefined, format!("Content-Length: {n},{m}"));
        }
    }
    true
}

fn m_cl_value(rng: &mut Rng, req: &mut Req, _case: u64) -> bool {
    let (Body::Raw(b), Some(i)) = (&req.body, req.find("content-length")) else {
        return false;
    };
    let n = b.len();
    let (v, class) = rng.pick(&[
        (format!("0{n}"), Class::Valid),
        (format!("  {n}"), Class::Valid),
        (format!("{n}\t"), Class::Valid),
        (format!("+{n}"), Class::Undefined),
        (format!("-{n}"), Class::Undefined),
        (format!("{n}.0"), Class::Undefined),
        (format!("0x{n:x}"), Class::Undefined),
        (format!("{n} {n}"), Class::Undefined),
        (format!("{n}a"), Class::Undefined),
        (format!("{n};"), Class::Undefined),
        (String::new(), Class::Undefined),
        ("99999999999999999999".into(), Class::Undefined),
    ]);
    req.headers[i] = line(format!("Content-Length: {v}"));
    req.note(class, format!("Content-Length: {v:?}"));
    true
}

fn m_cl_mismatch(rng: &mut Rng, req: &mut Req, _case: u64) -> bool {
    let (Body::Raw(b), Some(i)) = (&req.body, req.find("content-length")) else {
        return false;
    };
    let n = b.len();
    let k = rng.range(1, 6);
    let v = if n >= k && rng.chance(50) {
        n - k
    } else {
        n + k
    };
    req.headers[i] = line(format!("Content-Length: {v}"));
    req.note(
        Class::Undefined,
        format!("Content-Length: {v} for a {n}-byte body"),
    );
    true
}

fn m_chunk_size_line(rng: &mut Rng, req: &mut Req, _case: u64) -> bool {
    let Body::Chunked(c) = &mut req.body else {
        return false;
    };
    let on_last = c.chunks.is_empty() || rng.chance(30);
    let idx = rng.below(c.chunks.len().max(1));
    let size = if on_last { 0 } else { c.chunks[idx].data.len() };
    let h = format!("{size:x}");
    let extra = rng.below(16);
    let (new, class) = rng.pick(&[
        (h.to_uppercase(), Class::Valid),
        (format!("000{h}"), Class::Valid),
        (format!("{h};ext=\"v\""), Class::Valid),
        (format!("{h}g"), Class::Undefined),
        (format!("{h} {extra:x}"), Class::Undefined),
        (format!("0x{h}"), Class::Undefined),
        (format!(" {h}"), Class::Undefined),
        (format!("{h} "), Class::Undefined),
        (format!("+{h}"), Class::Undefined),
        (format!("-{h}"), Class::Undefined),
        (format!("{h};e\x01"), Class::Undefined),
        (format!("{h};\0"), Class::Undefined),
        (format!("{h};a\rb"), Class::Undefined),
        (format!("{h}\x0b"), Class::Undefined),
        ("fffffffffffffffff".into(), Class::Undefined),
        (String::new(), Class::Undefined),
        (format!("{:x}", size + 1), Class::Undefined),
        (format!("{:x}", size.saturating_sub(1)), Class::Undefined),
    ]);
    let eol: &[u8] = match rng.below(8) {
        0 => b"\n",
        1 => b"\r",
        2 => b"\r\r\n",
        _ => b"\r\n",
    };
    let class = if eol == b"\r\n" {
        class
    } else {
        Class::Undefined
    };
    if on_last {
        c.last = Line {
            text: new.clone().into_bytes(),
            eol: eol.to_vec(),
        };
    } else {
        c.chunks[idx].size_line = new.clone().into_bytes();
        c.chunks[idx].eol = eol.to_vec();
    }
    req.note(
        class,
        format!(
            "{} chunk-size line \"{}\" ending \"{}\"",
            if on_last { "last" } else { "a" },
            esc(new.as_bytes()),
            esc(eol)
        ),
    );
    true
}

fn m_chunk_data_end(rng: &mut Rng, req: &mut Req, _case: u64) -> bool {
    let Body::Chunked(c) = &mut req.body else {
        return false;
    };
    if c.chunks.is_empty() {
        return false;
    }
    let i = rng.below(c.chunks.len());
    let end = rng
        .pick(&["\n", "", "\r", "XX", "\r\r\n", " \r\n"])
        .as_bytes();
    c.chunks[i].end = end.to_vec();
    req.note(
        Class::Undefined,
        format!("chunk data ends with \"{}\"", esc(end)),
    );
    true
}

fn m_trailer(rng: &mut Rng, req: &mut Req, case: u64) -> bool {
    let Body::Chunked(c) = &mut req.body else {
        return false;
    };
    let (lines, class): (Vec<Line>, Class) = match rng.below(11) {
        0 => (vec![line("X-Trailer: v")], Class::Valid),
        1 => (vec![line("Content-Length: 5")], Class::Either),
        2 => (vec![line("Transfer-Encoding: chunked")], Class::Either),
        3 | 4 => (
            vec![
                line(format!("GET /d/{case}/s HTTP/1.1")),
                line("Host: t.local"),
            ],
            Class::Undefined,
        ),
        5 => (vec![line("nocolon")], Class::Undefined),
        6 => (vec![line("X-T: a"), line(" folded")], Class::Undefined),
        7 => (
            vec![Line {
                text: b"X-T: a".to_vec(),
                eol: b"\n".to_vec(),
            }],
            Class::Undefined,
        ),
        8 => (vec![line(" folded")], Class::Undefined),
        9 => (
            vec![
                line(format!(" GET /d/{case}/s HTTP/1.1")),
                line("Host: t.local"),
            ],
            Class::Undefined,
        ),
        _ => (vec![line(&b"X-T: a\0b"[..])], Class::Undefined),
    };
    let what: Vec<String> = lines
        .iter()
        .map(|l| format!("\"{}{}\"", esc(&l.text), esc(&l.eol)))
        .collect();
    c.trailers.extend(lines);
    req.note(class, format!("trailer {}", what.join(" ")));
    true
}

fn m_odd_byte_in_name(rng: &mut Rng, req: &mut Req, _case: u64) -> bool {
    if req.headers.is_empty() {
        return false;
    }
    let i = rng.below(req.headers.len());
    let colon = req.headers[i]
        .text
        .iter()
        .position(|&b| b == b':')
        .unwrap_or(0);
    let at = rng.range(0, colon);
    let b = rng.pick(ODD);
    req.headers[i].text.insert(at, b);
    let shown = esc(&req.headers[i].text);
    req.note(Class::Undefined, format!("header \"{shown}\""));
    true
}

fn m_odd_byte_in_value(rng: &mut Rng, req: &mut Req, _case: u64) -> bool {
    if req.headers.is_empty() {
        return false;
    }
    let i = rng.below(req.headers.len());
    let text = &req.headers[i].text;
    let Some(colon) = text.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = text[..colon].to_ascii_lowercase();
    let at = rng.range(colon + 1, text.len());
    let b = rng.pick(ODD);
    let inside = at > colon + 2 && at < text.len();
    let class = match (name.as_slice(), b) {
        (b"content-length" | b"transfer-encoding" | b"connection", _) => Class::Undefined,
        (b"host", b' ' | b'\t' | 0x80..) => Class::Either,
        (_, b' ' | b'\t' | 0x80..) if inside => Class::Valid,
        (_, b' ' | b'\t') => Class::Valid,
        _ => Class::Undefined,
    };
    req.headers[i].text.insert(at, b);
    let shown = esc(&req.headers[i].text);
    req.note(class, format!("header \"{shown}\""));
    true
}

fn m_space_before_colon(rng: &mut Rng, req: &mut Req, _case: u64) -> bool {
    let framing = req
        .find("transfer-encoding")
        .or_else(|| req.find("content-length"));
    let i = match framing {
        Some(i) if rng.chance(60) => i,
        _ => rng.below(req.headers.len().max(1)),
    };
    let Some(h) = req.headers.get_mut(i) else {
        return false;
    };
    let Some(colon) = h.text.iter().position(|&b| b == b':') else {
        return false;
    };
    let ws = rng.pick(&[" ", "\t", "  "]);
    h.text.splice(colon..colon, ws.bytes());
    let shown = esc(&h.text);
    req.note(Class::Undefined, format!("header \"{shown}\""));
    true
}

fn m_obs_fold(rng: &mut Rng, req: &mut Req, _case: u64) -> bool {
    if let (Body::Chunked(_), Some(i), true) =
        (&req.body, req.find("transfer-encoding"), rng.chance(50))
    {
        req.headers[i] = line("Transfer-Encoding:");
        req.headers.insert(i + 1, line(" chunked"));
        req.note(
            Class::Undefined,
            "Transfer-Encoding folded onto a continuation line".into(),
        );
        return true;
    }
    if req.headers.is_empty() {
        return false;
    }
    let i = rng.below(req.headers.len());
    let fold = rng.pick(&[" folded", "\tfolded", " "]);
    req.headers.insert(i + 1, line(fold));
    req.note(Class::Undefined, format!("obs-fold line {fold:?}"));
    true
}

fn m_line_ending(rng: &mut Rng, req: &mut Req, _case: u64) -> bool {
    let (eol, class) = rng.pick(&[
        ("\n", Class::Either),
        ("\n", Class::Either),
        ("\r", Class::Undefined),
        ("\r\r\n", Class::Undefined),
        ("\n\r", Class::Undefined),
    ]);
    let eol = eol.as_bytes();
    let which = rng.below(req.headers.len() + 2);
    let what = if which == 0 {
        req.request_line.eol = eol.to_vec();
        "the request line".to_string()
    } else if which == 1 {
        req.head_end = eol.to_vec();
        "the head's final line".to_string()
    } else {
        let h = &mut req.headers[which - 2];
        h.eol = eol.to_vec();
        format!("header \"{}\"", esc(&h.text))
    };
    req.note(class, format!("{what} ends with \"{}\"", esc(eol)));
    true
}

fn m_version(rng: &mut Rng, req: &mut Req, case: u64) -> bool {
    let target = req.target(case);
    let method = req.method.clone();
    if rng.chance(60) {
        req.request_line = line(format!("{method} {target} HTTP/1.0"));
        let keep = rng.chance(50);
        if keep {
            req.insert(rng, "Connection: keep-alive");
        }
        let class = if matches!(req.body, Body::Chunked(_)) {
            Class::Undefined
        } else {
            Class::Valid
        };
        req.note(
            class,
            format!("HTTP/1.0{}", if keep { " keep-alive" } else { "" }),
        );
    } else {
        let v = rng.pick(&[
            "HTTP/1.2",
            "HTTP/2.0",
            "http/1.1",
            "HTTP/1.1 ",
            "HTTP/1.10",
            "HTTP/01.1",
            "HTTP/1",
        ]);
        req.request_line = line(format!("{method} {target} {v}"));
        req.note(Class::Undefined, format!("version {v:?}"));
    }
    true
}

fn m_absolute_form(rng: &mut Rng, req: &mut Req, case: u64) -> bool {
    let path = req.target(case);
    let (t, class) = rng.pick(&[
        (format!("http://t.local{path}"), Class::Valid),
        (format!("HTTP://T.LOCAL:8080{path}"), Class::Valid),
        (format!("http://t.local:80{path}?x"), Class::Valid),
        (format!("https://t.local{path}"), Class::Either),
        (format!("http://t.local?m={path}"), Class::Either),
        (format!("//t.local{path}"), Class::Undefined),
        (format!("t.local{path}"), Class::Undefined),
    ]);
    let method = req.method.clone();
    let rest = String::from_utf8_lossy(&req.request_line.text)
        .rsplit(' ')
        .next()
        .unwrap_or("HTTP/1.1")
        .to_string();
    req.request_line.text = format!("{method} {t} {rest}").into_bytes();
    req.note(class, format!("target {t}"));
    true
}

fn m_expect_continue(rng: &mut Rng, req: &mut Req, _case: u64) -> bool {
    req.insert(rng, "Expect: 100-continue");
    req.note(Class::Valid, "Expect: 100-continue".into());
    true
}

fn m_request_line(rng: &mut Rng, req: &mut Req, _case: u64) -> bool {
    let text = &mut req.request_line.text;
    let sp = text.iter().position(|&b| b == b' ').unwrap_or(0);
    match rng.below(4) {
        0 => {
            let at = rng.range(0, sp);
            text.insert(at, rng.pick(ODD));
        }
        1 => text.insert(sp, b' '),
        2 => text[sp] = b'\t',
        _ => {
            // An odd byte in the query, after the marker.
            let end = text.iter().rposition(|&b| b == b' ').unwrap_or(text.len());
            text.splice(end..end, [b'?', rng.pick(ODD)]);
        }
    }
    let shown = esc(text);
    req.note(Class::Undefined, format!("request line \"{shown}\""));
    true
}

fn m_no_colon(rng: &mut Rng, req: &mut Req, _case: u64) -> bool {
    let l = rng.pick(&["nocolon", "X Pad value", "Transfer-Encoding chunked"]);
    req.insert(rng, l);
    req.note(
        Class::Undefined,
        format!("header line without a colon {l:?}"),
    );
    true
}

fn m_host(rng: &mut Rng, req: &mut Req, _case: u64) -> bool {
    let Some(i) = req.find("host") else {
        return false;
    };
    match rng.below(4) {
        0 => {
            req.headers.remove(i);
            req.note(Class::Undefined, "no Host".into());
        }
        1 => {
            req.insert(rng, "Host: t.local");
            req.note(Class::Undefined, "Host twice".into());
        }
        2 => {
            req.headers[i] = line("Host: t.local:80");
            req.note(Class::Valid, "Host with a port".into());
        }
        _ => {
            req.headers[i] = line("Host:");
            req.note(Class::Either, "empty Host".into());
        }
    }
    true
}

fn m_leading_empty_line(rng: &mut Rng, req: &mut Req, _case: u64) -> bool {
    let (p, class) = rng.pick(&[
        ("\r\n", Class::Valid),
        ("\n", Class::Either),
        ("\r\n\r\n", Class::Either),
        (" ", Class::Undefined),
        ("\r", Class::Undefined),
    ]);
    let p = p.as_bytes();
    req.prefix = p.to_vec();
    req.note(class, format!("\"{}\" before the request line", esc(p)));
    true
}

fn m_connection_close(rng: &mut Rng, req: &mut Req, _case: u64) -> bool {
    req.insert(rng, "Connection: close");
    req.note(Class::Valid, "Connection: close".into());
    true
}

/// Whether ringlb closes after answering `req` (only meaningful for well-formed requests).
fn closes(req: &Req) -> bool {
    let http10 = req.request_line.text.ends_with(b"HTTP/1.0");
    let mut close = false;
    let mut keep = false;
    for h in &req.headers {
        if h.text.len() > 11 && h.text[..11].eq_ignore_ascii_case(b"connection:") {
            let v = h.text[11..].to_ascii_lowercase();
            for t in v.split(|&b| b == b',') {
                close |= t.trim_ascii() == b"close";
                keep |= t.trim_ascii() == b"keep-alive";
            }
        }
    }
    close || (http10 && !keep)
}

fn generate(seed: u64, index: u64) -> Case {
    let mut rng = Rng::new(seed ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03));
    rng.next();
    let count = 1 + rng.weighted(&[50, 35, 15]);
    let mut reqs: Vec<Req> = (0..count)
        .map(|n| base_request(&mut rng, index, n))
        .collect();
    let mutations = rng.weighted(&[30, 50, 20]);
    let weights: Vec<usize> = MUTATIONS.iter().map(|m| m.0).collect();
    for _ in 0..mutations {
        for _ in 0..8 {
            let m = MUTATIONS[rng.weighted(&weights)].1;
            let r = rng.below(reqs.len());
            if m(&mut rng, &mut reqs[r], index) {
                break;
            }
        }
    }
    for r in &mut reqs {
        r.closes = closes(r);
    }
    let mut bytes = Vec::new();
    let mut first_head_end = 0;
    for (i, r) in reqs.iter().enumerate() {
        r.bytes(&mut bytes);
        if i == 0 {
            let mut head_only = r.clone();
            head_only.body = Body::None;
            let mut h = Vec::new();
            head_only.bytes(&mut h);
            first_head_end = h.len();
        }
    }
    let mut cuts: Vec<usize> = (0..[0, 1, 2, 3, 5][rng.weighted(&[30, 25, 20, 15, 10])])
        .map(|_| rng.range(1, bytes.len().max(2) - 1))
        .collect();
    if rng.chance(30) {
        cuts.push(first_head_end);
    }
    cuts.push(bytes.len());
    cuts.retain(|&c| c > 0 && c <= bytes.len());
    cuts.sort_unstable();
    cuts.dedup();
    let pieces = cuts
        .into_iter()
        .enumerate()
        .map(|(i, c)| (c, if i == 0 { 0 } else { rng.range(0, 1500) as u64 }))
        .collect();
    Case {
        index,
        reqs,
        bytes,
        pieces,
    }
}

// ------------------------------------------------------------------------------------------------
// The client side.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// ringlb closed (EOF).
    Closed,
    /// The connection was reset.
    Reset,
    /// Nothing more and no close within `CLIENT_WAIT`.
    Timeout,
}

struct Seen {
    raw: Vec<u8>,
    end: End,
}

/// Sends the case's pieces on a fresh connection, half-closes, and reads until ringlb closes.
fn exchange(addr: SocketAddr, case: &Case) -> Seen {
    let mut s = TcpStream::connect(addr).expect("connect to ringlb");
    s.set_nodelay(true).unwrap();
    let mut r = s.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let deadline = Instant::now() + CLIENT_WAIT;
        let mut raw = Vec::new();
        let mut chunk = [0u8; 65536];
        let end = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break End::Timeout;
            }
            r.set_read_timeout(Some(left)).unwrap();
            match r.read(&mut chunk) {
                Ok(0) => break End::Closed,
                Ok(n) => raw.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break End::Timeout
                }
                Err(_) => break End::Reset,
            }
        };
        Seen { raw, end }
    });
    let mut start = 0;
    for &(end, pause) in &case.pieces {
        if pause > 0 {
            std::thread::sleep(Duration::from_micros(pause));
        }
        if s.write_all(&case.bytes[start..end]).is_err() || s.flush().is_err() {
            break;
        }
        start = end;
    }
    let _ = s.shutdown(Shutdown::Write);
    let seen = reader.join().expect("reader thread");
    drop(s);
    seen
}

#[derive(Debug)]
enum Got {
    Interim(u16),
    /// From the member: its sequence number.
    Member {
        seq: u64,
        status: u16,
    },
    /// ringlb's own response.
    Own {
        status: u16,
        close: bool,
    },
    Unknown {
        status: u16,
        head: String,
    },
}

/// Splits what the client read into responses; the second value describes bytes that are not a
/// complete response.
fn responses(raw: &[u8]) -> (Vec<Got>, Option<String>) {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < raw.len() {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut p = httparse::Response::new(&mut hs);
        let n = match p.parse(&raw[pos..]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                return (
                    out,
                    Some(format!("truncated response head \"{}\"", esc(&raw[pos..]))),
                )
            }
            Err(e) => {
                return (
                    out,
                    Some(format!(
                        "bad response head ({e:?}) \"{}\"",
                        esc(&raw[pos..])
                    )),
                )
            }
        };
        let status = p.code.unwrap_or(0);
        let header = |name: &str| {
            p.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).into_owned())
        };
        let head = esc(&raw[pos..pos + n]);
        pos += n;
        if (100..200).contains(&status) {
            out.push(Got::Interim(status));
            continue;
        }
        let len = header("content-length").and_then(|v| v.trim().parse::<usize>().ok());
        let Some(len) = len else {
            return (
                out,
                Some(format!("response without Content-Length \"{head}\"")),
            );
        };
        if raw.len() - pos < len {
            return (
                out,
                Some(format!("truncated response body after \"{head}\"")),
            );
        }
        let body = &raw[pos..pos + len];
        pos += len;
        if let Some(seq) = header("x-diff-id").and_then(|v| v.trim().parse().ok()) {
            out.push(Got::Member { seq, status });
        } else if header("server").as_deref() == Some("ringlb")
            && body.strip_suffix(b"\n").is_some_and(|r| !r.is_empty())
        {
            let close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
            out.push(Got::Own { status, close });
        } else {
            out.push(Got::Unknown { status, head });
        }
    }
    (out, None)
}

// ------------------------------------------------------------------------------------------------
// The invariant.

fn seen_req(r: &SeenReq) -> String {
    let body = if r.body_len > r.body.len().min(200) {
        let shown = r.body.len().min(200);
        format!("{}...({} bytes)", esc(&r.body[..shown]), r.body_len)
    } else {
        esc(&r.body)
    };
    format!(
        "seq {} \"{} {}\" framing {} body \"{body}\"{}",
        r.seq,
        esc(&r.method),
        esc(&r.target),
        r.framing,
        if r.trailers.is_empty() {
            String::new()
        } else {
            let t: Vec<String> = r.trailers.iter().map(|t| esc(t)).collect();
            format!(" trailers {t:?}")
        }
    )
}

fn event_text(e: &Event) -> String {
    let what = match &e.kind {
        EventKind::Request(r) => format!("request {}", seen_req(r)),
        EventKind::Garbage { why, bytes } => format!("garbage ({why}): \"{}\"", esc(bytes)),
        EventKind::Incomplete { why, head, bytes } => format!(
            "incomplete ({why}){}; unread \"{}\"",
            head.as_ref()
                .map(|h| format!(" after {}", seen_req(h)))
                .unwrap_or_default(),
            esc(bytes)
        ),
        EventKind::Stuck { bytes } => format!("stuck mid-message, buffered \"{}\"", esc(bytes)),
    };
    format!("conn {}: {what}", e.conn)
}

/// The index a member request's marker names, if it is one of the case's requests.
fn index_of(r: &SeenReq, case: &Case) -> Option<usize> {
    let m = crate::support::lenient::Marker::find(&r.target)?;
    let n: usize = m.n.parse().ok()?;
    (m.case == case.index && n < case.reqs.len()).then_some(n)
}

/// Checks one input against what the client got and what the member logged for it. Returns the
/// problems, each starting with its class.
fn judge(
    case: &Case,
    seen: &Seen,
    events: &[Event],
    request: &dyn Fn(u64) -> Option<SeenReq>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut requests: Vec<&SeenReq> = Vec::new();
    let mut incomplete: Vec<(&Event, Option<&SeenReq>)> = Vec::new();
    for e in events {
        match &e.kind {
            EventKind::Request(r) => requests.push(r),
            EventKind::Garbage { .. } => problems.push(format!(
                "member-garbage: the member could not read what ringlb forwarded: {}",
                event_text(e)
            )),
            EventKind::Stuck { .. } => problems.push(format!(
                "member-stuck: the member waits for bytes ringlb will not send: {}",
                event_text(e)
            )),
            EventKind::Incomplete { head: None, .. } => {
                problems.push(format!("member-partial-head: {}", event_text(e)))
            }
            EventKind::Incomplete { head: Some(h), .. } => incomplete.push((e, Some(h))),
        }
    }
    let (got, leftover) = responses(&seen.raw);
    if let Some(l) = leftover {
        problems.push(format!("client-unparsable: {l}"));
    }
    if seen.end == End::Timeout {
        problems.push(format!(
            "client-hang: ringlb neither answered nor closed within {CLIENT_WAIT:?}"
        ));
    }
    for g in &got {
        if let Got::Interim(status) = g {
            if *status != 100 {
                problems.push(format!("client-unknown-response: an interim {status}"));
            }
        }
    }
    let finals: Vec<&Got> = got
        .iter()
        .filter(|g| !matches!(g, Got::Interim(_)))
        .collect();
    let mut own = false;
    for (i, g) in finals.iter().enumerate() {
        match g {
            Got::Own { status, close } => {
                own = true;
                // ringlb's own answer to a whole request it did not forward (404, 503) may keep
                // the connection; a refusal closes it, and then nothing may follow.
                if *close && i + 1 != finals.len() {
                    problems.push(format!(
                        "ringlb-error-not-last: ringlb's own {status} with Connection: close was followed by more responses"
                    ));
                }
                if *status < 400 {
                    problems.push(format!(
                        "ringlb-error-status: ringlb's own response has status {status}"
                    ));
                }
            }
            Got::Member { seq, status } if *status != 200 => problems.push(format!(
                "client-altered-status: the member's 200 (seq {seq}) reached the client as {status}"
            )),
            Got::Unknown { status, head } => problems.push(format!(
                "client-unknown-response: a {status} from neither ringlb nor the member: \"{head}\""
            )),
            _ => {}
        }
    }
    let client_seqs: Vec<u64> = finals
        .iter()
        .filter_map(|g| match g {
            Got::Member { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    let member_seqs: Vec<u64> = requests.iter().map(|r| r.seq).collect();
    for r in &requests {
        if !client_seqs.contains(&r.seq) {
            problems.push(format!(
                "member-extra-request: the member read a request the client got no response for: {}",
                seen_req(r)
            ));
        }
    }
    for seq in &client_seqs {
        if !member_seqs.contains(seq) {
            let whose = request(*seq).map(|r| seen_req(&r));
            problems.push(format!(
                "client-foreign-response: the client got the member's response to another request: {}",
                whose.unwrap_or_else(|| format!("seq {seq}, not in the member's log"))
            ));
        }
    }
    let common_client: Vec<u64> = client_seqs
        .iter()
        .copied()
        .filter(|s| member_seqs.contains(s))
        .collect();
    let common_member: Vec<u64> = member_seqs
        .iter()
        .copied()
        .filter(|s| client_seqs.contains(s))
        .collect();
    if common_client != common_member {
        problems.push(format!(
            "order: the member answered {common_member:?}, the client got {common_client:?}"
        ));
    }
    let mut last_n: Option<usize> = None;
    let mut answered = Vec::new();
    for r in &requests {
        let Some(n) = index_of(r, case) else {
            // Bytes the generator meant as part of another request (a payload in a body or a
            // trailer). ringlb may read them as a request of their own where the mutation left
            // it no other reading; then the client got the answer, and all is consistent.
            if !client_seqs.contains(&r.seq) {
                problems.push(format!(
                    "smuggled-request: the member read, as a request of its own, bytes the client sent inside another request, and the client got no response for it: {}",
                    seen_req(r)
                ));
            }
            continue;
        };
        if last_n.is_some_and(|l| n <= l) {
            problems.push(format!(
                "order: request {n} reached the member after request {}",
                last_n.unwrap_or(0)
            ));
        }
        last_n = Some(n);
        if client_seqs.contains(&r.seq) {
            answered.push(n);
        }
        let spec = &case.reqs[n];
        let framing_sure = case.reqs[..=n].iter().all(|q| q.class <= Class::Either);
        if framing_sure && r.method != spec.method.as_bytes() {
            problems.push(format!(
                "method-mismatch: request {n} was sent as {} but the member read {}",
                spec.method,
                seen_req(r)
            ));
        }
        if framing_sure
            && (r.body_len != spec.intended.len() || r.body_hash != hash(&spec.intended))
        {
            problems.push(format!(
                "body-mismatch: request {n}'s body should be \"{}\" but the member read {}",
                esc(&spec.intended),
                seen_req(r)
            ));
        }
    }
    let must = case.must_answer();
    for n in 0..must {
        if !answered.contains(&n) {
            problems.push(format!(
                "refused-valid: well-formed request {n} was not forwarded and answered (client got {finals:?})"
            ));
        }
    }
    if case.valid() && own {
        problems.push(format!(
            "refused-valid: ringlb answered a well-formed input itself (client got {finals:?})"
        ));
    }
    if incomplete.len() > 1 {
        problems
            .push("incomplete-unexpected: more than one request cut short at the member".into());
    }
    for (e, head) in &incomplete {
        let n = head.and_then(|h| index_of(h, case));
        let after_answered = match (n, answered.iter().max()) {
            (Some(n), Some(&m)) => n > m,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if !after_answered {
            problems.push(format!(
                "incomplete-unexpected: the member saw a request cut short that is not the last one sent: {}",
                event_text(e)
            ));
        }
        // A framing error found after part of a streamed body went out: the client may get a
        // 400 with Connection: close (the member saw an unfinished request and was closed);
        // anything else from ringlb after forwarding is a failure.
        let late_400 = matches!(
            finals.last(),
            Some(Got::Own {
                status: 400,
                close: true
            })
        );
        if own && !late_400 {
            problems.push(format!(
                "refused-after-forwarding: ringlb answered with its own error after forwarding part of the request: {}",
                event_text(e)
            ));
        }
    }
    problems
}

fn esc(b: &[u8]) -> String {
    let show = |b: &[u8]| {
        let mut s = String::new();
        for &c in b {
            match c {
                b'\r' => s.push_str("\\r"),
                b'\n' => s.push_str("\\n"),
                b'\t' => s.push_str("\\t"),
                0 => s.push_str("\\0"),
                b'"' => s.push_str("\\\""),
                b'\\' => s.push_str("\\\\"),
                0x20..=0x7e => s.push(c as char),
                _ => s.push_str(&format!("\\x{c:02x}")),
            }
        }
        s
    };
    if b.len() > 1200 {
        format!(
            "{}...[{} more bytes]...{}",
            show(&b[..600]),
            b.len() - 800,
            show(&b[b.len() - 200..])
        )
    } else {
        show(b)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
        None => v.replace('_', "").parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

fn config(member_addr: SocketAddr) -> String {
    format!(
        "[limits]\nheader_timeout = \"3s\"\nbody_timeout = \"3s\"\n\n{}",
        simple_config(&[member(member_addr)], "response_timeout = \"2s\"")
    )
}

struct Failure {
    index: u64,
    problems: Vec<String>,
    late: bool,
}

#[test]
fn differential_framing_never_desynchronises() {
    let seed = env_u64("RINGLB_DIFF_SEED").unwrap_or(DEFAULT_SEED);
    let count = env_u64("RINGLB_DIFF_CASES").unwrap_or(DEFAULT_CASES);
    let indices: Vec<u64> = match env_u64("RINGLB_DIFF_CASE") {
        Some(i) => vec![i],
        None => (0..count).collect(),
    };
    let started = Instant::now();
    let lenient = Lenient::start();
    let mut proxy = Ringlb::start(&config(lenient.addr), 1);
    let mut failures: Vec<Failure> = Vec::new();
    // What the client read, per input (an input is generated again from its index when needed).
    let mut done: Vec<(u64, Seen)> = Vec::new();
    let mut restarts = 0;
    // Inputs answered whole by the member, ended by ringlb's own error, ended without a response.
    let mut outcomes = [0usize; 3];
    for &i in &indices {
        let case = generate(seed, i);
        lenient.set_case(i);
        let seen = exchange(proxy.addr, &case);
        lenient.settle(SETTLE);
        let mine = lenient.events_of(i);
        let problems = judge(&case, &seen, &mine, &|seq| lenient.request(seq));
        if !problems.is_empty() {
            failures.push(Failure {
                index: i,
                problems,
                late: false,
            });
            // A clean slate: no member connection or pooled connection carries the desync on.
            lenient.reset();
            drop(proxy);
            proxy = Ringlb::start(&config(lenient.addr), 1);
            restarts += 1;
        }
        let (got, _) = responses(&seen.raw);
        let answered = got
            .iter()
            .filter(|g| matches!(g, Got::Member { .. }))
            .count();
        if got.iter().any(|g| matches!(g, Got::Own { .. })) {
            outcomes[1] += 1;
        } else if answered == case.reqs.len() {
            outcomes[0] += 1;
        } else {
            outcomes[2] += 1;
        }
        done.push((i, seen));
    }
    // Anything the member logged late (after its input was judged) is judged now.
    lenient.set_case(u64::MAX);
    lenient.settle(SETTLE);
    let all = lenient.events();
    let mut by_case: HashMap<u64, Vec<Event>> = HashMap::new();
    let mut by_seq: HashMap<u64, SeenReq> = HashMap::new();
    for e in &all {
        by_case.entry(e.case()).or_default().push(e.clone());
        if let EventKind::Request(r) = &e.kind {
            by_seq.insert(r.seq, r.clone());
        }
    }
    let failed: HashSet<u64> = failures.iter().map(|f| f.index).collect();
    for (i, seen) in &done {
        if failed.contains(i) {
            continue;
        }
        let case = generate(seed, *i);
        let mine = by_case.get(i).map_or(&[][..], |v| &v[..]);
        let problems = judge(&case, seen, mine, &|seq| by_seq.get(&seq).cloned());
        if !problems.is_empty() {
            failures.push(Failure {
                index: *i,
                problems,
                late: true,
            });
        }
    }
    let run: HashSet<u64> = indices.iter().copied().collect();
    let stray: Vec<&Event> = all.iter().filter(|e| !run.contains(&e.case())).collect();
    eprintln!(
        "differential: seed {seed:#x}, {} inputs in {:.1?} ({} answered whole, {} refused by \
         ringlb, {} closed without a response), {} failed, ringlb restarted {restarts} times",
        indices.len(),
        started.elapsed(),
        outcomes[0],
        outcomes[1],
        outcomes[2],
        failures.len()
    );
    if failures.is_empty() && stray.is_empty() {
        return;
    }
    drop(proxy);
    let mut report = format!(
        "differential framing test: {} of {} inputs failed (seed {seed:#x}; replay one input with \
         RINGLB_DIFF_SEED={seed:#x} RINGLB_DIFF_CASE=<index>)\n",
        failures.len(),
        indices.len()
    );
    // A summary by class (the text before the first colon of each problem).
    let mut classes: Vec<(String, usize, u64)> = Vec::new();
    for f in &failures {
        let mut seen_here: Vec<&str> = Vec::new();
        for p in &f.problems {
            let class = p.split(':').next().unwrap_or(p);
            if seen_here.contains(&class) {
                continue;
            }
            seen_here.push(class);
            match classes.iter_mut().find(|c| c.0 == class) {
                Some(c) => c.1 += 1,
                None => classes.push((class.to_string(), 1, f.index)),
            }
        }
    }
    for (class, n, first) in &classes {
        report.push_str(&format!("  {class}: {n} inputs (first: input {first})\n"));
    }
    for f in &failures {
        let case = generate(seed, f.index);
        let notes: Vec<String> = case
            .reqs
            .iter()
            .filter(|r| !r.notes.is_empty())
            .map(|r| format!("request {}: {}", r.n, r.notes.join("; ")))
            .collect();
        let first = f.problems[0].split(':').next().unwrap_or("");
        report.push_str(&format!(
            "  input {}: {first} <- {}\n",
            f.index,
            if notes.is_empty() {
                "no mutation".to_string()
            } else {
                notes.join(" | ")
            }
        ));
    }
    for e in &stray {
        report.push_str(&format!(
            "  member event outside any input: {}\n",
            event_text(e)
        ));
    }
    for f in failures.iter().take(SHOW) {
        let case = generate(seed, f.index);
        let (_, seen) = done
            .iter()
            .find(|(i, _)| *i == f.index)
            .expect("a failing input was run");
        let (got, _) = responses(&seen.raw);
        report.push_str(&format!(
            "\n--- input {} (seed {seed:#x}){} ---\n{}  client got: {got:?}, then {:?}\n  member saw:\n",
            f.index,
            if f.late { ", found late" } else { "" },
            case.describe(),
            seen.end,
        ));
        for e in by_case.get(&f.index).into_iter().flatten() {
            report.push_str(&format!("    {}\n", event_text(e)));
        }
        for p in &f.problems {
            report.push_str(&format!("  FAIL {p}\n"));
        }
    }
    if failures.len() > SHOW {
        report.push_str(&format!(
            "\n({} more failing inputs not shown)\n",
            failures.len() - SHOW
        ));
    }
    panic!("{report}");
}
