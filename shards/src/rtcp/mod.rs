//! Sans-IO RTCP (RFC 3550, RFC 4585, RFC 5104, REMB, transport-wide CC): a robust parser of
//! compound packets received from untrusted peers, and writers of what an SFU sends back.
//!
//! Modelled on mediasoup's `RTC::RTCP::*`, with mediasoup names where they fit.
//!
//! Why this is written here instead of on top of webrtc-rs's `rtc-rtcp` 0.21 (which the workspace
//! has, and which the tests use as an independent encoder/decoder to check this code against):
//! * The compound framing rules must be ours anyway: a framing error drops the whole datagram
//!   (as mediasoup does), unknown packet types are skipped, and a malformed packet is reported on
//!   its own while its well-framed neighbours are kept. `rtc_rtcp::packet::unmarshal` fails the
//!   whole datagram on any error and re-serializes each header, losing unknown packet types.
//! * Its transport-cc decoder rejects valid feedback whose chunks end exactly at the end of the
//!   packet and reads a truncated large delta as a small one; its REMB uses an `f32` bitrate.
//! * The packet layouts an SFU needs are fixed and small, so reading them from the borrowed
//!   datagram is short and checkable.
//!
//! Allocation: RTCP is low-rate (a few packets per stream per second), so each parsed packet owns
//! its lists (`Vec`s) and the writers append to a caller-provided `Vec<u8>`; nothing here is on
//! the per-RTP-packet path except [`TransportCcBuilder`] pushes, which reuse their buffers.
//!
//! Writers append to `out` (the caller clears it between datagrams), so a compound packet is
//! just several writer calls in a row, e.g. [`build::receiver_report`] then [`build::sdes_cname`]
//! as mediasoup sends. Reduced-size RTCP (RFC 5506, `a=rtcp-rsize`) is negotiated by mediasoup
//! clients, so a lone PLI or NACK datagram is fine.

mod bye;
mod fir;
mod header;
mod nack;
mod pli;
mod remb;
mod report;
mod sdes;
mod transport_cc;

#[cfg(test)]
mod tests;

pub use bye::Bye;
pub use fir::{Fir, FirEntry};
pub use header::is_rtcp;
pub use nack::Nack;
pub use pli::Pli;
pub use remb::Remb;
pub use report::{ReceiverReport, ReportBlock, SenderReport};
pub use sdes::{Sdes, SdesChunk};
pub use transport_cc::{
    TransportCc, TransportCcAddError, TransportCcBuilder, TransportCcPacket, TRANSPORT_CC_DELTA_US,
    TRANSPORT_CC_MAX_MISSING_PACKETS, TRANSPORT_CC_REFERENCE_TIME_US,
};

use header::{Framed, HEADER_LEN};

/// RTCP packet types (RFC 3550 §12.1, RFC 4585 §6.1, RFC 3611).
pub mod packet_type {
    /// Sender report.
    pub const SR: u8 = 200;
    /// Receiver report.
    pub const RR: u8 = 201;
    /// Source description.
    pub const SDES: u8 = 202;
    /// Goodbye.
    pub const BYE: u8 = 203;
    /// Application-defined.
    pub const APP: u8 = 204;
    /// Transport-layer (generic RTP) feedback.
    pub const RTPFB: u8 = 205;
    /// Payload-specific feedback.
    pub const PSFB: u8 = 206;
    /// Extended report.
    pub const XR: u8 = 207;
}

/// Feedback message types, carried in the header's 5-bit count field (FMT).
pub mod fmt {
    /// RTPFB: generic NACK (RFC 4585 §6.2.1).
    pub const NACK: u8 = 1;
    /// RTPFB: transport-wide congestion control (draft-holmer-rmcat-transport-wide-cc-extensions-01).
    pub const TRANSPORT_CC: u8 = 15;
    /// PSFB: picture loss indication (RFC 4585 §6.3.1).
    pub const PLI: u8 = 1;
    /// PSFB: full intra request (RFC 5104 §4.3.1).
    pub const FIR: u8 = 4;
    /// PSFB: application layer feedback, which is where REMB lives.
    pub const AFB: u8 = 15;
}

/// One RTCP packet of a compound, owning its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    /// SR: NTP/RTP clock mapping of a sender plus its reception reports.
    SenderReport(SenderReport),
    /// RR: reception reports.
    ReceiverReport(ReceiverReport),
    /// SDES: only the CNAME of each chunk is kept.
    Sdes(Sdes),
    /// BYE: sources leaving.
    Bye(Bye),
    /// Generic NACK with PID+BLP expanded to the lost sequence numbers.
    Nack(Nack),
    /// Picture loss indication.
    Pli(Pli),
    /// Full intra request.
    Fir(Fir),
    /// Receiver estimated maximum bitrate.
    Remb(Remb),
    /// Transport-wide congestion control feedback.
    TransportCc(TransportCc),
    /// A well-framed packet this SFU does not interpret (APP, XR, TMMBR, SLI, non-REMB AFB…).
    Unknown {
        /// Packet type.
        pt: u8,
        /// The header's 5-bit count/FMT field.
        fmt: u8,
    },
}

/// Why a datagram or one packet of it could not be parsed.
///
/// The first five variants are framing errors: the datagram cannot be walked, so the whole
/// compound is dropped (see [`RtcpError::is_framing`]). The others concern one packet only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    /// Zero-length datagram.
    #[error("empty RTCP datagram")]
    Empty,
    /// Fewer than 4 bytes left where a header should start.
    #[error("RTCP header truncated at offset {offset}")]
    TruncatedHeader {
        /// Byte offset of the header in the datagram.
        offset: usize,
    },
    /// Version is not 2.
    #[error("RTCP version {version} at offset {offset}, expected 2")]
    BadVersion {
        /// Byte offset of the header in the datagram.
        offset: usize,
        /// The version found.
        version: u8,
    },
    /// Packet type outside 192..=223 (RFC 5761 §4): not RTCP at all.
    #[error("packet type {pt} at offset {offset} is not RTCP")]
    NotRtcp {
        /// Byte offset of the header in the datagram.
        offset: usize,
        /// The packet type found.
        pt: u8,
    },
    /// The length field runs past the end of the datagram.
    #[error("RTCP length at offset {offset} declares {declared} bytes, only {available} left")]
    LengthOverrun {
        /// Byte offset of the header in the datagram.
        offset: usize,
        /// Packet length the header declares.
        declared: usize,
        /// Bytes left in the datagram from `offset`.
        available: usize,
    },
    /// The packet is shorter than its counts or fixed fields require.
    #[error("RTCP packet (pt {pt}, fmt {fmt}) truncated")]
    Truncated {
        /// Packet type.
        pt: u8,
        /// Count/FMT field.
        fmt: u8,
    },
    /// The padding bit is set but the padding count is zero or larger than the packet.
    #[error("RTCP packet (pt {pt}) has an invalid padding count")]
    BadPadding {
        /// Packet type.
        pt: u8,
    },
    /// A field holds a value the specification does not allow.
    #[error("RTCP packet (pt {pt}, fmt {fmt}) malformed: {reason}")]
    Malformed {
        /// Packet type.
        pt: u8,
        /// Count/FMT field.
        fmt: u8,
        /// What is wrong.
        reason: &'static str,
    },
}

impl RtcpError {
    /// True when the datagram itself cannot be walked, so none of its packets can be trusted.
    pub fn is_framing(&self) -> bool {
        matches!(
            self,
            RtcpError::Empty
                | RtcpError::TruncatedHeader { .. }
                | RtcpError::BadVersion { .. }
                | RtcpError::NotRtcp { .. }
                | RtcpError::LengthOverrun { .. }
        )
    }
}

/// Checks the framing of a whole compound datagram, then yields its packets one by one.
///
/// Framing (every header has version 2, an RTCP packet type and a length that fits) is checked
/// up front so that a corrupt datagram is dropped whole, like mediasoup does; a well-framed
/// packet whose content is bad yields `Err` on its own and the iteration goes on.
pub fn parse_compound(datagram: &[u8]) -> Result<CompoundPackets<'_>, RtcpError> {
    if datagram.is_empty() {
        return Err(RtcpError::Empty);
    }
    let mut offset = 0;
    while offset < datagram.len() {
        let framed = header::frame(datagram, offset)?;
        offset += framed.packet.len();
    }
    Ok(CompoundPackets {
        datagram,
        offset: 0,
    })
}

/// Iterator over the packets of a compound whose framing [`parse_compound`] has checked.
#[derive(Debug, Clone)]
pub struct CompoundPackets<'a> {
    datagram: &'a [u8],
    offset: usize,
}

impl Iterator for CompoundPackets<'_> {
    type Item = Result<RtcpPacket, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.offset >= self.datagram.len() {
            return None;
        }
        match header::frame(self.datagram, self.offset) {
            Ok(framed) => {
                self.offset += framed.packet.len();
                Some(parse_packet(&framed))
            }
            // Unreachable after parse_compound's check; stop rather than loop.
            Err(err) => {
                self.offset = self.datagram.len();
                Some(Err(err))
            }
        }
    }
}

/// Decodes one well-framed packet.
fn parse_packet(framed: &Framed<'_>) -> Result<RtcpPacket, RtcpError> {
    let body = framed.body()?;
    let (pt, count) = (framed.pt, framed.count);
    let packet = match pt {
        packet_type::SR => RtcpPacket::SenderReport(report::parse_sr(body, count)?),
        packet_type::RR => RtcpPacket::ReceiverReport(report::parse_rr(body, count)?),
        packet_type::SDES => RtcpPacket::Sdes(sdes::parse(body, count)?),
        packet_type::BYE => RtcpPacket::Bye(bye::parse(body, count)?),
        packet_type::RTPFB => match count {
            fmt::NACK => RtcpPacket::Nack(nack::parse(body)?),
            fmt::TRANSPORT_CC => RtcpPacket::TransportCc(transport_cc::parse(body)?),
            _ => RtcpPacket::Unknown { pt, fmt: count },
        },
        packet_type::PSFB => match count {
            fmt::PLI => RtcpPacket::Pli(pli::parse(body)?),
            fmt::FIR => RtcpPacket::Fir(fir::parse(body)?),
            fmt::AFB => match remb::parse(body)? {
                Some(remb) => RtcpPacket::Remb(remb),
                None => RtcpPacket::Unknown { pt, fmt: count },
            },
            _ => RtcpPacket::Unknown { pt, fmt: count },
        },
        _ => RtcpPacket::Unknown { pt, fmt: count },
    };
    Ok(packet)
}

/// Receive-side RTCP counters, for the transport's stats (mediasoup only logs these cases).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RtcpRecvCounters {
    /// Datagrams handed to [`RtcpRecvCounters::parse`].
    pub datagrams: u64,
    /// Datagrams dropped whole on a framing error.
    pub framing_errors: u64,
    /// Packets returned to the caller (known types only).
    pub packets: u64,
    /// Well-framed packets skipped because their content was malformed.
    pub malformed_packets: u64,
    /// Well-framed packets of a type this SFU does not interpret.
    pub unknown_packets: u64,
}

impl RtcpRecvCounters {
    /// Parses `datagram`, appends its valid, known packets to `out` and counts the rest.
    ///
    /// Returns the framing error when the whole datagram was dropped.
    pub fn parse(&mut self, datagram: &[u8], out: &mut Vec<RtcpPacket>) -> Result<(), RtcpError> {
        self.datagrams += 1;
        let packets = match parse_compound(datagram) {
            Ok(packets) => packets,
            Err(err) => {
                self.framing_errors += 1;
                return Err(err);
            }
        };
        for packet in packets {
            match packet {
                Ok(RtcpPacket::Unknown { .. }) => self.unknown_packets += 1,
                Ok(packet) => {
                    self.packets += 1;
                    out.push(packet);
                }
                Err(_) => self.malformed_packets += 1,
            }
        }
        Ok(())
    }
}

/// Writers of the packets an SFU sends. Each appends one or more complete RTCP packets to `out`
/// and returns the number of bytes appended; call several in a row to build a compound.
pub mod build {
    pub use super::bye::bye;
    pub use super::fir::fir;
    pub use super::nack::nack;
    pub use super::pli::pli;
    pub use super::remb::remb;
    pub use super::report::{receiver_report, sender_report};
    pub use super::sdes::sdes_cname;
}

/// Size of the common RTCP header.
pub const RTCP_HEADER_LEN: usize = HEADER_LEN;
