//! Black-box tests of the ringlb binary over loopback: one test crate, one module per area.

mod basics;
mod bodies;
mod failover;
mod framing;
mod lifecycle;
mod support;
