//! SRTP key derivation (RFC 3711 §4.3), run once per session and direction.
//!
//! The PRF is AES in counter mode (RFC 3711 §4.3.3) keyed with the master key: AES_128_CM_PRF for
//! 128-bit master keys, AES_256_CM_PRF (RFC 6188 §3, required for AEAD_AES_256_GCM by RFC 7714
//! §11) for 256-bit ones. With a key derivation rate of 0 (RFC 5764 §4.1.2 leaves it at 0), the
//! counter block is `(master_salt XOR label << 48) << 16`: the salt left-aligned in 16 bytes, the
//! label XORed into byte 7, the block counter in the last two bytes. The 96-bit salts of the AEAD
//! profiles are zero-padded on the right, as libsrtp and rtc-srtp do. rtc-srtp keeps its KDF
//! private, hence this copy (tested against the RFCs' vectors and, through every packet, against
//! rtc-srtp).

use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128, AES_256};
use aws_lc_rs::iv::FixedLength;

use super::super::srtp_session::SrtpError;

pub(super) const LABEL_SRTP_ENCRYPTION: u8 = 0x00;
pub(super) const LABEL_SRTP_AUTHENTICATION: u8 = 0x01;
pub(super) const LABEL_SRTP_SALT: u8 = 0x02;
pub(super) const LABEL_SRTCP_ENCRYPTION: u8 = 0x03;
pub(super) const LABEL_SRTCP_AUTHENTICATION: u8 = 0x04;
pub(super) const LABEL_SRTCP_SALT: u8 = 0x05;

/// Fills `out` with the session key, salt or authentication key named by `label`.
pub(super) fn derive(
    master_key: &[u8],
    master_salt: &[u8],
    label: u8,
    out: &mut [u8],
) -> Result<(), SrtpError> {
    let algorithm = match master_key.len() {
        16 => &AES_128,
        32 => &AES_256,
        n => return Err(SrtpError::InvalidKeys(format!("master key of {n} bytes"))),
    };
    if master_salt.len() > 14 {
        return Err(SrtpError::InvalidKeys(format!(
            "master salt of {} bytes",
            master_salt.len()
        )));
    }
    let mut counter = [0u8; 16];
    counter[..master_salt.len()].copy_from_slice(master_salt);
    counter[7] ^= label;
    let key = UnboundCipherKey::new(algorithm, master_key)
        .and_then(EncryptingKey::ctr)
        .map_err(|_| SrtpError::InvalidKeys("AES key setup failed".into()))?;
    // The keystream itself is the PRF output: encrypt zeros.
    out.fill(0);
    key.less_safe_encrypt(out, EncryptionContext::Iv128(FixedLength::from(counter)))
        .map_err(|_| SrtpError::InvalidKeys("key derivation failed".into()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn derived(key: &[u8], salt: &[u8], label: u8, len: usize) -> Vec<u8> {
        let mut out = vec![0xEE; len];
        derive(key, salt, label, &mut out).unwrap();
        out
    }

    /// RFC 3711 Appendix B.3.
    #[test]
    fn aes_128_cm_prf_matches_rfc3711_vectors() {
        let key = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
        let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
        assert_eq!(
            derived(&key, &salt, LABEL_SRTP_ENCRYPTION, 16),
            hex("C61E7A93744F39EE10734AFE3FF7A087")
        );
        assert_eq!(
            derived(&key, &salt, LABEL_SRTP_SALT, 14),
            hex("30CBBC08863D8C85D49DB34A9AE1")
        );
        assert_eq!(
            derived(&key, &salt, LABEL_SRTP_AUTHENTICATION, 20),
            hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
        );
    }

    /// RFC 6188 §7.2 (AES_256_CM_PRF).
    #[test]
    fn aes_256_cm_prf_matches_rfc6188_vectors() {
        let key = hex("f0f04914b513f2763a1b1fa130f10e2998f6f6e43e4309d1e622a0e332b9f1b6");
        let salt = hex("3b04803de51ee7c96423ab5b78d2");
        assert_eq!(
            derived(&key, &salt, LABEL_SRTP_ENCRYPTION, 32),
            hex("5ba1064e30ec51613cad926c5a28ef731ec7fb397f70a960653caf06554cd8c4")
        );
        assert_eq!(
            derived(&key, &salt, LABEL_SRTP_SALT, 14),
            hex("fa31791685ca444a9e07c6c64e93")
        );
        assert_eq!(
            derived(&key, &salt, LABEL_SRTP_AUTHENTICATION, 20),
            hex("fd9c32d39ed5fbb5a9dc96b30818454d1313dc05")
        );
    }

    #[test]
    fn bad_lengths_are_refused() {
        let mut out = [0u8; 16];
        assert!(derive(&[0; 24], &[0; 14], 0, &mut out).is_err());
        assert!(derive(&[0; 16], &[0; 15], 0, &mut out).is_err());
    }
}
