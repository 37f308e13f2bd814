//! The shard-side WebRtcTransport: its ICE and DTLS parameters, its states and counters, and the
//! producers and consumers it carries. Packet handling (ICE checks, DTLS, SRTP) plugs in here.

use std::net::SocketAddr;
use std::time::Instant;

use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::dtls_certificate::DtlsFingerprint;

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

/// mediasoup's `iceState` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportIceState {
    New,
    Connected,
    Completed,
    Disconnected,
    Closed,
}

impl TransportIceState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Connected => "connected",
            Self::Completed => "completed",
            Self::Disconnected => "disconnected",
            Self::Closed => "closed",
        }
    }
}

/// mediasoup's `dtlsState` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportDtlsState {
    New,
    Connecting,
    Connected,
    Failed,
    Closed,
}

impl TransportDtlsState {
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

/// Byte counters of one direction.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrafficCounters {
    pub bytes: u64,
    pub rtp_bytes: u64,
    pub rtx_bytes: u64,
    pub probation_bytes: u64,
}

/// A WebRtcTransport living on a shard.
#[derive(Debug)]
pub struct WebRtcTransport {
    pub id: String,
    pub options: WebRtcTransportOptions,
    pub ice_parameters: IceParameters,
    pub ice_candidates: Vec<IceCandidate>,
    pub local_dtls_parameters: DtlsParameters,
    pub remote_dtls_parameters: Option<DtlsParameters>,
    pub ice_state: TransportIceState,
    pub dtls_state: TransportDtlsState,
    pub selected_tuple: Option<(SocketAddr, SocketAddr, &'static str)>,
    pub received: TrafficCounters,
    pub sent: TrafficCounters,
    pub created_at: Instant,
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
        Self {
            id,
            options,
            ice_parameters: IceParameters::generate(),
            ice_candidates,
            local_dtls_parameters: DtlsParameters {
                role: DtlsRole::Auto,
                fingerprints,
            },
            remote_dtls_parameters: None,
            ice_state: TransportIceState::New,
            dtls_state: TransportDtlsState::New,
            selected_tuple: None,
            received: TrafficCounters::default(),
            sent: TrafficCounters::default(),
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

    /// Stores the client's DTLS parameters and fixes our role by mediasoup's rule: a remote
    /// `client` makes us `server`; a remote `server` or `auto` makes us `client`.
    pub fn connect(&mut self, remote: DtlsParameters) -> Result<(), String> {
        if self.remote_dtls_parameters.is_some() {
            return Err("connect() already called".into());
        }
        if remote.fingerprints.is_empty() {
            return Err("invalid dtlsParameters: empty fingerprints".into());
        }
        for fp in &remote.fingerprints {
            let known = matches!(
                fp.algorithm.to_ascii_lowercase().as_str(),
                "sha-1" | "sha-224" | "sha-256" | "sha-384" | "sha-512"
            );
            if !known {
                return Err(format!(
                    "invalid dtlsParameters: unsupported fingerprint algorithm \"{}\"",
                    fp.algorithm
                ));
            }
        }
        self.local_dtls_parameters.role = match remote.role {
            DtlsRole::Client => DtlsRole::Server,
            DtlsRole::Server | DtlsRole::Auto => DtlsRole::Client,
        };
        self.remote_dtls_parameters = Some(remote);
        if self.dtls_state == TransportDtlsState::New {
            self.dtls_state = TransportDtlsState::Connecting;
        }
        Ok(())
    }

    /// New ICE credentials (the ICE state machine keeps accepting the old ones until the first
    /// check with the new ones).
    pub fn restart_ice(&mut self) -> IceParameters {
        self.ice_parameters = IceParameters::generate();
        self.ice_parameters.clone()
    }

    /// `getTransportStats` in mediasoup's `webrtc-transport` shape.
    pub fn stats(&self, now_ms: u64) -> Value {
        let mut stats = json!({
            "type": "webrtc-transport",
            "transportId": self.id,
            "timestamp": now_ms,
            "bytesReceived": self.received.bytes,
            "recvBitrate": 0,
            "bytesSent": self.sent.bytes,
            "sendBitrate": 0,
            "rtpBytesReceived": self.received.rtp_bytes,
            "rtpRecvBitrate": 0,
            "rtpBytesSent": self.sent.rtp_bytes,
            "rtpSendBitrate": 0,
            "rtxBytesReceived": self.received.rtx_bytes,
            "rtxRecvBitrate": 0,
            "rtxBytesSent": self.sent.rtx_bytes,
            "rtxSendBitrate": 0,
            "probationBytesSent": self.sent.probation_bytes,
            "probationSendBitrate": 0,
            "availableOutgoingBitrate": self.options.initial_available_outgoing_bitrate,
            "iceRole": "controlled",
            "iceState": self.ice_state.as_str(),
            "dtlsState": self.dtls_state.as_str(),
        });
        if let Some(max) = self.options.max_incoming_bitrate {
            stats["maxIncomingBitrate"] = json!(max);
        }
        if let Some((local, remote, protocol)) = self.selected_tuple {
            stats["iceSelectedTuple"] = json!({
                "localIp": local.ip().to_string(),
                "localAddress": local.ip().to_string(),
                "localPort": local.port(),
                "remoteIp": remote.ip().to_string(),
                "remotePort": remote.port(),
                "protocol": protocol,
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
        let new = t.restart_ice();
        assert_ne!(new.username_fragment, old.username_fragment);
        assert_ne!(new.password, old.password);
        assert!(new.ice_lite);
    }

    #[test]
    fn connect_picks_the_role_and_refuses_a_second_call() {
        let mut t = WebRtcTransport::new("t".into(), Default::default(), &listen(), vec![]);
        let fp = DtlsFingerprint {
            algorithm: "sha-256".into(),
            value: "AA".into(),
        };
        assert!(t
            .connect(DtlsParameters {
                role: DtlsRole::Client,
                fingerprints: vec![],
            })
            .is_err());
        t.connect(DtlsParameters {
            role: DtlsRole::Client,
            fingerprints: vec![fp.clone()],
        })
        .unwrap();
        assert_eq!(t.local_dtls_parameters.role, DtlsRole::Server);
        assert_eq!(t.dtls_state, TransportDtlsState::Connecting);
        assert!(t
            .connect(DtlsParameters {
                role: DtlsRole::Client,
                fingerprints: vec![fp],
            })
            .is_err());
    }
}
