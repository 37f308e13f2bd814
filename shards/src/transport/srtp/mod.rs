//! SRTP and SRTCP in place and without allocating per packet, for the four profiles
//! [`SrtpProfile`] negotiates: AEAD_AES_256_GCM and AEAD_AES_128_GCM (RFC 7714) and
//! AES_CM_128_HMAC_SHA1_80 / _32 (RFC 3711). Behind [`SrtpSession`](super::srtp_session).
//!
//! * [`kdf`]: session keys and salts, once per session (RFC 3711 §4.3, RFC 6188 §3);
//! * [`aes_gcm`], [`aes_cm`]: the transforms, on the caller's buffer (aws-lc-rs AES-GCM and
//!   AES-CTR, RustCrypto HMAC-SHA1);
//! * [`replay`]: RFC 3711 Appendix A index estimation and the replay window;
//! * [`ssrc_table`]: per-SSRC state, bounded, allocating only when a new SSRC appears.
//!
//! A [`Sender`] keeps, per SSRC, the highest SRTP index sent (ROC || SEQ; retransmissions of
//! older sequence numbers get the ROC they were first sent with) and the last SRTCP index. A
//! [`Receiver`] keeps, per SSRC, a replay window whose head is the highest authenticated index,
//! and one per SRTCP sender SSRC. State changes only once a packet has authenticated, so forged
//! packets neither advance windows nor create or evict SSRCs.

mod aes_cm;
mod aes_gcm;
mod kdf;
mod replay;
mod ssrc_table;
#[cfg(test)]
mod tests;

use super::dtls_transport::SrtpProfile;
use super::srtp_session::SrtpError;
use replay::ReplayWindow;
use ssrc_table::SsrcTable;

/// SSRCs a [`Receiver`] tracks before it forgets the least recently seen: a browser sends a few
/// per track (simulcast layers, RTX), so this is only reached by a misbehaving peer.
pub(crate) const MAX_INBOUND_SSRCS: usize = 64;
/// SSRCs a [`Sender`] tracks: one or two per consumer on the transport, so much more than
/// inbound. Forgetting an SSRC that is still sending would restart its ROC (and SRTCP index) at
/// 0 and so reuse IVs once it had wrapped: the bound only guards against unbounded growth and is
/// far above what one transport sends.
pub(crate) const MAX_OUTBOUND_SSRCS: usize = 1024;

/// Largest SRTCP index (31 bits). The next packet would need a new master key (RFC 3711 §9.2).
const MAX_SRTCP_INDEX: u32 = 0x7FFF_FFFF;

enum Transform {
    Gcm(aes_gcm::AesGcm),
    /// Boxed: two expanded AES keys and two HMAC states, 1.3 KB.
    Cm(Box<aes_cm::AesCm>),
}

impl Transform {
    fn new(profile: SrtpProfile, master_key: &[u8], master_salt: &[u8]) -> Result<Self, SrtpError> {
        Ok(match profile {
            SrtpProfile::AeadAes256Gcm | SrtpProfile::AeadAes128Gcm => {
                let expected = if profile == SrtpProfile::AeadAes256Gcm {
                    32
                } else {
                    16
                };
                if master_key.len() != expected {
                    return Err(SrtpError::InvalidKeys(format!(
                        "{} master key of {} bytes",
                        profile.as_str(),
                        master_key.len()
                    )));
                }
                Self::Gcm(aes_gcm::AesGcm::new(master_key, master_salt)?)
            }
            SrtpProfile::AesCm128HmacSha1_80 => {
                Self::Cm(Box::new(aes_cm::AesCm::new(master_key, master_salt, 10)?))
            }
            SrtpProfile::AesCm128HmacSha1_32 => {
                Self::Cm(Box::new(aes_cm::AesCm::new(master_key, master_salt, 4)?))
            }
        })
    }

    fn rtp_overhead(&self) -> usize {
        match self {
            Self::Gcm(_) => aes_gcm::TAG_LEN,
            Self::Cm(cm) => cm.rtp_tag_len(),
        }
    }

    fn rtcp_overhead(&self) -> usize {
        match self {
            Self::Gcm(_) => aes_gcm::RTCP_TRAILER_LEN,
            Self::Cm(_) => aes_cm::RTCP_TRAILER_LEN,
        }
    }

    /// Where the E || SRTCP index word starts, counted from the end of the packet.
    fn rtcp_word_from_end(&self) -> usize {
        match self {
            Self::Gcm(_) => 4,
            Self::Cm(_) => aes_cm::RTCP_TRAILER_LEN,
        }
    }
}

/// What SRTP needs of an RTP header (RFC 3550 §5.1).
struct RtpHeader {
    /// Fixed header, CSRCs and extension block: the AAD / clear part.
    len: usize,
    seq: u16,
    ssrc: u32,
}

impl RtpHeader {
    fn parse(packet: &[u8]) -> Result<Self, SrtpError> {
        let [b0, _, s0, s1, _, _, _, _, x0, x1, x2, x3, ..] = *packet else {
            return Err(SrtpError::Malformed);
        };
        if b0 >> 6 != 2 {
            return Err(SrtpError::Malformed);
        }
        let mut len = 12 + 4 * usize::from(b0 & 0x0F);
        if b0 & 0x10 != 0 {
            let [l0, l1] = packet
                .get(len + 2..len + 4)
                .and_then(|l| <[u8; 2]>::try_from(l).ok())
                .ok_or(SrtpError::Malformed)?;
            len += 4 + 4 * usize::from(u16::from_be_bytes([l0, l1]));
        }
        if len > packet.len() {
            return Err(SrtpError::Malformed);
        }
        Ok(Self {
            len,
            seq: u16::from_be_bytes([s0, s1]),
            ssrc: u32::from_be_bytes([x0, x1, x2, x3]),
        })
    }
}

/// RTCP: version 2 and room for the sender SSRC. Returns that SSRC.
fn rtcp_ssrc(packet: &[u8]) -> Result<u32, SrtpError> {
    match *packet {
        [b0, _, _, _, s0, s1, s2, s3, ..] if b0 >> 6 == 2 => {
            Ok(u32::from_be_bytes([s0, s1, s2, s3]))
        }
        _ => Err(SrtpError::Malformed),
    }
}

/// Protects what we send.
pub(crate) struct Sender {
    transform: Transform,
    /// Highest SRTP index sent, per SSRC.
    rtp: SsrcTable<u64>,
    /// Last SRTCP index sent, per sender SSRC.
    rtcp: SsrcTable<u32>,
}

impl Sender {
    pub(crate) fn new(
        profile: SrtpProfile,
        master_key: &[u8],
        master_salt: &[u8],
    ) -> Result<Self, SrtpError> {
        Ok(Self {
            transform: Transform::new(profile, master_key, master_salt)?,
            rtp: SsrcTable::new(MAX_OUTBOUND_SSRCS),
            rtcp: SsrcTable::new(MAX_OUTBOUND_SSRCS),
        })
    }

    pub(crate) fn rtp_overhead(&self) -> usize {
        self.transform.rtp_overhead()
    }

    pub(crate) fn rtcp_overhead(&self) -> usize {
        self.transform.rtcp_overhead()
    }

    /// See [`SrtpSession::protect_rtp`](super::srtp_session::SrtpSession::protect_rtp).
    pub(crate) fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let packet = buf.get(..len).ok_or(SrtpError::Malformed)?;
        let header = RtpHeader::parse(packet)?;
        let needed = len + self.rtp_overhead();
        if buf.len() < needed {
            return Err(SrtpError::BufferTooSmall { needed });
        }
        let highest = self
            .rtp
            .get_or_insert_with(header.ssrc, || u64::from(header.seq));
        let index = replay::send_index(*highest, header.seq)?;
        let roc = (index >> 16) as u32;
        let (ssrc, seq, header_len) = (header.ssrc, header.seq, header.len);
        let n = match &self.transform {
            Transform::Gcm(gcm) => gcm.seal_rtp(buf, header_len, len, ssrc, roc, seq)?,
            Transform::Cm(cm) => cm.seal_rtp(buf, header_len, len, ssrc, roc, seq)?,
        };
        *highest = (*highest).max(index);
        Ok(n)
    }

    /// See [`SrtpSession::protect_rtcp`](super::srtp_session::SrtpSession::protect_rtcp).
    pub(crate) fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let packet = buf.get(..len).ok_or(SrtpError::Malformed)?;
        let needed = len + self.rtcp_overhead();
        if buf.len() < needed {
            return Err(SrtpError::BufferTooSmall { needed });
        }
        let ssrc = rtcp_ssrc(packet)?;
        // Numbered from 1 per sender SSRC, as rtc-srtp does.
        let last = self.rtcp.get_or_insert_with(ssrc, || 0);
        if *last >= MAX_SRTCP_INDEX {
            return Err(SrtpError::KeyExhausted);
        }
        let index = *last + 1;
        let n = match &self.transform {
            Transform::Gcm(gcm) => gcm.seal_rtcp(buf, len, ssrc, index)?,
            Transform::Cm(cm) => cm.seal_rtcp(buf, len, ssrc, index)?,
        };
        *last = index;
        Ok(n)
    }
}

/// Unprotects what we receive, with replay protection.
pub(crate) struct Receiver {
    transform: Transform,
    rtp: SsrcTable<ReplayWindow>,
    rtcp: SsrcTable<ReplayWindow>,
}

impl Receiver {
    pub(crate) fn new(
        profile: SrtpProfile,
        master_key: &[u8],
        master_salt: &[u8],
    ) -> Result<Self, SrtpError> {
        Ok(Self {
            transform: Transform::new(profile, master_key, master_salt)?,
            rtp: SsrcTable::new(MAX_INBOUND_SSRCS),
            rtcp: SsrcTable::new(MAX_INBOUND_SSRCS),
        })
    }

    /// See [`SrtpSession::unprotect_rtp`](super::srtp_session::SrtpSession::unprotect_rtp).
    pub(crate) fn unprotect_rtp(&mut self, packet: &mut [u8]) -> Result<usize, SrtpError> {
        let header = RtpHeader::parse(packet)?;
        if packet.len() < header.len + self.transform.rtp_overhead() {
            return Err(SrtpError::Malformed);
        }
        let transform = &self.transform;
        let open = |packet: &mut [u8], index: u64| {
            let roc = (index >> 16) as u32;
            match transform {
                Transform::Gcm(gcm) => {
                    gcm.open_rtp(packet, header.len, header.ssrc, roc, header.seq)
                }
                Transform::Cm(cm) => cm.open_rtp(packet, header.len, header.ssrc, roc, header.seq),
            }
        };
        match self.rtp.get_mut(header.ssrc) {
            Some(window) => {
                let index = replay::receive_index(window.highest(), header.seq)?;
                if !window.check(index) {
                    return Err(SrtpError::Replayed);
                }
                let n = open(packet, index)?;
                window.accept(index);
                Ok(n)
            }
            None => {
                // First packet of this SSRC: ROC 0 (RFC 3711 §3.3.1).
                let index = u64::from(header.seq);
                let n = open(packet, index)?;
                self.rtp.insert(header.ssrc, ReplayWindow::new(index));
                Ok(n)
            }
        }
    }

    /// See [`SrtpSession::unprotect_rtcp`](super::srtp_session::SrtpSession::unprotect_rtcp):
    /// SRTCP whose E flag is clear is refused.
    pub(crate) fn unprotect_rtcp(&mut self, packet: &mut [u8]) -> Result<usize, SrtpError> {
        let n = packet.len();
        if n < 8 + self.transform.rtcp_overhead() {
            return Err(SrtpError::Malformed);
        }
        let at = n - self.transform.rtcp_word_from_end();
        let word = packet
            .get(at..at + 4)
            .and_then(|w| <[u8; 4]>::try_from(w).ok())
            .map(u32::from_be_bytes)
            .ok_or(SrtpError::Malformed)?;
        if word & 0x8000_0000 == 0 {
            return Err(SrtpError::Unencrypted);
        }
        let index = word & MAX_SRTCP_INDEX;
        let ssrc = rtcp_ssrc(packet)?;
        let transform = &self.transform;
        let open = |packet: &mut [u8]| match transform {
            Transform::Gcm(gcm) => gcm.open_rtcp(packet, ssrc, index),
            Transform::Cm(cm) => cm.open_rtcp(packet, ssrc, index),
        };
        match self.rtcp.get_mut(ssrc) {
            Some(window) => {
                if !window.check(u64::from(index)) {
                    return Err(SrtpError::Replayed);
                }
                let n = open(packet)?;
                window.accept(u64::from(index));
                Ok(n)
            }
            None => {
                let n = open(packet)?;
                self.rtcp.insert(ssrc, ReplayWindow::new(u64::from(index)));
                Ok(n)
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn tracked_ssrcs(&self) -> (usize, usize) {
        (self.rtp.len(), self.rtcp.len())
    }
}
