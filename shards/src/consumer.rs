//! A Consumer: one producer forwarded to one transport (mediasoup's SimpleConsumer and
//! SimulcastConsumer). It rewrites each packet for its subscriber — SSRC, payload type,
//! continuous sequence numbers and timestamps, header extensions renumbered — into a pooled
//! buffer, and hands it to its transport to encrypt and send.

use std::time::Instant;

use serde_json::{json, Value};

use crate::command::ConsumeCommand;
use crate::egress::{Egress, TransportKey};
use crate::rtcp::{build as rtcp_build, ReportBlock, SenderReport};
use crate::rtp::ntp::NtpTime;
use crate::rtp::packet::{rewrite_into, ExtensionMap, RtpPacket};
use crate::rtp::packet_store::{PacketStore, StoredPacket};
use crate::rtp::retransmission_buffer::SharedTail;
use crate::rtp::rtp_stream::KeyFrameRequestKind;
use crate::rtp::rtp_stream_send::{RtpStreamSend, RtpStreamSendParams};
use crate::rtp::seq_manager::RtpSeqManager;
use crate::rtp::vp8::{Vp8PayloadDescriptor, Vp8Rewriter};
use crate::rtp_parameters::{
    parse_scalability_mode, MediaKind, ProducerType, RtpEncodingParameters, RtpParameters,
};
use crate::transport::rtp_listener::{
    URI_ABS_SEND_TIME, URI_MID, URI_RID, URI_RRID, URI_TRANSPORT_WIDE_CC,
};

/// What the producer learned about a packet, shared by all its consumers.
#[derive(Debug, Clone, Copy)]
pub struct PacketInfo {
    /// Which producer encoding (simulcast stream) it belongs to.
    pub encoding: usize,
    /// The router payload type of its codec (what consumers send).
    pub mapped_payload_type: u8,
    pub key_frame: bool,
    /// Temporal layer (VP8 TID), 0 when the codec has none.
    pub temporal_layer: u8,
    /// Bit i set: the producer's encoding i is receiving (a simulcast consumer targets the
    /// highest active one up to its preference).
    pub active_encodings: u32,
    /// abs-send-time value to stamp (24-bit, 6.18 fixed point seconds).
    pub abs_send_time: [u8; 3],
    /// The packet in the producer's store: consumers keep only their head of it for NACKs.
    pub stored: Option<StoredPacket>,
}

/// Payload bytes kept with a consumer's header in its retransmission buffer: the VP8
/// descriptor bytes the consumer may rewrite (picture id, TL0PICIDX) are within them.
const STORED_PAYLOAD_PREFIX: usize = 16;

/// Events a consumer reports to the signalling side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerEvent {
    LayersChanged {
        spatial: Option<u8>,
        temporal: Option<u8>,
    },
}

pub struct Consumer {
    pub id: String,
    pub producer_id: String,
    pub transport_id: String,
    pub transport_key: TransportKey,
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
    /// Key frames this consumer needs from upstream (set on resume, PLI/FIR, layer switch);
    /// the router turns them into PLI/FIR to the producer's stream.
    pub key_frame_requested: Option<usize>,
    pub key_frame_requests: u64,
    pub events: Vec<ConsumerEvent>,
    // Sending state.
    pub ssrc: u32,
    pub rtx_ssrc: Option<u32>,
    pub rtx_payload_type: Option<u8>,
    ext_map: ExtensionMap,
    mid: Option<(u8, Vec<u8>)>,
    abs_send_time_id: Option<u8>,
    transport_wide_cc_id: Option<u8>,
    clock_rate: u32,
    seq: RtpSeqManager,
    timestamp_offset: u32,
    sync_required: bool,
    /// The producer encoding being forwarded, and the one wanted.
    current_encoding: Option<usize>,
    target_encoding: usize,
    current_temporal: Option<u8>,
    last_timestamp: Option<(u32, Instant)>,
    /// VP8 simulcast: temporal layer dropping and PictureID/TL0PICIDX kept continuous across
    /// drops and stream switches (mediasoup's VP8 encoding context).
    vp8: Option<Vp8Rewriter>,
    /// Counters, retransmission buffer, receiver-report processing, score.
    pub send_stream: RtpStreamSend,
    /// The score changed since last drained (the signalling side is told).
    pub score_changed: bool,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("id", &self.id)
            .field("ssrc", &self.ssrc)
            .finish_non_exhaustive()
    }
}

fn ext_id(params: &RtpParameters, uri: &str) -> Option<u8> {
    params
        .header_extensions
        .iter()
        .find(|e| e.uri == uri)
        .map(|e| e.id)
}

impl Consumer {
    /// `producer_params` are the producer's own parameters (its extension ids are what arrives).
    pub fn new(
        cmd: ConsumeCommand,
        transport_key: TransportKey,
        producer_params: &RtpParameters,
        producer_paused: bool,
    ) -> Self {
        let params = &cmd.rtp_parameters;
        let mode = parse_scalability_mode(
            params
                .encodings
                .first()
                .and_then(|e| e.scalability_mode.as_deref()),
        );
        // Extensions forwarded as they are, renumbered; MID, transport-wide seq and
        // abs-send-time are written per consumer; RID/RRID never leave (one stream out).
        let mut ext_map = ExtensionMap::new();
        for ext in &producer_params.header_extensions {
            if [
                URI_MID,
                URI_RID,
                URI_RRID,
                URI_TRANSPORT_WIDE_CC,
                URI_ABS_SEND_TIME,
            ]
            .contains(&ext.uri.as_str())
            {
                continue;
            }
            if let Some(to) = ext_id(params, &ext.uri) {
                ext_map.insert(ext.id, to);
            }
        }
        let mid = match (ext_id(params, URI_MID), &params.mid) {
            (Some(id), Some(mid)) => Some((id, mid.as_bytes().to_vec())),
            _ => None,
        };
        let encoding = params.encodings.first();
        let rtx_payload_type = params
            .codecs
            .iter()
            .find(|c| c.mime_type.to_ascii_lowercase().ends_with("/rtx"))
            .map(|c| c.payload_type);
        let clock_rate = params.codecs.first().map(|c| c.clock_rate).unwrap_or(90000);
        let spatial_layers = mode.spatial_layers.max(1);
        let media = params.codecs.first();
        let mut stream_params = RtpStreamSendParams::new(
            encoding.and_then(|e| e.ssrc).unwrap_or(0),
            media.map(|c| c.payload_type).unwrap_or(0),
            media.map(|c| c.mime_type.as_str()).unwrap_or(""),
            cmd.kind,
            clock_rate,
        );
        let feedback = |t: &str, p: &str| {
            media.is_some_and(|c| {
                c.rtcp_feedback
                    .iter()
                    .any(|f| f.r#type == t && f.parameter == p)
            })
        };
        stream_params.rtx_ssrc = encoding.and_then(|e| e.rtx.as_ref()).map(|r| r.ssrc);
        stream_params.rtx_payload_type = rtx_payload_type;
        stream_params.rtx_initial_seq = rand::random();
        stream_params.use_nack = feedback("nack", "");
        stream_params.use_pli = feedback("nack", "pli");
        stream_params.use_fir = feedback("ccm", "fir");
        // Slots of the retransmission buffer (each holds a whole packet): about 2 s of video at
        // a few hundred packets/s, 2.5 s of Opus. Pages are touched only as packets arrive.
        stream_params.retransmission_capacity = match cmd.kind {
            MediaKind::Video => 512,
            MediaKind::Audio => 128,
        };
        let send_stream = RtpStreamSend::new(stream_params, Instant::now());
        Self {
            id: cmd.consumer_id,
            producer_id: cmd.producer_id,
            transport_id: cmd.transport_id,
            transport_key,
            kind: cmd.kind,
            consumer_type: cmd.consumer_type,
            consumable_rtp_encodings: cmd.consumable_rtp_encodings,
            paused: cmd.paused,
            producer_paused,
            priority: 1,
            // Default preference: the highest layers the producer sends.
            preferred_spatial_layer: spatial_layers - 1,
            preferred_temporal_layer: mode.temporal_layers.saturating_sub(1),
            key_frame_requested: None,
            key_frame_requests: 0,
            events: Vec::new(),
            ssrc: encoding.and_then(|e| e.ssrc).unwrap_or(0),
            rtx_ssrc: encoding.and_then(|e| e.rtx.as_ref()).map(|r| r.ssrc),
            rtx_payload_type,
            ext_map,
            mid,
            abs_send_time_id: ext_id(params, URI_ABS_SEND_TIME),
            transport_wide_cc_id: ext_id(params, URI_TRANSPORT_WIDE_CC),
            clock_rate,
            seq: RtpSeqManager::new(),
            timestamp_offset: 0,
            sync_required: true,
            current_encoding: None,
            target_encoding: (spatial_layers - 1) as usize,
            current_temporal: None,
            last_timestamp: None,
            vp8: (cmd.consumer_type == ProducerType::Simulcast
                && media.is_some_and(|c| c.mime_type.eq_ignore_ascii_case("video/vp8")))
            .then(|| Vp8Rewriter::new(mode.temporal_layers.saturating_sub(1))),
            send_stream,
            score_changed: false,
            rtp_parameters: cmd.rtp_parameters,
        }
    }

    fn is_video(&self) -> bool {
        self.kind == MediaKind::Video
    }

    pub fn is_active(&self) -> bool {
        !self.paused && !self.producer_paused
    }

    /// Pauses or resumes by its own peer; a resumed video consumer needs a key frame.
    pub fn set_paused(&mut self, paused: bool) {
        let was_active = self.is_active();
        self.paused = paused;
        self.on_activity_change(was_active);
    }

    pub fn set_producer_paused(&mut self, paused: bool) {
        let was_active = self.is_active();
        self.producer_paused = paused;
        self.on_activity_change(was_active);
    }

    fn on_activity_change(&mut self, was_active: bool) {
        if !was_active && self.is_active() {
            self.sync_required = true;
            if self.is_video() {
                self.request_key_frame();
            }
        }
    }

    /// Asks upstream for a key frame of the stream this consumer wants.
    pub fn request_key_frame(&mut self) {
        if self.is_video() {
            self.key_frame_requested = Some(self.target_encoding);
            self.key_frame_requests += 1;
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
        if self.consumer_type == ProducerType::Simulcast {
            if self
                .current_temporal
                .is_some_and(|t| t > self.preferred_temporal_layer)
            {
                self.current_temporal = Some(self.preferred_temporal_layer);
                self.events.push(ConsumerEvent::LayersChanged {
                    spatial: self.current_encoding.map(|e| e as u8),
                    temporal: self.current_temporal,
                });
            }
            if let Some(vp8) = &mut self.vp8 {
                vp8.set_target_temporal_layer(self.preferred_temporal_layer);
            }
            let target = self.preferred_spatial_layer as usize;
            if target != self.target_encoding {
                self.target_encoding = target;
                self.request_key_frame();
            }
        }
    }

    /// Forwards one producer packet, if this consumer wants it.
    pub fn forward(
        &mut self,
        packet: &RtpPacket<'_>,
        info: &PacketInfo,
        now: Instant,
        egress: &mut dyn Egress,
    ) {
        if !self.is_active() {
            return;
        }
        let simulcast = self.consumer_type == ProducerType::Simulcast;
        let encoding = if simulcast { info.encoding } else { 0 };
        if encoding != info.encoding {
            return;
        }
        if simulcast {
            // The wanted stream: the preferred one, or the highest lower one that is receiving
            // (browsers often hold the top layer back).
            let preferred = self.preferred_spatial_layer as usize;
            let target = (0..=preferred)
                .rev()
                .find(|e| *e < 32 && info.active_encodings & (1 << e) != 0)
                .unwrap_or(preferred);
            if target != self.target_encoding {
                self.target_encoding = target;
                if self.current_encoding != Some(target) {
                    self.request_key_frame();
                }
            }
        }
        // Switch streams (or start) only on a key frame of the wanted one.
        if simulcast && self.current_encoding != Some(info.encoding) {
            if info.encoding != self.target_encoding || !info.key_frame {
                if info.encoding == self.target_encoding {
                    self.request_key_frame_if_idle();
                }
                return;
            }
            self.current_encoding = Some(info.encoding);
            self.current_temporal = None;
            self.sync_required = true;
            if let Some(vp8) = &mut self.vp8 {
                vp8.sync_required();
            }
        }
        if self.sync_required {
            // Video restarts on a key frame so the decoder never sees a broken reference.
            if self.is_video() && !info.key_frame {
                self.request_key_frame_if_idle();
                return;
            }
            self.sync(packet, now);
        }
        // Temporal layers above the preferred one are dropped (and leave no gap); for VP8 the
        // rewriter decides below, after the packet is written.
        let vp8_descriptor = self
            .vp8
            .as_ref()
            .and_then(|_| Vp8PayloadDescriptor::parse(packet.payload()));
        if simulcast
            && vp8_descriptor.is_none()
            && info.temporal_layer > self.preferred_temporal_layer
        {
            self.seq.drop(packet.sequence_number());
            return;
        }
        let timestamp = packet.timestamp().wrapping_add(self.timestamp_offset);
        if simulcast
            && self
                .current_temporal
                .is_none_or(|t| t < info.temporal_layer)
        {
            self.current_temporal = Some(info.temporal_layer.min(self.preferred_temporal_layer));
            self.events.push(ConsumerEvent::LayersChanged {
                spatial: self.current_encoding.map(|e| e as u8),
                temporal: self.current_temporal,
            });
        }

        let abs_send_time = info.abs_send_time;
        let tcc_placeholder = [0u8; 2];
        let mut extra: [(u8, &[u8]); 3] = [(0, &[]); 3];
        let mut n = 0;
        if let Some((id, mid)) = &self.mid {
            extra[n] = (*id, mid.as_slice());
            n += 1;
        }
        if let Some(id) = self.abs_send_time_id {
            extra[n] = (id, &abs_send_time);
            n += 1;
        }
        if let Some(id) = self.transport_wide_cc_id {
            extra[n] = (id, &tcc_placeholder);
            n += 1;
        }
        let mut buf = egress.buffer();
        buf.resize(crate::buffer_pool::BUFFER_CAPACITY, 0);
        match rewrite_into(
            packet,
            &mut buf,
            self.ssrc,
            info.mapped_payload_type,
            0,
            timestamp,
            &self.ext_map,
            &extra[..n],
        ) {
            Ok(len) => {
                buf.truncate(len);
                // VP8: drop by temporal layer, or rewrite PictureID/TL0PICIDX in place.
                if let (Some(vp8), Some(descriptor)) = (&mut self.vp8, &vp8_descriptor) {
                    let forwarded = RtpPacket::parse(&buf)
                        .map(|p| p.payload_range())
                        .is_ok_and(|range| vp8.rewrite(descriptor, &mut buf[range]));
                    if !forwarded {
                        self.seq.drop(packet.sequence_number());
                        egress.recycle(buf);
                        return;
                    }
                }
                let Some(seq) = self.seq.input(packet.sequence_number()) else {
                    egress.recycle(buf);
                    return;
                };
                let _ = crate::rtp::packet::set_sequence_number(&mut buf, seq);
                self.last_timestamp = Some((timestamp, now));
                // Stamped before it is kept: a resend on this SSRC is then byte-identical, so
                // AES-GCM never sees one nonce (SSRC, ROC, seq) with two different headers.
                if let Some(id) = self.transport_wide_cc_id {
                    if let Some(tw_seq) = egress.next_transport_wide_seq(self.transport_key) {
                        let _ = crate::rtp::packet::set_transport_wide_seq(&mut buf, id, tw_seq);
                    }
                }
                // Kept (plain) for retransmission, and counted: our header and the start of the
                // payload here, the rest is the producer's stored copy.
                if let Ok(sent) = RtpPacket::parse(&buf) {
                    let shared = info.stored.and_then(|stored| {
                        let src = packet.payload_range().start;
                        let own = sent.payload_range().start;
                        let prefix = STORED_PAYLOAD_PREFIX.min(buf.len() - own);
                        let offset = u16::try_from(src + prefix).ok()?;
                        (buf.len() - own == packet.as_bytes().len() - src)
                            .then_some((own + prefix, SharedTail { stored, offset }))
                    });
                    self.send_stream.packet_sent_shared(&sent, now, shared);
                }
                egress.send_rtp(self.transport_key, buf, None);
            }
            Err(_) => egress.recycle(buf),
        }
    }

    fn request_key_frame_if_idle(&mut self) {
        if self.key_frame_requested.is_none() {
            self.request_key_frame();
        }
    }

    /// Continues the output sequence and timestamps across a (re)start or a stream switch.
    fn sync(&mut self, packet: &RtpPacket<'_>, now: Instant) {
        self.seq.sync(packet.sequence_number().wrapping_sub(1));
        self.timestamp_offset = match self.last_timestamp {
            // Continue from the last timestamp sent, advanced by the time elapsed since.
            Some((last, at)) => {
                let elapsed = now.saturating_duration_since(at);
                let ticks = (elapsed.as_secs_f64() * self.clock_rate as f64) as u32;
                last.wrapping_add(ticks.max(1))
                    .wrapping_sub(packet.timestamp())
            }
            None => 0,
        };
        self.sync_required = false;
        self.key_frame_requested = None;
    }

    /// The consumer score object: `{score, producerScore, producerScores}`.
    pub fn score_json(&self, producer_scores: &[u8]) -> Value {
        let index = self.current_encoding.unwrap_or(self.target_encoding);
        let producer_score = if self.consumer_type == ProducerType::Simple {
            producer_scores.first().copied().unwrap_or(0)
        } else {
            producer_scores.get(index).copied().unwrap_or(0)
        };
        json!({
            "score": self.send_stream.score(),
            "producerScore": producer_score,
            "producerScores": producer_scores,
        })
    }

    /// The subscriber lost these packets: resend them from the retransmission buffer (as RTX
    /// when negotiated). Returns how many went out.
    pub fn receive_nack(
        &mut self,
        lost: &[u16],
        now: Instant,
        store: Option<&PacketStore>,
        egress: &mut dyn Egress,
    ) -> usize {
        let key = self.transport_key;
        // RTX packets are new packets (own SSRC and sequence): they get a fresh transport-wide
        // sequence number. Without RTX the stored packet goes out again unchanged.
        let tcc = self.rtx_ssrc.and(self.transport_wide_cc_id);
        self.send_stream.receive_nack_with_store(
            lost.iter().copied(),
            now,
            store,
            |packet: &mut [u8]| {
                let mut buf = egress.buffer();
                buf.extend_from_slice(packet);
                egress.send_rtp(key, buf, tcc);
            },
        )
    }

    /// A PLI or FIR from the subscriber: counted, and a key frame is asked of the producer.
    pub fn receive_key_frame_request(&mut self, kind: KeyFrameRequestKind) {
        self.send_stream.receive_key_frame_request(kind);
        self.request_key_frame();
    }

    /// A receiver report block about this consumer's stream.
    pub fn receive_receiver_report(&mut self, block: &ReportBlock, arrival: NtpTime, now: Instant) {
        if self
            .send_stream
            .receive_receiver_report(block, arrival, now)
            .is_some()
        {
            self.score_changed = true;
        }
    }

    /// This consumer's SR + SDES (CNAME) compound, written to `out`; false if nothing was sent
    /// yet (no SR then).
    pub fn write_sender_report(&mut self, now: Instant, ntp: NtpTime, out: &mut Vec<u8>) -> bool {
        let Some(fields) = self.send_stream.sender_report(now, ntp) else {
            return false;
        };
        rtcp_build::sender_report(
            out,
            &SenderReport {
                ssrc: fields.ssrc,
                ntp_sec: fields.ntp_sec,
                ntp_frac: fields.ntp_frac,
                rtp_ts: fields.rtp_ts,
                packet_count: fields.packet_count,
                octet_count: fields.octet_count,
                reports: Vec::new(),
            },
        );
        let cname = self.rtp_parameters.rtcp.cname.as_deref().unwrap_or("");
        rtcp_build::sdes_cname(out, fields.ssrc, cname);
        true
    }

    /// `getConsumerStats`: the consumer's own `outbound-rtp` stream.
    pub fn stats(&self, now: Instant, timestamp_ms: u64) -> Value {
        self.send_stream.stats_json(now, timestamp_ms)
    }

    /// The producer encoding currently forwarded.
    pub fn current_encoding(&self) -> Option<usize> {
        self.current_encoding
    }
}
