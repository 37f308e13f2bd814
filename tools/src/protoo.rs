//! An async protoo 4.x client (the mediasoup-demo signalling protocol) for glommio.
//!
//! One background task reads the socket and routes responses to pending requests,
//! so a caller can await a response while a server request (e.g. `newConsumer`)
//! is still unanswered — the concurrency the demo client relies on. A second task
//! owns the write half so frames from several glommio tasks go out in order.
//!
//! Server requests and notifications are kept in an event log. [`ProtooClient::next_event`]
//! and [`ProtooClient::wait_for`] take events from it like a mailbox with selective
//! receive: events that do not match stay queued, in order, for later calls.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::poll_fn;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::{self, Message};
use async_tungstenite::{WebSocketReceiver, WebSocketSender, WebSocketStream};
use futures::channel::{mpsc, oneshot};
use futures::future::{select, Either};
use futures::StreamExt;
use rand::Rng;
use serde_json::{json, Map, Value};

pub use crate::http::{raw_http, raw_http_with_timeout, RawHttpResponse};
use crate::tls::{self, MaybeTlsStream};
use crate::util::with_timeout;

/// Default time to wait for a response, close to protoo-client's ~22 s.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a locally closed connection waits for the server's close reply
/// before the socket is dropped anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// protoo request ids are `round(random() * 10_000_000)`.
const MAX_REQUEST_ID: u64 = 10_000_000;

/// Why a connection could not be established (or a raw HTTP exchange failed).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid url: {0}")]
    Url(String),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("tls error: {0}")]
    Tls(String),
    /// The server answered the upgrade with a non-101 status (e.g. 400 or 403).
    #[error("upgrade refused with HTTP {status}: {body}")]
    Rejected { status: u16, body: String },
    #[error("websocket handshake failed: {0}")]
    Handshake(String),
    /// A malformed HTTP response in [`raw_http`].
    #[error("bad http response: {0}")]
    Http(String),
    #[error("timed out")]
    Timeout,
}

/// Why a request did not get a success response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// An error response; `code` is 0 when the server sent no numeric `errorCode`.
    #[error("protoo error {code}: {reason}")]
    Protoo { code: u16, reason: String },
    /// The connection closed before the response arrived (or was already closed).
    #[error("connection closed")]
    Closed,
    #[error("request timed out")]
    Timeout,
}

/// A message the server sent on its own initiative.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    Notification {
        method: String,
        data: Value,
    },
    /// Must be answered with [`ProtooClient::respond`] (or auto-responded).
    Request {
        id: u64,
        method: String,
        data: Value,
    },
}

impl ServerEvent {
    pub fn method(&self) -> &str {
        match self {
            Self::Notification { method, .. } | Self::Request { method, .. } => method,
        }
    }

    pub fn data(&self) -> &Value {
        match self {
            Self::Notification { data, .. } | Self::Request { data, .. } => data,
        }
    }

    /// The request id, `None` for notifications.
    pub fn request_id(&self) -> Option<u64> {
        match self {
            Self::Request { id, .. } => Some(*id),
            Self::Notification { .. } => None,
        }
    }

    pub fn is_notification(&self, method: &str) -> bool {
        matches!(self, Self::Notification { method: m, .. } if m == method)
    }

    pub fn is_request(&self, method: &str) -> bool {
        matches!(self, Self::Request { method: m, .. } if m == method)
    }
}

/// How to connect. Build with struct update syntax: `ConnectOptions { insecure_tls: false, ..Default::default() }`.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Offered in `Sec-WebSocket-Protocol`; `None` offers nothing (servers must refuse that).
    pub subprotocol: Option<String>,
    /// Accept any server certificate for `wss://` (test servers are self-signed).
    pub insecure_tls: bool,
    /// Bounds TCP connect, TLS and WebSocket handshakes together.
    pub connect_timeout: Duration,
    /// Timeout of [`ProtooClient::request`].
    pub request_timeout: Duration,
    /// Trusted roots (DER) used when `insecure_tls` is false.
    pub root_certs: Vec<Vec<u8>>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            subprotocol: Some("protoo".to_owned()),
            insecure_tls: true,
            connect_timeout: Duration::from_secs(10),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            root_certs: Vec::new(),
        }
    }
}

/// A connected protoo peer. Clones share the connection; dropping the last clone closes it.
#[derive(Clone)]
pub struct ProtooClient {
    handle: Rc<Handle>,
}

/// Owned by the user-facing clones only, so its drop means "nobody can use this any more"
/// (the background tasks hold `Shared` directly).
struct Handle {
    shared: Rc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.close_local(CLOSE_GRACE);
    }
}

type Responder = oneshot::Sender<Result<Value, RequestError>>;

enum Outgoing {
    Frame(Message),
    /// Ends the writer task so the socket can be dropped.
    Stop,
}

struct LogEntry {
    event: ServerEvent,
    taken: bool,
}

struct Shared {
    url: String,
    out: mpsc::UnboundedSender<Outgoing>,
    /// id → (registration sequence, responder); the sequence lets a cancelled
    /// request remove only its own entry even if its id was reused since.
    pending: RefCell<HashMap<u64, (u64, Responder)>>,
    next_seq: Cell<u64>,
    log: RefCell<Vec<LogEntry>>,
    answered: RefCell<HashSet<u64>>,
    auto_respond: RefCell<HashSet<String>>,
    closed: Cell<bool>,
    close_code: Cell<Option<u16>>,
    waiters: RefCell<Vec<Waker>>,
    /// Tells the reader to drop the socket after the given delay.
    stop_reader: RefCell<Option<oneshot::Sender<Duration>>>,
    request_timeout: Duration,
}

impl Shared {
    fn wake_all(&self) {
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        waiters.into_iter().for_each(Waker::wake);
    }

    /// Marks the connection closed and fails every pending request.
    fn mark_closed(&self) {
        if !self.closed.replace(true) {
            log::debug!("protoo connection to {} closed", self.url);
        }
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        for (_, (_, tx)) in pending {
            let _ = tx.send(Err(RequestError::Closed));
        }
        self.wake_all();
    }

    fn stop_reader_after(&self, delay: Duration) {
        if let Some(stop) = self.stop_reader.borrow_mut().take() {
            let _ = stop.send(delay);
        }
    }

    /// Sends a close frame, then gives the server `grace` to answer it.
    fn close_local(&self, grace: Duration) {
        if !self.closed.get() {
            let frame = CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            };
            let _ = self
                .out
                .unbounded_send(Outgoing::Frame(Message::Close(Some(frame))));
        }
        self.mark_closed();
        self.stop_reader_after(grace);
    }

    /// Queues a frame; `false` when the connection is closed.
    fn send(&self, msg: Message) -> bool {
        if self.closed.get() {
            log::debug!("not sending on closed connection to {}", self.url);
            return false;
        }
        self.out.unbounded_send(Outgoing::Frame(msg)).is_ok()
    }

    fn send_json(&self, value: &Value) -> bool {
        self.send(Message::text(value.to_string()))
    }

    fn send_response(&self, id: u64, result: Result<Value, (u16, String)>) {
        let frame = match result {
            Ok(data) => json!({ "response": true, "id": id, "ok": true, "data": data }),
            Err((code, reason)) => json!({
                "response": true, "id": id, "ok": false,
                "errorCode": code, "errorReason": reason,
            }),
        };
        self.answered.borrow_mut().insert(id);
        self.send_json(&frame);
    }

    /// Picks a fresh random id and registers its responder.
    fn register(&self, tx: Responder) -> (u64, u64) {
        let mut pending = self.pending.borrow_mut();
        let mut rng = rand::rng();
        let id = loop {
            let id = rng.random_range(0..=MAX_REQUEST_ID);
            if !pending.contains_key(&id) {
                break id;
            }
        };
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        pending.insert(id, (seq, tx));
        (id, seq)
    }

    fn push_event(&self, event: ServerEvent) {
        self.log.borrow_mut().push(LogEntry {
            event,
            taken: false,
        });
        self.wake_all();
    }

    /// Parses one text frame with protoo's rules; anything malformed is logged and dropped.
    fn handle_text(&self, text: &str) {
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                log::warn!("dropping non-JSON frame ({e}): {}", truncate(text));
                return;
            }
        };
        let Value::Object(mut obj) = value else {
            log::warn!("dropping non-object frame: {}", truncate(text));
            return;
        };
        if truthy(obj.get("request")) {
            let (Some(id), Some(method)) = (numeric_id(&obj), string_method(&obj)) else {
                log::warn!(
                    "dropping request without numeric id/method: {}",
                    truncate(text)
                );
                return;
            };
            let data = take_data(&mut obj);
            let auto = self.auto_respond.borrow().contains(&method);
            self.push_event(ServerEvent::Request { id, method, data });
            if auto {
                self.send_response(id, Ok(json!({})));
            }
        } else if truthy(obj.get("response")) {
            let Some(id) = numeric_id(&obj) else {
                log::warn!("dropping response without numeric id: {}", truncate(text));
                return;
            };
            let result = if truthy(obj.get("ok")) {
                Ok(take_data(&mut obj))
            } else {
                let code = obj.get("errorCode").and_then(Value::as_u64).unwrap_or(0);
                Err(RequestError::Protoo {
                    code: u16::try_from(code).unwrap_or(u16::MAX),
                    reason: obj
                        .get("errorReason")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                })
            };
            let entry = self.pending.borrow_mut().remove(&id);
            match entry {
                Some((_, tx)) => {
                    let _ = tx.send(result);
                }
                None => log::warn!("ignoring response to unknown request id {id}"),
            }
        } else if truthy(obj.get("notification")) {
            let Some(method) = string_method(&obj) else {
                log::warn!("dropping notification without method: {}", truncate(text));
                return;
            };
            let data = take_data(&mut obj);
            self.push_event(ServerEvent::Notification { method, data });
        } else {
            log::warn!("dropping frame of unknown kind: {}", truncate(text));
        }
    }
}

/// JavaScript truthiness, because protoo tests `if (object.request)`.
fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(_) | Value::Object(_)) => true,
    }
}

fn numeric_id(obj: &Map<String, Value>) -> Option<u64> {
    obj.get("id").and_then(Value::as_u64)
}

fn string_method(obj: &Map<String, Value>) -> Option<String> {
    obj.get("method").and_then(Value::as_str).map(str::to_owned)
}

/// protoo's `object.data || {}`.
fn take_data(obj: &mut Map<String, Value>) -> Value {
    match obj.remove("data") {
        Some(v) if truthy(Some(&v)) => v,
        _ => json!({}),
    }
}

fn truncate(text: &str) -> &str {
    match text.char_indices().nth(200) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// Removes a request's pending entry when its future ends or is dropped.
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: u64,
    seq: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        let mut pending = self.shared.pending.borrow_mut();
        if pending
            .get(&self.id)
            .is_some_and(|(seq, _)| *seq == self.seq)
        {
            pending.remove(&self.id);
        }
    }
}

type Ws = WebSocketStream<MaybeTlsStream>;

async fn read_loop(
    shared: Rc<Shared>,
    mut rx: WebSocketReceiver<MaybeTlsStream>,
    stop: oneshot::Receiver<Duration>,
) {
    let mut stop = pin!(async move {
        let delay = stop.await.unwrap_or(Duration::ZERO);
        glommio::timer::sleep(delay).await;
    });
    loop {
        let msg = match select(rx.next(), stop.as_mut()).await {
            Either::Left((Some(Ok(msg)), _)) => msg,
            Either::Left((Some(Err(e)), _)) => {
                log::debug!("protoo read from {} ended: {e}", shared.url);
                break;
            }
            Either::Left((None, _)) | Either::Right(_) => break,
        };
        match msg {
            Message::Text(text) => shared.handle_text(text.as_str()),
            Message::Binary(b) => log::debug!("ignoring {}-byte binary frame", b.len()),
            Message::Close(frame) => {
                if shared.close_code.get().is_none() {
                    shared
                        .close_code
                        .set(frame.as_ref().map(|f| u16::from(f.code)));
                }
                log::debug!("server {} closed: {frame:?}", shared.url);
                // Keep reading: tungstenite flushes its close reply on the next read.
                shared.mark_closed();
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
    shared.mark_closed();
    let _ = shared.out.unbounded_send(Outgoing::Stop);
}

async fn write_loop(
    mut tx: WebSocketSender<MaybeTlsStream>,
    mut out: mpsc::UnboundedReceiver<Outgoing>,
) {
    while let Some(Outgoing::Frame(msg)) = out.next().await {
        let is_close = msg.is_close();
        if let Err(e) = tx.send(msg).await {
            log::debug!("protoo write failed: {e}");
            break;
        }
        if is_close {
            break;
        }
    }
}

fn handshake_error(e: tungstenite::Error) -> ClientError {
    match e {
        tungstenite::Error::Http(resp) => ClientError::Rejected {
            status: resp.status().as_u16(),
            body: resp
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default(),
        },
        tungstenite::Error::Io(e) => ClientError::Io(e),
        tungstenite::Error::Tls(e) => ClientError::Tls(e.to_string()),
        other => ClientError::Handshake(other.to_string()),
    }
}

impl ProtooClient {
    /// Connects to `ws://host:port/?roomId=..&peerId=..` (or `wss://`).
    ///
    /// Must run inside a glommio executor: it spawns the reader and writer tasks.
    pub async fn connect(url: &str, opts: ConnectOptions) -> Result<Self, ClientError> {
        with_timeout(opts.connect_timeout, Self::connect_inner(url, &opts))
            .await
            .unwrap_or(Err(ClientError::Timeout))
    }

    async fn connect_inner(url: &str, opts: &ConnectOptions) -> Result<Self, ClientError> {
        let mut request = url
            .into_client_request()
            .map_err(|e| ClientError::Url(format!("{url}: {e}")))?;
        let uri = request.uri().clone();
        let tls = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            _ => return Err(ClientError::Url(format!("{url}: scheme must be ws or wss"))),
        };
        let host = uri
            .host()
            .ok_or_else(|| ClientError::Url(format!("{url}: no host")))?;
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        if let Some(proto) = &opts.subprotocol {
            let value = HeaderValue::from_str(proto)
                .map_err(|e| ClientError::Url(format!("bad subprotocol {proto:?}: {e}")))?;
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", value);
        }
        let config = if tls {
            Some(tls::client_config(opts.insecure_tls, &opts.root_certs)?)
        } else {
            None
        };
        let stream = tls::connect_stream(host, port, config.as_ref(), opts.connect_timeout).await?;
        let (ws, _) = async_tungstenite::client_async(request, stream)
            .await
            .map_err(handshake_error)?;
        Ok(Self::start(url, ws, opts.request_timeout))
    }

    fn start(url: &str, ws: Ws, request_timeout: Duration) -> Self {
        let (out_tx, out_rx) = mpsc::unbounded();
        let (stop_tx, stop_rx) = oneshot::channel();
        let shared = Rc::new(Shared {
            url: url.to_owned(),
            out: out_tx,
            pending: RefCell::default(),
            next_seq: Cell::new(0),
            log: RefCell::default(),
            answered: RefCell::default(),
            auto_respond: RefCell::default(),
            closed: Cell::new(false),
            close_code: Cell::new(None),
            waiters: RefCell::default(),
            stop_reader: RefCell::new(Some(stop_tx)),
            request_timeout,
        });
        let (tx, rx) = ws.split();
        glommio::spawn_local(read_loop(shared.clone(), rx, stop_rx)).detach();
        glommio::spawn_local(write_loop(tx, out_rx)).detach();
        Self {
            handle: Rc::new(Handle { shared }),
        }
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// Sends a request and waits (default 20 s) for its response.
    pub async fn request(&self, method: &str, data: Value) -> Result<Value, RequestError> {
        self.request_with_timeout(method, data, self.shared().request_timeout)
            .await
    }

    pub async fn request_with_timeout(
        &self,
        method: &str,
        data: Value,
        timeout: Duration,
    ) -> Result<Value, RequestError> {
        let shared = self.shared();
        if shared.closed.get() {
            return Err(RequestError::Closed);
        }
        let (tx, rx) = oneshot::channel();
        let (id, seq) = shared.register(tx);
        let _guard = PendingGuard { shared, id, seq };
        let frame = json!({ "request": true, "id": id, "method": method, "data": data });
        if !shared.send_json(&frame) {
            return Err(RequestError::Closed);
        }
        match with_timeout(timeout, rx).await {
            None => Err(RequestError::Timeout),
            Some(Ok(result)) => result,
            Some(Err(oneshot::Canceled)) => Err(RequestError::Closed),
        }
    }

    /// Sends a client → server notification.
    pub fn notify(&self, method: &str, data: Value) {
        self.shared()
            .send_json(&json!({ "notification": true, "method": method, "data": data }));
    }

    /// Answers a server request: `Ok(data)` or `Err((errorCode, errorReason))`.
    pub fn respond(&self, id: u64, result: Result<Value, (u16, String)>) {
        self.shared().send_response(id, result);
    }

    /// Server requests with these methods get `{}` on arrival (they are still logged).
    /// Replaces the previous set, and also answers already logged, unanswered ones,
    /// so it is race-free to call after the requests may have arrived.
    pub fn set_auto_respond(&self, methods: &[&str]) {
        let shared = self.shared();
        *shared.auto_respond.borrow_mut() = methods.iter().map(|m| (*m).to_owned()).collect();
        let unanswered: Vec<u64> = {
            let answered = shared.answered.borrow();
            shared
                .log
                .borrow()
                .iter()
                .filter_map(|e| match &e.event {
                    ServerEvent::Request { id, method, .. }
                        if methods.contains(&method.as_str()) && !answered.contains(id) =>
                    {
                        Some(*id)
                    }
                    _ => None,
                })
                .collect()
        };
        for id in unanswered {
            shared.send_response(id, Ok(json!({})));
        }
    }

    /// Sends any text frame as is (for bad-input tests).
    pub fn send_text(&self, raw: &str) {
        self.shared().send(Message::text(raw));
    }

    /// Sends a close frame (code 1000); pending requests fail with [`RequestError::Closed`].
    pub fn close(&self) {
        self.shared().close_local(CLOSE_GRACE);
    }

    /// Drops the socket without a close frame, like a vanished network.
    pub fn abort(&self) {
        let shared = self.shared();
        shared.mark_closed();
        shared.stop_reader_after(Duration::ZERO);
        let _ = shared.out.unbounded_send(Outgoing::Stop);
    }

    /// True once the connection closed, from either side.
    pub fn closed(&self) -> bool {
        self.shared().closed.get()
    }

    /// Code of the first close frame the server sent (4000 = closed by protoo-server).
    pub fn close_code(&self) -> Option<u16> {
        self.shared().close_code.get()
    }

    /// Waits until the connection is closed; `false` on timeout.
    pub async fn wait_closed(&self, timeout: Duration) -> bool {
        let shared = self.shared();
        with_timeout(
            timeout,
            poll_fn(|cx| {
                if shared.closed.get() {
                    Poll::Ready(())
                } else {
                    shared.waiters.borrow_mut().push(cx.waker().clone());
                    Poll::Pending
                }
            }),
        )
        .await
        .is_some()
    }

    /// Polls `check` on every new event until it yields; `None` on timeout, or
    /// as soon as the connection is closed and `check` found nothing.
    async fn wait_until<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&Shared) -> Option<T>,
    ) -> Option<T> {
        let shared = self.shared();
        with_timeout(
            timeout,
            poll_fn(|cx| {
                if let Some(v) = check(shared) {
                    return Poll::Ready(Some(v));
                }
                if shared.closed.get() {
                    return Poll::Ready(None);
                }
                shared.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }),
        )
        .await
        .flatten()
    }

    /// Takes the oldest event not yet taken.
    pub async fn next_event(&self, timeout: Duration) -> Option<ServerEvent> {
        self.wait_for(timeout, |_| true).await
    }

    /// Takes the oldest not-yet-taken event matching `pred`; others stay queued.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&ServerEvent) -> bool,
    ) -> Option<ServerEvent> {
        self.wait_until(timeout, |shared| {
            let mut log = shared.log.borrow_mut();
            let entry = log.iter_mut().find(|e| !e.taken && pred(&e.event))?;
            entry.taken = true;
            Some(entry.event.clone())
        })
        .await
    }

    /// Waits for the first matching event in the whole log, taken or not, without taking it.
    pub async fn wait_logged(
        &self,
        timeout: Duration,
        pred: impl Fn(&ServerEvent) -> bool,
    ) -> Option<ServerEvent> {
        self.wait_until(timeout, |shared| {
            let log = shared.log.borrow();
            log.iter().find(|e| pred(&e.event)).map(|e| e.event.clone())
        })
        .await
    }

    /// Every event received so far, in arrival order, taken or not.
    pub fn events(&self) -> Vec<ServerEvent> {
        self.shared()
            .log
            .borrow()
            .iter()
            .map(|e| e.event.clone())
            .collect()
    }

    /// Events not yet taken by [`Self::next_event`] / [`Self::wait_for`].
    pub fn queued_events(&self) -> Vec<ServerEvent> {
        self.shared()
            .log
            .borrow()
            .iter()
            .filter(|e| !e.taken)
            .map(|e| e.event.clone())
            .collect()
    }

    /// Drops events already taken from the log, so a long-lived client (the load tool) that takes
    /// every event does not keep them all; [`Self::events`] then no longer lists them.
    pub fn forget_taken(&self) {
        let shared = self.shared();
        shared.log.borrow_mut().retain(|e| !e.taken);
    }

    /// Number of requests awaiting a response.
    pub fn pending_requests(&self) -> usize {
        self.shared().pending.borrow().len()
    }

    pub fn url(&self) -> &str {
        &self.shared().url
    }
}

impl fmt::Debug for ProtooClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = self.shared();
        f.debug_struct("ProtooClient")
            .field("url", &shared.url)
            .field("closed", &shared.closed.get())
            .field("close_code", &shared.close_code.get())
            .field("pending", &shared.pending.borrow().len())
            .field("events", &shared.log.borrow().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truthiness_follows_javascript() {
        assert!(truthy(Some(&json!(true))));
        assert!(truthy(Some(&json!(1))));
        assert!(truthy(Some(&json!("x"))));
        assert!(truthy(Some(&json!({}))));
        assert!(!truthy(Some(&json!(false))));
        assert!(!truthy(Some(&json!(0))));
        assert!(!truthy(Some(&json!(""))));
        assert!(!truthy(Some(&Value::Null)));
        assert!(!truthy(None));
    }

    #[test]
    fn missing_or_falsy_data_is_empty_object() {
        let mut obj = json!({ "data": null }).as_object().cloned().unwrap();
        assert_eq!(take_data(&mut obj), json!({}));
        let mut obj = json!({ "data": [1, 2] }).as_object().cloned().unwrap();
        assert_eq!(take_data(&mut obj), json!([1, 2]));
        let mut obj = Map::new();
        assert_eq!(take_data(&mut obj), json!({}));
    }

    #[test]
    fn ids_must_be_non_negative_integers() {
        let obj = |v: Value| json!({ "id": v }).as_object().cloned().unwrap();
        assert_eq!(numeric_id(&obj(json!(4711))), Some(4711));
        assert_eq!(numeric_id(&obj(json!("4711"))), None);
        assert_eq!(numeric_id(&obj(json!(-1))), None);
        assert_eq!(numeric_id(&obj(json!(1.5))), None);
    }
}
