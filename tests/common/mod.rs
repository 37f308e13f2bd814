//! Shared harness for the integration tests: a glommio runner, the real server
//! binary on free ports, the demo join flow, and JSON fixtures from the reference trace.
#![allow(dead_code)]

use std::collections::hash_map::RandomState;
use std::collections::BTreeSet;
use std::fs::File;
use std::future::Future;
use std::hash::BuildHasher;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use serde_json::{json, Value};
use shardcast_tools::protoo::{ConnectOptions, ProtooClient, RequestError};

/// Generous bound for anything that should happen "soon"; only reached when broken.
pub const WAIT: Duration = Duration::from_secs(10);

/// How long the server may take to accept TCP connections after spawning.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// Ports checked and reserved from `--rtc-port` on (base ..= base + 4).
const RTC_PORT_SPAN: u16 = 5;

/// Runs an async test body on a fresh glommio executor in its own thread.
///
/// A scoped thread lets the body borrow from the test (e.g. `&Server`); a panic
/// inside is re-raised here so the test fails with the original message.
pub fn run<F, Fut>(f: F) -> Fut::Output
where
    F: FnOnce() -> Fut + Send,
    Fut: Future,
    Fut::Output: Send,
{
    std::thread::scope(|s| {
        let handle = s.spawn(|| {
            LocalExecutorBuilder::new(Placement::Unbound)
                .io_memory(512 << 10)
                .ring_depth(256)
                .make()
                .expect("cannot build a glommio executor")
                .run(f())
        });
        handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Ports handed out in this test process, so parallel tests never share one
/// even before the server has bound them.
static RESERVED: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    RandomState::new().hash_one((
        COUNTER.fetch_add(1, Ordering::Relaxed),
        std::process::id(),
        Instant::now(),
    ))
}

/// A free TCP port on 127.0.0.1 (bind port 0, then release it).
fn pick_listen_port() -> u16 {
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("cannot bind an ephemeral port")
            .port();
        if RESERVED.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// Binding the wildcard address also fails when any specific address holds the port.
fn port_is_free(port: u16) -> bool {
    UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
        && TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
}

/// A random base in 20000..60000 whose next ports are free for UDP and TCP.
fn pick_rtc_base() -> u16 {
    for _ in 0..1000 {
        let base = 20000 + (random_u64() % u64::from(40000 - RTC_PORT_SPAN)) as u16;
        let range = base..base + RTC_PORT_SPAN;
        let mut reserved = RESERVED.lock().unwrap();
        if range.clone().any(|p| reserved.contains(&p)) || !range.clone().all(port_is_free) {
            continue;
        }
        reserved.extend(range);
        return base;
    }
    panic!("no free RTC port range found in 20000..60000");
}

/// The real `shardcast` binary on private ports, killed on drop.
pub struct Server {
    child: Child,
    addr: SocketAddr,
    rtc_port: u16,
    tls: bool,
    log_path: PathBuf,
}

impl Server {
    /// Starts the server with `--listen 127.0.0.1:<free> --rtc-port <free base>` plus
    /// `args`, and waits until it accepts TCP connections.
    pub fn start(args: &[&str]) -> Server {
        Self::start_with_env(args, &[])
    }

    /// Like [`Server::start`] with extra environment variables for the child.
    /// `RUST_LOG` defaults to `info` and `RUST_BACKTRACE` to `1` so the log tail helps.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let port = pick_listen_port();
        let rtc_port = pick_rtc_base();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let log_path =
            std::env::temp_dir().join(format!("shardcast-test-{}-{port}.log", std::process::id()));
        let log = File::create(&log_path).expect("cannot create the server log file");
        let stderr = log.try_clone().expect("cannot clone the log file handle");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardcast"));
        cmd.arg("--listen")
            .arg(addr.to_string())
            .arg("--rtc-port")
            .arg(rtc_port.to_string())
            .args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        if std::env::var_os("RUST_BACKTRACE").is_none() {
            cmd.env("RUST_BACKTRACE", "1");
        }
        cmd.envs(env.iter().copied());
        let child = cmd.spawn().expect("cannot spawn the shardcast binary");
        // Built before waiting so that a failed start still kills the child and shows the log.
        let mut server = Server {
            child,
            addr,
            rtc_port,
            tls: !args.contains(&"--no-tls"),
            log_path,
        };
        server.wait_accepting();
        server
    }

    fn wait_accepting(&mut self) {
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("shardcast exited during startup with {status}");
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "shardcast did not accept on {} within {STARTUP_DEADLINE:?}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The protoo URL for `room`/`peer`: `ws://` when started with `--no-tls`, else `wss://`.
    pub fn ws_url(&self, room: &str, peer: &str) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}/?roomId={room}&peerId={peer}", self.addr)
    }

    /// The signalling (WebSocket + HTTP) address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `--rtc-port` base.
    pub fn rtc_port(&self) -> u16 {
        self.rtc_port
    }

    /// Whether the signalling port speaks TLS.
    pub fn tls(&self) -> bool {
        self.tls
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Everything the server printed so far (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Polls the log until it contains `needle`; `false` on timeout.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            glommio::timer::sleep(Duration::from_millis(50)).await;
        }
        self.log().contains(needle)
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Kills the process now (e.g. to test what clients see when the server dies).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- shardcast log tail ({}) -----\n{}\n----- end of shardcast log -----",
                self.log_path.display(),
                self.log_tail(200)
            );
        } else {
            let _ = std::fs::remove_file(&self.log_path);
        }
    }
}

/// A JSON fixture from `tests/common/fixtures/`, embedded at compile time.
///
/// Names (without `.json`): `join-olimmpcr`, `join-2eww0a45` (the trace peers' `join`
/// data), `produce-audio`, `produce-video-simulcast` (rid simulcast, olimmpcr's),
/// `produce-vp8-rtx` (the user's example), `produce-data-chat`, `produce-data-bot`,
/// `connect-webrtc-transport`, `router-rtp-capabilities` (reference server's answer).
pub fn fixture(name: &str) -> Value {
    let text = match name.trim_end_matches(".json") {
        "join-olimmpcr" => include_str!("fixtures/join-olimmpcr.json"),
        "join-2eww0a45" => include_str!("fixtures/join-2eww0a45.json"),
        "produce-audio" => include_str!("fixtures/produce-audio.json"),
        "produce-video-simulcast" => include_str!("fixtures/produce-video-simulcast.json"),
        "produce-vp8-rtx" => include_str!("fixtures/produce-vp8-rtx.json"),
        "produce-data-chat" => include_str!("fixtures/produce-data-chat.json"),
        "produce-data-bot" => include_str!("fixtures/produce-data-bot.json"),
        "connect-webrtc-transport" => include_str!("fixtures/connect-webrtc-transport.json"),
        "router-rtp-capabilities" => include_str!("fixtures/router-rtp-capabilities.json"),
        other => panic!("unknown fixture {other:?}"),
    };
    serde_json::from_str(text).unwrap_or_else(|e| panic!("fixture {name} is not JSON: {e}"))
}

/// The browser receive capabilities a Chrome peer sends in `join` (from the trace).
pub fn client_rtp_capabilities() -> Value {
    fixture("join-olimmpcr")["rtpCapabilities"].clone()
}

/// What the demo sends when data channels are on.
pub fn sctp_capabilities() -> Value {
    json!({ "numStreams": { "OS": 1024, "MIS": 1024 } })
}

/// Variations of the demo join flow.
#[derive(Debug, Clone)]
pub struct JoinOptions {
    /// Sent as `join.rtpCapabilities`; `None` is the app's `?consume=false`.
    pub rtp_capabilities: Option<Value>,
    /// Adds `sctpCapabilities` to both transports and to `join` (data channels on).
    pub sctp: bool,
    /// Server requests answered `{}` automatically, set before `join` so none is missed.
    pub auto_respond: Vec<&'static str>,
    pub connect: ConnectOptions,
}

impl Default for JoinOptions {
    fn default() -> Self {
        Self {
            rtp_capabilities: Some(client_rtp_capabilities()),
            sctp: false,
            auto_respond: Vec::new(),
            connect: ConnectOptions::default(),
        }
    }
}

/// A peer that went through the demo join sequence.
#[derive(Debug, Clone)]
pub struct JoinedPeer {
    pub client: ProtooClient,
    pub send_transport_id: String,
    pub recv_transport_id: String,
    /// The `getRouterRtpCapabilities` answer.
    pub router_caps: Value,
    /// Full `createWebRtcTransport` answers.
    pub send_transport: Value,
    pub recv_transport: Value,
    /// `join`'s `peers` list (the other peers at join time).
    pub peers: Vec<Value>,
}

impl JoinedPeer {
    /// Sends `produce` with a fixture's data on the send transport; returns the producer id.
    pub async fn produce(&self, fixture_name: &str) -> Result<String, RequestError> {
        let mut data = fixture(fixture_name);
        data["transportId"] = json!(self.send_transport_id);
        let answer = self.client.request("produce", data).await?;
        Ok(answer["id"]
            .as_str()
            .unwrap_or_else(|| panic!("produce answer without id: {answer}"))
            .to_owned())
    }

    /// Sends `connectWebRtcTransport` with the trace's client DTLS parameters.
    pub async fn connect_transport(&self, transport_id: &str) -> Result<Value, RequestError> {
        let mut data = fixture("connect-webrtc-transport");
        data["transportId"] = json!(transport_id);
        self.client.request("connectWebRtcTransport", data).await
    }
}

/// The demo app's join flow with default options; see [`join_peer_with`].
pub async fn join_peer(server: &Server, room: &str, peer: &str, display_name: &str) -> JoinedPeer {
    join_peer_with(server, room, peer, display_name, JoinOptions::default()).await
}

/// connect → `mediasoup-version` → `getRouterRtpCapabilities` → send and receive
/// `createWebRtcTransport` (forceTcp false) → `join`. Panics with context on any failure.
pub async fn join_peer_with(
    server: &Server,
    room: &str,
    peer: &str,
    display_name: &str,
    opts: JoinOptions,
) -> JoinedPeer {
    let url = server.ws_url(room, peer);
    let client = ProtooClient::connect(&url, opts.connect.clone())
        .await
        .unwrap_or_else(|e| panic!("{peer}: cannot connect to {url}: {e}"));
    if !opts.auto_respond.is_empty() {
        client.set_auto_respond(&opts.auto_respond);
    }
    client
        .wait_for(WAIT, |e| e.is_notification("mediasoup-version"))
        .await
        .unwrap_or_else(|| panic!("{peer}: no mediasoup-version notification"));

    let request = |method: &'static str, data: Value| {
        let client = client.clone();
        async move {
            client
                .request(method, data)
                .await
                .unwrap_or_else(|e| panic!("{peer}: {method} failed: {e}"))
        }
    };
    let router_caps = request("getRouterRtpCapabilities", json!({})).await;

    let transport_data = |producing: bool| {
        let mut data =
            json!({ "forceTcp": false, "producing": producing, "consuming": !producing });
        if opts.sctp {
            data["sctpCapabilities"] = sctp_capabilities();
        }
        data
    };
    let send_transport = request("createWebRtcTransport", transport_data(true)).await;
    let recv_transport = request("createWebRtcTransport", transport_data(false)).await;
    let transport_id = |t: &Value| {
        t["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{peer}: createWebRtcTransport answer without id: {t}"))
            .to_owned()
    };

    let mut join = json!({
        "displayName": display_name,
        "device": { "flag": "chrome", "name": "Chrome", "version": "156.0.0.0" },
    });
    if let Some(caps) = &opts.rtp_capabilities {
        join["rtpCapabilities"] = caps.clone();
    }
    if opts.sctp {
        join["sctpCapabilities"] = sctp_capabilities();
    }
    let joined = request("join", join).await;
    let peers = joined["peers"]
        .as_array()
        .unwrap_or_else(|| panic!("{peer}: join answer without peers: {joined}"))
        .clone();

    JoinedPeer {
        send_transport_id: transport_id(&send_transport),
        recv_transport_id: transport_id(&recv_transport),
        client,
        router_caps,
        send_transport,
        recv_transport,
        peers,
    }
}

/// Creates a peer-side transport for a createWebRtcTransport `answer`, sends
/// connectWebRtcTransport with its DTLS parameters (as the demo client does), then runs ICE and
/// DTLS with the Rust test peer.
pub async fn connect_peer_transport(
    peer: &JoinedPeer,
    answer: &Value,
    opts: shardcast_tools::peer::PeerTransportOptions,
) -> shardcast_tools::peer::PeerTransport {
    let transport = shardcast_tools::peer::PeerTransport::new(answer, opts)
        .await
        .expect("peer transport");
    peer.client
        .request(
            "connectWebRtcTransport",
            json!({"transportId": answer["id"], "dtlsParameters": transport.local_dtls_parameters()}),
        )
        .await
        .expect("connectWebRtcTransport");
    transport.connect().await.expect("ICE + DTLS");
    transport
}

/// The server's /metrics text.
pub async fn metrics(server: &Server) -> String {
    let (status, _, body) = shardcast_tools::http::raw_http(
        server.addr(),
        server.tls(),
        "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .expect("metrics");
    assert_eq!(status, 200);
    String::from_utf8(body).expect("utf-8")
}
