//! AJP13 members (`ajp://host:port`): the codec (`codec`), the FORWARD_REQUEST and response-head
//! mapping (`request`), and one request's exchange with a container (`exchange`).

pub mod codec;
pub mod exchange;
pub mod request;
