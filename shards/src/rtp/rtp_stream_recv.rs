//! One incoming RTP stream of a producer (one per simulcast encoding), mediasoup's
//! `RTC::RtpStreamRecv`: validates sequence numbers, counts packets / bytes / loss / jitter,
//! measures bitrate per layer, drives the [`NackGenerator`], builds the reception report block,
//! keeps the last Sender Report (for RTT-free LSR/DLSR and for re-basing timestamps across
//! simulcast switches), and scores the stream 0..=10 on every Sender Report.
//!
//! Sans-IO: RTCP is not built here; methods return what to send (NACK sequence numbers in a
//! caller-provided `Vec`, key frame requests, report blocks) and score changes. The JSON stats are
//! only built on request.

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::nack_generator::{NackGenerator, MAX_NACK_PACKETS};
use super::ntp::{round_trip_time, NtpTime};
use super::packet::RtpPacket;
use super::rate_calculator::RtpDataCounter;
use super::rtp_stream::{
    score_sample, KeyFrameRequest, ReportBlock, ScoreHistory, SeqTracker, SeqUpdate,
};
use super::seq_manager::TimestampManager;
use crate::rtp_parameters::MediaKind;

/// No media for this long makes the stream inactive (score 0).
pub const INACTIVITY_TIMEOUT: Duration = Duration::from_millis(1500);
/// Same with DTX (silence sends nothing for a while).
pub const INACTIVITY_TIMEOUT_DTX: Duration = Duration::from_millis(5000);
/// mediasoup's bitrate window for received streams (smooths key frames).
pub const BITRATE_WINDOW: Duration = Duration::from_millis(2500);
/// Same with DTX.
pub const BITRATE_WINDOW_DTX: Duration = Duration::from_millis(6000);
/// Largest cumulative loss an RR can carry (24-bit signed).
const MAX_TOTAL_LOST: u64 = 0x7F_FFFF;

/// What the producer negotiated for this stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpStreamRecvParams {
    pub encoding_idx: usize,
    pub ssrc: u32,
    pub payload_type: u8,
    /// e.g. `video/VP8`.
    pub mime_type: String,
    pub kind: MediaKind,
    pub clock_rate: u32,
    pub rid: Option<String>,
    pub rtx_ssrc: Option<u32>,
    pub rtx_payload_type: Option<u8>,
    pub use_nack: bool,
    pub use_pli: bool,
    pub use_fir: bool,
    pub use_dtx: bool,
    /// ≥ 1; spatial layers inside this one stream (SVC), 1 for simulcast / plain.
    pub spatial_layers: u8,
    /// ≥ 1.
    pub temporal_layers: u8,
    /// Wait before NACKing a gap (0 for WebRTC).
    pub send_nack_delay: Duration,
    /// Bitrate averaging window ([`BITRATE_WINDOW`] by default).
    pub bitrate_window: Duration,
}

impl RtpStreamRecvParams {
    /// A single-layer stream without RTX, NACK, PLI or FIR; set the rest as needed.
    pub fn new(
        ssrc: u32,
        payload_type: u8,
        mime_type: &str,
        kind: MediaKind,
        clock_rate: u32,
    ) -> Self {
        Self {
            encoding_idx: 0,
            ssrc,
            payload_type,
            mime_type: mime_type.to_owned(),
            kind,
            clock_rate,
            rid: None,
            rtx_ssrc: None,
            rtx_payload_type: None,
            use_nack: false,
            use_pli: false,
            use_fir: false,
            use_dtx: false,
            spatial_layers: 1,
            temporal_layers: 1,
            send_nack_delay: Duration::ZERO,
            bitrate_window: BITRATE_WINDOW,
        }
    }
}

/// What the codec parser found in a packet (the caller runs VP8/VP9/H264 parsing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketInfo {
    pub is_key_frame: bool,
    pub spatial_layer: u8,
    pub temporal_layer: u8,
}

/// Result of feeding a packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveOutcome {
    /// Forward the packet. False for discarded packets and for RTX packets that do not repair a
    /// packet we NACKed.
    pub accepted: bool,
    /// The NACK list overflowed: call [`RtpStreamRecv::request_key_frame`].
    pub key_frame_required: bool,
    /// The stream's score changed to this value.
    pub score: Option<u8>,
}

#[derive(Debug)]
pub struct RtpStreamRecv {
    params: RtpStreamRecvParams,
    seq: SeqTracker,
    rtx_seq: SeqTracker,
    nack: Option<NackGenerator>,
    /// Per layer (`spatial * temporal_layers + temporal`): media and repaired packets with payload.
    layers: Box<[RtpDataCounter]>,
    /// Valid packets received on the media SSRC, padding-only ones included (for loss).
    received_packets: u64,
    rtx_packet_count: u64,
    packets_retransmitted: u64,
    packets_repaired: u64,
    pli_count: u64,
    fir_count: u64,
    fir_seq_nr: u8,
    /// Jitter state (RFC 3550 A.8) in RTP timestamp units; arrival clock counted from `epoch`.
    epoch: Instant,
    transit: Option<u32>,
    jitter: f64,
    /// RR interval state.
    expected_prior: u64,
    received_prior: u64,
    fraction_lost: u8,
    /// Score interval state.
    expected_prior_score: u64,
    received_prior_score: u64,
    repaired_prior_score: u64,
    retransmitted_prior_score: u64,
    score: ScoreHistory,
    active_since: Instant,
    inactive: bool,
    paused: bool,
    last_media_at: Instant,
    last_sr: Option<(Instant, NtpTime, u32)>,
    max_packet: Option<(u32, Instant)>,
    rtt: Option<Duration>,
}

impl RtpStreamRecv {
    /// Allocates everything the packet path needs (layer counters, NACK lists).
    pub fn new(mut params: RtpStreamRecvParams, now: Instant) -> Self {
        params.spatial_layers = params.spatial_layers.max(1);
        params.temporal_layers = params.temporal_layers.max(1);
        let window = if params.use_dtx && params.bitrate_window == BITRATE_WINDOW {
            BITRATE_WINDOW_DTX
        } else {
            params.bitrate_window
        };
        let layer_count = params.spatial_layers as usize * params.temporal_layers as usize;
        let layers = (0..layer_count)
            .map(|_| RtpDataCounter::new(window))
            .collect::<Vec<_>>()
            .into_boxed_slice();
        let nack = params
            .use_nack
            .then(|| NackGenerator::new(params.send_nack_delay));
        Self {
            params,
            seq: SeqTracker::new(),
            rtx_seq: SeqTracker::new(),
            nack,
            layers,
            received_packets: 0,
            rtx_packet_count: 0,
            packets_retransmitted: 0,
            packets_repaired: 0,
            pli_count: 0,
            fir_count: 0,
            fir_seq_nr: 0,
            epoch: now,
            transit: None,
            jitter: 0.0,
            expected_prior: 0,
            received_prior: 0,
            fraction_lost: 0,
            expected_prior_score: 0,
            received_prior_score: 0,
            repaired_prior_score: 0,
            retransmitted_prior_score: 0,
            score: ScoreHistory::new(10),
            active_since: now,
            inactive: false,
            paused: false,
            last_media_at: now,
            last_sr: None,
            max_packet: None,
            rtt: None,
        }
    }

    pub fn params(&self) -> &RtpStreamRecvParams {
        &self.params
    }

    pub fn ssrc(&self) -> u32 {
        self.params.ssrc
    }

    /// A packet on the media SSRC. NACKs due because of a gap are written to `nacks` (cleared
    /// first; preallocate [`MAX_NACK_PACKETS`]).
    pub fn receive_packet(
        &mut self,
        packet: &RtpPacket<'_>,
        info: PacketInfo,
        now: Instant,
        nacks: &mut Vec<u16>,
    ) -> ReceiveOutcome {
        nacks.clear();
        let mut outcome = ReceiveOutcome::default();
        let seq = packet.sequence_number();
        match self.seq.update(seq) {
            SeqUpdate::Discarded => return outcome,
            SeqUpdate::Reset => self.on_sequence_reset(),
            SeqUpdate::Accepted => {}
        }
        outcome.accepted = true;
        self.received_packets += 1;
        let ts = packet.timestamp();
        if self
            .max_packet
            .is_none_or(|(max, _)| TimestampManager::is_seq_higher_than(ts, max))
        {
            self.max_packet = Some((ts, now));
        }
        let has_rtx = self.params.rtx_ssrc.is_some();
        if let Some(nack) = &mut self.nack {
            let o = nack.received(seq, info.is_key_frame, false, now, nacks);
            outcome.key_frame_required = o.key_frame_required;
            // Without RTX, retransmissions come on the media SSRC.
            if o.was_nacked && !has_rtx {
                self.packets_retransmitted += 1;
                self.packets_repaired += 1;
            }
        }
        self.calculate_jitter(ts, now);
        // Padding-only packets neither count as media nor (re)activate the stream.
        if packet.payload().is_empty() {
            return outcome;
        }
        self.count_media(packet.len(), info, now, &mut outcome);
        outcome
    }

    /// A packet recovered from RTX: `rtx_seq` is the RTX packet's own sequence number, `packet`
    /// the decoded original ([`super::rtx::decode`]; padding-only RTX probes have nothing to
    /// decode and are not fed here). Accepted only if it repairs a packet we NACKed.
    pub fn receive_rtx_packet(
        &mut self,
        rtx_seq: u16,
        packet: &RtpPacket<'_>,
        info: PacketInfo,
        now: Instant,
        nacks: &mut Vec<u16>,
    ) -> ReceiveOutcome {
        nacks.clear();
        let mut outcome = ReceiveOutcome::default();
        if self.nack.is_none() {
            return outcome;
        }
        self.rtx_packet_count += 1;
        if self.rtx_seq.update(rtx_seq) == SeqUpdate::Discarded {
            return outcome;
        }
        let seq = packet.sequence_number();
        match self.seq.update(seq) {
            SeqUpdate::Discarded => return outcome,
            SeqUpdate::Reset => self.on_sequence_reset(),
            SeqUpdate::Accepted => {}
        }
        self.packets_retransmitted += 1;
        let Some(nack) = &mut self.nack else {
            return outcome;
        };
        let o = nack.received(seq, info.is_key_frame, true, now, nacks);
        outcome.key_frame_required = o.key_frame_required;
        if !o.was_nacked {
            return outcome;
        }
        outcome.accepted = true;
        if packet.payload().is_empty() {
            return outcome;
        }
        self.packets_repaired += 1;
        self.count_media(packet.len(), info, now, &mut outcome);
        outcome
    }

    /// The sender restarted its sequence numbers: expected counts start over, so loss accounting
    /// and pending NACKs must too.
    fn on_sequence_reset(&mut self) {
        self.received_packets = 0;
        self.expected_prior = 0;
        self.received_prior = 0;
        self.expected_prior_score = 0;
        self.received_prior_score = 0;
        self.max_packet = None;
        if let Some(nack) = &mut self.nack {
            nack.reset();
        }
    }

    fn count_media(
        &mut self,
        len: usize,
        info: PacketInfo,
        now: Instant,
        outcome: &mut ReceiveOutcome,
    ) {
        let s = info.spatial_layer.min(self.params.spatial_layers - 1) as usize;
        let t = info.temporal_layer.min(self.params.temporal_layers - 1) as usize;
        let idx = s * self.params.temporal_layers as usize + t;
        self.layers[idx].update(len, now);
        self.last_media_at = now;
        if self.inactive {
            self.inactive = false;
            outcome.score = self.set_score(ScoreHistory::reset, 10, now);
        }
    }

    /// RFC 3550 A.8 interarrival jitter, in RTP timestamp units.
    fn calculate_jitter(&mut self, rtp_ts: u32, now: Instant) {
        if self.params.clock_rate == 0 {
            return;
        }
        let elapsed_us = now.saturating_duration_since(self.epoch).as_micros() as u64;
        let arrival = (elapsed_us * self.params.clock_rate as u64 / 1_000_000) as u32;
        let transit = arrival.wrapping_sub(rtp_ts);
        if let Some(prev) = self.transit {
            let d = (transit.wrapping_sub(prev) as i32).unsigned_abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.transit = Some(transit);
    }

    fn set_score(
        &mut self,
        op: fn(&mut ScoreHistory, u8) -> Option<u8>,
        value: u8,
        now: Instant,
    ) -> Option<u8> {
        let previous = self.score.score();
        let changed = op(&mut self.score, value);
        if changed.is_some() && previous == 0 {
            self.active_since = now;
        }
        changed
    }

    /// Retries due NACKs (into `nacks`, cleared first) and detects inactivity. Returns the new
    /// score if it changed (0 after [`INACTIVITY_TIMEOUT`] without media).
    pub fn poll(&mut self, now: Instant, nacks: &mut Vec<u16>) -> Option<u8> {
        nacks.clear();
        if let Some(nack) = &mut self.nack {
            nack.poll(now, nacks);
        }
        if !self.inactive
            && !self.paused
            && now.saturating_duration_since(self.last_media_at) >= self.inactivity_timeout()
        {
            self.inactive = true;
            return self.set_score(ScoreHistory::reset, 0, now);
        }
        None
    }

    fn inactivity_timeout(&self) -> Duration {
        if self.params.use_dtx {
            INACTIVITY_TIMEOUT_DTX
        } else {
            INACTIVITY_TIMEOUT
        }
    }

    /// When [`Self::poll`] has something to do next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let nack = self.nack.as_ref().and_then(|n| n.poll_timeout());
        let inactivity = (!self.inactive && !self.paused)
            .then(|| self.last_media_at + self.inactivity_timeout());
        match (nack, inactivity) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A Sender Report for this SSRC arrived: remember it (LSR/DLSR, timestamp re-basing) and
    /// recompute the score. Returns the new score if it changed.
    pub fn receive_sender_report(&mut self, ntp: NtpTime, rtp_ts: u32, now: Instant) -> Option<u8> {
        self.last_sr = Some((now, ntp, rtp_ts));
        self.update_score(now)
    }

    /// mediasoup's `RtpStreamRecv::UpdateScore`.
    fn update_score(&mut self, now: Instant) -> Option<u8> {
        let total_expected = self.seq.expected_packets() as u64;
        let expected = total_expected.saturating_sub(self.expected_prior_score);
        self.expected_prior_score = total_expected;
        let total_received = self.received_packets;
        let received = total_received.saturating_sub(self.received_prior_score);
        self.received_prior_score = total_received;
        let mut lost = expected.saturating_sub(received);
        let mut repaired = self.packets_repaired - self.repaired_prior_score;
        self.repaired_prior_score = self.packets_repaired;
        let retransmitted = self.packets_retransmitted - self.retransmitted_prior_score;
        self.retransmitted_prior_score = self.packets_retransmitted;
        if self.inactive {
            return None;
        }
        let sample = if expected == 0 {
            10
        } else if received == 0 {
            0
        } else {
            lost = lost.min(received);
            if repaired > lost {
                if self.params.rtx_ssrc.is_some() {
                    repaired = lost;
                } else {
                    lost = repaired;
                }
            }
            score_sample(
                received.min(u32::MAX as u64) as u32,
                lost.min(u32::MAX as u64) as u32,
                repaired.min(u32::MAX as u64) as u32,
                retransmitted.min(u32::MAX as u64) as u32,
            )
        };
        self.set_score(ScoreHistory::update, sample, now)
    }

    /// An RTCP XR DLRR block about our RRs arrived (RFC 3611): RTT toward the publisher, which
    /// paces NACK retries.
    pub fn receive_xr_delay_since_last_rr(&mut self, last_rr: u32, dlrr: u32, arrival: NtpTime) {
        if dlrr == 0 {
            return;
        }
        if let Some(rtt) = round_trip_time(arrival, last_rr, dlrr) {
            self.rtt = Some(rtt);
            if let Some(nack) = &mut self.nack {
                nack.update_rtt(rtt);
            }
        }
    }

    /// The reception report block for our next RR; closes the fraction-lost interval.
    pub fn receiver_report_block(&mut self, now: Instant) -> ReportBlock {
        let expected = self.seq.expected_packets() as u64;
        let received = self.received_packets;
        let total_lost = expected.saturating_sub(received).min(MAX_TOTAL_LOST);
        let expected_interval = expected.saturating_sub(self.expected_prior);
        self.expected_prior = expected;
        let received_interval = received.saturating_sub(self.received_prior);
        self.received_prior = received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        self.fraction_lost = if expected_interval == 0 || lost_interval == 0 {
            0
        } else {
            (((lost_interval << 8) as f64 / expected_interval as f64).round() as u64).min(255) as u8
        };
        let (lsr, dlsr) = match self.last_sr {
            Some((at, ntp, _)) => (
                ntp.compact(),
                super::ntp::duration_to_compact(now.saturating_duration_since(at)),
            ),
            None => (0, 0),
        };
        ReportBlock {
            ssrc: self.params.ssrc,
            fraction_lost: self.fraction_lost,
            total_lost: total_lost as i32,
            highest_seq: self.seq.extended_max_seq(),
            jitter: self.jitter as u32,
            lsr,
            dlsr,
        }
    }

    /// Asks the publisher for a key frame (PLI if negotiated, else FIR), counting it. None if
    /// neither was negotiated.
    pub fn request_key_frame(&mut self) -> Option<KeyFrameRequest> {
        if self.params.use_pli {
            self.pli_count += 1;
            Some(KeyFrameRequest::Pli)
        } else if self.params.use_fir {
            self.fir_count += 1;
            self.fir_seq_nr = self.fir_seq_nr.wrapping_add(1);
            Some(KeyFrameRequest::Fir {
                seq_nr: self.fir_seq_nr,
            })
        } else {
            None
        }
    }

    /// Producer paused: forget NACK state and jitter, stop the inactivity check.
    pub fn pause(&mut self) {
        self.paused = true;
        if let Some(nack) = &mut self.nack {
            nack.reset();
        }
        self.transit = None;
        self.jitter = 0.0;
    }

    pub fn resume(&mut self, now: Instant) {
        self.paused = false;
        if !self.inactive {
            self.last_media_at = now;
        }
    }

    pub fn score(&self) -> u8 {
        self.score.score()
    }

    /// Since when the score is above 0 (mediasoup's `activeSinceMs`; layer selection prefers
    /// streams active for a while).
    pub fn active_since(&self) -> Instant {
        self.active_since
    }

    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// Highest RTP timestamp received and when.
    pub fn max_packet(&self) -> Option<(u32, Instant)> {
        self.max_packet
    }

    /// The last Sender Report: NTP time and RTP timestamp (mediasoup's `GetSenderReportNtpMs` /
    /// `GetSenderReportTs`, used to align timestamps when switching between encodings).
    pub fn last_sender_report(&self) -> Option<(NtpTime, u32)> {
        self.last_sr.map(|(_, ntp, ts)| (ntp, ts))
    }

    pub fn fraction_lost(&self) -> u8 {
        self.fraction_lost
    }

    pub fn packets_lost(&self) -> u64 {
        (self.seq.expected_packets() as u64).saturating_sub(self.received_packets)
    }

    pub fn packet_count(&self) -> u64 {
        self.layers.iter().map(|c| c.packet_count()).sum()
    }

    pub fn byte_count(&self) -> u64 {
        self.layers.iter().map(|c| c.bytes()).sum()
    }

    pub fn jitter(&self) -> u32 {
        self.jitter as u32
    }

    /// Bitrate of the whole stream.
    pub fn bitrate(&self, now: Instant) -> u32 {
        self.layers.iter().map(|c| c.bitrate(now)).sum()
    }

    fn layer(&self, spatial: u8, temporal: u8) -> Option<&RtpDataCounter> {
        if spatial >= self.params.spatial_layers || temporal >= self.params.temporal_layers {
            return None;
        }
        self.layers
            .get(spatial as usize * self.params.temporal_layers as usize + temporal as usize)
    }

    /// What forwarding up to layer `spatial.temporal` costs: all lower spatial layers plus
    /// temporal layers ≤ `temporal` of `spatial`; 0 if that layer itself is not being received
    /// (mediasoup's `GetBitrate(now, s, t)`).
    pub fn layer_bitrate(&self, now: Instant, spatial: u8, temporal: u8) -> u32 {
        if self
            .layer(spatial, temporal)
            .is_none_or(|c| c.bitrate(now) == 0)
        {
            return 0;
        }
        let lower: u32 = (0..spatial)
            .map(|s| self.spatial_layer_bitrate(now, s))
            .sum();
        let own: u32 = (0..=temporal)
            .filter_map(|t| self.layer(spatial, t))
            .map(|c| c.bitrate(now))
            .sum();
        lower + own
    }

    /// All temporal layers of one spatial layer.
    pub fn spatial_layer_bitrate(&self, now: Instant, spatial: u8) -> u32 {
        (0..self.params.temporal_layers)
            .filter_map(|t| self.layer(spatial, t))
            .map(|c| c.bitrate(now))
            .sum()
    }

    /// One layer alone (mediasoup's `GetLayerBitrate`).
    pub fn single_layer_bitrate(&self, now: Instant, spatial: u8, temporal: u8) -> u32 {
        self.layer(spatial, temporal).map_or(0, |c| c.bitrate(now))
    }

    pub fn packets_discarded(&self) -> u64 {
        self.seq.packets_discarded()
    }

    pub fn packets_retransmitted(&self) -> u64 {
        self.packets_retransmitted
    }

    pub fn packets_repaired(&self) -> u64 {
        self.packets_repaired
    }

    pub fn nack_count(&self) -> u64 {
        self.nack.as_ref().map_or(0, |n| n.nack_count())
    }

    pub fn nack_packet_count(&self) -> u64 {
        self.nack.as_ref().map_or(0, |n| n.nack_packet_count())
    }

    pub fn pli_count(&self) -> u64 {
        self.pli_count
    }

    pub fn fir_count(&self) -> u64 {
        self.fir_count
    }

    pub fn rtx_packet_count(&self) -> u64 {
        self.rtx_packet_count
    }

    pub fn rtx_packets_discarded(&self) -> u64 {
        self.rtx_seq.packets_discarded()
    }

    /// mediasoup's `inbound-rtp` stats object (`getProducerStats` entry). `timestamp_ms` is the
    /// value of the `timestamp` field; `now` ages the bitrate windows.
    pub fn stats_json(&self, now: Instant, timestamp_ms: u64) -> Value {
        let p = &self.params;
        let mut v = json!({
            "type": "inbound-rtp",
            "timestamp": timestamp_ms,
            "ssrc": p.ssrc,
            "kind": p.kind.as_str(),
            "mimeType": p.mime_type,
            "packetsLost": self.packets_lost(),
            "fractionLost": self.fraction_lost,
            "packetsDiscarded": self.packets_discarded(),
            "packetsRetransmitted": self.packets_retransmitted,
            "packetsRepaired": self.packets_repaired,
            "nackCount": self.nack_count(),
            "nackPacketCount": self.nack_packet_count(),
            "pliCount": self.pli_count,
            "firCount": self.fir_count,
            "score": self.score(),
            "jitter": self.jitter(),
            "packetCount": self.packet_count(),
            "byteCount": self.byte_count(),
            "bitrate": self.bitrate(now),
        });
        if let Some(rtx_ssrc) = p.rtx_ssrc {
            v["rtxSsrc"] = json!(rtx_ssrc);
            v["rtxPacketsDiscarded"] = json!(self.rtx_packets_discarded());
        }
        if let Some(rid) = &p.rid {
            v["rid"] = json!(rid);
        }
        if let Some(rtt) = self.rtt {
            v["roundTripTime"] = json!(rtt.as_secs_f64() * 1000.0);
        }
        let mut by_layer = Map::new();
        if p.spatial_layers > 1 || p.temporal_layers > 1 {
            for s in 0..p.spatial_layers {
                for t in 0..p.temporal_layers {
                    by_layer.insert(format!("{s}.{t}"), json!(self.layer_bitrate(now, s, t)));
                }
            }
        }
        v["bitrateByLayer"] = Value::Object(by_layer);
        v
    }
}

/// Capacity to give the `nacks` vector passed to this module's methods.
pub const NACK_BATCH_CAPACITY: usize = MAX_NACK_PACKETS;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::packet::RtpHeaderWriter;

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn params() -> RtpStreamRecvParams {
        let mut p = RtpStreamRecvParams::new(1111, 96, "video/VP8", MediaKind::Video, 90_000);
        p.use_nack = true;
        p.use_pli = true;
        p.temporal_layers = 2;
        p
    }

    /// Packet `seq` with timestamp `ts` and `payload_len` payload bytes, in `buf`.
    fn packet(buf: &mut [u8], seq: u16, ts: u32, payload_len: usize) -> usize {
        let payload = [0xAB; 1200];
        RtpHeaderWriter {
            payload_type: 96,
            sequence_number: seq,
            timestamp: ts,
            ssrc: 1111,
            ..Default::default()
        }
        .write(buf, std::iter::empty(), &payload[..payload_len], 0)
        .unwrap()
    }

    fn feed(
        s: &mut RtpStreamRecv,
        seq: u16,
        ts: u32,
        at: Instant,
        nacks: &mut Vec<u16>,
    ) -> ReceiveOutcome {
        let mut buf = [0u8; 1500];
        let n = packet(&mut buf, seq, ts, 100);
        let p = RtpPacket::parse(&buf[..n]).unwrap();
        s.receive_packet(&p, PacketInfo::default(), at, nacks)
    }

    #[test]
    fn counts_loss_nacks_and_builds_report_block() {
        let t0 = Instant::now();
        let mut s = RtpStreamRecv::new(params(), t0);
        let mut nacks = Vec::with_capacity(NACK_BATCH_CAPACITY);
        for seq in 0..10u16 {
            feed(
                &mut s,
                seq,
                seq as u32 * 3000,
                ms(t0, seq as u64 * 33),
                &mut nacks,
            );
        }
        // 10 and 11 lost.
        let o = feed(&mut s, 12, 36_000, ms(t0, 400), &mut nacks);
        assert!(o.accepted);
        assert_eq!(nacks, [10, 11]);
        assert_eq!((s.nack_count(), s.nack_packet_count()), (1, 2));
        assert_eq!(s.packet_count(), 11);
        assert_eq!(s.byte_count(), 11 * 112);
        assert_eq!(s.packets_lost(), 2);

        let rb = s.receiver_report_block(ms(t0, 500));
        assert_eq!(rb.ssrc, 1111);
        assert_eq!(rb.total_lost, 2);
        assert_eq!(rb.fraction_lost, (2.0f64 * 256.0 / 13.0).round() as u8);
        assert_eq!(rb.highest_seq, 12);
        assert_eq!((rb.lsr, rb.dlsr), (0, 0));
        // Next interval without loss.
        feed(&mut s, 13, 39_000, ms(t0, 433), &mut nacks);
        assert_eq!(s.receiver_report_block(ms(t0, 1500)).fraction_lost, 0);

        // Retransmission without RTX on the media SSRC repairs a NACKed packet.
        s.poll(ms(t0, 600), &mut nacks);
        assert_eq!(nacks, [10, 11]);
        let o = feed(&mut s, 10, 30_000, ms(t0, 620), &mut nacks);
        assert!(o.accepted);
        assert_eq!((s.packets_retransmitted(), s.packets_repaired()), (1, 1));
    }

    #[test]
    fn lsr_dlsr_from_sender_report() {
        let t0 = Instant::now();
        let mut s = RtpStreamRecv::new(params(), t0);
        let mut nacks = vec![];
        feed(&mut s, 1, 0, t0, &mut nacks);
        let ntp = NtpTime::new(0x0001_2345, 0x6789_0000);
        s.receive_sender_report(ntp, 1234, t0);
        let rb = s.receiver_report_block(ms(t0, 1500));
        assert_eq!(rb.lsr, 0x2345_6789);
        assert_eq!(rb.dlsr, 0x0001_8000);
        assert_eq!(s.last_sender_report(), Some((ntp, 1234)));
    }

    #[test]
    fn jitter_follows_rfc3550() {
        let t0 = Instant::now();
        let mut s = RtpStreamRecv::new(params(), t0);
        let mut nacks = vec![];
        // Perfectly paced: 3000 ticks every 33.333 ms at 90 kHz → no jitter.
        for i in 0..50u32 {
            let at = t0 + Duration::from_micros(i as u64 * 33_333);
            feed(&mut s, i as u16, i * 3000, at, &mut nacks);
        }
        assert!(s.jitter() <= 1, "{}", s.jitter());
        // One packet 10 ms late: |D| = 900 ticks, and the estimate moves by 1/16 of it.
        let late = t0 + Duration::from_micros(50 * 33_333 + 10_000);
        feed(&mut s, 50, 50 * 3000, late, &mut nacks);
        assert!((55..=57).contains(&s.jitter()), "{}", s.jitter());
        // Alternate 10 ms early/late: |D| = 900 ticks each time → jitter converges toward 900.
        for i in 51..400u32 {
            let skew = if i % 2 == 0 { 10_000 } else { 0 };
            let at = t0 + Duration::from_micros(i as u64 * 33_333 + skew);
            feed(&mut s, i as u16, i * 3000, at, &mut nacks);
        }
        assert!((850..=950).contains(&s.jitter()), "{}", s.jitter());
    }

    #[test]
    fn score_drops_with_loss_and_goes_to_zero_when_inactive() {
        let t0 = Instant::now();
        let mut s = RtpStreamRecv::new(params(), t0);
        let mut nacks = vec![];
        assert_eq!(s.score(), 10);
        // Lose 1 in 5 for a while, with an SR each 50 packets.
        let mut seq = 0u16;
        let mut last = None;
        for round in 0..5u64 {
            for _ in 0..50 {
                if seq % 5 != 4 {
                    feed(
                        &mut s,
                        seq,
                        seq as u32 * 3000,
                        ms(t0, round * 1000),
                        &mut nacks,
                    );
                }
                seq += 1;
            }
            last = s
                .receive_sender_report(NtpTime::new(1, 0), 0, ms(t0, round * 1000))
                .or(last);
        }
        assert!(s.score() <= 5, "score {}", s.score());
        assert_eq!(last, Some(s.score()));
        // Silence: inactive after 1.5 s.
        let quiet = ms(t0, 4000);
        assert_eq!(
            s.poll(quiet + Duration::from_millis(1499), &mut nacks),
            None
        );
        assert_eq!(
            s.poll(quiet + Duration::from_millis(1500), &mut nacks),
            Some(0)
        );
        assert_eq!(s.score(), 0);
        // Media again: back to 10 at once.
        let o = feed(&mut s, seq, seq as u32 * 3000, ms(t0, 6000), &mut nacks);
        assert_eq!(o.score, Some(10));
        assert_eq!(s.active_since(), ms(t0, 6000));
    }

    #[test]
    fn rtx_recovery_counts_only_nacked_packets() {
        let t0 = Instant::now();
        let mut p = params();
        p.rtx_ssrc = Some(2222);
        p.rtx_payload_type = Some(97);
        let mut s = RtpStreamRecv::new(p, t0);
        let mut nacks = vec![];
        feed(&mut s, 1, 0, t0, &mut nacks);
        feed(&mut s, 3, 6000, t0, &mut nacks);
        assert_eq!(nacks, [2]);
        let mut buf = [0u8; 1500];
        let n = packet(&mut buf, 2, 3000, 100);
        let p2 = RtpPacket::parse(&buf[..n]).unwrap();
        let o = s.receive_rtx_packet(500, &p2, PacketInfo::default(), ms(t0, 50), &mut nacks);
        assert!(o.accepted);
        assert_eq!((s.packets_retransmitted(), s.packets_repaired()), (1, 1));
        // The same packet again (a duplicate retransmission): not forwarded.
        let o = s.receive_rtx_packet(501, &p2, PacketInfo::default(), ms(t0, 60), &mut nacks);
        assert!(!o.accepted);
        assert_eq!((s.packets_retransmitted(), s.packets_repaired()), (2, 1));
        let stats = s.stats_json(ms(t0, 100), 42);
        assert_eq!(stats["rtxSsrc"], 2222);
        assert_eq!(stats["rtxPacketsDiscarded"], 0);
    }

    #[test]
    fn layer_bitrates_and_key_frame_requests() {
        let t0 = Instant::now();
        let mut s = RtpStreamRecv::new(params(), t0);
        let mut nacks = vec![];
        let mut buf = [0u8; 1500];
        for i in 0..20u16 {
            let n = packet(&mut buf, i, 0, 1000);
            let p = RtpPacket::parse(&buf[..n]).unwrap();
            let info = PacketInfo {
                temporal_layer: (i % 2) as u8,
                ..Default::default()
            };
            s.receive_packet(&p, info, ms(t0, i as u64 * 50), &mut nacks);
        }
        let now = ms(t0, 1000);
        let t0_rate = s.single_layer_bitrate(now, 0, 0);
        assert!(t0_rate > 0);
        assert_eq!(s.layer_bitrate(now, 0, 0), t0_rate);
        assert_eq!(s.layer_bitrate(now, 0, 1), s.bitrate(now));
        assert_eq!(s.layer_bitrate(now, 1, 0), 0);
        assert_eq!(s.request_key_frame(), Some(KeyFrameRequest::Pli));
        assert_eq!(s.pli_count(), 1);
        let mut p = params();
        p.use_pli = false;
        p.use_fir = true;
        let mut f = RtpStreamRecv::new(p, t0);
        assert_eq!(
            f.request_key_frame(),
            Some(KeyFrameRequest::Fir { seq_nr: 1 })
        );
        assert_eq!(
            f.request_key_frame(),
            Some(KeyFrameRequest::Fir { seq_nr: 2 })
        );
        assert_eq!(f.fir_count(), 2);
    }

    #[test]
    fn padding_only_packets_count_for_loss_not_for_media() {
        let t0 = Instant::now();
        let mut s = RtpStreamRecv::new(params(), t0);
        let mut nacks = vec![];
        let mut buf = [0u8; 1500];
        feed(&mut s, 1, 0, t0, &mut nacks);
        let n = RtpHeaderWriter {
            payload_type: 96,
            sequence_number: 2,
            ssrc: 1111,
            ..Default::default()
        }
        .write(&mut buf, std::iter::empty(), &[], 100)
        .unwrap();
        let p = RtpPacket::parse(&buf[..n]).unwrap();
        assert!(
            s.receive_packet(&p, PacketInfo::default(), t0, &mut nacks)
                .accepted
        );
        assert_eq!(s.packet_count(), 1);
        assert_eq!(s.packets_lost(), 0);
    }

    #[test]
    fn discards_wild_jumps() {
        let t0 = Instant::now();
        let mut s = RtpStreamRecv::new(params(), t0);
        let mut nacks = vec![];
        feed(&mut s, 1, 0, t0, &mut nacks);
        assert!(!feed(&mut s, 30_000, 0, t0, &mut nacks).accepted);
        assert_eq!(s.packets_discarded(), 1);
        assert!(nacks.is_empty());
        // The next one in sequence: the source restarted; loss starts over instead of
        // counting the jump.
        assert!(feed(&mut s, 30_001, 0, t0, &mut nacks).accepted);
        assert_eq!(s.packets_lost(), 0);
        assert!(feed(&mut s, 30_003, 0, t0, &mut nacks).accepted);
        assert_eq!(s.packets_lost(), 1);
        assert_eq!(nacks, [30_002]);
    }

    #[test]
    fn stats_json_shape() {
        let t0 = Instant::now();
        let mut p = params();
        p.rid = Some("h".into());
        let mut s = RtpStreamRecv::new(p, t0);
        let mut nacks = vec![];
        feed(&mut s, 1, 0, t0, &mut nacks);
        let v = s.stats_json(ms(t0, 10), 1_700_000_000_000);
        assert_eq!(v["type"], "inbound-rtp");
        assert_eq!(v["timestamp"], 1_700_000_000_000u64);
        assert_eq!(v["ssrc"], 1111);
        assert_eq!(v["rid"], "h");
        assert_eq!(v["kind"], "video");
        assert_eq!(v["mimeType"], "video/VP8");
        assert_eq!(v["packetCount"], 1);
        assert_eq!(v["byteCount"], 112);
        assert_eq!(v["score"], 10);
        for key in [
            "packetsLost",
            "fractionLost",
            "packetsDiscarded",
            "packetsRetransmitted",
            "packetsRepaired",
            "nackCount",
            "nackPacketCount",
            "pliCount",
            "firCount",
            "jitter",
            "bitrate",
        ] {
            assert!(v[key].is_u64(), "{key}");
        }
        assert!(v.get("rtxSsrc").is_none());
        assert!(v.get("roundTripTime").is_none());
        let layers = v["bitrateByLayer"].as_object().unwrap();
        assert_eq!(layers.keys().collect::<Vec<_>>(), ["0.0", "0.1"]);
        // Single-layer stream: empty object.
        let single = RtpStreamRecv::new(
            RtpStreamRecvParams::new(1, 111, "audio/opus", MediaKind::Audio, 48_000),
            t0,
        );
        assert_eq!(single.stats_json(t0, 0)["bitrateByLayer"], json!({}));
    }
}
