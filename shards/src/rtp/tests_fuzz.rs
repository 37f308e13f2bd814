//! Feeds thousands of random, truncated and mutated buffers through every parser and writer of
//! this module: nothing may panic, and whatever parses must round-trip through the writers.

use std::time::{Duration, Instant};

use super::nack_generator::NackGenerator;
use super::packet::{
    rewrite_into, set_abs_send_time, set_extension, set_marker, set_payload_type,
    set_sequence_number, set_ssrc, set_timestamp, set_transport_wide_seq, ExtensionMap,
    RtpHeaderWriter, RtpPacket,
};
use super::rtp_stream_recv::{PacketInfo, RtpStreamRecv, RtpStreamRecvParams};
use super::rtx;
use super::seq_manager::RtpSeqManager;
use super::vp8::{Vp8PayloadDescriptor, Vp8Rewriter};
use super::{h264, vp9};
use crate::rtp_parameters::MediaKind;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// A valid packet with random header fields, CSRCs, extensions (either form), payload, padding.
fn valid_packet(rng: &mut Rng, out: &mut [u8]) -> usize {
    let csrcs = [0u8; 60];
    let csrc_len = 4 * rng.below(4) as usize;
    let mut values = [[0u8; 20]; 4];
    for v in values.iter_mut() {
        for b in v.iter_mut() {
            *b = rng.byte();
        }
    }
    let count = rng.below(5) as usize;
    let lens: Vec<usize> = (0..count).map(|_| 1 + rng.below(18) as usize).collect();
    let ids: Vec<u8> = (0..count).map(|_| 1 + rng.below(16) as u8).collect();
    let exts: Vec<(u8, &[u8])> = (0..count)
        .map(|i| (ids[i], &values[i][..lens[i]]))
        .collect();
    let mut payload = [0u8; 300];
    let payload_len = rng.below(300) as usize;
    for b in payload.iter_mut() {
        *b = rng.byte();
    }
    RtpHeaderWriter {
        marker: rng.below(2) == 1,
        payload_type: rng.byte() & 0x7F,
        sequence_number: rng.next() as u16,
        timestamp: rng.next() as u32,
        ssrc: rng.next() as u32,
        csrcs: &csrcs[..csrc_len],
    }
    .write(
        out,
        exts.iter().copied(),
        &payload[..payload_len],
        rng.below(3) as u8 * 7,
    )
    .unwrap()
}

fn exercise_codecs(data: &mut [u8], rewriter: &mut Vp8Rewriter) {
    let _ = h264::parse(data);
    let _ = vp9::Vp9PayloadDescriptor::parse(data);
    if let Some(d) = Vp8PayloadDescriptor::parse(data) {
        assert!(d.len <= data.len());
        let _ = d.encode(data, 0x7FFF, 255);
        let _ = rewriter.rewrite(&d, data);
        let _ = d.restore(data);
    }
}

fn exercise_packet(data: &[u8], rng: &mut Rng, rewriter: &mut Vp8Rewriter) {
    let Ok(p) = RtpPacket::parse(data) else {
        return;
    };
    assert!(p.header_len() + p.padding_len() <= p.len());
    let _ = (
        p.marker(),
        p.payload_type(),
        p.sequence_number(),
        p.timestamp(),
        p.ssrc(),
    );
    let _ = p.csrcs().count();
    for (id, v) in p.extensions() {
        assert!(p.extension(id).is_some());
        assert!(v.len() <= 255);
    }
    for id in 0..=16u8 {
        let _ = (
            p.extension(id),
            p.mid(id),
            p.rid(id),
            p.transport_wide_seq(id),
            p.abs_send_time(id),
        );
        if let Some(r) = p.extension_range(id) {
            assert!(r.end <= p.header_len());
        }
    }
    let mut map = ExtensionMap::new();
    for id in 1..=14u8 {
        if rng.below(2) == 1 {
            map.insert(id, 1 + rng.below(20) as u8);
        }
    }
    let mut out = vec![0u8; rng.below(1600) as usize];
    if let Ok(n) = rewrite_into(
        &p,
        &mut out,
        1,
        2,
        3,
        4,
        &map,
        &[(9, b"mid"), (10, &[0, 0])],
    ) {
        let q = RtpPacket::parse(&out[..n]).expect("rewritten packet parses");
        assert_eq!(q.payload(), p.payload());
        assert_eq!(q.padding_len(), p.padding_len());
        assert_eq!(q.mid(9), Some("mid"));
        let mut q_buf = out[..n].to_vec();
        set_transport_wide_seq(&mut q_buf, 10, 77).unwrap();
        let _ = set_abs_send_time(&mut q_buf, 11, 1);
        let _ = set_extension(&mut q_buf, 9, b"xyz");
        set_sequence_number(&mut q_buf, 9).unwrap();
        set_timestamp(&mut q_buf, 9).unwrap();
        set_ssrc(&mut q_buf, 9).unwrap();
        set_payload_type(&mut q_buf, 9).unwrap();
        set_marker(&mut q_buf, true).unwrap();
        assert_eq!(
            RtpPacket::parse(&q_buf).unwrap().transport_wide_seq(10),
            Some(77)
        );
    }
    let mut rtx_buf = [0u8; 1700];
    if let Ok(n) = rtx::encode(&p, &mut rtx_buf, 7, 8, 9) {
        let r = RtpPacket::parse(&rtx_buf[..n]).expect("RTX packet parses");
        let mut back = [0u8; 1700];
        let m = rtx::decode(&r, &mut back, p.ssrc(), p.payload_type()).unwrap();
        let o = RtpPacket::parse(&back[..m]).unwrap();
        assert_eq!(o.sequence_number(), p.sequence_number());
        assert_eq!(o.payload(), p.payload());
    }
    let mut payload = p.payload().to_vec();
    exercise_codecs(&mut payload, rewriter);
}

#[test]
fn random_and_mutated_buffers_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut rewriter = Vp8Rewriter::new(1);
    let mut base = [0u8; 1500];
    let mut parsed_ok = 0;
    for i in 0..20_000 {
        let mut data = match i % 3 {
            // Pure noise, often with a plausible first byte.
            0 => {
                let len = rng.below(80) as usize;
                let mut d: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
                if let Some(b) = d.first_mut() {
                    if rng.below(2) == 1 {
                        *b = 0x80 | (*b & 0x3F);
                    }
                }
                d
            }
            // Valid packet, truncated.
            1 => {
                let n = valid_packet(&mut rng, &mut base);
                let cut = rng.below(n as u64 + 1) as usize;
                base[..cut].to_vec()
            }
            // Valid packet with a few bytes flipped.
            _ => {
                let n = valid_packet(&mut rng, &mut base);
                let mut d = base[..n].to_vec();
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(n as u64) as usize;
                    d[at] ^= 1 << rng.below(8);
                }
                d
            }
        };
        if RtpPacket::parse(&data).is_ok() {
            parsed_ok += 1;
        }
        exercise_packet(&data, &mut rng, &mut rewriter);
        exercise_codecs(&mut data, &mut rewriter);
    }
    assert!(
        parsed_ok > 5_000,
        "the corpus must reach the deep paths ({parsed_ok})"
    );
}

#[test]
fn random_sequences_through_stateful_parts() {
    let mut rng = Rng(42);
    let t0 = Instant::now();
    let mut params = RtpStreamRecvParams::new(1, 96, "video/VP8", MediaKind::Video, 90_000);
    params.use_nack = true;
    params.rtx_ssrc = Some(2);
    let mut recv = RtpStreamRecv::new(params, t0);
    let mut gen = NackGenerator::new(Duration::from_millis(rng.below(30)));
    let mut seqs = RtpSeqManager::new();
    let mut nacks = Vec::with_capacity(1000);
    let mut buf = [0u8; 64];
    let mut seq: u16 = rng.next() as u16;
    for i in 0..50_000u64 {
        let now = t0 + Duration::from_millis(i);
        // Mostly forward, sometimes jumps, reordering and repeats.
        seq = match rng.below(20) {
            0 => rng.next() as u16,
            1 => seq.wrapping_sub(rng.below(100) as u16),
            2 => seq,
            3 => seq.wrapping_add(rng.below(3000) as u16),
            _ => seq.wrapping_add(1),
        };
        let n = RtpHeaderWriter {
            sequence_number: seq,
            timestamp: rng.next() as u32,
            ssrc: 1,
            payload_type: 96,
            ..Default::default()
        }
        .write(&mut buf, std::iter::empty(), &[1, 2, 3], 0)
        .unwrap();
        let p = RtpPacket::parse(&buf[..n]).unwrap();
        let info = PacketInfo {
            is_key_frame: rng.below(50) == 0,
            spatial_layer: rng.byte(),
            temporal_layer: rng.byte(),
        };
        if rng.below(10) == 0 {
            recv.receive_rtx_packet(rng.next() as u16, &p, info, now, &mut nacks);
        } else {
            recv.receive_packet(&p, info, now, &mut nacks);
        }
        assert!(nacks.len() <= 1000);
        gen.received(seq, info.is_key_frame, rng.below(10) == 0, now, &mut nacks);
        assert!(gen.pending() <= 1000);
        if i % 7 == 0 {
            gen.poll(now, &mut nacks);
            recv.poll(now, &mut nacks);
        }
        match rng.below(4) {
            0 => seqs.drop(seq),
            1 => seqs.sync(seq),
            _ => {
                let _ = seqs.input(seq);
            }
        }
        if i % 500 == 0 {
            let _ = recv.receiver_report_block(now);
            let _ = recv.receive_sender_report(super::ntp::NtpTime::new(1, 2), 3, now);
        }
    }
    let _ = recv.stats_json(t0, 0);
}
