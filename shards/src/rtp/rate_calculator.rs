//! Bitrate over a sliding window (mediasoup's `RTC::RateCalculator` / `RtpDataCounter`): a fixed
//! ring of time buckets allocated once, so counting a packet is a couple of additions.

use std::time::{Duration, Instant};

/// Buckets per window (mediasoup uses 100 items too).
const BUCKETS: usize = 100;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Bucket number since the epoch, plus one (0 = never used).
    index: u64,
    bytes: u64,
}

/// Bytes per window, reported in bits per second.
#[derive(Debug, Clone)]
pub struct RateCalculator {
    window_ms: u64,
    bucket_ms: u64,
    buckets: Box<[Bucket]>,
    epoch: Option<Instant>,
}

impl RateCalculator {
    pub fn new(window: Duration) -> Self {
        let window_ms = (window.as_millis() as u64).max(BUCKETS as u64);
        Self {
            window_ms,
            bucket_ms: window_ms / BUCKETS as u64,
            buckets: vec![Bucket::default(); BUCKETS].into_boxed_slice(),
            epoch: None,
        }
    }

    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms)
    }

    fn bucket_index(&self, now: Instant) -> u64 {
        let epoch = self.epoch.unwrap_or(now);
        now.saturating_duration_since(epoch).as_millis() as u64 / self.bucket_ms + 1
    }

    pub fn update(&mut self, bytes: usize, now: Instant) {
        if self.epoch.is_none() {
            self.epoch = Some(now);
        }
        let index = self.bucket_index(now);
        let slot = &mut self.buckets[(index % BUCKETS as u64) as usize];
        if slot.index != index {
            *slot = Bucket { index, bytes: 0 };
        }
        slot.bytes += bytes as u64;
    }

    /// Bits per second over the window ending at `now`. Like mediasoup, always divided by the full
    /// window, so a stream younger than the window ramps up.
    pub fn rate(&self, now: Instant) -> u32 {
        if self.epoch.is_none() {
            return 0;
        }
        let current = self.bucket_index(now);
        let oldest = current.saturating_sub(BUCKETS as u64 - 1);
        let bytes: u64 = self
            .buckets
            .iter()
            .filter(|b| b.index != 0 && b.index >= oldest && b.index <= current)
            .map(|b| b.bytes)
            .sum();
        (bytes * 8 * 1000 / self.window_ms).min(u32::MAX as u64) as u32
    }

    pub fn reset(&mut self) {
        self.buckets.fill(Bucket::default());
        self.epoch = None;
    }
}

/// Packets, bytes and bitrate of one stream or layer.
#[derive(Debug, Clone)]
pub struct RtpDataCounter {
    rate: RateCalculator,
    packets: u64,
    bytes: u64,
}

impl RtpDataCounter {
    pub fn new(window: Duration) -> Self {
        Self {
            rate: RateCalculator::new(window),
            packets: 0,
            bytes: 0,
        }
    }

    pub fn update(&mut self, bytes: usize, now: Instant) {
        self.packets += 1;
        self.bytes += bytes as u64;
        self.rate.update(bytes, now);
    }

    pub fn bitrate(&self, now: Instant) -> u32 {
        self.rate.rate(now)
    }

    pub fn packet_count(&self) -> u64 {
        self.packets
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_over_the_window_and_expiry() {
        let t0 = Instant::now();
        let mut r = RateCalculator::new(Duration::from_secs(1));
        assert_eq!(r.rate(t0), 0);
        // 10 packets of 1250 bytes over 1 s = 100 kbit/s.
        for i in 0..10 {
            r.update(1250, t0 + Duration::from_millis(i * 100));
        }
        let rate = r.rate(t0 + Duration::from_millis(950));
        assert_eq!(rate, 100_000);
        // Half of it has left the window.
        let later = r.rate(t0 + Duration::from_millis(1450));
        assert!((40_000..=60_000).contains(&later), "{later}");
        // All gone.
        assert_eq!(r.rate(t0 + Duration::from_secs(3)), 0);
        // Buckets are reused without growing.
        r.update(1000, t0 + Duration::from_secs(10));
        assert_eq!(r.rate(t0 + Duration::from_secs(10)), 8_000);
        r.reset();
        assert_eq!(r.rate(t0 + Duration::from_secs(10)), 0);
    }

    #[test]
    fn counter_counts() {
        let t0 = Instant::now();
        let mut c = RtpDataCounter::new(Duration::from_millis(2500));
        c.update(100, t0);
        c.update(300, t0);
        assert_eq!((c.packet_count(), c.bytes()), (2, 400));
        assert_eq!(c.bitrate(t0), 400 * 8 * 1000 / 2500);
    }
}
