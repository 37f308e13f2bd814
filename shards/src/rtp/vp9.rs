//! VP9 RTP payload descriptor (RFC 9628 §4.2) parsing and key-frame detection (mediasoup's
//! `RTC::Codecs::VP9`): picture id, layer indices, flexible-mode reference diffs and the
//! scalability structure are walked with bounds checks; only the fields forwarding needs are kept.

/// The parsed payload descriptor of one VP9 RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp9PayloadDescriptor {
    /// P: inter-picture predicted (not a key picture).
    pub inter_picture_predicted: bool,
    /// F: flexible mode.
    pub flexible_mode: bool,
    /// B: start of a frame.
    pub start_of_frame: bool,
    /// E: end of a frame.
    pub end_of_frame: bool,
    /// V: a scalability structure follows.
    pub has_scalability_structure: bool,
    /// Z: not used as reference by upper spatial layers.
    pub not_reference_for_upper: bool,
    /// PictureID (7 or 15 bits).
    pub picture_id: Option<u16>,
    pub two_byte_picture_id: bool,
    pub temporal_layer: Option<u8>,
    /// U: switching up point.
    pub switching_up_point: bool,
    pub spatial_layer: Option<u8>,
    /// D: inter-layer dependency.
    pub inter_layer_dependency: bool,
    /// Non-flexible mode only.
    pub tl0_pic_idx: Option<u8>,
    /// Number of P_DIFF references (flexible mode, P=1).
    pub reference_count: u8,
    /// Not inter-picture predicted, start of a frame, spatial layer 0.
    pub is_key_frame: bool,
    /// Length of the descriptor: the VP9 payload starts here.
    pub len: usize,
}

impl Vp9PayloadDescriptor {
    /// Parses the descriptor at the start of an RTP payload. None if truncated.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let b0 = *payload.first()?;
        let (i, l) = (b0 & 0x80 != 0, b0 & 0x20 != 0);
        let mut d = Self {
            inter_picture_predicted: b0 & 0x40 != 0,
            flexible_mode: b0 & 0x10 != 0,
            start_of_frame: b0 & 0x08 != 0,
            end_of_frame: b0 & 0x04 != 0,
            has_scalability_structure: b0 & 0x02 != 0,
            not_reference_for_upper: b0 & 0x01 != 0,
            ..Self::default()
        };
        let mut offset = 1;
        if i {
            let b = *payload.get(offset)?;
            if b & 0x80 != 0 {
                let b2 = *payload.get(offset + 1)?;
                d.picture_id = Some(u16::from_be_bytes([b & 0x7F, b2]));
                d.two_byte_picture_id = true;
                offset += 2;
            } else {
                d.picture_id = Some((b & 0x7F) as u16);
                offset += 1;
            }
        }
        if l {
            let b = *payload.get(offset)?;
            offset += 1;
            d.temporal_layer = Some(b >> 5);
            d.switching_up_point = b & 0x10 != 0;
            d.spatial_layer = Some((b >> 1) & 0x07);
            d.inter_layer_dependency = b & 0x01 != 0;
            if !d.flexible_mode {
                d.tl0_pic_idx = Some(*payload.get(offset)?);
                offset += 1;
            }
        }
        if d.flexible_mode && d.inter_picture_predicted {
            // Up to 3 P_DIFF bytes, each with an N (more follow) bit.
            loop {
                let b = *payload.get(offset)?;
                offset += 1;
                d.reference_count += 1;
                if b & 0x01 == 0 || d.reference_count == 3 {
                    break;
                }
            }
        }
        if d.has_scalability_structure {
            offset = skip_scalability_structure(payload, offset)?;
        }
        d.len = offset;
        d.is_key_frame =
            !d.inter_picture_predicted && d.start_of_frame && d.spatial_layer.unwrap_or(0) == 0;
        Some(d)
    }
}

/// Skips the SS: N_S|Y|G, optional per-layer sizes, optional picture group description.
fn skip_scalability_structure(payload: &[u8], mut offset: usize) -> Option<usize> {
    let b = *payload.get(offset)?;
    offset += 1;
    let spatial_layers = ((b >> 5) + 1) as usize;
    if b & 0x10 != 0 {
        offset += 4 * spatial_layers;
    }
    if b & 0x08 != 0 {
        let groups = *payload.get(offset)?;
        offset += 1;
        for _ in 0..groups {
            let g = *payload.get(offset)?;
            offset += 1 + ((g >> 2) & 0x03) as usize;
        }
    }
    (offset <= payload.len()).then_some(offset)
}

/// Key-frame check of a VP9 RTP payload.
pub fn is_key_frame(payload: &[u8]) -> bool {
    Vp9PayloadDescriptor::parse(payload).is_some_and(|d| d.is_key_frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_frame_non_flexible_with_layers_and_ss() {
        // I L B V set, P clear; 15-bit pid; TID 0 U 0 SID 0 D 0; TL0PICIDX; SS with 1 layer + Y + G.
        let p = [
            0xAA, 0x81, 0x23, 0x00, 0x07, // header, pid 0x0123, layer byte, tl0
            0x18, 0x01, 0x40, 0x00, 0xF0, // SS: N_S=0,Y,G; 320x240
            0x01, 0x04, 0x01, // N_G=1; TID0 U0 R=1; one P_DIFF
            0x9D, // VP9 payload
        ];
        let d = Vp9PayloadDescriptor::parse(&p).unwrap();
        assert!(d.is_key_frame);
        assert_eq!(d.picture_id, Some(0x0123));
        assert_eq!(d.tl0_pic_idx, Some(7));
        assert_eq!((d.temporal_layer, d.spatial_layer), (Some(0), Some(0)));
        assert_eq!(d.len, 13);
        // Truncated anywhere inside the descriptor: rejected.
        for len in 0..13 {
            assert!(
                Vp9PayloadDescriptor::parse(&p[..len]).is_none(),
                "len {len}"
            );
        }
    }

    #[test]
    fn inter_frames_and_upper_spatial_layers_are_not_key_frames() {
        // P set.
        assert!(!is_key_frame(&[0xC8, 0x05]));
        // P clear, B set, but spatial layer 1 (L, non-flexible).
        assert!(!is_key_frame(&[0x28, 0x02, 0x00]));
        // P clear, B clear.
        assert!(!is_key_frame(&[0x00]));
        // Minimal key frame without optional fields.
        assert!(is_key_frame(&[0x08]));
    }

    #[test]
    fn flexible_mode_reference_diffs() {
        // I P L F B; 7-bit pid 5; TID 1 U SID 0; two P_DIFF (first with N).
        let p = [0xF8, 0x05, 0x30, 0x03, 0x04, 0xEE];
        let d = Vp9PayloadDescriptor::parse(&p).unwrap();
        assert!(d.flexible_mode && !d.is_key_frame);
        assert_eq!(d.picture_id, Some(5));
        assert!(!d.two_byte_picture_id);
        assert_eq!(d.temporal_layer, Some(1));
        assert!(d.switching_up_point);
        assert_eq!(d.tl0_pic_idx, None);
        assert_eq!(d.reference_count, 2);
        assert_eq!(d.len, 5);
        assert!(Vp9PayloadDescriptor::parse(&p[..4]).is_none());
    }
}
