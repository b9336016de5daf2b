use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{API_VERSION, FieldError, ObjectMeta, validate};

/// What the server, client and CLI need to know about a kind, so each of them
/// is written once and works for every kind.
pub trait Resource:
    Serialize + DeserializeOwned + JsonSchema + Clone + fmt::Debug + PartialEq + Send + Sync + 'static
{
    type Spec: Serialize + DeserializeOwned + Clone + PartialEq + Default + fmt::Debug + Send + Sync;
    type Status: Serialize
        + DeserializeOwned
        + Clone
        + PartialEq
        + Default
        + fmt::Debug
        + Send
        + Sync;

    const KIND: &'static str;
    const PLURAL: &'static str;
    const SINGULAR: &'static str;
    const SHORT_NAMES: &'static [&'static str];

    fn new(name: &str, spec: Self::Spec) -> Self;
    fn meta(&self) -> &ObjectMeta;
    fn meta_mut(&mut self) -> &mut ObjectMeta;
    fn spec(&self) -> &Self::Spec;
    fn spec_mut(&mut self) -> &mut Self::Spec;
    fn status(&self) -> &Self::Status;
    fn status_mut(&mut self) -> &mut Self::Status;
    fn api_version(&self) -> &str;
    fn kind(&self) -> &str;

    /// Rules specific to this kind (everything under `spec`).
    fn validate_spec(&self) -> Vec<FieldError>;

    /// Every rule: envelope, metadata and spec. Status is written by herd's own
    /// components and is not validated beyond its types.
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.api_version() != API_VERSION {
            errors.push(FieldError::not_supported(
                "apiVersion",
                format!(
                    "{:?} is not supported: must be {API_VERSION:?}",
                    self.api_version()
                ),
            ));
        }
        if self.kind() != Self::KIND {
            errors.push(FieldError::not_supported(
                "kind",
                format!(
                    "{:?} does not match the resource: must be {:?}",
                    self.kind(),
                    Self::KIND
                ),
            ));
        }
        let meta = self.meta();
        if meta.name.is_empty() {
            errors.push(FieldError::required("metadata.name"));
        } else if let Err(e) = validate::dns1123_label(&meta.name) {
            errors.push(FieldError::invalid("metadata.name", e));
        }
        validate::labels("metadata.labels", &meta.labels, &mut errors);
        let annotations: usize = meta
            .annotations
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum();
        if annotations > validate::MAX_ANNOTATIONS_BYTES {
            errors.push(FieldError::invalid(
                "metadata.annotations",
                format!(
                    "total size is {annotations} bytes; the limit is {} bytes (256 KiB)",
                    validate::MAX_ANNOTATIONS_BYTES
                ),
            ));
        }
        for k in meta.annotations.keys() {
            if let Err(e) = validate::label_key(k) {
                errors.push(FieldError::invalid("metadata.annotations", e));
            }
        }
        errors.extend(self.validate_spec());
        errors
    }

    /// The kind's JSON Schema (draft 2020-12), derived from the Rust types.
    fn kind_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(Self)).unwrap_or(serde_json::Value::Null)
    }

    fn info() -> ResourceInfo {
        ResourceInfo {
            name: Self::PLURAL.to_owned(),
            singular_name: Self::SINGULAR.to_owned(),
            kind: Self::KIND.to_owned(),
            namespaced: false,
            short_names: Self::SHORT_NAMES.iter().map(|s| (*s).to_owned()).collect(),
            verbs: [
                "create", "delete", "get", "list", "patch", "update", "watch",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
            subresources: vec!["status".to_owned()],
            schema: format!("/apis/{API_VERSION}/schemas/{}", Self::PLURAL),
        }
    }
}

/// One entry of `GET /apis/herd/v1` (an `APIResourceList`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceInfo {
    pub name: String,
    pub singular_name: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub verbs: Vec<String>,
    pub subresources: Vec<String>,
    /// Where this kind's JSON Schema is served.
    pub schema: String,
}

/// Every kind herd serves.
pub fn api_resources() -> Vec<ResourceInfo> {
    vec![
        crate::Node::info(),
        crate::ModelAssignment::info(),
        crate::Event::info(),
        crate::ApiKey::info(),
        crate::Secret::info(),
        crate::Lease::info(),
    ]
}

pub(crate) fn api_version() -> String {
    API_VERSION.to_owned()
}

/// Declares a top-level kind: the envelope struct and its `Resource` impl.
macro_rules! resource_object {
    (
        $(#[$doc:meta])*
        $name:ident { spec: $spec:ty, status: $status:ty, kind: $kind:literal, plural: $plural:literal,
                      singular: $singular:literal, short: [$($short:literal),*] }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name {
            /// Always `herd/v1`.
            #[serde(default = "crate::resource::api_version")]
            pub api_version: String,
            #[serde(default = "default_kind")]
            pub kind: String,
            #[serde(default)]
            pub metadata: $crate::ObjectMeta,
            #[serde(default)]
            pub spec: $spec,
            /// Written by herd through the `/status` subresource; ignored on spec writes.
            #[serde(default)]
            pub status: $status,
        }

        fn default_kind() -> String {
            $kind.to_owned()
        }

        impl $crate::Resource for $name {
            type Spec = $spec;
            type Status = $status;
            const KIND: &'static str = $kind;
            const PLURAL: &'static str = $plural;
            const SINGULAR: &'static str = $singular;
            const SHORT_NAMES: &'static [&'static str] = &[$($short),*];

            fn new(name: &str, spec: $spec) -> Self {
                Self {
                    api_version: crate::resource::api_version(),
                    kind: default_kind(),
                    metadata: $crate::ObjectMeta::named(name),
                    spec,
                    status: Default::default(),
                }
            }
            fn meta(&self) -> &$crate::ObjectMeta { &self.metadata }
            fn meta_mut(&mut self) -> &mut $crate::ObjectMeta { &mut self.metadata }
            fn spec(&self) -> &$spec { &self.spec }
            fn spec_mut(&mut self) -> &mut $spec { &mut self.spec }
            fn status(&self) -> &$status { &self.status }
            fn status_mut(&mut self) -> &mut $status { &mut self.status }
            fn api_version(&self) -> &str { &self.api_version }
            fn kind(&self) -> &str { &self.kind }
            fn validate_spec(&self) -> Vec<$crate::FieldError> { self.spec.validate() }
        }
    };
}
pub(crate) use resource_object;
