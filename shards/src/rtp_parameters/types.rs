//! mediasoup's RTP dictionaries (`RtpParameters.ts`), serialised exactly as mediasoup and
//! mediasoup-client exchange them: camelCase keys, optional members omitted when absent,
//! unknown keys ignored on input.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Codec-specific parameters (`fmtp` values): strings or numbers, kept as JSON because
/// mediasoup-client compares some of them with strict (typed) equality.
pub type RtpCodecParametersParameters = Map<String, Value>;

/// `"audio"` or `"video"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Audio,
    Video,
}

impl MediaKind {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        }
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Direction of a header extension, from the router's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RtpHeaderExtensionDirection {
    #[default]
    Sendrecv,
    Sendonly,
    Recvonly,
    Inactive,
}

impl RtpHeaderExtensionDirection {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sendrecv => "sendrecv",
            Self::Sendonly => "sendonly",
            Self::Recvonly => "recvonly",
            Self::Inactive => "inactive",
        }
    }
}

/// Producer (and consumer) type as the worker derives it from the RTP parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProducerType {
    Simple,
    Simulcast,
    Svc,
}

impl ProducerType {
    /// The wire spelling (`type` of `newConsumer`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProducerType::Simple => "simple",
            ProducerType::Simulcast => "simulcast",
            ProducerType::Svc => "svc",
        }
    }
}

impl fmt::Display for ProducerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `a=rtcp-fb` entry; `parameter` is `""` when there is none (mediasoup always sends it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RtcpFeedback {
    pub r#type: String,
    #[serde(default)]
    pub parameter: String,
}

impl RtcpFeedback {
    pub fn new(r#type: &str, parameter: &str) -> Self {
        Self {
            r#type: r#type.to_owned(),
            parameter: parameter.to_owned(),
        }
    }
}

/// A codec the router (or a remote endpoint) can handle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpCodecCapability {
    /// Re-derived from `mime_type` by validation, like mediasoup does.
    pub kind: MediaKind,
    pub mime_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_payload_type: Option<u8>,
    pub clock_rate: u32,
    /// Audio only (validation sets 1 when missing and removes it from video).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<u8>,
    #[serde(default)]
    pub parameters: RtpCodecParametersParameters,
    #[serde(default)]
    pub rtcp_feedback: Vec<RtcpFeedback>,
}

/// A header extension the router (or a remote endpoint) can handle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpHeaderExtension {
    pub kind: MediaKind,
    pub uri: String,
    pub preferred_id: u8,
    #[serde(default)]
    pub preferred_encrypt: bool,
    #[serde(default)]
    pub direction: RtpHeaderExtensionDirection,
}

/// Router capabilities (`getRouterRtpCapabilities`) or a peer's receive capabilities (`join`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpCapabilities {
    #[serde(default)]
    pub codecs: Vec<RtpCodecCapability>,
    #[serde(default)]
    pub header_extensions: Vec<RtpHeaderExtension>,
}

/// A codec actually used by a producer or consumer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpCodecParameters {
    pub mime_type: String,
    pub payload_type: u8,
    pub clock_rate: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<u8>,
    #[serde(default)]
    pub parameters: RtpCodecParametersParameters,
    #[serde(default)]
    pub rtcp_feedback: Vec<RtcpFeedback>,
}

/// A header extension actually used by a producer or consumer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpHeaderExtensionParameters {
    pub uri: String,
    pub id: u8,
    #[serde(default)]
    pub encrypt: bool,
    #[serde(default)]
    pub parameters: Map<String, Value>,
}

/// RTX stream of an encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RtxParameters {
    pub ssrc: u32,
}

/// One RTP stream (simulcast layer) of a producer, or the single stream of a consumer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpEncodingParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssrc: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec_payload_type: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtx: Option<RtxParameters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtx: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scalability_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_resolution_down_by: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bitrate: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_framerate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
}

fn default_true() -> bool {
    true
}

/// RTCP settings; `reduced_size` defaults to true (mediasoup never does anything else).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtcpParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cname: Option<String>,
    #[serde(default = "default_true")]
    pub reduced_size: bool,
}

impl Default for RtcpParameters {
    fn default() -> Self {
        Self {
            cname: None,
            reduced_size: true,
        }
    }
}

/// Parameters of a producer (`produce`) or of a consumer (`newConsumer`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mid: Option<String>,
    pub codecs: Vec<RtpCodecParameters>,
    #[serde(default)]
    pub header_extensions: Vec<RtpHeaderExtensionParameters>,
    #[serde(default)]
    pub encodings: Vec<RtpEncodingParameters>,
    #[serde(default)]
    pub rtcp: RtcpParameters,
}

/// Producer payload type → router payload type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpMappingCodec {
    pub payload_type: u8,
    pub mapped_payload_type: u8,
}

/// How a producer encoding is recognised (`ssrc` or `rid`) and the SSRC it is given inside
/// the router.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpMappingEncoding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssrc: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scalability_mode: Option<String>,
    pub mapped_ssrc: u32,
}

/// Per-producer translation from the browser's payload types / SSRCs to the router's.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpMapping {
    pub codecs: Vec<RtpMappingCodec>,
    pub encodings: Vec<RtpMappingEncoding>,
}

/// `true` for `*/rtx` (case-insensitive), like mediasoup's `/.+\/rtx$/i`.
pub(crate) fn is_rtx_mime_type(mime_type: &str) -> bool {
    let lower = mime_type.to_ascii_lowercase();
    lower.len() > "/rtx".len() && lower.ends_with("/rtx")
}

/// The kind of a `type/subtype` mime type, if it is a well-formed audio or video one
/// (mediasoup's `^(audio|video)/(.+)`, case-insensitive).
pub(crate) fn kind_of_mime_type(mime_type: &str) -> Option<MediaKind> {
    let (kind, subtype) = mime_type.split_once('/')?;
    if subtype.is_empty() || subtype.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    if kind.eq_ignore_ascii_case("audio") {
        Some(MediaKind::Audio)
    } else if kind.eq_ignore_ascii_case("video") {
        Some(MediaKind::Video)
    } else {
        None
    }
}

/// An integer view of a codec parameter value. JSON numbers with a zero fraction and
/// decimal strings count too, because JavaScript endpoints do not tell `96`, `96.0` apart
/// and some (e.g. broadcasters using GStreamer-made SDP) send numeric fmtp values as strings.
pub(crate) fn parameter_as_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl RtpCodecCapability {
    /// Whether this is a retransmission (`*/rtx`) codec.
    pub fn is_rtx(&self) -> bool {
        is_rtx_mime_type(&self.mime_type)
    }

    /// The `apt` parameter (associated payload type) of an RTX codec.
    pub fn apt(&self) -> Option<i64> {
        self.parameters.get("apt").and_then(parameter_as_i64)
    }
}

impl RtpCodecParameters {
    /// Whether this is a retransmission (`*/rtx`) codec.
    pub fn is_rtx(&self) -> bool {
        is_rtx_mime_type(&self.mime_type)
    }

    /// The `apt` parameter (associated payload type) of an RTX codec.
    pub fn apt(&self) -> Option<i64> {
        self.parameters.get("apt").and_then(parameter_as_i64)
    }

    /// The kind given by the mime type, when it is well formed.
    pub fn kind(&self) -> Option<MediaKind> {
        kind_of_mime_type(&self.mime_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serde_shapes_follow_mediasoup() {
        let fb: RtcpFeedback = serde_json::from_value(json!({"type": "nack"})).unwrap();
        assert_eq!(fb, RtcpFeedback::new("nack", ""));
        assert_eq!(
            serde_json::to_value(&fb).unwrap(),
            json!({"type": "nack", "parameter": ""})
        );

        let enc = RtpEncodingParameters {
            ssrc: Some(1),
            ..Default::default()
        };
        assert_eq!(serde_json::to_value(&enc).unwrap(), json!({"ssrc": 1}));

        let p: RtpParameters = serde_json::from_value(json!({
            "codecs": [], "unknownKey": {"x": 1}
        }))
        .unwrap();
        assert!(p.rtcp.reduced_size);
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"codecs": [], "headerExtensions": [], "encodings": [],
                   "rtcp": {"reducedSize": true}})
        );

        let ext: RtpHeaderExtension =
            serde_json::from_value(json!({"kind": "video", "uri": "urn:x", "preferredId": 3}))
                .unwrap();
        assert_eq!(ext.direction, RtpHeaderExtensionDirection::Sendrecv);
        assert!(!ext.preferred_encrypt);
        assert_eq!(ProducerType::Svc.to_string(), "svc");
        assert_eq!(
            serde_json::to_value(ProducerType::Simulcast).unwrap(),
            json!("simulcast")
        );
    }

    #[test]
    fn mime_type_helpers() {
        assert!(is_rtx_mime_type("video/RTX"));
        assert!(!is_rtx_mime_type("/rtx"));
        assert!(!is_rtx_mime_type("video/VP8"));
        assert_eq!(kind_of_mime_type("Video/VP8"), Some(MediaKind::Video));
        assert_eq!(kind_of_mime_type("audio/opus"), Some(MediaKind::Audio));
        assert_eq!(kind_of_mime_type("audio/"), None);
        assert_eq!(kind_of_mime_type("text/plain"), None);
        assert_eq!(kind_of_mime_type("videoVP8"), None);
        assert_eq!(parameter_as_i64(&json!(96.0)), Some(96));
        assert_eq!(parameter_as_i64(&json!("1")), Some(1));
        assert_eq!(parameter_as_i64(&json!(1.5)), None);
        assert_eq!(parameter_as_i64(&json!(true)), None);
    }
}
