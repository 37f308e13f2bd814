//! The listener: TLS (unless --no-tls), then one HTTP request head that is either a protoo
//! WebSocket upgrade or a plain GET.

use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use async_tungstenite::WebSocketStream;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::TlsAcceptor;
use glommio::net::{TcpListener, TcpStream};

use super::connection;
use super::http::{self, RequestHead};
use super::io::{Io, Prefixed};
use crate::app::{App, Counters};

/// The demo server's frame/message cap.
pub const MAX_MESSAGE: usize = 960_000;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `fut` for at most `limit`.
pub async fn with_timeout<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    match futures::future::select(Box::pin(fut), Box::pin(glommio::timer::sleep(limit))).await {
        futures::future::Either::Left((value, _)) => Some(value),
        futures::future::Either::Right(_) => None,
    }
}

pub async fn serve(app: Rc<App>, listener: TcpListener, tls: Option<TlsAcceptor>) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                Counters::bump(&app.counters.connections);
                glommio::spawn_local(handle(app.clone(), stream, tls.clone())).detach();
            }
            Err(e) => {
                log::warn!("accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle(app: Rc<App>, stream: TcpStream, tls: Option<TlsAcceptor>) {
    let _ = stream.set_nodelay(true);
    let mut io: Box<dyn Io> = match tls {
        Some(acceptor) => match with_timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Some(Ok(s)) => Box::new(s),
            Some(Err(e)) => {
                log::debug!("TLS handshake failed: {e}");
                return;
            }
            None => return,
        },
        None => Box::new(stream),
    };
    let Some((head, buf)) = with_timeout(HANDSHAKE_TIMEOUT, read_head(&mut io))
        .await
        .flatten()
    else {
        return;
    };
    if head.is_websocket_upgrade() {
        upgrade(app, io, head, buf).await;
    } else {
        let mut response = answer_http(&app, &head).await;
        if head.method == "HEAD" {
            // Same head as GET, no content (RFC 9110 §9.3.2).
            if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
                response.truncate(end + 4);
            }
        }
        let _ = io.write_all(&response).await;
        let _ = io.flush().await;
        let _ = io.close().await;
    }
}

/// Reads until a complete request head (or gives up on junk or an oversized head).
async fn read_head(io: &mut Box<dyn Io>) -> Option<(RequestHead, Vec<u8>)> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    loop {
        let n = io.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        match http::parse_head(&buf) {
            Ok(Some(head)) => return Some((head, buf)),
            Ok(None) if buf.len() < http::MAX_HEAD => continue,
            Ok(None) => {
                let _ = io
                    .write_all(&http::text_response(
                        431,
                        "Request Header Fields Too Large",
                        "request head too large\n",
                    ))
                    .await;
                return None;
            }
            Err(e) => {
                let _ = io
                    .write_all(&http::text_response(400, "Bad Request", &format!("{e}\n")))
                    .await;
                return None;
            }
        }
    }
}

async fn upgrade(app: Rc<App>, mut io: Box<dyn Io>, head: RequestHead, buf: Vec<u8>) {
    let key = match head.check_protoo_upgrade() {
        Ok(key) => key.to_string(),
        Err((status, reason)) => {
            Counters::bump(&app.counters.refused_upgrades);
            let _ = io
                .write_all(&http::text_response(status, reason, &format!("{reason}\n")))
                .await;
            let _ = io.close().await;
            return;
        }
    };
    if io
        .write_all(http::switching_protocols(&key).as_bytes())
        .await
        .is_err()
    {
        return;
    }
    let rest = buf[head.head_len..].to_vec();
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let ws =
        WebSocketStream::from_raw_socket(Prefixed::new(rest, io), Role::Server, Some(config)).await;
    let query = |k: &str| head.query.get(k).cloned().unwrap_or_default();
    connection::run(
        app,
        ws,
        query("roomId"),
        query("peerId"),
        query("consumerReplicas"),
    )
    .await;
}

async fn answer_http(app: &App, head: &RequestHead) -> Vec<u8> {
    if head.method != "GET" && head.method != "HEAD" {
        return http::text_response(405, "Method Not Allowed", "only GET is served here\n");
    }
    match head.path.as_str() {
        "/metrics" => http::response(
            200,
            "OK",
            "text/plain; version=0.0.4",
            app.metrics().await.as_bytes(),
        ),
        "/health" => http::text_response(200, "OK", "ok\n"),
        path => match &app.config.web_root {
            Some(root) => http::static_file(root, path),
            None if path == "/" => http::response(
                200,
                "OK",
                "text/html; charset=utf-8",
                b"<!doctype html><title>Shardcast</title><p>Shardcast is running. Start it with \
                  <code>--web-root</code> pointing at the built web client to serve it here.</p>",
            ),
            None => http::text_response(404, "Not Found", "not found\n"),
        },
    }
}
