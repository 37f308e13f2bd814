//! Receiver-side loss detection toward a publisher (mediasoup's `RTC::NackGenerator`): every gap
//! in the sequence numbers is NACKed at once, then again about every RTT until the packet shows
//! up (directly or through RTX), is asked for [`MAX_NACK_RETRIES`] times, or gets too old.
//!
//! Bounded like mediasoup: at most [`MAX_NACK_PACKETS`] pending entries; when a gap would exceed
//! that, entries older than the latest key frame are given up, and if that is not enough the list
//! is cleared and a key frame is requested instead. All state lives in collections allocated in
//! the constructor; sequence numbers are extended internally, so wraparound needs no special case.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Entries further behind the newest sequence number are dropped.
pub const MAX_PACKET_AGE: u64 = 10_000;
/// Most pending NACK entries.
pub const MAX_NACK_PACKETS: usize = 1000;
/// RTT assumed until one is measured.
pub const DEFAULT_RTT: Duration = Duration::from_millis(100);
/// Times a sequence number is asked for.
pub const MAX_NACK_RETRIES: u8 = 10;
/// How often mediasoup's timer re-checks pending entries; a good `poll` period.
pub const TIMER_INTERVAL: Duration = Duration::from_millis(40);
/// Key frames / RTX-recovered packets remembered.
const MAX_KEY_FRAMES: usize = 64;
const MAX_RECOVERED: usize = 128;

#[derive(Debug, Clone, Copy)]
struct NackInfo {
    ext_seq: u64,
    created_at: Instant,
    sent_at: Option<Instant>,
    retries: u8,
}

/// What a received packet caused besides the NACK batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NackOutcome {
    /// The packet was one we had NACKed (mediasoup's `ReceivePacket` return value): it counts as
    /// repaired / retransmitted.
    pub was_nacked: bool,
    /// The loss is too large to repair: request a key frame (PLI/FIR) upstream.
    pub key_frame_required: bool,
}

#[derive(Debug)]
pub struct NackGenerator {
    started: bool,
    last_seq: u64,
    /// Pending entries, ascending by sequence number.
    nack_list: VecDeque<NackInfo>,
    /// Key frame starts seen, ascending.
    key_frames: VecDeque<u64>,
    /// Packets newer than `last_seq` that arrived through RTX, ascending.
    recovered: VecDeque<u64>,
    rtt: Duration,
    send_nack_delay: Duration,
    nack_count: u64,
    nack_packet_count: u64,
}

impl NackGenerator {
    /// `send_nack_delay`: wait this long after a gap before asking (mediasoup's `sendNackDelayMs`,
    /// 0 for WebRTC transports) to tolerate reordering.
    pub fn new(send_nack_delay: Duration) -> Self {
        Self {
            started: false,
            last_seq: 0,
            nack_list: VecDeque::with_capacity(MAX_NACK_PACKETS),
            key_frames: VecDeque::with_capacity(MAX_KEY_FRAMES),
            recovered: VecDeque::with_capacity(MAX_RECOVERED),
            rtt: DEFAULT_RTT,
            send_nack_delay,
            nack_count: 0,
            nack_packet_count: 0,
        }
    }

    fn extend(&self, seq: u16) -> u64 {
        let d = seq.wrapping_sub(self.last_seq as u16);
        if d < 0x8000 {
            self.last_seq + d as u64
        } else {
            self.last_seq - (0x1_0000 - d as u64)
        }
    }

    /// Feeds a received packet (media or RTX-recovered). On a gap the sequence numbers to NACK now
    /// are written to `nacks` (cleared first; give it capacity [`MAX_NACK_PACKETS`] to never
    /// allocate).
    pub fn received(
        &mut self,
        seq: u16,
        is_key_frame: bool,
        is_recovered: bool,
        now: Instant,
        nacks: &mut Vec<u16>,
    ) -> NackOutcome {
        nacks.clear();
        let mut outcome = NackOutcome::default();
        if !self.started {
            self.started = true;
            // Anchor far from 0 so extended values never underflow.
            self.last_seq = (1 << 32) + seq as u64;
            if is_key_frame {
                push_bounded(&mut self.key_frames, self.last_seq, MAX_KEY_FRAMES);
            }
            return outcome;
        }
        let ext = self.extend(seq);
        if ext == self.last_seq {
            return outcome;
        }
        if ext < self.last_seq {
            // Out of order, or the retransmission of a NACKed packet.
            if let Ok(idx) = self.nack_list.binary_search_by_key(&ext, |n| n.ext_seq) {
                let retries = self.nack_list.remove(idx).map_or(0, |n| n.retries);
                outcome.was_nacked = retries != 0;
            }
            return outcome;
        }
        if is_key_frame {
            push_bounded(&mut self.key_frames, ext, MAX_KEY_FRAMES);
        }
        let oldest = ext.saturating_sub(MAX_PACKET_AGE);
        while self.key_frames.front().is_some_and(|&k| k < oldest) {
            self.key_frames.pop_front();
        }
        if is_recovered {
            // Ahead of anything seen: remember it so the coming gap does not NACK it.
            push_bounded(&mut self.recovered, ext, MAX_RECOVERED);
            while self.recovered.front().is_some_and(|&r| r < oldest) {
                self.recovered.pop_front();
            }
            return outcome;
        }
        outcome.key_frame_required = self.add_to_nack_list(self.last_seq + 1, ext, now);
        self.last_seq = ext;
        // Ask at once for what this gap revealed (mediasoup's NackFilter::SEQ).
        self.collect(now, nacks, true);
        outcome
    }

    /// Retries due NACKs (each entry every RTT at most; mediasoup's NackFilter::TIME). Call about
    /// every [`TIMER_INTERVAL`] while [`Self::has_pending`], or at [`Self::poll_timeout`].
    pub fn poll(&mut self, now: Instant, nacks: &mut Vec<u16>) {
        nacks.clear();
        self.collect(now, nacks, false);
    }

    /// Adds `[start, end)`; true if the list overflowed and was cleared (key frame needed).
    fn add_to_nack_list(&mut self, start: u64, end: u64, now: Instant) -> bool {
        let oldest = end.saturating_sub(MAX_PACKET_AGE);
        while self.nack_list.front().is_some_and(|n| n.ext_seq < oldest) {
            self.nack_list.pop_front();
        }
        let new = (end - start) as usize;
        if self.nack_list.len() + new > MAX_NACK_PACKETS {
            while self.remove_until_key_frame() && self.nack_list.len() + new > MAX_NACK_PACKETS {}
            if self.nack_list.len() + new > MAX_NACK_PACKETS {
                self.nack_list.clear();
                return true;
            }
        }
        for ext_seq in start..end {
            if self.recovered.binary_search(&ext_seq).is_ok() {
                continue;
            }
            self.nack_list.push_back(NackInfo {
                ext_seq,
                created_at: now,
                sent_at: None,
                retries: 0,
            });
        }
        false
    }

    /// Gives up entries older than the oldest key frame that still covers some; false if none.
    fn remove_until_key_frame(&mut self) -> bool {
        while let Some(&key_frame) = self.key_frames.front() {
            let older = self.nack_list.partition_point(|n| n.ext_seq < key_frame);
            if older > 0 {
                self.nack_list.drain(..older);
                return true;
            }
            self.key_frames.pop_front();
        }
        false
    }

    fn collect(&mut self, now: Instant, nacks: &mut Vec<u16>, on_gap: bool) {
        let (rtt, delay, last_seq) = (self.rtt, self.send_nack_delay, self.last_seq);
        self.nack_list.retain_mut(|n| {
            if !delay.is_zero() && now.saturating_duration_since(n.created_at) < delay {
                return true;
            }
            let due = if on_gap {
                n.sent_at.is_none() && n.ext_seq <= last_seq
            } else {
                n.sent_at
                    .is_none_or(|at| now.saturating_duration_since(at) >= rtt)
            };
            if !due {
                return true;
            }
            nacks.push(n.ext_seq as u16);
            n.retries += 1;
            n.sent_at = Some(now);
            n.retries < MAX_NACK_RETRIES
        });
        if !nacks.is_empty() {
            self.nack_count += 1;
            self.nack_packet_count += nacks.len() as u64;
        }
    }

    /// When the next entry becomes due (None when nothing is pending).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.nack_list
            .iter()
            .map(|n| match n.sent_at {
                Some(at) => at + self.rtt,
                None => n.created_at + self.send_nack_delay,
            })
            .min()
    }

    pub fn has_pending(&self) -> bool {
        !self.nack_list.is_empty()
    }

    pub fn pending(&self) -> usize {
        self.nack_list.len()
    }

    /// RTT to the publisher, when known (0 keeps the default).
    pub fn update_rtt(&mut self, rtt: Duration) {
        self.rtt = if rtt.is_zero() { DEFAULT_RTT } else { rtt };
    }

    /// Forgets all state (mediasoup resets on pause).
    pub fn reset(&mut self) {
        self.nack_list.clear();
        self.key_frames.clear();
        self.recovered.clear();
        self.started = false;
        self.last_seq = 0;
    }

    /// NACK batches emitted so far.
    pub fn nack_count(&self) -> u64 {
        self.nack_count
    }

    /// Sequence numbers asked for so far (counting retries).
    pub fn nack_packet_count(&self) -> u64 {
        self.nack_packet_count
    }
}

/// Appends `v` keeping ascending order, dropping the oldest when full.
fn push_bounded(q: &mut VecDeque<u64>, v: u64, cap: usize) {
    if q.back().is_some_and(|&b| b >= v) {
        if let Err(idx) = q.binary_search(&v) {
            if q.len() < cap {
                q.insert(idx, v);
            } else if idx > 0 {
                q.pop_front();
                q.insert(idx - 1, v);
            }
        }
        return;
    }
    if q.len() == cap {
        q.pop_front();
    }
    q.push_back(v);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn gap_is_nacked_immediately_then_retried_every_rtt() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new(Duration::ZERO);
        let mut out = Vec::with_capacity(MAX_NACK_PACKETS);
        g.received(100, false, false, t0, &mut out);
        assert!(out.is_empty());
        g.received(103, false, false, t0, &mut out);
        assert_eq!(out, [101, 102]);
        assert_eq!((g.nack_count(), g.nack_packet_count()), (1, 2));
        // Not due before the RTT.
        g.poll(ms(t0, 50), &mut out);
        assert!(out.is_empty());
        assert_eq!(g.poll_timeout(), Some(ms(t0, 100)));
        g.poll(ms(t0, 100), &mut out);
        assert_eq!(out, [101, 102]);
        // 101 arrives (retransmitted): repaired, and no longer asked for.
        let o = g.received(101, false, false, ms(t0, 120), &mut out);
        assert!(o.was_nacked);
        g.poll(ms(t0, 200), &mut out);
        assert_eq!(out, [102]);
        assert_eq!(g.nack_count(), 3);
        assert_eq!(g.nack_packet_count(), 5);
    }

    #[test]
    fn rtt_controls_retry_interval() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new(Duration::ZERO);
        let mut out = vec![];
        g.update_rtt(Duration::from_millis(300));
        g.received(1, false, false, t0, &mut out);
        g.received(3, false, false, t0, &mut out);
        g.poll(ms(t0, 200), &mut out);
        assert!(out.is_empty());
        g.poll(ms(t0, 300), &mut out);
        assert_eq!(out, [2]);
    }

    #[test]
    fn gives_up_after_max_retries() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new(Duration::ZERO);
        let mut out = vec![];
        g.received(1, false, false, t0, &mut out);
        g.received(3, false, false, t0, &mut out);
        let mut asked = 1;
        for i in 1..20 {
            g.poll(ms(t0, i * 100), &mut out);
            asked += out.len();
        }
        assert_eq!(asked, MAX_NACK_RETRIES as usize);
        assert!(!g.has_pending());
        assert_eq!(g.poll_timeout(), None);
        // Arriving now is not a repair of something pending.
        assert!(
            !g.received(2, false, false, ms(t0, 3000), &mut out)
                .was_nacked
        );
    }

    #[test]
    fn wraparound_gap() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new(Duration::ZERO);
        let mut out = vec![];
        g.received(65534, false, false, t0, &mut out);
        g.received(1, false, false, t0, &mut out);
        assert_eq!(out, [65535, 0]);
    }

    #[test]
    fn reordered_packet_is_not_repaired_and_recovered_ahead_is_not_nacked() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new(Duration::ZERO);
        let mut out = vec![];
        g.received(10, false, false, t0, &mut out);
        // RTX brings 12 before 11 and 13 arrive.
        g.received(12, false, true, t0, &mut out);
        assert!(out.is_empty());
        g.received(13, false, false, t0, &mut out);
        assert_eq!(out, [11], "12 was recovered, only 11 is missing");
        // Reordering inside the NACK delay window is not NACKed.
        let mut d = NackGenerator::new(Duration::from_millis(20));
        d.received(1, false, false, t0, &mut out);
        d.received(3, false, false, t0, &mut out);
        assert!(out.is_empty());
        d.received(2, false, false, ms(t0, 5), &mut out);
        d.poll(ms(t0, 40), &mut out);
        assert!(out.is_empty());
        assert!(!d.has_pending());
    }

    #[test]
    fn overflow_drops_up_to_key_frame_or_requests_one() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new(Duration::ZERO);
        let mut out = Vec::with_capacity(MAX_NACK_PACKETS);
        g.received(0, false, false, t0, &mut out);
        g.received(601, false, false, t0, &mut out); // 600 missing
        g.received(700, true, false, t0, &mut out); // key frame; 98 missing
        assert_eq!(g.pending(), 698);
        // 500 more missing: too many, so everything before the key frame (700) goes.
        g.received(1201, false, false, t0, &mut out);
        assert_eq!(g.pending(), 500);
        assert_eq!(out.len(), 500);
        // A gap bigger than the list with no key frame to fall back to: key frame request.
        let o = g.received(3000, false, false, t0, &mut out);
        assert!(o.key_frame_required);
        assert_eq!(g.pending(), 0);
        assert!(out.is_empty());
        g.reset();
        assert!(!g.has_pending());
    }

    #[test]
    fn push_bounded_keeps_order() {
        let mut q = VecDeque::with_capacity(3);
        for v in [5, 1, 9, 7] {
            push_bounded(&mut q, v, 3);
        }
        assert_eq!(q, [5, 7, 9]);
    }
}
