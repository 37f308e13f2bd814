//! mediasoup's `TransportCongestionControlServer` in transport-cc mode: records the arrival of
//! every RTP packet carrying the transport-wide sequence number extension and reports them to the
//! sender in transport-cc feedback every 100 ms, or as soon as a packet's worth is pending.
//! It also sends the "limitation" REMB that caps a client at `maxIncomingBitrate`.
//!
//! Arrivals are kept the way mediasoup's buffer policy (libwebrtc's `RemoteEstimatorProxy`) keeps
//! them, by unwrapped sequence number, rather than appended to a feedback as they come: a
//! feedback then always covers an increasing range even under reordering. A late packet older
//! than what was already reported moves the window back so it is reported (with its neighbours
//! again, which senders accept); reported arrivals are kept 500 ms for that. Duplicates are
//! ignored; the window is capped at 2^15 sequence numbers; a loss of more than
//! [`TRANSPORT_CC_MAX_MISSING_PACKETS`] in a row, or an arrival too far from the previous for a
//! 16-bit delta, ends a feedback and the next one starts after the gap.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::SeqNumUnwrapper;
use crate::rtcp::{
    build, TransportCcAddError, TransportCcBuilder, TRANSPORT_CC_MAX_MISSING_PACKETS,
};

/// How often feedback is sent (mediasoup's `TransportCcFeedbackSendInterval`).
pub const TRANSPORT_CC_FEEDBACK_SEND_INTERVAL: Duration = Duration::from_millis(100);
/// How often the limitation REMB is repeated (mediasoup's `LimitationRembInterval`).
pub const LIMITATION_REMB_INTERVAL: Duration = Duration::from_millis(1500);
/// Default size limit of a feedback packet: leaves room for the SRTCP trailer, IP/UDP (or TURN)
/// headers and a DTLS/TCP framing within a 1500-byte MTU, like libwebrtc's packet sizes.
pub const DEFAULT_MAX_RTCP_PACKET_LEN: usize = 1200;

/// Smallest packet size limit that fits a feedback with one packet in it.
const MIN_MAX_RTCP_PACKET_LEN: usize = 32;
/// Header, SSRCs, fixed fields and one chunk: what a feedback costs before its deltas.
const FEEDBACK_OVERHEAD: usize = 22;
/// Unlimited (bitrate 0) REMBs sent after the limit is lifted (mediasoup's `UnlimitedRembNumPackets`).
const UNLIMITED_REMB_NUM_PACKETS: u8 = 4;
/// Feedbacks averaged into [`TransportCcServer::packet_loss`] (mediasoup's `PacketLossHistogramLength`).
const PACKET_LOSS_HISTOGRAM_LENGTH: usize = 24;
/// Widest window of sequence numbers kept (libwebrtc's `kMaxNumberOfPackets`).
const MAX_NUMBER_OF_PACKETS: usize = 1 << 15;
/// How long reported arrivals are kept in case a reordered packet makes them be re-sent.
const REPORTED_ARRIVAL_HISTORY_US: u64 = 500_000;
/// Marks a sequence number not (yet) received in the arrival window.
const NOT_RECEIVED: u64 = u64::MAX;

/// Receive-side transport-wide congestion control for one transport.
#[derive(Debug, Clone)]
pub struct TransportCcServer {
    sender_ssrc: u32,
    media_ssrc: u32,
    max_rtcp_packet_len: usize,
    unwrapper: SeqNumUnwrapper,
    /// Origin of the microsecond timeline the arrivals are stored on.
    epoch: Option<Instant>,
    /// Arrival time (µs since `epoch`) per unwrapped sequence number from `first_seq` on.
    arrivals: VecDeque<u64>,
    first_seq: i64,
    /// First sequence number of the next feedback (mediasoup's `periodicWindowStartSeq`).
    window_start: Option<i64>,
    /// Received packets at or after `window_start`, i.e. not reported yet.
    pending_received: usize,
    builder: TransportCcBuilder,
    fb_pkt_count: u8,
    next_feedback_at: Option<Instant>,
    /// A periodic send is in progress: keep returning feedback until nothing is pending.
    flushing: bool,
    packet_loss_history: VecDeque<f64>,
    packet_loss: f64,
    max_incoming_bitrate: u32,
    unlimited_remb_counter: u8,
    limitation_remb_sent_at: Option<Instant>,
}

impl Default for TransportCcServer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_RTCP_PACKET_LEN)
    }
}

impl TransportCcServer {
    /// A server whose feedback packets stay within `max_rtcp_packet_len` bytes. The sender SSRC
    /// of feedback is 0, as in mediasoup, until [`TransportCcServer::set_sender_ssrc`].
    pub fn new(max_rtcp_packet_len: usize) -> Self {
        let max_rtcp_packet_len = max_rtcp_packet_len.max(MIN_MAX_RTCP_PACKET_LEN);
        Self {
            sender_ssrc: 0,
            media_ssrc: 0,
            max_rtcp_packet_len,
            unwrapper: SeqNumUnwrapper::default(),
            epoch: None,
            arrivals: VecDeque::new(),
            first_seq: 0,
            window_start: None,
            pending_received: 0,
            builder: TransportCcBuilder::new(0, 0, 0, 0, max_rtcp_packet_len),
            fb_pkt_count: 0,
            next_feedback_at: None,
            flushing: false,
            packet_loss_history: VecDeque::with_capacity(PACKET_LOSS_HISTOGRAM_LENGTH),
            packet_loss: 0.0,
            max_incoming_bitrate: 0,
            unlimited_remb_counter: 0,
            limitation_remb_sent_at: None,
        }
    }

    /// Sender SSRC put in feedback and REMB packets.
    pub fn set_sender_ssrc(&mut self, ssrc: u32) {
        self.sender_ssrc = ssrc;
    }

    /// Records the arrival of an RTP packet with transport-wide sequence number
    /// `transport_wide_seq` from stream `media_ssrc` (the feedback's media SSRC is the last seen).
    pub fn incoming_packet(&mut self, transport_wide_seq: u16, arrival: Instant, media_ssrc: u32) {
        self.media_ssrc = media_ssrc;
        let epoch = *self.epoch.get_or_insert(arrival);
        // Whole-µs timeline; an arrival before the epoch (caller clock misuse) clamps to it.
        let arrival_us = u64::try_from(arrival.saturating_duration_since(epoch).as_micros())
            .unwrap_or(NOT_RECEIVED - 1);
        if self.next_feedback_at.is_none() {
            self.next_feedback_at = Some(arrival + TRANSPORT_CC_FEEDBACK_SEND_INTERVAL);
        }
        let seq = self.unwrapper.unwrap(transport_wide_seq);
        if self.pending_received == 0 {
            self.cull_reported(seq, arrival_us);
        }
        if !self.insert(seq, arrival_us) {
            return;
        }
        match self.window_start {
            Some(start) if seq >= start => self.pending_received += 1,
            // First packet, or a late one older than what was reported: report from it again.
            _ => {
                self.window_start = Some(seq);
                self.pending_received = self.count_received_from(seq);
            }
        }
        self.limit_window();
    }

    /// Appends one transport-cc feedback packet to `out` when one is due: every 100 ms while
    /// packets are pending (call again until it returns false, as a backlog may need several
    /// packets), or at once when more is pending than one packet can hold.
    pub fn poll_feedback(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        if let Some(at) = self.next_feedback_at {
            if now >= at {
                self.flushing = true;
                let next = at + TRANSPORT_CC_FEEDBACK_SEND_INTERVAL;
                // After a stall, resume the period from now rather than bursting to catch up.
                self.next_feedback_at = Some(if next > now {
                    next
                } else {
                    now + TRANSPORT_CC_FEEDBACK_SEND_INTERVAL
                });
            }
        }
        if self.pending_received == 0 {
            self.flushing = false;
            return false;
        }
        if !self.flushing && !self.is_full() {
            return false;
        }
        let written = self.build_feedback(out);
        if self.pending_received == 0 || !written {
            self.flushing = false;
        }
        written
    }

    /// Each received packet costs at least one delta byte, so past this many pending packets a
    /// feedback is certainly full and is sent without waiting for the period.
    fn is_full(&self) -> bool {
        self.pending_received >= self.max_rtcp_packet_len - FEEDBACK_OVERHEAD
    }

    /// Sets the cap announced by the limitation REMB (0 = none). Lifting a cap sends a few
    /// REMBs with bitrate 0 so the client stops applying it (mediasoup behaviour).
    pub fn set_max_incoming_bitrate(&mut self, bitrate: u32) {
        let previous = self.max_incoming_bitrate;
        self.max_incoming_bitrate = bitrate;
        if previous != 0 && bitrate == 0 {
            self.unlimited_remb_counter = UNLIMITED_REMB_NUM_PACKETS;
        }
    }

    /// Appends a limitation REMB to `out` when one is due: every 1.5 s while a max incoming
    /// bitrate is set, and the unlimited ones after it is lifted (the first at once).
    pub fn poll_remb(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        if self.unlimited_remb_counter > 0 && self.max_incoming_bitrate != 0 {
            self.unlimited_remb_counter = 0;
        }
        if !self.remb_due(now) {
            return false;
        }
        build::remb(
            out,
            self.sender_ssrc,
            u64::from(self.max_incoming_bitrate),
            &[],
        );
        self.limitation_remb_sent_at = Some(now);
        self.unlimited_remb_counter = self.unlimited_remb_counter.saturating_sub(1);
        true
    }

    fn remb_wanted(&self) -> bool {
        self.max_incoming_bitrate != 0 || self.unlimited_remb_counter > 0
    }

    fn remb_due(&self, now: Instant) -> bool {
        self.remb_wanted()
            && (self.unlimited_remb_counter == UNLIMITED_REMB_NUM_PACKETS
                || self
                    .limitation_remb_sent_at
                    .is_none_or(|at| now.saturating_duration_since(at) > LIMITATION_REMB_INTERVAL))
    }

    /// When [`TransportCcServer::poll_feedback`] or [`TransportCcServer::poll_remb`] may next
    /// have something to send (`now` if already due); `None` when idle.
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        let feedback = if self.pending_received == 0 {
            None
        } else if self.flushing || self.is_full() {
            Some(now)
        } else {
            self.next_feedback_at
        };
        let remb = self.remb_wanted().then(|| {
            if self.remb_due(now) {
                now
            } else {
                // `remb_due` is false only once a REMB was sent; the interval is exclusive.
                self.limitation_remb_sent_at.map_or(now, |at| {
                    at + LIMITATION_REMB_INTERVAL + Duration::from_millis(1)
                })
            }
        });
        match (feedback, remb) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Weighted average of the loss ratio of the last 24 feedbacks, newest weighing most
    /// (mediasoup's `GetPacketLoss`).
    pub fn packet_loss(&self) -> f64 {
        self.packet_loss
    }

    /// Forgets recorded arrivals, e.g. when the transport disconnects (mediasoup recreates its
    /// feedback packet). The feedback count and time origin carry on, so the sender sees a
    /// continuous feedback sequence.
    pub fn reset(&mut self) {
        self.unwrapper = SeqNumUnwrapper::default();
        self.arrivals.clear();
        self.first_seq = 0;
        self.window_start = None;
        self.pending_received = 0;
        self.next_feedback_at = None;
        self.flushing = false;
    }

    /// Once everything was reported, drops the front of the window up to `seq`: holes, and
    /// arrivals older than the reordering history.
    fn cull_reported(&mut self, seq: i64, arrival_us: u64) {
        while let Some(&front) = self.arrivals.front() {
            let recent = front != NOT_RECEIVED
                && arrival_us.saturating_sub(front) < REPORTED_ARRIVAL_HISTORY_US;
            if self.first_seq >= seq || recent {
                break;
            }
            self.arrivals.pop_front();
            self.first_seq += 1;
        }
    }

    /// Stores the first arrival of `seq`; false for a duplicate or a packet too old to report.
    fn insert(&mut self, seq: i64, arrival_us: u64) -> bool {
        if self.arrivals.is_empty() {
            self.first_seq = seq;
            self.arrivals.push_back(arrival_us);
            return true;
        }
        if seq < self.first_seq {
            let last_seq = self.first_seq + self.arrivals.len() as i64 - 1;
            if last_seq - seq >= MAX_NUMBER_OF_PACKETS as i64 {
                return false;
            }
            for _ in seq + 1..self.first_seq {
                self.arrivals.push_front(NOT_RECEIVED);
            }
            self.arrivals.push_front(arrival_us);
            self.first_seq = seq;
            return true;
        }
        // Bounded: the unwrapper moves less than 2^15 per packet and the window is capped.
        let index = (seq - self.first_seq) as usize;
        match self.arrivals.get_mut(index) {
            Some(slot) if *slot != NOT_RECEIVED => false,
            Some(slot) => {
                *slot = arrival_us;
                true
            }
            None => {
                self.arrivals.resize(index, NOT_RECEIVED);
                self.arrivals.push_back(arrival_us);
                true
            }
        }
    }

    /// Keeps the window within [`MAX_NUMBER_OF_PACKETS`] sequence numbers.
    fn limit_window(&mut self) {
        let excess = self.arrivals.len().saturating_sub(MAX_NUMBER_OF_PACKETS);
        if excess == 0 {
            return;
        }
        self.arrivals.drain(..excess);
        self.first_seq += excess as i64;
        while self.arrivals.front() == Some(&NOT_RECEIVED) {
            self.arrivals.pop_front();
            self.first_seq += 1;
        }
        if self
            .window_start
            .is_some_and(|start| start < self.first_seq)
        {
            self.window_start = Some(self.first_seq);
            self.pending_received = self.count_received_from(self.first_seq);
        }
    }

    fn count_received_from(&self, seq: i64) -> usize {
        let from = usize::try_from(seq - self.first_seq)
            .unwrap_or(0)
            .min(self.arrivals.len());
        self.arrivals
            .range(from..)
            .filter(|&&t| t != NOT_RECEIVED)
            .count()
    }

    /// Builds one feedback from `window_start` on, appends it to `out` and moves the window
    /// past what it covers (mediasoup's `SendPeriodicFeedbacks` + `BuildFeedbackPacket`).
    fn build_feedback(&mut self, out: &mut Vec<u8>) -> bool {
        let Some(window_start) = self.window_start else {
            return false;
        };
        let start = window_start.max(self.first_seq);
        self.builder.reset(
            self.sender_ssrc,
            self.media_ssrc,
            start as u16,
            self.fb_pkt_count,
        );
        let mut last_included = None;
        let mut stopped_at = None;
        let from = ((start - self.first_seq) as usize).min(self.arrivals.len());
        for (offset, &arrival_us) in self.arrivals.range(from..).enumerate() {
            if arrival_us == NOT_RECEIVED {
                continue;
            }
            let seq = start + offset as i64;
            if self.builder.is_empty() && seq - start > i64::from(TRANSPORT_CC_MAX_MISSING_PACKETS)
            {
                // A long loss right after the last feedback: start this one after it.
                self.builder.reset(
                    self.sender_ssrc,
                    self.media_ssrc,
                    seq as u16,
                    self.fb_pkt_count,
                );
            }
            match self.builder.add_received(seq as u16, arrival_us as i64) {
                Ok(()) => last_included = Some(seq),
                // Full, too long a loss, or too long a silence: the next feedback starts here.
                Err(TransportCcAddError::Full)
                | Err(TransportCcAddError::TooManyMissing)
                | Err(TransportCcAddError::DeltaOutOfRange)
                | Err(TransportCcAddError::NotAhead) => {
                    // A packet that fits no feedback at all is dropped rather than retried forever.
                    stopped_at = Some(if self.builder.is_empty() {
                        seq + 1
                    } else {
                        seq
                    });
                    break;
                }
            }
        }
        let next_start = stopped_at
            .or(last_included.map(|seq| seq + 1))
            .unwrap_or(start);
        self.window_start = Some(next_start);
        self.pending_received = self.count_received_from(next_start);
        if self.builder.is_empty() {
            return false;
        }
        self.builder.write(out);
        self.fb_pkt_count = self.fb_pkt_count.wrapping_add(1);
        let expected = f64::from(self.builder.packet_status_count());
        let lost = expected - f64::from(self.builder.received_count());
        self.update_packet_loss(lost / expected);
        true
    }

    fn update_packet_loss(&mut self, loss: f64) {
        if self.packet_loss_history.len() == PACKET_LOSS_HISTOGRAM_LENGTH {
            self.packet_loss_history.pop_front();
        }
        self.packet_loss_history.push_back(loss);
        let (mut weighted, mut weights) = (0.0, 0.0);
        for (i, loss) in self.packet_loss_history.iter().enumerate() {
            let weight = (i + 1) as f64;
            weighted += weight * loss;
            weights += weight;
        }
        self.packet_loss = weighted / weights;
    }
}
