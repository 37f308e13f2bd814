//! A Producer: one incoming media source of a transport (mediasoup's Producer). Its RTP streams
//! (one per encoding actually received) are created by the packet path as they show up.

use serde_json::{json, Value};

use crate::command::ProduceCommand;
use crate::rtp_parameters::{MediaKind, ProducerType, RtpMapping, RtpParameters};

#[derive(Debug)]
pub struct Producer {
    pub id: String,
    pub transport_id: String,
    pub kind: MediaKind,
    pub rtp_parameters: RtpParameters,
    pub rtp_mapping: RtpMapping,
    pub producer_type: ProducerType,
    pub paused: bool,
    /// Score (0..10) per encoding; 0 until a stream of that encoding is measured.
    pub scores: Vec<u8>,
}

impl Producer {
    pub fn new(cmd: ProduceCommand) -> Self {
        let encodings = cmd.rtp_mapping.encodings.len().max(1);
        Self {
            id: cmd.producer_id,
            transport_id: cmd.transport_id,
            kind: cmd.kind,
            rtp_parameters: cmd.rtp_parameters,
            rtp_mapping: cmd.rtp_mapping,
            producer_type: cmd.producer_type,
            paused: cmd.paused,
            scores: vec![0; encodings],
        }
    }

    /// `getProducerStats`: one `inbound-rtp` entry per RTP stream received so far. Streams are
    /// created by the packet path; until media arrives there are none, so the array is empty.
    pub fn stats(&self, _now_ms: u64) -> Value {
        json!([])
    }
}
