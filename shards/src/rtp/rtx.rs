//! RTX retransmission payload format (RFC 4588): an RTX packet is the original packet sent on the
//! RTX SSRC with the RTX payload type and its own sequence number, its payload prefixed by the
//! original sequence number (OSN). mediasoup's `RtpPacket::RtxEncode` / `RtxDecode`, writing into
//! a caller-provided buffer instead of shifting the packet in place.
//!
//! The CSRC list and the extension block are copied verbatim (ids do not change between the two).
//! RTX packets carry no padding: encoding drops it, and padding-only RTX packets (the probes
//! browsers send) have no OSN, so decoding them fails with [`RtpError::RtxTooShort`].

use super::packet::{RtpError, RtpPacket, FIXED_HEADER_LEN};

/// Copies `src`'s header with new SSRC / PT / seq (same marker, timestamp, CSRCs, extensions, P bit
/// cleared), then `prefix` and `payload`. Returns the length written.
fn write_with_header(
    src: &RtpPacket<'_>,
    out: &mut [u8],
    ssrc: u32,
    payload_type: u8,
    seq: u16,
    prefix: &[u8],
    payload: &[u8],
) -> Result<usize, RtpError> {
    let header = src
        .as_bytes()
        .get(..src.header_len())
        .ok_or(RtpError::TooShort)?;
    let total = header.len() + prefix.len() + payload.len();
    if total > out.len() {
        return Err(RtpError::BufferTooSmall);
    }
    out[..header.len()].copy_from_slice(header);
    out[0] &= !0x20;
    out[1] = (out[1] & 0x80) | (payload_type & 0x7F);
    out[2..4].copy_from_slice(&seq.to_be_bytes());
    out[8..FIXED_HEADER_LEN].copy_from_slice(&ssrc.to_be_bytes());
    let mut pos = header.len();
    out[pos..pos + prefix.len()].copy_from_slice(prefix);
    pos += prefix.len();
    out[pos..pos + payload.len()].copy_from_slice(payload);
    Ok(pos + payload.len())
}

/// Writes the RTX packet for `original` into `out` and returns its length.
pub fn encode(
    original: &RtpPacket<'_>,
    out: &mut [u8],
    rtx_ssrc: u32,
    rtx_payload_type: u8,
    rtx_seq: u16,
) -> Result<usize, RtpError> {
    write_with_header(
        original,
        out,
        rtx_ssrc,
        rtx_payload_type,
        rtx_seq,
        &original.sequence_number().to_be_bytes(),
        original.payload(),
    )
}

/// Writes the original packet carried by `rtx` into `out` and returns its length: the OSN becomes
/// the sequence number, and the media SSRC / payload type (known to the caller from the RTX
/// mapping, e.g. `apt`) are restored.
pub fn decode(
    rtx: &RtpPacket<'_>,
    out: &mut [u8],
    media_ssrc: u32,
    media_payload_type: u8,
) -> Result<usize, RtpError> {
    let payload = rtx.payload();
    let (osn, rest) = match payload {
        [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]), rest),
        _ => return Err(RtpError::RtxTooShort),
    };
    write_with_header(rtx, out, media_ssrc, media_payload_type, osn, &[], rest)
}

/// The original sequence number an RTX packet carries.
pub fn original_sequence_number(rtx: &RtpPacket<'_>) -> Option<u16> {
    match rtx.payload() {
        [a, b, ..] => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::packet::{ExtensionMap, RtpHeaderWriter};

    fn original() -> Vec<u8> {
        let mut buf = vec![0u8; 200];
        let w = RtpHeaderWriter {
            marker: true,
            payload_type: 96,
            sequence_number: 4242,
            timestamp: 90_000,
            ssrc: 0x1111,
            csrcs: &[0, 0, 0, 9],
        };
        let n = w
            .write(&mut buf, [(3u8, &[1u8, 2][..])].into_iter(), b"media", 3)
            .unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let orig_buf = original();
        let orig = RtpPacket::parse(&orig_buf).unwrap();
        let mut rtx_buf = [0u8; 200];
        let n = encode(&orig, &mut rtx_buf, 0x2222, 97, 7).unwrap();
        let rtx = RtpPacket::parse(&rtx_buf[..n]).unwrap();
        assert_eq!(rtx.ssrc(), 0x2222);
        assert_eq!(rtx.payload_type(), 97);
        assert_eq!(rtx.sequence_number(), 7);
        assert_eq!(rtx.timestamp(), 90_000);
        assert!(rtx.marker());
        assert_eq!(rtx.padding_len(), 0, "RTX drops the padding");
        assert_eq!(rtx.payload(), b"\x10\x92media");
        assert_eq!(original_sequence_number(&rtx), Some(4242));
        assert_eq!(rtx.transport_wide_seq(3), Some(0x0102));
        assert_eq!(rtx.csrcs().collect::<Vec<_>>(), vec![9]);

        let mut back = [0u8; 200];
        let m = decode(&rtx, &mut back, 0x1111, 96).unwrap();
        let p = RtpPacket::parse(&back[..m]).unwrap();
        assert_eq!(p.ssrc(), 0x1111);
        assert_eq!(p.payload_type(), 96);
        assert_eq!(p.sequence_number(), 4242);
        assert_eq!(p.timestamp(), 90_000);
        assert!(p.marker());
        assert_eq!(p.payload(), b"media");
        assert_eq!(p.extension(3), Some(&[1u8, 2][..]));
    }

    #[test]
    fn padding_only_rtx_has_no_osn() {
        let mut buf = [0u8; 64];
        let w = RtpHeaderWriter {
            payload_type: 97,
            ssrc: 0x2222,
            ..Default::default()
        };
        let n = w.write(&mut buf, std::iter::empty(), &[], 20).unwrap();
        let rtx = RtpPacket::parse(&buf[..n]).unwrap();
        let mut out = [0u8; 64];
        assert_eq!(decode(&rtx, &mut out, 1, 96), Err(RtpError::RtxTooShort));
        assert_eq!(original_sequence_number(&rtx), None);
    }

    #[test]
    fn output_too_small_is_an_error() {
        let orig_buf = original();
        let orig = RtpPacket::parse(&orig_buf).unwrap();
        let mut small = [0u8; 20];
        assert_eq!(
            encode(&orig, &mut small, 1, 2, 3),
            Err(RtpError::BufferTooSmall)
        );
        // A rewritten packet (different layout) still encodes.
        let mut rw = [0u8; 200];
        let n =
            crate::rtp::packet::rewrite_into(&orig, &mut rw, 5, 6, 7, 8, &ExtensionMap::new(), &[])
                .unwrap();
        let p = RtpPacket::parse(&rw[..n]).unwrap();
        let mut out = [0u8; 200];
        assert!(encode(&p, &mut out, 1, 2, 3).is_ok());
    }
}
