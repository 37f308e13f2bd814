//! Maps an input sequence space onto a continuous output space (mediasoup's `RTC::SeqManager`):
//! a consumer drops packets (temporal layers it does not forward, padding) and switches sources
//! (simulcast layers, producer changes), yet the receiver must see sequence numbers without gaps
//! or jumps. Used for RTP sequence numbers (16 bits), VP8 picture ids (15 or 7 bits), TL0PICIDX
//! (8 bits) and RTP timestamps (32 bits, with [`SeqManager::offset`]).
//!
//! Unlike mediasoup's `std::set` of dropped inputs this keeps them in a bounded, preallocated ring
//! of extended (wrap-free) values: once a dropped input is old enough (or the ring is full) it is
//! folded into the base offset, and inputs at or before a folded drop are refused (`None`) rather
//! than mapped onto output values already used.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::marker::PhantomData;

/// An unsigned integer carrying a wrapping sequence value.
pub trait SeqNum: Copy + Eq + Debug {
    fn to_u64(self) -> u64;
    /// Truncating conversion.
    fn from_u64(v: u64) -> Self;
}

macro_rules! seq_num {
    ($($t:ty),*) => {$(
        impl SeqNum for $t {
            fn to_u64(self) -> u64 {
                self as u64
            }
            fn from_u64(v: u64) -> Self {
                v as $t
            }
        }
    )*};
}
seq_num!(u8, u16, u32);

/// Dropped inputs remembered at most; when full the oldest is folded into the base.
pub const MAX_DROPPED: usize = 512;

/// RTP sequence numbers.
pub type RtpSeqManager = SeqManager<u16, 16>;
/// RTP timestamps.
pub type TimestampManager = SeqManager<u32, 32>;
/// VP8/VP9 15-bit picture ids.
pub type PictureIdManager = SeqManager<u16, 15>;
/// VP8/VP9 7-bit picture ids.
pub type ShortPictureIdManager = SeqManager<u16, 7>;
/// VP8/VP9 TL0PICIDX.
pub type Tl0PicIdxManager = SeqManager<u8, 8>;

/// Sequence-number mapper over `BITS`-bit values stored in `T`.
#[derive(Debug, Clone)]
pub struct SeqManager<T: SeqNum, const BITS: u32> {
    started: bool,
    initial_output: Option<u64>,
    /// Added (wrapping) to an extended input to get the output, before dropped inputs are counted.
    base: u64,
    /// Highest extended input seen.
    max_input: u64,
    /// Highest output produced (masked).
    max_output: u64,
    /// Dropped extended inputs above the horizon, ascending.
    dropped: VecDeque<u64>,
    /// Inputs at or before this extended value are refused: the sync point, or a folded drop.
    horizon: Option<u64>,
    _t: PhantomData<T>,
}

impl<T: SeqNum, const BITS: u32> Default for SeqManager<T, BITS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: SeqNum, const BITS: u32> SeqManager<T, BITS> {
    const MOD: u64 = 1 << BITS;
    const MASK: u64 = Self::MOD - 1;
    const HALF: u64 = Self::MOD / 2;
    /// How far behind the highest input a dropped input is still kept (for late reordered inputs).
    const WINDOW: u64 = if Self::MOD / 4 < 4096 {
        Self::MOD / 4
    } else {
        4096
    };

    /// Until [`Self::sync`] is called, outputs equal inputs (mediasoup's default).
    pub fn new() -> Self {
        Self {
            started: false,
            initial_output: None,
            base: 0,
            max_input: 0,
            max_output: 0,
            dropped: VecDeque::with_capacity(MAX_DROPPED),
            horizon: None,
            _t: PhantomData,
        }
    }

    /// The first input (when no [`Self::sync`] came first) is mapped to `initial_output`; e.g. a
    /// random initial sequence number per consumer.
    pub fn with_initial_output(initial_output: T) -> Self {
        let mut s = Self::new();
        s.initial_output = Some(initial_output.to_u64() & Self::MASK);
        s
    }

    /// `lhs` comes after `rhs` in wrapping order (less than half the space ahead).
    pub fn is_seq_higher_than(lhs: T, rhs: T) -> bool {
        let d = lhs.to_u64().wrapping_sub(rhs.to_u64()) & Self::MASK;
        d != 0 && d < Self::HALF
    }

    /// `lhs` comes before `rhs` in wrapping order.
    pub fn is_seq_lower_than(lhs: T, rhs: T) -> bool {
        Self::is_seq_higher_than(rhs, lhs)
    }

    /// Extends `input` to the value nearest the highest input seen.
    fn extend(&self, input: u64) -> u64 {
        let d = input.wrapping_sub(self.max_input) & Self::MASK;
        if d < Self::HALF {
            self.max_input + d
        } else {
            self.max_input - (Self::MOD - d)
        }
    }

    /// Re-anchors on a new source: the input following `input` maps to the output following the
    /// highest output so far, with no gap. Call with `first_seq - 1` of the new source (mediasoup
    /// does the same). Earlier inputs of the new source are refused from now on.
    pub fn sync(&mut self, input: T) {
        let anchor = Self::MOD + (input.to_u64() & Self::MASK);
        self.started = true;
        self.max_input = anchor;
        self.base = self.max_output.wrapping_sub(anchor);
        self.dropped.clear();
        self.horizon = Some(anchor);
    }

    /// Adds `offset` to every later output (mediasoup uses it to shift RTP timestamps).
    pub fn offset(&mut self, offset: T) {
        self.base = self.base.wrapping_add(offset.to_u64());
    }

    /// Marks `input` as not forwarded: later inputs are shifted down so no gap appears. Only inputs
    /// newer than any input passed to [`Self::input`] can be dropped.
    pub fn drop(&mut self, input: T) {
        if !self.started {
            return;
        }
        let ext = self.extend(input.to_u64() & Self::MASK);
        if ext <= self.max_input || self.horizon.is_some_and(|h| ext <= h) {
            return;
        }
        if self.dropped.binary_search(&ext).is_ok() {
            return;
        }
        if self.dropped.len() == MAX_DROPPED {
            self.fold_oldest();
            if self.horizon.is_some_and(|h| ext <= h) {
                return;
            }
        }
        if let Err(idx) = self.dropped.binary_search(&ext) {
            self.dropped.insert(idx, ext);
        }
    }

    /// The output for `input`, or None if it was dropped or lies at or before the sync point (or a
    /// drop old enough to be forgotten).
    pub fn input(&mut self, input: T) -> Option<T> {
        let value = input.to_u64() & Self::MASK;
        if !self.started {
            self.started = true;
            self.max_input = Self::MOD + value;
            if let Some(initial) = self.initial_output {
                self.base = initial.wrapping_sub(self.max_input);
            }
            let output = self.max_input.wrapping_add(self.base) & Self::MASK;
            self.max_output = output;
            return Some(T::from_u64(output));
        }
        let ext = self.extend(value);
        if self.horizon.is_some_and(|h| ext <= h) {
            return None;
        }
        let below = self.dropped.partition_point(|&d| d < ext);
        if self.dropped.get(below) == Some(&ext) {
            return None;
        }
        let output = ext.wrapping_add(self.base).wrapping_sub(below as u64) & Self::MASK;
        if ext > self.max_input {
            self.max_input = ext;
        }
        if Self::is_seq_higher_than(T::from_u64(output), T::from_u64(self.max_output)) {
            self.max_output = output;
        }
        while self
            .dropped
            .front()
            .is_some_and(|&d| d + Self::WINDOW < self.max_input)
        {
            self.fold_oldest();
        }
        Some(T::from_u64(output))
    }

    /// Forgets the oldest dropped input: every later input already counts it, so it moves into
    /// the base; earlier inputs can no longer be mapped correctly and get refused.
    fn fold_oldest(&mut self) {
        if let Some(d) = self.dropped.pop_front() {
            self.base = self.base.wrapping_sub(1);
            self.horizon = Some(self.horizon.map_or(d, |h| h.max(d)));
        }
    }

    /// Highest input seen (masked).
    pub fn max_input(&self) -> T {
        T::from_u64(self.max_input & Self::MASK)
    }

    /// Highest output produced.
    pub fn max_output(&self) -> T {
        T::from_u64(self.max_output)
    }

    /// Whether any input was seen or a sync happened.
    pub fn started(&self) -> bool {
        self.started
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(m: &mut RtpSeqManager, inputs: &[u16]) -> Vec<Option<u16>> {
        inputs.iter().map(|&i| m.input(i)).collect()
    }

    #[test]
    fn identity_until_synced() {
        let mut m = RtpSeqManager::new();
        assert_eq!(
            feed(&mut m, &[10, 11, 13, 12]),
            [Some(10), Some(11), Some(13), Some(12)]
        );
        assert_eq!(m.max_input(), 13);
        assert_eq!(m.max_output(), 13);
    }

    #[test]
    fn initial_output_offsets_everything() {
        let mut m = RtpSeqManager::with_initial_output(1000);
        assert_eq!(
            feed(&mut m, &[5, 6, 7]),
            [Some(1000), Some(1001), Some(1002)]
        );
    }

    #[test]
    fn drops_close_the_gap_and_reordered_earlier_inputs_keep_their_output() {
        let mut m = RtpSeqManager::new();
        assert_eq!(m.input(1), Some(1));
        assert_eq!(m.input(2), Some(2));
        m.drop(4);
        m.drop(5);
        assert_eq!(m.input(6), Some(4));
        // 3 arrives late: it is below both drops.
        assert_eq!(m.input(3), Some(3));
        // A dropped input never gets out.
        assert_eq!(m.input(4), None);
        assert_eq!(m.input(7), Some(5));
        // Duplicates map to the same output.
        assert_eq!(m.input(7), Some(5));
    }

    #[test]
    fn drop_of_an_old_input_is_ignored() {
        let mut m = RtpSeqManager::new();
        m.input(10);
        m.input(11);
        m.drop(9);
        assert_eq!(m.input(12), Some(12));
    }

    #[test]
    fn wraps_around_with_drops() {
        let mut m = RtpSeqManager::new();
        assert_eq!(m.input(65533), Some(65533));
        m.drop(65534);
        assert_eq!(m.input(65535), Some(65534));
        m.drop(0);
        assert_eq!(m.input(1), Some(65535));
        assert_eq!(m.input(2), Some(0));
        assert_eq!(m.input(3), Some(1));
        assert_eq!(m.max_output(), 1);
    }

    #[test]
    fn layer_switch_produces_no_gap_or_jump() {
        // Layer A: 100..=109 → outputs 500..=509.
        let mut m = RtpSeqManager::with_initial_output(500);
        let a: Vec<_> = (100u16..110).map(|s| m.input(s).unwrap()).collect();
        assert_eq!(a, (500u16..510).collect::<Vec<_>>());
        // Switch to layer B whose key frame is seq 40000: sync on the previous one.
        m.sync(39999);
        assert_eq!(m.input(40000), Some(510));
        assert_eq!(m.input(40001), Some(511));
        // A straggler of layer A (now foreign) or of B before the key frame is refused.
        assert_eq!(m.input(39990), None);
        assert_eq!(m.input(39999), None);
        // Switch back to A (which continued meanwhile) across the wrap of the output space.
        let mut w = RtpSeqManager::with_initial_output(65534);
        assert_eq!(w.input(7), Some(65534));
        w.sync(3000);
        assert_eq!(w.input(3001), Some(65535));
        assert_eq!(w.input(3002), Some(0));
    }

    #[test]
    fn sync_works_before_any_input() {
        let mut m = RtpSeqManager::new();
        m.sync(41);
        assert_eq!(m.input(42), Some(1));
        assert_eq!(m.input(43), Some(2));
    }

    #[test]
    fn drops_are_bounded_and_folded() {
        let mut m = RtpSeqManager::new();
        m.input(0);
        // Drop every odd input for a long time: the ring never grows past its capacity.
        let mut expected = 1u16;
        for i in 1..20_000u32 {
            let s = i as u16;
            if i % 2 == 1 {
                m.drop(s);
            } else {
                assert_eq!(m.input(s), Some(expected), "input {s}");
                expected = expected.wrapping_add(1);
            }
            assert!(m.dropped.len() <= MAX_DROPPED);
        }
        // A very late packet from before a folded drop is refused rather than colliding.
        assert_eq!(m.input(2), None);
    }

    #[test]
    fn full_ring_folds_oldest() {
        let mut m = RtpSeqManager::new();
        m.input(0);
        for s in 1..=(MAX_DROPPED as u16 + 10) {
            m.drop(s);
        }
        assert_eq!(m.dropped.len(), MAX_DROPPED);
        // Every drop still counts for newer inputs.
        assert_eq!(m.input(MAX_DROPPED as u16 + 11), Some(1));
    }

    #[test]
    fn timestamp_offset_and_narrow_widths() {
        let mut ts = TimestampManager::new();
        assert_eq!(ts.input(u32::MAX), Some(u32::MAX));
        ts.offset(10);
        assert_eq!(ts.input(0), Some(10));

        let mut pid = PictureIdManager::new();
        assert_eq!(pid.input(0x7FFE), Some(0x7FFE));
        pid.drop(0x7FFF);
        assert_eq!(pid.input(0), Some(0x7FFF));
        assert_eq!(pid.input(1), Some(0));

        let mut tl0 = Tl0PicIdxManager::new();
        tl0.sync(9);
        assert_eq!(tl0.input(10), Some(1));
        assert!(Tl0PicIdxManager::is_seq_higher_than(0, 255));
        assert!(Tl0PicIdxManager::is_seq_lower_than(255, 0));
        assert!(!RtpSeqManager::is_seq_higher_than(5, 5));
    }
}
