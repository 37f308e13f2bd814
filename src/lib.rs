//! Shardcast's server process (the counterpart of mediasoup-demo's server): configuration, the
//! signalling shard (protoo over WebSocket, HTTP) and the rooms. Media lives in the `shards` crate.

pub mod app;
pub mod config;
pub mod placement;
pub mod room;
pub mod signalling;
pub mod startup;
pub mod tls;
