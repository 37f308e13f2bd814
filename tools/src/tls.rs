//! TCP/TLS plumbing shared by the protoo client and [`crate::http::raw_http`].

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::io::{AsyncRead, AsyncWrite};
use futures_rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use futures_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use futures_rustls::rustls::client::WebPkiServerVerifier;
use futures_rustls::rustls::crypto::{self, CryptoProvider};
use futures_rustls::rustls::{self, ClientConfig, DigitallySignedStruct, RootCertStore};
use futures_rustls::TlsConnector;
use glommio::net::TcpStream;

use crate::protoo::ClientError;
use crate::util::with_timeout;

/// Accepts any server certificate, because test servers use throw-away self-signed ones.
///
/// Handshake signatures are still checked with the provider's algorithms, so a peer
/// that cannot prove possession of the certificate's key is still refused.
#[derive(Debug)]
pub struct AcceptAnyServerCert {
    provider: Arc<CryptoProvider>,
}

impl AcceptAnyServerCert {
    /// A verifier using `provider`'s signature algorithms.
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        Self { provider }
    }
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A rustls client config on the ring provider.
///
/// `insecure` accepts any certificate; otherwise the server must chain to one of
/// `roots` (DER certificates), as there is no system trust store on test machines.
pub fn client_config(insecure: bool, roots: &[Vec<u8>]) -> Result<ClientConfig, ClientError> {
    let provider = Arc::new(crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    let config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert::new(provider)))
            .with_no_client_auth()
    } else {
        let mut store = RootCertStore::empty();
        for der in roots {
            store
                .add(CertificateDer::from(der.clone()))
                .map_err(|e| ClientError::Tls(format!("bad root certificate: {e}")))?;
        }
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider)
            .build()
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        builder.with_webpki_verifier(verifier).with_no_client_auth()
    };
    Ok(config)
}

/// A plain or TLS TCP stream, so the WebSocket layer has a single concrete type.
pub(crate) enum MaybeTlsStream {
    Plain(TcpStream),
    Tls(Box<futures_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for MaybeTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_close(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

/// Resolves `host` (brackets around IPv6 literals allowed) to socket addresses.
fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, ClientError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = (bare, port)
        .to_socket_addrs()
        .map_err(|e| ClientError::Url(format!("cannot resolve {host}: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(ClientError::Url(format!("{host} resolves to nothing")));
    }
    Ok(addrs)
}

/// Connects to the first reachable address of `host:port`, then runs the TLS
/// handshake when `tls` is set. `timeout` bounds each TCP attempt.
pub(crate) async fn connect_stream(
    host: &str,
    port: u16,
    tls: Option<&ClientConfig>,
    timeout: Duration,
) -> Result<MaybeTlsStream, ClientError> {
    let mut last_err = None;
    let mut tcp = None;
    for addr in resolve(host, port)? {
        match with_timeout(timeout, TcpStream::connect(addr)).await {
            Some(Ok(s)) => {
                tcp = Some(s);
                break;
            }
            Some(Err(e)) => last_err = Some(ClientError::Io(io::Error::other(e.to_string()))),
            None => last_err = Some(ClientError::Timeout),
        }
    }
    let Some(tcp) = tcp else {
        return Err(last_err.unwrap_or(ClientError::Timeout));
    };
    // Latency matters more than throughput for signalling.
    if let Err(e) = tcp.set_nodelay(true) {
        log::debug!("set_nodelay failed: {e}");
    }
    let Some(config) = tls else {
        return Ok(MaybeTlsStream::Plain(tcp));
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(bare.to_owned())
        .map_err(|e| ClientError::Tls(format!("invalid server name {host}: {e}")))?;
    let stream = TlsConnector::from(Arc::new(config.clone()))
        .connect(name, tcp)
        .await
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    Ok(MaybeTlsStream::Tls(Box::new(stream)))
}

/// Same as [`connect_stream`] for a known address (no name resolution); the TLS
/// server name is the IP address, which only matters for certificate checks.
pub(crate) async fn connect_addr(
    addr: SocketAddr,
    tls: Option<&ClientConfig>,
    timeout: Duration,
) -> Result<MaybeTlsStream, ClientError> {
    connect_stream(&addr.ip().to_string(), addr.port(), tls, timeout).await
}
