//! The nodelet's key. A node key kept in the state directory (`node.key`) is used
//! when there is one; otherwise the key given by `--token`/`--token-file` is offered
//! to the join exchange, and the node key it returns is kept, mode 0600, for every
//! later start. A given key the router will not exchange (403: it is not a join key)
//! is used as the node key itself. Without any key the nodelet talks to the router
//! without one, as a router with `--open-registration` allows.
//!
//! The trust for an `https://` router is `--ca-cert`, else the CA fingerprint the key
//! carries (a join key of a `--tls-self-signed` router has one, and the kept node key
//! inherits it), else the public roots.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use herd_api::Node;
use herd_auth::{KeyFileError, Token, read_key_file, write_key_file};
use herd_client::{Client, ClientTrust, Error, Fingerprint};

use crate::config::NodeletConfig;

/// The node key's file in the state directory.
pub const NODE_KEY_FILE: &str = "node.key";

/// Why the nodelet cannot get a usable key. Messages name files and key ids, never a
/// secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "the router refused the node key {key}: {message}. An admin disabled or deleted it; \
         give this nodelet a new key (a join key with --token lets it join again)"
    )]
    Refused { key: String, message: String },
    #[error("the router refused the join key {key}: {message}")]
    JoinRefused { key: String, message: String },
    #[error(
        "the router's certificate is not trusted, so it is not the router this key belongs \
         to (or --ca-cert names another CA): {0}"
    )]
    Untrusted(String),
    #[error("a join key needs --state-dir to keep the node key in")]
    NoStateDir,
    #[error("the node key file {0}")]
    KeyFile(#[from] KeyFileError),
    #[error("the router sent a node key herd cannot read: {0}")]
    BadNodeKey(herd_auth::TokenError),
    #[error(transparent)]
    Client(Error),
}

/// What a 401 for the node key leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnUnauthorized {
    /// Exchange the join key for a new node key, once.
    Rejoin,
    /// Stop with a clear message.
    Stop,
}

/// A node key the router no longer knows (deleted, or kept from another router) is
/// replaced when a join key is at hand and no re-join has been tried yet; a key the
/// router knows but refuses (disabled, expired) is an admin's decision and stops the
/// nodelet.
pub fn on_unauthorized(message: &str, join_key: bool, rejoined: bool) -> OnUnauthorized {
    let refused_on_purpose = message.contains("disabled") || message.contains("expired");
    if join_key && !rejoined && !refused_on_purpose {
        OnUnauthorized::Rejoin
    } else {
        OnUnauthorized::Stop
    }
}

/// The trust for the router: `--ca-cert`, else the key's CA fingerprint, else the
/// public roots.
pub fn trust(ca_cert: Option<&Path>, key: Option<&Token>) -> ClientTrust {
    ClientTrust::choose(
        ca_cert.map(Path::to_owned),
        key.and_then(|k| k.ca_sha256.as_ref()).map(fingerprint),
    )
}

fn fingerprint(sha256: &[u8; 32]) -> Fingerprint {
    let hex: String = sha256.iter().map(|b| format!("{b:02x}")).collect();
    Fingerprint::from_str(&hex).expect("64 hex digits are a fingerprint")
}

/// A client for the router sending `key`.
pub fn client(config: &NodeletConfig, key: Option<&Token>) -> Result<Client, CredentialError> {
    let mut builder =
        Client::builder(config.server.as_str()).trust(trust(config.ca_cert.as_deref(), key));
    if let Some(key) = key {
        builder = builder.token(bearer(key));
    }
    builder.build().map_err(CredentialError::Client)
}

/// The key as sent: without the CA fingerprint, which is for this side only.
pub fn bearer(key: &Token) -> String {
    let mut bare = key.clone();
    bare.ca_sha256 = None;
    bare.expose()
}

/// Whether `e` is the router's certificate being refused, which no retry mends.
pub fn is_untrusted(e: &Error) -> bool {
    let Error::Http(http) = e else { return false };
    // rustls' error may sit behind boxes a downcast cannot see through; its
    // message is the fallback.
    if e.to_string().contains("invalid peer certificate") {
        return true;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(http);
    while let Some(s) = source {
        // io::Error's `source` skips the error it wraps, so look inside it too.
        let inner = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        for candidate in [Some(s), inner].into_iter().flatten() {
            if let Some(rustls::Error::InvalidCertificate(_)) = candidate.downcast_ref() {
                return true;
            }
        }
        source = s.source();
    }
    false
}

/// Where a key the nodelet uses came from.
#[derive(Debug)]
pub enum KeySource {
    /// None at all.
    None,
    /// `--token`, used as the node key.
    Given,
    /// `node.key` in the state directory.
    Kept(PathBuf),
}

/// The client the nodelet talks to the router with, and where its key came from.
pub struct Keyed {
    pub client: Client,
    pub source: KeySource,
}

/// Finds or makes the node key, as the module documentation says. Retries answers
/// that may get better (router unreachable, 5xx) by `register_retry`; the caller
/// bounds the wait (shutdown).
pub async fn establish(config: &NodeletConfig) -> Result<Keyed, CredentialError> {
    let kept_path = config.state_dir.as_ref().map(|d| d.join(NODE_KEY_FILE));
    let kept = match &kept_path {
        Some(path) if path.exists() => Some(read_key_file(path)?),
        _ => None,
    };
    let mut rejoin = false;
    if let (Some(node_key), Some(path)) = (&kept, &kept_path) {
        let client = client(config, Some(node_key))?;
        match retrying(config, || check(&client, &config.name)).await {
            Ok(()) => {
                return Ok(Keyed {
                    client,
                    source: KeySource::Kept(path.clone()),
                });
            }
            Err(e) if e.code() == Some(401) => {
                let message = status_message(&e);
                match on_unauthorized(&message, config.token.is_some(), false) {
                    OnUnauthorized::Stop => {
                        return Err(CredentialError::Refused {
                            key: node_key.id.to_string(),
                            message,
                        });
                    }
                    OnUnauthorized::Rejoin => {
                        tracing::warn!(key = %node_key.id, path = %path.display(), reason = %message,
                            "the router does not know the kept node key; joining again with the join key");
                        rejoin = true;
                    }
                }
            }
            Err(e) => return Err(untrusted_or(e)),
        }
    }
    let Some(given) = &config.token else {
        return Ok(Keyed {
            client: client(config, None)?,
            source: KeySource::None,
        });
    };
    let joining = client(config, Some(given))?;
    match join(config, given, &joining, rejoin).await {
        Ok((node_key, path)) => Ok(Keyed {
            client: client(config, Some(&node_key))?,
            source: KeySource::Kept(path),
        }),
        // A key that may not join is taken to be this node's own key.
        Err(JoinError::NotAJoinKey) => Ok(Keyed {
            client: joining,
            source: KeySource::Given,
        }),
        Err(JoinError::Failed(e)) => Err(e),
    }
}

enum JoinError {
    /// 403: the key given may not join.
    NotAJoinKey,
    Failed(CredentialError),
}

impl From<CredentialError> for JoinError {
    fn from(e: CredentialError) -> Self {
        JoinError::Failed(e)
    }
}

impl From<KeyFileError> for JoinError {
    fn from(e: KeyFileError) -> Self {
        JoinError::Failed(e.into())
    }
}

/// The join exchange with `joining` (a client sending the join key `given`); the
/// node key is written to the state directory and returned with its path.
async fn join(
    config: &NodeletConfig,
    given: &Token,
    joining: &Client,
    rejoin: bool,
) -> Result<(Token, PathBuf), JoinError> {
    let path = config
        .state_dir
        .as_ref()
        .map(|d| d.join(NODE_KEY_FILE))
        .ok_or(CredentialError::NoStateDir)?;
    let answer = match retrying(config, || joining.join(&config.name)).await {
        Ok(answer) => answer,
        Err(e) if e.code() == Some(403) => return Err(JoinError::NotAJoinKey),
        Err(e) if matches!(e.code(), Some(401 | 409 | 422)) => {
            return Err(CredentialError::JoinRefused {
                key: given.id.to_string(),
                message: status_message(&e),
            }
            .into());
        }
        Err(e) => return Err(untrusted_or(e).into()),
    };
    let mut node_key = Token::parse(answer.token.expose()).map_err(CredentialError::BadNodeKey)?;
    if let (None, Some(ca)) = (node_key.ca_sha256, given.ca_sha256) {
        node_key = node_key.with_ca_sha256(ca);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| KeyFileError::Io {
            path: dir.to_owned(),
            source,
        })?;
    }
    write_key_file(&path, &node_key)?;
    tracing::info!(node = %config.name, key = %answer.key_name, path = %path.display(),
        rejoined = rejoin, "joined the router; the node key is kept for later starts");
    Ok((node_key, path))
}

/// For a running nodelet whose node key the router no longer knows: exchanges the
/// join key for a new node key, keeps it, and makes `client` (and every clone of it,
/// the watchers included) send it.
pub async fn rejoin(config: &NodeletConfig, client: &Client) -> Result<(), CredentialError> {
    let given = config.token.as_ref().ok_or(CredentialError::NoStateDir)?;
    let joining = self::client(config, Some(given))?;
    match join(config, given, &joining, true).await {
        Ok((node_key, _)) => client
            .set_token(&bearer(&node_key))
            .map_err(CredentialError::Client),
        Err(JoinError::NotAJoinKey) => Err(CredentialError::JoinRefused {
            key: given.id.to_string(),
            message: "the key given is not a join key".to_owned(),
        }),
        Err(JoinError::Failed(e)) => Err(e),
    }
}

/// Whether the router accepts `client`'s key: reading the node answers, or says it
/// is not there yet.
async fn check(client: &Client, name: &str) -> Result<(), Error> {
    match client.api::<Node>().get(name).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Repeats `call` while the router is unreachable or failing (no answer, 5xx, 429).
async fn retrying<T, F, Fut>(config: &NodeletConfig, mut call: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut failures = 0u32;
    loop {
        let e = match call().await {
            Ok(v) => return Ok(v),
            Err(e) if is_untrusted(&e) => return Err(e),
            Err(e) => e,
        };
        let transient = match e.code() {
            None => matches!(e, Error::Http(_)),
            Some(code) => code >= 500 || code == 429,
        };
        if !transient {
            return Err(e);
        }
        failures = failures.saturating_add(1);
        let delay = config
            .timings
            .register_retry
            .jittered_delay(failures, &mut rand::rng());
        tracing::warn!(router = %config.server, attempt = failures, error = %e,
            "the router does not answer the key check; retrying");
        tokio::time::sleep(delay).await;
    }
}

fn status_message(e: &Error) -> String {
    e.status()
        .map_or_else(|| e.to_string(), |s| s.message.clone())
}

fn untrusted_or(e: Error) -> CredentialError {
    if is_untrusted(&e) {
        CredentialError::Untrusted(e.to_string())
    } else {
        CredentialError::Client(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_401_leads_to() {
        use OnUnauthorized::{Rejoin, Stop};
        // (message, join key given, already re-joined, decision)
        let cases = [
            ("invalid API key", true, false, Rejoin),
            ("invalid API key", true, true, Stop),
            ("invalid API key", false, false, Stop),
            ("key \"node-gpu-1\" is disabled", true, false, Stop),
            (
                "key \"node-gpu-1\" expired at 2026-01-01T00:00:00Z",
                true,
                false,
                Stop,
            ),
            ("key \"node-gpu-1\" is disabled", false, false, Stop),
        ];
        for (message, join, rejoined, want) in cases {
            assert_eq!(
                on_unauthorized(message, join, rejoined),
                want,
                "{message} {join} {rejoined}"
            );
        }
    }

    #[test]
    fn trust_prefers_the_ca_file_then_the_pin() {
        let key = herd_auth::generate().expect("random").token;
        let pinned = key.clone().with_ca_sha256([0xab; 32]);
        let file = Path::new("/etc/herd/ca.pem");
        assert_eq!(trust(None, None), ClientTrust::SystemRoots);
        assert_eq!(trust(None, Some(&key)), ClientTrust::SystemRoots);
        assert_eq!(
            trust(None, Some(&pinned)),
            ClientTrust::PinnedCa(Fingerprint::from_str(&"ab".repeat(32)).expect("hex"))
        );
        assert_eq!(
            trust(Some(file), Some(&pinned)),
            ClientTrust::CaFile(file.to_owned())
        );
    }

    #[test]
    fn the_bearer_leaves_the_ca_fingerprint_out() {
        let key = herd_auth::generate().expect("random").token;
        assert_eq!(bearer(&key.clone().with_ca_sha256([1; 32])), key.expose());
        assert_eq!(bearer(&key), key.expose());
    }

    #[test]
    fn errors_never_show_the_secret() {
        let key = herd_auth::generate().expect("random").token;
        let secret = key.secret.expose().to_owned();
        let e = CredentialError::Refused {
            key: key.id.to_string(),
            message: "key \"x\" is disabled".into(),
        };
        let text = e.to_string();
        assert!(
            text.contains(key.id.as_str()) && !text.contains(&secret),
            "{text}"
        );
    }
}
