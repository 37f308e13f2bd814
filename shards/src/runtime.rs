//! The I/O shell of a media shard: a glommio executor pinned to one core that owns the shard's UDP
//! socket and ICE-TCP listener, and serves commands from the signalling shard over a shared
//! channel. Nothing here is shared with other shards.
//!
//! The UDP path batches both ways. Ingress: after a datagram wakes the receive loop, up to
//! [`RECV_BATCH`] more that are already queued are drained with one non-blocking `recvmmsg` and
//! handled before anything is sent, so the packets of a frame meet in one flush. Egress: a flush
//! groups its UDP transmits by remote address (keeping each address's order) and sends each
//! run of equal-sized datagrams as one UDP GSO burst (`UDP_SEGMENT`, see [`crate::gso`]); single
//! datagrams, and bursts the kernel refuses, go through glommio's `send_to` one by one.
//! `SHARDCAST_GSO=0` turns GSO off (read once at shard start).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

use std::collections::HashMap;
use std::time::Instant;

use futures::channel::mpsc;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures::StreamExt;
use glommio::channels::shared_channel::{self, SharedReceiver, SharedSender};
use glommio::net::{TcpListener, TcpStream, UdpSocket};
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use crate::command::{ShardEvent, ShardMessage, ShardRequest};
use crate::gso::{self, GsoOutcome, GsoSender, RecvBatch};
use crate::shard::Shard;
use crate::transport::dtls_certificate::DtlsCertificate;
use crate::transport::ice_server::Protocol;
use crate::transport::webrtc_transport::{ListenInfo, Transmit};

/// glommio's locked io memory per executor: small enough that many shards fit the default 8 MiB
/// `ulimit -l`.
pub const IO_MEMORY: usize = 512 << 10;
/// Receive (and send) buffer asked for on each shard's UDP socket (capped by
/// `net.core.rmem_max` / `wmem_max`).
pub const UDP_RECV_BUFFER: usize = 8 << 20;
/// Ring depth per executor (≤ 1024 keeps the rings inside the memlock budget too).
pub const RING_DEPTH: usize = 256;
/// Capacity of each shard's command and message channels.
const CHANNEL_CAPACITY: usize = 1024;
/// Largest datagram we read (WebRTC keeps well under the 1500-byte MTU).
const MAX_DATAGRAM: usize = 2048;
/// How often the shard looks for due timers (consent, DTLS retransmissions, RTCP).
const TIMER_TICK: Duration = Duration::from_millis(20);
/// Datagrams drained without waiting after the one that woke the receive loop.
pub const RECV_BATCH: usize = 32;
/// The environment variable that turns UDP GSO egress off when `0` (or `false`, `off`, `no`).
pub const GSO_ENV: &str = "SHARDCAST_GSO";

/// Whether [`GSO_ENV`] allows GSO (it does unless set to `0`, `false`, `off` or `no`).
fn gso_wanted() -> bool {
    match std::env::var(GSO_ENV) {
        Ok(value) => !matches!(
            value.trim().to_ascii_lowercase().as_str(),
            "0" | "false" | "off" | "no"
        ),
        Err(_) => true,
    }
}

/// How to start one media shard.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    pub index: usize,
    /// CPU to pin the executor to; `None` leaves it unbound.
    pub cpu: Option<usize>,
    pub listen: ListenInfo,
}

/// The signalling side's ends of a shard's channels.
pub struct ShardLink {
    pub index: usize,
    pub udp_port: u16,
    pub requests: SharedSender<ShardRequest>,
    pub messages: SharedReceiver<ShardMessage>,
}

#[derive(Debug, thiserror::Error)]
pub enum ShardStartError {
    #[error("shard {index}: cannot create its DTLS certificate: {reason}")]
    Certificate { index: usize, reason: String },
    #[error("shard {index}: cannot start its executor: {reason}")]
    Executor { index: usize, reason: String },
    #[error("shard {index}: cannot bind {addr}: {reason}")]
    Bind {
        index: usize,
        addr: SocketAddr,
        reason: String,
    },
}

/// Builds an executor with the project's memory limits.
pub fn executor_builder(name: &str, placement: Placement) -> LocalExecutorBuilder {
    LocalExecutorBuilder::new(placement)
        .name(name)
        .io_memory(IO_MEMORY)
        .ring_depth(RING_DEPTH)
        .preempt_timer(Duration::from_millis(10))
}

/// Runs `fut` while a timer keeps the executor from parking. glommio's shared-channel `connect`
/// waits for the other executor without any cross-thread notification (nothing wakes a parked
/// executor when its peer connects), so without this a start-up could hang for good.
pub async fn keep_awake<F: std::future::Future>(fut: F) -> F::Output {
    let ticker = async {
        loop {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    };
    futures::pin_mut!(fut);
    futures::pin_mut!(ticker);
    match futures::future::select(fut, ticker).await {
        futures::future::Either::Left((output, _)) => output,
        futures::future::Either::Right((never, _)) => never,
    }
}

/// Starts a media shard on its own thread and waits until its sockets are bound.
pub fn spawn_media_shard(
    config: ShardConfig,
) -> Result<(ShardLink, ExecutorJoinHandle<()>), ShardStartError> {
    let index = config.index;
    let certificate = DtlsCertificate::generate().map_err(|e| ShardStartError::Certificate {
        index,
        reason: e.to_string(),
    })?;
    let (request_tx, request_rx) = shared_channel::new_bounded::<ShardRequest>(CHANNEL_CAPACITY);
    let (message_tx, message_rx) = shared_channel::new_bounded::<ShardMessage>(CHANNEL_CAPACITY);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<u16, ShardStartError>>();
    let placement = match config.cpu {
        Some(cpu) => Placement::Fixed(cpu),
        None => Placement::Unbound,
    };
    let handle = executor_builder(&format!("media-shard-{index}"), placement)
        .spawn(move || async move {
            run_shard(config, certificate, request_rx, message_tx, ready_tx).await;
        })
        .map_err(|e| ShardStartError::Executor {
            index,
            reason: e.to_string(),
        })?;
    let udp_port = ready_rx.recv().map_err(|_| ShardStartError::Executor {
        index,
        reason: "the executor ended before binding its sockets".into(),
    })??;
    Ok((
        ShardLink {
            index,
            udp_port,
            requests: request_tx,
            messages: message_rx,
        },
        handle,
    ))
}

async fn run_shard(
    config: ShardConfig,
    certificate: DtlsCertificate,
    requests: SharedReceiver<ShardRequest>,
    messages: SharedSender<ShardMessage>,
    ready: std::sync::mpsc::Sender<Result<u16, ShardStartError>>,
) {
    let index = config.index;
    let addr = config.listen.local;
    let bind_error = |e: &dyn std::fmt::Display| ShardStartError::Bind {
        index,
        addr,
        reason: e.to_string(),
    };
    // glommio binds with SO_REUSEPORT, which would silently share a port another process holds:
    // check first with plain sockets, which fail on a port in use.
    if let Err(e) = std::net::UdpSocket::bind(addr).and_then(|_| std::net::TcpListener::bind(addr))
    {
        let _ = ready.send(Err(bind_error(&e)));
        return;
    }
    let udp = match crate::udp_bind::bind_udp(addr) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(bind_error(&e)));
            return;
        }
    };
    // Bound by std (SO_REUSEADDR, no SO_REUSEPORT) and handed to glommio, so a restart is not
    // refused while the last run's ICE-TCP connections sit in TIME_WAIT.
    let tcp = match std::net::TcpListener::bind(addr) {
        Ok(l) => {
            use std::os::fd::{FromRawFd, IntoRawFd};
            // SAFETY: the fd is a bound, listening TCP socket we own; glommio takes it.
            unsafe { TcpListener::from_raw_fd(l.into_raw_fd()) }
        }
        Err(e) => {
            let _ = ready.send(Err(bind_error(&e)));
            return;
        }
    };
    // A key frame from a high-rate publisher arrives as a burst of hundreds of datagrams while
    // the shard is busy fanning out the previous one; the default 208 KiB queue drops part of
    // it (measured: 9% upstream loss, all NACKed and repaired, for a 20 Mbit/s publisher and 50
    // consumers). The kernel caps this at net.core.rmem_max.
    match gso::set_recv_buffer(udp.as_raw_fd(), UDP_RECV_BUFFER) {
        Ok(actual) => log::info!("media shard {index}: udp receive buffer {actual} bytes"),
        Err(e) => log::warn!("media shard {index}: cannot set the udp receive buffer: {e}"),
    }
    // Sends never wait (a full buffer drops the datagram), so the buffer absorbs a fan-out burst.
    match gso::set_send_buffer(udp.as_raw_fd(), UDP_RECV_BUFFER) {
        Ok(actual) => log::info!("media shard {index}: udp send buffer {actual} bytes"),
        Err(e) => log::warn!("media shard {index}: cannot set the udp send buffer: {e}"),
    }
    let port = udp.local_addr().map(|a| a.port()).unwrap_or(addr.port());
    let mut listen = config.listen.clone();
    listen.local.set_port(port);
    // Ready before connecting the channels: connecting waits for the signalling side's end.
    let _ = ready.send(Ok(port));
    let requests = keep_awake(requests.connect()).await;
    let messages = keep_awake(messages.connect()).await;
    log::info!("media shard {index} listening on udp/tcp {addr}");
    let (gso_enabled, egress) = match (gso_wanted(), gso::gso_supported(udp.as_raw_fd())) {
        (true, true) => (true, "in UDP GSO bursts (UDP_SEGMENT)"),
        (false, _) => (false, "one send per datagram (SHARDCAST_GSO=0)"),
        (true, false) => (
            false,
            "one send per datagram (the kernel lacks UDP_SEGMENT)",
        ),
    };
    log::info!(
        "media shard {index}: udp egress {egress}; ingress drains up to {RECV_BATCH} queued datagrams per wake-up"
    );

    // Responses and events leave through one local queue, so their order is kept and the packet
    // path never waits on the cross-thread channel.
    let (out_tx, mut out_rx) = mpsc::unbounded::<ShardMessage>();
    glommio::spawn_local(async move {
        while let Some(message) = out_rx.next().await {
            if messages.send(message).await.is_err() {
                break;
            }
        }
    })
    .detach();

    let io = Rc::new(ShardIo {
        shard: RefCell::new(Shard::new(index, listen, certificate)),
        udp,
        tcp_writers: RefCell::new(HashMap::new()),
        out: out_tx,
        gso: RefCell::new(GsoSender::new(gso_enabled)),
        flushes: RefCell::new(vec![Flush::default()]),
    });
    glommio::spawn_local(udp_loop(io.clone())).detach();
    glommio::spawn_local(tcp_accept_loop(io.clone(), tcp)).detach();
    glommio::spawn_local(timer_loop(io.clone())).detach();

    while let Some(request) = requests.recv().await {
        let result = io
            .shard
            .borrow_mut()
            .handle(request.command, Instant::now());
        let _ = io.out.unbounded_send(ShardMessage::Response {
            id: request.id,
            result,
        });
        io.after_work().await;
    }
    let stats = io.gso.borrow().stats;
    log::info!(
        "media shard {index} stopping: its command channel closed (udp gso: {} bursts, {} datagrams, {} fallbacks)",
        stats.bursts,
        stats.segments,
        stats.fallbacks
    );
}

/// The shard with its sockets: what every task of the shard shares (single-threaded).
struct ShardIo {
    shard: RefCell<Shard>,
    udp: UdpSocket,
    /// Writers of the open ICE-TCP connections, by remote address.
    tcp_writers: RefCell<HashMap<SocketAddr, mpsc::UnboundedSender<Vec<u8>>>>,
    out: mpsc::UnboundedSender<ShardMessage>,
    /// UDP GSO egress (its scratch, policy and counters).
    gso: RefCell<GsoSender>,
    /// Scratch of the flushes in progress, reused: one per flush running at once (a flush that
    /// falls back to glommio's sends may await while another task flushes).
    flushes: RefCell<Vec<Flush>>,
}

/// One flush's scratch: kept between flushes, so a warm flush allocates nothing.
#[derive(Default)]
struct Flush {
    /// The UDP transmits being sent.
    udp: Vec<Transmit>,
    /// `(remote, index in udp)`, sorted: each remote's datagrams together, in their order.
    order: Vec<(SocketAddr, u32)>,
}

/// Handles one received datagram.
fn handle_datagram(shard: &mut Shard, from: SocketAddr, data: &mut [u8]) {
    shard.counters.udp_datagrams_received += 1;
    shard.counters.udp_bytes_received += data.len() as u64;
    shard.handle_packet(Protocol::Udp, from, data, Instant::now());
}

impl ShardIo {
    /// Relays events and sends what the shard queued.
    async fn after_work(&self) {
        let events: Vec<ShardEvent> = self.shard.borrow_mut().drain_events().collect();
        for event in events {
            let _ = self.out.unbounded_send(ShardMessage::Event(event));
        }
        let mut flush = self.flushes.borrow_mut().pop().unwrap_or_default();
        loop {
            {
                let mut shard = self.shard.borrow_mut();
                while let Some(transmit) = shard.poll_transmit() {
                    match transmit.tuple.protocol {
                        Protocol::Udp => flush.udp.push(transmit),
                        Protocol::Tcp => {
                            match self.tcp_writers.borrow().get(&transmit.tuple.remote) {
                                Some(writer) => {
                                    let _ = writer.unbounded_send(transmit.data);
                                }
                                None => shard.recycle(transmit.data),
                            }
                        }
                    }
                }
            }
            if flush.udp.is_empty() {
                break;
            }
            self.send_udp(&mut flush).await;
            let mut shard = self.shard.borrow_mut();
            let gso = self.gso.borrow().stats;
            let c = &mut shard.counters;
            c.udp_datagrams_sent += flush.udp.len() as u64;
            c.udp_flushes += 1;
            c.udp_gso_bursts = gso.bursts;
            c.udp_gso_segments = gso.segments;
            for transmit in flush.udp.drain(..) {
                shard.recycle(transmit.data);
            }
        }
        self.flushes.borrow_mut().push(flush);
    }

    /// Sends a flush's UDP transmits: with GSO on, each remote's runs of equal-sized datagrams
    /// in one burst; everything else one by one through glommio.
    async fn send_udp(&self, flush: &mut Flush) {
        if flush.udp.len() < 2 || !self.gso.borrow().enabled() {
            for transmit in &flush.udp {
                self.send_one(transmit);
            }
            return;
        }
        // Transmits arrive consumer after consumer for each incoming packet; grouping them by
        // remote turns a frame's packets for one consumer into one burst. Order is kept per
        // remote (the sort key ends with the queue index); different remotes may swap.
        flush.order.clear();
        flush.order.extend(
            flush
                .udp
                .iter()
                .enumerate()
                .map(|(i, t)| (t.tuple.remote, i as u32)),
        );
        flush.order.sort_unstable();
        let Flush { udp, order } = flush;
        let fd = self.udp.as_raw_fd();
        let mut start = 0;
        while start < order.len() {
            let remote = order[start].0;
            let n = gso::burst_len(
                order[start..]
                    .iter()
                    .take_while(|(r, _)| *r == remote)
                    .map(|&(_, i)| udp[i as usize].data.len()),
            )
            .max(1);
            let group = &order[start..start + n];
            start += n;
            if n > 1 {
                let segments = group.iter().map(|&(_, i)| udp[i as usize].data.as_slice());
                if self.gso.borrow_mut().send(fd, &remote, segments) == GsoOutcome::Sent {
                    continue;
                }
            }
            for &(_, i) in group {
                self.send_one(&udp[i as usize]);
            }
        }
    }

    /// One datagram, without waiting: when the kernel refuses it (a full device queue or send
    /// buffer, an unreachable destination) it is dropped and counted. Waiting instead would hold
    /// the whole shard, its receive loop included, on one destination.
    fn send_one(&self, transmit: &Transmit) {
        if let Err(e) =
            gso::send_datagram(self.udp.as_raw_fd(), &transmit.data, &transmit.tuple.remote)
        {
            let mut shard = self.shard.borrow_mut();
            shard.counters.udp_send_errors += 1;
            log::debug!("udp send to {} failed: {e}", transmit.tuple.remote);
        }
    }
}

/// Receives every datagram of the shard's UDP socket: waits for one with glommio, drains what
/// else is already queued with one non-blocking `recvmmsg`, handles them all, then flushes. The
/// buffers are reused.
async fn udp_loop(io: Rc<ShardIo>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut batch = RecvBatch::new(RECV_BATCH, MAX_DATAGRAM);
    let fd = io.udp.as_raw_fd();
    loop {
        match io.udp.recv_from(&mut buf).await {
            Ok((len, from)) => {
                {
                    let mut shard = io.shard.borrow_mut();
                    shard.counters.udp_recv_wakeups += 1;
                    handle_datagram(&mut shard, from, &mut buf[..len]);
                    // What else is queued already (arrived meanwhile), without waiting: handled
                    // before the flush, so a frame's packets leave per consumer in bursts.
                    match batch.recv(fd) {
                        Ok(n) => {
                            for i in 0..n {
                                if let Some((data, from)) = batch.get_mut(i) {
                                    handle_datagram(&mut shard, from, data);
                                }
                            }
                        }
                        Err(e) => log::debug!("udp batch receive error: {e}"),
                    }
                }
                io.after_work().await;
            }
            Err(e) => {
                log::warn!("udp receive error: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Fires the transports' timers (consent, DTLS retransmissions, RTCP).
async fn timer_loop(io: Rc<ShardIo>) {
    loop {
        glommio::timer::sleep(TIMER_TICK).await;
        io.shard.borrow_mut().handle_timeout(Instant::now());
        io.after_work().await;
    }
}

async fn tcp_accept_loop(io: Rc<ShardIo>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                io.shard.borrow_mut().counters.tcp_connections_accepted += 1;
                glommio::spawn_local(tcp_connection(io.clone(), stream)).detach();
            }
            Err(e) => {
                log::warn!("ice-tcp accept error: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// An ICE-TCP connection: RFC 4571 frames (a 2-byte length, then the packet), handled like UDP
/// datagrams from this remote address. A connection idle for 30 s is closed.
async fn tcp_connection(io: Rc<ShardIo>, stream: TcpStream) {
    let Ok(remote) = stream.peer_addr() else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let (mut reader, mut writer) = futures::io::AsyncReadExt::split(stream);
    let (tx, mut rx) = mpsc::unbounded::<Vec<u8>>();
    io.tcp_writers.borrow_mut().insert(remote, tx);
    glommio::spawn_local(async move {
        while let Some(frame) = rx.next().await {
            let Ok(len) = u16::try_from(frame.len()) else {
                continue;
            };
            if writer.write_all(&len.to_be_bytes()).await.is_err()
                || writer.write_all(&frame).await.is_err()
            {
                break;
            }
        }
    })
    .detach();
    let mut header = [0u8; 2];
    let mut frame = vec![0u8; u16::MAX as usize];
    loop {
        if reader.read_exact(&mut header).await.is_err() {
            break;
        }
        let len = u16::from_be_bytes(header) as usize;
        if len == 0 || reader.read_exact(&mut frame[..len]).await.is_err() {
            io.shard.borrow_mut().counters.tcp_framing_errors += 1;
            break;
        }
        {
            let mut shard = io.shard.borrow_mut();
            shard.counters.tcp_frames_received += 1;
            shard.handle_packet(Protocol::Tcp, remote, &mut frame[..len], Instant::now());
        }
        io.after_work().await;
    }
    io.tcp_writers.borrow_mut().remove(&remote);
    io.shard
        .borrow_mut()
        .handle_tcp_closed(remote, Instant::now());
    io.after_work().await;
}
