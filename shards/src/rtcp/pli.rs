//! Picture loss indication (RFC 4585 §6.3.1): a receiver asks for a key frame, which the SFU
//! forwards to the producer of `media_ssrc` (mediasoup's `FeedbackPsPliPacket`).

use super::header::{begin_feedback, feedback, finish};
use super::{fmt, packet_type, RtcpError};

/// PLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pli {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// SSRC of the stream that needs a key frame.
    pub media_ssrc: u32,
}

pub(crate) fn parse(body: &[u8]) -> Result<Pli, RtcpError> {
    let (sender_ssrc, media_ssrc, _) = feedback(body, packet_type::PSFB, fmt::PLI)?;
    Ok(Pli {
        sender_ssrc,
        media_ssrc,
    })
}

/// Appends a PLI asking the sender of `media_ssrc` for a key frame.
pub fn pli(out: &mut Vec<u8>, sender_ssrc: u32, media_ssrc: u32) -> usize {
    let start = begin_feedback(out, packet_type::PSFB, fmt::PLI, sender_ssrc, media_ssrc);
    finish(out, start)
}
