//! HTTP/1.1 as ringlb speaks it: head parsing (`parse`), body framing (`framing`, `chunked`),
//! head rewriting (`rewrite`) and the fixed responses ringlb writes itself (`reply`).
//!
//! Everything here is synchronous and allocation-free on the per-request path: heads are kept as
//! offsets into the connection's read buffer and rewritten into a reused output buffer.

pub mod chunked;
pub mod exchange;
pub mod framing;
pub mod header;
pub mod parse;
pub mod path;
pub mod policy;
pub mod reply;
pub mod rewrite;
