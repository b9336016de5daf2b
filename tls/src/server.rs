use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::TlsError;
use crate::reload::ReloadingCert;

/// How often a handshake may look at the certificate files' metadata. Renewals are
/// planned days ahead, so a few seconds' delay costs nothing, and one `stat` per file every
/// few seconds is nothing next to the handshakes themselves.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// How long a client may take to complete its handshake before the connection is dropped;
/// without a limit a peer that connects and stays silent holds a task forever.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The crypto provider every configuration here uses: ring, so that no process-wide
/// default has to be installed and aws-lc-rs stays out of the build.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS server configuration whose certificate follows its files, and the acceptor the
/// HTTP host wraps each TCP connection with.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    acceptor: TlsAcceptor,
    resolver: Arc<ReloadingCert>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("resolver", &self.resolver)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads a PEM certificate chain (leaf first) and its private key (PKCS#8, RSA or
    /// SEC1), failing with an error that names the bad file. When the files later change
    /// the new pair is served; a pair that cannot be used is logged and the previous one
    /// kept.
    pub fn from_files(cert: PathBuf, key: PathBuf) -> Result<Self, TlsError> {
        Self::from_files_checking_every(cert, key, RELOAD_CHECK_INTERVAL)
    }

    /// [`ServerTls::from_files`] with another interval between looks at the files.
    pub fn from_files_checking_every(
        cert: PathBuf,
        key: PathBuf,
        interval: Duration,
    ) -> Result<Self, TlsError> {
        let provider = provider();
        let resolver = Arc::new(ReloadingCert::new(cert, key, provider.clone(), interval)?);
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        // The host speaks HTTP/1.1 only; saying so lets clients that offer h2 fall back.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        Ok(Self {
            acceptor: TlsAcceptor::from(config.clone()),
            config,
            resolver,
        })
    }

    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// The certificate chain being served now, leaf first (DER).
    pub fn current_chain(&self) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        self.resolver.current().cert.clone()
    }

    /// Completes the TLS handshake on an accepted connection, giving up after
    /// [`HANDSHAKE_TIMEOUT`] (the error then has kind `TimedOut`).
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(tcp)).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake did not complete in time",
            )),
        }
    }
}
