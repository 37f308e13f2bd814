//! Scalability modes (`L1T3`, `L3T3_KEY`, `S2T1`...), parsed the way mediasoup and
//! mediasoup-client do.

/// Layer structure described by a scalability mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScalabilityMode {
    pub spatial_layers: u8,
    pub temporal_layers: u8,
    /// K-SVC (`_KEY` suffix): spatial layers depend on each other only on key frames.
    pub ksvc: bool,
}

impl Default for ScalabilityMode {
    /// What an absent or unparsable mode means: a single layer.
    fn default() -> Self {
        Self {
            spatial_layers: 1,
            temporal_layers: 1,
            ksvc: false,
        }
    }
}

/// Reads 1 or 2 ASCII digits at the start of `s`; returns the value and the rest.
fn take_layer_count(s: &[u8]) -> Option<(u8, &[u8])> {
    let len = s.iter().take(2).take_while(|b| b.is_ascii_digit()).count();
    if len == 0 {
        return None;
    }
    let value = s[..len].iter().fold(0u8, |acc, d| acc * 10 + (d - b'0'));
    Some((value, &s[len..]))
}

/// Parses `^[LS](\d{1,2})T(\d{1,2})(_KEY)?` (a prefix match, like the JavaScript regex).
///
/// Anything else (including `None` and zero layer counts, which mediasoup's `[1-9]\d?` does
/// not accept either) means 1 spatial × 1 temporal layer.
pub fn parse_scalability_mode(mode: Option<&str>) -> ScalabilityMode {
    fn parse(mode: &str) -> Option<ScalabilityMode> {
        let rest = mode.as_bytes();
        let rest = rest
            .strip_prefix(b"L")
            .or_else(|| rest.strip_prefix(b"S"))?;
        let (spatial_layers, rest) = take_layer_count(rest)?;
        let rest = rest.strip_prefix(b"T")?;
        let (temporal_layers, rest) = take_layer_count(rest)?;
        if spatial_layers == 0 || temporal_layers == 0 {
            return None;
        }
        Some(ScalabilityMode {
            spatial_layers,
            temporal_layers,
            ksvc: rest.starts_with(b"_KEY"),
        })
    }
    mode.and_then(parse).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sm(spatial_layers: u8, temporal_layers: u8, ksvc: bool) -> ScalabilityMode {
        ScalabilityMode {
            spatial_layers,
            temporal_layers,
            ksvc,
        }
    }

    #[test]
    fn parses_valid_modes() {
        assert_eq!(parse_scalability_mode(Some("L1T3")), sm(1, 3, false));
        assert_eq!(parse_scalability_mode(Some("L3T3")), sm(3, 3, false));
        assert_eq!(parse_scalability_mode(Some("L3T3_KEY")), sm(3, 3, true));
        assert_eq!(parse_scalability_mode(Some("S2T1")), sm(2, 1, false));
        assert_eq!(parse_scalability_mode(Some("L12T10")), sm(12, 10, false));
        // Prefix match, like the JavaScript regex without `$`.
        assert_eq!(parse_scalability_mode(Some("L2T2h")), sm(2, 2, false));
        assert_eq!(
            parse_scalability_mode(Some("L3T3_KEY_SHIFT")),
            sm(3, 3, true)
        );
        assert_eq!(parse_scalability_mode(Some("L1T12_KEY")), sm(1, 12, true));
    }

    #[test]
    fn anything_else_is_one_layer() {
        for bad in [
            "", "T3", "l1t3", "L1", "LT3", "L123T3", "X1T3", "L0T1", "L1T0", "L1_T3", "🙂",
        ] {
            assert_eq!(
                parse_scalability_mode(Some(bad)),
                ScalabilityMode::default(),
                "{bad:?}"
            );
        }
        assert_eq!(parse_scalability_mode(None), sm(1, 1, false));
    }
}
