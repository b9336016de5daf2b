use axum::http::{HeaderValue, Method};
use herd_api::{ApiKey, ApiKeyHash, ApiKeyHashSpec, ApiKeySpec, Resource, Role, Timestamp};
use herd_auth::{Credential, KeyRing, Principal, SessionId, Token, credential, generate};

use super::*;

/// Seconds after a fixed instant.
fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_780_000_000 + secs).expect("in range")
}

/// A stored key and its hash, as the server writes them, and its token.
pub(crate) fn stored(name: &str, role: Role) -> (ApiKey, ApiKeyHash, Token) {
    let new = generate().expect("random source");
    let mut key = ApiKey::new(
        name,
        ApiKeySpec {
            role: Some(role),
            node: (role == Role::Node).then(|| "gpu-1".to_owned()),
            ..ApiKeySpec::default()
        },
    );
    key.status.key_id = new.id.to_string();
    let hash = ApiKeyHash::new(
        new.id.as_str(),
        ApiKeyHashSpec {
            key_name: name.to_owned(),
            sha256: new.hash.to_hex(),
        },
    );
    (key, hash, new.token)
}

struct Fleet {
    ring: KeyRing,
    keys: Vec<ApiKey>,
    hashes: Vec<ApiKeyHash>,
    admin: Token,
    viewer: Token,
    node: Token,
}

impl Fleet {
    fn new() -> Fleet {
        let (a, ah, admin) = stored("alice", Role::Admin);
        let (v, vh, viewer) = stored("val", Role::Viewer);
        let (n, nh, node) = stored("node-gpu-1", Role::Node);
        let fleet = Fleet {
            ring: KeyRing::new(),
            keys: vec![a, v, n],
            hashes: vec![ah, vh, nh],
            admin,
            viewer,
            node,
        };
        fleet.ring.reset(fleet.keys.clone(), fleet.hashes.clone());
        fleet
    }

    /// Changes the stored key `name` and feeds the ring again.
    fn change(&mut self, name: &str, f: impl FnOnce(&mut Option<ApiKey>)) {
        let i = self
            .keys
            .iter()
            .position(|k| k.metadata.name == name)
            .expect("key");
        let mut key = Some(self.keys.remove(i));
        f(&mut key);
        self.keys.extend(key);
        self.ring.reset(self.keys.clone(), self.hashes.clone());
    }
}

fn session_id(value: &str) -> SessionId {
    let mut headers = HeaderMap::new();
    let cookie = format!("herd_session={value}");
    headers.insert(
        header::COOKIE,
        HeaderValue::from_str(&cookie).expect("cookie"),
    );
    match credential(&headers) {
        Credential::Session(id) => id,
        other => panic!("not a session: {other:?}"),
    }
}

#[test]
fn sign_in_table() {
    let fleet = Fleet::new();
    let sessions = Sessions::new();
    let cases: Vec<(&Token, Result<Principal, &str>)> = vec![
        (&fleet.admin, Ok(Principal::key("alice", Role::Admin, None))),
        (&fleet.viewer, Ok(Principal::key("val", Role::Viewer, None))),
        (&fleet.node, Err("admin and viewer keys, not node keys")),
    ];
    for (token, want) in cases {
        match (sessions.sign_in(token, &fleet.ring, at(0)), want) {
            (Ok(issued), Ok(want)) => {
                assert_eq!(issued.principal, want);
                // 256 bits, base64url: 43 characters, none of them the key's.
                assert_eq!(issued.secret.len(), 43);
                assert!(!issued.secret.contains(&token.expose()[18..]));
                let id = session_id(&issued.secret);
                assert_eq!(sessions.resolve(&id, &fleet.ring, at(1)), Some(want));
            }
            (Err(e), Err(part)) => assert!(e.to_string().contains(part), "{e}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }
    let (_, _, unknown) = stored("never-stored", Role::Admin);
    let err = sessions
        .sign_in(&unknown, &fleet.ring, at(0))
        .expect_err("unknown key");
    assert_eq!(err.to_string(), "invalid API key");
}

#[test]
fn every_session_id_is_new() {
    let fleet = Fleet::new();
    let sessions = Sessions::new();
    let a = sessions
        .sign_in(&fleet.admin, &fleet.ring, at(0))
        .expect("a");
    let b = sessions
        .sign_in(&fleet.admin, &fleet.ring, at(0))
        .expect("b");
    assert_ne!(a.secret, b.secret);
    assert_eq!(
        sessions.resolve(&session_id("not-a-session"), &fleet.ring, at(0)),
        None
    );
}

#[test]
fn resolve_table() {
    let hour = 3600;
    let day = 24 * hour;
    // (what happens after sign-in, when the session is used, whether it works)
    type Change = fn(&mut Fleet, &Sessions, &SessionId);
    let nothing: Change = |_, _, _| {};
    let cases: Vec<(&str, Change, i64, bool)> = vec![
        ("fresh", nothing, 1, true),
        ("idle just under 12 h", nothing, 12 * hour - 1, true),
        ("idle 12 h", nothing, 12 * hour, false),
        (
            "key disabled",
            |f, _, _| f.change("alice", |k| k.as_mut().expect("key").spec.disabled = true),
            1,
            false,
        ),
        (
            "key deleted",
            |f, _, _| f.change("alice", |k| *k = None),
            1,
            false,
        ),
        (
            "key expired",
            |f, _, _| {
                f.change("alice", |k| {
                    k.as_mut().expect("key").spec.expires_at = Some(at(10));
                })
            },
            11,
            false,
        ),
        ("signed out", |_, s, id| s.sign_out(id), 1, false),
        (
            "kept alive past 12 h by use, ended at 7 days",
            |f, s, id| {
                const HOUR: i64 = 3600;
                for t in (0..7 * 24 * HOUR).step_by(11 * 3600) {
                    assert!(s.resolve(id, &f.ring, at(t)).is_some(), "at {t}");
                }
            },
            7 * day,
            false,
        ),
    ];
    for (what, change, use_at, works) in cases {
        let mut fleet = Fleet::new();
        let sessions = Sessions::new();
        let issued = sessions
            .sign_in(&fleet.admin, &fleet.ring, at(0))
            .expect("sign in");
        let id = session_id(&issued.secret);
        change(&mut fleet, &sessions, &id);
        let got = sessions.resolve(&id, &fleet.ring, at(use_at));
        assert_eq!(got.is_some(), works, "{what}");
        if !works {
            // Ended for good: re-enabling the key does not bring it back.
            let again = Fleet::new();
            assert_eq!(sessions.resolve(&id, &again.ring, at(use_at)), None);
        }
    }
}

#[test]
fn links_are_single_use_and_expire() {
    let fleet = Fleet::new();
    let sessions = Sessions::new();
    let minute = 60;
    // (mint at, redeem at, redeemed once already, works)
    let cases = [
        (0, 1, false, true),
        (0, 10 * minute - 1, false, true),
        (0, 10 * minute, false, false),
        (0, 1, true, false),
    ];
    for (minted, redeemed, used, works) in cases {
        let link = sessions
            .mint_link(&fleet.admin, &fleet.ring, at(minted))
            .expect("mint");
        assert_eq!(link.principal, Principal::key("alice", Role::Admin, None));
        if used {
            sessions
                .redeem_link(&link.secret, &fleet.ring, at(minted))
                .expect("first use");
        }
        let got = sessions.redeem_link(&link.secret, &fleet.ring, at(redeemed));
        match got {
            Ok(issued) => {
                assert!(works, "{minted} {redeemed} {used}");
                assert_ne!(issued.secret, link.secret);
                let id = session_id(&issued.secret);
                assert!(sessions.resolve(&id, &fleet.ring, at(redeemed)).is_some());
            }
            Err(e) => {
                assert!(!works, "{minted} {redeemed} {used}: {e}");
                assert!(matches!(e, SignInError::Link), "{e}");
            }
        }
    }
    // A failed attempt spends the code too.
    let link = sessions
        .mint_link(&fleet.admin, &fleet.ring, at(0))
        .expect("mint");
    assert!(
        sessions
            .redeem_link(&link.secret, &fleet.ring, at(11 * minute))
            .is_err()
    );
    assert!(
        sessions
            .redeem_link(&link.secret, &fleet.ring, at(1))
            .is_err()
    );
}

#[test]
fn only_admins_mint_links_and_a_revoked_key_cannot_redeem() {
    let mut fleet = Fleet::new();
    let sessions = Sessions::new();
    for token in [&fleet.viewer, &fleet.node] {
        assert!(matches!(
            sessions.mint_link(token, &fleet.ring, at(0)),
            Err(SignInError::Role(_))
        ));
    }
    let link = sessions
        .mint_link(&fleet.admin, &fleet.ring, at(0))
        .expect("mint");
    fleet.change("alice", |k| k.as_mut().expect("key").spec.disabled = true);
    let err = sessions
        .redeem_link(&link.secret, &fleet.ring, at(1))
        .expect_err("disabled");
    assert!(err.to_string().contains("disabled"), "{err}");
}

#[test]
fn host_allowed_table() {
    let names = HostNames::new(["gpu-box", "Herd.Example.com."]);
    let cases = [
        ("127.0.0.1:8080", true),
        ("127.0.0.1", true),
        ("10.1.2.3:80", true),
        ("[::1]:8080", true),
        ("[::1]", true),
        ("localhost:8080", true),
        ("LOCALHOST", true),
        ("app.localhost:8080", true),
        ("gpu-box:8080", true),
        ("herd.example.com", true),
        ("herd.example.com.:443", true),
        ("evil.example.com:8080", false),
        ("gpu-box.evil.com", false),
        ("localhost.evil.com", false),
        ("", false),
        (":8080", false),
        ("gpu-box:", false),
        ("gpu-box:99999", false),
        ("[::1", false),
        ("[nope]:80", false),
        ("a b", false),
        ("gpu-box:80:80", false),
    ];
    for (host, want) in cases {
        assert_eq!(host_allowed(host, &names), want, "{host:?}");
    }
    assert!(!host_allowed("gpu-box", &HostNames::default()));
}

#[test]
fn origin_matches_table() {
    let cases = [
        ("http://127.0.0.1:8080", "127.0.0.1:8080", false, true),
        ("http://localhost:8080", "LocalHost:8080", false, true),
        ("http://example.com", "example.com:80", false, true),
        ("https://example.com", "example.com:443", true, true),
        ("https://example.com:8443", "example.com:8443", true, true),
        ("https://127.0.0.1:8080", "127.0.0.1:8080", false, false),
        ("http://127.0.0.1:8080", "127.0.0.1:8080", true, false),
        ("http://127.0.0.1:8081", "127.0.0.1:8080", false, false),
        ("http://evil.com", "127.0.0.1:8080", false, false),
        ("null", "127.0.0.1:8080", false, false),
        ("http://127.0.0.1:8080/x", "127.0.0.1:8080", false, false),
        ("http://", "", false, false),
    ];
    for (origin, host, tls, want) in cases {
        assert_eq!(
            origin_matches(origin, host, tls),
            want,
            "{origin} {host} {tls}"
        );
    }
}

#[test]
fn check_cookie_request_table() {
    let names = HostNames::new(["gpu-box"]);
    let ok = Ok(());
    let cases = [
        (Method::GET, Some("127.0.0.1:8080"), None, ok.clone()),
        (Method::HEAD, Some("gpu-box:8080"), None, ok.clone()),
        (
            Method::GET,
            Some("rebound.evil:8080"),
            None,
            Err(CookieRefusal::Host),
        ),
        (Method::GET, None, None, Err(CookieRefusal::Host)),
        (
            Method::PATCH,
            Some("127.0.0.1:8080"),
            Some("http://127.0.0.1:8080"),
            ok.clone(),
        ),
        (
            Method::PATCH,
            Some("127.0.0.1:8080"),
            None,
            Err(CookieRefusal::Origin),
        ),
        (
            Method::DELETE,
            Some("127.0.0.1:8080"),
            Some("http://evil.com"),
            Err(CookieRefusal::Origin),
        ),
        (
            Method::POST,
            Some("rebound.evil:8080"),
            Some("http://rebound.evil:8080"),
            Err(CookieRefusal::Host),
        ),
        (
            Method::PUT,
            Some("gpu-box:8080"),
            Some("http://gpu-box:8080"),
            ok.clone(),
        ),
    ];
    for (method, host, origin, want) in cases {
        assert_eq!(
            check_cookie_request(&method, host, origin, false, &names),
            want,
            "{method} {host:?} {origin:?}"
        );
    }
}
