//! The shard's DTLS certificate: one self-signed ECDSA P-256 certificate per shard, like mediasoup's
//! one per worker, and the fingerprints advertised in `dtlsParameters`.

use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

/// A fingerprint as it appears in `dtlsParameters.fingerprints`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DtlsFingerprint {
    pub algorithm: String,
    pub value: String,
}

/// Certificate and key, both DER, in the shape dimpl takes.
#[derive(Clone)]
pub struct DtlsCertificate {
    pub certificate_der: Vec<u8>,
    pub private_key_der: Vec<u8>,
}

impl std::fmt::Debug for DtlsCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsCertificate")
            .field("certificate_der", &self.certificate_der.len())
            .finish_non_exhaustive()
    }
}

impl DtlsCertificate {
    /// A fresh self-signed ECDSA P-256 / SHA-256 certificate (what Chrome and mediasoup use).
    pub fn generate() -> Result<Self, rcgen::Error> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = rcgen::CertificateParams::new(vec!["shardcast".to_string()])?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "shardcast");
        // A random serial: Firefox refuses two certificates with the same issuer and serial.
        let serial: [u8; 16] = rand::random();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let cert = params.self_signed(&key)?;
        Ok(Self {
            certificate_der: cert.der().to_vec(),
            private_key_der: key.serialize_der(),
        })
    }

    /// The fingerprints for sha-1, sha-224, sha-384, sha-512 and sha-256, in that order:
    /// mediasoup-client writes only the *last* entry into the SDP, so sha-256 goes last.
    pub fn fingerprints(&self) -> Vec<DtlsFingerprint> {
        let der = &self.certificate_der;
        vec![
            fingerprint("sha-1", &Sha1::digest(der)),
            fingerprint("sha-224", &Sha224::digest(der)),
            fingerprint("sha-384", &Sha384::digest(der)),
            fingerprint("sha-512", &Sha512::digest(der)),
            fingerprint("sha-256", &Sha256::digest(der)),
        ]
    }

    /// The fingerprint of an arbitrary DER certificate with the named algorithm (to check the
    /// peer's certificate against what it announced). `None` for an unknown algorithm.
    pub fn fingerprint_of(algorithm: &str, der: &[u8]) -> Option<String> {
        let digest: Vec<u8> = match algorithm.to_ascii_lowercase().as_str() {
            "sha-1" => Sha1::digest(der).to_vec(),
            "sha-224" => Sha224::digest(der).to_vec(),
            "sha-256" => Sha256::digest(der).to_vec(),
            "sha-384" => Sha384::digest(der).to_vec(),
            "sha-512" => Sha512::digest(der).to_vec(),
            _ => return None,
        };
        Some(hex_colon(&digest))
    }
}

fn fingerprint(algorithm: &str, digest: &[u8]) -> DtlsFingerprint {
    DtlsFingerprint {
        algorithm: algorithm.to_string(),
        value: hex_colon(digest),
    }
}

/// Uppercase hex pairs joined by colons, as in SDP `a=fingerprint`.
fn hex_colon(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&format!("{b:02X}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_have_the_right_lengths_and_sha256_last() {
        let cert = DtlsCertificate::generate().unwrap();
        let fps = cert.fingerprints();
        let lens: Vec<(String, usize)> = fps
            .iter()
            .map(|f| (f.algorithm.clone(), f.value.split(':').count()))
            .collect();
        assert_eq!(
            lens,
            vec![
                ("sha-1".into(), 20),
                ("sha-224".into(), 28),
                ("sha-384".into(), 48),
                ("sha-512".into(), 64),
                ("sha-256".into(), 32)
            ]
        );
        let last = fps.last().unwrap();
        assert_eq!(
            Some(last.value.clone()),
            DtlsCertificate::fingerprint_of("SHA-256", &cert.certificate_der)
        );
        assert!(last
            .value
            .chars()
            .all(|c| c == ':' || c.is_ascii_digit() || ('A'..='F').contains(&c)));
        assert_ne!(
            DtlsCertificate::generate().unwrap().fingerprints(),
            fps,
            "each certificate is fresh"
        );
    }
}
