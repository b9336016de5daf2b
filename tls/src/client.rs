//! What a client (CLI, nodelet, controller) trusts when it talks to a herd server over
//! https: a CA file, a CA pinned by its fingerprint as a join key carries it, or the
//! system's roots.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore,
    SignatureScheme,
};
use sha2::{Digest, Sha256};

use crate::server::provider;
use crate::{TlsError, files};

/// A SHA-256 of a certificate's DER, as in a join key or `openssl x509 -fingerprint -sha256`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub fn of(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }
}

impl fmt::Display for Fingerprint {
    /// 64 lower-case hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = TlsError;

    /// Hex in either case, with or without the colons OpenSSL prints between bytes.
    fn from_str(text: &str) -> Result<Self, TlsError> {
        let bad = || TlsError::BadFingerprint(text.to_owned());
        let digits: Vec<u8> = text.bytes().filter(|&b| b != b':').collect();
        if digits.len() != 64 {
            return Err(bad());
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
        }
        Ok(Self(bytes))
    }
}

/// SHA-256 of a certificate's DER as 64 lower-case hex digits.
pub fn sha256_hex(der: &[u8]) -> String {
    Fingerprint::of(der).to_string()
}

/// Which certificates a client accepts from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientTrust {
    /// The CAs in a PEM file (`--ca-cert FILE`), and only those.
    CaFile(PathBuf),
    /// The CA whose DER has this SHA-256, which the server sends after its own
    /// certificate; the server's certificate must verify against it.
    PinnedCa(Fingerprint),
    /// The public roots built into the binary (Mozilla's list, from webpki-roots).
    SystemRoots,
}

impl ClientTrust {
    /// The most specific of what was given: a CA file, then a pinned fingerprint, then the
    /// public roots.
    pub fn choose(ca_file: Option<PathBuf>, fingerprint: Option<Fingerprint>) -> Self {
        match (ca_file, fingerprint) {
            (Some(path), _) => Self::CaFile(path),
            (None, Some(pin)) => Self::PinnedCa(pin),
            (None, None) => Self::SystemRoots,
        }
    }

    /// A rustls client configuration speaking HTTP/1.1, as the server does.
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let mut config = match self {
            Self::CaFile(path) => {
                let mut roots = RootCertStore::empty();
                for cert in files::parse_certificates(path, &files::read(path)?)? {
                    roots.add(cert).map_err(|e| TlsError::BadCertificate {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            Self::PinnedCa(pin) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedCaVerifier {
                    pin: *pin,
                    provider,
                }))
                .with_no_client_auth(),
            Self::SystemRoots => {
                let roots = RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                builder.with_root_certificates(roots).with_no_client_auth()
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// Makes `builder` use this trust for https URLs. A refused server certificate then
    /// fails the request with a connect error whose source chain says why.
    pub fn apply(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, TlsError> {
        Ok(builder.use_preconfigured_tls(self.client_config()?))
    }
}

/// The client configuration for a backend herd routes to over https (a
/// node's `spec.url`): the public roots, plus the CAs in `extra_pem` (the
/// node's `spec.caCert`, `""` for none). The error says what is wrong with
/// `extra_pem` without quoting it.
pub fn backend_client_config(extra_pem: &str) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if !extra_pem.is_empty() {
        use rustls::pki_types::pem::PemObject;
        let certs = CertificateDer::pem_slice_iter(extra_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| "the PEM does not parse".to_owned())?;
        if certs.is_empty() {
            return Err("it holds no CERTIFICATE section".to_owned());
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("a certificate cannot be used as a CA: {e}"))?;
        }
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Why a server's certificate was refused before the usual chain checks.
#[derive(Clone, thiserror::Error)]
pub enum TrustError {
    #[error(
        "certificate not trusted: fingerprint mismatch: none of the {sent} certificate(s) the \
         server sent is the CA with SHA-256 {pin} (is this the right server, and does it send \
         its CA after its own certificate?)"
    )]
    FingerprintMismatch { pin: Fingerprint, sent: usize },
}

// rustls shows a custom certificate error with `{:?}`; make that the readable message.
impl fmt::Debug for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Accepts a server whose chain contains the pinned CA and whose own certificate verifies
/// against that CA (signature, validity, name). As k3s does with the CA hash in its join
/// token, this lets a node verify a self-signed server on first contact without a copied
/// CA file.
#[derive(Debug)]
struct PinnedCaVerifier {
    pin: Fingerprint,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates
            .iter()
            .find(|cert| Fingerprint::of(cert) == self.pin)
        else {
            let error = TrustError::FingerprintMismatch {
                pin: self.pin,
                sent: intermediates.len() + 1,
            };
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(error)),
            )));
        };
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
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
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn fingerprint_parsing_table() {
        let upper_colons = HEX
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(":");
        let cases: Vec<(String, bool)> = vec![
            (HEX.to_owned(), true),
            (HEX.to_uppercase(), true),
            (upper_colons, true),
            (HEX[..62].to_owned(), false),
            (format!("{HEX}00"), false),
            (format!("{}zz", &HEX[..62]), false),
            (format!("{}+1", &HEX[..61]), false),
            (String::new(), false),
            (format!("{}é", &HEX[..62]), false),
        ];
        for (text, ok) in cases {
            let parsed = text.parse::<Fingerprint>();
            assert_eq!(parsed.is_ok(), ok, "{text:?}");
            if let Ok(fp) = parsed {
                assert_eq!(fp.to_string(), HEX);
            }
        }
    }

    #[test]
    fn fingerprint_is_sha256_of_the_bytes() {
        assert_eq!(sha256_hex(b"test"), HEX);
    }

    #[test]
    fn choose_prefers_the_most_specific() {
        let pin: Fingerprint = HEX.parse().expect("valid");
        let file = PathBuf::from("/ca.crt");
        let cases = [
            (
                Some(file.clone()),
                Some(pin),
                ClientTrust::CaFile(file.clone()),
            ),
            (Some(file.clone()), None, ClientTrust::CaFile(file.clone())),
            (None, Some(pin), ClientTrust::PinnedCa(pin)),
            (None, None, ClientTrust::SystemRoots),
        ];
        for (ca_file, fingerprint, want) in cases {
            assert_eq!(ClientTrust::choose(ca_file, fingerprint), want);
        }
    }

    #[test]
    fn every_trust_builds_a_config() {
        let pin: Fingerprint = HEX.parse().expect("valid");
        for trust in [ClientTrust::PinnedCa(pin), ClientTrust::SystemRoots] {
            let config = trust.client_config().expect("config");
            assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        }
        let missing = ClientTrust::CaFile(PathBuf::from("/nonexistent/ca.crt"));
        let err = missing.client_config().expect_err("no file");
        assert!(err.to_string().contains("/nonexistent/ca.crt"), "{err}");
    }
}
