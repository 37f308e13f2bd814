//! Transport-wide congestion control feedback (RTPFB FMT 15,
//! draft-holmer-rmcat-transport-wide-cc-extensions-01): which transport-wide sequence numbers
//! arrived and when, for the sender's delay-based bandwidth estimation.
//!
//! Layout after the feedback header: base sequence number, packet status count, a 24-bit
//! reference time in 64 ms units, an 8-bit feedback packet count, then 16-bit status chunks
//! (run-length, or vectors of 14 one-bit / 7 two-bit symbols) and one receive delta per received
//! packet (1 byte unsigned for "small", 2 bytes signed for "large", in 250 µs units).
//!
//! [`TransportCcBuilder`] is mediasoup's `FeedbackRtpTransportPacket::AddPacket` side, with the
//! chunk packing of libwebrtc's `TransportFeedback::LastChunk` (which mediasoup also follows):
//! symbols accumulate until they no longer fit one chunk, then the densest chunk is emitted.

use super::header::{begin_feedback, feedback, finish, truncated, Reader, HEADER_LEN};
use super::{fmt, packet_type, RtcpError};

/// Unit of the receive deltas.
pub const TRANSPORT_CC_DELTA_US: i64 = 250;
/// Unit of the reference time.
pub const TRANSPORT_CC_REFERENCE_TIME_US: i64 = 64_000;
/// Most packets lost in a row a feedback reports (mediasoup's `maxMissingPackets`, one
/// run-length chunk); a longer gap ends the feedback and the next one starts after it.
pub const TRANSPORT_CC_MAX_MISSING_PACKETS: u16 = (1 << 13) - 1;

/// Header, SSRCs, base sequence, status count, reference time and feedback count.
const FIXED_LEN: usize = HEADER_LEN + 8 + 8;
/// The reference time field is 24 bits.
const REFERENCE_TIME_WRAP: i64 = 1 << 24;
/// The packet status count is 16 bits.
const MAX_STATUS_COUNT: u32 = u16::MAX as u32;

/// Status symbols (two-bit encoding; one-bit vectors use only the first two).
const NOT_RECEIVED: u8 = 0;
const SMALL_DELTA: u8 = 1;
const LARGE_DELTA: u8 = 2;
const RESERVED: u8 = 3;

/// Symbols a two-bit / one-bit status vector chunk holds, and the longest run-length chunk.
const MAX_TWO_BIT: u16 = 7;
const MAX_ONE_BIT: u16 = 14;
const MAX_RUN_LENGTH: u16 = (1 << 13) - 1;

/// One transport-wide sequence number's status in a feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportCcPacket {
    /// Transport-wide sequence number.
    pub seq: u16,
    /// `None` when not received; else the arrival time minus the previous received packet's (or
    /// the reference time for the first), in 250 µs units.
    pub recv_delta: Option<i16>,
}

impl TransportCcPacket {
    /// The receive delta in microseconds.
    pub fn recv_delta_us(&self) -> Option<i64> {
        self.recv_delta
            .map(|d| i64::from(d) * TRANSPORT_CC_DELTA_US)
    }
}

/// A parsed transport-cc feedback.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TransportCc {
    /// SSRC of the packet sender (0 from mediasoup).
    pub sender_ssrc: u32,
    /// SSRC of a media stream of the sender (informative only).
    pub media_ssrc: u32,
    /// Sequence number of `packets[0]`.
    pub base_seq: u16,
    /// Reference time, 24 bits in 64 ms units; wraps, so compare across feedbacks modulo 2^24.
    pub reference_time: u32,
    /// Incremented by the sender of each feedback, to detect lost feedbacks.
    pub fb_pkt_count: u8,
    /// One entry per reported sequence number, from `base_seq` on (the packet status count).
    pub packets: Vec<TransportCcPacket>,
}

impl TransportCc {
    /// The reference time in microseconds (modulo 2^24 × 64 ms).
    pub fn reference_time_us(&self) -> i64 {
        i64::from(self.reference_time) * TRANSPORT_CC_REFERENCE_TIME_US
    }
}

pub(crate) fn parse(body: &[u8]) -> Result<TransportCc, RtcpError> {
    let (pt, fmt) = (packet_type::RTPFB, fmt::TRANSPORT_CC);
    let err = truncated(pt, fmt);
    let reserved = RtcpError::Malformed {
        pt,
        fmt,
        reason: "reserved packet status symbol",
    };
    let (sender_ssrc, media_ssrc, fci) = feedback(body, pt, fmt)?;
    let mut r = Reader::new(fci);
    let base_seq = r.u16().ok_or(err)?;
    let status_count = usize::from(r.u16().ok_or(err)?);
    let reference_time = r.u24().ok_or(err)?;
    let fb_pkt_count = r.u8().ok_or(err)?;

    // Statuses first; a received packet's `recv_delta` temporarily holds its symbol so the
    // deltas that follow the chunks can be read with the right width.
    // The capacity is bounded by what the chunk bytes present can describe.
    let mut packets = Vec::with_capacity(status_count.min(r.remaining() / 2 * 14));
    let mut seq = base_seq;
    let mut push = |packets: &mut Vec<TransportCcPacket>, symbol: u8| {
        let recv_delta = (symbol != NOT_RECEIVED).then_some(i16::from(symbol));
        packets.push(TransportCcPacket { seq, recv_delta });
        seq = seq.wrapping_add(1);
    };
    while packets.len() < status_count {
        let chunk = r.u16().ok_or(err)?;
        let left = status_count - packets.len();
        if chunk & 0x8000 == 0 {
            let symbol = ((chunk >> 13) & 0b11) as u8;
            if symbol == RESERVED {
                return Err(reserved);
            }
            let run = usize::from(chunk & MAX_RUN_LENGTH).min(left);
            (0..run).for_each(|_| push(&mut packets, symbol));
        } else if chunk & 0x4000 == 0 {
            for i in 0..usize::from(MAX_ONE_BIT).min(left) {
                push(&mut packets, ((chunk >> (13 - i)) & 1) as u8);
            }
        } else {
            for i in 0..usize::from(MAX_TWO_BIT).min(left) {
                let symbol = ((chunk >> (2 * (6 - i))) & 0b11) as u8;
                if symbol == RESERVED {
                    return Err(reserved);
                }
                push(&mut packets, symbol);
            }
        }
    }
    for packet in &mut packets {
        packet.recv_delta = match packet.recv_delta {
            None => None,
            Some(1) => Some(i16::from(r.u8().ok_or(err)?)),
            Some(_) => Some(r.u16().ok_or(err)? as i16),
        };
    }
    // What is left is zero padding to 32 bits.
    Ok(TransportCc {
        sender_ssrc,
        media_ssrc,
        base_seq,
        reference_time,
        fb_pkt_count,
        packets,
    })
}

/// Why [`TransportCcBuilder::add_received`] did not add a packet. In every case but
/// `NotAhead`, the builder is unchanged and the packet should start the next feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransportCcAddError {
    /// Not after the last sequence number covered: a feedback covers an increasing range.
    #[error("sequence number not after the last one covered")]
    NotAhead,
    /// More than [`TRANSPORT_CC_MAX_MISSING_PACKETS`] lost right before it.
    #[error("too many missing packets before this one")]
    TooManyMissing,
    /// Its arrival is too far from the previous one for a 16-bit delta (±8.19 s).
    #[error("receive delta out of range")]
    DeltaOutOfRange,
    /// It would take the packet past its size limit or 65535 statuses.
    #[error("feedback packet full")]
    Full,
}

/// The statuses not yet packed into a chunk (libwebrtc's `LastChunk`).
#[derive(Debug, Clone, Copy)]
struct PendingChunk {
    /// The first 14 symbols (all a vector chunk can hold; a longer run is all the same).
    symbols: [u8; MAX_ONE_BIT as usize],
    size: u16,
    all_same: bool,
    has_large: bool,
}

impl Default for PendingChunk {
    fn default() -> Self {
        Self {
            symbols: [NOT_RECEIVED; MAX_ONE_BIT as usize],
            size: 0,
            all_same: true,
            has_large: false,
        }
    }
}

impl PendingChunk {
    fn is_empty(&self) -> bool {
        self.size == 0
    }

    fn can_add(&self, symbol: u8) -> bool {
        if self.size < MAX_TWO_BIT {
            return true;
        }
        if self.size < MAX_ONE_BIT && !self.has_large && symbol != LARGE_DELTA {
            return true;
        }
        self.size < MAX_RUN_LENGTH && self.all_same && self.symbols[0] == symbol
    }

    /// Adds `n` copies of `symbol`, calling `emit` with each chunk that fills up.
    fn push_run(&mut self, symbol: u8, mut n: u32, mut emit: impl FnMut(u16)) {
        while n > 0 {
            if !self.can_add(symbol) {
                emit(self.emit());
            }
            // A run of one symbol can take up to a run-length chunk at once; a mixed vector
            // takes symbols one by one.
            let k = if self.size == 0 || (self.all_same && self.symbols[0] == symbol) {
                n.min(u32::from(MAX_RUN_LENGTH - self.size))
            } else {
                1
            };
            self.add(symbol, k as u16);
            n -= k;
        }
    }

    fn add(&mut self, symbol: u8, n: u16) {
        if self.size == 0 {
            self.symbols[0] = symbol;
        }
        let from = usize::from(self.size);
        let to = usize::from(self.size + n).min(self.symbols.len());
        if from < to {
            self.symbols[from..to].fill(symbol);
        }
        self.all_same &= symbol == self.symbols[0];
        self.has_large |= symbol == LARGE_DELTA;
        self.size += n;
    }

    /// Packs the densest full chunk out of the pending symbols (called when one more does not fit).
    fn emit(&mut self) -> u16 {
        if self.all_same {
            let chunk = run_length_chunk(self.symbols[0], self.size);
            *self = Self::default();
            return chunk;
        }
        if self.size == MAX_ONE_BIT {
            let chunk = one_bit_chunk(&self.symbols);
            *self = Self::default();
            return chunk;
        }
        // 7..14 mixed symbols with a large delta among them: emit 7, keep the rest pending.
        let chunk = two_bit_chunk(&self.symbols[..usize::from(MAX_TWO_BIT)]);
        let rest = usize::from(self.size - MAX_TWO_BIT);
        let mut next = Self::default();
        for &symbol in &self.symbols[usize::from(MAX_TWO_BIT)..usize::from(MAX_TWO_BIT) + rest] {
            next.add(symbol, 1);
        }
        *self = next;
        chunk
    }

    /// Packs whatever is pending as the last chunk of the packet.
    fn encode_last(&self) -> u16 {
        if self.size <= MAX_TWO_BIT {
            two_bit_chunk(&self.symbols[..usize::from(self.size)])
        } else if self.all_same {
            run_length_chunk(self.symbols[0], self.size)
        } else {
            one_bit_chunk(&self.symbols[..usize::from(self.size)])
        }
    }
}

fn run_length_chunk(symbol: u8, run: u16) -> u16 {
    (u16::from(symbol) << 13) | run
}

fn one_bit_chunk(symbols: &[u8]) -> u16 {
    symbols.iter().enumerate().fold(0x8000, |chunk, (i, &s)| {
        chunk | (u16::from(s & 1) << (13 - i))
    })
}

fn two_bit_chunk(symbols: &[u8]) -> u16 {
    symbols.iter().enumerate().fold(0xC000, |chunk, (i, &s)| {
        chunk | (u16::from(s & 0b11) << (2 * (6 - i)))
    })
}

/// Builds one transport-cc feedback packet from packets added in increasing sequence order.
///
/// Arrival times are microseconds on any monotonic timeline of the caller's. The reference time
/// is the first received packet's arrival rounded down to 64 ms, and each delta is measured from
/// the previous packet's time *as the sender will reconstruct it*, so rounding to 250 µs never
/// accumulates: every reconstructed arrival is within [0, 250) µs before the true one.
///
/// Reusable: [`TransportCcBuilder::reset`] keeps the buffers.
#[derive(Debug, Clone)]
pub struct TransportCcBuilder {
    sender_ssrc: u32,
    media_ssrc: u32,
    base_seq: u16,
    fb_pkt_count: u8,
    max_len: usize,
    status_count: u32,
    received: u32,
    /// Reference time in 64 ms units, unwrapped (set by the first received packet).
    reference_ticks: i64,
    /// Reconstructed arrival time of the last received packet.
    cursor_us: i64,
    chunks: Vec<u16>,
    pending: PendingChunk,
    deltas: Vec<u8>,
}

impl TransportCcBuilder {
    /// A feedback whose statuses start at `base_seq`, limited to `max_len` bytes (mediasoup
    /// uses its MTU; the limit must leave room for at least one packet, i.e. be ≥ 28).
    pub fn new(
        sender_ssrc: u32,
        media_ssrc: u32,
        base_seq: u16,
        fb_pkt_count: u8,
        max_len: usize,
    ) -> Self {
        Self {
            sender_ssrc,
            media_ssrc,
            base_seq,
            fb_pkt_count,
            max_len,
            status_count: 0,
            received: 0,
            reference_ticks: 0,
            cursor_us: 0,
            chunks: Vec::new(),
            pending: PendingChunk::default(),
            deltas: Vec::new(),
        }
    }

    /// Empties the builder for a new feedback, keeping its allocations and size limit.
    pub fn reset(&mut self, sender_ssrc: u32, media_ssrc: u32, base_seq: u16, fb_pkt_count: u8) {
        self.sender_ssrc = sender_ssrc;
        self.media_ssrc = media_ssrc;
        self.base_seq = base_seq;
        self.fb_pkt_count = fb_pkt_count;
        self.status_count = 0;
        self.received = 0;
        self.reference_ticks = 0;
        self.cursor_us = 0;
        self.chunks.clear();
        self.pending = PendingChunk::default();
        self.deltas.clear();
    }

    /// First sequence number covered.
    pub fn base_seq(&self) -> u16 {
        self.base_seq
    }

    /// Sequence numbers covered so far (received or not).
    pub fn packet_status_count(&self) -> u16 {
        self.status_count as u16
    }

    /// Received packets added so far.
    pub fn received_count(&self) -> u32 {
        self.received
    }

    /// True while no received packet was added; such a feedback is not worth sending.
    pub fn is_empty(&self) -> bool {
        self.received == 0
    }

    /// Size of the packet [`TransportCcBuilder::write`] would produce now.
    pub fn len(&self) -> usize {
        self.size_with(self.chunks.len() + usize::from(!self.pending.is_empty()), 0)
    }

    fn size_with(&self, chunks: usize, extra_delta_bytes: usize) -> usize {
        (FIXED_LEN + 2 * chunks + self.deltas.len() + extra_delta_bytes).next_multiple_of(4)
    }

    /// Adds the packet `seq` that arrived at `arrival_us`; the sequence numbers between the last
    /// one covered (or `base_seq`) and `seq` are reported as not received.
    pub fn add_received(&mut self, seq: u16, arrival_us: i64) -> Result<(), TransportCcAddError> {
        let next = self.base_seq.wrapping_add(self.status_count as u16);
        let missing = seq.wrapping_sub(next);
        if missing >= 0x8000 {
            return Err(TransportCcAddError::NotAhead);
        }
        if missing > TRANSPORT_CC_MAX_MISSING_PACKETS {
            return Err(TransportCcAddError::TooManyMissing);
        }
        if self.status_count + u32::from(missing) + 1 > MAX_STATUS_COUNT {
            return Err(TransportCcAddError::Full);
        }
        let (reference_ticks, cursor_us) = if self.received == 0 {
            let ticks = arrival_us.div_euclid(TRANSPORT_CC_REFERENCE_TIME_US);
            (ticks, ticks * TRANSPORT_CC_REFERENCE_TIME_US)
        } else {
            (self.reference_ticks, self.cursor_us)
        };
        let delta = (arrival_us - cursor_us).div_euclid(TRANSPORT_CC_DELTA_US);
        let delta = i16::try_from(delta).map_err(|_| TransportCcAddError::DeltaOutOfRange)?;
        let (symbol, delta_len) = if (0..=255).contains(&delta) {
            (SMALL_DELTA, 1)
        } else {
            (LARGE_DELTA, 2)
        };

        // Dry run on a copy of the pending chunk to know the size before committing.
        let mut pending = self.pending;
        let mut emitted = 0;
        pending.push_run(NOT_RECEIVED, u32::from(missing), |_| emitted += 1);
        pending.push_run(symbol, 1, |_| emitted += 1);
        let chunks = self.chunks.len() + emitted + usize::from(!pending.is_empty());
        if self.size_with(chunks, delta_len) > self.max_len {
            return Err(TransportCcAddError::Full);
        }

        let chunks = &mut self.chunks;
        self.pending
            .push_run(NOT_RECEIVED, u32::from(missing), |c| chunks.push(c));
        self.pending.push_run(symbol, 1, |c| chunks.push(c));
        if delta_len == 1 {
            self.deltas.push(delta as u8);
        } else {
            self.deltas.extend_from_slice(&delta.to_be_bytes());
        }
        self.status_count += u32::from(missing) + 1;
        self.received += 1;
        self.reference_ticks = reference_ticks;
        self.cursor_us = cursor_us + i64::from(delta) * TRANSPORT_CC_DELTA_US;
        Ok(())
    }

    /// Appends the feedback packet to `out` and returns its size (0, writing nothing, when no
    /// received packet was added).
    pub fn write(&self, out: &mut Vec<u8>) -> usize {
        if self.is_empty() {
            return 0;
        }
        let start = begin_feedback(
            out,
            packet_type::RTPFB,
            fmt::TRANSPORT_CC,
            self.sender_ssrc,
            self.media_ssrc,
        );
        out.extend_from_slice(&self.base_seq.to_be_bytes());
        out.extend_from_slice(&(self.status_count as u16).to_be_bytes());
        let reference = self.reference_ticks.rem_euclid(REFERENCE_TIME_WRAP) as u32;
        out.extend_from_slice(&reference.to_be_bytes()[1..]);
        out.push(self.fb_pkt_count);
        for chunk in &self.chunks {
            out.extend_from_slice(&chunk.to_be_bytes());
        }
        if !self.pending.is_empty() {
            out.extend_from_slice(&self.pending.encode_last().to_be_bytes());
        }
        out.extend_from_slice(&self.deltas);
        finish(out, start)
    }
}
