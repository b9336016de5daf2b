//! The dashboard's sessions: a browser signs in once with a key (or a
//! one-time link) and then sends an opaque cookie instead of the key.
//!
//! A session remembers the key it was made from and checks it through the
//! [`KeyRing`] on every use, so disabling, expiring or deleting the key ends
//! its sessions at once. Sessions live in memory only: a restart signs every
//! browser out, which is the safe direction.
//!
//! Ids and codes are 256 bits from the operating system's random source. The
//! tables are keyed by the SHA-256 of the id, so a lookup's timing says
//! nothing about the ids that exist and the process holds no usable id.
//!
//! The cookie is sent by the browser on its own, so requests that carry it
//! are also checked for forgery ([`check_cookie_request`]): the `Host` must be
//! a name the server answers as (a DNS rebinding attack reaches the server
//! under the attacker's name) and a write must come with an `Origin` that
//! matches it (cross-site request forgery).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::{HeaderMap, Method, Uri, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use herd_api::{Role, Timestamp};
use herd_auth::{AuthError, KeyRing, Principal, SessionId, Token};
use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

/// A session unused for this long ends.
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);
/// A session ends this long after sign-in, however busy.
pub const SESSION_MAX: Duration = Duration::from_secs(7 * 24 * 3600);
/// A one-time sign-in link not used within this long stops working.
pub const LINK_TTL: Duration = Duration::from_secs(10 * 60);
/// Bytes of randomness in a session id or a link's code.
const ID_BYTES: usize = 32;

/// Why a sign-in was refused. The messages never contain a key, an id or a
/// code.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("{}", .0.client_message())]
    Key(#[from] AuthError),
    #[error("the dashboard takes admin and viewer keys, not {0} keys")]
    Role(Role),
    #[error("this sign-in link is unknown, already used or expired; ask for a new one")]
    Link,
    #[error("a key is needed to sign in")]
    NoKey,
    #[error("cannot read the operating system's random source: {0}")]
    Random(String),
}

/// A session or link just made: the value to hand out once, and who it
/// signs in.
#[derive(Debug)]
pub struct Issued {
    /// The cookie's value, or the link's code.
    pub secret: String,
    pub principal: Principal,
}

struct Session {
    token: Token,
    created_ms: i64,
    last_used_ms: i64,
}

struct Link {
    token: Token,
    expires_ms: i64,
}

#[derive(Default)]
struct Tables {
    sessions: HashMap<[u8; 32], Session>,
    links: HashMap<[u8; 32], Link>,
}

/// The signed-in browsers and the unused one-time links.
#[derive(Default)]
pub struct Sessions {
    tables: Mutex<Tables>,
}

impl Sessions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Who the session cookie `id` stands for, or `None` when there is no
    /// such session, it has been idle or alive too long, or its key no
    /// longer authenticates (disabled, expired, deleted). Using a session
    /// keeps it alive.
    pub fn resolve(&self, id: &SessionId, ring: &KeyRing, now: Timestamp) -> Option<Principal> {
        let now_ms = now.as_millisecond();
        let digest = digest(id.expose());
        let mut tables = self.lock();
        let session = tables.sessions.get_mut(&digest)?;
        if !session_alive(session.created_ms, session.last_used_ms, now_ms) {
            tables.sessions.remove(&digest);
            return None;
        }
        match ring.authenticate_token(&session.token, now) {
            Ok(principal) => {
                session.last_used_ms = now_ms;
                Some(principal)
            }
            Err(_) => {
                tables.sessions.remove(&digest);
                None
            }
        }
    }

    /// Signs in with a key as a client sent it: a new session for an
    /// accepted admin or viewer key.
    pub fn sign_in(
        &self,
        token: &Token,
        ring: &KeyRing,
        now: Timestamp,
    ) -> Result<Issued, SignInError> {
        let principal = dashboard_principal(ring.authenticate_token(token, now)?)?;
        let secret = random_id()?;
        let now_ms = now.as_millisecond();
        let mut tables = self.lock();
        tables.prune(now_ms);
        tables.sessions.insert(
            digest(&secret),
            Session {
                token: token.clone(),
                created_ms: now_ms,
                last_used_ms: now_ms,
            },
        );
        Ok(Issued { secret, principal })
    }

    /// Ends the session `id`, if there is one.
    pub fn sign_out(&self, id: &SessionId) {
        self.lock().sessions.remove(&digest(id.expose()));
    }

    /// A one-time sign-in link's code for `token`'s key, which must be an
    /// accepted admin key: whoever holds the code signs in as that key,
    /// once, within [`LINK_TTL`].
    pub fn mint_link(
        &self,
        token: &Token,
        ring: &KeyRing,
        now: Timestamp,
    ) -> Result<Issued, SignInError> {
        let principal = ring.authenticate_token(token, now)?;
        match principal.role() {
            Some(Role::Admin) => {}
            Some(role) => return Err(SignInError::Role(role)),
            None => return Err(SignInError::NoKey),
        }
        let secret = random_id()?;
        let now_ms = now.as_millisecond();
        let mut tables = self.lock();
        tables.prune(now_ms);
        tables.links.insert(
            digest(&secret),
            Link {
                token: token.clone(),
                expires_ms: now_ms.saturating_add(millis(LINK_TTL)),
            },
        );
        Ok(Issued { secret, principal })
    }

    /// Spends the link `code` on a new session. The code is gone after the
    /// first attempt, whatever its outcome.
    pub fn redeem_link(
        &self,
        code: &str,
        ring: &KeyRing,
        now: Timestamp,
    ) -> Result<Issued, SignInError> {
        let link = self
            .lock()
            .links
            .remove(&digest(code))
            .ok_or(SignInError::Link)?;
        if now.as_millisecond() >= link.expires_ms {
            return Err(SignInError::Link);
        }
        self.sign_in(&link.token, ring, now)
    }

    /// The session `id`'s key, for minting a link from a signed-in browser.
    pub fn token_of(&self, id: &SessionId) -> Option<Token> {
        self.lock()
            .sessions
            .get(&digest(id.expose()))
            .map(|s| s.token.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        // Every change is a single insert or remove: a panic elsewhere while
        // the lock was held cannot leave the tables half-changed.
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Tables {
    /// Drops what can no longer be used, so abandoned sessions and links do
    /// not accumulate.
    fn prune(&mut self, now_ms: i64) {
        self.sessions
            .retain(|_, s| session_alive(s.created_ms, s.last_used_ms, now_ms));
        self.links.retain(|_, l| now_ms < l.expires_ms);
    }
}

/// Whether a session made at `created_ms` and last used at `last_used_ms`
/// may still be used at `now_ms`.
fn session_alive(created_ms: i64, last_used_ms: i64, now_ms: i64) -> bool {
    now_ms.saturating_sub(last_used_ms) < millis(SESSION_IDLE)
        && now_ms.saturating_sub(created_ms) < millis(SESSION_MAX)
}

/// The dashboard shows the fleet to people: admins and viewers. Other
/// roles are for programs, which send their key on every request.
fn dashboard_principal(principal: Principal) -> Result<Principal, SignInError> {
    match principal.role() {
        Some(Role::Admin | Role::Viewer) => Ok(principal),
        Some(role) => Err(SignInError::Role(role)),
        None => Err(SignInError::NoKey),
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn random_id() -> Result<String, SignInError> {
    let mut bytes = [0u8; ID_BYTES];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| SignInError::Random(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

// --- requests that carry the cookie -------------------------------------------------

/// Why a request carrying the session cookie was refused (403).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CookieRefusal {
    #[error(
        "the Host header names no address this server answers as; add the name with --allowed-hosts"
    )]
    Host,
    #[error("a change made with the dashboard's cookie must come from the dashboard's own origin")]
    Origin,
}

/// The names the server answers as, beside IP addresses and `localhost`:
/// the machine's host name and the names in its certificate.
#[derive(Clone, Debug, Default)]
pub struct HostNames(Vec<String>);

impl HostNames {
    pub fn new(names: impl IntoIterator<Item = impl AsRef<str>>) -> HostNames {
        HostNames(
            names
                .into_iter()
                .map(|n| normalize_name(n.as_ref()))
                .filter(|n| !n.is_empty())
                .collect(),
        )
    }

    /// This machine's host name, as the kernel reports it.
    pub fn of_this_machine() -> HostNames {
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .unwrap_or_default();
        HostNames::new([name.trim()])
    }

    /// These names and `more`.
    pub fn with(mut self, more: impl IntoIterator<Item = impl AsRef<str>>) -> HostNames {
        self.0.extend(HostNames::new(more).0);
        self
    }

    fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|n| n == name)
    }
}

fn normalize_name(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Whether a `Host` header (`name`, `name:port`, `1.2.3.4:80`,
/// `[::1]:8080`) names this server. An IP address cannot be rebound by DNS,
/// and `localhost` resolves locally; any other name must be one of `names`.
pub fn host_allowed(host: &str, names: &HostNames) -> bool {
    let Some(name) = host_name(host) else {
        return false;
    };
    if name.parse::<IpAddr>().is_ok() {
        return true;
    }
    let name = normalize_name(&name);
    name == "localhost" || name.ends_with(".localhost") || names.contains(&name)
}

/// The host part of a `Host` header, without its port; `None` when it is
/// not a host at all.
fn host_name(host: &str) -> Option<String> {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        if !(after.is_empty() || port_ok(after.strip_prefix(':')?)) {
            return None;
        }
        return ip
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|ip| ip.to_string());
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port_ok(port) => name,
        Some(_) => return None,
        None => host,
    };
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    valid.then(|| name.to_owned())
}

fn port_ok(port: &str) -> bool {
    !port.is_empty() && port.parse::<u16>().is_ok()
}

/// Whether an `Origin` header is the origin of a page served from `host`
/// over `tls` (scheme, host and port all equal, as browsers compare them).
pub fn origin_matches(origin: &str, host: &str, tls: bool) -> bool {
    let scheme = if tls { "https://" } else { "http://" };
    let Some(origin_host) = origin.trim().strip_prefix(scheme) else {
        return false;
    };
    let default_port = if tls { ":443" } else { ":80" };
    let strip = |h: &str| -> String {
        let h = h.trim().to_ascii_lowercase();
        match h.strip_suffix(default_port) {
            Some(bare) => bare.to_owned(),
            None => h,
        }
    };
    !origin_host.is_empty() && !origin_host.contains('/') && strip(origin_host) == strip(host)
}

/// Whether a request with the session cookie may go on: its `host` (the
/// `Host` header, or the URI's authority in HTTP/2) must name this server,
/// and anything but a read (GET, HEAD, OPTIONS) must carry an `origin`
/// equal to the server's own.
pub fn check_cookie_request(
    method: &Method,
    host: Option<&str>,
    origin: Option<&str>,
    tls: bool,
    names: &HostNames,
) -> Result<(), CookieRefusal> {
    let host = host.ok_or(CookieRefusal::Host)?;
    if !host_allowed(host, names) {
        return Err(CookieRefusal::Host);
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    match origin {
        Some(origin) if origin_matches(origin, host, tls) => Ok(()),
        _ => Err(CookieRefusal::Origin),
    }
}

/// The host a request was sent to: its `Host` header, or the authority of
/// its URI (HTTP/2 sends `:authority` instead of `Host`).
pub fn request_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
}

/// The request's `Origin`, when it sent one.
pub fn request_origin(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ORIGIN).and_then(|o| o.to_str().ok())
}

#[cfg(test)]
pub(crate) mod tests;
