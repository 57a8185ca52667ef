//! Defends the request-head parse on the request path: httparse plus ringlb's framing checks and
//! header classification, for a typical browser request of 12 headers.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ringlb::http::parse::{parse_request, RequestHead};

const REQUEST: &[u8] = b"GET /openspecimen/rest/ng/specimens?maxResults=100&startAt=0 HTTP/1.1\r\n\
Host: app.example.org\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0\r\n\
Accept: application/json, text/plain, */*\r\nAccept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\nX-Requested-With: XMLHttpRequest\r\nConnection: keep-alive\r\n\
Referer: https://app.example.org/openspecimen/\r\nCookie: JSESSIONID=0123456789ABCDEF0123456789ABCDEF.node1\r\n\
Sec-Fetch-Dest: empty\r\nSec-Fetch-Mode: cors\r\nSec-Fetch-Site: same-origin\r\n\r\n";

fn parse(c: &mut Criterion) {
    let mut head = RequestHead::default();
    c.bench_function("parse request head (12 headers)", |b| {
        b.iter(|| parse_request(black_box(REQUEST), 16384, 100, &mut head).unwrap())
    });
}

criterion_group!(benches, parse);
criterion_main!(benches);
