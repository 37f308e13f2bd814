//! The signalling shard's network side: one TLS/TCP listener for protoo over WebSocket and plain
//! HTTP GETs.

pub mod connection;
pub mod http;
pub mod io;
pub mod protoo;
pub mod server;
pub mod session;
