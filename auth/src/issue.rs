//! Making keys: the objects the server stores for a new key, and the join
//! exchange's decision about which node key to make.

use herd_api::{
    ApiKey, ApiKeyHash, ApiKeyHashSpec, ApiKeySpec, KeySecret, Resource, Role, Timestamp,
};

use crate::token::{GenerateError, KeyId, Token, generate};

/// A key just made.
#[derive(Debug)]
pub struct Issued {
    /// The `ApiKey` with `status.secret` set: the create response, and nothing
    /// else. Store [`Issued::stored`] instead.
    pub response: ApiKey,
    pub hash: ApiKeyHash,
    pub token: Token,
}

impl Issued {
    /// The `ApiKey` to store.
    pub fn stored(&self) -> ApiKey {
        self.response.clone().without_secret()
    }

    /// The same key, its token printed with the server's CA fingerprint (a
    /// join key of a server with a self-signed certificate).
    pub fn with_ca_sha256(mut self, ca_sha256: [u8; 32]) -> Issued {
        self.token = self.token.with_ca_sha256(ca_sha256);
        self.response.status.secret = Some(KeySecret::new(self.token.expose()));
        self
    }
}

/// A new key named `name` with `spec`; the status is the server's, whatever a
/// client sent. `created_by` is the creator's key name, or `bootstrap` for the
/// keys a server makes at its first start.
pub fn issue(name: &str, spec: ApiKeySpec, created_by: &str) -> Result<Issued, GenerateError> {
    let new = generate()?;
    Ok(issue_with(name, spec, created_by, new.token))
}

/// [`issue`] with a token already made: the join exchange makes it first, as
/// [`plan_join`] names the key after its id when it must.
pub fn issue_with(name: &str, spec: ApiKeySpec, created_by: &str, token: Token) -> Issued {
    let mut key = ApiKey::new(name, spec);
    key.status.key_id = token.id.to_string();
    key.status.secret = Some(KeySecret::new(token.expose()));
    key.status.created_by = created_by.to_owned();
    let hash = ApiKeyHash::new(
        token.id.as_str(),
        ApiKeyHashSpec {
            key_name: name.to_owned(),
            sha256: token.secret.hash().to_hex(),
        },
    );
    Issued {
        response: key,
        hash,
        token,
    }
}

/// What the join exchange should store for a nodelet asking for `node`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinPlan {
    /// `metadata.name` of the new node key.
    pub key_name: String,
    /// An expired key of this node that holds `key_name`: delete it first.
    pub replaces: Option<String>,
    pub spec: ApiKeySpec,
}

/// Why a join is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefused {
    /// 422.
    #[error("invalid node name: {reason}")]
    InvalidName { node: String, reason: String },
    /// 409: another nodelet holds the name.
    #[error(
        "node {node} is already bound to key {key:?}; delete that key to let another nodelet take the name"
    )]
    Bound { node: String, key: String },
    /// 409: an administrator disabled this node's key.
    #[error("the key {key:?} of node {node} is disabled; delete it to let the node join again")]
    Disabled { node: String, key: String },
}

/// Decides the join exchange for `node` given every stored key: a name held
/// by a live node key, or by a disabled one (an administrator's way to shut a
/// node out), cannot be claimed; an expired key of the node is replaced.
/// `id` is the new key's id, which names it when `node-<node>` is too long or
/// taken by an unrelated key.
pub fn plan_join(
    node: &str,
    keys: &[ApiKey],
    id: &KeyId,
    now: Timestamp,
) -> Result<JoinPlan, JoinRefused> {
    herd_api::validate::dns1123_label(node).map_err(|reason| JoinRefused::InvalidName {
        node: node.to_owned(),
        reason,
    })?;
    let bound =
        |k: &&ApiKey| k.spec.role == Some(Role::Node) && k.spec.node.as_deref() == Some(node);
    let expired = |k: &ApiKey| k.spec.expires_at.is_some_and(|at| at <= now);
    if let Some(live) = keys
        .iter()
        .filter(bound)
        .find(|k| !k.spec.disabled && !expired(k))
    {
        return Err(JoinRefused::Bound {
            node: node.to_owned(),
            key: live.metadata.name.clone(),
        });
    }
    if let Some(off) = keys.iter().filter(bound).find(|k| k.spec.disabled) {
        return Err(JoinRefused::Disabled {
            node: node.to_owned(),
            key: off.metadata.name.clone(),
        });
    }
    let preferred = format!("node-{node}");
    let by_id = format!("node-{id}");
    let (key_name, replaces) = if herd_api::validate::dns1123_label(&preferred).is_err() {
        (by_id, None)
    } else {
        match keys.iter().find(|k| k.metadata.name == preferred) {
            None => (preferred, None),
            Some(k) if bound(&k) => (preferred.clone(), Some(preferred)),
            Some(_) => (by_id, None),
        }
    };
    Ok(JoinPlan {
        key_name,
        replaces,
        spec: ApiKeySpec {
            role: Some(Role::Node),
            node: Some(node.to_owned()),
            description: format!("issued to the nodelet of node {node} by the join exchange"),
            ..ApiKeySpec::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::KeyRing;
    use crate::principal::Principal;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("valid timestamp")
    }

    #[test]
    fn issued_key_authenticates_and_stores_no_secret() {
        let now = ts("2026-06-01T00:00:00Z");
        let spec = ApiKeySpec {
            role: Some(Role::Viewer),
            ..ApiKeySpec::default()
        };
        let issued = issue("ci", spec, "alice").expect("random source");
        let token = issued.token.expose();
        let secret = issued.token.secret.expose().to_owned();
        assert_eq!(
            issued
                .response
                .status
                .secret
                .as_ref()
                .map(KeySecret::expose),
            Some(token.as_str())
        );
        assert_eq!(issued.response.status.created_by, "alice");
        assert!(
            issued.hash.validate_all().is_empty(),
            "{:?}",
            issued.hash.validate_all()
        );
        assert!(issued.stored().validate().is_empty());

        let stored = serde_json::to_string(&issued.stored()).expect("serialize");
        let hash = serde_json::to_string(&issued.hash).expect("serialize");
        for text in [&stored, &hash, &format!("{issued:?}")] {
            assert!(!text.contains(&secret), "{text}");
        }
        assert!(!stored.contains(&issued.hash.spec.sha256), "{stored}");

        let ring = KeyRing::new();
        ring.reset(vec![issued.stored()], vec![issued.hash.clone()]);
        assert_eq!(
            ring.authenticate(&token, now),
            Ok(Principal::key("ci", Role::Viewer, None))
        );
    }

    #[test]
    fn ca_fingerprint_reaches_the_response() {
        let spec = ApiKeySpec {
            role: Some(Role::Join),
            ..ApiKeySpec::default()
        };
        let issued = issue("join", spec, "bootstrap")
            .expect("random source")
            .with_ca_sha256([0xab; 32]);
        let printed = issued
            .response
            .status
            .secret
            .as_ref()
            .map(|s| s.expose().to_owned())
            .expect("set");
        assert!(
            printed.ends_with(&format!(".{}", "ab".repeat(32))),
            "{printed:?}"
        );
        let parsed = Token::parse(&printed).expect("own format");
        assert_eq!(parsed.ca_sha256, Some([0xab; 32]));
        assert!(
            parsed.secret.hash().matches(
                &crate::token::SecretHash::from_hex(&issued.hash.spec.sha256).expect("hex")
            )
        );
    }

    fn node_key(name: &str, node: &str, tweak: impl FnOnce(&mut ApiKeySpec)) -> ApiKey {
        let mut spec = ApiKeySpec {
            role: Some(Role::Node),
            node: Some(node.to_owned()),
            ..ApiKeySpec::default()
        };
        tweak(&mut spec);
        ApiKey::new(name, spec)
    }

    /// The key name and the replaced key, or a part of the refusal.
    type Want<'a> = Result<(&'a str, Option<&'a str>), &'a str>;

    #[test]
    fn join_plan_table() {
        let now = ts("2026-06-01T00:00:00Z");
        let id = KeyId::parse("abcdefgh1234").expect("id");
        let long = "n".repeat(60);
        let admin_named_like_a_node = ApiKey::new(
            "node-gpu-1",
            ApiKeySpec {
                role: Some(Role::Admin),
                ..ApiKeySpec::default()
            },
        );
        let cases: Vec<(&str, Vec<ApiKey>, Want<'_>)> = vec![
            ("gpu-1", vec![], Ok(("node-gpu-1", None))),
            (
                "gpu-1",
                vec![node_key("node-gpu-2", "gpu-2", |_| {})],
                Ok(("node-gpu-1", None)),
            ),
            (
                "gpu-1",
                vec![node_key("node-gpu-1", "gpu-1", |_| {})],
                Err("already bound to key \"node-gpu-1\""),
            ),
            (
                "gpu-1",
                vec![node_key("by-hand", "gpu-1", |_| {})],
                Err("already bound to key \"by-hand\""),
            ),
            (
                "gpu-1",
                vec![node_key("node-gpu-1", "gpu-1", |s| s.disabled = true)],
                Err("is disabled"),
            ),
            (
                "gpu-1",
                vec![node_key("node-gpu-1", "gpu-1", |s| {
                    s.expires_at = Some(ts("2026-05-01T00:00:00Z"))
                })],
                Ok(("node-gpu-1", Some("node-gpu-1"))),
            ),
            (
                "gpu-1",
                vec![node_key("node-gpu-1", "gpu-1", |s| {
                    s.expires_at = Some(ts("2026-07-01T00:00:00Z"))
                })],
                Err("already bound"),
            ),
            (
                "gpu-1",
                vec![node_key("old", "gpu-1", |s| {
                    s.expires_at = Some(ts("2026-05-01T00:00:00Z"))
                })],
                Ok(("node-gpu-1", None)),
            ),
            (
                "gpu-1",
                vec![admin_named_like_a_node],
                Ok(("node-abcdefgh1234", None)),
            ),
            (&long, vec![], Ok(("node-abcdefgh1234", None))),
            ("GPU_1", vec![], Err("DNS-1123")),
            ("", vec![], Err("empty")),
        ];
        for (node, keys, want) in cases {
            let got = plan_join(node, &keys, &id, now);
            match (got, want) {
                (Ok(plan), Ok((name, replaces))) => {
                    assert_eq!(plan.key_name, name, "{node}");
                    assert_eq!(plan.replaces.as_deref(), replaces, "{node}");
                    assert_eq!(plan.spec.role, Some(Role::Node));
                    assert_eq!(plan.spec.node.as_deref(), Some(node));
                    let key = ApiKey::new(&plan.key_name, plan.spec);
                    assert!(key.validate().is_empty(), "{node}: {:?}", key.validate());
                }
                (Err(e), Err(part)) => assert!(e.to_string().contains(part), "{node}: {e}"),
                (got, want) => panic!("{node}: got {got:?}, want {want:?}"),
            }
        }
    }
}
