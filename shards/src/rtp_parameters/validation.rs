//! Validation and normalisation of RTP parameters and capabilities (mediasoup's
//! `validateRtp*` functions), plus parsing from untrusted JSON with readable errors.
//!
//! Parsing runs in three steps: a JSON-level pass that checks types and applies mediasoup's
//! lenient coercions (so every error names the offending field), serde deserialisation of
//! the cleaned value, and the typed validation that callers building the structs in Rust
//! use too.

use serde_json::{Map, Value};

use super::error::OrtcError;
use super::types::{
    kind_of_mime_type, MediaKind, RtpCapabilities, RtpCodecCapability, RtpCodecParameters,
    RtpCodecParametersParameters, RtpHeaderExtension, RtpHeaderExtensionParameters, RtpParameters,
};

/// Highest RTP payload type (7 bits).
const MAX_PAYLOAD_TYPE: u8 = 127;

// ---------------------------------------------------------------------------------------
// Typed validation.

/// Validates and normalises codec parameters: values must be strings or numbers, integral
/// floats become integers (JavaScript does not tell them apart), and `apt` must be a number.
fn validate_codec_parameters(
    parameters: &mut RtpCodecParametersParameters,
    path: &str,
) -> Result<(), String> {
    for (key, value) in parameters.iter_mut() {
        match value {
            Value::String(_) => {}
            Value::Number(n) => {
                if let Some(f) = n.as_f64().filter(|_| !n.is_i64() && !n.is_u64()) {
                    if f.fract() == 0.0 && f.abs() < 9.0e15 {
                        *value = Value::from(f as i64);
                    }
                }
            }
            other => {
                return Err(format!(
                    "invalid {path}.parameters.{key} (expected a string or a number, got {other})"
                ))
            }
        }
        if key == "apt" && !value.is_number() {
            return Err(format!("invalid {path}.parameters.apt (expected a number)"));
        }
    }
    Ok(())
}

/// Audio codecs always carry `channels` (default 1); video codecs never do.
fn normalise_channels(kind: MediaKind, channels: &mut Option<u8>) {
    match kind {
        MediaKind::Audio => {
            channels.get_or_insert(1);
        }
        MediaKind::Video => *channels = None,
    }
}

fn validate_codec_capability_at(codec: &mut RtpCodecCapability, path: &str) -> Result<(), String> {
    // Like mediasoup, the kind is whatever the mime type says.
    codec.kind = kind_of_mime_type(&codec.mime_type)
        .ok_or_else(|| format!("invalid {path}.mimeType {:?}", codec.mime_type))?;
    if let Some(pt) = codec.preferred_payload_type {
        if pt > MAX_PAYLOAD_TYPE {
            return Err(format!(
                "invalid {path}.preferredPayloadType {pt} (expected 0..=127)"
            ));
        }
    }
    normalise_channels(codec.kind, &mut codec.channels);
    validate_codec_parameters(&mut codec.parameters, path)
}

fn validate_header_extension_at(ext: &RtpHeaderExtension, path: &str) -> Result<(), String> {
    if ext.uri.is_empty() {
        return Err(format!("missing {path}.uri"));
    }
    if ext.preferred_id == 0 {
        return Err(format!("invalid {path}.preferredId 0 (expected 1..=255)"));
    }
    Ok(())
}

/// Validates and normalises one codec capability (e.g. a router media codec from the
/// configuration).
pub fn validate_rtp_codec_capability(codec: &mut RtpCodecCapability) -> Result<(), OrtcError> {
    validate_codec_capability_at(codec, "codec").map_err(OrtcError::InvalidRtpCapabilities)
}

/// Validates and normalises RTP capabilities (mediasoup's `validateRtpCapabilities`):
/// `kind` re-derived from `mimeType`, audio `channels` defaulting to 1, no video
/// `channels`, parameter value types, numeric `apt`, payload type and extension id ranges.
pub fn validate_rtp_capabilities(caps: &mut RtpCapabilities) -> Result<(), OrtcError> {
    let check = |caps: &mut RtpCapabilities| -> Result<(), String> {
        for (i, codec) in caps.codecs.iter_mut().enumerate() {
            validate_codec_capability_at(codec, &format!("codecs[{i}]"))?;
        }
        for (i, ext) in caps.header_extensions.iter().enumerate() {
            validate_header_extension_at(ext, &format!("headerExtensions[{i}]"))?;
        }
        Ok(())
    };
    check(caps).map_err(OrtcError::InvalidRtpCapabilities)
}

fn validate_codec_parameters_at(codec: &mut RtpCodecParameters, path: &str) -> Result<(), String> {
    let kind = kind_of_mime_type(&codec.mime_type)
        .ok_or_else(|| format!("invalid {path}.mimeType {:?}", codec.mime_type))?;
    if codec.payload_type > MAX_PAYLOAD_TYPE {
        return Err(format!(
            "invalid {path}.payloadType {} (expected 0..=127)",
            codec.payload_type
        ));
    }
    normalise_channels(kind, &mut codec.channels);
    validate_codec_parameters(&mut codec.parameters, path)
}

fn validate_header_extension_parameters_at(
    ext: &mut RtpHeaderExtensionParameters,
    path: &str,
) -> Result<(), String> {
    if ext.uri.is_empty() {
        return Err(format!("missing {path}.uri"));
    }
    if ext.id == 0 {
        return Err(format!("invalid {path}.id 0 (expected 1..=255)"));
    }
    validate_codec_parameters(&mut ext.parameters, path)
}

/// Validates and normalises RTP parameters (mediasoup's `validateRtpParameters`, plus the
/// worker's consistency checks): mime types, payload types 0..=127 and unique, audio
/// `channels` default, numeric `apt`, parameter value types, `dtx` default, and each
/// `codecPayloadType` naming a media codec.
pub fn validate_rtp_parameters(params: &mut RtpParameters) -> Result<(), OrtcError> {
    let check = |params: &mut RtpParameters| -> Result<(), String> {
        if params.codecs.is_empty() {
            return Err("empty codecs".to_owned());
        }
        for (i, codec) in params.codecs.iter_mut().enumerate() {
            validate_codec_parameters_at(codec, &format!("codecs[{i}]"))?;
        }
        for (i, codec) in params.codecs.iter().enumerate() {
            if params.codecs[..i]
                .iter()
                .any(|c| c.payload_type == codec.payload_type)
            {
                return Err(format!(
                    "duplicated codecs[{i}].payloadType {}",
                    codec.payload_type
                ));
            }
        }
        for (i, ext) in params.header_extensions.iter_mut().enumerate() {
            validate_header_extension_parameters_at(ext, &format!("headerExtensions[{i}]"))?;
        }
        for (i, encoding) in params.encodings.iter_mut().enumerate() {
            encoding.dtx.get_or_insert(false);
            if let Some(pt) = encoding.codec_payload_type {
                let names_media_codec = params
                    .codecs
                    .iter()
                    .any(|c| c.payload_type == pt && !c.is_rtx());
                if !names_media_codec {
                    return Err(format!(
                        "invalid encodings[{i}].codecPayloadType {pt} (no such media codec)"
                    ));
                }
            }
        }
        Ok(())
    };
    check(params).map_err(OrtcError::InvalidRtpParameters)
}

// ---------------------------------------------------------------------------------------
// JSON-level checks for untrusted input.

/// JavaScript truthiness, for mediasoup's `if (x && typeof x !== ...)` checks.
fn is_truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

fn describe(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        let short: String = s.chars().take(40).collect();
        format!("{short}…")
    } else {
        s
    }
}

/// The object at `path` (empty path: the top-level value).
fn as_object_mut<'a>(v: &'a mut Value, path: &str) -> Result<&'a mut Map<String, Value>, String> {
    match v {
        Value::Object(m) => Ok(m),
        other if path.is_empty() => Err(format!("expected an object, got {}", describe(other))),
        other => Err(format!(
            "invalid {path} (expected an object, got {})",
            describe(other)
        )),
    }
}

/// `path.key`, or just `key` at the top level.
fn field(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Drops `null` members: JSON's nearest thing to JavaScript's `undefined`.
fn drop_nulls(obj: &mut Map<String, Value>) {
    obj.retain(|_, v| !v.is_null());
}

/// Checks an integer member is within `0..=max` (integral floats are accepted and rewritten
/// as integers so that serde takes them).
fn check_uint(
    obj: &mut Map<String, Value>,
    key: &str,
    max: u64,
    required: bool,
    path: &str,
) -> Result<(), String> {
    let Some(v) = obj.get_mut(key) else {
        return if required {
            Err(format!("missing {}", field(path, key)))
        } else {
            Ok(())
        };
    };
    let int = match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= max as f64)
                .map(|f| f as u64)
        }),
        _ => None,
    };
    match int {
        Some(i) if i <= max => {
            *v = Value::from(i);
            Ok(())
        }
        _ => Err(format!(
            "invalid {} (expected an integer in 0..={max}, got {})",
            field(path, key),
            describe(v)
        )),
    }
}

fn check_number(obj: &Map<String, Value>, key: &str, path: &str) -> Result<(), String> {
    match obj.get(key) {
        None | Some(Value::Number(_)) => Ok(()),
        Some(v) => Err(format!(
            "invalid {} (expected a number, got {})",
            field(path, key),
            describe(v)
        )),
    }
}

fn check_string(
    obj: &Map<String, Value>,
    key: &str,
    required: bool,
    path: &str,
) -> Result<(), String> {
    match obj.get(key) {
        None if required => Err(format!("missing {}", field(path, key))),
        None | Some(Value::String(_)) => Ok(()),
        Some(v) => Err(format!(
            "invalid {} (expected a string, got {})",
            field(path, key),
            describe(v)
        )),
    }
}

fn check_bool(obj: &Map<String, Value>, key: &str, path: &str) -> Result<(), String> {
    match obj.get(key) {
        None | Some(Value::Bool(_)) => Ok(()),
        Some(v) => Err(format!(
            "invalid {} (expected a boolean, got {})",
            field(path, key),
            describe(v)
        )),
    }
}

/// mediasoup: a truthy non-boolean is an error, anything falsy becomes `false`.
fn coerce_optional_bool(obj: &mut Map<String, Value>, key: &str, path: &str) -> Result<(), String> {
    match obj.get(key) {
        Some(Value::Bool(_)) => Ok(()),
        Some(v) if is_truthy(v) => Err(format!(
            "invalid {} (expected a boolean, got {})",
            field(path, key),
            describe(v)
        )),
        _ => {
            obj.insert(key.to_owned(), Value::Bool(false));
            Ok(())
        }
    }
}

/// Optional array member: missing becomes `[]`, anything else than an array is an error.
fn array_member<'a>(
    obj: &'a mut Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a mut Vec<Value>, String> {
    let v = obj
        .entry(key.to_owned())
        .or_insert_with(|| Value::Array(Vec::new()));
    match v {
        Value::Array(a) => Ok(a),
        other => Err(format!(
            "invalid {} (expected an array, got {})",
            field(path, key),
            describe(other)
        )),
    }
}

/// The members common to codec capabilities and codec parameters.
fn check_codec_common(codec: &mut Map<String, Value>, path: &str) -> Result<(), String> {
    check_string(codec, "mimeType", true, path)?;
    check_uint(codec, "clockRate", u32::MAX as u64, true, path)?;
    // mediasoup replaces a non-numeric `channels` by the default (set by typed validation).
    if codec.get("channels").is_some_and(|v| !v.is_number()) {
        codec.remove("channels");
    }
    check_uint(codec, "channels", u8::MAX as u64, false, path)?;
    if !codec.get("parameters").is_some_and(Value::is_object) {
        codec.insert("parameters".to_owned(), Value::Object(Map::new()));
    }
    if !codec.get("rtcpFeedback").is_some_and(Value::is_array) {
        codec.insert("rtcpFeedback".to_owned(), Value::Array(Vec::new()));
    }
    if let Some(Value::Array(feedback)) = codec.get_mut("rtcpFeedback") {
        for (i, fb) in feedback.iter_mut().enumerate() {
            let fb_path = format!("{path}.rtcpFeedback[{i}]");
            let fb = as_object_mut(fb, &fb_path)?;
            drop_nulls(fb);
            check_string(fb, "type", true, &fb_path)?;
            if !fb.get("parameter").is_some_and(Value::is_string) {
                fb.insert("parameter".to_owned(), Value::String(String::new()));
            }
        }
    }
    Ok(())
}

fn check_codec_capability_value(codec: &mut Value, path: &str) -> Result<(), String> {
    let codec = as_object_mut(codec, path)?;
    drop_nulls(codec);
    check_codec_common(codec, path)?;
    let kind = codec
        .get("mimeType")
        .and_then(Value::as_str)
        .and_then(kind_of_mime_type)
        .ok_or_else(|| {
            format!(
                "invalid {path}.mimeType {}",
                codec.get("mimeType").map(describe).unwrap_or_default()
            )
        })?;
    codec.insert("kind".to_owned(), Value::String(kind.as_str().to_owned()));
    // A falsy preferredPayloadType counts as absent for mediasoup, except 0 (PCMU).
    if codec
        .get("preferredPayloadType")
        .is_some_and(|v| !v.is_number() && !is_truthy(v))
    {
        codec.remove("preferredPayloadType");
    }
    check_uint(codec, "preferredPayloadType", u8::MAX as u64, false, path)
}

fn check_header_extension_value(ext: &mut Value, path: &str) -> Result<(), String> {
    let ext = as_object_mut(ext, path)?;
    drop_nulls(ext);
    match ext.get("kind").and_then(Value::as_str) {
        Some("audio") | Some("video") => {}
        _ => {
            return Err(format!(
                "invalid {path}.kind {} (expected \"audio\" or \"video\")",
                ext.get("kind").map(describe).unwrap_or_default()
            ))
        }
    }
    check_string(ext, "uri", true, path)?;
    check_uint(ext, "preferredId", u8::MAX as u64, true, path)?;
    coerce_optional_bool(ext, "preferredEncrypt", path)?;
    match ext.get("direction") {
        Some(Value::String(s))
            if matches!(
                s.as_str(),
                "sendrecv" | "sendonly" | "recvonly" | "inactive"
            ) => {}
        Some(v) if is_truthy(v) => {
            return Err(format!(
                "invalid {path}.direction {} (expected sendrecv, sendonly, recvonly or inactive)",
                describe(v)
            ))
        }
        _ => {
            ext.insert("direction".to_owned(), Value::String("sendrecv".to_owned()));
        }
    }
    Ok(())
}

fn check_rtp_capabilities_value(v: &mut Value) -> Result<(), String> {
    let caps = as_object_mut(v, "")?;
    drop_nulls(caps);
    for (i, codec) in array_member(caps, "codecs", "")?.iter_mut().enumerate() {
        check_codec_capability_value(codec, &format!("codecs[{i}]"))?;
    }
    for (i, ext) in array_member(caps, "headerExtensions", "")?
        .iter_mut()
        .enumerate()
    {
        check_header_extension_value(ext, &format!("headerExtensions[{i}]"))?;
    }
    Ok(())
}

fn check_codec_parameters_value(codec: &mut Value, path: &str) -> Result<(), String> {
    let codec = as_object_mut(codec, path)?;
    drop_nulls(codec);
    check_codec_common(codec, path)?;
    check_uint(codec, "payloadType", u8::MAX as u64, true, path)
}

fn check_header_extension_parameters_value(ext: &mut Value, path: &str) -> Result<(), String> {
    let ext = as_object_mut(ext, path)?;
    drop_nulls(ext);
    check_string(ext, "uri", true, path)?;
    check_uint(ext, "id", u8::MAX as u64, true, path)?;
    coerce_optional_bool(ext, "encrypt", path)?;
    if !ext.get("parameters").is_some_and(Value::is_object) {
        ext.insert("parameters".to_owned(), Value::Object(Map::new()));
    }
    Ok(())
}

fn check_encoding_value(encoding: &mut Value, path: &str) -> Result<(), String> {
    let encoding = as_object_mut(encoding, path)?;
    drop_nulls(encoding);
    check_uint(encoding, "ssrc", u32::MAX as u64, false, path)?;
    check_string(encoding, "rid", false, path)?;
    check_uint(encoding, "codecPayloadType", u8::MAX as u64, false, path)?;
    if let Some(rtx) = encoding.get_mut("rtx") {
        let rtx_path = format!("{path}.rtx");
        let rtx = as_object_mut(rtx, &rtx_path)?;
        check_uint(rtx, "ssrc", u32::MAX as u64, true, &rtx_path)?;
    }
    // mediasoup: dtx is false unless it is exactly `true`.
    if !encoding.get("dtx").is_some_and(Value::is_boolean) {
        encoding.insert("dtx".to_owned(), Value::Bool(false));
    }
    check_string(encoding, "scalabilityMode", false, path)?;
    check_number(encoding, "scaleResolutionDownBy", path)?;
    check_uint(encoding, "maxBitrate", u32::MAX as u64, false, path)?;
    check_number(encoding, "maxFramerate", path)?;
    check_bool(encoding, "active", path)
}

fn check_rtp_parameters_value(v: &mut Value) -> Result<(), String> {
    let params = as_object_mut(v, "")?;
    drop_nulls(params);
    check_string(params, "mid", false, "")?;
    match params.get_mut("codecs") {
        None => return Err("missing codecs".to_owned()),
        Some(Value::Array(codecs)) => {
            for (i, codec) in codecs.iter_mut().enumerate() {
                check_codec_parameters_value(codec, &format!("codecs[{i}]"))?;
            }
        }
        Some(other) => {
            return Err(format!(
                "invalid codecs (expected an array, got {})",
                describe(other)
            ))
        }
    }
    for (i, ext) in array_member(params, "headerExtensions", "")?
        .iter_mut()
        .enumerate()
    {
        check_header_extension_parameters_value(ext, &format!("headerExtensions[{i}]"))?;
    }
    for (i, encoding) in array_member(params, "encodings", "")?
        .iter_mut()
        .enumerate()
    {
        check_encoding_value(encoding, &format!("encodings[{i}]"))?;
    }
    let rtcp = params
        .entry("rtcp".to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    let rtcp = as_object_mut(rtcp, "rtcp")?;
    drop_nulls(rtcp);
    check_string(rtcp, "cname", false, "rtcp")?;
    if !rtcp.get("reducedSize").is_some_and(Value::is_boolean) {
        rtcp.insert("reducedSize".to_owned(), Value::Bool(true));
    }
    Ok(())
}

/// Parses untrusted JSON (`produce`'s `rtpParameters`) into validated, normalised
/// [`RtpParameters`]. Unknown keys are ignored; errors name the offending field.
pub fn parse_rtp_parameters(v: &Value) -> Result<RtpParameters, OrtcError> {
    let mut v = v.clone();
    check_rtp_parameters_value(&mut v).map_err(OrtcError::InvalidRtpParameters)?;
    let mut params: RtpParameters =
        serde_json::from_value(v).map_err(|e| OrtcError::InvalidRtpParameters(e.to_string()))?;
    validate_rtp_parameters(&mut params)?;
    Ok(params)
}

/// Parses untrusted JSON (`join`'s `rtpCapabilities`) into validated, normalised
/// [`RtpCapabilities`]. Unknown keys are ignored; errors name the offending field.
pub fn parse_rtp_capabilities(v: &Value) -> Result<RtpCapabilities, OrtcError> {
    let mut v = v.clone();
    check_rtp_capabilities_value(&mut v).map_err(OrtcError::InvalidRtpCapabilities)?;
    let mut caps: RtpCapabilities =
        serde_json::from_value(v).map_err(|e| OrtcError::InvalidRtpCapabilities(e.to_string()))?;
    validate_rtp_capabilities(&mut caps)?;
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vp8_params() -> Value {
        json!({
            "mid": "1",
            "codecs": [
                {"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000,
                 "rtcpFeedback": [{"type": "nack"}, {"type": "nack", "parameter": "pli"}]},
                {"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000,
                 "parameters": {"apt": 96}}
            ],
            "headerExtensions": [{"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 4}],
            "encodings": [{"ssrc": 1111, "rtx": {"ssrc": 2222}, "adaptivePtime": false}],
            "rtcp": {"cname": "abc"},
            "unknown": true
        })
    }

    fn err_text(r: Result<RtpParameters, OrtcError>) -> String {
        r.expect_err("must fail").to_string()
    }

    #[test]
    fn parses_and_fills_defaults() {
        let p = parse_rtp_parameters(&vp8_params()).unwrap();
        assert_eq!(p.mid.as_deref(), Some("1"));
        assert_eq!(p.codecs[0].channels, None);
        assert_eq!(p.codecs[0].rtcp_feedback[0].parameter, "");
        assert_eq!(p.codecs[1].apt(), Some(96));
        assert_eq!(p.encodings[0].dtx, Some(false));
        assert!(p.rtcp.reduced_size);
        assert!(!p.header_extensions[0].encrypt);

        let mut audio = json!({"codecs": [
            {"mimeType": "audio/opus", "payloadType": 111.0, "clockRate": 48000,
             "channels": "two", "parameters": {"minptime": 10.0, "x": null}}]});
        // null parameter values are not strings or numbers: rejected like mediasoup.
        assert!(parse_rtp_parameters(&audio).is_err());
        audio["codecs"][0]["parameters"] = json!({"minptime": 10.0});
        let p = parse_rtp_parameters(&audio).unwrap();
        assert_eq!(p.codecs[0].payload_type, 111);
        assert_eq!(p.codecs[0].channels, Some(1));
        assert_eq!(p.codecs[0].parameters["minptime"], json!(10));
        assert_eq!(
            serde_json::to_string(&p.codecs[0].parameters).unwrap(),
            r#"{"minptime":10}"#
        );
    }

    #[test]
    fn rejects_bad_parameters_with_readable_errors() {
        let mut v = vp8_params();
        v.as_object_mut().unwrap().remove("codecs");
        assert_eq!(
            err_text(parse_rtp_parameters(&v)),
            "invalid RtpParameters: missing codecs"
        );

        let mut v = vp8_params();
        v["codecs"] = json!([]);
        assert_eq!(
            err_text(parse_rtp_parameters(&v)),
            "invalid RtpParameters: empty codecs"
        );

        let mut v = vp8_params();
        v["codecs"][0]["mimeType"] = json!("VP8");
        assert_eq!(
            err_text(parse_rtp_parameters(&v)),
            "invalid RtpParameters: invalid codecs[0].mimeType \"VP8\""
        );

        for (bad, what) in [
            (json!("96"), "\"96\""),
            (json!(128), "128"),
            (json!(-1), "-1"),
            (json!(96.5), "96.5"),
            (json!(1e300), "1e+300"),
        ] {
            let mut v = vp8_params();
            v["codecs"][0]["payloadType"] = bad;
            let text = err_text(parse_rtp_parameters(&v));
            assert!(text.contains("codecs[0].payloadType"), "{text}");
            if what != "128" {
                assert!(text.contains(what), "{text}");
            }
        }

        let mut v = vp8_params();
        v["codecs"][1]["parameters"]["apt"] = json!("96");
        assert_eq!(
            err_text(parse_rtp_parameters(&v)),
            "invalid RtpParameters: invalid codecs[1].parameters.apt (expected a number)"
        );

        let mut v = vp8_params();
        v["codecs"][1]["payloadType"] = json!(96);
        assert!(err_text(parse_rtp_parameters(&v)).contains("duplicated"));

        let mut v = vp8_params();
        v["encodings"][0]["rtx"] = json!({});
        assert_eq!(
            err_text(parse_rtp_parameters(&v)),
            "invalid RtpParameters: missing encodings[0].rtx.ssrc"
        );

        let mut v = vp8_params();
        v["encodings"][0]["codecPayloadType"] = json!(97);
        assert!(err_text(parse_rtp_parameters(&v)).contains("codecPayloadType 97"));

        let mut v = vp8_params();
        v["headerExtensions"][0]["id"] = json!(0);
        assert!(err_text(parse_rtp_parameters(&v)).contains("headerExtensions[0].id"));

        let mut v = vp8_params();
        v["rtcp"]["cname"] = json!(5);
        assert!(err_text(parse_rtp_parameters(&v)).contains("rtcp.cname"));

        assert_eq!(
            err_text(parse_rtp_parameters(&json!([1, 2]))),
            "invalid RtpParameters: expected an object, got [1,2]"
        );
    }

    #[test]
    fn capabilities_rules() {
        let caps = parse_rtp_capabilities(&json!({
            "codecs": [
                {"mimeType": "AUDIO/opus", "kind": "video", "clockRate": 48000,
                 "preferredPayloadType": 100, "rtcpFeedback": "nope"},
                {"mimeType": "video/VP8", "clockRate": 90000, "channels": 3,
                 "preferredPayloadType": 101}
            ],
            "headerExtensions": [
                {"kind": "audio", "uri": "urn:x", "preferredId": 1, "preferredEncrypt": 0,
                 "direction": ""}
            ]
        }))
        .unwrap();
        assert_eq!(caps.codecs[0].kind, MediaKind::Audio);
        assert_eq!(caps.codecs[0].channels, Some(1));
        assert!(caps.codecs[0].rtcp_feedback.is_empty());
        assert_eq!(caps.codecs[1].channels, None);
        assert!(!caps.header_extensions[0].preferred_encrypt);

        let empty = parse_rtp_capabilities(&json!({})).unwrap();
        assert_eq!(empty, RtpCapabilities::default());

        for bad in [
            json!({"codecs": {}}),
            json!({"codecs": [{"mimeType": "foo", "clockRate": 1}]}),
            json!({"codecs": [{"mimeType": "video/VP8"}]}),
            json!({"codecs": [{"mimeType": "video/VP8", "clockRate": 1,
                               "preferredPayloadType": "x"}]}),
            json!({"codecs": [{"mimeType": "video/VP8", "clockRate": 1,
                               "preferredPayloadType": 200}]}),
            json!({"codecs": [{"mimeType": "video/VP8", "clockRate": 1,
                               "rtcpFeedback": [{"parameter": "pli"}]}]}),
            json!({"headerExtensions": [{"uri": "urn:x", "preferredId": 1}]}),
            json!({"headerExtensions": [{"kind": "video", "preferredId": 1}]}),
            json!({"headerExtensions": [{"kind": "video", "uri": "u", "preferredId": "1"}]}),
            json!({"headerExtensions": [{"kind": "video", "uri": "u", "preferredId": 1,
                                         "direction": "up"}]}),
            json!("caps"),
        ] {
            let r = parse_rtp_capabilities(&bad);
            assert!(
                matches!(r, Err(OrtcError::InvalidRtpCapabilities(_))),
                "{bad}: {r:?}"
            );
        }
    }
}
