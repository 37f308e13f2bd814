//! Proves the packet path allocates nothing: a counting wrapper around the system allocator
//! (per thread, so parallel tests do not disturb each other) around a warm steady-state loop.
//! Test builds only; the wrapper forwards every call to `System` unchanged.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use super::h264;
use super::nack_generator::{NackGenerator, MAX_NACK_PACKETS};
use super::ntp::NtpTime;
use super::packet::{
    rewrite_into, set_transport_wide_seq, ExtensionMap, RtpHeaderWriter, RtpPacket,
};
use super::retransmission_buffer::RetransmissionBuffer;
use super::rtp_stream::ReportBlock;
use super::rtp_stream_recv::{PacketInfo, RtpStreamRecv, RtpStreamRecvParams};
use super::rtp_stream_send::{RtpStreamSend, RtpStreamSendParams};
use super::rtx;
use super::seq_manager::RtpSeqManager;
use super::vp8::{Vp8PayloadDescriptor, Vp8Rewriter};
use super::vp9;
use crate::rtp_parameters::MediaKind;

struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocations() -> u64 {
    ALLOCATIONS.with(|c| c.get())
}

/// A VP8 packet (two-byte picture id, TL0PICIDX, TID) with MID and transport-wide-cc extensions.
fn vp8_packet(buf: &mut [u8], seq: u16, pid: u16, tid: u8) -> usize {
    let [hi, lo] = pid.to_be_bytes();
    let mut payload = [0x55u8; 900];
    payload[..7].copy_from_slice(&[
        0x90,
        0xE0,
        0x80 | hi,
        lo,
        3,
        tid << 6,
        (seq % 30).min(1) as u8,
    ]);
    RtpHeaderWriter {
        payload_type: 96,
        sequence_number: seq,
        timestamp: seq as u32 * 3000,
        ssrc: 1111,
        ..Default::default()
    }
    .write(
        buf,
        [(1u8, &b"0"[..]), (3, &[0, 0][..])].into_iter(),
        &payload,
        0,
    )
    .unwrap()
}

#[test]
fn steady_state_packet_path_does_not_allocate() {
    let t0 = Instant::now();
    let mut recv_params = RtpStreamRecvParams::new(1111, 96, "video/VP8", MediaKind::Video, 90_000);
    recv_params.use_nack = true;
    recv_params.use_pli = true;
    recv_params.temporal_layers = 3;
    recv_params.rtx_ssrc = Some(2222);
    recv_params.rtx_payload_type = Some(97);
    let mut recv = RtpStreamRecv::new(recv_params, t0);
    let mut send_params =
        RtpStreamSendParams::new(5555, 101, "video/VP8", MediaKind::Video, 90_000);
    send_params.use_nack = true;
    send_params.rtx_ssrc = Some(6666);
    send_params.rtx_payload_type = Some(102);
    let mut send = RtpStreamSend::new(send_params, t0);
    let mut seqs = RtpSeqManager::new();
    let mut vp8 = Vp8Rewriter::new(1);
    let mut nack_gen = NackGenerator::new(Duration::ZERO);
    let mut buffer = RetransmissionBuffer::new(64, Duration::from_secs(2), 5);
    let mut nacks = Vec::with_capacity(MAX_NACK_PACKETS);
    let mut map = ExtensionMap::new();
    map.insert(3, 5);
    let (mut inbuf, mut outbuf, mut rtxbuf) = ([0u8; 1500], [0u8; 1500], [0u8; 1502]);
    let mut sent = 0usize;

    let mut run = |from: u16, to: u16| {
        for seq in from..to {
            // Lose every 17th packet to exercise NACK paths.
            if seq % 17 == 5 {
                continue;
            }
            let now = t0 + Duration::from_millis(seq as u64 * 10);
            let tid = (seq % 3) as u8;
            let n = vp8_packet(&mut inbuf, seq, seq / 2, tid);
            let p = RtpPacket::parse(&inbuf[..n]).unwrap();
            let payload = p.payload();
            let desc = Vp8PayloadDescriptor::parse(payload).unwrap();
            let _ = h264::is_key_frame(payload) | vp9::is_key_frame(payload);
            let info = PacketInfo {
                is_key_frame: desc.is_key_frame,
                spatial_layer: 0,
                temporal_layer: desc.temporal_layer.unwrap_or(0),
            };
            let o = recv.receive_packet(&p, info, now, &mut nacks);
            assert!(o.accepted);
            nack_gen.received(seq, desc.is_key_frame, false, now, &mut nacks);
            nack_gen.poll(now, &mut nacks);
            recv.poll(now, &mut nacks);
            // Forward: rewrite for the consumer, then VP8 fields in place.
            let Some(out_seq) = seqs.input(seq) else {
                continue;
            };
            let len = rewrite_into(
                &p,
                &mut outbuf,
                5555,
                101,
                out_seq,
                p.timestamp(),
                &map,
                &[(1, b"c1")],
            )
            .unwrap();
            let out = RtpPacket::parse(&outbuf[..len]).unwrap();
            let range = out.payload_range();
            if !vp8.rewrite(&desc, &mut outbuf[range]) {
                seqs.drop(seq);
            }
            set_transport_wide_seq(&mut outbuf[..len], 5, seq).unwrap();
            let out = RtpPacket::parse(&outbuf[..len]).unwrap();
            send.packet_sent(&out, now);
            buffer.insert(out_seq, out.as_bytes(), now);
            let _ = buffer.resend(out_seq.wrapping_sub(3), now, Duration::from_millis(100));
            let r = rtx::encode(&out, &mut rtxbuf, 6666, 102, seq).unwrap();
            let rtx_pkt = RtpPacket::parse(&rtxbuf[..r]).unwrap();
            let d = rtx::decode(&rtx_pkt, &mut inbuf, 1111, 96).unwrap();
            let orig = RtpPacket::parse(&inbuf[..d]).unwrap();
            recv.receive_rtx_packet(seq, &orig, info, now, &mut nacks);
            if seq % 10 == 0 {
                let lost = [out_seq.wrapping_sub(20), out_seq.wrapping_sub(21)];
                sent += send.receive_nack(lost, now, |b| {
                    let _ = set_transport_wide_seq(b, 5, 1);
                });
            }
            if seq % 100 == 0 {
                let block = recv.receiver_report_block(now);
                recv.receive_sender_report(NtpTime::new(seq as u32, 0), seq as u32, now);
                let rr = ReportBlock {
                    ssrc: 5555,
                    ..block
                };
                send.receive_receiver_report(&rr, NtpTime::new(seq as u32, 1), now);
                let _ = send.sender_report(now, NtpTime::new(seq as u32, 2));
                let _ = recv.request_key_frame();
                let _ = recv.bitrate(now) + recv.layer_bitrate(now, 0, 1) + send.bitrate(now);
            }
        }
    };
    // Warm up (first-use paths), then measure.
    run(0, 500);
    let before = allocations();
    run(500, 5000);
    let after = allocations();
    assert_eq!(
        after - before,
        0,
        "packet path allocated {} times",
        after - before
    );
    assert!(sent > 0, "NACK path was exercised");
    // The counter itself works.
    let b = allocations();
    drop(std::hint::black_box(Box::new(1u64)));
    assert!(allocations() > b);
    assert!(recv.nack_count() > 0);
}
