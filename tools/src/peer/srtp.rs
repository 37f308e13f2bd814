//! SRTP/SRTCP for the peer: the four DTLS-SRTP profiles mediasoup knows, the RFC 5764 split of
//! the DTLS exporter output into keys and salts, and one rtc-srtp context per direction.

use std::fmt;
use std::sync::{Arc, OnceLock};

use rtc_crypto::RTCCryptoProvider;
use rtc_srtp::context::Context;
use rtc_srtp::protection_profile::ProtectionProfile;

/// A DTLS-SRTP protection profile, named as mediasoup's `srtpCryptoSuite`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpProfile {
    /// `AEAD_AES_256_GCM` (RFC 7714, use_srtp id 0x0008).
    AeadAes256Gcm,
    /// `AEAD_AES_128_GCM` (RFC 7714, use_srtp id 0x0007).
    AeadAes128Gcm,
    /// `AES_CM_128_HMAC_SHA1_80` (RFC 5764, use_srtp id 0x0001).
    AesCm128HmacSha1_80,
    /// `AES_CM_128_HMAC_SHA1_32` (RFC 5764, use_srtp id 0x0002).
    AesCm128HmacSha1_32,
}

impl SrtpProfile {
    /// Every profile, in mediasoup's preference order.
    pub const ALL: [SrtpProfile; 4] = [
        Self::AeadAes256Gcm,
        Self::AeadAes128Gcm,
        Self::AesCm128HmacSha1_80,
        Self::AesCm128HmacSha1_32,
    ];

    /// What a current Chrome offers (GCM first, then CM with the 80-bit tag; `_32` is off by
    /// default). This is also exactly what dimpl offers as a client.
    pub const CHROME: [SrtpProfile; 3] = [
        Self::AeadAes256Gcm,
        Self::AeadAes128Gcm,
        Self::AesCm128HmacSha1_80,
    ];

    /// mediasoup's name (`srtpCryptoSuite`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AeadAes256Gcm => "AEAD_AES_256_GCM",
            Self::AeadAes128Gcm => "AEAD_AES_128_GCM",
            Self::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Self::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    /// The profile with mediasoup's name `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// The `use_srtp` protection profile id (RFC 5764 §4.1.2, RFC 7714 §14.2).
    pub fn use_srtp_id(self) -> u16 {
        match self {
            Self::AeadAes256Gcm => 0x0008,
            Self::AeadAes128Gcm => 0x0007,
            Self::AesCm128HmacSha1_80 => 0x0001,
            Self::AesCm128HmacSha1_32 => 0x0002,
        }
    }

    /// The profile with `use_srtp` id `id`.
    pub fn from_use_srtp_id(id: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.use_srtp_id() == id)
    }

    /// Master key length in bytes.
    pub fn master_key_len(self) -> usize {
        match self {
            Self::AeadAes256Gcm => 32,
            _ => 16,
        }
    }

    /// Master salt length in bytes.
    pub fn master_salt_len(self) -> usize {
        match self {
            Self::AeadAes256Gcm | Self::AeadAes128Gcm => 12,
            Self::AesCm128HmacSha1_80 | Self::AesCm128HmacSha1_32 => 14,
        }
    }

    /// Bytes of DTLS exporter output the profile needs: two keys and two salts.
    pub fn keying_material_len(self) -> usize {
        2 * (self.master_key_len() + self.master_salt_len())
    }

    fn rtc_srtp(self) -> ProtectionProfile {
        match self {
            Self::AeadAes256Gcm => ProtectionProfile::AeadAes256Gcm,
            Self::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
            Self::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            Self::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        }
    }
}

impl fmt::Display for SrtpProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which end of the DTLS handshake we were: it decides which half of the keying material is ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsSide {
    Client,
    Server,
}

/// One direction's master key and salt.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpKey {
    pub key: Vec<u8>,
    pub salt: Vec<u8>,
}

impl fmt::Debug for SrtpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpKey")
            .field("key_len", &self.key.len())
            .field("salt_len", &self.salt.len())
            .finish()
    }
}

/// Splits the exporter output (RFC 5764 §4.2: client key, server key, client salt, server salt)
/// into `(local, remote)` for `side`. `None` if the length is not the profile's.
pub fn split_keying_material(
    profile: SrtpProfile,
    material: &[u8],
    side: DtlsSide,
) -> Option<(SrtpKey, SrtpKey)> {
    if material.len() != profile.keying_material_len() {
        return None;
    }
    let (client_key, rest) = material.split_at(profile.master_key_len());
    let (server_key, rest) = rest.split_at(profile.master_key_len());
    let (client_salt, server_salt) = rest.split_at(profile.master_salt_len());
    let client = SrtpKey {
        key: client_key.to_vec(),
        salt: client_salt.to_vec(),
    };
    let server = SrtpKey {
        key: server_key.to_vec(),
        salt: server_salt.to_vec(),
    };
    Some(match side {
        DtlsSide::Client => (client, server),
        DtlsSide::Server => (server, client),
    })
}

/// The process-wide rtc-crypto provider (ring) shared by STUN integrity, rtc-dtls and SRTP.
pub(crate) fn crypto_provider() -> Result<&'static Arc<dyn RTCCryptoProvider>, String> {
    static PROVIDER: OnceLock<Result<Arc<dyn RTCCryptoProvider>, String>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| rtc_crypto::default_provider().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(Clone::clone)
}

/// SRTP and SRTCP in both directions. No replay protection on receive: a test wants to see
/// exactly what the server sent, duplicates included.
pub struct SrtpSession {
    profile: SrtpProfile,
    outbound: Context,
    inbound: Context,
}

impl SrtpSession {
    /// A session from the DTLS exporter output, as the `side` of the handshake.
    pub fn from_keying_material(
        profile: SrtpProfile,
        material: &[u8],
        side: DtlsSide,
    ) -> Result<Self, String> {
        let (local, remote) = split_keying_material(profile, material, side).ok_or_else(|| {
            format!(
                "keying material is {} bytes, {profile} needs {}",
                material.len(),
                profile.keying_material_len()
            )
        })?;
        Self::new(profile, &local, &remote)
    }

    /// A session from explicit keys: `local` protects what we send, `remote` what we receive.
    pub fn new(profile: SrtpProfile, local: &SrtpKey, remote: &SrtpKey) -> Result<Self, String> {
        let crypto = crypto_provider()?.crypto();
        let context = |k: &SrtpKey| {
            Context::new(&k.key, &k.salt, profile.rtc_srtp(), None, None, crypto)
                .map_err(|e| format!("SRTP context: {e}"))
        };
        Ok(Self {
            profile,
            outbound: context(local)?,
            inbound: context(remote)?,
        })
    }

    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }

    pub fn protect_rtp(&mut self, rtp: &[u8]) -> Result<Vec<u8>, String> {
        self.outbound
            .encrypt_rtp(rtp)
            .map(|b| b.to_vec())
            .map_err(|e| e.to_string())
    }

    pub fn unprotect_rtp(&mut self, srtp: &[u8]) -> Result<Vec<u8>, String> {
        self.inbound
            .decrypt_rtp(srtp)
            .map(|b| b.to_vec())
            .map_err(|e| e.to_string())
    }

    pub fn protect_rtcp(&mut self, rtcp: &[u8]) -> Result<Vec<u8>, String> {
        self.outbound
            .encrypt_rtcp(rtcp)
            .map(|b| b.to_vec())
            .map_err(|e| e.to_string())
    }

    pub fn unprotect_rtcp(&mut self, srtcp: &[u8]) -> Result<Vec<u8>, String> {
        self.inbound
            .decrypt_rtcp(srtcp)
            .map(|b| b.to_vec())
            .map_err(|e| e.to_string())
    }
}

impl fmt::Debug for SrtpSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpSession")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keying_material_splits_per_rfc_5764() {
        for profile in SrtpProfile::ALL {
            let material: Vec<u8> = (0..profile.keying_material_len() as u8).collect();
            let (k, s) = (profile.master_key_len(), profile.master_salt_len());
            let (local, remote) =
                split_keying_material(profile, &material, DtlsSide::Client).unwrap();
            assert_eq!(local.key, material[..k]);
            assert_eq!(remote.key, material[k..2 * k]);
            assert_eq!(local.salt, material[2 * k..2 * k + s]);
            assert_eq!(remote.salt, material[2 * k + s..]);
            let (s_local, s_remote) =
                split_keying_material(profile, &material, DtlsSide::Server).unwrap();
            assert_eq!((s_local, s_remote), (remote, local));
            assert!(split_keying_material(profile, &material[1..], DtlsSide::Client).is_none());
        }
    }

    #[test]
    fn names_and_ids_round_trip() {
        for profile in SrtpProfile::ALL {
            assert_eq!(SrtpProfile::from_name(profile.as_str()), Some(profile));
            assert_eq!(
                SrtpProfile::from_use_srtp_id(profile.use_srtp_id()),
                Some(profile)
            );
        }
        assert_eq!(SrtpProfile::from_name("AES_CM_128_HMAC_SHA1_64"), None);
    }

    /// Each profile protects on one side and unprotects on the other, for RTP and RTCP, and a
    /// flipped bit fails authentication.
    #[test]
    fn protect_unprotect_every_profile() {
        let rtp = crate::peer::rtp::RtpPacketBuilder::new(0x1234_5678, 111, 7, 960)
            .payload(&[0xAB; 50])
            .build();
        let rtcp = crate::peer::rtp::rtcp::pli(1, 0x1234_5678);
        for profile in SrtpProfile::ALL {
            let material: Vec<u8> = (0..profile.keying_material_len() as u8).collect();
            let mut client =
                SrtpSession::from_keying_material(profile, &material, DtlsSide::Client).unwrap();
            let mut server =
                SrtpSession::from_keying_material(profile, &material, DtlsSide::Server).unwrap();
            let protected = client.protect_rtp(&rtp).unwrap();
            assert_ne!(protected, rtp);
            assert_eq!(server.unprotect_rtp(&protected).unwrap(), rtp, "{profile}");
            let protected = server.protect_rtcp(&rtcp).unwrap();
            assert_eq!(
                client.unprotect_rtcp(&protected).unwrap(),
                rtcp,
                "{profile}"
            );

            let mut tampered = client.protect_rtp(&rtp).unwrap();
            let last = tampered.len() - 1;
            tampered[last] ^= 1;
            assert!(server.unprotect_rtp(&tampered).is_err(), "{profile}");
            // The client's own key cannot read what it sent.
            let protected = client.protect_rtp(&rtp).unwrap();
            assert!(client.unprotect_rtp(&protected).is_err(), "{profile}");
        }
    }
}
