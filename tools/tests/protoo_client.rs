//! The protoo client against a scripted in-process protoo server (glommio +
//! async-tungstenite, plain and TLS), on one glommio executor per test.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::http::{self, HeaderValue};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures::StreamExt;
use futures_rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use futures_rustls::rustls::{self, ServerConfig};
use futures_rustls::TlsAcceptor;
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use serde_json::{json, Value};
use shardcast_tools::protoo::{
    raw_http, ClientError, ConnectOptions, ProtooClient, RequestError, ServerEvent,
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

/// What the mock server saw, for assertions from the client side.
type ServerLog = Rc<RefCell<Vec<String>>>;

struct Mock {
    addr: SocketAddr,
    log: ServerLog,
}

impl Mock {
    fn url(&self, scheme: &str) -> String {
        format!(
            "{scheme}://127.0.0.1:{}/?roomId=room1&peerId=peer1",
            self.addr.port()
        )
    }

    async fn wait_logged(&self, entry: &str) -> bool {
        let deadline = std::time::Instant::now() + WAIT;
        while std::time::Instant::now() < deadline {
            if self.log.borrow().iter().any(|e| e == entry) {
                return true;
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

fn tls_config() -> (Arc<ServerConfig>, Vec<u8>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_der = ck.cert.der().to_vec();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from(cert_der.clone())], key)
            .unwrap();
    (Arc::new(config), cert_der)
}

/// Starts the scripted protoo server on the current executor.
fn spawn_mock(tls: Option<Arc<ServerConfig>>) -> Mock {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let log = ServerLog::default();
    let server_log = log.clone();
    glommio::spawn_local(async move {
        while let Ok(stream) = listener.accept().await {
            let log = server_log.clone();
            let tls = tls.clone();
            glommio::spawn_local(async move {
                match tls {
                    None => serve(stream, log).await,
                    Some(config) => match TlsAcceptor::from(config).accept(stream).await {
                        Ok(s) => serve(s, log).await,
                        Err(e) => log.borrow_mut().push(format!("tls error: {e}")),
                    },
                }
            })
            .detach();
        }
    })
    .detach();
    Mock { addr, log }
}

/// protoo-server's upgrade checks plus the demo's roomId/peerId check.
#[allow(clippy::result_large_err)] // the signature is tungstenite's `Callback`
fn check_upgrade(req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
    let refuse = |status: u16, reason: &str| {
        http::Response::builder()
            .status(status)
            .body(Some(reason.to_owned()))
            .unwrap()
    };
    let offered = req
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !offered.split(',').any(|p| p.trim() == "protoo") {
        return Err(refuse(403, "invalid/missing Sec-WebSocket-Protocol"));
    }
    let query = req.uri().query().unwrap_or_default();
    let has = |key: &str| {
        query
            .split('&')
            .any(|kv| kv.starts_with(&format!("{key}=")))
    };
    if !has("roomId") || !has("peerId") {
        return Err(refuse(
            400,
            "Connection request without roomId and/or peerId",
        ));
    }
    resp.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("protoo"));
    Ok(resp)
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>, v: Value) {
    let _ = ws.send(Message::text(v.to_string())).await;
}

async fn send_raw<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>, raw: &str) {
    let _ = ws.send(Message::text(raw)).await;
}

fn ok(id: &Value, data: Value) -> Value {
    json!({ "response": true, "id": id, "ok": true, "data": data })
}

/// The scripted server: each request method triggers one behaviour.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S, log: ServerLog) {
    let mut ws = match async_tungstenite::accept_hdr_async(stream, check_upgrade).await {
        Ok(ws) => ws,
        Err(e) => {
            log.borrow_mut().push(format!("handshake error: {e}"));
            return;
        }
    };
    log.borrow_mut().push("open".into());
    send(
        &mut ws,
        json!({ "notification": true, "method": "mediasoup-version", "data": { "version": "3.14.16" } }),
    )
    .await;
    // server request id → client request id waiting for its answer
    let mut relays: HashMap<u64, Value> = HashMap::new();
    let mut next_server_id = 1000u64;
    while let Some(msg) = ws.next().await {
        let text = match msg {
            Ok(Message::Text(t)) => t.to_string(),
            Ok(Message::Close(frame)) => {
                let code = frame.map(|f| u16::from(f.code)).unwrap_or_default();
                log.borrow_mut().push(format!("close:{code}"));
                continue;
            }
            Ok(_) => continue,
            Err(_) => break,
        };
        let Ok(m) = serde_json::from_str::<Value>(&text) else {
            log.borrow_mut().push(format!("junk:{text}"));
            continue;
        };
        if m["response"] == true {
            let sid = m["id"].as_u64().unwrap_or_default();
            if let Some(rid) = relays.remove(&sid) {
                let answer = if m["ok"] == true {
                    json!({ "answer": m["data"] })
                } else {
                    json!({ "errorCode": m["errorCode"], "errorReason": m["errorReason"] })
                };
                send(&mut ws, ok(&rid, answer)).await;
            }
            continue;
        }
        if m["notification"] == true {
            log.borrow_mut().push(format!(
                "notification:{}",
                m["method"].as_str().unwrap_or("")
            ));
            send(
                &mut ws,
                json!({ "notification": true, "method": "echoNote", "data": m["data"] }),
            )
            .await;
            continue;
        }
        let id = m["id"].clone();
        let method = m["method"].as_str().unwrap_or_default().to_owned();
        log.borrow_mut().push(format!("request:{method}"));
        match method.as_str() {
            "echo" => send(&mut ws, ok(&id, m["data"].clone())).await,
            "whoami" => send(&mut ws, ok(&id, json!({ "id": id }))).await,
            "fail" => {
                send(
                    &mut ws,
                    json!({ "response": true, "id": id, "ok": false, "errorCode": 403, "errorReason": "nope" }),
                )
                .await
            }
            "noData" => send(&mut ws, json!({ "response": true, "id": id, "ok": true })).await,
            "stats" => send(&mut ws, ok(&id, json!([{ "type": "transport" }]))).await,
            "connect" => send(&mut ws, ok(&id, json!({}))).await,
            "needConsumer" => {
                next_server_id += 1;
                relays.insert(next_server_id, id);
                let req = json!({
                    "request": true, "id": next_server_id, "method": "newConsumer",
                    "data": { "id": format!("consumer-{next_server_id}") },
                });
                send(&mut ws, req).await;
            }
            "notifyMe" => {
                for (method, cid) in [("consumerClosed", "a"), ("consumerPaused", "b"), ("consumerClosed", "b")] {
                    send(
                        &mut ws,
                        json!({ "notification": true, "method": method, "data": { "consumerId": cid } }),
                    )
                    .await;
                }
                send(&mut ws, ok(&id, json!({}))).await;
            }
            "closeMe" => {
                let frame = CloseFrame {
                    code: CloseCode::from(4000),
                    reason: "closed by protoo-server".into(),
                };
                let _ = ws.close(Some(frame)).await;
            }
            "garbage" => {
                let sid = id.to_string();
                for raw in [
                    format!(r#"{{"response":true,"id":"{sid}","ok":true,"data":{{"bad":true}}}}"#),
                    r#"{"request":true,"id":"x","method":"newConsumer","data":{}}"#.into(),
                    r#"{"request":true,"id":7,"method":12}"#.into(),
                    r#"{"notification":true,"data":{}}"#.into(),
                    r#"{"response":true,"id":999999999,"ok":true}"#.into(),
                    r#"{"foo":1}"#.into(),
                    "[1,2]".into(),
                    "42".into(),
                    "not json {".into(),
                    "\"string\"".into(),
                ] {
                    send_raw(&mut ws, &raw).await;
                }
                let _ = ws.send(Message::binary(vec![1u8, 2, 3])).await;
                send(
                    &mut ws,
                    json!({ "notification": true, "method": "afterGarbage" }),
                )
                .await;
                send(&mut ws, ok(&id, json!({ "good": true }))).await;
            }
            "slow" => {}
            other => {
                send(
                    &mut ws,
                    json!({
                        "response": true, "id": id, "ok": false, "errorCode": 500,
                        "errorReason": format!("unknown request.method \"{other}\""),
                    }),
                )
                .await
            }
        }
    }
    log.borrow_mut().push("eof".into());
}

async fn connect(mock: &Mock) -> ProtooClient {
    let client = ProtooClient::connect(&mock.url("ws"), ConnectOptions::default())
        .await
        .expect("connect");
    let first = client.next_event(WAIT).await.expect("mediasoup-version");
    assert!(first.is_notification("mediasoup-version"), "{first:?}");
    client
}

#[test]
fn request_success_and_error_responses() {
    run(|| async {
        let mock = spawn_mock(None);
        let client = connect(&mock).await;
        let data = json!({ "a": [1, 2, { "b": null }] });
        assert_eq!(client.request("echo", data.clone()).await, Ok(data));
        assert_eq!(
            client.request("fail", json!({})).await,
            Err(RequestError::Protoo {
                code: 403,
                reason: "nope".into()
            })
        );
        assert_eq!(client.request("noData", json!({})).await, Ok(json!({})));
        assert_eq!(
            client.request("stats", json!({})).await,
            Ok(json!([{ "type": "transport" }]))
        );
        let Err(RequestError::Protoo { code: 500, reason }) =
            client.request("bogus", json!({})).await
        else {
            panic!("unknown method must fail with 500");
        };
        assert_eq!(reason, r#"unknown request.method "bogus""#);
        for _ in 0..20 {
            let id = client.request("whoami", json!({})).await.unwrap()["id"]
                .as_u64()
                .expect("numeric id");
            assert!(id <= 10_000_000);
        }
        assert_eq!(client.pending_requests(), 0);
        assert!(!client.closed());
    });
}

#[test]
fn request_proceeds_while_a_server_request_is_pending() {
    run(|| async {
        let mock = spawn_mock(None);
        let client = connect(&mock).await;
        let c = client.clone();
        let outer = glommio::spawn_local(async move { c.request("needConsumer", json!({})).await });

        let ev = client
            .wait_for(WAIT, |e| e.is_request("newConsumer"))
            .await
            .expect("newConsumer request");
        // The demo client connects its transport before answering newConsumer.
        assert_eq!(client.request("connect", json!({})).await, Ok(json!({})));
        let id = ev.request_id().unwrap();
        assert_eq!(ev.data()["id"], format!("consumer-{id}"));
        client.respond(id, Ok(json!({ "got": id })));
        assert_eq!(outer.await, Ok(json!({ "answer": { "got": id } })));

        // Error answers carry code and reason.
        let c = client.clone();
        let outer = glommio::spawn_local(async move { c.request("needConsumer", json!({})).await });
        let ev = client
            .wait_for(WAIT, |e| e.is_request("newConsumer"))
            .await
            .unwrap();
        client.respond(
            ev.request_id().unwrap(),
            Err((403, "I do not want to consume".into())),
        );
        assert_eq!(
            outer.await,
            Ok(json!({ "errorCode": 403, "errorReason": "I do not want to consume" }))
        );
    });
}

#[test]
fn auto_respond_answers_on_arrival_and_catches_up() {
    run(|| async {
        let mock = spawn_mock(None);
        let client = connect(&mock).await;

        // A request that arrived before auto-respond was set is answered when it is set.
        let c = client.clone();
        let early = glommio::spawn_local(async move { c.request("needConsumer", json!({})).await });
        client
            .wait_logged(WAIT, |e| e.is_request("newConsumer"))
            .await
            .unwrap();
        client.set_auto_respond(&["newConsumer", "newDataConsumer"]);
        assert_eq!(early.await, Ok(json!({ "answer": {} })));

        assert_eq!(
            client.request("needConsumer", json!({})).await,
            Ok(json!({ "answer": {} }))
        );
        let requests: Vec<_> = client
            .events()
            .into_iter()
            .filter(|e| e.is_request("newConsumer"))
            .collect();
        assert_eq!(requests.len(), 2, "auto-answered requests are still logged");
    });
}

#[test]
fn wait_for_keeps_skipped_events_in_order() {
    run(|| async {
        let mock = spawn_mock(None);
        let client = connect(&mock).await;
        client.request("notifyMe", json!({})).await.unwrap();
        let closed_b = client
            .wait_for(WAIT, |e| {
                e.is_notification("consumerClosed") && e.data()["consumerId"] == "b"
            })
            .await
            .unwrap();
        assert_eq!(closed_b.data()["consumerId"], "b");
        let rest: Vec<ServerEvent> = client.queued_events();
        assert_eq!(rest.len(), 2);
        let a = client.next_event(WAIT).await.unwrap();
        assert!(a.is_notification("consumerClosed") && a.data()["consumerId"] == "a");
        let paused = client.next_event(WAIT).await.unwrap();
        assert!(paused.is_notification("consumerPaused"));
        assert_eq!(client.next_event(Duration::from_millis(50)).await, None);
        // Everything, taken or not, stays in the full log.
        assert_eq!(client.events().len(), 4);
        assert!(client
            .wait_logged(WAIT, |e| e.is_notification("mediasoup-version"))
            .await
            .is_some());
    });
}

#[test]
fn server_close_code_4000_is_observed() {
    run(|| async {
        let mock = spawn_mock(None);
        let client = connect(&mock).await;
        // The server closes instead of answering: the request fails as Closed.
        assert_eq!(
            client.request("closeMe", json!({})).await,
            Err(RequestError::Closed)
        );
        assert!(client.wait_closed(WAIT).await);
        assert!(client.closed());
        assert_eq!(client.close_code(), Some(4000));
        assert_eq!(
            client.request("echo", json!({})).await,
            Err(RequestError::Closed)
        );
        // Waiting on a closed connection returns at once instead of timing out.
        assert_eq!(client.next_event(Duration::from_secs(60)).await, None);
        assert!(mock.wait_logged("eof").await);
    });
}

#[test]
fn malformed_server_frames_are_dropped() {
    run(|| async {
        let mock = spawn_mock(None);
        let client = connect(&mock).await;
        assert_eq!(
            client.request("garbage", json!({})).await,
            Ok(json!({ "good": true })),
            "a response with a string id must not resolve the request"
        );
        let ev = client.next_event(WAIT).await.unwrap();
        assert!(ev.is_notification("afterGarbage"), "{ev:?}");
        assert_eq!(client.events().len(), 2, "{:?}", client.events());
        // Bad input from our side reaches the server and the connection survives.
        client.send_text("{not json");
        assert_eq!(client.request("echo", json!(1)).await, Ok(json!(1)));
        assert!(mock.wait_logged("junk:{not json").await);
        assert!(!client.closed());
    });
}

#[test]
fn request_timeout_cleans_up() {
    run(|| async {
        let mock = spawn_mock(None);
        let client = connect(&mock).await;
        assert_eq!(
            client
                .request_with_timeout("slow", json!({}), Duration::from_millis(200))
                .await,
            Err(RequestError::Timeout)
        );
        assert_eq!(client.pending_requests(), 0);
        assert_eq!(client.request("echo", json!(2)).await, Ok(json!(2)));
    });
}

#[test]
fn notifications_and_local_close() {
    run(|| async {
        let mock = spawn_mock(None);
        let client = connect(&mock).await;
        client.notify("hello", json!({ "x": 1 }));
        let echo = client
            .wait_for(WAIT, |e| e.is_notification("echoNote"))
            .await
            .unwrap();
        assert_eq!(echo.data(), &json!({ "x": 1 }));

        let c = client.clone();
        let pending = glommio::spawn_local(async move { c.request("slow", json!({})).await });
        client.close();
        assert_eq!(pending.await, Err(RequestError::Closed));
        assert!(client.closed());
        assert!(mock.wait_logged("close:1000").await);
        assert!(mock.wait_logged("eof").await);
    });
}

#[test]
fn dropping_the_last_clone_closes_and_abort_skips_the_close_frame() {
    run(|| async {
        let mock = spawn_mock(None);
        let client = connect(&mock).await;
        let clone = client.clone();
        drop(client);
        assert_eq!(clone.request("echo", json!(3)).await, Ok(json!(3)));
        drop(clone);
        assert!(mock.wait_logged("close:1000").await);

        let mock = spawn_mock(None);
        let client = connect(&mock).await;
        client.abort();
        assert!(client.closed());
        assert!(mock.wait_logged("eof").await);
        assert!(!mock.log.borrow().iter().any(|e| e.starts_with("close:")));
    });
}

const UPGRADE_WITHOUT_PROTOO: &str = "GET /?roomId=r&peerId=p HTTP/1.1\r\nHost: localhost\r\n\
    Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

#[test]
fn upgrade_refusals_are_reported_with_their_status() {
    run(|| async {
        let mock = spawn_mock(None);
        let no_proto = ConnectOptions {
            subprotocol: None,
            ..Default::default()
        };
        match ProtooClient::connect(&mock.url("ws"), no_proto).await {
            Err(ClientError::Rejected { status: 403, body }) => {
                assert!(body.contains("Sec-WebSocket-Protocol"), "{body}")
            }
            other => panic!("expected 403, got {other:?}"),
        }
        let url = format!("ws://127.0.0.1:{}/?roomId=r", mock.addr.port());
        match ProtooClient::connect(&url, ConnectOptions::default()).await {
            Err(ClientError::Rejected { status: 400, .. }) => {}
            other => panic!("expected 400, got {other:?}"),
        }
        assert!(matches!(
            ProtooClient::connect("http://127.0.0.1:1/", ConnectOptions::default()).await,
            Err(ClientError::Url(_))
        ));

        // The same refusal seen through raw HTTP.
        let (status, _, body) = raw_http(mock.addr, false, UPGRADE_WITHOUT_PROTOO)
            .await
            .unwrap();
        assert_eq!(status, 403);
        assert_eq!(body, b"invalid/missing Sec-WebSocket-Protocol");
        let with_proto = UPGRADE_WITHOUT_PROTOO
            .replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: protoo\r\n\r\n");
        let (status, headers, body) = raw_http(mock.addr, false, &with_proto).await.unwrap();
        assert_eq!(status, 101);
        assert!(body.is_empty());
        assert!(headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("sec-websocket-protocol") && v == "protoo"));
    });
}

#[test]
fn wss_with_self_signed_certificate() {
    run(|| async {
        let (config, cert_der) = tls_config();
        let mock = spawn_mock(Some(config));
        let client = ProtooClient::connect(&mock.url("wss"), ConnectOptions::default())
            .await
            .expect("insecure wss connect");
        assert!(client
            .wait_for(WAIT, |e| e.is_notification("mediasoup-version"))
            .await
            .is_some());
        assert_eq!(client.request("echo", json!("tls")).await, Ok(json!("tls")));

        let url = format!("wss://localhost:{}/?roomId=r&peerId=p", mock.addr.port());
        let strict = ConnectOptions {
            insecure_tls: false,
            ..Default::default()
        };
        assert!(matches!(
            ProtooClient::connect(&url, strict.clone()).await,
            Err(ClientError::Tls(_))
        ));
        let trusted = ConnectOptions {
            root_certs: vec![cert_der],
            ..strict
        };
        let client = ProtooClient::connect(&url, trusted)
            .await
            .expect("verified wss connect");
        assert_eq!(client.request("echo", json!(4)).await, Ok(json!(4)));

        let (status, _, body) = raw_http(mock.addr, true, UPGRADE_WITHOUT_PROTOO)
            .await
            .unwrap();
        assert_eq!(status, 403);
        assert_eq!(body, b"invalid/missing Sec-WebSocket-Protocol");
    });
}

#[test]
fn raw_http_reads_every_body_framing() {
    run(|| async {
        let responses = [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Test: a\r\n\r\nhello",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\nuntil eof",
        ];
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        glommio::spawn_local(async move {
            for resp in responses {
                let mut s = listener.accept().await.unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.ends_with(b"\r\n\r\n") {
                    let n = s.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                // Split the write to exercise partial reads.
                let (a, b) = resp.as_bytes().split_at(resp.len() / 2);
                s.write_all(a).await.unwrap();
                s.flush().await.unwrap();
                glommio::yield_if_needed().await;
                s.write_all(b).await.unwrap();
                s.close().await.unwrap();
            }
        })
        .detach();
        let get = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        let (status, headers, body) = raw_http(addr, false, get).await.unwrap();
        assert_eq!((status, body.as_slice()), (200, &b"hello"[..]));
        assert!(headers.contains(&("X-Test".into(), "a".into())));
        let (status, _, body) = raw_http(addr, false, get).await.unwrap();
        assert_eq!((status, body.as_slice()), (200, &b"abcde"[..]));
        let (status, _, body) = raw_http(addr, false, get).await.unwrap();
        assert_eq!((status, body.as_slice()), (404, &b"until eof"[..]));
    });
}
