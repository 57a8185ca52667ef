//! Defends the head rewrite on the request path: the request head a member receives (hop-by-hop
//! removal, X-Forwarded-*, Host) and the response head a client receives, into reused buffers.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ringlb::http::parse::{parse_request, parse_response, RequestHead, ResponseHead};
use ringlb::http::rewrite::{request_head, response_head, ClientBody, ClientHead};

const REQUEST: &[u8] = b"POST /app/rest/ng/specimens HTTP/1.1\r\nHost: app.example.org\r\n\
User-Agent: Mozilla/5.0\r\nAccept: application/json\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
Content-Type: application/json\r\nContent-Length: 120\r\nCookie: JSESSIONID=0123456789ABCDEF.node1\r\n\
X-Forwarded-For: 203.0.113.9\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: Apache-Coyote/1.1\r\nContent-Type: application/json\r\n\
Content-Length: 2048\r\nDate: Wed, 25 Nov 2026 09:00:00 GMT\r\nSet-Cookie: JSESSIONID=ABC.node1; Path=/app\r\n\
Keep-Alive: timeout=20\r\nConnection: keep-alive\r\n\r\n";

fn rewrite(c: &mut Criterion) {
    let mut req = RequestHead::default();
    parse_request(REQUEST, 16384, 100, &mut req).unwrap();
    let mut resp = ResponseHead::default();
    parse_response(RESPONSE, 65536, &mut resp).unwrap();
    let ip = ringlb::http::rewrite::Origin {
        ip: "10.1.2.3".parse().unwrap(),
        trusted: false,
        https: false,
    };
    let mut out = Vec::with_capacity(1024);
    c.bench_function("rewrite request head for a member", |b| {
        b.iter(|| {
            out.clear();
            request_head(
                &mut out,
                black_box(REQUEST),
                &req,
                &REQUEST[req.path.clone()],
                "10.0.0.2:8080",
                false,
                ip,
                None,
            );
        })
    });
    c.bench_function("rewrite response head for a client", |b| {
        b.iter(|| {
            out.clear();
            let client = ClientHead {
                body: ClientBody::PassThrough,
                client_minor: 1,
                keep_alive: true,
                reverse: None,
            };
            response_head(&mut out, black_box(RESPONSE), &resp, &client);
        })
    });
}

criterion_group!(benches, rewrite);
criterion_main!(benches);
