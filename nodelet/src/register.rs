//! Creating or updating this machine's `Node`.
//!
//! A machine registers under one name, so a restarted nodelet updates its node rather
//! than adding a second one. It changes only what it is the source of: `spec.ollamaUrl`,
//! `spec.maxParallel` when `--max-parallel` is given, and the labels of `--label`. What
//! an operator set (`unschedulable`, `weight`, labels and annotations of their own) is
//! kept. To drop a label that an earlier run added but this one no longer passes, the
//! nodelet remembers its label keys in the [`MANAGED_LABELS_ANNOTATION`].
//!
//! [`registration_node`] is the decision, pure; [`register`] is the API call around it.

use std::collections::{BTreeMap, BTreeSet};

use herd_api::{Node, NodeSpec, Resource};
use herd_client::{Api, PostParams};

/// Comma-separated keys of the labels the nodelet set from `--label`.
pub const MANAGED_LABELS_ANNOTATION: &str = "nodelet.herd/labels";

/// How many times a registration starts over after losing a race (409).
const ATTEMPTS: u32 = 5;

/// What the nodelet registers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    pub name: String,
    /// `spec.ollamaUrl`: the advertised URL.
    pub ollama_url: String,
    /// `--max-parallel`; `None` keeps what the node has (the default for a new one).
    pub max_parallel: Option<u32>,
    /// `--label`.
    pub labels: BTreeMap<String, String>,
}

/// The node to write: `existing` with the nodelet's fields changed, or a new node.
/// The `resourceVersion` of `existing` is kept, so writing the result is conditional.
pub fn registration_node(existing: Option<&Node>, reg: &Registration) -> Node {
    let mut node = match existing {
        Some(node) => node.clone(),
        None => Node::new(&reg.name, NodeSpec::default()),
    };
    node.spec.url.clone_from(&reg.ollama_url);
    if let Some(n) = reg.max_parallel {
        node.spec.max_parallel = n;
    }
    let meta = node.meta_mut();
    let previously: BTreeSet<String> = meta
        .annotations
        .get(MANAGED_LABELS_ANNOTATION)
        .map(|keys| {
            keys.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    for key in previously {
        if !reg.labels.contains_key(&key) {
            meta.labels.remove(&key);
        }
    }
    meta.labels
        .extend(reg.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    if reg.labels.is_empty() {
        meta.annotations.remove(MANAGED_LABELS_ANNOTATION);
    } else {
        let keys: Vec<&str> = reg.labels.keys().map(String::as_str).collect();
        meta.annotations
            .insert(MANAGED_LABELS_ANNOTATION.to_owned(), keys.join(","));
    }
    node
}

/// Creates or updates the node; starts over when another writer got in between.
pub async fn register(api: &Api<Node>, reg: &Registration) -> Result<Node, herd_client::Error> {
    let pp = PostParams::default();
    let mut attempt = 1;
    loop {
        let result = match api.get_opt(&reg.name).await? {
            None => api.create(&pp, &registration_node(None, reg)).await,
            Some(existing) => {
                let next = registration_node(Some(&existing), reg);
                if next == existing {
                    return Ok(existing);
                }
                api.replace(&pp, &next).await
            }
        };
        match result {
            Err(e) if (e.is_conflict() || e.is_already_exists()) && attempt < ATTEMPTS => {
                tracing::debug!(name = %reg.name, attempt, "registration raced another writer; starting over");
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(labels: &[(&str, &str)], max_parallel: Option<u32>) -> Registration {
        Registration {
            name: "gpu-box".into(),
            ollama_url: "http://10.0.0.5:11434/".into(),
            max_parallel,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn labels(node: &Node) -> Vec<String> {
        node.metadata
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }

    #[test]
    fn a_new_node_gets_the_defaults_and_the_flags() {
        let node = registration_node(None, &reg(&[("gpu", "nvidia")], None));
        assert_eq!(node.metadata.name, "gpu-box");
        assert_eq!(node.spec.url, "http://10.0.0.5:11434/");
        assert_eq!(node.spec.max_parallel, NodeSpec::default().max_parallel);
        assert_eq!(node.spec.weight, NodeSpec::default().weight);
        assert!(!node.spec.unschedulable);
        assert_eq!(labels(&node), ["gpu=nvidia"]);
        assert_eq!(
            node.metadata
                .annotations
                .get(MANAGED_LABELS_ANNOTATION)
                .map(String::as_str),
            Some("gpu")
        );
        assert!(node.validate().is_empty(), "{:?}", node.validate());
        let with_parallel = registration_node(None, &reg(&[], Some(8)));
        assert_eq!(with_parallel.spec.max_parallel, 8);
        assert!(with_parallel.metadata.annotations.is_empty());
    }

    #[test]
    fn an_existing_node_keeps_what_the_operator_set() {
        let mut existing =
            registration_node(None, &reg(&[("gpu", "nvidia"), ("zone", "a")], Some(2)));
        existing.metadata.resource_version = Some("41".into());
        existing.spec.unschedulable = true;
        existing.spec.weight = 7;
        existing.spec.url = "http://old:11434/".into();
        existing
            .metadata
            .labels
            .insert("owner".into(), "ops".into());
        existing
            .metadata
            .annotations
            .insert("note".into(), "keep me".into());
        existing.status.models.push(herd_api::NodeModel {
            name: "x".into(),
            ..Default::default()
        });

        // (flags, max_parallel, expected labels, expected maxParallel)
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<u32>, &'a [&'a str], u32);
        let cases: Vec<Case> = vec![
            (
                &[("gpu", "nvidia"), ("zone", "a")],
                None,
                &["gpu=nvidia", "owner=ops", "zone=a"],
                2,
            ),
            (&[("gpu", "amd")], Some(6), &["gpu=amd", "owner=ops"], 6),
            (&[], None, &["owner=ops"], 2),
            (&[("owner", "nodelet")], None, &["owner=nodelet"], 2),
        ];
        for (flags, max_parallel, want_labels, want_parallel) in cases {
            let next = registration_node(Some(&existing), &reg(flags, max_parallel));
            assert_eq!(labels(&next), want_labels, "{flags:?}");
            assert_eq!(next.spec.max_parallel, want_parallel, "{flags:?}");
            assert_eq!(next.spec.url, "http://10.0.0.5:11434/");
            assert!(next.spec.unschedulable);
            assert_eq!(next.spec.weight, 7);
            assert_eq!(next.metadata.resource_version.as_deref(), Some("41"));
            assert_eq!(
                next.metadata.annotations.get("note").map(String::as_str),
                Some("keep me")
            );
            assert_eq!(next.status, existing.status);
        }
        // An operator label that a later run takes over and then drops goes with it:
        // from then on the nodelet is its source.
        let taken = registration_node(Some(&existing), &reg(&[("owner", "nodelet")], None));
        let dropped = registration_node(Some(&taken), &reg(&[], None));
        assert!(labels(&dropped).is_empty(), "{:?}", labels(&dropped));
        assert!(!dropped.metadata.labels.contains_key("owner"));
    }

    #[test]
    fn registering_again_with_the_same_flags_changes_nothing() {
        let r = reg(&[("gpu", "nvidia")], Some(3));
        let first = registration_node(None, &r);
        assert_eq!(registration_node(Some(&first), &r), first);
    }
}
