//! The end-of-run report: per role and overall, as a table, as JSON and against thresholds.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::config::LoadArgs;
use super::stats::{Delivery, Role, RoleHistograms, RoleTotals, SentStream};

/// Percentiles of a histogram, in the unit named by the field holding it.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub samples: u64,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// From a histogram, dividing values by `scale` (e.g. 1000 for µs → ms).
    pub fn of(h: &Histogram<u64>, scale: f64) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            samples: h.len(),
            mean: h.mean() / scale,
            p50: h.value_at_quantile(0.50) as f64 / scale,
            p95: h.value_at_quantile(0.95) as f64 / scale,
            p99: h.value_at_quantile(0.99) as f64 / scale,
            max: h.max() as f64 / scale,
        }
    }
}

/// One role's (or all roles') results.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RoleReport {
    pub peers: u64,
    pub joined: u64,
    pub join_failed: u64,
    pub consumers: u64,
    pub join_ms: Percentiles,
    pub first_packet_ms: Percentiles,
    /// Rates over the measurement window.
    pub packets_sent_per_s: f64,
    pub packets_received_per_s: f64,
    pub mbps_sent: f64,
    pub mbps_received: f64,
    pub packets_sent: u64,
    pub packets_received: u64,
    /// Loss after repairs over the whole run (expected vs distinct received), percent.
    pub loss_pct: f64,
    pub lost: u64,
    pub expected: u64,
    pub nacks_sent: u64,
    pub nack_seqs_sent: u64,
    pub nack_seqs_received: u64,
    pub rtx_sent: u64,
    pub rtx_received: u64,
    pub plis_sent: u64,
    pub plis_received: u64,
    pub keyframes_sent: u64,
    /// Gaps repaired by RTX.
    pub repaired: u64,
    pub jitter_ms: Percentiles,
    pub latency_ms: Percentiles,
    pub verified: u64,
    pub verify_failed: u64,
    pub totals: RoleTotals,
}

impl RoleReport {
    pub fn build(
        totals: &RoleTotals,
        window: &RoleTotals,
        window_s: f64,
        h: &RoleHistograms,
    ) -> Self {
        let per_s = |v: u64| {
            if window_s > 0.0 {
                v as f64 / window_s
            } else {
                0.0
            }
        };
        let lost = totals.expected.saturating_sub(totals.received_unique);
        Self {
            peers: totals.peers,
            joined: totals.joined,
            join_failed: totals.join_failed,
            consumers: totals.consumers,
            join_ms: Percentiles::of(&h.join_ms, 1.0),
            first_packet_ms: Percentiles::of(&h.first_packet_ms, 1.0),
            packets_sent_per_s: per_s(window.rtp_sent + window.rtx_sent),
            packets_received_per_s: per_s(window.rtp_received),
            mbps_sent: per_s(window.bytes_sent) * 8.0 / 1e6,
            mbps_received: per_s(window.bytes_received) * 8.0 / 1e6,
            packets_sent: totals.rtp_sent + totals.rtx_sent,
            packets_received: totals.rtp_received,
            loss_pct: if totals.expected > 0 {
                lost as f64 * 100.0 / totals.expected as f64
            } else {
                0.0
            },
            lost,
            expected: totals.expected,
            nacks_sent: totals.nacks_sent,
            nack_seqs_sent: totals.nack_seqs_sent,
            nack_seqs_received: totals.nack_seqs_received,
            rtx_sent: totals.rtx_sent,
            rtx_received: totals.rtx_received,
            plis_sent: totals.plis_sent,
            plis_received: totals.plis_received,
            keyframes_sent: totals.keyframes_sent,
            repaired: totals.repaired,
            jitter_ms: Percentiles::of(&h.jitter_us, 1000.0),
            latency_ms: Percentiles::of(&h.latency_us, 1000.0),
            verified: totals.verified,
            verify_failed: totals.verify_failed,
            totals: *totals,
        }
    }
}

/// One point of the timeline (one second).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TimelinePoint {
    /// Seconds since the start of the run.
    pub t: f64,
    pub peers_joined: u64,
    pub mbps_in: f64,
    pub mbps_out: f64,
    pub pps_in: f64,
    pub pps_out: f64,
    pub loss_pct: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub server_cpu_pct: Option<f64>,
    pub tool_cpu_pct: Option<f64>,
}

/// The server's side, when `--server-pid` was given.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerReport {
    pub pid: u32,
    pub cpu_seconds: f64,
    /// Percent of one core over the measurement window.
    pub cpu_pct: f64,
    /// RTP packets the subscribers received in the window (what the server forwarded).
    pub forwarded_packets: u64,
    pub forwarded_pps: f64,
    pub forwarded_mbps: f64,
    pub cpu_us_per_forwarded_packet: Option<f64>,
}

/// The load tool's own CPU (it shares the machine; when it is the bottleneck, this says so).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ToolReport {
    pub shards: usize,
    pub cores: Vec<usize>,
    pub cpu_seconds: f64,
    pub cpu_pct: f64,
    /// The tool used (nearly) all the cores its shards had: what it measured may be its own
    /// limit rather than the server's.
    pub saturated: bool,
}

/// The delivery check: every consumer of a single-stream producer got every packet the
/// publisher sent from the consumer's first packet on.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeliveryCheck {
    pub consumers_checked: u64,
    pub consumers_incomplete: u64,
    pub missing_packets: u64,
    /// Consumers that received nothing at all.
    pub consumers_without_media: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Thresholds {
    pub max_loss_pct: Option<f64>,
    pub max_p99_ms: Option<f64>,
    pub max_join_failures: u64,
    pub passed: bool,
    pub failures: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfigSummary {
    pub url: String,
    pub rooms: usize,
    pub publishers: usize,
    pub audio_publishers: usize,
    pub subscribers: usize,
    pub publishers_consume: bool,
    pub bitrate: u64,
    pub fps: u32,
    pub packet_size: usize,
    pub audio_packet_size: usize,
    pub simulcast: bool,
    pub ramp: f64,
    pub duration: f64,
    pub warmup: f64,
    pub verify: u64,
    pub recv_loss_pct: f64,
    pub poll_us: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    /// Unix seconds at the start.
    pub started_at: u64,
    pub config: ConfigSummary,
    /// Seconds of the measurement window (rates and server CPU are over it).
    pub window_s: f64,
    pub roles: BTreeMap<&'static str, RoleReport>,
    pub overall: RoleReport,
    pub server: Option<ServerReport>,
    pub load_tool: ToolReport,
    pub delivery: DeliveryCheck,
    pub thresholds: Thresholds,
    pub timeline: Vec<TimelinePoint>,
    pub sent_streams: Vec<SentStream>,
    pub deliveries: Vec<Delivery>,
    pub errors: Vec<String>,
}

impl ConfigSummary {
    pub fn of(a: &LoadArgs) -> Self {
        Self {
            url: a.url.clone(),
            rooms: a.rooms,
            publishers: a.publishers,
            audio_publishers: a.audio_publishers,
            subscribers: a.subscribers,
            publishers_consume: a.publishers_consume,
            bitrate: a.bitrate,
            fps: a.fps,
            packet_size: a.packet_size,
            audio_packet_size: a.audio_packet_size,
            simulcast: a.simulcast,
            ramp: a.ramp,
            duration: a.duration,
            warmup: a.warmup,
            verify: a.verify,
            recv_loss_pct: a.recv_loss,
            poll_us: a.poll_us,
        }
    }
}

/// Fills `missing_vs_sent` for single-stream consumers and sums the check.
pub fn check_deliveries(deliveries: &mut [Delivery], sent: &[SentStream]) -> DeliveryCheck {
    let by_id: HashMap<u32, u64> = sent.iter().map(|s| (s.stream_id, s.packets)).collect();
    let mut check = DeliveryCheck::default();
    for d in deliveries.iter_mut() {
        if d.received == 0 {
            check.consumers_without_media += 1;
            continue;
        }
        if d.simulcast {
            continue;
        }
        let (Some(id), Some(first)) = (d.stream_id, d.first_counter) else {
            continue;
        };
        let Some(&packets) = by_id.get(&id) else {
            continue;
        };
        let missing = packets as i64 - first as i64 - d.received as i64;
        d.missing_vs_sent = Some(missing);
        check.consumers_checked += 1;
        if missing != 0 {
            check.consumers_incomplete += 1;
            check.missing_packets += missing.unsigned_abs();
        }
    }
    check
}

/// Applies the thresholds.
pub fn thresholds(args: &LoadArgs, overall: &RoleReport, consuming: &RoleReport) -> Thresholds {
    let mut failures = Vec::new();
    if let Some(max) = args.max_loss {
        if consuming.loss_pct > max {
            failures.push(format!(
                "loss {:.3}% > --max-loss {max}%",
                consuming.loss_pct
            ));
        }
    }
    if let Some(max) = args.max_p99_ms {
        if consuming.latency_ms.samples == 0 {
            failures.push("no latency samples: nothing was received".to_owned());
        } else if consuming.latency_ms.p99 > max {
            failures.push(format!(
                "p99 latency {:.3} ms > --max-p99-ms {max}",
                consuming.latency_ms.p99
            ));
        }
    }
    if overall.join_failed > args.max_join_failures {
        failures.push(format!(
            "{} peers failed to join (> --max-join-failures {})",
            overall.join_failed, args.max_join_failures
        ));
    }
    Thresholds {
        max_loss_pct: args.max_loss,
        max_p99_ms: args.max_p99_ms,
        max_join_failures: args.max_join_failures,
        passed: failures.is_empty(),
        failures,
    }
}

/// The human-readable table.
pub fn table(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<16} {:>5} {:>6} {:>7} {:>9} {:>8} {:>9} {:>8} {:>7} {:>6} {:>5} {:>7} {:>27}",
        "role",
        "peers",
        "join50",
        "1stpkt50",
        "pkt/s out",
        "Mb/s out",
        "pkt/s in",
        "Mb/s in",
        "loss%",
        "NACKs",
        "PLIs",
        "jitter",
        "latency ms p50/p95/p99/max"
    );
    let mut row = |name: &str, x: &RoleReport| {
        let _ = writeln!(
            s,
            "{:<16} {:>5} {:>6.0} {:>8.0} {:>9.0} {:>8.2} {:>9.0} {:>8.2} {:>7.3} {:>6} {:>5} {:>7.2} {:>27}",
            name,
            x.peers,
            x.join_ms.p50,
            x.first_packet_ms.p50,
            x.packets_sent_per_s,
            x.mbps_sent,
            x.packets_received_per_s,
            x.mbps_received,
            x.loss_pct,
            x.nack_seqs_sent,
            x.plis_sent + x.plis_received,
            x.jitter_ms.p50,
            format!(
                "{:.2}/{:.2}/{:.2}/{:.2}",
                x.latency_ms.p50, x.latency_ms.p95, x.latency_ms.p99, x.latency_ms.max
            ),
        );
    };
    for role in Role::ALL {
        if let Some(x) = r.roles.get(role.name()) {
            if x.peers > 0 {
                row(role.name(), x);
            }
        }
    }
    row("overall", &r.overall);
    let _ = writeln!(
        s,
        "window {:.1} s; verified {} packets, {} failed; delivery: {} consumers checked, {} incomplete ({} packets missing), {} without media",
        r.window_s,
        r.overall.verified,
        r.overall.verify_failed,
        r.delivery.consumers_checked,
        r.delivery.consumers_incomplete,
        r.delivery.missing_packets,
        r.delivery.consumers_without_media
    );
    if let Some(srv) = &r.server {
        let _ = writeln!(
            s,
            "server pid {}: CPU {:.1}% of a core, forwarded {:.0} packets/s ({:.1} Mbit/s), {} µs CPU per forwarded packet",
            srv.pid,
            srv.cpu_pct,
            srv.forwarded_pps,
            srv.forwarded_mbps,
            srv.cpu_us_per_forwarded_packet
                .map_or("n/a".to_owned(), |v| format!("{v:.3}"))
        );
    }
    let _ = writeln!(
        s,
        "load tool: {} shard(s), CPU {:.1}% of a core{}",
        r.load_tool.shards,
        r.load_tool.cpu_pct,
        if r.load_tool.saturated {
            " -- SATURATED: the tool, not the server, may be the limit of this run"
        } else {
            ""
        }
    );
    if r.thresholds.passed {
        let _ = writeln!(s, "thresholds: passed");
    } else {
        for f in &r.thresholds.failures {
            let _ = writeln!(s, "threshold FAILED: {f}");
        }
    }
    if !r.errors.is_empty() {
        let _ = writeln!(s, "{} error(s), first: {}", r.errors.len(), r.errors[0]);
    }
    s
}
