//! What the router can do: mediasoup's supported RTP capabilities, the mediasoup-demo media
//! codecs, and the router capabilities generated from them (`getRouterRtpCapabilities`).

use serde_json::{json, Map, Value};

use super::error::OrtcError;
use super::ortc::match_codecs;
use super::types::{
    MediaKind, RtcpFeedback, RtpCapabilities, RtpCodecCapability, RtpCodecParametersParameters,
    RtpHeaderExtension, RtpHeaderExtensionDirection,
};
use super::validation::validate_rtp_codec_capability;

/// `json!({..})` as a parameter map (constant data only).
fn params(v: Value) -> RtpCodecParametersParameters {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn feedback(list: &[(&str, &str)]) -> Vec<RtcpFeedback> {
    list.iter().map(|(t, p)| RtcpFeedback::new(t, p)).collect()
}

fn codec(
    kind: MediaKind,
    mime_type: &str,
    preferred_payload_type: Option<u8>,
    clock_rate: u32,
    channels: Option<u8>,
    parameters: Value,
    rtcp_feedback: Vec<RtcpFeedback>,
) -> RtpCodecCapability {
    RtpCodecCapability {
        kind,
        mime_type: mime_type.to_owned(),
        preferred_payload_type,
        clock_rate,
        channels,
        parameters: params(parameters),
        rtcp_feedback,
    }
}

fn ext(
    kind: MediaKind,
    uri: &str,
    id: u8,
    direction: RtpHeaderExtensionDirection,
) -> RtpHeaderExtension {
    RtpHeaderExtension {
        kind,
        uri: uri.to_owned(),
        preferred_id: id,
        preferred_encrypt: false,
        direction,
    }
}

/// mediasoup's table of supported codecs and header extensions.
///
/// The router offers only what its configuration asks for, but every header extension
/// here, unfiltered; ids, order and directions are those of mediasoup 3.22 as seen on the
/// wire (e.g. dependency-descriptor 7 is receive-only, packet-id 12 is mediasoup's own).
pub fn supported_rtp_capabilities() -> RtpCapabilities {
    use MediaKind::{Audio, Video};
    use RtpHeaderExtensionDirection::{Recvonly, Sendrecv};

    let audio_fb = || feedback(&[("nack", ""), ("transport-cc", "")]);
    let tcc_fb = || feedback(&[("transport-cc", "")]);
    let video_fb = || {
        feedback(&[
            ("nack", ""),
            ("nack", "pli"),
            ("ccm", "fir"),
            ("goog-remb", ""),
            ("transport-cc", ""),
        ])
    };

    let mut codecs = vec![
        codec(
            Audio,
            "audio/opus",
            None,
            48000,
            Some(2),
            json!({}),
            audio_fb(),
        ),
        codec(
            Audio,
            "audio/multiopus",
            None,
            48000,
            Some(4),
            json!({"channel_mapping": "0,1,2,3", "num_streams": 2, "coupled_streams": 2}),
            audio_fb(),
        ),
        codec(
            Audio,
            "audio/multiopus",
            None,
            48000,
            Some(6),
            json!({"channel_mapping": "0,4,1,2,3,5", "num_streams": 4, "coupled_streams": 2}),
            audio_fb(),
        ),
        codec(
            Audio,
            "audio/multiopus",
            None,
            48000,
            Some(8),
            json!({"channel_mapping": "0,6,1,2,3,4,5,7", "num_streams": 5, "coupled_streams": 3}),
            audio_fb(),
        ),
        codec(
            Audio,
            "audio/PCMU",
            Some(0),
            8000,
            Some(1),
            json!({}),
            tcc_fb(),
        ),
        codec(
            Audio,
            "audio/PCMA",
            Some(8),
            8000,
            Some(1),
            json!({}),
            tcc_fb(),
        ),
        codec(
            Audio,
            "audio/ISAC",
            None,
            32000,
            Some(1),
            json!({}),
            tcc_fb(),
        ),
        codec(
            Audio,
            "audio/ISAC",
            None,
            16000,
            Some(1),
            json!({}),
            tcc_fb(),
        ),
        codec(
            Audio,
            "audio/G722",
            Some(9),
            8000,
            Some(1),
            json!({}),
            tcc_fb(),
        ),
        codec(
            Audio,
            "audio/iLBC",
            None,
            8000,
            Some(1),
            json!({}),
            tcc_fb(),
        ),
    ];
    for clock_rate in [24000, 16000, 12000, 8000] {
        codecs.push(codec(
            Audio,
            "audio/SILK",
            None,
            clock_rate,
            Some(1),
            json!({}),
            tcc_fb(),
        ));
    }
    for clock_rate in [32000, 16000, 8000] {
        codecs.push(codec(
            Audio,
            "audio/CN",
            Some(13),
            clock_rate,
            Some(1),
            json!({}),
            vec![],
        ));
    }
    for clock_rate in [48000, 32000, 16000, 8000] {
        codecs.push(codec(
            Audio,
            "audio/telephone-event",
            None,
            clock_rate,
            Some(1),
            json!({}),
            vec![],
        ));
    }
    codecs.extend([
        codec(Video, "video/VP8", None, 90000, None, json!({}), video_fb()),
        codec(Video, "video/VP9", None, 90000, None, json!({}), video_fb()),
        codec(
            Video,
            "video/H264",
            None,
            90000,
            None,
            json!({"level-asymmetry-allowed": 1}),
            video_fb(),
        ),
        codec(
            Video,
            "video/H264-SVC",
            None,
            90000,
            None,
            json!({"level-asymmetry-allowed": 1}),
            video_fb(),
        ),
        codec(
            Video,
            "video/H265",
            None,
            90000,
            None,
            json!({"level-asymmetry-allowed": 1}),
            video_fb(),
        ),
        codec(Video, "video/AV1", None, 90000, None, json!({}), video_fb()),
    ]);

    const MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
    const ABS_SEND_TIME: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";
    const TRANSPORT_CC: &str =
        "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
    const ABS_CAPTURE_TIME: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time";
    const PLAYOUT_DELAY: &str = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay";
    const PACKET_ID: &str = "urn:mediasoup:params:rtp-hdrext:packet-id";
    let header_extensions = vec![
        ext(Audio, MID, 1, Sendrecv),
        ext(Video, MID, 1, Sendrecv),
        ext(Video, "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", 2, Recvonly),
        ext(Video, "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id", 3, Recvonly),
        ext(Audio, ABS_SEND_TIME, 4, Sendrecv),
        ext(Video, ABS_SEND_TIME, 4, Sendrecv),
        // The router only reads transport-cc on audio (it does not do BWE for audio sends).
        ext(Audio, TRANSPORT_CC, 5, Recvonly),
        ext(Video, TRANSPORT_CC, 5, Sendrecv),
        ext(Audio, "urn:ietf:params:rtp-hdrext:ssrc-audio-level", 6, Sendrecv),
        ext(
            Video,
            "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension",
            7,
            Recvonly,
        ),
        ext(Video, "urn:3gpp:video-orientation", 8, Sendrecv),
        ext(Video, "urn:ietf:params:rtp-hdrext:toffset", 9, Sendrecv),
        ext(Audio, ABS_CAPTURE_TIME, 10, Sendrecv),
        ext(Video, ABS_CAPTURE_TIME, 10, Sendrecv),
        ext(Audio, PLAYOUT_DELAY, 11, Sendrecv),
        ext(Video, PLAYOUT_DELAY, 11, Sendrecv),
        ext(Audio, PACKET_ID, 12, Sendrecv),
        ext(Video, PACKET_ID, 12, Sendrecv),
    ];

    RtpCapabilities {
        codecs,
        header_extensions,
    }
}

/// `routerOptions.mediaCodecs` of mediasoup-demo's `config.example.js`, spelled as there
/// (`video/h264` lowercase; router generation turns it into `video/H264`).
pub fn demo_media_codecs() -> Vec<RtpCodecCapability> {
    use MediaKind::{Audio, Video};
    vec![
        codec(Audio, "audio/opus", None, 48000, Some(2), json!({}), vec![]),
        codec(
            Video,
            "video/VP8",
            None,
            90000,
            None,
            json!({"x-google-start-bitrate": 1000}),
            vec![],
        ),
        codec(
            Video,
            "video/VP9",
            None,
            90000,
            None,
            json!({"profile-id": 2, "x-google-start-bitrate": 1000}),
            vec![],
        ),
        codec(
            Video,
            "video/h264",
            None,
            90000,
            None,
            json!({
                "packetization-mode": 1,
                "profile-level-id": "4d0032",
                "level-asymmetry-allowed": 1,
                "x-google-start-bitrate": 1000
            }),
            vec![],
        ),
        codec(
            Video,
            "video/h264",
            None,
            90000,
            None,
            json!({
                "packetization-mode": 1,
                "profile-level-id": "42e01f",
                "level-asymmetry-allowed": 1,
                "x-google-start-bitrate": 1000
            }),
            vec![],
        ),
    ]
}

/// Dynamic payload types in mediasoup's allocation order: 100..=127, then 96..=99.
fn dynamic_payload_types() -> Vec<u8> {
    (100..=127).chain(96..=99).collect()
}

/// Router capabilities from configured media codecs, by mediasoup's rules: each codec is
/// the matching supported entry (its mimeType spelling and rtcpFeedback) with the
/// configured parameters laid over the supported ones; payload type = configured, else the
/// static one, else the next dynamic one; an RTX codec after every video codec; every
/// supported header extension.
pub fn generate_router_rtp_capabilities(
    media_codecs: &[RtpCodecCapability],
) -> Result<RtpCapabilities, OrtcError> {
    let supported = supported_rtp_capabilities();
    let mut dynamic_pts = dynamic_payload_types().into_iter();
    let mut taken: Vec<u8> = Vec::new();
    let mut codecs: Vec<RtpCodecCapability> = Vec::new();

    // Like mediasoup, a configured payload type is withdrawn from the dynamic list only once
    // its codec is reached, not up front.
    let mut next_dynamic = |taken: &[u8]| -> Result<u8, OrtcError> {
        dynamic_pts
            .by_ref()
            .find(|pt| !taken.contains(pt))
            .ok_or(OrtcError::NoMoreDynamicPayloadTypes)
    };

    for media_codec in media_codecs {
        let mut media_codec = media_codec.clone();
        validate_rtp_codec_capability(&mut media_codec).map_err(|e| match e {
            OrtcError::InvalidRtpCapabilities(msg) => OrtcError::InvalidMediaCodec(msg),
            other => other,
        })?;
        let supported_codec = supported
            .codecs
            .iter()
            .find(|s| match_codecs(&media_codec, *s, false))
            .ok_or_else(|| OrtcError::MediaCodecNotSupported {
                mime_type: media_codec.mime_type.clone(),
            })?;
        let mut codec = supported_codec.clone();

        let pt = match (
            media_codec.preferred_payload_type,
            codec.preferred_payload_type,
        ) {
            (Some(pt), _) => {
                taken.push(pt);
                pt
            }
            (None, Some(static_pt)) => static_pt,
            (None, None) => next_dynamic(&taken)?,
        };
        if codecs.iter().any(|c| c.preferred_payload_type == Some(pt)) {
            return Err(OrtcError::DuplicatedPreferredPayloadType(pt));
        }
        codec.preferred_payload_type = Some(pt);
        for (key, value) in media_codec.parameters {
            codec.parameters.insert(key, value);
        }
        let kind = codec.kind;
        let clock_rate = codec.clock_rate;
        codecs.push(codec);

        if kind == MediaKind::Video {
            let rtx_pt = next_dynamic(&taken)?;
            codecs.push(RtpCodecCapability {
                kind,
                mime_type: format!("{kind}/rtx"),
                preferred_payload_type: Some(rtx_pt),
                clock_rate,
                channels: None,
                parameters: params(json!({ "apt": pt })),
                rtcp_feedback: Vec::new(),
            });
        }
    }

    Ok(RtpCapabilities {
        codecs,
        header_extensions: supported.header_extensions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp_parameters::validation::validate_rtp_capabilities;

    const TRACE: &str = include_str!("testdata/trace-2peers.json");

    #[test]
    fn demo_router_caps_equal_trace() {
        let trace: Value = serde_json::from_str(TRACE).unwrap();
        let caps = generate_router_rtp_capabilities(&demo_media_codecs()).unwrap();
        let got = serde_json::to_value(&caps).unwrap();
        let want = &trace["routerRtpCapabilities"];
        assert_eq!(got["codecs"], want["codecs"]);
        assert_eq!(got["headerExtensions"], want["headerExtensions"]);
        assert_eq!(&got, want);
    }

    #[test]
    fn supported_table_is_valid_and_unique() {
        let mut caps = supported_rtp_capabilities();
        let before = caps.clone();
        validate_rtp_capabilities(&mut caps).unwrap();
        assert_eq!(caps, before, "the table must already be normalised");
        for (i, a) in caps.codecs.iter().enumerate() {
            for b in &caps.codecs[..i] {
                assert!(!match_codecs(a, b, false), "{} matches twice", a.mime_type);
            }
        }
    }

    #[test]
    fn payload_type_allocation() {
        let opus = || demo_media_codecs()[0].clone();
        let vp8 = || demo_media_codecs()[1].clone();
        let mut pcmu = opus();
        pcmu.mime_type = "audio/pcmu".into();
        pcmu.clock_rate = 8000;
        pcmu.channels = None;
        let mut fixed_vp8 = vp8();
        fixed_vp8.preferred_payload_type = Some(101);
        let caps = generate_router_rtp_capabilities(&[pcmu, opus(), fixed_vp8]).unwrap();
        let pts: Vec<_> = caps
            .codecs
            .iter()
            .map(|c| (c.mime_type.as_str(), c.preferred_payload_type, c.channels))
            .collect();
        assert_eq!(
            pts,
            [
                ("audio/PCMU", Some(0), Some(1)),
                ("audio/opus", Some(100), Some(2)),
                ("video/VP8", Some(101), None),
                ("video/rtx", Some(102), None),
            ]
        );

        // 32 dynamic PTs: 16 video codecs need 32 (codec + RTX); a 17th does not fit.
        let many: Vec<_> = (0..16).map(|_| vp8()).collect();
        let caps = generate_router_rtp_capabilities(&many).unwrap();
        assert_eq!(caps.codecs.last().unwrap().preferred_payload_type, Some(99));
        let too_many: Vec<_> = (0..17).map(|_| vp8()).collect();
        assert_eq!(
            generate_router_rtp_capabilities(&too_many),
            Err(OrtcError::NoMoreDynamicPayloadTypes)
        );
    }

    #[test]
    fn router_caps_errors() {
        let mut foo = demo_media_codecs()[1].clone();
        foo.mime_type = "video/FOO".into();
        assert_eq!(
            generate_router_rtp_capabilities(&[foo])
                .unwrap_err()
                .to_string(),
            "media codec not supported [mimeType:video/FOO]"
        );
        // Opus without channels means mono, which mediasoup does not support.
        let mut mono = demo_media_codecs()[0].clone();
        mono.channels = None;
        assert!(matches!(
            generate_router_rtp_capabilities(&[mono]),
            Err(OrtcError::MediaCodecNotSupported { .. })
        ));
        let mut bad = demo_media_codecs()[0].clone();
        bad.mime_type = "opus".into();
        assert!(matches!(
            generate_router_rtp_capabilities(&[bad]),
            Err(OrtcError::InvalidMediaCodec(_))
        ));
        let mut a = demo_media_codecs()[1].clone();
        a.preferred_payload_type = Some(96);
        let mut b = demo_media_codecs()[2].clone();
        b.preferred_payload_type = Some(96);
        assert_eq!(
            generate_router_rtp_capabilities(&[a, b]),
            Err(OrtcError::DuplicatedPreferredPayloadType(96))
        );
    }
}
