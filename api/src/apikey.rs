use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::Timestamp;
use crate::resource::resource_object;
use crate::{FieldError, validate};

resource_object! {
    /// A credential for herd's API, its proxy or the join exchange. The object
    /// carries no secret and no hash of one: the hash is an [`crate::ApiKeyHash`],
    /// which no route serves, and the secret exists only in the create response.
    ApiKey { spec: ApiKeySpec, status: ApiKeyStatus, kind: "ApiKey", plural: "apikeys", singular: "apikey", short: ["key", "keys"] }
}

/// What a key may do. The table of what each role allows lives in `herd-auth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Read and watch everything except `Secret`s.
    Viewer,
    /// What an out-of-process `herd controller` needs: node and assignment
    /// status, events, leases.
    Controller,
    /// Only exchanges itself for a `node` key bound to one node name.
    Join,
    /// One nodelet: its own Node, reading ModelAssignments, events about its node.
    Node,
    /// Only the Ollama, OpenAI and Anthropic endpoints.
    Inference,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Admin,
        Role::Viewer,
        Role::Controller,
        Role::Join,
        Role::Node,
        Role::Inference,
    ];

    /// The name used on the wire and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
            Role::Controller => "controller",
            Role::Join => "join",
            Role::Node => "node",
            Role::Inference => "inference",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
                format!("unknown role {s:?}: must be one of {}", names.join(", "))
            })
    }
}

/// What an operator sets on a key. Per-key policy (allowed models, limits,
/// priority) will be further optional fields here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeySpec {
    /// Required. Optional in the type only so that a missing role is reported
    /// as a field error naming `spec.role` rather than a parse failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The node a `node` key is bound to; required for that role and refused
    /// for every other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// After this instant the key is refused. Omit it for a key that does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// Refuse the key without deleting it.
    #[serde(default)]
    pub disabled: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

pub const MAX_DESCRIPTION_BYTES: usize = 1024;

impl ApiKeySpec {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = role_and_node(self.role, self.node.as_deref());
        if self.description.len() > MAX_DESCRIPTION_BYTES {
            errors.push(FieldError::invalid(
                "spec.description",
                format!("must be at most {MAX_DESCRIPTION_BYTES} bytes"),
            ));
        }
        errors
    }
}

/// A `node` key names its node; no other role may, so a key's reach never
/// depends on a field its role ignores.
pub fn role_and_node(role: Option<Role>, node: Option<&str>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match (role, node) {
        (None, _) => errors.push(FieldError::required("spec.role")),
        (Some(Role::Node), None) => errors.push(FieldError::required("spec.node")),
        (Some(Role::Node), Some(name)) => {
            if let Err(e) = validate::dns1123_label(name) {
                errors.push(FieldError::invalid("spec.node", e));
            }
        }
        (Some(role), Some(_)) => errors.push(FieldError::invalid(
            "spec.node",
            format!("only a key of role node is bound to a node; this one has role {role}"),
        )),
        (Some(_), None) => {}
    }
    errors
}

/// Written by the server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyStatus {
    /// The public part of the token, by which the server finds the key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_id: String,
    /// The whole token, set only in the response to the create that made the
    /// key. The server strips it before storing and from every other response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<KeySecret>,
    /// The key that created this one (its `metadata.name`), or `bootstrap`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub created_by: String,
}

impl ApiKey {
    /// The object as it may be stored or sent anywhere but the create response.
    pub fn without_secret(mut self) -> Self {
        self.status.secret = None;
        self
    }
}

/// A token in clear. Its `Debug` prints no part of it, so logging an `ApiKey`
/// with `{:?}` cannot leak one; read it with [`KeySecret::expose`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct KeySecret(String);

impl KeySecret {
    pub fn new(token: String) -> Self {
        Self(token)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeySecret(<redacted>)")
    }
}

/// Length of a key id.
pub const KEY_ID_LEN: usize = 12;

/// A key id: [`KEY_ID_LEN`] lowercase letters and digits, so it is also a
/// valid object name for its [`crate::ApiKeyHash`].
pub fn key_id(value: &str) -> Result<(), String> {
    if value.len() == KEY_ID_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        Ok(())
    } else {
        Err(format!("must be {KEY_ID_LEN} lowercase letters and digits"))
    }
}

/// When a key given `--expires` ends: a length from `now` (`30d`, `12h`,
/// `1w2d`, units `s`, `m`, `h`, `d`, `w`) or an RFC 3339 instant. A day is 24
/// hours. The result must lie after `now`.
pub fn parse_expiry(input: &str, now: Timestamp) -> Result<Timestamp, String> {
    let input = input.trim();
    let at = if input.contains('T') {
        input
            .parse::<Timestamp>()
            .map_err(|e| format!("{input:?} is not an RFC 3339 instant: {e}"))?
    } else {
        let seconds = parse_length(input)?;
        i64::try_from(seconds)
            .ok()
            .and_then(|s| now.checked_add(jiff::SignedDuration::from_secs(s)).ok())
            .ok_or_else(|| format!("{input:?} reaches beyond the last representable instant"))?
    };
    if at <= now {
        return Err(format!("{input:?} is not in the future"));
    }
    Ok(at)
}

fn parse_length(input: &str) -> Result<u64, String> {
    const USAGE: &str = "a length like 30d, 12h, 90m or 1w2d (units s, m, h, d, w)";
    if input.is_empty() {
        return Err(format!("an empty expiry: give {USAGE}"));
    }
    let mut total: u64 = 0;
    let mut rest = input;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, tail) = rest.split_at(digits);
        let mut chars = tail.chars();
        let unit = chars.next();
        let n: u64 = number
            .parse()
            .map_err(|_| format!("{input:?} is not {USAGE}"))?;
        let scale: u64 = match unit {
            Some('s') => 1,
            Some('m') => 60,
            Some('h') => 3600,
            Some('d') => 86_400,
            Some('w') => 7 * 86_400,
            _ => return Err(format!("{input:?} is not {USAGE}")),
        };
        total = n
            .checked_mul(scale)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| format!("{input:?} is too long"))?;
        rest = chars.as_str();
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Resource;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("valid timestamp")
    }

    #[test]
    fn role_and_node_rules() {
        // (role, node, field the error names)
        let cases: [(Option<Role>, Option<&str>, Option<&str>); 10] = [
            (None, None, Some("spec.role")),
            (None, Some("gpu-1"), Some("spec.role")),
            (Some(Role::Node), None, Some("spec.node")),
            (Some(Role::Node), Some("gpu-1"), None),
            (Some(Role::Node), Some("GPU_1"), Some("spec.node")),
            (Some(Role::Admin), None, None),
            (Some(Role::Admin), Some("gpu-1"), Some("spec.node")),
            (Some(Role::Join), Some("gpu-1"), Some("spec.node")),
            (Some(Role::Inference), None, None),
            (Some(Role::Controller), None, None),
        ];
        for (role, node, want) in cases {
            let errors = role_and_node(role, node);
            match want {
                None => assert!(errors.is_empty(), "{role:?} {node:?}: {errors:?}"),
                Some(field) => {
                    assert_eq!(errors.len(), 1, "{role:?} {node:?}: {errors:?}");
                    assert_eq!(errors[0].field, field, "{role:?} {node:?}");
                }
            }
        }
    }

    #[test]
    fn wire_form_and_validation() {
        let cases = [
            (r#"{"role":"admin"}"#, None),
            (r#"{"role":"node","node":"gpu-1"}"#, None),
            (
                r#"{"role":"inference","expiresAt":"2027-01-01T00:00:00Z","disabled":true,"description":"ci"}"#,
                None,
            ),
            (r#"{}"#, Some("spec.role")),
            (r#"{"role":"node"}"#, Some("spec.node")),
            (r#"{"role":"viewer","node":"gpu-1"}"#, Some("spec.node")),
        ];
        for (spec, want) in cases {
            let key: ApiKey =
                serde_json::from_str(&format!(r#"{{"metadata":{{"name":"k"}},"spec":{spec}}}"#))
                    .expect("parse");
            assert_eq!(key.kind, "ApiKey");
            let errors = key.validate();
            match want {
                None => assert!(errors.is_empty(), "{spec}: {errors:?}"),
                Some(f) => assert!(errors.iter().any(|e| e.field == f), "{spec}: {errors:?}"),
            }
        }
        let long = ApiKey::new(
            "k",
            ApiKeySpec {
                role: Some(Role::Viewer),
                description: "x".repeat(MAX_DESCRIPTION_BYTES + 1),
                ..Default::default()
            },
        );
        let fields: Vec<String> = long.validate().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["spec.description"]);
    }

    #[test]
    fn unknown_role_and_field_are_refused() {
        let bad_role =
            serde_json::from_str::<ApiKeySpec>(r#"{"role":"root"}"#).expect_err("unknown role");
        assert!(bad_role.to_string().contains("root"), "{bad_role}");
        let typo = serde_json::from_str::<ApiKeySpec>(r#"{"role":"admin","expires":"1d"}"#)
            .expect_err("unknown field");
        assert!(typo.to_string().contains("expires"), "{typo}");
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            let json = serde_json::to_string(&role).expect("serialize");
            assert_eq!(json, format!("\"{role}\""));
        }
        assert!("Admin".parse::<Role>().is_err());
    }

    #[test]
    fn secret_stays_out_of_debug_and_stripped_copies() {
        let mut key = ApiKey::new("k", ApiKeySpec::default());
        key.status.secret = Some(KeySecret::new("herd_abcdefghijkl_TOPSECRET".into()));
        let debug = format!("{key:?}");
        assert!(!debug.contains("TOPSECRET"), "{debug}");
        let json = serde_json::to_string(&key).expect("serialize");
        assert!(json.contains("TOPSECRET"), "the create response carries it");
        let stored = serde_json::to_string(&key.without_secret()).expect("serialize");
        assert!(!stored.contains("TOPSECRET"), "{stored}");
        assert!(!stored.contains("secret"), "{stored}");
    }

    #[test]
    fn key_id_syntax() {
        for (id, ok) in [
            ("abcdefgh1234", true),
            ("000000000000", true),
            ("abcdefgh123", false),
            ("abcdefgh12345", false),
            ("ABCDEFGH1234", false),
            ("abcdefgh-234", false),
            ("abcdefgh_234", false),
            ("", false),
        ] {
            assert_eq!(key_id(id).is_ok(), ok, "{id:?}");
        }
    }

    #[test]
    fn expiry_parse_table() {
        let now = ts("2026-01-01T00:00:00Z");
        let cases = [
            ("30d", Some("2026-01-31T00:00:00Z")),
            ("12h", Some("2026-01-01T12:00:00Z")),
            ("90m", Some("2026-01-01T01:30:00Z")),
            ("45s", Some("2026-01-01T00:00:45Z")),
            ("1w2d", Some("2026-01-10T00:00:00Z")),
            (" 1d ", Some("2026-01-02T00:00:00Z")),
            ("2026-06-01T00:00:00Z", Some("2026-06-01T00:00:00Z")),
            ("2025-06-01T00:00:00Z", None),
            ("0d", None),
            ("", None),
            ("d", None),
            ("30", None),
            ("30y", None),
            ("-1d", None),
            ("1.5d", None),
            ("99999999999999999999d", None),
            ("9999999999999w", None),
            ("tomorrow", None),
        ];
        for (input, want) in cases {
            let got = parse_expiry(input, now);
            match want {
                Some(at) => assert_eq!(got, Ok(ts(at)), "{input:?}"),
                None => assert!(got.is_err(), "{input:?} gave {got:?}"),
            }
        }
    }

    #[test]
    fn schema_is_derived() {
        let text = ApiKey::kind_schema().to_string();
        for field in ["role", "expiresAt", "disabled", "keyId"] {
            assert!(text.contains(field), "{field} missing from {text}");
        }
    }
}
