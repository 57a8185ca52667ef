//! Large bodies in both directions, streamed and compared by hash.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::raw_member::{read_until_close, RawMember};
use crate::support::*;

#[test]
fn ten_megabyte_request_bodies_arrive_intact() {
    let a = Backend::start(|r| Reply::Text(format!("{} {:x}", r.body.len(), hash(&r.body))));
    let p = Ringlb::start(&with_admin(&simple_config(&[member(a.addr)], ""), ""), 1);
    let body = pattern(10 << 20);
    let expected = format!("{} {:x}", body.len(), hash(&body));
    let mut c = Client::connect(p.addr);
    c.send(
        format!(
            "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    // The next request right behind the body: the body's end is where it stops.
    c.send(&[&body[..], b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n"].concat());
    assert_eq!(c.read_response().unwrap().text(), expected);
    assert_eq!(
        c.read_response().unwrap().text(),
        format!("0 {:x}", hash(b""))
    );
    assert_eq!(a.requests()[1].path, "/next");
    // All but what came with the head (less than 64 KiB) went by splice.
    let spliced = wait_for_metric(
        p.admin_addr(),
        "ringlb_request_bytes_spliced_total",
        (10 << 20) - 65536,
    );
    assert!(
        spliced <= 10 << 20,
        "{spliced} bytes spliced, more than the body"
    );
    // The same body, chunked, in uneven chunks: its framing is read, so it is copied.
    c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    let mut framed = Vec::new();
    for piece in body.chunks(100_003) {
        framed.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        framed.extend_from_slice(piece);
        framed.extend_from_slice(b"\r\n");
    }
    framed.extend_from_slice(b"0\r\n\r\n");
    c.send(&framed);
    assert_eq!(c.read_response().unwrap().text(), expected);
    assert!(a.requests()[2].chunked);
    // A read now could predate the chunked upload's count: the worker adds what a request
    // spliced after its response went out, and publishes its counters for `/metrics` when it
    // is free to (at the scrape, or its next second). A 1 MiB fixed-length upload behind it,
    // on the same connection and worker, is counted after it, and a publication takes all of
    // a worker's counters at once: once the marker shows, whatever the chunked one spliced does.
    let marker = pattern(1 << 20);
    c.send(
        format!(
            "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            marker.len()
        )
        .as_bytes(),
    );
    c.send(&marker);
    let want = format!("{} {:x}", marker.len(), hash(&marker));
    assert_eq!(c.read_response().unwrap().text(), want);
    let name = "ringlb_request_bytes_spliced_total";
    // (At least half of it by splice: what came with its head, copied, is one read's worth.)
    let after = wait_for_metric(p.admin_addr(), name, spliced + (1 << 19));
    assert!(
        after <= spliced + (1 << 20),
        "{} bytes spliced since the fixed-length upload, more than the 1 MiB marker: the \
         chunked upload was spliced",
        after - spliced
    );
}

#[test]
fn a_large_upload_that_waits_for_100_continue_goes_by_splice_after_it() {
    // Nothing of the body is there when ringlb answers 100: all of it comes after, on the socket.
    let a = Backend::start(|r| Reply::Text(format!("{} {:x}", r.body.len(), hash(&r.body))));
    let p = Ringlb::start(&with_admin(&simple_config(&[member(a.addr)], ""), ""), 1);
    let body = pattern(3 << 20);
    let mut c = Client::connect(p.addr);
    c.send(
        format!(
            "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(c.read_response().unwrap().status, 100);
    c.send(&body);
    let want = format!("{} {:x}", body.len(), hash(&body));
    assert_eq!(c.read_response().unwrap().text(), want);
    assert_eq!(a.requests()[0].header("expect"), None);
    let name = "ringlb_request_bytes_spliced_total";
    let spliced = wait_for_metric(p.admin_addr(), name, (3 << 20) - 65536);
    assert!(
        spliced <= 3 << 20,
        "{spliced} bytes spliced, more than the body"
    );
}

/// A counter from `/metrics`.
fn metric(admin_addr: std::net::SocketAddr, name: &str) -> u64 {
    let text = admin(admin_addr, "GET", "/metrics", "", None).text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// `metric` once it reached `least` (read every 100 ms, for at most 5 s).
fn wait_for_metric(admin_addr: std::net::SocketAddr, name: &str, least: u64) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let seen = metric(admin_addr, name);
        if seen >= least || std::time::Instant::now() > deadline {
            assert!(seen >= least, "{name}: {seen}, at least {least} expected");
            return seen;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_client_that_leaves_mid_upload_has_its_member_connection_closed_with_exactly_what_it_sent() {
    // A 4 MiB upload of which the client sends 1 MiB, then closes: the member gets that 1 MiB,
    // byte for byte and nothing more, then the close.
    let m = RawMember::start(|c| {
        if c.read_head().is_some() {
            c.wait_peer_close(Duration::from_secs(10));
        }
    });
    let p = Ringlb::start(&with_admin(&simple_config(&[member(m.addr)], ""), ""), 1);
    let part = pattern(1 << 20);
    let mut c = TcpStream::connect(p.addr).unwrap();
    c.write_all(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 4194304\r\n\r\n")
        .unwrap();
    c.write_all(&part).unwrap();
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(5);
    while m.peer_closed() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(m.peer_closed(), 1, "the member connection stayed open");
    let got = &m.received()[0];
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(
        got[head_end..] == part[..],
        "{} body bytes arrived, not the 1 MiB sent",
        got.len() - head_end
    );
    // Counted once the request ended: at least what went after the head's read.
    wait_for_metric(
        p.admin_addr(),
        "ringlb_request_bytes_spliced_total",
        (1 << 20) - 65536,
    );
}

#[test]
fn a_member_that_stops_reading_an_upload_gets_the_same_answer_spliced_or_copied() {
    // The member reads the head and nothing more; the client's 8 MiB fill every buffer between.
    // A Content-Length body (spliced) and a chunked one (copied) end alike: 504 at the
    // response timeout. What went by splice is counted, though the request failed.
    let m = RawMember::start(|c| {
        if c.read_head().is_some() {
            c.stall(Duration::from_secs(10));
        }
    });
    let p = Ringlb::start(
        &with_admin(
            &simple_config(&[member(m.addr)], "response_timeout = \"1s\""),
            "",
        ),
        1,
    );
    let body = pattern(8 << 20);
    let mut spliced = 0;
    let chunked = [
        format!("{:x}\r\n", body.len()).as_bytes(),
        &body[..],
        b"\r\n0\r\n\r\n",
    ]
    .concat();
    for (framing, bytes) in [
        (format!("Content-Length: {}", body.len()), &body),
        ("Transfer-Encoding: chunked".to_string(), &chunked),
    ] {
        let mut c = TcpStream::connect(p.addr).unwrap();
        let head = format!("POST /up HTTP/1.1\r\nHost: t\r\n{framing}\r\n\r\n");
        let mut w = c.try_clone().unwrap();
        let bytes = bytes.clone();
        let writer = std::thread::spawn(move || {
            let _ = w
                .write_all(head.as_bytes())
                .and_then(|()| w.write_all(&bytes));
        });
        let started = Instant::now();
        let (answer, _) = read_until_close(&mut c, Duration::from_secs(8));
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 504"), "{framing}: {answer:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{framing}: {:?}",
            started.elapsed()
        );
        drop(c);
        writer.join().unwrap();
        let name = "ringlb_request_bytes_spliced_total";
        if spliced == 0 {
            spliced = wait_for_metric(p.admin_addr(), name, 1);
        } else {
            // The worker publishes its counters at the scrape only when the board is free (else
            // at its next second): a read straight after the 504 could show the figures from
            // before the chunked upload, and pass whatever it spliced. A second and a half
            // takes in the worker's next once-a-second publication.
            std::thread::sleep(Duration::from_millis(1500));
            assert_eq!(
                metric(p.admin_addr(), name),
                spliced,
                "a chunked upload spliced"
            );
        }
    }
}

#[test]
fn fifty_megabyte_responses_arrive_intact() {
    let a = Backend::start(|_| Reply::Pattern(50 << 20));
    let p = Ringlb::start(&with_admin(&simple_config(&[member(a.addr)], ""), ""), 1);
    let mut c = Client::connect(p.addr);
    for _ in 0..2 {
        c.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.read_response().unwrap();
        assert_eq!(r.body.len(), 50 << 20);
        assert_eq!(hash(&r.body), hash(&pattern(50 << 20)));
    }
    assert_eq!(
        a.connections(),
        1,
        "the member connection is reused after a large body"
    );
    // All but what came with each head (one read of at most 4 KiB) went by splice.
    let least = 2 * ((50 << 20) - 4096);
    let mut seen = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while seen < least && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
        seen = spliced_bytes(p.admin_addr());
    }
    assert!(
        seen >= least && seen <= 2 * (50 << 20),
        "{seen} bytes spliced, between {least} and the two bodies' length expected"
    );
}

/// `ringlb_response_bytes_spliced_total`, from `/metrics`.
fn spliced_bytes(admin_addr: std::net::SocketAddr) -> u64 {
    metric(admin_addr, "ringlb_response_bytes_spliced_total")
}

// Response bodies with 64 KiB or more to come after the head's read, between plain connections,
// go through `splice` (src/splice.rs): the fifty-megabyte test carries them whole; these two
// break them.

#[test]
fn a_large_body_its_member_cuts_short_reaches_the_client_cut_short_then_closed() {
    use crate::support::raw_member::{read_until_close, split_answer, RawMember};
    use std::io::Write;
    let m = RawMember::start(|c| {
        while let Some(req) = c.read_request() {
            if req.path == "/cut" {
                let mut out = b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n".to_vec();
                out.extend_from_slice(&pattern(300_000));
                let _ = c.write(&out);
                return;
            }
            if !c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine") {
                return;
            }
        }
    });
    let p = Ringlb::start(&simple_config(&[member(m.addr)], ""), 1);
    let mut s = std::net::TcpStream::connect(p.addr).unwrap();
    s.write_all(b"GET /cut HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (got, closed) = read_until_close(&mut s, std::time::Duration::from_secs(5));
    assert!(
        closed,
        "the client's connection is closed after the short body"
    );
    let (end, body) = split_answer(&got);
    assert!(got.starts_with(b"HTTP/1.1 200"), "{:?}", &got[..end]);
    assert!(
        body == &pattern(300_000)[..],
        "the client gets exactly the bytes the member sent ({} of 300000)",
        body.len()
    );
    assert_eq!(get(p.addr, "/next").text(), "fine");
}

#[test]
fn a_body_framed_by_its_close_that_its_member_resets_ends_with_a_reset_for_http10_and_no_last_chunk_for_http11(
) {
    // The member frames its answer by its close: a clean close ends it whole, a reset cuts it
    // short. An HTTP/1.0 client reads it to the close and cannot tell a clean close of its own
    // connection from the end of the body, so ringlb resets it after a cut. An HTTP/1.1 client
    // gets it chunked: the last chunk says it is whole, and a cut ends without one.
    use crate::support::raw_member::{
        assert_chunked_whole_then_cut_without_last_chunk, assert_reset_only_when_cut, close_framed,
    };
    let m = close_framed(100_000);
    let p = Ringlb::start(&simple_config(&[member(m.addr)], ""), 1);
    assert_reset_only_when_cut(p.addr, "1.0", &pattern(100_000));
    assert_chunked_whole_then_cut_without_last_chunk(p.addr, &pattern(100_000));
}

#[test]
fn a_chunked_body_decoded_for_an_http_1_0_client_and_cut_short_ends_with_a_reset() {
    // An HTTP/1.0 client gets a chunked body decoded, ended by the connection's close. The member
    // closes in the middle of a chunk: the client must not see that as the body's end.
    use crate::support::raw_member::{assert_reset_only_when_cut, RawMember};
    const LEN: usize = 100_000;
    let m = RawMember::start(|c| {
        if let Some(req) = c.read_request() {
            let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            out.extend_from_slice(format!("{LEN:x}\r\n").as_bytes());
            out.extend_from_slice(&pattern(LEN));
            if req.path == "/whole" {
                out.extend_from_slice(b"\r\n0\r\n\r\n");
            }
            let _ = c.write(&out);
        }
    });
    let p = Ringlb::start(&simple_config(&[member(m.addr)], ""), 1);
    assert_reset_only_when_cut(p.addr, "1.0", &pattern(LEN));
}

#[test]
fn an_ajp_body_without_length_cut_short_for_an_http_1_0_client_ends_with_a_reset() {
    // An AJP answer without Content-Length reaches an HTTP/1.0 client ended by the close. The
    // container closes before END_RESPONSE: the client must not see that as the body's end.
    use crate::support::ajp_container::{body_chunk, end_response, read_packet, send_headers};
    use crate::support::raw_member::{assert_reset_only_when_cut, RawMember};
    let m = RawMember::start(|c| {
        // The FORWARD_REQUEST (after a CPING, should ringlb send one first).
        let fwd = loop {
            match read_packet(&mut c.s) {
                Some(p) if p.first() == Some(&2) => break p,
                Some(p) if p.first() == Some(&10) => {
                    let _ = c.write(&[b'A', b'B', 0, 1, 9]);
                }
                _ => return,
            }
        };
        let mut out = send_headers(200, b"OK", &[]);
        out.extend_from_slice(&body_chunk(&pattern(8000)));
        if String::from_utf8_lossy(&fwd).contains("/whole") {
            out.extend_from_slice(&end_response(false));
        }
        let _ = c.write(&out);
    });
    let ajp = format!("{{ url = \"ajp://{}\" }}", m.addr);
    let p = Ringlb::start(&simple_config(&[ajp], ""), 1);
    assert_reset_only_when_cut(p.addr, "1.0", &pattern(8000));
}

#[test]
fn a_chunked_body_cut_short_for_an_http_1_1_client_closes_plainly_with_every_byte_sent() {
    // Chunked framing tells the client the body is short at any close (no last chunk): no reset,
    // which could drop bytes still queued for it.
    use crate::support::raw_member::RawMember;
    let m = RawMember::start(|c| {
        if c.read_request().is_some() {
            let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            out.extend_from_slice(format!("{:x}\r\n", 100_000).as_bytes());
            out.extend_from_slice(&pattern(60_000));
            let _ = c.write(&out);
        }
    });
    let p = Ringlb::start(&simple_config(&[member(m.addr)], ""), 1);
    let mut c = Client::connect(p.addr);
    c.set_timeout(std::time::Duration::from_secs(10));
    c.send(b"GET /cut HTTP/1.1\r\nHost: t\r\n\r\n");
    let all = c.read_until_close().expect("a plain close, not a reset");
    let (_, body) = crate::support::raw_member::split_answer(&all);
    let mut expected = format!("{:x}\r\n", 100_000).into_bytes();
    expected.extend_from_slice(&pattern(60_000));
    assert!(
        body == expected.as_slice(),
        "every byte the member sent, and no last chunk ({} of {} bytes)",
        body.len(),
        expected.len()
    );
}

/// A member that answers `/first` with 8 KiB framed by length and anything else with 1 KiB framed
/// by its close, which it then cuts with a reset (told on the channel as it goes out).
fn whole_then_cut_member() -> (
    crate::support::raw_member::RawMember,
    std::sync::mpsc::Receiver<()>,
) {
    use std::time::Duration;
    let (cut_tx, cut_rx) = std::sync::mpsc::channel();
    let cut_tx = std::sync::Mutex::new(cut_tx);
    let m = crate::support::raw_member::RawMember::start(move |c| {
        while let Some(req) = c.read_request() {
            if req.path == "/first" {
                let mut out = b"HTTP/1.1 200 OK\r\nContent-Length: 8192\r\n\r\n".to_vec();
                out.extend_from_slice(&pattern(8192));
                if !c.write(&out) {
                    return;
                }
            } else {
                let mut out = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
                out.extend_from_slice(&pattern(1024));
                let _ = c.write(&out);
                std::thread::sleep(Duration::from_millis(100));
                socket2::SockRef::from(&c.s)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
                // The reset goes out as the script returns, right after this.
                let _ = cut_tx.lock().unwrap().send(());
                return;
            }
        }
    });
    (m, cut_rx)
}

#[test]
fn a_cut_answer_after_a_whole_pipelined_one_resets_only_once_the_whole_one_went_out() {
    // The first answer waits in ringlb's send queue (the client's window is tiny and it reads
    // nothing yet) when the second, framed by its close, is cut. The reset must not drop the
    // first answer's tail: ringlb lets the queue empty first (`reset::close`).
    use crate::support::raw_member::tiny_window_client;
    use std::io::{Read, Write};
    use std::time::Duration;
    let (m, reset_rx) = whole_then_cut_member();
    let p = Ringlb::start(&simple_config(&[member(m.addr)], ""), 1);
    let mut s = tiny_window_client(p.addr);
    // HTTP/1.0 with keep-alive: the second answer is one the client reads to the close.
    s.write_all(
        concat!(
            "GET /first HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            "GET /cut HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    // Nothing is read until ringlb has seen the cut (150 ms after the member's reset), well within
    // the 500 ms it lets the queue drain.
    reset_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the member cut the second answer");
    std::thread::sleep(Duration::from_millis(150));
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        match s.read(&mut chunk) {
            Ok(0) => break None,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) => break Some(e.kind()),
        }
    };
    let head_end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("the first head")
        + 4;
    assert!(
        got.len() >= head_end + 8192 && got[head_end..head_end + 8192] == pattern(8192)[..],
        "the first answer whole ({} bytes in all)",
        got.len()
    );
    assert_eq!(
        end,
        Some(std::io::ErrorKind::ConnectionReset),
        "then a reset"
    );
}

#[test]
fn a_chunked_cut_after_a_whole_pipelined_answer_closes_only_once_the_whole_one_went_out() {
    // HTTP/1.1: the second answer, close-delimited at the member, goes out chunked and is cut
    // (no last chunk). The client sent a third request meanwhile, which ringlb has not read, so
    // the close resets the connection: it must wait until the first answer, queued behind a tiny
    // window, went out (`reset::drain`), or the reset would drop its tail.
    use crate::support::raw_member::{dechunk, split_answer, tiny_window_client};
    use std::io::{Read, Write};
    use std::time::Duration;
    let (m, cut_rx) = whole_then_cut_member();
    let p = Ringlb::start(&simple_config(&[member(m.addr)], ""), 1);
    let mut s = tiny_window_client(p.addr);
    s.write_all(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\nGET /cut HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b"GET /third HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    cut_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the member cut the second answer");
    std::thread::sleep(Duration::from_millis(150));
    let (mut got, mut chunk) = (Vec::new(), [0u8; 4096]);
    let began = std::time::Instant::now();
    let ended_by = loop {
        match s.read(&mut chunk) {
            Ok(0) => break None,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) => break Some(e.kind()),
        }
    };
    assert!(
        began.elapsed() < Duration::from_secs(3)
            && matches!(ended_by, None | Some(std::io::ErrorKind::ConnectionReset)),
        "the connection ends soon after the queue drained: {ended_by:?} after {:?}",
        began.elapsed()
    );
    let (_, rest) = split_answer(&got);
    assert!(
        rest.len() >= 8192 && rest[..8192] == pattern(8192)[..],
        "the first answer whole ({} bytes in all)",
        got.len()
    );
    let (end2, body2) = split_answer(&rest[8192..]);
    let head2 = String::from_utf8_lossy(&rest[8192..8192 + end2]).to_ascii_lowercase();
    assert!(head2.contains("transfer-encoding: chunked"), "{head2}");
    let (data, ended) = dechunk(body2);
    assert!(
        !ended && pattern(1024).starts_with(&data),
        "the second cut short, without its last chunk"
    );
}

#[test]
fn a_body_that_ends_at_its_close_reaches_a_pipelining_client_whole() {
    // The member frames its answer by closing, so ringlb must end an HTTP/1.0 client's connection
    // after it although the client asked to keep it, and has sent its next request meanwhile. Closing
    // a socket with that request unread would reset the connection and drop what is still queued
    // for the client: ringlb shuts its side and drains instead (`conn::may_send_more`).
    use crate::support::raw_member::{read_until_close, split_answer, RawMember};
    use std::io::Write;
    use std::time::Duration;
    const LEN: usize = 4 << 20;
    let m = RawMember::start(|c| {
        if c.read_request().is_some() {
            let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
            out.extend_from_slice(&pattern(LEN));
            let _ = c.write(&out);
        }
    });
    let p = Ringlb::start(&simple_config(&[member(m.addr)], ""), 1);
    let mut s = std::net::TcpStream::connect(p.addr).unwrap();
    s.write_all(b"GET /first HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    // The next request comes while the body is under way, unread by ringlb (it is relaying), and
    // the client reads nothing for a while, so much of the body waits in ringlb's send queue.
    std::thread::sleep(Duration::from_millis(100));
    s.write_all(b"GET /second HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let (got, closed) = read_until_close(&mut s, Duration::from_secs(10));
    assert!(closed, "the connection ends after the body");
    let (end, body) = split_answer(&got);
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    assert!(head.contains("connection: close"), "{head}");
    assert!(
        body == &pattern(LEN)[..],
        "the client gets the whole body ({} of {LEN} bytes)",
        body.len()
    );
    assert_eq!(
        m.requests().len(),
        1,
        "the second request never reached the member"
    );
}

#[test]
fn a_body_that_ends_at_its_close_reaches_a_pipelining_http11_client_chunked_and_the_next_is_answered(
) {
    // For an HTTP/1.1 client the member's close-delimited body is framed as chunked: its end is in
    // the body, so the client's connection stays open and its pipelined request is answered.
    use crate::support::raw_member::{dechunk, read_until_close, split_answer, RawMember};
    use std::io::Write;
    use std::time::Duration;
    const LEN: usize = 4 << 20;
    let m = RawMember::start(|c| {
        if let Some(req) = c.read_request() {
            let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
            out.extend_from_slice(&pattern(if req.path == "/first" { LEN } else { 10 }));
            let _ = c.write(&out);
        }
    });
    let p = Ringlb::start(&simple_config(&[member(m.addr)], ""), 1);
    let mut s = std::net::TcpStream::connect(p.addr).unwrap();
    s.write_all(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    s.write_all(b"GET /second HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (got, closed) = read_until_close(&mut s, Duration::from_secs(10));
    assert!(closed, "the connection ends after the second answer");
    let (end, rest) = split_answer(&got);
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    assert!(
        head.contains("transfer-encoding: chunked") && !head.contains("connection:"),
        "{head}"
    );
    // The first body ends with its last chunk; the second answer follows it.
    let at = rest
        .windows(12)
        .position(|w| w == b"\r\n0\r\n\r\nHTTP/")
        .expect("the first body's last chunk, then the second answer")
        + 7;
    let (data, ended) = dechunk(&rest[..at]);
    assert!(
        ended && data == pattern(LEN),
        "the first body whole ({} of {LEN} bytes)",
        data.len()
    );
    let (end2, rest2) = split_answer(&rest[at..]);
    let head2 = String::from_utf8_lossy(&rest[at..at + end2]).to_ascii_lowercase();
    assert!(head2.contains("connection: close"), "{head2}");
    assert_eq!(dechunk(rest2), (pattern(10), true));
    assert_eq!(m.connections(), 2);
}

#[test]
fn an_ajp_answer_that_comes_before_the_request_body_reaches_its_client_whole() {
    // The container answers without asking for the body (as an application refusing an upload
    // does), so the rest of the body is never read: ringlb closes lingering, and the unread bytes
    // do not turn the close into a reset that would drop the answer still queued for the client.
    use crate::support::ajp_container::{
        body_chunk, end_response, send_headers, AjpContainer, RespName,
    };
    use crate::support::raw_member::{read_until_close, split_answer};
    use std::io::Write;
    use std::time::Duration;
    const LEN: usize = 2 << 20;
    let m = AjpContainer::start(|_| {
        let len = LEN.to_string();
        let mut out = send_headers(
            413,
            b"Payload Too Large",
            &[(RespName::Coded(0xA003), len.as_bytes())],
        );
        for piece in pattern(LEN).chunks(8000) {
            out.extend_from_slice(&body_chunk(piece));
        }
        out.extend_from_slice(&end_response(false));
        out
    });
    let p = Ringlb::start(&simple_config(&[m.member()], ""), 1);
    let mut s = std::net::TcpStream::connect(p.addr).unwrap();
    s.write_all(
        b"POST /up HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 1000000\r\n\r\n",
    )
    .unwrap();
    s.write_all(&[b'x'; 300_000]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (got, closed) = read_until_close(&mut s, Duration::from_secs(10));
    assert!(closed, "the connection ends after the answer");
    let (end, body) = split_answer(&got);
    assert!(got.starts_with(b"HTTP/1.1 413"), "{:?}", &got[..end]);
    assert!(
        body == &pattern(LEN)[..],
        "the client gets the whole body ({} of {LEN} bytes)",
        body.len()
    );
}

#[test]
fn a_client_that_stops_reading_a_large_body_is_cut_off_and_never_stalls_the_worker() {
    use crate::support::raw_member::{read_until_close, split_answer, tiny_window_client};
    use std::io::Write;
    use std::time::{Duration, Instant};
    const BIG: usize = 64 << 20;
    let a = Backend::start(|r| {
        if r.path == "/big" {
            Reply::Pattern(BIG)
        } else {
            Reply::Text("fine".into())
        }
    });
    let p = Ringlb::start(
        &with_admin(
            &format!(
                "[limits]\nbody_timeout = \"1s\"\n{}",
                simple_config(&[member(a.addr)], "")
            ),
            "",
        ),
        1,
    );
    let mut s = tiny_window_client(p.addr);
    s.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // The body has begun to arrive, unread (ringlb is now blocked on this client's window). Not
    // just the head: the member's body can come a second later (this test's member builds 64 MiB
    // first), and the body timeout counts from the client's first refusal of it, so the head
    // alone left the timeout racing the read below (CI, epoll, a slow host).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut peek = [0u8; 4096];
    s.set_nonblocking(true).unwrap();
    while !matches!(s.peek(&mut peek), Ok(n) if n >= 1024) {
        assert!(Instant::now() < deadline, "no body began");
        std::thread::sleep(Duration::from_millis(10));
    }
    s.set_nonblocking(false).unwrap();
    // The only worker answers another client while this one's body is stuck.
    assert_eq!(get(p.addr, "/small").text(), "fine");
    // Past the body timeout ringlb has given up on the stuck client: what it can still read is
    // what was queued for it, then the close.
    std::thread::sleep(Duration::from_millis(2500));
    let (got, closed) = read_until_close(&mut s, Duration::from_secs(5));
    let (_, body) = split_answer(&got);
    assert!(
        closed && body.len() < BIG,
        "the body was cut off and the connection closed ({} body bytes reached the client, \
         closed: {closed})",
        body.len()
    );
    assert!(
        body == &pattern(BIG)[..body.len()],
        "what arrived is the body's start"
    );
    let mut spliced = 0;
    let until = Instant::now() + Duration::from_secs(5);
    while spliced == 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
        spliced = spliced_bytes(p.admin_addr());
    }
    assert!(
        spliced > 0,
        "the body was being spliced when it was cut off"
    );
}

#[test]
fn curl_takes_a_close_delimited_body_whole_and_knows_a_cut_one_over_http11_and_http10() {
    // A real client's reading of what ringlb sends for a body its member ends by its close:
    // chunked for HTTP/1.1 (a cut ends without the last chunk: curl's 18, partial file), read to
    // the close for HTTP/1.0 (a cut ends with a reset: curl's 56, receive failure).
    use crate::support::raw_member::close_framed;
    if !tool("curl") {
        return;
    }
    let m = close_framed(100_000);
    let p = Ringlb::start(&simple_config(&[member(m.addr)], ""), 1);
    for (version, path, code) in [
        ("--http1.1", "/whole", 0),
        ("--http1.1", "/cut", 18),
        ("--http1.0", "/whole", 0),
        ("--http1.0", "/cut", 56),
    ] {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "20", "-o", "/dev/null", version])
            .args(["-w", "%{http_code} %{size_download}"])
            .arg(format!("http://{}{path}", p.addr))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        let why = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{version} {path}: {said} {why}"
        );
        if code == 0 {
            assert_eq!(said, "200 100000", "{version} {path}");
        }
    }
}

#[test]
fn a_head_answer_to_an_http11_client_carries_the_transfer_codings_its_get_would() {
    // The member's gzip without chunked means a body read to the close, which an HTTP/1.1 client
    // gets chunked: `gzip, chunked`. Its HEAD answer says the same, and the connection goes on.
    use crate::support::raw_member::{dechunk, read_until_close, split_answer, RawMember};
    use std::io::Write;
    use std::time::Duration;
    let m = RawMember::start(|c| {
        if let Some(req) = c.read_request() {
            let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec();
            if req.method != "HEAD" {
                out.extend_from_slice(b"zipped");
            }
            let _ = c.write(&out);
        }
    });
    let p = Ringlb::start(&simple_config(&[member(m.addr)], ""), 1);
    let mut s = std::net::TcpStream::connect(p.addr).unwrap();
    s.write_all(b"HEAD /a HTTP/1.1\r\nHost: t\r\n\r\nGET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (got, closed) = read_until_close(&mut s, Duration::from_secs(10));
    assert!(closed, "the connection ends after the GET's answer");
    let coding = |head: &[u8]| {
        let text = String::from_utf8_lossy(head).to_ascii_lowercase();
        text.lines()
            .filter(|l| l.starts_with("transfer-encoding:"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let (end, rest) = split_answer(&got);
    let head_answer = coding(&got[..end]);
    assert_eq!(head_answer, ["transfer-encoding: gzip, chunked"]);
    let (end2, body) = split_answer(rest);
    assert_eq!(coding(&rest[..end2]), head_answer, "the GET's framing");
    assert_eq!(dechunk(body), (b"zipped".to_vec(), true));
    assert_eq!(m.requests().len(), 2, "both reached the member");
}
