//! A Producer: one incoming media source of a transport (mediasoup's Producer), with one receive
//! stream per encoding seen, and the consumers that forward it (owned here so that forwarding a
//! packet walks a plain list, without lookups).

use std::time::Instant;

use serde_json::Value;

use crate::command::ProduceCommand;
use crate::consumer::{Consumer, PacketInfo};
use crate::egress::{Egress, TransportKey};
use crate::rtp::packet::RtpPacket;
use crate::rtp_parameters::{MediaKind, ProducerType, RtpMapping, RtpParameters};
use crate::stream::{codec_kind, CodecKind, RecvStream};

pub struct Producer {
    pub id: String,
    pub transport_id: String,
    pub transport_key: TransportKey,
    pub kind: MediaKind,
    pub rtp_parameters: RtpParameters,
    pub rtp_mapping: RtpMapping,
    pub producer_type: ProducerType,
    pub paused: bool,
    /// Producer payload type → router payload type (what consumers send).
    pt_map: [Option<u8>; 128],
    codec: CodecKind,
    clock_rate: u32,
    /// One per encoding, created when its first packet arrives.
    pub streams: Vec<Option<RecvStream>>,
    pub consumers: Vec<Consumer>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("id", &self.id)
            .field("consumers", &self.consumers.len())
            .finish_non_exhaustive()
    }
}

impl Producer {
    pub fn new(cmd: ProduceCommand, transport_key: TransportKey) -> Self {
        let encodings = cmd.rtp_mapping.encodings.len().max(1);
        let mut pt_map = [None; 128];
        for codec in &cmd.rtp_mapping.codecs {
            if let Some(slot) = pt_map.get_mut(codec.payload_type as usize) {
                *slot = Some(codec.mapped_payload_type);
            }
        }
        let media_codec = cmd
            .rtp_parameters
            .codecs
            .iter()
            .find(|c| !c.mime_type.to_ascii_lowercase().ends_with("/rtx"));
        let codec = media_codec
            .map(|c| codec_kind(&c.mime_type))
            .unwrap_or(CodecKind::Other);
        let clock_rate = media_codec.map(|c| c.clock_rate).unwrap_or(90000);
        Self {
            id: cmd.producer_id,
            transport_id: cmd.transport_id,
            transport_key,
            kind: cmd.kind,
            rtp_parameters: cmd.rtp_parameters,
            rtp_mapping: cmd.rtp_mapping,
            producer_type: cmd.producer_type,
            paused: cmd.paused,
            pt_map,
            codec,
            clock_rate,
            streams: (0..encodings).map(|_| None).collect(),
            consumers: Vec::new(),
        }
    }

    /// Score (0..10) of each encoding's stream; 0 for one not seen yet.
    pub fn scores(&self) -> Vec<u8> {
        self.streams
            .iter()
            .map(|s| s.as_ref().map_or(0, |s| s.score()))
            .collect()
    }

    pub fn consumer_mut(&mut self, id: &str) -> Option<&mut Consumer> {
        self.consumers.iter_mut().find(|c| c.id == id)
    }

    /// A decrypted media packet of encoding `encoding`: counted, then forwarded to every
    /// consumer. Returns false when the packet was not usable (unknown payload type).
    pub fn receive_rtp(
        &mut self,
        encoding: usize,
        packet: &RtpPacket<'_>,
        now: Instant,
        egress: &mut dyn Egress,
    ) -> bool {
        let Some(mapped_pt) = self
            .pt_map
            .get(packet.payload_type() as usize)
            .copied()
            .flatten()
        else {
            return false;
        };
        let Some(slot) = self.streams.get_mut(encoding) else {
            return false;
        };
        let stream = slot.get_or_insert_with(|| {
            let rid = self
                .rtp_parameters
                .encodings
                .get(encoding)
                .and_then(|e| e.rid.clone());
            RecvStream::new(packet.ssrc(), rid, self.clock_rate, self.codec)
        });
        let info = stream.receive(packet, now);
        if self.paused {
            return true;
        }
        let info = PacketInfo {
            encoding,
            mapped_payload_type: mapped_pt,
            key_frame: info.key_frame,
            temporal_layer: info.temporal_layer,
        };
        for consumer in &mut self.consumers {
            consumer.forward(packet, &info, now, egress);
        }
        true
    }

    /// `getProducerStats`: one `inbound-rtp` entry per RTP stream received so far.
    pub fn stats(&self, now_ms: u64) -> Value {
        let mime = self
            .rtp_parameters
            .codecs
            .first()
            .map(|c| c.mime_type.as_str())
            .unwrap_or("");
        Value::Array(
            self.streams
                .iter()
                .flatten()
                .map(|s| s.stats_json(now_ms, self.kind, mime))
                .collect(),
        )
    }
}
