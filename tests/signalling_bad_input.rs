//! Every bad input of the signalling layer, against the real binary over real WebSockets:
//! refused upgrades and plain HTTP, malformed protoo frames, requests before and after `join`,
//! unknown and foreign object ids, invalid parameters, oversized frames, duplicate peers, abrupt
//! disconnects, and a seeded garbage hammer. Each case pins the exact errorCode and a telling
//! part of errorReason, and for the important ones that the room keeps working for the others.

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use common::{
    client_rtp_capabilities, fixture, join_peer, join_peer_with, run, JoinOptions, Server, WAIT,
};
use futures::StreamExt;
use futures_rustls::rustls::pki_types::ServerName;
use futures_rustls::TlsConnector;
use serde_json::{json, Map, Value};
use shardcast_tools::protoo::{
    raw_http, ClientError, ConnectOptions, ProtooClient, RequestError, ServerEvent,
};

/// One unpinned media shard: many of these servers run at once on a 2-core CI machine, and
/// pinned they would all compete for core 0.
const WS: &[&str] = &["--shards", "1", "--no-pin", "--no-tls"];
/// The same over https/wss with the default self-signed certificate.
const WSS: &[&str] = &["--shards", "1", "--no-pin"];

const INVALID: &str = "shardcast_protoo_invalid_messages_total";
const ERRORS: &str = "shardcast_protoo_error_responses_total";
const REFUSED: &str = "shardcast_refused_upgrades_total";
const PRODUCERS: &str = "shardcast_shard_producers{shard=\"0\"}";
const CONSUMERS: &str = "shardcast_shard_consumers{shard=\"0\"}";
const TRANSPORTS: &str = "shardcast_shard_transports{shard=\"0\"}";

/// Every client → server method of the demo (protocol §2).
const METHODS: [&str; 23] = [
    "getRouterRtpCapabilities",
    "join",
    "createWebRtcTransport",
    "connectWebRtcTransport",
    "restartIce",
    "produce",
    "closeProducer",
    "pauseProducer",
    "resumeProducer",
    "pauseConsumer",
    "resumeConsumer",
    "setConsumerPreferredLayers",
    "setConsumerPriority",
    "requestConsumerKeyFrame",
    "produceData",
    "changeDisplayName",
    "getTransportStats",
    "getProducerStats",
    "getConsumerStats",
    "getDataProducerStats",
    "getDataConsumerStats",
    "applyNetworkThrottle",
    "resetNetworkThrottle",
];

// ---------------------------------------------------------------------------------------------
// Helpers

/// Runs `fut` for at most `limit`; `None` on timeout.
async fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        glommio::timer::sleep(limit).await;
        None
    })
    .await
}

/// Asserts an error response with exactly `code` whose reason contains `reason`.
#[track_caller]
fn expect_error(what: &str, result: Result<Value, RequestError>, code: u16, reason: &str) {
    match result {
        Err(RequestError::Protoo { code: c, reason: r }) if c == code && r.contains(reason) => {}
        other => panic!("{what}: expected error {code} containing {reason:?}, got {other:?}"),
    }
}

/// `/metrics` as text.
async fn metrics(server: &Server) -> String {
    let (status, _, body) = raw_http(
        server.addr(),
        server.tls(),
        "GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n",
    )
    .await
    .expect("GET /metrics");
    assert_eq!(status, 200, "GET /metrics");
    String::from_utf8(body).expect("metrics are UTF-8")
}

/// The value of the sample `name` (labels included, e.g. `x{shard="0"}`).
#[track_caller]
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in /metrics:\n{text}"))
}

async fn metric_now(server: &Server, name: &str) -> u64 {
    metric(&metrics(server).await, name)
}

/// Polls `/metrics` until every `(name, value)` holds; panics with the last text on timeout.
async fn wait_metrics(server: &Server, expected: &[(&str, u64)]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = metrics(server).await;
        if expected.iter().all(|(name, v)| metric(&text, name) == *v) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never reached {expected:?}:\n{text}"
        );
        glommio::timer::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for a notification `method` whose data satisfies `pred`; returns its data.
async fn notification(client: &ProtooClient, method: &str, pred: impl Fn(&Value) -> bool) -> Value {
    client
        .wait_for(WAIT, |e| e.is_notification(method) && pred(e.data()))
        .await
        .unwrap_or_else(|| {
            panic!(
                "no {method} notification; queued: {:?}",
                client.queued_events()
            )
        })
        .data()
        .clone()
}

/// Position in `client.events()` of the first event matching `pred`.
fn event_index(client: &ProtooClient, pred: impl Fn(&ServerEvent) -> bool) -> usize {
    client
        .events()
        .iter()
        .position(pred)
        .unwrap_or_else(|| panic!("event not logged; events: {:?}", client.events()))
}

/// Waits for the `newConsumer` request about `producer_id` (auto-answered or not); returns
/// the consumer id.
async fn new_consumer_of(client: &ProtooClient, producer_id: &str) -> String {
    let event = client
        .wait_for(WAIT, |e| {
            e.is_request("newConsumer") && e.data()["producerId"] == json!(producer_id)
        })
        .await
        .unwrap_or_else(|| panic!("no newConsumer for producer {producer_id}"));
    event.data()["id"].as_str().expect("consumer id").to_owned()
}

/// Join options that answer `newConsumer` automatically.
fn consuming() -> JoinOptions {
    JoinOptions {
        auto_respond: vec!["newConsumer"],
        ..JoinOptions::default()
    }
}

/// The `produce` data of a fixture aimed at `transport_id`.
fn produce_data(fixture_name: &str, transport_id: &str) -> Value {
    let mut data = fixture(fixture_name);
    data["transportId"] = json!(transport_id);
    data
}

fn connect_data(transport_id: &str) -> Value {
    let mut data = fixture("connect-webrtc-transport");
    data["transportId"] = json!(transport_id);
    data
}

/// A hand-written WebSocket upgrade request head.
fn upgrade_head(method: &str, target: &str, protocol: Option<&str>) -> String {
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n"
    );
    if let Some(p) = protocol {
        head.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    head.push_str("\r\n");
    head
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

// ---------------------------------------------------------------------------------------------
// A bare protoo socket

trait Io: futures::AsyncRead + futures::AsyncWrite + Unpin {}
impl<T: futures::AsyncRead + futures::AsyncWrite + Unpin> Io for T {}

/// A bare protoo WebSocket: sends frames a protoo client never would, and sees every response
/// the server sends (`ProtooClient` drops responses to ids it did not pick itself).
struct RawPeer {
    ws: WebSocketStream<Box<dyn Io>>,
    /// Every response received, in arrival order.
    responses: Vec<Value>,
    /// Server requests and notifications not taken yet.
    events: VecDeque<Value>,
    close_code: Option<u16>,
    /// A close frame arrived or the stream ended.
    closed: bool,
    ended: bool,
    next_id: u64,
}

impl RawPeer {
    async fn connect(server: &Server, room: &str, peer: &str) -> RawPeer {
        within(WAIT, Self::connect_inner(server, room, peer))
            .await
            .unwrap_or_else(|| panic!("{peer}: raw connect timed out"))
    }

    async fn connect_inner(server: &Server, room: &str, peer: &str) -> RawPeer {
        let tcp = glommio::net::TcpStream::connect(server.addr())
            .await
            .expect("tcp connect");
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = if server.tls() {
            let config = shardcast_tools::tls::client_config(true, &[]).expect("tls config");
            let name = ServerName::try_from("localhost").expect("server name");
            let tls = TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .expect("tls handshake");
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let mut request = server
            .ws_url(room, peer)
            .into_client_request()
            .expect("ws url");
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("protoo"));
        let (ws, _) = async_tungstenite::client_async(request, io)
            .await
            .expect("websocket handshake");
        RawPeer {
            ws,
            responses: Vec::new(),
            events: VecDeque::new(),
            close_code: None,
            closed: false,
            ended: false,
            next_id: 1000,
        }
    }

    async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text.to_owned()))
            .await
            .expect("send text frame");
    }

    async fn send_json(&mut self, value: &Value) {
        self.send_text(&value.to_string()).await;
    }

    async fn send_binary(&mut self, bytes: &[u8]) {
        self.ws
            .send(Message::binary(bytes.to_vec()))
            .await
            .expect("send binary frame");
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Reads one frame (until `deadline`); false on timeout or end of stream.
    async fn pump(&mut self, deadline: Instant) -> bool {
        if self.ended {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match within(left, self.ws.next()).await {
            None => false,
            Some(Some(Ok(Message::Text(text)))) => {
                let value: Value = serde_json::from_str(text.as_str())
                    .unwrap_or_else(|e| panic!("server sent non-JSON ({e}): {text}"));
                if value["response"] == json!(true) {
                    self.responses.push(value);
                } else {
                    self.events.push_back(value);
                }
                true
            }
            Some(Some(Ok(Message::Close(frame)))) => {
                self.close_code = frame.map(|f| u16::from(f.code));
                self.closed = true;
                true
            }
            Some(Some(Ok(_))) => true,
            Some(Some(Err(_)) | None) => {
                self.closed = true;
                self.ended = true;
                false
            }
        }
    }

    /// The response to `id`, waiting for it.
    async fn response(&mut self, id: u64) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(r) = self.responses.iter().find(|r| r["id"] == json!(id)) {
                return r.clone();
            }
            assert!(
                self.pump(deadline).await,
                "no response to request {id} (closed: {}, code {:?})",
                self.closed,
                self.close_code
            );
        }
    }

    /// Sends a request and returns `Ok(data)` or `Err((errorCode, errorReason))`.
    async fn request(&mut self, method: &str, data: Value) -> Result<Value, (u64, String)> {
        let id = self.fresh_id();
        self.send_json(&json!({"request": true, "id": id, "method": method, "data": data}))
            .await;
        let r = self.response(id).await;
        if r["ok"] == json!(true) {
            Ok(r["data"].clone())
        } else {
            Err((
                r["errorCode"].as_u64().expect("numeric errorCode"),
                r["errorReason"]
                    .as_str()
                    .expect("string errorReason")
                    .to_owned(),
            ))
        }
    }

    /// Takes the first server request/notification matching `pred`, waiting for it.
    async fn wait_event(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(i) = self.events.iter().position(&pred) {
                return self.events.remove(i).expect("event");
            }
            assert!(
                self.pump(deadline).await,
                "event not received; queued: {:?}",
                self.events
            );
        }
    }

    /// The demo join flow: caps, two transports, join. Returns (send, recv) transport ids.
    async fn join(&mut self, display_name: &str) -> (String, String) {
        self.request("getRouterRtpCapabilities", json!({}))
            .await
            .expect("getRouterRtpCapabilities");
        let mut ids = Vec::new();
        for producing in [true, false] {
            let t = self
                .request(
                    "createWebRtcTransport",
                    json!({"forceTcp": false, "producing": producing, "consuming": !producing}),
                )
                .await
                .expect("createWebRtcTransport");
            ids.push(t["id"].as_str().expect("transport id").to_owned());
        }
        self.request(
            "join",
            json!({
                "displayName": display_name,
                "device": {"flag": "chrome", "name": "Chrome", "version": "156.0.0.0"},
                "rtpCapabilities": client_rtp_capabilities(),
            }),
        )
        .await
        .expect("join");
        let recv = ids.pop().expect("recv transport");
        (ids.pop().expect("send transport"), recv)
    }
}

// ---------------------------------------------------------------------------------------------
// Upgrade refusals and plain HTTP

/// protoo-server's and the demo's upgrade checks, answered with the status (and reason) they use,
/// counted as refused; plain GETs answer 200/404/405; an oversized head gets 431 (or a close).
#[test]
fn upgrade_refusals_and_plain_http_get_the_right_status() {
    let server = Server::start(WS);
    run(|| async {
        let addr = server.addr();
        let refused_before = metric_now(&server, REFUSED).await;
        let long_room = "r".repeat(300);
        let long_target = format!("/?roomId={long_room}&peerId=p");
        let refusals: [(&str, &str, Option<&str>, u16, &str); 8] = [
            (
                "GET",
                "/?roomId=r&peerId=p",
                None,
                403,
                "invalid/missing Sec-WebSocket-Protocol",
            ),
            (
                "GET",
                "/?roomId=r&peerId=p",
                Some("chat"),
                403,
                "Sec-WebSocket-Protocol",
            ),
            (
                "GET",
                "/?peerId=p",
                Some("protoo"),
                400,
                "without roomId and/or peerId",
            ),
            (
                "GET",
                "/?roomId=r",
                Some("protoo"),
                400,
                "without roomId and/or peerId",
            ),
            (
                "GET",
                "/?roomId=&peerId=p",
                Some("protoo"),
                400,
                "without roomId and/or peerId",
            ),
            (
                "GET",
                "/",
                Some("protoo"),
                400,
                "without roomId and/or peerId",
            ),
            (
                "GET",
                &long_target,
                Some("protoo"),
                400,
                "at most 256 bytes",
            ),
            (
                "POST",
                "/?roomId=r&peerId=p",
                Some("protoo"),
                405,
                "Method Not Allowed",
            ),
        ];
        for (method, target, protocol, status, reason) in refusals {
            let (got, _, body) = raw_http(addr, false, &upgrade_head(method, target, protocol))
                .await
                .unwrap_or_else(|e| panic!("{method} {target} {protocol:?}: {e}"));
            let body = String::from_utf8_lossy(&body);
            assert_eq!(got, status, "{method} {target} {protocol:?}: {body}");
            assert!(body.contains(reason), "{method} {target}: body {body:?}");
        }
        // Broken WebSocket handshakes, protoo offered.
        let good = upgrade_head("GET", "/?roomId=r&peerId=p", Some("protoo"));
        let broken = [
            (
                good.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                "missing Sec-WebSocket-Key",
            ),
            (
                good.replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
                "invalid WebSocket upgrade request",
            ),
            (
                good.replace("Connection: Upgrade\r\n", ""),
                "invalid WebSocket upgrade request",
            ),
        ];
        for (head, reason) in &broken {
            let (status, _, body) = raw_http(addr, false, head).await.expect("broken upgrade");
            let body = String::from_utf8_lossy(&body);
            assert_eq!(status, 400, "{head}");
            assert!(body.contains(reason), "{body}");
        }
        assert_eq!(
            metric_now(&server, REFUSED).await - refused_before,
            (refusals.len() + broken.len()) as u64,
            "every refused upgrade is counted"
        );

        // The protoo client is refused the same way.
        let no_protocol = ConnectOptions {
            subprotocol: None,
            ..ConnectOptions::default()
        };
        match ProtooClient::connect(&server.ws_url("r", "p"), no_protocol).await {
            Err(ClientError::Rejected { status: 403, body }) => {
                assert!(body.contains("Sec-WebSocket-Protocol"), "{body}")
            }
            other => panic!("connect without protoo: {other:?}"),
        }
        let no_peer = format!("ws://{addr}/?roomId=r");
        match ProtooClient::connect(&no_peer, ConnectOptions::default()).await {
            Err(ClientError::Rejected { status: 400, body }) => {
                assert!(body.contains("roomId and/or peerId"), "{body}")
            }
            other => panic!("connect without peerId: {other:?}"),
        }

        // A complete upgrade is switched, echoing the protoo subprotocol.
        let (status, headers, _) = raw_http(
            addr,
            false,
            &upgrade_head("GET", "/?roomId=r&peerId=p", Some("protoo")),
        )
        .await
        .expect("upgrade");
        assert_eq!(status, 101);
        assert_eq!(header(&headers, "Sec-WebSocket-Protocol"), Some("protoo"));

        // Plain HTTP.
        let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        let (status, _, body) = raw_http(addr, false, &get("/health"))
            .await
            .expect("/health");
        assert_eq!((status, body.as_slice()), (200, b"ok\n".as_slice()));
        let (status, headers, body) = raw_http(addr, false, &get("/metrics"))
            .await
            .expect("/metrics");
        assert_eq!(status, 200);
        assert!(header(&headers, "Content-Type").is_some_and(|t| t.starts_with("text/plain")));
        let text = String::from_utf8(body).expect("UTF-8 metrics");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("shardcast_"), "metric line {line:?}");
        }
        for name in [INVALID, ERRORS, REFUSED, PRODUCERS, CONSUMERS, TRANSPORTS] {
            metric(&text, name);
        }
        let (status, _, _) = raw_http(addr, false, &get("/no/such/thing"))
            .await
            .expect("404");
        assert_eq!(status, 404);
        let post = "POST /metrics HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\n{}";
        let (status, _, body) = raw_http(addr, false, post).await.expect("POST");
        assert_eq!(status, 405);
        assert!(String::from_utf8_lossy(&body).contains("only GET"));
        let (status, _, _) = raw_http(addr, false, "DELETE /health HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .expect("DELETE");
        assert_eq!(status, 405);
        let (status, _, _) = raw_http(addr, false, "NOT HTTP AT ALL\r\n\r\n")
            .await
            .expect("garbage request line");
        assert_eq!(status, 400);

        // A head that reaches 16 KiB without ending: 431, after reading all of it.
        let mut exact = String::from("GET /health HTTP/1.1\r\nHost: test\r\nX-Pad: ");
        exact.push_str(&"a".repeat(16 * 1024 - exact.len()));
        let (status, _, body) = raw_http(addr, false, &exact).await.expect("16 KiB head");
        assert_eq!(status, 431, "{}", String::from_utf8_lossy(&body));
        // A complete 20 KiB head: 431, or a reset because the server stopped reading it.
        let big = format!(
            "GET /health HTTP/1.1\r\nHost: test\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(20 * 1024)
        );
        match raw_http(addr, false, &big).await {
            Ok((status, _, _)) => assert_eq!(status, 431),
            Err(ClientError::Timeout) => panic!("oversized head neither refused nor closed"),
            Err(_) => {}
        }

        // Still serving: HTTP and a full protoo join.
        let (status, _, _) = raw_http(addr, false, &get("/health"))
            .await
            .expect("/health");
        assert_eq!(status, 200);
        join_peer(&server, "after-http", "alice", "Alice").await;
    });
}

/// Junk `consumerReplicas` (the demo sends the literal `undefined`) is accepted, an absurd one
/// is capped at 16 replicas, and percent-encoded ids arrive decoded.
#[test]
fn odd_connection_parameters_are_accepted_and_bounded() {
    let server = Server::start(WS);
    run(|| async {
        // The first connection creates the room and sets its replicas: 1e12 → 16.
        let alice = join_peer(&server, "odd", "alice&consumerReplicas=1e12", "Alice").await;
        let bob = join_peer_with(
            &server,
            "odd",
            "b%C3%B6b%20%F0%9F%98%80&consumerReplicas=undefined",
            "Bob",
            consuming(),
        )
        .await;
        let new_peer = notification(&alice.client, "newPeer", |_| true).await;
        assert_eq!(new_peer["id"], json!("böb 😀"));

        let producer_id = alice.produce("produce-audio").await.expect("produce");
        let mut consumers = Vec::new();
        for _ in 0..17 {
            consumers.push(new_consumer_of(&bob.client, &producer_id).await);
        }
        let last = consumers.last().expect("consumers").clone();
        notification(&bob.client, "consumerScore", |d| {
            d["consumerId"] == json!(last)
        })
        .await;
        // An 18th replica would have reached the shard before this stats request.
        assert_eq!(metric_now(&server, CONSUMERS).await, 17, "1 + 16 replicas");

        for (i, replicas) in ["abc", "-3", "NaN", "inf", ""].into_iter().enumerate() {
            let room = format!("junk-replicas-{i}");
            let peer = format!("carol&consumerReplicas={replicas}");
            join_peer(&server, &room, &peer, "Carol").await;
        }
    });
}

/// A HEAD request gets the GET head without a body (RFC 9110 §9.3.2).
#[test]
fn head_requests_get_no_body() {
    use std::io::{Read, Write};
    let server = Server::start(WS);
    for path in ["/health", "/metrics"] {
        let mut tcp = std::net::TcpStream::connect(server.addr()).expect("connect");
        tcp.set_read_timeout(Some(WAIT)).expect("read timeout");
        write!(tcp, "HEAD {path} HTTP/1.1\r\nHost: test\r\n\r\n").expect("write");
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer).expect("read until close");
        let text = String::from_utf8_lossy(&answer);
        let (head, body) = text.split_once("\r\n\r\n").expect("a complete head");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, "", "HEAD {path} must have no body");
    }
}

// ---------------------------------------------------------------------------------------------
// protoo framing

/// Frames that are not protoo messages are dropped without an answer and counted; the
/// connection stays open and answers the next valid request. Client notifications and
/// responses to unknown ids are ignored without counting as invalid.
#[test]
fn malformed_frames_are_dropped_counted_and_the_connection_stays_usable() {
    let server = Server::start(WS);
    run(|| async {
        let mut raw = RawPeer::connect(&server, "junk", "alice").await;
        raw.wait_event(|e| e["method"] == json!("mediasoup-version"))
            .await;
        let invalid_before = metric_now(&server, INVALID).await;
        let dropped = [
            "this is not json",
            "{",
            "",
            "[]",
            "[{\"request\":true,\"id\":1,\"method\":\"getRouterRtpCapabilities\"}]",
            "42",
            "\"request\"",
            "null",
            "true",
            // No kind flag, or a false one.
            r#"{"id":1001,"method":"getRouterRtpCapabilities","data":{}}"#,
            r#"{"request":false,"id":1002,"method":"getRouterRtpCapabilities"}"#,
            // Unusable ids: string, negative, fractional, missing, null.
            r#"{"request":true,"id":"1003","method":"getRouterRtpCapabilities"}"#,
            r#"{"request":true,"id":-1004,"method":"getRouterRtpCapabilities"}"#,
            r#"{"request":true,"id":1005.5,"method":"getRouterRtpCapabilities"}"#,
            r#"{"request":true,"method":"getRouterRtpCapabilities"}"#,
            r#"{"request":true,"id":null,"method":"getRouterRtpCapabilities"}"#,
            // A notification without a method, a response with a string id.
            r#"{"notification":true,"data":{}}"#,
            r#"{"response":true,"id":"1006","ok":true}"#,
        ];
        for frame in dropped {
            raw.send_text(frame).await;
        }
        raw.send_binary(b"{\"request\":true,\"id\":1007,\"method\":\"join\"}")
            .await;
        // Valid protoo, but nothing to answer: a client notification, a response to nothing.
        raw.send_text(r#"{"notification":true,"method":"whatever","data":{"a":1}}"#)
            .await;
        raw.send_text(r#"{"response":true,"id":4242,"ok":true,"data":{}}"#)
            .await;

        let caps = raw
            .request("getRouterRtpCapabilities", json!({}))
            .await
            .expect("a valid request after the junk");
        assert!(caps["codecs"].is_array(), "{caps}");
        assert_eq!(
            raw.responses.len(),
            1,
            "only the valid request was answered: {:?}",
            raw.responses
        );
        assert!(!raw.closed);
        assert_eq!(
            metric_now(&server, INVALID).await - invalid_before,
            dropped.len() as u64 + 1,
            "each dropped text frame and the binary frame are counted"
        );
        // Still a full protoo peer.
        raw.join("Alice").await;
    });
}

/// A request with a usable id whose method is not a string gets a 400 with that id; an unknown
/// method gets protoo's 500 `unknown request.method "<m>"`, before and after join.
#[test]
fn undispatchable_requests_get_error_responses_with_their_id() {
    let server = Server::start(WS);
    run(|| async {
        let mut raw = RawPeer::connect(&server, "dispatch", "alice").await;
        let (invalid_before, errors_before) = {
            let text = metrics(&server).await;
            (metric(&text, INVALID), metric(&text, ERRORS))
        };
        let methods = [
            json!(12),
            Value::Null,
            json!({"m": 1}),
            json!(["join"]),
            json!(true),
        ];
        for (i, method) in methods.iter().enumerate() {
            let id = 5000 + i as u64;
            raw.send_json(&json!({"request": true, "id": id, "method": method, "data": {}}))
                .await;
            assert_eq!(
                raw.response(id).await,
                json!({"response": true, "id": id, "ok": false, "errorCode": 400,
                       "errorReason": "invalid request: method must be a string"}),
                "method {method}"
            );
        }
        // Without a method field at all; id 0 is a valid protoo id.
        raw.send_text(r#"{"request":true,"id":0,"data":{}}"#).await;
        assert_eq!(raw.response(0).await["errorCode"], json!(400));

        for method in ["foo", "", "GETROUTERRTPCAPABILITIES", "join "] {
            let id = raw.fresh_id();
            raw.send_json(&json!({"request": true, "id": id, "method": method}))
                .await;
            assert_eq!(
                raw.response(id).await,
                json!({"response": true, "id": id, "ok": false, "errorCode": 500,
                       "errorReason": format!("unknown request.method \"{method}\"")}),
            );
        }
        {
            let text = metrics(&server).await;
            assert_eq!(metric(&text, INVALID) - invalid_before, 6);
            assert_eq!(metric(&text, ERRORS) - errors_before, 10);
        }

        raw.join("Alice").await;
        assert_eq!(
            raw.request("foo", json!({})).await,
            Err((500, "unknown request.method \"foo\"".to_owned()))
        );
        assert!(!raw.closed);
    });
}

// ---------------------------------------------------------------------------------------------
// join

/// Every **J** method answers 500 "Peer not yet joined" before join, whatever its data, while
/// capabilities, transports (create, connect, restartIce, stats) work before join; after join the
/// pre-join transport takes a producer.
#[test]
fn requests_needing_join_are_refused_before_join() {
    let server = Server::start(WS);
    run(|| async {
        let bob = join_peer_with(&server, "early", "bob", "Bob", consuming()).await;
        let alice =
            ProtooClient::connect(&server.ws_url("early", "alice"), ConnectOptions::default())
                .await
                .expect("connect");
        alice
            .wait_for(WAIT, |e| e.is_notification("mediasoup-version"))
            .await
            .expect("mediasoup-version");

        let caps = alice
            .request("getRouterRtpCapabilities", json!({}))
            .await
            .expect("getRouterRtpCapabilities before join");
        assert_eq!(caps, fixture("router-rtp-capabilities"));
        let transport = alice
            .request(
                "createWebRtcTransport",
                json!({"forceTcp": false, "producing": true, "consuming": false}),
            )
            .await
            .expect("createWebRtcTransport before join");
        let tid = transport["id"].as_str().expect("transport id").to_owned();
        assert_eq!(
            alice
                .request("connectWebRtcTransport", connect_data(&tid))
                .await,
            Ok(json!({}))
        );
        let ice = alice
            .request("restartIce", json!({"transportId": tid}))
            .await
            .expect("restartIce before join");
        assert!(ice["usernameFragment"].is_string(), "{ice}");
        let stats = alice
            .request("getTransportStats", json!({"transportId": tid}))
            .await
            .expect("getTransportStats before join");
        assert!(stats.is_array(), "{stats}");

        let needs_join = [
            ("produce", produce_data("produce-audio", &tid)),
            ("closeProducer", json!({"producerId": "x"})),
            ("pauseProducer", json!({"producerId": "x"})),
            ("resumeProducer", json!({"producerId": "x"})),
            ("pauseConsumer", json!({"consumerId": "x"})),
            ("resumeConsumer", json!({"consumerId": "x"})),
            (
                "setConsumerPreferredLayers",
                json!({"consumerId": "x", "spatialLayer": 0}),
            ),
            (
                "setConsumerPriority",
                json!({"consumerId": "x", "priority": 1}),
            ),
            ("requestConsumerKeyFrame", json!({"consumerId": "x"})),
            ("changeDisplayName", json!({"displayName": "Eve"})),
            ("produceData", fixture("produce-data-chat")),
            ("produce", json!({})),
            ("changeDisplayName", json!(42)),
        ];
        for (method, data) in needs_join {
            match alice.request(method, data).await {
                Err(RequestError::Protoo { code: 500, reason })
                    if reason == "Peer not yet joined" => {}
                other => panic!("{method} before join: {other:?}"),
            }
        }

        alice
            .request(
                "join",
                json!({"displayName": "Alice", "rtpCapabilities": client_rtp_capabilities()}),
            )
            .await
            .expect("join");
        let producer = alice
            .request("produce", produce_data("produce-audio", &tid))
            .await
            .expect("produce after join on the pre-join transport");
        let producer_id = producer["id"].as_str().expect("producer id");
        // The refused changeDisplayName never reached bob; the join did.
        let new_peer = notification(&bob.client, "newPeer", |d| d["id"] == json!("alice")).await;
        assert_eq!(new_peer["displayName"], json!("Alice"));
        new_consumer_of(&bob.client, producer_id).await;
        assert!(!bob
            .client
            .events()
            .iter()
            .any(|e| e.is_notification("peerDisplayNameChanged")));
    });
}

/// A second `join` on the same connection is refused and changes nothing for the others.
#[test]
fn joining_twice_is_refused() {
    let server = Server::start(WS);
    run(|| async {
        let bob = join_peer(&server, "twice", "bob", "Bob").await;
        let alice = join_peer(&server, "twice", "alice", "Alice").await;
        let again = alice
            .client
            .request(
                "join",
                json!({"displayName": "Alice 2", "rtpCapabilities": client_rtp_capabilities()}),
            )
            .await;
        expect_error("second join", again, 500, "Peer already joined");
        // Exactly one newPeer reached bob (the rename below is ordered after any stray one).
        alice
            .client
            .request("changeDisplayName", json!({"displayName": "Alice B"}))
            .await
            .expect("changeDisplayName");
        let renamed = notification(&bob.client, "peerDisplayNameChanged", |_| true).await;
        assert_eq!(renamed["oldDisplayName"], json!("Alice"));
        let new_peers = bob
            .client
            .events()
            .iter()
            .filter(|e| e.is_notification("newPeer"))
            .count();
        assert_eq!(new_peers, 1);

        // A join refused for its data does not count as joined: a valid one follows.
        let carol =
            ProtooClient::connect(&server.ws_url("twice", "carol"), ConnectOptions::default())
                .await
                .expect("connect");
        for caps in [
            json!({"codecs": 5}),
            json!("caps"),
            json!({"codecs": [{"kind": "audio"}]}),
        ] {
            let result = carol
                .request(
                    "join",
                    json!({"displayName": "Carol", "rtpCapabilities": caps}),
                )
                .await;
            expect_error(
                "join with bad rtpCapabilities",
                result,
                500,
                "invalid RtpCapabilities",
            );
        }
        let joined = carol
            .request(
                "join",
                json!({"displayName": "Carol", "rtpCapabilities": client_rtp_capabilities()}),
            )
            .await
            .expect("valid join after refused ones");
        assert_eq!(joined["peers"].as_array().map(Vec::len), Some(2));
        notification(&bob.client, "newPeer", |d| d["id"] == json!("carol")).await;
    });
}

// ---------------------------------------------------------------------------------------------
// Object ids

/// Unknown ids answer 500 `<object> with id "<id>" not found`; so do another peer's real
/// transport, producer and consumer ids, which stay untouched.
#[test]
fn unknown_and_foreign_object_ids_are_not_found() {
    let server = Server::start(WS);
    run(|| async {
        let alice = join_peer(&server, "ids", "alice", "Alice").await;
        let producer_id = alice.produce("produce-audio").await.expect("produce");
        let bob = join_peer_with(&server, "ids", "bob", "Bob", consuming()).await;
        let consumer_id = new_consumer_of(&bob.client, &producer_id).await;

        let not_found = |what: &str, id: &str| format!("{what} with id \"{id}\" not found");
        let by_id = |key: &str, id: &str| json!({ key: id });
        for id in ["x", "", "00000000-0000-0000-0000-000000000000"] {
            let t = |m: &str| {
                (
                    m.to_owned(),
                    by_id("transportId", id),
                    not_found("transport", id),
                )
            };
            let p = |m: &str| {
                (
                    m.to_owned(),
                    by_id("producerId", id),
                    not_found("producer", id),
                )
            };
            let c = |m: &str| {
                (
                    m.to_owned(),
                    by_id("consumerId", id),
                    not_found("consumer", id),
                )
            };
            let produce = produce_data("produce-audio", id);
            let mut layers = by_id("consumerId", id);
            layers["spatialLayer"] = json!(0);
            let mut priority = by_id("consumerId", id);
            priority["priority"] = json!(1);
            let cases = [
                (
                    "connectWebRtcTransport".to_owned(),
                    connect_data(id),
                    not_found("transport", id),
                ),
                t("restartIce"),
                t("getTransportStats"),
                ("produce".to_owned(), produce, not_found("transport", id)),
                p("closeProducer"),
                p("pauseProducer"),
                p("resumeProducer"),
                p("getProducerStats"),
                c("pauseConsumer"),
                c("resumeConsumer"),
                c("requestConsumerKeyFrame"),
                c("getConsumerStats"),
                (
                    "setConsumerPreferredLayers".to_owned(),
                    layers,
                    not_found("consumer", id),
                ),
                (
                    "setConsumerPriority".to_owned(),
                    priority,
                    not_found("consumer", id),
                ),
                (
                    "getDataProducerStats".to_owned(),
                    by_id("dataProducerId", id),
                    not_found("dataProducer", id),
                ),
                (
                    "getDataConsumerStats".to_owned(),
                    by_id("dataConsumerId", id),
                    not_found("dataConsumer", id),
                ),
            ];
            for (method, data, reason) in cases {
                let result = bob.client.request(&method, data).await;
                match result {
                    Err(RequestError::Protoo {
                        code: 500,
                        reason: r,
                    }) if r == reason => {}
                    other => {
                        panic!("{method} with id {id:?}: expected 500 {reason:?}, got {other:?}")
                    }
                }
            }
        }

        // Bob on alice's transport and producer.
        let send = &alice.send_transport_id;
        let foreign_transport = not_found("transport", send);
        let foreign_producer = not_found("producer", &producer_id);
        let bob_cases = [
            (
                "connectWebRtcTransport",
                connect_data(send),
                &foreign_transport,
            ),
            (
                "restartIce",
                json!({"transportId": send}),
                &foreign_transport,
            ),
            (
                "getTransportStats",
                json!({"transportId": send}),
                &foreign_transport,
            ),
            (
                "produce",
                produce_data("produce-audio", send),
                &foreign_transport,
            ),
            (
                "closeProducer",
                json!({"producerId": producer_id}),
                &foreign_producer,
            ),
            (
                "pauseProducer",
                json!({"producerId": producer_id}),
                &foreign_producer,
            ),
            (
                "resumeProducer",
                json!({"producerId": producer_id}),
                &foreign_producer,
            ),
            (
                "getProducerStats",
                json!({"producerId": producer_id}),
                &foreign_producer,
            ),
        ];
        for (method, data, reason) in bob_cases {
            let result = bob.client.request(method, data).await;
            expect_error(
                &format!("bob {method} on alice's object"),
                result,
                500,
                reason,
            );
        }
        // Alice on bob's consumer.
        let foreign_consumer = not_found("consumer", &consumer_id);
        let alice_cases = [
            ("pauseConsumer", json!({"consumerId": consumer_id})),
            ("resumeConsumer", json!({"consumerId": consumer_id})),
            (
                "requestConsumerKeyFrame",
                json!({"consumerId": consumer_id}),
            ),
            (
                "setConsumerPreferredLayers",
                json!({"consumerId": consumer_id, "spatialLayer": 0}),
            ),
            (
                "setConsumerPriority",
                json!({"consumerId": consumer_id, "priority": 1}),
            ),
            ("getConsumerStats", json!({"consumerId": consumer_id})),
        ];
        for (method, data) in alice_cases {
            let result = alice.client.request(method, data).await;
            expect_error(
                &format!("alice {method} on bob's consumer"),
                result,
                500,
                &foreign_consumer,
            );
        }
        // Without a secret configured, the throttle is refused whatever is sent.
        let throttle = alice
            .client
            .request(
                "applyNetworkThrottle",
                json!({"secret": "s3cret", "uplink": 100}),
            )
            .await;
        expect_error(
            "throttle without a configured secret",
            throttle,
            403,
            "NOT allowed",
        );

        // The owners' objects are intact: bob's connect did not consume alice's transport, his
        // close/pause did not reach the producer, and alice's pause does.
        assert_eq!(alice.connect_transport(send).await, Ok(json!({})));
        assert!(alice
            .client
            .request("getProducerStats", json!({"producerId": producer_id}))
            .await
            .expect("own producer stats")
            .is_array());
        assert_eq!(
            bob.client
                .request("pauseConsumer", json!({"consumerId": consumer_id}))
                .await,
            Ok(json!({}))
        );
        assert!(bob
            .client
            .request("getConsumerStats", json!({"consumerId": consumer_id}))
            .await
            .expect("own consumer stats")
            .is_array());
        assert!(!bob.client.events().iter().any(|e| {
            e.is_notification("consumerClosed") || e.is_notification("consumerPaused")
        }));
        alice
            .client
            .request("pauseProducer", json!({"producerId": producer_id}))
            .await
            .expect("own pauseProducer");
        notification(&bob.client, "consumerPaused", |d| {
            d["consumerId"] == json!(consumer_id)
        })
        .await;
    });
}

// ---------------------------------------------------------------------------------------------
// Parameters

/// connectWebRtcTransport validates its input; a refused connect does not use up the transport,
/// and a second successful one is an error as in mediasoup.
#[test]
fn connect_webrtc_transport_rejects_bad_input() {
    let server = Server::start(WS);
    run(|| async {
        let alice = join_peer(&server, "connect", "alice", "Alice").await;
        let tid = alice.send_transport_id.clone();
        let fingerprint =
            fixture("connect-webrtc-transport")["dtlsParameters"]["fingerprints"][0].clone();
        let with_dtls = |dtls: Value| json!({"transportId": tid, "dtlsParameters": dtls});
        let good_dtls = json!({"role": "client", "fingerprints": [fingerprint]});
        let md5 = json!([{"algorithm": "md5", "value": "AB:CD"}]);
        let cases = [
            (
                "no transportId",
                json!({"dtlsParameters": good_dtls}),
                500,
                "missing or invalid \"transportId\"",
            ),
            (
                "numeric transportId",
                json!({"transportId": 42, "dtlsParameters": good_dtls}),
                500,
                "missing or invalid \"transportId\"",
            ),
            (
                "no dtlsParameters",
                json!({"transportId": tid}),
                500,
                "missing \"dtlsParameters\"",
            ),
            (
                "dtlsParameters not an object",
                with_dtls(json!("client")),
                500,
                "invalid dtlsParameters",
            ),
            (
                "no fingerprints",
                with_dtls(json!({"role": "client"})),
                500,
                "invalid dtlsParameters: missing field `fingerprints`",
            ),
            (
                "empty fingerprints",
                with_dtls(json!({"role": "client", "fingerprints": []})),
                500,
                "empty fingerprints",
            ),
            (
                "role bogus",
                with_dtls(json!({"role": "bogus", "fingerprints": [fingerprint]})),
                500,
                "unknown variant `bogus`",
            ),
            (
                "unknown algorithm",
                with_dtls(json!({"role": "client", "fingerprints": md5})),
                500,
                "unsupported fingerprint algorithm \"md5\"",
            ),
            (
                "fingerprint without value",
                with_dtls(json!({"role": "client", "fingerprints": [{"algorithm": "sha-256"}]})),
                500,
                "missing field `value`",
            ),
        ];
        for (what, data, code, reason) in cases {
            let result = alice.client.request("connectWebRtcTransport", data).await;
            expect_error(what, result, code, reason);
        }
        assert_eq!(alice.connect_transport(&tid).await, Ok(json!({})));
        let again = alice.connect_transport(&tid).await;
        expect_error("second connect", again, 500, "connect() already called");
        // Other requests on the transport still work.
        assert!(alice
            .client
            .request("getTransportStats", json!({"transportId": tid}))
            .await
            .expect("stats")
            .is_array());
        expect_error(
            "restartIce without transportId",
            alice.client.request("restartIce", json!({})).await,
            500,
            "missing or invalid \"transportId\"",
        );
        expect_error(
            "getTransportStats with a numeric transportId",
            alice
                .client
                .request("getTransportStats", json!({"transportId": 7}))
                .await,
            500,
            "missing or invalid \"transportId\"",
        );
    });
}

/// produce validates kind, rtpParameters and appData with a clear reason; none of the refused
/// attempts leaves a producer behind, and the room keeps working.
#[test]
fn produce_rejects_bad_rtp_parameters_and_the_room_keeps_working() {
    let server = Server::start(WS);
    run(|| async {
        let alice = join_peer(&server, "produce", "alice", "Alice").await;
        let bob = join_peer_with(&server, "produce", "bob", "Bob", consuming()).await;
        let base = produce_data("produce-vp8-rtx", &alice.send_transport_id);
        let with = |edit: &dyn Fn(&mut Value)| {
            let mut data = base.clone();
            edit(&mut data);
            data
        };
        let cases: Vec<(&str, Value, u16, &str)> = vec![
            (
                "kind data",
                with(&|d| d["kind"] = json!("data")),
                500,
                "invalid kind (must be audio or video)",
            ),
            (
                "kind missing",
                with(&|d| {
                    d.as_object_mut().unwrap().remove("kind");
                }),
                500,
                "invalid kind",
            ),
            (
                "kind a number",
                with(&|d| d["kind"] = json!(1)),
                500,
                "invalid kind",
            ),
            (
                "kind audio, VP8 codec",
                with(&|d| d["kind"] = json!("audio")),
                500,
                "codec video/VP8 does not match kind",
            ),
            (
                "no rtpParameters",
                with(&|d| {
                    d.as_object_mut().unwrap().remove("rtpParameters");
                }),
                500,
                "missing \"rtpParameters\"",
            ),
            (
                "rtpParameters a string",
                with(&|d| d["rtpParameters"] = json!("x")),
                500,
                "invalid RtpParameters",
            ),
            (
                "empty codecs",
                with(&|d| d["rtpParameters"]["codecs"] = json!([])),
                500,
                "invalid RtpParameters: empty codecs",
            ),
            (
                "codecs missing",
                with(&|d| {
                    d["rtpParameters"].as_object_mut().unwrap().remove("codecs");
                }),
                500,
                "invalid RtpParameters: missing codecs",
            ),
            (
                "unsupported codec",
                with(&|d| d["rtpParameters"]["codecs"][0]["mimeType"] = json!("video/FOO")),
                500,
                "unsupported codec [mimeType:video/FOO, payloadType:96]",
            ),
            (
                "payloadType 300",
                with(&|d| d["rtpParameters"]["codecs"][0]["payloadType"] = json!(300)),
                500,
                "invalid codecs[0].payloadType (expected an integer in 0..=255, got 300)",
            ),
            (
                "RTX apt pointing nowhere",
                with(&|d| d["rtpParameters"]["codecs"][1]["parameters"]["apt"] = json!(99)),
                500,
                "missing media codec found for RTX PT 97",
            ),
            (
                "appData a string",
                with(&|d| d["appData"] = json!("x")),
                500,
                "appData must be an object",
            ),
            (
                "appData an array",
                with(&|d| d["appData"] = json!([1])),
                500,
                "appData must be an object",
            ),
            (
                "no transportId",
                with(&|d| {
                    d.as_object_mut().unwrap().remove("transportId");
                }),
                500,
                "missing or invalid \"transportId\"",
            ),
        ];
        for (what, data, code, reason) in cases {
            let result = alice.client.request("produce", data).await;
            expect_error(what, result, code, reason);
        }
        assert_eq!(
            metric_now(&server, PRODUCERS).await,
            0,
            "no refused producer exists"
        );

        // The room still works: a valid produce reaches bob as his first newConsumer.
        let producer_id = alice
            .produce("produce-vp8-rtx")
            .await
            .expect("valid produce");
        let first = bob
            .client
            .wait_for(WAIT, |e| e.is_request("newConsumer"))
            .await
            .expect("newConsumer");
        assert_eq!(first.data()["producerId"], json!(producer_id));
        assert_eq!(first.data()["appData"], json!({"peerId": "alice"}));
        wait_metrics(&server, &[(PRODUCERS, 1), (CONSUMERS, 1)]).await;
    });
}

/// setConsumerPreferredLayers needs a non-negative integer spatialLayer (temporalLayer optional);
/// setConsumerPriority refuses priorities below 1 as mediasoup does.
#[test]
fn consumer_layers_and_priority_are_validated() {
    let server = Server::start(WS);
    run(|| async {
        let alice = join_peer(&server, "layers", "alice", "Alice").await;
        let producer_id = alice
            .produce("produce-video-simulcast")
            .await
            .expect("produce");
        let bob = join_peer_with(&server, "layers", "bob", "Bob", consuming()).await;
        let cid = new_consumer_of(&bob.client, &producer_id).await;
        let layer_cases = [
            (
                json!({"consumerId": cid}),
                "missing or invalid \"spatialLayer\"",
            ),
            (
                json!({"consumerId": cid, "spatialLayer": -1}),
                "missing or invalid \"spatialLayer\"",
            ),
            (
                json!({"consumerId": cid, "spatialLayer": "1"}),
                "missing or invalid \"spatialLayer\"",
            ),
            (
                json!({"consumerId": cid, "spatialLayer": 1.5}),
                "missing or invalid \"spatialLayer\"",
            ),
            (
                json!({"consumerId": cid, "spatialLayer": 1, "temporalLayer": -1}),
                "invalid \"temporalLayer\"",
            ),
            (
                json!({"spatialLayer": 1}),
                "missing or invalid \"consumerId\"",
            ),
        ];
        for (data, reason) in layer_cases {
            let what = format!("setConsumerPreferredLayers {data}");
            let result = bob.client.request("setConsumerPreferredLayers", data).await;
            expect_error(&what, result, 500, reason);
        }
        let priority_cases = [
            (
                json!({"consumerId": cid, "priority": 0}),
                500,
                "wrong priority (must be higher than 0)",
            ),
            (
                json!({"consumerId": cid, "priority": -3}),
                500,
                "wrong priority",
            ),
            (
                json!({"consumerId": cid, "priority": 0.5}),
                500,
                "wrong priority",
            ),
            (
                json!({"consumerId": cid}),
                500,
                "missing or invalid \"priority\"",
            ),
            (
                json!({"consumerId": cid, "priority": "high"}),
                500,
                "missing or invalid \"priority\"",
            ),
        ];
        for (data, code, reason) in priority_cases {
            let what = format!("setConsumerPriority {data}");
            let result = bob.client.request("setConsumerPriority", data).await;
            expect_error(&what, result, code, reason);
        }
        // Valid values (clamped above the maximum) are accepted on the same consumer.
        for data in [
            json!({"consumerId": cid, "spatialLayer": 1}),
            json!({"consumerId": cid, "spatialLayer": 99, "temporalLayer": 99}),
            json!({"consumerId": cid, "spatialLayer": 0, "temporalLayer": null}),
        ] {
            let result = bob
                .client
                .request("setConsumerPreferredLayers", data.clone())
                .await;
            assert_eq!(result, Ok(json!({})), "{data}");
        }
        for priority in [1, 2, 255, 1000] {
            let result = bob
                .client
                .request(
                    "setConsumerPriority",
                    json!({"consumerId": cid, "priority": priority}),
                )
                .await;
            assert_eq!(result, Ok(json!({})), "priority {priority}");
        }
    });
}

/// The throttle is 403 without the right secret and a clear "not supported yet" 500 with it;
/// produceData after join is "not supported yet"; data object stats are not found.
#[test]
fn network_throttle_and_data_channels_answer_clear_errors() {
    let server = Server::start_with_env(WS, &[("NETWORK_THROTTLE_SECRET", "s3cret")]);
    run(|| async {
        let alice = join_peer_with(
            &server,
            "throttle",
            "alice",
            "Alice",
            JoinOptions {
                sctp: true,
                ..JoinOptions::default()
            },
        )
        .await;
        for method in ["applyNetworkThrottle", "resetNetworkThrottle"] {
            for data in [
                json!({}),
                json!({"secret": "wrong", "uplink": 100}),
                json!({"secret": "S3CRET"}),
                json!({"secret": 42}),
                json!({"secret": null}),
                json!("s3cret"),
            ] {
                let what = format!("{method} {data}");
                let result = alice.client.request(method, data).await;
                expect_error(&what, result, 403, "operation NOT allowed");
            }
            let right = json!({"secret": "s3cret", "uplink": 100000, "downlink": 100000,
                               "rtt": 10, "packetLoss": 0});
            let result = alice.client.request(method, right).await;
            expect_error(
                &format!("{method} with the secret"),
                result,
                500,
                &format!("{method} is not supported yet"),
            );
        }

        let mut chat = fixture("produce-data-chat");
        chat["transportId"] = json!(alice.send_transport_id);
        let result = alice.client.request("produceData", chat).await;
        expect_error(
            "produceData after join",
            result,
            500,
            "produceData is not supported yet",
        );
        for (method, key, what) in [
            ("getDataProducerStats", "dataProducerId", "dataProducer"),
            ("getDataConsumerStats", "dataConsumerId", "dataConsumer"),
        ] {
            let result = alice.client.request(method, json!({ key: "nope" })).await;
            expect_error(
                method,
                result,
                500,
                &format!("{what} with id \"nope\" not found"),
            );
        }
        // Still a working peer.
        alice.produce("produce-audio").await.expect("produce");
    });
}

// ---------------------------------------------------------------------------------------------
// Connection-level abuse

/// A text frame above the demo's 960000-byte cap closes that connection (1009 when the close
/// frame gets through); a frame just under the cap is served. The room survives.
#[test]
fn oversized_frame_closes_only_that_connection() {
    let server = Server::start(WS);
    run(|| async {
        let alice = join_peer(&server, "big", "alice", "Alice").await;
        let bob = join_peer(&server, "big", "bob", "Bob").await;

        // Just under the cap: answered.
        let pad = "a".repeat(959_000);
        let caps = bob
            .client
            .request("getRouterRtpCapabilities", json!({"pad": pad}))
            .await
            .expect("a request just under the cap");
        assert!(caps["codecs"].is_array());

        let mut big = String::from(
            r#"{"request":true,"id":1,"method":"getRouterRtpCapabilities","data":{"pad":""#,
        );
        big.push_str(&"a".repeat(1_000_000));
        big.push_str(r#""}}"#);
        alice.client.send_text(&big);
        assert!(alice.client.wait_closed(WAIT).await, "alice not closed");
        assert!(
            matches!(alice.client.close_code(), None | Some(1009)),
            "close code {:?}",
            alice.client.close_code()
        );

        notification(&bob.client, "peerClosed", |d| d["peerId"] == json!("alice")).await;
        let stats = bob
            .client
            .request(
                "getTransportStats",
                json!({"transportId": bob.send_transport_id}),
            )
            .await
            .expect("bob still served");
        assert!(stats.is_array());
        let carol = join_peer(&server, "big", "carol", "Carol").await;
        let peers: Vec<&Value> = carol.peers.iter().map(|p| &p["id"]).collect();
        assert_eq!(peers, [&json!("bob")]);
        notification(&bob.client, "newPeer", |d| d["id"] == json!("carol")).await;
        wait_metrics(&server, &[(TRANSPORTS, 4)]).await;
    });
}

/// A second connection with the same roomId+peerId closes the first with 4000; the others see
/// peerClosed (and consumerClosed for its producer) before newPeer of the new connection, and
/// the room keeps working.
#[test]
fn duplicate_peer_id_replaces_the_old_connection() {
    let server = Server::start(WS);
    run(|| async {
        let carol = join_peer_with(&server, "dup", "carol", "Carol", consuming()).await;
        let old = join_peer(&server, "dup", "alice", "Alice").await;
        let old_producer = old.produce("produce-audio").await.expect("produce");
        let carol_consumer = new_consumer_of(&carol.client, &old_producer).await;
        notification(&carol.client, "newPeer", |d| d["id"] == json!("alice")).await;

        let new = join_peer(&server, "dup", "alice", "Alice again").await;
        assert!(
            old.client.wait_closed(WAIT).await,
            "old connection still open"
        );
        assert_eq!(old.client.close_code(), Some(4000));
        let peers: Vec<&Value> = new.peers.iter().map(|p| &p["id"]).collect();
        assert_eq!(
            peers,
            [&json!("carol")],
            "the old connection is gone from the room"
        );

        notification(&carol.client, "peerClosed", |d| {
            d["peerId"] == json!("alice")
        })
        .await;
        notification(&carol.client, "consumerClosed", |d| {
            d["consumerId"] == json!(carol_consumer)
        })
        .await;
        notification(&carol.client, "newPeer", |d| {
            d["id"] == json!("alice") && d["displayName"] == json!("Alice again")
        })
        .await;
        let closed_at = event_index(&carol.client, |e| {
            e.is_notification("peerClosed") && e.data()["peerId"] == json!("alice")
        });
        let new_peer_at = event_index(&carol.client, |e| {
            e.is_notification("newPeer") && e.data()["displayName"] == json!("Alice again")
        });
        assert!(
            closed_at < new_peer_at,
            "peerClosed must precede the new newPeer"
        );

        // Old transports and producer are gone; the new connection works.
        wait_metrics(&server, &[(TRANSPORTS, 4), (PRODUCERS, 0), (CONSUMERS, 0)]).await;
        let producer = new.produce("produce-audio").await.expect("produce again");
        new_consumer_of(&carol.client, &producer).await;
        assert_eq!(
            new.connect_transport(&new.send_transport_id).await,
            Ok(json!({}))
        );

        // Alone in its room (the demo loses the room here): the new connection still works.
        let solo_old = join_peer(&server, "solo", "dave", "Dave").await;
        solo_old.produce("produce-audio").await.expect("produce");
        let solo_new = join_peer(&server, "solo", "dave", "Dave").await;
        assert!(solo_old.client.wait_closed(WAIT).await);
        assert_eq!(solo_old.client.close_code(), Some(4000));
        assert!(solo_new.peers.is_empty());
        solo_new
            .produce("produce-audio")
            .await
            .expect("produce in the kept room");
        assert_eq!(metric_now(&server, "shardcast_rooms").await, 2);
    });
}

/// Up to 64 invalid messages are tolerated; the 65th closes the connection with 1008.
#[test]
fn too_many_invalid_messages_close_with_1008() {
    let server = Server::start(WS);
    run(|| async {
        let bob = join_peer(&server, "spam", "bob", "Bob").await;
        let alice = join_peer(&server, "spam", "alice", "Alice").await;
        let junk = [
            "junk",
            "[]",
            r#"{"request":true,"id":"1","method":"join"}"#,
            r#"{"request":true,"id":3,"method":5}"#,
        ];
        for i in 0..64 {
            alice.client.send_text(junk[i % junk.len()]);
        }
        let caps = alice
            .client
            .request("getRouterRtpCapabilities", json!({}))
            .await
            .expect("still served after 64 invalid messages");
        assert!(caps["codecs"].is_array());
        assert!(!alice.client.closed());

        alice.client.send_text("one too many");
        assert!(alice.client.wait_closed(WAIT).await, "not closed after 65");
        assert_eq!(alice.client.close_code(), Some(1008));
        notification(&bob.client, "peerClosed", |d| d["peerId"] == json!("alice")).await;
        assert!(bob
            .client
            .request(
                "getTransportStats",
                json!({"transportId": bob.recv_transport_id})
            )
            .await
            .is_ok());
    });
}

/// A producer's peer vanishing without a close frame: the consumer's owner gets peerClosed then
/// consumerClosed, and the shard's producer/consumer counts return to what they were.
#[test]
fn abrupt_disconnect_after_producing_cleans_up() {
    let server = Server::start(WS);
    run(|| async {
        let bob = join_peer_with(&server, "abort", "bob", "Bob", consuming()).await;
        let bob_producer = bob.produce("produce-audio").await.expect("bob produce");
        let (base_producers, base_consumers) = (1, 0);
        wait_metrics(
            &server,
            &[(PRODUCERS, base_producers), (CONSUMERS, base_consumers)],
        )
        .await;

        // Alice consumes bob's producer and produces one bob consumes.
        let alice = join_peer_with(&server, "abort", "alice", "Alice", consuming()).await;
        new_consumer_of(&alice.client, &bob_producer).await;
        let producer_id = alice
            .produce("produce-vp8-rtx")
            .await
            .expect("alice produce");
        let consumer_id = new_consumer_of(&bob.client, &producer_id).await;
        notification(&bob.client, "consumerScore", |d| {
            d["consumerId"] == json!(consumer_id)
        })
        .await;
        wait_metrics(&server, &[(PRODUCERS, 2), (CONSUMERS, 2), (TRANSPORTS, 4)]).await;

        alice.client.abort();
        notification(&bob.client, "peerClosed", |d| d["peerId"] == json!("alice")).await;
        notification(&bob.client, "consumerClosed", |d| {
            d["consumerId"] == json!(consumer_id)
        })
        .await;
        let closed_at = event_index(&bob.client, |e| e.is_notification("peerClosed"));
        let consumer_closed_at = event_index(&bob.client, |e| e.is_notification("consumerClosed"));
        assert!(
            closed_at < consumer_closed_at,
            "peerClosed must precede consumerClosed"
        );
        wait_metrics(
            &server,
            &[
                (PRODUCERS, base_producers),
                (CONSUMERS, base_consumers),
                (TRANSPORTS, 2),
            ],
        )
        .await;

        // Bob's own producer is untouched and a newcomer consumes it.
        let carol = join_peer_with(&server, "abort", "carol", "Carol", consuming()).await;
        new_consumer_of(&carol.client, &bob_producer).await;
    });
}

// ---------------------------------------------------------------------------------------------
// Hammer

/// xorshift64: a fixed seed gives the same frames on every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Methods whose data goes through the deepest validation.
const DEEP_METHODS: [&str; 5] = [
    "produce",
    "connectWebRtcTransport",
    "join",
    "setConsumerPreferredLayers",
    "setConsumerPriority",
];

const FIELDS: [&str; 26] = [
    "transportId",
    "producerId",
    "consumerId",
    "dataProducerId",
    "dataConsumerId",
    "kind",
    "rtpParameters",
    "dtlsParameters",
    "spatialLayer",
    "temporalLayer",
    "priority",
    "displayName",
    "device",
    "rtpCapabilities",
    "sctpCapabilities",
    "forceTcp",
    "producing",
    "consuming",
    "secret",
    "uplink",
    "downlink",
    "rtt",
    "packetLoss",
    "appData",
    "sctpStreamParameters",
    "label",
];

const WORDS: [&str; 12] = [
    "audio",
    "video",
    "client",
    "server",
    "auto",
    "sha-256",
    "video/VP8",
    "audio/opus",
    "video/rtx",
    "bogus",
    "s3cret",
    "\u{0}\u{1F600}\"\\",
];

fn random_string(rng: &mut XorShift) -> String {
    const CHARS: [char; 12] = [
        'a',
        'Z',
        '0',
        '-',
        ' ',
        '"',
        '\\',
        '\n',
        '\u{0}',
        'é',
        '\u{1F600}',
        '{',
    ];
    let len = rng.below(40);
    (0..len).map(|_| *rng.pick(&CHARS)).collect()
}

fn random_value(rng: &mut XorShift, depth: usize, ids: &[String]) -> Value {
    let kinds = if depth == 0 { 8 } else { 10 };
    match rng.below(kinds) {
        0 => Value::Null,
        1 => json!(rng.chance(50)),
        2 => json!(rng.below(300) as i64 - 20),
        3 => rng
            .pick(&[
                json!(0),
                json!(-1),
                json!(1.5),
                json!(1e300),
                json!(-1e300),
                json!(u64::MAX),
                json!(i64::MIN),
                json!(255),
                json!(256),
                json!(65536),
            ])
            .clone(),
        4 => json!(rng.pick(ids)),
        5 => json!(random_string(rng)),
        6 => json!(""),
        7 => json!(rng.pick(&WORDS)),
        8 => (0..rng.below(4))
            .map(|_| random_value(rng, depth - 1, ids))
            .collect(),
        _ => {
            let mut object = Map::new();
            for _ in 0..rng.below(5) {
                let key = rng.pick(&FIELDS).to_string();
                object.insert(key, random_value(rng, depth - 1, ids));
            }
            Value::Object(object)
        }
    }
}

/// Replaces or removes one random node of `value`.
fn mutate(rng: &mut XorShift, value: &mut Value, depth: usize, ids: &[String]) {
    let descend = depth > 0 && rng.chance(75);
    match value {
        Value::Object(object) if descend && !object.is_empty() => {
            let key = object
                .keys()
                .nth(rng.below(object.len()))
                .cloned()
                .expect("key");
            if rng.chance(15) {
                object.remove(&key);
            } else {
                mutate(rng, object.get_mut(&key).expect("value"), depth - 1, ids);
            }
        }
        Value::Array(items) if descend && !items.is_empty() => {
            let i = rng.below(items.len());
            mutate(rng, &mut items[i], depth - 1, ids);
        }
        _ => *value = random_value(rng, 1, ids),
    }
}

/// The `data` fields the demo sends with `method` (protocol §2).
fn fields_of(method: &str) -> &'static [&'static str] {
    match method {
        "join" => &[
            "displayName",
            "device",
            "rtpCapabilities",
            "sctpCapabilities",
        ],
        "createWebRtcTransport" => &["forceTcp", "producing", "consuming", "sctpCapabilities"],
        "connectWebRtcTransport" => &["transportId", "dtlsParameters"],
        "restartIce" | "getTransportStats" => &["transportId"],
        "produce" => &["transportId", "kind", "rtpParameters", "appData"],
        "closeProducer" | "pauseProducer" | "resumeProducer" | "getProducerStats" => {
            &["producerId"]
        }
        "pauseConsumer" | "resumeConsumer" | "requestConsumerKeyFrame" | "getConsumerStats" => {
            &["consumerId"]
        }
        "setConsumerPreferredLayers" => &["consumerId", "spatialLayer", "temporalLayer"],
        "setConsumerPriority" => &["consumerId", "priority"],
        "produceData" => &[
            "transportId",
            "sctpStreamParameters",
            "label",
            "protocol",
            "appData",
        ],
        "changeDisplayName" => &["displayName"],
        "getDataProducerStats" => &["dataProducerId"],
        "getDataConsumerStats" => &["dataConsumerId"],
        "applyNetworkThrottle" => &["secret", "uplink", "downlink", "rtt", "packetLoss"],
        "resetNetworkThrottle" => &["secret"],
        _ => &[],
    }
}

/// A plausible value for `field`: a real id, a mutated fixture, an edge number.
fn plausible_value(rng: &mut XorShift, field: &str, ids: &[String]) -> Value {
    match field {
        // ids[0] is the hammering peer's own send transport: reach produce's deeper checks.
        "transportId" if rng.chance(50) => json!(ids[0]),
        "transportId" | "producerId" | "consumerId" | "dataProducerId" | "dataConsumerId" => {
            json!(rng.pick(ids))
        }
        "rtpParameters" => {
            let name = *rng.pick(&[
                "produce-audio",
                "produce-vp8-rtx",
                "produce-video-simulcast",
            ]);
            let mut params = fixture(name)["rtpParameters"].clone();
            for _ in 0..1 + rng.below(2) {
                mutate(rng, &mut params, 4, ids);
            }
            params
        }
        "dtlsParameters" => {
            let mut params = fixture("connect-webrtc-transport")["dtlsParameters"].clone();
            mutate(rng, &mut params, 3, ids);
            params
        }
        "rtpCapabilities" => {
            let mut caps = client_rtp_capabilities();
            mutate(rng, &mut caps, 4, ids);
            caps
        }
        "sctpStreamParameters" => {
            let mut params = fixture("produce-data-chat")["sctpStreamParameters"].clone();
            mutate(rng, &mut params, 1, ids);
            params
        }
        "kind" => json!(rng.pick(&["audio", "video", "data", ""])),
        "spatialLayer" | "temporalLayer" | "priority" => json!(rng.below(6) as i64 - 1),
        "secret" => json!(rng.pick(&["s3cret", "", "wrong"])),
        "displayName" => json!(random_string(rng)),
        _ => random_value(rng, 2, ids),
    }
}

/// Random `data` for `method`: mostly its own fields with plausible values, some random
/// values and stray fields, sometimes not an object at all.
fn random_data(rng: &mut XorShift, method: &str, ids: &[String]) -> Value {
    if rng.chance(8) {
        return random_value(rng, 1, ids);
    }
    // Mostly a real request of the demo with a few mutations, so validation is passed partly.
    let real = match method {
        "produce" => {
            let name = *rng.pick(&[
                "produce-audio",
                "produce-vp8-rtx",
                "produce-video-simulcast",
            ]);
            Some(produce_data(name, &ids[0]))
        }
        "connectWebRtcTransport" => Some(connect_data(&ids[rng.below(2)])),
        "join" => Some(fixture("join-olimmpcr")),
        _ => None,
    };
    if let Some(mut data) = real.filter(|_| rng.chance(70)) {
        // Mostly inside the parameters, sometimes anywhere.
        let inner = ["rtpParameters", "dtlsParameters", "rtpCapabilities"]
            .into_iter()
            .find(|k| data.get(k).is_some());
        for _ in 0..1 + rng.below(3) {
            let target = match inner {
                Some(key) if rng.chance(80) => data.get_mut(key),
                _ => None,
            };
            match target {
                Some(value) => mutate(rng, value, 5, ids),
                None => mutate(rng, &mut data, 5, ids),
            }
        }
        return data;
    }
    let mut data = Map::new();
    for field in fields_of(method) {
        if rng.chance(10) {
            continue;
        }
        let value = if rng.chance(75) {
            plausible_value(rng, field, ids)
        } else {
            random_value(rng, 2, ids)
        };
        data.insert((*field).to_owned(), value);
    }
    for _ in 0..rng.below(3) {
        let field = *rng.pick(&FIELDS);
        let value = plausible_value(rng, field, ids);
        data.insert(field.to_owned(), value);
    }
    Value::Object(data)
}

/// One frame of the hammer and what must come back for it.
enum Frame {
    /// A request with a usable id: exactly one response with that id.
    Answered(u64, String),
    /// A usable id but a non-string method: one 400 response, and counted as invalid.
    BadMethod(u64, String),
    /// Not a usable protoo message: no response, counted as invalid.
    Invalid(String),
    /// Valid but unanswered (client notification, response to nothing).
    Ignored(String),
    Binary(Vec<u8>),
}

/// 200 seeded frames. Invalid ones stay below the 64-per-connection limit.
fn hammer_frames(ids: &[String]) -> Vec<Frame> {
    let mut rng = XorShift(0x5eed_cafe_f00d_beef);
    let mut frames = Vec::new();
    let mut invalid_budget = 60;
    let mut next_id = 2_000_000u64;
    let mut fresh_id = |rng: &mut XorShift| {
        next_id += 1 + rng.below(1000) as u64;
        next_id
    };
    for i in 0..200 {
        let roll = rng.below(100);
        if roll < 30 && invalid_budget > 0 {
            invalid_budget -= 1;
            let method = *rng.pick(&METHODS);
            let data = random_data(&mut rng, method, ids);
            let frame = match rng.below(7) {
                0 => random_string(&mut rng),
                1 => {
                    let id = fresh_id(&mut rng);
                    let text = json!({"request": true, "id": id, "method": method, "data": data})
                        .to_string();
                    // A proper prefix of an object is never valid JSON.
                    let cut = rng.below(text.chars().count());
                    text.chars().take(cut).collect()
                }
                2 => match random_value(&mut rng, 2, ids) {
                    // Any JSON but an object.
                    object @ Value::Object(_) => Value::Array(vec![object]).to_string(),
                    other => other.to_string(),
                },
                3 => {
                    let id = fresh_id(&mut rng);
                    json!({"id": id, "method": method, "data": data}).to_string()
                }
                4 => {
                    let id = rng
                        .pick(&[
                            json!("7"),
                            json!(-7),
                            json!(7.25),
                            Value::Null,
                            json!([7]),
                            json!({"id": 7}),
                        ])
                        .clone();
                    json!({"request": true, "id": id, "method": method, "data": data}).to_string()
                }
                5 => {
                    json!({"notification": true, "method": rng.below(10), "data": data}).to_string()
                }
                _ => {
                    let id = fresh_id(&mut rng);
                    let method = random_value(&mut rng, 1, ids);
                    let method = if method.is_string() { json!(1) } else { method };
                    let text = json!({"request": true, "id": id, "method": method, "data": data});
                    frames.push(Frame::BadMethod(id, text.to_string()));
                    continue;
                }
            };
            frames.push(Frame::Invalid(frame));
        } else if roll < 35 {
            let len = rng.below(64);
            frames.push(Frame::Binary((0..len).map(|_| rng.next() as u8).collect()));
        } else if roll < 40 {
            let frame = if rng.chance(50) {
                let method = *rng.pick(&METHODS);
                let data = random_data(&mut rng, method, ids);
                json!({"notification": true, "method": method, "data": data})
            } else {
                let ok = rng.chance(50);
                let data = random_data(&mut rng, "produce", ids);
                json!({"response": true, "id": 9_999_999_999u64 + i, "ok": ok, "data": data})
            };
            frames.push(Frame::Ignored(frame.to_string()));
        } else {
            let id = fresh_id(&mut rng);
            let method = match rng.below(100) {
                0..5 => "foo",
                5..40 => *rng.pick(&DEEP_METHODS),
                _ => *rng.pick(&METHODS),
            };
            let data = random_data(&mut rng, method, ids);
            let frame = if rng.chance(5) {
                json!({"request": true, "id": id, "method": method})
            } else {
                json!({"request": true, "id": id, "method": method, "data": data})
            };
            frames.push(Frame::Answered(id, frame.to_string()));
        }
    }
    frames
}

/// 200 seeded garbage frames and random requests from one joined peer: every request with a
/// usable id gets exactly one well-formed response, nothing else is answered, the peer stays
/// connected, and afterwards the other peer's produce still reaches it as newConsumer.
#[test]
fn garbage_hammer_leaves_the_room_and_server_working() {
    let mut server = Server::start(WS);
    run(|| async {
        let bob = join_peer_with(&server, "hammer", "bob", "Bob", consuming()).await;
        let mut alice = RawPeer::connect(&server, "hammer", "alice").await;
        let (alice_send, alice_recv) = alice.join("Alice").await;
        // A real producer of bob's and alice's consumer of it, so random requests hit real
        // objects of both peers too.
        let bob_producer = bob.produce("produce-audio").await.expect("bob produce");
        let new_consumer = alice
            .wait_event(|e| e["method"] == json!("newConsumer"))
            .await;
        let request_id = new_consumer["id"].as_u64().expect("server request id");
        alice
            .send_json(&json!({"response": true, "id": request_id, "ok": true, "data": {}}))
            .await;
        let alice_consumer = new_consumer["data"]["id"].as_str().expect("consumer id");
        let ids = vec![
            alice_send,
            alice_recv,
            bob.send_transport_id.clone(),
            bob.recv_transport_id.clone(),
            bob_producer.clone(),
            alice_consumer.to_owned(),
            "x".to_owned(),
            String::new(),
        ];
        let frames = hammer_frames(&ids);
        let invalid_before = metric_now(&server, INVALID).await;
        // id → whether the answer must be the 400 for a non-string method.
        let mut expected = BTreeMap::new();
        // Counted in /metrics (binary frames too) / towards the connection's limit of 64.
        let (mut counted, mut toward_limit) = (0u64, 0u64);
        for frame in &frames {
            match frame {
                Frame::Answered(id, text) | Frame::BadMethod(id, text) => {
                    let bad_method = matches!(frame, Frame::BadMethod(..));
                    assert!(
                        expected.insert(*id, bad_method).is_none(),
                        "duplicate id {id}"
                    );
                    counted += u64::from(bad_method);
                    toward_limit += u64::from(bad_method);
                    alice.send_text(text).await;
                }
                Frame::Invalid(text) => {
                    counted += 1;
                    toward_limit += 1;
                    alice.send_text(text).await;
                }
                Frame::Ignored(text) => alice.send_text(text).await,
                Frame::Binary(bytes) => {
                    counted += 1;
                    alice.send_binary(bytes).await;
                }
            }
        }
        assert!(expected.len() > 100, "the seed yields enough requests");
        assert!(
            toward_limit <= 64,
            "the hammer must stay under the invalid-message limit"
        );

        for id in expected.keys() {
            alice.response(*id).await;
        }
        let sentinel = alice
            .request("getRouterRtpCapabilities", json!({}))
            .await
            .expect("sentinel request");
        assert!(sentinel["codecs"].is_array());
        assert!(
            !alice.closed,
            "alice was closed (code {:?})",
            alice.close_code
        );

        // Exactly one well-formed response per usable id; none for anything else (alice's own
        // join and sentinel requests use ids 1001..=next_id).
        let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
        for r in &alice.responses {
            let id = r["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("response without numeric id: {r}"));
            *seen.entry(id).or_default() += 1;
            match r["ok"].as_bool() {
                Some(true) => assert!(r.get("data").is_some(), "{r}"),
                Some(false) => {
                    let code = r["errorCode"].as_u64().unwrap_or(0);
                    assert!([400, 403, 500].contains(&code), "{r}");
                    assert!(
                        r["errorReason"].as_str().is_some_and(|s| !s.is_empty()),
                        "{r}"
                    );
                }
                None => panic!("response without ok: {r}"),
            }
            if expected.get(&id) == Some(&true) {
                assert_eq!(r["errorCode"], json!(400), "non-string method: {r}");
            }
            assert!(
                expected.contains_key(&id) || (1001..=alice.next_id).contains(&id),
                "response to a frame that must be dropped: {r}"
            );
        }
        for id in expected.keys() {
            assert_eq!(seen.get(id), Some(&1), "responses to request {id}");
        }
        assert_eq!(
            metric_now(&server, INVALID).await - invalid_before,
            counted,
            "invalid messages counted"
        );

        // Bob's producer survived alice's random requests on its id.
        assert!(bob
            .client
            .request("getProducerStats", json!({"producerId": bob_producer}))
            .await
            .expect("bob's producer stats")
            .is_array());
        assert!(!bob
            .client
            .events()
            .iter()
            .any(|e| e.is_notification("peerClosed")));

        // Bob's normal flow still works and reaches alice (a second microphone: its own SSRC and
        // MID, since the transport already has the fixture's).
        let mut second = fixture("produce-audio");
        second["transportId"] = json!(bob.send_transport_id);
        second["rtpParameters"]["mid"] = json!("7");
        second["rtpParameters"]["encodings"][0]["ssrc"] = json!(424242);
        let producer_id = bob
            .client
            .request("produce", second)
            .await
            .expect("bob produce")["id"]
            .as_str()
            .expect("id")
            .to_string();
        let new_consumer = alice
            .wait_event(|e| {
                e["method"] == json!("newConsumer") && e["data"]["producerId"] == json!(producer_id)
            })
            .await;
        let id = new_consumer["id"].as_u64().expect("server request id");
        alice
            .send_json(&json!({"response": true, "id": id, "ok": true, "data": {}}))
            .await;
        let consumer_id = new_consumer["data"]["id"]
            .as_str()
            .expect("consumer id")
            .to_owned();
        alice
            .wait_event(|e| {
                e["method"] == json!("consumerScore")
                    && e["data"]["consumerId"] == json!(consumer_id)
            })
            .await;
        assert!(bob
            .client
            .request(
                "getTransportStats",
                json!({"transportId": bob.send_transport_id})
            )
            .await
            .is_ok());
    });
    assert_eq!(server.exited(), None, "the server process exited");
}

// ---------------------------------------------------------------------------------------------
// TLS

/// The same refusals and drops over https/wss (the default self-signed TLS listener); plain
/// HTTP on the TLS port is not answered, and nothing of it disturbs a joined wss peer.
#[test]
fn bad_input_over_wss_is_handled_the_same_way() {
    let server = Server::start(WSS);
    assert!(server.tls());
    run(|| async {
        let addr = server.addr();
        let bob = join_peer_with(&server, "tls", "bob", "Bob", consuming()).await;

        let (status, _, body) = raw_http(
            addr,
            true,
            &upgrade_head("GET", "/?roomId=tls&peerId=x", None),
        )
        .await
        .expect("https upgrade without protoo");
        assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
        let (status, _, _) = raw_http(
            addr,
            true,
            &upgrade_head("GET", "/?roomId=tls", Some("protoo")),
        )
        .await
        .expect("https upgrade without peerId");
        assert_eq!(status, 400);
        match raw_http(addr, false, "GET /health HTTP/1.1\r\nHost: test\r\n\r\n").await {
            Ok((status, _, _)) => panic!("plain HTTP on the TLS port answered {status}"),
            Err(ClientError::Timeout) => panic!("plain HTTP on the TLS port hangs"),
            Err(_) => {}
        }
        match ProtooClient::connect(
            &server.ws_url("tls", "x"),
            ConnectOptions {
                subprotocol: None,
                ..ConnectOptions::default()
            },
        )
        .await
        {
            Err(ClientError::Rejected { status: 403, .. }) => {}
            other => panic!("wss connect without protoo: {other:?}"),
        }

        let invalid_before = metric_now(&server, INVALID).await;
        let mut alice = RawPeer::connect(&server, "tls", "alice").await;
        for frame in ["{", "[]", r#"{"request":true,"id":"1","method":"join"}"#] {
            alice.send_text(frame).await;
        }
        alice
            .send_json(&json!({"request": true, "id": 77, "method": 1}))
            .await;
        assert_eq!(alice.response(77).await["errorCode"], json!(400));
        assert_eq!(
            alice.request("foo", json!({})).await,
            Err((500, "unknown request.method \"foo\"".to_owned()))
        );
        assert_eq!(
            alice
                .request("closeProducer", json!({"producerId": "x"}))
                .await,
            Err((500, "Peer not yet joined".to_owned()))
        );
        alice.join("Alice").await;
        assert_eq!(
            alice
                .request(
                    "getTransportStats",
                    json!({"transportId": bob.send_transport_id})
                )
                .await,
            Err((
                500,
                format!("transport with id \"{}\" not found", bob.send_transport_id)
            ))
        );
        assert_eq!(
            alice.responses.len(),
            8,
            "only requests with usable ids were answered"
        );
        assert_eq!(metric_now(&server, INVALID).await - invalid_before, 4);

        notification(&bob.client, "newPeer", |d| d["id"] == json!("alice")).await;
        let producer_id = bob
            .produce("produce-audio")
            .await
            .expect("bob produce over wss");
        let new_consumer = alice
            .wait_event(|e| {
                e["method"] == json!("newConsumer") && e["data"]["producerId"] == json!(producer_id)
            })
            .await;
        assert_eq!(new_consumer["request"], json!(true));
    });
}
