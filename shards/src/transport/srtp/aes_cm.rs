//! AES_CM_128_HMAC_SHA1_80 and AES_CM_128_HMAC_SHA1_32 (RFC 3711, RFC 5764 §4.1.2), in place.
//!
//! SRTP: the payload is XORed with AES-CTR keystream from IV = (salt << 16) XOR (SSRC << 64)
//! XOR (index << 16) (§4.1.1); the tag is HMAC-SHA1(auth key, packet || ROC) truncated to 80 or
//! 32 bits and appended (§4.2). SRTCP: everything after the first 8 bytes is encrypted with
//! the SRTCP index in place of the packet index, then E || index is appended and the 80-bit tag
//! (for both profiles) covers packet || E || index (§3.4).

use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::iv::FixedLength;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::super::srtp_session::SrtpError;
use super::kdf;

/// SRTCP's tag is 80 bits for both profiles.
pub(super) const RTCP_TAG_LEN: usize = 10;
/// E || index, then the tag.
pub(super) const RTCP_TRAILER_LEN: usize = 4 + RTCP_TAG_LEN;

pub(super) struct AesCm {
    rtp_key: EncryptingKey,
    rtcp_key: EncryptingKey,
    rtp_salt: [u8; 14],
    rtcp_salt: [u8; 14],
    /// Keyed once; cloned per packet (two SHA-1 states, no allocation).
    rtp_auth: Hmac<Sha1>,
    rtcp_auth: Hmac<Sha1>,
    rtp_tag_len: usize,
}

impl AesCm {
    /// Session keys derived from a 16-byte master key and 14-byte salt; `rtp_tag_len` is 10
    /// (`_80`) or 4 (`_32`).
    pub(super) fn new(
        master_key: &[u8],
        master_salt: &[u8],
        rtp_tag_len: usize,
    ) -> Result<Self, SrtpError> {
        if master_key.len() != 16 || master_salt.len() != 14 {
            return Err(SrtpError::InvalidKeys(format!(
                "AES-CM master key/salt of {}/{} bytes",
                master_key.len(),
                master_salt.len()
            )));
        }
        let cipher = |label| -> Result<EncryptingKey, SrtpError> {
            let mut session_key = [0u8; 16];
            kdf::derive(master_key, master_salt, label, &mut session_key)?;
            let key = UnboundCipherKey::new(&AES_128, &session_key)
                .and_then(EncryptingKey::ctr)
                .map_err(|_| SrtpError::InvalidKeys("AES-CTR key setup failed".into()));
            session_key.fill(0);
            key
        };
        let salt = |label| -> Result<[u8; 14], SrtpError> {
            let mut salt = [0u8; 14];
            kdf::derive(master_key, master_salt, label, &mut salt)?;
            Ok(salt)
        };
        let auth = |label| -> Result<Hmac<Sha1>, SrtpError> {
            let mut auth_key = [0u8; 20];
            kdf::derive(master_key, master_salt, label, &mut auth_key)?;
            let mac = Hmac::<Sha1>::new_from_slice(&auth_key)
                .map_err(|_| SrtpError::InvalidKeys("HMAC key setup failed".into()));
            auth_key.fill(0);
            mac
        };
        Ok(Self {
            rtp_key: cipher(kdf::LABEL_SRTP_ENCRYPTION)?,
            rtcp_key: cipher(kdf::LABEL_SRTCP_ENCRYPTION)?,
            rtp_salt: salt(kdf::LABEL_SRTP_SALT)?,
            rtcp_salt: salt(kdf::LABEL_SRTCP_SALT)?,
            rtp_auth: auth(kdf::LABEL_SRTP_AUTHENTICATION)?,
            rtcp_auth: auth(kdf::LABEL_SRTCP_AUTHENTICATION)?,
            rtp_tag_len,
        })
    }

    pub(super) fn rtp_tag_len(&self) -> usize {
        self.rtp_tag_len
    }

    /// XORs `data` with the keystream for (SSRC, high || low): (ROC, SEQ) for SRTP, the SRTCP
    /// index split the same way for SRTCP.
    fn keystream(
        key: &EncryptingKey,
        salt: &[u8; 14],
        ssrc: u32,
        high: u32,
        low: u16,
        data: &mut [u8],
    ) -> Result<(), SrtpError> {
        if data.is_empty() {
            return Ok(());
        }
        let mut iv = [0u8; 16];
        iv[4..8].copy_from_slice(&ssrc.to_be_bytes());
        iv[8..12].copy_from_slice(&high.to_be_bytes());
        iv[12..14].copy_from_slice(&low.to_be_bytes());
        for (b, s) in iv.iter_mut().zip(salt) {
            *b ^= s;
        }
        key.less_safe_encrypt(data, EncryptionContext::Iv128(FixedLength::from(iv)))
            .map(|_| ())
            .map_err(|_| SrtpError::Other("AES-CTR failed".into()))
    }

    fn mac(key: &Hmac<Sha1>, data: &[u8], roc: Option<u32>) -> [u8; 20] {
        let mut mac = key.clone();
        mac.update(data);
        if let Some(roc) = roc {
            mac.update(&roc.to_be_bytes());
        }
        mac.finalize().into_bytes().into()
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
        let end = len + self.rtp_tag_len;
        let (packet, tag_out) = buf
            .get_mut(..end)
            .and_then(|b| b.split_at_mut_checked(len))
            .ok_or(SrtpError::Malformed)?;
        let payload = packet.get_mut(header_len..).ok_or(SrtpError::Malformed)?;
        Self::keystream(&self.rtp_key, &self.rtp_salt, ssrc, roc, seq, payload)?;
        let tag = Self::mac(&self.rtp_auth, packet, Some(roc));
        tag_out.copy_from_slice(&tag[..self.rtp_tag_len]);
        Ok(end)
    }

    /// Authenticates, then decrypts, the SRTP packet `packet`, whose header is `header_len` long.
    /// Returns the RTP length; on failure `packet` is untouched.
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
            .checked_sub(self.rtp_tag_len)
            .filter(|&n| n >= header_len)
            .ok_or(SrtpError::Malformed)?;
        let (authenticated, tag) = packet.split_at_mut(plain_len);
        let expected = Self::mac(&self.rtp_auth, authenticated, Some(roc));
        verify_slices_are_equal(&expected[..self.rtp_tag_len], tag)
            .map_err(|_| SrtpError::Authentication)?;
        let payload = &mut authenticated[header_len..];
        Self::keystream(&self.rtp_key, &self.rtp_salt, ssrc, roc, seq, payload)?;
        Ok(plain_len)
    }

    /// Encrypts `buf[8..len]`, then appends E || index and the tag. Returns the SRTCP length.
    pub(super) fn seal_rtcp(
        &self,
        buf: &mut [u8],
        len: usize,
        ssrc: u32,
        index: u32,
    ) -> Result<usize, SrtpError> {
        let end = len + RTCP_TRAILER_LEN;
        let (authenticated, tag_out) = buf
            .get_mut(..end)
            .and_then(|b| b.split_at_mut_checked(len + 4))
            .ok_or(SrtpError::Malformed)?;
        let index = index & 0x7FFF_FFFF;
        let (packet, word) = authenticated.split_at_mut(len);
        let payload = packet.get_mut(8..).ok_or(SrtpError::Malformed)?;
        Self::keystream(
            &self.rtcp_key,
            &self.rtcp_salt,
            ssrc,
            index >> 16,
            index as u16,
            payload,
        )?;
        word.copy_from_slice(&(index | 0x8000_0000).to_be_bytes());
        let tag = Self::mac(&self.rtcp_auth, authenticated, None);
        tag_out.copy_from_slice(&tag[..RTCP_TAG_LEN]);
        Ok(end)
    }

    /// Authenticates, then decrypts, the SRTCP packet `packet` (at least 8 + 14 bytes, E flag
    /// set, index `index`). Returns the RTCP length.
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
        let (authenticated, tag) = packet.split_at_mut(plain_len + 4);
        let expected = Self::mac(&self.rtcp_auth, authenticated, None);
        verify_slices_are_equal(&expected[..RTCP_TAG_LEN], tag)
            .map_err(|_| SrtpError::Authentication)?;
        let index = index & 0x7FFF_FFFF;
        let payload = &mut authenticated[8..plain_len];
        Self::keystream(
            &self.rtcp_key,
            &self.rtcp_salt,
            ssrc,
            index >> 16,
            index as u16,
            payload,
        )?;
        Ok(plain_len)
    }
}
