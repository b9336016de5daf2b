//! The decisions behind each write, as pure functions of (current object,
//! request, revision, clock). The store runs them atomically; tests run them
//! directly.

use std::fmt;

use herd_api::{Resource, Timestamp};
use serde::Deserialize as _;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::error::ApiError;

/// What a write decided the store should do.
#[derive(Debug, PartialEq)]
pub enum Decision<K> {
    Put(K),
    Delete(K),
    Unchanged,
}

/// Server-owned fields a client may not set.
#[derive(Clone)]
pub struct ServerFields {
    pub uid: String,
    pub now: Timestamp,
}

fn check_precondition<K: Resource>(current: &K, requested: Option<&str>) -> Result<(), ApiError> {
    match requested {
        None | Some("") => Ok(()),
        Some(rv) if Some(rv) == current.meta().resource_version.as_deref() => Ok(()),
        Some(rv) => Err(ApiError::Conflict {
            kind: K::KIND,
            name: current.meta().name.clone(),
            message: format!(
                "the object has been modified (resourceVersion {rv} is stale, current is {}); please apply your changes to the latest version and try again",
                current.meta().resource_version.as_deref().unwrap_or("?")
            ),
        }),
    }
}

/// Refuses an object whose serialized form is larger than the store keeps
/// (422, naming the limit): the size is known only once the write has been
/// decided (a small patch can grow an object past it).
pub fn check_object_size<K: Resource>(name: &str, len: usize) -> Result<(), ApiError> {
    herd_api::validate::object_size(len).map_err(|message| ApiError::Invalid {
        kind: K::KIND,
        name: name.to_owned(),
        errors: vec![herd_api::FieldError::invalid("object", message)],
    })
}

/// Refuses a Node whose `spec.url` is an IP literal in a network
/// node URLs may not use (see [`herd_api::node_address`]) unless `allowed`
/// lets it in (422). Host names are checked where they are resolved, by the
/// probe and the proxy.
pub fn check_node_address<K: Resource>(
    obj: &K,
    allowed: &[herd_api::node_address::Cidr],
) -> Result<(), ApiError> {
    let Some(node) = (obj as &dyn std::any::Any).downcast_ref::<herd_api::Node>() else {
        return Ok(());
    };
    let Some(ip) = herd_api::node_address::ip_literal_host(&node.spec.url) else {
        return Ok(());
    };
    herd_api::node_address::check(ip, allowed).map_err(|message| ApiError::Invalid {
        kind: K::KIND,
        name: node.meta().name.clone(),
        errors: vec![herd_api::FieldError::invalid("spec.url", message)],
    })
}

fn validated<K: Resource>(obj: K) -> Result<K, ApiError> {
    let errors = obj.validate();
    if errors.is_empty() {
        Ok(obj)
    } else {
        Err(ApiError::Invalid {
            kind: K::KIND,
            name: obj.meta().name.clone(),
            errors,
        })
    }
}

/// Same object apart from the revision: nothing to write.
fn same<K: Resource>(current: &K, next: &K) -> bool {
    let mut a = current.clone();
    a.meta_mut().resource_version = None;
    let mut b = next.clone();
    b.meta_mut().resource_version = None;
    a == b
}

fn finish<K: Resource>(current: &K, mut next: K, rv: u64) -> Decision<K> {
    if same(current, &next) {
        return Decision::Unchanged;
    }
    next.meta_mut().resource_version = Some(rv.to_string());
    Decision::Put(next)
}

/// POST: a new object. Status from the client is dropped (status belongs to
/// the `/status` subresource), server fields are set.
pub fn create<K: Resource>(
    current: Option<K>,
    mut new: K,
    rv: u64,
    server: ServerFields,
) -> Result<Decision<K>, ApiError> {
    if current.is_some() {
        return Err(ApiError::AlreadyExists {
            kind: K::KIND,
            name: new.meta().name.clone(),
        });
    }
    let meta = new.meta_mut();
    meta.uid = Some(server.uid);
    meta.creation_timestamp = Some(server.now);
    meta.generation = Some(1);
    meta.resource_version = Some(rv.to_string());
    *new.status_mut() = K::Status::default();
    Ok(Decision::Put(validated(new)?))
}

/// PUT: replace spec, labels and annotations. With a `resourceVersion` the
/// write is conditional; without one it is unconditional. Missing → create.
pub fn replace<K: Resource>(
    current: Option<K>,
    new: K,
    rv: u64,
    server: ServerFields,
) -> Result<Decision<K>, ApiError> {
    let Some(current) = current else {
        if new
            .meta()
            .resource_version
            .as_deref()
            .is_some_and(|v| !v.is_empty())
        {
            return Err(ApiError::NotFound {
                kind: K::KIND,
                name: new.meta().name.clone(),
            });
        }
        return create(None, new, rv, server);
    };
    check_precondition(&current, new.meta().resource_version.as_deref())?;
    let mut next = current.clone();
    *next.spec_mut() = new.spec().clone();
    next.meta_mut().labels = new.meta().labels.clone();
    next.meta_mut().annotations = new.meta().annotations.clone();
    if next.spec() != current.spec() {
        next.meta_mut().generation = Some(current.meta().generation.unwrap_or(0) + 1);
    }
    let next = validated(next)?;
    Ok(finish(&current, next, rv))
}

/// Status fields of `kind` that belong to one writer while other writers
/// write the parts around them, as paths from the object's root. A status
/// write that leaves such a field out keeps the stored value: the router
/// keeps a node's count of requests in flight, while the nodelet (or any
/// client) sends `usage` with its own figures only. Without this, a writer
/// replacing the whole `usage` would reset the count and the router would
/// write it back after every such write.
pub fn kept_status_fields(kind: &str) -> &'static [&'static [&'static str]] {
    match kind {
        "Node" => &[&["status", "usage", "inFlight"]],
        _ => &[],
    }
}

/// The fields of [`kept_status_fields`] that the JSON body `body` leaves out.
pub fn left_out(kind: &str, body: &[u8]) -> Vec<&'static [&'static str]> {
    kept_status_fields(kind)
        .iter()
        .copied()
        .filter(|path| !has_field(body, path))
        .collect()
}

/// PUT /status: replace status only, except the fields in `keep` (see
/// [`kept_status_fields`]), which stay as stored.
pub fn replace_status<K: Resource>(
    current: Option<K>,
    new: K,
    keep: &[&[&str]],
    rv: u64,
) -> Result<Decision<K>, ApiError> {
    let current = current.ok_or_else(|| ApiError::NotFound {
        kind: K::KIND,
        name: new.meta().name.clone(),
    })?;
    check_precondition(&current, new.meta().resource_version.as_deref())?;
    let mut next = current.clone();
    *next.status_mut() = new.status().clone();
    if !keep.is_empty() {
        let old = to_value(&current)?;
        let mut doc = to_value(&next)?;
        if copy_fields(&old, &mut doc, keep) {
            next = crate::extract::decode_value(doc)?;
        }
    }
    Ok(finish(&current, next, rv))
}

fn to_value<K: Resource>(obj: &K) -> Result<Value, ApiError> {
    serde_json::to_value(obj).map_err(|e| ApiError::Internal(e.to_string()))
}

/// Sets each of `paths` in `to` to its value in `from`; a path `from` lacks
/// is left alone. Returns whether anything was copied.
fn copy_fields(from: &Value, to: &mut Value, paths: &[&[&str]]) -> bool {
    let mut copied = false;
    for path in paths {
        if let Some(value) = field(from, path) {
            set_field(to, path, value.clone());
            copied = true;
        }
    }
    copied
}

fn field<'v>(doc: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(doc, |v, key| v.get(key))
}

/// Sets `path` in `doc` to `value`, making (or replacing with) objects on
/// the way where there are none.
fn set_field(doc: &mut Value, path: &[&str], value: Value) {
    let Some((key, rest)) = path.split_first() else {
        *doc = value;
        return;
    };
    if !doc.is_object() {
        *doc = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(m) = doc {
        set_field(
            m.entry((*key).to_owned()).or_insert(Value::Null),
            rest,
            value,
        );
    }
}

/// Whether the JSON document `json` has a member at `path` (object keys from
/// the root), `null` included. Reads the document without building it; a
/// document that does not parse counts as having it, so that nothing is
/// kept from the stored object on its account.
pub fn has_field(json: &[u8], path: &[&str]) -> bool {
    let mut de = serde_json::Deserializer::from_slice(json);
    Field(path).deserialize(&mut de).unwrap_or(true)
}

/// Looks for the rest of a path in the value being read.
struct Field<'p>(&'p [&'p str]);

impl<'de> DeserializeSeed<'de> for Field<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        if self.0.is_empty() {
            IgnoredAny::deserialize(d)?;
            return Ok(true);
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Field<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let (first, rest) = match self.0.split_first() {
            Some(split) => split,
            None => return Ok(true),
        };
        let mut found = false;
        while let Some(is_it) = map.next_key_seed(KeyIs(first))? {
            if is_it && !found {
                found = map.next_value_seed(Field(rest))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }

    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// Compares an object key with the one looked for, without keeping it.
struct KeyIs<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

/// Which part of the object a merge patch may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchTarget {
    /// spec, labels, annotations
    Main,
    Status,
}

/// PATCH (RFC 7386 JSON merge patch) of the main resource or its status.
pub fn patch<K: Resource>(
    current: Option<K>,
    name: &str,
    patch: &Value,
    target: PatchTarget,
    rv: u64,
) -> Result<Decision<K>, ApiError> {
    let current = current.ok_or_else(|| ApiError::NotFound {
        kind: K::KIND,
        name: name.to_owned(),
    })?;
    if !patch.is_object() {
        return Err(ApiError::BadRequest(
            "a merge patch must be a JSON object".into(),
        ));
    }
    let requested_rv = patch
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_owned);
    check_precondition(&current, requested_rv.as_deref())?;
    if let Some(n) = patch.pointer("/metadata/name").and_then(Value::as_str)
        && n != name
    {
        return Err(ApiError::BadRequest(format!(
            "metadata.name {n:?} does not match the name in the URL {name:?}"
        )));
    }
    let renamed = old_names(K::KIND, patch);
    let patch = renamed.as_ref().unwrap_or(patch);
    let mut doc = to_value(&current)?;
    // A patch that drops a kept field (`null`, or a `null` or non-object
    // around it) does not remove it: it belongs to another writer.
    let kept = match target {
        PatchTarget::Status => kept_status_fields(K::KIND),
        PatchTarget::Main => &[],
    };
    let before: Vec<(&[&str], Value)> = kept
        .iter()
        .filter_map(|path| Some((*path, field(&doc, path)?.clone())))
        .collect();
    merge_patch(&mut doc, patch);
    for (path, value) in before {
        if field(&doc, path).is_none() {
            set_field(&mut doc, path, value);
        }
    }
    let patched: K = crate::extract::decode_value(doc)?;
    match target {
        PatchTarget::Main => {
            let mut next = current.clone();
            *next.spec_mut() = patched.spec().clone();
            next.meta_mut().labels = patched.meta().labels.clone();
            next.meta_mut().annotations = patched.meta().annotations.clone();
            if next.spec() != current.spec() {
                next.meta_mut().generation = Some(current.meta().generation.unwrap_or(0) + 1);
            }
            let next = validated(next)?;
            Ok(finish(&current, next, rv))
        }
        PatchTarget::Status => {
            let mut next = current.clone();
            *next.status_mut() = patched.status().clone();
            Ok(finish(&current, next, rv))
        }
    }
}

/// Fields a kind still accepts under an older name, as (path to the
/// object holding it, old name, current name).
const OLD_NAMES: &[(&str, &[&str], &str, &str)] = &[("Node", &["spec"], "ollamaUrl", "url")];

/// `patch` with older field names written as the current ones, or `None`
/// when it uses none. The stored object is serialized with the current
/// name, so a patch naming the old one (an older nodelet, a manifest
/// applied before the rename) would otherwise leave both names in the
/// merged document. When a patch gives both, the current name wins.
pub fn old_names(kind: &str, patch: &Value) -> Option<Value> {
    let mut out: Option<Value> = None;
    for (k, path, old, new) in OLD_NAMES {
        if *k != kind || field(patch, path).and_then(|o| o.get(*old)).is_none() {
            continue;
        }
        let doc = out.get_or_insert_with(|| patch.clone());
        let Some(Value::Object(obj)) = path.iter().try_fold(&mut *doc, |v, key| v.get_mut(*key))
        else {
            continue;
        };
        if let Some(value) = obj.remove(*old)
            && !obj.contains_key(*new)
        {
            obj.insert((*new).to_owned(), value);
        }
    }
    out
}

/// DELETE: the final state carries the deletion's revision.
pub fn delete<K: Resource>(
    current: Option<K>,
    name: &str,
    rv: u64,
) -> Result<Decision<K>, ApiError> {
    let mut current = current.ok_or_else(|| ApiError::NotFound {
        kind: K::KIND,
        name: name.to_owned(),
    })?;
    current.meta_mut().resource_version = Some(rv.to_string());
    Ok(Decision::Delete(current))
}

/// RFC 7386: objects merge key by key, `null` removes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(target_map) = target {
        for (k, v) in patch_map {
            if v.is_null() {
                target_map.remove(k);
            } else {
                merge_patch(target_map.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use herd_api::{Node, NodeSpec, NodeStatus, NodeUsage};
    use serde_json::json;

    use super::*;

    fn server() -> ServerFields {
        ServerFields {
            uid: "u-1".into(),
            now: "2026-01-01T00:00:00Z".parse().expect("ts"),
        }
    }

    fn stored(rv: u64) -> Node {
        let mut n = Node::new(
            "a",
            NodeSpec {
                url: "http://127.0.0.1:11434".into(),
                ..NodeSpec::default()
            },
        );
        match create(None, n.clone(), rv, server()) {
            Ok(Decision::Put(c)) => n = c,
            other => panic!("{other:?}"),
        }
        n
    }

    #[test]
    fn merge_patch_rfc7386_examples() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[1]}), json!({"a":[2,3]}), json!({"a":[2,3]})),
            (json!(["a"]), json!({"a":"b"}), json!({"a":"b"})),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
        ];
        for (mut target, patch, want) in cases {
            merge_patch(&mut target, &patch);
            assert_eq!(target, want, "patch {patch}");
        }
    }

    #[test]
    fn create_sets_server_fields_and_drops_status() {
        let mut n = Node::new("a", NodeSpec::default());
        n.meta_mut().uid = Some("client-chosen".into());
        n.status.usage = Some(NodeUsage {
            cpu_percent: 5.0,
            ..Default::default()
        });
        let Ok(Decision::Put(c)) = create(None, n, 7, server()) else {
            panic!()
        };
        assert_eq!(c.metadata.uid.as_deref(), Some("u-1"));
        assert_eq!(c.metadata.generation, Some(1));
        assert_eq!(c.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(c.status, NodeStatus::default());
    }

    #[test]
    fn replace_table() {
        let cur = stored(5);
        // stale resourceVersion → conflict
        let mut stale = cur.clone();
        stale.metadata.resource_version = Some("4".into());
        assert!(matches!(
            replace(Some(cur.clone()), stale, 6, server()),
            Err(ApiError::Conflict { .. })
        ));
        // same spec, no rv → unchanged
        let mut same = cur.clone();
        same.metadata.resource_version = None;
        assert_eq!(
            replace(Some(cur.clone()), same, 6, server()).expect("ok"),
            Decision::Unchanged
        );
        // spec change bumps generation, keeps uid and status
        let mut next = cur.clone();
        next.spec.weight = 50;
        next.metadata.uid = Some("hijack".into());
        next.status.usage = Some(NodeUsage::default());
        let Ok(Decision::Put(n)) = replace(Some(cur.clone()), next, 6, server()) else {
            panic!()
        };
        assert_eq!(n.metadata.generation, Some(2));
        assert_eq!(n.metadata.uid, cur.metadata.uid);
        assert_eq!(n.status, cur.status);
        // label change does not bump generation
        let mut lab = cur.clone();
        lab.metadata.labels.insert("gpu".into(), "nvidia".into());
        let Ok(Decision::Put(n)) = replace(Some(cur.clone()), lab, 6, server()) else {
            panic!()
        };
        assert_eq!(n.metadata.generation, Some(1));
        // invalid spec → invalid
        let mut bad = cur.clone();
        bad.spec.max_parallel = 0;
        assert!(matches!(
            replace(Some(cur), bad, 6, server()),
            Err(ApiError::Invalid { .. })
        ));
    }

    #[test]
    fn status_writes_never_touch_spec() {
        let cur = stored(5);
        let mut w = cur.clone();
        w.spec.weight = 1;
        w.status.usage = Some(NodeUsage {
            cpu_percent: 90.0,
            ..Default::default()
        });
        let Ok(Decision::Put(n)) = replace_status(Some(cur.clone()), w, &[], 6) else {
            panic!()
        };
        assert_eq!(n.spec, cur.spec);
        assert_eq!(n.metadata.generation, cur.metadata.generation);
        assert_eq!(n.status.usage.as_ref().map(|u| u.cpu_percent), Some(90.0));
    }

    #[test]
    fn patch_table() {
        let cur = stored(5);
        let p = json!({"spec":{"unschedulable":true},"status":{"usage":{"cpuPercent":1.0}}});
        let Ok(Decision::Put(n)) = patch(Some(cur.clone()), "a", &p, PatchTarget::Main, 6) else {
            panic!()
        };
        assert!(n.spec.unschedulable);
        assert_eq!(n.status, cur.status, "main patch must not change status");
        assert_eq!(n.metadata.generation, Some(2));
        let Ok(Decision::Put(n)) = patch(Some(cur.clone()), "a", &p, PatchTarget::Status, 6) else {
            panic!()
        };
        assert!(!n.spec.unschedulable, "status patch must not change spec");
        assert!(n.status.usage.is_some());
        let bad = json!({"spec":{"maxParallel":"four"}});
        assert!(
            matches!(patch(Some(cur.clone()), "a", &bad, PatchTarget::Main, 6), Err(ApiError::BadRequest(m)) if m.contains("spec.maxParallel"))
        );
        let stale = json!({"metadata":{"resourceVersion":"1"},"spec":{"weight":3}});
        assert!(matches!(
            patch(Some(cur.clone()), "a", &stale, PatchTarget::Main, 6),
            Err(ApiError::Conflict { .. })
        ));
        assert!(matches!(
            patch::<Node>(None, "a", &p, PatchTarget::Main, 6),
            Err(ApiError::NotFound { .. })
        ));
    }
    #[test]
    fn a_patch_may_use_the_old_name_of_a_node_url() {
        let cur = stored(5);
        // (patch, url after it)
        let cases = [
            (
                json!({"spec":{"ollamaUrl":"http://10.0.0.9:11434"}}),
                "http://10.0.0.9:11434",
            ),
            (
                json!({"spec":{"ollamaUrl":"http://old:1","url":"http://new:1"}}),
                "http://new:1",
            ),
            (json!({"spec":{"url":"http://plain:1"}}), "http://plain:1"),
        ];
        for (p, want) in cases {
            let Ok(Decision::Put(n)) = patch(Some(cur.clone()), "a", &p, PatchTarget::Main, 6)
            else {
                panic!("{p}")
            };
            assert_eq!(n.spec.url, want, "{p}");
        }
        assert!(old_names("Node", &json!({"spec":{"weight":1}})).is_none());
        assert!(old_names("ModelAssignment", &json!({"spec":{"ollamaUrl":"x"}})).is_none());
    }

    #[test]
    fn has_field_table() {
        let path: &[&str] = &["status", "usage", "inFlight"];
        let cases = [
            (r#"{"status":{"usage":{"inFlight":0}}}"#, true),
            (r#"{"status":{"usage":{"inFlight":null}}}"#, true),
            (
                r#"{"status":{"usage":{"cpuPercent":1,"inFlight":3,"x":[1,{"inFlight":1}]}}}"#,
                true,
            ),
            (r#"{"status":{"usage":{"cpuPercent":1}}}"#, false),
            (r#"{"status":{"usage":null}}"#, false),
            (r#"{"status":{}}"#, false),
            (r#"{"spec":{"usage":{"inFlight":1}}}"#, false),
            (
                r#"{"status":{"models":[{"inFlight":1}],"usage":"x"}}"#,
                false,
            ),
            (r#"{"status":{"usage":{"in\u0046light":2}}}"#, true),
            (r#"[1,2]"#, false),
            (r#"{}"#, false),
            (r#"{"status":"#, true),
        ];
        for (doc, want) in cases {
            assert_eq!(has_field(doc.as_bytes(), path), want, "{doc}");
        }
        assert!(has_field(b"{}", &[]));
    }

    fn with_in_flight(rv: u64, n: u32) -> Node {
        let mut cur = stored(rv);
        cur.status.usage = Some(NodeUsage {
            cpu_percent: 10.0,
            memory_percent: 20.0,
            in_flight: n,
        });
        cur
    }

    fn in_flight(n: &Node) -> Option<u32> {
        n.status.usage.as_ref().map(|u| u.in_flight)
    }

    #[test]
    fn a_status_write_that_leaves_in_flight_out_keeps_it() {
        let cur = with_in_flight(5, 3);
        let keep = kept_status_fields("Node");
        // (case, body the writer sent, inFlight after the write, cpuPercent after)
        let cases = [
            (
                "usage without inFlight",
                json!({"metadata":{"name":"a"},"status":{"usage":{"cpuPercent":50.0,"memoryPercent":1.0}}}),
                Some(3),
                Some(50.0),
            ),
            (
                "no usage at all",
                json!({"metadata":{"name":"a"},"status":{"conditions":[]}}),
                Some(3),
                Some(0.0),
            ),
            (
                "inFlight set explicitly",
                json!({"metadata":{"name":"a"},"status":{"usage":{"cpuPercent":50.0,"inFlight":7}}}),
                Some(7),
                Some(50.0),
            ),
            (
                "inFlight 0 set explicitly",
                json!({"metadata":{"name":"a"},"status":{"usage":{"inFlight":0}}}),
                Some(0),
                Some(0.0),
            ),
        ];
        for (case, body, want, cpu) in cases {
            let bytes = serde_json::to_vec(&body).expect("json");
            let left = left_out("Node", &bytes);
            let new: Node = serde_json::from_slice(&bytes).expect("node");
            let Ok(Decision::Put(n)) = replace_status(Some(cur.clone()), new, &left, 6) else {
                panic!("{case}")
            };
            assert_eq!(in_flight(&n), want, "{case}");
            assert_eq!(n.status.usage.map(|u| u.cpu_percent), cpu, "{case}");
        }
        assert_eq!(keep.len(), 1);
        assert!(left_out("ModelAssignment", b"{}").is_empty());
        // Nothing stored: nothing to keep, the write lands as sent.
        let fresh = stored(5);
        let new: Node = serde_json::from_value(
            json!({"metadata":{"name":"a"},"status":{"usage":{"cpuPercent":5.0}}}),
        )
        .expect("node");
        let Ok(Decision::Put(n)) = replace_status(Some(fresh), new, keep, 6) else {
            panic!()
        };
        assert_eq!(in_flight(&n), Some(0));
    }

    #[test]
    fn a_status_patch_cannot_drop_in_flight() {
        let cur = with_in_flight(5, 3);
        // (case, patch, inFlight after, cpuPercent after)
        let cases = [
            (
                "usage without inFlight",
                json!({"status":{"usage":{"cpuPercent":50.0}}}),
                Some(3),
                Some(50.0),
            ),
            (
                "usage null",
                json!({"status":{"usage":null}}),
                Some(3),
                Some(0.0),
            ),
            ("status null", json!({"status":null}), Some(3), Some(0.0)),
            (
                "inFlight set",
                json!({"status":{"usage":{"inFlight":1}}}),
                Some(1),
                Some(10.0),
            ),
        ];
        for (case, p, want, cpu) in cases {
            let Ok(Decision::Put(n)) = patch(Some(cur.clone()), "a", &p, PatchTarget::Status, 6)
            else {
                panic!("{case}")
            };
            assert_eq!(in_flight(&n), want, "{case}");
            assert_eq!(n.status.usage.map(|u| u.cpu_percent), cpu, "{case}");
        }
        // Dropping only the kept field, or writing what is already there,
        // changes nothing.
        for same in [
            json!({"status":{"usage":{"inFlight":null}}}),
            json!({"status":{"usage":{"cpuPercent":10.0,"memoryPercent":20.0}}}),
        ] {
            assert_eq!(
                patch(Some(cur.clone()), "a", &same, PatchTarget::Status, 6).expect("ok"),
                Decision::Unchanged,
                "{same}"
            );
        }
    }
}
