use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::KeySecret;

/// The path of the join exchange: a nodelet holding a join key posts a
/// [`JoinRequest`] and receives a node key bound to the name it asked for.
pub const JOIN_PATH: &str = "/apis/herd/v1/join";

/// Body of `POST /apis/herd/v1/join`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinRequest {
    /// The Node name the nodelet registers under.
    pub node: String,
}

/// Answer of the join exchange (201). The nodelet stores `token` in its
/// state directory and uses it from then on instead of the join key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinResponse {
    pub node: String,
    /// `metadata.name` of the new `ApiKey`.
    pub key_name: String,
    /// The node key, whole; shown only in this answer.
    pub token: KeySecret,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape() {
        let req: JoinRequest = serde_json::from_str(r#"{"node":"gpu-1"}"#).expect("parse");
        assert_eq!(req.node, "gpu-1");
        assert!(serde_json::from_str::<JoinRequest>(r#"{"name":"gpu-1"}"#).is_err());
        let resp = JoinResponse {
            node: "gpu-1".into(),
            key_name: "node-gpu-1".into(),
            token: KeySecret::new("herd_abcdefgh1234_SECRET".into()),
        };
        let json = serde_json::to_string(&resp).expect("serialize");
        assert_eq!(
            json,
            r#"{"node":"gpu-1","keyName":"node-gpu-1","token":"herd_abcdefgh1234_SECRET"}"#
        );
        assert!(!format!("{resp:?}").contains("SECRET"));
    }
}
