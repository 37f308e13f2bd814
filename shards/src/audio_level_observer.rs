//! mediasoup's AudioLevelObserver as the demo configures it (maxEntries 1, threshold -80 dBov,
//! interval 800 ms): every interval, the loudest audio producer of a router whose average level
//! is above the threshold, or silence once when nobody is.

use std::time::{Duration, Instant};

/// The demo's observer settings.
pub const INTERVAL: Duration = Duration::from_millis(800);
pub const THRESHOLD_DBOV: i32 = -80;

/// Levels of one producer over the current interval (RFC 6464 values are -dBov, 0..=127).
#[derive(Debug, Default, Clone, Copy)]
pub struct LevelAccumulator {
    sum: u64,
    count: u32,
}

impl LevelAccumulator {
    /// One packet's `ssrc-audio-level` extension value.
    pub fn add(&mut self, extension: &[u8]) {
        if let Some(&b) = extension.first() {
            self.sum += u64::from(b & 0x7f);
            self.count += 1;
        }
    }

    /// Average dBov over the interval (None without packets), and starts a new interval.
    pub fn take_average(&mut self) -> Option<i32> {
        let taken = std::mem::take(self);
        (taken.count > 0).then(|| -((taken.sum / u64::from(taken.count)) as i32))
    }
}

/// What an interval produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObserverEvent {
    /// The loudest producer and its volume (dBov).
    Volume {
        producer_id: String,
        volume: i32,
    },
    Silence,
}

/// Per-router state: when the interval ends, whether the last report was silence.
#[derive(Debug)]
pub struct AudioLevelObserver {
    next: Option<Instant>,
    silent: bool,
}

impl Default for AudioLevelObserver {
    fn default() -> Self {
        Self {
            next: None,
            silent: true,
        }
    }
}

impl AudioLevelObserver {
    /// Whether the interval ended at `now` (then call [`Self::report`]).
    pub fn due(&mut self, now: Instant) -> bool {
        match self.next {
            Some(at) if at > now => false,
            _ => {
                self.next = Some(now + INTERVAL);
                true
            }
        }
    }

    /// The event for an interval's averages (producer id, dBov): the loudest above the
    /// threshold, or silence once after volumes.
    pub fn report<'a>(
        &mut self,
        averages: impl Iterator<Item = (&'a str, i32)>,
    ) -> Option<ObserverEvent> {
        let loudest = averages
            .filter(|(_, v)| *v > THRESHOLD_DBOV)
            .max_by_key(|(_, v)| *v);
        match loudest {
            Some((producer_id, volume)) => {
                self.silent = false;
                Some(ObserverEvent::Volume {
                    producer_id: producer_id.to_string(),
                    volume,
                })
            }
            None if !self.silent => {
                self.silent = true;
                Some(ObserverEvent::Silence)
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loudest_above_threshold_then_silence_once() {
        let mut a = LevelAccumulator::default();
        for level in [40u8, 50, 0x80 | 60] {
            a.add(&[level]);
        }
        assert_eq!(a.take_average(), Some(-50));
        assert_eq!(a.take_average(), None, "a new interval starts empty");
        let mut observer = AudioLevelObserver::default();
        let now = Instant::now();
        assert!(observer.due(now));
        assert!(!observer.due(now + Duration::from_millis(100)));
        assert!(observer.due(now + INTERVAL));
        assert_eq!(
            observer.report([("a", -60), ("b", -30), ("c", -90)].into_iter()),
            Some(ObserverEvent::Volume {
                producer_id: "b".into(),
                volume: -30
            })
        );
        assert_eq!(
            observer.report([("c", -95)].into_iter()),
            Some(ObserverEvent::Silence)
        );
        assert_eq!(observer.report(std::iter::empty()), None);
    }
}
