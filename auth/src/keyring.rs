//! The keys the server accepts, in memory, read on every request.
//!
//! The server feeds the ring from its store: [`KeyRing::reset`] after a list
//! (and after a relist when a watch reports 410), [`KeyRing::apply_key`] and
//! [`KeyRing::apply_hash`] for each watch event. Each change rebuilds the
//! lookup table with [`entries`] and swaps it in whole, so a request reads one
//! consistent table without a lock, and a disabled or deleted key stops
//! working as soon as its watch event arrives.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use herd_api::{ApiKey, ApiKeyHash, Timestamp, WatchEvent};

use crate::credential::Credential;
use crate::principal::{KeyPrincipal, Principal};
use crate::token::{Secret, SecretHash, Token, TokenError};

/// One accepted key.
#[derive(Clone, Debug)]
pub struct KeyEntry {
    pub principal: KeyPrincipal,
    pub expires_at: Option<Timestamp>,
    pub disabled: bool,
    pub hash: SecretHash,
    /// The secret, once a request has shown one whose hash matches: later
    /// requests are compared with it (in constant time) instead of hashing
    /// theirs, which is most of the key check's cost. It is what every
    /// request with this key carries into the process anyway, and it goes
    /// with the entry when the key changes (the table is rebuilt).
    pub verified: OnceLock<Secret>,
}

/// Why a herd key was refused (401). The `Display` names the key by its id or
/// name, which are not secret, and never contains the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Malformed(TokenError),
    #[error("no key with id {id} exists")]
    Unknown { id: String },
    #[error("the secret of key id {id} does not match")]
    WrongSecret { id: String },
    #[error("key {name:?} expired at {at}")]
    Expired { name: String, at: Timestamp },
    #[error("key {name:?} is disabled")]
    Disabled { name: String },
}

impl AuthError {
    /// What the caller is told. Unknown ids and wrong secrets read alike, so
    /// the answer does not tell a guesser which ids exist; expiry and
    /// disabling are named, since only the key's holder gets that far.
    pub fn client_message(&self) -> String {
        match self {
            AuthError::Malformed(e) => e.to_string(),
            AuthError::Unknown { .. } | AuthError::WrongSecret { .. } => {
                "invalid API key".to_owned()
            }
            AuthError::Expired { .. } | AuthError::Disabled { .. } => self.to_string(),
        }
    }
}

/// The lookup table: key id to entry, from the stored `ApiKey`s and
/// `ApiKeyHash`es. A hash enters only when its key exists, names it back by
/// id (so a hash left over from a deleted key of the same name does nothing)
/// and passes validation; anything else is left out, which refuses the key.
pub fn entries<'a>(
    keys: impl IntoIterator<Item = &'a ApiKey>,
    hashes: impl IntoIterator<Item = &'a ApiKeyHash>,
) -> HashMap<String, KeyEntry> {
    let keys: HashMap<&str, &ApiKey> = keys
        .into_iter()
        .map(|k| (k.metadata.name.as_str(), k))
        .collect();
    let mut out = HashMap::new();
    for h in hashes {
        let id = h.metadata.name.as_str();
        let Some(key) = keys.get(h.spec.key_name.as_str()) else {
            continue;
        };
        let Some(role) = key.spec.role else {
            continue;
        };
        let usable = key.status.key_id == id
            && herd_api::key_id(id).is_ok()
            && herd_api::role_and_node(Some(role), key.spec.node.as_deref()).is_empty();
        let Some(hash) = SecretHash::from_hex(&h.spec.sha256).filter(|_| usable) else {
            continue;
        };
        out.insert(
            id.to_owned(),
            KeyEntry {
                principal: KeyPrincipal {
                    name: key.metadata.name.as_str().into(),
                    role,
                    node: key.spec.node.as_deref().map(Into::into),
                },
                expires_at: key.spec.expires_at,
                disabled: key.spec.disabled,
                hash,
                verified: OnceLock::new(),
            },
        );
    }
    out
}

/// Checks a parsed token against one table. Unknown id, then the secret in
/// constant time, and only then the key's state: a caller without the secret
/// learns nothing about a key.
pub fn check(
    table: &HashMap<String, KeyEntry>,
    token: &Token,
    now: Timestamp,
) -> Result<Principal, AuthError> {
    let id = token.id.as_str();
    let entry = table
        .get(id)
        .ok_or_else(|| AuthError::Unknown { id: id.to_owned() })?;
    let matches = match entry.verified.get() {
        // Only the secret whose hash matched is stored: any other secret
        // fails the hash too.
        Some(known) => known.matches(&token.secret),
        None => {
            let ok = entry.hash.matches(&token.secret.hash());
            if ok {
                let _ = entry.verified.set(token.secret.clone());
            }
            ok
        }
    };
    if !matches {
        return Err(AuthError::WrongSecret { id: id.to_owned() });
    }
    if entry.disabled {
        return Err(AuthError::Disabled {
            name: entry.principal.name.to_string(),
        });
    }
    if let Some(at) = entry.expires_at
        && at <= now
    {
        return Err(AuthError::Expired {
            name: entry.principal.name.to_string(),
            at,
        });
    }
    Ok(Principal::Key(entry.principal.clone()))
}

#[derive(Default)]
struct Source {
    keys: BTreeMap<String, ApiKey>,
    hashes: BTreeMap<String, ApiKeyHash>,
}

impl Source {
    fn table(&self) -> HashMap<String, KeyEntry> {
        entries(self.keys.values(), self.hashes.values())
    }
}

/// The accepted keys. Cheap to share (`Arc<KeyRing>`) and to read.
#[derive(Default)]
pub struct KeyRing {
    table: ArcSwap<HashMap<String, KeyEntry>>,
    /// Writers only: the objects the table is built from.
    source: Mutex<Source>,
}

impl KeyRing {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces everything: after a list, or a relist.
    pub fn reset(&self, keys: Vec<ApiKey>, hashes: Vec<ApiKeyHash>) {
        self.update(|source| {
            source.keys = keys
                .into_iter()
                .map(|k| (k.metadata.name.clone(), k))
                .collect();
            source.hashes = hashes
                .into_iter()
                .map(|h| (h.metadata.name.clone(), h))
                .collect();
        });
    }

    /// One watch event of `ApiKey`s. Bookmarks and errors change nothing (on
    /// an error the caller relists and calls [`KeyRing::reset`]).
    pub fn apply_key(&self, event: &WatchEvent<ApiKey>) {
        match event {
            WatchEvent::Added(k) | WatchEvent::Modified(k) => self.update(|source| {
                source.keys.insert(k.metadata.name.clone(), k.clone());
            }),
            WatchEvent::Deleted(k) => self.update(|source| {
                source.keys.remove(&k.metadata.name);
            }),
            WatchEvent::Bookmark(_) | WatchEvent::Error(_) => {}
        }
    }

    /// One watch event of `ApiKeyHash`es.
    pub fn apply_hash(&self, event: &WatchEvent<ApiKeyHash>) {
        match event {
            WatchEvent::Added(h) | WatchEvent::Modified(h) => self.update(|source| {
                source.hashes.insert(h.metadata.name.clone(), h.clone());
            }),
            WatchEvent::Deleted(h) => self.update(|source| {
                source.hashes.remove(&h.metadata.name);
            }),
            WatchEvent::Bookmark(_) | WatchEvent::Error(_) => {}
        }
    }

    fn update(&self, change: impl FnOnce(&mut Source)) {
        // A panic while holding the lock cannot leave `Source` half-written
        // in a way that matters: the next change rebuilds the table from it.
        let mut source = self.source.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut source);
        self.table.store(Arc::new(source.table()));
    }

    /// How many keys are accepted.
    pub fn len(&self) -> usize {
        self.table.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks a token as sent by a client.
    pub fn authenticate(&self, token: &str, now: Timestamp) -> Result<Principal, AuthError> {
        let token = Token::parse(token).map_err(AuthError::Malformed)?;
        self.authenticate_token(&token, now)
    }

    pub fn authenticate_token(
        &self,
        token: &Token,
        now: Timestamp,
    ) -> Result<Principal, AuthError> {
        check(&self.table.load(), token, now)
    }

    /// The caller a request's credential stands for: `Ok(None)` when it
    /// carries no herd key (nothing, or a placeholder an SDK sends), an error
    /// when it carries a herd key that is malformed or not accepted. A session
    /// cookie is not a key; sessions are checked where they are kept.
    pub fn resolve(
        &self,
        credential: &Credential,
        now: Timestamp,
    ) -> Result<Option<Principal>, AuthError> {
        match credential {
            Credential::None | Credential::Placeholder | Credential::Session(_) => Ok(None),
            Credential::Malformed(e) => Err(AuthError::Malformed(*e)),
            Credential::Key(token) => self.authenticate_token(token, now).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use herd_api::{ApiKeyHashSpec, ApiKeySpec, Resource, Role};

    use super::*;
    use crate::token::generate;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("valid timestamp")
    }

    /// A stored key and its hash, as the server writes them.
    fn stored(name: &str, spec: ApiKeySpec) -> (ApiKey, ApiKeyHash, String) {
        let new = generate().expect("random source");
        let mut key = ApiKey::new(name, spec);
        key.status.key_id = new.id.to_string();
        let hash = ApiKeyHash::new(
            new.id.as_str(),
            ApiKeyHashSpec {
                key_name: name.to_owned(),
                sha256: new.hash.to_hex(),
            },
        );
        (key, hash, new.token.expose())
    }

    fn spec(role: Role) -> ApiKeySpec {
        ApiKeySpec {
            role: Some(role),
            node: (role == Role::Node).then(|| "gpu-1".to_owned()),
            ..ApiKeySpec::default()
        }
    }

    #[test]
    fn authenticate_table() {
        let now = ts("2026-06-01T00:00:00Z");
        let (admin, admin_hash, admin_token) = stored("alice", spec(Role::Admin));
        let (node, node_hash, node_token) = stored("node-gpu-1", spec(Role::Node));
        let (off, off_hash, off_token) = stored(
            "off",
            ApiKeySpec {
                disabled: true,
                ..spec(Role::Viewer)
            },
        );
        let (old, old_hash, old_token) = stored(
            "old",
            ApiKeySpec {
                expires_at: Some(ts("2026-05-31T23:59:59Z")),
                ..spec(Role::Viewer)
            },
        );
        let (later, later_hash, later_token) = stored(
            "later",
            ApiKeySpec {
                expires_at: Some(ts("2026-06-01T00:00:01Z")),
                ..spec(Role::Inference)
            },
        );
        // Made but never stored: its id is unknown to the ring.
        let (_, _, gone_token) = stored("gone", spec(Role::Admin));
        let ring = KeyRing::new();
        ring.reset(
            vec![admin, node, off, old, later],
            vec![admin_hash, node_hash, off_hash, old_hash, later_hash],
        );
        assert_eq!(ring.len(), 5);

        // The right id with another key's secret.
        let wrong_secret = format!("{}{}", &admin_token[..18], &node_token[18..]);
        let cases: Vec<(&str, Result<Principal, &str>)> = vec![
            (&admin_token, Ok(Principal::key("alice", Role::Admin, None))),
            (
                &node_token,
                Ok(Principal::key("node-gpu-1", Role::Node, Some("gpu-1"))),
            ),
            (
                &later_token,
                Ok(Principal::key("later", Role::Inference, None)),
            ),
            (&off_token, Err("disabled")),
            (&old_token, Err("expired")),
            (&gone_token, Err("no key with id")),
            (&wrong_secret, Err("does not match")),
            ("herd_abc", Err("malformed")),
            ("ollama", Err("not a herd key")),
        ];
        // Twice: the first success of a key remembers its secret, and the
        // second round checks against that instead of the hash.
        for (token, want) in cases.iter().chain(cases.iter()) {
            let token = *token;
            let got = ring.authenticate(token, now);
            match (&got, want) {
                (Ok(p), Ok(want)) => assert_eq!(p, want, "{token}"),
                (Err(e), Err(part)) => {
                    let text = e.to_string();
                    assert!(text.contains(part), "{text} lacks {part}");
                    // Neither the token nor its secret appears in the error.
                    assert!(!text.contains(token), "{text}");
                    if token.len() > 18 {
                        assert!(!text.contains(&token[18..]), "{text}");
                        assert!(!e.client_message().contains(&token[18..]));
                    }
                }
                _ => panic!("{token}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn wrong_secret_reveals_no_state() {
        let now = ts("2026-06-01T00:00:00Z");
        let (off, off_hash, off_token) = stored(
            "off",
            ApiKeySpec {
                disabled: true,
                ..spec(Role::Viewer)
            },
        );
        let ring = KeyRing::new();
        ring.reset(vec![off], vec![off_hash]);
        let mut guess = off_token.clone();
        let last = guess
            .pop()
            .map_or('A', |c| if c == 'A' { 'B' } else { 'A' });
        guess.push(last);
        let err = ring.authenticate(&guess, now).expect_err("wrong secret");
        assert!(matches!(err, AuthError::WrongSecret { .. }), "{err:?}");
        assert_eq!(err.client_message(), "invalid API key");
        let unknown = ring
            .authenticate(&generate().expect("random").token.expose(), now)
            .expect_err("unknown");
        assert_eq!(unknown.client_message(), err.client_message());
        assert!(matches!(
            ring.authenticate(&off_token, now),
            Err(AuthError::Disabled { .. })
        ));
    }

    #[test]
    fn entries_join_keys_and_hashes_only_when_consistent() {
        let (a, a_hash, _) = stored("a", spec(Role::Admin));
        let (b, b_hash, _) = stored("b", spec(Role::Viewer));
        let (c, c_hash, _) = stored("c", spec(Role::Viewer));
        let (d, d_hash, _) = stored("d", spec(Role::Node));
        let (e, e_hash, _) = stored("e", spec(Role::Inference));
        let (f, f_hash, _) = stored("f", spec(Role::Viewer));
        // b was deleted and made again: its new id differs from the old hash's.
        let mut b = b;
        b.status.key_id = "zzzzzzzzzzzz".into();
        // c has no role.
        let mut c = c;
        c.spec.role = None;
        // d is a node key that lost its node.
        let mut d = d;
        d.spec.node = None;
        // e's hash is not hex.
        let mut e_hash = e_hash;
        e_hash.spec.sha256 = "not hex".into();
        // f's hash names a key that does not exist.
        let mut f_hash = f_hash;
        f_hash.spec.key_name = "nobody".into();
        let table = entries(
            [&a, &b, &c, &d, &e, &f],
            [&a_hash, &b_hash, &c_hash, &d_hash, &e_hash, &f_hash],
        );
        let names: Vec<&str> = table.values().map(|e| &*e.principal.name).collect();
        assert_eq!(names, ["a"]);
        assert!(table.contains_key(&a.status.key_id));
    }

    #[test]
    fn watch_events_update_the_ring() {
        let now = ts("2026-06-01T00:00:00Z");
        let (key, hash, token) = stored("ci", spec(Role::Viewer));
        let ring = KeyRing::new();
        assert!(ring.is_empty());
        // Either object alone accepts nothing.
        ring.apply_hash(&WatchEvent::Added(hash.clone()));
        assert!(ring.authenticate(&token, now).is_err());
        ring.apply_key(&WatchEvent::Added(key.clone()));
        assert!(ring.authenticate(&token, now).is_ok());

        let mut disabled = key.clone();
        disabled.spec.disabled = true;
        ring.apply_key(&WatchEvent::Modified(disabled));
        assert!(matches!(
            ring.authenticate(&token, now),
            Err(AuthError::Disabled { .. })
        ));
        ring.apply_key(&WatchEvent::Modified(key.clone()));
        assert!(ring.authenticate(&token, now).is_ok());

        ring.apply_key(&WatchEvent::Bookmark(herd_api::Bookmark {
            api_version: "herd/v1".into(),
            kind: "ApiKey".into(),
            metadata: herd_api::BookmarkMeta {
                resource_version: "9".into(),
            },
        }));
        assert!(ring.authenticate(&token, now).is_ok());

        ring.apply_key(&WatchEvent::Deleted(key.clone()));
        assert!(matches!(
            ring.authenticate(&token, now),
            Err(AuthError::Unknown { .. })
        ));
        ring.apply_key(&WatchEvent::Added(key));
        ring.apply_hash(&WatchEvent::Deleted(hash));
        assert!(ring.authenticate(&token, now).is_err());
        assert!(ring.is_empty());
    }

    #[test]
    fn resolve_by_credential() {
        let now = ts("2026-06-01T00:00:00Z");
        let (key, hash, token) = stored("ci", spec(Role::Inference));
        let ring = KeyRing::new();
        ring.reset(vec![key], vec![hash]);
        let parsed = Token::parse(&token).expect("valid");
        let other = generate().expect("random").token;
        assert_eq!(ring.resolve(&Credential::None, now), Ok(None));
        assert_eq!(ring.resolve(&Credential::Placeholder, now), Ok(None));
        assert_eq!(
            ring.resolve(&Credential::Key(parsed), now),
            Ok(Some(Principal::key("ci", Role::Inference, None)))
        );
        assert!(matches!(
            ring.resolve(&Credential::Key(other), now),
            Err(AuthError::Unknown { .. })
        ));
        assert!(matches!(
            ring.resolve(
                &Credential::Malformed(TokenError::Malformed("the secret")),
                now
            ),
            Err(AuthError::Malformed(_))
        ));
    }
}
