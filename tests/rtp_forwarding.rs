//! RTP forwarding through a shard, with real SRTP on both sides: A publishes Opus-like and
//! VP8-like RTP through its send transport; B receives through its receive transport what its
//! consumers' parameters say. Key frame requests, pause/resume, rooms on two shards.

mod common;

use std::time::Duration;

use common::{fixture, join_peer, run, JoinedPeer, Server, WAIT};
use serde_json::{json, Value};
use shardcast_tools::peer::rtp::rtc_rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use shardcast_tools::peer::{
    rtp::rtcp, PeerTransport, PeerTransportOptions, RtpPacketBuilder, RtpView,
};

/// The browser's extension ids in the fixtures.
const MID: u8 = 4;
const ABS_SEND_TIME: u8 = 2;
const TRANSPORT_CC: u8 = 3;
const AUDIO_LEVEL: u8 = 1;

async fn connect(peer: &JoinedPeer, answer: &Value) -> PeerTransport {
    common::connect_peer_transport(peer, answer, PeerTransportOptions::default()).await
}

/// A publisher and a subscriber in one room, both transports connected; returns the producer
/// ids (audio, video) and B's consumers' data (by producer id).
struct Call {
    a: JoinedPeer,
    b: JoinedPeer,
    a_send: PeerTransport,
    b_recv: PeerTransport,
    audio: Value,
    video: Value,
}

fn video_fixture() -> Value {
    let mut video = fixture("produce-vp8-rtx");
    // The audio fixture already uses MID "0" on the same transport.
    video["rtpParameters"]["mid"] = json!("1");
    video
}

async fn new_consumer(b: &JoinedPeer, producer_id: &str) -> Value {
    b.client
        .wait_logged(WAIT, |e| {
            e.is_request("newConsumer") && e.data()["producerId"] == producer_id
        })
        .await
        .expect("newConsumer")
        .data()
        .clone()
}

async fn call(server: &Server, room: &str) -> Call {
    let a = join_peer(server, room, "alice", "Alice").await;
    let b = join_peer(server, room, "bob", "Bob").await;
    b.client.set_auto_respond(&["newConsumer"]);
    let a_send = connect(&a, &a.send_transport).await;
    let b_recv = connect(&b, &b.recv_transport).await;
    let audio_id = a.produce("produce-audio").await.expect("audio");
    let mut video = video_fixture();
    video["transportId"] = a.send_transport["id"].clone();
    let video_id = a.client.request("produce", video).await.expect("video")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let audio = new_consumer(&b, &audio_id).await;
    let video = new_consumer(&b, &video_id).await;
    // Resumed once the answer arrived; the score follows the resume.
    for consumer in [&audio, &video] {
        b.client
            .wait_logged(WAIT, |e| {
                e.is_notification("consumerScore") && e.data()["consumerId"] == consumer["id"]
            })
            .await
            .expect("consumerScore after resume");
    }
    Call {
        a,
        b,
        a_send,
        b_recv,
        audio,
        video,
    }
}

const VIDEO_SSRC: u32 = 106197398;
const AUDIO_SSRC: u32 = 1944179271;

/// A VP8 packet: payload descriptor (X with PictureID and TID), then a payload header whose P bit
/// (0 = key frame) is set as asked, then data.
fn vp8(seq: u16, key_frame: bool, marker: bool) -> Vec<u8> {
    let mut payload = vec![
        0x90,
        0x80 | 0x20,
        0x80 | (seq >> 8) as u8 & 0x7f,
        seq as u8,
        0x00,
    ];
    payload.push(if key_frame { 0x00 } else { 0x01 });
    payload.extend((0..200u32).map(|i| (i as u8) ^ (seq as u8)));
    RtpPacketBuilder::new(VIDEO_SSRC, 96, seq, 90 * seq as u32)
        .marker(marker)
        .mid(MID, "1")
        .abs_send_time(ABS_SEND_TIME, 0x123456)
        .transport_wide_seq(TRANSPORT_CC, seq)
        .payload(&payload)
        .build()
}

fn opus(seq: u16) -> Vec<u8> {
    RtpPacketBuilder::new(AUDIO_SSRC, 111, seq, 960 * seq as u32)
        .mid(MID, "0")
        .audio_level(AUDIO_LEVEL, true, 30)
        .transport_wide_seq(TRANSPORT_CC, 10_000 + seq)
        .payload(&[seq as u8; 80])
        .build()
}

fn ext_id(consumer: &Value, uri: &str) -> Option<u8> {
    consumer["rtpParameters"]["headerExtensions"]
        .as_array()?
        .iter()
        .find(|e| e["uri"] == uri)
        .and_then(|e| e["id"].as_u64())
        .map(|id| id as u8)
}

/// Receives RTP until `count` packets of `ssrc` arrived.
async fn receive(transport: &PeerTransport, ssrc: u32, count: usize) -> Vec<RtpView> {
    let mut got = Vec::new();
    while got.len() < count {
        let packet = transport
            .recv_rtp(WAIT)
            .await
            .unwrap_or_else(|| panic!("only {} of {count} packets arrived", got.len()));
        if let Some(view) = RtpView::parse(&packet) {
            if view.ssrc == ssrc {
                got.push(view);
            }
        }
    }
    got
}

/// Receives RTP until each `(ssrc, count)` is complete; packets per SSRC, in that order.
async fn receive_streams(transport: &PeerTransport, wanted: &[(u32, usize)]) -> Vec<Vec<RtpView>> {
    let mut got: Vec<Vec<RtpView>> = wanted.iter().map(|_| Vec::new()).collect();
    while wanted.iter().zip(&got).any(|((_, n), g)| g.len() < *n) {
        let packet = transport.recv_rtp(WAIT).await.unwrap_or_else(|| {
            panic!(
                "missing packets: {:?}",
                got.iter().map(Vec::len).collect::<Vec<_>>()
            )
        });
        if let Some(view) = RtpView::parse(&packet) {
            if let Some(i) = wanted.iter().position(|(ssrc, _)| *ssrc == view.ssrc) {
                got[i].push(view);
            }
        }
    }
    got
}

#[test]
fn publisher_media_reaches_the_subscriber_as_its_consumers_say() {
    let server = Server::start(&["--shards", "1", "--no-tls"]);
    run(|| async {
        let c = call(&server, "fwd").await;
        let video_ssrc = c.video["rtpParameters"]["encodings"][0]["ssrc"]
            .as_u64()
            .unwrap() as u32;
        let audio_ssrc = c.audio["rtpParameters"]["encodings"][0]["ssrc"]
            .as_u64()
            .unwrap() as u32;
        let mut sent_video = Vec::new();
        for seq in 1000..1040u16 {
            let packet = vp8(seq, seq == 1000, seq % 4 == 3);
            c.a_send.send_rtp(&packet).await.unwrap();
            sent_video.push(RtpView::parse(&packet).unwrap());
            c.a_send.send_rtp(&opus(seq)).await.unwrap();
        }
        let mut got = receive_streams(&c.b_recv, &[(video_ssrc, 40), (audio_ssrc, 40)]).await;
        let audio = got.pop().unwrap();
        let video = got.pop().unwrap();
        let mid_id = ext_id(&c.video, "urn:ietf:params:rtp-hdrext:sdes:mid").unwrap();
        let tcc_id = ext_id(
            &c.video,
            "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
        )
        .unwrap();
        for (i, (got, sent)) in video.iter().zip(&sent_video).enumerate() {
            assert_eq!(
                got.payload, sent.payload,
                "payload of packet {i} is byte-identical"
            );
            assert_eq!(got.payload_type, 101, "router PT of VP8");
            assert_eq!(got.marker, sent.marker);
            assert_eq!(
                got.timestamp.wrapping_sub(video[0].timestamp),
                sent.timestamp - sent_video[0].timestamp
            );
            assert_eq!(
                got.sequence_number,
                video[0].sequence_number.wrapping_add(i as u16),
                "continuous"
            );
            assert_eq!(
                got.extension_str(mid_id),
                c.video["rtpParameters"]["mid"].as_str()
            );
            assert!(got.transport_wide_seq(tcc_id).is_some());
            // Only extensions of the consumer's parameters, with its ids.
            for (id, _) in &got.extensions {
                assert!(
                    c.video["rtpParameters"]["headerExtensions"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|e| e["id"] == *id),
                    "ext {id}"
                );
            }
        }
        let level_id = ext_id(&c.audio, "urn:ietf:params:rtp-hdrext:ssrc-audio-level").unwrap();
        for (i, got) in audio.iter().enumerate() {
            assert_eq!(got.payload_type, 100, "router PT of Opus");
            assert_eq!(got.payload, vec![(1000 + i as u16) as u8; 80]);
            assert_eq!(
                got.extension(level_id),
                Some(&[0x80 | 30][..]),
                "audio level kept, renumbered"
            );
            assert_eq!(
                got.extension_str(mid_id),
                c.audio["rtpParameters"]["mid"].as_str()
            );
        }
        // The server counted what it sent.
        let stats =
            c.b.client
                .request("getConsumerStats", json!({"consumerId": c.video["id"]}))
                .await
                .unwrap();
        assert_eq!(stats[0]["packetCount"], 40);
        assert_eq!(stats[1]["type"], "inbound-rtp");
        assert_eq!(stats[1]["ssrc"], VIDEO_SSRC);
        let producer_stats =
            c.a.client
                .request(
                    "getProducerStats",
                    json!({"producerId": c.video["producerId"]}),
                )
                .await
                .unwrap();
        assert_eq!(producer_stats[0]["packetCount"], 40);
        // Transport counters and bitrates in mediasoup's shape.
        let stats = |peer: &JoinedPeer, transport: &Value| {
            let client = peer.client.clone();
            let id = transport["id"].clone();
            async move {
                client
                    .request("getTransportStats", json!({"transportId": id}))
                    .await
                    .unwrap()[0]
                    .clone()
            }
        };
        let a_stats = stats(&c.a, &c.a.send_transport).await;
        assert!(a_stats["rtpBytesReceived"].as_u64().unwrap() > 40 * 200);
        assert!(a_stats["rtpRecvBitrate"].as_u64().unwrap() > 0);
        let b_stats = stats(&c.b, &c.b.recv_transport).await;
        assert!(b_stats["rtpBytesSent"].as_u64().unwrap() > 40 * 200);
        assert!(b_stats["rtpSendBitrate"].as_u64().unwrap() > 0);
    });
}

/// Video starts on a key frame: until one arrives the consumer asks the publisher (PLI) and
/// forwards nothing; B's own PLI is forwarded upstream as a key frame request too.
#[test]
fn key_frames_are_requested_upstream() {
    let server = Server::start(&["--shards", "1", "--no-tls"]);
    run(|| async {
        let c = call(&server, "pli").await;
        let video_ssrc = c.video["rtpParameters"]["encodings"][0]["ssrc"]
            .as_u64()
            .unwrap() as u32;
        // Delta frames only: nothing forwarded, a PLI for A's stream instead.
        for seq in 1..=3u16 {
            c.a_send.send_rtp(&vp8(seq, false, false)).await.unwrap();
        }
        let pli = wait_pli(&c.a_send).await;
        assert_eq!(pli.media_ssrc, VIDEO_SSRC);
        assert!(c
            .b_recv
            .recv_rtp(Duration::from_millis(300))
            .await
            .is_none_or(|p| RtpView::parse(&p).is_some_and(|v| v.ssrc != video_ssrc)));
        // The key frame starts the stream.
        c.a_send.send_rtp(&vp8(4, true, true)).await.unwrap();
        let got = receive(&c.b_recv, video_ssrc, 1).await;
        assert_eq!(
            got[0].payload[5] & 0x01,
            0,
            "the first forwarded packet is the key frame"
        );
        // B's PLI reaches A (after the rate limit interval).
        glommio::timer::sleep(Duration::from_millis(350)).await;
        c.b_recv.send_rtcp(&rtcp::pli(1, video_ssrc)).await.unwrap();
        let pli = wait_pli(&c.a_send).await;
        assert_eq!(pli.media_ssrc, VIDEO_SSRC);
    });
}

async fn wait_pli(transport: &PeerTransport) -> PictureLossIndication {
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        if let Some(packet) = transport.recv_rtcp(WAIT).await {
            if let Some(pli) = rtcp::find::<PictureLossIndication>(&packet).pop() {
                return pli;
            }
        }
    }
    panic!("no PLI arrived");
}

/// Pause/resume of the consumer and of the producer stop and restart the flow, with sequence
/// numbers continuing without a gap.
#[test]
fn pause_and_resume_stop_the_flow_and_keep_sequence_numbers_continuous() {
    let server = Server::start(&["--shards", "1", "--no-tls"]);
    run(|| async {
        let c = call(&server, "pause").await;
        let audio_ssrc = c.audio["rtpParameters"]["encodings"][0]["ssrc"]
            .as_u64()
            .unwrap() as u32;
        let mut seq = 0u16;
        for _ in 0..5 {
            seq += 1;
            c.a_send.send_rtp(&opus(seq)).await.unwrap();
        }
        let mut last = receive(&c.b_recv, audio_ssrc, 5).await.pop().unwrap();
        for (who, method, resume, data) in [
            (
                &c.b,
                "pauseConsumer",
                "resumeConsumer",
                json!({"consumerId": c.audio["id"]}),
            ),
            (
                &c.a,
                "pauseProducer",
                "resumeProducer",
                json!({"producerId": c.audio["producerId"]}),
            ),
        ] {
            who.client.request(method, data.clone()).await.unwrap();
            for _ in 0..5 {
                seq += 1;
                c.a_send.send_rtp(&opus(seq)).await.unwrap();
            }
            who.client.request(resume, data).await.unwrap();
            let first_after = seq + 1;
            for _ in 0..5 {
                seq += 1;
                c.a_send.send_rtp(&opus(seq)).await.unwrap();
            }
            let after = receive(&c.b_recv, audio_ssrc, 5).await;
            assert_eq!(
                after[0].payload[0], first_after as u8,
                "{method}: paused packets were dropped"
            );
            assert_eq!(
                after[0].sequence_number,
                last.sequence_number.wrapping_add(1),
                "{method}: no gap in the consumer's sequence numbers"
            );
            last = after.last().unwrap().clone();
        }
        let stats =
            c.b.client
                .request("getConsumerStats", json!({"consumerId": c.audio["id"]}))
                .await
                .unwrap();
        assert_eq!(stats[0]["packetCount"], 15, "5 before, 5 after each resume");
    });
}

const RID: u8 = 10;

/// A VP8 packet of simulcast layer `layer` (RID r0..r2, no SSRC announced, as Chrome sends it);
/// the payload's last byte names the layer.
fn simulcast_vp8(layer: u8, seq: u16, key_frame: bool, tid: u8) -> Vec<u8> {
    // X; I, L and T (PictureID, TL0PICIDX, TID as Chrome sends with temporal layers).
    let mut payload = vec![
        0x90,
        0x80 | 0x40 | 0x20,
        0x80,
        seq as u8,
        seq as u8,
        tid << 6,
    ];
    payload.push(if key_frame { 0x00 } else { 0x01 });
    payload.extend([0xEE; 100]);
    payload.push(layer);
    RtpPacketBuilder::new(0x5000_0000 + layer as u32, 96, seq, 90 * seq as u32)
        .mid(MID, "1")
        .rid(RID, &format!("r{layer}"))
        .transport_wide_seq(TRANSPORT_CC, seq.wrapping_mul(3).wrapping_add(layer as u16))
        .payload(&payload)
        .build()
}

/// A publishes the trace's three-RID simulcast webcam, B consumes it; returns both peers (a
/// dropped peer leaves), both connected transports and B's (resumed) consumer.
async fn simulcast_call(
    server: &Server,
    room: &str,
) -> (
    (JoinedPeer, JoinedPeer),
    PeerTransport,
    PeerTransport,
    Value,
) {
    let a = join_peer(server, room, "alice", "Alice").await;
    let b = join_peer(server, room, "bob", "Bob").await;
    b.client.set_auto_respond(&["newConsumer"]);
    let a_send = connect(&a, &a.send_transport).await;
    let b_recv = connect(&b, &b.recv_transport).await;
    let producer = a.produce("produce-video-simulcast").await.unwrap();
    let consumer = new_consumer(&b, &producer).await;
    b.client
        .wait_logged(WAIT, |e| {
            e.is_notification("consumerScore") && e.data()["consumerId"] == consumer["id"]
        })
        .await
        .expect("resumed");
    ((a, b), a_send, b_recv, consumer)
}

/// A publishes three RID layers without SSRCs; B's simulcast consumer forwards only the preferred
/// one as one continuous stream, switches at a key frame of the new layer on
/// setConsumerPreferredLayers, drops temporal layers above the preferred one, and reports
/// consumerLayersChanged.
#[test]
fn simulcast_consumer_forwards_one_layer_and_switches_at_a_key_frame() {
    let server = Server::start(&["--shards", "1", "--no-tls"]);
    run(|| async {
        let ((_a, b), a_send, b_recv, consumer) = simulcast_call(&server, "simulcast").await;
        assert_eq!(consumer["type"], "simulcast");
        let ssrc = consumer["rtpParameters"]["encodings"][0]["ssrc"]
            .as_u64()
            .unwrap() as u32;

        // Every layer: a key frame then deltas; only r2 (the highest) reaches B.
        let mut seq = 100u16;
        for round in 0..10 {
            for layer in (0..3u8).rev() {
                a_send
                    .send_rtp(&simulcast_vp8(layer, seq, round == 0, 0))
                    .await
                    .unwrap();
            }
            seq += 1;
        }
        let got = receive(&b_recv, ssrc, 10).await;
        assert!(
            got.iter().all(|p| *p.payload.last().unwrap() == 2),
            "only layer 2"
        );
        let layers = b
            .client
            .wait_logged(WAIT, |e| e.is_notification("consumerLayersChanged"))
            .await
            .expect("consumerLayersChanged");
        assert_eq!(layers.data()["spatialLayer"], 2);

        // Prefer layer 0: nothing changes until r0 sends a key frame, then r0 only, continuing
        // the sequence numbers without a gap or a jump.
        b.client
            .request(
                "setConsumerPreferredLayers",
                json!({"consumerId": consumer["id"], "spatialLayer": 0, "temporalLayer": 0}),
            )
            .await
            .unwrap();
        for round in 0..6 {
            for layer in 0..3u8 {
                let key = layer == 0 && round == 3;
                // Layer 0 sends TID 1 on odd rounds: above the preferred temporal layer 0.
                let tid = if layer == 0 && round % 2 == 1 && round > 3 {
                    1
                } else {
                    0
                };
                a_send
                    .send_rtp(&simulcast_vp8(layer, seq, key, tid))
                    .await
                    .unwrap();
            }
            seq += 1;
        }
        // Rounds 0..=2 still layer 2 (3 packets), then layer 0 from its key frame: rounds 3 and 4
        // (round 5 is TID 1, dropped).
        let got2 = receive(&b_recv, ssrc, 5).await;
        let layers_seen: Vec<u8> = got2.iter().map(|p| *p.payload.last().unwrap()).collect();
        assert_eq!(layers_seen, [2, 2, 2, 0, 0]);
        let all: Vec<u16> = got.iter().chain(&got2).map(|p| p.sequence_number).collect();
        for pair in all.windows(2) {
            assert_eq!(
                pair[1],
                pair[0].wrapping_add(1),
                "continuous sequence numbers: {all:?}"
            );
        }
        // VP8 PictureIDs continue across the switch too (one picture per packet here).
        let pids: Vec<u16> = got
            .iter()
            .chain(&got2)
            .map(|p| u16::from_be_bytes([p.payload[2] & 0x7f, p.payload[3]]))
            .collect();
        for pair in pids.windows(2) {
            assert_eq!(
                pair[1],
                (pair[0] + 1) & 0x7fff,
                "continuous PictureIDs: {pids:?}"
            );
        }
        let ts: Vec<u32> = got.iter().chain(&got2).map(|p| p.timestamp).collect();
        for pair in ts.windows(2) {
            let step = pair[1].wrapping_sub(pair[0]);
            assert!(
                step > 0 && step < 90_000,
                "timestamps move forward smoothly: {ts:?}"
            );
        }
        b.client
            .wait_logged(WAIT, |e| {
                e.is_notification("consumerLayersChanged") && e.data()["spatialLayer"] == 0
            })
            .await
            .expect("consumerLayersChanged to layer 0");
        assert!(
            b_recv.recv_rtp(Duration::from_millis(200)).await.is_none(),
            "the TID 1 packet was dropped"
        );
    });
}

/// The publisher's transport gets transport-cc feedback acknowledging the transport-wide
/// sequence numbers it sent.
#[test]
fn transport_cc_feedback_acknowledges_what_the_publisher_sent() {
    let server = Server::start(&["--shards", "1", "--no-tls"]);
    run(|| async {
        let c = call(&server, "tcc").await;
        // vp8() stamps transport-wide seq = RTP seq; opus() 10000 + seq.
        let mut sent = std::collections::BTreeSet::new();
        for seq in 1..=30u16 {
            c.a_send.send_rtp(&vp8(seq, seq == 1, false)).await.unwrap();
            c.a_send.send_rtp(&opus(seq)).await.unwrap();
            sent.insert(seq);
            sent.insert(10_000 + seq);
        }
        let mut acked = std::collections::BTreeSet::new();
        let deadline = std::time::Instant::now() + WAIT;
        while !sent.iter().all(|s| acked.contains(s)) {
            assert!(
                std::time::Instant::now() < deadline,
                "acked so far: {acked:?}"
            );
            if let Some(packet) = c.a_send.recv_rtcp(WAIT).await {
                for feedback in rtcp::transport_cc(&packet) {
                    acked.extend(feedback.received());
                }
            }
        }
        assert!(
            acked.iter().all(|s| sent.contains(s)),
            "only sequence numbers that were sent"
        );
    });
}

use shardcast_tools::peer::rtp::rtc_rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;

const VIDEO_RTX_SSRC: u32 = 2196894209;

/// NACKed sequence numbers in an RTCP datagram.
fn nacked(packet: &[u8]) -> Vec<u16> {
    rtcp::find::<TransportLayerNack>(packet)
        .iter()
        .flat_map(|n| n.nacks.iter().flat_map(|pair| pair.packet_list()))
        .collect()
}

/// A gap on the publisher's side makes the server NACK it; the RTX answer repairs the stream
/// for the subscriber. A gap on the subscriber's side is answered from the server's buffer, as
/// RTX with the consumer's RTX SSRC and payload type.
#[test]
fn nacks_are_sent_upstream_and_answered_downstream() {
    let server = Server::start(&["--shards", "1", "--no-tls"]);
    run(|| async {
        let c = call(&server, "nack").await;
        let video_ssrc = c.video["rtpParameters"]["encodings"][0]["ssrc"]
            .as_u64()
            .unwrap() as u32;
        let rtx_ssrc = c.video["rtpParameters"]["encodings"][0]["rtx"]["ssrc"]
            .as_u64()
            .unwrap() as u32;
        // Seq 3 "lost" on the way in.
        for seq in [1u16, 2, 4, 5] {
            c.a_send.send_rtp(&vp8(seq, seq == 1, false)).await.unwrap();
        }
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            assert!(std::time::Instant::now() < deadline, "no NACK for seq 3");
            if let Some(packet) = c.a_send.recv_rtcp(WAIT).await {
                if nacked(&packet).contains(&3) {
                    break;
                }
            }
        }
        let got = receive(&c.b_recv, video_ssrc, 4).await;
        let base = got[0].sequence_number;
        // A answers with RTX: OSN 3, then the original payload.
        let original = RtpView::parse(&vp8(3, false, false)).unwrap();
        let mut rtx_payload = 3u16.to_be_bytes().to_vec();
        rtx_payload.extend_from_slice(&original.payload);
        let rtx = RtpPacketBuilder::new(VIDEO_RTX_SSRC, 97, 500, original.timestamp)
            .mid(MID, "1")
            .payload(&rtx_payload)
            .build();
        c.a_send.send_rtp(&rtx).await.unwrap();
        let repaired = receive(&c.b_recv, video_ssrc, 1).await.remove(0);
        assert_eq!(
            repaired.payload, original.payload,
            "the repaired packet reaches B"
        );
        assert_eq!(
            repaired.sequence_number,
            base.wrapping_add(2),
            "in its place"
        );
        let stats =
            c.a.client
                .request(
                    "getProducerStats",
                    json!({"producerId": c.video["producerId"]}),
                )
                .await
                .unwrap();
        assert!(stats[0]["nackCount"].as_u64().unwrap() >= 1);
        assert_eq!(stats[0]["packetsRepaired"], 1);

        // B lost the packet it got as `base + 1` (A's seq 2): answered from the buffer.
        let lost = base.wrapping_add(1);
        c.b_recv
            .send_rtcp(&rtcp::nack(7, video_ssrc, &[lost]))
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + WAIT;
        let resent = loop {
            assert!(std::time::Instant::now() < deadline, "no retransmission");
            let packet = c.b_recv.recv_rtp(WAIT).await.expect("a packet");
            let view = RtpView::parse(&packet).unwrap();
            if view.ssrc == rtx_ssrc {
                break view;
            }
        };
        assert_eq!(resent.payload_type, 102, "the router's RTX payload type");
        assert_eq!(
            u16::from_be_bytes([resent.payload[0], resent.payload[1]]),
            lost,
            "OSN"
        );
        assert_eq!(
            &resent.payload[2..],
            &got[1].payload[..],
            "the original payload"
        );
        let stats =
            c.b.client
                .request("getConsumerStats", json!({"consumerId": c.video["id"]}))
                .await
                .unwrap();
        assert_eq!(stats[0]["nackCount"], 1);
        assert_eq!(stats[0]["packetsRetransmitted"], 1);
    });
}

/// A publisher's sender report gives its stream a score: producerScore reaches the owner.
#[test]
fn producer_score_is_notified_after_a_sender_report() {
    let server = Server::start(&["--shards", "1", "--no-tls"]);
    run(|| async {
        let c = call(&server, "score").await;
        for seq in 1..=50u16 {
            c.a_send.send_rtp(&vp8(seq, seq == 1, false)).await.unwrap();
        }
        c.a_send
            .send_rtcp(&rtcp::sender_report(
                VIDEO_SSRC,
                1 << 32,
                90 * 50,
                50,
                10_000,
            ))
            .await
            .unwrap();
        let event =
            c.a.client
                .wait_logged(WAIT, |e| {
                    e.is_notification("producerScore")
                        && e.data()["producerId"] == c.video["producerId"]
                })
                .await
                .expect("producerScore");
        let score = &event.data()["score"][0];
        assert_eq!(score["encodingIdx"], 0);
        assert_eq!(score["ssrc"], VIDEO_SSRC);
        assert!(score["score"].as_u64().unwrap() <= 10);
    });
}

/// Malformed RTP/RTCP after decryption (unknown SSRC, RTCP with a bad length, NACK for unknown
/// SSRCs) is dropped and counted; forwarding goes on.
#[test]
fn malformed_rtp_and_rtcp_are_dropped_and_counted() {
    let server = Server::start(&["--shards", "1", "--no-tls"]);
    run(|| async {
        let c = call(&server, "malformed").await;
        let video_ssrc = c.video["rtpParameters"]["encodings"][0]["ssrc"]
            .as_u64()
            .unwrap() as u32;
        // RTP of no producer (unknown SSRC, no MID).
        c.a_send
            .send_rtp(
                &RtpPacketBuilder::new(0xdead_beef, 96, 1, 1)
                    .payload(&[1; 20])
                    .build(),
            )
            .await
            .unwrap();
        // RTCP whose length field overruns the datagram.
        c.a_send
            .send_rtcp(&[0x80, 201, 0, 40, 0, 0, 0, 1])
            .await
            .unwrap();
        // A well-formed NACK for an SSRC nobody sends.
        c.b_recv
            .send_rtcp(&rtcp::nack(7, 0x0bad_0bad, &[1, 2, 3]))
            .await
            .unwrap();
        // RTP whose header extension runs past the packet (X set, length 200 words); the peer
        // may refuse to protect it, in which case it never reaches the server.
        let mut overrun = RtpPacketBuilder::new(VIDEO_SSRC, 96, 2, 2)
            .payload(&[0; 8])
            .build();
        overrun[0] |= 0x10;
        overrun.splice(12..12, [0xBE, 0xDE, 0x00, 0xC8]);
        let _ = c.a_send.send_rtp(&overrun).await;

        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let (status, _, body) = shardcast_tools::http::raw_http(
                server.addr(),
                false,
                "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
            )
            .await
            .unwrap();
            assert_eq!(status, 200);
            let body = String::from_utf8(body).unwrap();
            let count = |reason: &str| {
                body.lines()
                    .find(|l| l.contains(&format!("reason=\"{reason}\"")))
                    .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            if count("rtp_unknown_stream") >= 1 && count("rtcp_malformed") >= 1 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "drops not counted:\n{body}"
            );
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
        // Media still flows.
        c.a_send.send_rtp(&vp8(10, true, true)).await.unwrap();
        c.a_send.send_rtp(&vp8(11, false, true)).await.unwrap();
        let got = receive(&c.b_recv, video_ssrc, 2).await;
        assert_eq!(
            got[1].sequence_number,
            got[0].sequence_number.wrapping_add(1)
        );
        assert!(server.log().contains("shardcast ready"));
    });
}

/// Three rooms on two shards at once, each with its own media.
#[test]
fn three_rooms_on_two_shards_forward_their_own_media() {
    let server = Server::start(&["--shards", "2", "--no-tls"]);
    run(|| async {
        let mut calls = Vec::new();
        for room in ["m1", "m2", "m3"] {
            calls.push(call(&server, room).await);
        }
        let ports: Vec<u64> = calls
            .iter()
            .map(|c| {
                c.a.send_transport["iceCandidates"][0]["port"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        let base = server.rtc_port() as u64;
        assert!(
            ports.contains(&base) && ports.contains(&(base + 1)),
            "{ports:?}"
        );
        for (i, c) in calls.iter().enumerate() {
            c.a_send.send_rtp(&opus(100 + i as u16)).await.unwrap();
        }
        for (i, c) in calls.iter().enumerate() {
            let ssrc = c.audio["rtpParameters"]["encodings"][0]["ssrc"]
                .as_u64()
                .unwrap() as u32;
            let got = receive(&c.b_recv, ssrc, 1).await;
            assert_eq!(
                got[0].payload[0],
                (100 + i as u16) as u8,
                "room {i} got its own packet"
            );
        }
    });
}

/// The room's audio level observer: the loudest producer every 800 ms as `activeSpeaker` to
/// every joined peer, then `{peerId: null}` once when everyone is quiet.
#[test]
fn active_speaker_follows_audio_levels() {
    let server = Server::start(&["--shards", "1", "--no-tls"]);
    run(|| async {
        let c = call(&server, "speaker").await;
        // opus() carries audio level 30, i.e. -30 dBov.
        for seq in 1..=40u16 {
            c.a_send.send_rtp(&opus(seq)).await.unwrap();
        }
        for peer in [&c.a, &c.b] {
            let event = peer
                .client
                .wait_logged(WAIT, |e| {
                    e.is_notification("activeSpeaker") && e.data()["peerId"] == "alice"
                })
                .await
                .expect("activeSpeaker for alice");
            assert_eq!(event.data()["volume"], -30);
        }
        // Nothing more is sent: silence follows.
        c.b.client
            .wait_logged(Duration::from_secs(5), |e| {
                e.is_notification("activeSpeaker") && e.data()["peerId"].is_null()
            })
            .await
            .expect("activeSpeaker silence");
    });
}

/// Browsers often hold the top simulcast layer back: the consumer then forwards the highest
/// layer that is arriving, and moves up once the top one shows up with a key frame.
#[test]
fn simulcast_consumer_uses_the_highest_layer_that_arrives() {
    let server = Server::start(&["--shards", "1", "--no-tls"]);
    run(|| async {
        let (_peers, a_send, b_recv, consumer) = simulcast_call(&server, "held").await;
        let ssrc = consumer["rtpParameters"]["encodings"][0]["ssrc"]
            .as_u64()
            .unwrap() as u32;
        let mut seq = 10u16;
        // Only r0 and r1 arrive.
        for round in 0..5 {
            for layer in (0..2u8).rev() {
                a_send
                    .send_rtp(&simulcast_vp8(layer, seq, round == 0, 0))
                    .await
                    .unwrap();
            }
            seq += 1;
        }
        let got = receive(&b_recv, ssrc, 3).await;
        assert!(
            got.iter().all(|p| *p.payload.last().unwrap() == 1),
            "layer 1, the highest arriving"
        );
        // r2 appears: a key frame of it is asked for and the consumer moves up on it.
        for round in 0..4 {
            for layer in (0..3u8).rev() {
                a_send
                    .send_rtp(&simulcast_vp8(layer, seq, layer == 2 && round == 1, 0))
                    .await
                    .unwrap();
            }
            seq += 1;
        }
        let got = receive(&b_recv, ssrc, 5).await;
        let layers: Vec<u8> = got.iter().map(|p| *p.payload.last().unwrap()).collect();
        assert_eq!(layers.last(), Some(&2), "moved up to layer 2: {layers:?}");
    });
}
