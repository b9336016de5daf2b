//! The node restriction on what a nodelet writes into its own Node, as
//! Kubernetes' NodeRestriction admission does for kubelets.

use std::collections::{BTreeMap, BTreeSet};

use herd_api::{Node, NodeSpec, annotations};

use crate::authorize::Denied;

/// The spec fields a nodelet is the source of; every other field, including
/// ones added later, stays the administrator's.
pub const NODELET_SPEC_FIELDS: &[&str] = &["url", "maxParallel"];

/// Whether a nodelet may write `new` over `old` (`None` for a create): only
/// [`NODELET_SPEC_FIELDS`], the labels listed in the
/// [`annotations::NODELET_LABELS`] annotation, and that annotation. Labels an
/// administrator set (present before and not listed) stay as they are and
/// cannot be claimed. The route calls this after [`crate::authorize`] allowed the
/// write and before it stores anything.
pub fn node_may_change(old: Option<&Node>, new: &Node) -> Result<(), Denied> {
    let deny = |what: String| Denied {
        who: "a nodelet".to_owned(),
        what: format!("{what} on node {}", new.metadata.name),
    };
    let default_spec = NodeSpec::default();
    let old_spec = old.map_or(&default_spec, |n| &n.spec);
    for field in changed_fields(old_spec, &new.spec)
        .ok_or_else(|| deny("write an unreadable spec".to_owned()))?
    {
        if !NODELET_SPEC_FIELDS.contains(&field.as_str()) {
            return Err(deny(format!(
                "change spec.{field} (it is the administrator's)"
            )));
        }
    }

    let empty = BTreeMap::new();
    let old_labels = old.map_or(&empty, |n| &n.metadata.labels);
    let old_managed = managed_labels(old);
    let new_managed = managed_labels(Some(new));
    for (key, value) in old_labels {
        if old_managed.contains(key.as_str()) {
            continue;
        }
        if new.metadata.labels.get(key) != Some(value) || new_managed.contains(key.as_str()) {
            return Err(deny(format!(
                "change label {key} (set by an administrator)"
            )));
        }
    }
    for key in new.metadata.labels.keys() {
        if !old_labels.contains_key(key) && !new_managed.contains(key.as_str()) {
            return Err(deny(format!(
                "add label {key} without listing it in the {} annotation",
                annotations::NODELET_LABELS
            )));
        }
    }

    let old_annotations = old.map_or(&empty, |n| &n.metadata.annotations);
    let others = |a: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        a.iter()
            .filter(|(k, _)| k.as_str() != annotations::NODELET_LABELS)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let (before, after) = (others(old_annotations), others(&new.metadata.annotations));
    if let Some(key) = before
        .keys()
        .chain(after.keys())
        .find(|k| before.get(*k) != after.get(*k))
    {
        return Err(deny(format!("change annotation {key}")));
    }
    Ok(())
}

/// Wire names of the spec fields that differ; `None` if either side does not
/// serialize to an object (so the caller refuses rather than guesses).
fn changed_fields(old: &NodeSpec, new: &NodeSpec) -> Option<Vec<String>> {
    let (serde_json::Value::Object(old), serde_json::Value::Object(new)) = (
        serde_json::to_value(old).ok()?,
        serde_json::to_value(new).ok()?,
    ) else {
        return None;
    };
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    Some(
        keys.into_iter()
            .filter(|k| old.get(*k) != new.get(*k))
            .cloned()
            .collect(),
    )
}

fn managed_labels(node: Option<&Node>) -> BTreeSet<&str> {
    node.and_then(|n| n.metadata.annotations.get(annotations::NODELET_LABELS))
        .map(|keys| {
            keys.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use herd_api::Resource;

    use super::*;

    fn node(
        url: &str,
        labels: &[(&str, &str)],
        managed: Option<&str>,
        tweak: impl FnOnce(&mut Node),
    ) -> Node {
        let mut n = Node::new(
            "gpu-1",
            NodeSpec {
                url: url.to_owned(),
                ..NodeSpec::default()
            },
        );
        n.metadata.labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        if let Some(keys) = managed {
            n.metadata
                .annotations
                .insert(annotations::NODELET_LABELS.to_owned(), keys.to_owned());
        }
        tweak(&mut n);
        n
    }

    #[test]
    fn node_may_change_table() {
        const URL: &str = "http://10.0.0.1:11434";
        const URL2: &str = "http://10.0.0.2:11434";
        let registered = node(
            URL,
            &[("gpu", "nvidia"), ("tier", "gold")],
            Some("gpu"),
            |_| {},
        );
        let cordoned = node(URL, &[], None, |n| n.spec.unschedulable = true);
        // (old, new, refusal mentions)
        let cases: Vec<(Option<Node>, Node, Option<&str>)> = vec![
            // create
            (None, node(URL, &[], None, |_| {}), None),
            (
                None,
                node(URL, &[("gpu", "nvidia")], Some("gpu"), |_| {}),
                None,
            ),
            (
                None,
                node(URL, &[], None, |n| n.spec.max_parallel = 8),
                None,
            ),
            (
                None,
                node(URL, &[], None, |n| n.spec.unschedulable = true),
                Some("spec.unschedulable"),
            ),
            (
                None,
                node(URL, &[], None, |n| n.spec.weight = 1000),
                Some("spec.weight"),
            ),
            (
                None,
                node(URL, &[("gpu", "nvidia")], None, |_| {}),
                Some("add label gpu"),
            ),
            (
                None,
                node(URL, &[], None, |n| {
                    n.metadata.annotations.insert("owner".into(), "me".into());
                }),
                Some("annotation owner"),
            ),
            // update by the nodelet of its own fields
            (
                Some(registered.clone()),
                node(
                    URL2,
                    &[("gpu", "nvidia"), ("tier", "gold")],
                    Some("gpu"),
                    |_| {},
                ),
                None,
            ),
            (
                Some(registered.clone()),
                node(URL, &[("gpu", "amd"), ("tier", "gold")], Some("gpu"), |n| {
                    n.spec.max_parallel = 2
                }),
                None,
            ),
            (
                Some(registered.clone()),
                node(URL, &[("tier", "gold")], None, |_| {}),
                None,
            ),
            (
                Some(registered.clone()),
                node(
                    URL,
                    &[("gpu", "nvidia"), ("tier", "gold"), ("zone", "a")],
                    Some("gpu,zone"),
                    |_| {},
                ),
                None,
            ),
            // what stays the administrator's
            (
                Some(registered.clone()),
                node(
                    URL,
                    &[("gpu", "nvidia"), ("tier", "gold")],
                    Some("gpu"),
                    |n| n.spec.weight = 0,
                ),
                Some("spec.weight"),
            ),
            (
                Some(cordoned.clone()),
                node(URL, &[], None, |_| {}),
                Some("spec.unschedulable"),
            ),
            (
                Some(cordoned.clone()),
                node(URL2, &[], None, |n| n.spec.unschedulable = true),
                None,
            ),
            (
                Some(registered.clone()),
                node(
                    URL,
                    &[("gpu", "nvidia"), ("tier", "silver")],
                    Some("gpu"),
                    |_| {},
                ),
                Some("label tier"),
            ),
            (
                Some(registered.clone()),
                node(URL, &[("gpu", "nvidia")], Some("gpu"), |_| {}),
                Some("label tier"),
            ),
            (
                Some(registered.clone()),
                node(
                    URL,
                    &[("gpu", "nvidia"), ("tier", "gold")],
                    Some("gpu,tier"),
                    |_| {},
                ),
                Some("label tier"),
            ),
            (
                Some(registered.clone()),
                node(
                    URL,
                    &[("gpu", "nvidia"), ("tier", "gold"), ("zone", "a")],
                    Some("gpu"),
                    |_| {},
                ),
                Some("add label zone"),
            ),
            (
                Some(registered.clone()),
                node(
                    URL,
                    &[("gpu", "nvidia"), ("tier", "gold")],
                    Some("gpu"),
                    |n| {
                        n.metadata.annotations.insert("note".into(), "x".into());
                    },
                ),
                Some("annotation note"),
            ),
        ];
        for (i, (old, new, want)) in cases.into_iter().enumerate() {
            let got = node_may_change(old.as_ref(), &new);
            match want {
                None => assert!(got.is_ok(), "case {i}: {got:?}"),
                Some(part) => {
                    let err = got.expect_err(&format!("case {i} must be refused"));
                    assert!(err.to_string().contains(part), "case {i}: {err}");
                    assert!(err.to_string().contains("gpu-1"), "case {i}: {err}");
                }
            }
        }
    }

    #[test]
    fn an_operator_annotation_is_kept_not_removed() {
        let old = node("http://a:1", &[], None, |n| {
            n.metadata.annotations.insert("owner".into(), "ops".into());
        });
        let same = old.clone();
        assert!(node_may_change(Some(&old), &same).is_ok());
        let dropped = node("http://a:1", &[], None, |_| {});
        assert!(node_may_change(Some(&old), &dropped).is_err());
    }
}
