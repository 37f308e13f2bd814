//! Shardcast's Rust WebRTC test peer and load tools.
//!
//! Everything here runs on a single-threaded glommio `LocalExecutor`: handles are
//! `Rc`-based and background work is spawned with `glommio::spawn_local`.

pub mod http;
pub mod load;
pub mod peer;
pub mod protoo;
pub mod tls;
mod util;
