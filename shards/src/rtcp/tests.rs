//! Checks against webrtc-rs's `rtc-rtcp`, an independent implementation: packets it marshals
//! must parse here field by field, and packets written here must unmarshal there.

use bytes::Bytes;
use rtc_rtcp::goodbye::Goodbye;
use rtc_rtcp::packet::{marshal as rtc_marshal, unmarshal as rtc_unmarshal, Packet};
use rtc_rtcp::payload_feedbacks::full_intra_request::{FirEntry as RtcFirEntry, FullIntraRequest};
use rtc_rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc_rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc_rtcp::receiver_report::ReceiverReport as RtcReceiverReport;
use rtc_rtcp::reception_report::ReceptionReport;
use rtc_rtcp::sender_report::SenderReport as RtcSenderReport;
use rtc_rtcp::source_description::{
    SdesType, SourceDescription, SourceDescriptionChunk, SourceDescriptionItem,
};
use rtc_rtcp::transport_feedbacks::transport_layer_cc::{
    PacketStatusChunk, RecvDelta, RunLengthChunk, StatusChunkTypeTcc, StatusVectorChunk,
    SymbolSizeTypeTcc, SymbolTypeTcc, TransportLayerCc,
};
use rtc_rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
use rtc_shared::marshal::{Marshal, Unmarshal};

use super::*;

/// Marshals with rtc-rtcp.
fn rtc_bytes(packet: &dyn Marshal) -> Vec<u8> {
    packet.marshal().expect("rtc-rtcp marshals").to_vec()
}

/// Parses a datagram expected to be valid and to hold only valid packets.
fn parse_all(datagram: &[u8]) -> Vec<RtcpPacket> {
    parse_compound(datagram)
        .expect("framing")
        .collect::<Result<Vec<_>, _>>()
        .expect("packets")
}

fn parse_one(datagram: &[u8]) -> RtcpPacket {
    let mut packets = parse_all(datagram);
    assert_eq!(packets.len(), 1, "{packets:?}");
    packets.remove(0)
}

fn rtc_block(seed: u32) -> ReceptionReport {
    ReceptionReport {
        ssrc: 0x1000_0000 + seed,
        fraction_lost: (seed * 7) as u8,
        total_lost: 0x00_12_34 + seed,
        last_sequence_number: 0x0002_fff0 + seed,
        jitter: 100 + seed,
        last_sender_report: 0xdead_0000 + seed,
        delay: 0x0001_0000 + seed,
    }
}

fn assert_block(ours: &ReportBlock, theirs: &ReceptionReport) {
    assert_eq!(ours.ssrc, theirs.ssrc);
    assert_eq!(ours.fraction_lost, theirs.fraction_lost);
    assert_eq!(ours.total_lost as u32, theirs.total_lost);
    assert_eq!(ours.highest_seq, theirs.last_sequence_number);
    assert_eq!(ours.jitter, theirs.jitter);
    assert_eq!(ours.lsr, theirs.last_sender_report);
    assert_eq!(ours.dlsr, theirs.delay);
}

#[test]
fn sender_report_from_rtc_rtcp() {
    let sr = RtcSenderReport {
        ssrc: 0x1234_5678,
        ntp_time: 0xe1e2_e3e4_0000_8000,
        rtp_time: 90_000,
        packet_count: 1234,
        octet_count: 987_654,
        reports: vec![rtc_block(1), rtc_block(2)],
        profile_extensions: Bytes::new(),
    };
    let RtcpPacket::SenderReport(parsed) = parse_one(&rtc_bytes(&sr)) else {
        panic!("not an SR");
    };
    assert_eq!(parsed.ssrc, sr.ssrc);
    assert_eq!(parsed.ntp_sec, 0xe1e2_e3e4);
    assert_eq!(parsed.ntp_frac, 0x8000);
    assert_eq!(parsed.rtp_ts, sr.rtp_time);
    assert_eq!(parsed.packet_count, sr.packet_count);
    assert_eq!(parsed.octet_count, sr.octet_count);
    assert_eq!(parsed.reports.len(), 2);
    parsed
        .reports
        .iter()
        .zip(&sr.reports)
        .for_each(|(a, b)| assert_block(a, b));
}

#[test]
fn receiver_report_from_rtc_rtcp() {
    let rr = RtcReceiverReport {
        ssrc: 0xcafe_babe,
        reports: (0..3).map(rtc_block).collect(),
        profile_extensions: Bytes::new(),
    };
    let RtcpPacket::ReceiverReport(parsed) = parse_one(&rtc_bytes(&rr)) else {
        panic!("not an RR");
    };
    assert_eq!(parsed.ssrc, rr.ssrc);
    assert_eq!(parsed.reports.len(), 3);
    parsed
        .reports
        .iter()
        .zip(&rr.reports)
        .for_each(|(a, b)| assert_block(a, b));

    // An empty RR, as opens a compound when nothing is received.
    let empty = RtcReceiverReport {
        ssrc: 7,
        ..Default::default()
    };
    assert_eq!(
        parse_one(&rtc_bytes(&empty)),
        RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: 7,
            reports: vec![]
        })
    );
}

#[test]
fn negative_total_lost_is_sign_extended() {
    let mut out = Vec::new();
    let block = ReportBlock {
        ssrc: 1,
        total_lost: -3,
        ..Default::default()
    };
    build::receiver_report(&mut out, 9, &[block]);
    let RtcpPacket::ReceiverReport(rr) = parse_one(&out) else {
        panic!()
    };
    assert_eq!(rr.reports[0].total_lost, -3);
}

#[test]
fn sdes_from_rtc_rtcp() {
    let item = |sdes_type, text: &'static str| SourceDescriptionItem {
        sdes_type,
        text: Bytes::from_static(text.as_bytes()),
    };
    let sdes = SourceDescription {
        chunks: vec![
            SourceDescriptionChunk {
                source: 0x1111_1111,
                items: vec![
                    item(SdesType::SdesName, "alice"),
                    item(
                        SdesType::SdesCname,
                        "{9c00eb92-1afb-9d49-a47d-91f64eee69f5}",
                    ),
                    item(SdesType::SdesTool, "shardcast"),
                ],
            },
            SourceDescriptionChunk {
                source: 0x2222_2222,
                items: vec![item(SdesType::SdesNote, "no cname here")],
            },
            SourceDescriptionChunk {
                source: 0x3333_3333,
                items: vec![item(SdesType::SdesCname, "abc")],
            },
        ],
    };
    let RtcpPacket::Sdes(parsed) = parse_one(&rtc_bytes(&sdes)) else {
        panic!("not SDES");
    };
    assert_eq!(
        parsed.chunks,
        vec![
            SdesChunk {
                ssrc: 0x1111_1111,
                cname: Some("{9c00eb92-1afb-9d49-a47d-91f64eee69f5}".into())
            },
            SdesChunk {
                ssrc: 0x2222_2222,
                cname: None
            },
            SdesChunk {
                ssrc: 0x3333_3333,
                cname: Some("abc".into())
            },
        ]
    );
}

#[test]
fn bye_from_rtc_rtcp() {
    let bye = Goodbye {
        sources: vec![1, 2, 0xffff_ffff],
        reason: Bytes::from_static(b"camera off"),
    };
    assert_eq!(
        parse_one(&rtc_bytes(&bye)),
        RtcpPacket::Bye(Bye {
            ssrcs: vec![1, 2, 0xffff_ffff]
        })
    );
}

#[test]
fn nack_from_rtc_rtcp_expands_pid_and_blp() {
    let nack = TransportLayerNack {
        sender_ssrc: 0xaaaa_aaaa,
        // An SSRC this SFU never heard of: still a valid packet.
        media_ssrc: 0x0bad_5555,
        nacks: vec![
            NackPair {
                packet_id: 100,
                lost_packets: 0b1000_0000_0000_0101,
            },
            NackPair {
                packet_id: 65530,
                lost_packets: 0b0000_0000_1100_0000,
            },
        ],
    };
    let RtcpPacket::Nack(parsed) = parse_one(&rtc_bytes(&nack)) else {
        panic!("not a NACK");
    };
    assert_eq!(parsed.sender_ssrc, 0xaaaa_aaaa);
    assert_eq!(parsed.media_ssrc, 0x0bad_5555);
    // BLP bit i means PID + i + 1; the second item wraps past 65535.
    assert_eq!(parsed.lost, vec![100, 101, 103, 116, 65530, 1, 2]);
}

#[test]
fn pli_fir_remb_from_rtc_rtcp() {
    let pli = PictureLossIndication {
        sender_ssrc: 1,
        media_ssrc: 2,
    };
    assert_eq!(
        parse_one(&rtc_bytes(&pli)),
        RtcpPacket::Pli(Pli {
            sender_ssrc: 1,
            media_ssrc: 2
        })
    );

    let fir = FullIntraRequest {
        sender_ssrc: 3,
        media_ssrc: 0,
        fir: vec![
            RtcFirEntry {
                ssrc: 4,
                sequence_number: 9,
            },
            RtcFirEntry {
                ssrc: 5,
                sequence_number: 255,
            },
        ],
    };
    assert_eq!(
        parse_one(&rtc_bytes(&fir)),
        RtcpPacket::Fir(Fir {
            sender_ssrc: 3,
            entries: vec![
                FirEntry { ssrc: 4, seq_nr: 9 },
                FirEntry {
                    ssrc: 5,
                    seq_nr: 255
                }
            ]
        })
    );

    // Bitrates whose mantissa fits 18 bits after normalisation decode exactly.
    for bitrate in [0u64, 1, 262_143, 1_000_000, 5 << 30, 3 << 40] {
        let remb = ReceiverEstimatedMaximumBitrate {
            sender_ssrc: 6,
            bitrate: bitrate as f32,
            ssrcs: vec![7, 8, 9],
        };
        assert_eq!(
            parse_one(&rtc_bytes(&remb)),
            RtcpPacket::Remb(Remb {
                sender_ssrc: 6,
                bitrate,
                ssrcs: vec![7, 8, 9]
            }),
            "bitrate {bitrate}"
        );
    }
}

/// Expands rtc-rtcp's chunk list into one symbol per status, like a receiver of it would.
fn rtc_symbols(tcc: &TransportLayerCc) -> Vec<SymbolTypeTcc> {
    let count = usize::from(tcc.packet_status_count);
    let mut symbols = Vec::new();
    for chunk in &tcc.packet_chunks {
        match chunk {
            PacketStatusChunk::RunLengthChunk(c) => symbols.extend(std::iter::repeat_n(
                c.packet_status_symbol,
                usize::from(c.run_length),
            )),
            PacketStatusChunk::StatusVectorChunk(c) => symbols.extend(c.symbol_list.iter()),
        }
    }
    symbols.truncate(count);
    assert_eq!(symbols.len(), count);
    symbols
}

/// Decodes a transport-cc feedback with rtc-rtcp into (seq, absolute arrival µs).
fn rtc_decode_tcc(datagram: &[u8]) -> (TransportLayerCc, Vec<(u16, Option<i64>)>) {
    let tcc = TransportLayerCc::unmarshal(&mut Bytes::copy_from_slice(datagram))
        .expect("rtc-rtcp unmarshals our feedback");
    let mut time = i64::from(tcc.reference_time) * 64_000;
    let mut deltas = tcc.recv_deltas.iter();
    let statuses = rtc_symbols(&tcc)
        .into_iter()
        .enumerate()
        .map(|(i, symbol)| {
            let seq = tcc.base_sequence_number.wrapping_add(i as u16);
            match symbol {
                SymbolTypeTcc::PacketReceivedSmallDelta
                | SymbolTypeTcc::PacketReceivedLargeDelta => {
                    let delta = deltas.next().expect("a delta per received packet");
                    assert_eq!(delta.type_tcc_packet, symbol);
                    time += delta.delta;
                    (seq, Some(time))
                }
                _ => (seq, None),
            }
        })
        .collect();
    assert!(deltas.next().is_none(), "no extra deltas");
    (tcc, statuses)
}

#[test]
fn transport_cc_from_rtc_rtcp() {
    let tcc = TransportLayerCc {
        sender_ssrc: 0,
        media_ssrc: 0x4242_4242,
        base_sequence_number: 65530,
        packet_status_count: 30,
        reference_time: 0x12_3456,
        fb_pkt_count: 77,
        packet_chunks: vec![
            // 3 received (small), 2 lost, 1 large, 1 small.
            PacketStatusChunk::StatusVectorChunk(StatusVectorChunk {
                type_tcc: StatusChunkTypeTcc::StatusVectorChunk,
                symbol_size: SymbolSizeTypeTcc::TwoBit,
                symbol_list: vec![
                    SymbolTypeTcc::PacketReceivedSmallDelta,
                    SymbolTypeTcc::PacketReceivedSmallDelta,
                    SymbolTypeTcc::PacketReceivedSmallDelta,
                    SymbolTypeTcc::PacketNotReceived,
                    SymbolTypeTcc::PacketNotReceived,
                    SymbolTypeTcc::PacketReceivedLargeDelta,
                    SymbolTypeTcc::PacketReceivedSmallDelta,
                ],
            }),
            // 9 lost.
            PacketStatusChunk::RunLengthChunk(RunLengthChunk {
                type_tcc: StatusChunkTypeTcc::RunLengthChunk,
                packet_status_symbol: SymbolTypeTcc::PacketNotReceived,
                run_length: 9,
            }),
            // 14 one-bit symbols, only 14 of the 30 left: alternating.
            PacketStatusChunk::StatusVectorChunk(StatusVectorChunk {
                type_tcc: StatusChunkTypeTcc::StatusVectorChunk,
                symbol_size: SymbolSizeTypeTcc::OneBit,
                symbol_list: (0..14)
                    .map(|i| {
                        if i % 2 == 0 {
                            SymbolTypeTcc::PacketReceivedSmallDelta
                        } else {
                            SymbolTypeTcc::PacketNotReceived
                        }
                    })
                    .collect(),
            }),
        ],
        recv_deltas: [
            250, 500, 0, -4_000, 63_750, 1_000, 1_250, 1_500, 1_750, 2_000, 2_250, 2_500,
        ]
        .into_iter()
        .enumerate()
        .map(|(i, delta)| RecvDelta {
            type_tcc_packet: if i == 3 {
                SymbolTypeTcc::PacketReceivedLargeDelta
            } else {
                SymbolTypeTcc::PacketReceivedSmallDelta
            },
            delta,
        })
        .collect(),
    };
    let raw = rtc_bytes(&tcc);
    let RtcpPacket::TransportCc(parsed) = parse_one(&raw) else {
        panic!("not transport-cc");
    };
    assert_eq!(parsed.media_ssrc, 0x4242_4242);
    assert_eq!(parsed.base_seq, 65530);
    assert_eq!(parsed.reference_time, 0x12_3456);
    assert_eq!(parsed.reference_time_us(), 0x12_3456 * 64_000);
    assert_eq!(parsed.fb_pkt_count, 77);
    assert_eq!(parsed.packets.len(), 30);
    let (_, theirs) = rtc_decode_tcc(&raw);
    let mut time = parsed.reference_time_us();
    for (ours, (seq, arrival)) in parsed.packets.iter().zip(theirs) {
        assert_eq!(ours.seq, seq);
        if let Some(delta) = ours.recv_delta_us() {
            time += delta;
        }
        assert_eq!(ours.recv_delta.map(|_| time), arrival, "seq {seq}");
    }
    assert_eq!(parsed.packets[0].seq, 65530);
    assert_eq!(parsed.packets[6].seq, 0);
    assert_eq!(parsed.packets[3].recv_delta, None);
    assert_eq!(parsed.packets[5].recv_delta_us(), Some(-4_000));
}

#[test]
fn compound_from_rtc_rtcp() {
    let packets: Vec<Box<dyn Packet>> = vec![
        Box::new(RtcReceiverReport {
            ssrc: 1,
            reports: vec![rtc_block(5)],
            profile_extensions: Bytes::new(),
        }),
        Box::new(SourceDescription {
            chunks: vec![SourceDescriptionChunk {
                source: 1,
                items: vec![SourceDescriptionItem {
                    sdes_type: SdesType::SdesCname,
                    text: Bytes::from_static(b"cname"),
                }],
            }],
        }),
        Box::new(PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: 2,
        }),
        Box::new(Goodbye {
            sources: vec![1],
            reason: Bytes::new(),
        }),
    ];
    let raw = rtc_marshal(&packets).expect("marshal");
    let parsed = parse_all(&raw);
    assert!(matches!(
        parsed.as_slice(),
        [
            RtcpPacket::ReceiverReport(_),
            RtcpPacket::Sdes(_),
            RtcpPacket::Pli(_),
            RtcpPacket::Bye(_)
        ]
    ));
}

// ---- Writers, checked by rtc-rtcp's unmarshal and by our parser. ----

fn block(seed: u32) -> ReportBlock {
    ReportBlock {
        ssrc: 0x2000_0000 + seed,
        fraction_lost: seed as u8,
        total_lost: seed as i32 * 3,
        highest_seq: 0x0001_0000 + seed,
        jitter: seed * 11,
        lsr: seed * 13,
        dlsr: seed * 17,
    }
}

#[test]
fn receiver_report_and_sdes_compound_as_mediasoup_sends() {
    let mut out = Vec::new();
    let blocks: Vec<_> = (0..2).map(block).collect();
    let rr_len = build::receiver_report(&mut out, 0x5151_5151, &blocks);
    let sdes_len = build::sdes_cname(&mut out, 0x5151_5151, "shardcast-cname");
    assert_eq!(out.len(), rr_len + sdes_len);
    assert_eq!(out.len() % 4, 0);

    let theirs = rtc_unmarshal(&mut Bytes::copy_from_slice(&out)).expect("rtc-rtcp unmarshals");
    assert_eq!(theirs.len(), 2);
    let rr = theirs[0]
        .as_any()
        .downcast_ref::<RtcReceiverReport>()
        .expect("RR");
    assert_eq!(rr.ssrc, 0x5151_5151);
    for (ours, theirs) in blocks.iter().zip(&rr.reports) {
        assert_block(ours, theirs);
    }
    let sdes = theirs[1]
        .as_any()
        .downcast_ref::<SourceDescription>()
        .expect("SDES");
    assert_eq!(sdes.chunks[0].source, 0x5151_5151);
    assert_eq!(&sdes.chunks[0].items[0].text[..], b"shardcast-cname");

    let ours = parse_all(&out);
    assert_eq!(
        ours,
        vec![
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: 0x5151_5151,
                reports: blocks
            }),
            RtcpPacket::Sdes(Sdes {
                chunks: vec![SdesChunk {
                    ssrc: 0x5151_5151,
                    cname: Some("shardcast-cname".into())
                }]
            })
        ]
    );
}

#[test]
fn sdes_cname_of_every_length_pads_correctly() {
    for len in 0..=300 {
        let cname = "x".repeat(len);
        let mut out = Vec::new();
        build::sdes_cname(&mut out, 1, &cname);
        assert_eq!(out.len() % 4, 0);
        let RtcpPacket::Sdes(sdes) = parse_one(&out) else {
            panic!()
        };
        assert_eq!(
            sdes.chunks[0].cname.as_deref(),
            Some(&cname[..len.min(255)])
        );
        let theirs = SourceDescription::unmarshal(&mut Bytes::copy_from_slice(&out))
            .expect("rtc-rtcp unmarshals");
        assert_eq!(theirs.chunks[0].items[0].text.len(), len.min(255));
    }
}

#[test]
fn many_report_blocks_split_over_packets() {
    let blocks: Vec<_> = (0..70).map(block).collect();
    let mut out = Vec::new();
    build::receiver_report(&mut out, 42, &blocks);
    let parsed = parse_all(&out);
    assert_eq!(parsed.len(), 3);
    let all: Vec<ReportBlock> = parsed
        .iter()
        .flat_map(|p| match p {
            RtcpPacket::ReceiverReport(rr) => {
                assert_eq!(rr.ssrc, 42);
                rr.reports.clone()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(all, blocks);

    let sr = SenderReport {
        ssrc: 43,
        ntp_sec: 1,
        ntp_frac: 2,
        rtp_ts: 3,
        packet_count: 4,
        octet_count: 5,
        reports: blocks.clone(),
    };
    out.clear();
    build::sender_report(&mut out, &sr);
    let theirs = rtc_unmarshal(&mut Bytes::copy_from_slice(&out)).expect("rtc-rtcp");
    let their_sr = theirs[0]
        .as_any()
        .downcast_ref::<RtcSenderReport>()
        .expect("SR");
    assert_eq!(their_sr.ntp_time, (1 << 32) | 2);
    assert_eq!(their_sr.reports.len(), 31);
    let parsed = parse_all(&out);
    let RtcpPacket::SenderReport(ours) = &parsed[0] else {
        panic!()
    };
    assert_eq!(ours.reports, blocks[..31]);
    assert_eq!(parsed.len(), 3);
}

#[test]
fn nack_writer_packs_and_round_trips() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for round in 0..500 {
        // Increasing (mod 2^16) lists with random gaps, sometimes wrapping.
        let mut seq = rng.next() as u16;
        let lost: Vec<u16> = (0..1 + rng.below(60))
            .map(|_| {
                seq = seq.wrapping_add(1 + rng.below(if round % 2 == 0 { 4 } else { 40 }) as u16);
                seq
            })
            .collect();
        let mut out = Vec::new();
        build::nack(&mut out, 10, 20, &lost);
        let RtcpPacket::Nack(ours) = parse_one(&out) else {
            panic!()
        };
        assert_eq!(ours.lost, lost);
        let theirs = TransportLayerNack::unmarshal(&mut Bytes::copy_from_slice(&out))
            .expect("rtc-rtcp unmarshals");
        let their_lost: Vec<u16> = theirs.nacks.iter().flat_map(|p| p.packet_list()).collect();
        assert_eq!(their_lost, lost);
    }
    // Close numbers share an item.
    let mut out = Vec::new();
    build::nack(&mut out, 1, 2, &[1000, 1001, 1016, 1017]);
    assert_eq!(out.len(), 12 + 2 * 4);
    // Nothing to NACK, nothing written.
    out.clear();
    assert_eq!(build::nack(&mut out, 1, 2, &[]), 0);
    assert!(out.is_empty());
}

#[test]
fn feedback_writers_round_trip() {
    let mut out = Vec::new();
    build::pli(&mut out, 11, 12);
    build::fir(
        &mut out,
        13,
        &[
            FirEntry {
                ssrc: 14,
                seq_nr: 1,
            },
            FirEntry {
                ssrc: 15,
                seq_nr: 2,
            },
        ],
    );
    build::remb(&mut out, 16, 1_500_000, &[17, 18]);
    build::bye(&mut out, &[19, 20]);

    let theirs = rtc_unmarshal(&mut Bytes::copy_from_slice(&out)).expect("rtc-rtcp unmarshals");
    assert_eq!(theirs.len(), 4);
    let pli = theirs[0]
        .as_any()
        .downcast_ref::<PictureLossIndication>()
        .expect("PLI");
    assert_eq!((pli.sender_ssrc, pli.media_ssrc), (11, 12));
    let fir = theirs[1]
        .as_any()
        .downcast_ref::<FullIntraRequest>()
        .expect("FIR");
    assert_eq!(fir.fir.len(), 2);
    assert_eq!((fir.fir[1].ssrc, fir.fir[1].sequence_number), (15, 2));
    let remb = theirs[2]
        .as_any()
        .downcast_ref::<ReceiverEstimatedMaximumBitrate>()
        .expect("REMB");
    assert_eq!(remb.bitrate, 1_500_000.0);
    assert_eq!(remb.ssrcs, vec![17, 18]);
    let bye = theirs[3].as_any().downcast_ref::<Goodbye>().expect("BYE");
    assert_eq!(bye.sources, vec![19, 20]);

    assert_eq!(
        parse_all(&out),
        vec![
            RtcpPacket::Pli(Pli {
                sender_ssrc: 11,
                media_ssrc: 12
            }),
            RtcpPacket::Fir(Fir {
                sender_ssrc: 13,
                entries: vec![
                    FirEntry {
                        ssrc: 14,
                        seq_nr: 1
                    },
                    FirEntry {
                        ssrc: 15,
                        seq_nr: 2
                    }
                ]
            }),
            RtcpPacket::Remb(Remb {
                sender_ssrc: 16,
                bitrate: 1_500_000,
                ssrcs: vec![17, 18]
            }),
            RtcpPacket::Bye(Bye {
                ssrcs: vec![19, 20]
            }),
        ]
    );
}

#[test]
fn remb_writer_rounds_down_to_mantissa_precision() {
    for bitrate in [
        0u64,
        1,
        262_143,
        262_144,
        262_145,
        999_999,
        123_456_789,
        u64::MAX,
    ] {
        let mut out = Vec::new();
        build::remb(&mut out, 0, bitrate, &[]);
        let RtcpPacket::Remb(remb) = parse_one(&out) else {
            panic!()
        };
        assert!(remb.bitrate <= bitrate);
        // 18 significant bits: relative error below 2^-17.
        assert!(
            bitrate - remb.bitrate <= bitrate >> 17,
            "{bitrate} -> {}",
            remb.bitrate
        );
    }
}

// ---- Transport-cc builder, decoded by rtc-rtcp. ----

/// Feeds (seq, arrival µs) into one builder and checks rtc-rtcp decodes the same thing.
fn check_builder(base_seq: u16, packets: &[(u16, i64)]) -> Vec<u8> {
    let mut builder = TransportCcBuilder::new(0, 0x7777, base_seq, 5, 1500);
    for &(seq, arrival) in packets {
        builder.add_received(seq, arrival).expect("fits");
    }
    let mut out = Vec::new();
    let len = builder.write(&mut out);
    assert_eq!(len, out.len());
    assert_eq!(len, builder.len());
    let (tcc, statuses) = rtc_decode_tcc(&out);
    assert_eq!(tcc.base_sequence_number, base_seq);
    assert_eq!(tcc.fb_pkt_count, 5);
    assert_eq!(tcc.media_ssrc, 0x7777);
    let last = packets.last().expect("packets").0;
    assert_eq!(
        usize::from(tcc.packet_status_count),
        usize::from(last.wrapping_sub(base_seq)) + 1
    );
    let mut expected = packets.iter().peekable();
    for (seq, arrival) in &statuses {
        match expected.peek() {
            Some(&&(s, t)) if s == *seq => {
                let decoded = arrival.expect("received");
                assert!(
                    (0..250).contains(&(t - decoded)),
                    "seq {seq}: sent {t} decoded {decoded}"
                );
                expected.next();
            }
            _ => assert_eq!(*arrival, None, "seq {seq} must be lost"),
        }
    }
    // Our own parser agrees with rtc-rtcp.
    let RtcpPacket::TransportCc(ours) = parse_one(&out) else {
        panic!()
    };
    let mut time = ours.reference_time_us();
    for (ours, (seq, arrival)) in ours.packets.iter().zip(&statuses) {
        assert_eq!(ours.seq, *seq);
        if let Some(delta) = ours.recv_delta_us() {
            time += delta;
        }
        assert_eq!(ours.recv_delta.map(|_| time), *arrival);
    }
    out
}

#[test]
fn builder_encodes_mixed_statuses_and_deltas() {
    let mut rng = XorShift(42);
    for round in 0..300 {
        let base = rng.next() as u16;
        let mut seq = base;
        let mut time = 1_000_000 + i64::from(rng.below(10_000_000));
        let mut packets = Vec::new();
        for _ in 0..1 + rng.below(200) {
            // Random loss, jitter including reordering in time (negative deltas) and gaps large
            // enough to need 2-byte deltas.
            seq = seq.wrapping_add(
                1 + if rng.below(4) == 0 {
                    rng.below(20) as u16
                } else {
                    0
                },
            );
            time += match rng.below(10) {
                0 => -i64::from(rng.below(20_000)),
                1 => i64::from(rng.below(200_000)),
                _ => i64::from(rng.below(5_000)),
            };
            packets.push((seq, time));
        }
        let base_seq = if round % 3 == 0 {
            base.wrapping_sub(rng.below(10) as u16)
        } else {
            packets[0].0
        };
        check_builder(base_seq, &packets);
    }
}

#[test]
fn builder_uses_run_length_chunks_for_a_loss_burst() {
    let packets = [
        (10u16, 5_000i64),
        (11, 6_000),
        (3011, 90_000),
        (3012, 91_000),
    ];
    let out = check_builder(10, &packets);
    let (tcc, _) = rtc_decode_tcc(&out);
    assert!(tcc.packet_chunks.iter().any(|c| matches!(
        c,
        PacketStatusChunk::RunLengthChunk(RunLengthChunk {
            packet_status_symbol: SymbolTypeTcc::PacketNotReceived,
            run_length,
            ..
        }) if *run_length >= 2980
    )));
    // 2 + 3000 lost + 2 statuses in a handful of chunks.
    assert!(out.len() <= 40, "{}", out.len());
}

#[test]
fn builder_rejects_what_does_not_fit() {
    let mut builder = TransportCcBuilder::new(0, 0, 100, 0, 1200);
    builder.add_received(100, 0).expect("first");
    assert_eq!(
        builder.add_received(100, 10),
        Err(TransportCcAddError::NotAhead)
    );
    assert_eq!(
        builder.add_received(99, 10),
        Err(TransportCcAddError::NotAhead)
    );
    assert_eq!(
        builder.add_received(101 + TRANSPORT_CC_MAX_MISSING_PACKETS + 1, 10),
        Err(TransportCcAddError::TooManyMissing)
    );
    assert_eq!(
        builder.add_received(101, 9_000_000),
        Err(TransportCcAddError::DeltaOutOfRange)
    );
    assert_eq!(
        builder.add_received(101, -9_000_000),
        Err(TransportCcAddError::DeltaOutOfRange)
    );
    builder
        .add_received(101 + TRANSPORT_CC_MAX_MISSING_PACKETS, 8_000_000)
        .expect("max gap and ~8 s delta fit");
    // Fill to the size limit with large deltas (alternating big jumps).
    let mut seq = 101 + TRANSPORT_CC_MAX_MISSING_PACKETS;
    let mut time = 8_000_000;
    loop {
        seq += 1;
        time += if seq & 1 == 0 { 100_000 } else { -90_000 };
        match builder.add_received(seq, time) {
            Ok(()) => assert!(builder.len() <= 1200),
            Err(TransportCcAddError::Full) => break,
            Err(other) => panic!("{other:?}"),
        }
    }
    let mut out = Vec::new();
    builder.write(&mut out);
    assert!(out.len() <= 1200 && out.len() > 1150, "{}", out.len());
    rtc_decode_tcc(&out);
}

#[test]
fn empty_builder_writes_nothing() {
    let builder = TransportCcBuilder::new(0, 0, 0, 0, 1200);
    let mut out = Vec::new();
    assert_eq!(builder.write(&mut out), 0);
    assert!(out.is_empty());
}

// ---- Malformed input. ----

fn rr_with_one_block() -> Vec<u8> {
    let mut out = Vec::new();
    build::receiver_report(&mut out, 1, &[block(1)]);
    out
}

#[test]
fn framing_errors_drop_the_whole_compound() {
    assert_eq!(parse_compound(&[]).err(), Some(RtcpError::Empty));

    let rr = rr_with_one_block();
    for cut in 1..4 {
        assert_eq!(
            parse_compound(&rr[..cut]).err(),
            Some(RtcpError::TruncatedHeader { offset: 0 })
        );
    }
    // Overrunning length: cut the packet short.
    assert_eq!(
        parse_compound(&rr[..rr.len() - 4]).err(),
        Some(RtcpError::LengthOverrun {
            offset: 0,
            declared: rr.len(),
            available: rr.len() - 4
        })
    );

    let mut bad_version = rr.clone();
    bad_version[0] = (bad_version[0] & 0x3f) | 0x40;
    assert_eq!(
        parse_compound(&bad_version).err(),
        Some(RtcpError::BadVersion {
            offset: 0,
            version: 1
        })
    );

    // A valid packet followed by garbage: RTP, a stray byte, a huge length.
    let mut compound = rr.clone();
    let offset = compound.len();
    compound.extend_from_slice(&[0x80, 96, 0, 1, 0, 0, 0, 0]);
    assert_eq!(
        parse_compound(&compound).err(),
        Some(RtcpError::NotRtcp { offset, pt: 96 })
    );
    let mut compound = rr.clone();
    compound.push(0x80);
    assert_eq!(
        parse_compound(&compound).err(),
        Some(RtcpError::TruncatedHeader { offset })
    );
    let mut compound = rr.clone();
    compound.extend_from_slice(&[0x81, 201, 0xff, 0xff, 0, 0, 0, 1]);
    assert!(matches!(
        parse_compound(&compound),
        Err(RtcpError::LengthOverrun { offset: o, .. }) if o == offset
    ));
    assert!(parse_compound(&compound)
        .err()
        .is_some_and(|e| e.is_framing()));
}

#[test]
fn bad_middle_packet_is_reported_and_neighbours_kept() {
    let mut compound = rr_with_one_block();
    // Well framed, but RC=2 with a single block's room.
    let mut bad = rr_with_one_block();
    bad[0] = (bad[0] & !0x1f) | 2;
    compound.extend_from_slice(&bad);
    build::pli(&mut compound, 1, 2);
    // Unknown types are skipped, not errors: APP, XR, an unassigned type, TMMBR, SLI.
    for (pt, count) in [(204u8, 0u8), (207, 0), (210, 3), (205, 3), (206, 2)] {
        compound.extend_from_slice(&[0x80 | count, pt, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]);
    }
    // A zero-length (header-only) RR and SDES are truncated.
    compound.extend_from_slice(&[0x81, 201, 0, 0]);
    compound.extend_from_slice(&[0x81, 202, 0, 0]);
    // A header-only RR with RC=0 lacks even the sender SSRC.
    compound.extend_from_slice(&[0x80, 201, 0, 0]);
    // Padding bit with a padding count larger than the packet.
    compound.extend_from_slice(&[0xa1, 203, 0, 1, 0, 0, 0, 9]);
    build::sdes_cname(&mut compound, 7, "last");

    let results: Vec<_> = parse_compound(&compound)
        .expect("framing is fine")
        .collect();
    assert_eq!(results.len(), 13);
    assert!(matches!(results[0], Ok(RtcpPacket::ReceiverReport(_))));
    assert_eq!(
        results[1],
        Err(RtcpError::Truncated {
            pt: packet_type::RR,
            fmt: 2
        })
    );
    assert!(matches!(results[2], Ok(RtcpPacket::Pli(_))));
    assert_eq!(results[3], Ok(RtcpPacket::Unknown { pt: 204, fmt: 0 }));
    assert_eq!(results[4], Ok(RtcpPacket::Unknown { pt: 207, fmt: 0 }));
    assert_eq!(results[5], Ok(RtcpPacket::Unknown { pt: 210, fmt: 3 }));
    assert_eq!(results[6], Ok(RtcpPacket::Unknown { pt: 205, fmt: 3 }));
    assert_eq!(results[7], Ok(RtcpPacket::Unknown { pt: 206, fmt: 2 }));
    assert!(matches!(
        results[8],
        Err(RtcpError::Truncated { pt: 201, .. })
    ));
    assert!(matches!(
        results[9],
        Err(RtcpError::Truncated { pt: 202, .. })
    ));
    assert!(matches!(
        results[10],
        Err(RtcpError::Truncated { pt: 201, .. })
    ));
    assert_eq!(results[11], Err(RtcpError::BadPadding { pt: 203 }));
    assert!(matches!(results[12], Ok(RtcpPacket::Sdes(_))));

    let mut counters = RtcpRecvCounters::default();
    let mut packets = Vec::new();
    counters.parse(&compound, &mut packets).expect("framing");
    assert_eq!(packets.len(), 3);
    assert_eq!(
        counters,
        RtcpRecvCounters {
            datagrams: 1,
            framing_errors: 0,
            packets: 3,
            malformed_packets: 5,
            unknown_packets: 5,
        }
    );
    assert!(counters.parse(&compound[..5], &mut packets).is_err());
    assert_eq!(counters.framing_errors, 1);
    assert_eq!(packets.len(), 3);
}

#[test]
fn valid_padding_is_honoured() {
    // A BYE with one SSRC, 4 bytes of padding (P bit, count in the last byte).
    let datagram = [0xa1, 203, 0, 2, 0, 0, 0, 5, 0, 0, 0, 4];
    assert_eq!(
        parse_one(&datagram),
        RtcpPacket::Bye(Bye { ssrcs: vec![5] })
    );
}

#[test]
fn malformed_feedback_is_reported() {
    let mut out = Vec::new();
    // NACK whose FCI is not whole items (2 bytes + 2 of padding).
    out.extend_from_slice(&[0xa1, 205, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 7, 0, 2]);
    assert!(matches!(
        parse_compound(&out).expect("framing").next(),
        Some(Err(RtcpError::Truncated { pt: 205, fmt: 1 }))
    ));

    // REMB whose exponent shifts the mantissa out of 64 bits.
    out.clear();
    out.extend_from_slice(&[0x8f, 206, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0]);
    out.extend_from_slice(b"REMB");
    out.extend_from_slice(&[0, 0xff, 0xff, 0xff]);
    assert!(matches!(
        parse_compound(&out).expect("framing").next(),
        Some(Err(RtcpError::Malformed {
            pt: 206,
            fmt: 15,
            ..
        }))
    ));
    // REMB announcing more SSRCs than present.
    out[16] = 3;
    out[17] = 0;
    assert!(matches!(
        parse_compound(&out).expect("framing").next(),
        Some(Err(RtcpError::Truncated { pt: 206, fmt: 15 }))
    ));
    // AFB that is not REMB.
    out[12..16].copy_from_slice(b"GOOG");
    assert_eq!(parse_one(&out), RtcpPacket::Unknown { pt: 206, fmt: 15 });

    // Transport-cc: a reserved two-bit symbol, then a missing delta.
    let mut builder = TransportCcBuilder::new(0, 0, 0, 0, 1200);
    for seq in 0..3 {
        builder
            .add_received(seq, i64::from(seq) * 1000)
            .expect("fits");
    }
    out.clear();
    builder.write(&mut out);
    let valid = out.clone();
    out[20] = 0xff; // two-bit vector with symbol 3 first
    assert!(matches!(
        parse_compound(&out).expect("framing").next(),
        Some(Err(RtcpError::Malformed {
            pt: 205,
            fmt: 15,
            ..
        }))
    ));
    out = valid.clone();
    // Claim many more statuses than the chunks describe.
    out[14] = 0x40;
    assert!(matches!(
        parse_compound(&out).expect("framing").next(),
        Some(Err(RtcpError::Truncated { pt: 205, fmt: 15 }))
    ));
}

/// Deterministic pseudo-random numbers for the fuzz-ish tests.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n)) as u32
    }
}

/// Valid compounds of every kind, as seeds for mutation.
fn seed_datagrams() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    let mut out = Vec::new();
    build::receiver_report(&mut out, 1, &[block(1), block(2)]);
    build::sdes_cname(&mut out, 1, "cname");
    seeds.push(out.clone());
    out.clear();
    build::sender_report(
        &mut out,
        &SenderReport {
            ssrc: 1,
            reports: vec![block(3)],
            ..Default::default()
        },
    );
    build::bye(&mut out, &[1, 2]);
    seeds.push(out.clone());
    out.clear();
    build::nack(&mut out, 1, 2, &[5, 6, 9, 100]);
    build::pli(&mut out, 1, 2);
    build::fir(&mut out, 1, &[FirEntry { ssrc: 2, seq_nr: 3 }]);
    build::remb(&mut out, 1, 5_000_000, &[2, 3]);
    seeds.push(out.clone());
    let mut builder = TransportCcBuilder::new(0, 1, 100, 1, 1200);
    let mut time = 0;
    for seq in (100..400).filter(|s| s % 7 != 0) {
        time += if seq % 5 == 0 { 70_000 } else { 900 };
        builder.add_received(seq, time).expect("fits");
    }
    out.clear();
    builder.write(&mut out);
    seeds.push(out);
    seeds
}

/// Parses and fully consumes; the point is that nothing panics or loops forever.
fn parse_and_count(datagram: &[u8]) -> usize {
    match parse_compound(datagram) {
        Ok(packets) => packets.count(),
        Err(err) => {
            assert!(err.is_framing());
            0
        }
    }
}

#[test]
fn fuzz_random_and_mutated_buffers_never_panic() {
    let mut rng = XorShift(0x1234_5678_9abc_def1);
    let seeds = seed_datagrams();
    for seed in &seeds {
        assert!(parse_and_count(seed) > 0);
    }
    let mut parsed_ok = 0;
    for i in 0..30_000 {
        let datagram: Vec<u8> = if i % 3 == 0 {
            // Random bytes, biased to look like RTCP headers.
            let len = rng.below(200) as usize;
            let mut data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if len >= 4 && rng.below(2) == 0 {
                data[0] = 0x80 | (data[0] & 0x3f);
                data[1] = 200 + (data[1] % 8);
                data[2] = 0;
                data[3] = (len / 4).saturating_sub(1) as u8;
            }
            data
        } else {
            // Mutations of valid compounds: flipped bytes, truncation, duplication.
            let mut data = seeds[rng.below(seeds.len() as u32) as usize].clone();
            for _ in 0..1 + rng.below(4) {
                match rng.below(4) {
                    0 | 1 => {
                        let at = rng.below(data.len() as u32) as usize;
                        data[at] = rng.next() as u8;
                    }
                    2 => data.truncate(rng.below(data.len() as u32 + 1) as usize),
                    _ => {
                        let extra = data.clone();
                        data.extend_from_slice(&extra[..extra.len() / 2]);
                    }
                }
                if data.is_empty() {
                    break;
                }
            }
            data
        };
        if parse_and_count(&datagram) > 0 {
            parsed_ok += 1;
        }
        let mut counters = RtcpRecvCounters::default();
        let _ = counters.parse(&datagram, &mut Vec::new());
    }
    // The mutations keep many datagrams well framed, so content parsers get exercised.
    assert!(parsed_ok > 5_000, "{parsed_ok}");
}

#[test]
fn is_rtcp_demuxes_rtp_from_rtcp() {
    assert!(is_rtcp(&rr_with_one_block()));
    // RTP with payload type 96 and with marker bit + PT 111 (0xef = 239 > 223).
    assert!(!is_rtcp(&[0x80, 96, 0, 1]));
    assert!(!is_rtcp(&[0x80, 0xef, 0, 1]));
    assert!(!is_rtcp(&[0x80, 200]));
}
