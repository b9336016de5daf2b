use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::FieldError;
use crate::resource::resource_object;

resource_object! {
    /// A credential herd sends to a backend (a node's `spec.auth.secretRef`
    /// names it). Only admins may read or write Secrets.
    Secret { spec: SecretSpec, status: SecretStatus, kind: "Secret", plural: "secrets", singular: "secret", short: [] }
}

/// Largest token accepted.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSpec {
    /// Sent as `Authorization: Bearer <token>` to the nodes that name this
    /// Secret.
    #[serde(default)]
    pub token: SecretToken,
}

/// A bearer token. Its `Debug` shows only its length, so a `Secret` that
/// reaches a log line or an error by mistake does not carry it there; a
/// token of the wrong type is refused without quoting it (serde's own
/// message would: ``invalid type: integer `123` ``).
#[derive(Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct SecretToken(String);

impl<'de> Deserialize<'de> for SecretToken {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = SecretToken;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SecretToken, E> {
                Ok(SecretToken(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<SecretToken, E> {
                Ok(SecretToken(v))
            }
        }
        // Anything but a string: one message that carries no part of it.
        d.deserialize_any(Visit)
            .map_err(|_: D::Error| serde::de::Error::custom("spec.token must be a string"))
    }
}

impl SecretToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

/// Secrets have no status; the type exists for the envelope's sake.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretStatus {}

impl SecretSpec {
    fn validate(&self) -> Vec<FieldError> {
        let token = self.token.expose();
        let mut errors = Vec::new();
        // The messages never quote the token.
        if token.is_empty() {
            errors.push(FieldError::required("spec.token"));
        } else if token.len() > MAX_TOKEN_BYTES {
            errors.push(FieldError::invalid(
                "spec.token",
                format!("is {} bytes; the limit is {MAX_TOKEN_BYTES}", token.len()),
            ));
        } else if !token.bytes().all(|b| b.is_ascii_graphic()) {
            errors.push(FieldError::invalid(
                "spec.token",
                "must be printable ASCII without spaces (it is sent in an HTTP header)",
            ));
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Resource;

    #[test]
    fn token_rules_and_no_token_in_debug_or_errors() {
        let secret = "sk-live-0123456789abcdef";
        let s = Secret::new(
            "hosted",
            SecretSpec {
                token: SecretToken::new(secret),
            },
        );
        assert!(s.validate().is_empty(), "{:?}", s.validate());
        let debug = format!("{s:?}");
        assert!(!debug.contains(secret), "{debug}");
        assert!(debug.contains("<24 bytes>"), "{debug}");

        for (token, field_ok) in [
            ("", false),
            ("has space", false),
            ("tab\there", false),
            ("ünicode", false),
            ("a", true),
        ] {
            let s = Secret::new(
                "x",
                SecretSpec {
                    token: SecretToken::new(token),
                },
            );
            let errors = s.validate();
            assert_eq!(errors.is_empty(), field_ok, "{token:?}: {errors:?}");
            for e in errors {
                assert_eq!(e.field, "spec.token");
                assert!(token.is_empty() || !e.message.contains(token), "{e:?}");
            }
        }
        let long = Secret::new(
            "x",
            SecretSpec {
                token: SecretToken::new("a".repeat(MAX_TOKEN_BYTES + 1)),
            },
        );
        assert_eq!(long.validate().len(), 1);
    }

    #[test]
    fn a_token_of_the_wrong_type_is_not_quoted() {
        for spec in [
            r#"{"token":918273645}"#,
            r#"{"token":["sk-in-a-list"]}"#,
            r#"{"token":true}"#,
        ] {
            let err = serde_json::from_str::<SecretSpec>(spec)
                .expect_err(spec)
                .to_string();
            assert!(err.contains("spec.token must be a string"), "{err}");
            assert!(
                !err.contains("918273645") && !err.contains("sk-in-a-list"),
                "{err}"
            );
        }
    }

    #[test]
    fn wire_shape() {
        let s: Secret = serde_json::from_str(
            r#"{"apiVersion":"herd/v1","kind":"Secret","metadata":{"name":"k"},"spec":{"token":"t0k"}}"#,
        )
        .expect("parse");
        assert_eq!(s.spec.token.expose(), "t0k");
        let back = serde_json::to_value(&s).expect("serialize");
        assert_eq!(back["spec"]["token"], "t0k");
    }
}
