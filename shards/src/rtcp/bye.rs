//! Goodbye (RFC 3550 §6.6): sources that stopped sending.

use super::header::{begin, finish, truncated, Reader};
use super::{packet_type, RtcpError};

/// The 5-bit source count caps how many SSRCs one BYE carries.
const MAX_SSRCS_PER_PACKET: usize = 31;

/// BYE.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bye {
    /// Sources leaving. The optional reason text is ignored.
    pub ssrcs: Vec<u32>,
}

pub(crate) fn parse(body: &[u8], count: u8) -> Result<Bye, RtcpError> {
    let err = truncated(packet_type::BYE, count);
    let mut r = Reader::new(body);
    let ssrcs = (0..count)
        .map(|_| r.u32().ok_or(err))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Bye { ssrcs })
}

/// Appends a BYE for `ssrcs`, split over several packets past 31 sources.
pub fn bye(out: &mut Vec<u8>, ssrcs: &[u32]) -> usize {
    let before = out.len();
    for chunk in ssrcs.chunks(MAX_SSRCS_PER_PACKET) {
        let start = begin(out, chunk.len() as u8, packet_type::BYE);
        chunk
            .iter()
            .for_each(|ssrc| out.extend_from_slice(&ssrc.to_be_bytes()));
        finish(out, start);
    }
    out.len() - before
}
