//! mediasoup's RTP types and ORTC logic, wire-compatible with mediasoup 3.x and
//! mediasoup-client: router capabilities, validation of what clients send, the per-producer
//! payload-type/SSRC mapping, and consumer parameters.
//!
//! Typical flow (what mediasoup's `Router`/`Transport` do):
//! 1. `generate_router_rtp_capabilities(&demo_media_codecs())` once per router;
//! 2. `produce`: `parse_rtp_parameters` → `get_producer_rtp_parameters_mapping` →
//!    `get_consumable_rtp_parameters` (kept with the producer) and `producer_type`;
//! 3. per consuming peer: `parse_rtp_capabilities` (at `join`) → `can_consume` →
//!    `get_consumer_rtp_parameters` (then the transport sets `mid` and `rtcp.cname`).

mod capabilities;
mod error;
mod h264_profile;
mod ortc;
mod scalability_modes;
mod types;
mod validation;

#[cfg(test)]
mod tests;

pub use capabilities::{
    demo_media_codecs, generate_router_rtp_capabilities, supported_rtp_capabilities,
};
pub use error::OrtcError;
pub use h264_profile::{
    is_same_profile as h264_is_same_profile, parse_profile_level_id as parse_h264_profile_level_id,
    H264Profile, ProfileLevelId as H264ProfileLevelId,
};
pub use ortc::{
    can_consume, generate_random_ssrc, get_consumable_rtp_parameters, get_consumer_rtp_parameters,
    get_producer_rtp_parameters_mapping, producer_type,
};
pub use scalability_modes::{parse_scalability_mode, ScalabilityMode};
pub use types::{
    MediaKind, ProducerType, RtcpFeedback, RtcpParameters, RtpCapabilities, RtpCodecCapability,
    RtpCodecParameters, RtpCodecParametersParameters, RtpEncodingParameters, RtpHeaderExtension,
    RtpHeaderExtensionDirection, RtpHeaderExtensionParameters, RtpMapping, RtpMappingCodec,
    RtpMappingEncoding, RtpParameters, RtxParameters,
};
pub use validation::{
    parse_rtp_capabilities, parse_rtp_parameters, validate_rtp_capabilities,
    validate_rtp_codec_capability, validate_rtp_parameters,
};
