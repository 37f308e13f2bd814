//! A Producer: one incoming media source of a transport (mediasoup's Producer), with one receive
//! stream per encoding seen, and the consumers that forward it (owned here so that forwarding a
//! packet walks a plain list, without lookups).

use std::time::Instant;

use serde_json::Value;

use crate::command::ProduceCommand;
use crate::consumer::{Consumer, PacketInfo};
use crate::egress::{Egress, TransportKey};
use crate::rtcp::build as rtcp_build;
use crate::rtp::packet::{abs_send_time, abs_send_time_bytes, RtpPacket};
use crate::rtp::packet_store::{self, PacketStore};
use crate::rtp::rtp_stream_recv::RtpStreamRecvParams;
use crate::rtp_parameters::parse_scalability_mode;
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
    /// Producer RTX payload type → its media payload type (`apt`).
    rtx_apt: [Option<u8>; 128],
    codec: CodecKind,
    clock_rate: u32,
    /// One per encoding, created when its first packet arrives.
    pub streams: Vec<Option<RecvStream>>,
    /// When a key frame was last asked for, per encoding (requests are rate-limited).
    pub last_key_frame_request: Vec<Option<Instant>>,
    pub consumers: Vec<Consumer>,
    /// Scratch list for NACKs (reused: nothing allocated per packet).
    nacks: Vec<u16>,
    /// Scores changed since last drained, by encoding (the signalling side is told).
    pub score_changed: bool,
    /// The `ssrc-audio-level` extension id (audio producers that send it).
    audio_level_id: Option<u8>,
    /// Audio levels of the current observer interval.
    pub audio_levels: crate::audio_level_observer::LevelAccumulator,
    /// Every forwarded packet, once, for the consumers' retransmissions.
    pub store: PacketStore,
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
        let audio_level_id = cmd
            .rtp_parameters
            .header_extensions
            .iter()
            .find(|e| e.uri == "urn:ietf:params:rtp-hdrext:ssrc-audio-level")
            .map(|e| e.id);
        let mut rtx_apt = [None; 128];
        for codec in &cmd.rtp_parameters.codecs {
            if codec.mime_type.to_ascii_lowercase().ends_with("/rtx") {
                if let (Some(slot), Some(apt)) =
                    (rtx_apt.get_mut(codec.payload_type as usize), codec.apt())
                {
                    *slot = u8::try_from(apt).ok();
                }
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
            rtx_apt,
            codec,
            clock_rate,
            streams: (0..encodings).map(|_| None).collect(),
            last_key_frame_request: vec![None; encodings],
            consumers: Vec::new(),
            nacks: Vec::with_capacity(crate::rtp::nack_generator::MAX_NACK_PACKETS),
            score_changed: false,
            audio_level_id,
            audio_levels: Default::default(),
            store: PacketStore::new(match cmd.kind {
                MediaKind::Video => packet_store::VIDEO_CAPACITY,
                MediaKind::Audio => packet_store::AUDIO_CAPACITY,
            }),
        }
    }

    /// Parameters of encoding `encoding`'s receive stream.
    fn stream_params(&self, encoding: usize, ssrc: u32, payload_type: u8) -> RtpStreamRecvParams {
        let media = self
            .rtp_parameters
            .codecs
            .iter()
            .find(|c| !c.mime_type.to_ascii_lowercase().ends_with("/rtx"));
        let mime = media.map(|c| c.mime_type.as_str()).unwrap_or("");
        let mut params =
            RtpStreamRecvParams::new(ssrc, payload_type, mime, self.kind, self.clock_rate);
        params.encoding_idx = encoding;
        let enc = self.rtp_parameters.encodings.get(encoding);
        params.rid = enc.and_then(|e| e.rid.clone());
        params.rtx_ssrc = enc.and_then(|e| e.rtx.as_ref()).map(|r| r.ssrc);
        let feedback = |t: &str, p: &str| {
            media.is_some_and(|c| {
                c.rtcp_feedback
                    .iter()
                    .any(|f| f.r#type == t && f.parameter == p)
            })
        };
        params.use_nack = feedback("nack", "");
        params.use_pli = feedback("nack", "pli");
        params.use_fir = feedback("ccm", "fir");
        params.use_dtx = enc.and_then(|e| e.dtx).unwrap_or(false);
        let mode = parse_scalability_mode(enc.and_then(|e| e.scalability_mode.as_deref()));
        params.temporal_layers = mode.temporal_layers.max(1);
        params
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

    /// A consumer with the store its retransmissions come from.
    pub fn consumer_with_store(&mut self, id: &str) -> Option<(&mut Consumer, &PacketStore)> {
        let consumer = self.consumers.iter_mut().find(|c| c.id == id)?;
        Some((consumer, &self.store))
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
        let Some(mapped_pt) = pt_lookup(&self.pt_map, packet.payload_type()) else {
            return false;
        };
        if encoding >= self.streams.len() {
            return false;
        }
        if self.streams[encoding].is_none() {
            let params = self.stream_params(encoding, packet.ssrc(), packet.payload_type());
            self.streams[encoding] = Some(RecvStream::new(params, self.codec, now));
        }
        let Some(stream) = self.streams[encoding].as_mut() else {
            return false;
        };
        let (info, outcome) = stream.receive(packet, now, &mut self.nacks);
        if outcome.score.is_some() {
            self.score_changed = true;
        }
        send_nacks(&self.nacks, stream.ssrc(), self.transport_key, egress);
        if let Some(level) = self.audio_level_id.and_then(|id| packet.extension(id)) {
            if !self.paused {
                self.audio_levels.add(level);
            }
        }
        if !outcome.accepted {
            return true;
        }
        self.forward(encoding, mapped_pt, packet, info, now, egress);
        true
    }

    fn forward(
        &mut self,
        encoding: usize,
        mapped_payload_type: u8,
        packet: &RtpPacket<'_>,
        info: crate::rtp::rtp_stream_recv::PacketInfo,
        now: Instant,
        egress: &mut dyn Egress,
    ) {
        if self.paused {
            return;
        }
        let active_encodings = self
            .streams
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                *i < 32
                    && s.as_ref()
                        .is_some_and(|s| s.inner.packet_count() > 0 && s.score() > 0)
            })
            .fold(0u32, |mask, (i, _)| mask | (1 << i));
        // Stored only when someone may NACK it.
        let stored = if self.consumers.is_empty() {
            None
        } else {
            self.store.insert(packet.as_bytes())
        };
        let info = PacketInfo {
            stored,
            encoding,
            mapped_payload_type,
            key_frame: info.is_key_frame,
            temporal_layer: info.temporal_layer,
            active_encodings,
            // Once per packet, not per consumer.
            abs_send_time: abs_send_time_bytes(abs_send_time(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default(),
            )),
        };
        for consumer in &mut self.consumers {
            consumer.forward(packet, &info, now, egress);
        }
    }

    /// An RTX packet of encoding `encoding`: unwrapped (RFC 4588) into a pooled buffer and, if it
    /// repairs a packet we NACKed, counted and forwarded like the original.
    pub fn receive_rtx(
        &mut self,
        encoding: usize,
        packet: &RtpPacket<'_>,
        now: Instant,
        egress: &mut dyn Egress,
    ) -> bool {
        let Some(media_pt) = pt_lookup(&self.rtx_apt, packet.payload_type()) else {
            return false;
        };
        let Some(mapped_pt) = pt_lookup(&self.pt_map, media_pt) else {
            return false;
        };
        let Some(stream) = self.streams.get_mut(encoding).and_then(|s| s.as_mut()) else {
            return false;
        };
        // Padding-only RTX (the browser's bandwidth probes) carries no packet to repair.
        if packet.payload().len() <= 2 {
            return true;
        }
        let mut buf = egress.buffer();
        buf.resize(crate::buffer_pool::BUFFER_CAPACITY, 0);
        let decoded_len = match crate::rtp::rtx::decode(packet, &mut buf, stream.ssrc(), media_pt) {
            Ok(n) => n,
            Err(_) => {
                egress.recycle(buf);
                return false;
            }
        };
        let Ok(decoded) = RtpPacket::parse(&buf[..decoded_len]) else {
            egress.recycle(buf);
            return false;
        };
        let info = crate::stream::payload_info(self.codec, decoded.payload());
        let outcome = stream.inner.receive_rtx_packet(
            packet.sequence_number(),
            &decoded,
            info,
            now,
            &mut self.nacks,
        );
        if outcome.score.is_some() {
            self.score_changed = true;
        }
        if outcome.accepted {
            self.forward(encoding, mapped_pt, &decoded, info, now, egress);
        }
        egress.recycle(buf);
        true
    }

    /// NACK retries and inactivity checks of the receive streams (the shard's timer).
    pub fn poll(&mut self, now: Instant, egress: &mut dyn Egress) {
        for stream in self.streams.iter_mut().flatten() {
            if stream.inner.poll(now, &mut self.nacks).is_some() {
                self.score_changed = true;
            }
            send_nacks(&self.nacks, stream.ssrc(), self.transport_key, egress);
        }
    }

    /// `producerScore` data: `[{encodingIdx, ssrc, rid?, score}]` for the streams seen.
    pub fn score_json(&self) -> Value {
        Value::Array(
            self.streams
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
                .map(|(i, s)| {
                    let mut v =
                        serde_json::json!({"encodingIdx": i, "ssrc": s.ssrc(), "score": s.score()});
                    if let Some(rid) = &s.inner.params().rid {
                        v["rid"] = serde_json::json!(rid);
                    }
                    v
                })
                .collect(),
        )
    }

    /// `getProducerStats`: one `inbound-rtp` entry per RTP stream received so far.
    pub fn stats(&self, now: Instant, timestamp_ms: u64) -> Value {
        Value::Array(
            self.streams
                .iter()
                .flatten()
                .map(|s| s.stats_json(now, timestamp_ms))
                .collect(),
        )
    }
}

/// Asks the publisher for the `lost` packets of `ssrc` (nothing when the list is empty).
fn send_nacks(lost: &[u16], ssrc: u32, transport: TransportKey, egress: &mut dyn Egress) {
    if lost.is_empty() {
        return;
    }
    let mut buf = egress.buffer();
    rtcp_build::nack(&mut buf, 0, ssrc, lost);
    egress.send_rtcp(transport, buf);
}

/// The entry for payload type `pt` in a per-payload-type table (`None` beyond 127 or unset).
fn pt_lookup(table: &[Option<u8>; 128], pt: u8) -> Option<u8> {
    table.get(usize::from(pt)).copied().flatten()
}
