//! Receive-side packet-index tracking: RFC 3711 Appendix A index estimation and a sliding replay
//! window (RFC 3711 §3.3.2), as fixed-size values that never allocate.

use super::super::srtp_session::{SrtpError, REPLAY_WINDOW};

const WORDS: usize = REPLAY_WINDOW / 64;
const _: () = assert!(REPLAY_WINDOW & 63 == 0 && REPLAY_WINDOW >= 128);

/// SRTP packet indices are 48 bits (ROC || SEQ).
pub(super) const MAX_INDEX: u64 = (1 << 48) - 1;

/// RFC 3711 Appendix A: the 48-bit index of sequence number `seq` given the highest index `s_l`
/// processed so far, as a signed value (negative: "ROC - 1" guessed while ROC is 0).
pub(super) fn estimate_index(highest: u64, seq: u16) -> i64 {
    // `highest` is at most MAX_INDEX, so none of this overflows.
    let roc = (highest >> 16) as i64;
    let s_l = (highest & 0xFFFF) as i64;
    let seq = i64::from(seq);
    let v = if s_l < 32_768 {
        if seq - s_l > 32_768 {
            roc - 1
        } else {
            roc
        }
    } else if s_l - 32_768 > seq {
        roc + 1
    } else {
        roc
    };
    v * 65_536 + seq
}

/// The index of a received packet: one from before the first packet (ROC would be -1) is older
/// than anything the window can hold.
pub(super) fn receive_index(highest: u64, seq: u16) -> Result<u64, SrtpError> {
    match u64::try_from(estimate_index(highest, seq)) {
        Ok(index) if index <= MAX_INDEX => Ok(index),
        Ok(_) => Err(SrtpError::KeyExhausted),
        Err(_) => Err(SrtpError::Replayed),
    }
}

/// The index to send `seq` under. A jump of more than 2^15 ahead while the ROC is still 0 is
/// taken as a jump ahead (rtc-srtp does the same) rather than as ROC -1.
pub(super) fn send_index(highest: u64, seq: u16) -> Result<u64, SrtpError> {
    let index = u64::try_from(estimate_index(highest, seq)).unwrap_or(u64::from(seq));
    if index > MAX_INDEX {
        return Err(SrtpError::KeyExhausted);
    }
    Ok(index)
}

/// The highest index accepted and which of the [`REPLAY_WINDOW`] indices up to it were seen: a
/// ring of bits addressed by `index % REPLAY_WINDOW`.
#[derive(Clone)]
pub(super) struct ReplayWindow {
    highest: u64,
    bits: [u64; WORDS],
}

impl ReplayWindow {
    /// A window whose only accepted packet is `index`.
    pub(super) fn new(index: u64) -> Self {
        let mut window = Self {
            highest: index,
            bits: [0; WORDS],
        };
        window.set(index);
        window
    }

    pub(super) fn highest(&self) -> u64 {
        self.highest
    }

    /// Whether `index` is new and not older than the window.
    pub(super) fn check(&self, index: u64) -> bool {
        if index > self.highest {
            return true;
        }
        let age = self.highest - index;
        age < REPLAY_WINDOW as u64 && !self.get(index)
    }

    /// Records `index` (which passed [`check`](Self::check) and authenticated).
    pub(super) fn accept(&mut self, index: u64) {
        if index > self.highest {
            let advance = index - self.highest;
            if advance >= REPLAY_WINDOW as u64 {
                self.bits = [0; WORDS];
            } else {
                self.clear(self.highest + 1, advance as usize);
            }
            self.highest = index;
        } else if self.highest - index >= REPLAY_WINDOW as u64 {
            return;
        }
        self.set(index);
    }

    fn position(index: u64) -> (usize, u32) {
        let bit = (index % REPLAY_WINDOW as u64) as usize;
        (bit / 64, (bit % 64) as u32)
    }

    fn get(&self, index: u64) -> bool {
        let (word, bit) = Self::position(index);
        self.bits.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    fn set(&mut self, index: u64) {
        let (word, bit) = Self::position(index);
        if let Some(w) = self.bits.get_mut(word) {
            *w |= 1 << bit;
        }
    }

    /// Clears the bits of `count` (< REPLAY_WINDOW) indices from `from`, a word at a time.
    fn clear(&mut self, mut from: u64, mut count: usize) {
        while count > 0 {
            let (word, bit) = Self::position(from);
            let n = count.min(64 - bit as usize);
            let mask = if n == 64 {
                u64::MAX
            } else {
                ((1u64 << n) - 1) << bit
            };
            if let Some(w) = self.bits.get_mut(word) {
                *w &= !mask;
            }
            from += n as u64;
            count -= n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_estimation_follows_rfc3711_appendix_a() {
        // Plain progress, and reordering on either side of a wrap.
        assert_eq!(estimate_index(100, 101), 101);
        assert_eq!(estimate_index(100, 90), 90);
        assert_eq!(estimate_index(65_535, 0), 65_536);
        assert_eq!(estimate_index(65_536, 65_535), 65_535);
        assert_eq!(estimate_index(3 << 16 | 5, 65_000), 2 << 16 | 65_000);
        assert_eq!(estimate_index(3 << 16 | 60_000, 10), 4 << 16 | 10);
        // ROC 0 and a sequence number far "behind" the first: before the stream.
        assert!(estimate_index(100, 40_000) < 0);
        assert_eq!(receive_index(100, 40_000), Err(SrtpError::Replayed));
        assert_eq!(send_index(100, 40_000), Ok(40_000));
        // Index space exhausted.
        assert_eq!(receive_index(MAX_INDEX, 1), Err(SrtpError::KeyExhausted));
        assert_eq!(send_index(MAX_INDEX, 1), Err(SrtpError::KeyExhausted));
        assert_eq!(send_index(MAX_INDEX, 65_534), Ok(MAX_INDEX - 1));
    }

    /// Against a plain set of seen indices.
    #[test]
    fn window_matches_a_reference_model() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut window = ReplayWindow::new(5000);
        let mut seen = std::collections::BTreeSet::from([5000u64]);
        let mut highest = 5000u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly small steps forward and back, sometimes big jumps.
            let delta = match x % 16 {
                0 => (x >> 8) % 5000,
                1 => (x >> 8) % 3000,
                _ => (x >> 8) % 40,
            } as i64
                - if x % 16 == 1 { 2000 } else { 15 };
            let index = (highest as i64 + delta).max(0) as u64;
            let expected = index > highest
                || (highest - index < REPLAY_WINDOW as u64 && !seen.contains(&index));
            assert_eq!(
                window.check(index),
                expected,
                "index {index} highest {highest}"
            );
            if expected {
                window.accept(index);
                seen.insert(index);
                highest = highest.max(index);
            }
            assert_eq!(window.highest(), highest);
        }
    }
}
