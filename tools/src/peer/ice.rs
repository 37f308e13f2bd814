//! The ICE side of the peer as STUN messages (rtc-stun, independent of the server's codec):
//! binding requests as a full ICE agent sends them to an ICE-lite server, and their responses.
//!
//! Requests carry USERNAME (`<server ufrag>:<our ufrag>`), PRIORITY, ICE-CONTROLLING or
//! ICE-CONTROLLED, optionally USE-CANDIDATE, then MESSAGE-INTEGRITY keyed with the server's
//! password and FINGERPRINT, in that order (RFC 8445 §7.1.1, RFC 5389 §15).

use std::net::SocketAddr;

use rand::distr::{Alphanumeric, SampleString};
use rand::Rng;
use rtc_stun::attributes::{
    ATTR_FINGERPRINT, ATTR_ICE_CONTROLLED, ATTR_ICE_CONTROLLING, ATTR_MESSAGE_INTEGRITY,
    ATTR_PRIORITY, ATTR_USERNAME, ATTR_USE_CANDIDATE,
};
use rtc_stun::error_code::ErrorCodeAttribute;
use rtc_stun::fingerprint::FINGERPRINT;
use rtc_stun::integrity::MessageIntegrity;
use rtc_stun::message::{
    is_stun_message, Getter, Message, Setter, TransactionId, BINDING_ERROR, BINDING_REQUEST,
    BINDING_SUCCESS, CLASS_ERROR_RESPONSE, CLASS_SUCCESS_RESPONSE, METHOD_BINDING,
};
use rtc_stun::textattrs::TextAttribute;
use rtc_stun::xoraddr::XorMappedAddress;

use super::srtp::crypto_provider;

/// Our ICE credentials (random, like a browser's: 4+ chars ufrag, 22+ chars password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredentials {
    pub username_fragment: String,
    pub password: String,
}

impl IceCredentials {
    pub fn random() -> Self {
        let mut rng = rand::rng();
        Self {
            username_fragment: Alphanumeric.sample_string(&mut rng, 8),
            password: Alphanumeric.sample_string(&mut rng, 24),
        }
    }
}

/// Which ICE role attribute a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceRole {
    Controlling,
    Controlled,
}

/// A binding request, fully customisable for bad-ICE tests. `None` leaves an attribute out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRequest {
    /// USERNAME, normally `<server ufrag>:<our ufrag>`.
    pub username: Option<String>,
    /// Key for MESSAGE-INTEGRITY (normally the server's password); also used to check the
    /// response's integrity.
    pub password: Option<String>,
    pub priority: Option<u32>,
    pub role: Option<IceRole>,
    pub tie_breaker: u64,
    pub use_candidate: bool,
    pub fingerprint: bool,
}

impl BindingRequest {
    /// What the peer sends to connect: everything a browser sends, with `use_candidate` and the
    /// role from the options.
    pub fn for_transport(
        remote_ufrag: &str,
        remote_password: &str,
        local: &IceCredentials,
        role: IceRole,
        use_candidate: bool,
    ) -> Self {
        Self {
            username: Some(format!("{remote_ufrag}:{}", local.username_fragment)),
            password: Some(remote_password.to_owned()),
            priority: Some(PEER_REFLEXIVE_PRIORITY),
            role: Some(role),
            tie_breaker: rand::rng().random(),
            use_candidate,
            fingerprint: true,
        }
    }
}

/// RFC 8445 §5.1.2.1 priority of a peer-reflexive candidate (type preference 110, local
/// preference 65535, component 1): what a browser puts in PRIORITY.
pub const PEER_REFLEXIVE_PRIORITY: u32 = (110 << 24) | (65535 << 8) | 255;

/// What came back for a binding request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingOutcome {
    /// A success response. `authenticated` says its MESSAGE-INTEGRITY verified with the request's
    /// password (false if it had none or it did not verify).
    Success {
        mapped_address: Option<SocketAddr>,
        authenticated: bool,
    },
    /// An error response (e.g. 400, 401, 487).
    Error { code: u16, reason: String },
    /// Nothing within the time allowed.
    NoResponse,
}

/// STUN transaction id.
pub type TxId = [u8; 12];

/// Encodes `req` with a fresh transaction id.
pub fn encode_binding_request(req: &BindingRequest) -> Result<(TxId, Vec<u8>), String> {
    let tid = TransactionId::new();
    let crypto = crypto_provider()?.crypto();
    let mut m = Message::new();
    let mut setters: Vec<Box<dyn Setter + '_>> = vec![Box::new(BINDING_REQUEST), Box::new(tid)];
    if let Some(username) = &req.username {
        setters.push(Box::new(TextAttribute::new(
            ATTR_USERNAME,
            username.clone(),
        )));
    }
    m.build(&setters).map_err(|e| e.to_string())?;
    if let Some(priority) = req.priority {
        m.add(ATTR_PRIORITY, &priority.to_be_bytes());
    }
    match req.role {
        Some(IceRole::Controlling) => m.add(ATTR_ICE_CONTROLLING, &req.tie_breaker.to_be_bytes()),
        Some(IceRole::Controlled) => m.add(ATTR_ICE_CONTROLLED, &req.tie_breaker.to_be_bytes()),
        None => {}
    }
    if req.use_candidate {
        m.add(ATTR_USE_CANDIDATE, &[]);
    }
    if let Some(password) = &req.password {
        MessageIntegrity::new_short_term_integrity_with_provider(password.clone(), crypto)
            .add_to(&mut m)
            .map_err(|e| e.to_string())?;
    }
    if req.fingerprint {
        FINGERPRINT.add_to(&mut m).map_err(|e| e.to_string())?;
    }
    Ok((tid.0, m.raw))
}

/// Decodes a STUN message; `None` if it is not one or a present FINGERPRINT is wrong (RFC 5389
/// §7.3: such a message is silently discarded).
pub fn decode(packet: &[u8]) -> Option<Message> {
    if !is_stun_message(packet) {
        return None;
    }
    let mut m = Message::new();
    m.unmarshal_binary(packet).ok()?;
    if m.contains(ATTR_FINGERPRINT) && FINGERPRINT.check(&m).is_err() {
        return None;
    }
    Some(m)
}

/// Whether `m`'s MESSAGE-INTEGRITY verifies with `password`.
pub fn integrity_ok(m: &Message, password: &str) -> bool {
    let Ok(provider) = crypto_provider() else {
        return false;
    };
    // `check` rewrites the length field while it works, so it gets its own copy.
    let mut m = m.clone();
    m.contains(ATTR_MESSAGE_INTEGRITY)
        && MessageIntegrity::check(&mut m, password.as_bytes(), provider.crypto()).is_ok()
}

/// If `packet` is a binding response, its transaction id and outcome (integrity checked against
/// `password`).
pub fn parse_binding_response(
    packet: &[u8],
    password: Option<&str>,
) -> Option<(TxId, BindingOutcome)> {
    let m = decode(packet)?;
    if m.typ.method != METHOD_BINDING {
        return None;
    }
    let outcome = if m.typ.class == CLASS_SUCCESS_RESPONSE {
        let mut xor = XorMappedAddress::default();
        let mapped_address = xor
            .get_from(&m)
            .ok()
            .map(|()| SocketAddr::new(xor.ip, xor.port));
        BindingOutcome::Success {
            mapped_address,
            authenticated: password.is_some_and(|p| integrity_ok(&m, p)),
        }
    } else if m.typ.class == CLASS_ERROR_RESPONSE {
        let mut err = ErrorCodeAttribute::default();
        match err.get_from(&m) {
            Ok(()) => BindingOutcome::Error {
                code: err.code.0,
                reason: String::from_utf8_lossy(&err.reason).into_owned(),
            },
            Err(_) => BindingOutcome::Error {
                code: 0,
                reason: "error response without ERROR-CODE".into(),
            },
        }
    } else {
        return None;
    };
    Some((m.transaction_id.0, outcome))
}

/// A parsed binding request, as an ICE-lite responder sees it (used by the loopback server and
/// by tests checking what the peer sends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedBindingRequest {
    pub transaction_id: TxId,
    pub username: Option<String>,
    pub priority: Option<u32>,
    pub role: Option<(IceRole, u64)>,
    pub use_candidate: bool,
    pub has_fingerprint: bool,
    pub has_integrity: bool,
}

/// Parses a binding request (`None` for anything else).
pub fn parse_binding_request(packet: &[u8]) -> Option<(ParsedBindingRequest, Message)> {
    let m = decode(packet)?;
    if m.typ != BINDING_REQUEST {
        return None;
    }
    let u64_attr = |t| {
        m.get(t)
            .ok()
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(u64::from_be_bytes)
    };
    let role = u64_attr(ATTR_ICE_CONTROLLING)
        .map(|t| (IceRole::Controlling, t))
        .or_else(|| u64_attr(ATTR_ICE_CONTROLLED).map(|t| (IceRole::Controlled, t)));
    let parsed = ParsedBindingRequest {
        transaction_id: m.transaction_id.0,
        username: TextAttribute::get_from_as(&m, ATTR_USERNAME)
            .ok()
            .map(|t| t.text),
        priority: m
            .get(ATTR_PRIORITY)
            .ok()
            .and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok())
            .map(u32::from_be_bytes),
        role,
        use_candidate: m.contains(ATTR_USE_CANDIDATE),
        has_fingerprint: m.contains(ATTR_FINGERPRINT),
        has_integrity: m.contains(ATTR_MESSAGE_INTEGRITY),
    };
    Some((parsed, m))
}

/// A success response to `tid` carrying XOR-MAPPED-ADDRESS, keyed with `password`.
pub fn encode_binding_success(
    tid: TxId,
    mapped: SocketAddr,
    password: &str,
) -> Result<Vec<u8>, String> {
    let crypto = crypto_provider()?.crypto();
    let mut m = Message::new();
    m.build(&[
        Box::new(BINDING_SUCCESS),
        Box::new(TransactionId(tid)),
        Box::new(XorMappedAddress {
            ip: mapped.ip(),
            port: mapped.port(),
        }),
        Box::new(MessageIntegrity::new_short_term_integrity_with_provider(
            password.to_owned(),
            crypto,
        )),
        Box::new(FINGERPRINT),
    ])
    .map_err(|e| e.to_string())?;
    Ok(m.raw)
}

/// An error response to `tid` (no integrity: like mediasoup's 400/401).
pub fn encode_binding_error(tid: TxId, code: u16, reason: &str) -> Result<Vec<u8>, String> {
    let mut m = Message::new();
    m.build(&[
        Box::new(BINDING_ERROR),
        Box::new(TransactionId(tid)),
        Box::new(ErrorCodeAttribute {
            code: rtc_stun::error_code::ErrorCode(code),
            reason: reason.as_bytes().to_vec(),
        }),
        Box::new(FINGERPRINT),
    ])
    .map_err(|e| e.to_string())?;
    Ok(m.raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> BindingRequest {
        let local = IceCredentials {
            username_fragment: "peerufrag".into(),
            password: "peerpassword0123456789ab".into(),
        };
        BindingRequest::for_transport(
            "srvufrag",
            "srvpassword",
            &local,
            IceRole::Controlling,
            true,
        )
    }

    /// The request parses back with every attribute, and its integrity verifies with the server's
    /// password only.
    #[test]
    fn binding_request_round_trip() {
        let req = request();
        let (tid, bytes) = encode_binding_request(&req).unwrap();
        assert_eq!(&bytes[..2], &[0x00, 0x01], "binding request type");
        let (parsed, m) = parse_binding_request(&bytes).unwrap();
        assert_eq!(parsed.transaction_id, tid);
        assert_eq!(parsed.username.as_deref(), Some("srvufrag:peerufrag"));
        assert_eq!(parsed.priority, Some(PEER_REFLEXIVE_PRIORITY));
        assert_eq!(parsed.role, Some((IceRole::Controlling, req.tie_breaker)));
        assert!(parsed.use_candidate && parsed.has_fingerprint && parsed.has_integrity);
        assert!(integrity_ok(&m, "srvpassword"));
        assert!(!integrity_ok(&m, "peerpassword0123456789ab"));
        // FINGERPRINT is last, MESSAGE-INTEGRITY right before it.
        let types: Vec<u16> = m.attributes.0.iter().map(|a| a.typ.value()).collect();
        assert_eq!(&types[types.len() - 2..], &[0x0008, 0x8028]);
    }

    #[test]
    fn corrupted_fingerprint_is_discarded() {
        let (_, mut bytes) = encode_binding_request(&request()).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 0xff;
        assert!(parse_binding_request(&bytes).is_none());
    }

    #[test]
    fn attributes_can_be_left_out() {
        let req = BindingRequest {
            username: None,
            password: None,
            priority: None,
            role: Some(IceRole::Controlled),
            tie_breaker: 9,
            use_candidate: false,
            fingerprint: false,
        };
        let (_, bytes) = encode_binding_request(&req).unwrap();
        let (parsed, _) = parse_binding_request(&bytes).unwrap();
        assert_eq!(parsed.username, None);
        assert_eq!(parsed.priority, None);
        assert_eq!(parsed.role, Some((IceRole::Controlled, 9)));
        assert!(!parsed.use_candidate && !parsed.has_fingerprint && !parsed.has_integrity);
    }

    #[test]
    fn responses_parse_with_integrity_check() {
        let tid = [7u8; 12];
        let mapped: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let ok = encode_binding_success(tid, mapped, "srvpassword").unwrap();
        assert_eq!(
            parse_binding_response(&ok, Some("srvpassword")),
            Some((
                tid,
                BindingOutcome::Success {
                    mapped_address: Some(mapped),
                    authenticated: true
                }
            ))
        );
        assert_eq!(
            parse_binding_response(&ok, Some("wrong")),
            Some((
                tid,
                BindingOutcome::Success {
                    mapped_address: Some(mapped),
                    authenticated: false
                }
            ))
        );
        let err = encode_binding_error(tid, 401, "Unauthorized").unwrap();
        assert_eq!(
            parse_binding_response(&err, Some("srvpassword")),
            Some((
                tid,
                BindingOutcome::Error {
                    code: 401,
                    reason: "Unauthorized".into()
                }
            ))
        );
        // A request is not a response.
        let (_, req) = encode_binding_request(&request()).unwrap();
        assert!(parse_binding_response(&req, None).is_none());
        assert!(parse_binding_response(b"garbage that is not stun at all", None).is_none());
    }
}
