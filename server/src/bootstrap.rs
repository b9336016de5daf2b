//! The keys `herd server` makes for itself: the admin and join keys written
//! to `admin.key` and `join.key` in the data directory at the first start
//! (and again when a file is lost or no longer matches a stored key), and an
//! in-memory key for the server's own loopback clients.
//!
//! A store shared by several servers (PostgreSQL) gets its bootstrap keys
//! once: the server that finds none makes them and writes its files; the
//! others keep the stored keys, write no file, and say so. Replacing a key
//! there would lock out every server's copy of it.

use std::path::{Path, PathBuf};

use herd_api::{ApiKey, ApiKeyHash, ApiKeySpec, Resource as _, Role};
use herd_apiserver::AppState;
use herd_auth::{Issued, Token};

/// The admin key's file in the data directory.
pub const ADMIN_KEY_FILE: &str = "admin.key";
/// The join key's file in the data directory.
pub const JOIN_KEY_FILE: &str = "join.key";
/// `metadata.name` of the bootstrap admin key.
pub const ADMIN_KEY_NAME: &str = "bootstrap-admin";
/// `metadata.name` of the bootstrap join key.
pub const JOIN_KEY_NAME: &str = "bootstrap-join";
/// The name the server's loopback clients' key goes by (in audit events and
/// event sources); it is never stored.
pub const INTERNAL_KEY_NAME: &str = "herd-server";
/// The name of the in-memory key that reads Secrets for the proxy and the
/// controller in this process (a controller key may not); never stored.
pub const SECRETS_KEY_NAME: &str = "herd-server-secrets";

/// Why the bootstrap keys could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("making a key")]
    Generate(#[from] herd_auth::GenerateError),
    #[error("storing the key {name}")]
    Store {
        name: &'static str,
        #[source]
        source: herd_apiserver::ApiError,
    },
    #[error("writing {}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: herd_auth::KeyFileError,
    },
    #[error("running the bootstrap")]
    Runtime(#[source] std::io::Error),
}

/// The key the server's own clients (the proxy's reflector and status
/// writer, the controller) use over loopback: the controller's role, in
/// memory only.
pub fn internal_key() -> Result<(Issued, (ApiKey, ApiKeyHash)), herd_auth::GenerateError> {
    let issued = herd_auth::issue(
        INTERNAL_KEY_NAME,
        ApiKeySpec {
            role: Some(Role::Controller),
            description: "the server's own loopback clients".into(),
            ..ApiKeySpec::default()
        },
        INTERNAL_KEY_NAME,
    )?;
    let entry = (issued.stored(), issued.hash.clone());
    Ok((issued, entry))
}

/// The key of the one loopback client that reads Secrets, so the proxy and
/// the controller in this process can send each node its token. Only an
/// admin may read Secrets, so it has that role; it lives in memory only and
/// is used for nothing but the Secret watch.
pub fn secrets_key() -> Result<(Issued, (ApiKey, ApiKeyHash)), herd_auth::GenerateError> {
    let issued = herd_auth::issue(
        SECRETS_KEY_NAME,
        ApiKeySpec {
            role: Some(Role::Admin),
            description: "the server's own reader of backend Secrets".into(),
            ..ApiKeySpec::default()
        },
        SECRETS_KEY_NAME,
    )?;
    let entry = (issued.stored(), issued.hash.clone());
    Ok((issued, entry))
}

/// One bootstrap key: its file, name and role.
struct Wanted {
    file: &'static str,
    name: &'static str,
    role: Role,
    description: &'static str,
}

const WANTED: [Wanted; 2] = [
    Wanted {
        file: ADMIN_KEY_FILE,
        name: ADMIN_KEY_NAME,
        role: Role::Admin,
        description: "made by herd server at its first start; delete admin.key and restart to replace it",
    },
    Wanted {
        file: JOIN_KEY_FILE,
        name: JOIN_KEY_NAME,
        role: Role::Join,
        description: "made by herd server at its first start; nodelets exchange it for node keys",
    },
];

/// Makes sure `admin.key` and `join.key` hold keys the store accepts: a
/// file that is there and matches its stored key is kept; a missing one
/// (lost) or a stale one is replaced by a new key. `ca_sha256` goes into
/// the join key's file, so that nodelets can pin a self-signed server.
/// Logs only the files' paths.
pub async fn ensure(
    state: &AppState,
    data_dir: &Path,
    ca_sha256: Option<[u8; 32]>,
) -> Result<(), BootstrapError> {
    for wanted in &WANTED {
        let path = data_dir.join(wanted.file);
        if let Ok(token) = herd_auth::read_key_file(&path)
            && herd_apiserver::routes::apikeys::holds_key(state, wanted.name, &token)
        {
            // The pin follows the certificate: a join key file rewritten
            // after the CA changed would otherwise pin the old one.
            if wanted.role == Role::Join && token.ca_sha256 != ca_sha256 {
                let token = Token { ca_sha256, ..token };
                write(&path, &token)?;
            }
            tracing::info!(path = %path.display(), "keeping the {} key", wanted.role);
            continue;
        }
        let shared = state.config.postgres.is_some();
        if shared && state.store.get(ApiKey::PLURAL, wanted.name).is_some() {
            made_elsewhere(wanted, &path);
            continue;
        }
        match replace(state, wanted, &path, ca_sha256).await {
            // Another server of the shared store made it first.
            Err(BootstrapError::Store {
                source: herd_apiserver::ApiError::AlreadyExists { .. },
                ..
            }) if shared => made_elsewhere(wanted, &path),
            r => r?,
        }
    }
    Ok(())
}

fn made_elsewhere(wanted: &Wanted, path: &Path) {
    tracing::info!(
        key = wanted.name,
        "the shared store's {} key was made by another server: copy its {} to {} to use it here, or delete the key (herd delete key {}) and restart to make a new one",
        wanted.role,
        wanted.file,
        path.display(),
        wanted.name,
    );
}

/// Makes a new join key, replacing the stored one and `join.key`: the old
/// join key stops working (node keys already exchanged keep theirs).
pub async fn rotate_join_key(
    state: &AppState,
    data_dir: &Path,
    ca_sha256: Option<[u8; 32]>,
) -> Result<(), BootstrapError> {
    let wanted = &WANTED[1];
    replace(state, wanted, &data_dir.join(wanted.file), ca_sha256).await
}

async fn replace(
    state: &AppState,
    wanted: &Wanted,
    path: &Path,
    ca_sha256: Option<[u8; 32]>,
) -> Result<(), BootstrapError> {
    let mut issued = herd_auth::issue(
        wanted.name,
        ApiKeySpec {
            role: Some(wanted.role),
            description: wanted.description.into(),
            ..ApiKeySpec::default()
        },
        "bootstrap",
    )?;
    if let (Role::Join, Some(ca)) = (wanted.role, ca_sha256) {
        issued = issued.with_ca_sha256(ca);
    }
    herd_apiserver::routes::apikeys::replace_server_key(state, &issued)
        .await
        .map_err(|source| BootstrapError::Store {
            name: wanted.name,
            source,
        })?;
    write(path, &issued.token)?;
    tracing::info!(path = %path.display(), "wrote a new {} key", wanted.role);
    Ok(())
}

fn write(path: &Path, token: &Token) -> Result<(), BootstrapError> {
    herd_auth::write_key_file(path, token).map_err(|source| BootstrapError::File {
        path: path.to_owned(),
        source,
    })
}

/// Runs `f` to completion on a runtime of its own, on a thread of its own:
/// for the store's async writes from a synchronous caller that may itself
/// be inside a runtime.
pub(crate) fn block_on<F>(f: F) -> Result<F::Output, BootstrapError>
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(f))
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the bootstrap thread panicked")))
    })
    .map_err(BootstrapError::Runtime)
}
