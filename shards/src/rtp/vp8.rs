//! VP8 RTP payload descriptor (RFC 7741 §4.2) parsing, key-frame detection, and the in-place
//! rewrite of PictureID / TL0PICIDX that keeps them continuous for a receiver across simulcast
//! switches and temporal-layer drops (mediasoup's `RTC::Codecs::VP8`).

use super::seq_manager::{PictureIdManager, ShortPictureIdManager, Tl0PicIdxManager};

/// The parsed payload descriptor of one VP8 RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8PayloadDescriptor {
    /// X: the extension byte is present.
    pub extended: bool,
    /// N: the frame can be discarded without affecting others.
    pub non_reference: bool,
    /// S: first packet of a VP8 partition.
    pub start: bool,
    /// PID: partition index.
    pub partition_index: u8,
    /// PictureID (7 or 15 bits).
    pub picture_id: Option<u16>,
    /// M: the PictureID is 15 bits long (2 bytes on the wire).
    pub two_byte_picture_id: bool,
    pub tl0_pic_idx: Option<u8>,
    /// TID: temporal layer index (present with T).
    pub temporal_layer: Option<u8>,
    /// Y: layer sync; the frame only depends on TL0 frames, so a receiver can switch up here.
    pub layer_sync: bool,
    /// KEYIDX (present with K).
    pub key_idx: Option<u8>,
    /// S=1, PID=0 and the VP8 payload header's P bit is 0.
    pub is_key_frame: bool,
    /// Length of the descriptor: the VP8 payload starts here.
    pub len: usize,
    /// Offsets of the PictureID and TL0PICIDX fields inside the RTP payload (0 = absent).
    picture_id_offset: usize,
    tl0_offset: usize,
}

impl Vp8PayloadDescriptor {
    /// Parses the descriptor at the start of an RTP payload. None if truncated.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let b0 = *payload.first()?;
        let mut d = Self {
            extended: b0 & 0x80 != 0,
            non_reference: b0 & 0x20 != 0,
            start: b0 & 0x10 != 0,
            partition_index: b0 & 0x07,
            ..Self::default()
        };
        let mut offset = 1;
        if d.extended {
            let x = *payload.get(offset)?;
            offset += 1;
            let (i, l, t, k) = (x & 0x80 != 0, x & 0x40 != 0, x & 0x20 != 0, x & 0x10 != 0);
            if i {
                let b = *payload.get(offset)?;
                d.picture_id_offset = offset;
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
                d.tl0_pic_idx = Some(*payload.get(offset)?);
                d.tl0_offset = offset;
                offset += 1;
            }
            if t || k {
                let b = *payload.get(offset)?;
                offset += 1;
                if t {
                    d.temporal_layer = Some(b >> 6);
                    d.layer_sync = b & 0x20 != 0;
                }
                if k {
                    d.key_idx = Some(b & 0x1F);
                }
            }
        }
        d.len = offset;
        // The VP8 payload header's first byte: bit 0 is the inverse key frame flag.
        d.is_key_frame = d.start
            && d.partition_index == 0
            && payload.get(offset).is_some_and(|&h| h & 0x01 == 0);
        Some(d)
    }

    /// Writes `picture_id` and `tl0_pic_idx` over the fields this descriptor has, in place, keeping
    /// the PictureID width. False (nothing written) if `payload` is not the one parsed.
    pub fn encode(&self, payload: &mut [u8], picture_id: u16, tl0_pic_idx: u8) -> bool {
        // Offsets are 0 for a descriptor not made by `parse`: nothing to write then.
        let pid_at = (self.picture_id.is_some() && self.picture_id_offset > 0)
            .then_some(self.picture_id_offset);
        let tl0_at = (self.tl0_pic_idx.is_some() && self.tl0_offset > 0).then_some(self.tl0_offset);
        let pid_end = pid_at.map_or(0, |o| o + if self.two_byte_picture_id { 2 } else { 1 });
        if payload.len() < self.len || payload.len() < pid_end || tl0_at >= Some(payload.len()) {
            return false;
        }
        if let Some(o) = pid_at {
            if self.two_byte_picture_id {
                let [hi, lo] = (picture_id & 0x7FFF).to_be_bytes();
                payload[o] = 0x80 | hi;
                payload[o + 1] = lo;
            } else {
                payload[o] = (picture_id & 0x7F) as u8;
            }
        }
        if let Some(o) = tl0_at {
            payload[o] = tl0_pic_idx;
        }
        true
    }

    /// Puts the parsed values back (undoes [`Self::encode`]).
    pub fn restore(&self, payload: &mut [u8]) -> bool {
        self.encode(
            payload,
            self.picture_id.unwrap_or(0),
            self.tl0_pic_idx.unwrap_or(0),
        )
    }
}

/// Key-frame check of a VP8 RTP payload.
pub fn is_key_frame(payload: &[u8]) -> bool {
    Vp8PayloadDescriptor::parse(payload).is_some_and(|d| d.is_key_frame)
}

/// "Any temporal layer": the state right after a key frame.
const ANY_TEMPORAL_LAYER: u8 = u8::MAX;

/// Per-consumer VP8 state (mediasoup's `VP8::EncodingContext` + `PayloadDescriptorHandler`):
/// drops temporal layers above the target, switches up only at layer-sync frames, and keeps
/// PictureID / TL0PICIDX continuous across drops and source switches.
#[derive(Debug, Clone)]
pub struct Vp8Rewriter {
    picture_ids: PictureIdManager,
    short_picture_ids: ShortPictureIdManager,
    tl0_pic_idxs: Tl0PicIdxManager,
    sync_required: bool,
    current_temporal_layer: u8,
    target_temporal_layer: u8,
}

impl Vp8Rewriter {
    pub fn new(target_temporal_layer: u8) -> Self {
        Self {
            picture_ids: PictureIdManager::new(),
            short_picture_ids: ShortPictureIdManager::new(),
            tl0_pic_idxs: Tl0PicIdxManager::new(),
            sync_required: false,
            current_temporal_layer: ANY_TEMPORAL_LAYER,
            target_temporal_layer,
        }
    }

    /// The next packet comes from another source (spatial switch): continue its numbering from ours.
    pub fn sync_required(&mut self) {
        self.sync_required = true;
    }

    pub fn set_target_temporal_layer(&mut self, temporal_layer: u8) {
        self.target_temporal_layer = temporal_layer;
    }

    pub fn target_temporal_layer(&self) -> u8 {
        self.target_temporal_layer
    }

    /// The temporal layer being forwarded; None right after a key frame until a packet settles it.
    pub fn current_temporal_layer(&self) -> Option<u8> {
        (self.current_temporal_layer != ANY_TEMPORAL_LAYER).then_some(self.current_temporal_layer)
    }

    /// Decides whether the packet described by `d` is forwarded and, if so, rewrites its payload
    /// in place. False: do not forward (and drop its RTP sequence number from the consumer's
    /// [`super::seq_manager::RtpSeqManager`]).
    pub fn rewrite(&mut self, d: &Vp8PayloadDescriptor, payload: &mut [u8]) -> bool {
        if self.sync_required {
            if let Some(pid) = d.picture_id {
                if d.two_byte_picture_id {
                    self.picture_ids.sync(pid.wrapping_sub(1) & 0x7FFF);
                } else {
                    self.short_picture_ids.sync(pid.wrapping_sub(1) & 0x7F);
                }
            }
            if let Some(tl0) = d.tl0_pic_idx {
                self.tl0_pic_idxs.sync(tl0.wrapping_sub(1));
            }
            self.sync_required = false;
        }
        if d.is_key_frame {
            self.current_temporal_layer = ANY_TEMPORAL_LAYER;
        }
        if let (Some(pid), Some(tid), Some(tl0)) = (d.picture_id, d.temporal_layer, d.tl0_pic_idx) {
            let newer = if d.two_byte_picture_id {
                PictureIdManager::is_seq_higher_than(pid, self.picture_ids.max_input())
            } else {
                ShortPictureIdManager::is_seq_higher_than(pid, self.short_picture_ids.max_input())
            };
            // First packet of a new picture: filter by temporal layer.
            let skip = tid > self.target_temporal_layer
                || (tid > self.current_temporal_layer && !d.layer_sync);
            if newer && skip {
                if d.two_byte_picture_id {
                    self.picture_ids.drop(pid);
                } else {
                    self.short_picture_ids.drop(pid);
                }
                self.tl0_pic_idxs.drop(tl0);
                return false;
            }
        }
        let picture_id = match d.picture_id {
            Some(pid) if d.two_byte_picture_id => match self.picture_ids.input(pid) {
                Some(out) => out,
                None => return false,
            },
            Some(pid) => match self.short_picture_ids.input(pid) {
                Some(out) => out,
                None => return false,
            },
            None => 0,
        };
        let tl0_pic_idx = match d.tl0_pic_idx {
            Some(tl0) => match self.tl0_pic_idxs.input(tl0) {
                Some(out) => out,
                None => return false,
            },
            None => 0,
        };
        if let Some(tid) = d.temporal_layer {
            if tid > self.current_temporal_layer {
                self.current_temporal_layer = tid;
            } else if self.current_temporal_layer > self.target_temporal_layer {
                self.current_temporal_layer = self.target_temporal_layer;
            }
        } else if self.current_temporal_layer > self.target_temporal_layer {
            self.current_temporal_layer = self.target_temporal_layer;
        }
        d.encode(payload, picture_id, tl0_pic_idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// X=1, S=1, PID=0, I/L/T present, 15-bit picture id, then the VP8 payload header byte.
    fn payload(pid: u16, tl0: u8, tid: u8, y: bool, key: bool) -> Vec<u8> {
        let [hi, lo] = pid.to_be_bytes();
        vec![
            0x90,
            0xE0,
            0x80 | hi,
            lo,
            tl0,
            (tid << 6) | if y { 0x20 } else { 0 },
            if key { 0x00 } else { 0x01 },
            0xAA,
        ]
    }

    #[test]
    fn parses_descriptor_fields() {
        let p = payload(0x1234, 7, 2, true, true);
        let d = Vp8PayloadDescriptor::parse(&p).unwrap();
        assert!(d.extended && d.start && !d.non_reference);
        assert_eq!(d.partition_index, 0);
        assert_eq!(d.picture_id, Some(0x1234));
        assert!(d.two_byte_picture_id);
        assert_eq!(d.tl0_pic_idx, Some(7));
        assert_eq!(d.temporal_layer, Some(2));
        assert!(d.layer_sync);
        assert_eq!(d.key_idx, None);
        assert_eq!(d.len, 6);
        assert!(d.is_key_frame);

        // One-byte picture id, K only.
        let p = [0x80, 0x90, 0x05, 0x1F, 0x01];
        let d = Vp8PayloadDescriptor::parse(&p).unwrap();
        assert_eq!(d.picture_id, Some(5));
        assert!(!d.two_byte_picture_id);
        assert_eq!(d.temporal_layer, None);
        assert_eq!(d.key_idx, Some(0x1F));
        assert!(!d.start && !d.is_key_frame);

        // No extension byte: a minimal descriptor.
        let d = Vp8PayloadDescriptor::parse(&[0x10, 0x00]).unwrap();
        assert!(d.is_key_frame && d.picture_id.is_none() && d.len == 1);
    }

    #[test]
    fn key_frame_needs_start_partition_zero_and_p_bit_clear() {
        assert!(is_key_frame(&payload(1, 0, 0, false, true)));
        assert!(!is_key_frame(&payload(1, 0, 0, false, false)));
        let mut p = payload(1, 0, 0, false, true);
        p[0] = 0x80; // S=0
        assert!(!is_key_frame(&p));
        p[0] = 0x91; // PID=1
        assert!(!is_key_frame(&p));
        // Nothing after the descriptor.
        assert!(!is_key_frame(&payload(1, 0, 0, false, true)[..6]));
    }

    #[test]
    fn truncated_descriptors_are_rejected() {
        let p = payload(0x1234, 7, 2, true, true);
        for len in 0..6 {
            assert!(
                Vp8PayloadDescriptor::parse(&p[..len]).is_none(),
                "len {len}"
            );
        }
    }

    #[test]
    fn encode_and_restore_in_place() {
        let mut p = payload(0x1234, 7, 0, false, false);
        let d = Vp8PayloadDescriptor::parse(&p).unwrap();
        assert!(d.encode(&mut p, 0x0042, 99));
        let e = Vp8PayloadDescriptor::parse(&p).unwrap();
        assert_eq!((e.picture_id, e.tl0_pic_idx), (Some(0x42), Some(99)));
        assert!(e.two_byte_picture_id);
        assert!(d.restore(&mut p));
        assert_eq!(p, payload(0x1234, 7, 0, false, false));
        assert!(!d.encode(&mut p[..3], 1, 1));
        // A hand-made descriptor (no offsets) writes nothing and cannot index out of bounds.
        let fake = Vp8PayloadDescriptor {
            picture_id: Some(1),
            two_byte_picture_id: true,
            tl0_pic_idx: Some(1),
            ..Default::default()
        };
        let mut empty: [u8; 0] = [];
        assert!(fake.encode(&mut empty, 5, 5));
    }

    #[test]
    fn rewriter_drops_upper_temporal_layers_without_gaps() {
        let mut r = Vp8Rewriter::new(0);
        // Pictures 100..=103 with TIDs 0,1,0,1 (TL0PICIDX increments on TID 0).
        let frames = [
            (100, 5, 0),
            (101, 5, 1),
            (102, 6, 0),
            (103, 6, 1),
            (104, 7, 0),
        ];
        let mut out = vec![];
        for (i, &(pid, tl0, tid)) in frames.iter().enumerate() {
            let mut p = payload(pid, tl0, tid, false, i == 0);
            let d = Vp8PayloadDescriptor::parse(&p).unwrap();
            if r.rewrite(&d, &mut p) {
                let e = Vp8PayloadDescriptor::parse(&p).unwrap();
                out.push((e.picture_id.unwrap(), e.tl0_pic_idx.unwrap()));
            }
        }
        assert_eq!(out, vec![(100, 5), (101, 6), (102, 7)]);
        assert_eq!(r.current_temporal_layer(), Some(0));
    }

    #[test]
    fn rewriter_switches_up_only_at_layer_sync() {
        let mut r = Vp8Rewriter::new(0);
        let mut p = payload(10, 1, 0, false, true);
        let d = Vp8PayloadDescriptor::parse(&p).unwrap();
        assert!(r.rewrite(&d, &mut p));
        r.set_target_temporal_layer(1);
        let mut p = payload(11, 1, 1, false, false);
        let d = Vp8PayloadDescriptor::parse(&p).unwrap();
        assert!(
            !r.rewrite(&d, &mut p),
            "TID 1 without Y cannot start the layer"
        );
        let mut p = payload(12, 1, 1, true, false);
        let d = Vp8PayloadDescriptor::parse(&p).unwrap();
        assert!(r.rewrite(&d, &mut p));
        assert_eq!(r.current_temporal_layer(), Some(1));
        let e = Vp8PayloadDescriptor::parse(&p).unwrap();
        assert_eq!(e.picture_id, Some(11), "the dropped picture leaves no gap");
    }

    #[test]
    fn rewriter_keeps_ids_continuous_across_a_source_switch() {
        let mut r = Vp8Rewriter::new(2);
        for pid in 500..503u16 {
            let mut p = payload(pid, 3, 0, false, pid == 500);
            let d = Vp8PayloadDescriptor::parse(&p).unwrap();
            assert!(r.rewrite(&d, &mut p));
        }
        r.sync_required();
        let mut p = payload(9000, 200, 0, false, true);
        let d = Vp8PayloadDescriptor::parse(&p).unwrap();
        assert!(r.rewrite(&d, &mut p));
        let e = Vp8PayloadDescriptor::parse(&p).unwrap();
        assert_eq!(e.picture_id, Some(503));
        assert_eq!(e.tl0_pic_idx, Some(4));
        // Second packet of the same picture keeps the same ids.
        let mut p = payload(9000, 200, 0, false, false);
        p[0] = 0x80;
        let d = Vp8PayloadDescriptor::parse(&p).unwrap();
        assert!(r.rewrite(&d, &mut p));
        assert_eq!(
            Vp8PayloadDescriptor::parse(&p).unwrap().picture_id,
            Some(503)
        );
    }
}
