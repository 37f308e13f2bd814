//! Shardcast's media engine, the counterpart of mediasoup's worker: one shard per CPU core, each owning
//! its sockets, routers, transports, producers and consumers, reached only through a command channel.

pub mod audio_level_observer;
pub mod buffer_pool;
pub mod bwe;
pub mod command;
pub mod consumer;
pub mod egress;
pub mod gso;
pub mod producer;
pub mod router;
pub mod rtcp;
pub mod rtp;
pub mod rtp_parameters;
pub mod runtime;
pub mod shard;
pub mod stream;
pub mod transport;
pub mod udp_bind;
