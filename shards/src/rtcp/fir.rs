//! Full intra request (RFC 5104 §4.3.1): like PLI, but each request carries a sequence number
//! the receiver increments per new request, so retransmitted FIRs are not acted on twice.

use super::header::{begin_feedback, feedback, finish, truncated, MAX_PACKET_LEN};
use super::{fmt, packet_type, RtcpError};

/// Size of one FCI entry: SSRC, sequence number, 3 reserved bytes.
const ENTRY_LEN: usize = 8;
/// Entries per packet so the 16-bit length never overflows.
const MAX_ENTRIES_PER_PACKET: usize = (MAX_PACKET_LEN - 12) / ENTRY_LEN;

/// One FIR request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FirEntry {
    /// SSRC of the stream that needs a key frame.
    pub ssrc: u32,
    /// Command sequence number.
    pub seq_nr: u8,
}

/// FIR. The media SSRC of the header is unused (RFC 5104 says 0); targets are in `entries`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fir {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// The requests.
    pub entries: Vec<FirEntry>,
}

pub(crate) fn parse(body: &[u8]) -> Result<Fir, RtcpError> {
    let (sender_ssrc, _media_ssrc, fci) = feedback(body, packet_type::PSFB, fmt::FIR)?;
    if fci.len() % ENTRY_LEN != 0 {
        return Err(truncated(packet_type::PSFB, fmt::FIR));
    }
    let entries = fci
        .chunks_exact(ENTRY_LEN)
        .map(|e| FirEntry {
            ssrc: u32::from_be_bytes([e[0], e[1], e[2], e[3]]),
            seq_nr: e[4],
        })
        .collect();
    Ok(Fir {
        sender_ssrc,
        entries,
    })
}

/// Appends a FIR carrying `entries` (media SSRC 0, as RFC 5104 requires).
pub fn fir(out: &mut Vec<u8>, sender_ssrc: u32, entries: &[FirEntry]) -> usize {
    let before = out.len();
    for chunk in entries.chunks(MAX_ENTRIES_PER_PACKET) {
        let start = begin_feedback(out, packet_type::PSFB, fmt::FIR, sender_ssrc, 0);
        for entry in chunk {
            out.extend_from_slice(&entry.ssrc.to_be_bytes());
            out.extend_from_slice(&[entry.seq_nr, 0, 0, 0]);
        }
        finish(out, start);
    }
    out.len() - before
}
