//! HTTP/1.1 as ringlb speaks it: head parsing (`parse`), header classes (`header`), a member's
//! `Keep-Alive` timeout (`keep_alive`), body framing (`framing`, `chunked`), the normal form of
//! paths (`path`), which headers go where (`policy`), head rewriting (`rewrite`), the fixed
//! responses ringlb writes itself (`reply`), protocol switches (`upgrade`), numbers and addresses
//! as head text (`ascii`, AJP's packets use it too), and the exchange with an HTTP member
//! (`exchange`).
//!
//! Everything but `exchange` is synchronous and allocation-free on the per-request path: heads
//! are kept as offsets into the connection's read buffer and rewritten into a reused output
//! buffer (`path` allocates only for a path with `%` escapes).

pub mod ascii;
pub mod chunked;
pub mod exchange;
pub mod framing;
pub mod header;
pub mod keep_alive;
pub mod parse;
pub mod path;
pub mod policy;
pub mod reply;
pub mod reverse;
pub mod rewrite;
pub mod upgrade;
