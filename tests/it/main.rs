//! Black-box tests of the ringlb binary over loopback: one test crate, one module per area.
//! The harness (not ringlb) shares request records between threads with a Mutex.
#![allow(clippy::disallowed_types)]

mod apache_diff;
mod balancing;
mod basics;
mod bodies;
mod differential;
mod failover;
mod forwarding;
mod framing;
mod health;
mod idle;
mod import_apache;
mod integrity;
mod lifecycle;
mod listeners;
mod manager;
mod mapping;
mod proxy_protocol;
mod reload;
mod review;
mod status;
mod sticky;
mod support;
mod systemd;
mod tls;
mod tls_members;
mod tls_peers;
mod tomcat;
mod tunnels;
mod upgrade;
