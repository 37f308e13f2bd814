//! A Consumer: one producer forwarded to one transport (mediasoup's Simple/Simulcast/SvcConsumer).

use serde_json::{json, Value};

use crate::command::ConsumeCommand;
use crate::rtp_parameters::{
    parse_scalability_mode, MediaKind, ProducerType, RtpEncodingParameters, RtpParameters,
};

#[derive(Debug)]
pub struct Consumer {
    pub id: String,
    pub producer_id: String,
    pub transport_id: String,
    pub kind: MediaKind,
    pub rtp_parameters: RtpParameters,
    pub consumer_type: ProducerType,
    pub consumable_rtp_encodings: Vec<RtpEncodingParameters>,
    /// Paused by its own peer (pauseConsumer).
    pub paused: bool,
    /// Paused because its producer is.
    pub producer_paused: bool,
    pub priority: u8,
    pub preferred_spatial_layer: u8,
    pub preferred_temporal_layer: u8,
    /// Score of the stream this consumer sends (10 until receiver reports say otherwise).
    pub score: u8,
    pub key_frame_requests: u64,
}

impl Consumer {
    pub fn new(cmd: ConsumeCommand, producer_paused: bool) -> Self {
        let mode = parse_scalability_mode(
            cmd.rtp_parameters
                .encodings
                .first()
                .and_then(|e| e.scalability_mode.as_deref()),
        );
        Self {
            id: cmd.consumer_id,
            producer_id: cmd.producer_id,
            transport_id: cmd.transport_id,
            kind: cmd.kind,
            rtp_parameters: cmd.rtp_parameters,
            consumer_type: cmd.consumer_type,
            consumable_rtp_encodings: cmd.consumable_rtp_encodings,
            paused: cmd.paused,
            producer_paused,
            priority: 1,
            // Default preference: the highest layers the producer sends.
            preferred_spatial_layer: mode.spatial_layers.saturating_sub(1),
            preferred_temporal_layer: mode.temporal_layers.saturating_sub(1),
            score: 10,
            key_frame_requests: 0,
        }
    }

    /// mediasoup clamps preferred layers to what the stream has; simple consumers ignore them.
    pub fn set_preferred_layers(&mut self, spatial: u8, temporal: Option<u8>) {
        if self.consumer_type == ProducerType::Simple {
            return;
        }
        let mode = parse_scalability_mode(
            self.rtp_parameters
                .encodings
                .first()
                .and_then(|e| e.scalability_mode.as_deref()),
        );
        let max_spatial = mode.spatial_layers.saturating_sub(1);
        let max_temporal = mode.temporal_layers.saturating_sub(1);
        self.preferred_spatial_layer = spatial.min(max_spatial);
        self.preferred_temporal_layer = temporal.unwrap_or(max_temporal).min(max_temporal);
    }

    /// The consumer score object: `{score, producerScore, producerScores}`.
    pub fn score_json(&self, producer_scores: &[u8]) -> Value {
        let producer_score = if self.consumer_type == ProducerType::Simple {
            producer_scores.first().copied().unwrap_or(0)
        } else {
            producer_scores
                .get(self.preferred_spatial_layer as usize)
                .copied()
                .unwrap_or(0)
        };
        json!({
            "score": self.score,
            "producerScore": producer_score,
            "producerScores": producer_scores,
        })
    }

    /// `getConsumerStats`: the consumer's own `outbound-rtp` stream first. Counters are zero until
    /// the packet path sends; the producer's `inbound-rtp` follows once a stream is forwarded.
    pub fn stats(&self, now_ms: u64) -> Value {
        let encoding = self.rtp_parameters.encodings.first();
        let mut outbound = json!({
            "type": "outbound-rtp",
            "timestamp": now_ms,
            "ssrc": encoding.and_then(|e| e.ssrc).unwrap_or(0),
            "kind": self.kind,
            "mimeType": self.rtp_parameters.codecs.first().map(|c| c.mime_type.clone()).unwrap_or_default(),
            "packetsLost": 0,
            "fractionLost": 0,
            "packetsDiscarded": 0,
            "packetsRetransmitted": 0,
            "packetsRepaired": 0,
            "nackCount": 0,
            "nackPacketCount": 0,
            "pliCount": 0,
            "firCount": 0,
            "score": self.score,
            "packetCount": 0,
            "byteCount": 0,
            "bitrate": 0,
        });
        if let Some(rtx) = encoding.and_then(|e| e.rtx.as_ref()) {
            outbound["rtxSsrc"] = json!(rtx.ssrc);
        }
        json!([outbound])
    }
}
