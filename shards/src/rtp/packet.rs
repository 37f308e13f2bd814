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
    /// First element byte and end of the extension block (equal when there is none).
    ext_start: usize,
    ext_end: usize,
    ext_form: Option<ExtensionForm>,
    padding_len: usize,
}

impl<'a> RtpPacket<'a> {
    /// Validates `buf` as an RTP packet: version 2, CSRC list, extension block and padding within
    /// bounds. A malformed extension *element* only ends the element walk (as in libwebrtc and
    /// mediasoup); a block that overruns the buffer rejects the packet.
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        if buf.len() < FIXED_HEADER_LEN {
            return Err(RtpError::TooShort);
        }
        let b0 = buf[0];
        if b0 >> 6 != 2 {
            return Err(RtpError::BadVersion);
        }
        let csrc_count = (b0 & 0x0F) as usize;
        let mut header_len = FIXED_HEADER_LEN + 4 * csrc_count;
        if header_len > buf.len() {
            return Err(RtpError::CsrcOverflow);
        }
        let (mut ext_start, mut ext_end, mut ext_form) = (header_len, header_len, None);
        if b0 & 0x10 != 0 {
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
        if b0 & 0x20 != 0 {
            padding_len = buf[buf.len() - 1] as usize;
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

    /// Never true for a parsed packet (the fixed header alone is 12 bytes).
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
        &self.buf[self.payload_range()]
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

    /// The value of extension `id`, if present. A linear walk: packets carry only a handful.
    pub fn extension(&self, id: u8) -> Option<&'a [u8]> {
        self.extensions().find(|&(i, _)| i == id).map(|(_, v)| v)
    }

    /// Where the value of extension `id` sits in [`Self::as_bytes`], for in-place updates.
    pub fn extension_range(&self, id: u8) -> Option<Range<usize>> {
        self.element_walk()
            .find(|(i, _)| *i == id)
            .map(|(_, range)| range)
    }

    /// All `(id, value)` elements of an RFC 8285 extension block, in wire order.
    pub fn extensions(&self) -> Extensions<'a> {
        Extensions {
            walk: self.element_walk(),
        }
    }

    fn element_walk(&self) -> ElementWalk<'a> {
        let (two_byte, end) = match self.ext_form {
            Some(ExtensionForm::OneByte) => (false, self.ext_end),
            Some(ExtensionForm::TwoByte) => (true, self.ext_end),
            // Other profiles have no elements: walk an empty range.
            _ => (false, self.ext_start),
        };
        ElementWalk {
            buf: self.buf,
            pos: self.ext_start,
            end,
            two_byte,
        }
    }

    /// A string-valued extension (MID, RID, repaired RID) as `&str`; None if absent or not UTF-8.
    pub fn extension_str(&self, id: u8) -> Option<&'a str> {
        std::str::from_utf8(self.extension(id)?).ok()
    }

    /// The MID (`urn:ietf:params:rtp-hdrext:sdes:mid`) carried under `id`.
    pub fn mid(&self, id: u8) -> Option<&'a str> {
        self.extension_str(id)
    }

    /// The RID or repaired RID (`sdes:rtp-stream-id` / `sdes:repaired-rtp-stream-id`) under `id`.
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
    walk: ElementWalk<'a>,
}

impl<'a> Iterator for Extensions<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let buf = self.walk.buf;
        let (id, range) = self.walk.next()?;
        Some((id, buf.get(range)?))
    }
}

/// Walks RFC 8285 element headers, yielding `(id, absolute value range)`.
#[derive(Debug, Clone)]
struct ElementWalk<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
    two_byte: bool,
}

impl Iterator for ElementWalk<'_> {
    type Item = (u8, Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.pos >= self.end {
                return None;
            }
            let b = *self.buf.get(self.pos)?;
            if b == 0 {
                // Padding byte between elements.
                self.pos += 1;
                continue;
            }
            let (id, len, value_start) = if self.two_byte {
                if self.pos + 1 >= self.end {
                    self.pos = self.end;
                    return None;
                }
                (b, *self.buf.get(self.pos + 1)? as usize, self.pos + 2)
            } else {
                let id = b >> 4;
                if id == 15 {
                    // Reserved id: stop processing the block (RFC 8285 §4.2).
                    self.pos = self.end;
                    return None;
                }
                (id, (b & 0x0F) as usize + 1, self.pos + 1)
            };
            let value_end = value_start + len;
            if value_end > self.end {
                self.pos = self.end;
                return None;
            }
            self.pos = value_end;
            return Some((id, value_start..value_end));
        }
    }
}

/// Maps producer extension ids to consumer extension ids (mediasoup's `RtpHeaderExtensionIds`
/// per side). Only one-byte ids (1..=14) of the producer are mappable; others are dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtensionMap {
    map: [Option<u8>; 15],
}

impl ExtensionMap {
    /// An empty map: every extension is removed.
    pub const fn new() -> Self {
        Self { map: [None; 15] }
    }

    /// Forward producer id `from` as consumer id `to`. False (nothing stored) if `from` is not in
    /// 1..=14 or `to` is 0.
    pub fn insert(&mut self, from: u8, to: u8) -> bool {
        if from == 0 || from > MAX_ONE_BYTE_ID || to == 0 {
            return false;
        }
        self.map[from as usize] = Some(to);
        true
    }

    pub fn remove(&mut self, from: u8) {
        if let Some(slot) = self.map.get_mut(from as usize) {
            *slot = None;
        }
    }

    /// The consumer id for producer id `from`.
    pub fn get(&self, from: u8) -> Option<u8> {
        self.map.get(from as usize).copied().flatten()
    }
}

/// The fields of a header to write; the CSRC list is raw bytes (see [`RtpPacket::csrc_bytes`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct RtpHeaderWriter<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub csrcs: &'a [u8],
}

impl RtpHeaderWriter<'_> {
    /// Writes a complete packet into `out` and returns its length: this header, `extensions`
    /// (one-byte form unless an id > 14 or a value that is empty or longer than 16 bytes needs the
    /// two-byte form; none at all → no extension block), `payload`, then `padding_len` bytes of
    /// RFC 3550 padding. `extensions` is walked twice, hence `Clone`.
    pub fn write<'e, I>(
        &self,
        out: &mut [u8],
        extensions: I,
        payload: &[u8],
        padding_len: u8,
    ) -> Result<usize, RtpError>
    where
        I: Iterator<Item = (u8, &'e [u8])> + Clone,
    {
        if self.csrcs.len() & 3 != 0 || self.csrcs.len() > 4 * MAX_CSRCS {
            return Err(RtpError::CsrcOverflow);
        }
        // Pick the form and size the block.
        let mut two_byte = false;
        let mut count = 0usize;
        let mut values_len = 0usize;
        for (id, value) in extensions.clone() {
            if id == 0 || value.len() > 255 {
                return Err(RtpError::BadExtension);
            }
            if id > MAX_ONE_BYTE_ID || value.is_empty() || value.len() > MAX_ONE_BYTE_VALUE_LEN {
                two_byte = true;
            }
            count += 1;
            values_len += value.len();
        }
        let elements_len = values_len + count * if two_byte { 2 } else { 1 };
        let block_len = elements_len.div_ceil(4) * 4;
        if block_len / 4 > u16::MAX as usize {
            return Err(RtpError::BadExtension);
        }
        let ext_len = if count > 0 { 4 + block_len } else { 0 };
        let header_len = FIXED_HEADER_LEN + self.csrcs.len() + ext_len;
        let total = header_len + payload.len() + padding_len as usize;
        if total > out.len() {
            return Err(RtpError::BufferTooSmall);
        }

        out[0] = 0x80
            | if padding_len > 0 { 0x20 } else { 0 }
            | if count > 0 { 0x10 } else { 0 }
            | (self.csrcs.len() / 4) as u8;
        out[1] = (self.payload_type & 0x7F) | if self.marker { 0x80 } else { 0 };
        out[2..4].copy_from_slice(&self.sequence_number.to_be_bytes());
        out[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        let mut pos = FIXED_HEADER_LEN;
        out[pos..pos + self.csrcs.len()].copy_from_slice(self.csrcs);
        pos += self.csrcs.len();

        if count > 0 {
            let profile = if two_byte {
                TWO_BYTE_PROFILE
            } else {
                ONE_BYTE_PROFILE
            };
            out[pos..pos + 2].copy_from_slice(&profile.to_be_bytes());
            out[pos + 2..pos + 4].copy_from_slice(&((block_len / 4) as u16).to_be_bytes());
            pos += 4;
            let block_end = pos + block_len;
            for (id, value) in extensions {
                // Re-checked so an iterator that does not repeat itself cannot overrun the block.
                let needed = value.len() + if two_byte { 2 } else { 1 };
                let valid = if two_byte {
                    id != 0 && value.len() <= 255
                } else {
                    (1..=MAX_ONE_BYTE_ID).contains(&id)
                        && (1..=MAX_ONE_BYTE_VALUE_LEN).contains(&value.len())
                };
                if !valid || pos + needed > block_end {
                    return Err(RtpError::BadExtension);
                }
                if two_byte {
                    out[pos] = id;
                    out[pos + 1] = value.len() as u8;
                    pos += 2;
                } else {
                    out[pos] = (id << 4) | (value.len() as u8 - 1);
                    pos += 1;
                }
                out[pos..pos + value.len()].copy_from_slice(value);
                pos += value.len();
            }
            out[pos..block_end].fill(0);
            pos = block_end;
        }

        out[pos..pos + payload.len()].copy_from_slice(payload);
        pos += payload.len();
        if padding_len > 0 {
            let end = pos + padding_len as usize;
            out[pos..end - 1].fill(0);
            out[end - 1] = padding_len;
            pos = end;
        }
        Ok(pos)
    }
}

/// Writes `src` re-addressed for a consumer into `out` and returns the length: the given SSRC,
/// payload type, sequence number and timestamp; `src`'s marker and CSRCs; the `src` extensions
/// whose ids `ext_map` maps (renumbered; others removed) plus `extra` (which win over a mapped
/// extension with the same consumer id); then `src`'s payload and padding.
#[allow(clippy::too_many_arguments)]
pub fn rewrite_into(
    src: &RtpPacket<'_>,
    out: &mut [u8],
    ssrc: u32,
    payload_type: u8,
    seq: u16,
    timestamp: u32,
    ext_map: &ExtensionMap,
    extra: &[(u8, &[u8])],
) -> Result<usize, RtpError> {
    let mapped = src.extensions().filter_map(move |(id, value)| {
        let to = ext_map.get(id)?;
        if extra.iter().any(|&(e, _)| e == to) {
            None
        } else {
            Some((to, value))
        }
    });
    let extensions = mapped.chain(extra.iter().copied());
    RtpHeaderWriter {
        marker: src.marker(),
        payload_type,
        sequence_number: seq,
        timestamp,
        ssrc,
        csrcs: src.csrc_bytes(),
    }
    .write(out, extensions, src.payload(), src.padding_len() as u8)
}

fn check_fixed_header(buf: &[u8]) -> Result<(), RtpError> {
    if buf.len() < FIXED_HEADER_LEN {
        Err(RtpError::TooShort)
    } else {
        Ok(())
    }
}

/// In place: set the sequence number of the packet in `buf`.
pub fn set_sequence_number(buf: &mut [u8], seq: u16) -> Result<(), RtpError> {
    check_fixed_header(buf)?;
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    Ok(())
}

/// In place: set the timestamp of the packet in `buf`.
pub fn set_timestamp(buf: &mut [u8], timestamp: u32) -> Result<(), RtpError> {
    check_fixed_header(buf)?;
    buf[4..8].copy_from_slice(&timestamp.to_be_bytes());
    Ok(())
}

/// In place: set the SSRC of the packet in `buf`.
pub fn set_ssrc(buf: &mut [u8], ssrc: u32) -> Result<(), RtpError> {
    check_fixed_header(buf)?;
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    Ok(())
}

/// In place: set the payload type, keeping the marker bit.
pub fn set_payload_type(buf: &mut [u8], payload_type: u8) -> Result<(), RtpError> {
    check_fixed_header(buf)?;
    buf[1] = (buf[1] & 0x80) | (payload_type & 0x7F);
    Ok(())
}

/// In place: set or clear the marker bit.
pub fn set_marker(buf: &mut [u8], marker: bool) -> Result<(), RtpError> {
    check_fixed_header(buf)?;
    buf[1] = (buf[1] & 0x7F) | if marker { 0x80 } else { 0 };
    Ok(())
}

/// In place: overwrite the value of extension `id` with `value` of the same length (the cheap
/// path for values written as placeholders by [`rewrite_into`], e.g. at send time).
pub fn set_extension(buf: &mut [u8], id: u8, value: &[u8]) -> Result<(), RtpError> {
    let range = RtpPacket::parse(buf)?
        .extension_range(id)
        .ok_or(RtpError::BadExtension)?;
    if range.len() != value.len() {
        return Err(RtpError::BadExtension);
    }
    buf[range].copy_from_slice(value);
    Ok(())
}

/// In place: set the transport-wide sequence number (first 2 bytes of the value of `id`).
pub fn set_transport_wide_seq(buf: &mut [u8], id: u8, seq: u16) -> Result<(), RtpError> {
    let range = RtpPacket::parse(buf)?
        .extension_range(id)
        .filter(|r| r.len() >= 2)
        .ok_or(RtpError::BadExtension)?;
    buf[range.start..range.start + 2].copy_from_slice(&seq.to_be_bytes());
    Ok(())
}

/// In place: set the 24-bit abs-send-time value of `id`.
pub fn set_abs_send_time(buf: &mut [u8], id: u8, abs_send_time: u32) -> Result<(), RtpError> {
    set_extension(buf, id, &abs_send_time_bytes(abs_send_time))
}

/// abs-send-time (6.18 fixed-point seconds, 24 bits) of a time since any fixed epoch; receivers
/// only use differences.
pub fn abs_send_time(since_epoch: Duration) -> u32 {
    let micros = since_epoch.as_micros() as u64;
    // (micros << 18) / 1e6 without overflowing for ~2000 years.
    let secs = micros / 1_000_000;
    let rem = micros % 1_000_000;
    (((secs << 18) + ((rem << 18) + 500_000) / 1_000_000) & 0x00FF_FFFF) as u32
}

/// The 3 wire bytes of an abs-send-time value.
pub fn abs_send_time_bytes(abs_send_time: u32) -> [u8; 3] {
    let b = abs_send_time.to_be_bytes();
    [b[1], b[2], b[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet with marker, PT 96, seq 0x1234, ts 0xDEADBEEF, SSRC 0x11223344, one CSRC, a
    /// one-byte extension block {1: "a", 3: [0x01,0x02], 5: [9,9,9]} and `payload`, 4 padding bytes.
    fn sample(payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0xB1, 0x80 | 96, 0x12, 0x34, 0xDE, 0xAD, 0xBE, 0xEF];
        p.extend_from_slice(&0x1122_3344u32.to_be_bytes());
        p.extend_from_slice(&0xCAFE_BABEu32.to_be_bytes());
        // 3 elements: 2 + 3 + 4 = 9 bytes → 3 words.
        p.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x03]);
        p.extend_from_slice(&[0x10, b'a', 0x31, 0x01, 0x02, 0x00, 0x52, 9, 9, 9, 0, 0]);
        p.extend_from_slice(payload);
        p.extend_from_slice(&[0, 0, 0, 4]);
        p
    }

    #[test]
    fn parses_header_fields_extensions_and_padding() {
        let buf = sample(b"hello");
        let p = RtpPacket::parse(&buf).unwrap();
        assert!(p.marker());
        assert_eq!(p.payload_type(), 96);
        assert_eq!(p.sequence_number(), 0x1234);
        assert_eq!(p.timestamp(), 0xDEAD_BEEF);
        assert_eq!(p.ssrc(), 0x1122_3344);
        assert_eq!(p.csrcs().collect::<Vec<_>>(), vec![0xCAFE_BABE]);
        assert_eq!(p.header_len(), 12 + 4 + 4 + 12);
        assert_eq!(p.payload(), b"hello");
        assert_eq!(p.padding_len(), 4);
        assert_eq!(p.extension_form(), Some(ExtensionForm::OneByte));
        assert_eq!(p.mid(1), Some("a"));
        assert_eq!(p.transport_wide_seq(3), Some(0x0102));
        assert_eq!(p.abs_send_time(5), Some(0x090909));
        assert_eq!(p.extension(2), None);
        let all: Vec<_> = p.extensions().collect();
        assert_eq!(
            all,
            vec![(1, &b"a"[..]), (3, &[1, 2][..]), (5, &[9, 9, 9][..])]
        );
    }

    #[test]
    fn rejects_malformed_packets() {
        assert_eq!(
            RtpPacket::parse(&[0x80; 11]).unwrap_err(),
            RtpError::TooShort
        );
        let mut v1 = sample(b"x");
        v1[0] = (v1[0] & 0x3F) | 0x40;
        assert_eq!(RtpPacket::parse(&v1).unwrap_err(), RtpError::BadVersion);
        let mut cc = vec![0x8F, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        cc.extend_from_slice(&[0; 20]);
        assert_eq!(RtpPacket::parse(&cc).unwrap_err(), RtpError::CsrcOverflow);
        let mut ext = sample(b"");
        ext[19] = 0x40; // extension length 64 words
        assert_eq!(
            RtpPacket::parse(&ext).unwrap_err(),
            RtpError::ExtensionOverflow
        );
        let mut pad0 = sample(b"x");
        *pad0.last_mut().unwrap() = 0;
        assert_eq!(RtpPacket::parse(&pad0).unwrap_err(), RtpError::BadPadding);
        let mut pad_big = sample(b"x");
        *pad_big.last_mut().unwrap() = 200;
        assert_eq!(
            RtpPacket::parse(&pad_big).unwrap_err(),
            RtpError::BadPadding
        );
        // Extension header itself truncated.
        let trunc = [0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xBE, 0xDE];
        assert_eq!(
            RtpPacket::parse(&trunc).unwrap_err(),
            RtpError::ExtensionOverflow
        );
    }

    #[test]
    fn one_byte_walk_stops_at_id_15_and_overruns() {
        // id 2 (1 byte), then id 15 → stop; the trailing "id 4" is never seen.
        let mut p = vec![0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xBE, 0xDE, 0, 2];
        p.extend_from_slice(&[0x20, 7, 0xF0, 0x40, 1, 0, 0, 0]);
        let pkt = RtpPacket::parse(&p).unwrap();
        assert_eq!(pkt.extensions().collect::<Vec<_>>(), vec![(2, &[7][..])]);
        // An element claiming 16 bytes in a 4-byte block yields nothing but the packet is valid.
        let q = [
            0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xBE, 0xDE, 0, 1, 0x1F, 1, 2, 3,
        ];
        let pkt = RtpPacket::parse(&q).unwrap();
        assert_eq!(pkt.extensions().count(), 0);
        assert_eq!(pkt.payload(), b"");
    }

    #[test]
    fn two_byte_form_parses_long_and_empty_values() {
        let mut p = vec![0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0x10, 0x00, 0, 6];
        let long = [7u8; 17];
        p.extend_from_slice(&[20, 17]);
        p.extend_from_slice(&long);
        p.extend_from_slice(&[0, 3, 0, 0]); // padding byte, then id 3 with empty value
        p.resize(16 + 24, 0);
        p.extend_from_slice(b"pl");
        let pkt = RtpPacket::parse(&p).unwrap();
        assert_eq!(pkt.extension_form(), Some(ExtensionForm::TwoByte));
        assert_eq!(pkt.extension(20), Some(&long[..]));
        assert_eq!(pkt.extension(3), Some(&[][..]));
        assert_eq!(pkt.payload(), b"pl");
    }

    #[test]
    fn unknown_profile_has_no_elements_but_is_valid() {
        let p = [
            0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0x12, 0x34, 0, 1, 0x10, 1, 2, 3, 0xAA,
        ];
        let pkt = RtpPacket::parse(&p).unwrap();
        assert_eq!(pkt.extension_form(), Some(ExtensionForm::Other(0x1234)));
        assert_eq!(pkt.extensions().count(), 0);
        assert_eq!(pkt.payload(), &[0xAA]);
    }

    #[test]
    fn rewrite_maps_and_removes_extensions_and_adds_extra() {
        let buf = sample(b"payload");
        let src = RtpPacket::parse(&buf).unwrap();
        let mut map = ExtensionMap::new();
        assert!(map.insert(3, 7)); // twcc 3 → 7
        assert!(map.insert(1, 2)); // mid 1 → 2, but overridden by extra
        assert!(!map.insert(15, 1));
        let mut out = [0u8; 1500];
        let n = rewrite_into(
            &src,
            &mut out,
            0xAABB_CCDD,
            101,
            7,
            99,
            &map,
            &[(2, b"mid1"), (4, &[0, 0, 0])],
        )
        .unwrap();
        let p = RtpPacket::parse(&out[..n]).unwrap();
        assert_eq!(p.ssrc(), 0xAABB_CCDD);
        assert_eq!(p.payload_type(), 101);
        assert_eq!(p.sequence_number(), 7);
        assert_eq!(p.timestamp(), 99);
        assert!(p.marker());
        assert_eq!(p.csrcs().collect::<Vec<_>>(), vec![0xCAFE_BABE]);
        assert_eq!(p.extension_form(), Some(ExtensionForm::OneByte));
        assert_eq!(
            p.extensions().collect::<Vec<_>>(),
            vec![(7, &[1, 2][..]), (2, &b"mid1"[..]), (4, &[0, 0, 0][..])]
        );
        assert_eq!(p.extension(5), None, "unmapped extension must be removed");
        assert_eq!(p.payload(), b"payload");
        assert_eq!(p.padding_len(), 4);

        // In-place setters on the rewritten packet.
        set_transport_wide_seq(&mut out[..n], 7, 0xBEEF).unwrap();
        set_abs_send_time(&mut out[..n], 4, 0x123456).unwrap();
        set_sequence_number(&mut out[..n], 8).unwrap();
        set_payload_type(&mut out[..n], 100).unwrap();
        set_marker(&mut out[..n], false).unwrap();
        set_ssrc(&mut out[..n], 5).unwrap();
        set_timestamp(&mut out[..n], 6).unwrap();
        let p = RtpPacket::parse(&out[..n]).unwrap();
        assert_eq!(p.transport_wide_seq(7), Some(0xBEEF));
        assert_eq!(p.abs_send_time(4), Some(0x123456));
        assert_eq!(
            (p.sequence_number(), p.payload_type(), p.marker()),
            (8, 100, false)
        );
        assert_eq!((p.ssrc(), p.timestamp()), (5, 6));
        assert_eq!(
            set_extension(&mut out[..n], 2, b"toolong"),
            Err(RtpError::BadExtension)
        );
        assert_eq!(
            set_transport_wide_seq(&mut out[..n], 9, 1),
            Err(RtpError::BadExtension)
        );
    }

    #[test]
    fn rewrite_falls_back_to_two_byte_form() {
        let buf = sample(b"p");
        let src = RtpPacket::parse(&buf).unwrap();
        let long = [1u8; 17];
        let mut out = [0u8; 200];
        let n = rewrite_into(
            &src,
            &mut out,
            1,
            2,
            3,
            4,
            &ExtensionMap::new(),
            &[(1, &long)],
        )
        .unwrap();
        let p = RtpPacket::parse(&out[..n]).unwrap();
        assert_eq!(p.extension_form(), Some(ExtensionForm::TwoByte));
        assert_eq!(p.extension(1), Some(&long[..]));
        // Id above 14 also forces the two-byte form.
        let n = rewrite_into(
            &src,
            &mut out,
            1,
            2,
            3,
            4,
            &ExtensionMap::new(),
            &[(20, b"x")],
        )
        .unwrap();
        let p = RtpPacket::parse(&out[..n]).unwrap();
        assert_eq!(p.extension_form(), Some(ExtensionForm::TwoByte));
        assert_eq!(p.extension(20), Some(&b"x"[..]));
        // Id 0 is invalid.
        assert_eq!(
            rewrite_into(
                &src,
                &mut out,
                1,
                2,
                3,
                4,
                &ExtensionMap::new(),
                &[(0, b"x")]
            ),
            Err(RtpError::BadExtension)
        );
    }

    #[test]
    fn rewrite_without_extensions_drops_the_block_and_checks_space() {
        let buf = sample(b"abc");
        let src = RtpPacket::parse(&buf).unwrap();
        let mut out = [0u8; 64];
        let n = rewrite_into(&src, &mut out, 1, 2, 3, 4, &ExtensionMap::new(), &[]).unwrap();
        let p = RtpPacket::parse(&out[..n]).unwrap();
        assert!(!p.has_extension_header());
        assert_eq!(n, 12 + 4 + 3 + 4);
        let mut small = [0u8; 22];
        assert_eq!(
            rewrite_into(&src, &mut small, 1, 2, 3, 4, &ExtensionMap::new(), &[]),
            Err(RtpError::BufferTooSmall)
        );
    }

    #[test]
    fn header_writer_builds_padding_only_probe() {
        let mut out = [0u8; 300];
        let w = RtpHeaderWriter {
            payload_type: 127,
            ssrc: 1234,
            sequence_number: 1,
            ..Default::default()
        };
        let n = w
            .write(&mut out, [(1u8, &b"probator"[..])].into_iter(), &[], 255)
            .unwrap();
        let p = RtpPacket::parse(&out[..n]).unwrap();
        assert_eq!(p.mid(1), Some("probator"));
        assert_eq!(p.padding_len(), 255);
        assert!(p.payload().is_empty());
    }

    #[test]
    fn abs_send_time_is_6_18_fixed_point() {
        assert_eq!(abs_send_time(Duration::from_secs(1)), 1 << 18);
        assert_eq!(abs_send_time(Duration::from_millis(500)), 1 << 17);
        // Wraps every 64 s.
        assert_eq!(abs_send_time(Duration::from_secs(64)), 0);
        assert_eq!(abs_send_time_bytes(0x123456), [0x12, 0x34, 0x56]);
    }
}
