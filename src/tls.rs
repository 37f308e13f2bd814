//! TLS for the signalling listener: the operator's PEM files, or a self-signed certificate made at
//! start (the demo client insists on wss://).

use std::path::Path;
use std::sync::Arc;

use futures_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use futures_rustls::rustls::{self, ServerConfig};
use sha2::{Digest, Sha256};

/// A TLS server configuration plus what to tell the operator about it.
pub struct Tls {
    pub config: Arc<ServerConfig>,
    pub description: String,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn build(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, String> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("invalid certificate/key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn sha256_fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Loads the certificate chain and key from PEM files.
pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Tls, String> {
    let cert_pem = std::fs::read(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
    let key_pem = std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let first = certs
        .first()
        .ok_or_else(|| format!("{}: no certificate found", cert.display()))?;
    let fingerprint = sha256_fingerprint(first);
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| format!("{}: {e}", key.display()))?
        .ok_or_else(|| format!("{}: no private key found", key.display()))?;
    Ok(Tls {
        config: build(certs, key)?,
        description: format!("certificate {} (sha-256 {fingerprint})", cert.display()),
    })
}

/// Generates a self-signed certificate for localhost and the given names, writes it to a temp
/// directory (so a browser or curl can be pointed at it) and uses it.
pub fn self_signed(extra_names: &[String]) -> Result<Tls, String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    names.extend(extra_names.iter().cloned());
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let params = rcgen::CertificateParams::new(names).map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("shardcast-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    let _ = std::fs::write(&cert_path, cert.pem());
    let _ = std::fs::write(&key_path, key.serialize_pem());
    let der = cert.der().clone();
    let fingerprint = sha256_fingerprint(&der);
    let key_der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| e.to_string())?;
    Ok(Tls {
        config: build(vec![der], key_der)?,
        description: format!(
            "self-signed certificate {} (sha-256 {fingerprint})",
            cert_path.display()
        ),
    })
}
