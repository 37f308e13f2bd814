//! STUN (RFC 5389) for ICE-lite: a zero-copy parser, the MESSAGE-INTEGRITY / FINGERPRINT checks, and
//! writers of Binding requests and responses into caller-provided buffers.
//!
//! Why this is written here instead of using webrtc-rs's sans-IO `rtc-stun` 0.21: its `Message` copies
//! the datagram into an owned `Vec<u8>` and every attribute value into another `Vec` while decoding,
//! builds its errors with `format!`, and brings base64, rand and url along. STUN sits on the packet
//! path (Chrome's initial check burst, then a consent check every 1–2.5 s per transport), and
//! ICE-lite needs only the Binding method and about ten attributes, so a parser that borrows the
//! received datagram is both cheaper and smaller than adapting that API. The cryptography is not
//! hand-rolled: HMAC-SHA1 comes from RustCrypto's `hmac` + `sha1` (SHA-NI when the CPU has it,
//! constant-time tag comparison) and CRC-32 from `crc32fast` (SIMD). Nothing here allocates.
//!
//! Names follow mediasoup's `RTC::StunPacket` where they can.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

/// Fixed value in every RFC 5389 header; also what tells STUN apart from other protocols.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Size of the STUN header.
pub const HEADER_LEN: usize = 20;
/// Size of a transaction id.
pub const TRANSACTION_ID_LEN: usize = 12;
/// XOR'ed into the CRC-32 of the FINGERPRINT attribute (RFC 5389 §15.5).
const FINGERPRINT_XOR: u32 = 0x5354_554E;
/// RFC 5389 §15.3: USERNAME is shorter than 513 bytes.
const MAX_USERNAME_LEN: usize = 513;
/// Binding is the only method ICE uses.
pub const METHOD_BINDING: u16 = 0x001;

/// A STUN transaction id.
pub type TransactionId = [u8; TRANSACTION_ID_LEN];

/// Attribute types this codec reads or writes.
pub mod attr {
    /// USERNAME (RFC 5389).
    pub const USERNAME: u16 = 0x0006;
    /// MESSAGE-INTEGRITY (RFC 5389).
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE (RFC 5389).
    pub const ERROR_CODE: u16 = 0x0009;
    /// XOR-MAPPED-ADDRESS (RFC 5389).
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// PRIORITY (RFC 8445).
    pub const PRIORITY: u16 = 0x0024;
    /// USE-CANDIDATE (RFC 8445).
    pub const USE_CANDIDATE: u16 = 0x0025;
    /// SOFTWARE (RFC 5389).
    pub const SOFTWARE: u16 = 0x8022;
    /// FINGERPRINT (RFC 5389).
    pub const FINGERPRINT: u16 = 0x8028;
    /// ICE-CONTROLLED (RFC 8445).
    pub const ICE_CONTROLLED: u16 = 0x8029;
    /// ICE-CONTROLLING (RFC 8445).
    pub const ICE_CONTROLLING: u16 = 0x802A;
    /// NOMINATION (draft-thatcher-ice-renomination), sent by browsers after `a=ice-options:renomination`.
    pub const NOMINATION: u16 = 0xC001;
}

/// Why a buffer is not a usable STUN message, or why a writer could not write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    /// Shorter than a header, top bits set, or wrong magic cookie.
    #[error("not a STUN message")]
    NotStun,
    /// The header length field is not a multiple of 4 or does not match the buffer.
    #[error("STUN length field does not match the message")]
    BadLength,
    /// An attribute runs past the end of the message.
    #[error("STUN attribute {0:#06x} truncated")]
    TruncatedAttribute(u16),
    /// A known attribute has a length or value its RFC does not allow.
    #[error("STUN attribute {0:#06x} malformed")]
    BadAttribute(u16),
    /// FINGERPRINT must be the last attribute.
    #[error("STUN attribute after FINGERPRINT")]
    AttributeAfterFingerprint,
    /// The output buffer cannot hold the message (writers only).
    #[error("output buffer too small for the STUN message")]
    BufferTooSmall,
}

/// The class bits of the message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StunClass {
    /// A request (expects a response).
    Request,
    /// An indication (no response).
    Indication,
    /// A success response.
    SuccessResponse,
    /// An error response.
    ErrorResponse,
}

impl StunClass {
    fn bits(self) -> u16 {
        match self {
            StunClass::Request => 0b00,
            StunClass::Indication => 0b01,
            StunClass::SuccessResponse => 0b10,
            StunClass::ErrorResponse => 0b11,
        }
    }

    fn from_bits(bits: u16) -> Self {
        match bits & 0b11 {
            0b00 => StunClass::Request,
            0b01 => StunClass::Indication,
            0b10 => StunClass::SuccessResponse,
            _ => StunClass::ErrorResponse,
        }
    }
}

/// Splits the 14-bit message type into its interleaved class and method (RFC 5389 §6).
fn split_message_type(t: u16) -> (StunClass, u16) {
    let class = ((t >> 7) & 0b10) | ((t >> 4) & 0b01);
    let method = (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80);
    (StunClass::from_bits(class), method)
}

/// Builds the message type from class and method (RFC 5389 §6).
fn message_type(class: StunClass, method: u16) -> u16 {
    let c = class.bits();
    (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((c & 0b01) << 4)
        | ((c & 0b10) << 7)
}

/// RFC 7983 demultiplexing: first byte 0..=3, plus the magic cookie so that a stray packet of another
/// protocol starting with a small byte is not taken for STUN.
pub fn is_stun(buf: &[u8]) -> bool {
    buf.len() >= HEADER_LEN
        && buf[0] <= 3
        && u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) == MAGIC_COOKIE
}

/// Reason phrase mediasoup (and RFC 5389 §15.6) uses for the error codes ICE-lite sends.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        300 => "Try Alternate",
        400 => "Bad Request",
        401 => "Unauthorized",
        420 => "Unknown Attribute",
        438 => "Stale Nonce",
        487 => "Role Conflict",
        500 => "Server Error",
        _ => "",
    }
}

fn be_u16(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn be_u32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn be_u64(buf: &[u8], at: usize) -> Option<u64> {
    let b = buf.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_be_bytes(a))
}

/// A parsed STUN message borrowing the received bytes. Only the first occurrence of an attribute
/// counts (RFC 5389 §15); attributes after MESSAGE-INTEGRITY other than FINGERPRINT are ignored
/// (RFC 5389 §15.4), as are unknown ones.
#[derive(Debug, Clone)]
pub struct StunMessage<'a> {
    raw: &'a [u8],
    class: StunClass,
    method: u16,
    transaction_id: TransactionId,
    username: Option<&'a [u8]>,
    priority: Option<u32>,
    ice_controlling: Option<u64>,
    ice_controlled: Option<u64>,
    use_candidate: bool,
    nomination: Option<u32>,
    error_code: Option<(u16, &'a [u8])>,
    xor_mapped_address: Option<SocketAddr>,
    message_integrity: Option<usize>,
    fingerprint: Option<usize>,
}

impl<'a> StunMessage<'a> {
    /// Parses one whole STUN message (a UDP datagram or one RFC 4571 frame): header, length and every
    /// attribute's bounds are checked; nothing is copied but the transaction id.
    pub fn parse(buf: &'a [u8]) -> Result<Self, StunError> {
        if !is_stun(buf) {
            return Err(StunError::NotStun);
        }
        let msg_type = be_u16(buf, 0).ok_or(StunError::NotStun)?;
        let msg_len = usize::from(be_u16(buf, 2).ok_or(StunError::NotStun)?);
        if msg_len % 4 != 0 || HEADER_LEN + msg_len != buf.len() {
            return Err(StunError::BadLength);
        }
        let (class, method) = split_message_type(msg_type);
        let mut transaction_id = [0u8; TRANSACTION_ID_LEN];
        transaction_id.copy_from_slice(buf.get(8..HEADER_LEN).ok_or(StunError::NotStun)?);

        let mut msg = StunMessage {
            raw: buf,
            class,
            method,
            transaction_id,
            username: None,
            priority: None,
            ice_controlling: None,
            ice_controlled: None,
            use_candidate: false,
            nomination: None,
            error_code: None,
            xor_mapped_address: None,
            message_integrity: None,
            fingerprint: None,
        };

        let mut pos = HEADER_LEN;
        while pos < buf.len() {
            let typ = be_u16(buf, pos).ok_or(StunError::TruncatedAttribute(0))?;
            let len = usize::from(be_u16(buf, pos + 2).ok_or(StunError::TruncatedAttribute(typ))?);
            let value_start = pos + 4;
            let padded = (len + 3) & !3;
            let value = buf
                .get(value_start..value_start + len)
                .ok_or(StunError::TruncatedAttribute(typ))?;
            if value_start + padded > buf.len() {
                return Err(StunError::TruncatedAttribute(typ));
            }
            if msg.fingerprint.is_some() {
                return Err(StunError::AttributeAfterFingerprint);
            }
            if msg.message_integrity.is_none() || typ == attr::FINGERPRINT {
                msg.read_attribute(typ, value, pos)?;
            }
            pos = value_start + padded;
        }
        Ok(msg)
    }

    fn read_attribute(
        &mut self,
        typ: u16,
        value: &'a [u8],
        offset: usize,
    ) -> Result<(), StunError> {
        let bad = StunError::BadAttribute(typ);
        let expect_len = |n: usize| if value.len() == n { Ok(()) } else { Err(bad) };
        match typ {
            attr::USERNAME => {
                if value.len() > MAX_USERNAME_LEN {
                    return Err(bad);
                }
                self.username.get_or_insert(value);
            }
            attr::PRIORITY => {
                expect_len(4)?;
                let v = be_u32(value, 0).ok_or(bad)?;
                self.priority.get_or_insert(v);
            }
            attr::ICE_CONTROLLING => {
                expect_len(8)?;
                let v = be_u64(value, 0).ok_or(bad)?;
                self.ice_controlling.get_or_insert(v);
            }
            attr::ICE_CONTROLLED => {
                expect_len(8)?;
                let v = be_u64(value, 0).ok_or(bad)?;
                self.ice_controlled.get_or_insert(v);
            }
            attr::USE_CANDIDATE => {
                expect_len(0)?;
                self.use_candidate = true;
            }
            attr::NOMINATION => {
                expect_len(4)?;
                let v = be_u32(value, 0).ok_or(bad)?;
                self.nomination.get_or_insert(v);
            }
            attr::ERROR_CODE => {
                if value.len() < 4 {
                    return Err(bad);
                }
                let class = u16::from(value[2] & 0x07);
                let number = u16::from(value[3]);
                if !(3..=6).contains(&class) || number > 99 {
                    return Err(bad);
                }
                if self.error_code.is_none() {
                    self.error_code = Some((class * 100 + number, &value[4..]));
                }
            }
            attr::XOR_MAPPED_ADDRESS => {
                let addr = decode_xor_address(value, &self.transaction_id).ok_or(bad)?;
                self.xor_mapped_address.get_or_insert(addr);
            }
            attr::MESSAGE_INTEGRITY => {
                expect_len(20)?;
                self.message_integrity = Some(offset);
            }
            attr::FINGERPRINT => {
                expect_len(4)?;
                self.fingerprint = Some(offset);
            }
            _ => {}
        }
        Ok(())
    }

    /// The whole message as received.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Request, indication, success or error response.
    pub fn class(&self) -> StunClass {
        self.class
    }

    /// The 12-bit method ([`METHOD_BINDING`] for ICE).
    pub fn method(&self) -> u16 {
        self.method
    }

    /// True for the Binding method.
    pub fn is_binding(&self) -> bool {
        self.method == METHOD_BINDING
    }

    /// The transaction id a response must echo.
    pub fn transaction_id(&self) -> &TransactionId {
        &self.transaction_id
    }

    /// USERNAME bytes (`<receiver ufrag>:<sender ufrag>` in ICE).
    pub fn username_bytes(&self) -> Option<&'a [u8]> {
        self.username
    }

    /// USERNAME as text; `None` when absent or not UTF-8.
    pub fn username(&self) -> Option<&'a str> {
        self.username.and_then(|u| std::str::from_utf8(u).ok())
    }

    /// PRIORITY.
    pub fn priority(&self) -> Option<u32> {
        self.priority
    }

    /// ICE-CONTROLLING tie-breaker.
    pub fn ice_controlling(&self) -> Option<u64> {
        self.ice_controlling
    }

    /// ICE-CONTROLLED tie-breaker.
    pub fn ice_controlled(&self) -> Option<u64> {
        self.ice_controlled
    }

    /// USE-CANDIDATE present.
    pub fn use_candidate(&self) -> bool {
        self.use_candidate
    }

    /// NOMINATION value (renomination).
    pub fn nomination(&self) -> Option<u32> {
        self.nomination
    }

    /// ERROR-CODE as a number (e.g. 487).
    pub fn error_code(&self) -> Option<u16> {
        self.error_code.map(|(c, _)| c)
    }

    /// ERROR-CODE reason phrase; `None` when absent or not UTF-8.
    pub fn error_reason(&self) -> Option<&'a str> {
        self.error_code
            .and_then(|(_, r)| std::str::from_utf8(r).ok())
    }

    /// XOR-MAPPED-ADDRESS, decoded.
    pub fn xor_mapped_address(&self) -> Option<SocketAddr> {
        self.xor_mapped_address
    }

    /// MESSAGE-INTEGRITY present.
    pub fn has_message_integrity(&self) -> bool {
        self.message_integrity.is_some()
    }

    /// Offset of the MESSAGE-INTEGRITY attribute header in [`raw`](Self::raw).
    pub fn message_integrity_offset(&self) -> Option<usize> {
        self.message_integrity
    }

    /// FINGERPRINT present.
    pub fn has_fingerprint(&self) -> bool {
        self.fingerprint.is_some()
    }

    /// Offset of the FINGERPRINT attribute header in [`raw`](Self::raw).
    pub fn fingerprint_offset(&self) -> Option<usize> {
        self.fingerprint
    }

    /// CRC-32 of everything before FINGERPRINT, XOR 0x5354554e (RFC 5389 §15.5). False when absent.
    pub fn verify_fingerprint(&self) -> bool {
        let Some(at) = self.fingerprint else {
            return false;
        };
        match (self.raw.get(..at), be_u32(self.raw, at + 4)) {
            (Some(covered), Some(value)) => crc32fast::hash(covered) ^ FINGERPRINT_XOR == value,
            _ => false,
        }
    }

    /// HMAC-SHA1 with the short-term `password` over the message up to MESSAGE-INTEGRITY, with the
    /// length field set as if MESSAGE-INTEGRITY were the last attribute (RFC 5389 §15.4). The
    /// received bytes are not modified: the adjusted length is fed to the MAC in place of the real one.
    /// False when absent.
    pub fn verify_integrity(&self, password: &[u8]) -> bool {
        let Some(at) = self.message_integrity else {
            return false;
        };
        let (Some(type_field), Some(rest), Some(tag)) = (
            self.raw.get(..2),
            self.raw.get(4..at),
            self.raw.get(at + 4..at + 24),
        ) else {
            return false;
        };
        let Ok(adjusted_len) = u16::try_from(at + 24 - HEADER_LEN) else {
            return false;
        };
        let Ok(mut mac) = HmacSha1::new_from_slice(password) else {
            return false;
        };
        mac.update(type_field);
        mac.update(&adjusted_len.to_be_bytes());
        mac.update(rest);
        mac.verify_slice(tag).is_ok()
    }
}

fn decode_xor_address(value: &[u8], transaction_id: &TransactionId) -> Option<SocketAddr> {
    let family = *value.get(1)?;
    let port = be_u16(value, 2)? ^ (MAGIC_COOKIE >> 16) as u16;
    match (family, value.len()) {
        (0x01, 8) => {
            let ip = be_u32(value, 4)? ^ MAGIC_COOKIE;
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        (0x02, 20) => {
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            key[4..].copy_from_slice(transaction_id);
            let mut ip = [0u8; 16];
            for (i, b) in ip.iter_mut().enumerate() {
                *b = value.get(4 + i)? ^ key[i];
            }
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => None,
    }
}

/// Appends attributes to a message being built in a caller's buffer, keeping the header length
/// field current so MESSAGE-INTEGRITY and FINGERPRINT can be computed over the bytes as they are.
struct Writer<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> Writer<'b> {
    fn new(
        buf: &'b mut [u8],
        class: StunClass,
        method: u16,
        transaction_id: &TransactionId,
    ) -> Result<Self, StunError> {
        let header = buf.get_mut(..HEADER_LEN).ok_or(StunError::BufferTooSmall)?;
        header[0..2].copy_from_slice(&message_type(class, method).to_be_bytes());
        header[2..4].copy_from_slice(&0u16.to_be_bytes());
        header[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        header[8..20].copy_from_slice(transaction_id);
        Ok(Writer {
            buf,
            len: HEADER_LEN,
        })
    }

    /// Writes the attribute header and zeroed padding, updates the length field and returns where the
    /// value starts.
    fn reserve(&mut self, typ: u16, value_len: usize) -> Result<usize, StunError> {
        let value_len_u16 = u16::try_from(value_len).map_err(|_| StunError::BufferTooSmall)?;
        let padded = (value_len + 3) & !3;
        let end = self.len + 4 + padded;
        let body_len = u16::try_from(end - HEADER_LEN).map_err(|_| StunError::BufferTooSmall)?;
        let region = self
            .buf
            .get_mut(self.len..end)
            .ok_or(StunError::BufferTooSmall)?;
        region[0..2].copy_from_slice(&typ.to_be_bytes());
        region[2..4].copy_from_slice(&value_len_u16.to_be_bytes());
        region[4..].fill(0);
        let value_start = self.len + 4;
        self.len = end;
        self.buf[2..4].copy_from_slice(&body_len.to_be_bytes());
        Ok(value_start)
    }

    fn bytes(&mut self, typ: u16, value: &[u8]) -> Result<(), StunError> {
        let at = self.reserve(typ, value.len())?;
        self.buf[at..at + value.len()].copy_from_slice(value);
        Ok(())
    }

    fn u32(&mut self, typ: u16, v: u32) -> Result<(), StunError> {
        self.bytes(typ, &v.to_be_bytes())
    }

    fn u64(&mut self, typ: u16, v: u64) -> Result<(), StunError> {
        self.bytes(typ, &v.to_be_bytes())
    }

    fn xor_mapped_address(&mut self, addr: SocketAddr) -> Result<(), StunError> {
        let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
        match addr.ip() {
            IpAddr::V4(ip) => {
                let mut v = [0u8; 8];
                v[1] = 0x01;
                v[2..4].copy_from_slice(&port.to_be_bytes());
                v[4..8].copy_from_slice(&(u32::from(ip) ^ MAGIC_COOKIE).to_be_bytes());
                self.bytes(attr::XOR_MAPPED_ADDRESS, &v)
            }
            IpAddr::V6(ip) => {
                let mut v = [0u8; 20];
                v[1] = 0x02;
                v[2..4].copy_from_slice(&port.to_be_bytes());
                let mut key = [0u8; 16];
                key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                key[4..].copy_from_slice(&self.buf[8..20]);
                for (i, (o, b)) in v[4..].iter_mut().zip(ip.octets()).enumerate() {
                    *o = b ^ key[i];
                }
                self.bytes(attr::XOR_MAPPED_ADDRESS, &v)
            }
        }
    }

    fn error_code(&mut self, code: u16) -> Result<(), StunError> {
        let reason = reason_phrase(code).as_bytes();
        let at = self.reserve(attr::ERROR_CODE, 4 + reason.len())?;
        let v = &mut self.buf[at..at + 4 + reason.len()];
        v[2] = ((code / 100) & 0x07) as u8;
        v[3] = (code % 100) as u8;
        v[4..].copy_from_slice(reason);
        Ok(())
    }

    /// MESSAGE-INTEGRITY over everything written so far, the length field already counting it.
    fn message_integrity(&mut self, password: &[u8]) -> Result<(), StunError> {
        let at = self.reserve(attr::MESSAGE_INTEGRITY, 20)?;
        let mut mac = HmacSha1::new_from_slice(password).map_err(|_| StunError::BufferTooSmall)?;
        let (covered, value) = self.buf.split_at_mut(at);
        mac.update(&covered[..at - 4]);
        value[..20].copy_from_slice(&mac.finalize().into_bytes());
        Ok(())
    }

    /// FINGERPRINT over everything written so far, the length field already counting it.
    fn fingerprint(&mut self) -> Result<(), StunError> {
        let at = self.reserve(attr::FINGERPRINT, 4)?;
        let crc = crc32fast::hash(&self.buf[..at - 4]) ^ FINGERPRINT_XOR;
        self.buf[at..at + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(())
    }

    fn finish(self) -> usize {
        self.len
    }
}

/// Writes a Binding success response into `out`: XOR-MAPPED-ADDRESS (the address the request came
/// from), MESSAGE-INTEGRITY with `password`, FINGERPRINT. Returns the length written.
pub fn write_binding_success_response(
    out: &mut [u8],
    transaction_id: &TransactionId,
    mapped_address: SocketAddr,
    password: &[u8],
) -> Result<usize, StunError> {
    let mut w = Writer::new(
        out,
        StunClass::SuccessResponse,
        METHOD_BINDING,
        transaction_id,
    )?;
    w.xor_mapped_address(mapped_address)?;
    w.message_integrity(password)?;
    w.fingerprint()?;
    Ok(w.finish())
}

/// Writes a Binding error response into `out`: ERROR-CODE with mediasoup's reason phrase, then
/// MESSAGE-INTEGRITY only when `password` is given, then FINGERPRINT. RFC 5389 §10.1.2: integrity
/// only if the request passed the integrity check, so `None` for 400 and 401, `Some` for 487.
/// Returns the length written.
pub fn write_binding_error_response(
    out: &mut [u8],
    transaction_id: &TransactionId,
    code: u16,
    password: Option<&[u8]>,
) -> Result<usize, StunError> {
    let mut w = Writer::new(
        out,
        StunClass::ErrorResponse,
        METHOD_BINDING,
        transaction_id,
    )?;
    w.error_code(code)?;
    if let Some(password) = password {
        w.message_integrity(password)?;
    }
    w.fingerprint()?;
    Ok(w.finish())
}

/// An ICE connectivity check (Binding request) to write: what the browser sends, used by the Rust
/// test peer. Every field is optional so tests can also build the malformed ones the server must
/// reject. Attributes are written in this order, MESSAGE-INTEGRITY and FINGERPRINT last.
#[derive(Debug, Clone, Copy, Default)]
pub struct BindingRequest<'a> {
    /// Transaction id (random in real use).
    pub transaction_id: TransactionId,
    /// USERNAME: `<server ufrag>:<client ufrag>`.
    pub username: Option<&'a str>,
    /// PRIORITY.
    pub priority: Option<u32>,
    /// ICE-CONTROLLING with this tie-breaker.
    pub ice_controlling: Option<u64>,
    /// ICE-CONTROLLED with this tie-breaker (a controlling server answers 487).
    pub ice_controlled: Option<u64>,
    /// USE-CANDIDATE.
    pub use_candidate: bool,
    /// NOMINATION (renomination).
    pub nomination: Option<u32>,
    /// MESSAGE-INTEGRITY with this password (the server's ice password).
    pub password: Option<&'a [u8]>,
    /// FINGERPRINT.
    pub fingerprint: bool,
}

impl<'a> BindingRequest<'a> {
    /// A well-formed controlling check as Chrome sends it: USERNAME, PRIORITY, ICE-CONTROLLING,
    /// MESSAGE-INTEGRITY and FINGERPRINT.
    pub fn controlling(
        transaction_id: TransactionId,
        username: &'a str,
        password: &'a [u8],
        priority: u32,
        tie_breaker: u64,
    ) -> Self {
        BindingRequest {
            transaction_id,
            username: Some(username),
            priority: Some(priority),
            ice_controlling: Some(tie_breaker),
            password: Some(password),
            fingerprint: true,
            ..Default::default()
        }
    }

    /// Writes the request into `out` and returns its length.
    pub fn write(&self, out: &mut [u8]) -> Result<usize, StunError> {
        let mut w = Writer::new(
            out,
            StunClass::Request,
            METHOD_BINDING,
            &self.transaction_id,
        )?;
        if let Some(username) = self.username {
            w.bytes(attr::USERNAME, username.as_bytes())?;
        }
        if let Some(priority) = self.priority {
            w.u32(attr::PRIORITY, priority)?;
        }
        if let Some(tie_breaker) = self.ice_controlling {
            w.u64(attr::ICE_CONTROLLING, tie_breaker)?;
        }
        if let Some(tie_breaker) = self.ice_controlled {
            w.u64(attr::ICE_CONTROLLED, tie_breaker)?;
        }
        if self.use_candidate {
            w.bytes(attr::USE_CANDIDATE, &[])?;
        }
        if let Some(nomination) = self.nomination {
            w.u32(attr::NOMINATION, nomination)?;
        }
        if let Some(password) = self.password {
            w.message_integrity(password)?;
        }
        if self.fingerprint {
            w.fingerprint()?;
        }
        Ok(w.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
            .collect()
    }

    const RFC5769_PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";
    const RFC5769_TID: TransactionId = [
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ];

    /// RFC 5769 §2.1 Sample Request.
    const SAMPLE_REQUEST: &str = "
        00 01 00 58  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
        80 22 00 10  53 54 55 4e  20 74 65 73  74 20 63 6c  69 65 6e 74
        00 24 00 04  6e 00 01 ff
        80 29 00 08  93 2f f9 b1  51 26 3b 36
        00 06 00 09  65 76 74 6a  3a 68 36 76  59 20 20 20
        00 08 00 14  9a ea a7 0c  bf d8 cb 56  78 1e f2 b5  b2 d3 f2 49  c1 b5 71 a2
        80 28 00 04  e5 7a 3b cf";

    /// RFC 5769 §2.2 Sample IPv4 Response.
    const SAMPLE_IPV4_RESPONSE: &str = "
        01 01 00 3c  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
        80 22 00 0b  74 65 73 74  20 76 65 63  74 6f 72 20
        00 20 00 08  00 01 a1 47  e1 12 a6 43
        00 08 00 14  2b 91 f5 99  fd 9e 90 c3  8c 74 89 f9  2a f9 ba 53  f0 6b e7 d7
        80 28 00 04  c0 7d 4c 96";

    /// RFC 5769 §2.3 Sample IPv6 Response.
    const SAMPLE_IPV6_RESPONSE: &str = "
        01 01 00 48  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
        80 22 00 0b  74 65 73 74  20 76 65 63  74 6f 72 20
        00 20 00 14  00 02 a1 47  01 13 a9 fa  a5 d3 f1 79  bc 25 f4 b5  be d2 b9 d9
        00 08 00 14  a3 82 95 4e  4b e6 7b f1  17 84 c9 7c  82 92 c2 75  bf e3 ed 41
        80 28 00 04  c8 fb 0b 4c";

    #[test]
    fn rfc5769_sample_request() {
        let buf = hex(SAMPLE_REQUEST);
        assert!(is_stun(&buf));
        let msg = StunMessage::parse(&buf).expect("parses");
        assert_eq!(msg.class(), StunClass::Request);
        assert!(msg.is_binding());
        assert_eq!(msg.transaction_id(), &RFC5769_TID);
        assert_eq!(msg.username(), Some("evtj:h6vY"));
        assert_eq!(msg.priority(), Some(0x6e00_01ff));
        assert_eq!(msg.ice_controlled(), Some(0x932f_f9b1_5126_3b36));
        assert_eq!(msg.ice_controlling(), None);
        assert!(!msg.use_candidate());
        assert_eq!(msg.message_integrity_offset(), Some(76));
        assert_eq!(msg.fingerprint_offset(), Some(100));
        assert!(msg.verify_fingerprint());
        assert!(msg.verify_integrity(RFC5769_PASSWORD));
        assert!(!msg.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBT"));
    }

    #[test]
    fn rfc5769_ipv4_response() {
        let buf = hex(SAMPLE_IPV4_RESPONSE);
        let msg = StunMessage::parse(&buf).expect("parses");
        assert_eq!(msg.class(), StunClass::SuccessResponse);
        assert_eq!(
            msg.xor_mapped_address(),
            Some("192.0.2.1:32853".parse().expect("addr"))
        );
        assert!(msg.verify_fingerprint());
        assert!(msg.verify_integrity(RFC5769_PASSWORD));
    }

    #[test]
    fn rfc5769_ipv6_response() {
        let buf = hex(SAMPLE_IPV6_RESPONSE);
        let msg = StunMessage::parse(&buf).expect("parses");
        assert_eq!(
            msg.xor_mapped_address(),
            Some(
                "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                    .parse()
                    .expect("addr")
            )
        );
        assert!(msg.verify_fingerprint());
        assert!(msg.verify_integrity(RFC5769_PASSWORD));
    }

    /// Our writer reproduces the RFC's XOR-MAPPED-ADDRESS, integrity and fingerprint bytes exactly
    /// once the SOFTWARE attribute the RFC vector carries is added the same way.
    #[test]
    fn writer_matches_rfc5769_ipv6_bytes() {
        let expected = hex(SAMPLE_IPV6_RESPONSE);
        let mut out = [0u8; 128];
        let mut w = Writer::new(
            &mut out,
            StunClass::SuccessResponse,
            METHOD_BINDING,
            &RFC5769_TID,
        )
        .expect("header");
        w.bytes(attr::SOFTWARE, b"test vector").expect("software");
        // RFC 5769 pads SOFTWARE with spaces, we pad with zeros: patch to compare byte for byte.
        w.buf[20 + 4 + 11] = 0x20;
        w.xor_mapped_address(
            "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                .parse()
                .expect("addr"),
        )
        .expect("xma");
        w.message_integrity(RFC5769_PASSWORD).expect("mi");
        w.fingerprint().expect("fp");
        let n = w.finish();
        assert_eq!(&out[..n], &expected[..]);
    }

    #[test]
    fn is_stun_demux() {
        let buf = hex(SAMPLE_REQUEST);
        assert!(is_stun(&buf));
        assert!(!is_stun(&buf[..19]));
        let mut dtls = buf.clone();
        dtls[0] = 22; // DTLS handshake
        assert!(!is_stun(&dtls));
        let mut rtp = buf.clone();
        rtp[0] = 0x80;
        assert!(!is_stun(&rtp));
        let mut cookie = buf;
        cookie[5] ^= 1;
        assert!(!is_stun(&cookie));
    }

    #[test]
    fn request_builder_round_trip() {
        let tid = [7u8; 12];
        let req = BindingRequest {
            use_candidate: true,
            nomination: Some(3),
            ..BindingRequest::controlling(tid, "server:client", b"pass", 0x6e00_01ff, 42)
        };
        let mut out = [0u8; 256];
        let n = req.write(&mut out).expect("write");
        let msg = StunMessage::parse(&out[..n]).expect("parse");
        assert_eq!(msg.class(), StunClass::Request);
        assert!(msg.is_binding());
        assert_eq!(msg.transaction_id(), &tid);
        assert_eq!(msg.username(), Some("server:client"));
        assert_eq!(msg.priority(), Some(0x6e00_01ff));
        assert_eq!(msg.ice_controlling(), Some(42));
        assert!(msg.use_candidate());
        assert_eq!(msg.nomination(), Some(3));
        assert!(msg.verify_fingerprint());
        assert!(msg.verify_integrity(b"pass"));
        assert!(!msg.verify_integrity(b"wrong"));
        // Flipping any covered byte breaks both checks.
        let mut bad = out[..n].to_vec();
        bad[25] ^= 0x01; // inside USERNAME
        let msg = StunMessage::parse(&bad).expect("parse");
        assert!(!msg.verify_integrity(b"pass"));
        assert!(!msg.verify_fingerprint());
    }

    #[test]
    fn success_and_error_responses() {
        let tid = [9u8; 12];
        let mut out = [0u8; 128];
        for addr in ["10.1.2.3:5000", "[fe80::1:2:3]:6000"] {
            let addr: SocketAddr = addr.parse().expect("addr");
            let n = write_binding_success_response(&mut out, &tid, addr, b"pwd").expect("write");
            let msg = StunMessage::parse(&out[..n]).expect("parse");
            assert_eq!(msg.class(), StunClass::SuccessResponse);
            assert_eq!(msg.transaction_id(), &tid);
            assert_eq!(msg.xor_mapped_address(), Some(addr));
            assert!(msg.verify_integrity(b"pwd"));
            assert!(msg.verify_fingerprint());
        }
        let n = write_binding_error_response(&mut out, &tid, 401, None).expect("write");
        let msg = StunMessage::parse(&out[..n]).expect("parse");
        assert_eq!(msg.class(), StunClass::ErrorResponse);
        assert_eq!(msg.error_code(), Some(401));
        assert_eq!(msg.error_reason(), Some("Unauthorized"));
        assert!(!msg.has_message_integrity());
        assert!(msg.verify_fingerprint());
        let n = write_binding_error_response(&mut out, &tid, 487, Some(b"pwd")).expect("write");
        let msg = StunMessage::parse(&out[..n]).expect("parse");
        assert_eq!(msg.error_code(), Some(487));
        assert_eq!(msg.error_reason(), Some("Role Conflict"));
        assert!(msg.verify_integrity(b"pwd"));
        assert!(msg.verify_fingerprint());
    }

    #[test]
    fn writers_report_small_buffers() {
        let tid = [1u8; 12];
        let addr: SocketAddr = "1.2.3.4:5".parse().expect("addr");
        let mut full = [0u8; 128];
        let n = write_binding_success_response(&mut full, &tid, addr, b"p").expect("write");
        for len in 0..n {
            let mut small = vec![0u8; len];
            assert_eq!(
                write_binding_success_response(&mut small, &tid, addr, b"p"),
                Err(StunError::BufferTooSmall)
            );
        }
    }

    #[test]
    fn parse_rejects_malformed() {
        let good = hex(SAMPLE_REQUEST);
        // Truncated anywhere: length no longer matches.
        for len in 0..good.len() {
            assert!(StunMessage::parse(&good[..len]).is_err(), "len {len}");
        }
        // Trailing garbage.
        let mut longer = good.clone();
        longer.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            StunMessage::parse(&longer).err(),
            Some(StunError::BadLength)
        );
        // Attribute length running past the end.
        let mut over = good.clone();
        over[22..24].copy_from_slice(&0x00ffu16.to_be_bytes());
        assert_eq!(
            StunMessage::parse(&over).err(),
            Some(StunError::TruncatedAttribute(attr::SOFTWARE))
        );
        // PRIORITY of the wrong size.
        let mut prio = good.clone();
        prio[42..44].copy_from_slice(&8u16.to_be_bytes());
        assert!(StunMessage::parse(&prio).is_err());
        // Attribute after FINGERPRINT.
        let tid = [3u8; 12];
        let mut out = [0u8; 128];
        let n = BindingRequest {
            transaction_id: tid,
            fingerprint: true,
            ..Default::default()
        }
        .write(&mut out)
        .expect("write");
        let mut after = out[..n].to_vec();
        after.extend_from_slice(&[0x00, 0x25, 0x00, 0x00]);
        let body = (after.len() - HEADER_LEN) as u16;
        after[2..4].copy_from_slice(&body.to_be_bytes());
        assert_eq!(
            StunMessage::parse(&after).err(),
            Some(StunError::AttributeAfterFingerprint)
        );
    }

    /// RFC 5389 §15.4: attributes after MESSAGE-INTEGRITY (other than FINGERPRINT) are ignored.
    #[test]
    fn attributes_after_integrity_are_ignored() {
        let mut out = [0u8; 128];
        let n = BindingRequest {
            transaction_id: [5; 12],
            username: Some("a:b"),
            password: Some(b"pw"),
            ..Default::default()
        }
        .write(&mut out)
        .expect("write");
        let mut buf = out[..n].to_vec();
        buf.extend_from_slice(&[0x00, 0x25, 0x00, 0x00]); // USE-CANDIDATE after MI
        let body = (buf.len() - HEADER_LEN) as u16;
        buf[2..4].copy_from_slice(&body.to_be_bytes());
        let msg = StunMessage::parse(&buf).expect("parse");
        assert!(!msg.use_candidate());
        assert!(msg.verify_integrity(b"pw"));
    }

    #[test]
    fn message_type_round_trip() {
        for class in [
            StunClass::Request,
            StunClass::Indication,
            StunClass::SuccessResponse,
            StunClass::ErrorResponse,
        ] {
            for method in [0x001u16, 0x003, 0x00A, 0xFFF] {
                assert_eq!(
                    split_message_type(message_type(class, method)),
                    (class, method)
                );
            }
        }
        assert_eq!(message_type(StunClass::Request, METHOD_BINDING), 0x0001);
        assert_eq!(
            message_type(StunClass::SuccessResponse, METHOD_BINDING),
            0x0101
        );
        assert_eq!(
            message_type(StunClass::ErrorResponse, METHOD_BINDING),
            0x0111
        );
        assert_eq!(message_type(StunClass::Indication, METHOD_BINDING), 0x0011);
    }
}
