//! The WebRTC test peer end to end over real loopback sockets (UDP and ICE-TCP) against the
//! in-process loopback server (ICE-lite + dimpl or rtc-dtls server + SRTP), one glommio executor
//! per test.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};
use shardcast_tools::peer::loopback::{LoopbackOptions, LoopbackServer};
use shardcast_tools::peer::rtp::rtcp;
use shardcast_tools::peer::{
    BindingOutcome, DtlsDirection, DtlsFailure, DtlsStack, DtlsState, Fingerprint, IceRole,
    IceState, PeerError, PeerTransport, PeerTransportOptions, Protocol, Received, RtpPacketBuilder,
    RtpView, SrtpProfile, PEER_REFLEXIVE_PRIORITY,
};

/// Generous: only reached when something is broken.
const WAIT: Duration = Duration::from_secs(10);

fn run<Fut: Future>(f: impl FnOnce() -> Fut + Send) -> Fut::Output
where
    Fut::Output: Send,
{
    let _ = env_logger::builder().is_test(true).try_init();
    std::thread::scope(|s| {
        let handle = s.spawn(|| {
            LocalExecutorBuilder::new(Placement::Unbound)
                .io_memory(512 << 10)
                .ring_depth(256)
                .make()
                .expect("glommio executor")
                .run(f())
        });
        handle
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

fn opts(protocol: Protocol, profiles: &[SrtpProfile]) -> PeerTransportOptions {
    PeerTransportOptions {
        protocol,
        srtp_profiles: profiles.to_vec(),
        ..Default::default()
    }
}

/// Connects, checks both sides agree, and exchanges RTP and RTCP both ways.
async fn connect_and_exchange(
    server: &LoopbackServer,
    options: PeerTransportOptions,
    expected: SrtpProfile,
) -> PeerTransport {
    let peer = PeerTransport::new(&server.answer(), options).await.unwrap();
    assert_eq!(peer.ice_state(), IceState::New);
    assert_eq!(peer.dtls_state(), DtlsState::New);
    let profile = peer.connect().await.unwrap();
    assert_eq!(profile, expected);
    assert_eq!(peer.selected_profile(), Some(expected));
    assert_eq!(peer.ice_state(), IceState::Connected);
    assert_eq!(peer.dtls_state(), DtlsState::Connected(expected));
    assert_eq!(server.wait_dtls(WAIT).await, Some(Ok(expected)));
    assert_eq!(peer.mapped_address(), Some(peer.local_addr()));
    assert_eq!(server.peer_addr(), Some(peer.local_addr()));

    // The certificate the peer presented is the one it advertises for connectWebRtcTransport.
    let params = peer.local_dtls_parameters();
    assert_eq!(params["role"], "client");
    assert_eq!(params["fingerprints"][0]["algorithm"], "sha-256");
    let advertised = Fingerprint::parse(
        "sha-256",
        params["fingerprints"][0]["value"].as_str().unwrap(),
    )
    .unwrap();
    assert!(advertised.matches(&server.peer_certificate().expect("client certificate")));

    // Peer -> server.
    let rtp = RtpPacketBuilder::new(0x1111, 111, 1, 960)
        .mid(1, "0")
        .transport_wide_seq(3, 1)
        .payload(&[0x55; 100])
        .build();
    peer.send_rtp(&rtp).await.unwrap();
    assert_eq!(server.recv(WAIT).await, Some(Received::Rtp(rtp.clone())));
    let sr = rtcp::sender_report(0x1111, 1 << 32, 960, 1, 100);
    peer.send_rtcp(&sr).await.unwrap();
    assert_eq!(server.recv(WAIT).await, Some(Received::Rtcp(sr)));

    // Server -> peer.
    let rtp = RtpPacketBuilder::new(0x2222, 96, 500, 90_000)
        .marker(true)
        .payload(b"video")
        .build();
    server.send_rtp(&rtp).await.unwrap();
    let got = peer.recv_rtp(WAIT).await.expect("RTP from the server");
    let view = RtpView::parse(&got).unwrap();
    assert_eq!(
        (view.ssrc, view.sequence_number, view.marker),
        (0x2222, 500, true)
    );
    let pli = rtcp::pli(0x2222, 0x1111);
    server.send_rtcp(&pli).await.unwrap();
    assert_eq!(peer.recv(WAIT).await, Some(Received::Rtcp(pli)));

    let stats = peer.stats();
    assert_eq!((stats.rtp_sent, stats.rtcp_sent), (1, 1));
    assert_eq!((stats.rtp_received, stats.rtcp_received), (1, 1));
    assert_eq!(stats.srtp_errors, 0);
    peer
}

/// Over UDP, against a dimpl server (the SFU's engine): the Chrome-like offer (dimpl client) and
/// each profile dimpl serves, offered alone (rtc-dtls client).
#[test]
fn udp_every_profile_against_a_dimpl_server() {
    run(|| async {
        let peer_stacks = [
            (
                SrtpProfile::CHROME.to_vec(),
                DtlsStack::Dimpl,
                SrtpProfile::AeadAes256Gcm,
            ),
            (
                vec![SrtpProfile::AeadAes256Gcm],
                DtlsStack::RtcDtls,
                SrtpProfile::AeadAes256Gcm,
            ),
            (
                vec![SrtpProfile::AeadAes128Gcm],
                DtlsStack::RtcDtls,
                SrtpProfile::AeadAes128Gcm,
            ),
            (
                vec![SrtpProfile::AesCm128HmacSha1_80],
                DtlsStack::RtcDtls,
                SrtpProfile::AesCm128HmacSha1_80,
            ),
        ];
        for (profiles, stack, expected) in peer_stacks {
            let server = LoopbackServer::start(LoopbackOptions::default())
                .await
                .unwrap();
            let peer =
                connect_and_exchange(&server, opts(Protocol::Udp, &profiles), expected).await;
            assert_eq!(peer.dtls_stack(), stack);
            peer.close().await;
        }
    });
}

/// `_32` alone and all four profiles, against a server that knows `_32` (rtc-dtls).
#[test]
fn udp_sha1_32_and_all_profiles_against_an_rtc_dtls_server() {
    run(|| async {
        for (offer, expected) in [
            (
                vec![SrtpProfile::AesCm128HmacSha1_32],
                SrtpProfile::AesCm128HmacSha1_32,
            ),
            (SrtpProfile::ALL.to_vec(), SrtpProfile::AeadAes256Gcm),
        ] {
            let server = LoopbackServer::start(LoopbackOptions {
                stack: DtlsStack::RtcDtls,
                srtp_profiles: SrtpProfile::ALL.to_vec(),
                ..Default::default()
            })
            .await
            .unwrap();
            connect_and_exchange(&server, opts(Protocol::Udp, &offer), expected).await;
        }
    });
}

/// `_32` alone against dimpl (which cannot serve it) fails the handshake quickly.
#[test]
fn udp_sha1_32_against_a_dimpl_server_fails() {
    run(|| async {
        let server = LoopbackServer::start(LoopbackOptions::default())
            .await
            .unwrap();
        let peer = PeerTransport::new(
            &server.answer(),
            opts(Protocol::Udp, &[SrtpProfile::AesCm128HmacSha1_32]),
        )
        .await
        .unwrap();
        match peer.connect().await {
            Err(PeerError::Dtls(DtlsFailure::Engine(_))) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(peer.dtls_state(), DtlsState::Failed(_)));
        assert_eq!(peer.selected_profile(), None);
        assert!(matches!(
            peer.send_rtp(&RtpPacketBuilder::new(1, 1, 1, 1).build())
                .await,
            Err(PeerError::NotConnected)
        ));
    });
}

/// ICE-TCP with RFC 4571 framing, both DTLS stacks.
#[test]
fn tcp_connect_and_exchange() {
    run(|| async {
        for (profiles, expected) in [
            (SrtpProfile::CHROME.to_vec(), SrtpProfile::AeadAes256Gcm),
            (
                vec![SrtpProfile::AesCm128HmacSha1_80],
                SrtpProfile::AesCm128HmacSha1_80,
            ),
        ] {
            let server = LoopbackServer::start(LoopbackOptions::default())
                .await
                .unwrap();
            let peer =
                connect_and_exchange(&server, opts(Protocol::Tcp, &profiles), expected).await;
            assert_eq!(peer.protocol(), Protocol::Tcp);
            assert_eq!(
                peer.remote_addr(),
                server.answer()["iceCandidates"][1]["port"]
                    .as_u64()
                    .map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p as u16)))
                    .unwrap()
            );
            // The server going away ends the stream: recv stops waiting.
            drop(server);
            let t0 = std::time::Instant::now();
            while peer.recv(WAIT).await.is_some() {}
            assert!(t0.elapsed() < WAIT);
            assert!(peer.closed_reason().is_some());
        }
    });
}

/// What the connectivity check carries, as the server sees it.
#[test]
fn connectivity_check_attributes() {
    run(|| async {
        let server = LoopbackServer::start(LoopbackOptions::default())
            .await
            .unwrap();
        let peer = PeerTransport::new(&server.answer(), PeerTransportOptions::default())
            .await
            .unwrap();
        peer.connect_ice().await.unwrap();
        let checks = server.binding_requests();
        let check = checks.last().unwrap();
        let server_ufrag = server.answer()["iceParameters"]["usernameFragment"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            check.username.as_deref(),
            Some(
                format!(
                    "{server_ufrag}:{}",
                    peer.local_ice_credentials().username_fragment
                )
                .as_str()
            )
        );
        assert_eq!(check.priority, Some(PEER_REFLEXIVE_PRIORITY));
        assert!(matches!(check.role, Some((IceRole::Controlling, _))));
        assert!(check.use_candidate && check.has_integrity && check.has_fingerprint);

        // Consent checks carry no USE-CANDIDATE and succeed.
        let outcome = peer.keepalive().await.unwrap();
        assert!(matches!(
            outcome,
            BindingOutcome::Success {
                authenticated: true,
                ..
            }
        ));
        assert!(!server.binding_requests().last().unwrap().use_candidate);

        // Controlled role and no nomination, when asked.
        let peer = PeerTransport::new(
            &server.answer(),
            PeerTransportOptions {
                ice_controlling: false,
                use_candidate: false,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        peer.connect_ice().await.unwrap();
        let check = server.binding_requests().pop().unwrap();
        assert!(matches!(check.role, Some((IceRole::Controlled, _))));
        assert!(!check.use_candidate);
    });
}

/// Bad credentials get the server's error code back; a server that refuses the check fails
/// connect with that code.
#[test]
fn bad_ice_credentials() {
    run(|| async {
        let server = LoopbackServer::start(LoopbackOptions::default())
            .await
            .unwrap();
        let peer = PeerTransport::new(&server.answer(), PeerTransportOptions::default())
            .await
            .unwrap();
        let mut req = peer.binding_request(true);
        req.password = Some("wrong password".into());
        let outcome = peer.send_binding(&req, WAIT).await.unwrap();
        assert!(
            matches!(outcome, BindingOutcome::Error { code: 401, .. }),
            "{outcome:?}"
        );

        let mut req = peer.binding_request(true);
        req.username = None;
        let outcome = peer.send_binding(&req, WAIT).await.unwrap();
        assert!(
            matches!(outcome, BindingOutcome::Error { code: 400, .. }),
            "{outcome:?}"
        );

        // The right credentials still work after the bad ones.
        let good = peer.binding_request(false);
        let outcome = peer.send_binding(&good, WAIT).await.unwrap();
        assert!(matches!(
            outcome,
            BindingOutcome::Success {
                authenticated: true,
                ..
            }
        ));

        let refusing = LoopbackServer::start(LoopbackOptions {
            ice_error: Some((487, "Role Conflict".into())),
            ..Default::default()
        })
        .await
        .unwrap();
        let peer = PeerTransport::new(&refusing.answer(), PeerTransportOptions::default())
            .await
            .unwrap();
        match peer.connect().await {
            Err(PeerError::IceError { code: 487, reason }) => assert_eq!(reason, "Role Conflict"),
            other => panic!("{other:?}"),
        }
        assert_eq!(peer.ice_state(), IceState::Failed);
    });
}

/// No server at the candidate: connect gives up at its deadline with IceTimeout, having
/// retransmitted.
#[test]
fn ice_times_out_without_a_server() {
    run(|| async {
        let server = LoopbackServer::start(LoopbackOptions::default())
            .await
            .unwrap();
        let mut answer = server.answer();
        drop(server);
        // A port nobody listens on (bound then released).
        let unused = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        answer["iceCandidates"][0]["port"] = unused.local_addr().unwrap().port().into();
        drop(unused);
        let peer = PeerTransport::new(
            &answer,
            PeerTransportOptions {
                connect_timeout: Duration::from_millis(400),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(matches!(peer.connect().await, Err(PeerError::IceTimeout)));
        assert!(peer.stats().stun_sent >= 3, "{:?}", peer.stats());
    });
}

/// A server certificate that is not the advertised one fails the handshake.
#[test]
fn fingerprint_mismatch_fails_connect() {
    run(|| async {
        for profiles in [
            SrtpProfile::CHROME.to_vec(),
            vec![SrtpProfile::AeadAes128Gcm],
        ] {
            let server = LoopbackServer::start(LoopbackOptions {
                advertise_wrong_fingerprint: true,
                ..Default::default()
            })
            .await
            .unwrap();
            let peer = PeerTransport::new(&server.answer(), opts(Protocol::Udp, &profiles))
                .await
                .unwrap();
            match peer.connect().await {
                Err(PeerError::Dtls(DtlsFailure::FingerprintMismatch { got, .. })) => {
                    assert_eq!(got, server.fingerprint().value())
                }
                other => panic!("{profiles:?}: {other:?}"),
            }
            assert_eq!(peer.selected_profile(), None);
        }
    });
}

/// The server checks the client certificate against the fingerprint the peer advertised (given
/// after the peer exists, as connectWebRtcTransport does); another fingerprint is refused.
#[test]
fn server_verifies_the_advertised_client_fingerprint() {
    run(|| async {
        let server = LoopbackServer::start(LoopbackOptions::default())
            .await
            .unwrap();
        let peer = PeerTransport::new(&server.answer(), PeerTransportOptions::default())
            .await
            .unwrap();
        server.set_client_fingerprint(peer.local_fingerprint());
        peer.connect().await.unwrap();
        assert!(matches!(server.wait_dtls(WAIT).await, Some(Ok(_))));

        let server = LoopbackServer::start(LoopbackOptions::default())
            .await
            .unwrap();
        let peer = PeerTransport::new(
            &server.answer(),
            PeerTransportOptions {
                connect_timeout: Duration::from_secs(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        server.set_client_fingerprint(Fingerprint::sha256_of(b"another peer's certificate"));
        assert!(peer.connect().await.is_err());
        assert!(matches!(
            server.wait_dtls(WAIT).await,
            Some(Err(DtlsFailure::FingerprintMismatch { .. }))
        ));
    });
}

/// close_notify both ways, with both stacks.
#[test]
fn dtls_close_notify_both_ways() {
    run(|| async {
        for profiles in [
            SrtpProfile::CHROME.to_vec(),
            vec![SrtpProfile::AeadAes128Gcm],
        ] {
            let server = LoopbackServer::start(LoopbackOptions::default())
                .await
                .unwrap();
            let peer = PeerTransport::establish(&server.answer(), opts(Protocol::Udp, &profiles))
                .await
                .unwrap();
            server.close_dtls().await;
            assert_eq!(
                peer.recv(WAIT).await,
                Some(Received::DtlsClosed),
                "{profiles:?}"
            );
            assert_eq!(peer.dtls_state(), DtlsState::Closed);

            let server = LoopbackServer::start(LoopbackOptions::default())
                .await
                .unwrap();
            let peer = PeerTransport::establish(&server.answer(), opts(Protocol::Udp, &profiles))
                .await
                .unwrap();
            peer.close().await;
            assert!(server.wait_dtls_closed(WAIT).await, "{profiles:?}");
        }
    });
}

/// Lost DTLS datagrams (our first ClientHello, then the server's first Certificate) are
/// recovered by retransmission, with both stacks.
#[test]
fn dtls_survives_lost_flights() {
    run(|| async {
        for profiles in [
            SrtpProfile::CHROME.to_vec(),
            vec![SrtpProfile::AeadAes128Gcm],
        ] {
            let server = LoopbackServer::start(LoopbackOptions::default())
                .await
                .unwrap();
            let dropped = Rc::new(Cell::new((false, false)));
            let hook_dropped = dropped.clone();
            let options = PeerTransportOptions {
                drop_dtls: Some(Rc::new(move |d| {
                    let (hello, cert) = hook_dropped.get();
                    let drop_hello =
                        !hello && d.direction == DtlsDirection::Outgoing && d.has_handshake(1);
                    let drop_cert =
                        !cert && d.direction == DtlsDirection::Incoming && d.has_handshake(11);
                    hook_dropped.set((hello || drop_hello, cert || drop_cert));
                    drop_hello || drop_cert
                })),
                ..opts(Protocol::Udp, &profiles)
            };
            let peer = PeerTransport::new(&server.answer(), options).await.unwrap();
            peer.connect().await.unwrap();
            assert_eq!(dropped.get(), (true, true), "{profiles:?}");
            assert_eq!(peer.stats().dtls_dropped, 2);
            assert!(matches!(server.wait_dtls(WAIT).await, Some(Ok(_))));
        }
    });
}

/// Unencrypted media and garbage from the server are surfaced as `Other`, and counted when they
/// look like SRTP; a valid packet afterwards still gets through.
#[test]
fn undecryptable_and_garbage_packets() {
    run(|| async {
        let server = LoopbackServer::start(LoopbackOptions::default())
            .await
            .unwrap();
        let peer = PeerTransport::establish(&server.answer(), PeerTransportOptions::default())
            .await
            .unwrap();
        let plain = RtpPacketBuilder::new(5, 96, 1, 1).payload(&[1; 40]).build();
        server.send_raw(&plain).await.unwrap();
        assert_eq!(peer.recv(WAIT).await, Some(Received::Other(plain.clone())));
        assert_eq!(peer.stats().srtp_errors, 1);
        server.send_raw(&[0xff, 1, 2, 3]).await.unwrap();
        assert_eq!(
            peer.recv(WAIT).await,
            Some(Received::Other(vec![0xff, 1, 2, 3]))
        );
        server.send_rtp(&plain).await.unwrap();
        assert_eq!(peer.recv(WAIT).await, Some(Received::Rtp(plain)));

        // The other way: garbage from the peer reaches the server as it is.
        peer.send_raw(&[0xff, 9]).await.unwrap();
        assert_eq!(
            server.recv(WAIT).await,
            Some(Received::Other(vec![0xff, 9]))
        );
        assert_eq!(peer.recv(Duration::from_millis(50)).await, None);
    });
}

/// Several tasks share one transport: one sends while another receives the echo. The sender
/// keeps at most a window of packets in flight so loopback socket buffers never overflow.
#[test]
fn concurrent_send_and_receive() {
    run(|| async {
        let server = Rc::new(
            LoopbackServer::start(LoopbackOptions::default())
                .await
                .unwrap(),
        );
        let peer = Rc::new(
            PeerTransport::establish(&server.answer(), PeerTransportOptions::default())
                .await
                .unwrap(),
        );
        const N: u16 = 300;
        const WINDOW: u16 = 16;
        let echo = {
            let server = server.clone();
            glommio::spawn_local(async move {
                for _ in 0..N {
                    match server.recv(WAIT).await {
                        Some(Received::Rtp(p)) => server.send_rtp(&p).await.unwrap(),
                        other => panic!("{other:?}"),
                    }
                }
            })
        };
        let (ack_tx, mut acks) = futures::channel::mpsc::unbounded::<u16>();
        let receiver = {
            let peer = peer.clone();
            glommio::spawn_local(async move {
                let mut seqs = Vec::new();
                while seqs.len() < usize::from(N) {
                    let p = peer.recv_rtp(WAIT).await.expect("echo");
                    let seq = RtpView::parse(&p).unwrap().sequence_number;
                    seqs.push(seq);
                    let _ = ack_tx.unbounded_send(seq);
                }
                seqs
            })
        };
        for seq in 0..N {
            if seq >= WINDOW {
                futures::StreamExt::next(&mut acks).await.expect("ack");
            }
            let p = RtpPacketBuilder::new(7, 100, seq, u32::from(seq) * 3000)
                .payload(&[seq as u8; 200])
                .build();
            peer.send_rtp(&p).await.unwrap();
        }
        echo.await;
        let seqs = receiver.await;
        assert_eq!(seqs, (0..N).collect::<Vec<_>>());
        assert_eq!(peer.stats().rtp_received, u64::from(N));
    });
}
