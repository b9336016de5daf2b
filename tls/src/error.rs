use std::io;
use std::path::PathBuf;

/// Why TLS could not be set up. Messages name the file at fault and never carry key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{path}: no usable PEM certificate ({reason})")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{path}: no usable PEM private key ({reason}); PKCS#8, RSA or SEC1 expected")]
    BadPrivateKey { path: PathBuf, reason: String },
    #[error("{cert} and {key} do not form a usable certificate and key: {source}")]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("cannot build the TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("cannot create a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: the certificate just issued does not verify against the CA: {source}")]
    IssuedDoesNotVerify {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("the system clock is outside the range certificates can express")]
    ClockOutOfRange,
    #[error("invalid CA fingerprint {0:?}: expected a SHA-256 as 64 hex digits")]
    BadFingerprint(String),
    #[error("invalid subject alternative name {0:?}: expected a host name or an IP address")]
    BadSubjectAltName(String),
}
