//! Packet-path pieces without sockets: the ICE check a shard answers, and SRTP/SRTCP protect and
//! unprotect of a 1200-byte video packet for every profile the shard negotiates.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use shards::transport::dtls_certificate::DtlsCertificate;
use shards::transport::dtls_transport::{
    DtlsOutput, DtlsRole, DtlsTransport, SrtpKeys, SrtpProfile,
};
use shards::transport::ice_server::{IceServer, Protocol, TransportTuple};
use shards::transport::srtp_session::SrtpSession;
use shards::transport::stun::{BindingRequest, StunMessage};

fn stun_check(c: &mut Criterion) {
    let ufrag = "abcdefghijklmnopqrstuvwxyz012345".to_string();
    let password = "0123456789abcdefghijklmnopqrstuv".to_string();
    let mut server = IceServer::new(
        ufrag.clone(),
        password.clone(),
        Some(Duration::from_secs(30)),
    );
    let username = format!("{ufrag}:remote");
    let mut request = [0u8; 256];
    let len =
        BindingRequest::controlling([7; 12], &username, password.as_bytes(), 1_853_817_087, 42)
            .write(&mut request)
            .expect("request");
    let tuple = TransportTuple {
        local: "127.0.0.1:40000".parse::<SocketAddr>().expect("addr"),
        remote: "127.0.0.1:50000".parse::<SocketAddr>().expect("addr"),
        protocol: Protocol::Udp,
    };
    let now = Instant::now();
    let mut out = [0u8; 256];
    c.bench_function("ice: parse + verify + answer a binding request", |b| {
        b.iter(|| {
            let msg = StunMessage::parse(black_box(&request[..len])).expect("stun");
            let response = server.handle_stun(&msg, tuple, now, &mut out);
            while server.poll_event().is_some() {}
            response.len
        })
    });
}

fn rtp_packet(seq: u16, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x80;
    p[1] = 96;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(seq as u32 * 3000).to_be_bytes());
    p[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    p
}

fn srtp(c: &mut Criterion) {
    let mut group = c.benchmark_group("srtp 1200-byte rtp");
    group.throughput(Throughput::Elements(1));
    for profile in [
        SrtpProfile::AeadAes256Gcm,
        SrtpProfile::AeadAes128Gcm,
        SrtpProfile::AesCm128HmacSha1_80,
        SrtpProfile::AesCm128HmacSha1_32,
    ] {
        let material: Vec<u8> = (0..profile.keying_material_len())
            .map(|i| i as u8)
            .collect();
        let client =
            SrtpKeys::from_keying_material(profile, &material, DtlsRole::Client).expect("keys");
        let server =
            SrtpKeys::from_keying_material(profile, &material, DtlsRole::Server).expect("keys");
        let mut sender = SrtpSession::new(profile, &client).expect("session");
        let overhead = sender.rtp_overhead();
        let mut seq = 0u16;
        let mut buf = vec![0u8; 1200 + overhead];
        group.bench_function(format!("protect {}", profile.as_str()), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                buf[..1200].copy_from_slice(&rtp_packet(seq, 1200));
                sender.protect_rtp(&mut buf, 1200).expect("protect")
            })
        });
        // Replay protection refuses a packet twice: each run gets a fresh receiving session.
        let mut packet = vec![0u8; 1200 + overhead];
        packet[..1200].copy_from_slice(&rtp_packet(1, 1200));
        let n = SrtpSession::new(profile, &client)
            .expect("session")
            .protect_rtp(&mut packet, 1200)
            .expect("protect");
        packet.truncate(n);
        group.bench_function(format!("unprotect {}", profile.as_str()), |b| {
            b.iter_batched(
                || {
                    (
                        SrtpSession::new(profile, &server).expect("session"),
                        packet.clone(),
                    )
                },
                |(mut receiver, mut p)| receiver.unprotect_rtp(&mut p).expect("unprotect"),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// Moves every pending datagram from one endpoint to the other; true once `to` reports Connected.
fn pump(from: &mut DtlsTransport, to: &mut DtlsTransport, now: Instant, buf: &mut [u8]) -> bool {
    let mut connected = false;
    loop {
        match from.poll_output(buf) {
            DtlsOutput::Packet(n) => {
                let _ = to.handle_packet(&buf[..n], now);
            }
            DtlsOutput::Connected { .. } => connected = true,
            DtlsOutput::None => return connected,
            _ => {}
        }
    }
}

/// A full DTLS 1.2 handshake between our server and our client transport, in memory (ECDHE-ECDSA
/// P-256, extended master secret, use_srtp): the CPU a shard spends per connecting transport.
fn dtls_handshake(c: &mut Criterion) {
    let server_cert = DtlsCertificate::generate().expect("cert");
    let client_cert = DtlsCertificate::generate().expect("cert");
    let fp = |cert: &DtlsCertificate| vec![cert.fingerprints().pop().expect("sha-256")];
    c.bench_function("dtls 1.2 handshake, both ends in memory", |b| {
        b.iter(|| {
            let now = Instant::now();
            let mut server =
                DtlsTransport::new(&server_cert, DtlsRole::Server, fp(&client_cert), now)
                    .expect("server");
            let mut client =
                DtlsTransport::new(&client_cert, DtlsRole::Client, fp(&server_cert), now)
                    .expect("client");
            let mut buf = vec![0u8; 4096];
            let (mut client_up, mut server_up) = (false, false);
            for _ in 0..16 {
                server_up |= pump(&mut client, &mut server, now, &mut buf);
                client_up |= pump(&mut server, &mut client, now, &mut buf);
                server_up |= matches!(
                    server.state(),
                    shards::transport::dtls_transport::DtlsState::Connected
                );
                if client_up && server_up {
                    break;
                }
            }
            assert!(client_up, "handshake did not complete");
        })
    });
}

criterion_group!(benches, stun_check, srtp, dtls_handshake);
criterion_main!(benches);
