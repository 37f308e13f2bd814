//! H264 `profile-level-id` parsing (RFC 6184 §8.1, as libwebrtc and mediasoup's
//! `h264-profile-level-id` interpret it), enough to tell whether two H264 codecs use the
//! same profile: endpoints may negotiate different levels, never different profiles.

use serde_json::Value;

use super::types::RtpCodecParametersParameters;

/// H264 profiles WebRTC endpoints use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum H264Profile {
    ConstrainedBaseline,
    Baseline,
    Main,
    ConstrainedHigh,
    High,
    PredictiveHigh444,
}

/// A parsed `profile-level-id`. `level` is `level_idc`, with 0 standing for level 1b.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProfileLevelId {
    pub profile: H264Profile,
    pub level: u8,
}

/// What a missing `profile-level-id` means (RFC 6184: Constrained Baseline, level 3.1).
pub const DEFAULT_PROFILE_LEVEL_ID: ProfileLevelId = ProfileLevelId {
    profile: H264Profile::ConstrainedBaseline,
    level: 31,
};

/// `constraint_set3_flag`: turns level_idc 11 into level 1b.
const CONSTRAINT_SET3_FLAG: u8 = 0x10;

/// `profile_iop` bit pattern, most significant bit first: `x` = any, `0`/`1` = required.
struct ProfilePattern {
    profile_idc: u8,
    iop_pattern: &'static [u8; 8],
    profile: H264Profile,
}

impl ProfilePattern {
    fn matches(&self, profile_idc: u8, profile_iop: u8) -> bool {
        self.profile_idc == profile_idc
            && self.iop_pattern.iter().enumerate().all(|(i, bit)| {
                let set = profile_iop & (0x80 >> i) != 0;
                match bit {
                    b'1' => set,
                    b'0' => !set,
                    _ => true,
                }
            })
    }
}

/// First match wins, so Constrained Baseline comes before Baseline.
const PROFILE_PATTERNS: [ProfilePattern; 9] = [
    ProfilePattern {
        profile_idc: 0x42,
        iop_pattern: b"x1xx0000",
        profile: H264Profile::ConstrainedBaseline,
    },
    ProfilePattern {
        profile_idc: 0x4d,
        iop_pattern: b"1xxx0000",
        profile: H264Profile::ConstrainedBaseline,
    },
    ProfilePattern {
        profile_idc: 0x58,
        iop_pattern: b"11xx0000",
        profile: H264Profile::ConstrainedBaseline,
    },
    ProfilePattern {
        profile_idc: 0x42,
        iop_pattern: b"x0xx0000",
        profile: H264Profile::Baseline,
    },
    ProfilePattern {
        profile_idc: 0x58,
        iop_pattern: b"10xx0000",
        profile: H264Profile::Baseline,
    },
    ProfilePattern {
        profile_idc: 0x4d,
        iop_pattern: b"0x0x0000",
        profile: H264Profile::Main,
    },
    ProfilePattern {
        profile_idc: 0x64,
        iop_pattern: b"00000000",
        profile: H264Profile::High,
    },
    ProfilePattern {
        profile_idc: 0x64,
        iop_pattern: b"00001100",
        profile: H264Profile::ConstrainedHigh,
    },
    ProfilePattern {
        profile_idc: 0xf4,
        iop_pattern: b"00000000",
        profile: H264Profile::PredictiveHigh444,
    },
];

/// Parses a 6-hex-digit `profile-level-id` (e.g. `42e01f`); `None` if malformed or unknown.
pub fn parse_profile_level_id(s: &str) -> Option<ProfileLevelId> {
    if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let numeric = u32::from_str_radix(s, 16).ok()?;
    if numeric == 0 {
        return None;
    }
    let [_, profile_idc, profile_iop, level_idc] = numeric.to_be_bytes();
    let level = match level_idc {
        11 if profile_iop & CONSTRAINT_SET3_FLAG != 0 => 0,
        10 | 11 | 12 | 13 | 20 | 21 | 22 | 30 | 31 | 32 | 40 | 41 | 42 | 50 | 51 | 52 => level_idc,
        _ => return None,
    };
    let profile = PROFILE_PATTERNS
        .iter()
        .find(|p| p.matches(profile_idc, profile_iop))?
        .profile;
    Some(ProfileLevelId { profile, level })
}

/// The `profile-level-id` of codec parameters; missing (or empty) means the RFC default,
/// a non-string value is invalid.
pub fn parse_sdp_profile_level_id(params: &RtpCodecParametersParameters) -> Option<ProfileLevelId> {
    match params.get("profile-level-id") {
        None | Some(Value::Null) => Some(DEFAULT_PROFILE_LEVEL_ID),
        Some(Value::String(s)) if s.is_empty() => Some(DEFAULT_PROFILE_LEVEL_ID),
        Some(Value::String(s)) => parse_profile_level_id(s),
        Some(_) => None,
    }
}

/// Whether both parameter sets carry a valid `profile-level-id` of the same profile.
pub fn is_same_profile(
    params1: &RtpCodecParametersParameters,
    params2: &RtpCodecParametersParameters,
) -> bool {
    match (
        parse_sdp_profile_level_id(params1),
        parse_sdp_profile_level_id(params2),
    ) {
        (Some(a), Some(b)) => a.profile == b.profile,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(v: Value) -> RtpCodecParametersParameters {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn parses_common_profiles() {
        use H264Profile::*;
        let cases = [
            ("42e01f", ConstrainedBaseline, 31),
            ("42001f", Baseline, 31),
            ("4d0032", Main, 50),
            ("4d001f", Main, 31),
            ("640032", High, 50),
            ("640c1f", ConstrainedHigh, 31),
            ("f4001f", PredictiveHigh444, 31),
            ("42f00b", ConstrainedBaseline, 0),
            ("42C02A", ConstrainedBaseline, 42),
        ];
        for (s, profile, level) in cases {
            assert_eq!(
                parse_profile_level_id(s),
                Some(ProfileLevelId { profile, level }),
                "{s}"
            );
        }
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "", "42e01", "42e01f0", "000000", "42e0ff", "ffe01f", "42e01g", "ü2e01f",
        ] {
            assert_eq!(parse_profile_level_id(s), None, "{s:?}");
        }
    }

    #[test]
    fn same_profile_ignores_levels() {
        let main50 = params(json!({"profile-level-id": "4d0032"}));
        let main31 = params(json!({"profile-level-id": "4d001f"}));
        let cb = params(json!({"profile-level-id": "42e01f"}));
        let none = params(json!({}));
        let bad = params(json!({"profile-level-id": 42}));
        assert!(is_same_profile(&main50, &main31));
        assert!(!is_same_profile(&main50, &cb));
        assert!(is_same_profile(&cb, &none));
        assert!(!is_same_profile(&bad, &bad));
    }
}
