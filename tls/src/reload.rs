//! A server certificate that follows its files: renewed by certbot, by a secret mount, or
//! by [`crate::SelfSigned`], it is served from the next handshake on without a restart.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::{TlsError, files};

/// What identifies one version of a file without reading it: a rename (how most tools
/// replace certificates) changes the inode even when size and time happen to match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Some(Self {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode,
        })
    }
}

/// Loads a certificate chain and its key, checking that they belong together.
pub(crate) fn load_certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = files::parse_certificates(cert, &files::read(cert)?)?;
    let private = files::parse_private_key(key, &files::read(key)?)?;
    CertifiedKey::from_der(chain, private, provider).map_err(|source| TlsError::KeyMismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source,
    })
}

struct Check {
    last: Instant,
    /// The file versions last tried, loaded or not: a bad file is reported once, not at
    /// every handshake, and tried again when it changes.
    tried: (Option<Stamp>, Option<Stamp>),
}

/// Serves the loaded certificate and, at most once per `interval`, looks at the files'
/// metadata; when either changed it loads both and swaps them in. A handshake never waits
/// for another one's check.
pub(crate) struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    interval: Duration,
    current: RwLock<Arc<CertifiedKey>>,
    check: Mutex<Check>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl ReloadingCert {
    pub(crate) fn new(
        cert_path: PathBuf,
        key_path: PathBuf,
        provider: Arc<CryptoProvider>,
        interval: Duration,
    ) -> Result<Self, TlsError> {
        let tried = (Stamp::of(&cert_path), Stamp::of(&key_path));
        let loaded = load_certified_key(&cert_path, &key_path, &provider)?;
        Ok(Self {
            cert_path,
            key_path,
            provider,
            interval,
            current: RwLock::new(Arc::new(loaded)),
            check: Mutex::new(Check {
                last: Instant::now(),
                tried,
            }),
        })
    }

    pub(crate) fn current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reloads if the interval has passed and the files changed.
    fn maybe_reload(&self) {
        let Ok(mut check) = self.check.try_lock() else {
            return;
        };
        if check.last.elapsed() < self.interval {
            return;
        }
        check.last = Instant::now();
        let stamps = (Stamp::of(&self.cert_path), Stamp::of(&self.key_path));
        if stamps == check.tried {
            return;
        }
        check.tried = stamps;
        match load_certified_key(&self.cert_path, &self.key_path, &self.provider) {
            Ok(loaded) => {
                let mut slot = match self.current.write() {
                    Ok(guard) => guard,
                    Err(poisoned) => poisoned.into_inner(),
                };
                *slot = Arc::new(loaded);
                tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded");
            }
            Err(error) => tracing::warn!(
                %error,
                "TLS certificate files changed but cannot be used; still serving the previous certificate"
            ),
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.maybe_reload();
        Some(self.current())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn stamps_differ_after_a_replacing_rename() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.crt");
        files::write_public(&path, b"same").expect("write");
        let before = Stamp::of(&path);
        files::write_public(&path, b"same").expect("rewrite");
        assert!(before.is_some());
        assert_ne!(before, Stamp::of(&path));
        assert_eq!(Stamp::of(&dir.path().join("missing")), None);
    }
}
