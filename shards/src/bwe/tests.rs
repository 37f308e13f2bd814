//! Drives [`TransportCcServer`] with made-up arrival times and decodes every feedback it emits
//! with webrtc-rs's `rtc-rtcp` (an independent implementation), checking each sequence number's
//! status and arrival time as the sender would see them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc_rtcp::transport_feedbacks::transport_layer_cc::{
    PacketStatusChunk, SymbolTypeTcc, TransportLayerCc,
};
use rtc_shared::marshal::Unmarshal;

use super::*;
use crate::rtcp::TRANSPORT_CC_MAX_MISSING_PACKETS;
use crate::rtcp::{parse_compound, RtcpPacket};

const MEDIA_SSRC: u32 = 0x1357_9bdf;

/// One feedback as the sender decodes it.
#[derive(Debug)]
struct Feedback {
    at: Instant,
    len: usize,
    sender_ssrc: u32,
    media_ssrc: u32,
    fb_pkt_count: u8,
    base_seq: u16,
    /// (seq, arrival µs on the server's timeline) per status.
    statuses: Vec<(u16, Option<i64>)>,
    /// Longest run-length chunk of "not received".
    longest_lost_run: u16,
}

fn decode(datagram: &[u8], at: Instant) -> Feedback {
    let tcc = TransportLayerCc::unmarshal(&mut Bytes::copy_from_slice(datagram))
        .expect("rtc-rtcp unmarshals the feedback");
    let count = usize::from(tcc.packet_status_count);
    let mut symbols = Vec::new();
    let mut longest_lost_run = 0;
    for chunk in &tcc.packet_chunks {
        match chunk {
            PacketStatusChunk::RunLengthChunk(c) => {
                if c.packet_status_symbol == SymbolTypeTcc::PacketNotReceived {
                    longest_lost_run = longest_lost_run.max(c.run_length);
                }
                symbols.extend(std::iter::repeat_n(
                    c.packet_status_symbol,
                    usize::from(c.run_length),
                ));
            }
            PacketStatusChunk::StatusVectorChunk(c) => symbols.extend(c.symbol_list.iter()),
        }
    }
    symbols.truncate(count);
    assert_eq!(symbols.len(), count);
    let mut time = i64::from(tcc.reference_time) * 64_000;
    let mut deltas = tcc.recv_deltas.iter();
    let statuses = symbols
        .iter()
        .enumerate()
        .map(|(i, symbol)| {
            let seq = tcc.base_sequence_number.wrapping_add(i as u16);
            match symbol {
                SymbolTypeTcc::PacketReceivedSmallDelta
                | SymbolTypeTcc::PacketReceivedLargeDelta => {
                    time += deltas.next().expect("delta").delta;
                    (seq, Some(time))
                }
                _ => (seq, None),
            }
        })
        .collect();
    assert!(deltas.next().is_none());

    // Our own parser reads the same.
    let parsed: Vec<_> = parse_compound(datagram).expect("framing").collect();
    let [Ok(RtcpPacket::TransportCc(ours))] = parsed.as_slice() else {
        panic!("{parsed:?}");
    };
    assert_eq!(ours.packets.len(), count);

    Feedback {
        at,
        len: datagram.len(),
        sender_ssrc: tcc.sender_ssrc,
        media_ssrc: tcc.media_ssrc,
        fb_pkt_count: tcc.fb_pkt_count,
        base_seq: tcc.base_sequence_number,
        statuses,
        longest_lost_run,
    }
}

/// Collects every feedback the server has to send at `now`.
fn drain(server: &mut TransportCcServer, now: Instant, feedbacks: &mut Vec<Feedback>) {
    let mut buf = Vec::new();
    while server.poll_feedback(now, &mut buf) {
        assert!(buf.len() <= DEFAULT_MAX_RTCP_PACKET_LEN, "{}", buf.len());
        feedbacks.push(decode(&buf, now));
        buf.clear();
        assert!(feedbacks.len() < 100_000, "poll_feedback never stops");
    }
}

fn us(d: Duration) -> i64 {
    d.as_micros() as i64
}

/// Checks a decoded arrival against the true one (both µs since the first arrival).
fn assert_arrival(seq: u16, decoded: i64, actual: i64) {
    assert!(
        (0..250).contains(&(actual - decoded)),
        "seq {seq}: actual {actual} µs, decoded {decoded} µs"
    );
}

/// The sender's view after all feedbacks: the last report of each sequence number wins.
fn final_view(feedbacks: &[Feedback]) -> BTreeMap<u16, Option<i64>> {
    let mut view = BTreeMap::new();
    for feedback in feedbacks {
        for &(seq, arrival) in &feedback.statuses {
            view.insert(seq, arrival);
        }
    }
    view
}

#[test]
fn thousand_packets_are_reported_every_100_ms_each_seq_exactly_once() {
    let t0 = Instant::now();
    let mut server = TransportCcServer::default();
    let mut feedbacks = Vec::new();
    let first_seq: u16 = 64_900; // wraps after 636 packets
    let mut expected = Vec::new();
    for i in 0..1000u32 {
        let seq = first_seq.wrapping_add(i as u16);
        // 1 ms spacing with some jitter, so deltas are not all equal.
        let arrival = t0 + Duration::from_micros(u64::from(i) * 1000 + u64::from(i % 7) * 130);
        server.incoming_packet(seq, arrival, MEDIA_SSRC + i % 2);
        expected.push((seq, us(arrival - t0)));
        drain(&mut server, arrival, &mut feedbacks);
    }
    let end = t0 + Duration::from_millis(1200);
    drain(&mut server, end, &mut feedbacks);
    assert!(
        server.poll_timeout(end).is_none(),
        "idle once all is reported"
    );

    // Every 100 ms (the packets themselves drive the polls, 1 ms apart).
    assert_eq!(
        feedbacks.len(),
        10,
        "{:?}",
        feedbacks.iter().map(|f| f.at - t0).collect::<Vec<_>>()
    );
    for (n, feedback) in feedbacks.iter().enumerate() {
        assert_eq!(usize::from(feedback.fb_pkt_count), n);
        assert_eq!(feedback.sender_ssrc, 0);
        if n < 9 {
            let at = feedback.at - t0;
            let due = Duration::from_millis(100 * (n as u64 + 1));
            assert!(
                at >= due && at <= due + Duration::from_millis(1),
                "{n}: {at:?}"
            );
        }
    }
    assert_eq!(feedbacks[9].media_ssrc, MEDIA_SSRC + 1, "last seen stream");

    // Each seq exactly once, in order, received, at the right time.
    let reported: Vec<_> = feedbacks.iter().flat_map(|f| f.statuses.iter()).collect();
    assert_eq!(reported.len(), expected.len());
    for (&(seq, arrival), &(expected_seq, actual)) in reported.into_iter().zip(&expected) {
        assert_eq!(seq, expected_seq);
        assert_arrival(seq, arrival.expect("received"), actual);
    }
    assert_eq!(server.packet_loss(), 0.0);
}

#[test]
fn wraparound_within_one_feedback() {
    let t0 = Instant::now();
    let mut server = TransportCcServer::default();
    let mut feedbacks = Vec::new();
    let seqs: Vec<u16> = (65_530..=65_535).chain(0..6).collect();
    for (i, &seq) in seqs.iter().enumerate() {
        server.incoming_packet(seq, t0 + Duration::from_millis(i as u64 * 3), MEDIA_SSRC);
    }
    drain(&mut server, t0 + Duration::from_millis(100), &mut feedbacks);
    assert_eq!(feedbacks.len(), 1);
    assert_eq!(feedbacks[0].base_seq, 65_530);
    let got: Vec<u16> = feedbacks[0].statuses.iter().map(|s| s.0).collect();
    assert_eq!(got, seqs);
    for (i, &(seq, arrival)) in feedbacks[0].statuses.iter().enumerate() {
        assert_arrival(seq, arrival.expect("received"), i as i64 * 3000);
    }
}

#[test]
fn reordered_and_late_packets_are_reported() {
    let t0 = Instant::now();
    let mut server = TransportCcServer::default();
    let mut feedbacks = Vec::new();
    // Seq i normally arrives at 2i ms; 5 and 6 are swapped, 20 arrives at 150 ms, after the
    // first feedback reported it lost.
    let mut arrivals: Vec<(u16, Duration)> = (0..100u16)
        .map(|seq| (seq, Duration::from_millis(u64::from(seq) * 2)))
        .collect();
    arrivals[5].1 = Duration::from_micros(12_500);
    arrivals[20].1 = Duration::from_millis(151);
    let mut by_time = arrivals.clone();
    by_time.sort_by_key(|&(_, at)| at);
    assert_eq!(by_time[5].0, 6);
    for &(seq, at) in &by_time {
        server.incoming_packet(seq, t0 + at, MEDIA_SSRC);
        drain(&mut server, t0 + at, &mut feedbacks);
    }
    drain(&mut server, t0 + Duration::from_millis(400), &mut feedbacks);

    // The first feedback (100 ms) saw 20 missing.
    let first = &feedbacks[0];
    assert_eq!(first.base_seq, 0);
    assert_eq!(first.statuses[20], (20, None));
    // A later one starts back at 20 to report it.
    assert!(feedbacks.iter().skip(1).any(|f| f.base_seq == 20));

    let view = final_view(&feedbacks);
    assert_eq!(view.len(), 100);
    for (seq, at) in arrivals {
        assert_arrival(seq, view[&seq].expect("received in the end"), us(at));
    }
    // Feedback counts still increase one by one.
    for (n, feedback) in feedbacks.iter().enumerate() {
        assert_eq!(usize::from(feedback.fb_pkt_count), n);
    }
}

#[test]
fn duplicates_are_ignored_and_keep_the_first_arrival() {
    let t0 = Instant::now();
    let mut server = TransportCcServer::default();
    let mut feedbacks = Vec::new();
    for seq in 0..20u16 {
        let at = t0 + Duration::from_millis(u64::from(seq));
        server.incoming_packet(seq, at, MEDIA_SSRC);
        server.incoming_packet(seq, at + Duration::from_millis(3), MEDIA_SSRC);
    }
    drain(&mut server, t0 + Duration::from_millis(100), &mut feedbacks);
    // A duplicate of something already reported does not cause a re-report.
    server.incoming_packet(3, t0 + Duration::from_millis(150), MEDIA_SSRC);
    drain(&mut server, t0 + Duration::from_millis(200), &mut feedbacks);
    assert_eq!(feedbacks.len(), 1);
    assert_eq!(feedbacks[0].statuses.len(), 20);
    for &(seq, arrival) in &feedbacks[0].statuses {
        assert_arrival(seq, arrival.expect("received"), i64::from(seq) * 1000);
    }
}

#[test]
fn loss_burst_is_run_length_encoded() {
    let t0 = Instant::now();
    let mut server = TransportCcServer::default();
    let mut feedbacks = Vec::new();
    let seqs: Vec<u16> = (0..10).chain(3010..3020).collect();
    for (i, &seq) in seqs.iter().enumerate() {
        server.incoming_packet(seq, t0 + Duration::from_millis(i as u64), MEDIA_SSRC);
    }
    drain(&mut server, t0 + Duration::from_millis(100), &mut feedbacks);
    assert_eq!(feedbacks.len(), 1);
    let feedback = &feedbacks[0];
    assert_eq!(feedback.statuses.len(), 3020);
    assert!(
        feedback.longest_lost_run >= 2990,
        "{}",
        feedback.longest_lost_run
    );
    assert!(
        feedback.len <= 64,
        "a burst costs a few chunks, not a status each"
    );
    let received: Vec<u16> = feedback
        .statuses
        .iter()
        .filter(|s| s.1.is_some())
        .map(|s| s.0)
        .collect();
    assert_eq!(received, seqs);
    assert!((server.packet_loss() - 3000.0 / 3020.0).abs() < 1e-9);
}

#[test]
fn gap_too_large_starts_a_new_feedback() {
    let t0 = Instant::now();
    let mut server = TransportCcServer::default();
    let mut feedbacks = Vec::new();
    let seqs: Vec<u16> = (0..10).chain(20_000..20_010).collect();
    for (i, &seq) in seqs.iter().enumerate() {
        server.incoming_packet(seq, t0 + Duration::from_millis(i as u64), MEDIA_SSRC);
    }
    drain(&mut server, t0 + Duration::from_millis(100), &mut feedbacks);
    assert_eq!(feedbacks.len(), 2);
    assert_eq!(feedbacks[0].base_seq, 0);
    assert_eq!(feedbacks[0].statuses.len(), 10);
    assert_eq!(feedbacks[1].base_seq, 20_000);
    assert_eq!(feedbacks[1].statuses.len(), 10);
    assert_eq!(feedbacks[1].fb_pkt_count, 1);
    let view = final_view(&feedbacks);
    assert!(view.values().all(Option::is_some));
    assert_eq!(view.keys().copied().collect::<Vec<_>>(), seqs);
}

#[test]
fn long_silence_splits_the_feedback() {
    let t0 = Instant::now();
    let mut server = TransportCcServer::default();
    let mut feedbacks = Vec::new();
    // Nobody polled for 9 s: the second packet's delta does not fit 16 bits.
    server.incoming_packet(7, t0, MEDIA_SSRC);
    let later = t0 + Duration::from_secs(9);
    server.incoming_packet(8, later, MEDIA_SSRC);
    drain(&mut server, later, &mut feedbacks);
    assert_eq!(feedbacks.len(), 2);
    assert_eq!(feedbacks[0].statuses, vec![(7, Some(0))]);
    assert_eq!(feedbacks[1].base_seq, 8);
    assert_arrival(8, feedbacks[1].statuses[0].1.expect("received"), 9_000_000);
}

#[test]
fn full_feedback_is_sent_without_waiting_for_the_period() {
    let t0 = Instant::now();
    let mut server = TransportCcServer::default();
    let mut feedbacks = Vec::new();
    // 4000 packets in 40 ms: far more than one 1200-byte feedback holds.
    let mut expected = Vec::new();
    for i in 0..4000u32 {
        let seq = 60_000u16.wrapping_add(i as u16);
        let at = t0 + Duration::from_micros(u64::from(i) * 10);
        server.incoming_packet(seq, at, MEDIA_SSRC);
        if server.poll_timeout(at).is_some_and(|t| t <= at) {
            drain(&mut server, at, &mut feedbacks);
        }
        expected.push((seq, us(at - t0)));
    }
    let early = feedbacks.len();
    assert!(early >= 3, "{early} feedbacks before the period");
    assert!(feedbacks
        .iter()
        .all(|f| f.at < t0 + Duration::from_millis(100)));
    assert!(feedbacks.iter().all(|f| f.len > 1100), "sent when full");
    drain(&mut server, t0 + Duration::from_millis(100), &mut feedbacks);
    assert!(feedbacks.len() > early);
    let reported: Vec<_> = feedbacks.iter().flat_map(|f| f.statuses.iter()).collect();
    assert_eq!(reported.len(), expected.len());
    for (&(seq, arrival), &(expected_seq, actual)) in reported.into_iter().zip(&expected) {
        assert_eq!(seq, expected_seq);
        assert_arrival(seq, arrival.expect("received"), actual);
    }
}

#[test]
fn lost_packets_between_feedbacks_are_reported() {
    let t0 = Instant::now();
    let mut server = TransportCcServer::default();
    let mut feedbacks = Vec::new();
    // Every third packet lost, including right at feedback boundaries.
    let mut sent = 0u16;
    for i in 0..300u64 {
        let seq = i as u16;
        let at = t0 + Duration::from_millis(i);
        if seq % 3 != 1 {
            server.incoming_packet(seq, at, MEDIA_SSRC);
            sent += 1;
        }
        drain(&mut server, at, &mut feedbacks);
    }
    drain(&mut server, t0 + Duration::from_millis(400), &mut feedbacks);
    let reported: Vec<_> = feedbacks.iter().flat_map(|f| f.statuses.iter()).collect();
    // 0..=299 each once (299 is received: 299 % 3 == 2).
    assert_eq!(reported.len(), 300);
    for (i, &&(seq, arrival)) in reported.iter().enumerate() {
        assert_eq!(usize::from(seq), i);
        assert_eq!(arrival.is_some(), seq % 3 != 1, "seq {seq}");
    }
    assert_eq!(sent, 200);
    assert!(
        (server.packet_loss() - 1.0 / 3.0).abs() < 0.02,
        "{}",
        server.packet_loss()
    );
}

#[test]
fn poll_timeout_follows_the_period() {
    let t0 = Instant::now();
    let mut server = TransportCcServer::default();
    assert_eq!(server.poll_timeout(t0), None);
    server.incoming_packet(1, t0, MEDIA_SSRC);
    assert_eq!(
        server.poll_timeout(t0),
        Some(t0 + TRANSPORT_CC_FEEDBACK_SEND_INTERVAL)
    );
    let mut buf = Vec::new();
    assert!(!server.poll_feedback(t0 + Duration::from_millis(50), &mut buf));
    assert!(buf.is_empty());
    assert!(server.poll_feedback(t0 + Duration::from_millis(100), &mut buf));
    assert!(!buf.is_empty());
    assert_eq!(server.poll_timeout(t0 + Duration::from_millis(100)), None);

    // After a stall, the period restarts from now instead of bursting.
    buf.clear();
    let late = t0 + Duration::from_secs(3);
    server.incoming_packet(2, late, MEDIA_SSRC);
    assert!(server.poll_feedback(late, &mut buf));
    server.incoming_packet(3, late + Duration::from_millis(1), MEDIA_SSRC);
    assert_eq!(
        server.poll_timeout(late),
        Some(late + TRANSPORT_CC_FEEDBACK_SEND_INTERVAL)
    );
}

#[test]
fn reset_forgets_arrivals_but_keeps_counting_feedback() {
    let t0 = Instant::now();
    let mut server = TransportCcServer::default();
    let mut feedbacks = Vec::new();
    server.incoming_packet(100, t0, MEDIA_SSRC);
    drain(&mut server, t0 + Duration::from_millis(100), &mut feedbacks);
    server.incoming_packet(101, t0 + Duration::from_millis(150), MEDIA_SSRC);
    server.reset();
    assert_eq!(server.poll_timeout(t0 + Duration::from_millis(150)), None);
    server.incoming_packet(5000, t0 + Duration::from_millis(300), MEDIA_SSRC);
    drain(&mut server, t0 + Duration::from_millis(400), &mut feedbacks);
    assert_eq!(feedbacks.len(), 2);
    assert_eq!(feedbacks[1].fb_pkt_count, 1);
    assert_eq!(feedbacks[1].statuses.len(), 1);
    assert_arrival(5000, feedbacks[1].statuses[0].1.expect("received"), 300_000);
}

fn remb_bitrate(datagram: &[u8]) -> u64 {
    let parsed: Vec<_> = parse_compound(datagram).expect("framing").collect();
    match parsed.as_slice() {
        [Ok(RtcpPacket::Remb(remb))] => {
            assert!(remb.ssrcs.is_empty());
            remb.bitrate
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn limitation_remb_every_1500_ms_then_unlimited_ones() {
    let t0 = Instant::now();
    let mut server = TransportCcServer::default();
    let mut buf = Vec::new();
    assert!(!server.poll_remb(t0, &mut buf), "no limit, no REMB");
    assert_eq!(server.poll_timeout(t0), None);

    server.set_max_incoming_bitrate(1_000_000);
    assert_eq!(server.poll_timeout(t0), Some(t0));
    assert!(server.poll_remb(t0, &mut buf));
    assert_eq!(remb_bitrate(&buf), 1_000_000);
    buf.clear();
    assert!(!server.poll_remb(t0 + Duration::from_millis(1000), &mut buf));
    assert!(!server.poll_remb(t0 + Duration::from_millis(1500), &mut buf));
    let next = server
        .poll_timeout(t0 + Duration::from_millis(1000))
        .expect("scheduled");
    assert!(next > t0 + Duration::from_millis(1500) && next <= t0 + Duration::from_millis(1502));
    assert!(server.poll_remb(t0 + Duration::from_millis(1501), &mut buf));
    assert_eq!(remb_bitrate(&buf), 1_000_000);

    // Lifting the limit: four REMBs of 0, the first at once.
    let lifted = t0 + Duration::from_millis(2000);
    server.set_max_incoming_bitrate(0);
    let mut sent = Vec::new();
    let mut now = lifted;
    while now < lifted + Duration::from_secs(20) {
        buf.clear();
        if server.poll_remb(now, &mut buf) {
            assert_eq!(remb_bitrate(&buf), 0);
            sent.push(now - lifted);
        }
        now += Duration::from_millis(100);
    }
    assert_eq!(sent.len(), 4, "{sent:?}");
    assert_eq!(sent[0], Duration::ZERO);
    assert_eq!(server.poll_timeout(now), None);
}

/// Deterministic pseudo-random numbers.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_streams_report_every_packet_with_its_arrival() {
    for round in 0..20u64 {
        let mut rng = XorShift(0xdead_beef_0000_0001 + round * 7919);
        let t0 = Instant::now();
        let mut server = TransportCcServer::new(if round % 2 == 0 { 1200 } else { 300 });
        let max_len = if round % 2 == 0 { 1200 } else { 300 };
        let mut feedbacks = Vec::new();
        let mut arrivals: BTreeMap<u16, Vec<i64>> = BTreeMap::new();
        let start = rng.next() as u16;
        let mut walk: i64 = 1000;
        let mut now = t0;
        let mut first_arrival = None;
        for _ in 0..5000 {
            // Mostly forward with loss, some reordering and duplicates, rare big jumps.
            walk += match rng.below(100) {
                0 => 9000,
                1..=10 => -(rng.below(50) as i64),
                11..=15 => 0,
                _ => 1 + rng.below(3) as i64,
            };
            walk = walk.clamp(0, 60_000);
            now += match rng.below(1000) {
                0 => Duration::from_secs(10),
                1..=20 => Duration::from_millis(rng.below(300)),
                _ => Duration::from_micros(rng.below(3000)),
            };
            let seq = start.wrapping_add(walk as u16);
            server.incoming_packet(seq, now, MEDIA_SSRC);
            // The server's timeline starts at its first arrival.
            let epoch = *first_arrival.get_or_insert(now);
            arrivals.entry(seq).or_default().push(us(now - epoch));
            if rng.below(3) == 0 {
                let mut buf = Vec::new();
                while server.poll_feedback(now, &mut buf) {
                    assert!(buf.len() <= max_len, "{} > {max_len}", buf.len());
                    feedbacks.push(decode(&buf, now));
                    buf.clear();
                }
            }
        }
        drain(&mut server, now + Duration::from_secs(1), &mut feedbacks);

        let mut reported_received = std::collections::BTreeSet::new();
        for feedback in &feedbacks {
            for &(seq, arrival) in &feedback.statuses {
                let Some(decoded) = arrival else { continue };
                let sent = arrivals
                    .get(&seq)
                    .unwrap_or_else(|| panic!("seq {seq} never sent"));
                assert!(
                    sent.iter()
                        .any(|&actual| (0..250).contains(&(actual - decoded))),
                    "round {round} seq {seq}: decoded {decoded}, sent at {sent:?}"
                );
                reported_received.insert(seq);
            }
            assert!(feedback.longest_lost_run <= TRANSPORT_CC_MAX_MISSING_PACKETS);
        }
        let never: Vec<_> = arrivals
            .keys()
            .filter(|seq| !reported_received.contains(seq))
            .collect();
        assert!(never.is_empty(), "round {round}: never reported {never:?}");
        for (n, feedback) in feedbacks.iter().enumerate() {
            assert_eq!(feedback.fb_pkt_count, n as u8);
        }
    }
}
