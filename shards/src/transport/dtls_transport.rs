//! Sans-IO DTLS for a WebRtcTransport, like mediasoup's `RTC::DtlsTransport`: the handshake that
//! authenticates the peer by the fingerprint it announced in `connectWebRtcTransport`, exports the
//! SRTP keys (RFC 5764) and then carries SCTP as DTLS application data.
//!
//! Built on dimpl 0.9 (`Dtls::new_12`), driven only by the caller: bytes and `Instant`s in
//! ([`DtlsTransport::handle_packet`], [`DtlsTransport::handle_timeout`]), datagrams and events out
//! ([`DtlsTransport::poll_output`], [`DtlsTransport::poll_timeout`]).
//!
//! Choices, and why:
//! - **DTLS 1.2 only (`new_12`, not `new_auto`).** mediasoup speaks DTLS 1.2 (OpenSSL `DTLS_method`),
//!   and Chrome negotiates 1.2 with it. A browser that also offers DTLS 1.3 sends a ClientHello with
//!   `supported_versions` and `key_share` (often fragmented by a large post-quantum share): dimpl's 1.2
//!   server ignores those extensions, reassembles the fragments and answers with a 1.2 ServerHello
//!   (tested below with dimpl's own hybrid 1.2/1.3 ClientHello, cut into fragments delivered out
//!   of order).
//!   `new_auto` as server would instead pick DTLS 1.3 for such a browser, unlike mediasoup.
//! - **No cookie exchange** (HelloVerifyRequest): mediasoup does not do one either, ICE has already
//!   checked the peer's address, and it saves a round trip.
//! - **Retransmission starts at 100 ms and doubles**, as mediasoup's DTLS timer does (which also caps
//!   it at 4 s; dimpl cannot): 8 retries, and a handshake not done in 40 s fails.
//! - **SRTP profiles**: mediasoup offers AEAD_AES_256_GCM, AEAD_AES_128_GCM, AES_CM_128_HMAC_SHA1_80
//!   and AES_CM_128_HMAC_SHA1_32 in that order. dimpl 0.9 hard-codes the first three in that order
//!   (as client it offers them, as server it picks the first of them the client offers) and has no
//!   setting to change that; it does not know `_32` at all, so a peer offering only `_32` ends up
//!   without SRTP and the transport fails (Chrome does not offer `_32` by default).
//! - **Peer authentication**: dimpl has no verify hook. The first remote fingerprint (the only one
//!   mediasoup checks) is compared with the peer certificate as soon as dimpl surfaces it, which is
//!   before our next flight leaves: a mismatch fails the transport without ever exporting keys.
//!   As in mediasoup, the fingerprint may also come later ([`DtlsTransport::set_remote_fingerprints`]):
//!   Chrome's ClientHello can beat `connectWebRtcTransport`, and mediasoup then already runs as
//!   server. The handshake then completes, and `Connected` (with the keys) waits for the check.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use dimpl::{Config, Dtls, Output};
use serde::{Deserialize, Serialize};

use super::dtls_certificate::{DtlsCertificate, DtlsFingerprint};

/// mediasoup's DTLS MTU: the largest datagram our flights are fragmented into.
pub const DTLS_MTU: usize = 1350;

/// Incoming datagrams larger than this are dropped unread. Browsers fragment DTLS to about 1200
/// bytes; the bound also caps how large a certificate a peer can make us hold (see `scratch`).
pub const MAX_DTLS_DATAGRAM_LEN: usize = 2048;

/// The smallest buffer [`DtlsTransport::poll_output`] accepts while the handshake runs (every
/// handshake datagram fits; after the handshake only application data may need more, and then
/// [`DtlsOutput::BufferTooSmall`] says how much).
pub const MIN_POLL_BUFFER_LEN: usize = 2048;

/// dimpl keeps at most this many unprocessed datagrams (it drops more, see `ReceiveQueueFull`);
/// a message it reassembles must fit, so this also bounds how many fragments a ClientHello may
/// come in (Chrome's, with a post-quantum key share, is two).
const MAX_QUEUE_RX: usize = 16;

/// dimpl may queue this many records to send before we poll them out (SCTP bursts included).
const MAX_QUEUE_TX: usize = 64;

/// Our DTLS role, fixed by `connectWebRtcTransport`: the remote `client` makes us `server`; a remote
/// `server` or `auto` makes us `client` (mediasoup's rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DtlsRole {
    Client,
    Server,
}

/// mediasoup's `dtlsState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DtlsState {
    /// Created, nothing sent yet (a server waits for a ClientHello).
    New,
    /// Our first flight has left: handshake in progress.
    Connecting,
    /// Handshake done, peer authenticated, SRTP keys exported.
    Connected,
    /// Handshake failed, peer not authenticated, or a fatal DTLS error.
    Failed,
    /// Closed locally or by the peer's `close_notify`.
    Closed,
}

impl DtlsState {
    /// The string mediasoup reports in `dtlsState`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Failed => "failed",
            Self::Closed => "closed",
        }
    }
}

/// The DTLS-SRTP protection profiles mediasoup supports, named as its `srtpCryptoSuite`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SrtpProfile {
    #[serde(rename = "AEAD_AES_256_GCM")]
    AeadAes256Gcm,
    #[serde(rename = "AEAD_AES_128_GCM")]
    AeadAes128Gcm,
    #[serde(rename = "AES_CM_128_HMAC_SHA1_80")]
    AesCm128HmacSha1_80,
    #[serde(rename = "AES_CM_128_HMAC_SHA1_32")]
    AesCm128HmacSha1_32,
}

impl SrtpProfile {
    /// mediasoup's preference order (what it offers in `use_srtp`).
    pub const PREFERENCE: [SrtpProfile; 4] = [
        Self::AeadAes256Gcm,
        Self::AeadAes128Gcm,
        Self::AesCm128HmacSha1_80,
        Self::AesCm128HmacSha1_32,
    ];

    /// mediasoup's name for the profile.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AeadAes256Gcm => "AEAD_AES_256_GCM",
            Self::AeadAes128Gcm => "AEAD_AES_128_GCM",
            Self::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Self::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    /// Master key length in bytes.
    pub fn master_key_len(self) -> usize {
        match self {
            Self::AeadAes256Gcm => 32,
            Self::AeadAes128Gcm | Self::AesCm128HmacSha1_80 | Self::AesCm128HmacSha1_32 => 16,
        }
    }

    /// Master salt length in bytes (RFC 7714 uses 96-bit salts, RFC 3711 112-bit ones).
    pub fn master_salt_len(self) -> usize {
        match self {
            Self::AeadAes256Gcm | Self::AeadAes128Gcm => 12,
            Self::AesCm128HmacSha1_80 | Self::AesCm128HmacSha1_32 => 14,
        }
    }

    /// Bytes of DTLS exporter output the profile needs: two keys and two salts.
    pub fn keying_material_len(self) -> usize {
        2 * (self.master_key_len() + self.master_salt_len())
    }

    fn from_dimpl(profile: dimpl::SrtpProfile) -> Option<Self> {
        match profile {
            dimpl::SrtpProfile::AEAD_AES_256_GCM => Some(Self::AeadAes256Gcm),
            dimpl::SrtpProfile::AEAD_AES_128_GCM => Some(Self::AeadAes128Gcm),
            dimpl::SrtpProfile::AES128_CM_SHA1_80 => Some(Self::AesCm128HmacSha1_80),
            _ => None,
        }
    }
}

/// SRTP master keys and salts, already assigned to directions for our role: `local_*` protects
/// what we send, `remote_*` unprotects what we receive.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpKeys {
    pub local_master_key: Vec<u8>,
    pub local_master_salt: Vec<u8>,
    pub remote_master_key: Vec<u8>,
    pub remote_master_salt: Vec<u8>,
}

impl std::fmt::Debug for SrtpKeys {
    // Key bytes never go to logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpKeys")
            .field("local_master_key", &self.local_master_key.len())
            .field("remote_master_key", &self.remote_master_key.len())
            .finish_non_exhaustive()
    }
}

impl SrtpKeys {
    /// Splits DTLS exporter output (`EXTRACTOR-dtls_srtp`) as RFC 5764 §4.2 lays it out:
    /// client key, server key, client salt, server salt. `None` if the length is not the profile's.
    pub fn from_keying_material(
        profile: SrtpProfile,
        material: &[u8],
        role: DtlsRole,
    ) -> Option<Self> {
        if material.len() != profile.keying_material_len() {
            return None;
        }
        let (client_key, rest) = material.split_at(profile.master_key_len());
        let (server_key, rest) = rest.split_at(profile.master_key_len());
        let (client_salt, server_salt) = rest.split_at(profile.master_salt_len());
        let (local_key, local_salt, remote_key, remote_salt) = match role {
            DtlsRole::Client => (client_key, client_salt, server_key, server_salt),
            DtlsRole::Server => (server_key, server_salt, client_key, client_salt),
        };
        Some(Self {
            local_master_key: local_key.to_vec(),
            local_master_salt: local_salt.to_vec(),
            remote_master_key: remote_key.to_vec(),
            remote_master_salt: remote_salt.to_vec(),
        })
    }
}

/// Why a packet was refused or the transport failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtlsError {
    #[error("invalid DTLS certificate or private key")]
    InvalidCertificate,
    #[error("DTLS configuration: {0}")]
    Config(String),
    #[error("remote DTLS fingerprints already set")]
    RemoteFingerprintAlreadySet,
    #[error("unsupported remote fingerprint algorithm \"{0}\"")]
    UnsupportedFingerprintAlgorithm(String),
    /// Not a sequence of well-formed DTLS 1.2 records; dropped, the transport is unaffected.
    #[error("malformed DTLS record")]
    MalformedRecord,
    /// Larger than [`MAX_DTLS_DATAGRAM_LEN`]; dropped, the transport is unaffected.
    #[error("DTLS datagram too large ({0} bytes)")]
    DatagramTooLarge(usize),
    /// dimpl's receive queue is full; dropped, the transport is unaffected.
    #[error("DTLS receive queue full")]
    ReceiveQueueFull,
    /// Too much application data queued without polling; retry after `poll_output`.
    #[error("DTLS send queue full")]
    SendQueueFull,
    #[error("DTLS not connected")]
    NotConnected,
    /// The transport has failed or was closed; the packet was ignored.
    #[error("DTLS transport closed")]
    Closed,
    #[error("remote certificate does not match the remote fingerprint")]
    FingerprintMismatch,
    #[error("peer presented no certificate")]
    NoPeerCertificate,
    #[error("no SRTP profile negotiated")]
    NoSrtpProfile,
    /// A fatal error inside the DTLS engine (handshake failure, timeout, peer alert).
    #[error("DTLS: {0}")]
    Dtls(String),
}

/// What [`DtlsTransport::poll_output`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtlsOutput {
    /// Send `buf[..n]` to the peer.
    Packet(usize),
    /// Handshake done and the peer authenticated: SRTP may start.
    Connected {
        profile: SrtpProfile,
        keys: SrtpKeys,
    },
    /// The peer sent `buf[..n]` (SCTP).
    ApplicationData(usize),
    /// The transport failed; state is [`DtlsState::Failed`]. Reported once.
    Failed(DtlsError),
    /// The peer closed the association with `close_notify`; state is [`DtlsState::Closed`].
    Closed,
    /// The buffer is too small for the next output; nothing was lost, poll again with `needed`.
    BufferTooSmall { needed: usize },
    /// Nothing more until the next packet, timeout or send.
    None,
}

/// Whether dimpl is still driven.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Active,
    /// Sending what dimpl still has queued (a fatal alert, `close_notify`), then report `then`.
    Draining {
        then: Option<DtlsOutput>,
    },
    /// dimpl is no longer polled.
    Done,
}

/// A dimpl output copied out of the borrow of the buffer it was written into.
enum Polled {
    Packet(usize),
    ApplicationData(usize),
    BufferTooSmall(usize),
    Timeout(Instant),
    Connected,
    PeerCert(PeerCert),
    KeyingMaterial(Option<SrtpProfile>, Vec<u8>),
    CloseNotify,
    Other,
}

/// The peer certificate against the remote fingerprint.
enum PeerCert {
    Matches,
    Mismatch,
    /// No fingerprint yet: the certificate, kept for later.
    Unchecked(Vec<u8>),
}

/// One WebRtcTransport's DTLS association.
pub struct DtlsTransport {
    dtls: Dtls,
    role: DtlsRole,
    state: DtlsState,
    mode: Mode,
    /// The first fingerprint from the client's `dtlsParameters`, once known.
    remote_fingerprint: Option<DtlsFingerprint>,
    /// The peer certificate, kept only while it waits for the remote fingerprint.
    peer_cert: Option<Vec<u8>>,
    /// An output produced outside `poll_output` (by `set_remote_fingerprints`).
    pending: Option<DtlsOutput>,
    /// dimpl writes the peer certificate into the poll buffer and panics if it does not fit, so
    /// while the handshake runs it is polled into this buffer, big enough for any certificate dimpl
    /// can reassemble from its bounded queue; freed once the handshake is over.
    scratch: Vec<u8>,
    last_now: Instant,
    next_timeout: Option<Instant>,
    peer_verified: bool,
    handshake_done: bool,
    keys: Option<(SrtpProfile, SrtpKeys)>,
}

impl std::fmt::Debug for DtlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsTransport")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("dtls", &self.dtls)
            .finish_non_exhaustive()
    }
}

impl DtlsTransport {
    /// Creates the association. Only the first of `remote_fingerprints` is used (as mediasoup);
    /// none means not known yet (see [`set_remote_fingerprints`](Self::set_remote_fingerprints)).
    /// A client starts its handshake on the first [`poll_output`](Self::poll_output).
    pub fn new(
        certificate: &DtlsCertificate,
        role: DtlsRole,
        remote_fingerprints: Vec<DtlsFingerprint>,
        now: Instant,
    ) -> Result<Self, DtlsError> {
        let remote_fingerprint = first_fingerprint(remote_fingerprints)?;
        let config = dimpl_config()?;
        // dimpl panics on an unusable key; check it here so a bad certificate is an error.
        if certificate.certificate_der.is_empty()
            || config
                .crypto_provider()
                .key_provider
                .load_private_key(&certificate.private_key_der)
                .is_err()
        {
            return Err(DtlsError::InvalidCertificate);
        }
        let dimpl_certificate = dimpl::DtlsCertificate {
            certificate: certificate.certificate_der.clone(),
            private_key: certificate.private_key_der.clone(),
        };
        let mut dtls = Dtls::new_12(config, dimpl_certificate, now);
        dtls.set_active(role == DtlsRole::Client);
        let mut transport = Self {
            dtls,
            role,
            state: DtlsState::New,
            mode: Mode::Active,
            remote_fingerprint,
            peer_cert: None,
            pending: None,
            scratch: vec![0; MAX_QUEUE_RX * MAX_DTLS_DATAGRAM_LEN],
            last_now: now,
            next_timeout: None,
            peer_verified: false,
            handshake_done: false,
            keys: None,
        };
        // dimpl wants its clock set before anything else (a client queues its ClientHello here).
        transport.drive_timeout(now);
        Ok(transport)
    }

    pub fn role(&self) -> DtlsRole {
        self.role
    }

    pub fn state(&self) -> DtlsState {
        self.state
    }

    /// Supplies the remote fingerprints when they come after the handshake started (mediasoup's
    /// `SetRemoteFingerprint`); only the first is used. If the handshake already finished, the
    /// check happens now and the next `poll_output` reports `Connected` or `Failed`.
    pub fn set_remote_fingerprints(
        &mut self,
        remote_fingerprints: Vec<DtlsFingerprint>,
    ) -> Result<(), DtlsError> {
        if self.remote_fingerprint.is_some() {
            return Err(DtlsError::RemoteFingerprintAlreadySet);
        }
        self.remote_fingerprint = first_fingerprint(remote_fingerprints)?;
        if self.mode == Mode::Active && self.pending.is_none() {
            self.pending = self.try_connect();
        }
        Ok(())
    }

    /// Feeds one received datagram (RFC 7983: first byte 20..=63). `Err` means the datagram was
    /// not taken (count it); the transport goes on unless [`state`](Self::state) is `Failed`, in
    /// which case [`poll_output`](Self::poll_output) reports why.
    pub fn handle_packet(&mut self, data: &[u8], now: Instant) -> Result<(), DtlsError> {
        if self.mode != Mode::Active {
            return Err(DtlsError::Closed);
        }
        if data.len() > MAX_DTLS_DATAGRAM_LEN {
            return Err(DtlsError::DatagramTooLarge(data.len()));
        }
        check_records(data)?;
        // dimpl's contract: refresh its clock before every packet.
        self.drive_timeout(now);
        if self.mode != Mode::Active {
            return Err(DtlsError::Closed);
        }
        match self.dtls.handle_packet(data) {
            Ok(()) => Ok(()),
            // The queue guard runs before anything changes: the datagram is dropped, no more.
            Err(dimpl::Error::ReceiveQueueFull) => Err(DtlsError::ReceiveQueueFull),
            Err(error) => {
                let error = DtlsError::Dtls(error.to_string());
                self.fail_draining(error.clone());
                Err(error)
            }
        }
    }

    /// Fires retransmissions and the handshake deadline due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.mode != Mode::Done {
            self.drive_timeout(now);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to be called; valid once
    /// [`poll_output`](Self::poll_output) has returned [`DtlsOutput::None`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.mode {
            Mode::Done => None,
            _ => self.next_timeout,
        }
    }

    /// Next output; call until [`DtlsOutput::None`] after every packet, timeout and send.
    /// Packets and application data are written to `buf`.
    pub fn poll_output(&mut self, buf: &mut [u8]) -> DtlsOutput {
        if let Some(output) = self.pending.take() {
            return output;
        }
        loop {
            let handshaking = !self.scratch.is_empty();
            if handshaking && buf.len() < MIN_POLL_BUFFER_LEN {
                return DtlsOutput::BufferTooSmall {
                    needed: MIN_POLL_BUFFER_LEN,
                };
            }
            let remote = self.remote_fingerprint.as_ref();
            let polled = match self.mode {
                Mode::Done => return DtlsOutput::None,
                _ if handshaking => poll_dimpl(&mut self.dtls, &mut self.scratch, remote),
                _ => poll_dimpl(&mut self.dtls, buf, remote),
            };
            if let Mode::Draining { then } = &mut self.mode {
                // Only what is already queued still leaves; events no longer matter.
                match polled {
                    Polled::Packet(len) => return self.packet_out(buf, len, handshaking),
                    Polled::BufferTooSmall(needed) => return DtlsOutput::BufferTooSmall { needed },
                    Polled::Timeout(_) => {
                        let then = then.take();
                        self.finish();
                        return then.unwrap_or(DtlsOutput::None);
                    }
                    _ => continue,
                }
            }
            match polled {
                Polled::Packet(len) => {
                    if self.state == DtlsState::New {
                        // Our first flight (ClientHello, or the answer to one) is leaving.
                        self.state = DtlsState::Connecting;
                    }
                    return self.packet_out(buf, len, handshaking);
                }
                Polled::ApplicationData(len) => {
                    if handshaking {
                        // The peer is not authenticated yet (its fingerprint is still unknown):
                        // drop it, SCTP retransmits.
                        continue;
                    }
                    return DtlsOutput::ApplicationData(len);
                }
                Polled::BufferTooSmall(needed) => return DtlsOutput::BufferTooSmall { needed },
                Polled::Timeout(at) => {
                    self.next_timeout = Some(at);
                    if self.handshake_done && self.state != DtlsState::Connected {
                        // dimpl finished without exporting SRTP keys or without a certificate.
                        if self.keys.is_none() {
                            return self.fail_now(DtlsError::NoSrtpProfile);
                        }
                        if !self.peer_verified && self.peer_cert.is_none() {
                            return self.fail_now(DtlsError::NoPeerCertificate);
                        }
                    }
                    return DtlsOutput::None;
                }
                Polled::PeerCert(PeerCert::Matches) => self.peer_verified = true,
                Polled::PeerCert(PeerCert::Mismatch) => {
                    log::debug!("DTLS peer certificate does not match the remote fingerprint");
                    return self.fail_now(DtlsError::FingerprintMismatch);
                }
                Polled::PeerCert(PeerCert::Unchecked(der)) => self.peer_cert = Some(der),
                Polled::Connected => self.handshake_done = true,
                Polled::KeyingMaterial(profile, material) => {
                    let keys = profile.and_then(|profile| {
                        SrtpKeys::from_keying_material(profile, &material, self.role)
                            .map(|keys| (profile, keys))
                    });
                    match keys {
                        Some(keys) => self.keys = Some(keys),
                        None => return self.fail_now(DtlsError::NoSrtpProfile),
                    }
                }
                Polled::CloseNotify => {
                    self.state = DtlsState::Closed;
                    self.mode = Mode::Draining {
                        then: Some(DtlsOutput::Closed),
                    };
                }
                Polled::Other => {}
            }
            if let Some(output) = self.try_connect() {
                return output;
            }
        }
    }

    /// Queues `data` (an SCTP packet) as one DTLS record; it leaves through `poll_output`.
    pub fn send_application_data(&mut self, data: &[u8]) -> Result<(), DtlsError> {
        if self.state != DtlsState::Connected || self.mode != Mode::Active {
            return Err(DtlsError::NotConnected);
        }
        match self.dtls.send_application_data(data) {
            Ok(_) => Ok(()),
            // Checked before the record is built: nothing changed, the caller may retry.
            Err(dimpl::Error::TransmitQueueFull) => Err(DtlsError::SendQueueFull),
            Err(error) => {
                let error = DtlsError::Dtls(error.to_string());
                self.fail_draining(error.clone());
                Err(error)
            }
        }
    }

    /// Closes the association: a connected one sends `close_notify` (polled out next), one still
    /// handshaking just stops. State becomes `Closed`.
    pub fn close(&mut self) {
        if matches!(self.state, DtlsState::Failed | DtlsState::Closed) {
            return;
        }
        let connected = self.state == DtlsState::Connected;
        self.state = DtlsState::Closed;
        if self.mode != Mode::Active {
            return;
        }
        match self.dtls.close() {
            Ok(()) if connected => self.mode = Mode::Draining { then: None },
            _ => self.finish(),
        }
    }

    /// `Connected` once the handshake is done, the keys are out and the peer is authenticated;
    /// `Failed` if the certificate that waited for the fingerprint does not match it.
    fn try_connect(&mut self) -> Option<DtlsOutput> {
        let handshaking = matches!(self.state, DtlsState::New | DtlsState::Connecting);
        if !self.handshake_done || !handshaking || self.keys.is_none() {
            return None;
        }
        if !self.peer_verified {
            let (Some(remote), Some(der)) = (&self.remote_fingerprint, &self.peer_cert) else {
                // Waiting for the remote fingerprint.
                return None;
            };
            if !fingerprint_matches(remote, der) {
                log::debug!("DTLS peer certificate does not match the remote fingerprint");
                return Some(self.fail_now(DtlsError::FingerprintMismatch));
            }
            self.peer_verified = true;
        }
        let (profile, keys) = self.keys.take()?;
        self.state = DtlsState::Connected;
        // No certificate can arrive any more; poll straight into the caller's buffer.
        self.scratch = Vec::new();
        self.peer_cert = None;
        Some(DtlsOutput::Connected { profile, keys })
    }

    fn drive_timeout(&mut self, now: Instant) {
        // dimpl expects a clock that never goes back.
        self.last_now = self.last_now.max(now);
        if let Err(error) = self.dtls.handle_timeout(self.last_now) {
            self.fail_draining(DtlsError::Dtls(error.to_string()));
        }
    }

    /// Moves a datagram polled into the scratch buffer to the caller's.
    fn packet_out(&mut self, buf: &mut [u8], len: usize, in_scratch: bool) -> DtlsOutput {
        if in_scratch {
            match (buf.get_mut(..len), self.scratch.get(..len)) {
                (Some(dst), Some(src)) => dst.copy_from_slice(src),
                // Handshake datagrams are at most the MTU; losing one only costs a retransmission.
                _ => {
                    log::warn!("DTLS handshake datagram of {len} bytes dropped");
                    return DtlsOutput::None;
                }
            }
        }
        DtlsOutput::Packet(len)
    }

    /// A fatal dimpl error: whatever it queued (a fatal alert) still leaves, then `Failed`.
    fn fail_draining(&mut self, error: DtlsError) {
        log::debug!("DTLS failed: {error}");
        if matches!(self.state, DtlsState::Failed | DtlsState::Closed) {
            return;
        }
        self.state = DtlsState::Failed;
        self.mode = Mode::Draining {
            then: Some(DtlsOutput::Failed(error)),
        };
    }

    /// Fails immediately, sending nothing more (dimpl's `close` aborts a handshake silently).
    fn fail_now(&mut self, error: DtlsError) -> DtlsOutput {
        let _ = self.dtls.close();
        self.state = DtlsState::Failed;
        self.finish();
        DtlsOutput::Failed(error)
    }

    fn finish(&mut self) {
        self.mode = Mode::Done;
        self.keys = None;
        self.peer_cert = None;
        self.scratch = Vec::new();
        self.next_timeout = None;
    }
}

/// Polls dimpl once and copies what matters out of the borrow of `buf`.
fn poll_dimpl(dtls: &mut Dtls, buf: &mut [u8], remote: Option<&DtlsFingerprint>) -> Polled {
    match dtls.poll_output(buf) {
        Output::Packet(packet) => Polled::Packet(packet.len()),
        Output::ApplicationData(data) => Polled::ApplicationData(data.len()),
        Output::BufferTooSmall { needed } => Polled::BufferTooSmall(needed),
        Output::Timeout(at) => Polled::Timeout(at),
        Output::Connected => Polled::Connected,
        Output::PeerCert(der) => Polled::PeerCert(match remote {
            Some(remote) if fingerprint_matches(remote, der) => PeerCert::Matches,
            Some(_) => PeerCert::Mismatch,
            None => PeerCert::Unchecked(der.to_vec()),
        }),
        Output::KeyingMaterial(material, profile) => {
            Polled::KeyingMaterial(SrtpProfile::from_dimpl(profile), material.to_vec())
        }
        Output::CloseNotify => Polled::CloseNotify,
        _ => Polled::Other,
    }
}

/// The first fingerprint, if any, checked for a known algorithm (mediasoup uses only the first).
fn first_fingerprint(
    fingerprints: Vec<DtlsFingerprint>,
) -> Result<Option<DtlsFingerprint>, DtlsError> {
    match fingerprints.into_iter().next() {
        Some(first) if DtlsCertificate::fingerprint_of(&first.algorithm, &[]).is_none() => {
            Err(DtlsError::UnsupportedFingerprintAlgorithm(first.algorithm))
        }
        first => Ok(first),
    }
}

/// mediasoup compares the announced fingerprint with the certificate's, ignoring case.
fn fingerprint_matches(expected: &DtlsFingerprint, der: &[u8]) -> bool {
    DtlsCertificate::fingerprint_of(&expected.algorithm, der)
        .is_some_and(|actual| actual.eq_ignore_ascii_case(expected.value.trim()))
}

/// Accepts only datagrams made of complete DTLS 1.0/1.2 records of the four TLS 1.2 content
/// types, so truncated or foreign bytes never reach dimpl.
fn check_records(mut datagram: &[u8]) -> Result<(), DtlsError> {
    if datagram.is_empty() {
        return Err(DtlsError::MalformedRecord);
    }
    while !datagram.is_empty() {
        let [content_type, major, minor, _, _, _, _, _, _, _, _, len_hi, len_lo, body @ ..] =
            datagram
        else {
            return Err(DtlsError::MalformedRecord);
        };
        // change_cipher_spec, alert, handshake, application_data.
        let known_type = (20..=23).contains(content_type);
        // DTLS 1.0 (0xFEFF, allowed on a ClientHello record) or DTLS 1.2 (0xFEFD).
        let known_version = *major == 0xFE && (*minor == 0xFF || *minor == 0xFD);
        let len = usize::from(u16::from_be_bytes([*len_hi, *len_lo]));
        if !known_type || !known_version || len > body.len() {
            return Err(DtlsError::MalformedRecord);
        }
        datagram = &body[len..];
    }
    Ok(())
}

/// One dimpl configuration for the process: building it runs the crypto provider's self-tests.
fn dimpl_config() -> Result<Arc<Config>, DtlsError> {
    static CONFIG: OnceLock<Result<Arc<Config>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            Config::builder()
                .mtu(DTLS_MTU)
                .max_queue_rx(MAX_QUEUE_RX)
                .max_queue_tx(MAX_QUEUE_TX)
                .require_client_certificate(true)
                .use_server_cookie(false)
                .flight_start_rto(Duration::from_millis(100))
                .flight_retries(8)
                .handshake_timeout(Duration::from_secs(40))
                .build()
                .map(Arc::new)
                .map_err(|error| error.to_string())
        })
        .clone()
        .map_err(DtlsError::Config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::srtp_session::SrtpSession;

    /// Simulated one-way latency: each loop turn advances time by this much.
    const STEP: Duration = Duration::from_millis(10);

    fn certificate() -> DtlsCertificate {
        DtlsCertificate::generate().unwrap()
    }

    /// The sha-256 fingerprint, as a browser announces it.
    fn sha256(certificate: &DtlsCertificate) -> DtlsFingerprint {
        certificate
            .fingerprints()
            .into_iter()
            .find(|f| f.algorithm == "sha-256")
            .unwrap()
    }

    /// What an endpoint produced in one drain of its outputs.
    #[derive(Default)]
    struct Drained {
        packets: Vec<Vec<u8>>,
        connected: Option<(SrtpProfile, SrtpKeys)>,
        failed: Option<DtlsError>,
        app_data: Vec<Vec<u8>>,
        closed: bool,
    }

    /// Either our transport or a bare dimpl endpoint standing in for the browser.
    trait Endpoint {
        fn timeout(&mut self, now: Instant);
        /// Whether the datagram was accepted.
        fn packet(&mut self, data: &[u8], now: Instant) -> bool;
        fn drain(&mut self) -> Drained;
    }

    impl Endpoint for DtlsTransport {
        fn timeout(&mut self, now: Instant) {
            self.handle_timeout(now);
        }

        fn packet(&mut self, data: &[u8], now: Instant) -> bool {
            self.handle_packet(data, now).is_ok()
        }

        fn drain(&mut self) -> Drained {
            let mut out = Drained::default();
            let mut buf = vec![0; MIN_POLL_BUFFER_LEN];
            for _ in 0..10_000 {
                match self.poll_output(&mut buf) {
                    DtlsOutput::Packet(n) => {
                        assert!(n <= DTLS_MTU, "datagram of {n} bytes exceeds the MTU");
                        out.packets.push(buf[..n].to_vec());
                    }
                    DtlsOutput::Connected { profile, keys } => {
                        assert!(out.connected.is_none(), "Connected reported twice");
                        out.connected = Some((profile, keys));
                    }
                    DtlsOutput::ApplicationData(n) => out.app_data.push(buf[..n].to_vec()),
                    DtlsOutput::Failed(error) => {
                        assert!(out.failed.is_none(), "Failed reported twice");
                        out.failed = Some(error);
                    }
                    DtlsOutput::Closed => out.closed = true,
                    DtlsOutput::BufferTooSmall { needed } => buf.resize(needed, 0),
                    DtlsOutput::None => return out,
                }
            }
            panic!("poll_output never returned None");
        }
    }

    /// dimpl used directly, as the browser's side.
    struct Raw {
        dtls: Dtls,
        role: DtlsRole,
        handshake_done: bool,
        peer_cert: Option<Vec<u8>>,
    }

    impl Raw {
        fn new(role: DtlsRole, certificate: &DtlsCertificate, config: Config, auto: bool) -> Self {
            let now = Instant::now();
            let certificate = dimpl::DtlsCertificate {
                certificate: certificate.certificate_der.clone(),
                private_key: certificate.private_key_der.clone(),
            };
            let config = Arc::new(config);
            let mut dtls = if auto {
                Dtls::new_auto(config, certificate, now)
            } else {
                Dtls::new_12(config, certificate, now)
            };
            dtls.set_active(role == DtlsRole::Client);
            Self {
                dtls,
                role,
                handshake_done: false,
                peer_cert: None,
            }
        }
    }

    impl Endpoint for Raw {
        fn timeout(&mut self, now: Instant) {
            let _ = self.dtls.handle_timeout(now);
        }

        fn packet(&mut self, data: &[u8], now: Instant) -> bool {
            self.dtls.handle_timeout(now).is_ok() && self.dtls.handle_packet(data).is_ok()
        }

        fn drain(&mut self) -> Drained {
            let mut out = Drained::default();
            let mut buf = vec![0; 1 << 16];
            loop {
                match self.dtls.poll_output(&mut buf) {
                    Output::Packet(p) => out.packets.push(p.to_vec()),
                    Output::Connected => self.handshake_done = true,
                    Output::PeerCert(der) => self.peer_cert = Some(der.to_vec()),
                    Output::KeyingMaterial(material, profile) => {
                        let profile = SrtpProfile::from_dimpl(profile).unwrap();
                        let keys =
                            SrtpKeys::from_keying_material(profile, &material, self.role).unwrap();
                        out.connected = Some((profile, keys));
                    }
                    Output::ApplicationData(data) => out.app_data.push(data.to_vec()),
                    Output::CloseNotify => out.closed = true,
                    Output::Timeout(_) => return out,
                    _ => {}
                }
            }
        }
    }

    /// What happened to one side during a run.
    #[derive(Default, Debug)]
    struct Side {
        connected: Option<(SrtpProfile, SrtpKeys)>,
        failed: Option<DtlsError>,
        app_data: Vec<Vec<u8>>,
        closed: bool,
        /// Datagrams this side sent.
        sent: usize,
        /// Datagrams this side refused.
        refused: usize,
    }

    impl Side {
        fn absorb(&mut self, drained: &mut Drained) {
            if let Some(c) = drained.connected.take() {
                assert!(self.connected.is_none(), "connected twice");
                self.connected = Some(c);
            }
            if let Some(f) = drained.failed.take() {
                self.failed = Some(f);
            }
            self.app_data.append(&mut drained.app_data);
            self.closed |= drained.closed;
        }

        fn done(&self) -> bool {
            self.connected.is_some() || self.failed.is_some()
        }
    }

    /// The network: given (sent by `a`?, index of the datagram on that side, datagram), the
    /// datagrams the other side receives (nothing = lost).
    type Net<'a> = &'a mut dyn FnMut(bool, usize, &[u8]) -> Vec<Vec<u8>>;

    fn perfect(_: bool, _: usize, p: &[u8]) -> Vec<Vec<u8>> {
        vec![p.to_vec()]
    }

    /// Runs `a` and `b` until both are connected or failed and quiet, or `limit` passes.
    fn run(
        a: &mut dyn Endpoint,
        b: &mut dyn Endpoint,
        now: &mut Instant,
        limit: Duration,
        net: Net<'_>,
    ) -> (Side, Side) {
        let (mut sa, mut sb) = (Side::default(), Side::default());
        let end = *now + limit;
        while *now < end {
            a.timeout(*now);
            b.timeout(*now);
            let mut da = a.drain();
            let mut db = b.drain();
            sa.absorb(&mut da);
            sb.absorb(&mut db);
            let quiet = da.packets.is_empty() && db.packets.is_empty();
            for p in &da.packets {
                for d in net(true, sa.sent, p) {
                    sb.refused += usize::from(!b.packet(&d, *now));
                }
                sa.sent += 1;
            }
            for p in &db.packets {
                for d in net(false, sb.sent, p) {
                    sa.refused += usize::from(!a.packet(&d, *now));
                }
                sb.sent += 1;
            }
            if quiet && sa.done() && sb.done() {
                break;
            }
            *now += STEP;
        }
        (sa, sb)
    }

    fn assert_mirrored(a: &SrtpKeys, b: &SrtpKeys) {
        assert_eq!(a.local_master_key, b.remote_master_key);
        assert_eq!(a.local_master_salt, b.remote_master_salt);
        assert_eq!(a.remote_master_key, b.local_master_key);
        assert_eq!(a.remote_master_salt, b.local_master_salt);
        assert_ne!(a.local_master_key, a.remote_master_key);
    }

    /// Our client and our server for fresh certificates, each expecting the other's sha-256.
    fn our_pair(now: Instant) -> (DtlsTransport, DtlsTransport) {
        let (cc, sc) = (certificate(), certificate());
        let client = DtlsTransport::new(&cc, DtlsRole::Client, vec![sha256(&sc)], now).unwrap();
        let server = DtlsTransport::new(&sc, DtlsRole::Server, vec![sha256(&cc)], now).unwrap();
        (client, server)
    }

    /// A browser-like dimpl client and our server.
    fn raw_client_our_server(now: Instant) -> (Raw, DtlsTransport, DtlsCertificate) {
        let (cc, sc) = (certificate(), certificate());
        let client = Raw::new(DtlsRole::Client, &cc, Config::default(), false);
        let server = DtlsTransport::new(&sc, DtlsRole::Server, vec![sha256(&cc)], now).unwrap();
        (client, server, sc)
    }

    /// A minimal RTP packet: V=2, PT 96, the given sequence number, SSRC 0x11223344, a payload.
    fn rtp(seq: u16, capacity: usize) -> (Vec<u8>, usize) {
        let mut packet = vec![0x80, 96];
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&[0, 0, 0, 1, 0x11, 0x22, 0x33, 0x44]);
        packet.extend((0..200u32).map(|i| (i * 7) as u8));
        let len = packet.len();
        packet.resize(capacity.max(len), 0);
        (packet, len)
    }

    /// Protects one RTP and one RTCP packet on `from` and checks `to` recovers them exactly.
    fn srtp_round_trip(from: &mut SrtpSession, to: &mut SrtpSession, seq: u16) {
        let (mut buf, len) = rtp(seq, 1500);
        let plain = buf[..len].to_vec();
        let n = from.protect_rtp(&mut buf, len).unwrap();
        assert_ne!(&buf[12..len], &plain[12..], "payload left in clear");
        let n = to.unprotect_rtp(&mut buf[..n]).unwrap();
        assert_eq!(&buf[..n], &plain[..]);

        // A receiver report: V=2, RC=0, PT 201, length 1, sender SSRC.
        let rr = [0x80, 201, 0, 1, 0x55, 0x66, 0x77, 0x88];
        let mut buf = rr.to_vec();
        buf.resize(100, 0);
        let n = from.protect_rtcp(&mut buf, rr.len()).unwrap();
        let n = to.unprotect_rtcp(&mut buf[..n]).unwrap();
        assert_eq!(&buf[..n], &rr[..]);
    }

    #[test]
    fn dimpl_client_connects_to_our_server_with_mirrored_keys() {
        let mut now = Instant::now();
        let (mut client, mut server, server_cert) = raw_client_our_server(now);
        assert_eq!(server.state(), DtlsState::New);
        let (sc, ss) = run(
            &mut client,
            &mut server,
            &mut now,
            Duration::from_secs(5),
            &mut perfect,
        );
        let (cp, ck) = sc.connected.expect("client connected");
        let (sp, sk) = ss.connected.expect("server connected");
        assert_eq!(server.state(), DtlsState::Connected);
        // dimpl as server prefers AES-256-GCM, as measured against Chrome.
        assert_eq!(
            (cp, sp),
            (SrtpProfile::AeadAes256Gcm, SrtpProfile::AeadAes256Gcm)
        );
        assert_mirrored(&ck, &sk);
        assert_eq!(
            client.peer_cert.as_deref(),
            Some(&server_cert.certificate_der[..])
        );
        assert_eq!(
            client.dtls.protocol_version(),
            Some(dimpl::ProtocolVersion::DTLS1_2)
        );
    }

    #[test]
    fn our_client_connects_to_a_dimpl_server() {
        let mut now = Instant::now();
        let (cc, sc) = (certificate(), certificate());
        let mut client = DtlsTransport::new(&cc, DtlsRole::Client, vec![sha256(&sc)], now).unwrap();
        let mut server = Raw::new(DtlsRole::Server, &sc, Config::default(), false);
        let (a, b) = run(
            &mut client,
            &mut server,
            &mut now,
            Duration::from_secs(5),
            &mut perfect,
        );
        let (cp, ck) = a.connected.expect("client connected");
        let (sp, sk) = b.connected.expect("server connected");
        assert_eq!(cp, sp);
        assert_mirrored(&ck, &sk);
        assert_eq!(server.peer_cert.as_deref(), Some(&cc.certificate_der[..]));
        assert_eq!(client.state(), DtlsState::Connected);
    }

    #[test]
    fn our_client_and_server_connect_and_their_keys_carry_srtp() {
        let mut now = Instant::now();
        let (mut client, mut server) = our_pair(now);
        let (a, b) = run(
            &mut client,
            &mut server,
            &mut now,
            Duration::from_secs(5),
            &mut perfect,
        );
        let (cp, ck) = a.connected.expect("client connected");
        let (sp, sk) = b.connected.expect("server connected");
        assert_eq!(
            (cp, sp),
            (SrtpProfile::AeadAes256Gcm, SrtpProfile::AeadAes256Gcm)
        );
        assert_mirrored(&ck, &sk);
        assert_eq!(
            (client.state(), server.state()),
            (DtlsState::Connected, DtlsState::Connected)
        );
        let mut c = SrtpSession::new(cp, &ck).unwrap();
        let mut s = SrtpSession::new(sp, &sk).unwrap();
        srtp_round_trip(&mut c, &mut s, 1);
        srtp_round_trip(&mut s, &mut c, 1);
    }

    /// Splits a datagram holding one unfragmented handshake message into fragments of at most
    /// `chunk` body bytes, one record and datagram each, in reverse order: a large ClientHello as
    /// a browser fragments it, delivered out of order.
    fn fragment_handshake(datagram: &[u8], chunk: usize) -> Vec<Vec<u8>> {
        let (record, handshake) = datagram.split_at(13);
        assert_eq!(
            usize::from(u16::from_be_bytes([record[11], record[12]])),
            handshake.len()
        );
        let (header, body) = handshake.split_at(12);
        assert_eq!(
            header[6..12],
            [0, 0, 0, header[1], header[2], header[3]],
            "already a fragment"
        );
        let mut fragments: Vec<Vec<u8>> = body
            .chunks(chunk)
            .enumerate()
            .map(|(i, piece)| {
                let mut d = record[..5].to_vec();
                // Record numbers well above the client's own, so none looks like a replay.
                d.extend_from_slice(&(1000 + i as u64).to_be_bytes()[2..]);
                d.extend_from_slice(&((12 + piece.len()) as u16).to_be_bytes());
                d.extend_from_slice(&header[..6]); // type, length, message_seq
                d.extend_from_slice(&((i * chunk) as u32).to_be_bytes()[1..]);
                d.extend_from_slice(&(piece.len() as u32).to_be_bytes()[1..]);
                d.extend_from_slice(piece);
                d
            })
            .collect();
        fragments.reverse();
        fragments
    }

    #[test]
    fn server_answers_a_fragmented_dtls13_capable_client_hello_with_dtls12() {
        // dimpl's auto client sends a hybrid ClientHello that also offers DTLS 1.3 (version
        // 0xFEFC in supported_versions, a key_share), like Chrome; the network fragments it, as a
        // browser does when a post-quantum key share makes it larger than the MTU.
        let mut now = Instant::now();
        let (cc, sc) = (certificate(), certificate());
        let mut client = Raw::new(DtlsRole::Client, &cc, Config::default(), true);
        let mut server = DtlsTransport::new(&sc, DtlsRole::Server, vec![sha256(&cc)], now).unwrap();
        let mut fragments = 0;
        let mut net = |from_client: bool, index: usize, p: &[u8]| {
            if from_client && index == 0 {
                assert_eq!((p[0], p[13]), (22, 1), "not a ClientHello");
                assert!(p.windows(2).any(|w| w == [0xFE, 0xFC]), "no DTLS 1.3 offer");
                // Several times more fragments than Chrome's two, within dimpl's queue.
                let pieces = fragment_handshake(p, 150);
                fragments = pieces.len();
                pieces
            } else {
                vec![p.to_vec()]
            }
        };
        let (a, b) = run(
            &mut client,
            &mut server,
            &mut now,
            Duration::from_secs(5),
            &mut net,
        );
        assert!(fragments >= 3, "{fragments} fragments");
        assert!(
            a.connected.is_some() && b.connected.is_some(),
            "{a:?} {b:?}"
        );
        assert_eq!(
            client.dtls.protocol_version(),
            Some(dimpl::ProtocolVersion::DTLS1_2)
        );
        // Answered at once from the reassembled fragments, not from a later retransmission.
        assert_eq!(a.sent, 2, "client had to retransmit");
    }

    #[test]
    fn client_starts_the_handshake_and_server_waits() {
        let now = Instant::now();
        let (mut client, mut server) = our_pair(now);
        let mut buf = vec![0; MIN_POLL_BUFFER_LEN];
        assert_eq!(server.poll_output(&mut buf), DtlsOutput::None);
        assert_eq!(server.state(), DtlsState::New);
        assert_eq!(client.state(), DtlsState::New);
        let DtlsOutput::Packet(n) = client.poll_output(&mut buf) else {
            panic!("client sent nothing");
        };
        // A handshake record carrying a ClientHello.
        assert!(n > 13);
        assert_eq!((buf[0], buf[13]), (22, 1));
        assert_eq!(client.state(), DtlsState::Connecting);
        assert_eq!(client.poll_output(&mut buf), DtlsOutput::None);
        assert!(client.poll_timeout().is_some_and(|t| t > now));
    }

    #[test]
    fn wrong_remote_fingerprint_fails_without_keys() {
        for failing_side in [DtlsRole::Server, DtlsRole::Client] {
            let mut now = Instant::now();
            let (cc, sc, other) = (certificate(), certificate(), certificate());
            let (client_expects, server_expects) = match failing_side {
                DtlsRole::Server => (sha256(&sc), sha256(&other)),
                DtlsRole::Client => (sha256(&other), sha256(&cc)),
            };
            let mut client =
                DtlsTransport::new(&cc, DtlsRole::Client, vec![client_expects], now).unwrap();
            let mut server =
                DtlsTransport::new(&sc, DtlsRole::Server, vec![server_expects], now).unwrap();
            let (a, b) = run(
                &mut client,
                &mut server,
                &mut now,
                Duration::from_secs(60),
                &mut perfect,
            );
            let (failed, other_side, transport) = match failing_side {
                DtlsRole::Server => (b, a, &server),
                DtlsRole::Client => (a, b, &client),
            };
            assert_eq!(failed.failed, Some(DtlsError::FingerprintMismatch));
            assert!(failed.connected.is_none(), "keys exported for a wrong peer");
            assert_eq!(transport.state(), DtlsState::Failed);
            assert_eq!(transport.poll_timeout(), None);
            // The side that failed never finished, so neither did its peer.
            assert!(other_side.connected.is_none());
        }
    }

    #[test]
    fn only_the_first_remote_fingerprint_counts() {
        let (cc, other) = (certificate(), certificate());
        let mut sha1 = cc.fingerprints().into_iter().next().unwrap();
        sha1.value = sha1.value.to_lowercase(); // the comparison ignores case
        for (fingerprints, connects) in [
            (vec![sha256(&other), sha256(&cc)], false),
            (vec![sha1, sha256(&other)], true),
        ] {
            let mut now = Instant::now();
            let mut client = Raw::new(DtlsRole::Client, &cc, Config::default(), false);
            let sc = certificate();
            let mut server = DtlsTransport::new(&sc, DtlsRole::Server, fingerprints, now).unwrap();
            let (_, s) = run(
                &mut client,
                &mut server,
                &mut now,
                Duration::from_secs(60),
                &mut perfect,
            );
            assert_eq!(s.connected.is_some(), connects);
            assert_eq!(s.failed.is_some(), !connects);
        }
    }

    #[test]
    fn fingerprint_arriving_after_the_handshake_releases_or_fails_it() {
        for right in [true, false] {
            let mut now = Instant::now();
            let (cc, sc) = (certificate(), certificate());
            let mut client = Raw::new(DtlsRole::Client, &cc, Config::default(), false);
            // The ClientHello beat connectWebRtcTransport: no fingerprint yet.
            let mut server = DtlsTransport::new(&sc, DtlsRole::Server, vec![], now).unwrap();
            let (a, b) = run(
                &mut client,
                &mut server,
                &mut now,
                Duration::from_secs(2),
                &mut perfect,
            );
            // The browser is done; the keys are held back until we know who it is.
            let (_, client_keys) = a.connected.expect("client connected");
            assert!(b.connected.is_none() && b.failed.is_none());
            assert_eq!(server.state(), DtlsState::Connecting);

            let fingerprint = if right {
                sha256(&cc)
            } else {
                sha256(&certificate())
            };
            server.set_remote_fingerprints(vec![fingerprint]).unwrap();
            let drained = server.drain();
            if right {
                let (_, server_keys) = drained.connected.expect("released after the check");
                assert_mirrored(&client_keys, &server_keys);
                assert_eq!(server.state(), DtlsState::Connected);
            } else {
                assert_eq!(drained.failed, Some(DtlsError::FingerprintMismatch));
                assert!(drained.connected.is_none());
                assert_eq!(server.state(), DtlsState::Failed);
            }
        }
    }

    #[test]
    fn unusable_parameters_are_refused_up_front() {
        let now = Instant::now();
        let cert = certificate();
        let fp = sha256(&cert);
        // No fingerprint yet is allowed (it may follow), but only once.
        let mut pending = DtlsTransport::new(&cert, DtlsRole::Server, vec![], now).unwrap();
        pending.set_remote_fingerprints(vec![fp.clone()]).unwrap();
        assert_eq!(
            pending.set_remote_fingerprints(vec![fp.clone()]),
            Err(DtlsError::RemoteFingerprintAlreadySet)
        );
        let md5 = DtlsFingerprint {
            algorithm: "md5".into(),
            value: "00".into(),
        };
        assert!(matches!(
            DtlsTransport::new(&cert, DtlsRole::Server, vec![md5], now),
            Err(DtlsError::UnsupportedFingerprintAlgorithm(_))
        ));
        let broken = DtlsCertificate {
            certificate_der: cert.certificate_der.clone(),
            private_key_der: vec![1, 2, 3],
        };
        assert_eq!(
            DtlsTransport::new(&broken, DtlsRole::Client, vec![fp], now).unwrap_err(),
            DtlsError::InvalidCertificate
        );
    }

    /// Loses the `index`-th datagram sent by one side (`from_a`) and nothing else.
    fn lose_one(from_a: bool, index: usize) -> impl FnMut(bool, usize, &[u8]) -> Vec<Vec<u8>> {
        move |a, i, p| {
            if a == from_a && i == index {
                vec![]
            } else {
                vec![p.to_vec()]
            }
        }
    }

    #[test]
    fn handshake_survives_the_loss_of_any_one_datagram() {
        // Both pairings: a browser-like dimpl client with our server, and our two ends.
        type Pair = (Box<dyn Endpoint>, Box<dyn Endpoint>);
        let pairs: [fn(Instant) -> Pair; 2] = [
            |now| {
                let (c, s, _) = raw_client_our_server(now);
                (Box::new(c), Box::new(s))
            },
            |now| {
                let (c, s) = our_pair(now);
                (Box::new(c), Box::new(s))
            },
        ];
        for make in pairs {
            let mut now = Instant::now();
            let (mut c, mut s) = make(now);
            let (a, b) = run(
                &mut *c,
                &mut *s,
                &mut now,
                Duration::from_secs(5),
                &mut perfect,
            );
            assert!(a.connected.is_some() && b.connected.is_some());
            let lossless = (a.sent, b.sent);
            assert!(lossless.0 >= 2 && lossless.1 >= 2, "flights: {lossless:?}");
            for (from_client, count) in [(true, lossless.0), (false, lossless.1)] {
                for index in 0..count {
                    let mut now = Instant::now();
                    let (mut c, mut s) = make(now);
                    let mut net = lose_one(from_client, index);
                    let (a, b) = run(
                        &mut *c,
                        &mut *s,
                        &mut now,
                        Duration::from_secs(20),
                        &mut net,
                    );
                    assert!(
                        a.connected.is_some() && b.connected.is_some(),
                        "lost datagram {index} from the {}: {a:?} {b:?}",
                        if from_client { "client" } else { "server" }
                    );
                    // Recovery took a retransmission, so more was sent than without loss.
                    assert!(a.sent + b.sent > lossless.0 + lossless.1);
                }
            }
        }
    }

    /// Deterministic junk.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    /// A well-framed DTLS 1.2 record with the given type and epoch and a random body.
    fn framed(rng: &mut XorShift, content_type: u8, epoch: u16, len: usize) -> Vec<u8> {
        let mut record = vec![content_type, 0xFE, 0xFD];
        record.extend_from_slice(&epoch.to_be_bytes());
        record.extend_from_slice(&rng.bytes(6));
        record.extend_from_slice(&(len as u16).to_be_bytes());
        record.extend_from_slice(&rng.bytes(len));
        record
    }

    #[test]
    fn garbage_and_truncated_records_between_flights_do_not_break_the_handshake() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut malformed = 0;
        let mut net = |_: bool, _: usize, p: &[u8]| {
            let mut out = Vec::new();
            // Truncated copies of the real datagram: refused before dimpl sees them.
            for cut in [1, 5, 12, 13, p.len() / 2, p.len() - 1] {
                out.push(p[..cut].to_vec());
                malformed += 1;
            }
            // Junk anywhere in the DTLS first-byte range, and wrong versions.
            for first in [20u8, 23, 24, 47, 63] {
                let mut junk = rng.bytes(40);
                junk[0] = first;
                out.push(junk);
                malformed += 1;
            }
            let mut bad_version = p.to_vec();
            bad_version[1] = 0x03;
            out.push(bad_version);
            malformed += 1;
            // Well-framed records with random bodies: dimpl must discard them.
            out.push(framed(&mut rng, 22, 0, 60));
            out.push(framed(&mut rng, 23, 1, 80));
            out.push(framed(&mut rng, 22, 1, 48));
            out.push(p.to_vec());
            out
        };
        let mut now = Instant::now();
        let (mut client, mut server) = our_pair(now);
        let (a, b) = run(
            &mut client,
            &mut server,
            &mut now,
            Duration::from_secs(10),
            &mut net,
        );
        assert!(
            a.connected.is_some() && b.connected.is_some(),
            "{a:?} {b:?}"
        );
        assert!(a.failed.is_none() && b.failed.is_none());
        assert!(
            a.refused + b.refused >= malformed,
            "malformed input was accepted"
        );

        // Once connected, garbage leaves the state alone and application data still flows.
        let mut rng = XorShift(7);
        for len in [0, 1, 12, 13, 30, 200] {
            assert!(server.handle_packet(&rng.bytes(len), now).is_err() || len >= 13);
        }
        let _ = server.handle_packet(&framed(&mut rng, 23, 1, 64), now);
        assert!(server.drain().failed.is_none());
        assert_eq!(server.state(), DtlsState::Connected);
        client.send_application_data(b"after garbage").unwrap();
        let (_, b) = run(
            &mut client,
            &mut server,
            &mut now,
            Duration::from_secs(1),
            &mut perfect,
        );
        assert_eq!(b.app_data, vec![b"after garbage".to_vec()]);
    }

    #[test]
    fn forged_records_after_the_handshake_are_ignored_but_a_fatal_alert_during_it_fails() {
        let mut now = Instant::now();
        let (mut client, mut server) = our_pair(now);
        run(
            &mut client,
            &mut server,
            &mut now,
            Duration::from_secs(5),
            &mut perfect,
        );
        // Plaintext fatal alert (epoch 0), a forged epoch-1 alert, a stray ChangeCipherSpec.
        let alert = [21, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0x50, 0, 2, 2, 40];
        let mut forged = alert;
        forged[4] = 1;
        let ccs = [20, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0x51, 0, 1, 1];
        for record in [&alert[..], &forged, &ccs] {
            let _ = server.handle_packet(record, now);
            assert!(server.drain().failed.is_none());
            assert_eq!(server.state(), DtlsState::Connected);
        }

        // During the handshake the peer may abort with a plaintext fatal alert, as with OpenSSL.
        let (mut client, mut server) = our_pair(now);
        client.timeout(now);
        server
            .handle_packet(&client.drain().packets[0], now)
            .unwrap();
        assert!(!server.drain().packets.is_empty());
        assert!(matches!(
            server.handle_packet(&alert, now),
            Err(DtlsError::Dtls(_))
        ));
        assert!(matches!(server.drain().failed, Some(DtlsError::Dtls(_))));
        assert_eq!(server.state(), DtlsState::Failed);
    }

    /// A datagram of one or two well-framed records with random fields: handshake headers with
    /// random types, lengths and fragment offsets, alerts, CCS, application data, any epoch.
    fn random_records(rng: &mut XorShift) -> Vec<u8> {
        let mut datagram = Vec::new();
        for _ in 0..1 + rng.next() % 2 {
            let content_type = 20 + (rng.next() % 4) as u8;
            let epoch = (rng.next() % 3) as u16;
            let mut body = Vec::new();
            if content_type == 22 {
                body.push((rng.next() % 25) as u8);
                let length = (rng.next() % 400) as u32;
                body.extend_from_slice(&length.to_be_bytes()[1..]);
                body.extend_from_slice(&((rng.next() % 8) as u16).to_be_bytes());
                let offset = (rng.next() % 500) as u32;
                body.extend_from_slice(&offset.to_be_bytes()[1..]);
                let fragment = (rng.next() % 120) as u32;
                body.extend_from_slice(&fragment.to_be_bytes()[1..]);
                let n = (rng.next() % 130) as usize;
                body.extend(rng.bytes(n));
            } else {
                let n = (rng.next() % 64) as usize;
                body.extend(rng.bytes(n));
            }
            let mut record = framed(rng, content_type, epoch, 0);
            record.truncate(11);
            record.extend_from_slice(&(body.len() as u16).to_be_bytes());
            record.extend_from_slice(&body);
            datagram.extend_from_slice(&record);
        }
        datagram
    }

    #[test]
    fn random_well_framed_records_never_panic_nor_disturb_a_connection() {
        let mut rng = XorShift(0xD1B5_4A32_D192_ED03);
        let mut now = Instant::now();
        // Before, in the middle of and after the handshake.
        let (mut client, mut fresh) = our_pair(now);
        let (_, mut midway) = our_pair(now);
        client.timeout(now);
        midway
            .handle_packet(&client.drain().packets[0], now)
            .unwrap();
        let (mut client, mut connected) = our_pair(now);
        run(
            &mut client,
            &mut connected,
            &mut now,
            Duration::from_secs(5),
            &mut perfect,
        );
        for _ in 0..3000 {
            now += Duration::from_millis(1);
            for transport in [&mut fresh, &mut midway, &mut connected] {
                let _ = transport.handle_packet(&random_records(&mut rng), now);
                let _ = transport.drain();
            }
        }
        assert_eq!(connected.state(), DtlsState::Connected);
        client.send_application_data(b"still there").unwrap();
        let (_, b) = run(
            &mut client,
            &mut connected,
            &mut now,
            Duration::from_secs(1),
            &mut perfect,
        );
        assert_eq!(b.app_data, vec![b"still there".to_vec()]);
    }

    #[test]
    fn malformed_datagrams_are_reported_and_change_nothing() {
        let now = Instant::now();
        let (_, mut server) = our_pair(now);
        for bad in [
            &[][..],
            &[22],
            &[22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 1, 2],
            &[64, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ] {
            assert_eq!(
                server.handle_packet(bad, now),
                Err(DtlsError::MalformedRecord)
            );
        }
        assert_eq!(
            server.handle_packet(&[22; MAX_DTLS_DATAGRAM_LEN + 1], now),
            Err(DtlsError::DatagramTooLarge(MAX_DTLS_DATAGRAM_LEN + 1))
        );
        assert_eq!(server.state(), DtlsState::New);
        assert_eq!(server.drain().packets.len(), 0);
    }

    #[test]
    fn application_data_flows_both_ways_once_connected() {
        let mut now = Instant::now();
        let (mut client, mut server) = our_pair(now);
        assert_eq!(
            client.send_application_data(b"too early"),
            Err(DtlsError::NotConnected)
        );
        run(
            &mut client,
            &mut server,
            &mut now,
            Duration::from_secs(5),
            &mut perfect,
        );
        client.send_application_data(b"sctp from client").unwrap();
        server.send_application_data(b"sctp from server").unwrap();
        let (a, b) = run(
            &mut client,
            &mut server,
            &mut now,
            Duration::from_secs(1),
            &mut perfect,
        );
        assert_eq!(a.app_data, vec![b"sctp from server".to_vec()]);
        assert_eq!(b.app_data, vec![b"sctp from client".to_vec()]);
    }

    #[test]
    fn close_sends_close_notify_and_the_peer_reports_closed() {
        let mut now = Instant::now();
        let (mut client, mut server) = our_pair(now);
        run(
            &mut client,
            &mut server,
            &mut now,
            Duration::from_secs(5),
            &mut perfect,
        );
        server.close();
        assert_eq!(server.state(), DtlsState::Closed);
        let (a, _) = run(
            &mut client,
            &mut server,
            &mut now,
            Duration::from_secs(1),
            &mut perfect,
        );
        assert!(a.closed, "client did not see close_notify");
        assert_eq!(client.state(), DtlsState::Closed);
        assert_eq!(
            client.send_application_data(b"x"),
            Err(DtlsError::NotConnected)
        );
        assert_eq!(server.handle_packet(&[23; 20], now), Err(DtlsError::Closed));
    }

    #[test]
    fn unanswered_handshake_fails_after_the_retransmissions() {
        let mut now = Instant::now();
        let (mut client, _) = our_pair(now);
        let mut sent = 0;
        let mut failed = None;
        let deadline = now + Duration::from_secs(120);
        while failed.is_none() && now < deadline {
            client.handle_timeout(now);
            let drained = client.drain();
            sent += drained.packets.len();
            failed = drained.failed;
            now = client.poll_timeout().unwrap_or(now).max(now + STEP);
        }
        assert!(matches!(failed, Some(DtlsError::Dtls(_))), "{failed:?}");
        assert_eq!(client.state(), DtlsState::Failed);
        // The first ClientHello and its 8 retransmissions, then the 40 s deadline.
        assert_eq!(sent, 9);
        assert_eq!(client.poll_timeout(), None);
    }

    #[test]
    fn small_poll_buffer_loses_nothing() {
        let now = Instant::now();
        let (mut client, _) = our_pair(now);
        let mut small = [0u8; 100];
        assert_eq!(
            client.poll_output(&mut small),
            DtlsOutput::BufferTooSmall {
                needed: MIN_POLL_BUFFER_LEN
            }
        );
        assert_eq!(client.drain().packets.len(), 1);
    }

    #[test]
    fn keying_material_is_split_as_rfc5764_says() {
        for profile in SrtpProfile::PREFERENCE {
            let material: Vec<u8> = (0..profile.keying_material_len() as u8).collect();
            let (k, s) = (profile.master_key_len(), profile.master_salt_len());
            let client =
                SrtpKeys::from_keying_material(profile, &material, DtlsRole::Client).unwrap();
            let server =
                SrtpKeys::from_keying_material(profile, &material, DtlsRole::Server).unwrap();
            assert_eq!(client.local_master_key, &material[..k]);
            assert_eq!(client.remote_master_key, &material[k..2 * k]);
            assert_eq!(client.local_master_salt, &material[2 * k..2 * k + s]);
            assert_eq!(client.remote_master_salt, &material[2 * k + s..]);
            assert_mirrored(&client, &server);
            assert!(
                SrtpKeys::from_keying_material(profile, &material[1..], DtlsRole::Client).is_none()
            );
        }
    }

    #[test]
    fn names_are_mediasoups() {
        assert_eq!(
            serde_json::to_value([DtlsState::New, DtlsState::Connecting, DtlsState::Connected])
                .unwrap(),
            serde_json::json!(["new", "connecting", "connected"])
        );
        assert_eq!(DtlsState::Failed.as_str(), "failed");
        assert_eq!(
            serde_json::to_value(DtlsRole::Server).unwrap(),
            serde_json::json!("server")
        );
        let names: Vec<_> = SrtpProfile::PREFERENCE.iter().map(|p| p.as_str()).collect();
        assert_eq!(
            names,
            [
                "AEAD_AES_256_GCM",
                "AEAD_AES_128_GCM",
                "AES_CM_128_HMAC_SHA1_80",
                "AES_CM_128_HMAC_SHA1_32"
            ]
        );
        assert_eq!(
            serde_json::to_value(SrtpProfile::AesCm128HmacSha1_32).unwrap(),
            serde_json::json!("AES_CM_128_HMAC_SHA1_32")
        );
    }
}
