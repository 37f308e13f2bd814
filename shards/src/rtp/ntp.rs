//! NTP timestamps for RTCP (RFC 3550 §4): the 64-bit form of Sender Reports and the compact
//! 32-bit "middle" form of LSR / DLSR / RTT arithmetic.
//!
//! mediasoup puts libuv's monotonic clock in its Sender Reports; this takes whatever the caller
//! passes, normally the wall clock (so NTP-based lip sync and RTT both work), read once at the
//! edge rather than inside the packet path.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
pub const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// A 64-bit NTP timestamp: seconds since 1900 and a 32-bit binary fraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct NtpTime {
    pub seconds: u32,
    pub fractions: u32,
}

impl NtpTime {
    pub const fn new(seconds: u32, fractions: u32) -> Self {
        Self { seconds, fractions }
    }

    /// From a time since the Unix epoch.
    pub fn from_unix(since_unix_epoch: Duration) -> Self {
        let seconds = since_unix_epoch.as_secs() + NTP_UNIX_OFFSET_SECS;
        let fractions = ((since_unix_epoch.subsec_nanos() as u64) << 32) / 1_000_000_000;
        Self {
            seconds: seconds as u32,
            fractions: fractions as u32,
        }
    }

    /// From the wall clock; times before 1970 map to the Unix epoch.
    pub fn from_system_time(t: SystemTime) -> Self {
        Self::from_unix(t.duration_since(UNIX_EPOCH).unwrap_or_default())
    }

    pub fn from_u64(v: u64) -> Self {
        Self {
            seconds: (v >> 32) as u32,
            fractions: v as u32,
        }
    }

    pub fn as_u64(self) -> u64 {
        ((self.seconds as u64) << 32) | self.fractions as u64
    }

    /// The middle 32 bits (16.16 fixed-point seconds): the LSR field of a report block.
    pub fn compact(self) -> u32 {
        (self.seconds << 16) | (self.fractions >> 16)
    }

    /// Milliseconds since the NTP epoch (mediasoup's `Ntp2TimeMs`, used to relate RTP timestamps
    /// of different streams through their Sender Reports).
    pub fn as_millis(self) -> u64 {
        self.seconds as u64 * 1000 + ((self.fractions as u64 * 1000 + (1 << 31)) >> 32)
    }

    /// Inverse of [`Self::as_millis`].
    pub fn from_millis(ms: u64) -> Self {
        Self {
            seconds: (ms / 1000) as u32,
            fractions: (((ms % 1000) << 32) / 1000) as u32,
        }
    }
}

/// A duration in compact NTP units (1/65536 s), saturating: DLSR, DLRR.
pub fn duration_to_compact(d: Duration) -> u32 {
    let units = (d.as_nanos() << 16) / 1_000_000_000;
    units.min(u32::MAX as u128) as u32
}

/// A compact NTP interval as a duration.
pub fn compact_to_duration(c: u32) -> Duration {
    Duration::from_nanos(((c as u64) * 1_000_000_000) >> 16)
}

/// Round-trip time from a report block (RFC 3550 §6.4.1): arrival time (compact NTP) minus the
/// echoed LSR minus the receiver's DLSR. None without an SR echo, or if the result is not positive
/// (clock steps), like mediasoup.
pub fn round_trip_time(arrival: NtpTime, lsr: u32, dlsr: u32) -> Option<Duration> {
    if lsr == 0 {
        return None;
    }
    let rtt = arrival.compact().wrapping_sub(lsr).wrapping_sub(dlsr);
    // More than half the compact range means "negative".
    (rtt != 0 && rtt < 0x8000_0000).then(|| compact_to_duration(rtt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_to_ntp() {
        let t = NtpTime::from_unix(Duration::from_millis(1_500));
        assert_eq!(t.seconds as u64, NTP_UNIX_OFFSET_SECS + 1);
        assert_eq!(t.fractions, 1 << 31);
        assert_eq!(NtpTime::from_u64(t.as_u64()), t);
        assert_eq!(
            NtpTime::from_system_time(UNIX_EPOCH + Duration::from_secs(2)).seconds as u64,
            NTP_UNIX_OFFSET_SECS + 2
        );
    }

    #[test]
    fn compact_and_millis() {
        let t = NtpTime::new(0x1234_5678, 0x9ABC_DEF0);
        assert_eq!(t.compact(), 0x5678_9ABC);
        let ms = NtpTime::new(10, 1 << 31).as_millis();
        assert_eq!(ms, 10_500);
        assert_eq!(NtpTime::from_millis(10_500), NtpTime::new(10, 1 << 31));
        assert_eq!(
            duration_to_compact(Duration::from_millis(1500)),
            0x0001_8000
        );
        assert_eq!(compact_to_duration(0x0000_8000), Duration::from_millis(500));
    }

    #[test]
    fn rtt_from_lsr_and_dlsr() {
        let sr_sent = NtpTime::from_unix(Duration::from_secs(100));
        let rr_arrival = NtpTime::from_unix(Duration::from_millis(100_250));
        let dlsr = duration_to_compact(Duration::from_millis(200));
        let rtt = round_trip_time(rr_arrival, sr_sent.compact(), dlsr).unwrap();
        assert!((rtt.as_secs_f64() - 0.050).abs() < 0.001, "{rtt:?}");
        assert_eq!(round_trip_time(rr_arrival, 0, dlsr), None);
        // DLSR larger than the elapsed time: negative, ignored.
        let big = duration_to_compact(Duration::from_millis(400));
        assert_eq!(round_trip_time(rr_arrival, sr_sent.compact(), big), None);
    }
}
