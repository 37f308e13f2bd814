//! Sender and receiver reports (RFC 3550 §6.4) and their reception report blocks, which carry the
//! loss, jitter and LSR/DLSR an SFU needs for stream scores and round-trip times.

use super::header::{begin, finish, truncated, Reader};
use super::{packet_type, RtcpError};

/// Size of one reception report block.
const REPORT_BLOCK_LEN: usize = 24;
/// Size of the sender info of an SR (after the sender SSRC).
const SENDER_INFO_LEN: usize = 20;
/// The 5-bit report count caps how many blocks one SR/RR carries.
const MAX_BLOCKS_PER_PACKET: usize = 31;

/// A reception report block: how well one source is being received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// SSRC of the source this block is about.
    pub ssrc: u32,
    /// Fraction of packets lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost: 24-bit signed, since duplicates can make it negative.
    pub total_lost: i32,
    /// Extended highest sequence number received (cycles in the upper 16 bits).
    pub highest_seq: u32,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR received from this source.
    pub lsr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub dlsr: u32,
}

/// SR: sender info plus reception reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SenderReport {
    /// SSRC of the sender.
    pub ssrc: u32,
    /// NTP timestamp, seconds.
    pub ntp_sec: u32,
    /// NTP timestamp, fraction.
    pub ntp_frac: u32,
    /// RTP timestamp matching the NTP timestamp.
    pub rtp_ts: u32,
    /// Packets sent so far.
    pub packet_count: u32,
    /// Payload octets sent so far.
    pub octet_count: u32,
    /// Reception report blocks.
    pub reports: Vec<ReportBlock>,
}

/// RR: reception reports from a receiver.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReceiverReport {
    /// SSRC of the packet sender.
    pub ssrc: u32,
    /// Reception report blocks.
    pub reports: Vec<ReportBlock>,
}

fn parse_blocks(r: &mut Reader<'_>, count: u8, pt: u8) -> Result<Vec<ReportBlock>, RtcpError> {
    let err = truncated(pt, count);
    let n = usize::from(count);
    if r.remaining() < n * REPORT_BLOCK_LEN {
        return Err(err);
    }
    let mut blocks = Vec::with_capacity(n);
    for _ in 0..n {
        blocks.push(parse_block(r).ok_or(err)?);
    }
    // Anything after the blocks is a profile-specific extension, which nobody sends to an SFU.
    Ok(blocks)
}

fn parse_block(r: &mut Reader<'_>) -> Option<ReportBlock> {
    let ssrc = r.u32()?;
    let fraction_lost = r.u8()?;
    let lost = r.u24()?;
    // Sign-extend the 24-bit two's complement value.
    let total_lost = ((lost << 8) as i32) >> 8;
    Some(ReportBlock {
        ssrc,
        fraction_lost,
        total_lost,
        highest_seq: r.u32()?,
        jitter: r.u32()?,
        lsr: r.u32()?,
        dlsr: r.u32()?,
    })
}

pub(crate) fn parse_sr(body: &[u8], count: u8) -> Result<SenderReport, RtcpError> {
    let mut r = Reader::new(body);
    let err = truncated(packet_type::SR, count);
    if r.remaining() < 4 + SENDER_INFO_LEN {
        return Err(err);
    }
    let ssrc = r.u32().ok_or(err)?;
    let ntp_sec = r.u32().ok_or(err)?;
    let ntp_frac = r.u32().ok_or(err)?;
    let rtp_ts = r.u32().ok_or(err)?;
    let packet_count = r.u32().ok_or(err)?;
    let octet_count = r.u32().ok_or(err)?;
    let reports = parse_blocks(&mut r, count, packet_type::SR)?;
    Ok(SenderReport {
        ssrc,
        ntp_sec,
        ntp_frac,
        rtp_ts,
        packet_count,
        octet_count,
        reports,
    })
}

pub(crate) fn parse_rr(body: &[u8], count: u8) -> Result<ReceiverReport, RtcpError> {
    let mut r = Reader::new(body);
    let ssrc = r.u32().ok_or(truncated(packet_type::RR, count))?;
    let reports = parse_blocks(&mut r, count, packet_type::RR)?;
    Ok(ReceiverReport { ssrc, reports })
}

fn write_block(out: &mut Vec<u8>, block: &ReportBlock) {
    // Clamp to what 24 signed bits hold rather than wrap into a nonsense value.
    let lost = block.total_lost.clamp(-(1 << 23), (1 << 23) - 1) as u32 & 0x00ff_ffff;
    out.extend_from_slice(&block.ssrc.to_be_bytes());
    out.push(block.fraction_lost);
    out.extend_from_slice(&lost.to_be_bytes()[1..]);
    out.extend_from_slice(&block.highest_seq.to_be_bytes());
    out.extend_from_slice(&block.jitter.to_be_bytes());
    out.extend_from_slice(&block.lsr.to_be_bytes());
    out.extend_from_slice(&block.dlsr.to_be_bytes());
}

/// Appends an RR from `sender_ssrc` carrying `blocks`; more than 31 blocks are split over
/// several RRs, as the 5-bit count requires. With no blocks, writes one empty RR (which is what
/// opens a compound when there is nothing to report).
pub fn receiver_report(out: &mut Vec<u8>, sender_ssrc: u32, blocks: &[ReportBlock]) -> usize {
    let before = out.len();
    let mut chunks = blocks.chunks(MAX_BLOCKS_PER_PACKET);
    let first = chunks.next().unwrap_or_default();
    for chunk in std::iter::once(first).chain(chunks) {
        let start = begin(out, chunk.len() as u8, packet_type::RR);
        out.extend_from_slice(&sender_ssrc.to_be_bytes());
        chunk.iter().for_each(|block| write_block(out, block));
        finish(out, start);
    }
    out.len() - before
}

/// Appends an SR with `sr`'s sender info and its first 31 report blocks; further blocks go in
/// RRs that follow it in the compound.
pub fn sender_report(out: &mut Vec<u8>, sr: &SenderReport) -> usize {
    let before = out.len();
    let (first, rest) = sr
        .reports
        .split_at(sr.reports.len().min(MAX_BLOCKS_PER_PACKET));
    let start = begin(out, first.len() as u8, packet_type::SR);
    for word in [
        sr.ssrc,
        sr.ntp_sec,
        sr.ntp_frac,
        sr.rtp_ts,
        sr.packet_count,
        sr.octet_count,
    ] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    first.iter().for_each(|block| write_block(out, block));
    finish(out, start);
    if !rest.is_empty() {
        receiver_report(out, sr.ssrc, rest);
    }
    out.len() - before
}
