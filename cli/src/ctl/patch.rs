//! What `herd apply` sends for an object that exists: a JSON merge patch of
//! what the manifest says, so fields the manifest does not mention (a
//! nodelet's `spec.ollamaUrl`, labels others set) are left alone.
//!
//! Like `kubectl apply`, the last applied manifest is kept in an annotation.
//! A field that was in it but is no longer in the manifest is removed
//! (`null` in the patch); without that, deleting `replicas:` from a file
//! would silently change nothing.

use serde_json::{Map, Value, json};

/// Where the last applied manifest is kept.
pub const LAST_APPLIED: &str = "herd/last-applied-configuration";

/// The part of a manifest that apply owns: kind, name, labels, annotations
/// (without [`LAST_APPLIED`]) and spec. Server-set metadata and status, as
/// found in `herd get -o yaml` output, are left out.
pub fn desired(doc: &Value) -> Value {
    let mut metadata = Map::new();
    if let Some(name) = doc.pointer("/metadata/name") {
        metadata.insert("name".into(), name.clone());
    }
    if let Some(labels) = doc.pointer("/metadata/labels").filter(|v| !is_empty(v)) {
        metadata.insert("labels".into(), labels.clone());
    }
    if let Some(Value::Object(annotations)) = doc.pointer("/metadata/annotations") {
        let mut annotations = annotations.clone();
        annotations.remove(LAST_APPLIED);
        if !annotations.is_empty() {
            metadata.insert("annotations".into(), Value::Object(annotations));
        }
    }
    let mut out = Map::new();
    for key in ["apiVersion", "kind"] {
        if let Some(v) = doc.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    out.insert("metadata".into(), Value::Object(metadata));
    if let Some(spec) = doc.get("spec").filter(|v| !v.is_null()) {
        out.insert("spec".into(), spec.clone());
    }
    Value::Object(out)
}

/// The body of a create: the desired object, recording itself as applied.
pub fn for_create(desired: &Value) -> Value {
    let mut obj = desired.clone();
    annotations_mut(&mut obj).insert(LAST_APPLIED.into(), Value::String(record(desired)));
    obj
}

/// The merge patch that makes `live` say what `desired` says, and removes
/// what the previous apply (recorded on `live`) set but `desired` dropped.
pub fn for_update(live: &Value, desired: &Value) -> Value {
    let last = last_applied(live).unwrap_or_else(|| json!({}));
    let section = |v: &Value, pointer: &str| v.pointer(pointer).cloned().unwrap_or(json!({}));
    let labels = three_way(
        &section(&last, "/metadata/labels"),
        &section(desired, "/metadata/labels"),
    );
    let mut annotations = three_way(
        &section(&last, "/metadata/annotations"),
        &section(desired, "/metadata/annotations"),
    );
    if let Value::Object(map) = &mut annotations {
        map.insert(LAST_APPLIED.into(), Value::String(record(desired)));
    }
    let spec = three_way(&section(&last, "/spec"), &section(desired, "/spec"));
    let mut metadata = Map::new();
    if !is_empty(&labels) {
        metadata.insert("labels".into(), labels);
    }
    metadata.insert("annotations".into(), annotations);
    let mut patch = Map::new();
    patch.insert("metadata".into(), Value::Object(metadata));
    if !is_empty(&spec) {
        patch.insert("spec".into(), spec);
    }
    Value::Object(patch)
}

/// The manifest recorded by the last apply, if any.
pub fn last_applied(live: &Value) -> Option<Value> {
    let text = live
        .pointer("/metadata/annotations")?
        .get(LAST_APPLIED)?
        .as_str()?;
    serde_json::from_str(text).ok()
}

/// `desired` as a patch over what `last` set: objects present in both are
/// merged key by key, keys only in `last` become `null` (removed), anything
/// else is `desired`'s value.
fn three_way(last: &Value, desired: &Value) -> Value {
    let (Value::Object(last), Value::Object(want)) = (last, desired) else {
        return desired.clone();
    };
    let mut out = Map::new();
    for (key, value) in want {
        let merged = match last.get(key) {
            Some(prev @ Value::Object(_)) if value.is_object() => three_way(prev, value),
            _ => value.clone(),
        };
        out.insert(key.clone(), merged);
    }
    for key in last.keys() {
        if !want.contains_key(key) {
            out.insert(key.clone(), Value::Null);
        }
    }
    Value::Object(out)
}

fn record(desired: &Value) -> String {
    // A Secret's token stays out of the annotation, which every reader of
    // the object sees in full. Nothing is lost: the token is required, so
    // no later apply removes it, and every apply sends it.
    if desired.get("kind").and_then(Value::as_str) == Some("Secret")
        && desired.pointer("/spec/token").is_some()
    {
        let mut kept = desired.clone();
        if let Some(Value::Object(spec)) = kept.get_mut("spec") {
            spec.remove("token");
        }
        return kept.to_string();
    }
    // Compact and with sorted keys (serde_json's map is a BTreeMap), so the
    // same manifest always records the same text and re-applying it is a no-op.
    desired.to_string()
}

fn annotations_mut(obj: &mut Value) -> &mut Map<String, Value> {
    let root = ensure_object(obj);
    let metadata = ensure_object(root.entry("metadata").or_insert_with(|| json!({})));
    ensure_object(metadata.entry("annotations").or_insert_with(|| json!({})))
}

fn ensure_object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = json!({});
    }
    match v {
        Value::Object(map) => map,
        _ => unreachable!("just made an object"),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_token_is_never_recorded_in_the_annotation() {
        let doc = json!({"apiVersion":"herd/v1","kind":"Secret",
                         "metadata":{"name":"k"},"spec":{"token":"sk-very-secret"}});
        let want = desired(&doc);
        let created = for_create(&want);
        assert_eq!(
            created["spec"]["token"], "sk-very-secret",
            "the token is sent"
        );
        let recorded = created["metadata"]["annotations"][LAST_APPLIED].to_string();
        assert!(!recorded.contains("sk-very-secret"), "{recorded}");
        let live = json!({"kind":"Secret","metadata":{"name":"k","annotations":
                          {LAST_APPLIED: created["metadata"]["annotations"][LAST_APPLIED].clone()}},
                          "spec":{"token":"old"}});
        let patch = for_update(&live, &want);
        assert_eq!(patch["spec"]["token"], "sk-very-secret");
        assert!(
            !patch["metadata"]["annotations"][LAST_APPLIED]
                .to_string()
                .contains("sk-very")
        );
    }

    fn live_with(last: Option<&Value>, spec: Value, labels: Value) -> Value {
        let mut annotations = json!({"team": "ml"});
        if let Some(last) = last {
            annotations[LAST_APPLIED] = Value::String(last.to_string());
        }
        json!({"apiVersion":"herd/v1","kind":"Node",
               "metadata":{"name":"a","resourceVersion":"7","labels":labels,"annotations":annotations},
               "spec":spec,"status":{"usage":{"inFlight":1}}})
    }

    #[test]
    fn desired_drops_server_fields_and_status() {
        let doc = json!({"apiVersion":"herd/v1","kind":"Node",
            "metadata":{"name":"a","uid":"u","resourceVersion":"9","creationTimestamp":"2026-01-01T00:00:00Z",
                        "labels":{"gpu":"nvidia"},"annotations":{LAST_APPLIED:"{}"}},
            "spec":{"weight":200},"status":{"usage":{"inFlight":3}}});
        assert_eq!(
            desired(&doc),
            json!({"apiVersion":"herd/v1","kind":"Node","metadata":{"name":"a","labels":{"gpu":"nvidia"}},"spec":{"weight":200}})
        );
    }

    #[test]
    fn first_apply_over_an_existing_object_only_adds() {
        let live = live_with(
            None,
            json!({"ollamaUrl":"http://10.0.0.1:11434","weight":100}),
            json!({"zone":"a"}),
        );
        let want = desired(
            &json!({"kind":"Node","metadata":{"name":"a","labels":{"gpu":"nvidia"}},"spec":{"weight":200}}),
        );
        let patch = for_update(&live, &want);
        assert_eq!(patch["metadata"]["labels"], json!({"gpu":"nvidia"}));
        assert_eq!(patch["spec"], json!({"weight":200}));
        assert_eq!(
            patch["metadata"]["annotations"][LAST_APPLIED],
            Value::String(want.to_string())
        );
        assert!(patch["metadata"]["annotations"].get("team").is_none());
    }

    #[test]
    fn fields_dropped_from_the_manifest_are_removed_others_kept() {
        let last = desired(
            &json!({"kind":"ModelAssignment","metadata":{"name":"m","labels":{"a":"1","b":"2"}},
            "spec":{"model":"x","replicas":2,"nodeSelector":{"matchLabels":{"gpu":"nvidia","zone":"a"}}}}),
        );
        let live = live_with(
            Some(&last),
            json!({"model":"x","replicas":2}),
            json!({"a":"1","b":"2","other":"kept"}),
        );
        let want = desired(
            &json!({"kind":"ModelAssignment","metadata":{"name":"m","labels":{"a":"1"}},
            "spec":{"model":"x","nodeSelector":{"matchLabels":{"gpu":"nvidia"}}}}),
        );
        let patch = for_update(&live, &want);
        assert_eq!(patch["metadata"]["labels"], json!({"a":"1","b":null}));
        assert_eq!(
            patch["spec"],
            json!({"model":"x","replicas":null,"nodeSelector":{"matchLabels":{"gpu":"nvidia","zone":null}}})
        );
    }

    #[test]
    fn a_manifest_without_spec_never_removes_the_spec() {
        let last = desired(&json!({"kind":"Node","metadata":{"name":"a"},"spec":{"weight":200}}));
        let live = live_with(
            Some(&last),
            json!({"ollamaUrl":"http://x:1","weight":200}),
            json!({}),
        );
        let want =
            desired(&json!({"kind":"Node","metadata":{"name":"a","labels":{"gpu":"nvidia"}}}));
        let patch = for_update(&live, &want);
        assert_eq!(patch["spec"], json!({"weight":null}));
    }

    #[test]
    fn create_records_itself() {
        let want = desired(&json!({"kind":"Node","metadata":{"name":"a"}}));
        let body = for_create(&want);
        assert_eq!(last_applied(&body), Some(want));
    }
}
