//! End-to-end tests of the negotiation against a real mediasoup 3.22 session
//! (`testdata/trace-2peers.json`, copied from the shared reference trace) and the user's
//! example, plus error cases and a no-panic fuzz over mutated inputs.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::*;

const TRACE: &str = include_str!("testdata/trace-2peers.json");
const USER_VP8: &str = include_str!("testdata/user-notes-vp8-produce.json");

const SSRC_RANGE: std::ops::RangeInclusive<u32> = 100_000_000..=999_999_999;

fn trace() -> Value {
    serde_json::from_str(TRACE).unwrap()
}

fn router_caps() -> RtpCapabilities {
    generate_router_rtp_capabilities(&demo_media_codecs()).unwrap()
}

fn pt_map(mapping: &RtpMapping) -> Vec<(u8, u8)> {
    mapping
        .codecs
        .iter()
        .map(|c| (c.payload_type, c.mapped_payload_type))
        .collect()
}

/// The whole `produce` → `newConsumer` pipeline for one producer and one consuming peer.
fn negotiate(
    kind: MediaKind,
    produce: &Value,
    consumer_caps: &RtpCapabilities,
) -> (RtpParameters, RtpMapping, RtpParameters, RtpParameters) {
    let router = router_caps();
    let params = parse_rtp_parameters(produce).unwrap();
    let mapping = get_producer_rtp_parameters_mapping(&params, &router).unwrap();
    let consumable = get_consumable_rtp_parameters(kind, &params, &router, &mapping);
    assert!(can_consume(&consumable, consumer_caps).unwrap());
    let consumer = get_consumer_rtp_parameters(&consumable, consumer_caps, false, true).unwrap();
    (params, mapping, consumable, consumer)
}

/// `got` with the values mediasoup picks at random or the transport assigns (ssrc, rtx ssrc,
/// mid, cname) taken from `want`, after checking their shape.
fn align_random_fields(got: &RtpParameters, want: &Value) -> Value {
    let enc = &got.encodings[0];
    let ssrc = enc.ssrc.unwrap();
    assert!(SSRC_RANGE.contains(&ssrc));
    assert_eq!(
        enc.rtx.map(|r| r.ssrc),
        want["encodings"][0]["rtx"]["ssrc"]
            .as_u64()
            .map(|_| ssrc + 1)
    );
    assert_eq!(got.mid, None, "mid is the transport's business");

    let mut got = serde_json::to_value(got).unwrap();
    got["encodings"][0]["ssrc"] = want["encodings"][0]["ssrc"].clone();
    if got["encodings"][0].get("rtx").is_some() {
        got["encodings"][0]["rtx"]["ssrc"] = want["encodings"][0]["rtx"]["ssrc"].clone();
    }
    got["mid"] = want["mid"].clone();
    got["rtcp"]["cname"] = want["rtcp"]["cname"].clone();
    got
}

#[test]
fn trace_consumers_match_mediasoup() {
    let trace = trace();
    let peers = trace["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 2);
    for peer in peers {
        let caps = parse_rtp_capabilities(&peer["consumerRtpCapabilities"]).unwrap();

        // Audio: Chrome's opus 111 → router 100, no RTX.
        let want = &peer["audioConsumer"]["rtpParameters"];
        let (params, mapping, consumable, got) =
            negotiate(MediaKind::Audio, &peer["audioProduce"], &caps);
        assert_eq!(pt_map(&mapping), [(111, 100)]);
        assert_eq!(mapping.encodings.len(), 1);
        assert_eq!(mapping.encodings[0].ssrc, params.encodings[0].ssrc);
        assert!(SSRC_RANGE.contains(&mapping.encodings[0].mapped_ssrc));
        assert_eq!(
            consumable.encodings[0].ssrc,
            Some(mapping.encodings[0].mapped_ssrc)
        );
        assert_eq!(producer_type(&params), ProducerType::Simple);
        assert_eq!(
            producer_type(&params).as_str(),
            peer["audioConsumer"]["type"]
        );
        assert_eq!(got.codecs.len(), 1);
        assert_eq!(got.codecs[0].payload_type, 100);
        assert_eq!(got.codecs[0].rtcp_feedback, [RtcpFeedback::new("nack", "")]);
        let ids: Vec<u8> = got.header_extensions.iter().map(|e| e.id).collect();
        assert_eq!(ids, [1, 4, 6, 11]);
        assert!(got.encodings[0].rtx.is_none());
        assert_eq!(align_random_fields(&got, want), *want);

        // Video: rid simulcast r0/r1/r2 (no SSRCs), VP8 96/97 → router 101/102.
        let want = &peer["videoConsumer"]["rtpParameters"];
        let (params, mapping, consumable, got) =
            negotiate(MediaKind::Video, &peer["videoProduce"], &caps);
        assert_eq!(params.rtcp.cname.as_deref(), Some(""));
        assert_eq!(pt_map(&mapping), [(96, 101), (97, 102)]);
        let rids: Vec<_> = mapping.encodings.iter().map(|e| e.rid.as_deref()).collect();
        assert_eq!(rids, [Some("r0"), Some("r1"), Some("r2")]);
        let base = mapping.encodings[0].mapped_ssrc;
        for (i, e) in mapping.encodings.iter().enumerate() {
            assert_eq!(e.ssrc, None);
            assert_eq!(e.scalability_mode.as_deref(), Some("L1T3"));
            assert_eq!(e.mapped_ssrc, base + i as u32);
        }
        assert!(consumable.encodings.iter().all(|e| e.rid.is_none()));
        assert_eq!(producer_type(&params), ProducerType::Simulcast);
        assert_eq!(
            producer_type(&params).as_str(),
            peer["videoConsumer"]["type"]
        );
        let pts: Vec<u8> = got.codecs.iter().map(|c| c.payload_type).collect();
        assert_eq!(pts, [101, 102]);
        assert_eq!(
            got.codecs[0].rtcp_feedback,
            [
                RtcpFeedback::new("transport-cc", ""),
                RtcpFeedback::new("ccm", "fir"),
                RtcpFeedback::new("nack", ""),
                RtcpFeedback::new("nack", "pli"),
            ]
        );
        assert!(got.codecs[1].rtcp_feedback.is_empty());
        let ids: Vec<u8> = got.header_extensions.iter().map(|e| e.id).collect();
        assert_eq!(ids, [1, 4, 5, 8, 9, 11]);
        assert_eq!(got.encodings.len(), 1);
        assert_eq!(got.encodings[0].scalability_mode.as_deref(), Some("L3T3"));
        assert_eq!(got.encodings[0].max_bitrate, Some(5_000_000));
        assert_eq!(align_random_fields(&got, want), *want);
    }
}

#[test]
fn user_notes_vp8_rtx_example() {
    let v: Value = serde_json::from_str(USER_VP8).unwrap();
    let params = parse_rtp_parameters(&v["rtpParameters"]).unwrap();
    let router = router_caps();
    let mapping = get_producer_rtp_parameters_mapping(&params, &router).unwrap();
    assert_eq!(pt_map(&mapping), [(96, 101), (97, 102)]);
    assert_eq!(mapping.encodings.len(), 1);
    assert_eq!(mapping.encodings[0].ssrc, Some(106_197_398));
    assert_eq!(mapping.encodings[0].rid, None);
    assert_eq!(producer_type(&params), ProducerType::Simple);

    let consumable = get_consumable_rtp_parameters(MediaKind::Video, &params, &router, &mapping);
    let pts: Vec<u8> = consumable.codecs.iter().map(|c| c.payload_type).collect();
    assert_eq!(pts, [101, 102]);
    assert_eq!(consumable.codecs[1].parameters["apt"], json!(101));
    assert_eq!(
        consumable.encodings,
        [RtpEncodingParameters {
            ssrc: Some(mapping.encodings[0].mapped_ssrc),
            dtx: Some(false),
            ..Default::default()
        }]
    );
    assert_eq!(consumable.rtcp.cname.as_deref(), Some("WhfBQa5YTn5Z4nHy"));
    // Router-side video extensions the router may send, with router ids.
    let ids: Vec<u8> = consumable.header_extensions.iter().map(|e| e.id).collect();
    assert_eq!(ids, [1, 4, 5, 8, 9, 10, 11, 12]);

    // The mapping crosses the shard boundary: it must round-trip through JSON.
    let json = serde_json::to_value(&mapping).unwrap();
    assert_eq!(
        json["codecs"][0],
        json!({"payloadType": 96, "mappedPayloadType": 101})
    );
    assert!(json["encodings"][0]["mappedSsrc"].is_u64());
    assert_eq!(serde_json::from_value::<RtpMapping>(json).unwrap(), mapping);
}

/// The user's VP8 produce parameters with one codec changed.
fn vp8_produce_with(mutate: impl FnOnce(&mut Value)) -> Value {
    let mut v: Value = serde_json::from_str(USER_VP8).unwrap();
    let mut p = v["rtpParameters"].take();
    mutate(&mut p);
    p
}

fn map_err(produce: &Value) -> OrtcError {
    let params = match parse_rtp_parameters(produce) {
        Ok(p) => p,
        Err(e) => return e,
    };
    get_producer_rtp_parameters_mapping(&params, &router_caps()).unwrap_err()
}

fn mapped_pts(produce: &Value) -> Vec<(u8, u8)> {
    let params = parse_rtp_parameters(produce).unwrap();
    pt_map(&get_producer_rtp_parameters_mapping(&params, &router_caps()).unwrap())
}

#[test]
fn producer_errors() {
    let v = vp8_produce_with(|p| p["codecs"][0]["mimeType"] = json!("video/FOO"));
    assert_eq!(
        map_err(&v).to_string(),
        "unsupported codec [mimeType:video/FOO, payloadType:96]"
    );

    let v = vp8_produce_with(|p| p["codecs"][1]["parameters"]["apt"] = json!(55));
    assert_eq!(
        map_err(&v),
        OrtcError::MissingRtxMediaCodec { payload_type: 97 }
    );
    let v = vp8_produce_with(|p| p["codecs"][1]["parameters"] = json!({}));
    assert_eq!(
        map_err(&v),
        OrtcError::MissingRtxMediaCodec { payload_type: 97 }
    );
    // apt pointing at the RTX codec itself.
    let v = vp8_produce_with(|p| p["codecs"][1]["parameters"]["apt"] = json!(97));
    assert_eq!(
        map_err(&v),
        OrtcError::MissingRtxMediaCodec { payload_type: 97 }
    );

    // A router without RTX cannot take a producer RTX stream.
    let mut router = router_caps();
    router.codecs.retain(|c| !c.is_rtx());
    let params = parse_rtp_parameters(&vp8_produce_with(|_| {})).unwrap();
    assert_eq!(
        get_producer_rtp_parameters_mapping(&params, &router),
        Err(OrtcError::NoRtxForCapabilityCodec { payload_type: 101 })
    );

    let v = vp8_produce_with(|p| p["codecs"][0]["mimeType"] = json!("VP8"));
    assert!(matches!(map_err(&v), OrtcError::InvalidRtpParameters(m) if m.contains("mimeType")));
    let v = vp8_produce_with(|p| {
        p.as_object_mut().unwrap().remove("codecs");
    });
    assert_eq!(
        map_err(&v).to_string(),
        "invalid RtpParameters: missing codecs"
    );
    for bad in [
        json!(128),
        json!(300),
        json!(-5),
        json!("96"),
        json!(null),
        json!([96]),
    ] {
        let v = vp8_produce_with(|p| p["codecs"][0]["payloadType"] = bad.clone());
        assert!(
            matches!(map_err(&v), OrtcError::InvalidRtpParameters(ref m) if m.contains("codecs[0].payloadType")),
            "{bad}"
        );
    }
}

fn h264_produce(params: Value) -> Value {
    json!({
        "codecs": [
            {"mimeType": "video/H264", "payloadType": 102, "clockRate": 90000,
             "parameters": params},
            {"mimeType": "video/rtx", "payloadType": 103, "clockRate": 90000,
             "parameters": {"apt": 102}}
        ],
        "encodings": [{"ssrc": 1234}]
    })
}

#[test]
fn h264_strict_matching() {
    // Main profile at another level than the router's 4d0032 still maps to it.
    let main31 = h264_produce(
        json!({"packetization-mode": 1, "profile-level-id": "4d001f",
                                     "level-asymmetry-allowed": 1}),
    );
    assert_eq!(mapped_pts(&main31), [(102, 105), (103, 106)]);
    let cb = h264_produce(json!({"packetization-mode": 1, "profile-level-id": "42e01f"}));
    assert_eq!(mapped_pts(&cb), [(102, 107), (103, 108)]);
    // No profile-level-id means Constrained Baseline.
    let default_profile = h264_produce(json!({"packetization-mode": 1}));
    assert_eq!(mapped_pts(&default_profile), [(102, 107), (103, 108)]);

    for params in [
        json!({"packetization-mode": 1, "profile-level-id": "640032"}), // High
        json!({"packetization-mode": 1, "profile-level-id": "42001f"}), // Baseline
        json!({"packetization-mode": 0, "profile-level-id": "42e01f"}),
        json!({"profile-level-id": "42e01f"}), // packetization-mode missing = 0
        json!({"packetization-mode": 1, "profile-level-id": "zzzzzz"}),
    ] {
        assert_eq!(
            map_err(&h264_produce(params.clone())),
            OrtcError::UnsupportedCodec {
                mime_type: "video/H264".into(),
                payload_type: 102
            },
            "{params}"
        );
    }
}

#[test]
fn vp9_and_multiopus_strict_matching() {
    let vp9 = |params: Value| {
        json!({"codecs": [{"mimeType": "video/VP9", "payloadType": 98, "clockRate": 90000,
                           "parameters": params}]})
    };
    assert_eq!(mapped_pts(&vp9(json!({"profile-id": 2}))), [(98, 103)]);
    assert_eq!(mapped_pts(&vp9(json!({"profile-id": "2"}))), [(98, 103)]);
    for params in [
        json!({}),
        json!({"profile-id": 0}),
        json!({"profile-id": 1}),
    ] {
        assert!(
            matches!(
                map_err(&vp9(params.clone())),
                OrtcError::UnsupportedCodec {
                    payload_type: 98,
                    ..
                }
            ),
            "{params}"
        );
    }

    let mut media_codecs = demo_media_codecs();
    media_codecs.push(
        serde_json::from_value(json!({"kind": "audio", "mimeType": "audio/multiopus",
            "clockRate": 48000, "channels": 6,
            "parameters": {"num_streams": 4, "coupled_streams": 2}}))
        .unwrap(),
    );
    // Like mediasoup, the stream layout is part of the match even for router codecs.
    let mut no_layout = media_codecs[5].clone();
    no_layout.parameters.clear();
    assert!(matches!(
        generate_router_rtp_capabilities(&[no_layout]),
        Err(OrtcError::MediaCodecNotSupported { .. })
    ));
    let router = generate_router_rtp_capabilities(&media_codecs).unwrap();
    let multiopus = router.codecs.last().unwrap();
    assert_eq!(multiopus.preferred_payload_type, Some(109));
    assert_eq!(multiopus.parameters["num_streams"], json!(4));
    let produce = |num_streams: u8| {
        parse_rtp_parameters(&json!({"codecs": [{"mimeType": "audio/multiopus",
            "payloadType": 112, "clockRate": 48000, "channels": 6,
            "parameters": {"num_streams": num_streams, "coupled_streams": 2,
                           "channel_mapping": "0,4,1,2,3,5"}}]}))
        .unwrap()
    };
    let mapping = get_producer_rtp_parameters_mapping(&produce(4), &router).unwrap();
    assert_eq!(pt_map(&mapping), [(112, 109)]);
    assert!(matches!(
        get_producer_rtp_parameters_mapping(&produce(3), &router),
        Err(OrtcError::UnsupportedCodec { .. })
    ));
}

/// Consumable parameters of a VP8 (or other) producer with the given encodings.
fn consumable_with(mime_type: &str, encodings: Value) -> (RtpParameters, RtpParameters) {
    let router = router_caps();
    let mut produce = vp8_produce_with(|p| p["encodings"] = encodings);
    produce["codecs"][0]["mimeType"] = json!(mime_type);
    if mime_type == "video/VP9" {
        produce["codecs"][0]["parameters"] = json!({"profile-id": 2});
    }
    let params = parse_rtp_parameters(&produce).unwrap();
    let mapping = get_producer_rtp_parameters_mapping(&params, &router).unwrap();
    let consumable = get_consumable_rtp_parameters(MediaKind::Video, &params, &router, &mapping);
    (params, consumable)
}

fn peer_caps() -> RtpCapabilities {
    parse_rtp_capabilities(&trace()["peers"][0]["consumerRtpCapabilities"]).unwrap()
}

#[test]
fn consumer_scalability_mode_and_layers() {
    let caps = peer_caps();
    let cases = [
        (
            "video/VP8",
            json!([{"rid": "a", "scalabilityMode": "L1T3"},
                             {"rid": "b", "scalabilityMode": "L1T3"},
                             {"rid": "c", "scalabilityMode": "L1T3"}]),
            Some("L3T3"),
            ProducerType::Simulcast,
        ),
        (
            "video/VP8",
            json!([{"ssrc": 1, "scalabilityMode": "L1T2"},
                             {"ssrc": 2, "scalabilityMode": "L1T2"}]),
            Some("L2T2"),
            ProducerType::Simulcast,
        ),
        (
            "video/VP8",
            json!([{"rid": "a"}, {"rid": "b"}, {"rid": "c"}]),
            Some("L3T1"),
            ProducerType::Simulcast,
        ),
        (
            "video/VP9",
            json!([{"ssrc": 1, "scalabilityMode": "L3T3_KEY"}]),
            Some("L3T3_KEY"),
            ProducerType::Svc,
        ),
        (
            "video/VP8",
            json!([{"ssrc": 1, "scalabilityMode": "L1T3"}]),
            Some("L1T3"),
            ProducerType::Simulcast,
        ),
        (
            "video/VP8",
            json!([{"ssrc": 1}]),
            None,
            ProducerType::Simple,
        ),
        ("video/VP8", json!([]), None, ProducerType::Simple),
    ];
    for (mime_type, encodings, mode, producer_kind) in cases {
        let (params, consumable) = consumable_with(mime_type, encodings.clone());
        assert_eq!(producer_type(&params), producer_kind, "{encodings}");
        let consumer = get_consumer_rtp_parameters(&consumable, &caps, false, true).unwrap();
        assert_eq!(consumer.encodings.len(), 1);
        assert_eq!(
            consumer.encodings[0].scalability_mode.as_deref(),
            mode,
            "{encodings}"
        );
        let layers = parse_scalability_mode(consumer.encodings[0].scalability_mode.as_deref());
        if params.encodings.len() > 1 {
            assert_eq!(usize::from(layers.spatial_layers), params.encodings.len());
        }
    }

    let opus = parse_rtp_parameters(&trace()["peers"][0]["audioProduce"]).unwrap();
    assert_eq!(producer_type(&opus), ProducerType::Simple);
    let mut h264 = parse_rtp_parameters(&h264_produce(json!({"packetization-mode": 1}))).unwrap();
    h264.encodings[0].scalability_mode = Some("L1T3".into());
    assert_eq!(producer_type(&h264), ProducerType::Simulcast);
}

#[test]
fn consumer_bitrate_rtx_pipe_and_feedback() {
    let caps = peer_caps();
    let (_, consumable) = consumable_with(
        "video/VP8",
        json!([{"rid": "a", "maxBitrate": 100000, "scalabilityMode": "L1T3"},
               {"rid": "b", "maxBitrate": 900000, "scalabilityMode": "L1T3"},
               {"rid": "c", "scalabilityMode": "L1T3"}]),
    );
    let consumer = get_consumer_rtp_parameters(&consumable, &caps, false, true).unwrap();
    assert_eq!(consumer.encodings[0].max_bitrate, Some(900_000));
    let (_, no_bitrate) = consumable_with("video/VP8", json!([{"ssrc": 5}]));
    let consumer = get_consumer_rtp_parameters(&no_bitrate, &caps, false, true).unwrap();
    assert_eq!(consumer.encodings[0].max_bitrate, None);

    // Without RTX: no RTX codec or SSRC, plain nack gone, nack pli kept.
    let consumer = get_consumer_rtp_parameters(&consumable, &caps, false, false).unwrap();
    assert_eq!(consumer.codecs.len(), 1);
    assert!(consumer.encodings[0].rtx.is_none());
    let fb: Vec<_> = consumer.codecs[0]
        .rtcp_feedback
        .iter()
        .map(|f| (f.r#type.as_str(), f.parameter.as_str()))
        .collect();
    assert_eq!(fb, [("transport-cc", ""), ("ccm", "fir"), ("nack", "pli")]);

    // Pipe consumers mirror every encoding.
    let pipe = get_consumer_rtp_parameters(&consumable, &caps, true, true).unwrap();
    assert_eq!(pipe.encodings.len(), 3);
    let base = pipe.encodings[0].ssrc.unwrap();
    let rtx_base = pipe.encodings[0].rtx.unwrap().ssrc;
    for (i, e) in pipe.encodings.iter().enumerate() {
        assert_eq!(e.ssrc, Some(base + i as u32));
        assert_eq!(e.rtx.map(|r| r.ssrc), Some(rtx_base + i as u32));
        assert_eq!(e.scalability_mode.as_deref(), Some("L1T3"));
        assert_eq!(e.rid, None);
    }

    // No transport-cc extension: REMB stays, transport-cc feedback goes.
    let mut remb_caps = caps.clone();
    remb_caps
        .header_extensions
        .retain(|e| !e.uri.contains("transport-wide-cc"));
    let consumer = get_consumer_rtp_parameters(&consumable, &remb_caps, false, true).unwrap();
    let types: Vec<_> = consumer.codecs[0]
        .rtcp_feedback
        .iter()
        .map(|f| f.r#type.as_str())
        .collect();
    assert_eq!(types, ["goog-remb", "ccm", "nack", "nack"]);
    // Neither extension: no congestion-control feedback at all.
    remb_caps
        .header_extensions
        .retain(|e| !e.uri.contains("abs-send-time"));
    let consumer = get_consumer_rtp_parameters(&consumable, &remb_caps, false, true).unwrap();
    let types: Vec<_> = consumer.codecs[0]
        .rtcp_feedback
        .iter()
        .map(|f| f.r#type.as_str())
        .collect();
    assert_eq!(types, ["ccm", "nack", "nack"]);
    assert!(consumer
        .header_extensions
        .iter()
        .all(|e| e.id != 4 && e.id != 5));

    // Extensions are kept by (id, uri): the same id with another uri does not count.
    let mut other_uri = caps.clone();
    for ext in &mut other_uri.header_extensions {
        if ext.preferred_id == 8 {
            ext.uri = "urn:example:other".into();
        }
    }
    let consumer = get_consumer_rtp_parameters(&consumable, &other_uri, false, true).unwrap();
    let ids: Vec<u8> = consumer.header_extensions.iter().map(|e| e.id).collect();
    assert_eq!(ids, [1, 4, 5, 9, 11]);
}

#[test]
fn cannot_consume_without_common_codec() {
    let (_, consumable) = consumable_with("video/VP8", json!([{"ssrc": 5}]));
    let mut caps = peer_caps();
    caps.codecs
        .retain(|c| !c.mime_type.eq_ignore_ascii_case("video/VP8"));
    assert_eq!(can_consume(&consumable, &caps), Ok(false));
    assert_eq!(
        get_consumer_rtp_parameters(&consumable, &caps, false, true),
        Err(OrtcError::NoCompatibleMediaCodecs)
    );
    // Only the RTX codec in common is no better.
    caps.codecs.retain(|c| c.is_rtx());
    assert_eq!(can_consume(&consumable, &caps), Ok(false));
    // Invalid caps are an error, not a "no".
    let mut bad = peer_caps();
    bad.codecs[0].mime_type = "opus".into();
    assert!(matches!(
        can_consume(&consumable, &bad),
        Err(OrtcError::InvalidRtpCapabilities(_))
    ));
}

// ---------------------------------------------------------------------------------------
// No-panic fuzzing over mutated real inputs.

fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    const STRINGS: [&str; 12] = [
        "",
        "video/rtx",
        "audio/opus",
        "video/VP8",
        "video/H264",
        "L3T3_KEY",
        "L99T99",
        "r0",
        "sendrecv",
        "nack",
        "42e01f",
        "\u{0}é🙂",
    ];
    match rng.random_range(0..if depth > 2 { 7 } else { 9 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.random()),
        2 => json!(rng.random_range(-3i64..300)),
        3 => json!(
            [
                0u64,
                96,
                127,
                128,
                255,
                256,
                65_535,
                u32::MAX as u64,
                u64::MAX
            ][rng.random_range(0..9)]
        ),
        4 => json!([0.5f64, -1.0, 96.0, 1e300, -0.0][rng.random_range(0..5)]),
        5 => json!(STRINGS[rng.random_range(0..STRINGS.len())]),
        6 => json!(rng.random_range(0..u32::MAX)),
        7 => Value::Array(
            (0..rng.random_range(0..3))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let keys = [
                "payloadType",
                "apt",
                "ssrc",
                "rtx",
                "codecs",
                "mimeType",
                "kind",
                "x",
            ];
            let mut m = serde_json::Map::new();
            for _ in 0..rng.random_range(0..3) {
                m.insert(
                    keys[rng.random_range(0..keys.len())].into(),
                    random_value(rng, depth + 1),
                );
            }
            Value::Object(m)
        }
    }
}

/// Replaces, removes or adds one random member somewhere inside `v`.
fn mutate(rng: &mut StdRng, v: &mut Value) {
    let descend = rng.random_bool(0.75);
    match v {
        Value::Object(m) if !m.is_empty() => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let key = &keys[rng.random_range(0..keys.len())];
            match (descend, rng.random_range(0..6)) {
                (true, _) => {
                    if let Some(child) = m.get_mut(key) {
                        mutate(rng, child);
                    }
                }
                (false, 0) => {
                    m.remove(key);
                }
                (false, 1) => {
                    m.insert("unexpected".into(), random_value(rng, 0));
                }
                _ => {
                    m.insert(key.clone(), random_value(rng, 0));
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let i = rng.random_range(0..a.len());
            match (descend, rng.random_range(0..4)) {
                (true, _) => mutate(rng, &mut a[i]),
                (false, 0) => {
                    a.remove(i);
                }
                (false, 1) => {
                    let copy = a[i].clone();
                    a.push(copy);
                }
                _ => a[i] = random_value(rng, 0),
            }
        }
        _ => *v = random_value(rng, 0),
    }
}

#[test]
fn fuzz_parse_and_negotiate_never_panics() {
    let trace = trace();
    let user: Value = serde_json::from_str(USER_VP8).unwrap();
    let seeds_params = [
        trace["peers"][0]["audioProduce"].clone(),
        trace["peers"][0]["videoProduce"].clone(),
        trace["peers"][1]["videoConsumer"]["rtpParameters"].clone(),
        user["rtpParameters"].clone(),
        h264_produce(json!({"packetization-mode": 1, "profile-level-id": "4d001f"})),
    ];
    let seeds_caps = [
        trace["routerRtpCapabilities"].clone(),
        trace["peers"][0]["consumerRtpCapabilities"].clone(),
    ];
    let router = router_caps();
    let peer = peer_caps();
    let mut rng = StdRng::seed_from_u64(0x5eed_cafe);
    let (mut ok_params, mut ok_caps) = (0, 0);

    for round in 0..600 {
        let mut params = seeds_params[round % seeds_params.len()].clone();
        let mut caps = seeds_caps[round % seeds_caps.len()].clone();
        for _ in 0..rng.random_range(1..4) {
            mutate(&mut rng, &mut params);
            mutate(&mut rng, &mut caps);
        }
        if round % 50 == 0 {
            params = random_value(&mut rng, 0);
            caps = random_value(&mut rng, 0);
        }

        let parsed_caps = parse_rtp_capabilities(&caps);
        // Also feed parameters as capabilities and vice versa.
        let _ = parse_rtp_capabilities(&params);
        let _ = parse_rtp_parameters(&caps);
        if let Ok(c) = &parsed_caps {
            ok_caps += 1;
            let _ = generate_router_rtp_capabilities(&c.codecs);
        }
        let Ok(p) = parse_rtp_parameters(&params) else {
            continue;
        };
        ok_params += 1;
        let _ = producer_type(&p);
        for kind in [MediaKind::Audio, MediaKind::Video] {
            // Against the real router, and against the mutated caps used as a router.
            let routers = [Some(&router), parsed_caps.as_ref().ok()];
            for r in routers.into_iter().flatten() {
                if let Ok(mapping) = get_producer_rtp_parameters_mapping(&p, r) {
                    let consumable = get_consumable_rtp_parameters(kind, &p, r, &mapping);
                    for consumer_caps in [Some(&peer), parsed_caps.as_ref().ok()]
                        .into_iter()
                        .flatten()
                    {
                        let _ = can_consume(&consumable, consumer_caps);
                        let _ =
                            get_consumer_rtp_parameters(&consumable, consumer_caps, false, true);
                        let _ =
                            get_consumer_rtp_parameters(&consumable, consumer_caps, true, false);
                    }
                }
                // Unvalidated parameters straight into the consumer logic.
                let _ = get_consumer_rtp_parameters(&p, r, false, true);
            }
        }
    }
    // The fuzz must exercise the negotiation, not only the parse errors.
    assert!(ok_params > 100, "only {ok_params} parameter sets parsed");
    assert!(ok_caps > 100, "only {ok_caps} capability sets parsed");
}
