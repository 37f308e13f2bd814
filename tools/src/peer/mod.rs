//! A real WebRTC peer for tests and load: ICE (as a full agent against an ICE-lite server), DTLS
//! as client, SRTP/SRTCP, over UDP or ICE-TCP (RFC 4571 framing), on a glommio executor.
//!
//! It shares no code with the server under test: STUN is rtc-stun, DTLS is dimpl or rtc-dtls
//! (see [`DtlsStack`]), SRTP is rtc-srtp, and the answer is read from its JSON.
//!
//! ```ignore
//! // `answer` is the createWebRtcTransport response data.
//! let peer = PeerTransport::new(&answer, PeerTransportOptions::default()).await?;
//! protoo.request("connectWebRtcTransport",
//!     json!({"transportId": id, "dtlsParameters": peer.local_dtls_parameters()})).await?;
//! let profile = peer.connect().await?;           // ICE checks, then the DTLS handshake
//! peer.send_rtp(&RtpPacketBuilder::new(ssrc, 111, 1, 0).payload(b"opus").build()).await?;
//! while let Some(received) = peer.recv(Duration::from_secs(5)).await { /* Received::Rtp(..) */ }
//! ```
//!
//! Everything received is read by one background task, which answers DTLS, matches STUN
//! responses to requests and queues the rest (unprotected) for [`PeerTransport::recv`]; so the
//! handle's methods take `&self` and several tasks can use one transport (e.g. one sends, one
//! receives). Dropping the transport stops that task.

mod dtls;
mod ice;
pub mod loopback;
mod params;
pub mod rtp;
mod signal;
mod socket;
mod srtp;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub use dtls::{
    dtls_records, DtlsDatagram, DtlsDirection, DtlsDropHook, DtlsEndpoint, DtlsEndpointConfig,
    DtlsFailure, DtlsProgress, DtlsRecord, DtlsStack, LocalCertificate,
};
pub use ice::{
    encode_binding_error, encode_binding_request, encode_binding_success, integrity_ok,
    parse_binding_request, parse_binding_response, BindingOutcome, BindingRequest, IceCredentials,
    IceRole, ParsedBindingRequest, TxId, PEER_REFLEXIVE_PRIORITY,
};
pub use params::{Fingerprint, Protocol, RemoteCandidate, RemoteParameters};
pub use rtp::{classify, PacketKind, RtpPacketBuilder, RtpView};
pub use socket::{frame_rfc4571, Rfc4571Decoder};
pub use srtp::{split_keying_material, DtlsSide, SrtpKey, SrtpProfile, SrtpSession};

use signal::Signal;
use socket::{PacketReader, PeerSocket};

use crate::util::with_timeout;

/// How a [`PeerTransport`] connects.
#[derive(Clone)]
pub struct PeerTransportOptions {
    /// UDP, or ICE-TCP to the answer's passive TCP candidate.
    pub protocol: Protocol,
    /// The `use_srtp` offer, in preference order. Default: [`SrtpProfile::CHROME`].
    pub srtp_profiles: Vec<SrtpProfile>,
    pub dtls_stack: DtlsStack,
    /// UDP bind address; default `127.0.0.1:0` for a loopback candidate (`[::1]:0` for IPv6),
    /// the unspecified address otherwise. Ignored for TCP.
    pub local_addr: Option<SocketAddr>,
    /// ICE-CONTROLLING (a browser against ICE-lite) or ICE-CONTROLLED in the checks.
    pub ice_controlling: bool,
    /// USE-CANDIDATE in the connect check (nomination).
    pub use_candidate: bool,
    /// Drops chosen DTLS datagrams, both directions (loss tests).
    pub drop_dtls: Option<DtlsDropHook>,
    /// Deadline for each of the ICE and DTLS phases of [`PeerTransport::connect`].
    pub connect_timeout: Duration,
    /// STUN retransmission interval while waiting for a response.
    pub ice_retransmit: Duration,
    /// First DTLS retransmission timeout (doubles after each).
    pub dtls_retransmit: Duration,
    /// Takes received SRTP/SRTCP before it is unprotected and queued (the load tool).
    pub media_handler: Option<Rc<dyn MediaHandler>>,
    /// UDP `SO_RCVBUF` to ask for (capped by `net.core.rmem_max`); `None` keeps the default.
    pub recv_buffer: Option<usize>,
    /// UDP: read by polling every this often instead of a receive armed on the socket (the
    /// load tool's `--poll-us`; adds up to this much latency).
    pub poll_receive: Option<Duration>,
}

/// Sees every received SRTP/SRTCP packet first, still protected, with the session to unprotect
/// it: the load tool counts from the clear RTP header and decrypts only a sample, which the
/// queue-everything path of [`PeerTransport::recv`] cannot afford at load rates.
pub trait MediaHandler {
    /// `true` when the packet was handled; `false` unprotects and queues it as usual.
    fn on_media(&self, packet: &[u8], kind: PacketKind, srtp: &mut SrtpSession) -> bool;
}

impl Default for PeerTransportOptions {
    fn default() -> Self {
        Self {
            protocol: Protocol::Udp,
            srtp_profiles: SrtpProfile::CHROME.to_vec(),
            dtls_stack: DtlsStack::Auto,
            local_addr: None,
            ice_controlling: true,
            use_candidate: true,
            drop_dtls: None,
            connect_timeout: Duration::from_secs(10),
            ice_retransmit: Duration::from_millis(50),
            dtls_retransmit: Duration::from_millis(100),
            media_handler: None,
            recv_buffer: None,
            poll_receive: None,
        }
    }
}

impl std::fmt::Debug for PeerTransportOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTransportOptions")
            .field("protocol", &self.protocol)
            .field("srtp_profiles", &self.srtp_profiles)
            .field("dtls_stack", &self.dtls_stack)
            .field("local_addr", &self.local_addr)
            .field("ice_controlling", &self.ice_controlling)
            .field("use_candidate", &self.use_candidate)
            .field("drop_dtls", &self.drop_dtls.is_some())
            .field("connect_timeout", &self.connect_timeout)
            .field("media_handler", &self.media_handler.is_some())
            .finish_non_exhaustive()
    }
}

/// Why the peer could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("invalid transport parameters: {0}")]
    Parameters(String),
    #[error("no {0} candidate in the answer")]
    NoCandidate(&'static str),
    #[error("setup: {0}")]
    Setup(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("ICE: no response to the binding request")]
    IceTimeout,
    #[error("ICE: error response {code} {reason}")]
    IceError { code: u16, reason: String },
    #[error("ICE: the success response failed the integrity check")]
    IceUnauthenticated,
    #[error("DTLS: {0}")]
    Dtls(DtlsFailure),
    #[error("DTLS: handshake timed out")]
    DtlsTimeout,
    #[error("DTLS: closed")]
    DtlsClosed,
    #[error("SRTP: {0}")]
    Srtp(String),
    #[error("not connected: no SRTP keys yet")]
    NotConnected,
    #[error("transport closed: {0}")]
    Closed(String),
}

/// Something the server sent, SRTP already removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Rtp(Vec<u8>),
    Rtcp(Vec<u8>),
    /// A STUN message that answers none of our pending requests.
    Stun(Vec<u8>),
    /// DTLS application data (SCTP in WebRTC).
    DtlsData(Vec<u8>),
    /// The server sent close_notify.
    DtlsClosed,
    /// Anything else, including SRTP/SRTCP that failed to unprotect (counted in
    /// [`PeerStats::srtp_errors`]) and media before the keys exist.
    Other(Vec<u8>),
}

/// mediasoup-like ICE state of the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceState {
    New,
    Checking,
    Connected,
    Failed,
}

/// The peer's DTLS state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtlsState {
    New,
    Connecting,
    Connected(SrtpProfile),
    Failed(DtlsFailure),
    Closed,
}

/// Counters, for assertions and the load tool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerStats {
    pub rtp_sent: u64,
    pub rtcp_sent: u64,
    pub rtp_received: u64,
    pub rtcp_received: u64,
    pub srtp_errors: u64,
    pub stun_sent: u64,
    pub stun_received: u64,
    pub dtls_sent: u64,
    pub dtls_received: u64,
    pub dtls_dropped: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Received items dropped because nobody called `recv` and [`MAX_QUEUED`] were waiting.
    pub queue_overflow: u64,
}

/// Received items kept for [`PeerTransport::recv`]; beyond this the oldest are dropped, so a
/// transport nobody reads from (a load-test sender) does not grow without bound.
pub const MAX_QUEUED: usize = 65_536;

/// A pending binding transaction.
struct Pending {
    password: Option<String>,
    outcome: Option<BindingOutcome>,
}

struct Shared {
    socket: PeerSocket,
    remote: RemoteParameters,
    local_ice: IceCredentials,
    certificate: LocalCertificate,
    opts: PeerTransportOptions,
    stack: DtlsStack,
    tie_breaker: u64,
    ice_state: Cell<IceState>,
    mapped: Cell<Option<SocketAddr>>,
    dtls: RefCell<Option<DtlsEndpoint>>,
    srtp: RefCell<Option<SrtpSession>>,
    /// Set if the keys could not be turned into SRTP contexts.
    srtp_failure: RefCell<Option<String>>,
    dtls_closed_reported: Cell<bool>,
    /// DTLS datagrams seen per direction (outgoing, incoming), for the drop hook.
    dtls_counts: Cell<(usize, usize)>,
    inbox: RefCell<VecDeque<Received>>,
    pending: RefCell<HashMap<TxId, Pending>>,
    /// Why the reader stopped (TCP EOF, socket error).
    closed: RefCell<Option<String>>,
    signal: Signal,
    stats: RefCell<PeerStats>,
}

/// The test peer's transport. See the module docs.
pub struct PeerTransport {
    shared: Rc<Shared>,
    /// Dropping it cancels the reader.
    reader: RefCell<Option<glommio::Task<()>>>,
}

impl PeerTransport {
    /// Reads the answer, opens the socket (or TCP connection), generates the certificate and ICE
    /// credentials, and starts reading. Sends nothing yet: call [`connect`](Self::connect).
    pub async fn new(answer: &Value, opts: PeerTransportOptions) -> Result<Self, PeerError> {
        let remote = RemoteParameters::from_answer(answer).map_err(PeerError::Parameters)?;
        let stack = opts
            .dtls_stack
            .resolve(&opts.srtp_profiles)
            .map_err(PeerError::Setup)?;
        let candidate = remote
            .candidate(opts.protocol)
            .ok_or(PeerError::NoCandidate(opts.protocol.as_str()))?
            .address;
        let socket =
            PeerSocket::open(opts.protocol, candidate, opts.local_addr, opts.poll_receive).await?;
        if let Some(bytes) = opts.recv_buffer {
            socket.set_recv_buffer(bytes)?;
        }
        let certificate = LocalCertificate::generate().map_err(PeerError::Setup)?;
        let reader = socket.take_reader()?;
        let shared = Rc::new(Shared {
            socket,
            remote,
            local_ice: IceCredentials::random(),
            certificate,
            opts,
            stack,
            tie_breaker: rand::random(),
            ice_state: Cell::new(IceState::New),
            mapped: Cell::new(None),
            dtls: RefCell::new(None),
            srtp: RefCell::new(None),
            srtp_failure: RefCell::new(None),
            dtls_closed_reported: Cell::new(false),
            dtls_counts: Cell::new((0, 0)),
            inbox: RefCell::new(VecDeque::new()),
            pending: RefCell::new(HashMap::new()),
            closed: RefCell::new(None),
            signal: Signal::default(),
            stats: RefCell::new(PeerStats::default()),
        });
        let task = glommio::spawn_local(read_loop(shared.clone(), reader));
        Ok(Self {
            shared,
            reader: RefCell::new(Some(task)),
        })
    }

    /// [`new`](Self::new) then [`connect`](Self::connect): for servers that already know our DTLS
    /// parameters, or tests that send them while the handshake retransmits.
    pub async fn establish(answer: &Value, opts: PeerTransportOptions) -> Result<Self, PeerError> {
        let peer = Self::new(answer, opts).await?;
        peer.connect().await?;
        Ok(peer)
    }

    /// ICE, then DTLS; returns the negotiated SRTP profile.
    pub async fn connect(&self) -> Result<SrtpProfile, PeerError> {
        self.connect_ice().await?;
        self.connect_dtls().await
    }

    /// Sends the connectivity check (retransmitted every `ice_retransmit`) until an authenticated
    /// success response; returns the XOR-MAPPED-ADDRESS (our address as the server saw it).
    pub async fn connect_ice(&self) -> Result<Option<SocketAddr>, PeerError> {
        let s = &self.shared;
        s.ice_state.set(IceState::Checking);
        let request = self.binding_request(s.opts.use_candidate);
        let outcome = self
            .send_binding(&request, s.opts.connect_timeout)
            .await
            .inspect_err(|_| s.ice_state.set(IceState::Failed))?;
        let result = match outcome {
            BindingOutcome::Success {
                mapped_address,
                authenticated: true,
            } => {
                s.mapped.set(mapped_address);
                s.ice_state.set(IceState::Connected);
                return Ok(mapped_address);
            }
            BindingOutcome::Success { .. } => PeerError::IceUnauthenticated,
            BindingOutcome::Error { code, reason } => PeerError::IceError { code, reason },
            BindingOutcome::NoResponse => PeerError::IceTimeout,
        };
        s.ice_state.set(IceState::Failed);
        Err(result)
    }

    /// Runs the DTLS handshake as client (after ICE), checks the server's fingerprint and derives
    /// the SRTP contexts. Idempotent once connected.
    pub async fn connect_dtls(&self) -> Result<SrtpProfile, PeerError> {
        let s = &self.shared;
        if s.dtls.borrow().is_none() {
            let endpoint = DtlsEndpoint::new(
                DtlsEndpointConfig {
                    side: DtlsSide::Client,
                    stack: s.stack,
                    certificate: &s.certificate,
                    expected_fingerprint: Some(s.remote.fingerprint.clone()),
                    srtp_profiles: s.opts.srtp_profiles.clone(),
                    retransmit: s.opts.dtls_retransmit,
                    remote: s.socket.remote_addr(),
                },
                Instant::now(),
            )
            .map_err(PeerError::Setup)?;
            *s.dtls.borrow_mut() = Some(endpoint);
            let transmits = s.take_dtls_transmits();
            s.send_dtls(transmits).await?;
        }
        let deadline = Instant::now() + s.opts.connect_timeout;
        loop {
            let (progress, next_timer) = {
                let dtls = s.dtls.borrow();
                let Some(dtls) = dtls.as_ref() else {
                    return Err(PeerError::Setup("DTLS endpoint vanished".into()));
                };
                (dtls.progress().clone(), dtls.poll_timeout())
            };
            match progress {
                DtlsProgress::Connected { profile, .. } => {
                    s.install_srtp();
                    if let Some(e) = s.srtp_failure.borrow().clone() {
                        return Err(PeerError::Srtp(e));
                    }
                    return Ok(profile);
                }
                DtlsProgress::Failed(f) => return Err(PeerError::Dtls(f)),
                DtlsProgress::Closed => return Err(PeerError::DtlsClosed),
                DtlsProgress::Connecting => {}
            }
            if let Some(reason) = s.closed.borrow().clone() {
                return Err(PeerError::Closed(reason));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(PeerError::DtlsTimeout);
            }
            let wake = next_timer.map_or(deadline, |t| t.min(deadline));
            let changed = with_timeout(
                wake.saturating_duration_since(now),
                s.signal.wait_until(|| {
                    let done = s
                        .dtls
                        .borrow()
                        .as_ref()
                        .is_none_or(|d| !matches!(d.progress(), DtlsProgress::Connecting));
                    (done || s.closed.borrow().is_some()).then_some(())
                }),
            )
            .await;
            if changed.is_none() {
                let now = Instant::now();
                if let Some(dtls) = s.dtls.borrow_mut().as_mut() {
                    if dtls.poll_timeout().is_some_and(|t| t <= now) {
                        dtls.handle_timeout(now);
                    }
                }
                s.after_dtls();
                let transmits = s.take_dtls_transmits();
                s.send_dtls(transmits).await?;
            }
        }
    }

    /// `{role: "client", fingerprints: [{algorithm: "sha-256", value}]}` for
    /// connectWebRtcTransport; valid before and after connecting.
    pub fn local_dtls_parameters(&self) -> Value {
        json!({
            "role": "client",
            "fingerprints": [self.shared.certificate.fingerprint().to_json()],
        })
    }

    pub fn local_fingerprint(&self) -> Fingerprint {
        self.shared.certificate.fingerprint()
    }

    pub fn local_ice_credentials(&self) -> &IceCredentials {
        &self.shared.local_ice
    }

    pub fn remote_parameters(&self) -> &RemoteParameters {
        &self.shared.remote
    }

    /// The DTLS implementation in use (resolved from [`PeerTransportOptions::dtls_stack`]).
    pub fn dtls_stack(&self) -> DtlsStack {
        self.shared.stack
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.socket.local_addr()
    }

    /// The candidate the peer talks to.
    pub fn remote_addr(&self) -> SocketAddr {
        self.shared.socket.remote_addr()
    }

    pub fn protocol(&self) -> Protocol {
        self.shared.socket.protocol()
    }

    /// XOR-MAPPED-ADDRESS from the successful check.
    pub fn mapped_address(&self) -> Option<SocketAddr> {
        self.shared.mapped.get()
    }

    pub fn ice_state(&self) -> IceState {
        self.shared.ice_state.get()
    }

    pub fn dtls_state(&self) -> DtlsState {
        match self
            .shared
            .dtls
            .borrow()
            .as_ref()
            .map(DtlsEndpoint::progress)
        {
            None => DtlsState::New,
            Some(DtlsProgress::Connecting) => DtlsState::Connecting,
            Some(DtlsProgress::Connected { profile, .. }) => DtlsState::Connected(*profile),
            Some(DtlsProgress::Failed(f)) => DtlsState::Failed(f.clone()),
            Some(DtlsProgress::Closed) => DtlsState::Closed,
        }
    }

    /// The negotiated SRTP profile, once connected.
    pub fn selected_profile(&self) -> Option<SrtpProfile> {
        self.shared.srtp.borrow().as_ref().map(SrtpSession::profile)
    }

    /// Why the reader stopped (TCP closed by the server, socket error), if it did.
    pub fn closed_reason(&self) -> Option<String> {
        self.shared.closed.borrow().clone()
    }

    pub fn stats(&self) -> PeerStats {
        *self.shared.stats.borrow()
    }

    /// Protects and sends one RTP packet.
    pub async fn send_rtp(&self, rtp: &[u8]) -> Result<(), PeerError> {
        let protected = self.shared.with_srtp(|srtp| srtp.protect_rtp(rtp))?;
        self.shared.send(&protected).await?;
        self.shared.stats.borrow_mut().rtp_sent += 1;
        Ok(())
    }

    /// Protects and sends one (compound) RTCP packet.
    pub async fn send_rtcp(&self, rtcp: &[u8]) -> Result<(), PeerError> {
        let protected = self.shared.with_srtp(|srtp| srtp.protect_rtcp(rtcp))?;
        self.shared.send(&protected).await?;
        self.shared.stats.borrow_mut().rtcp_sent += 1;
        Ok(())
    }

    /// Sends `bytes` unencrypted as one datagram (UDP) or one RFC 4571 frame (TCP).
    pub async fn send_raw(&self, bytes: &[u8]) -> Result<(), PeerError> {
        Ok(self.shared.send(bytes).await?)
    }

    /// TCP: writes `bytes` to the stream with no framing (bad-framing tests). UDP: a datagram.
    pub async fn send_raw_stream(&self, bytes: &[u8]) -> Result<(), PeerError> {
        Ok(self.shared.socket.send_stream_bytes(bytes).await?)
    }

    /// The next received packet within `timeout`; `None` on timeout, or at once when nothing is
    /// queued and the transport is closed.
    pub async fn recv(&self, timeout: Duration) -> Option<Received> {
        let s = &self.shared;
        with_timeout(
            timeout,
            s.signal
                .wait_until(|| match s.inbox.borrow_mut().pop_front() {
                    Some(r) => Some(Some(r)),
                    None if s.closed.borrow().is_some() => Some(None),
                    None => None,
                }),
        )
        .await
        .flatten()
    }

    /// The next received RTP packet within `timeout`, discarding anything else received meanwhile.
    pub async fn recv_rtp(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.recv_where(timeout, |r| match r {
            Received::Rtp(p) => Some(p),
            _ => None,
        })
        .await
    }

    /// The next received RTCP packet within `timeout`, discarding anything else received meanwhile.
    pub async fn recv_rtcp(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.recv_where(timeout, |r| match r {
            Received::Rtcp(p) => Some(p),
            _ => None,
        })
        .await
    }

    /// The first received item `pick` maps to `Some` within `timeout`; others are discarded.
    pub async fn recv_where<T>(
        &self,
        timeout: Duration,
        mut pick: impl FnMut(Received) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Some(t) = pick(self.recv(left).await?) {
                return Some(t);
            }
        }
    }

    /// The connectivity check this transport sends, for tweaking in bad-ICE tests.
    pub fn binding_request(&self, use_candidate: bool) -> BindingRequest {
        let s = &self.shared;
        let role = if s.opts.ice_controlling {
            IceRole::Controlling
        } else {
            IceRole::Controlled
        };
        let mut req = BindingRequest::for_transport(
            &s.remote.username_fragment,
            &s.remote.password,
            &s.local_ice,
            role,
            use_candidate,
        );
        req.tie_breaker = s.tie_breaker;
        req
    }

    /// Sends `request` (retransmitting every `ice_retransmit`) and waits up to `timeout` for the
    /// server's answer. The response's integrity is checked with `request.password`.
    pub async fn send_binding(
        &self,
        request: &BindingRequest,
        timeout: Duration,
    ) -> Result<BindingOutcome, PeerError> {
        let s = &self.shared;
        let (tid, bytes) = encode_binding_request(request).map_err(PeerError::Setup)?;
        s.pending.borrow_mut().insert(
            tid,
            Pending {
                password: request.password.clone(),
                outcome: None,
            },
        );
        let result = self.await_binding(tid, &bytes, timeout).await;
        s.pending.borrow_mut().remove(&tid);
        result
    }

    async fn await_binding(
        &self,
        tid: TxId,
        bytes: &[u8],
        timeout: Duration,
    ) -> Result<BindingOutcome, PeerError> {
        let s = &self.shared;
        let deadline = Instant::now() + timeout;
        loop {
            s.send(bytes).await?;
            s.stats.borrow_mut().stun_sent += 1;
            let now = Instant::now();
            if now >= deadline {
                return Ok(BindingOutcome::NoResponse);
            }
            let wait = s.opts.ice_retransmit.min(deadline - now);
            let outcome = with_timeout(
                wait,
                s.signal.wait_until(|| {
                    if let Some(outcome) = s
                        .pending
                        .borrow_mut()
                        .get_mut(&tid)
                        .and_then(|p| p.outcome.take())
                    {
                        return Some(Ok(outcome));
                    }
                    s.closed
                        .borrow()
                        .clone()
                        .map(|reason| Err(PeerError::Closed(reason)))
                }),
            )
            .await;
            if let Some(outcome) = outcome {
                return outcome;
            }
        }
    }

    /// One consent check (a binding request without USE-CANDIDATE), waiting up to 2 s.
    pub async fn keepalive(&self) -> Result<BindingOutcome, PeerError> {
        let request = self.binding_request(false);
        self.send_binding(&request, Duration::from_secs(2)).await
    }

    /// Sends close_notify (if DTLS is up), closes a TCP stream and stops reading.
    pub async fn close(self) {
        let s = &self.shared;
        if let Some(dtls) = s.dtls.borrow_mut().as_mut() {
            dtls.close(Instant::now());
        }
        let transmits = s.take_dtls_transmits();
        let _ = s.send_dtls(transmits).await;
        s.socket.shutdown().await;
        drop(self.reader.borrow_mut().take());
    }
}

impl std::fmt::Debug for PeerTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTransport")
            .field("protocol", &self.protocol())
            .field("local", &self.local_addr())
            .field("remote", &self.remote_addr())
            .field("ice", &self.ice_state())
            .field("dtls", &self.dtls_state())
            .finish()
    }
}

async fn read_loop(shared: Rc<Shared>, mut reader: PacketReader) {
    let mut buf = vec![0u8; socket::MAX_PACKET];
    let reason = loop {
        match reader.next(&mut buf).await {
            Ok(Some(len)) => {
                if let Err(e) = shared.dispatch(&buf[..len]).await {
                    log::debug!("peer: {e}");
                }
            }
            Ok(None) => break "stream closed by the server".to_string(),
            Err(e) => break e.to_string(),
        }
    };
    *shared.closed.borrow_mut() = Some(reason);
    shared.signal.notify();
}

impl Shared {
    async fn send(&self, packet: &[u8]) -> std::io::Result<()> {
        self.socket.send(packet).await?;
        self.stats.borrow_mut().bytes_sent += packet.len() as u64;
        Ok(())
    }

    fn with_srtp(
        &self,
        f: impl FnOnce(&mut SrtpSession) -> Result<Vec<u8>, String>,
    ) -> Result<Vec<u8>, PeerError> {
        let mut srtp = self.srtp.borrow_mut();
        let srtp = srtp.as_mut().ok_or(PeerError::NotConnected)?;
        f(srtp).map_err(PeerError::Srtp)
    }

    async fn dispatch(&self, packet: &[u8]) -> Result<(), PeerError> {
        self.stats.borrow_mut().bytes_received += packet.len() as u64;
        match classify(packet) {
            PacketKind::Stun => self.on_stun(packet),
            PacketKind::Dtls => self.on_dtls(packet).await?,
            kind @ (PacketKind::Rtp | PacketKind::Rtcp) => self.on_media(packet, kind),
            PacketKind::Unknown => self.deliver(Received::Other(packet.to_vec())),
        }
        Ok(())
    }

    fn on_stun(&self, packet: &[u8]) {
        self.stats.borrow_mut().stun_received += 1;
        let tid: Option<TxId> = packet.get(8..20).and_then(|t| t.try_into().ok());
        let password =
            tid.and_then(|tid| self.pending.borrow().get(&tid).map(|p| p.password.clone()));
        if let Some(password) = password {
            if let Some((tid, outcome)) = parse_binding_response(packet, password.as_deref()) {
                if let Some(p) = self.pending.borrow_mut().get_mut(&tid) {
                    p.outcome = Some(outcome);
                }
                self.signal.notify();
                return;
            }
        }
        self.deliver(Received::Stun(packet.to_vec()));
    }

    async fn on_dtls(&self, packet: &[u8]) -> Result<(), PeerError> {
        self.stats.borrow_mut().dtls_received += 1;
        let (out, inc) = self.dtls_counts.get();
        self.dtls_counts.set((out, inc + 1));
        if let Some(hook) = &self.opts.drop_dtls {
            let datagram = DtlsDatagram {
                direction: DtlsDirection::Incoming,
                index: inc,
                bytes: packet,
            };
            if hook(&datagram) {
                self.stats.borrow_mut().dtls_dropped += 1;
                return Ok(());
            }
        }
        let handled = match self.dtls.borrow_mut().as_mut() {
            Some(dtls) => {
                dtls.handle_packet(packet, Instant::now());
                true
            }
            None => false,
        };
        if !handled {
            self.deliver(Received::Other(packet.to_vec()));
            return Ok(());
        }
        self.after_dtls();
        let transmits = self.take_dtls_transmits();
        self.send_dtls(transmits).await?;
        self.signal.notify();
        Ok(())
    }

    /// Installs SRTP once connected and surfaces application data and close_notify.
    fn after_dtls(&self) {
        let (app_data, progress) = match self.dtls.borrow_mut().as_mut() {
            Some(dtls) => (dtls.take_application_data(), dtls.progress().clone()),
            None => return,
        };
        for data in app_data {
            self.deliver(Received::DtlsData(data));
        }
        match progress {
            DtlsProgress::Connected { .. } => self.install_srtp(),
            DtlsProgress::Closed if !self.dtls_closed_reported.replace(true) => {
                self.deliver(Received::DtlsClosed)
            }
            _ => {}
        }
    }

    fn install_srtp(&self) {
        if self.srtp.borrow().is_some() || self.srtp_failure.borrow().is_some() {
            return;
        }
        let keys = match self.dtls.borrow().as_ref().map(DtlsEndpoint::progress) {
            Some(DtlsProgress::Connected {
                profile,
                keying_material,
            }) => SrtpSession::from_keying_material(*profile, keying_material, DtlsSide::Client),
            _ => return,
        };
        match keys {
            Ok(session) => *self.srtp.borrow_mut() = Some(session),
            Err(e) => *self.srtp_failure.borrow_mut() = Some(e),
        }
    }

    fn take_dtls_transmits(&self) -> Vec<Vec<u8>> {
        self.dtls
            .borrow_mut()
            .as_mut()
            .map(DtlsEndpoint::take_transmits)
            .unwrap_or_default()
    }

    async fn send_dtls(&self, datagrams: Vec<Vec<u8>>) -> Result<(), PeerError> {
        for datagram in datagrams {
            let (out, inc) = self.dtls_counts.get();
            self.dtls_counts.set((out + 1, inc));
            if let Some(hook) = &self.opts.drop_dtls {
                let d = DtlsDatagram {
                    direction: DtlsDirection::Outgoing,
                    index: out,
                    bytes: &datagram,
                };
                if hook(&d) {
                    self.stats.borrow_mut().dtls_dropped += 1;
                    continue;
                }
            }
            self.send(&datagram).await?;
            self.stats.borrow_mut().dtls_sent += 1;
        }
        Ok(())
    }

    fn on_media(&self, packet: &[u8], kind: PacketKind) {
        let result = {
            let mut srtp = self.srtp.borrow_mut();
            let Some(srtp) = srtp.as_mut() else {
                drop(srtp);
                self.deliver(Received::Other(packet.to_vec()));
                return;
            };
            if let Some(handler) = &self.opts.media_handler {
                if handler.on_media(packet, kind, srtp) {
                    return;
                }
            }
            match kind {
                PacketKind::Rtcp => srtp.unprotect_rtcp(packet),
                _ => srtp.unprotect_rtp(packet),
            }
        };
        let received = match result {
            Ok(plain) => {
                let mut stats = self.stats.borrow_mut();
                if kind == PacketKind::Rtcp {
                    stats.rtcp_received += 1;
                    Received::Rtcp(plain)
                } else {
                    stats.rtp_received += 1;
                    Received::Rtp(plain)
                }
            }
            Err(e) => {
                log::debug!("peer: cannot unprotect {kind:?}: {e}");
                self.stats.borrow_mut().srtp_errors += 1;
                Received::Other(packet.to_vec())
            }
        };
        self.deliver(received);
    }

    fn deliver(&self, received: Received) {
        let mut inbox = self.inbox.borrow_mut();
        if inbox.len() >= MAX_QUEUED {
            inbox.pop_front();
            self.stats.borrow_mut().queue_overflow += 1;
        }
        inbox.push_back(received);
        drop(inbox);
        self.signal.notify();
    }
}
