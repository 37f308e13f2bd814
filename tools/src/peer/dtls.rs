//! DTLS for the peer, sans-IO: one [`DtlsEndpoint`] over either of two engines.
//!
//! - **dimpl 0.9** (the default): DTLS 1.2, ECDHE-ECDSA, extended master secret, `use_srtp` with
//!   AEAD_AES_256_GCM, AEAD_AES_128_GCM and AES_CM_128_HMAC_SHA1_80 — what Chrome offers. dimpl
//!   hard-codes that offer, so it cannot offer a single profile, nor `_32` at all.
//! - **rtc-dtls 0.21** (webrtc-rs): same protocol, but the `use_srtp` offer is configurable, so it
//!   carries every other profile set (one profile alone, or all four including `_32`).
//!
//! [`DtlsStack::Auto`] picks dimpl when the requested profiles are exactly dimpl's set, rtc-dtls
//! otherwise. Neither engine is the server's code: the server uses dimpl through its own driver.
//!
//! The peer certificate is checked against the expected sha-256 fingerprint as soon as the engine
//! surfaces it (dimpl's `PeerCert`, rtc-dtls's verify callback), which is before our next flight
//! leaves; a mismatch fails the handshake and no keys are ever exported.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use dimpl::{Config as DimplConfig, Dtls, Output};
use futures_rustls::pki_types::CertificateDer;
use rtc_dtls::cipher_suite::CipherSuiteId;
use rtc_dtls::config::{ClientAuthType, ConfigBuilder, ExtendedMasterSecretType};
use rtc_dtls::crypto::{Certificate as RtcCertificate, CryptoPrivateKey};
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc_shared::TransportProtocol;

use super::params::Fingerprint;
use super::srtp::{crypto_provider, DtlsSide, SrtpProfile};

/// RFC 5764 §4.2 exporter label.
const SRTP_EXPORTER_LABEL: &str = "EXTRACTOR-dtls_srtp";

/// Which DTLS implementation runs the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DtlsStack {
    /// dimpl when the profile set is exactly [`SrtpProfile::CHROME`], rtc-dtls otherwise.
    #[default]
    Auto,
    /// dimpl; only with exactly [`SrtpProfile::CHROME`] (in any order).
    Dimpl,
    /// rtc-dtls; any non-empty profile set.
    RtcDtls,
}

impl DtlsStack {
    /// The concrete stack for `profiles`, or why that combination cannot be offered.
    pub fn resolve(self, profiles: &[SrtpProfile]) -> Result<DtlsStack, String> {
        if profiles.is_empty() {
            return Err("no SRTP profile to offer".into());
        }
        let dimpl_set = SrtpProfile::CHROME.iter().all(|p| profiles.contains(p))
            && profiles.iter().all(|p| SrtpProfile::CHROME.contains(p));
        match self {
            Self::Auto if dimpl_set => Ok(Self::Dimpl),
            Self::Auto => Ok(Self::RtcDtls),
            Self::Dimpl if dimpl_set => Ok(Self::Dimpl),
            Self::Dimpl => Err(format!(
                "dimpl always offers exactly {:?}; use DtlsStack::RtcDtls or Auto for {profiles:?}",
                SrtpProfile::CHROME
            )),
            Self::RtcDtls => Ok(Self::RtcDtls),
        }
    }
}

/// Our self-signed ECDSA P-256 certificate (what browsers use), usable by both engines.
pub struct LocalCertificate {
    der: Vec<u8>,
    key: rcgen::KeyPair,
}

impl LocalCertificate {
    pub fn generate() -> Result<Self, String> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| e.to_string())?;
        let params = rcgen::CertificateParams::new(vec!["shardcast-peer".to_string()])
            .map_err(|e| e.to_string())?;
        let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
        Ok(Self {
            der: cert.der().to_vec(),
            key,
        })
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::sha256_of(&self.der)
    }

    fn for_dimpl(&self) -> dimpl::DtlsCertificate {
        dimpl::DtlsCertificate {
            certificate: self.der.clone(),
            private_key: self.key.serialize_der(),
        }
    }

    fn for_rtc_dtls(&self) -> Result<RtcCertificate, String> {
        let crypto = crypto_provider()?.crypto();
        Ok(RtcCertificate {
            certificate: vec![CertificateDer::from(self.der.clone())],
            private_key: CryptoPrivateKey::from_key_pair(&self.key, crypto)
                .map_err(|e| e.to_string())?,
        })
    }
}

impl fmt::Debug for LocalCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCertificate")
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

/// Which way a DTLS datagram is going, for the drop hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsDirection {
    Outgoing,
    Incoming,
}

/// One DTLS datagram offered to [`DtlsDropHook`].
#[derive(Debug, Clone, Copy)]
pub struct DtlsDatagram<'a> {
    pub direction: DtlsDirection,
    /// 0-based count of DTLS datagrams seen so far in this direction (dropped ones included).
    pub index: usize,
    pub bytes: &'a [u8],
}

impl DtlsDatagram<'_> {
    pub fn records(&self) -> Vec<DtlsRecord> {
        dtls_records(self.bytes)
    }

    /// Whether the datagram carries a plaintext handshake message of `msg_type`
    /// (1 ClientHello, 2 ServerHello, 3 HelloVerifyRequest, 11 Certificate, 16 ClientKeyExchange…).
    pub fn has_handshake(&self, msg_type: u8) -> bool {
        self.records()
            .iter()
            .any(|r| r.handshake_type == Some(msg_type))
    }
}

/// Returns `true` to drop the datagram (loss tests). Sees every DTLS datagram the transport sends
/// or receives, in order.
pub type DtlsDropHook = std::rc::Rc<dyn Fn(&DtlsDatagram<'_>) -> bool>;

/// One DTLS record header (RFC 6347 §4.1), with the handshake message type when it is readable
/// (epoch 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtlsRecord {
    /// 20 ChangeCipherSpec, 21 Alert, 22 Handshake, 23 ApplicationData.
    pub content_type: u8,
    pub epoch: u16,
    pub sequence_number: u64,
    pub handshake_type: Option<u8>,
}

/// The records of a DTLS datagram (stops at the first truncated one).
pub fn dtls_records(datagram: &[u8]) -> Vec<DtlsRecord> {
    let mut out = Vec::new();
    let mut rest = datagram;
    while rest.len() >= 13 {
        let content_type = rest[0];
        let epoch = u16::from_be_bytes([rest[3], rest[4]]);
        let mut seq = [0u8; 8];
        seq[2..].copy_from_slice(&rest[5..11]);
        let len = usize::from(u16::from_be_bytes([rest[11], rest[12]]));
        let Some(body) = rest.get(13..13 + len) else {
            break;
        };
        let handshake_type = (content_type == 22 && epoch == 0)
            .then(|| body.first().copied())
            .flatten();
        out.push(DtlsRecord {
            content_type,
            epoch,
            sequence_number: u64::from_be_bytes(seq),
            handshake_type,
        });
        rest = &rest[13 + len..];
    }
    out
}

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtlsFailure {
    /// The peer's certificate is not the one its fingerprint names.
    FingerprintMismatch { expected: String, got: String },
    /// The handshake completed without a usable SRTP profile.
    NoSrtpProfile,
    /// An engine error or a fatal alert.
    Engine(String),
}

impl fmt::Display for DtlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FingerprintMismatch { expected, got } => {
                write!(f, "fingerprint mismatch: expected {expected}, got {got}")
            }
            Self::NoSrtpProfile => f.write_str("no SRTP profile negotiated"),
            Self::Engine(e) => write!(f, "DTLS error: {e}"),
        }
    }
}

/// Where the handshake is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtlsProgress {
    Connecting,
    Connected {
        profile: SrtpProfile,
        keying_material: Vec<u8>,
    },
    Failed(DtlsFailure),
    Closed,
}

/// How an endpoint is set up.
pub struct DtlsEndpointConfig<'a> {
    pub side: DtlsSide,
    pub stack: DtlsStack,
    pub certificate: &'a LocalCertificate,
    /// The peer certificate must match this; `None` accepts any (a server that has not been told).
    pub expected_fingerprint: Option<Fingerprint>,
    pub srtp_profiles: Vec<SrtpProfile>,
    /// First retransmission timeout (doubling after).
    pub retransmit: Duration,
    /// The remote address (rtc-dtls keys associations by it).
    pub remote: SocketAddr,
}

/// What rtc-dtls's verify callback saw.
#[derive(Default)]
struct RtcVerified {
    certificate: Option<Vec<u8>>,
    mismatch: Option<String>,
}

enum Engine {
    Dimpl(Box<Dtls>),
    Rtc {
        endpoint: Box<Endpoint>,
        remote: SocketAddr,
        /// Filled by the verify callback, which cannot return anything richer than an error.
        verified: Arc<Mutex<RtcVerified>>,
        /// `HandshakeComplete` seen.
        completed: bool,
        /// Only a client initiates.
        client_config: Option<Arc<rtc_dtls::config::HandshakeConfig>>,
    },
}

/// A sans-IO DTLS endpoint: feed datagrams and time, take datagrams to send and the progress.
pub struct DtlsEndpoint {
    engine: Engine,
    side: DtlsSide,
    expected: Option<Fingerprint>,
    progress: DtlsProgress,
    transmits: Vec<Vec<u8>>,
    app_data: Vec<Vec<u8>>,
    peer_cert: Option<Vec<u8>>,
    dimpl_keys: Option<(SrtpProfile, Vec<u8>)>,
    dimpl_connected: bool,
    timeout: Option<Instant>,
}

impl DtlsEndpoint {
    pub fn new(cfg: DtlsEndpointConfig<'_>, now: Instant) -> Result<Self, String> {
        let stack = cfg.stack.resolve(&cfg.srtp_profiles)?;
        let engine = match stack {
            DtlsStack::Dimpl => {
                let config = DimplConfig::builder()
                    .flight_start_rto(cfg.retransmit)
                    .flight_retries(8)
                    .require_client_certificate(true)
                    .build()
                    .map_err(|e| e.to_string())?;
                let mut dtls = Dtls::new_12(Arc::new(config), cfg.certificate.for_dimpl(), now);
                dtls.set_active(cfg.side == DtlsSide::Client);
                Engine::Dimpl(Box::new(dtls))
            }
            _ => Self::rtc_engine(&cfg)?,
        };
        let mut endpoint = Self {
            engine,
            side: cfg.side,
            expected: cfg.expected_fingerprint,
            progress: DtlsProgress::Connecting,
            transmits: Vec::new(),
            app_data: Vec::new(),
            peer_cert: None,
            dimpl_keys: None,
            dimpl_connected: false,
            timeout: None,
        };
        endpoint.start(now);
        Ok(endpoint)
    }

    fn rtc_engine(cfg: &DtlsEndpointConfig<'_>) -> Result<Engine, String> {
        let provider = crypto_provider()?.clone();
        let verified = Arc::new(Mutex::new(RtcVerified::default()));
        let verify = {
            let expected = cfg.expected_fingerprint.clone();
            let verified = verified.clone();
            Arc::new(
                move |certs: &[Vec<u8>],
                      _: &[CertificateDer<'static>]|
                      -> Result<(), rtc_shared::error::Error> {
                    let der = certs.first().cloned();
                    let accepted = match (&expected, &der) {
                        (None, _) => true,
                        (Some(expected), Some(der)) => expected.matches(der),
                        (Some(_), None) => false,
                    };
                    let got = der
                        .as_deref()
                        .map(|d| Fingerprint::sha256_of(d).value())
                        .unwrap_or_else(|| "no certificate".into());
                    if let Ok(mut v) = verified.lock() {
                        if accepted {
                            v.certificate = der;
                        } else {
                            v.mismatch = Some(got.clone());
                        }
                    }
                    if accepted {
                        Ok(())
                    } else {
                        Err(rtc_shared::error::Error::Other(format!(
                            "fingerprint mismatch: got {got}"
                        )))
                    }
                },
            )
        };
        let profiles = cfg
            .srtp_profiles
            .iter()
            .map(|p| SrtpProtectionProfile::from(p.use_srtp_id()))
            .collect();
        let builder = ConfigBuilder::default()
            .with_crypto_provider(provider)
            .with_certificates(vec![cfg.certificate.for_rtc_dtls()?])
            .with_cipher_suites(vec![
                CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Gcm_Sha256,
                CipherSuiteId::Tls_Ecdhe_Ecdsa_With_ChaCha20_Poly1305_Sha256,
            ])
            .with_srtp_protection_profiles(profiles)
            .with_extended_master_secret(ExtendedMasterSecretType::Require)
            .with_flight_interval(cfg.retransmit)
            .with_insecure_skip_verify(true)
            .with_client_auth(ClientAuthType::RequireAnyClientCert)
            .with_verify_peer_certificate(Some(verify));
        let is_client = cfg.side == DtlsSide::Client;
        let config = Arc::new(
            builder
                .build(is_client, Some(cfg.remote))
                .map_err(|e| e.to_string())?,
        );
        let local: SocketAddr = ([0, 0, 0, 0], 0).into();
        let (endpoint, client_config) = if is_client {
            (
                Endpoint::new(local, TransportProtocol::UDP, None),
                Some(config),
            )
        } else {
            (
                Endpoint::new(local, TransportProtocol::UDP, Some(config)),
                None,
            )
        };
        Ok(Engine::Rtc {
            endpoint: Box::new(endpoint),
            remote: cfg.remote,
            verified,
            completed: false,
            client_config,
        })
    }

    fn start(&mut self, now: Instant) {
        let result = match &mut self.engine {
            Engine::Dimpl(dtls) => dtls.handle_timeout(now).map_err(|e| e.to_string()),
            Engine::Rtc {
                endpoint,
                remote,
                client_config,
                ..
            } => match client_config {
                Some(config) => endpoint
                    .connect(now, *remote, config.clone(), None)
                    .map_err(|e| e.to_string()),
                None => Ok(()),
            },
        };
        self.after(result);
    }

    /// Which engine runs this endpoint.
    pub fn stack(&self) -> DtlsStack {
        match self.engine {
            Engine::Dimpl(_) => DtlsStack::Dimpl,
            Engine::Rtc { .. } => DtlsStack::RtcDtls,
        }
    }

    pub fn progress(&self) -> &DtlsProgress {
        &self.progress
    }

    /// The peer's certificate (DER), once seen and accepted.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        self.peer_cert.as_deref()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !matches!(self.progress, DtlsProgress::Connecting) {
            return None;
        }
        match &self.engine {
            Engine::Dimpl(_) => self.timeout,
            Engine::Rtc {
                endpoint, remote, ..
            } => endpoint.poll_timeout(remote),
        }
    }

    /// Datagrams to send, in order.
    pub fn take_transmits(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.transmits)
    }

    /// Application data received (SCTP in WebRTC), in order.
    pub fn take_application_data(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.app_data)
    }

    pub fn handle_packet(&mut self, packet: &[u8], now: Instant) {
        if matches!(
            self.progress,
            DtlsProgress::Failed(_) | DtlsProgress::Closed
        ) {
            return;
        }
        let result = match &mut self.engine {
            Engine::Dimpl(dtls) => dtls
                .handle_timeout(now)
                .and_then(|()| dtls.handle_packet(packet))
                .map_err(|e| e.to_string()),
            Engine::Rtc {
                endpoint,
                remote,
                completed,
                ..
            } => match endpoint.read(now, *remote, None, BytesMut::from(packet)) {
                Ok(events) => {
                    for event in events {
                        match event {
                            EndpointEvent::HandshakeComplete => *completed = true,
                            EndpointEvent::ApplicationData(data) => {
                                self.app_data.push(data.to_vec())
                            }
                            EndpointEvent::PeerClosed => self.progress = DtlsProgress::Closed,
                            _ => {}
                        }
                    }
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            },
        };
        self.after(result);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if !matches!(self.progress, DtlsProgress::Connecting) {
            return;
        }
        let result = match &mut self.engine {
            Engine::Dimpl(dtls) => dtls.handle_timeout(now).map_err(|e| e.to_string()),
            Engine::Rtc {
                endpoint, remote, ..
            } => endpoint
                .handle_timeout(*remote, now)
                .map_err(|e| e.to_string()),
        };
        self.after(result);
    }

    /// Sends close_notify (if connected) and stops.
    pub fn close(&mut self, now: Instant) {
        if matches!(
            self.progress,
            DtlsProgress::Closed | DtlsProgress::Failed(_)
        ) {
            return;
        }
        let result = match &mut self.engine {
            Engine::Dimpl(dtls) => dtls.close().map_err(|e| e.to_string()),
            Engine::Rtc {
                endpoint, remote, ..
            } => {
                endpoint.stop(now, *remote);
                Ok(())
            }
        };
        self.after(result);
        if !matches!(self.progress, DtlsProgress::Failed(_)) {
            self.progress = DtlsProgress::Closed;
        }
    }

    /// Drains the engine after a call and folds `result` into the progress.
    fn after(&mut self, result: Result<(), String>) {
        match &mut self.engine {
            Engine::Dimpl(_) => self.drain_dimpl(),
            Engine::Rtc { endpoint, .. } => {
                while let Some(t) = endpoint.poll_transmit() {
                    self.transmits.push(t.message.to_vec());
                }
            }
        }
        if let Err(e) = result {
            self.on_error(e);
        }
        if matches!(self.progress, DtlsProgress::Connecting)
            && matches!(
                self.engine,
                Engine::Rtc {
                    completed: true,
                    ..
                }
            )
        {
            self.on_rtc_connected();
        }
        if matches!(self.progress, DtlsProgress::Failed(_)) {
            // Nothing after a failure: in particular not the flight that would follow a bad
            // certificate.
            self.transmits.clear();
        }
    }

    fn on_error(&mut self, error: String) {
        if let Engine::Rtc { verified, .. } = &self.engine {
            if let Some(got) = verified.lock().ok().and_then(|mut v| v.mismatch.take()) {
                let expected = self
                    .expected
                    .as_ref()
                    .map(Fingerprint::value)
                    .unwrap_or_default();
                self.fail(DtlsFailure::FingerprintMismatch { expected, got });
                return;
            }
        }
        match self.progress {
            DtlsProgress::Connecting => self.fail(DtlsFailure::Engine(error)),
            // After the handshake a bad record is the peer's problem, not a reason to stop.
            _ => log::debug!("peer DTLS: {error}"),
        }
    }

    fn fail(&mut self, failure: DtlsFailure) {
        if !matches!(self.progress, DtlsProgress::Failed(_)) {
            log::debug!("peer DTLS failed: {failure}");
            self.progress = DtlsProgress::Failed(failure);
        }
    }

    fn on_rtc_connected(&mut self) {
        let Engine::Rtc {
            endpoint,
            remote,
            verified,
            ..
        } = &self.engine
        else {
            return;
        };
        let Some(state) = endpoint.get_connection_state(*remote) else {
            self.fail(DtlsFailure::Engine("association vanished".into()));
            return;
        };
        let certificate = verified.lock().ok().and_then(|v| v.certificate.clone());
        if certificate.is_none() && self.expected.is_some() {
            // Never connected without a checked certificate.
            self.fail(DtlsFailure::Engine(
                "connected without a peer certificate".into(),
            ));
            return;
        }
        let profile = SrtpProfile::from_use_srtp_id(state.srtp_protection_profile() as u16);
        let Some(profile) = profile
            .filter(|_| state.srtp_protection_profile() != SrtpProtectionProfile::Unsupported)
        else {
            self.fail(DtlsFailure::NoSrtpProfile);
            return;
        };
        match state.export_keying_material(SRTP_EXPORTER_LABEL, &[], profile.keying_material_len())
        {
            Ok(material) => {
                self.peer_cert = certificate;
                self.progress = DtlsProgress::Connected {
                    profile,
                    keying_material: material.as_ref().to_vec(),
                }
            }
            Err(e) => self.fail(DtlsFailure::Engine(format!("export: {e}"))),
        }
    }

    fn drain_dimpl(&mut self) {
        let Engine::Dimpl(dtls) = &mut self.engine else {
            return;
        };
        let mut buf = vec![0u8; 2048];
        loop {
            match dtls.poll_output(&mut buf) {
                Output::Packet(p) if !matches!(self.progress, DtlsProgress::Failed(_)) => {
                    self.transmits.push(p.to_vec());
                }
                Output::BufferTooSmall { needed } => buf.resize(needed, 0),
                Output::Timeout(t) => {
                    self.timeout = Some(t);
                    break;
                }
                Output::PeerCert(der) => {
                    let der = der.to_vec();
                    match &self.expected {
                        Some(expected) if !expected.matches(&der) => {
                            let failure = DtlsFailure::FingerprintMismatch {
                                expected: expected.value(),
                                got: Fingerprint::sha256_of(&der).value(),
                            };
                            log::debug!("peer DTLS failed: {failure}");
                            self.progress = DtlsProgress::Failed(failure);
                        }
                        _ => self.peer_cert = Some(der),
                    }
                }
                Output::KeyingMaterial(material, profile) => {
                    let profile = match profile {
                        dimpl::SrtpProfile::AEAD_AES_256_GCM => Some(SrtpProfile::AeadAes256Gcm),
                        dimpl::SrtpProfile::AEAD_AES_128_GCM => Some(SrtpProfile::AeadAes128Gcm),
                        dimpl::SrtpProfile::AES128_CM_SHA1_80 => {
                            Some(SrtpProfile::AesCm128HmacSha1_80)
                        }
                        _ => None,
                    };
                    // An unknown profile leaves no keys: the handshake then fails below.
                    self.dimpl_keys = profile.map(|p| (p, material.to_vec()));
                }
                Output::Connected => self.dimpl_connected = true,
                Output::ApplicationData(data) => self.app_data.push(data.to_vec()),
                Output::CloseNotify if !matches!(self.progress, DtlsProgress::Failed(_)) => {
                    self.progress = DtlsProgress::Closed;
                }
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
        if matches!(self.progress, DtlsProgress::Connecting) && self.dimpl_connected {
            match (self.peer_cert.is_some(), self.dimpl_keys.take()) {
                // Never connected without a checked certificate.
                (false, _) => self.fail(DtlsFailure::Engine(
                    "connected without a peer certificate".into(),
                )),
                (true, None) => self.fail(DtlsFailure::NoSrtpProfile),
                (true, Some((profile, keying_material))) => {
                    self.progress = DtlsProgress::Connected {
                        profile,
                        keying_material,
                    }
                }
            }
        }
    }

    pub fn side(&self) -> DtlsSide {
        self.side
    }
}

impl fmt::Debug for DtlsEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsEndpoint")
            .field("stack", &self.stack())
            .field("side", &self.side)
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    struct Pair {
        client: DtlsEndpoint,
        server: DtlsEndpoint,
        client_cert: LocalCertificate,
        server_cert: LocalCertificate,
    }

    fn pair(
        client_stack: DtlsStack,
        client_profiles: &[SrtpProfile],
        server_stack: DtlsStack,
        server_profiles: &[SrtpProfile],
        wrong_server_fingerprint: bool,
    ) -> Pair {
        let client_cert = LocalCertificate::generate().unwrap();
        let server_cert = LocalCertificate::generate().unwrap();
        let now = Instant::now();
        let expected = if wrong_server_fingerprint {
            Fingerprint::sha256_of(b"someone else")
        } else {
            server_cert.fingerprint()
        };
        let client = DtlsEndpoint::new(
            DtlsEndpointConfig {
                side: DtlsSide::Client,
                stack: client_stack,
                certificate: &client_cert,
                expected_fingerprint: Some(expected),
                srtp_profiles: client_profiles.to_vec(),
                retransmit: Duration::from_millis(100),
                remote: addr(2),
            },
            now,
        )
        .unwrap();
        let server = DtlsEndpoint::new(
            DtlsEndpointConfig {
                side: DtlsSide::Server,
                stack: server_stack,
                certificate: &server_cert,
                expected_fingerprint: Some(client_cert.fingerprint()),
                srtp_profiles: server_profiles.to_vec(),
                retransmit: Duration::from_millis(100),
                remote: addr(1),
            },
            now,
        )
        .unwrap();
        Pair {
            client,
            server,
            client_cert,
            server_cert,
        }
    }

    /// Shuttles datagrams (in memory) until neither side has anything to send.
    fn run(p: &mut Pair) {
        let now = Instant::now();
        for _ in 0..50 {
            let to_server = p.client.take_transmits();
            let to_client = p.server.take_transmits();
            if to_server.is_empty() && to_client.is_empty() {
                return;
            }
            for d in to_server {
                p.server.handle_packet(&d, now);
            }
            for d in to_client {
                p.client.handle_packet(&d, now);
            }
        }
        panic!("handshake did not settle");
    }

    fn connected(e: &DtlsEndpoint) -> Option<(SrtpProfile, Vec<u8>)> {
        match e.progress() {
            DtlsProgress::Connected {
                profile,
                keying_material,
            } => Some((*profile, keying_material.clone())),
            _ => None,
        }
    }

    #[test]
    fn stack_resolution() {
        use SrtpProfile::*;
        assert_eq!(
            DtlsStack::Auto.resolve(&SrtpProfile::CHROME),
            Ok(DtlsStack::Dimpl)
        );
        let reordered = [AesCm128HmacSha1_80, AeadAes256Gcm, AeadAes128Gcm];
        assert_eq!(DtlsStack::Auto.resolve(&reordered), Ok(DtlsStack::Dimpl));
        assert_eq!(
            DtlsStack::Auto.resolve(&[AeadAes128Gcm]),
            Ok(DtlsStack::RtcDtls)
        );
        assert_eq!(
            DtlsStack::Auto.resolve(&SrtpProfile::ALL),
            Ok(DtlsStack::RtcDtls)
        );
        assert!(DtlsStack::Dimpl.resolve(&[AeadAes128Gcm]).is_err());
        assert!(DtlsStack::Auto.resolve(&[]).is_err());
    }

    /// Both client stacks against a dimpl server (the SFU's engine): every profile dimpl knows,
    /// alone, and the Chrome set; both sides export the same keys and see each other's cert.
    #[test]
    fn clients_against_a_dimpl_server() {
        let mut cases = vec![(
            DtlsStack::Dimpl,
            SrtpProfile::CHROME.to_vec(),
            SrtpProfile::AeadAes256Gcm,
        )];
        for p in SrtpProfile::CHROME {
            cases.push((DtlsStack::RtcDtls, vec![p], p));
        }
        cases.push((
            DtlsStack::RtcDtls,
            SrtpProfile::ALL.to_vec(),
            SrtpProfile::AeadAes256Gcm,
        ));
        for (stack, offer, expected) in cases {
            let mut p = pair(stack, &offer, DtlsStack::Dimpl, &SrtpProfile::CHROME, false);
            run(&mut p);
            let (cp, ck) = connected(&p.client)
                .unwrap_or_else(|| panic!("{stack:?} {offer:?}: client {:?}", p.client.progress()));
            let (sp, sk) = connected(&p.server)
                .unwrap_or_else(|| panic!("{stack:?} {offer:?}: server {:?}", p.server.progress()));
            assert_eq!((cp, sp), (expected, expected), "{stack:?} {offer:?}");
            assert_eq!(ck, sk);
            assert_eq!(ck.len(), expected.keying_material_len());
            assert_eq!(p.client.peer_certificate(), Some(p.server_cert.der()));
            assert_eq!(p.server.peer_certificate(), Some(p.client_cert.der()));
        }
    }

    /// `_32` only works against a server that knows it; against dimpl the handshake fails.
    #[test]
    fn sha1_32_needs_a_server_that_knows_it() {
        let only_32 = [SrtpProfile::AesCm128HmacSha1_32];
        let mut p = pair(
            DtlsStack::Auto,
            &only_32,
            DtlsStack::RtcDtls,
            &SrtpProfile::ALL,
            false,
        );
        run(&mut p);
        assert_eq!(
            connected(&p.client).map(|c| c.0),
            Some(SrtpProfile::AesCm128HmacSha1_32)
        );
        assert_eq!(
            connected(&p.server).map(|c| c.0),
            Some(SrtpProfile::AesCm128HmacSha1_32)
        );

        let mut p = pair(
            DtlsStack::Auto,
            &only_32,
            DtlsStack::Dimpl,
            &SrtpProfile::CHROME,
            false,
        );
        run(&mut p);
        // dimpl answers without use_srtp; the client gives up at once.
        assert!(
            matches!(
                p.client.progress(),
                DtlsProgress::Failed(DtlsFailure::Engine(_))
            ),
            "{:?}",
            p.client.progress()
        );
        assert!(connected(&p.server).is_none());
    }

    /// A dimpl client against an rtc-dtls server too (both engines interoperate both ways).
    #[test]
    fn dimpl_client_against_an_rtc_dtls_server() {
        let mut p = pair(
            DtlsStack::Dimpl,
            &SrtpProfile::CHROME,
            DtlsStack::RtcDtls,
            &SrtpProfile::ALL,
            false,
        );
        run(&mut p);
        let (cp, ck) = connected(&p.client).expect("client connected");
        let (sp, sk) = connected(&p.server).expect("server connected");
        assert_eq!(cp, sp);
        assert_eq!(ck, sk);
    }

    /// A server certificate that does not match the expected fingerprint fails the client before
    /// it sends its next flight, with both stacks; no keys are exported.
    #[test]
    fn fingerprint_mismatch_fails_the_client() {
        for stack in [DtlsStack::Dimpl, DtlsStack::RtcDtls] {
            let mut p = pair(
                stack,
                &SrtpProfile::CHROME,
                DtlsStack::Dimpl,
                &SrtpProfile::CHROME,
                true,
            );
            run(&mut p);
            match p.client.progress() {
                DtlsProgress::Failed(DtlsFailure::FingerprintMismatch { got, .. }) => {
                    assert_eq!(*got, p.server_cert.fingerprint().value(), "{stack:?}")
                }
                other => panic!("{stack:?}: {other:?}"),
            }
            assert!(connected(&p.server).is_none(), "{stack:?}");
            assert!(p.client.peer_certificate().is_none(), "{stack:?}");
        }
    }

    /// What a ClientHello offers: version, cipher suites, extension types, use_srtp profile ids.
    fn client_hello_offer(datagram: &[u8]) -> (u16, Vec<u16>, Vec<u16>, Vec<u16>) {
        let u16_at = |b: &[u8], i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let body = &datagram[13 + 12..];
        let version = u16_at(body, 0);
        let mut i = 2 + 32;
        i += 1 + usize::from(body[i]); // session id
        i += 1 + usize::from(body[i]); // cookie
        let suites_len = usize::from(u16_at(body, i));
        let suites = (0..suites_len / 2)
            .map(|k| u16_at(body, i + 2 + 2 * k))
            .collect();
        i += 2 + suites_len;
        i += 1 + usize::from(body[i]); // compression methods
        let end = i + 2 + usize::from(u16_at(body, i));
        i += 2;
        let (mut types, mut srtp) = (Vec::new(), Vec::new());
        while i + 4 <= end {
            let (t, len) = (u16_at(body, i), usize::from(u16_at(body, i + 2)));
            if t == 0x000e {
                let n = usize::from(u16_at(body, i + 4));
                srtp = (0..n / 2).map(|k| u16_at(body, i + 6 + 2 * k)).collect();
            }
            types.push(t);
            i += 4 + len;
        }
        (version, suites, types, srtp)
    }

    /// Both stacks send a Chrome-like DTLS 1.2 ClientHello: ECDHE-ECDSA suites only, extended
    /// master secret, and use_srtp with exactly the requested profiles.
    #[test]
    fn client_hello_offers_what_was_asked() {
        use SrtpProfile::*;
        let cert = LocalCertificate::generate().unwrap();
        for (stack, profiles) in [
            (DtlsStack::Dimpl, SrtpProfile::CHROME.to_vec()),
            (DtlsStack::RtcDtls, vec![AesCm128HmacSha1_32]),
            (DtlsStack::RtcDtls, vec![AeadAes128Gcm]),
            (DtlsStack::RtcDtls, SrtpProfile::ALL.to_vec()),
        ] {
            let mut client = DtlsEndpoint::new(
                DtlsEndpointConfig {
                    side: DtlsSide::Client,
                    stack,
                    certificate: &cert,
                    expected_fingerprint: Some(cert.fingerprint()),
                    srtp_profiles: profiles.clone(),
                    retransmit: Duration::from_millis(100),
                    remote: addr(2),
                },
                Instant::now(),
            )
            .unwrap();
            let hello = client.take_transmits();
            let (version, suites, extensions, srtp) = client_hello_offer(&hello[0]);
            assert_eq!(version, 0xfefd, "{stack:?}: DTLS 1.2");
            // ECDHE_ECDSA_* are 0xc0xx/0xccxx ids; none of the RSA or PSK ones.
            assert!(
                suites.iter().all(|s| [0xc02b, 0xc02c, 0xcca9].contains(s)),
                "{stack:?} {suites:x?}"
            );
            assert!(suites.contains(&0xc02b), "{stack:?}: AES-128-GCM offered");
            assert!(
                extensions.contains(&0x0017),
                "{stack:?}: extended master secret"
            );
            let mut ids: Vec<u16> = profiles.iter().map(|p| p.use_srtp_id()).collect();
            let mut offered = srtp.clone();
            ids.sort_unstable();
            offered.sort_unstable();
            assert_eq!(offered, ids, "{stack:?}: use_srtp");
            if stack == DtlsStack::RtcDtls {
                // rtc-dtls keeps the requested order.
                let in_order: Vec<u16> = profiles.iter().map(|p| p.use_srtp_id()).collect();
                assert_eq!(srtp, in_order);
            }
        }
    }

    #[test]
    fn records_are_listed() {
        let cert = LocalCertificate::generate().unwrap();
        let mut client = DtlsEndpoint::new(
            DtlsEndpointConfig {
                side: DtlsSide::Client,
                stack: DtlsStack::Dimpl,
                certificate: &cert,
                expected_fingerprint: Some(cert.fingerprint()),
                srtp_profiles: SrtpProfile::CHROME.to_vec(),
                retransmit: Duration::from_millis(100),
                remote: addr(2),
            },
            Instant::now(),
        )
        .unwrap();
        let hello = client.take_transmits();
        assert_eq!(hello.len(), 1);
        let records = dtls_records(&hello[0]);
        assert_eq!(records[0].content_type, 22);
        assert_eq!(records[0].handshake_type, Some(1));
        // Nothing answered: the ClientHello is retransmitted on the timer.
        let t = client.poll_timeout().expect("a retransmission timer");
        client.handle_timeout(t);
        let again = client.take_transmits();
        assert_eq!(dtls_records(&again[0])[0].handshake_type, Some(1));
    }
}
