//! Receiver estimated maximum bitrate (draft-alvestrand-rmcat-remb-03), a PSFB application-layer
//! feedback. mediasoup sends it to cap what a client sends (`maxIncomingBitrate`) and reads it
//! from consumers that do not negotiate transport-cc.

use super::header::{begin_feedback, feedback, finish, truncated, Reader};
use super::{fmt, packet_type, RtcpError};

/// The unique identifier that tells REMB apart from other application-layer feedback.
const IDENTIFIER: &[u8; 4] = b"REMB";
/// Largest mantissa the 18-bit field holds.
const MAX_MANTISSA: u64 = (1 << 18) - 1;
/// The 8-bit count caps the SSRC list.
const MAX_SSRCS: usize = u8::MAX as usize;

/// REMB.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Remb {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// Estimated maximum bitrate, in bits per second.
    pub bitrate: u64,
    /// Streams the estimate applies to.
    pub ssrcs: Vec<u32>,
}

/// Parses an AFB body; `Ok(None)` when it is some other application-layer feedback.
pub(crate) fn parse(body: &[u8]) -> Result<Option<Remb>, RtcpError> {
    let (sender_ssrc, _media_ssrc, fci) = feedback(body, packet_type::PSFB, fmt::AFB)?;
    let mut r = Reader::new(fci);
    if r.bytes(4) != Some(IDENTIFIER.as_slice()) {
        return Ok(None);
    }
    let err = truncated(packet_type::PSFB, fmt::AFB);
    let num_ssrcs = r.u8().ok_or(err)?;
    let exp_mantissa = r.u24().ok_or(err)?;
    let exp = exp_mantissa >> 18;
    let mantissa = u64::from(exp_mantissa) & MAX_MANTISSA;
    // An exponent up to 63 could shift bits out of 64; mediasoup rejects such packets too.
    if mantissa > u64::MAX >> exp {
        return Err(RtcpError::Malformed {
            pt: packet_type::PSFB,
            fmt: fmt::AFB,
            reason: "REMB bitrate overflows 64 bits",
        });
    }
    let ssrcs = (0..num_ssrcs)
        .map(|_| r.u32().ok_or(err))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Remb {
        sender_ssrc,
        bitrate: mantissa << exp,
        ssrcs,
    }))
}

/// Appends a REMB announcing `bitrate` bps for `ssrcs` (the first 255; mediasoup's limitation
/// REMB sends none). The bitrate is rounded down to the 18-bit mantissa's precision.
pub fn remb(out: &mut Vec<u8>, sender_ssrc: u32, bitrate: u64, ssrcs: &[u32]) -> usize {
    let ssrcs = &ssrcs[..ssrcs.len().min(MAX_SSRCS)];
    let mut exp = 0u32;
    let mut mantissa = bitrate;
    while mantissa > MAX_MANTISSA {
        mantissa >>= 1;
        exp += 1;
    }
    let start = begin_feedback(out, packet_type::PSFB, fmt::AFB, sender_ssrc, 0);
    out.extend_from_slice(IDENTIFIER);
    out.push(ssrcs.len() as u8);
    let exp_mantissa = (exp << 18) | mantissa as u32;
    out.extend_from_slice(&exp_mantissa.to_be_bytes()[1..]);
    ssrcs
        .iter()
        .for_each(|ssrc| out.extend_from_slice(&ssrc.to_be_bytes()));
    finish(out, start)
}
