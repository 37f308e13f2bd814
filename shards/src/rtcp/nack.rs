//! Generic NACK (RFC 4585 §6.2.1): lost RTP sequence numbers as PID + 16-bit BLP items. Parsed
//! into the plain list of lost sequence numbers, which is what the retransmission buffer looks
//! up; written from such a list (mediasoup's `FeedbackRtpNackPacket` / `NackGenerator`).

use super::header::{begin_feedback, feedback, finish, truncated, MAX_PACKET_LEN};
use super::{fmt, packet_type, RtcpError};

/// Size of one FCI item: PID and BLP.
const ITEM_LEN: usize = 4;
/// Items per packet so the 16-bit length never overflows.
const MAX_ITEMS_PER_PACKET: usize = (MAX_PACKET_LEN - 12) / ITEM_LEN;

/// Generic NACK.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Nack {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// SSRC of the stream with losses.
    pub media_ssrc: u32,
    /// Lost sequence numbers, in item order (PID, then the BLP bits from the lowest).
    pub lost: Vec<u16>,
}

pub(crate) fn parse(body: &[u8]) -> Result<Nack, RtcpError> {
    let (sender_ssrc, media_ssrc, fci) = feedback(body, packet_type::RTPFB, fmt::NACK)?;
    if fci.len() % ITEM_LEN != 0 {
        return Err(truncated(packet_type::RTPFB, fmt::NACK));
    }
    let mut lost = Vec::with_capacity(fci.len() / ITEM_LEN);
    for item in fci.chunks_exact(ITEM_LEN) {
        let pid = u16::from_be_bytes([item[0], item[1]]);
        let blp = u16::from_be_bytes([item[2], item[3]]);
        lost.push(pid);
        lost.extend(
            (0..16u16)
                .filter(|bit| blp & (1 << bit) != 0)
                .map(|bit| pid.wrapping_add(bit + 1)),
        );
    }
    Ok(Nack {
        sender_ssrc,
        media_ssrc,
        lost,
    })
}

/// Appends a NACK for `lost` (expected in increasing order modulo 2^16, as a NACK generator
/// produces; any order still covers every number, just with more items). Writes nothing when
/// `lost` is empty, since a NACK needs at least one item.
pub fn nack(out: &mut Vec<u8>, sender_ssrc: u32, media_ssrc: u32, lost: &[u16]) -> usize {
    let before = out.len();
    let items = pack_items(lost);
    for chunk in items.chunks(MAX_ITEMS_PER_PACKET) {
        let start = begin_feedback(out, packet_type::RTPFB, fmt::NACK, sender_ssrc, media_ssrc);
        for (pid, blp) in chunk {
            out.extend_from_slice(&pid.to_be_bytes());
            out.extend_from_slice(&blp.to_be_bytes());
        }
        finish(out, start);
    }
    out.len() - before
}

/// Packs sequence numbers into (PID, BLP) items: each number either falls in the 16 after the
/// current PID or starts a new item.
fn pack_items(lost: &[u16]) -> Vec<(u16, u16)> {
    let mut items: Vec<(u16, u16)> = Vec::new();
    for &seq in lost {
        if let Some((pid, blp)) = items.last_mut() {
            let diff = seq.wrapping_sub(*pid);
            if diff == 0 {
                continue;
            }
            if diff <= 16 {
                *blp |= 1 << (diff - 1);
                continue;
            }
        }
        items.push((seq, 0));
    }
    items
}
