//! The shard-side WebRtcTransport: its ICE and DTLS parameters, its states and counters, and the
//! producers and consumers it carries. Packet handling (ICE checks, DTLS, SRTP) plugs in here.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::dtls_certificate::{DtlsCertificate, DtlsFingerprint};
use super::dtls_transport::{
    DtlsOutput, DtlsRole as DtlsRoleSide, DtlsState, DtlsTransport, SrtpProfile,
};
use super::ice_server::{IceEvent, IceOutcome, IceServer, IceState, TransportTuple};
use super::srtp_session::SrtpSession;
use super::stun::StunMessage;
use crate::rtp::rate_calculator::RateCalculator;
use crate::rtp::rtp_stream_recv::BITRATE_WINDOW;

/// `iceParameters` of the createWebRtcTransport answer and of `restartIce`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceParameters {
    pub username_fragment: String,
    pub password: String,
    pub ice_lite: bool,
}

impl IceParameters {
    /// Fresh credentials: 32 characters of `[0-9a-z]` each, as mediasoup generates them.
    pub fn generate() -> Self {
        Self {
            username_fragment: random_ice_string(),
            password: random_ice_string(),
            ice_lite: true,
        }
    }
}

fn random_ice_string() -> String {
    Alphanumeric
        .sample_string(&mut rand::rng(), 32)
        .to_ascii_lowercase()
}

/// One host candidate in mediasoup's shape (`ip` is the deprecated twin of `address`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidate {
    pub foundation: String,
    pub priority: u32,
    pub ip: String,
    pub address: String,
    pub protocol: String,
    pub port: u16,
    #[serde(rename = "type")]
    pub candidate_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_type: Option<String>,
}

/// mediasoup's candidate priority: host type preference 64, a local preference that starts at
/// 10000 for the first listen entry (UDP) and drops by 100 per entry (TCP), component 1.
pub fn candidate_priority(local_preference: u32) -> u32 {
    (1 << 24) * 64 + (1 << 8) * local_preference + (256 - 1)
}

/// The DTLS role a side takes; `auto` until connectWebRtcTransport decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DtlsRole {
    Auto,
    Client,
    Server,
}

/// `dtlsParameters`, both ours (in createWebRtcTransport) and the client's (in connect).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DtlsParameters {
    #[serde(default = "default_role")]
    pub role: DtlsRole,
    pub fingerprints: Vec<DtlsFingerprint>,
}

fn default_role() -> DtlsRole {
    DtlsRole::Auto
}

/// What createWebRtcTransport asks for.
#[derive(Debug, Clone, Default)]
pub struct WebRtcTransportOptions {
    /// Offer only the TCP candidate (the demo's `forceTcp`).
    pub force_tcp: bool,
    /// ICE consent timeout in seconds (mediasoup's `iceConsentTimeout`; 0 disables).
    pub ice_consent_timeout: u8,
    pub initial_available_outgoing_bitrate: u32,
    pub max_incoming_bitrate: Option<u32>,
}

/// The createWebRtcTransport answer, minus the id the signalling shard adds.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebRtcTransportData {
    pub id: String,
    pub ice_parameters: IceParameters,
    pub ice_candidates: Vec<IceCandidate>,
    pub dtls_parameters: DtlsParameters,
}

/// Where the shard's sockets are and what address to announce for them.
#[derive(Debug, Clone)]
pub struct ListenInfo {
    pub local: SocketAddr,
    pub announced_address: String,
}

/// Byte counters of one direction.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrafficCounters {
    pub bytes: u64,
    pub packets: u64,
    pub rtp_bytes: u64,
    pub rtp_packets: u64,
    pub rtcp_packets: u64,
    pub rtx_bytes: u64,
    pub probation_bytes: u64,
}

/// A datagram (or RFC 4571 frame) to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub tuple: TransportTuple,
    pub data: Vec<u8>,
}

/// What a transport tells its shard: state changes to relay, tuples and ufrags to (un)index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportEvent {
    IceState(IceState),
    DtlsState(DtlsState),
    TupleAdded(TransportTuple),
    TupleRemoved(TransportTuple),
    /// The ufrags this transport answers to changed (the old one after a restart is gone).
    UsernameFragmentsChanged,
}

/// Why a packet for this transport was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportDrop {
    /// DTLS record refused (malformed, or the association is gone).
    Dtls,
    /// RTP/RTCP before SRTP keys exist.
    SrtpNotReady,
    /// SRTP/SRTCP authentication, replay or framing failure.
    Srtp,
}

/// Outputs of one call into a transport.
#[derive(Debug, Default)]
pub struct TransportOutput {
    pub transmits: Vec<Transmit>,
    pub events: Vec<TransportEvent>,
}

/// RTCP receiver reports (keep-alives until streams exist) go out about once a second.
const RTCP_INTERVAL: Duration = Duration::from_secs(1);
/// Buffer size for DTLS output (the MTU plus room).
const DTLS_BUFFER: usize = 2048;

/// Is this RTP/RTCP datagram RTCP? (RFC 5761: payload types 192..=223 are RTCP.)
pub fn is_rtcp(packet: &[u8]) -> bool {
    packet.len() >= 2 && (192..=223).contains(&packet[1])
}

/// A WebRtcTransport living on a shard.
pub struct WebRtcTransport {
    pub id: String,
    pub options: WebRtcTransportOptions,
    pub ice_parameters: IceParameters,
    pub ice_candidates: Vec<IceCandidate>,
    pub local_dtls_parameters: DtlsParameters,
    pub remote_dtls_parameters: Option<DtlsParameters>,
    announced_address: String,
    ice: IceServer,
    /// Our DTLS role once decided (by connect, or by ICE connecting first: then server).
    dtls_role: Option<DtlsRoleSide>,
    dtls: Option<DtlsTransport>,
    dtls_state: DtlsState,
    srtp: Option<SrtpSession>,
    /// SSRC used as sender of our RTCP.
    rtcp_ssrc: u32,
    /// Next transport-wide sequence number stamped on sent RTP.
    next_transport_wide_seq: u16,
    next_rtcp: Option<Instant>,
    pub received: TrafficCounters,
    pub sent: TrafficCounters,
    rates: TransportRates,
    pub created_at: Instant,
}

/// Bitrates over mediasoup's window, per direction, all traffic and RTP only.
#[derive(Debug)]
struct TransportRates {
    recv: RateCalculator,
    send: RateCalculator,
    rtp_recv: RateCalculator,
    rtp_send: RateCalculator,
}

impl Default for TransportRates {
    fn default() -> Self {
        Self {
            recv: RateCalculator::new(BITRATE_WINDOW),
            send: RateCalculator::new(BITRATE_WINDOW),
            rtp_recv: RateCalculator::new(BITRATE_WINDOW),
            rtp_send: RateCalculator::new(BITRATE_WINDOW),
        }
    }
}

impl std::fmt::Debug for WebRtcTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcTransport")
            .field("id", &self.id)
            .field("ice_state", &self.ice.state())
            .field("dtls_state", &self.dtls_state)
            .finish_non_exhaustive()
    }
}

impl WebRtcTransport {
    pub fn new(
        id: String,
        options: WebRtcTransportOptions,
        listen: &ListenInfo,
        fingerprints: Vec<DtlsFingerprint>,
    ) -> Self {
        let mut ice_candidates = Vec::with_capacity(2);
        let address = listen.announced_address.clone();
        if !options.force_tcp {
            ice_candidates.push(IceCandidate {
                foundation: "udpcandidate".into(),
                priority: candidate_priority(10000),
                ip: address.clone(),
                address: address.clone(),
                protocol: "udp".into(),
                port: listen.local.port(),
                candidate_type: "host".into(),
                tcp_type: None,
            });
        }
        ice_candidates.push(IceCandidate {
            foundation: "tcpcandidate".into(),
            priority: candidate_priority(9900),
            ip: address.clone(),
            address,
            protocol: "tcp".into(),
            port: listen.local.port(),
            candidate_type: "host".into(),
            tcp_type: Some("passive".into()),
        });
        let ice_parameters = IceParameters::generate();
        let consent = match options.ice_consent_timeout {
            0 => None,
            secs => Some(Duration::from_secs(secs as u64)),
        };
        let ice = IceServer::new(
            ice_parameters.username_fragment.clone(),
            ice_parameters.password.clone(),
            consent,
        );
        Self {
            id,
            options,
            ice_parameters,
            ice_candidates,
            local_dtls_parameters: DtlsParameters {
                role: DtlsRole::Auto,
                fingerprints,
            },
            remote_dtls_parameters: None,
            announced_address: listen.announced_address.clone(),
            ice,
            dtls_role: None,
            dtls: None,
            dtls_state: DtlsState::New,
            srtp: None,
            rtcp_ssrc: rand::random(),
            next_transport_wide_seq: 0,
            next_rtcp: None,
            received: TrafficCounters::default(),
            sent: TrafficCounters::default(),
            rates: TransportRates::default(),
            created_at: Instant::now(),
        }
    }

    pub fn data(&self) -> WebRtcTransportData {
        WebRtcTransportData {
            id: self.id.clone(),
            ice_parameters: self.ice_parameters.clone(),
            ice_candidates: self.ice_candidates.clone(),
            dtls_parameters: self.local_dtls_parameters.clone(),
        }
    }

    pub fn ice_state(&self) -> IceState {
        self.ice.state()
    }

    pub fn dtls_state(&self) -> DtlsState {
        self.dtls_state
    }

    pub fn srtp_profile(&self) -> Option<SrtpProfile> {
        self.srtp.as_ref().map(|s| s.profile())
    }

    pub fn selected_tuple(&self) -> Option<TransportTuple> {
        self.ice.selected_tuple()
    }

    /// The ufrags this transport answers to (the current one, and the old one during a restart).
    pub fn username_fragments(&self) -> Vec<String> {
        let mut ufrags = vec![self.ice.local_username_fragment().to_string()];
        if let Some(old) = self.ice.old_username_fragment() {
            ufrags.push(old.to_string());
        }
        ufrags
    }

    /// The tuples ICE validated (the only sources DTLS and SRTP are taken from).
    pub fn tuples(&self) -> Vec<TransportTuple> {
        self.ice.tuples().to_vec()
    }

    /// Stores the client's DTLS parameters and fixes our role by mediasoup's rule: a remote
    /// `client` makes us `server`; a remote `server` or `auto` makes us `client`.
    pub fn connect(
        &mut self,
        remote: DtlsParameters,
        certificate: &DtlsCertificate,
        now: Instant,
        out: &mut TransportOutput,
    ) -> Result<(), String> {
        if self.remote_dtls_parameters.is_some() {
            return Err("connect() already called".into());
        }
        if remote.fingerprints.is_empty() {
            return Err("invalid dtlsParameters: empty fingerprints".into());
        }
        for fp in &remote.fingerprints {
            if DtlsCertificate::fingerprint_of(&fp.algorithm, &[]).is_none() {
                return Err(format!(
                    "invalid dtlsParameters: unsupported fingerprint algorithm \"{}\"",
                    fp.algorithm
                ));
            }
        }
        let role = match remote.role {
            DtlsRole::Client => DtlsRoleSide::Server,
            DtlsRole::Server | DtlsRole::Auto => DtlsRoleSide::Client,
        };
        match (&mut self.dtls, self.dtls_role) {
            // ICE connected first and we became the server: the fingerprints arrive now.
            (Some(dtls), Some(current)) => {
                if current != role {
                    return Err(
                        "invalid dtlsParameters: DTLS role conflicts with the running \
                                handshake (we already act as DTLS server)"
                            .into(),
                    );
                }
                dtls.set_remote_fingerprints(remote.fingerprints.clone())
                    .map_err(|e| e.to_string())?;
            }
            _ => self.dtls_role = Some(role),
        }
        self.local_dtls_parameters.role = match role {
            DtlsRoleSide::Server => DtlsRole::Server,
            DtlsRoleSide::Client => DtlsRole::Client,
        };
        self.remote_dtls_parameters = Some(remote);
        if self.dtls_state == DtlsState::New {
            self.set_dtls_state(DtlsState::Connecting, out);
        }
        self.maybe_start_dtls(certificate, now, out);
        self.drive_dtls(None, now, out);
        Ok(())
    }

    /// New ICE credentials; the old ufrag keeps working until the first check with the new one.
    pub fn restart_ice(&mut self, now: Instant) -> IceParameters {
        self.ice_parameters = IceParameters::generate();
        self.ice.restart_ice(
            self.ice_parameters.username_fragment.clone(),
            self.ice_parameters.password.clone(),
            now,
        );
        self.ice_parameters.clone()
    }

    /// A STUN message routed here by its USERNAME.
    pub fn handle_stun(
        &mut self,
        msg: &StunMessage<'_>,
        tuple: TransportTuple,
        len: usize,
        certificate: &DtlsCertificate,
        now: Instant,
        out: &mut TransportOutput,
    ) -> IceOutcome {
        self.received.bytes += len as u64;
        self.received.packets += 1;
        self.rates.recv.update(len, now);
        let mut buf = [0u8; 256];
        let response = self.ice.handle_stun(msg, tuple, now, &mut buf);
        if response.len > 0 {
            self.push(tuple, buf[..response.len].to_vec(), now, out);
        }
        self.drain_ice_events(certificate, now, out);
        response.outcome
    }

    /// A DTLS record from a validated tuple.
    pub fn handle_dtls(
        &mut self,
        data: &[u8],
        tuple: TransportTuple,
        now: Instant,
        out: &mut TransportOutput,
    ) -> Result<(), TransportDrop> {
        self.received.bytes += data.len() as u64;
        self.received.packets += 1;
        self.rates.recv.update(data.len(), now);
        let Some(dtls) = self.dtls.as_mut() else {
            return Err(TransportDrop::Dtls);
        };
        dtls.handle_timeout(now);
        let result = dtls.handle_packet(data, now);
        self.drive_dtls(Some(tuple), now, out);
        result.map_err(|_| TransportDrop::Dtls)
    }

    /// An SRTP or SRTCP packet from a validated tuple, decrypted in place. Returns the plain length.
    pub fn handle_srtp(&mut self, packet: &mut [u8], now: Instant) -> Result<usize, TransportDrop> {
        self.received.bytes += packet.len() as u64;
        self.received.packets += 1;
        self.rates.recv.update(packet.len(), now);
        let Some(srtp) = self.srtp.as_mut() else {
            return Err(TransportDrop::SrtpNotReady);
        };
        if is_rtcp(packet) {
            let len = srtp
                .unprotect_rtcp(packet)
                .map_err(|_| TransportDrop::Srtp)?;
            self.received.rtcp_packets += 1;
            Ok(len)
        } else {
            let len = srtp
                .unprotect_rtp(packet)
                .map_err(|_| TransportDrop::Srtp)?;
            self.received.rtp_bytes += packet.len() as u64;
            self.received.rtp_packets += 1;
            self.rates.rtp_recv.update(packet.len(), now);
            Ok(len)
        }
    }

    /// Encrypts a plain RTP packet in `buf` for sending (stamping the next transport-wide
    /// sequence number into extension `tcc_id`); the tuple to send it to, or None when the
    /// transport cannot send yet (no SRTP, no selected tuple).
    pub fn protect_rtp(
        &mut self,
        buf: &mut Vec<u8>,
        tcc_id: Option<u8>,
        now: Instant,
    ) -> Option<TransportTuple> {
        let tuple = self.ice.selected_tuple()?;
        let srtp = self.srtp.as_mut()?;
        if let Some(id) = tcc_id {
            let seq = self.next_transport_wide_seq;
            if crate::rtp::packet::set_transport_wide_seq(buf, id, seq).is_ok() {
                self.next_transport_wide_seq = seq.wrapping_add(1);
            }
        }
        let len = buf.len();
        buf.resize(len + srtp.rtp_overhead(), 0);
        match srtp.protect_rtp(buf, len) {
            Ok(n) => {
                buf.truncate(n);
                self.sent.bytes += n as u64;
                self.sent.packets += 1;
                self.sent.rtp_bytes += n as u64;
                self.sent.rtp_packets += 1;
                self.rates.send.update(n, now);
                self.rates.rtp_send.update(n, now);
                Some(tuple)
            }
            Err(_) => None,
        }
    }

    /// Takes the next transport-wide sequence number.
    pub fn next_transport_wide_seq(&mut self) -> u16 {
        let seq = self.next_transport_wide_seq;
        self.next_transport_wide_seq = seq.wrapping_add(1);
        seq
    }

    /// Encrypts a plain RTCP compound in `buf` for sending; see [`protect_rtp`](Self::protect_rtp).
    pub fn protect_rtcp(&mut self, buf: &mut Vec<u8>, now: Instant) -> Option<TransportTuple> {
        let tuple = self.ice.selected_tuple()?;
        let srtp = self.srtp.as_mut()?;
        let len = buf.len();
        buf.resize(len + srtp.rtcp_overhead(), 0);
        match srtp.protect_rtcp(buf, len) {
            Ok(n) => {
                buf.truncate(n);
                self.sent.bytes += n as u64;
                self.sent.packets += 1;
                self.sent.rtcp_packets += 1;
                self.rates.send.update(n, now);
                Some(tuple)
            }
            Err(_) => None,
        }
    }

    /// A TCP connection of one of our tuples closed.
    pub fn remove_tuple(
        &mut self,
        tuple: &TransportTuple,
        certificate: &DtlsCertificate,
        now: Instant,
        out: &mut TransportOutput,
    ) {
        self.ice.remove_tuple(tuple, now);
        self.drain_ice_events(certificate, now, out);
    }

    /// When this transport next needs [`handle_timeout`](Self::handle_timeout).
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.ice.poll_timeout(),
            self.dtls.as_ref().and_then(|d| d.poll_timeout()),
            self.next_rtcp,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Consent expiry, DTLS retransmissions, periodic RTCP.
    pub fn handle_timeout(
        &mut self,
        certificate: &DtlsCertificate,
        now: Instant,
        out: &mut TransportOutput,
    ) {
        self.ice.handle_timeout(now);
        self.drain_ice_events(certificate, now, out);
        if let Some(dtls) = self.dtls.as_mut() {
            if dtls.poll_timeout().is_some_and(|t| t <= now) {
                dtls.handle_timeout(now);
            }
        }
        self.drive_dtls(None, now, out);
        if self.next_rtcp.is_some_and(|t| t <= now) {
            self.next_rtcp = Some(now + RTCP_INTERVAL);
            self.send_receiver_report(now, out);
        }
    }

    /// Closes everything: ICE, DTLS (with close_notify) and the SRTP keys.
    pub fn close(&mut self, now: Instant, out: &mut TransportOutput) {
        if let Some(dtls) = self.dtls.as_mut() {
            dtls.close();
        }
        self.drive_dtls(None, now, out);
        for tuple in self.ice.tuples().to_vec() {
            out.events.push(TransportEvent::TupleRemoved(tuple));
        }
        self.ice.close();
        self.dtls = None;
        self.srtp = None;
        self.next_rtcp = None;
        self.dtls_state = DtlsState::Closed;
    }

    fn push(
        &mut self,
        tuple: TransportTuple,
        data: Vec<u8>,
        now: Instant,
        out: &mut TransportOutput,
    ) {
        self.sent.bytes += data.len() as u64;
        self.rates.send.update(data.len(), now);
        self.sent.packets += 1;
        out.transmits.push(Transmit { tuple, data });
    }

    fn set_dtls_state(&mut self, state: DtlsState, out: &mut TransportOutput) {
        if self.dtls_state != state {
            self.dtls_state = state;
            out.events.push(TransportEvent::DtlsState(state));
        }
    }

    fn drain_ice_events(
        &mut self,
        certificate: &DtlsCertificate,
        now: Instant,
        out: &mut TransportOutput,
    ) {
        while let Some(event) = self.ice.poll_event() {
            match event {
                IceEvent::StateChanged(state) => {
                    out.events.push(TransportEvent::IceState(state));
                    if matches!(state, IceState::Connected | IceState::Completed) {
                        // mediasoup: ICE up with the role still `auto` → we are the DTLS server.
                        if self.dtls_role.is_none() {
                            self.dtls_role = Some(DtlsRoleSide::Server);
                        }
                        self.maybe_start_dtls(certificate, now, out);
                        // A client-role DTLS queues its ClientHello now: send it.
                        self.drive_dtls(None, now, out);
                    }
                }
                IceEvent::TupleAdded(t) => out.events.push(TransportEvent::TupleAdded(t)),
                IceEvent::TupleRemoved(t) => out.events.push(TransportEvent::TupleRemoved(t)),
                IceEvent::SelectedTupleChanged(_) => {}
                IceEvent::OldUsernameFragmentRemoved => {
                    out.events.push(TransportEvent::UsernameFragmentsChanged)
                }
            }
        }
    }

    fn maybe_start_dtls(
        &mut self,
        certificate: &DtlsCertificate,
        now: Instant,
        out: &mut TransportOutput,
    ) {
        if self.dtls.is_some() || matches!(self.dtls_state, DtlsState::Failed | DtlsState::Closed) {
            return;
        }
        let Some(role) = self.dtls_role else { return };
        if !matches!(self.ice.state(), IceState::Connected | IceState::Completed) {
            return;
        }
        let fingerprints = self
            .remote_dtls_parameters
            .as_ref()
            .map(|p| p.fingerprints.clone())
            .unwrap_or_default();
        match DtlsTransport::new(certificate, role, fingerprints, now) {
            Ok(dtls) => {
                self.dtls = Some(dtls);
                self.set_dtls_state(DtlsState::Connecting, out);
            }
            Err(e) => {
                log::warn!("transport {}: cannot start DTLS: {e}", self.id);
                self.set_dtls_state(DtlsState::Failed, out);
            }
        }
    }

    /// Moves DTLS output to the wire and reacts to its events.
    fn drive_dtls(
        &mut self,
        from: Option<TransportTuple>,
        now: Instant,
        out: &mut TransportOutput,
    ) {
        let mut buf = [0u8; DTLS_BUFFER];
        loop {
            let Some(dtls) = self.dtls.as_mut() else {
                return;
            };
            match dtls.poll_output(&mut buf) {
                DtlsOutput::Packet(n) => {
                    match self
                        .ice
                        .selected_tuple()
                        .or(from)
                        .or_else(|| self.ice.tuples().first().copied())
                    {
                        Some(tuple) => self.push(tuple, buf[..n].to_vec(), now, out),
                        None => log::debug!("transport {}: DTLS output with no tuple", self.id),
                    }
                }
                DtlsOutput::Connected { profile, keys } => match SrtpSession::new(profile, &keys) {
                    Ok(srtp) => {
                        self.srtp = Some(srtp);
                        self.next_rtcp = Some(now);
                        self.set_dtls_state(DtlsState::Connected, out);
                    }
                    Err(e) => {
                        log::warn!("transport {}: SRTP setup failed: {e}", self.id);
                        self.fail_dtls(out);
                        return;
                    }
                },
                // SCTP (DataChannels) will read these.
                DtlsOutput::ApplicationData(_) => {}
                DtlsOutput::Failed(e) => {
                    log::info!("transport {}: DTLS failed: {e}", self.id);
                    self.fail_dtls(out);
                    return;
                }
                DtlsOutput::Closed => {
                    self.dtls = None;
                    self.srtp = None;
                    self.set_dtls_state(DtlsState::Closed, out);
                    return;
                }
                DtlsOutput::BufferTooSmall { needed } => {
                    log::warn!(
                        "transport {}: DTLS output of {needed} bytes dropped",
                        self.id
                    );
                    return;
                }
                DtlsOutput::None => return,
            }
        }
    }

    /// A failed DTLS association frees its keys at once.
    fn fail_dtls(&mut self, out: &mut TransportOutput) {
        self.dtls = None;
        self.srtp = None;
        self.next_rtcp = None;
        self.set_dtls_state(DtlsState::Failed, out);
    }

    /// An empty receiver report: RTCP keep-alive until streams have their own reports.
    fn send_receiver_report(&mut self, now: Instant, out: &mut TransportOutput) {
        let (Some(srtp), Some(tuple)) = (self.srtp.as_mut(), self.ice.selected_tuple()) else {
            return;
        };
        let mut buf = vec![0u8; 8 + srtp.rtcp_overhead()];
        buf[0] = 0x80; // V=2, RC=0
        buf[1] = 201; // RR
        buf[2..4].copy_from_slice(&1u16.to_be_bytes());
        buf[4..8].copy_from_slice(&self.rtcp_ssrc.to_be_bytes());
        match srtp.protect_rtcp(&mut buf, 8) {
            Ok(len) => {
                buf.truncate(len);
                self.sent.rtcp_packets += 1;
                self.push(tuple, buf, now, out);
            }
            Err(e) => log::warn!("transport {}: SRTCP protect failed: {e}", self.id),
        }
    }

    /// `getTransportStats` in mediasoup's `webrtc-transport` shape.
    pub fn stats(&self, now: Instant, now_ms: u64) -> Value {
        let mut stats = json!({
            "type": "webrtc-transport",
            "transportId": self.id,
            "timestamp": now_ms,
            "bytesReceived": self.received.bytes,
            "recvBitrate": self.rates.recv.rate(now),
            "bytesSent": self.sent.bytes,
            "sendBitrate": self.rates.send.rate(now),
            "rtpBytesReceived": self.received.rtp_bytes,
            "rtpRecvBitrate": self.rates.rtp_recv.rate(now),
            "rtpBytesSent": self.sent.rtp_bytes,
            "rtpSendBitrate": self.rates.rtp_send.rate(now),
            "rtxBytesReceived": self.received.rtx_bytes,
            "rtxRecvBitrate": 0,
            "rtxBytesSent": self.sent.rtx_bytes,
            "rtxSendBitrate": 0,
            "probationBytesSent": self.sent.probation_bytes,
            "probationSendBitrate": 0,
            "availableOutgoingBitrate": self.options.initial_available_outgoing_bitrate,
            "iceRole": "controlled",
            "iceState": self.ice.state(),
            "dtlsState": self.dtls_state.as_str(),
        });
        if let Some(max) = self.options.max_incoming_bitrate {
            stats["maxIncomingBitrate"] = json!(max);
        }
        if let Some(profile) = self.srtp_profile() {
            stats["srtpCryptoSuite"] = json!(profile.as_str());
        }
        if let Some(tuple) = self.ice.selected_tuple() {
            stats["iceSelectedTuple"] = json!({
                "localIp": self.announced_address,
                "localAddress": self.announced_address,
                "localPort": tuple.local.port(),
                "remoteIp": tuple.remote.ip().to_string(),
                "remotePort": tuple.remote.port(),
                "protocol": tuple.protocol,
            });
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen() -> ListenInfo {
        ListenInfo {
            local: "127.0.0.1:40000".parse().unwrap(),
            announced_address: "127.0.0.1".into(),
        }
    }

    #[test]
    fn candidates_match_mediasoup_priorities() {
        let t = WebRtcTransport::new("t".into(), Default::default(), &listen(), vec![]);
        assert_eq!(t.ice_candidates.len(), 2);
        assert_eq!(t.ice_candidates[0].priority, 1076302079);
        assert_eq!(t.ice_candidates[0].foundation, "udpcandidate");
        assert_eq!(t.ice_candidates[1].priority, 1076276479);
        assert_eq!(t.ice_candidates[1].tcp_type.as_deref(), Some("passive"));
        let tcp_only = WebRtcTransport::new(
            "t".into(),
            WebRtcTransportOptions {
                force_tcp: true,
                ..Default::default()
            },
            &listen(),
            vec![],
        );
        assert_eq!(tcp_only.ice_candidates.len(), 1);
        assert_eq!(tcp_only.ice_candidates[0].protocol, "tcp");
    }

    #[test]
    fn ice_credentials_are_32_lowercase_alphanumerics_and_restart_changes_them() {
        let mut t = WebRtcTransport::new("t".into(), Default::default(), &listen(), vec![]);
        let old = t.ice_parameters.clone();
        for s in [&old.username_fragment, &old.password] {
            assert_eq!(s.len(), 32);
            assert!(s
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()));
        }
        let new = t.restart_ice(Instant::now());
        assert_ne!(new.username_fragment, old.username_fragment);
        assert_ne!(new.password, old.password);
        assert!(new.ice_lite);
        // During the restart both ufrags are answered.
        assert_eq!(
            t.username_fragments(),
            vec![new.username_fragment, old.username_fragment]
        );
    }

    #[test]
    fn connect_picks_the_role_and_refuses_a_second_call() {
        let cert = DtlsCertificate::generate().unwrap();
        let mut t = WebRtcTransport::new("t".into(), Default::default(), &listen(), vec![]);
        let fp = DtlsFingerprint {
            algorithm: "sha-256".into(),
            value: "AA".into(),
        };
        let mut out = TransportOutput::default();
        let now = Instant::now();
        let empty = DtlsParameters {
            role: DtlsRole::Client,
            fingerprints: vec![],
        };
        assert!(t.connect(empty, &cert, now, &mut out).is_err());
        let bogus = DtlsParameters {
            role: DtlsRole::Client,
            fingerprints: vec![DtlsFingerprint {
                algorithm: "md5".into(),
                value: "AA".into(),
            }],
        };
        assert!(t.connect(bogus, &cert, now, &mut out).is_err());
        let good = DtlsParameters {
            role: DtlsRole::Client,
            fingerprints: vec![fp],
        };
        t.connect(good.clone(), &cert, now, &mut out).unwrap();
        assert_eq!(t.local_dtls_parameters.role, DtlsRole::Server);
        assert_eq!(t.dtls_state(), DtlsState::Connecting);
        assert_eq!(
            out.events,
            vec![TransportEvent::DtlsState(DtlsState::Connecting)]
        );
        // No ICE yet: nothing is sent, DTLS waits for ICE.
        assert!(out.transmits.is_empty());
        assert!(t.connect(good, &cert, now, &mut out).is_err());
    }

    #[test]
    fn srtp_before_dtls_is_refused() {
        let mut t = WebRtcTransport::new("t".into(), Default::default(), &listen(), vec![]);
        let mut packet = [0x80u8, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 9, 9, 9, 9];
        assert_eq!(
            t.handle_srtp(&mut packet, Instant::now()),
            Err(TransportDrop::SrtpNotReady)
        );
        assert!(is_rtcp(&[0x80, 200, 0, 6]));
        assert!(!is_rtcp(&[0x80, 96, 0, 6]));
    }
}
