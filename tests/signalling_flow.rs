//! The mediasoup-demo signalling flow against the real binary over real WebSockets (wss and ws):
//! join, transports, produce → newConsumer, pause/resume/close, stats, peers leaving, placement.

mod common;

use common::{fixture, join_peer, join_peer_with, run, JoinOptions, JoinedPeer, Server, WAIT};
use serde_json::{json, Value};
use shardcast_tools::protoo::{ConnectOptions, ProtooClient, ServerEvent};

/// Waits for the next `newConsumer` request, answers it `{}` and returns its data.
async fn accept_new_consumer(peer: &JoinedPeer) -> Value {
    let event = peer
        .client
        .wait_for(WAIT, |e| e.is_request("newConsumer"))
        .await
        .expect("a newConsumer request");
    let ServerEvent::Request { id, data, .. } = event else {
        unreachable!()
    };
    peer.client.respond(id, Ok(json!({})));
    data
}

async fn notification(peer: &JoinedPeer, method: &str, pred: impl Fn(&Value) -> bool) -> Value {
    peer.client
        .wait_for(WAIT, |e| e.is_notification(method) && pred(e.data()))
        .await
        .unwrap_or_else(|| panic!("no {method} notification"))
        .data()
        .clone()
}

fn ids(values: &[Value], key: &str) -> Vec<String> {
    values
        .iter()
        .map(|v| v[key].as_str().unwrap_or_default().to_string())
        .collect()
}

fn assert_ssrc(value: &Value) -> u64 {
    let ssrc = value.as_u64().expect("numeric ssrc");
    assert!((100_000_000..=999_999_999).contains(&ssrc), "ssrc {ssrc}");
    ssrc
}

#[test]
fn router_capabilities_match_the_reference_server() {
    let server = Server::start(&["--shards", "1"]);
    run(|| async {
        let a = join_peer(&server, "caps", "alice", "Alice").await;
        assert_eq!(a.router_caps, fixture("router-rtp-capabilities"));
    });
}

#[test]
fn transports_have_real_ice_and_dtls_parameters() {
    let server = Server::start(&["--shards", "1", "--no-tls"]);
    run(|| async {
        let a = join_peer(&server, "params", "alice", "Alice").await;
        let t = &a.send_transport;
        let ice = &t["iceParameters"];
        assert_eq!(ice["iceLite"], json!(true));
        for key in ["usernameFragment", "password"] {
            let s = ice[key].as_str().unwrap();
            assert_eq!(s.len(), 32, "{key}");
            assert!(s
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()));
        }
        assert_ne!(
            a.send_transport["iceParameters"]["usernameFragment"],
            a.recv_transport["iceParameters"]["usernameFragment"]
        );
        let candidates = t["iceCandidates"].as_array().unwrap();
        assert_eq!(candidates.len(), 2);
        let port = server.rtc_port();
        assert_eq!(
            candidates[0],
            json!({"foundation": "udpcandidate", "priority": 1076302079u32, "ip": "127.0.0.1",
                   "address": "127.0.0.1", "protocol": "udp", "port": port, "type": "host"})
        );
        assert_eq!(
            candidates[1],
            json!({"foundation": "tcpcandidate", "priority": 1076276479u32, "ip": "127.0.0.1",
                   "address": "127.0.0.1", "protocol": "tcp", "port": port, "type": "host",
                   "tcpType": "passive"})
        );
        let dtls = &t["dtlsParameters"];
        assert_eq!(dtls["role"], "auto");
        let fps = dtls["fingerprints"].as_array().unwrap();
        let algos: Vec<String> = ids(fps, "algorithm");
        assert_eq!(algos, ["sha-1", "sha-224", "sha-384", "sha-512", "sha-256"]);
        for (fp, bytes) in fps.iter().zip([20, 28, 48, 64, 32]) {
            let value = fp["value"].as_str().unwrap();
            let parts: Vec<&str> = value.split(':').collect();
            assert_eq!(parts.len(), bytes, "{value}");
            assert!(parts.iter().all(|p| p.len() == 2
                && p.chars()
                    .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))));
        }
        // The shard's one certificate: both transports show the same fingerprints.
        assert_eq!(
            dtls["fingerprints"],
            a.recv_transport["dtlsParameters"]["fingerprints"]
        );

        // forceTcp offers only the TCP candidate.
        let tcp = a
            .client
            .request(
                "createWebRtcTransport",
                json!({"forceTcp": true, "producing": false, "consuming": false}),
            )
            .await
            .unwrap();
        let candidates = tcp["iceCandidates"].as_array().unwrap();
        assert_eq!(candidates.len(), 1);
        assert_eq!(candidates[0]["protocol"], "tcp");

        // restartIce answers fresh credentials, as the object itself.
        let restarted = a
            .client
            .request("restartIce", json!({"transportId": a.send_transport_id}))
            .await
            .unwrap();
        assert_eq!(restarted["iceLite"], json!(true));
        assert_eq!(restarted["usernameFragment"].as_str().unwrap().len(), 32);
        assert_ne!(restarted["usernameFragment"], ice["usernameFragment"]);
        assert_ne!(restarted["password"], ice["password"]);

        // connect as the browser does; twice is an error.
        a.connect_transport(&a.send_transport_id).await.unwrap();
        assert!(a.connect_transport(&a.send_transport_id).await.is_err());
        let stats = a
            .client
            .request(
                "getTransportStats",
                json!({"transportId": a.send_transport_id}),
            )
            .await
            .unwrap();
        let stats = stats.as_array().expect("stats are an array");
        assert_eq!(stats.len(), 1);
        assert_eq!(stats[0]["type"], "webrtc-transport");
        assert_eq!(stats[0]["transportId"], json!(a.send_transport_id));
        assert_eq!(stats[0]["iceRole"], "controlled");
        assert_eq!(stats[0]["iceState"], "new");
        assert_eq!(stats[0]["dtlsState"], "connecting");
        assert_eq!(stats[0]["bytesReceived"], 0);
    });
}

/// Two peers: A produces Opus and VP8+RTX; B gets `newConsumer` requests whose parameters follow
/// mediasoup's ORTC; then pause/resume/close/stats/display name and A leaving.
#[test]
fn two_peers_produce_consume_pause_close_and_leave_over_wss() {
    let server = Server::start(&["--shards", "2"]);
    assert!(server.tls());
    run(|| async {
        let a = join_peer(&server, "room1", "alice", "Alice").await;
        let b = join_peer(&server, "room1", "bob", "Bob").await;
        assert_eq!(ids(&b.peers, "id"), ["alice"]);
        assert_eq!(b.peers[0]["displayName"], "Alice");
        assert_eq!(b.peers[0]["device"]["flag"], "chrome");
        let new_peer = notification(&a, "newPeer", |_| true).await;
        assert_eq!(
            new_peer,
            json!({"id": "bob", "displayName": "Bob",
            "device": {"flag": "chrome", "name": "Chrome", "version": "156.0.0.0"}})
        );

        a.connect_transport(&a.send_transport_id).await.unwrap();
        let audio = a.produce("produce-audio").await.unwrap();
        let audio_consumer = accept_new_consumer(&b).await;
        assert_eq!(audio_consumer["peerId"], "alice");
        assert_eq!(audio_consumer["producerId"], json!(audio));
        assert_eq!(audio_consumer["kind"], "audio");
        assert_eq!(audio_consumer["type"], "simple");
        assert_eq!(audio_consumer["producerPaused"], json!(false));
        assert_eq!(audio_consumer["appData"], json!({"peerId": "alice"}));
        let p = &audio_consumer["rtpParameters"];
        assert_eq!(p["mid"], "0");
        assert_eq!(
            p["codecs"],
            json!([{"mimeType": "audio/opus", "payloadType": 100, "clockRate": 48000, "channels": 2,
                    "parameters": {"minptime": 10, "useinbandfec": 1, "sprop-stereo": 1, "usedtx": 1},
                    "rtcpFeedback": [{"type": "nack", "parameter": ""}]}])
        );
        let ext: Vec<(u64, String)> = p["headerExtensions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["id"].as_u64().unwrap(),
                    e["uri"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            ext,
            [
                (1, "urn:ietf:params:rtp-hdrext:sdes:mid".to_string()),
                (
                    4,
                    "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time".to_string()
                ),
                (6, "urn:ietf:params:rtp-hdrext:ssrc-audio-level".to_string()),
                (
                    11,
                    "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay".to_string()
                ),
            ]
        );
        let encodings = p["encodings"].as_array().unwrap();
        assert_eq!(encodings.len(), 1);
        assert_ssrc(&encodings[0]["ssrc"]);
        assert!(encodings[0].get("rtx").is_none(), "audio has no RTX codec");
        // The first producer on a transport fixes its CNAME.
        let cname = fixture("produce-audio")["rtpParameters"]["rtcp"]["cname"].clone();
        assert_eq!(p["rtcp"], json!({"cname": cname, "reducedSize": true}));
        let score = notification(&b, "consumerScore", |d| {
            d["consumerId"] == audio_consumer["id"]
        })
        .await;
        assert!(score["score"]["score"].is_u64());
        assert!(score["score"]["producerScores"].is_array());

        // The user's VP8 + RTX example: router PTs, RTX ssrc + 1, same CNAME as the first producer.
        // (Its MID moves to "1": the audio producer on this transport has "0".)
        let mut vp8 = fixture("produce-vp8-rtx");
        vp8["transportId"] = json!(a.send_transport_id);
        vp8["rtpParameters"]["mid"] = json!("1");
        let video = a.client.request("produce", vp8).await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let video_consumer = accept_new_consumer(&b).await;
        assert_eq!(video_consumer["producerId"], json!(video));
        assert_eq!(video_consumer["type"], "simple");
        let p = &video_consumer["rtpParameters"];
        assert_eq!(p["mid"], "1");
        let codecs = p["codecs"].as_array().unwrap();
        assert_eq!(codecs.len(), 2);
        assert_eq!(codecs[0]["mimeType"], "video/VP8");
        assert_eq!(codecs[0]["payloadType"], 101);
        assert_eq!(
            codecs[0]["rtcpFeedback"],
            json!([{"type": "transport-cc", "parameter": ""}, {"type": "ccm", "parameter": "fir"},
                   {"type": "nack", "parameter": ""}, {"type": "nack", "parameter": "pli"}])
        );
        assert_eq!(codecs[1]["mimeType"], "video/rtx");
        assert_eq!(codecs[1]["payloadType"], 102);
        assert_eq!(codecs[1]["parameters"], json!({"apt": 101}));
        let encoding = &p["encodings"][0];
        let ssrc = assert_ssrc(&encoding["ssrc"]);
        assert_eq!(encoding["rtx"]["ssrc"].as_u64(), Some(ssrc + 1));
        assert_eq!(
            p["rtcp"]["cname"], cname,
            "later producers take the transport's CNAME"
        );
        let ext_ids: Vec<u64> = p["headerExtensions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ext_ids, [1, 4, 5, 8, 9, 11]);
        let video_consumer_id = video_consumer["id"].as_str().unwrap().to_string();
        notification(&b, "consumerScore", |d| {
            d["consumerId"] == json!(video_consumer_id)
        })
        .await;

        // Producer pause/resume reach the consumer's owner.
        for (method, expected) in [
            ("pauseProducer", "consumerPaused"),
            ("resumeProducer", "consumerResumed"),
        ] {
            a.client
                .request(method, json!({"producerId": video}))
                .await
                .unwrap();
            notification(&b, expected, |d| {
                d["consumerId"] == json!(video_consumer_id)
            })
            .await;
        }
        // The consumer's own controls.
        for (method, extra) in [
            ("pauseConsumer", json!({})),
            ("resumeConsumer", json!({})),
            (
                "setConsumerPreferredLayers",
                json!({"spatialLayer": 0, "temporalLayer": 0}),
            ),
            ("setConsumerPriority", json!({"priority": 2})),
            ("requestConsumerKeyFrame", json!({})),
        ] {
            let mut data = extra;
            data["consumerId"] = json!(video_consumer_id);
            b.client
                .request(method, data)
                .await
                .unwrap_or_else(|e| panic!("{method}: {e}"));
        }
        let stats = b
            .client
            .request("getConsumerStats", json!({"consumerId": video_consumer_id}))
            .await
            .unwrap();
        assert_eq!(stats[0]["type"], "outbound-rtp");
        assert_eq!(stats[0]["ssrc"].as_u64(), Some(ssrc));
        assert_eq!(stats[0]["rtxSsrc"].as_u64(), Some(ssrc + 1));
        assert_eq!(stats[0]["kind"], "video");
        assert_eq!(stats[0]["mimeType"], "video/VP8");
        let stats = a
            .client
            .request("getProducerStats", json!({"producerId": video}))
            .await
            .unwrap();
        assert!(stats.is_array());

        // Display name changes reach the others.
        a.client
            .request("changeDisplayName", json!({"displayName": "Alicia"}))
            .await
            .unwrap();
        let changed = notification(&b, "peerDisplayNameChanged", |_| true).await;
        assert_eq!(
            changed,
            json!({"peerId": "alice", "displayName": "Alicia", "oldDisplayName": "Alice"})
        );

        // closeProducer → consumerClosed for B.
        a.client
            .request("closeProducer", json!({"producerId": video}))
            .await
            .unwrap();
        notification(&b, "consumerClosed", |d| {
            d["consumerId"] == json!(video_consumer_id)
        })
        .await;
        let gone = b
            .client
            .request("getConsumerStats", json!({"consumerId": video_consumer_id}))
            .await;
        assert!(gone.is_err(), "a closed consumer is gone");

        // A leaves: peerClosed first, then consumerClosed for the audio consumer.
        a.client.close();
        notification(&b, "peerClosed", |d| d["peerId"] == "alice").await;
        notification(&b, "consumerClosed", |d| {
            d["consumerId"] == audio_consumer["id"]
        })
        .await;
        let log = b.client.events();
        let pos = |m: &str| log.iter().position(|e| e.is_notification(m)).unwrap();
        let last_closed = log
            .iter()
            .rposition(|e| e.is_notification("consumerClosed"))
            .unwrap();
        assert!(pos("peerClosed") < last_closed);
    });
}

/// The demo client connects its receive transport while our `newConsumer` request is pending:
/// the server must answer that request meanwhile (protoo requests run concurrently).
#[test]
fn requests_are_answered_while_new_consumer_is_pending() {
    let server = Server::start(&["--shards", "1", "--no-tls"]);
    run(|| async {
        let a = join_peer(&server, "conc", "alice", "Alice").await;
        a.produce("produce-audio").await.unwrap();
        let b = join_peer(&server, "conc", "bob", "Bob").await;
        let request = b
            .client
            .wait_for(WAIT, |e| e.is_request("newConsumer"))
            .await
            .expect("newConsumer");
        // newConsumer is not answered yet.
        b.connect_transport(&b.recv_transport_id).await.unwrap();
        let stats = b
            .client
            .request(
                "getTransportStats",
                json!({"transportId": b.recv_transport_id}),
            )
            .await
            .unwrap();
        assert_eq!(stats[0]["dtlsState"], "connecting");
        let id = request.request_id().unwrap();
        let consumer_id = request.data()["id"].clone();
        // Until answered the consumer stays paused server-side and no score is sent.
        assert!(b
            .client
            .events()
            .iter()
            .all(|e| !e.is_notification("consumerScore")));
        b.client.respond(id, Ok(json!({})));
        notification(&b, "consumerScore", |d| d["consumerId"] == consumer_id).await;
    });
}

/// A third peer joining late receives the others' producers, and the others learn of it.
#[test]
fn three_peers_late_joiner_gets_everything() {
    let server = Server::start(&["--shards", "1", "--no-tls"]);
    run(|| async {
        let a = join_peer(&server, "three", "alice", "Alice").await;
        let b = join_peer(&server, "three", "bob", "Bob").await;
        b.client.set_auto_respond(&["newConsumer"]);
        a.client.set_auto_respond(&["newConsumer"]);
        let a_audio = a.produce("produce-audio").await.unwrap();
        let a_video = a.produce("produce-video-simulcast").await.unwrap();
        let b_audio = b.produce("produce-audio").await.unwrap();

        let c = join_peer_with(
            &server,
            "three",
            "carol",
            "Carol",
            JoinOptions {
                rtp_capabilities: Some(fixture("join-2eww0a45")["rtpCapabilities"].clone()),
                ..Default::default()
            },
        )
        .await;
        let mut peers = ids(&c.peers, "id");
        peers.sort();
        assert_eq!(peers, ["alice", "bob"]);
        let mut producers = Vec::new();
        let mut mids = Vec::new();
        for _ in 0..3 {
            let data = accept_new_consumer(&c).await;
            producers.push(data["producerId"].as_str().unwrap().to_string());
            mids.push(data["rtpParameters"]["mid"].as_str().unwrap().to_string());
            if data["producerId"] == json!(a_video) {
                assert_eq!(data["type"], "simulcast");
                let enc = &data["rtpParameters"]["encodings"];
                assert_eq!(enc.as_array().unwrap().len(), 1);
                assert_eq!(enc[0]["scalabilityMode"], "L3T3");
                assert_eq!(enc[0]["maxBitrate"], 5000000);
                assert!(enc[0]["rtx"]["ssrc"].is_u64());
            }
        }
        producers.sort();
        let mut expected = vec![a_audio, a_video, b_audio];
        expected.sort();
        assert_eq!(producers, expected);
        mids.sort();
        assert_eq!(
            mids,
            ["0", "1", "2"],
            "MIDs are unique per receive transport"
        );
        for peer in [&a, &b] {
            notification(peer, "newPeer", |d| d["id"] == "carol").await;
        }
    });
}

/// `consumerReplicas` of the connection that creates the room makes N+1 consumers per producer;
/// the demo client's literal "undefined" means 0.
#[test]
fn consumer_replicas_and_undefined() {
    let server = Server::start(&["--shards", "1", "--no-tls"]);
    run(|| async {
        let url = format!(
            "ws://{}/?roomId=rep&peerId=alice&consumerReplicas=2",
            server.addr()
        );
        let creator = ProtooClient::connect(&url, ConnectOptions::default())
            .await
            .unwrap();
        creator
            .request("join", json!({"displayName": "A", "device": {}}))
            .await
            .unwrap();
        let t = creator
            .request(
                "createWebRtcTransport",
                json!({"producing": true, "consuming": false}),
            )
            .await
            .unwrap();
        let mut produce = fixture("produce-audio");
        produce["transportId"] = t["id"].clone();
        let b = join_peer(&server, "rep", "bob", "Bob").await;
        creator.request("produce", produce).await.unwrap();
        let mut mids = Vec::new();
        for _ in 0..3 {
            mids.push(accept_new_consumer(&b).await["rtpParameters"]["mid"].clone());
        }
        assert_eq!(mids, [json!("0"), json!("1"), json!("2")]);

        let url = format!(
            "ws://{}/?roomId=undef&peerId=x&consumerReplicas=undefined",
            server.addr()
        );
        let c = ProtooClient::connect(&url, ConnectOptions::default())
            .await
            .unwrap();
        c.wait_for(WAIT, |e| e.is_notification("mediasoup-version"))
            .await
            .expect("connection accepted with consumerReplicas=undefined");
        assert_eq!(
            c.request("join", json!({"displayName": "X", "device": {}}))
                .await
                .unwrap(),
            json!({"peers": []})
        );
    });
}

/// A peer that joins without rtpCapabilities (`?consume=false`) gets no consumers.
#[test]
fn peer_without_rtp_capabilities_gets_no_consumers() {
    let server = Server::start(&["--shards", "1", "--no-tls"]);
    run(|| async {
        let watcher = join_peer_with(
            &server,
            "noconsume",
            "viewer",
            "V",
            JoinOptions {
                rtp_capabilities: None,
                ..Default::default()
            },
        )
        .await;
        let other = join_peer(&server, "noconsume", "other", "O").await;
        let a = join_peer(&server, "noconsume", "alice", "A").await;
        a.produce("produce-audio").await.unwrap();
        // The consuming peer gets its consumer (and its score after the resume); by then the
        // viewer would have had its own request.
        let data = accept_new_consumer(&other).await;
        notification(&other, "consumerScore", |d| d["consumerId"] == data["id"]).await;
        let sent_to_watcher = watcher
            .client
            .events()
            .iter()
            .any(|e| e.is_request("newConsumer"));
        assert!(!sent_to_watcher);
    });
}

/// Rooms go to the least-loaded shard: two rooms created in a row land on different shards,
/// visible in the candidates' ports and in /metrics.
#[test]
fn rooms_are_placed_on_different_shards() {
    let server = Server::start(&["--shards", "2", "--no-tls"]);
    run(|| async {
        let r1 = join_peer(&server, "placeA", "p1", "P1").await;
        let r2 = join_peer(&server, "placeB", "p2", "P2").await;
        let port = |p: &JoinedPeer| {
            p.send_transport["iceCandidates"][0]["port"]
                .as_u64()
                .unwrap()
        };
        let base = server.rtc_port() as u64;
        let mut ports = [port(&r1), port(&r2)];
        ports.sort();
        assert_eq!(ports, [base, base + 1]);
        // Everything of one room stays on its shard.
        assert_eq!(
            port(&r1),
            r1.recv_transport["iceCandidates"][0]["port"]
                .as_u64()
                .unwrap()
        );
        let r1b = join_peer(&server, "placeA", "p3", "P3").await;
        assert_eq!(port(&r1b), port(&r1));

        let (status, _, body) = shardcast_tools::http::raw_http(
            server.addr(),
            false,
            "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
        let body = String::from_utf8(body).unwrap();
        let gauge = |name: &str| -> u64 {
            body.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} missing in {body}"))
        };
        assert_eq!(gauge("shardcast_shard_routers{shard=\"0\"}"), 1);
        assert_eq!(gauge("shardcast_shard_routers{shard=\"1\"}"), 1);
        let t0 = gauge("shardcast_shard_transports{shard=\"0\"}");
        let t1 = gauge("shardcast_shard_transports{shard=\"1\"}");
        assert_eq!(t0 + t1, 6);
        assert_eq!(gauge("shardcast_rooms"), 2);
    });
}
