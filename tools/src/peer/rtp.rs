//! RTP and RTCP for tests: a byte-exact RTP builder (one-byte header extensions for mid, rid and
//! transport-wide sequence numbers), a parsed view of received RTP (rtc-rtp), and RTCP builders and
//! parsers on top of rtc-rtcp.
//!
//! RTP is built by hand rather than through `rtc_rtp::header::Header` so the bytes on the wire are
//! exactly what a test asked for (extension order and padding included).

use bytes::Bytes;
use rtc_rtp::packet::Packet as RtpPacket;
use rtc_shared::marshal::Unmarshal;

pub use rtc_rtcp;
pub use rtc_rtp;

/// The one-byte header extension profile (RFC 8285 §4.2).
const ONE_BYTE_PROFILE: u16 = 0xBEDE;

/// Builds one RTP packet. Extensions use the one-byte form: ids 1..=14, values of 1..=16 bytes.
#[derive(Debug, Clone)]
pub struct RtpPacketBuilder {
    ssrc: u32,
    payload_type: u8,
    sequence_number: u16,
    timestamp: u32,
    marker: bool,
    csrcs: Vec<u32>,
    extensions: Vec<(u8, Vec<u8>)>,
    payload: Vec<u8>,
    padding: u8,
}

impl RtpPacketBuilder {
    pub fn new(ssrc: u32, payload_type: u8, sequence_number: u16, timestamp: u32) -> Self {
        Self {
            ssrc,
            payload_type: payload_type & 0x7f,
            sequence_number,
            timestamp,
            marker: false,
            csrcs: Vec::new(),
            extensions: Vec::new(),
            payload: Vec::new(),
            padding: 0,
        }
    }

    pub fn marker(mut self, marker: bool) -> Self {
        self.marker = marker;
        self
    }

    pub fn csrc(mut self, csrc: u32) -> Self {
        self.csrcs.push(csrc);
        self
    }

    pub fn payload(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    /// Appends `padding` bytes of RTP padding (P bit set, last byte = count); 0 means none.
    pub fn padding(mut self, padding: u8) -> Self {
        self.padding = padding;
        self
    }

    /// A one-byte header extension. Ids outside 1..=14 and values outside 1..=16 bytes cannot be
    /// expressed in that form and are ignored (with a warning), so a typo cannot corrupt the packet.
    pub fn extension(mut self, id: u8, value: &[u8]) -> Self {
        if !(1..=14).contains(&id) || value.is_empty() || value.len() > 16 {
            log::warn!(
                "ignoring RTP extension id {id} of {} bytes (one-byte form)",
                value.len()
            );
            return self;
        }
        self.extensions.retain(|(i, _)| *i != id);
        self.extensions.push((id, value.to_vec()));
        self
    }

    /// `urn:ietf:params:rtp-hdrext:sdes:mid`.
    pub fn mid(self, id: u8, mid: &str) -> Self {
        self.extension(id, mid.as_bytes())
    }

    /// `urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id`.
    pub fn rid(self, id: u8, rid: &str) -> Self {
        self.extension(id, rid.as_bytes())
    }

    /// `urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id`.
    pub fn repaired_rid(self, id: u8, rid: &str) -> Self {
        self.extension(id, rid.as_bytes())
    }

    /// `http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01`.
    pub fn transport_wide_seq(self, id: u8, seq: u16) -> Self {
        self.extension(id, &seq.to_be_bytes())
    }

    /// `http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time` (6.18 fixed point seconds).
    pub fn abs_send_time(self, id: u8, abs_send_time_24: u32) -> Self {
        self.extension(id, &abs_send_time_24.to_be_bytes()[1..])
    }

    /// `urn:ietf:params:rtp-hdrext:ssrc-audio-level`: voice activity bit and level in -dBov.
    pub fn audio_level(self, id: u8, voice: bool, level: u8) -> Self {
        self.extension(id, &[(u8::from(voice) << 7) | (level & 0x7f)])
    }

    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + 4 * self.csrcs.len() + 64 + self.payload.len());
        let has_ext = !self.extensions.is_empty();
        out.push(
            0x80 | (u8::from(self.padding > 0) << 5)
                | (u8::from(has_ext) << 4)
                | (self.csrcs.len().min(15) as u8),
        );
        out.push((u8::from(self.marker) << 7) | self.payload_type);
        out.extend_from_slice(&self.sequence_number.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        for csrc in self.csrcs.iter().take(15) {
            out.extend_from_slice(&csrc.to_be_bytes());
        }
        if has_ext {
            let mut block = Vec::new();
            for (id, value) in &self.extensions {
                block.push((id << 4) | (value.len() as u8 - 1));
                block.extend_from_slice(value);
            }
            while block.len() % 4 != 0 {
                block.push(0);
            }
            out.extend_from_slice(&ONE_BYTE_PROFILE.to_be_bytes());
            out.extend_from_slice(&((block.len() / 4) as u16).to_be_bytes());
            out.extend_from_slice(&block);
        }
        out.extend_from_slice(&self.payload);
        if self.padding > 0 {
            out.extend(std::iter::repeat_n(0, usize::from(self.padding) - 1));
            out.push(self.padding);
        }
        out
    }
}

/// A parsed RTP packet (rtc-rtp), with its header extensions by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpView {
    pub ssrc: u32,
    pub payload_type: u8,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub csrcs: Vec<u32>,
    /// `(id, value)` in wire order.
    pub extensions: Vec<(u8, Vec<u8>)>,
    pub payload: Vec<u8>,
}

impl RtpView {
    /// `None` if `packet` is not a well-formed RTP packet.
    pub fn parse(packet: &[u8]) -> Option<Self> {
        let mut buf = Bytes::copy_from_slice(packet);
        let p = RtpPacket::unmarshal(&mut buf).ok()?;
        Some(Self {
            ssrc: p.header.ssrc,
            payload_type: p.header.payload_type,
            sequence_number: p.header.sequence_number,
            timestamp: p.header.timestamp,
            marker: p.header.marker,
            csrcs: p.header.csrc,
            extensions: p
                .header
                .extensions
                .into_iter()
                .map(|e| (e.id, e.payload.to_vec()))
                .collect(),
            payload: p.payload.to_vec(),
        })
    }

    pub fn extension(&self, id: u8) -> Option<&[u8]> {
        self.extensions
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, v)| v.as_slice())
    }

    /// The extension `id` as text (mid, rid).
    pub fn extension_str(&self, id: u8) -> Option<&str> {
        std::str::from_utf8(self.extension(id)?).ok()
    }

    /// The extension `id` as a transport-wide sequence number.
    pub fn transport_wide_seq(&self, id: u8) -> Option<u16> {
        match self.extension(id)? {
            [a, b] => Some(u16::from_be_bytes([*a, *b])),
            _ => None,
        }
    }
}

/// RFC 7983 §7: what the first byte of a datagram says it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    Stun,
    Dtls,
    Rtp,
    Rtcp,
    Unknown,
}

/// Classifies a datagram by its first bytes; RTCP is told from RTP by packet types 192..=223
/// (RFC 5761 §4).
pub fn classify(packet: &[u8]) -> PacketKind {
    match packet.first() {
        Some(0..=3) => PacketKind::Stun,
        Some(20..=63) => PacketKind::Dtls,
        Some(128..=191) if packet.len() >= 2 => match packet[1] {
            192..=223 => PacketKind::Rtcp,
            _ => PacketKind::Rtp,
        },
        _ => PacketKind::Unknown,
    }
}

/// RTCP builders and parsers (rtc-rtcp). Builders return the marshalled bytes of one packet;
/// [`compound`] concatenates several.
pub mod rtcp {
    use bytes::Bytes;
    use rtc_rtcp::packet::Packet;
    use rtc_rtcp::payload_feedbacks::full_intra_request::{FirEntry, FullIntraRequest};
    use rtc_rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
    use rtc_rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
    use rtc_rtcp::receiver_report::ReceiverReport;
    use rtc_rtcp::reception_report::ReceptionReport;
    use rtc_rtcp::sender_report::SenderReport;
    use rtc_rtcp::transport_feedbacks::transport_layer_cc::{
        PacketStatusChunk, SymbolTypeTcc, TransportLayerCc,
    };
    use rtc_rtcp::transport_feedbacks::transport_layer_nack::{
        nack_pairs_from_sequence_numbers, TransportLayerNack,
    };

    fn marshal(packet: &dyn Packet) -> Vec<u8> {
        // Every builder below fills fields within their wire ranges, so marshalling cannot fail;
        // an empty result would make the test's assertion fail visibly rather than panic here.
        packet.marshal().map(|b| b.to_vec()).unwrap_or_else(|e| {
            log::error!("RTCP marshal failed: {e}");
            Vec::new()
        })
    }

    /// Sender report without report blocks.
    pub fn sender_report(
        ssrc: u32,
        ntp_time: u64,
        rtp_time: u32,
        packet_count: u32,
        octet_count: u32,
    ) -> Vec<u8> {
        marshal(&SenderReport {
            ssrc,
            ntp_time,
            rtp_time,
            packet_count,
            octet_count,
            ..Default::default()
        })
    }

    /// One report block about `media_ssrc`.
    pub fn reception_report(
        media_ssrc: u32,
        fraction_lost: u8,
        total_lost: u32,
        highest_seq: u32,
        jitter: u32,
    ) -> ReceptionReport {
        ReceptionReport {
            ssrc: media_ssrc,
            fraction_lost,
            total_lost,
            last_sequence_number: highest_seq,
            jitter,
            ..Default::default()
        }
    }

    pub fn receiver_report(ssrc: u32, reports: Vec<ReceptionReport>) -> Vec<u8> {
        marshal(&ReceiverReport {
            ssrc,
            reports,
            ..Default::default()
        })
    }

    pub fn pli(sender_ssrc: u32, media_ssrc: u32) -> Vec<u8> {
        marshal(&PictureLossIndication {
            sender_ssrc,
            media_ssrc,
        })
    }

    /// FIR with one entry; `seq` is the FIR command sequence number.
    pub fn fir(sender_ssrc: u32, media_ssrc: u32, seq: u8) -> Vec<u8> {
        marshal(&FullIntraRequest {
            sender_ssrc,
            media_ssrc: 0,
            fir: vec![FirEntry {
                ssrc: media_ssrc,
                sequence_number: seq,
            }],
        })
    }

    /// Generic NACK for `lost` (any order; packed into PID+BLP pairs).
    pub fn nack(sender_ssrc: u32, media_ssrc: u32, lost: &[u16]) -> Vec<u8> {
        let mut seqs = lost.to_vec();
        seqs.sort_unstable();
        seqs.dedup();
        marshal(&TransportLayerNack {
            sender_ssrc,
            media_ssrc,
            nacks: nack_pairs_from_sequence_numbers(&seqs),
        })
    }

    /// REMB for `ssrcs` at `bitrate` bps.
    pub fn remb(sender_ssrc: u32, bitrate: f32, ssrcs: Vec<u32>) -> Vec<u8> {
        marshal(&ReceiverEstimatedMaximumBitrate {
            sender_ssrc,
            bitrate,
            ssrcs,
        })
    }

    /// Concatenates marshalled packets into one compound packet.
    pub fn compound(packets: &[Vec<u8>]) -> Vec<u8> {
        packets.concat()
    }

    /// Parses a (compound) RTCP packet; downcast with `as_any()`.
    pub fn parse(packet: &[u8]) -> Result<Vec<Box<dyn Packet>>, String> {
        let mut buf = Bytes::copy_from_slice(packet);
        rtc_rtcp::packet::unmarshal(&mut buf).map_err(|e| e.to_string())
    }

    /// The packets of type `T` in a (compound) RTCP packet; empty if it does not parse.
    pub fn find<T: Packet + Clone + 'static>(packet: &[u8]) -> Vec<T> {
        parse(packet)
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p.as_any().downcast_ref::<T>().cloned())
            .collect()
    }

    /// A transport-cc feedback, expanded: one entry per reported sequence number.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct TransportCcFeedback {
        pub sender_ssrc: u32,
        pub media_ssrc: u32,
        pub base_sequence_number: u16,
        /// 64 ms units.
        pub reference_time: u32,
        pub fb_pkt_count: u8,
        /// `(transport-wide seq, receive delta in µs if received)`.
        pub packets: Vec<(u16, Option<i64>)>,
    }

    impl TransportCcFeedback {
        pub fn received(&self) -> impl Iterator<Item = u16> + '_ {
            self.packets
                .iter()
                .filter(|(_, d)| d.is_some())
                .map(|(s, _)| *s)
        }
    }

    /// Expands one rtc-rtcp transport-cc packet (run-length and status-vector chunks, deltas).
    pub fn expand_transport_cc(cc: &TransportLayerCc) -> TransportCcFeedback {
        let count = usize::from(cc.packet_status_count);
        let mut symbols = Vec::with_capacity(count);
        for chunk in &cc.packet_chunks {
            match chunk {
                PacketStatusChunk::RunLengthChunk(c) => {
                    symbols.extend(std::iter::repeat_n(
                        c.packet_status_symbol,
                        usize::from(c.run_length),
                    ));
                }
                PacketStatusChunk::StatusVectorChunk(c) => {
                    symbols.extend(c.symbol_list.iter().copied())
                }
            }
        }
        symbols.truncate(count);
        let mut deltas = cc.recv_deltas.iter();
        let packets = symbols
            .into_iter()
            .enumerate()
            .map(|(i, symbol)| {
                let seq = cc.base_sequence_number.wrapping_add(i as u16);
                let delta = match symbol {
                    SymbolTypeTcc::PacketReceivedSmallDelta
                    | SymbolTypeTcc::PacketReceivedLargeDelta => deltas.next().map(|d| d.delta),
                    _ => None,
                };
                (seq, delta)
            })
            .collect();
        TransportCcFeedback {
            sender_ssrc: cc.sender_ssrc,
            media_ssrc: cc.media_ssrc,
            base_sequence_number: cc.base_sequence_number,
            reference_time: cc.reference_time,
            fb_pkt_count: cc.fb_pkt_count,
            packets,
        }
    }

    /// Every transport-cc feedback in a (compound) RTCP packet, expanded.
    pub fn transport_cc(packet: &[u8]) -> Vec<TransportCcFeedback> {
        find::<TransportLayerCc>(packet)
            .iter()
            .map(expand_transport_cc)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::rtcp;
    use super::*;
    use rtc_rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
    use rtc_rtcp::sender_report::SenderReport;
    use rtc_rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;

    #[test]
    fn rtp_builder_round_trips_through_rtc_rtp() {
        let bytes = RtpPacketBuilder::new(0xdead_beef, 96, 65535, 90_000)
            .marker(true)
            .mid(1, "0")
            .rid(2, "hi")
            .transport_wide_seq(3, 0x0102)
            .payload(b"payload")
            .build();
        assert_eq!(classify(&bytes), PacketKind::Rtp);
        // 12 header + 4 ext header + (2 + 3 + 3 = 8) ext body + payload.
        assert_eq!(bytes.len(), 12 + 4 + 8 + 7);
        let view = RtpView::parse(&bytes).unwrap();
        assert_eq!(view.ssrc, 0xdead_beef);
        assert_eq!(view.payload_type, 96);
        assert_eq!(view.sequence_number, 65535);
        assert_eq!(view.timestamp, 90_000);
        assert!(view.marker);
        assert_eq!(view.extension_str(1), Some("0"));
        assert_eq!(view.extension_str(2), Some("hi"));
        assert_eq!(view.transport_wide_seq(3), Some(0x0102));
        assert_eq!(view.payload, b"payload");
    }

    #[test]
    fn rtp_padding_and_csrcs() {
        let bytes = RtpPacketBuilder::new(1, 111, 1, 2)
            .csrc(7)
            .payload(&[1, 2, 3])
            .padding(5)
            .build();
        assert_eq!(bytes.len(), 12 + 4 + 3 + 5);
        let view = RtpView::parse(&bytes).unwrap();
        assert_eq!(view.csrcs, vec![7]);
        assert_eq!(view.payload, vec![1, 2, 3]);
        assert!(view.extensions.is_empty());
    }

    #[test]
    fn rtcp_builders_parse_back() {
        let sr = rtcp::sender_report(5, 1 << 32, 1000, 10, 1200);
        let pli = rtcp::pli(5, 6);
        let nack = rtcp::nack(5, 6, &[12, 10, 11, 40]);
        let packet = rtcp::compound(&[sr.clone(), pli, nack]);
        assert_eq!(classify(&packet), PacketKind::Rtcp);
        let srs = rtcp::find::<SenderReport>(&packet);
        assert_eq!(srs.len(), 1);
        assert_eq!((srs[0].ssrc, srs[0].packet_count), (5, 10));
        assert_eq!(
            rtcp::find::<PictureLossIndication>(&packet)[0].media_ssrc,
            6
        );
        let nacks = rtcp::find::<TransportLayerNack>(&packet);
        let lost: Vec<u16> = nacks[0]
            .nacks
            .iter()
            .flat_map(|p| p.packet_list())
            .collect();
        assert_eq!(lost, vec![10, 11, 12, 40]);
        assert!(rtcp::parse(&[0x80, 200]).is_err());
        let rr = rtcp::receiver_report(9, vec![rtcp::reception_report(5, 0, 0, 100, 3)]);
        assert_eq!(classify(&rr), PacketKind::Rtcp);
        assert_eq!(rtcp::parse(&rr).unwrap().len(), 1);
        assert_eq!(rtcp::parse(&rtcp::fir(1, 2, 3)).unwrap().len(), 1);
        assert_eq!(
            rtcp::parse(&rtcp::remb(1, 300_000.0, vec![2]))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn transport_cc_expands_chunks_and_deltas() {
        use rtc_rtcp::transport_feedbacks::transport_layer_cc::{
            PacketStatusChunk, RecvDelta, RunLengthChunk, StatusChunkTypeTcc, SymbolTypeTcc,
            TransportLayerCc,
        };
        use rtc_shared::marshal::Marshal;
        let cc = TransportLayerCc {
            sender_ssrc: 1,
            media_ssrc: 2,
            base_sequence_number: 65534,
            packet_status_count: 3,
            reference_time: 7,
            fb_pkt_count: 1,
            packet_chunks: vec![PacketStatusChunk::RunLengthChunk(RunLengthChunk {
                type_tcc: StatusChunkTypeTcc::RunLengthChunk,
                packet_status_symbol: SymbolTypeTcc::PacketReceivedSmallDelta,
                run_length: 3,
            })],
            recv_deltas: vec![
                RecvDelta {
                    type_tcc_packet: SymbolTypeTcc::PacketReceivedSmallDelta,
                    delta: 250,
                },
                RecvDelta {
                    type_tcc_packet: SymbolTypeTcc::PacketReceivedSmallDelta,
                    delta: 500,
                },
                RecvDelta {
                    type_tcc_packet: SymbolTypeTcc::PacketReceivedSmallDelta,
                    delta: 0,
                },
            ],
        };
        let bytes = cc.marshal().unwrap().to_vec();
        let fb = rtcp::transport_cc(&bytes);
        assert_eq!(fb.len(), 1);
        assert_eq!(
            fb[0].packets,
            vec![(65534, Some(250)), (65535, Some(500)), (0, Some(0))]
        );
        assert_eq!(fb[0].received().collect::<Vec<_>>(), vec![65534, 65535, 0]);
    }
}
