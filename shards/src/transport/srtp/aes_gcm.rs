//! AEAD_AES_128_GCM and AEAD_AES_256_GCM (RFC 7714), in place.
//!
//! SRTP (§8): IV = (0x0000 || SSRC || ROC || SEQ) XOR salt, AAD = the RTP header with its CSRCs
//! and extension block, the 16-byte tag appended after the encrypted payload.
//! SRTCP (§9): IV = (0x0000 || SSRC || 0x0000 || 0 || index) XOR salt, AAD = the first 8 bytes
//! || the ESRTCP word (E flag || 31-bit index); the trailer is tag || ESRTCP word (§9.3, §17).

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};

use super::super::srtp_session::SrtpError;
use super::kdf;

pub(super) const TAG_LEN: usize = 16;
/// Tag, then the ESRTCP word.
pub(super) const RTCP_TRAILER_LEN: usize = TAG_LEN + 4;

pub(super) struct AesGcm {
    rtp_key: LessSafeKey,
    rtcp_key: LessSafeKey,
    rtp_salt: [u8; 12],
    rtcp_salt: [u8; 12],
}

impl AesGcm {
    /// Session keys and salts derived from a 16- or 32-byte master key and a 12-byte salt.
    pub(super) fn new(master_key: &[u8], master_salt: &[u8]) -> Result<Self, SrtpError> {
        let algorithm = match master_key.len() {
            16 => &AES_128_GCM,
            32 => &AES_256_GCM,
            n => {
                return Err(SrtpError::InvalidKeys(format!(
                    "AES-GCM master key of {n} bytes"
                )))
            }
        };
        if master_salt.len() != 12 {
            return Err(SrtpError::InvalidKeys(format!(
                "AES-GCM master salt of {} bytes",
                master_salt.len()
            )));
        }
        let key = |label| -> Result<LessSafeKey, SrtpError> {
            let mut session_key = [0u8; 32];
            let session_key = &mut session_key[..master_key.len()];
            kdf::derive(master_key, master_salt, label, session_key)?;
            let key = UnboundKey::new(algorithm, session_key)
                .map_err(|_| SrtpError::InvalidKeys("AES-GCM key setup failed".into()));
            session_key.fill(0);
            Ok(LessSafeKey::new(key?))
        };
        let salt = |label| -> Result<[u8; 12], SrtpError> {
            let mut salt = [0u8; 12];
            kdf::derive(master_key, master_salt, label, &mut salt)?;
            Ok(salt)
        };
        Ok(Self {
            rtp_key: key(kdf::LABEL_SRTP_ENCRYPTION)?,
            rtcp_key: key(kdf::LABEL_SRTCP_ENCRYPTION)?,
            rtp_salt: salt(kdf::LABEL_SRTP_SALT)?,
            rtcp_salt: salt(kdf::LABEL_SRTCP_SALT)?,
        })
    }

    /// (0x0000 || SSRC || high || low) XOR salt: the SRTP IV with high = ROC and low = SEQ.
    fn nonce(salt: &[u8; 12], ssrc: u32, high: u32, low: u16) -> Nonce {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[6..10].copy_from_slice(&high.to_be_bytes());
        iv[10..12].copy_from_slice(&low.to_be_bytes());
        for (b, s) in iv.iter_mut().zip(salt) {
            *b ^= s;
        }
        Nonce::assume_unique_for_key(iv)
    }

    /// Encrypts `buf[header_len..len]` and writes the tag after it. Returns the SRTP length.
    pub(super) fn seal_rtp(
        &self,
        buf: &mut [u8],
        header_len: usize,
        len: usize,
        ssrc: u32,
        roc: u32,
        seq: u16,
    ) -> Result<usize, SrtpError> {
        let end = len + TAG_LEN;
        let (header, rest) = buf
            .get_mut(..end)
            .and_then(|b| b.split_at_mut_checked(header_len))
            .ok_or(SrtpError::Malformed)?;
        let (payload, tag_out) = rest
            .split_at_mut_checked(len - header_len)
            .ok_or(SrtpError::Malformed)?;
        let nonce = Self::nonce(&self.rtp_salt, ssrc, roc, seq);
        let tag = self
            .rtp_key
            .seal_in_place_separate_tag(nonce, Aad::from(&*header), payload)
            .map_err(|_| SrtpError::Other("AES-GCM seal failed".into()))?;
        tag_out.copy_from_slice(tag.as_ref());
        Ok(end)
    }

    /// Authenticates and decrypts the SRTP packet `packet`, whose header is `header_len` long.
    /// Returns the RTP length. On failure the payload bytes are unspecified.
    pub(super) fn open_rtp(
        &self,
        packet: &mut [u8],
        header_len: usize,
        ssrc: u32,
        roc: u32,
        seq: u16,
    ) -> Result<usize, SrtpError> {
        let plain_len = packet
            .len()
            .checked_sub(TAG_LEN)
            .filter(|&n| n >= header_len)
            .ok_or(SrtpError::Malformed)?;
        let (header, rest) = packet.split_at_mut(header_len);
        let (payload, tag) = rest.split_at_mut(plain_len - header_len);
        let nonce = Self::nonce(&self.rtp_salt, ssrc, roc, seq);
        self.rtp_key
            .open_in_place_separate_tag(nonce, Aad::from(&*header), tag, payload)
            .map_err(|_| SrtpError::Authentication)?;
        Ok(plain_len)
    }

    /// Encrypts `buf[8..len]` and writes the tag and ESRTCP word after it (E set: always
    /// encrypted). Returns the SRTCP length.
    pub(super) fn seal_rtcp(
        &self,
        buf: &mut [u8],
        len: usize,
        ssrc: u32,
        index: u32,
    ) -> Result<usize, SrtpError> {
        let end = len + RTCP_TRAILER_LEN;
        let word = (index | 0x8000_0000).to_be_bytes();
        let (header, rest) = buf
            .get_mut(..end)
            .and_then(|b| b.split_at_mut_checked(8))
            .ok_or(SrtpError::Malformed)?;
        let (payload, trailer) = rest
            .split_at_mut_checked(len.checked_sub(8).ok_or(SrtpError::Malformed)?)
            .ok_or(SrtpError::Malformed)?;
        let aad = rtcp_aad(header, word);
        let nonce = Self::rtcp_nonce(&self.rtcp_salt, ssrc, index);
        let tag = self
            .rtcp_key
            .seal_in_place_separate_tag(nonce, Aad::from(aad), payload)
            .map_err(|_| SrtpError::Other("AES-GCM seal failed".into()))?;
        trailer[..TAG_LEN].copy_from_slice(tag.as_ref());
        trailer[TAG_LEN..].copy_from_slice(&word);
        Ok(end)
    }

    /// Authenticates and decrypts the SRTCP packet `packet` (at least 8 + 20 bytes, E flag set,
    /// index `index`). Returns the RTCP length.
    pub(super) fn open_rtcp(
        &self,
        packet: &mut [u8],
        ssrc: u32,
        index: u32,
    ) -> Result<usize, SrtpError> {
        let plain_len = packet
            .len()
            .checked_sub(RTCP_TRAILER_LEN)
            .filter(|&n| n >= 8)
            .ok_or(SrtpError::Malformed)?;
        let (header, rest) = packet.split_at_mut(8);
        let (payload, trailer) = rest.split_at_mut(plain_len - 8);
        let (tag, word) = trailer.split_at(TAG_LEN);
        let word: [u8; 4] = word.try_into().map_err(|_| SrtpError::Malformed)?;
        let aad = rtcp_aad(header, word);
        let nonce = Self::rtcp_nonce(&self.rtcp_salt, ssrc, index);
        self.rtcp_key
            .open_in_place_separate_tag(nonce, Aad::from(aad), tag, payload)
            .map_err(|_| SrtpError::Authentication)?;
        Ok(plain_len)
    }

    /// The SRTCP IV: (0x0000 || SSRC || 0x0000 || 0 || index) XOR salt.
    fn rtcp_nonce(salt: &[u8; 12], ssrc: u32, index: u32) -> Nonce {
        let index = index & 0x7FFF_FFFF;
        Self::nonce(salt, ssrc, index >> 16, index as u16)
    }
}

fn rtcp_aad(header: &[u8], word: [u8; 4]) -> [u8; 12] {
    let mut aad = [0u8; 12];
    aad[..8].copy_from_slice(&header[..8]);
    aad[8..].copy_from_slice(&word);
    aad
}
