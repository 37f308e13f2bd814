//! The per-packet forwarding path without sockets: SRTP unprotect of a publisher's 1200-byte
//! VP8 packet, parse, producer stream bookkeeping, then for every consumer: rewrite (SSRC, PT,
//! sequence number, timestamp, extensions) into a pooled buffer, retransmission-buffer copy and
//! SRTP protect (AES-128-GCM). Reported per incoming packet for 1, 10 and 100 consumers; divide
//! by the consumer count for the cost per forwarded packet.

use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::Value;
use shards::buffer_pool::BufferPool;
use shards::command::{ConsumeCommand, ProduceCommand};
use shards::egress::{Egress, TransportKey};
use shards::producer::Producer;
use shards::rtp::packet::RtpPacket;
use shards::rtp_parameters::{self as ortc, MediaKind};
use shards::transport::dtls_transport::{DtlsRole, SrtpKeys, SrtpProfile};
use shards::transport::srtp_session::SrtpSession;

const PRODUCE: &str = include_str!("../tests/common/fixtures/produce-vp8-rtx.json");
const JOIN: &str = include_str!("../tests/common/fixtures/join-olimmpcr.json");
const PROFILE: SrtpProfile = SrtpProfile::AeadAes128Gcm;

fn session(role: DtlsRole) -> SrtpSession {
    let material: Vec<u8> = (0..PROFILE.keying_material_len())
        .map(|i| i as u8)
        .collect();
    let keys = SrtpKeys::from_keying_material(PROFILE, &material, role).expect("keys");
    SrtpSession::new(PROFILE, &keys).expect("session")
}

/// Protects into each consumer transport's session and hands the buffer straight back.
struct BenchEgress {
    pool: BufferPool,
    sessions: Vec<SrtpSession>,
    sent: u64,
}

impl Egress for BenchEgress {
    fn buffer(&mut self) -> Vec<u8> {
        self.pool.take()
    }
    fn recycle(&mut self, buf: Vec<u8>) {
        self.pool.give(buf);
    }
    fn send_rtp(&mut self, transport: TransportKey, mut buf: Vec<u8>, _tcc: Option<u8>) -> bool {
        let srtp = &mut self.sessions[transport as usize];
        let len = buf.len();
        buf.resize(len + srtp.rtp_overhead(), 0);
        let ok = srtp.protect_rtp(&mut buf, len).is_ok();
        self.sent += ok as u64;
        self.pool.give(buf);
        ok
    }
    fn next_transport_wide_seq(&mut self, _transport: TransportKey) -> Option<u16> {
        Some(0)
    }
    fn send_rtcp(&mut self, _transport: TransportKey, buf: Vec<u8>) -> bool {
        self.pool.give(buf);
        true
    }
}

fn vp8_packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x90, 96, 0, 0, 0, 0, 0, 0, 0x06, 0x54, 0x7D, 0x16];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(seq as u32 * 3000).to_be_bytes());
    // One-byte extensions: MID "0" (id 4), transport-wide seq (id 3).
    p.extend_from_slice(&[
        0xBE,
        0xDE,
        0,
        2,
        0x40,
        b'0',
        0x31,
        (seq >> 8) as u8,
        seq as u8,
        0,
        0,
        0,
    ]);
    p.extend_from_slice(&[
        0x90,
        0x80,
        (seq & 0x7f) as u8,
        if seq == 0 { 0x00 } else { 0x01 },
    ]);
    p.resize(1200, 0xAB);
    p
}

fn setup(consumers: usize) -> (Producer, BenchEgress) {
    let produce: Value = serde_json::from_str(PRODUCE).expect("fixture");
    let join: Value = serde_json::from_str(JOIN).expect("fixture");
    let caps = ortc::generate_router_rtp_capabilities(&ortc::demo_media_codecs()).expect("caps");
    let client_caps = ortc::parse_rtp_capabilities(&join["rtpCapabilities"]).expect("caps");
    let params = ortc::parse_rtp_parameters(&produce["rtpParameters"]).expect("params");
    let mapping = ortc::get_producer_rtp_parameters_mapping(&params, &caps).expect("mapping");
    let consumable =
        ortc::get_consumable_rtp_parameters(MediaKind::Video, &params, &caps, &mapping);
    let mut producer = Producer::new(
        ProduceCommand {
            router_id: "r".into(),
            transport_id: "in".into(),
            producer_id: "p".into(),
            kind: MediaKind::Video,
            rtp_parameters: params.clone(),
            rtp_mapping: mapping,
            producer_type: ortc::producer_type(&params),
            paused: false,
        },
        0,
    );
    let mut sessions = Vec::new();
    for i in 0..consumers {
        let mut rtp_parameters =
            ortc::get_consumer_rtp_parameters(&consumable, &client_caps, false, true)
                .expect("consumer");
        rtp_parameters.mid = Some(i.to_string());
        let cmd = ConsumeCommand {
            router_id: "r".into(),
            transport_id: format!("t{i}"),
            consumer_id: format!("c{i}"),
            producer_id: "p".into(),
            kind: MediaKind::Video,
            rtp_parameters,
            consumer_type: ortc::producer_type(&params),
            consumable_rtp_encodings: consumable.encodings.clone(),
            paused: false,
        };
        let consumer = shards::consumer::Consumer::new(
            cmd,
            i as TransportKey,
            &producer.rtp_parameters,
            false,
        );
        producer.consumers.push(consumer);
        sessions.push(session(DtlsRole::Server));
    }
    let egress = BenchEgress {
        pool: BufferPool::default(),
        sessions,
        sent: 0,
    };
    (producer, egress)
}

fn forwarding(c: &mut Criterion) {
    let mut group = c.benchmark_group("forward 1200-byte vp8 (unprotect + fan-out + protect)");
    for consumers in [1usize, 10, 100] {
        let (mut producer, mut egress) = setup(consumers);
        let mut publisher = session(DtlsRole::Client);
        let mut ingress = session(DtlsRole::Server);
        // The first packet is a key frame: every consumer starts forwarding.
        let mut seq = 0u16;
        group.throughput(Throughput::Elements(consumers as u64));
        group.bench_function(format!("{consumers} consumers"), |b| {
            b.iter_batched(
                || {
                    let plain = vp8_packet(seq);
                    seq = seq.wrapping_add(1);
                    let mut buf = plain.clone();
                    buf.resize(plain.len() + publisher.rtp_overhead(), 0);
                    let n = publisher
                        .protect_rtp(&mut buf, plain.len())
                        .expect("protect");
                    buf.truncate(n);
                    buf
                },
                |mut srtp| {
                    let n = ingress.unprotect_rtp(&mut srtp).expect("unprotect");
                    let packet = RtpPacket::parse(&srtp[..n]).expect("parse");
                    producer.receive_rtp(0, &packet, Instant::now(), &mut egress)
                },
                BatchSize::SmallInput,
            )
        });
        assert!(egress.sent > 0, "packets were forwarded");
    }
    group.finish();
}

criterion_group!(benches, forwarding);
criterion_main!(benches);
