//! A producer's receive stream as the forwarding path sees it: the codec facts of each packet
//! (key frame, temporal layer, from the VP8/VP9/H264 parsers) on top of mediasoup's
//! RtpStreamRecv (loss, jitter, NACK generation, score, stats).

use std::time::Instant;

use serde_json::Value;

use crate::rtp::packet::RtpPacket;
use crate::rtp::rtp_stream_recv::{PacketInfo, ReceiveOutcome, RtpStreamRecv, RtpStreamRecvParams};
use crate::rtp::{h264, vp8::Vp8PayloadDescriptor, vp9::Vp9PayloadDescriptor};

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
pub fn payload_info(codec: CodecKind, payload: &[u8]) -> PacketInfo {
    match codec {
        CodecKind::Vp8 => match Vp8PayloadDescriptor::parse(payload) {
            Some(d) => PacketInfo {
                is_key_frame: d.is_key_frame,
                spatial_layer: 0,
                temporal_layer: d.temporal_layer.unwrap_or(0),
            },
            None => PacketInfo::default(),
        },
        CodecKind::Vp9 => match Vp9PayloadDescriptor::parse(payload) {
            Some(d) => PacketInfo {
                is_key_frame: d.is_key_frame,
                spatial_layer: 0,
                temporal_layer: 0,
            },
            None => PacketInfo::default(),
        },
        CodecKind::H264 => PacketInfo {
            is_key_frame: h264::is_key_frame(payload),
            ..PacketInfo::default()
        },
        CodecKind::Other => PacketInfo::default(),
    }
}

/// One encoding's incoming stream.
#[derive(Debug)]
pub struct RecvStream {
    pub inner: RtpStreamRecv,
    codec: CodecKind,
}

impl RecvStream {
    pub fn new(params: RtpStreamRecvParams, codec: CodecKind, now: Instant) -> Self {
        Self {
            inner: RtpStreamRecv::new(params, now),
            codec,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.inner.ssrc()
    }

    /// Counts a packet (NACKs for gaps go to `nacks`) and reports what its payload says.
    pub fn receive(
        &mut self,
        packet: &RtpPacket<'_>,
        now: Instant,
        nacks: &mut Vec<u16>,
    ) -> (PacketInfo, ReceiveOutcome) {
        let info = payload_info(self.codec, packet.payload());
        let outcome = self.inner.receive_packet(packet, info, now, nacks);
        (info, outcome)
    }

    pub fn score(&self) -> u8 {
        self.inner.score()
    }

    pub fn stats_json(&self, now: Instant, timestamp_ms: u64) -> Value {
        self.inner.stats_json(now, timestamp_ms)
    }
}
