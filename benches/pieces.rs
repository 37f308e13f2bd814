//! The pieces of the packet path that `packet_path.rs` (ICE check, SRTP protect, first-packet
//! unprotect, DTLS handshake) and `forwarding.rs` (the whole fan-out) do not isolate, each on the
//! server's own code through the `shards` public API, with realistic 1200-byte VP8 packets:
//!
//! - SRTP unprotect in steady state (one long-lived receiving session taking consecutive packets,
//!   as ingress does; `packet_path.rs` unprotects each packet on a fresh session) and a whole
//!   protect + unprotect round trip, for AES-128-GCM, AES-256-GCM and AES-CM-128-HMAC-SHA1-80;
//! - RTP parse, the raw consumer rewrite (`rewrite_into`: SSRC, payload type, sequence number,
//!   timestamp, extension renumbering plus MID / abs-send-time / transport-wide seq), and one
//!   consumer's whole `forward` of a packet without SRTP (sequence manager, transport-wide seq
//!   stamp, retransmission-buffer copy), for a simple VP8 consumer and for a simulcast one
//!   (VP8 PictureID / TL0PICIDX rewrite, temporal-layer filter);
//! - transport-cc: building a feedback for 100 packets (the builder alone, and the receive-side
//!   server recording 100 arrivals then producing its feedback) and parsing it as the RTCP
//!   parser does for a received feedback;
//! - NACK: a subscriber's NACK of 17 packets (PID + full BLP) answered from the send stream's
//!   retransmission buffer as RTX (and the bare buffer lookups), the NACK generator detecting a
//!   17-packet gap upstream, and writing / parsing the RTCP NACK.
//!
//! Criterion's median time per iteration is the cost of what the bench name says; pieces that
//! need fresh state per iteration (a NACK answered twice is refused) build it outside the timing.

use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::Value;
use shards::buffer_pool::BufferPool;
use shards::bwe::TransportCcServer;
use shards::command::ConsumeCommand;
use shards::consumer::{Consumer, PacketInfo};
use shards::egress::{Egress, TransportKey};
use shards::rtcp::{self, RtcpPacket, TransportCcBuilder};
use shards::rtp::nack_generator::NackGenerator;
use shards::rtp::packet::{rewrite_into, ExtensionMap, RtpPacket};
use shards::rtp::retransmission_buffer::{
    RetransmissionBuffer, DEFAULT_MAX_RESENDS, MAX_RETRANSMISSION_DELAY_VIDEO,
};
use shards::rtp::rtp_stream_send::{RtpStreamSend, RtpStreamSendParams};
use shards::rtp_parameters::{self as ortc, MediaKind};
use shards::transport::dtls_transport::{DtlsRole, SrtpKeys, SrtpProfile};
use shards::transport::srtp_session::SrtpSession;

const PRODUCE_VP8: &str = include_str!("../tests/common/fixtures/produce-vp8-rtx.json");
const PRODUCE_SIMULCAST: &str =
    include_str!("../tests/common/fixtures/produce-video-simulcast.json");
const JOIN: &str = include_str!("../tests/common/fixtures/join-olimmpcr.json");

const PACKET_LEN: usize = 1200;
const SSRC: u32 = 0x0654_7D16;
/// Packets per video frame in the generated streams.
const FRAME_PACKETS: u32 = 8;

/// A Chrome-like 1200-byte VP8 packet number `i` of a stream: one-byte extensions MID (4),
/// abs-send-time (2), transport-wide seq (3) and video-orientation (13); a VP8 descriptor with a
/// 15-bit PictureID, TL0PICIDX and TID (L1T3 pattern 0, 2, 1, 2); packet 0 starts a key frame.
fn vp8_packet(i: u32) -> Vec<u8> {
    let seq = i as u16;
    let frame = i / FRAME_PACKETS;
    let first_of_frame = i.is_multiple_of(FRAME_PACKETS);
    // V=2, X; marker on the frame's last packet.
    let mut p = vec![0x90, 96];
    if i % FRAME_PACKETS == FRAME_PACKETS - 1 {
        p[1] |= 0x80;
    }
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(frame.wrapping_mul(3000)).to_be_bytes());
    p.extend_from_slice(&SSRC.to_be_bytes());
    p.extend_from_slice(&[0xBE, 0xDE, 0, 3]);
    p.extend_from_slice(&[0x40, b'0']); // MID "0"
    p.extend_from_slice(&[0x22, 0x12, 0x34, 0x56]); // abs-send-time
    p.extend_from_slice(&[0x31, (seq >> 8) as u8, seq as u8]); // transport-wide seq
    p.extend_from_slice(&[0xD0, 0x01]); // video-orientation
    p.push(0); // padding to the 12-byte extension block
    let tid = [0u8, 2, 1, 2][(frame % 4) as usize];
    let picture_id = (frame & 0x7FFF) as u16;
    let descriptor = [
        if first_of_frame { 0x90 } else { 0x80 }, // X, S on the frame's first packet
        0xE0,                                     // I, L, T
        0x80 | (picture_id >> 8) as u8,           // M: 15-bit PictureID
        picture_id as u8,
        (frame / 4) as u8, // TL0PICIDX
        tid << 6 | u8::from(tid > 0) << 5,
    ];
    p.extend_from_slice(&descriptor);
    // VP8 payload header: bit 0 clear = key frame.
    p.push(if i == 0 { 0x00 } else { 0x01 });
    p.resize(PACKET_LEN, 0xAB);
    p
}

fn bench_config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

// ---------------------------------------------------------------------------------------------
// SRTP

fn srtp_sessions(profile: SrtpProfile) -> (SrtpSession, SrtpSession) {
    let material: Vec<u8> = (0..profile.keying_material_len())
        .map(|i| i as u8)
        .collect();
    let client =
        SrtpKeys::from_keying_material(profile, &material, DtlsRole::Client).expect("keys");
    let server =
        SrtpKeys::from_keying_material(profile, &material, DtlsRole::Server).expect("keys");
    (
        SrtpSession::new(profile, &client).expect("session"),
        SrtpSession::new(profile, &server).expect("session"),
    )
}

fn srtp(c: &mut Criterion) {
    let mut group = c.benchmark_group("srtp 1200-byte rtp, steady state");
    group.throughput(Throughput::Elements(1));
    let template = vp8_packet(1);
    for profile in [
        SrtpProfile::AeadAes128Gcm,
        SrtpProfile::AeadAes256Gcm,
        SrtpProfile::AesCm128HmacSha1_80,
    ] {
        // One sender and one receiver for both benches: consecutive sequence numbers throughout,
        // so the receiver's replay window and ROC estimation see the stream ingress sees.
        let (mut sender, mut receiver) = srtp_sessions(profile);
        let overhead = sender.rtp_overhead();
        let mut seq = 0u16;
        let mut next_protected = |sender: &mut SrtpSession, buf: &mut Vec<u8>| {
            seq = seq.wrapping_add(1);
            buf.clear();
            buf.extend_from_slice(&template);
            buf[2..4].copy_from_slice(&seq.to_be_bytes());
            buf.resize(PACKET_LEN + overhead, 0);
            let n = sender.protect_rtp(buf, PACKET_LEN).expect("protect");
            buf.truncate(n);
        };
        group.bench_function(format!("unprotect {}", profile.as_str()), |b| {
            b.iter_batched(
                || {
                    let mut buf = Vec::with_capacity(PACKET_LEN + overhead);
                    next_protected(&mut sender, &mut buf);
                    buf
                },
                |mut packet| receiver.unprotect_rtp(&mut packet).expect("unprotect"),
                BatchSize::SmallInput,
            )
        });
        let mut buf = Vec::with_capacity(PACKET_LEN + overhead);
        group.bench_function(format!("protect + unprotect {}", profile.as_str()), |b| {
            b.iter(|| {
                next_protected(&mut sender, &mut buf);
                receiver.unprotect_rtp(&mut buf).expect("unprotect")
            })
        });
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// RTP rewrite by a consumer

/// Hands every buffer straight back: the consumer's work without SRTP or sockets.
#[derive(Default)]
struct NullEgress {
    pool: BufferPool,
    sent: u64,
    tw_seq: u16,
}

impl Egress for NullEgress {
    fn buffer(&mut self) -> Vec<u8> {
        self.pool.take()
    }
    fn recycle(&mut self, buf: Vec<u8>) {
        self.pool.give(buf);
    }
    fn send_rtp(&mut self, _transport: TransportKey, buf: Vec<u8>, _tcc: Option<u8>) -> bool {
        self.sent += 1;
        black_box(&buf);
        self.pool.give(buf);
        true
    }
    fn next_transport_wide_seq(&mut self, _transport: TransportKey) -> Option<u16> {
        self.tw_seq = self.tw_seq.wrapping_add(1);
        Some(self.tw_seq)
    }
    fn send_rtcp(&mut self, _transport: TransportKey, buf: Vec<u8>) -> bool {
        self.pool.give(buf);
        true
    }
}

/// A consumer of the producer described by fixture `produce`, and the router payload type its
/// packets carry.
fn consumer(produce: &str) -> (Consumer, u8) {
    let produce: Value = serde_json::from_str(produce).expect("fixture");
    let join: Value = serde_json::from_str(JOIN).expect("fixture");
    let caps = ortc::generate_router_rtp_capabilities(&ortc::demo_media_codecs()).expect("caps");
    let client_caps = ortc::parse_rtp_capabilities(&join["rtpCapabilities"]).expect("caps");
    let params = ortc::parse_rtp_parameters(&produce["rtpParameters"]).expect("params");
    let mapping = ortc::get_producer_rtp_parameters_mapping(&params, &caps).expect("mapping");
    let consumable =
        ortc::get_consumable_rtp_parameters(MediaKind::Video, &params, &caps, &mapping);
    let mut rtp_parameters =
        ortc::get_consumer_rtp_parameters(&consumable, &client_caps, false, true)
            .expect("consumer");
    rtp_parameters.mid = Some("1".into());
    let payload_type = rtp_parameters.codecs[0].payload_type;
    let cmd = ConsumeCommand {
        router_id: "r".into(),
        transport_id: "t".into(),
        consumer_id: "c".into(),
        producer_id: "p".into(),
        kind: MediaKind::Video,
        rtp_parameters,
        consumer_type: ortc::producer_type(&params),
        consumable_rtp_encodings: consumable.encodings.clone(),
        paused: false,
    };
    (Consumer::new(cmd, 0, &params, false), payload_type)
}

fn packet_info(i: u32, encoding: usize, payload_type: u8) -> PacketInfo {
    PacketInfo {
        encoding,
        mapped_payload_type: payload_type,
        key_frame: i == 0,
        temporal_layer: [0u8, 2, 1, 2][((i / FRAME_PACKETS) % 4) as usize],
        active_encodings: 0b111,
        abs_send_time: [0x12, 0x34, 0x56],
        // Without a producer store: the consumer keeps whole copies (the costlier path).
        stored: None,
    }
}

/// Forwards packet after packet through one consumer, in stream order; packet 0 (a key frame,
/// which starts the consumer) is sent before the measurement.
fn bench_consumer(c: &mut Criterion, name: &str, produce: &str, encoding: usize) {
    let (mut consumer, payload_type) = consumer(produce);
    let mut egress = NullEgress::default();
    let now = Instant::now();
    let first = vp8_packet(0);
    consumer.forward(
        &RtpPacket::parse(&first).expect("parse"),
        &packet_info(0, encoding, payload_type),
        now,
        &mut egress,
    );
    assert_eq!(egress.sent, 1, "{name}: the key frame starts the consumer");
    let mut i = 0u32;
    c.bench_function(name, |b| {
        b.iter_batched(
            || {
                i += 1;
                (vp8_packet(i), packet_info(i, encoding, payload_type))
            },
            |(bytes, info)| {
                let packet = RtpPacket::parse(&bytes).expect("parse");
                consumer.forward(&packet, &info, now, &mut egress);
            },
            BatchSize::SmallInput,
        )
    });
    // Every packet was forwarded (no temporal layer dropped, nothing refused).
    assert_eq!(
        egress.sent,
        u64::from(i) + 1,
        "{name}: all packets forwarded"
    );
}

fn rewrite(c: &mut Criterion) {
    let bytes = vp8_packet(5);
    c.bench_function("rtp parse 1200-byte vp8 packet (4 extensions)", |b| {
        b.iter(|| {
            RtpPacket::parse(black_box(&bytes))
                .expect("parse")
                .payload()
                .len()
        })
    });

    let packet = RtpPacket::parse(&bytes).expect("parse");
    // As a consumer does: video-orientation renumbered (13 -> 12); MID, abs-send-time and the
    // transport-wide seq written per consumer; the rest dropped.
    let mut ext_map = ExtensionMap::new();
    ext_map.insert(13, 12);
    let abs_send_time = [0x12u8, 0x34, 0x56];
    let extra: [(u8, &[u8]); 3] = [(1, b"1"), (4, &abs_send_time), (5, &[0, 0])];
    let mut out = vec![0u8; 1600];
    let mut seq = 0u16;
    c.bench_function(
        "rtp rewrite_into (ssrc/pt/seq/ts, extension remap + 3 per-consumer extensions)",
        |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                rewrite_into(
                    black_box(&packet),
                    &mut out,
                    0x1111_2222,
                    100,
                    seq,
                    1234,
                    &ext_map,
                    &extra,
                )
                .expect("rewrite")
            })
        },
    );

    bench_consumer(
        c,
        "consumer forward, simple VP8 (rewrite + seq + rtx-buffer copy, no srtp)",
        PRODUCE_VP8,
        0,
    );
    bench_consumer(
        c,
        "consumer forward, simulcast VP8 (+ PictureID/TL0PICIDX rewrite, no srtp)",
        PRODUCE_SIMULCAST,
        2,
    );
}

// ---------------------------------------------------------------------------------------------
// transport-cc

/// Arrival times (µs) of 100 packets at ~1 ms spacing with jitter, and which are lost (every
/// 25th).
fn arrivals() -> Vec<Option<i64>> {
    (0..100i64)
        .map(|i| (i % 25 != 24).then_some(1_000_000 + i * 1000 + (i * 37 % 400)))
        .collect()
}

fn transport_cc(c: &mut Criterion) {
    let arrivals = arrivals();
    let mut builder = TransportCcBuilder::new(1, 2, 0, 0, 1200);
    let mut out = Vec::with_capacity(1500);
    let mut base = 0u16;
    c.bench_function("transport-cc build feedback (100 packets, 4 lost)", |b| {
        b.iter(|| {
            base = base.wrapping_add(100);
            builder.reset(1, 2, base, base as u8);
            for (i, arrival) in arrivals.iter().enumerate() {
                if let Some(us) = arrival {
                    builder
                        .add_received(base.wrapping_add(i as u16), *us)
                        .expect("fits");
                }
            }
            out.clear();
            builder.write(&mut out)
        })
    });
    let feedback = out.clone();

    let mut server = TransportCcServer::default();
    let start = Instant::now();
    let mut round = 0u32;
    let mut seq = 0u16;
    let mut out = Vec::with_capacity(1500);
    c.bench_function(
        "transport-cc server: 100 arrivals + its feedback (per 100 ms)",
        |b| {
            b.iter(|| {
                round += 1;
                let t0 = start + Duration::from_millis(100) * round;
                for arrival in &arrivals {
                    seq = seq.wrapping_add(1);
                    if let Some(us) = arrival {
                        let at = t0 + Duration::from_micros(*us as u64 - 1_000_000);
                        server.incoming_packet(seq, at, SSRC);
                    }
                }
                out.clear();
                let mut sent = 0;
                while server.poll_feedback(t0 + Duration::from_millis(100), &mut out) {
                    sent += 1;
                }
                sent
            })
        },
    );
    assert!(!out.is_empty(), "the server sent feedback");

    c.bench_function("transport-cc parse feedback (100 packets)", |b| {
        b.iter(|| {
            let mut received = 0;
            for packet in rtcp::parse_compound(black_box(&feedback)).expect("framing") {
                if let Ok(RtcpPacket::TransportCc(fb)) = packet {
                    received += fb.packets.len();
                }
            }
            received
        })
    });
}

// ---------------------------------------------------------------------------------------------
// NACK

const NACKED: usize = 17;

/// A consumer's send stream (NACK and RTX negotiated, 512 slots like a video consumer) that sent
/// 100 packets from `first`; and the 17 lost in the middle (one PID + full BLP).
fn send_stream(first: u16, now: Instant) -> (RtpStreamSend, Vec<u16>) {
    let mut params = RtpStreamSendParams::new(SSRC, 96, "video/VP8", MediaKind::Video, 90000);
    params.use_nack = true;
    params.rtx_ssrc = Some(SSRC + 1);
    params.rtx_payload_type = Some(97);
    params.retransmission_capacity = 512;
    let mut stream = RtpStreamSend::new(params, now);
    for i in 0..100u16 {
        let mut bytes = vp8_packet(u32::from(i) + 1);
        bytes[2..4].copy_from_slice(&first.wrapping_add(i).to_be_bytes());
        stream.packet_sent(&RtpPacket::parse(&bytes).expect("parse"), now);
    }
    let lost = (0..NACKED as u16)
        .map(|i| first.wrapping_add(50 + i))
        .collect();
    (stream, lost)
}

fn nack(c: &mut Criterion) {
    let now = Instant::now();
    let later = now + Duration::from_millis(30);
    c.bench_function(
        "nack: answer a NACK of 17 from the retransmission buffer as RTX",
        |b| {
            b.iter_batched_ref(
                || send_stream(40_000, now),
                |(stream, lost)| {
                    let mut bytes = 0;
                    let resent =
                        stream.receive_nack(lost.iter().copied(), later, |packet: &mut [u8]| {
                            bytes += black_box(packet).len();
                        });
                    assert_eq!(resent, NACKED);
                    (resent, bytes)
                },
                BatchSize::NumIterations(64),
            )
        },
    );

    let mut buffer =
        RetransmissionBuffer::new(512, MAX_RETRANSMISSION_DELAY_VIDEO, DEFAULT_MAX_RESENDS);
    for i in 0..100u16 {
        let bytes = vp8_packet(u32::from(i) + 1);
        buffer.insert(40_000u16.wrapping_add(i), &bytes, now);
    }
    let lost: Vec<u16> = (0..NACKED as u16).map(|i| 40_050 + i).collect();
    c.bench_function("nack: retransmission buffer lookups, 17 packets", |b| {
        b.iter(|| {
            let mut bytes = 0;
            for &seq in black_box(&lost) {
                if let Some((packet, _)) = buffer.get(seq, later) {
                    bytes += packet.len();
                }
            }
            assert_eq!(bytes, NACKED * PACKET_LEN);
            bytes
        })
    });

    c.bench_function("nack generator: a 17-packet gap detected", |b| {
        b.iter_batched_ref(
            || {
                let mut generator = NackGenerator::new(Duration::ZERO);
                let mut nacks = Vec::with_capacity(1000);
                for seq in 0..100u16 {
                    generator.received(seq, seq == 0, false, now, &mut nacks);
                }
                (generator, nacks)
            },
            |(generator, nacks)| {
                generator.received(100 + NACKED as u16, false, false, later, nacks);
                assert_eq!(nacks.len(), NACKED);
                nacks.len()
            },
            BatchSize::NumIterations(64),
        )
    });

    let mut out = Vec::with_capacity(64);
    c.bench_function("rtcp nack: write (17 lost)", |b| {
        b.iter(|| {
            out.clear();
            rtcp::build::nack(&mut out, 1, SSRC, black_box(&lost))
        })
    });
    let written = out.clone();
    c.bench_function("rtcp nack: parse (17 lost)", |b| {
        b.iter(|| {
            let mut lost = 0;
            for packet in rtcp::parse_compound(black_box(&written)).expect("framing") {
                if let Ok(RtcpPacket::Nack(n)) = packet {
                    lost += n.lost.len();
                }
            }
            assert_eq!(lost, NACKED);
            lost
        })
    });
}

criterion_group! {
    name = benches;
    config = bench_config();
    targets = srtp, rewrite, transport_cc, nack
}
criterion_main!(benches);
