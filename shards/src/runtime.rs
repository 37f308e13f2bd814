//! The I/O shell of a media shard: a glommio executor pinned to one core that owns the shard's UDP
//! socket and ICE-TCP listener, and serves commands from the signalling shard over a shared
//! channel. Nothing here is shared with other shards.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::AsyncReadExt;
use glommio::channels::shared_channel::{self, ConnectedSender, SharedReceiver, SharedSender};
use glommio::net::{TcpListener, TcpStream, UdpSocket};
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use crate::command::{ShardMessage, ShardRequest};
use crate::shard::Shard;
use crate::transport::dtls_certificate::DtlsCertificate;
use crate::transport::webrtc_transport::ListenInfo;

/// glommio's locked io memory per executor: small enough that many shards fit the default 8 MiB
/// `ulimit -l`.
pub const IO_MEMORY: usize = 512 << 10;
/// Ring depth per executor (≤ 1024 keeps the rings inside the memlock budget too).
pub const RING_DEPTH: usize = 256;
/// Capacity of each shard's command and message channels.
const CHANNEL_CAPACITY: usize = 1024;
/// Largest datagram we read (WebRTC keeps well under the 1500-byte MTU).
const MAX_DATAGRAM: usize = 2048;

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
    let udp = match UdpSocket::bind(addr) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(bind_error(&e)));
            return;
        }
    };
    let tcp = match TcpListener::bind(addr) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(bind_error(&e)));
            return;
        }
    };
    let port = udp.local_addr().map(|a| a.port()).unwrap_or(addr.port());
    let mut listen = config.listen.clone();
    listen.local.set_port(port);
    let shard = Rc::new(RefCell::new(Shard::new(index, listen, certificate)));
    // Ready before connecting the channels: connecting waits for the signalling side's end.
    let _ = ready.send(Ok(port));
    let requests = requests.connect().await;
    let messages = Rc::new(messages.connect().await);
    log::info!("media shard {index} listening on udp/tcp {addr}");

    glommio::spawn_local(udp_loop(shard.clone(), udp)).detach();
    glommio::spawn_local(tcp_accept_loop(shard.clone(), tcp)).detach();

    while let Some(request) = requests.recv().await {
        let result = shard.borrow_mut().handle(request.command);
        if messages
            .send(ShardMessage::Response {
                id: request.id,
                result,
            })
            .await
            .is_err()
        {
            break;
        }
        forward_events(&shard, &messages).await;
    }
    log::info!("media shard {index} stopping: its command channel closed");
}

async fn forward_events(shard: &Rc<RefCell<Shard>>, messages: &ConnectedSender<ShardMessage>) {
    let events: Vec<_> = shard.borrow_mut().drain_events().collect();
    for event in events {
        if messages.send(ShardMessage::Event(event)).await.is_err() {
            return;
        }
    }
}

/// Receives every datagram of the shard's UDP socket into one reused buffer.
async fn udp_loop(shard: Rc<RefCell<Shard>>, socket: UdpSocket) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((len, _from)) => shard.borrow_mut().on_udp_datagram(&buf[..len]),
            Err(e) => {
                log::warn!("udp receive error: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn tcp_accept_loop(shard: Rc<RefCell<Shard>>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                shard.borrow_mut().counters.tcp_connections_accepted += 1;
                glommio::spawn_local(tcp_connection(shard.clone(), stream)).detach();
            }
            Err(e) => {
                log::warn!("ice-tcp accept error: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// An ICE-TCP connection: RFC 4571 frames (a 2-byte length, then the packet). Frames are counted
/// and handed to the same path as UDP datagrams; a connection that sends nothing valid for
/// 30 s is closed.
async fn tcp_connection(shard: Rc<RefCell<Shard>>, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut header = [0u8; 2];
    let mut frame = vec![0u8; u16::MAX as usize];
    loop {
        if stream.read_exact(&mut header).await.is_err() {
            return;
        }
        let len = u16::from_be_bytes(header) as usize;
        if len == 0 || stream.read_exact(&mut frame[..len]).await.is_err() {
            shard.borrow_mut().counters.tcp_dropped += 1;
            return;
        }
        let mut shard = shard.borrow_mut();
        shard.counters.tcp_frames_received += 1;
        shard.on_udp_datagram(&frame[..len]);
    }
}
