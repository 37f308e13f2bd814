//! `shardcast-load`'s command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Simulated mediasoup-demo peers (protoo over wss/ws, ICE, DTLS, SRTP, RTP/RTCP) that load an
/// SFU and measure what it delivers: throughput, loss, latency and the server's CPU per
/// forwarded packet. Speaks only the mediasoup-demo protocol, so it runs against Shardcast and
/// a stock mediasoup-demo server alike.
#[derive(Debug, Clone, Parser)]
#[command(name = "shardcast-load", version)]
pub struct LoadArgs {
    /// The server's protoo URL, without the query (`?roomId=..&peerId=..` is added).
    #[arg(long, default_value = "wss://127.0.0.1:4443")]
    pub url: String,
    /// Rooms to create.
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Video publishers per room (they also consume the others, as the demo client does).
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Audio-only publishers per room (they also consume the others).
    #[arg(long, default_value_t = 0)]
    pub audio_publishers: usize,
    /// Consume-only peers per room.
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
    /// Publishers join with RTP capabilities and so consume the room's other producers.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub publishers_consume: bool,
    /// Video bitrate per publisher (top layer with simulcast), e.g. `1500000`, `1500k`, `1.5M`.
    #[arg(long, default_value = "1M", value_parser = parse_bitrate)]
    pub bitrate: u64,
    /// Video frames per second.
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    /// Video RTP packet size in bytes before SRTP (header, extensions and payload).
    #[arg(long, default_value_t = 1200)]
    pub packet_size: usize,
    /// Audio RTP packet size in bytes before SRTP (50 packets/s).
    #[arg(long, default_value_t = 120)]
    pub audio_packet_size: usize,
    /// Three simulcast layers (rid r0/r1/r2 at 1/10, 1/3 and 1× the bitrate, VP8 L1T3).
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    pub simulcast: bool,
    /// Seconds between periodic key frames (key frames are also sent on PLI/FIR).
    #[arg(long, default_value_t = 2.0)]
    pub keyframe_interval: f64,
    /// Joins per second.
    #[arg(long, default_value_t = 20.0)]
    pub ramp: f64,
    /// Seconds measured once every peer has joined and the warm-up has passed.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds between the last join and the start of the measurement.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Seconds after the publishers stop for the last packets and repairs to arrive.
    #[arg(long, default_value_t = 1.5)]
    pub drain: f64,
    /// Decrypt and check 1 of every N received packets (`1/N` or `N`; `1` checks all). First
    /// packets and RTX are always checked. Latency comes from the checked packets.
    #[arg(long, default_value = "1/10", value_parser = parse_verify)]
    pub verify: u64,
    /// The server's pid: its CPU time is read from /proc during the measurement.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Write the report as JSON here (`-` for stdout).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw throughput, loss and latency over time into this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Exit 1 if subscriber loss (percent, after repairs) exceeds this.
    #[arg(long)]
    pub max_loss: Option<f64>,
    /// Exit 1 if the p99 end-to-end latency (milliseconds) exceeds this.
    #[arg(long)]
    pub max_p99_ms: Option<f64>,
    /// Exit 1 if more peers than this fail to join.
    #[arg(long, default_value_t = 0)]
    pub max_join_failures: u64,
    /// glommio executors (threads) for the simulated peers.
    #[arg(long, default_value_t = 1)]
    pub shards: usize,
    /// Pin the shards to these cores (comma-separated; default: not pinned).
    #[arg(long, value_delimiter = ',')]
    pub cores: Vec<usize>,
    /// Receivers discard this percentage of original (non-RTX) packets on arrival while the
    /// publishers send, to exercise NACK and RTX repair (loss then counts what was not repaired).
    #[arg(long, default_value_t = 0.0)]
    pub recv_loss: f64,
    /// Receive by polling each socket every this many µs instead of an io_uring receive armed
    /// on it. On loopback an armed receive makes the server's every send wake this process
    /// (charged to the server's CPU, which a receiver across a network never costs it); polling
    /// avoids that at the price of up to this much extra latency. tools/bench.sh uses it.
    #[arg(long)]
    pub poll_us: Option<u64>,
    /// Busy-poll this many µs before a shard sleeps (glommio `spin_before_park`): a sleeping
    /// receiver must be woken by the sender's kernel, which on loopback is charged to the server.
    #[arg(long)]
    pub spin_us: Option<u64>,
    /// Room id prefix (default: `load-` and a random suffix, so runs do not share rooms).
    #[arg(long)]
    pub room_prefix: Option<String>,
    /// No progress line while running.
    #[arg(long)]
    pub quiet: bool,
}

impl LoadArgs {
    pub fn duration(&self) -> Duration {
        secs(self.duration)
    }
    pub fn warmup(&self) -> Duration {
        secs(self.warmup)
    }
    pub fn drain(&self) -> Duration {
        secs(self.drain)
    }
    /// Peers per room.
    pub fn peers_per_room(&self) -> usize {
        self.publishers + self.audio_publishers + self.subscribers
    }

    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.rooms == 0 || self.peers_per_room() == 0 {
            return Err("nothing to do: no rooms or no peers per room".into());
        }
        if !(self.ramp > 0.0 && self.ramp.is_finite()) {
            return Err("--ramp must be a positive number of joins per second".into());
        }
        if self.fps == 0 || self.fps > 240 {
            return Err("--fps must be 1..=240".into());
        }
        if !(100..=1400).contains(&self.packet_size) {
            return Err("--packet-size must be 100..=1400 bytes".into());
        }
        if !(60..=1000).contains(&self.audio_packet_size) {
            return Err("--audio-packet-size must be 60..=1000 bytes".into());
        }
        if !(0.0..=50.0).contains(&self.recv_loss) {
            return Err("--recv-loss must be 0..=50 percent".into());
        }
        if self.poll_us.is_some_and(|p| !(10..=100_000).contains(&p)) {
            return Err("--poll-us must be 10..=100000".into());
        }
        if self.shards == 0 {
            return Err("--shards must be at least 1".into());
        }
        for v in [
            self.duration,
            self.warmup,
            self.drain,
            self.keyframe_interval,
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err("durations must be non-negative seconds".into());
            }
        }
        if !self.url.starts_with("ws://") && !self.url.starts_with("wss://") {
            return Err("--url must start with ws:// or wss://".into());
        }
        Ok(())
    }
}

fn secs(v: f64) -> Duration {
    Duration::from_secs_f64(v.max(0.0))
}

/// `1500000`, `1500k`, `1.5M` (bits per second).
pub fn parse_bitrate(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1e3),
        Some('m' | 'M') => (&s[..s.len() - 1], 1e6),
        Some('g' | 'G') => (&s[..s.len() - 1], 1e9),
        _ => (s, 1.0),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a bitrate (e.g. 1500000, 1500k, 1.5M)"))?;
    let bps = v * mult;
    if !(1e3..=1e10).contains(&bps) {
        return Err(format!("bitrate {s} is outside 1 kbit/s .. 10 Gbit/s"));
    }
    Ok(bps as u64)
}

/// `1/N` or `N` → N ≥ 1.
pub fn parse_verify(s: &str) -> Result<u64, String> {
    let n = s.trim().strip_prefix("1/").unwrap_or(s.trim());
    match n.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s:?}: expected 1/N or N with N >= 1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrates_and_verify_ratios_parse() {
        assert_eq!(parse_bitrate("1500000"), Ok(1_500_000));
        assert_eq!(parse_bitrate("1500k"), Ok(1_500_000));
        assert_eq!(parse_bitrate("1.5M"), Ok(1_500_000));
        assert!(parse_bitrate("fast").is_err());
        assert!(parse_bitrate("0").is_err());
        assert_eq!(parse_verify("1/10"), Ok(10));
        assert_eq!(parse_verify("1"), Ok(1));
        assert!(parse_verify("1/0").is_err());
    }

    #[test]
    fn flag_names_scripts_rely_on_parse() {
        let args = LoadArgs::try_parse_from([
            "shardcast-load",
            "--url",
            "ws://127.0.0.1:1",
            "--rooms",
            "2",
            "--publishers",
            "1",
            "--audio-publishers",
            "1",
            "--subscribers",
            "3",
            "--bitrate",
            "2M",
            "--simulcast",
            "--ramp",
            "5",
            "--duration",
            "3",
            "--server-pid",
            "1",
            "--json",
            "r.json",
            "--plot",
            "r.svg",
            "--max-loss",
            "0.5",
            "--max-p99-ms",
            "20",
        ])
        .expect("parses");
        assert!(args.simulcast);
        assert_eq!(args.peers_per_room(), 5);
        assert_eq!(args.bitrate, 2_000_000);
        assert!(args.validate().is_ok());
        let off = LoadArgs::try_parse_from(["shardcast-load", "--simulcast", "false"]).expect("ok");
        assert!(!off.simulcast);
    }
}
