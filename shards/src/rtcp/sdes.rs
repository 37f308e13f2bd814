//! Source description (RFC 3550 §6.5). An SFU only cares about the CNAME, which ties streams of
//! one endpoint together; the other items are skipped.

use super::header::{begin, finish, truncated};
use super::{packet_type, RtcpError};

/// SDES item type of the CNAME.
const CNAME: u8 = 1;
/// SDES item type that ends a chunk's item list.
const END: u8 = 0;

/// SDES: one chunk per source.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sdes {
    /// The chunks, in packet order.
    pub chunks: Vec<SdesChunk>,
}

/// One SDES chunk, reduced to what an SFU uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SdesChunk {
    /// SSRC (or CSRC) the chunk describes.
    pub ssrc: u32,
    /// The CNAME item, if present (invalid UTF-8 replaced).
    pub cname: Option<String>,
}

pub(crate) fn parse(body: &[u8], count: u8) -> Result<Sdes, RtcpError> {
    let err = truncated(packet_type::SDES, count);
    let mut chunks = Vec::with_capacity(usize::from(count));
    // The body starts 32-bit aligned, so alignment can be computed on body offsets.
    let mut pos = 0usize;
    for _ in 0..count {
        let ssrc_bytes = body.get(pos..pos + 4).ok_or(err)?;
        let ssrc = u32::from_be_bytes([ssrc_bytes[0], ssrc_bytes[1], ssrc_bytes[2], ssrc_bytes[3]]);
        pos += 4;
        let mut cname = None;
        loop {
            let item_type = *body.get(pos).ok_or(err)?;
            if item_type == END {
                // The END octet is followed by null octets up to the next 32-bit boundary.
                pos = (pos + 1).next_multiple_of(4);
                break;
            }
            let len = usize::from(*body.get(pos + 1).ok_or(err)?);
            let text = body.get(pos + 2..pos + 2 + len).ok_or(err)?;
            if item_type == CNAME {
                cname = Some(String::from_utf8_lossy(text).into_owned());
            }
            pos += 2 + len;
        }
        chunks.push(SdesChunk { ssrc, cname });
    }
    Ok(Sdes { chunks })
}

/// Appends an SDES with a single chunk carrying `cname` for `ssrc`; a CNAME longer than the
/// 255 bytes an item can hold is cut.
pub fn sdes_cname(out: &mut Vec<u8>, ssrc: u32, cname: &str) -> usize {
    let text = &cname.as_bytes()[..cname.len().min(255)];
    let start = begin(out, 1, packet_type::SDES);
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.push(CNAME);
    out.push(text.len() as u8);
    out.extend_from_slice(text);
    // END, then `finish` pads the chunk with nulls to 32 bits.
    out.push(END);
    finish(out, start)
}
