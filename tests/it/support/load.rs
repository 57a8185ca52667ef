//! Client threads that keep a proxy busy while a test reloads or upgrades it, counting every
//! request that failed: keep-alive clients, and clients that open a new connection per request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::client::Client;

/// What the clients share: stop when set, and the count of failed requests.
#[derive(Clone, Default)]
pub struct Load {
    pub stop: Arc<AtomicBool>,
    pub failed: Arc<AtomicU64>,
}

impl Load {
    /// `n` threads running `step` (one request each call, `true` when it succeeded) until
    /// `stop`; each thread returns how many requests it sent.
    fn spawn<F>(&self, n: usize, make: impl Fn() -> F) -> Vec<JoinHandle<u64>>
    where
        F: FnMut() -> bool + Send + 'static,
    {
        (0..n)
            .map(|_| {
                let (stop, failed, mut step) = (self.stop.clone(), self.failed.clone(), make());
                std::thread::spawn(move || {
                    let mut sent = 0;
                    while !stop.load(Ordering::SeqCst) {
                        sent += 1;
                        if !step() {
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    sent
                })
            })
            .collect()
    }

    /// Keep-alive clients: each sends its next request as soon as the last answer came, on the
    /// same connection until an answer says `Connection: close`. A request sent on a connection
    /// that then closed without answering it fails (the server must answer what reached it).
    pub fn keep_alive(&self, addr: SocketAddr, n: usize) -> Vec<JoinHandle<u64>> {
        self.spawn(n, || {
            let mut c = Client::connect(addr);
            move || {
                c.send(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
                let resp = c.read_response();
                let closing = resp.as_ref().is_some_and(|r| {
                    r.header("Connection")
                        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                });
                let ok = resp.as_ref().is_some_and(|r| r.status == 200);
                if !ok {
                    eprintln!("keep-alive request failed: {:?}", resp.map(|r| r.status));
                }
                if closing || !ok {
                    c = Client::connect(addr);
                }
                ok
            }
        })
    }

    /// Clients that open a new connection for every request (each one goes through the accept
    /// queue, where a handover could lose it); `one` makes the request and says whether it
    /// succeeded.
    pub fn new_connections(
        &self,
        n: usize,
        one: impl Fn() -> bool + Send + Clone + 'static,
    ) -> Vec<JoinHandle<u64>> {
        self.spawn(n, || one.clone())
    }

    /// Stops the clients; (requests sent, requests failed).
    pub fn finish(&self, clients: Vec<JoinHandle<u64>>) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        let sent = clients.into_iter().map(|t| t.join().unwrap()).sum();
        (sent, self.failed.load(Ordering::SeqCst))
    }
}
