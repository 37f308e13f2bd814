//! H.264 RTP payload (RFC 6184) inspection: which NAL unit types a packet starts, enough to tell a
//! key frame (mediasoup's `RTC::Codecs::H264`).
//!
//! mediasoup flags a key frame only on SPS; this reports SPS, PPS and IDR separately so the
//! forwarding code can choose: switching a receiver at an IDR whose SPS/PPS went in an earlier,
//! lost packet would leave its decoder stuck, so layer switches should prefer `has_sps`.

/// NAL unit types this module cares about.
pub mod nal {
    pub const IDR: u8 = 5;
    pub const SPS: u8 = 7;
    pub const PPS: u8 = 8;
    pub const STAP_A: u8 = 24;
    pub const STAP_B: u8 = 25;
    pub const FU_A: u8 = 28;
    pub const FU_B: u8 = 29;
}

/// What the NAL units starting in one RTP payload are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct H264PayloadInfo {
    /// Type of the RTP payload's own NAL header (1..=23 single NAL, 24 STAP-A, 28 FU-A, ...).
    pub packetization_type: u8,
    pub has_sps: bool,
    pub has_pps: bool,
    /// An IDR slice starts in this packet (single NAL, aggregated, or first FU fragment).
    pub has_idr: bool,
}

impl H264PayloadInfo {
    /// SPS or the start of an IDR slice.
    pub fn is_key_frame(&self) -> bool {
        self.has_sps || self.has_idr
    }

    fn note(&mut self, nal_type: u8) {
        match nal_type {
            nal::IDR => self.has_idr = true,
            nal::SPS => self.has_sps = true,
            nal::PPS => self.has_pps = true,
            _ => {}
        }
    }
}

/// Inspects an H.264 RTP payload. None if empty; truncated aggregates report what fits.
pub fn parse(payload: &[u8]) -> Option<H264PayloadInfo> {
    let header = *payload.first()?;
    let mut info = H264PayloadInfo {
        packetization_type: header & 0x1F,
        ..Default::default()
    };
    match info.packetization_type {
        t @ 1..=23 => info.note(t),
        t @ (nal::STAP_A | nal::STAP_B) => {
            // STAP-B carries a 16-bit DON before the first unit.
            let mut offset = if t == nal::STAP_A { 1 } else { 3 };
            while let Some(size) = payload.get(offset..offset + 2) {
                let size = u16::from_be_bytes([size[0], size[1]]) as usize;
                offset += 2;
                if size == 0 || offset + size > payload.len() {
                    break;
                }
                info.note(payload[offset] & 0x1F);
                offset += size;
            }
        }
        nal::FU_A | nal::FU_B => {
            if let Some(&fu_header) = payload.get(1) {
                if fu_header & 0x80 != 0 {
                    info.note(fu_header & 0x1F);
                }
            }
        }
        _ => {}
    }
    Some(info)
}

/// Key-frame check of an H.264 RTP payload (SPS, or the start of an IDR slice).
pub fn is_key_frame(payload: &[u8]) -> bool {
    parse(payload).is_some_and(|i| i.is_key_frame())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_nal_units() {
        assert!(is_key_frame(&[0x65, 0x88])); // IDR
        assert!(is_key_frame(&[0x67, 0x42])); // SPS
        assert!(!is_key_frame(&[0x41, 0x9A])); // non-IDR slice
        let pps = parse(&[0x68, 0xCE]).unwrap();
        assert!(pps.has_pps && !pps.is_key_frame());
        assert!(parse(&[]).is_none());
    }

    #[test]
    fn stap_a_with_sps_pps_idr() {
        let p = [0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xCE, 0, 2, 0x65, 0x88];
        let i = parse(&p).unwrap();
        assert_eq!(i.packetization_type, nal::STAP_A);
        assert!(i.has_sps && i.has_pps && i.has_idr);
        // Only non-key units.
        assert!(!is_key_frame(&[0x78, 0, 2, 0x41, 0x9A, 0, 1, 0x06]));
        // Truncated size field or unit: stop without reading past the end.
        assert!(!is_key_frame(&[0x78, 0, 9, 0x67]));
        assert!(is_key_frame(&[0x78, 0, 1, 0x67, 0]));
        // STAP-B skips the DON.
        assert!(is_key_frame(&[0x79, 0xFF, 0xFF, 0, 1, 0x65]));
    }

    #[test]
    fn fu_a_only_at_start() {
        assert!(is_key_frame(&[0x7C, 0x85, 0xAA])); // S=1, type 5
        assert!(!is_key_frame(&[0x7C, 0x05, 0xAA])); // middle fragment
        assert!(!is_key_frame(&[0x7C, 0x81, 0xAA])); // start of a non-IDR slice
        assert!(!is_key_frame(&[0x7C])); // no FU header
    }
}
