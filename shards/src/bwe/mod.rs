//! Bandwidth estimation, receive side: what the SFU tells each sending client about how its
//! packets arrive, so the client's own estimator can adapt (mediasoup's
//! `TransportCongestionControlServer`). The send-side estimator for consumers comes later and
//! will read [`crate::rtcp::TransportCc`] feedback from receiving clients.
//!
//! Sans-IO like the rest of the shard: callers pass arrival and current times, and poll for
//! packets to send (and for when to poll next).

mod seq_num_unwrapper;
mod transport_cc_server;

pub use seq_num_unwrapper::SeqNumUnwrapper;
pub use transport_cc_server::{
    TransportCcServer, DEFAULT_MAX_RTCP_PACKET_LEN, LIMITATION_REMB_INTERVAL,
    TRANSPORT_CC_FEEDBACK_SEND_INTERVAL,
};

#[cfg(test)]
mod tests;
