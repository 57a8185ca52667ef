//! Large bodies in both directions, streamed and compared by hash.

use crate::support::*;

#[test]
fn ten_megabyte_request_bodies_arrive_intact() {
    let a = Backend::start(|r| Reply::Text(format!("{} {:x}", r.body.len(), hash(&r.body))));
    let p = Ringlb::start(&simple_config(&[member(a.addr)], ""), 1);
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
    c.send(&body);
    assert_eq!(c.read_response().unwrap().text(), expected);
    // The same body, chunked, in uneven chunks.
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
    assert!(a.requests()[1].chunked);
}

#[test]
fn fifty_megabyte_responses_arrive_intact() {
    let a = Backend::start(|_| Reply::Pattern(50 << 20));
    let p = Ringlb::start(&simple_config(&[member(a.addr)], ""), 1);
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
}
