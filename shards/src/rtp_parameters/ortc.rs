//! ORTC negotiation as mediasoup's `ortc.ts` does it: mapping a producer's parameters onto
//! the router's capabilities, the "consumable" parameters kept per producer, and the
//! parameters of each consumer.

use std::borrow::Cow;

use rand::Rng;
use serde_json::Value;

use super::error::OrtcError;
use super::h264_profile;
use super::scalability_modes::parse_scalability_mode;
use super::types::{
    parameter_as_i64, MediaKind, ProducerType, RtcpFeedback, RtcpParameters, RtpCapabilities,
    RtpCodecCapability, RtpCodecParameters, RtpCodecParametersParameters, RtpEncodingParameters,
    RtpHeaderExtensionDirection, RtpHeaderExtensionParameters, RtpMapping, RtpMappingCodec,
    RtpMappingEncoding, RtpParameters, RtxParameters,
};
use super::validation::validate_rtp_capabilities;

const TRANSPORT_CC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
const ABS_SEND_TIME_URI: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";

/// A random SSRC in mediasoup's range (never 0, never near the top of u32 so that `+ n`
/// for RTX and simulcast streams cannot wrap).
pub fn generate_random_ssrc() -> u32 {
    rand::rng().random_range(100_000_000..=999_999_999)
}

/// What codec matching looks at, shared by capabilities and parameters.
pub(crate) trait CodecLike {
    fn mime_type(&self) -> &str;
    fn clock_rate(&self) -> u32;
    fn channels(&self) -> Option<u8>;
    fn parameters(&self) -> &RtpCodecParametersParameters;
}

impl CodecLike for RtpCodecCapability {
    fn mime_type(&self) -> &str {
        &self.mime_type
    }
    fn clock_rate(&self) -> u32 {
        self.clock_rate
    }
    fn channels(&self) -> Option<u8> {
        self.channels
    }
    fn parameters(&self) -> &RtpCodecParametersParameters {
        &self.parameters
    }
}

impl CodecLike for RtpCodecParameters {
    fn mime_type(&self) -> &str {
        &self.mime_type
    }
    fn clock_rate(&self) -> u32 {
        self.clock_rate
    }
    fn channels(&self) -> Option<u8> {
        self.channels
    }
    fn parameters(&self) -> &RtpCodecParametersParameters {
        &self.parameters
    }
}

/// Two optional parameter values are equal, numbers compared by value (`2` == `2.0` ==
/// `"2"`) because JavaScript endpoints are loose about fmtp value types.
fn parameter_eq(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => match (parameter_as_i64(a), parameter_as_i64(b)) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
        _ => false,
    }
}

/// An integer parameter with a default for missing or falsy values (mediasoup's `|| 0`).
fn parameter_or(params: &RtpCodecParametersParameters, key: &str, default: i64) -> Option<i64> {
    match params.get(key) {
        None | Some(Value::Null) => Some(default),
        Some(Value::String(s)) if s.is_empty() => Some(default),
        Some(v) => parameter_as_i64(v),
    }
}

/// mediasoup's `matchCodecs`: same mime type (case-insensitive), clock rate and channels;
/// multiopus stream layout; and when `strict`, H264 packetization mode and profile (levels
/// may differ) and VP9 profile.
pub(crate) fn match_codecs(a: &impl CodecLike, b: &impl CodecLike, strict: bool) -> bool {
    let mime_type = a.mime_type().to_ascii_lowercase();
    if mime_type != b.mime_type().to_ascii_lowercase()
        || a.clock_rate() != b.clock_rate()
        || a.channels() != b.channels()
    {
        return false;
    }
    let (pa, pb) = (a.parameters(), b.parameters());
    match mime_type.as_str() {
        "audio/multiopus" => {
            parameter_eq(pa.get("num_streams"), pb.get("num_streams"))
                && parameter_eq(pa.get("coupled_streams"), pb.get("coupled_streams"))
        }
        "video/h264" | "video/h264-svc" if strict => {
            let mode_a = parameter_or(pa, "packetization-mode", 0);
            let mode_b = parameter_or(pb, "packetization-mode", 0);
            mode_a.is_some() && mode_a == mode_b && h264_profile::is_same_profile(pa, pb)
        }
        "video/vp9" if strict => {
            let profile_a = parameter_or(pa, "profile-id", 0);
            let profile_b = parameter_or(pb, "profile-id", 0);
            profile_a.is_some() && profile_a == profile_b
        }
        _ => true,
    }
}

/// The encodings as the worker sees them: none given means one empty encoding.
fn effective_encodings(params: &RtpParameters) -> Cow<'_, [RtpEncodingParameters]> {
    if params.encodings.is_empty() {
        Cow::Owned(vec![RtpEncodingParameters::default()])
    } else {
        Cow::Borrowed(&params.encodings)
    }
}

/// Maps a producer's codecs (the browser's payload types) onto the router's, and gives each
/// encoding an internal SSRC (random base, +1 per encoding).
///
/// Media codecs must match a router codec strictly; each RTX codec must point (`apt`) at a
/// media codec of the producer whose router codec has an RTX codec. The producer's H264
/// `profile-level-id` is not rewritten to the negotiated level (mediasoup's `modify`), so
/// consumers see the producer's own value.
pub fn get_producer_rtp_parameters_mapping(
    params: &RtpParameters,
    caps: &RtpCapabilities,
) -> Result<RtpMapping, OrtcError> {
    // (producer payload type, router codec), media codecs first, like mediasoup's Map.
    let mut matches: Vec<(u8, &RtpCodecCapability)> = Vec::new();

    for codec in params.codecs.iter().filter(|c| !c.is_rtx()) {
        let cap_codec = caps
            .codecs
            .iter()
            .filter(|c| c.preferred_payload_type.is_some())
            .find(|cap| match_codecs(codec, *cap, true))
            .ok_or_else(|| OrtcError::UnsupportedCodec {
                mime_type: codec.mime_type.clone(),
                payload_type: codec.payload_type,
            })?;
        matches.push((codec.payload_type, cap_codec));
    }

    for codec in params.codecs.iter().filter(|c| c.is_rtx()) {
        let missing = || OrtcError::MissingRtxMediaCodec {
            payload_type: codec.payload_type,
        };
        let apt = codec.apt().ok_or_else(missing)?;
        let cap_media_codec = params
            .codecs
            .iter()
            .find(|c| !c.is_rtx() && i64::from(c.payload_type) == apt)
            .and_then(|media| matches.iter().find(|(pt, _)| *pt == media.payload_type))
            .map(|(_, cap)| *cap)
            .ok_or_else(missing)?;
        let cap_media_pt = cap_media_codec.preferred_payload_type;
        let cap_rtx_codec = caps
            .codecs
            .iter()
            .filter(|c| c.preferred_payload_type.is_some())
            .find(|c| c.is_rtx() && c.apt().is_some() && c.apt() == cap_media_pt.map(i64::from))
            .ok_or(OrtcError::NoRtxForCapabilityCodec {
                payload_type: cap_media_pt.unwrap_or_default(),
            })?;
        matches.push((codec.payload_type, cap_rtx_codec));
    }

    let codecs = matches
        .iter()
        .filter_map(|(pt, cap)| {
            cap.preferred_payload_type.map(|mapped| RtpMappingCodec {
                payload_type: *pt,
                mapped_payload_type: mapped,
            })
        })
        .collect();

    let base_ssrc = generate_random_ssrc();
    let encodings = effective_encodings(params)
        .iter()
        .zip(0u32..)
        .map(|(encoding, i)| RtpMappingEncoding {
            ssrc: encoding.ssrc.filter(|s| *s != 0),
            rid: encoding.rid.clone().filter(|r| !r.is_empty()),
            scalability_mode: encoding.scalability_mode.clone().filter(|m| !m.is_empty()),
            mapped_ssrc: base_ssrc.wrapping_add(i),
        })
        .collect();

    Ok(RtpMapping { codecs, encodings })
}

/// The parameters a producer offers to consumers, in router terms: router payload types,
/// mime types and rtcpFeedback but the producer's codec parameters, each media codec
/// followed by the router's RTX for it; every router header extension of `kind` the router
/// can send; the producer's encodings with the mapped SSRCs and without rid/rtx/codec PT.
///
/// Codecs or encodings missing from `mapping` (which a mapping built for these parameters
/// never lacks) are skipped.
pub fn get_consumable_rtp_parameters(
    kind: MediaKind,
    params: &RtpParameters,
    caps: &RtpCapabilities,
    mapping: &RtpMapping,
) -> RtpParameters {
    let mut consumable = RtpParameters::default();

    for codec in params.codecs.iter().filter(|c| !c.is_rtx()) {
        let Some(mapped_pt) = mapping
            .codecs
            .iter()
            .find(|m| m.payload_type == codec.payload_type)
            .map(|m| m.mapped_payload_type)
        else {
            continue;
        };
        let Some(cap_codec) = caps
            .codecs
            .iter()
            .find(|c| c.preferred_payload_type == Some(mapped_pt))
        else {
            continue;
        };
        consumable.codecs.push(RtpCodecParameters {
            mime_type: cap_codec.mime_type.clone(),
            payload_type: mapped_pt,
            clock_rate: cap_codec.clock_rate,
            channels: cap_codec.channels,
            parameters: codec.parameters.clone(),
            rtcp_feedback: cap_codec.rtcp_feedback.clone(),
        });
        let cap_rtx = caps
            .codecs
            .iter()
            .find(|c| c.is_rtx() && c.apt() == Some(i64::from(mapped_pt)));
        if let Some(cap_rtx) = cap_rtx {
            if let Some(rtx_pt) = cap_rtx.preferred_payload_type {
                consumable.codecs.push(RtpCodecParameters {
                    mime_type: cap_rtx.mime_type.clone(),
                    payload_type: rtx_pt,
                    clock_rate: cap_rtx.clock_rate,
                    channels: None,
                    parameters: cap_rtx.parameters.clone(),
                    rtcp_feedback: cap_rtx.rtcp_feedback.clone(),
                });
            }
        }
    }

    consumable.header_extensions = caps
        .header_extensions
        .iter()
        .filter(|ext| {
            ext.kind == kind
                && matches!(
                    ext.direction,
                    RtpHeaderExtensionDirection::Sendrecv | RtpHeaderExtensionDirection::Sendonly
                )
        })
        .map(|ext| RtpHeaderExtensionParameters {
            uri: ext.uri.clone(),
            id: ext.preferred_id,
            encrypt: ext.preferred_encrypt,
            parameters: Default::default(),
        })
        .collect();

    consumable.encodings = effective_encodings(params)
        .iter()
        .zip(&mapping.encodings)
        .map(|(encoding, mapped)| RtpEncodingParameters {
            ssrc: Some(mapped.mapped_ssrc),
            rid: None,
            rtx: None,
            codec_payload_type: None,
            ..encoding.clone()
        })
        .collect();

    consumable.rtcp = RtcpParameters {
        cname: params.rtcp.cname.clone(),
        reduced_size: true,
    };
    consumable
}

/// Validated copy of `caps`, since these functions take untrusted capabilities by reference.
fn validated(caps: &RtpCapabilities) -> Result<RtpCapabilities, OrtcError> {
    let mut caps = caps.clone();
    validate_rtp_capabilities(&mut caps)?;
    Ok(caps)
}

/// Whether a peer with `caps` can receive a producer with these consumable parameters: some
/// codec matches strictly and the first match is a media codec (not RTX).
pub fn can_consume(consumable: &RtpParameters, caps: &RtpCapabilities) -> Result<bool, OrtcError> {
    let caps = validated(caps)?;
    let first_match = consumable.codecs.iter().find(|codec| {
        caps.codecs
            .iter()
            .any(|cap| match_codecs(cap, *codec, true))
    });
    Ok(first_match.is_some_and(|codec| !codec.is_rtx()))
}

/// Keeps only the rtcp-fb entries for which `keep` is true.
fn retain_feedback(codecs: &mut [RtpCodecParameters], keep: impl Fn(&RtcpFeedback) -> bool) {
    for codec in codecs {
        codec.rtcp_feedback.retain(|fb| keep(fb));
    }
}

/// The parameters of a consumer of a producer (`newConsumer`'s `rtpParameters`, minus the
/// `mid` the transport assigns).
///
/// Codecs the peer can receive, with the peer's rtcpFeedback (plain `nack` dropped without
/// RTX); header extensions whose (id, uri) the peer has; transport-cc feedback preferred
/// over REMB; one encoding with a random SSRC (RTX SSRC + 1), the scalability mode
/// rewritten to `L<encodings>T<temporal>` for simulcast, and the largest producer
/// `maxBitrate`. A `pipe` consumer instead mirrors every producer encoding.
pub fn get_consumer_rtp_parameters(
    consumable: &RtpParameters,
    caps: &RtpCapabilities,
    pipe: bool,
    enable_rtx: bool,
) -> Result<RtpParameters, OrtcError> {
    let caps = validated(caps)?;
    let mut consumer = RtpParameters {
        rtcp: consumable.rtcp.clone(),
        ..Default::default()
    };

    for codec in &consumable.codecs {
        if !enable_rtx && codec.is_rtx() {
            continue;
        }
        let Some(cap_codec) = caps
            .codecs
            .iter()
            .find(|cap| match_codecs(*cap, codec, true))
        else {
            continue;
        };
        let mut codec = codec.clone();
        codec.rtcp_feedback = cap_codec
            .rtcp_feedback
            .iter()
            .filter(|fb| enable_rtx || fb.r#type != "nack" || !fb.parameter.is_empty())
            .cloned()
            .collect();
        consumer.codecs.push(codec);
    }

    // RTX codecs whose media codec did not make it are useless.
    let media_pts: Vec<i64> = consumer
        .codecs
        .iter()
        .filter(|c| !c.is_rtx())
        .map(|c| i64::from(c.payload_type))
        .collect();
    consumer
        .codecs
        .retain(|c| !c.is_rtx() || c.apt().is_some_and(|apt| media_pts.contains(&apt)));
    let rtx_supported = consumer.codecs.iter().any(|c| c.is_rtx());

    if consumer.codecs.first().is_none_or(|c| c.is_rtx()) {
        return Err(OrtcError::NoCompatibleMediaCodecs);
    }

    consumer.header_extensions = consumable
        .header_extensions
        .iter()
        .filter(|ext| {
            caps.header_extensions
                .iter()
                .any(|cap| cap.preferred_id == ext.id && cap.uri == ext.uri)
        })
        .cloned()
        .collect();

    let has_ext = |uri: &str| consumer.header_extensions.iter().any(|e| e.uri == uri);
    if has_ext(TRANSPORT_CC_URI) {
        retain_feedback(&mut consumer.codecs, |fb| fb.r#type != "goog-remb");
    } else if has_ext(ABS_SEND_TIME_URI) {
        retain_feedback(&mut consumer.codecs, |fb| fb.r#type != "transport-cc");
    } else {
        retain_feedback(&mut consumer.codecs, |fb| {
            fb.r#type != "transport-cc" && fb.r#type != "goog-remb"
        });
    }

    let encodings = effective_encodings(consumable);
    if pipe {
        let base_ssrc = generate_random_ssrc();
        let base_rtx_ssrc = generate_random_ssrc();
        consumer.encodings = encodings
            .iter()
            .zip(0u32..)
            .map(|(encoding, i)| RtpEncodingParameters {
                ssrc: Some(base_ssrc.wrapping_add(i)),
                rtx: rtx_supported.then(|| RtxParameters {
                    ssrc: base_rtx_ssrc.wrapping_add(i),
                }),
                ..encoding.clone()
            })
            .collect();
    } else {
        let ssrc = generate_random_ssrc();
        let mut scalability_mode = encodings
            .iter()
            .find_map(|e| e.scalability_mode.clone().filter(|m| !m.is_empty()));
        if encodings.len() > 1 {
            let temporal_layers =
                parse_scalability_mode(scalability_mode.as_deref()).temporal_layers;
            scalability_mode = Some(format!("L{}T{}", encodings.len(), temporal_layers));
        }
        let max_bitrate = encodings
            .iter()
            .filter_map(|e| e.max_bitrate)
            .max()
            .filter(|b| *b > 0);
        consumer.encodings = vec![RtpEncodingParameters {
            ssrc: Some(ssrc),
            rtx: rtx_supported.then(|| RtxParameters {
                ssrc: ssrc.wrapping_add(1),
            }),
            scalability_mode,
            max_bitrate,
            ..Default::default()
        }];
    }

    Ok(consumer)
}

/// Codecs the worker can forward as SVC (layers within one stream).
fn supports_svc(mime_type: &str) -> bool {
    ["video/vp9", "video/h264-svc"]
        .iter()
        .any(|m| mime_type.eq_ignore_ascii_case(m))
}

/// Codecs the worker can forward as simulcast (temporal layers within each stream).
fn supports_simulcast(mime_type: &str) -> bool {
    ["video/vp8", "video/h264"]
        .iter()
        .any(|m| mime_type.eq_ignore_ascii_case(m))
}

/// The producer type the worker derives: several encodings → simulcast; one layered
/// encoding → svc for SVC codecs, simulcast for VP8/H264 (single-stream simulcast with
/// temporal layers); anything else → simple.
pub fn producer_type(params: &RtpParameters) -> ProducerType {
    let encodings = effective_encodings(params);
    if encodings.len() > 1 {
        return ProducerType::Simulcast;
    }
    let Some(encoding) = encodings.first() else {
        return ProducerType::Simple;
    };
    let mode = parse_scalability_mode(encoding.scalability_mode.as_deref());
    if mode.spatial_layers <= 1 && mode.temporal_layers <= 1 {
        return ProducerType::Simple;
    }
    let codec = match encoding.codec_payload_type {
        Some(pt) => params.codecs.iter().find(|c| c.payload_type == pt),
        None => params.codecs.iter().find(|c| !c.is_rtx()),
    };
    match codec {
        Some(c) if supports_svc(&c.mime_type) => ProducerType::Svc,
        Some(c) if supports_simulcast(&c.mime_type) => ProducerType::Simulcast,
        _ => ProducerType::Simple,
    }
}
