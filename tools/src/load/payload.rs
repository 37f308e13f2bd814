//! The bytes the load tool's publishers put in RTP, and how subscribers check them.
//!
//! Every payload ends with a 24-byte trailer — magic, stream id, packet counter and the send time
//! (ns on the process-wide monotonic clock) — and the bytes between the codec header and the
//! trailer are a pattern derived from the counter, so a subscriber that decrypts a packet knows
//! which publisher stream and packet it is, its end-to-end latency, and that the SFU changed
//! nothing it should not have. Video payloads start with a real VP8 payload descriptor (picture
//! id, TL0PICIDX, temporal layer) and, at the start of a frame, a VP8 frame tag (and the key
//! frame start code), which is what an SFU reads to find key frames and drop temporal layers.

use std::sync::OnceLock;
use std::time::Instant;

/// "SCLD".
pub const MAGIC: u32 = 0x5343_4c44;
pub const TRAILER_LEN: usize = 24;
/// Fixed VP8 payload descriptor: X, I (15-bit picture id), L, T.
pub const VP8_DESCRIPTOR_LEN: usize = 6;
/// Frame tag (3) plus the key frame start code and dimensions (7).
pub const VP8_KEY_HEADER_LEN: usize = 10;
pub const VP8_DELTA_HEADER_LEN: usize = 3;

/// Nanoseconds since the first call, on the monotonic clock shared by every thread of the
/// process (publishers and subscribers run in one process, so latency needs no clock sync).
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// What a decrypted payload says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    pub stream_id: u32,
    pub counter: u64,
    pub send_ns: u64,
}

/// Appends `len` body bytes (pattern, then the trailer; at least the trailer) to `out`.
pub fn write_body(out: &mut Vec<u8>, len: usize, t: &Trailer) {
    let fill = len.saturating_sub(TRAILER_LEN);
    let base = t.counter as u8;
    out.extend((0..fill).map(|i| base.wrapping_add(i as u8)));
    out.extend_from_slice(&MAGIC.to_be_bytes());
    out.extend_from_slice(&t.stream_id.to_be_bytes());
    out.extend_from_slice(&t.counter.to_be_bytes());
    out.extend_from_slice(&t.send_ns.to_be_bytes());
}

/// Why a decrypted payload failed the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    Short,
    Magic,
    Pattern,
}

/// Reads the trailer of `body` (codec header already skipped) and checks the pattern before it.
pub fn check_body(body: &[u8]) -> Result<Trailer, BodyError> {
    let split = body
        .len()
        .checked_sub(TRAILER_LEN)
        .ok_or(BodyError::Short)?;
    let (fill, trailer) = body.split_at(split);
    let word = |r: std::ops::Range<usize>| trailer.get(r).unwrap_or(&[]);
    let magic = u32::from_be_bytes(word(0..4).try_into().map_err(|_| BodyError::Short)?);
    if magic != MAGIC {
        return Err(BodyError::Magic);
    }
    let t = Trailer {
        stream_id: u32::from_be_bytes(word(4..8).try_into().map_err(|_| BodyError::Short)?),
        counter: u64::from_be_bytes(word(8..16).try_into().map_err(|_| BodyError::Short)?),
        send_ns: u64::from_be_bytes(word(16..24).try_into().map_err(|_| BodyError::Short)?),
    };
    let base = t.counter as u8;
    if fill
        .iter()
        .enumerate()
        .any(|(i, b)| *b != base.wrapping_add(i as u8))
    {
        return Err(BodyError::Pattern);
    }
    Ok(t)
}

/// The VP8 payload descriptor and, on a frame's first packet, the frame header.
#[derive(Debug, Clone, Copy)]
pub struct Vp8Header {
    pub start_of_frame: bool,
    pub key_frame: bool,
    pub picture_id: u16,
    pub tl0_pic_idx: u8,
    pub temporal_id: u8,
    /// Dimensions written into a key frame header.
    pub width: u16,
    pub height: u16,
}

impl Vp8Header {
    /// Appends the descriptor (RFC 7741 §4.2) and, at the frame start, the frame tag (RFC 6386
    /// §9.1) with the key frame start code.
    pub fn write(&self, out: &mut Vec<u8>) {
        let s = if self.start_of_frame { 0x10 } else { 0 };
        let pid = self.picture_id & 0x7fff;
        out.extend_from_slice(&[
            0x80 | s,
            0x80 | 0x40 | 0x20,
            0x80 | (pid >> 8) as u8,
            pid as u8,
            self.tl0_pic_idx,
            (self.temporal_id & 0x03) << 6 | 0x20,
        ]);
        if self.start_of_frame {
            // P bit clear on key frames, show_frame set; first partition size left at 0.
            out.extend_from_slice(&[if self.key_frame { 0x10 } else { 0x11 }, 0, 0]);
            if self.key_frame {
                out.extend_from_slice(&[0x9d, 0x01, 0x2a]);
                out.extend_from_slice(&(self.width & 0x3fff).to_le_bytes());
                out.extend_from_slice(&(self.height & 0x3fff).to_le_bytes());
            }
        }
    }

    /// Length of this header on the wire.
    pub fn len(&self) -> usize {
        VP8_DESCRIPTOR_LEN
            + match (self.start_of_frame, self.key_frame) {
                (false, _) => 0,
                (true, true) => VP8_KEY_HEADER_LEN,
                (true, false) => VP8_DELTA_HEADER_LEN,
            }
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Length of the VP8 descriptor plus frame header at the start of `payload`, as an SFU may have
/// rewritten it (any descriptor layout); `None` if it is truncated.
pub fn vp8_header_len(payload: &[u8]) -> Option<usize> {
    let b0 = *payload.first()?;
    let mut len = 1;
    if b0 & 0x80 != 0 {
        let x = *payload.get(1)?;
        len += 1;
        if x & 0x80 != 0 {
            len += if payload.get(len)? & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            len += 1;
        }
        if x & 0x30 != 0 {
            len += 1;
        }
    }
    let start = b0 & 0x10 != 0 && b0 & 0x0f == 0;
    if start {
        let tag = *payload.get(len)?;
        len += if tag & 0x01 == 0 {
            VP8_KEY_HEADER_LEN
        } else {
            VP8_DELTA_HEADER_LEN
        };
    }
    (len <= payload.len()).then_some(len)
}

/// Appends an RTP header with one-byte header extensions (RFC 8285) to `out`.
#[allow(clippy::too_many_arguments)]
pub fn write_rtp_header(
    out: &mut Vec<u8>,
    marker: bool,
    payload_type: u8,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
    extensions: &[(u8, &[u8])],
) {
    let x = if extensions.is_empty() { 0 } else { 0x10 };
    out.push(0x80 | x);
    out.push(if marker { 0x80 } else { 0 } | (payload_type & 0x7f));
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    if extensions.is_empty() {
        return;
    }
    let body: usize = extensions.iter().map(|(_, v)| 1 + v.len()).sum();
    let words = body.div_ceil(4);
    out.extend_from_slice(&[0xbe, 0xde]);
    out.extend_from_slice(&(words as u16).to_be_bytes());
    for (id, value) in extensions {
        out.push((id & 0x0f) << 4 | (value.len().saturating_sub(1) as u8 & 0x0f));
        out.extend_from_slice(value);
    }
    out.extend(std::iter::repeat_n(0, words * 4 - body));
}

/// The fields of an RTP header the subscriber reads in the clear (SRTP encrypts only the
/// payload), without copying.
#[derive(Debug, Clone, Copy)]
pub struct RtpHead<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// The one- or two-byte extension block (after its 4-byte header), if any.
    pub extensions: Option<(&'a [u8], bool)>,
    /// Offset of the payload.
    pub payload_offset: usize,
}

impl<'a> RtpHead<'a> {
    pub fn parse(p: &'a [u8]) -> Option<Self> {
        if p.len() < 12 || p[0] >> 6 != 2 {
            return None;
        }
        let cc = usize::from(p[0] & 0x0f);
        let mut off = 12 + 4 * cc;
        let mut extensions = None;
        if p[0] & 0x10 != 0 {
            let h = p.get(off..off + 4)?;
            let profile = u16::from_be_bytes([h[0], h[1]]);
            let words = usize::from(u16::from_be_bytes([h[2], h[3]]));
            let body = p.get(off + 4..off + 4 + 4 * words)?;
            let one_byte = profile == 0xbede;
            let two_byte = profile & 0xfff0 == 0x1000;
            if one_byte || two_byte {
                extensions = Some((body, one_byte));
            }
            off += 4 + 4 * words;
        }
        if off > p.len() {
            return None;
        }
        Some(Self {
            marker: p[1] & 0x80 != 0,
            payload_type: p[1] & 0x7f,
            seq: u16::from_be_bytes([p[2], p[3]]),
            timestamp: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
            ssrc: u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
            extensions,
            payload_offset: off,
        })
    }

    /// The value of header extension `id`.
    pub fn extension(&self, id: u8) -> Option<&'a [u8]> {
        let (body, one_byte) = self.extensions?;
        let mut i = 0;
        while i < body.len() {
            let b = body[i];
            if one_byte {
                if b == 0 {
                    i += 1;
                    continue;
                }
                let eid = b >> 4;
                if eid == 15 {
                    return None;
                }
                let len = usize::from(b & 0x0f) + 1;
                let value = body.get(i + 1..i + 1 + len)?;
                if eid == id {
                    return Some(value);
                }
                i += 1 + len;
            } else {
                if b == 0 {
                    i += 1;
                    continue;
                }
                let len = usize::from(*body.get(i + 1)?);
                let value = body.get(i + 2..i + 2 + len)?;
                if b == id {
                    return Some(value);
                }
                i += 2 + len;
            }
        }
        None
    }
}

/// The payload of a decrypted RTP packet, without padding.
pub fn rtp_payload(plain: &[u8]) -> Option<&[u8]> {
    let head = RtpHead::parse(plain)?;
    let mut end = plain.len();
    if plain[0] & 0x20 != 0 {
        let pad = usize::from(*plain.last()?);
        end = end.checked_sub(pad)?;
    }
    plain.get(head.payload_offset..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_round_trip_and_corruption_is_caught() {
        let t = Trailer {
            stream_id: 7,
            counter: 300,
            send_ns: 123_456,
        };
        let mut body = Vec::new();
        write_body(&mut body, 1000, &t);
        assert_eq!(body.len(), 1000);
        assert_eq!(check_body(&body), Ok(t));
        body[10] ^= 1;
        assert_eq!(check_body(&body), Err(BodyError::Pattern));
        assert_eq!(check_body(&body[..10]), Err(BodyError::Short));
        let mut tiny = Vec::new();
        write_body(&mut tiny, 5, &t);
        assert_eq!(tiny.len(), TRAILER_LEN);
        assert_eq!(check_body(&tiny), Ok(t));
    }

    #[test]
    fn vp8_header_lengths_are_read_back() {
        for (start, key) in [(true, true), (true, false), (false, false)] {
            let h = Vp8Header {
                start_of_frame: start,
                key_frame: key,
                picture_id: 0x1234,
                tl0_pic_idx: 9,
                temporal_id: 2,
                width: 640,
                height: 360,
            };
            let mut out = Vec::new();
            h.write(&mut out);
            out.extend_from_slice(&[0xaa; 30]);
            assert_eq!(out.len() - 30, h.len());
            assert_eq!(vp8_header_len(&out), Some(h.len()));
        }
        assert_eq!(vp8_header_len(&[0x90]), None);
    }

    #[test]
    fn rtp_header_with_extensions_parses() {
        let mut p = Vec::new();
        write_rtp_header(
            &mut p,
            true,
            96,
            513,
            90_000,
            0xdead_beef,
            &[(4, b"0"), (3, &[1, 2])],
        );
        p.extend_from_slice(b"payload");
        let h = RtpHead::parse(&p).expect("parses");
        assert!(h.marker);
        assert_eq!(
            (h.payload_type, h.seq, h.timestamp, h.ssrc),
            (96, 513, 90_000, 0xdead_beef)
        );
        assert_eq!(h.extension(4), Some(&b"0"[..]));
        assert_eq!(h.extension(3), Some(&[1u8, 2][..]));
        assert_eq!(h.extension(5), None);
        assert_eq!(rtp_payload(&p), Some(&b"payload"[..]));
        assert!(RtpHead::parse(&p[..14]).is_none());
    }
}
