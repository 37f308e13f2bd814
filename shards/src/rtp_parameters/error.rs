//! Errors of RTP parameter validation and ORTC negotiation.

use thiserror::Error;

/// Why some RTP parameters or capabilities were rejected.
///
/// The `Display` text is meant to be sent as is to a client as protoo `errorReason`, so it
/// follows mediasoup's wording where a client (or a person reading its console) may know it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OrtcError {
    /// Malformed or inconsistent `RtpParameters` (the message says which field and why).
    #[error("invalid RtpParameters: {0}")]
    InvalidRtpParameters(String),
    /// Malformed `RtpCapabilities` (the message says which field and why).
    #[error("invalid RtpCapabilities: {0}")]
    InvalidRtpCapabilities(String),
    /// A router media codec (configuration) that is malformed.
    #[error("invalid media codec: {0}")]
    InvalidMediaCodec(String),
    /// A router media codec absent from mediasoup's supported table.
    #[error("media codec not supported [mimeType:{mime_type}]")]
    MediaCodecNotSupported { mime_type: String },
    /// Two router media codecs asked for the same payload type.
    #[error("duplicated codec.preferredPayloadType [preferredPayloadType:{0}]")]
    DuplicatedPreferredPayloadType(u8),
    /// More router codecs (plus their RTX) than dynamic payload types.
    #[error("cannot allocate more dynamic codec payload types")]
    NoMoreDynamicPayloadTypes,
    /// A producer codec that no router codec matches.
    #[error("unsupported codec [mimeType:{mime_type}, payloadType:{payload_type}]")]
    UnsupportedCodec { mime_type: String, payload_type: u8 },
    /// A producer RTX codec whose `apt` names no media codec of the producer.
    #[error("missing media codec found for RTX PT {payload_type}")]
    MissingRtxMediaCodec { payload_type: u8 },
    /// The router has no RTX codec for the media codec a producer RTX codec belongs to.
    #[error("no RTX codec for capability codec PT {payload_type}")]
    NoRtxForCapabilityCodec { payload_type: u8 },
    /// Nothing the consumer can receive (call `can_consume` first).
    #[error("no compatible media codecs")]
    NoCompatibleMediaCodecs,
}
