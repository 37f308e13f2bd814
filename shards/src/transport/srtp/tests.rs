//! The native implementation against rtc-srtp 0.21 as an independent oracle (byte-identical
//! output both ways), plus replay, reordering, tampering, SSRC bounds and a per-packet
//! allocation check.

use std::sync::Arc;

use rtc_srtp::context::Context;
use rtc_srtp::crypto::RTCCryptoProvider;
use rtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc_srtp::protection_profile::ProtectionProfile;

use super::{Receiver, Sender, MAX_INBOUND_SSRCS};
use crate::transport::dtls_transport::{DtlsRole, SrtpKeys, SrtpProfile};
use crate::transport::srtp_session::{SrtpError, SrtpSession, REPLAY_WINDOW};

fn provider() -> Arc<dyn RTCCryptoProvider> {
    rtc_srtp::crypto::default_provider().unwrap()
}

fn oracle_profile(profile: SrtpProfile) -> ProtectionProfile {
    match profile {
        SrtpProfile::AeadAes256Gcm => ProtectionProfile::AeadAes256Gcm,
        SrtpProfile::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
        SrtpProfile::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        SrtpProfile::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
    }
}

/// An rtc-srtp context keyed with `key`/`salt`; with replay protection when it decrypts.
fn oracle(profile: SrtpProfile, key: &[u8], salt: &[u8], decrypting: bool) -> Context {
    let (rtp, rtcp) = if decrypting {
        (
            Some(srtp_replay_protection(REPLAY_WINDOW)),
            Some(srtcp_replay_protection(REPLAY_WINDOW)),
        )
    } else {
        (None, None)
    };
    Context::new(
        key,
        salt,
        oracle_profile(profile),
        rtp,
        rtcp,
        provider().crypto(),
    )
    .unwrap()
}

/// (client keys, server keys) from keying material that differs per profile.
fn keys(profile: SrtpProfile) -> (SrtpKeys, SrtpKeys) {
    let material: Vec<u8> = (0..profile.keying_material_len())
        .map(|i| (i as u8).wrapping_mul(91).wrapping_add(profile as u8))
        .collect();
    let keys = |role| SrtpKeys::from_keying_material(profile, &material, role).unwrap();
    (keys(DtlsRole::Client), keys(DtlsRole::Server))
}

/// Header variants cycled through by [`rtp`]: CSRCs, extension block (profile, body), padding.
fn variant(i: usize) -> (u8, Option<(u16, Vec<u8>)>, u8) {
    match i % 7 {
        0 => (0, None, 0),
        // Chrome-like one-byte extensions: abs-send-time, transport-cc, mid, rid + padding.
        1 => (
            0,
            Some((
                0xBEDE,
                vec![
                    0x22, 1, 2, 3, 0x31, 0, 9, 0x40, b'0', 0x50, b'h', 0, 0, 0, 0, 0,
                ],
            )),
            0,
        ),
        // Two-byte extensions, with CSRCs.
        2 => (2, Some((0x1000, vec![5, 3, 1, 2, 3, 0, 0, 0])), 0),
        // Padding (RFC 3550 §5.1: the last byte counts the padding bytes).
        3 => (0, None, 7),
        4 => (15, Some((0xBEDE, vec![0x10, 0xAB, 0, 0])), 4),
        5 => (1, Some((0x1234, vec![9; 12])), 0),
        _ => (0, Some((0xBEDE, vec![])), 1),
    }
}

/// A plain RTP packet of header variant `i`.
fn rtp(seq: u16, ssrc: u32, i: usize, payload_len: usize) -> Vec<u8> {
    let (csrcs, extension, padding) = variant(i);
    let mut p = vec![
        0x80 | csrcs
            | if extension.is_some() { 0x10 } else { 0 }
            | if padding > 0 { 0x20 } else { 0 },
        ((i % 2) as u8 * 0x80) | 96,
    ];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    for c in 0..u32::from(csrcs) {
        p.extend_from_slice(&(0xC000 + c).to_be_bytes());
    }
    if let Some((profile, body)) = extension {
        p.extend_from_slice(&profile.to_be_bytes());
        p.extend_from_slice(&((body.len() / 4) as u16).to_be_bytes());
        p.extend_from_slice(&body);
    }
    p.extend((0..payload_len).map(|b| (b * 7 + usize::from(seq)) as u8));
    if padding > 0 {
        p.extend(std::iter::repeat_n(0, usize::from(padding) - 1));
        p.push(padding);
    }
    p
}

/// A plain RTCP compound packet (SR + SDES) from `ssrc`.
fn rtcp(ssrc: u32, n: u8) -> Vec<u8> {
    let mut p = vec![0x80, 200, 0, 6];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[n; 20]);
    p.extend_from_slice(&[0x81, 202, 0, 3]);
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[1, 3, b'a', b'b', b'c', 0, 0, 0]);
    p
}

fn protect_rtp(session: &mut SrtpSession, plain: &[u8]) -> Vec<u8> {
    let mut buf = plain.to_vec();
    buf.resize(plain.len() + session.rtp_overhead(), 0);
    let n = session.protect_rtp(&mut buf, plain.len()).unwrap();
    buf.truncate(n);
    buf
}

fn protect_rtcp(session: &mut SrtpSession, plain: &[u8]) -> Vec<u8> {
    let mut buf = plain.to_vec();
    buf.resize(plain.len() + session.rtcp_overhead(), 0);
    let n = session.protect_rtcp(&mut buf, plain.len()).unwrap();
    buf.truncate(n);
    buf
}

fn unprotect_rtp(session: &mut SrtpSession, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
    let mut buf = packet.to_vec();
    let n = session.unprotect_rtp(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

fn unprotect_rtcp(session: &mut SrtpSession, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
    let mut buf = packet.to_vec();
    let n = session.unprotect_rtcp(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// Our client session and the server session that receives from it.
fn native_pair(profile: SrtpProfile) -> (SrtpSession, SrtpSession) {
    let (client, server) = keys(profile);
    let ours = SrtpSession::new(profile, &client).unwrap();
    assert_eq!(ours.backend_name(), "native");
    (ours, SrtpSession::new(profile, &server).unwrap())
}

/// Three interleaved streams that all wrap their sequence numbers (ROC 0 → 1) over every header
/// variant: ours and rtc-srtp's output identical, each decrypting the other's.
#[test]
fn rtp_matches_rtc_srtp_both_ways_across_the_wrap() {
    for profile in SrtpProfile::PREFERENCE {
        let (client, _) = keys(profile);
        let (mut ours_tx, mut ours_rx) = native_pair(profile);
        let key = (&client.local_master_key, &client.local_master_salt);
        let mut oracle_tx = oracle(profile, key.0, key.1, false);
        let mut oracle_rx = oracle(profile, key.0, key.1, true);
        let streams = [
            (0x1111_1111u32, 65_500u16),
            (0x2222_2222, 65_530),
            (7, 65_535),
        ];
        for step in 0..120usize {
            for (k, &(ssrc, first)) in streams.iter().enumerate() {
                let seq = first.wrapping_add(step as u16);
                let plain = rtp(seq, ssrc, step + k, 100 + step * 7 % 1100);
                let ours = protect_rtp(&mut ours_tx, &plain);
                let theirs = oracle_tx.encrypt_rtp(&plain).unwrap();
                assert_eq!(ours, &theirs[..], "{profile:?} ssrc {ssrc:#x} seq {seq}");
                assert_eq!(ours.len(), plain.len() + ours_tx.rtp_overhead());
                assert_eq!(&oracle_rx.decrypt_rtp(&ours).unwrap()[..], &plain[..]);
                assert_eq!(unprotect_rtp(&mut ours_rx, &theirs), Ok(plain));
            }
        }
        // The ROC did move: a context that has seen nothing (ROC 0) encrypts the same
        // post-wrap packet differently.
        let plain = rtp(100, 7, 0, 50);
        let ours = protect_rtp(&mut ours_tx, &plain);
        let fresh = oracle(profile, key.0, key.1, false)
            .encrypt_rtp(&plain)
            .unwrap();
        assert_ne!(ours, &fresh[..], "{profile:?}");
        assert_eq!(ours, &oracle_tx.encrypt_rtp(&plain).unwrap()[..]);
    }
}

#[test]
fn rtcp_matches_rtc_srtp_both_ways() {
    for profile in SrtpProfile::PREFERENCE {
        let (client, _) = keys(profile);
        let (mut ours_tx, mut ours_rx) = native_pair(profile);
        let key = (&client.local_master_key, &client.local_master_salt);
        let mut oracle_tx = oracle(profile, key.0, key.1, false);
        let mut oracle_rx = oracle(profile, key.0, key.1, true);
        for n in 0..40u8 {
            for ssrc in [0xCAFE_BABEu32, 1, 0x8000_0000] {
                let plain = rtcp(ssrc, n);
                let ours = protect_rtcp(&mut ours_tx, &plain);
                let theirs = oracle_tx.encrypt_rtcp(&plain).unwrap();
                assert_eq!(ours, &theirs[..], "{profile:?} ssrc {ssrc:#x} #{n}");
                assert_eq!(ours.len(), plain.len() + ours_tx.rtcp_overhead());
                assert_eq!(&oracle_rx.decrypt_rtcp(&ours).unwrap()[..], &plain[..]);
                assert_eq!(unprotect_rtcp(&mut ours_rx, &theirs), Ok(plain));
            }
        }
        // The shortest RTCP packet, header only (an empty RR).
        let plain = vec![0x80, 201, 0, 1, 0, 0, 0, 9];
        let ours = protect_rtcp(&mut ours_tx, &plain);
        assert_eq!(ours, &oracle_tx.encrypt_rtcp(&plain).unwrap()[..]);
        assert_eq!(unprotect_rtcp(&mut ours_rx, &ours), Ok(plain));
    }
}

/// A retransmission of a sequence number from before the wrap is sent under the ROC it first
/// had: byte-identical to the first transmission.
#[test]
fn retransmission_keeps_its_original_roc() {
    for profile in SrtpProfile::PREFERENCE {
        let (mut tx, mut rx) = native_pair(profile);
        let before = rtp(65_535, 5, 1, 300);
        let first = protect_rtp(&mut tx, &before);
        assert!(unprotect_rtp(&mut rx, &first).is_ok());
        let after = protect_rtp(&mut tx, &rtp(0, 5, 1, 300));
        assert!(unprotect_rtp(&mut rx, &after).is_ok());
        assert_eq!(protect_rtp(&mut tx, &before), first, "{profile:?}");
        assert_eq!(unprotect_rtp(&mut rx, &first), Err(SrtpError::Replayed));
    }
}

#[test]
fn reordering_within_the_window_is_accepted_once() {
    for profile in SrtpProfile::PREFERENCE {
        let (mut tx, mut rx) = native_pair(profile);
        // Across the wrap: 65530..=65535, 0..=5, delivered shuffled.
        let seqs: Vec<u16> = (65_530..=65_535).chain(0..=5).collect();
        let packets: Vec<(Vec<u8>, Vec<u8>)> = seqs
            .iter()
            .map(|&seq| {
                let plain = rtp(seq, 9, usize::from(seq), 200);
                (protect_rtp(&mut tx, &plain), plain)
            })
            .collect();
        for i in [0, 6, 2, 1, 8, 7, 11, 3, 5, 4, 10, 9] {
            let (packet, plain) = &packets[i];
            assert_eq!(unprotect_rtp(&mut rx, packet).as_ref(), Ok(plain), "{i}");
            assert_eq!(unprotect_rtp(&mut rx, packet), Err(SrtpError::Replayed));
        }
        for (packet, _) in &packets {
            assert_eq!(unprotect_rtp(&mut rx, packet), Err(SrtpError::Replayed));
        }

        // The edge of the window: REPLAY_WINDOW - 1 behind the highest is still accepted, one
        // more is too old.
        let base = 1000u16;
        let old: Vec<Vec<u8>> = (0..2)
            .map(|k| protect_rtp(&mut tx, &rtp(base + k, 9, 0, 20)))
            .collect();
        let head = base + REPLAY_WINDOW as u16;
        let newest = protect_rtp(&mut tx, &rtp(head, 9, 0, 20));
        assert!(unprotect_rtp(&mut rx, &newest).is_ok());
        assert_eq!(unprotect_rtp(&mut rx, &old[0]), Err(SrtpError::Replayed));
        assert!(unprotect_rtp(&mut rx, &old[1]).is_ok());
        assert_eq!(unprotect_rtp(&mut rx, &old[1]), Err(SrtpError::Replayed));

        // SRTCP: out of order once, then replays refused.
        let srtcp: Vec<Vec<u8>> = (0..5).map(|n| protect_rtcp(&mut tx, &rtcp(9, n))).collect();
        for i in [0, 3, 1, 4, 2] {
            assert_eq!(unprotect_rtcp(&mut rx, &srtcp[i]), Ok(rtcp(9, i as u8)));
        }
        for packet in &srtcp {
            assert_eq!(unprotect_rtcp(&mut rx, packet), Err(SrtpError::Replayed));
        }
    }
}

/// Every single-bit change of an SRTP/SRTCP packet is refused, and none burns the genuine
/// packet's index or creates state.
#[test]
fn every_tampered_bit_is_refused_and_changes_nothing() {
    for profile in SrtpProfile::PREFERENCE {
        let (client, server) = keys(profile);
        let mut tx =
            Sender::new(profile, &client.local_master_key, &client.local_master_salt).unwrap();
        let mut rx = Receiver::new(
            profile,
            &server.remote_master_key,
            &server.remote_master_salt,
        )
        .unwrap();
        // A first packet so the SSRC is known, then the one to tamper with.
        for (seq, keep) in [(10u16, false), (11, true)] {
            let plain = rtp(seq, 77, 4, 64);
            let mut buf = plain.clone();
            buf.resize(plain.len() + tx.rtp_overhead(), 0);
            let n = tx.protect_rtp(&mut buf, plain.len()).unwrap();
            if !keep {
                assert_eq!(rx.unprotect_rtp(&mut buf[..n]), Ok(plain.len()));
                continue;
            }
            for at in 0..n {
                for bit in [0x01u8, 0x80] {
                    let mut forged = buf[..n].to_vec();
                    forged[at] ^= bit;
                    let result = rx.unprotect_rtp(&mut forged);
                    assert!(result.is_err(), "{profile:?} byte {at} bit {bit:#x}");
                }
            }
            assert_eq!(rx.tracked_ssrcs(), (1, 0));
            assert_eq!(rx.unprotect_rtp(&mut buf[..n]), Ok(plain.len()));
        }

        let plain = rtcp(77, 1);
        let mut buf = plain.clone();
        buf.resize(plain.len() + tx.rtcp_overhead(), 0);
        let n = tx.protect_rtcp(&mut buf, plain.len()).unwrap();
        for at in 0..n {
            for bit in [0x01u8, 0x80] {
                let mut forged = buf[..n].to_vec();
                forged[at] ^= bit;
                let result = rx.unprotect_rtcp(&mut forged);
                assert!(result.is_err(), "{profile:?} SRTCP byte {at} bit {bit:#x}");
            }
        }
        assert_eq!(rx.tracked_ssrcs(), (1, 0));
        assert_eq!(rx.unprotect_rtcp(&mut buf[..n]), Ok(plain.len()));
        assert_eq!(rx.tracked_ssrcs(), (1, 1));
    }
}

/// Truncations and random bytes: errors, never a panic, never new state.
#[test]
fn garbage_never_panics_nor_creates_state() {
    for profile in SrtpProfile::PREFERENCE {
        let (client, server) = keys(profile);
        let mut tx =
            Sender::new(profile, &client.local_master_key, &client.local_master_salt).unwrap();
        let mut rx = Receiver::new(
            profile,
            &server.remote_master_key,
            &server.remote_master_salt,
        )
        .unwrap();
        let plain = rtp(1, 3, 4, 100);
        let mut buf = plain.clone();
        buf.resize(plain.len() + tx.rtp_overhead(), 0);
        let n = tx.protect_rtp(&mut buf, plain.len()).unwrap();
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let r = next();
            let mut packet = buf[..n].to_vec();
            match r % 4 {
                0 => packet.truncate((r >> 8) as usize % (n + 1)),
                1 => {
                    for _ in 0..1 + (r >> 8) % 4 {
                        let at = (next() as usize) % n;
                        packet[at] = next() as u8;
                    }
                }
                2 => {
                    packet = (0..(r >> 8) % 300).map(|_| next() as u8).collect();
                    if let Some(b) = packet.first_mut() {
                        *b = 0x80 | (*b & 0x3F);
                    }
                }
                _ => packet.extend((0..(r >> 8) % 40).map(|_| next() as u8)),
            }
            if packet[..] == buf[..n] {
                continue;
            }
            assert!(rx.unprotect_rtp(&mut packet.clone()).is_err());
            assert!(rx.unprotect_rtcp(&mut packet.clone()).is_err());
            // Protecting junk: an error or a packet, never a panic.
            let len = packet.len();
            packet.resize(len + 20, 0);
            let _ = tx.protect_rtp(&mut packet, len);
            let _ = tx.protect_rtcp(&mut packet, len);
            let _ = tx.protect_rtp(&mut packet, (r >> 20) as usize % 400);
        }
        assert_eq!(rx.tracked_ssrcs(), (0, 0));
    }
}

/// More SSRCs than the receiver tracks: each still decrypts, the table stays at its bound, and
/// the least recent SSRC is the one forgotten.
#[test]
fn ssrc_state_is_bounded() {
    let profile = SrtpProfile::AeadAes128Gcm;
    let (client, server) = keys(profile);
    let mut tx = Sender::new(profile, &client.local_master_key, &client.local_master_salt).unwrap();
    let mut rx = Receiver::new(
        profile,
        &server.remote_master_key,
        &server.remote_master_salt,
    )
    .unwrap();
    let mut send = |ssrc: u32, seq: u16| {
        let plain = rtp(seq, ssrc, 0, 40);
        let mut buf = plain.clone();
        buf.resize(plain.len() + 16, 0);
        let n = tx.protect_rtp(&mut buf, plain.len()).unwrap();
        buf.truncate(n);
        buf
    };
    let first = send(1_000, 1);
    assert!(rx.unprotect_rtp(&mut first.clone()).is_ok());
    let extra = 10;
    for ssrc in 0..(MAX_INBOUND_SSRCS + extra) as u32 {
        let mut packet = send(2_000 + ssrc, 1);
        assert!(rx.unprotect_rtp(&mut packet).is_ok());
        assert!(rx.tracked_ssrcs().0 <= MAX_INBOUND_SSRCS);
    }
    assert_eq!(rx.tracked_ssrcs().0, MAX_INBOUND_SSRCS);
    // SSRC 1000 was forgotten: its replay is no longer recognised (the documented cost of the
    // bound), while a recent SSRC's replay still is.
    assert!(rx.unprotect_rtp(&mut first.clone()).is_ok());
    let mut recent = send(2_000 + (MAX_INBOUND_SSRCS + extra) as u32 - 1, 2);
    assert!(rx.unprotect_rtp(&mut recent.clone()).is_ok());
    assert_eq!(rx.unprotect_rtp(&mut recent), Err(SrtpError::Replayed));
}

#[test]
fn keys_of_the_wrong_length_are_refused() {
    for profile in SrtpProfile::PREFERENCE {
        let (client, _) = keys(profile);
        let short_key = &client.local_master_key[..client.local_master_key.len() - 1];
        assert!(matches!(
            Sender::new(profile, short_key, &client.local_master_salt),
            Err(SrtpError::InvalidKeys(_))
        ));
        assert!(matches!(
            Receiver::new(profile, &client.local_master_key, &[0; 13]),
            Err(SrtpError::InvalidKeys(_))
        ));
    }
}

/// Steady state of every profile, both directions: RTP over several SSRCs through a wrap, with
/// losses, reordering, replays and forgeries, and RTCP. Buffers and sessions are set up, every
/// SSRC seen and every path taken once before `during` runs the measured part (aws-lc allocates
/// its per-thread error queue the first time a tag fails to verify on a thread: once per thread,
/// not per packet).
fn steady_state(mut during: impl FnMut(&mut dyn FnMut())) {
    struct Flow {
        tx: SrtpSession,
        rx: SrtpSession,
        plain: Vec<Vec<u8>>,
        buf: Vec<u8>,
        held: Vec<u8>,
        held_len: usize,
    }
    let mut flows: Vec<Flow> = SrtpProfile::PREFERENCE
        .into_iter()
        .flat_map(|profile| {
            let (client, server) = keys(profile);
            let mirrored = |k: &SrtpKeys| SrtpKeys {
                local_master_key: k.remote_master_key.clone(),
                local_master_salt: k.remote_master_salt.clone(),
                remote_master_key: k.local_master_key.clone(),
                remote_master_salt: k.local_master_salt.clone(),
            };
            [
                (client.clone(), mirrored(&client)),
                (server.clone(), mirrored(&server)),
            ]
            .map(|(a, b)| Flow {
                tx: SrtpSession::new(profile, &a).unwrap(),
                rx: SrtpSession::new(profile, &b).unwrap(),
                plain: (0..7).map(|i| rtp(0, 0, i, 1000)).collect(),
                buf: vec![0; 1600],
                held: vec![0; 1600],
                held_len: 0,
            })
        })
        .collect();
    let mut round = |from: u32, to: u32| {
        for flow in flows.iter_mut() {
            for step in from..to {
                for ssrc in [11u32, 22, 33] {
                    let seq = (65_000 + step) as u16;
                    let plain = &flow.plain[step as usize % 7];
                    let len = plain.len();
                    flow.buf[..len].copy_from_slice(plain);
                    flow.buf[2..4].copy_from_slice(&seq.to_be_bytes());
                    flow.buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
                    let n = flow.tx.protect_rtp(&mut flow.buf, len).unwrap();
                    if step % 5 == 0 {
                        // Held back, delivered after the next one.
                        flow.held[..n].copy_from_slice(&flow.buf[..n]);
                        flow.held_len = n;
                        continue;
                    }
                    if step % 7 == 3 {
                        // A forgery first: it must not burn the genuine packet's index.
                        let mut forged = [0u8; 1600];
                        forged[..n].copy_from_slice(&flow.buf[..n]);
                        forged[n - 1] ^= 1;
                        assert_eq!(
                            flow.rx.unprotect_rtp(&mut forged[..n]),
                            Err(SrtpError::Authentication)
                        );
                    }
                    assert_eq!(flow.rx.unprotect_rtp(&mut flow.buf[..n]), Ok(len));
                    let held = std::mem::take(&mut flow.held_len);
                    if held > 0 {
                        let mut copy = [0u8; 1600];
                        copy[..held].copy_from_slice(&flow.held[..held]);
                        assert!(flow.rx.unprotect_rtp(&mut flow.held[..held]).is_ok());
                        assert_eq!(
                            flow.rx.unprotect_rtp(&mut copy[..held]),
                            Err(SrtpError::Replayed)
                        );
                    }
                }
                if step % 50 == 0 {
                    let rr = [0x80, 201, 0, 1, 0, 0, 0, 11];
                    flow.buf[..8].copy_from_slice(&rr);
                    let n = flow.tx.protect_rtcp(&mut flow.buf, 8).unwrap();
                    let mut copy = [0u8; 64];
                    copy[..n].copy_from_slice(&flow.buf[..n]);
                    assert_eq!(flow.rx.unprotect_rtcp(&mut flow.buf[..n]), Ok(8));
                    assert_eq!(
                        flow.rx.unprotect_rtcp(&mut copy[..n]),
                        Err(SrtpError::Replayed)
                    );
                }
            }
        }
    };
    round(0, 100);
    during(&mut || round(100, 1100));
}

/// The allocation check proper, run in a child process by `packet_path_does_not_allocate`.
const MTRACE_CHILD: &str = "SHARDCAST_SRTP_MTRACE_CHILD";

#[cfg(all(target_os = "linux", target_env = "gnu"))]
extern "C" {
    fn mtrace();
    fn muntrace();
}

/// Under glibc's malloc tracer (see `packet_path_does_not_allocate`): the steady state between
/// `mtrace()` and `muntrace()`, plus one deliberate allocation when asked for a control run.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
#[ignore = "run in a child process by packet_path_does_not_allocate"]
fn packet_path_allocation_child() {
    let control = std::env::var(MTRACE_CHILD).is_ok_and(|v| v == "control");
    steady_state(|run| {
        // SAFETY: glibc's tracer hooks; without MALLOC_TRACE set they do nothing.
        unsafe { mtrace() };
        run();
        if control {
            drop(std::hint::black_box(Box::new([0u8; 100])));
        }
        unsafe { muntrace() };
    });
}

/// No heap allocation per packet, in Rust or in aws-lc's C code: the steady state runs in a
/// child process under glibc's malloc tracer (`libc_malloc_debug.so` preloaded, `mtrace()`
/// around the packets), which logs every `malloc`/`realloc` from any code. The counting global
/// allocator of `rtp::tests_no_alloc` would see only Rust's allocations and exposes no counter
/// outside its module. A control run with one deliberate allocation proves the tracer works.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn packet_path_does_not_allocate() {
    let exe = std::env::current_exe().unwrap();
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    let name = format!("{module}::packet_path_allocation_child");
    let mut counts = Vec::new();
    for mode in ["control", "measure"] {
        let trace = std::env::temp_dir().join(format!(
            "shardcast-srtp-mtrace-{}-{mode}.txt",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&trace);
        let output = std::process::Command::new(&exe)
            .args([name.as_str(), "--exact", "--ignored", "--test-threads=1"])
            .env("LD_PRELOAD", "libc_malloc_debug.so.0")
            .env("MALLOC_TRACE", &trace)
            .env(MTRACE_CHILD, mode)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "child failed: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let Ok(log) = std::fs::read_to_string(&trace) else {
            eprintln!("glibc malloc tracing unavailable (no libc_malloc_debug.so.0): skipped");
            return;
        };
        let _ = std::fs::remove_file(&trace);
        let allocations: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(" + ") || l.contains(" > "))
            .collect();
        counts.push((mode, allocations.len(), allocations.join("\n")));
    }
    assert!(
        counts[0].1 >= 1,
        "control run saw no allocation: tracer broken"
    );
    assert_eq!(
        counts[1].1, 0,
        "packet path allocated {} times:\n{}",
        counts[1].1, counts[1].2
    );
}
