//! Pieces shared by receiving and sending streams (mediasoup's `RTC::RtpStream`): the RFC 3550
//! A.1 sequence validator, the score history, and the loss → score formula.

pub use crate::rtcp::ReportBlock;

/// A jump larger than this ahead is suspicious (RFC 3550 A.1 `MAX_DROPOUT`).
pub const MAX_DROPOUT: u16 = 3000;
/// A packet more than this behind is too old (RFC 3550 A.1 `MAX_MISORDER`).
pub const MAX_MISORDER: u16 = 1500;
/// Score samples averaged.
pub const SCORE_HISTORY_LEN: usize = 24;

/// What [`SeqTracker::update`] made of a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqUpdate {
    /// In order, a permissible gap ahead, or acceptably late.
    Accepted,
    /// Second consecutive packet after a huge jump: the source restarted; counters re-based.
    Reset,
    /// Too far ahead or behind; not counted.
    Discarded,
}

/// Tracks the highest sequence number with wrap cycles and rejects wild jumps (RFC 3550 A.1).
#[derive(Debug, Clone, Copy, Default)]
pub struct SeqTracker {
    started: bool,
    base_seq: u16,
    max_seq: u16,
    /// Wraps counted, shifted by 16 (as in RFC 3550).
    cycles: u32,
    /// Next expected seq after a big jump (> u16::MAX = none).
    bad_seq: u32,
    packets_discarded: u64,
}

impl SeqTracker {
    pub fn new() -> Self {
        Self::default()
    }

    fn init(&mut self, seq: u16) {
        self.base_seq = seq;
        self.max_seq = seq;
        self.cycles = 0;
        self.bad_seq = u32::MAX;
    }

    pub fn update(&mut self, seq: u16) -> SeqUpdate {
        if !self.started {
            self.started = true;
            self.init(seq);
            return SeqUpdate::Accepted;
        }
        let udelta = seq.wrapping_sub(self.max_seq);
        if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(1 << 16);
            }
            self.max_seq = seq;
            SeqUpdate::Accepted
        } else if udelta as u32 <= (1 << 16) - MAX_MISORDER as u32 {
            if seq as u32 == self.bad_seq {
                self.init(seq);
                SeqUpdate::Reset
            } else {
                self.bad_seq = (seq as u32 + 1) & 0xFFFF;
                self.packets_discarded += 1;
                SeqUpdate::Discarded
            }
        } else {
            // Duplicate or acceptably late.
            SeqUpdate::Accepted
        }
    }

    pub fn started(&self) -> bool {
        self.started
    }

    pub fn max_seq(&self) -> u16 {
        self.max_seq
    }

    /// Extended highest sequence number (the RR field).
    pub fn extended_max_seq(&self) -> u32 {
        self.cycles.wrapping_add(self.max_seq as u32)
    }

    /// Packets expected since the first one (or the last reset).
    pub fn expected_packets(&self) -> u32 {
        if !self.started {
            return 0;
        }
        self.extended_max_seq()
            .wrapping_sub(self.base_seq as u32)
            .wrapping_add(1)
    }

    pub fn packets_discarded(&self) -> u64 {
        self.packets_discarded
    }
}

/// Weighted moving average of the last [`SCORE_HISTORY_LEN`] scores, newest heaviest (weights
/// 1..=24), as mediasoup's `RtpStream::UpdateScore`.
#[derive(Debug, Clone, Copy)]
pub struct ScoreHistory {
    samples: [u8; SCORE_HISTORY_LEN],
    len: usize,
    score: u8,
}

impl ScoreHistory {
    pub fn new(initial: u8) -> Self {
        Self {
            samples: [0; SCORE_HISTORY_LEN],
            len: 0,
            score: initial,
        }
    }

    pub fn score(&self) -> u8 {
        self.score
    }

    /// Adds a sample; Some(new score) if the average changed.
    pub fn update(&mut self, sample: u8) -> Option<u8> {
        if self.len == SCORE_HISTORY_LEN {
            self.samples.copy_within(1.., 0);
            self.len -= 1;
        }
        self.samples[self.len] = sample.min(10);
        self.len += 1;
        let (mut weights, mut total) = (0u32, 0u32);
        for (i, &s) in self.samples[..self.len].iter().enumerate() {
            let w = i as u32 + 1;
            weights += w;
            total += w * s as u32;
        }
        let previous = self.score;
        self.score = ((total as f64 / weights as f64).round()) as u8;
        (self.score != previous).then_some(self.score)
    }

    /// Forgets the history and sets `score`; Some(score) if it changed.
    pub fn reset(&mut self, score: u8) -> Option<u8> {
        self.len = 0;
        let previous = self.score;
        self.score = score;
        (score != previous).then_some(score)
    }
}

/// One score sample (0..=10) from an interval's counts, as mediasoup computes it: lost packets
/// are credited back in proportion to the repaired ones (less so when many retransmissions were
/// needed), then `round((delivered / total)^4 × 10)`.
pub fn score_sample(total: u32, lost: u32, repaired: u32, retransmitted: u32) -> u8 {
    if total == 0 {
        return 10;
    }
    let lost = lost.min(total);
    let repaired = repaired.min(lost);
    let retransmitted = retransmitted.max(repaired);
    let repaired_ratio = repaired as f64 / total as f64;
    let mut repaired_weight = (1.0 / (repaired_ratio + 1.0)).powi(4);
    if retransmitted > 0 {
        repaired_weight *= repaired as f64 / retransmitted as f64;
    }
    let lost = (lost as f64 - repaired as f64 * repaired_weight).max(0.0);
    let delivered_ratio = (total as f64 - lost) / total as f64;
    (delivered_ratio.powi(4) * 10.0).round().clamp(0.0, 10.0) as u8
}

/// Which key frame request to send upstream (mediasoup prefers PLI, then FIR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFrameRequest {
    Pli,
    /// FIR with its command sequence number (RFC 5104).
    Fir {
        seq_nr: u8,
    },
}

/// The kind of key frame request received from downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFrameRequestKind {
    Pli,
    Fir,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_tracker_counts_cycles_and_expected() {
        let mut t = SeqTracker::new();
        assert_eq!(t.expected_packets(), 0);
        assert_eq!(t.update(65534), SeqUpdate::Accepted);
        assert_eq!(t.update(65535), SeqUpdate::Accepted);
        assert_eq!(t.update(1), SeqUpdate::Accepted); // 0 lost
        assert_eq!(t.extended_max_seq(), 65536 + 1);
        assert_eq!(t.expected_packets(), 4);
        // Late packet: accepted, max unchanged.
        assert_eq!(t.update(0), SeqUpdate::Accepted);
        assert_eq!(t.max_seq(), 1);
    }

    #[test]
    fn seq_tracker_starting_at_zero_has_no_phantom_cycle() {
        let mut t = SeqTracker::new();
        t.update(0);
        t.update(1);
        assert_eq!(t.expected_packets(), 2);
        assert_eq!(t.extended_max_seq(), 1);
    }

    #[test]
    fn seq_tracker_discards_jumps_then_resyncs() {
        let mut t = SeqTracker::new();
        t.update(100);
        assert_eq!(t.update(30_000), SeqUpdate::Discarded);
        assert_eq!(t.packets_discarded(), 1);
        assert_eq!(t.update(30_001), SeqUpdate::Reset);
        assert_eq!(t.expected_packets(), 1);
        assert_eq!(t.update(30_002), SeqUpdate::Accepted);
        assert_eq!(t.expected_packets(), 2);
    }

    #[test]
    fn score_history_weighted_average() {
        let mut h = ScoreHistory::new(10);
        // mediasoup's doc example: [1,2,3,4] → (1 + 4 + 9 + 16) / 10 = 3.
        h.update(1);
        h.update(2);
        h.update(3);
        assert_eq!(h.update(4), Some(3));
        assert_eq!(h.score(), 3);
        // Only the last 24 samples count.
        for _ in 0..24 {
            h.update(10);
        }
        assert_eq!(h.score(), 10);
        assert_eq!(h.update(10), None);
        assert_eq!(h.reset(0), Some(0));
        assert_eq!(h.update(5), Some(5));
    }

    #[test]
    fn score_samples() {
        assert_eq!(score_sample(0, 0, 0, 0), 10);
        assert_eq!(score_sample(100, 0, 0, 0), 10);
        // 10 % loss: 0.9^4 × 10 = 6.56 → 7.
        assert_eq!(score_sample(100, 10, 0, 0), 7);
        // All of it repaired with one retransmission each: most is credited back.
        assert_eq!(score_sample(100, 10, 10, 10), 9);
        // Total loss.
        assert_eq!(score_sample(100, 100, 0, 0), 0);
    }
}
