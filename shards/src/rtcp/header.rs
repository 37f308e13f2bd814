//! The 4-byte common header (RFC 3550 §6.4.1): framing of a compound, padding, and the helpers
//! every writer uses to open a packet and fill in its length once the body is written.

use super::RtcpError;

/// Size of the common header.
pub(crate) const HEADER_LEN: usize = 4;
/// The RTP/RTCP version.
const VERSION: u8 = 2;
/// Largest packet the 16-bit length field can describe: (0xFFFF + 1) 32-bit words.
pub(crate) const MAX_PACKET_LEN: usize = (u16::MAX as usize + 1) * 4;

/// True when `data` looks like RTCP: version 2 and a packet type in 192..=223 (RFC 5761 §4),
/// which is how RTP and RTCP multiplexed on one port are told apart.
pub fn is_rtcp(data: &[u8]) -> bool {
    data.len() >= HEADER_LEN && data[0] >> 6 == VERSION && (192..=223).contains(&data[1])
}

/// One packet of a compound whose header and length have been checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Framed<'a> {
    /// The whole packet, header and padding included.
    pub packet: &'a [u8],
    pub padding: bool,
    pub count: u8,
    pub pt: u8,
}

/// Checks the header at `offset` and cuts the packet it announces out of the datagram.
pub(crate) fn frame(datagram: &[u8], offset: usize) -> Result<Framed<'_>, RtcpError> {
    let rest = datagram.get(offset..).unwrap_or_default();
    let [b0, pt, l0, l1, ..] = *rest else {
        return Err(RtcpError::TruncatedHeader { offset });
    };
    let version = b0 >> 6;
    if version != VERSION {
        return Err(RtcpError::BadVersion { offset, version });
    }
    if !(192..=223).contains(&pt) {
        return Err(RtcpError::NotRtcp { offset, pt });
    }
    let declared = (usize::from(u16::from_be_bytes([l0, l1])) + 1) * 4;
    let Some(packet) = rest.get(..declared) else {
        return Err(RtcpError::LengthOverrun {
            offset,
            declared,
            available: rest.len(),
        });
    };
    Ok(Framed {
        packet,
        padding: b0 & 0x20 != 0,
        count: b0 & 0x1f,
        pt,
    })
}

impl<'a> Framed<'a> {
    /// The bytes after the header, padding removed.
    pub fn body(&self) -> Result<&'a [u8], RtcpError> {
        let body = self.packet.get(HEADER_LEN..).unwrap_or_default();
        if !self.padding {
            return Ok(body);
        }
        // RFC 3550 §6.4.1: the last octet counts the padding octets, itself included.
        let pad = usize::from(body.last().copied().unwrap_or(0));
        if pad == 0 || pad > body.len() {
            return Err(RtcpError::BadPadding { pt: self.pt });
        }
        Ok(&body[..body.len() - pad])
    }
}

/// Big-endian reader over a packet body; every read is bounds-checked and reports `None`
/// instead of panicking, which the parsers turn into [`RtcpError::Truncated`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    pub fn remaining(&self) -> usize {
        self.data.len()
    }

    pub fn rest(&self) -> &'a [u8] {
        self.data
    }

    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.data.split_at_checked(n)?;
        self.data = tail;
        Some(head)
    }

    pub fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }

    pub fn u16(&mut self) -> Option<u16> {
        let b = self.bytes(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u24(&mut self) -> Option<u32> {
        let b = self.bytes(3)?;
        Some(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    pub fn u32(&mut self) -> Option<u32> {
        let b = self.bytes(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Appends a header with a zero length and returns where the packet starts, for [`finish`].
pub(crate) fn begin(out: &mut Vec<u8>, count: u8, pt: u8) -> usize {
    let start = out.len();
    out.extend_from_slice(&[(VERSION << 6) | (count & 0x1f), pt, 0, 0]);
    start
}

/// Zero-pads the packet started at `start` to 32 bits (without the P bit, as mediasoup does, so
/// the packet can sit anywhere in a compound), writes its length and returns its size.
///
/// Writers keep their packets under [`MAX_PACKET_LEN`], so the length always fits.
pub(crate) fn finish(out: &mut Vec<u8>, start: usize) -> usize {
    let len = (out.len() - start).next_multiple_of(4);
    out.resize(start + len, 0);
    let words = u16::try_from(len / 4 - 1).unwrap_or(u16::MAX);
    out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
    len
}

/// Shorthand for the error of a packet too short for what it declares.
pub(crate) fn truncated(pt: u8, fmt: u8) -> RtcpError {
    RtcpError::Truncated { pt, fmt }
}

/// Splits a feedback packet body (RFC 4585 §6.1) into sender SSRC, media SSRC and the FCI.
pub(crate) fn feedback(body: &[u8], pt: u8, fmt: u8) -> Result<(u32, u32, &[u8]), RtcpError> {
    let mut r = Reader::new(body);
    let err = truncated(pt, fmt);
    let sender_ssrc = r.u32().ok_or(err)?;
    let media_ssrc = r.u32().ok_or(err)?;
    Ok((sender_ssrc, media_ssrc, r.rest()))
}

/// Appends the header and the two SSRCs of a feedback packet; returns its start for [`finish`].
pub(crate) fn begin_feedback(
    out: &mut Vec<u8>,
    pt: u8,
    fmt: u8,
    sender_ssrc: u32,
    media_ssrc: u32,
) -> usize {
    let start = begin(out, fmt, pt);
    out.extend_from_slice(&sender_ssrc.to_be_bytes());
    out.extend_from_slice(&media_ssrc.to_be_bytes());
    start
}
