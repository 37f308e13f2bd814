//! The HTTP side of the signalling listener: the request head, the WebSocket upgrade check, and
//! plain GET responses (web client files, /metrics, /health).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// Longest request head we accept (the demo's upgrade requests are well under 2 KiB).
pub const MAX_HEAD: usize = 16 * 1024;

/// A parsed HTTP request head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    /// Lower-cased header names.
    pub headers: HashMap<String, String>,
    /// Bytes of the request head (anything after it belongs to the body or the next protocol).
    pub head_len: usize,
}

/// Parses a complete head from `buf`; `Ok(None)` means more bytes are needed.
pub fn parse_head(buf: &[u8]) -> Result<Option<RequestHead>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    let status = request.parse(buf).map_err(|e| e.to_string())?;
    let head_len = match status {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let target = request.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    let query = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let headers = request
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect();
    Ok(Some(RequestHead {
        method: request.method.unwrap_or("").to_string(),
        path: path.to_string(),
        query,
        headers,
        head_len,
    }))
}

impl RequestHead {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.header(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    /// Is this a WebSocket upgrade request?
    pub fn is_websocket_upgrade(&self) -> bool {
        self.header_has_token("upgrade", "websocket")
    }

    /// Validates the upgrade as protoo-server and the demo server do. `Ok(key)` is the client's
    /// Sec-WebSocket-Key; `Err((status, reason))` is the refusal to send.
    pub fn check_protoo_upgrade(&self) -> Result<&str, (u16, &'static str)> {
        if self.method != "GET" {
            return Err((405, "Method Not Allowed"));
        }
        if !self.header_has_token("connection", "upgrade")
            || self.header("sec-websocket-version") != Some("13")
        {
            return Err((400, "invalid WebSocket upgrade request"));
        }
        let Some(key) = self.header("sec-websocket-key").filter(|k| !k.is_empty()) else {
            return Err((400, "missing Sec-WebSocket-Key"));
        };
        if !self.header_has_token("sec-websocket-protocol", "protoo") {
            return Err((403, "invalid/missing Sec-WebSocket-Protocol"));
        }
        let room = self.query.get("roomId").map(String::as_str).unwrap_or("");
        let peer = self.query.get("peerId").map(String::as_str).unwrap_or("");
        if room.is_empty() || peer.is_empty() {
            return Err((400, "Connection request without roomId and/or peerId"));
        }
        if room.len() > 256 || peer.len() > 256 {
            return Err((400, "roomId and peerId must be at most 256 bytes"));
        }
        Ok(key)
    }
}

/// The 101 answer that completes the upgrade, echoing the `protoo` subprotocol.
pub fn switching_protocols(key: &str) -> String {
    let accept = async_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: protoo\r\n\r\n"
    )
}

/// A complete HTTP/1.1 response (the connection closes after it).
pub fn response(status: u16, reason: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-cache\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

pub fn text_response(status: u16, reason: &str, body: &str) -> Vec<u8> {
    response(status, reason, "text/plain; charset=utf-8", body.as_bytes())
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// Resolves a URL path inside `root`, refusing anything that would escape it.
pub fn resolve_static(root: &Path, url_path: &str) -> Option<PathBuf> {
    let decoded = percent_encoding::percent_decode_str(url_path)
        .decode_utf8()
        .ok()?;
    let relative = decoded.trim_start_matches('/');
    let relative = if relative.is_empty() {
        "index.html"
    } else {
        relative
    };
    let candidate = Path::new(relative);
    if candidate
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let full = root.join(candidate);
    if full.is_dir() {
        return Some(full.join("index.html"));
    }
    Some(full)
}

/// Serves a file of the web root, or 404.
pub fn static_file(root: &Path, url_path: &str) -> Vec<u8> {
    match resolve_static(root, url_path).and_then(|p| std::fs::read(&p).ok().map(|b| (p, b))) {
        Some((path, body)) => response(200, "OK", content_type(&path), &body),
        None => text_response(404, "Not Found", "not found\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &str = "GET /?roomId=r1&peerId=p%201&consumerReplicas=undefined HTTP/1.1\r\n\
        Host: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Protocol: protoo\r\n\r\n";

    #[test]
    fn parses_an_upgrade_and_accepts_it() {
        assert!(parse_head(&UPGRADE.as_bytes()[..40]).unwrap().is_none());
        let head = parse_head(UPGRADE.as_bytes()).unwrap().unwrap();
        assert_eq!(head.head_len, UPGRADE.len());
        assert_eq!(head.query["peerId"], "p 1");
        assert_eq!(head.query["consumerReplicas"], "undefined");
        assert!(head.is_websocket_upgrade());
        assert_eq!(head.check_protoo_upgrade(), Ok("dGhlIHNhbXBsZSBub25jZQ=="));
        // RFC 6455's sample key and accept value.
        assert!(switching_protocols("dGhlIHNhbXBsZSBub25jZQ==")
            .contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    }

    #[test]
    fn refuses_without_protoo_or_ids() {
        let no_proto = UPGRADE.replace("Sec-WebSocket-Protocol: protoo\r\n", "");
        let head = parse_head(no_proto.as_bytes()).unwrap().unwrap();
        assert_eq!(head.check_protoo_upgrade().unwrap_err().0, 403);
        let no_room = UPGRADE.replace("roomId=r1&", "");
        let head = parse_head(no_room.as_bytes()).unwrap().unwrap();
        assert_eq!(head.check_protoo_upgrade().unwrap_err().0, 400);
    }

    #[test]
    fn static_paths_cannot_escape_the_root() {
        let root = Path::new("/srv/web");
        assert_eq!(resolve_static(root, "/../etc/passwd"), None);
        assert_eq!(resolve_static(root, "/%2e%2e/etc/passwd"), None);
        assert_eq!(
            resolve_static(root, "/app.js"),
            Some(PathBuf::from("/srv/web/app.js"))
        );
    }
}
