use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::resource::resource_object;
use crate::{FieldError, apikey, validate};

resource_object! {
    /// The hash of one key's secret, named by the key id. The server stores and
    /// watches it like any kind but serves it on no route and lists it in no
    /// discovery document, so no API answer can carry a hash.
    ApiKeyHash {
        spec: ApiKeyHashSpec, status: ApiKeyHashStatus,
        kind: "ApiKeyHash", plural: "apikeyhashes", singular: "apikeyhash", short: []
    }
}

/// Which key the hash belongs to, and the hash.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyHashSpec {
    /// `metadata.name` of the `ApiKey`.
    #[serde(default)]
    pub key_name: String,
    /// SHA-256 of the secret, 64 lowercase hex digits.
    #[serde(default)]
    pub sha256: String,
}

impl fmt::Debug for ApiKeyHashSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyHashSpec")
            .field("key_name", &self.key_name)
            .field("sha256", &"<redacted>")
            .finish()
    }
}

impl ApiKeyHashSpec {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.key_name.is_empty() {
            errors.push(FieldError::required("spec.keyName"));
        } else if let Err(e) = validate::dns1123_label(&self.key_name) {
            errors.push(FieldError::invalid("spec.keyName", e));
        }
        if self.sha256.len() != 64
            || !self
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            errors.push(FieldError::invalid(
                "spec.sha256",
                "must be 64 lowercase hex digits",
            ));
        }
        errors
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyHashStatus {}

impl ApiKeyHash {
    /// Every rule of [`crate::Resource::validate`], plus: the name is a key id.
    pub fn validate_all(&self) -> Vec<FieldError> {
        let mut errors = crate::Resource::validate(self);
        if let Err(e) = apikey::key_id(&self.metadata.name) {
            errors.push(FieldError::invalid("metadata.name", e));
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Resource;

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn validation_table() {
        let upper = HASH.to_ascii_uppercase();
        let cases: [(&str, &str, &str, Option<&str>); 6] = [
            ("abcdefgh1234", "ci", HASH, None),
            ("abcdefgh1234", "", HASH, Some("spec.keyName")),
            ("abcdefgh1234", "ci", &HASH[1..], Some("spec.sha256")),
            ("abcdefgh1234", "ci", &upper, Some("spec.sha256")),
            ("short", "ci", HASH, Some("metadata.name")),
            ("abcdefgh1234", "Bad_Name", HASH, Some("spec.keyName")),
        ];
        for (name, key_name, sha256, want) in cases {
            let obj = ApiKeyHash::new(
                name,
                ApiKeyHashSpec {
                    key_name: key_name.into(),
                    sha256: sha256.into(),
                },
            );
            let errors = obj.validate_all();
            match want {
                None => assert!(errors.is_empty(), "{name} {key_name}: {errors:?}"),
                Some(f) => assert!(
                    errors.iter().any(|e| e.field == f),
                    "{name} {key_name}: {errors:?}"
                ),
            }
        }
    }

    #[test]
    fn debug_hides_the_hash() {
        let obj = ApiKeyHash::new(
            "abcdefgh1234",
            ApiKeyHashSpec {
                key_name: "ci".into(),
                sha256: HASH.into(),
            },
        );
        let debug = format!("{obj:?}");
        assert!(!debug.contains(HASH), "{debug}");
        assert!(debug.contains("ci"), "{debug}");
        assert_eq!(obj.kind, "ApiKeyHash");
    }

    #[test]
    fn not_in_discovery() {
        assert!(
            crate::api_resources()
                .iter()
                .all(|r| r.kind != ApiKeyHash::KIND)
        );
    }
}
