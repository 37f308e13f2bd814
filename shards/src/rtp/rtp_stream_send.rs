//! One outgoing RTP stream of a consumer, mediasoup's `RTC::RtpStreamSend`: counts what was
//! sent, keeps it in a [`RetransmissionBuffer`] to answer NACKs (RTX-encoded when negotiated),
//! takes loss / jitter / RTT from Receiver Reports, scores the stream 0..=10 on each of them, and
//! produces the Sender Report fields.
//!
//! Sans-IO: retransmissions are handed to a callback as ready-to-send plain RTP (the caller
//! stamps transport-wide sequence numbers in place, protects and sends); RTCP is not built here.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::nack_generator::DEFAULT_RTT;
use super::ntp::{round_trip_time, NtpTime};
use super::packet::RtpPacket;
use super::packet_store::PacketStore;
use super::rate_calculator::RtpDataCounter;
use super::retransmission_buffer::{
    RetransmissionBuffer, SharedTail, DEFAULT_CAPACITY, DEFAULT_MAX_RESENDS, HEAD_LEN,
    MAX_PACKET_LEN, MAX_RETRANSMISSION_DELAY_AUDIO, MAX_RETRANSMISSION_DELAY_VIDEO,
};
use super::rtp_stream::{
    score_sample, KeyFrameRequestKind, ReportBlock, ScoreHistory, SeqTracker, SeqUpdate,
};
use super::rtx;
use super::seq_manager::TimestampManager;
use crate::rtp_parameters::MediaKind;

/// mediasoup's default bitrate window for RTP data counters.
pub const BITRATE_WINDOW: Duration = Duration::from_millis(2500);

/// What the consumer negotiated for this stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpStreamSendParams {
    pub ssrc: u32,
    pub payload_type: u8,
    /// e.g. `video/VP8`.
    pub mime_type: String,
    pub kind: MediaKind,
    pub clock_rate: u32,
    pub rid: Option<String>,
    pub rtx_ssrc: Option<u32>,
    pub rtx_payload_type: Option<u8>,
    /// RTX sequence numbers continue from here (mediasoup picks it at random).
    pub rtx_initial_seq: u16,
    pub use_nack: bool,
    pub use_pli: bool,
    pub use_fir: bool,
    /// Retransmission buffer slots (allocated only with NACK).
    pub retransmission_capacity: usize,
    pub bitrate_window: Duration,
}

impl RtpStreamSendParams {
    /// A stream without RTX or NACK; set the rest as needed.
    pub fn new(
        ssrc: u32,
        payload_type: u8,
        mime_type: &str,
        kind: MediaKind,
        clock_rate: u32,
    ) -> Self {
        Self {
            ssrc,
            payload_type,
            mime_type: mime_type.to_owned(),
            kind,
            clock_rate,
            rid: None,
            rtx_ssrc: None,
            rtx_payload_type: None,
            rtx_initial_seq: 0,
            use_nack: false,
            use_pli: false,
            use_fir: false,
            retransmission_capacity: DEFAULT_CAPACITY,
            bitrate_window: BITRATE_WINDOW,
        }
    }
}

/// The sender info of an RTCP Sender Report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReportFields {
    pub ssrc: u32,
    pub ntp_sec: u32,
    pub ntp_frac: u32,
    pub rtp_ts: u32,
    pub packet_count: u32,
    /// Payload octets (RFC 3550: headers and padding excluded).
    pub octet_count: u32,
}

#[derive(Debug)]
pub struct RtpStreamSend {
    params: RtpStreamSendParams,
    seq: SeqTracker,
    counter: RtpDataCounter,
    payload_bytes: u64,
    buffer: Option<RetransmissionBuffer>,
    /// Where retransmissions are assembled (RTX adds 2 bytes to a stored packet).
    scratch: Box<[u8]>,
    /// Where a packet stored as head + shared tail is put back together.
    joined: Box<[u8]>,
    rtx_seq: u16,
    rtx_packet_count: u64,
    rtx_byte_count: u64,
    packets_retransmitted: u64,
    packets_repaired: u64,
    nack_count: u64,
    nack_packet_count: u64,
    pli_count: u64,
    fir_count: u64,
    /// From the last Receiver Report.
    packets_lost: i32,
    fraction_lost: u8,
    jitter: u32,
    rtt: Option<Duration>,
    score: ScoreHistory,
    active_since: Instant,
    sent_prior_score: u64,
    lost_prior_score: u64,
    repaired_prior_score: u64,
    retransmitted_prior_score: u64,
    max_packet: Option<(u32, Instant)>,
    last_sr: Option<(Instant, NtpTime, u32)>,
}

impl RtpStreamSend {
    /// Allocates the retransmission buffer (with NACK) and the scratch buffer.
    pub fn new(params: RtpStreamSendParams, now: Instant) -> Self {
        let max_age = match params.kind {
            MediaKind::Video => MAX_RETRANSMISSION_DELAY_VIDEO,
            MediaKind::Audio => MAX_RETRANSMISSION_DELAY_AUDIO,
        };
        let buffer = params.use_nack.then(|| {
            RetransmissionBuffer::new(params.retransmission_capacity, max_age, DEFAULT_MAX_RESENDS)
        });
        let scratch_len = if params.use_nack {
            MAX_PACKET_LEN + 2
        } else {
            0
        };
        Self {
            rtx_seq: params.rtx_initial_seq,
            counter: RtpDataCounter::new(params.bitrate_window),
            params,
            seq: SeqTracker::new(),
            payload_bytes: 0,
            buffer,
            scratch: vec![0u8; scratch_len].into_boxed_slice(),
            joined: vec![0u8; scratch_len.min(MAX_PACKET_LEN)].into_boxed_slice(),
            rtx_packet_count: 0,
            rtx_byte_count: 0,
            packets_retransmitted: 0,
            packets_repaired: 0,
            nack_count: 0,
            nack_packet_count: 0,
            pli_count: 0,
            fir_count: 0,
            packets_lost: 0,
            fraction_lost: 0,
            jitter: 0,
            rtt: None,
            score: ScoreHistory::new(10),
            active_since: now,
            sent_prior_score: 0,
            lost_prior_score: 0,
            repaired_prior_score: 0,
            retransmitted_prior_score: 0,
            max_packet: None,
            last_sr: None,
        }
    }

    pub fn params(&self) -> &RtpStreamSendParams {
        &self.params
    }

    pub fn ssrc(&self) -> u32 {
        self.params.ssrc
    }

    /// Records a packet as sent on this stream (already rewritten for the consumer) and stores it
    /// for retransmission. False if its sequence number is wildly off (not counted).
    pub fn packet_sent(&mut self, packet: &RtpPacket<'_>, now: Instant) -> bool {
        self.packet_sent_shared(packet, now, None)
    }

    /// [`packet_sent`](Self::packet_sent) for a packet whose bytes from `head_len` on are the
    /// producer's stored packet from `tail.offset` on: only the head is copied (see
    /// `packet_store`). NACKs for it need that store ([`Self::receive_nack_with_store`]).
    pub fn packet_sent_shared(
        &mut self,
        packet: &RtpPacket<'_>,
        now: Instant,
        shared: Option<(usize, SharedTail)>,
    ) -> bool {
        let seq = packet.sequence_number();
        if self.seq.update(seq) == SeqUpdate::Discarded {
            return false;
        }
        self.counter.update(packet.len(), now);
        self.payload_bytes += packet.payload().len() as u64;
        let ts = packet.timestamp();
        if self
            .max_packet
            .is_none_or(|(max, _)| TimestampManager::is_seq_higher_than(ts, max))
        {
            self.max_packet = Some((ts, now));
        }
        if let Some(buffer) = &mut self.buffer {
            let bytes = packet.as_bytes();
            let fits = |head_len: usize| head_len <= bytes.len() && head_len <= HEAD_LEN;
            match shared.filter(|(head_len, _)| fits(*head_len)) {
                Some((head_len, tail)) => {
                    buffer.insert_split(seq, &bytes[..head_len], Some(tail), now)
                }
                None => buffer.insert(seq, bytes, now),
            };
        }
        true
    }

    /// A NACK arrived for this SSRC with the `lost` sequence numbers (one RTCP NACK packet).
    /// Every stored packet not resent within the last RTT is passed to `send`, RTX-encoded if
    /// negotiated, as a mutable buffer (stamp transport-wide sequence numbers in place). Returns
    /// how many were resent.
    pub fn receive_nack<I, F>(&mut self, lost: I, now: Instant, send: F) -> usize
    where
        I: IntoIterator<Item = u16>,
        F: FnMut(&mut [u8]),
    {
        self.receive_nack_with_store(lost, now, None, send)
    }

    /// [`receive_nack`](Self::receive_nack) with the producer's store, for packets kept as a
    /// head and a shared tail (without it, or once the tail is gone, those are not resent).
    pub fn receive_nack_with_store<I, F>(
        &mut self,
        lost: I,
        now: Instant,
        store: Option<&PacketStore>,
        mut send: F,
    ) -> usize
    where
        I: IntoIterator<Item = u16>,
        F: FnMut(&mut [u8]),
    {
        self.nack_count += 1;
        let min_interval = self.rtt.unwrap_or(DEFAULT_RTT);
        let rtx = self.params.rtx_ssrc.zip(self.params.rtx_payload_type);
        let mut resent = 0;
        for seq in lost {
            self.nack_packet_count += 1;
            let Some(buffer) = &mut self.buffer else {
                continue;
            };
            let Ok(mut r) = buffer.resend(seq, now, min_interval) else {
                continue;
            };
            if let Some(tail) = r.tail {
                let Some(rest) = store
                    .and_then(|s| s.get(tail.stored))
                    .and_then(|p| p.get(usize::from(tail.offset)..))
                else {
                    continue;
                };
                let head = r.packet.len();
                let Some(dst) = self.joined.get_mut(..head + rest.len()) else {
                    continue;
                };
                dst[..head].copy_from_slice(r.packet);
                dst[head..].copy_from_slice(rest);
                r.packet = &self.joined[..head + rest.len()];
            }
            let first = r.resend_count == 1;
            let len = match rtx {
                Some((rtx_ssrc, rtx_pt)) => {
                    let Ok(original) = RtpPacket::parse(r.packet) else {
                        continue;
                    };
                    let rtx_seq = self.rtx_seq.wrapping_add(1);
                    match rtx::encode(&original, &mut self.scratch, rtx_ssrc, rtx_pt, rtx_seq) {
                        Ok(n) => {
                            self.rtx_seq = rtx_seq;
                            self.rtx_packet_count += 1;
                            self.rtx_byte_count += n as u64;
                            n
                        }
                        Err(_) => continue,
                    }
                }
                None => match self.scratch.get_mut(..r.packet.len()) {
                    Some(dst) => {
                        dst.copy_from_slice(r.packet);
                        r.packet.len()
                    }
                    None => continue,
                },
            };
            send(&mut self.scratch[..len]);
            resent += 1;
            self.packets_retransmitted += 1;
            if first {
                self.packets_repaired += 1;
            }
        }
        resent
    }

    /// A PLI or FIR arrived for this SSRC (the consumer forwards the request upstream).
    pub fn receive_key_frame_request(&mut self, kind: KeyFrameRequestKind) {
        match kind {
            KeyFrameRequestKind::Pli => self.pli_count += 1,
            KeyFrameRequestKind::Fir => self.fir_count += 1,
        }
    }

    /// A Receiver Report block about this SSRC arrived at `arrival` (NTP wall clock): RTT from
    /// LSR/DLSR, loss, jitter, and a new score sample. Returns the new score if it changed.
    pub fn receive_receiver_report(
        &mut self,
        block: &ReportBlock,
        arrival: NtpTime,
        now: Instant,
    ) -> Option<u8> {
        if let Some(rtt) = round_trip_time(arrival, block.lsr, block.dlsr) {
            self.rtt = Some(rtt);
        }
        self.packets_lost = block.total_lost;
        self.fraction_lost = block.fraction_lost;
        self.jitter = block.jitter;
        self.update_score(block, now)
    }

    /// mediasoup's `RtpStreamSend::UpdateScore`.
    fn update_score(&mut self, block: &ReportBlock, now: Instant) -> Option<u8> {
        let total_sent = self.counter.packet_count();
        let sent = total_sent.saturating_sub(self.sent_prior_score);
        self.sent_prior_score = total_sent;
        let total_lost = block.total_lost.max(0) as u64;
        let lost = total_lost.saturating_sub(self.lost_prior_score);
        self.lost_prior_score = total_lost;
        let repaired = self.packets_repaired - self.repaired_prior_score;
        self.repaired_prior_score = self.packets_repaired;
        let retransmitted = self.packets_retransmitted - self.retransmitted_prior_score;
        self.retransmitted_prior_score = self.packets_retransmitted;
        let clamp = |v: u64| v.min(u32::MAX as u64) as u32;
        let sample = score_sample(
            clamp(sent),
            clamp(lost),
            clamp(repaired),
            clamp(retransmitted),
        );
        self.set_score(ScoreHistory::update, sample, now)
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

    /// Forgets the score history and sets `score` (a simulcast consumer resets to 10 when it
    /// switches spatial layer). Returns it if it changed.
    pub fn reset_score(&mut self, score: u8, now: Instant) -> Option<u8> {
        self.set_score(ScoreHistory::reset, score, now)
    }

    /// The Sender Report fields for now, or None before anything was sent. The RTP timestamp is
    /// the last sent one advanced by the time since, at the clock rate; `ntp_now` is the NTP wall
    /// clock matching `now`.
    pub fn sender_report(&mut self, now: Instant, ntp_now: NtpTime) -> Option<SenderReportFields> {
        let (max_ts, max_at) = self.max_packet?;
        let elapsed_us = now.saturating_duration_since(max_at).as_micros() as u64;
        let diff_ts = elapsed_us * self.params.clock_rate as u64 / 1_000_000;
        let rtp_ts = max_ts.wrapping_add(diff_ts as u32);
        self.last_sr = Some((now, ntp_now, rtp_ts));
        Some(SenderReportFields {
            ssrc: self.params.ssrc,
            ntp_sec: ntp_now.seconds,
            ntp_frac: ntp_now.fractions,
            rtp_ts,
            packet_count: self.counter.packet_count() as u32,
            octet_count: self.payload_bytes as u32,
        })
    }

    /// The last Sender Report produced: when, its NTP time and RTP timestamp.
    pub fn last_sender_report(&self) -> Option<(Instant, NtpTime, u32)> {
        self.last_sr
    }

    /// Consumer paused: stored packets are useless (mediasoup clears the buffer).
    pub fn pause(&mut self) {
        if let Some(buffer) = &mut self.buffer {
            buffer.clear();
        }
    }

    pub fn score(&self) -> u8 {
        self.score.score()
    }

    pub fn active_since(&self) -> Instant {
        self.active_since
    }

    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    pub fn fraction_lost(&self) -> u8 {
        self.fraction_lost
    }

    pub fn packets_lost(&self) -> i32 {
        self.packets_lost
    }

    pub fn jitter(&self) -> u32 {
        self.jitter
    }

    pub fn packet_count(&self) -> u64 {
        self.counter.packet_count()
    }

    pub fn byte_count(&self) -> u64 {
        self.counter.bytes()
    }

    pub fn bitrate(&self, now: Instant) -> u32 {
        self.counter.bitrate(now)
    }

    pub fn packets_retransmitted(&self) -> u64 {
        self.packets_retransmitted
    }

    pub fn packets_repaired(&self) -> u64 {
        self.packets_repaired
    }

    pub fn nack_count(&self) -> u64 {
        self.nack_count
    }

    pub fn nack_packet_count(&self) -> u64 {
        self.nack_packet_count
    }

    pub fn pli_count(&self) -> u64 {
        self.pli_count
    }

    pub fn fir_count(&self) -> u64 {
        self.fir_count
    }

    /// RTX packets / bytes sent (for the transport's `rtxBytesSent`).
    pub fn rtx_counts(&self) -> (u64, u64) {
        (self.rtx_packet_count, self.rtx_byte_count)
    }

    /// mediasoup's `outbound-rtp` stats object (first entry of `getConsumerStats`). `timestamp_ms`
    /// is the value of the `timestamp` field; `now` ages the bitrate window.
    pub fn stats_json(&self, now: Instant, timestamp_ms: u64) -> Value {
        let p = &self.params;
        let mut v = json!({
            "type": "outbound-rtp",
            "timestamp": timestamp_ms,
            "ssrc": p.ssrc,
            "kind": p.kind.as_str(),
            "mimeType": p.mime_type,
            "packetsLost": self.packets_lost,
            "fractionLost": self.fraction_lost,
            "packetsDiscarded": self.seq.packets_discarded(),
            "packetsRetransmitted": self.packets_retransmitted,
            "packetsRepaired": self.packets_repaired,
            "nackCount": self.nack_count,
            "nackPacketCount": self.nack_packet_count,
            "pliCount": self.pli_count,
            "firCount": self.fir_count,
            "score": self.score(),
            "packetCount": self.packet_count(),
            "byteCount": self.byte_count(),
            "bitrate": self.bitrate(now),
        });
        if let Some(rtx_ssrc) = p.rtx_ssrc {
            v["rtxSsrc"] = json!(rtx_ssrc);
            v["rtxPacketsDiscarded"] = json!(0);
        }
        if let Some(rid) = &p.rid {
            v["rid"] = json!(rid);
        }
        if let Some(rtt) = self.rtt {
            v["roundTripTime"] = json!(rtt.as_secs_f64() * 1000.0);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::ntp::duration_to_compact;
    use crate::rtp::packet::RtpHeaderWriter;

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn params() -> RtpStreamSendParams {
        let mut p = RtpStreamSendParams::new(3333, 101, "video/VP8", MediaKind::Video, 90_000);
        p.use_nack = true;
        p.retransmission_capacity = 64;
        p
    }

    fn send(s: &mut RtpStreamSend, seq: u16, ts: u32, at: Instant) {
        let mut buf = [0u8; 1500];
        let n = RtpHeaderWriter {
            payload_type: 101,
            sequence_number: seq,
            timestamp: ts,
            ssrc: 3333,
            ..Default::default()
        }
        .write(&mut buf, std::iter::empty(), &[seq as u8; 100], 0)
        .unwrap();
        assert!(s.packet_sent(&RtpPacket::parse(&buf[..n]).unwrap(), at));
    }

    fn block(total_lost: i32, lsr: u32, dlsr: u32) -> ReportBlock {
        ReportBlock {
            ssrc: 3333,
            fraction_lost: 0,
            total_lost,
            highest_seq: 0,
            jitter: 7,
            lsr,
            dlsr,
        }
    }

    #[test]
    fn counts_and_sender_report_extrapolates_timestamp() {
        let t0 = Instant::now();
        let mut s = RtpStreamSend::new(params(), t0);
        assert!(s.sender_report(t0, NtpTime::new(1, 0)).is_none());
        send(&mut s, 10, 90_000, t0);
        send(&mut s, 11, 93_000, ms(t0, 33));
        assert_eq!((s.packet_count(), s.byte_count()), (2, 224));
        let sr = s.sender_report(ms(t0, 533), NtpTime::new(5, 6)).unwrap();
        assert_eq!(sr.ssrc, 3333);
        assert_eq!((sr.ntp_sec, sr.ntp_frac), (5, 6));
        assert_eq!(sr.rtp_ts, 93_000 + 45_000);
        assert_eq!((sr.packet_count, sr.octet_count), (2, 200));
        assert_eq!(s.last_sender_report().unwrap().2, 138_000);
    }

    #[test]
    fn nack_resends_once_per_rtt_and_counts_repairs() {
        let t0 = Instant::now();
        let mut s = RtpStreamSend::new(params(), t0);
        for seq in 0..10u16 {
            send(&mut s, seq, seq as u32 * 3000, ms(t0, seq as u64 * 10));
        }
        let mut got = vec![];
        let n = s.receive_nack([3, 4, 50], ms(t0, 200), |p| {
            got.push(RtpPacket::parse(p).unwrap().sequence_number())
        });
        assert_eq!(n, 2);
        assert_eq!(got, [3, 4]);
        assert_eq!((s.nack_count(), s.nack_packet_count()), (1, 3));
        // Again within the RTT (default 100 ms): nothing.
        assert_eq!(s.receive_nack([3], ms(t0, 250), |_| panic!("too soon")), 0);
        // After it: resent, counted as retransmitted but not repaired again.
        assert_eq!(s.receive_nack([3], ms(t0, 301), |_| {}), 1);
        assert_eq!((s.packets_retransmitted(), s.packets_repaired()), (3, 2));
        // Too old (video: 2 s).
        assert_eq!(s.receive_nack([5], ms(t0, 2100), |_| {}), 0);
        // Paused: buffer cleared.
        s.pause();
        assert_eq!(s.receive_nack([9], ms(t0, 400), |_| {}), 0);
    }

    #[test]
    fn nack_rebuilds_packets_kept_as_head_plus_shared_tail() {
        use crate::rtp::packet_store::PacketStore;
        let t0 = Instant::now();
        let mut s = RtpStreamSend::new(params(), t0);
        let mut store = PacketStore::new(4);
        let mut sent = Vec::new();
        for seq in 0..6u16 {
            // The producer's packet: another header, the same payload.
            let payload: Vec<u8> = (0..300)
                .map(|i| (i as u8).wrapping_add(seq as u8))
                .collect();
            let mut src = [0u8; 1500];
            let src_len = RtpHeaderWriter {
                payload_type: 96,
                sequence_number: 1000 + seq,
                ssrc: 42,
                ..Default::default()
            }
            .write(&mut src, std::iter::empty(), &payload, 0)
            .unwrap();
            let stored = store.insert(&src[..src_len]).unwrap();
            let mut buf = [0u8; 1500];
            let n = RtpHeaderWriter {
                payload_type: 101,
                sequence_number: seq,
                ssrc: 3333,
                ..Default::default()
            }
            .write(&mut buf, [(1u8, &b"xy"[..])].into_iter(), &payload, 0)
            .unwrap();
            let out = RtpPacket::parse(&buf[..n]).unwrap();
            let head = out.payload_range().start + 16;
            let tail = SharedTail {
                stored,
                offset: (12 + 16) as u16,
            };
            assert!(s.packet_sent_shared(&out, t0, Some((head, tail))));
            sent.push(buf[..n].to_vec());
        }
        // Seqs 2..=5 are still in the 4-slot store; 0 and 1 were overwritten there.
        let mut got = vec![];
        let n = s.receive_nack_with_store([0, 1, 2, 5], ms(t0, 10), Some(&store), |p| {
            got.push(p.to_vec())
        });
        assert_eq!(n, 2);
        assert_eq!(got, [sent[2].clone(), sent[5].clone()]);
        // Without the store, a split packet cannot be rebuilt and is not sent.
        assert_eq!(s.receive_nack([3], ms(t0, 20), |_| panic!("no store")), 0);
    }

    #[test]
    fn nack_with_rtx_encodes_and_advances_rtx_seq() {
        let t0 = Instant::now();
        let mut p = params();
        p.rtx_ssrc = Some(4444);
        p.rtx_payload_type = Some(102);
        p.rtx_initial_seq = 65535;
        let mut s = RtpStreamSend::new(p, t0);
        send(&mut s, 7, 0, t0);
        send(&mut s, 8, 0, t0);
        let mut got = vec![];
        s.receive_nack([7, 8], ms(t0, 10), |b| {
            let r = RtpPacket::parse(b).unwrap();
            got.push((
                r.ssrc(),
                r.payload_type(),
                r.sequence_number(),
                rtx::original_sequence_number(&r),
            ));
            // The caller may patch the buffer in place.
            b[2] = 0;
        });
        assert_eq!(got, [(4444, 102, 0, Some(7)), (4444, 102, 1, Some(8))]);
        assert_eq!(s.rtx_counts().0, 2);
        // The stored original is untouched by the caller's patch.
        let mut again = vec![];
        s.receive_nack([7], ms(t0, 200), |b| {
            again.push(RtpPacket::parse(b).unwrap().payload().to_vec())
        });
        assert_eq!(again, [[&[0, 7][..], &[7u8; 100][..]].concat()]);
        let v = s.stats_json(ms(t0, 200), 1);
        assert_eq!(v["rtxSsrc"], 4444);
    }

    #[test]
    fn receiver_report_gives_rtt_loss_and_score() {
        let t0 = Instant::now();
        let mut s = RtpStreamSend::new(params(), t0);
        for seq in 0..100u16 {
            send(&mut s, seq, 0, t0);
        }
        let sr_ntp = NtpTime::from_unix(Duration::from_secs(1000));
        let arrival = NtpTime::from_unix(Duration::from_millis(1_000_300));
        let dlsr = duration_to_compact(Duration::from_millis(250));
        let changed = s.receive_receiver_report(&block(10, sr_ntp.compact(), dlsr), arrival, t0);
        let rtt = s.rtt().unwrap();
        assert!((rtt.as_millis() as i64 - 50).abs() <= 1, "{rtt:?}");
        assert_eq!(s.packets_lost(), 10);
        assert_eq!(s.jitter(), 7);
        // 10 % loss → sample 7 → score 7.
        assert_eq!(changed, Some(7));
        // Nothing sent in the next interval: sample 10.
        s.receive_receiver_report(&block(10, 0, 0), arrival, t0);
        assert_eq!(s.score(), 9); // (7 + 2×10) / 3
        assert_eq!(s.rtt(), Some(rtt), "an RR without LSR keeps the last RTT");
        assert_eq!(s.reset_score(10, t0), Some(10));
        let v = s.stats_json(t0, 5);
        assert_eq!(v["type"], "outbound-rtp");
        assert_eq!(v["packetsLost"], 10);
        assert!(v["roundTripTime"].as_f64().unwrap() > 49.0);
        assert!(v.get("bitrateByLayer").is_none());
    }

    #[test]
    fn key_frame_requests_are_counted() {
        let t0 = Instant::now();
        let mut s = RtpStreamSend::new(
            RtpStreamSendParams::new(1, 2, "audio/opus", MediaKind::Audio, 48_000),
            t0,
        );
        s.receive_key_frame_request(KeyFrameRequestKind::Pli);
        s.receive_key_frame_request(KeyFrameRequestKind::Fir);
        s.receive_key_frame_request(KeyFrameRequestKind::Pli);
        assert_eq!((s.pli_count(), s.fir_count()), (2, 1));
        // Without NACK nothing is stored and NACKs are only counted.
        assert_eq!(s.receive_nack([1], t0, |_| {}), 0);
        assert_eq!(s.nack_packet_count(), 1);
        assert_eq!(s.stats_json(t0, 0)["kind"], "audio");
    }
}
