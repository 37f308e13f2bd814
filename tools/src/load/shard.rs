//! The load tool's own shards: one glommio executor per thread, each running its share of the
//! simulated peers, reporting live counters through atomics and latency samples and final
//! results through a channel to the main thread.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::Placement;
use hdrhistogram::Histogram;

use super::config::LoadArgs;
use super::peer::{run_peer, PeerPlan};
use super::stats::{latency_histogram, LiveCounters, RoleHistograms, ShardFinal};
use super::subscriber::ShardSinks;

/// Errors kept per shard (the rest are counted).
const MAX_ERRORS: usize = 50;

/// Where the run is; set by the main thread, read by every peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    Run = 0,
    /// Publishers stop sending; NACKs are still answered while the last packets drain.
    StopMedia = 1,
    /// Peers report and leave.
    Finish = 2,
}

/// The run's phase, shared by the main thread and the shards.
#[derive(Debug, Default)]
pub struct Control(AtomicU8);

impl Control {
    pub fn set(&self, phase: Phase) {
        self.0.store(phase as u8, Ordering::Release);
    }
    pub fn get(&self) -> Phase {
        match self.0.load(Ordering::Acquire) {
            0 => Phase::Run,
            1 => Phase::StopMedia,
            _ => Phase::Finish,
        }
    }
}

/// What a shard sends the main thread.
pub enum ShardMsg {
    /// Latency samples of the last second, per role.
    Interval {
        latency: Box<[Histogram<u64>; 3]>,
    },
    Final(Box<ShardFinal>),
}

/// Everything a shard's peers share.
pub struct ShardCtx {
    pub args: Arc<LoadArgs>,
    pub t0: Instant,
    pub control: Arc<Control>,
    pub sinks: Rc<ShardSinks>,
    pub histograms: RefCell<[RoleHistograms; 3]>,
    pub final_: RefCell<ShardFinal>,
    dropped_errors: RefCell<usize>,
}

impl ShardCtx {
    pub fn phase(&self) -> Phase {
        self.control.get()
    }

    pub fn error(&self, e: String) {
        log::warn!("{e}");
        let mut f = self.final_.borrow_mut();
        if f.errors.len() < MAX_ERRORS {
            f.errors.push(e);
        } else {
            *self.dropped_errors.borrow_mut() += 1;
        }
    }
}

fn new_interval() -> [Histogram<u64>; 3] {
    [
        latency_histogram(),
        latency_histogram(),
        latency_histogram(),
    ]
}

/// Starts shard `index` on its own thread with `peers`.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    index: usize,
    core: Option<usize>,
    peers: Vec<PeerPlan>,
    args: Arc<LoadArgs>,
    counters: Arc<LiveCounters>,
    control: Arc<Control>,
    tx: Sender<ShardMsg>,
    t0: Instant,
    spin: Option<Duration>,
) -> Result<glommio::ExecutorJoinHandle<()>, String> {
    let placement = core.map_or(Placement::Unbound, Placement::Fixed);
    let mut builder = shards::runtime::executor_builder(&format!("load-{index}"), placement);
    if let Some(spin) = spin {
        builder = builder.spin_before_park(spin);
    }
    builder
        .spawn(move || async move {
            let recv_loss = args.recv_loss / 100.0;
            let ctx = Rc::new(ShardCtx {
                args,
                t0,
                control: control.clone(),
                sinks: Rc::new(ShardSinks {
                    counters,
                    control,
                    recv_loss,
                    interval_latency: RefCell::new(new_interval()),
                }),
                histograms: RefCell::default(),
                final_: RefCell::default(),
                dropped_errors: RefCell::new(0),
            });
            for p in &peers {
                ctx.sinks
                    .counters
                    .role(p.role)
                    .peers
                    .fetch_add(1, Ordering::Relaxed);
            }
            let tasks: Vec<_> = peers
                .into_iter()
                .map(|p| glommio::spawn_local(run_peer(p, ctx.clone())))
                .collect();
            let ticker = {
                let ctx = ctx.clone();
                let tx = tx.clone();
                glommio::spawn_local(async move {
                    while ctx.phase() < Phase::Finish {
                        glommio::timer::sleep(Duration::from_millis(250)).await;
                        let latency = ctx.sinks.interval_latency.replace(new_interval());
                        let _ = tx.send(ShardMsg::Interval {
                            latency: Box::new(latency),
                        });
                    }
                })
            };
            for t in tasks {
                t.await;
            }
            ticker.await;
            let mut fin = ctx.final_.take();
            fin.histograms = ctx.histograms.take();
            let dropped = *ctx.dropped_errors.borrow();
            if dropped > 0 {
                fin.errors.push(format!("... and {dropped} more errors"));
            }
            let _ = tx.send(ShardMsg::Final(Box::new(fin)));
        })
        .map_err(|e| format!("cannot start load shard {index}: {e}"))
}
