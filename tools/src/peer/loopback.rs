//! An in-process stand-in for one server WebRtcTransport: ICE-lite, DTLS server (dimpl or
//! rtc-dtls), SRTP, on loopback UDP and TCP. It lets the peer be tested end to end over real
//! sockets without the SFU, and lets a test look at the server side (which checks arrived, which
//! certificate the peer presented, what it sent once unprotected).
//!
//! It serves one peer: the first address whose check passes is the path, and DTLS only runs on
//! that path (like mediasoup's selected tuple). Its DTLS server runs without timers of its own: a
//! lost server flight is repeated when the peer's retransmitted flight arrives (RFC 6347 §4.2.4).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::io::{AsyncReadExt, AsyncWriteExt, WriteHalf};
use futures::lock::Mutex;
use glommio::net::{TcpListener, TcpStream, UdpSocket};
use serde_json::{json, Value};

use super::dtls::{
    DtlsEndpoint, DtlsEndpointConfig, DtlsFailure, DtlsProgress, DtlsStack, LocalCertificate,
};
use super::ice::{
    encode_binding_error, encode_binding_success, integrity_ok, parse_binding_request,
    ParsedBindingRequest,
};
use super::params::Fingerprint;
use super::rtp::{classify, PacketKind};
use super::signal::Signal;
use super::socket::{frame_rfc4571, Rfc4571Decoder};
use super::srtp::{DtlsSide, SrtpProfile, SrtpSession};
use super::{DtlsDatagram, DtlsDirection, DtlsDropHook, Received};
use crate::util::with_timeout;

/// How the loopback server behaves.
#[derive(Clone)]
pub struct LoopbackOptions {
    /// Server DTLS engine: dimpl (as the SFU uses) or rtc-dtls (which also knows `_32`).
    pub stack: DtlsStack,
    /// Profiles the server accepts, in its preference order (rtc-dtls only: dimpl's are fixed).
    pub srtp_profiles: Vec<SrtpProfile>,
    /// The peer's certificate must match; `None` accepts any. Usually set later, with
    /// [`LoopbackServer::set_client_fingerprint`], as connectWebRtcTransport does.
    pub client_fingerprint: Option<Fingerprint>,
    /// Drops chosen DTLS datagrams on the server side.
    pub drop_dtls: Option<DtlsDropHook>,
    /// Answer checks with this error instead of success.
    pub ice_error: Option<(u16, String)>,
    /// Present this certificate's fingerprint in the answer instead of the real one
    /// (fingerprint-mismatch tests).
    pub advertise_wrong_fingerprint: bool,
}

impl Default for LoopbackOptions {
    fn default() -> Self {
        Self {
            stack: DtlsStack::Dimpl,
            srtp_profiles: SrtpProfile::CHROME.to_vec(),
            client_fingerprint: None,
            drop_dtls: None,
            ice_error: None,
            advertise_wrong_fingerprint: false,
        }
    }
}

enum Path {
    Udp(SocketAddr),
    Tcp(SocketAddr, Rc<Mutex<WriteHalf<TcpStream>>>),
}

impl Path {
    fn addr(&self) -> SocketAddr {
        match self {
            Self::Udp(a) | Self::Tcp(a, _) => *a,
        }
    }
}

struct Inner {
    opts: LoopbackOptions,
    ufrag: String,
    password: String,
    certificate: LocalCertificate,
    udp: Rc<UdpSocket>,
    udp_addr: SocketAddr,
    tcp_addr: SocketAddr,
    client_fingerprint: RefCell<Option<Fingerprint>>,
    path: RefCell<Option<Path>>,
    checks: RefCell<Vec<ParsedBindingRequest>>,
    dtls: RefCell<Option<DtlsEndpoint>>,
    /// DTLS datagrams seen (outgoing, incoming), for the drop hook.
    dtls_counts: Cell<(usize, usize)>,
    srtp: RefCell<Option<SrtpSession>>,
    inbox: RefCell<VecDeque<Received>>,
    signal: Signal,
}

/// See the module docs. Dropping it stops its tasks and closes its sockets.
pub struct LoopbackServer {
    inner: Rc<Inner>,
    _tasks: Vec<glommio::Task<()>>,
}

impl LoopbackServer {
    /// Binds UDP and TCP on 127.0.0.1 (ephemeral ports) and starts serving.
    pub async fn start(opts: LoopbackOptions) -> io::Result<Self> {
        let udp = UdpSocket::bind("127.0.0.1:0")?;
        let udp_addr = udp.local_addr()?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let tcp_addr = listener.local_addr()?;
        let certificate = LocalCertificate::generate().map_err(io::Error::other)?;
        let creds = super::IceCredentials::random();
        let inner = Rc::new(Inner {
            client_fingerprint: RefCell::new(opts.client_fingerprint.clone()),
            opts,
            ufrag: creds.username_fragment,
            password: creds.password,
            certificate,
            udp: Rc::new(udp),
            udp_addr,
            tcp_addr,
            path: RefCell::new(None),
            checks: RefCell::new(Vec::new()),
            dtls: RefCell::new(None),
            dtls_counts: Cell::new((0, 0)),
            srtp: RefCell::new(None),
            inbox: RefCell::new(VecDeque::new()),
            signal: Signal::default(),
        });
        let udp_task = glommio::spawn_local(udp_loop(inner.clone()));
        let tcp_task = glommio::spawn_local(tcp_accept_loop(inner.clone(), listener));
        Ok(Self {
            inner,
            _tasks: vec![udp_task, tcp_task],
        })
    }

    /// A createWebRtcTransport-shaped answer for this server.
    pub fn answer(&self) -> Value {
        let i = &self.inner;
        let fingerprint = if i.opts.advertise_wrong_fingerprint {
            Fingerprint::sha256_of(b"not the server certificate")
        } else {
            i.certificate.fingerprint()
        };
        json!({
            "id": "loopback",
            "iceParameters": {"usernameFragment": i.ufrag, "password": i.password, "iceLite": true},
            "iceCandidates": [
                {"foundation": "udpcandidate", "priority": 1_076_302_079u32, "ip": "127.0.0.1",
                 "address": "127.0.0.1", "protocol": "udp", "port": i.udp_addr.port(), "type": "host"},
                {"foundation": "tcpcandidate", "priority": 1_076_276_479u32, "ip": "127.0.0.1",
                 "address": "127.0.0.1", "protocol": "tcp", "port": i.tcp_addr.port(), "type": "host",
                 "tcpType": "passive"}
            ],
            "dtlsParameters": {"role": "auto", "fingerprints": [fingerprint.to_json()]},
        })
    }

    /// What connectWebRtcTransport tells the server: the client certificate must match. Applies
    /// to a handshake that has not started yet.
    pub fn set_client_fingerprint(&self, fingerprint: Fingerprint) {
        *self.inner.client_fingerprint.borrow_mut() = Some(fingerprint);
    }

    /// Sends close_notify to the peer.
    pub async fn close_dtls(&self) {
        let transmits = match self.inner.dtls.borrow_mut().as_mut() {
            Some(dtls) => {
                dtls.close(Instant::now());
                dtls.take_transmits()
            }
            None => return,
        };
        self.inner.send_dtls(transmits).await;
        self.inner.signal.notify();
    }

    /// Waits until the DTLS association is closed (close_notify from the peer), up to `timeout`.
    pub async fn wait_dtls_closed(&self, timeout: Duration) -> bool {
        let i = &self.inner;
        with_timeout(
            timeout,
            i.signal.wait_until(|| {
                matches!(
                    i.dtls.borrow().as_ref().map(DtlsEndpoint::progress),
                    Some(DtlsProgress::Closed)
                )
                .then_some(())
            }),
        )
        .await
        .is_some()
    }

    /// The server's real certificate fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.inner.certificate.fingerprint()
    }

    /// Every binding request received, in order (valid or not).
    pub fn binding_requests(&self) -> Vec<ParsedBindingRequest> {
        self.inner.checks.borrow().clone()
    }

    /// The selected path's remote address, once a check passed.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.inner.path.borrow().as_ref().map(Path::addr)
    }

    pub fn dtls_progress(&self) -> Option<DtlsProgress> {
        self.inner
            .dtls
            .borrow()
            .as_ref()
            .map(|d| d.progress().clone())
    }

    /// The certificate the peer presented (DER), once the handshake saw it.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        self.inner
            .dtls
            .borrow()
            .as_ref()
            .and_then(|d| d.peer_certificate().map(<[u8]>::to_vec))
    }

    /// Waits until DTLS is connected (the profile) or failed (`Err`), up to `timeout`.
    pub async fn wait_dtls(&self, timeout: Duration) -> Option<Result<SrtpProfile, DtlsFailure>> {
        let i = &self.inner;
        with_timeout(
            timeout,
            i.signal.wait_until(
                || match i.dtls.borrow().as_ref().map(DtlsEndpoint::progress) {
                    Some(DtlsProgress::Connected { profile, .. }) => Some(Ok(*profile)),
                    Some(DtlsProgress::Failed(f)) => Some(Err(f.clone())),
                    _ => None,
                },
            ),
        )
        .await
    }

    /// What the peer sent (RTP/RTCP unprotected), in order.
    pub async fn recv(&self, timeout: Duration) -> Option<Received> {
        let i = &self.inner;
        with_timeout(
            timeout,
            i.signal.wait_until(|| i.inbox.borrow_mut().pop_front()),
        )
        .await
    }

    pub async fn send_rtp(&self, rtp: &[u8]) -> Result<(), String> {
        let protected = self.with_srtp(|s| s.protect_rtp(rtp))?;
        self.inner.send(&protected).await.map_err(|e| e.to_string())
    }

    pub async fn send_rtcp(&self, rtcp: &[u8]) -> Result<(), String> {
        let protected = self.with_srtp(|s| s.protect_rtcp(rtcp))?;
        self.inner.send(&protected).await.map_err(|e| e.to_string())
    }

    /// Sends `bytes` as they are on the selected path.
    pub async fn send_raw(&self, bytes: &[u8]) -> Result<(), String> {
        self.inner.send(bytes).await.map_err(|e| e.to_string())
    }

    fn with_srtp(
        &self,
        f: impl FnOnce(&mut SrtpSession) -> Result<Vec<u8>, String>,
    ) -> Result<Vec<u8>, String> {
        let mut srtp = self.inner.srtp.borrow_mut();
        f(srtp.as_mut().ok_or("SRTP not ready")?)
    }
}

async fn udp_loop(inner: Rc<Inner>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok((n, from)) = inner.udp.recv_from(&mut buf).await else {
            return;
        };
        inner.handle(buf[..n].to_vec(), Path::Udp(from)).await;
    }
}

async fn tcp_accept_loop(inner: Rc<Inner>, listener: TcpListener) {
    let mut conns = Vec::new();
    while let Ok(stream) = listener.accept().await {
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        let (mut reader, writer) = stream.split();
        let writer = Rc::new(Mutex::new(writer));
        let inner = inner.clone();
        conns.push(glommio::spawn_local(async move {
            let mut decoder = Rfc4571Decoder::new();
            let mut buf = vec![0u8; 65535];
            loop {
                while let Some(frame) = decoder.next_frame() {
                    inner.handle(frame, Path::Tcp(peer, writer.clone())).await;
                }
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => decoder.push(&buf[..n]),
                }
            }
        }));
    }
}

impl Inner {
    async fn send_on(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        match path {
            Path::Udp(addr) => self
                .udp
                .send_to(bytes, *addr)
                .await
                .map(drop)
                .map_err(io::Error::from),
            Path::Tcp(_, writer) => {
                let framed = frame_rfc4571(bytes)
                    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "too long"))?;
                let mut w = writer.lock().await;
                w.write_all(&framed).await?;
                w.flush().await
            }
        }
    }

    async fn send(&self, bytes: &[u8]) -> io::Result<()> {
        let path = match &*self.path.borrow() {
            Some(Path::Udp(a)) => Path::Udp(*a),
            Some(Path::Tcp(a, w)) => Path::Tcp(*a, w.clone()),
            None => return Err(io::Error::new(io::ErrorKind::NotConnected, "no path yet")),
        };
        self.send_on(&path, bytes).await
    }

    fn is_selected(&self, from: SocketAddr) -> bool {
        self.path
            .borrow()
            .as_ref()
            .is_some_and(|p| p.addr() == from)
    }

    async fn handle(&self, packet: Vec<u8>, path: Path) {
        match classify(&packet) {
            PacketKind::Stun => self.on_stun(&packet, path).await,
            PacketKind::Dtls if self.is_selected(path.addr()) => self.on_dtls(&packet).await,
            PacketKind::Rtp | PacketKind::Rtcp if self.is_selected(path.addr()) => {
                self.on_media(packet)
            }
            PacketKind::Unknown if self.is_selected(path.addr()) => {
                self.inbox.borrow_mut().push_back(Received::Other(packet));
                self.signal.notify();
            }
            _ => {}
        }
    }

    async fn on_stun(&self, packet: &[u8], path: Path) {
        let Some((req, message)) = parse_binding_request(packet) else {
            return;
        };
        self.checks.borrow_mut().push(req.clone());
        self.signal.notify();
        let tid = req.transaction_id;
        let response = if let Some((code, reason)) = &self.opts.ice_error {
            encode_binding_error(tid, *code, reason)
        } else if req.username.is_none() || !req.has_integrity {
            encode_binding_error(tid, 400, "Bad Request")
        } else if req
            .username
            .as_deref()
            .is_none_or(|u| u.split(':').next() != Some(self.ufrag.as_str()))
            || !integrity_ok(&message, &self.password)
        {
            encode_binding_error(tid, 401, "Unauthorized")
        } else {
            if self.path.borrow().is_none() {
                *self.path.borrow_mut() = Some(match &path {
                    Path::Udp(a) => Path::Udp(*a),
                    Path::Tcp(a, w) => Path::Tcp(*a, w.clone()),
                });
            }
            encode_binding_success(tid, path.addr(), &self.password)
        };
        match response {
            Ok(bytes) => {
                let _ = self.send_on(&path, &bytes).await;
            }
            Err(e) => log::error!("loopback: cannot encode a STUN response: {e}"),
        }
    }

    async fn on_dtls(&self, packet: &[u8]) {
        let (out, index) = self.dtls_counts.get();
        self.dtls_counts.set((out, index + 1));
        if self.drop_dtls(DtlsDirection::Incoming, index, packet) {
            return;
        }
        let now = Instant::now();
        if self.dtls.borrow().is_none() {
            let Some(remote) = self.path.borrow().as_ref().map(Path::addr) else {
                return;
            };
            let endpoint = DtlsEndpoint::new(
                DtlsEndpointConfig {
                    side: DtlsSide::Server,
                    stack: self.opts.stack,
                    certificate: &self.certificate,
                    expected_fingerprint: self.client_fingerprint.borrow().clone(),
                    srtp_profiles: self.opts.srtp_profiles.clone(),
                    retransmit: Duration::from_millis(100),
                    remote,
                },
                now,
            );
            match endpoint {
                Ok(e) => *self.dtls.borrow_mut() = Some(e),
                Err(e) => {
                    log::error!("loopback: DTLS setup: {e}");
                    return;
                }
            }
        }
        let transmits = {
            let mut dtls = self.dtls.borrow_mut();
            let Some(dtls) = dtls.as_mut() else {
                return;
            };
            dtls.handle_packet(packet, now);
            if let DtlsProgress::Connected {
                profile,
                keying_material,
            } = dtls.progress()
            {
                if self.srtp.borrow().is_none() {
                    match SrtpSession::from_keying_material(
                        *profile,
                        keying_material,
                        DtlsSide::Server,
                    ) {
                        Ok(s) => *self.srtp.borrow_mut() = Some(s),
                        Err(e) => log::error!("loopback: SRTP: {e}"),
                    }
                }
            }
            dtls.take_transmits()
        };
        self.send_dtls(transmits).await;
        self.signal.notify();
    }

    fn drop_dtls(&self, direction: DtlsDirection, index: usize, bytes: &[u8]) -> bool {
        self.opts.drop_dtls.as_ref().is_some_and(|hook| {
            hook(&DtlsDatagram {
                direction,
                index,
                bytes,
            })
        })
    }

    async fn send_dtls(&self, datagrams: Vec<Vec<u8>>) {
        for d in datagrams {
            let (index, inc) = self.dtls_counts.get();
            self.dtls_counts.set((index + 1, inc));
            if self.drop_dtls(DtlsDirection::Outgoing, index, &d) {
                continue;
            }
            let _ = self.send(&d).await;
        }
    }

    fn on_media(&self, packet: Vec<u8>) {
        let kind = classify(&packet);
        let result = self.srtp.borrow_mut().as_mut().map(|s| match kind {
            PacketKind::Rtcp => s.unprotect_rtcp(&packet),
            _ => s.unprotect_rtp(&packet),
        });
        let received = match result {
            Some(Ok(plain)) if kind == PacketKind::Rtcp => Received::Rtcp(plain),
            Some(Ok(plain)) => Received::Rtp(plain),
            _ => Received::Other(packet),
        };
        self.inbox.borrow_mut().push_back(received);
        self.signal.notify();
    }
}
