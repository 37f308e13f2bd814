//! WebRtcTransport on the media shards, driven by the Rust test peer over real sockets: ICE-lite
//! (UDP and ICE-TCP), DTLS with every SRTP profile the server offers, SRTP both ways, ICE
//! restart, consent, bad ICE/DTLS/SRTP input, lost handshake flights, rooms on two shards.

mod common;

use std::net::UdpSocket;
use std::rc::Rc;
use std::time::Duration;

use common::{join_peer, metrics, run, JoinedPeer, Server, WAIT};
use serde_json::{json, Value};
use shardcast_tools::peer::{
    rtp::rtcp, BindingOutcome, DtlsDatagram, DtlsDirection, DtlsStack, PeerTransport,
    PeerTransportOptions, Protocol, RtpPacketBuilder, SrtpProfile,
};

/// Creates a transport through protoo and connects it.
async fn connect(peer: &JoinedPeer, answer: &Value, opts: PeerTransportOptions) -> PeerTransport {
    common::connect_peer_transport(peer, answer, opts).await
}

async fn transport_stats(peer: &JoinedPeer, transport_id: &Value) -> Value {
    peer.client
        .request("getTransportStats", json!({"transportId": transport_id}))
        .await
        .expect("getTransportStats")[0]
        .clone()
}

/// Polls getTransportStats until `pred` holds.
async fn wait_stats(
    peer: &JoinedPeer,
    transport_id: &Value,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let stats = transport_stats(peer, transport_id).await;
        if pred(&stats) {
            return stats;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stats never matched: {stats}"
        );
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
}

/// Sum of a counter over shards (lines starting with `name{` and containing `filter`).
fn counter(metrics: &str, name: &str, filter: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn video_packet(seq: u16) -> Vec<u8> {
    RtpPacketBuilder::new(0x0102_0304, 96, seq, seq as u32 * 3000)
        .payload(&[0xAB; 1000])
        .build()
}

/// Sends media and checks it was decrypted and counted, and that the server's SRTCP decrypts.
async fn assert_srtp_flows(peer: &JoinedPeer, transport: &PeerTransport, transport_id: &Value) {
    let before = transport_stats(peer, transport_id).await["rtpBytesReceived"]
        .as_u64()
        .unwrap();
    for seq in 1..=20u16 {
        transport
            .send_rtp(&video_packet(seq))
            .await
            .expect("send rtp");
    }
    wait_stats(peer, transport_id, |s| {
        s["rtpBytesReceived"].as_u64().unwrap() >= before + 20 * 1012
    })
    .await;
    let report = transport
        .recv_rtcp(WAIT)
        .await
        .expect("an SRTCP packet from the server");
    assert!(!rtcp::parse(&report).expect("valid RTCP").is_empty());
}

#[test]
fn udp_transport_connects_and_carries_srtp_both_ways() {
    let server = Server::start(&["--shards", "1"]);
    run(|| async {
        let a = join_peer(&server, "udp", "alice", "Alice").await;
        let id = a.send_transport["id"].clone();
        let transport = connect(&a, &a.send_transport, PeerTransportOptions::default()).await;
        // Chrome's offer, answered as the server prefers: AES-256-GCM.
        assert_eq!(
            transport.selected_profile(),
            Some(SrtpProfile::AeadAes256Gcm)
        );
        let stats = wait_stats(&a, &id, |s| s["dtlsState"] == "connected").await;
        assert_eq!(stats["iceState"], "completed");
        assert_eq!(stats["srtpCryptoSuite"], "AEAD_AES_256_GCM");
        let tuple = &stats["iceSelectedTuple"];
        assert_eq!(tuple["protocol"], "udp");
        assert_eq!(tuple["remotePort"], transport.local_addr().port());
        assert_eq!(tuple["localPort"], server.rtc_port());
        // XOR-MAPPED-ADDRESS reports the address the check came from.
        assert_eq!(transport.mapped_address(), Some(transport.local_addr()));
        assert_srtp_flows(&a, &transport, &id).await;
    });
}

#[test]
fn ice_tcp_transport_connects_and_carries_srtp() {
    let server = Server::start(&["--shards", "1", "--no-tls"]);
    run(|| async {
        let a = join_peer(&server, "tcp", "alice", "Alice").await;
        let answer = a
            .client
            .request(
                "createWebRtcTransport",
                json!({"forceTcp": true, "producing": true, "consuming": false}),
            )
            .await
            .unwrap();
        let opts = PeerTransportOptions {
            protocol: Protocol::Tcp,
            ..Default::default()
        };
        let transport = connect(&a, &answer, opts).await;
        let stats = wait_stats(&a, &answer["id"], |s| s["dtlsState"] == "connected").await;
        assert_eq!(stats["iceSelectedTuple"]["protocol"], "tcp");
        assert_srtp_flows(&a, &transport, &answer["id"]).await;
    });
}

/// Each profile the server offers, offered alone by the client; `_32`, which dimpl (our DTLS)
/// does not offer, fails the handshake.
#[test]
fn every_offered_srtp_profile_negotiates() {
    let server = Server::start(&["--shards", "1", "--no-tls"]);
    run(|| async {
        let a = join_peer(&server, "profiles", "alice", "Alice").await;
        for profile in [
            SrtpProfile::AeadAes256Gcm,
            SrtpProfile::AeadAes128Gcm,
            SrtpProfile::AesCm128HmacSha1_80,
        ] {
            let answer = a
                .client
                .request(
                    "createWebRtcTransport",
                    json!({"producing": true, "consuming": false}),
                )
                .await
                .unwrap();
            let opts = PeerTransportOptions {
                srtp_profiles: vec![profile],
                dtls_stack: DtlsStack::RtcDtls,
                ..Default::default()
            };
            let transport = connect(&a, &answer, opts).await;
            assert_eq!(transport.selected_profile(), Some(profile));
            let stats = wait_stats(&a, &answer["id"], |s| s["dtlsState"] == "connected").await;
            assert_eq!(stats["srtpCryptoSuite"], profile.as_str());
            assert_srtp_flows(&a, &transport, &answer["id"]).await;
            a.client
                .request("getTransportStats", json!({"transportId": answer["id"]}))
                .await
                .unwrap();
        }
    });
}

#[test]
fn restart_ice_switches_credentials_and_keeps_dtls() {
    let server = Server::start(&["--shards", "1", "--no-tls"]);
    run(|| async {
        let a = join_peer(&server, "restart", "alice", "Alice").await;
        let id = a.send_transport["id"].clone();
        let transport = connect(&a, &a.send_transport, PeerTransportOptions::default()).await;
        let old = a.send_transport["iceParameters"].clone();
        let new = a
            .client
            .request("restartIce", json!({"transportId": id}))
            .await
            .unwrap();
        let local_ufrag = transport.local_ice_credentials().username_fragment.clone();
        let check = |params: &Value| {
            let mut request = transport.binding_request(true);
            request.username = Some(format!(
                "{}:{local_ufrag}",
                params["usernameFragment"].as_str().unwrap()
            ));
            request.password = Some(params["password"].as_str().unwrap().to_string());
            request
        };
        let success = |o: &BindingOutcome| {
            matches!(
                o,
                BindingOutcome::Success {
                    authenticated: true,
                    ..
                }
            )
        };
        // Until a check uses the new credentials, the old ones still work.
        let outcome = transport.send_binding(&check(&old), WAIT).await.unwrap();
        assert!(
            success(&outcome),
            "old credentials before the switch: {outcome:?}"
        );
        let outcome = transport.send_binding(&check(&new), WAIT).await.unwrap();
        assert!(success(&outcome), "new credentials: {outcome:?}");
        // Now the old ufrag is forgotten: no answer at all (counted as unknown username).
        let outcome = transport
            .send_binding(&check(&old), Duration::from_millis(600))
            .await
            .unwrap();
        assert!(matches!(outcome, BindingOutcome::NoResponse), "{outcome:?}");
        assert!(
            counter(
                &metrics(&server).await,
                "shardcast_shard_packets_dropped_total",
                "stun_unknown_username"
            ) > 0
        );
        // DTLS and SRTP survive the restart.
        assert_eq!(transport_stats(&a, &id).await["dtlsState"], "connected");
        assert_srtp_flows(&a, &transport, &id).await;
    });
}

#[test]
fn wrong_ice_password_and_unknown_ufrag_are_refused() {
    let server = Server::start(&["--shards", "1", "--no-tls"]);
    run(|| async {
        let a = join_peer(&server, "badice", "alice", "Alice").await;
        let transport = PeerTransport::new(&a.send_transport, PeerTransportOptions::default())
            .await
            .unwrap();
        let mut request = transport.binding_request(true);
        request.password = Some("wrong-password".into());
        let outcome = transport.send_binding(&request, WAIT).await.unwrap();
        assert!(
            matches!(outcome, BindingOutcome::Error { code: 401, .. }),
            "{outcome:?}"
        );

        let mut request = transport.binding_request(true);
        request.username = Some("nosuchufrag:abcd".into());
        let outcome = transport
            .send_binding(&request, Duration::from_millis(600))
            .await
            .unwrap();
        assert!(matches!(outcome, BindingOutcome::NoResponse), "{outcome:?}");

        let mut request = transport.binding_request(true);
        request.role = Some(shardcast_tools::peer::IceRole::Controlled);
        let outcome = transport.send_binding(&request, WAIT).await.unwrap();
        assert!(
            matches!(outcome, BindingOutcome::Error { code: 487, .. }),
            "{outcome:?}"
        );

        let m = metrics(&server).await;
        assert!(
            counter(
                &m,
                "shardcast_shard_packets_dropped_total",
                "stun_unknown_username"
            ) >= 1
        );
        assert!(counter(&m, "shardcast_shard_packets_dropped_total", "stun_rejected") >= 2);
        // None of this validated the address: the transport is still new.
        let stats = transport_stats(&a, &a.send_transport["id"]).await;
        assert_eq!(stats["iceState"], "new");
    });
}

/// A wrong remote fingerprint fails DTLS; the transport reports `failed` and, as the demo does,
/// the server closes that peer (4000). Nobody else is disturbed.
#[test]
fn wrong_fingerprint_fails_dtls_and_closes_the_peer() {
    let server = Server::start(&["--shards", "1", "--no-tls"]);
    run(|| async {
        let bystander = join_peer(&server, "fp", "bob", "Bob").await;
        let bob_transport = connect(
            &bystander,
            &bystander.send_transport,
            PeerTransportOptions::default(),
        )
        .await;
        let a = join_peer(&server, "fp", "alice", "Alice").await;
        let transport = PeerTransport::new(&a.send_transport, PeerTransportOptions::default())
            .await
            .unwrap();
        let mut dtls = transport.local_dtls_parameters();
        dtls["fingerprints"][0]["value"] = json!(vec!["00"; 32].join(":"));
        a.client
            .request(
                "connectWebRtcTransport",
                json!({"transportId": a.send_transport["id"], "dtlsParameters": dtls}),
            )
            .await
            .unwrap();
        let result = transport.connect().await;
        assert!(
            result.is_err(),
            "DTLS must not connect with a wrong fingerprint"
        );
        assert!(
            a.client.wait_closed(WAIT).await,
            "the failed peer is closed"
        );
        assert_eq!(a.client.close_code(), Some(4000));
        assert!(
            server.log().contains("dtlsState failed"),
            "{}",
            server.log()
        );
        bystander
            .client
            .wait_for(WAIT, |e| {
                e.is_notification("peerClosed") && e.data()["peerId"] == "alice"
            })
            .await
            .expect("peerClosed for alice");
        assert_srtp_flows(&bystander, &bob_transport, &bystander.send_transport["id"]).await;
    });
}

/// Garbage and truncated packets of every kind, from validated and unvalidated addresses, are
/// counted and dropped; a call on the same shard goes on.
#[test]
fn garbage_and_unvalidated_packets_are_counted_and_dropped() {
    let server = Server::start(&["--shards", "1", "--no-tls"]);
    run(|| async {
        // A call of two other peers on the same shard.
        let bob = join_peer(&server, "call", "bob", "Bob").await;
        let bob_transport =
            connect(&bob, &bob.send_transport, PeerTransportOptions::default()).await;
        let carol = join_peer(&server, "call", "carol", "Carol").await;
        let carol_transport = connect(
            &carol,
            &carol.send_transport,
            PeerTransportOptions::default(),
        )
        .await;
        let a = join_peer(&server, "garbage", "alice", "Alice").await;
        let transport = connect(&a, &a.send_transport, PeerTransportOptions::default()).await;

        let before = metrics(&server).await;
        // From the validated address: truncated or forged packets of each kind.
        let validated: Vec<Vec<u8>> = vec![
            vec![0x00],                                                 // truncated STUN
            vec![0x00, 0x01, 0x00, 0x50, 1, 2, 3],                      // STUN with a bad length
            vec![22],                                                   // truncated DTLS
            vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 9, 0, 200, 1, 2], // DTLS record overrun
            vec![0x80],                                                 // truncated RTP
            video_packet(7),                                            // RTP that is not SRTP
            vec![0x80, 200, 0, 1, 0, 0, 0, 1],                          // RTCP that is not SRTCP
            vec![0x47; 100],                                            // unknown first byte
            vec![],                                                     // empty
        ];
        for packet in &validated {
            transport.send_raw(packet).await.unwrap();
        }
        // From an address ICE never validated.
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = ("127.0.0.1", server.rtc_port());
        for packet in [
            vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0],
            video_packet(9),
        ] {
            stranger.send_to(&packet, target).unwrap();
        }
        let deadline = std::time::Instant::now() + WAIT;
        let expect = [
            ("stun_malformed", 2),
            ("dtls_invalid", 2),
            ("srtp_invalid", 3),
            ("unknown_kind", 1),
            ("dtls_unvalidated", 1),
            ("rtp_unvalidated", 1),
        ];
        loop {
            let now = metrics(&server).await;
            let grown = expect.iter().all(|(reason, n)| {
                let name = "shardcast_shard_packets_dropped_total";
                let reason = format!("reason=\"{reason}\"");
                counter(&now, name, &reason) >= counter(&before, name, &reason) + n
            });
            if grown {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "drops not counted:\n{now}"
            );
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
        // The other call and the attacked transport still work.
        assert_srtp_flows(&bob, &bob_transport, &bob.send_transport["id"]).await;
        assert_srtp_flows(&carol, &carol_transport, &carol.send_transport["id"]).await;
        assert_srtp_flows(&a, &transport, &a.send_transport["id"]).await;
        assert!(server.log().contains("shardcast ready"));
    });
}

/// Drop one DTLS datagram of the handshake, in turn each flight in each direction (the client
/// sends two flights of one datagram each; the server answers with two):
/// retransmissions still connect the transport.
#[test]
fn lost_handshake_datagrams_are_recovered() {
    let server = Server::start(&["--shards", "1", "--no-tls"]);
    run(|| async {
        let a = join_peer(&server, "loss", "alice", "Alice").await;
        for direction in [DtlsDirection::Outgoing, DtlsDirection::Incoming] {
            for index in 0..2 {
                let answer = a
                    .client
                    .request(
                        "createWebRtcTransport",
                        json!({"producing": true, "consuming": false}),
                    )
                    .await
                    .unwrap();
                let dropped = Rc::new(std::cell::Cell::new(false));
                let seen = dropped.clone();
                let opts = PeerTransportOptions {
                    drop_dtls: Some(Rc::new(move |d: &DtlsDatagram<'_>| {
                        let hit = d.direction == direction && d.index == index;
                        if hit {
                            seen.set(true);
                        }
                        hit
                    })),
                    ..Default::default()
                };
                let transport = connect(&a, &answer, opts).await;
                assert!(dropped.get(), "{direction:?} #{index} was never sent");
                wait_stats(&a, &answer["id"], |s| s["dtlsState"] == "connected").await;
                assert_srtp_flows(&a, &transport, &answer["id"]).await;
                a.client
                    .request("getTransportStats", json!({"transportId": answer["id"]}))
                    .await
                    .unwrap();
            }
        }
    });
}

/// Transports of three rooms on two shards at once, each on its own shard's port.
#[test]
fn three_rooms_on_two_shards_connect_at_once() {
    let server = Server::start(&["--shards", "2", "--no-tls"]);
    run(|| async {
        let mut peers = Vec::new();
        for room in ["r1", "r2", "r3"] {
            peers.push(join_peer(&server, room, "p", "P").await);
        }
        let ports: Vec<u64> = peers
            .iter()
            .map(|p| {
                p.send_transport["iceCandidates"][0]["port"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        let base = server.rtc_port() as u64;
        assert!(ports.iter().all(|p| *p == base || *p == base + 1));
        assert!(ports.contains(&base) && ports.contains(&(base + 1)));
        let transports = futures::future::join_all(
            peers
                .iter()
                .map(|p| connect(p, &p.send_transport, PeerTransportOptions::default())),
        )
        .await;
        for (peer, transport) in peers.iter().zip(&transports) {
            assert_eq!(
                transport.remote_addr().port() as u64,
                peer.send_transport["iceCandidates"][0]["port"]
                    .as_u64()
                    .unwrap()
            );
            assert_srtp_flows(peer, transport, &peer.send_transport["id"]).await;
        }
    });
}

/// A transport whose checks stop goes `disconnected` after the consent timeout (10 s, the
/// lowest mediasoup allows); the demo then closes the peer.
#[test]
fn consent_expiry_disconnects_the_transport() {
    let server = Server::start(&["--shards", "1", "--no-tls", "--ice-consent-timeout", "10"]);
    run(|| async {
        let a = join_peer(&server, "consent", "alice", "Alice").await;
        let _transport = connect(&a, &a.send_transport, PeerTransportOptions::default()).await;
        // No more checks from here on.
        assert!(
            a.client.wait_closed(Duration::from_secs(25)).await,
            "peer not closed"
        );
        assert_eq!(a.client.close_code(), Some(4000));
    });
}
