//! The receiving half of a simulated peer: what a browser's receiver does with a consumer's
//! packets, cheaply enough to run for hundreds of consumers on one core.
//!
//! Packets are counted from the RTP header, which SRTP leaves in the clear; only a sample
//! (`--verify 1/N`), each stream's first packet and every RTX packet are decrypted, to check
//! the payload and read the send time. Gaps are NACKed, receiver reports go out every second
//! and transport-cc feedback every 100 ms, as Chrome sends them.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rtc_rtcp::reception_report::ReceptionReport;
use rtc_rtcp::sender_report::SenderReport;
use rtc_rtcp::transport_feedbacks::transport_layer_cc::{
    PacketStatusChunk, RecvDelta, RunLengthChunk, StatusChunkTypeTcc, SymbolTypeTcc,
    TransportLayerCc,
};
use rtc_shared::marshal::Marshal;
use serde_json::Value;

use super::payload::{check_body, now_ns, rtp_payload, vp8_header_len, RtpHead};
use super::stats::{add, bump, latency_histogram, record, Delivery, LiveCounters, Role};
use crate::peer::rtp::rtcp;
use crate::peer::{MediaHandler, PacketKind, SrtpSession};

const TRANSPORT_CC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
/// Sequence numbers tracked for duplicates and repairs.
const WINDOW: u64 = 2048;
/// A gap larger than this is a stream jump, not loss to NACK.
const MAX_NACK_GAP: u64 = 1000;
/// NACK retries per sequence number, and how long a missing packet is worth asking for.
const NACK_RETRIES: u32 = 10;
const NACK_GIVE_UP: Duration = Duration::from_millis(1000);
/// Between NACKs of one packet (a browser waits about an RTT; 50 ms rides out a busy server).
const NACK_INTERVAL: Duration = Duration::from_millis(50);
const MIN_PLI_INTERVAL: Duration = Duration::from_secs(1);

/// Where the missing packet stands.
#[derive(Debug, Clone, Copy)]
struct Missing {
    detected: Instant,
    last_nack: Option<Instant>,
    retries: u32,
}

/// Sequence tracking of one stream: RFC 3550 extended sequence numbers, expected/received
/// counts, duplicates and the missing set for NACKs.
#[derive(Debug, Default)]
pub struct SeqTracker {
    started: bool,
    base: u64,
    highest: u64,
    bits: Vec<u64>,
    received: u64,
    duplicates: u64,
    missing: BTreeMap<u64, Missing>,
}

/// What one packet meant to the tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqOutcome {
    /// New, advancing the highest by this much (1 when in order).
    Advanced(u64),
    /// New, filling a gap.
    Filled,
    Duplicate,
    /// Older than the window: ignored.
    TooOld,
}

impl SeqTracker {
    fn bit(&mut self, ext: u64) -> (usize, u64) {
        if self.bits.is_empty() {
            self.bits = vec![0; (WINDOW / 64) as usize];
        }
        let i = ext % WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    fn unwrap(&self, seq: u16) -> u64 {
        let diff = i64::from(seq.wrapping_sub(self.highest as u16) as i16);
        (self.highest as i64 + diff).max(0) as u64
    }

    pub fn on_packet(&mut self, seq: u16, now: Instant) -> SeqOutcome {
        if !self.started {
            self.started = true;
            // Start high enough that early reordering cannot go below zero.
            self.base = (1 << 32) + u64::from(seq);
            self.highest = self.base;
            let (w, b) = self.bit(self.highest);
            self.bits[w] |= b;
            self.received = 1;
            return SeqOutcome::Advanced(1);
        }
        let ext = self.unwrap(seq);
        if ext > self.highest {
            let advance = ext - self.highest;
            for s in (self.highest + 1)..ext.min(self.highest + 1 + WINDOW) {
                let (w, b) = self.bit(s);
                self.bits[w] &= !b;
            }
            if advance <= MAX_NACK_GAP {
                for s in (self.highest + 1)..ext {
                    self.missing.insert(
                        s,
                        Missing {
                            detected: now,
                            last_nack: None,
                            retries: 0,
                        },
                    );
                }
            }
            self.highest = ext;
            let (w, b) = self.bit(ext);
            self.bits[w] |= b;
            self.received += 1;
            let floor = self.highest.saturating_sub(WINDOW);
            self.missing = self.missing.split_off(&floor);
            return SeqOutcome::Advanced(advance);
        }
        if self.highest - ext >= WINDOW || ext < self.base {
            return SeqOutcome::TooOld;
        }
        let (w, b) = self.bit(ext);
        if self.bits[w] & b != 0 {
            self.duplicates += 1;
            return SeqOutcome::Duplicate;
        }
        self.bits[w] |= b;
        self.received += 1;
        self.missing.remove(&ext);
        SeqOutcome::Filled
    }

    pub fn expected(&self) -> u64 {
        if self.started {
            self.highest - self.base + 1
        } else {
            0
        }
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    /// Sequence numbers to NACK now; gives up on old ones (returned in the second value).
    fn due_nacks(&mut self, now: Instant) -> (Vec<u16>, usize) {
        let mut due = Vec::new();
        let mut given_up = 0;
        self.missing.retain(|seq, m| {
            if now.duration_since(m.detected) > NACK_GIVE_UP || m.retries >= NACK_RETRIES {
                given_up += 1;
                return false;
            }
            if m.last_nack
                .is_none_or(|t| now.duration_since(t) >= NACK_INTERVAL)
            {
                m.last_nack = Some(now);
                m.retries += 1;
                due.push(*seq as u16);
            }
            true
        });
        (due, given_up)
    }
}

/// One consumer's stream as the peer receives it.
struct RecvStream {
    consumer_id: String,
    publisher: String,
    kind: String,
    video: bool,
    simulcast: bool,
    ssrc: u32,
    clock_rate: u32,
    seq: SeqTracker,
    stream_id: Option<u32>,
    first_counter: Option<u64>,
    /// RFC 3550 jitter, in timestamp units (×16 fixed point avoided: f64).
    jitter: f64,
    last_transit: Option<i64>,
    /// Middle 32 bits of the last SR's NTP time and when it arrived.
    last_sr: Option<(u32, Instant)>,
    rr_expected: u64,
    rr_received: u64,
    last_pli: Option<Instant>,
}

/// Transport-wide sequence numbers and arrival times since the last feedback.
#[derive(Debug)]
struct TccRecorder {
    epoch: Instant,
    highest: Option<u64>,
    next_base: Option<u64>,
    arrivals: Vec<(u64, Instant)>,
    fb_count: u8,
}

impl TccRecorder {
    fn record(&mut self, seq: u16, now: Instant) {
        let ext = match self.highest {
            None => (1 << 32) + u64::from(seq),
            Some(h) => {
                let diff = i64::from(seq.wrapping_sub(h as u16) as i16);
                (h as i64 + diff).max(0) as u64
            }
        };
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        if self.arrivals.len() < 65_536 {
            self.arrivals.push((ext, now));
        }
    }

    /// A transport-cc feedback for what arrived since the last one.
    fn build(&mut self, sender_ssrc: u32, media_ssrc: u32) -> Option<Vec<u8>> {
        let mut arrivals = std::mem::take(&mut self.arrivals);
        arrivals.sort_unstable_by_key(|(s, _)| *s);
        arrivals.dedup_by_key(|(s, _)| *s);
        if let Some(base) = self.next_base {
            arrivals.retain(|(s, _)| *s >= base);
        }
        let (first_seq, _) = *arrivals.first()?;
        let base = self
            .next_base
            .map_or(first_seq, |b| b.max(first_seq.saturating_sub(100)));
        let base = base.min(first_seq);
        let end = arrivals.last()?.0;
        let count = u16::try_from(end - base + 1).ok()?;
        let first_arrival = arrivals.iter().map(|(_, t)| *t).min()?;
        let ref_units = first_arrival.duration_since(self.epoch).as_micros() as i64 / 64_000;
        let mut prev_us = ref_units * 64_000;
        let mut symbols = Vec::with_capacity(usize::from(count));
        let mut deltas = Vec::with_capacity(arrivals.len());
        let mut it = arrivals.iter().peekable();
        for seq in base..=end {
            match it.peek() {
                Some((s, at)) if *s == seq => {
                    let at_us = at.duration_since(self.epoch).as_micros() as i64;
                    let units =
                        ((at_us - prev_us) / 250).clamp(i64::from(i16::MIN), i64::from(i16::MAX));
                    prev_us += units * 250;
                    let symbol = if (0..=255).contains(&units) {
                        SymbolTypeTcc::PacketReceivedSmallDelta
                    } else {
                        SymbolTypeTcc::PacketReceivedLargeDelta
                    };
                    symbols.push(symbol);
                    deltas.push(RecvDelta {
                        type_tcc_packet: symbol,
                        delta: units * 250,
                    });
                    it.next();
                }
                _ => symbols.push(SymbolTypeTcc::PacketNotReceived),
            }
        }
        let mut chunks = Vec::new();
        let mut i = 0;
        while i < symbols.len() {
            let sym = symbols[i];
            let run = symbols[i..]
                .iter()
                .take(8191)
                .take_while(|s| **s == sym)
                .count();
            chunks.push(PacketStatusChunk::RunLengthChunk(RunLengthChunk {
                type_tcc: StatusChunkTypeTcc::RunLengthChunk,
                packet_status_symbol: sym,
                run_length: run as u16,
            }));
            i += run;
        }
        let fb = TransportLayerCc {
            sender_ssrc,
            media_ssrc,
            base_sequence_number: base as u16,
            packet_status_count: count,
            reference_time: (ref_units as u32) & 0x00ff_ffff,
            fb_pkt_count: self.fb_count,
            packet_chunks: chunks,
            recv_deltas: deltas,
        };
        self.fb_count = self.fb_count.wrapping_add(1);
        self.next_base = Some(end + 1);
        fb.marshal().ok().map(|b| b.to_vec())
    }
}

/// Per-shard sinks a receiver reports into.
pub struct ShardSinks {
    pub counters: Arc<LiveCounters>,
    /// Latency of this interval, per role (the progress line's p50/p99).
    pub interval_latency: RefCell<[Histogram<u64>; 3]>,
    /// The run's phase: simulated loss stops with the media (see [`Receiver::on_rtp`]).
    pub control: Arc<super::shard::Control>,
    /// `--recv-loss` as a fraction.
    pub recv_loss: f64,
}

struct RecvState {
    streams: Vec<RecvStream>,
    by_ssrc: HashMap<u32, (usize, bool)>,
    tcc_ext: Option<u8>,
    tcc: TccRecorder,
    first_packet_at: Option<Instant>,
    latency: Histogram<u64>,
    rtcp_ssrc: u32,
    last_rr: Instant,
    last_tcc: Instant,
}

/// The receive side of a peer: a [`MediaHandler`] on its consuming transport.
pub struct Receiver {
    role: Role,
    verify_every: u64,
    sinks: Rc<ShardSinks>,
    state: RefCell<RecvState>,
}

impl Receiver {
    pub fn new(role: Role, verify_every: u64, sinks: Rc<ShardSinks>) -> Self {
        let now = Instant::now();
        Self {
            role,
            verify_every: verify_every.max(1),
            sinks,
            state: RefCell::new(RecvState {
                streams: Vec::new(),
                by_ssrc: HashMap::new(),
                tcc_ext: None,
                tcc: TccRecorder {
                    epoch: now,
                    highest: None,
                    next_base: None,
                    arrivals: Vec::new(),
                    fb_count: 0,
                },
                first_packet_at: None,
                latency: latency_histogram(),
                rtcp_ssrc: rand::random::<u32>() | 1,
                last_rr: now,
                last_tcc: now,
            }),
        }
    }

    fn counters(&self) -> &super::stats::RoleCounters {
        self.sinks.counters.role(self.role)
    }

    /// Registers a consumer from a `newConsumer` request's data; `Err` if it lacks what a
    /// receiver needs (an SSRC).
    pub fn add_consumer(&self, data: &Value) -> Result<(), String> {
        let params = &data["rtpParameters"];
        let encoding = &params["encodings"][0];
        let ssrc = encoding["ssrc"]
            .as_u64()
            .and_then(|s| u32::try_from(s).ok())
            .ok_or("newConsumer without encodings[0].ssrc")?;
        let rtx = encoding["rtx"]["ssrc"]
            .as_u64()
            .and_then(|s| u32::try_from(s).ok());
        let kind = data["kind"].as_str().unwrap_or("video").to_owned();
        let clock_rate = params["codecs"][0]["clockRate"]
            .as_u64()
            .and_then(|c| u32::try_from(c).ok())
            .filter(|c| *c > 0)
            .unwrap_or(90_000);
        let tcc_ext = params["headerExtensions"].as_array().and_then(|exts| {
            exts.iter()
                .find(|e| e["uri"] == TRANSPORT_CC_URI)
                .and_then(|e| e["id"].as_u64())
                .and_then(|id| u8::try_from(id).ok())
        });
        let mut st = self.state.borrow_mut();
        if st.tcc_ext.is_none() {
            st.tcc_ext = tcc_ext;
        }
        let index = st.streams.len();
        st.streams.push(RecvStream {
            consumer_id: data["id"].as_str().unwrap_or_default().to_owned(),
            publisher: data["peerId"].as_str().unwrap_or_default().to_owned(),
            video: kind == "video",
            kind,
            simulcast: data["type"] == "simulcast" || data["type"] == "svc",
            ssrc,
            clock_rate,
            seq: SeqTracker::default(),
            stream_id: None,
            first_counter: None,
            jitter: 0.0,
            last_transit: None,
            last_sr: None,
            rr_expected: 0,
            rr_received: 0,
            last_pli: None,
        });
        st.by_ssrc.insert(ssrc, (index, false));
        if let Some(rtx) = rtx {
            st.by_ssrc.insert(rtx, (index, true));
        }
        bump(&self.counters().consumers);
        Ok(())
    }

    /// When the first media packet arrived.
    pub fn first_packet_at(&self) -> Option<Instant> {
        self.state.borrow().first_packet_at
    }

    /// An original packet of a stream that has started (a first packet lost is no gap).
    fn droppable(&self, ssrc: u32) -> bool {
        let st = self.state.borrow();
        st.by_ssrc
            .get(&ssrc)
            .is_some_and(|&(i, rtx)| !rtx && st.streams[i].seq.expected() > 0)
    }

    fn on_rtp(&self, packet: &[u8], srtp: &mut SrtpSession) {
        let c = self.counters();
        let Some(head) = RtpHead::parse(packet) else {
            bump(&c.unknown_ssrc);
            return;
        };
        // Simulated loss (`--recv-loss`), on original packets only and only while publishers
        // send: their last frame, sent after the phase changes, then reveals every earlier gap.
        if self.sinks.recv_loss > 0.0
            && self.sinks.control.get() == super::shard::Phase::Run
            && rand::random::<f64>() < self.sinks.recv_loss
            && self.droppable(head.ssrc)
        {
            bump(&c.simulated_drops);
            return;
        }
        let now = Instant::now();
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        if let Some(seq) = st
            .tcc_ext
            .and_then(|id| head.extension(id))
            .and_then(|v| <[u8; 2]>::try_from(v).ok())
        {
            st.tcc.record(u16::from_be_bytes(seq), now);
        }
        let Some(&(index, is_rtx)) = st.by_ssrc.get(&head.ssrc) else {
            bump(&c.unknown_ssrc);
            return;
        };
        st.first_packet_at.get_or_insert(now);
        bump(&c.rtp_received);
        add(&c.bytes_received, packet.len() as u64);
        let stream = &mut st.streams[index];
        if is_rtx {
            bump(&c.rtx_received);
            let Some(plain) = decrypt(c, srtp, packet) else {
                return;
            };
            let Some(payload) = rtp_payload(&plain) else {
                return;
            };
            if payload.len() < 2 {
                return; // Padding-only probe.
            }
            let osn = u16::from_be_bytes([payload[0], payload[1]]);
            let outcome = stream.seq.on_packet(osn, now);
            account(c, outcome);
            if outcome == SeqOutcome::Filled {
                bump(&c.repaired);
            }
            // An RTX copy's latency includes the repair round trip: checked, not recorded.
            let _ = check(c, stream, &payload[2..]);
            return;
        }
        let outcome = stream.seq.on_packet(head.seq, now);
        account(c, outcome);
        if let SeqOutcome::Advanced(_) = outcome {
            // RFC 3550 A.8 interarrival jitter, in timestamp units.
            let arrival = (now.duration_since(st.tcc.epoch).as_nanos()
                * u128::from(stream.clock_rate)
                / 1_000_000_000) as i64;
            let transit = arrival - i64::from(head.timestamp);
            if let Some(last) = stream.last_transit {
                let d = (transit - last).unsigned_abs() as f64;
                stream.jitter += (d - stream.jitter) / 16.0;
            }
            stream.last_transit = Some(transit);
        }
        let sample = stream.first_counter.is_none()
            || stream.seq.received().is_multiple_of(self.verify_every);
        if !sample || !matches!(outcome, SeqOutcome::Advanced(_) | SeqOutcome::Filled) {
            return;
        }
        let Some(plain) = decrypt(c, srtp, packet) else {
            return;
        };
        let Some(payload) = rtp_payload(&plain) else {
            bump(&c.verify_failed);
            return;
        };
        if let Some(lat) = check(c, stream, payload) {
            record(&mut st.latency, lat);
            if let Some(h) = self
                .sinks
                .interval_latency
                .borrow_mut()
                .get_mut(self.role.index())
            {
                record(h, lat);
            }
        }
    }

    fn on_rtcp(&self, packet: &[u8], srtp: &mut SrtpSession) {
        let c = self.counters();
        let Ok(plain) = srtp.unprotect_rtcp(packet) else {
            bump(&c.verify_failed);
            return;
        };
        let Ok(packets) = rtcp::parse(&plain) else {
            return;
        };
        let now = Instant::now();
        let mut st = self.state.borrow_mut();
        for p in packets {
            bump(&c.rtcp_received);
            if let Some(sr) = p.as_any().downcast_ref::<SenderReport>() {
                let lsr = (sr.ntp_time >> 16) as u32;
                if let Some(&(i, false)) = st.by_ssrc.get(&sr.ssrc) {
                    st.streams[i].last_sr = Some((lsr, now));
                }
            }
        }
    }

    /// RTCP due now: NACKs (and PLI for gaps NACKs did not repair), transport-cc feedback every
    /// 100 ms, receiver reports every second. Called every 20 ms.
    pub fn due_rtcp(&self) -> Vec<Vec<u8>> {
        let c = self.counters();
        let now = Instant::now();
        let mut out = Vec::new();
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        let sender = st.rtcp_ssrc;
        for s in &mut st.streams {
            let (due, given_up) = s.seq.due_nacks(now);
            if !due.is_empty() {
                add(&c.nack_seqs_sent, due.len() as u64);
                bump(&c.nacks_sent);
                out.push(rtcp::nack(sender, s.ssrc, &due));
            }
            if given_up > 0 && s.video && s.last_pli.is_none_or(|t| now - t >= MIN_PLI_INTERVAL) {
                s.last_pli = Some(now);
                bump(&c.plis_sent);
                out.push(rtcp::pli(sender, s.ssrc));
            }
        }
        if now.duration_since(st.last_tcc) >= Duration::from_millis(100) {
            st.last_tcc = now;
            let media = st.streams.first().map_or(0, |s| s.ssrc);
            if let Some(fb) = st.tcc.build(sender, media) {
                bump(&c.tcc_feedback_sent);
                out.push(fb);
            }
        }
        if now.duration_since(st.last_rr) >= Duration::from_secs(1) && !st.streams.is_empty() {
            st.last_rr = now;
            let reports: Vec<ReceptionReport> = st
                .streams
                .iter_mut()
                .filter(|s| s.seq.expected() > 0)
                .map(|s| {
                    let expected = s.seq.expected() - s.rr_expected;
                    let received = s.seq.received().saturating_sub(s.rr_received);
                    s.rr_expected = s.seq.expected();
                    s.rr_received = s.seq.received();
                    let lost = expected.saturating_sub(received);
                    let fraction = (lost * 256)
                        .checked_div(expected)
                        .map_or(0, |f| f.min(255) as u8);
                    let (lsr, dlsr) = s.last_sr.map_or((0, 0), |(lsr, at)| {
                        (lsr, (now.duration_since(at).as_secs_f64() * 65536.0) as u32)
                    });
                    ReceptionReport {
                        ssrc: s.ssrc,
                        fraction_lost: fraction,
                        total_lost: (s.seq.lost() as u32).min(0x7f_ffff),
                        last_sequence_number: s.seq.highest as u32,
                        jitter: s.jitter as u32,
                        last_sender_report: lsr,
                        delay: dlsr,
                    }
                })
                .collect();
            for chunk in reports.chunks(31) {
                bump(&c.rr_sent);
                out.push(rtcp::receiver_report(sender, chunk.to_vec()));
            }
        }
        out
    }

    /// What each consumer received, and this receiver's latency and jitter, at the end.
    pub fn finish(
        &self,
        subscriber: &str,
        jitter_us: &mut Histogram<u64>,
    ) -> (Vec<Delivery>, Histogram<u64>) {
        let st = self.state.borrow();
        let deliveries = st
            .streams
            .iter()
            .map(|s| {
                if s.seq.expected() > 0 {
                    let us = s.jitter * 1e6 / f64::from(s.clock_rate);
                    record(jitter_us, us as u64);
                }
                Delivery {
                    subscriber: subscriber.to_owned(),
                    role: self.role,
                    publisher: s.publisher.clone(),
                    kind: s.kind.clone(),
                    consumer_id: s.consumer_id.clone(),
                    simulcast: s.simulcast,
                    stream_id: s.stream_id,
                    first_counter: s.first_counter,
                    received: s.seq.received(),
                    expected: s.seq.expected(),
                    lost: s.seq.lost(),
                    missing_vs_sent: None,
                }
            })
            .collect();
        (deliveries, st.latency.clone())
    }
}

/// Unprotects an RTP packet; a failure is counted as a failed check.
fn decrypt(
    c: &super::stats::RoleCounters,
    srtp: &mut SrtpSession,
    packet: &[u8],
) -> Option<Vec<u8>> {
    let plain = srtp.unprotect_rtp(packet).ok();
    if plain.is_none() {
        bump(&c.verify_failed);
    }
    plain
}

/// Counts a packet's sequence outcome.
fn account(c: &super::stats::RoleCounters, outcome: SeqOutcome) {
    match outcome {
        SeqOutcome::Advanced(n) => {
            add(&c.expected, n);
            bump(&c.received_unique);
        }
        SeqOutcome::Filled => bump(&c.received_unique),
        SeqOutcome::Duplicate => bump(&c.duplicates),
        SeqOutcome::TooOld => {}
    }
}

/// The body of a decrypted payload (codec header skipped).
fn body<'a>(stream: &RecvStream, payload: &'a [u8]) -> Option<&'a [u8]> {
    if stream.video {
        payload.get(vp8_header_len(payload)?..)
    } else {
        Some(payload)
    }
}

/// Checks a decrypted payload, notes the stream's first counter, and returns the latency (µs).
fn check(c: &super::stats::RoleCounters, stream: &mut RecvStream, payload: &[u8]) -> Option<u64> {
    match body(stream, payload).map(check_body) {
        Some(Ok(t)) => {
            bump(&c.verified);
            if stream.first_counter.is_none() {
                stream.first_counter = Some(t.counter);
                stream.stream_id = Some(t.stream_id);
            }
            Some(now_ns().saturating_sub(t.send_ns) / 1000)
        }
        _ => {
            bump(&c.verify_failed);
            None
        }
    }
}

impl MediaHandler for Receiver {
    fn on_media(&self, packet: &[u8], kind: PacketKind, srtp: &mut SrtpSession) -> bool {
        match kind {
            PacketKind::Rtcp => self.on_rtcp(packet, srtp),
            _ => self.on_rtp(packet, srtp),
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_counts_gaps_repairs_duplicates_and_wraps() {
        let now = Instant::now();
        let mut t = SeqTracker::default();
        assert_eq!(t.on_packet(65534, now), SeqOutcome::Advanced(1));
        assert_eq!(t.on_packet(65535, now), SeqOutcome::Advanced(1));
        assert_eq!(t.on_packet(2, now), SeqOutcome::Advanced(3)); // 0 and 1 missing
        assert_eq!(t.expected(), 5);
        assert_eq!(t.lost(), 2);
        let (due, _) = t.due_nacks(now);
        assert_eq!(due, vec![0, 1]);
        assert_eq!(t.on_packet(0, now), SeqOutcome::Filled);
        assert_eq!(t.on_packet(0, now), SeqOutcome::Duplicate);
        assert_eq!(t.lost(), 1);
        let (due, _) = t.due_nacks(now + NACK_INTERVAL);
        assert_eq!(due, vec![1]);
        let (due, given_up) = t.due_nacks(now + NACK_GIVE_UP * 2);
        assert!(due.is_empty());
        assert_eq!(given_up, 1);
    }

    #[test]
    fn transport_cc_feedback_reports_received_and_lost() {
        let epoch = Instant::now();
        let mut r = TccRecorder {
            epoch,
            highest: None,
            next_base: None,
            arrivals: Vec::new(),
            fb_count: 0,
        };
        for (i, seq) in [10u16, 11, 13, 14].iter().enumerate() {
            r.record(*seq, epoch + Duration::from_millis(5 * i as u64));
        }
        let fb = r.build(1, 2).expect("feedback");
        let parsed = rtcp::transport_cc(&fb);
        assert_eq!(parsed.len(), 1);
        let got: Vec<u16> = parsed[0].received().collect();
        assert_eq!(got, vec![10, 11, 13, 14]);
        // The next feedback starts after the last reported sequence number.
        r.record(15, epoch + Duration::from_millis(30));
        let fb = r.build(1, 2).expect("feedback");
        let got: Vec<u16> = rtcp::transport_cc(&fb)[0].received().collect();
        assert_eq!(got, vec![15]);
    }
}
