//! `shardcast-load`: simulated mediasoup-demo peers on glommio shards of their own. See
//! [`config::LoadArgs`] for the options and [`run`] for the phases of a run.

pub mod config;
pub mod cpu;
pub mod payload;
pub mod peer;
pub mod plot;
pub mod publisher;
pub mod report;
pub mod shard;
pub mod stats;
pub mod subscriber;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use config::LoadArgs;
use peer::PeerPlan;
use report::{Report, RoleReport, ServerReport, TimelinePoint, ToolReport};
use shard::{Control, Phase, ShardMsg};
use stats::{latency_histogram, LiveCounters, Role, RoleHistograms, RoleTotals, ShardFinal};

/// How long the shards get to report after the run ends before the tool gives up on them.
const FINAL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long joins may lag behind the ramp before the measurement starts anyway.
const JOIN_GRACE: Duration = Duration::from_secs(60);

/// The peers of a run, in join order: per room, video publishers, audio publishers, then
/// subscribers, so subscribers find the producers when they join.
pub fn plan_peers(args: &LoadArgs, prefix: &str) -> Vec<PeerPlan> {
    let mut plans = Vec::new();
    for r in 0..args.rooms {
        let room = format!("{prefix}-{r}");
        let roles = [
            (
                Role::VideoPublisher,
                args.publishers,
                "vpub",
                args.publishers_consume,
            ),
            (
                Role::AudioPublisher,
                args.audio_publishers,
                "apub",
                args.publishers_consume,
            ),
            (Role::Subscriber, args.subscribers, "sub", true),
        ];
        for (role, count, name, consumes) in roles {
            for i in 0..count {
                let index = plans.len();
                plans.push(PeerPlan {
                    index,
                    room: room.clone(),
                    peer_id: format!("{name}{r}-{i}"),
                    role,
                    consumes,
                    start_at: Duration::from_secs_f64(index as f64 / args.ramp),
                });
            }
        }
    }
    plans
}

fn sum_snapshots(counters: &[Arc<LiveCounters>]) -> [RoleTotals; 3] {
    let mut out = [RoleTotals::default(); 3];
    for c in counters {
        for (o, s) in out.iter_mut().zip(c.snapshot()) {
            o.add(&s);
        }
    }
    out
}

fn all(t: &[RoleTotals; 3]) -> RoleTotals {
    let mut o = RoleTotals::default();
    t.iter().for_each(|r| o.add(r));
    o
}

fn diff(a: &RoleTotals, b: &RoleTotals) -> RoleTotals {
    b.since(a)
}

fn cpu_pct(delta_ns: Option<u64>, dt: Duration) -> Option<f64> {
    let dt = dt.as_secs_f64();
    delta_ns
        .filter(|_| dt > 0.0)
        .map(|ns| ns as f64 / 1e9 / dt * 100.0)
}

fn delta(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    Some(b?.saturating_sub(a?))
}

/// Runs the load: starts the shards, ramps the peers up, measures for `--duration` after the
/// warm-up, stops the publishers, lets the last packets drain, collects the shards' results.
pub fn run(args: LoadArgs) -> Result<Report, String> {
    args.validate()?;
    let _ = payload::now_ns();
    let args = Arc::new(args);
    let t0 = Instant::now();
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let prefix = args
        .room_prefix
        .clone()
        .unwrap_or_else(|| format!("load-{:06x}", rand::random::<u32>() & 0xff_ffff));
    let plans = plan_peers(&args, &prefix);
    let total = plans.len() as u64;
    let n = args.shards;
    let mut per_shard: Vec<Vec<PeerPlan>> = vec![Vec::new(); n];
    for p in plans {
        per_shard[p.index % n].push(p);
    }
    let counters: Vec<Arc<LiveCounters>> = (0..n).map(|_| Arc::default()).collect();
    let control = Arc::new(Control::default());
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    for (i, peers) in per_shard.into_iter().enumerate() {
        let core = args.cores.get(i % args.cores.len().max(1)).copied();
        let core = if args.cores.is_empty() { None } else { core };
        handles.push(shard::spawn(
            i,
            core,
            peers,
            args.clone(),
            counters[i].clone(),
            control.clone(),
            tx.clone(),
            t0,
            args.spin_us.map(Duration::from_micros),
        )?);
    }
    drop(tx);

    let server_cpu = || args.server_pid.and_then(cpu::process_cpu_ns);
    let progress = Progress::new(args.quiet, total);
    let tick = Duration::from_millis(250);
    let mut timeline = Vec::new();
    let mut interval = [
        latency_histogram(),
        latency_histogram(),
        latency_histogram(),
    ];
    let mut finals: Vec<ShardFinal> = Vec::new();
    let mut last_point = (
        t0,
        sum_snapshots(&counters),
        server_cpu(),
        cpu::own_cpu_ns(),
    );
    let join_deadline = t0 + Duration::from_secs_f64(total as f64 / args.ramp) + JOIN_GRACE;
    let mut all_joined_at: Option<Instant> = None;
    type Mark = (Instant, [RoleTotals; 3], Option<u64>, Option<u64>);
    let mut window_start: Option<Mark> = None;
    let mut window_end: Option<Mark> = None;
    let mut finish_at: Option<Instant> = None;
    loop {
        std::thread::sleep(tick);
        while let Ok(msg) = rx.try_recv() {
            match msg {
                ShardMsg::Interval { latency } => {
                    for (a, b) in interval.iter_mut().zip(latency.iter()) {
                        let _ = a.add(b);
                    }
                }
                ShardMsg::Final(f) => finals.push(*f),
            }
        }
        let now = Instant::now();
        let snap = sum_snapshots(&counters);
        let both = all(&snap);
        if all_joined_at.is_none()
            && (both.joined + both.join_failed >= total || now >= join_deadline)
        {
            all_joined_at = Some(now);
        }
        if window_start.is_none() && all_joined_at.is_some_and(|t| now >= t + args.warmup()) {
            window_start = Some((now, snap, server_cpu(), cpu::own_cpu_ns()));
        }
        if window_end.is_none()
            && window_start
                .as_ref()
                .is_some_and(|w| now >= w.0 + args.duration())
        {
            window_end = Some((now, snap, server_cpu(), cpu::own_cpu_ns()));
            control.set(Phase::StopMedia);
        }
        if finish_at.is_none()
            && window_end
                .as_ref()
                .is_some_and(|w| now >= w.0 + args.drain())
        {
            control.set(Phase::Finish);
            finish_at = Some(now);
        }
        if now.duration_since(last_point.0) >= Duration::from_secs(1) {
            let (t_prev, prev, srv_prev, own_prev) = &last_point;
            let dt = now.duration_since(*t_prev);
            let d = diff(&all(prev), &both);
            let secs = dt.as_secs_f64();
            let mut lat = latency_histogram();
            for h in &interval {
                let _ = lat.add(h);
            }
            interval = [
                latency_histogram(),
                latency_histogram(),
                latency_histogram(),
            ];
            let srv = server_cpu();
            let own = cpu::own_cpu_ns();
            let point = TimelinePoint {
                t: now.duration_since(t0).as_secs_f64(),
                peers_joined: both.joined,
                mbps_in: d.bytes_received as f64 * 8.0 / secs / 1e6,
                mbps_out: d.bytes_sent as f64 * 8.0 / secs / 1e6,
                pps_in: d.rtp_received as f64 / secs,
                pps_out: (d.rtp_sent + d.rtx_sent) as f64 / secs,
                loss_pct: if d.expected > 0 {
                    (1.0 - d.received_unique as f64 / d.expected as f64).max(0.0) * 100.0
                } else {
                    0.0
                },
                latency_p50_ms: quantile_ms(&lat, 0.5),
                latency_p99_ms: quantile_ms(&lat, 0.99),
                server_cpu_pct: cpu_pct(delta(*srv_prev, srv), dt),
                tool_cpu_pct: cpu_pct(delta(*own_prev, own), dt),
            };
            progress.update(&point, total, both.join_failed);
            timeline.push(point);
            last_point = (now, snap, srv, own);
        }
        if finish_at.is_some() && finals.len() >= n {
            break;
        }
        if finish_at.is_some_and(|t| now >= t + FINAL_TIMEOUT) {
            progress.finish();
            return Err(format!(
                "{} of {n} load shards did not report within {FINAL_TIMEOUT:?}",
                n - finals.len()
            ));
        }
    }
    progress.finish();
    for h in handles {
        let _ = h.join();
    }

    let totals = sum_snapshots(&counters);
    let (Some(start), Some(end)) = (window_start, window_end) else {
        return Err("the run ended before the measurement window".into());
    };
    let window_s = end.0.duration_since(start.0).as_secs_f64();
    let mut histograms: [RoleHistograms; 3] = Default::default();
    let mut sent = Vec::new();
    let mut deliveries = Vec::new();
    let mut errors = Vec::new();
    for f in finals {
        for (a, b) in histograms.iter_mut().zip(f.histograms.iter()) {
            a.add(b);
        }
        sent.extend(f.sent);
        deliveries.extend(f.deliveries);
        errors.extend(f.errors);
    }
    let mut roles = BTreeMap::new();
    let mut overall_h = RoleHistograms::default();
    for role in Role::ALL {
        let i = role.index();
        let w = diff(&start.1[i], &end.1[i]);
        roles.insert(
            role.name(),
            RoleReport::build(&totals[i], &w, window_s, &histograms[i]),
        );
        overall_h.add(&histograms[i]);
    }
    let window_all = diff(&all(&start.1), &all(&end.1));
    let overall = RoleReport::build(&all(&totals), &window_all, window_s, &overall_h);
    let server = args.server_pid.map(|pid| {
        let cpu_ns = delta(start.2, end.2).unwrap_or(0);
        let forwarded = window_all.rtp_received;
        ServerReport {
            pid,
            cpu_seconds: cpu_ns as f64 / 1e9,
            cpu_pct: cpu_ns as f64 / 1e9 / window_s.max(1e-9) * 100.0,
            forwarded_packets: forwarded,
            forwarded_pps: forwarded as f64 / window_s.max(1e-9),
            forwarded_mbps: window_all.bytes_received as f64 * 8.0 / window_s.max(1e-9) / 1e6,
            cpu_us_per_forwarded_packet: (forwarded > 0 && cpu_ns > 0)
                .then(|| cpu_ns as f64 / 1e3 / forwarded as f64),
        }
    });
    let own_ns = delta(start.3, end.3).unwrap_or(0);
    let tool_pct = own_ns as f64 / 1e9 / window_s.max(1e-9) * 100.0;
    let load_tool = ToolReport {
        shards: n,
        cores: args.cores.clone(),
        cpu_seconds: own_ns as f64 / 1e9,
        cpu_pct: tool_pct,
        // Each shard is one thread; 85% of them all busy means queues are building up.
        // (Not with --spin-us: spinning shards are always busy.)
        saturated: args.spin_us.is_none() && tool_pct >= 85.0 * n as f64,
    };
    let delivery = report::check_deliveries(&mut deliveries, &sent);
    let thresholds = report::thresholds(&args, &overall, &overall);
    Ok(Report {
        tool: "shardcast-load",
        version: env!("CARGO_PKG_VERSION"),
        started_at,
        config: report::ConfigSummary::of(&args),
        window_s,
        roles,
        overall,
        server,
        load_tool,
        delivery,
        thresholds,
        timeline,
        sent_streams: sent,
        deliveries,
        errors,
    })
}

fn quantile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

/// The live progress line: an indicatif spinner on a terminal, a plain line per second
/// otherwise (CI logs), nothing with `--quiet`.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
}

impl Progress {
    fn new(quiet: bool, total: u64) -> Self {
        if quiet {
            return Self {
                bar: None,
                plain: false,
            };
        }
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new_spinner();
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
            {
                bar.set_style(style);
            }
            bar.set_message(format!("joining 0/{total}"));
            bar.enable_steady_tick(Duration::from_millis(200));
            Self {
                bar: Some(bar),
                plain: false,
            }
        } else {
            Self {
                bar: None,
                plain: true,
            }
        }
    }

    fn update(&self, p: &TimelinePoint, total: u64, failed: u64) {
        let cpu = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}%"));
        let msg = format!(
            "peers {}/{total}{} | in {:.1} Mb/s {:.0} pkt/s | out {:.1} Mb/s | loss {:.2}% | p50 {:.2} ms p99 {:.2} ms | server CPU {} | tool CPU {}",
            p.peers_joined,
            if failed > 0 { format!(" ({failed} failed)") } else { String::new() },
            p.mbps_in,
            p.pps_in,
            p.mbps_out,
            p.loss_pct,
            p.latency_p50_ms,
            p.latency_p99_ms,
            cpu(p.server_cpu_pct),
            cpu(p.tool_cpu_pct),
        );
        if let Some(bar) = &self.bar {
            bar.set_message(msg);
        } else if self.plain {
            eprintln!("[{:>5.1}s] {msg}", p.t);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
