//! One-shot raw HTTP/1.1 exchanges, for testing what the server does with
//! requests a WebSocket library would never send (refused upgrades, plain GETs).

use std::net::SocketAddr;
use std::time::Duration;

use futures::io::{AsyncReadExt, AsyncWriteExt};

use crate::protoo::ClientError;
use crate::tls::{self, MaybeTlsStream};
use crate::util::with_timeout;

/// `(status, headers in order, body)`; a chunked body is returned de-chunked.
pub type RawHttpResponse = (u16, Vec<(String, String)>, Vec<u8>);

/// Default bound for a whole [`raw_http`] exchange.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `request` verbatim (e.g. `"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"`) and
/// reads one response. With `tls`, any server certificate is accepted.
///
/// The body ends at `Content-Length`, at the end of a chunked body, or at EOF;
/// 1xx/204/304 responses (a `101` upgrade included) have none, so this returns
/// right after their head.
pub async fn raw_http(
    addr: SocketAddr,
    tls: bool,
    request: &str,
) -> Result<RawHttpResponse, ClientError> {
    raw_http_with_timeout(addr, tls, request, DEFAULT_HTTP_TIMEOUT).await
}

pub async fn raw_http_with_timeout(
    addr: SocketAddr,
    tls: bool,
    request: &str,
    timeout: Duration,
) -> Result<RawHttpResponse, ClientError> {
    with_timeout(timeout, exchange(addr, tls, request, timeout))
        .await
        .unwrap_or(Err(ClientError::Timeout))
}

async fn exchange(
    addr: SocketAddr,
    tls: bool,
    request: &str,
    timeout: Duration,
) -> Result<RawHttpResponse, ClientError> {
    let config = if tls {
        Some(tls::client_config(true, &[])?)
    } else {
        None
    };
    let mut stream = tls::connect_addr(addr, config.as_ref(), timeout).await?;
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;

    let mut buf = Vec::new();
    let (status, headers, head_len) = loop {
        if let Some(head) = parse_head(&buf)? {
            break head;
        }
        if read_more(&mut stream, &mut buf).await? == 0 {
            return Err(ClientError::Http(format!(
                "connection closed after {} bytes, before the end of the response head",
                buf.len()
            )));
        }
    };
    let mut body = buf.split_off(head_len);
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };

    if (100..200).contains(&status) || status == 204 || status == 304 {
        body.clear();
    } else if header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            if let Some(decoded) = dechunk(&body)? {
                body = decoded;
                break;
            }
            if read_more(&mut stream, &mut body).await? == 0 {
                return Err(ClientError::Http("EOF inside chunked body".into()));
            }
        }
    } else if let Some(len) = header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| ClientError::Http(format!("bad Content-Length {len:?}")))?;
        while body.len() < len {
            if read_more(&mut stream, &mut body).await? == 0 {
                return Err(ClientError::Http(format!(
                    "EOF after {} of {len} body bytes",
                    body.len()
                )));
            }
        }
        body.truncate(len);
    } else {
        while read_more(&mut stream, &mut body).await? != 0 {}
    }
    Ok((status, headers, body))
}

async fn read_more(stream: &mut MaybeTlsStream, buf: &mut Vec<u8>) -> Result<usize, ClientError> {
    let mut chunk = [0u8; 8192];
    let n = match stream.read(&mut chunk).await {
        // TLS peers often close without close_notify; for a test tool that is just EOF.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
        other => other?,
    };
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

type Head = (u16, Vec<(String, String)>, usize);

/// `Ok(None)` while the head is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, ClientError> {
    let mut storage = [httparse::EMPTY_HEADER; 128];
    let mut resp = httparse::Response::new(&mut storage);
    match resp.parse(buf) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(len)) => {
            let status = resp.code.unwrap_or_default();
            let headers = resp
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            Ok(Some((status, headers, len)))
        }
        Err(e) => Err(ClientError::Http(e.to_string())),
    }
}

/// Decodes a complete chunked body; `Ok(None)` while incomplete. Trailers are skipped.
fn dechunk(mut data: &[u8]) -> Result<Option<Vec<u8>>, ClientError> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&data[..line_end])
            .map_err(|_| ClientError::Http("non-UTF-8 chunk size".into()))?;
        let size_str = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_str, 16)
            .map_err(|_| ClientError::Http(format!("bad chunk size {size_str:?}")))?;
        data = &data[line_end + 2..];
        if size == 0 {
            // Trailers end with an empty line; we only need to know they are complete.
            let done = data.starts_with(b"\r\n") || data.windows(4).any(|w| w == b"\r\n\r\n");
            return Ok(done.then_some(out));
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks_complete_bodies_only() {
        let full = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\n\r\n";
        assert_eq!(dechunk(full).unwrap().unwrap(), b"Wikipedia");
        assert_eq!(dechunk(&full[..full.len() - 2]).unwrap(), None);
        assert_eq!(dechunk(b"4\r\nWi").unwrap(), None);
        assert!(dechunk(b"zz\r\n").is_err());
    }

    #[test]
    fn parses_heads() {
        assert_eq!(parse_head(b"HTTP/1.1 400 Bad").unwrap(), None);
        let raw = b"HTTP/1.1 403 Forbidden\r\nX-A: b\r\n\r\nbody";
        let (status, headers, len) = parse_head(raw).unwrap().unwrap();
        assert_eq!(status, 403);
        assert_eq!(headers, vec![("X-A".to_owned(), "b".to_owned())]);
        assert_eq!(&raw[len..], b"body");
    }
}
