//! Unwrapping 16-bit sequence numbers into a monotonic 64-bit space (libwebrtc's
//! `SeqNumUnwrapper`, which mediasoup's transport-cc server uses), so that ordering, gaps and
//! reordering can be handled with plain integer arithmetic across wraparounds.

/// Maps each `u16` to the `i64` closest to the previously unwrapped value.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeqNumUnwrapper {
    last: Option<i64>,
}

impl SeqNumUnwrapper {
    /// Unwraps `seq`: a step of less than half the range forward or backward from the last
    /// value is taken as such, whatever the wrap.
    pub fn unwrap(&mut self, seq: u16) -> i64 {
        let value = match self.last {
            // Start one cycle up so early reordered packets stay positive.
            None => i64::from(seq) + (1 << 16),
            Some(last) => last + i64::from(seq.wrapping_sub(last as u16) as i16),
        };
        self.last = Some(value);
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwraps_forward_backward_and_across_wrap() {
        let mut u = SeqNumUnwrapper::default();
        let a = u.unwrap(65534);
        assert_eq!(u.unwrap(65535), a + 1);
        assert_eq!(u.unwrap(0), a + 2);
        assert_eq!(u.unwrap(3), a + 5);
        // Reordered packet from before the wrap.
        assert_eq!(u.unwrap(65533), a - 1);
        assert_eq!(u.unwrap(4), a + 6);
        // Many cycles.
        let mut seq = 4u16;
        let mut expected = a + 6;
        for _ in 0..300_000 {
            seq = seq.wrapping_add(1000);
            expected += 1000;
            assert_eq!(u.unwrap(seq), expected);
        }
    }
}
