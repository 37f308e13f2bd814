//! A producer's receive stream as the forwarding path sees it: the codec-specific facts about
//! each packet (key frame, temporal layer) and the stream's counters and score.

use std::time::Instant;

use serde_json::{json, Value};

use crate::rtp::packet::RtpPacket;
use crate::rtp::vp8::Vp8PayloadDescriptor;
use crate::rtp_parameters::MediaKind;

/// The codecs whose payloads the forwarding path looks into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecKind {
    Vp8,
    Vp9,
    H264,
    Other,
}

pub fn codec_kind(mime_type: &str) -> CodecKind {
    match mime_type.to_ascii_lowercase().as_str() {
        "video/vp8" => CodecKind::Vp8,
        "video/vp9" => CodecKind::Vp9,
        "video/h264" => CodecKind::H264,
        _ => CodecKind::Other,
    }
}

/// What a packet's payload says.
#[derive(Debug, Clone, Copy, Default)]
pub struct PayloadFacts {
    pub key_frame: bool,
    pub temporal_layer: u8,
}

pub fn payload_facts(codec: CodecKind, payload: &[u8]) -> PayloadFacts {
    match codec {
        CodecKind::Vp8 => match Vp8PayloadDescriptor::parse(payload) {
            Some(d) => PayloadFacts {
                key_frame: d.is_key_frame,
                temporal_layer: d.temporal_layer.unwrap_or(0),
            },
            None => PayloadFacts::default(),
        },
        CodecKind::H264 => PayloadFacts {
            key_frame: h264_key_frame(payload),
            temporal_layer: 0,
        },
        CodecKind::Vp9 => PayloadFacts {
            // VP9 descriptor: P bit (0x40) clear and B bit (0x08) set on the first packet of an
            // intra frame (non-flexible mode as Chrome sends it).
            key_frame: payload
                .first()
                .is_some_and(|b| b & 0x40 == 0 && b & 0x08 != 0),
            temporal_layer: 0,
        },
        CodecKind::Other => PayloadFacts::default(),
    }
}

/// IDR or SPS in a single NAL unit, a STAP-A, or the start of an FU-A.
fn h264_key_frame(payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else {
        return false;
    };
    match b0 & 0x1f {
        5 | 7 => true,
        24 => {
            let mut offset = 1;
            while offset + 2 < payload.len() {
                let size = u16::from_be_bytes([payload[offset], payload[offset + 1]]) as usize;
                let Some(&nal) = payload.get(offset + 2) else {
                    return false;
                };
                if matches!(nal & 0x1f, 5 | 7) {
                    return true;
                }
                offset += 2 + size;
            }
            false
        }
        28 => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && matches!(fu & 0x1f, 5 | 7)),
        _ => false,
    }
}

/// One encoding's incoming stream.
#[derive(Debug)]
pub struct RecvStream {
    pub ssrc: u32,
    pub rid: Option<String>,
    clock_rate: u32,
    codec: CodecKind,
    pub packets: u64,
    pub bytes: u64,
    pub pli_count: u64,
    pub last_packet_at: Option<Instant>,
}

impl RecvStream {
    pub fn new(ssrc: u32, rid: Option<String>, clock_rate: u32, codec: CodecKind) -> Self {
        Self {
            ssrc,
            rid,
            clock_rate,
            codec,
            packets: 0,
            bytes: 0,
            pli_count: 0,
            last_packet_at: None,
        }
    }

    pub fn receive(&mut self, packet: &RtpPacket<'_>, now: Instant) -> PayloadFacts {
        self.ssrc = packet.ssrc();
        self.packets += 1;
        self.bytes += packet.len() as u64;
        self.last_packet_at = Some(now);
        payload_facts(self.codec, packet.payload())
    }

    pub fn score(&self) -> u8 {
        if self.packets > 0 {
            10
        } else {
            0
        }
    }

    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    pub fn stats_json(&self, now_ms: u64, kind: MediaKind, mime_type: &str) -> Value {
        let mut stats = json!({
            "type": "inbound-rtp",
            "timestamp": now_ms,
            "ssrc": self.ssrc,
            "kind": kind,
            "mimeType": mime_type,
            "packetsLost": 0,
            "fractionLost": 0,
            "packetsDiscarded": 0,
            "packetsRetransmitted": 0,
            "packetsRepaired": 0,
            "nackCount": 0,
            "nackPacketCount": 0,
            "pliCount": self.pli_count,
            "firCount": 0,
            "score": self.score(),
            "jitter": 0,
            "packetCount": self.packets,
            "byteCount": self.bytes,
            "bitrate": 0,
            "bitrateByLayer": {},
        });
        if let Some(rid) = &self.rid {
            stats["rid"] = json!(rid);
        }
        stats
    }
}
