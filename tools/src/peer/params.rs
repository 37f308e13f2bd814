//! The parts of a createWebRtcTransport answer the peer needs, read straight from the JSON (so a
//! malformed answer is a test failure here, not something the server's own types smooth over).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A transport protocol of a candidate and of the peer's path to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    #[default]
    Udp,
    /// ICE-TCP (RFC 6544) with RFC 4571 framing; the peer is the active side.
    Tcp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        }
    }
}

/// One remote ICE candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCandidate {
    pub address: SocketAddr,
    pub protocol: Protocol,
    pub priority: u32,
    /// `tcpType` (`passive` for mediasoup's TCP candidates).
    pub tcp_type: Option<String>,
}

/// A certificate fingerprint: hash algorithm name as in SDP (`sha-256`) and the digest bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub algorithm: String,
    pub digest: Vec<u8>,
}

impl Fingerprint {
    /// The sha-256 fingerprint of a DER certificate.
    pub fn sha256_of(der: &[u8]) -> Self {
        Self {
            algorithm: "sha-256".into(),
            digest: Sha256::digest(der).to_vec(),
        }
    }

    /// Parses `AB:CD:...` (case-insensitive).
    pub fn parse(algorithm: &str, value: &str) -> Option<Self> {
        let digest = value
            .split(':')
            .map(|b| {
                if b.len() == 2 {
                    u8::from_str_radix(b, 16).ok()
                } else {
                    None
                }
            })
            .collect::<Option<Vec<u8>>>()?;
        Some(Self {
            algorithm: algorithm.to_ascii_lowercase(),
            digest,
        })
    }

    /// Upper-case colon-separated hex, as mediasoup and browsers write it.
    pub fn value(&self) -> String {
        self.digest
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// Whether `der` is the certificate this fingerprint names (sha-256 only: the one the peer
    /// picks from the answer).
    pub fn matches(&self, der: &[u8]) -> bool {
        self.algorithm == "sha-256" && Sha256::digest(der).as_slice() == self.digest.as_slice()
    }

    /// `{algorithm, value}` as in `dtlsParameters.fingerprints`.
    pub fn to_json(&self) -> Value {
        json!({ "algorithm": self.algorithm, "value": self.value() })
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.algorithm, self.value())
    }
}

/// What the peer takes from the createWebRtcTransport answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteParameters {
    pub username_fragment: String,
    pub password: String,
    pub ice_lite: bool,
    pub candidates: Vec<RemoteCandidate>,
    /// The server's sha-256 fingerprint (the one the peer checks).
    pub fingerprint: Fingerprint,
    /// `dtlsParameters.role` (`auto` from mediasoup).
    pub dtls_role: String,
}

impl RemoteParameters {
    /// Reads `iceParameters`, `iceCandidates` and `dtlsParameters` from the answer. The whole
    /// answer or just `{iceParameters, iceCandidates, dtlsParameters}` both work.
    pub fn from_answer(answer: &Value) -> Result<Self, String> {
        let ice = answer
            .get("iceParameters")
            .ok_or("answer has no iceParameters")?;
        let text = |v: &Value, key: &str| -> Result<String, String> {
            v.get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("missing string {key}"))
        };
        let username_fragment = text(ice, "usernameFragment")?;
        let password = text(ice, "password")?;
        let ice_lite = ice.get("iceLite").and_then(Value::as_bool).unwrap_or(false);

        let candidates = answer
            .get("iceCandidates")
            .and_then(Value::as_array)
            .ok_or("answer has no iceCandidates array")?
            .iter()
            .map(parse_candidate)
            .collect::<Result<Vec<_>, _>>()?;

        let dtls = answer
            .get("dtlsParameters")
            .ok_or("answer has no dtlsParameters")?;
        let dtls_role = dtls
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or("auto")
            .to_owned();
        let fingerprint = dtls
            .get("fingerprints")
            .and_then(Value::as_array)
            .ok_or("dtlsParameters has no fingerprints")?
            .iter()
            .find(|f| {
                f.get("algorithm")
                    .and_then(Value::as_str)
                    .is_some_and(|a| a.eq_ignore_ascii_case("sha-256"))
            })
            .ok_or("dtlsParameters has no sha-256 fingerprint")?;
        let fingerprint = Fingerprint::parse("sha-256", &text(fingerprint, "value")?)
            .filter(|f| f.digest.len() == 32)
            .ok_or("malformed sha-256 fingerprint")?;

        Ok(Self {
            username_fragment,
            password,
            ice_lite,
            candidates,
            fingerprint,
            dtls_role,
        })
    }

    /// The highest-priority candidate of `protocol` (for TCP, a passive one).
    pub fn candidate(&self, protocol: Protocol) -> Option<&RemoteCandidate> {
        self.candidates
            .iter()
            .filter(|c| c.protocol == protocol)
            .filter(|c| protocol == Protocol::Udp || c.tcp_type.as_deref() != Some("active"))
            .max_by_key(|c| c.priority)
    }
}

fn parse_candidate(c: &Value) -> Result<RemoteCandidate, String> {
    let address = c
        .get("address")
        .or_else(|| c.get("ip"))
        .and_then(Value::as_str)
        .ok_or("candidate has no address")?;
    let ip: IpAddr = address
        .parse()
        .map_err(|_| format!("candidate address {address:?} is not an IP"))?;
    let port = c
        .get("port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or("candidate has no valid port")?;
    let protocol = match c.get("protocol").and_then(Value::as_str) {
        Some(p) if p.eq_ignore_ascii_case("udp") => Protocol::Udp,
        Some(p) if p.eq_ignore_ascii_case("tcp") => Protocol::Tcp,
        other => return Err(format!("candidate protocol {other:?}")),
    };
    let priority = c
        .get("priority")
        .and_then(Value::as_u64)
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or(0);
    Ok(RemoteCandidate {
        address: SocketAddr::new(ip, port),
        protocol,
        priority,
        tcp_type: c.get("tcpType").and_then(Value::as_str).map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> Value {
        json!({
            "id": "t1",
            "iceParameters": {"usernameFragment": "srvufrag", "password": "srvpwd", "iceLite": true},
            "iceCandidates": [
                {"foundation": "udpcandidate", "priority": 1076302079u32, "ip": "127.0.0.1",
                 "address": "127.0.0.1", "protocol": "udp", "port": 40000, "type": "host"},
                {"foundation": "tcpcandidate", "priority": 1076276479u32, "ip": "127.0.0.1",
                 "address": "127.0.0.1", "protocol": "tcp", "port": 40001, "type": "host",
                 "tcpType": "passive"}
            ],
            "dtlsParameters": {"role": "auto", "fingerprints": [
                {"algorithm": "sha-1", "value": "00:11"},
                {"algorithm": "sha-256", "value": format!("{}AB", "00:".repeat(31))}
            ]}
        })
    }

    #[test]
    fn reads_a_mediasoup_answer() {
        let p = RemoteParameters::from_answer(&answer()).unwrap();
        assert_eq!(p.username_fragment, "srvufrag");
        assert_eq!(p.password, "srvpwd");
        assert!(p.ice_lite);
        assert_eq!(p.dtls_role, "auto");
        assert_eq!(p.fingerprint.digest.len(), 32);
        assert_eq!(p.fingerprint.digest[31], 0xAB);
        let udp = p.candidate(Protocol::Udp).unwrap();
        assert_eq!(udp.address, SocketAddr::from(([127, 0, 0, 1], 40000)));
        let tcp = p.candidate(Protocol::Tcp).unwrap();
        assert_eq!(tcp.address.port(), 40001);
        assert_eq!(tcp.tcp_type.as_deref(), Some("passive"));
    }

    #[test]
    fn rejects_malformed_answers() {
        let mut a = answer();
        a["dtlsParameters"]["fingerprints"][1]["value"] = json!("zz:00");
        assert!(RemoteParameters::from_answer(&a).is_err());
        let mut a = answer();
        a["iceCandidates"][0]["protocol"] = json!("sctp");
        assert!(RemoteParameters::from_answer(&a).is_err());
        let mut a = answer();
        a.as_object_mut().unwrap().remove("iceParameters");
        assert!(RemoteParameters::from_answer(&a).is_err());
    }

    #[test]
    fn fingerprint_text_round_trips() {
        let fp = Fingerprint::sha256_of(b"certificate");
        assert_eq!(Fingerprint::parse("SHA-256", &fp.value()), Some(fp.clone()));
        assert!(fp.matches(b"certificate"));
        assert!(!fp.matches(b"other"));
        assert_eq!(fp.to_json()["algorithm"], "sha-256");
    }
}
