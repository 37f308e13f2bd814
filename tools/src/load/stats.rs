//! What the load tool counts: live per-role counters that the main thread samples every second
//! (atomics, so a sample needs no round trip to the shards), and what each shard hands back at
//! the end (histograms, per-stream sent counts and per-consumer deliveries).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use hdrhistogram::Histogram;
use serde::Serialize;

/// A simulated peer's part in the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Sends VP8-like video (one layer or three simulcast layers) and consumes the others.
    VideoPublisher,
    /// Sends Opus-like audio at 50 packets/s and consumes the others.
    AudioPublisher,
    /// Consumes only.
    Subscriber,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::VideoPublisher, Role::AudioPublisher, Role::Subscriber];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::VideoPublisher => "video-publisher",
            Role::AudioPublisher => "audio-publisher",
            Role::Subscriber => "subscriber",
        }
    }
}

macro_rules! counters {
    ($(#[$doc:meta] $name:ident),* $(,)?) => {
        /// Running totals of one role on one shard.
        #[derive(Debug, Default)]
        pub struct RoleCounters { $(#[$doc] pub $name: AtomicU64,)* }

        /// A copy of [`RoleCounters`] at one instant (summable across shards).
        #[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
        pub struct RoleTotals { $(#[$doc] pub $name: u64,)* }

        impl RoleCounters {
            pub fn snapshot(&self) -> RoleTotals {
                RoleTotals { $($name: self.$name.load(Relaxed),)* }
            }
        }

        impl RoleTotals {
            pub fn add(&mut self, o: &RoleTotals) {
                $(self.$name += o.$name;)*
            }

            /// What was added since `earlier`.
            pub fn since(&self, earlier: &RoleTotals) -> RoleTotals {
                RoleTotals { $($name: self.$name.saturating_sub(earlier.$name),)* }
            }
        }
    };
}

counters! {
    /// Peers of this role scheduled on the shard.
    peers,
    /// Peers that finished the join sequence (and, publishers, produce).
    joined,
    /// Peers whose join sequence failed.
    join_failed,
    /// Media RTP packets sent (publishers; RTX counted separately).
    rtp_sent,
    /// Media RTP bytes sent before SRTP.
    bytes_sent,
    /// RTX retransmissions sent in answer to NACKs.
    rtx_sent,
    /// Key frames sent (periodic and on PLI/FIR).
    keyframes_sent,
    /// RTP packets received on known consumer SSRCs (RTX included).
    rtp_received,
    /// Bytes of those packets as received (SRTP).
    bytes_received,
    /// RTX packets received.
    rtx_received,
    /// Packets the receiver discarded on arrival to simulate loss (`--recv-loss`).
    simulated_drops,
    /// Packets from SSRCs no consumer announced (e.g. a server's BWE probation stream).
    unknown_ssrc,
    /// Sequence span of the consumer streams (RFC 3550 "expected").
    expected,
    /// Distinct sequence numbers received (originals and RTX repairs).
    received_unique,
    /// Packets received twice.
    duplicates,
    /// Gaps filled by RTX.
    repaired,
    /// Sequence numbers asked for in NACKs.
    nack_seqs_sent,
    /// NACK RTCP packets sent.
    nacks_sent,
    /// Sequence numbers the server asked for (publishers).
    nack_seqs_received,
    /// PLI/FIR sent (a gap NACKs could not repair).
    plis_sent,
    /// PLI and FIR received (publishers).
    plis_received,
    /// Receiver reports sent.
    rr_sent,
    /// Sender reports sent.
    sr_sent,
    /// transport-cc feedback packets sent.
    tcc_feedback_sent,
    /// RTCP packets received (any type).
    rtcp_received,
    /// Packets decrypted and checked (the `--verify` sample, first packets and RTX).
    verified,
    /// Checked packets whose payload was not what the publisher sent, or that failed to decrypt.
    verify_failed,
    /// Consumers created for peers of this role.
    consumers,
}

/// Live counters of one shard, one set per role.
#[derive(Debug, Default)]
pub struct LiveCounters {
    pub roles: [RoleCounters; 3],
}

impl LiveCounters {
    pub fn role(&self, role: Role) -> &RoleCounters {
        &self.roles[role.index()]
    }

    pub fn snapshot(&self) -> [RoleTotals; 3] {
        [
            self.roles[0].snapshot(),
            self.roles[1].snapshot(),
            self.roles[2].snapshot(),
        ]
    }
}

/// Adds one to a counter.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

/// Latency in microseconds, 1 µs .. 60 s, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant, valid histogram bounds")
}

/// Milliseconds, 1 ms .. 10 min.
pub fn millis_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000, 3).expect("constant, valid histogram bounds")
}

/// Records `value` into `h`, saturating at its upper bound instead of failing.
pub fn record(h: &mut Histogram<u64>, value: u64) {
    let v = value.clamp(h.low().max(1), h.high());
    let _ = h.record(v);
}

/// Per-role histograms of one shard.
#[derive(Debug, Clone)]
pub struct RoleHistograms {
    /// End-to-end latency (µs) of verified packets: publisher send → subscriber receive.
    pub latency_us: Histogram<u64>,
    /// Connect → join answered (ms).
    pub join_ms: Histogram<u64>,
    /// Connect → first media packet received (ms), for peers that consume.
    pub first_packet_ms: Histogram<u64>,
    /// RFC 3550 interarrival jitter per consumer stream at the end (µs).
    pub jitter_us: Histogram<u64>,
}

impl Default for RoleHistograms {
    fn default() -> Self {
        Self {
            latency_us: latency_histogram(),
            join_ms: millis_histogram(),
            first_packet_ms: millis_histogram(),
            jitter_us: latency_histogram(),
        }
    }
}

impl RoleHistograms {
    pub fn add(&mut self, o: &RoleHistograms) {
        let _ = self.latency_us.add(&o.latency_us);
        let _ = self.join_ms.add(&o.join_ms);
        let _ = self.first_packet_ms.add(&o.first_packet_ms);
        let _ = self.jitter_us.add(&o.jitter_us);
    }
}

/// How many packets a publisher sent on one stream (one simulcast layer, or audio).
#[derive(Debug, Clone, Serialize)]
pub struct SentStream {
    pub stream_id: u32,
    pub publisher: String,
    pub kind: &'static str,
    /// Simulcast layer (spatial index), if simulcast.
    pub layer: Option<u8>,
    pub packets: u64,
}

/// What one consumer received of one publisher's stream.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub subscriber: String,
    pub role: Role,
    pub publisher: String,
    pub kind: String,
    pub consumer_id: String,
    pub simulcast: bool,
    /// The publisher's stream of the first packet (for simulcast: the layer first received).
    pub stream_id: Option<u32>,
    /// The publisher's packet counter of the first packet received (the server starts a video
    /// consumer at a key frame, so packets before it are not expected).
    pub first_counter: Option<u64>,
    /// Distinct packets received (RTX repairs included).
    pub received: u64,
    /// Sequence span seen (RFC 3550 expected) and what was missing in it at the end.
    pub expected: u64,
    pub lost: u64,
    /// For single-stream consumers: packets the publisher sent from `first_counter` on that
    /// never arrived (`sent - first_counter - received`); filled in by the aggregation.
    pub missing_vs_sent: Option<i64>,
}

/// What one shard reports at the end of the run.
#[derive(Debug, Clone, Default)]
pub struct ShardFinal {
    pub histograms: [RoleHistograms; 3],
    pub sent: Vec<SentStream>,
    pub deliveries: Vec<Delivery>,
    pub errors: Vec<String>,
}
