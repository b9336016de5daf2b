use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Status;

/// One line of a watch stream (NDJSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "object", rename_all = "UPPERCASE")]
pub enum WatchEvent<K> {
    Added(K),
    Modified(K),
    Deleted(K),
    /// Nothing changed for this watcher, but the store has moved on to this
    /// revision; a client resuming from it misses nothing.
    Bookmark(Bookmark),
    /// The watch cannot go on; code 410 means "relist".
    Error(Status),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bookmark {
    pub api_version: String,
    pub kind: String,
    pub metadata: BookmarkMeta,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BookmarkMeta {
    pub resource_version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape() {
        let ev: WatchEvent<serde_json::Value> = WatchEvent::Added(serde_json::json!({"a":1}));
        assert_eq!(
            serde_json::to_string(&ev).expect("ser"),
            r#"{"type":"ADDED","object":{"a":1}}"#
        );
        let err: WatchEvent<serde_json::Value> =
            serde_json::from_str(r#"{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Gone","message":"too old"}}"#)
                .expect("parse");
        assert!(matches!(err, WatchEvent::Error(s) if s.is_gone()));
    }
}
