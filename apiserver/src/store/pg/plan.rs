//! What a batch of writes does, worked out against a cache that is current
//! with the database (the writer holds the revision lock, so nothing else
//! can commit meanwhile): each write's outcome, the rows to store, and the
//! changes to publish once the transaction commits. No I/O here.

use std::sync::Arc;

use bytes::Bytes;

use crate::store::cache::{Cache, Overlay};
use crate::store::{
    Change, ChangeType, Expect, Proposal, StoreError, StoredObject, Written, check_expect,
    event_line,
};

/// One write of a batch.
pub(super) struct Op {
    pub kind: &'static str,
    pub name: String,
    pub expect: Expect,
    pub proposal: Proposal,
}

/// One row of the event log.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct EventRow {
    pub rv: u64,
    pub kind: String,
    pub name: String,
    pub type_: String,
    pub body: Bytes,
}

/// A batch worked out: one outcome per op, in order; the objects it
/// changes (`None`: deleted), the event rows, the changes to publish and
/// the revision it ends at.
pub(super) struct Plan {
    pub results: Vec<Result<Written, StoreError>>,
    pub overlay: Overlay,
    pub events: Vec<EventRow>,
    pub changes: Vec<Arc<Change>>,
    pub rev: u64,
}

/// Plans `ops` in order on top of `cache` (each sees the ones before it).
/// Writes whose expectation does not hold get their error and take no
/// revision.
pub(super) fn plan(cache: &Cache, ops: Vec<Op>) -> Plan {
    let mut p = Plan {
        results: Vec::with_capacity(ops.len()),
        overlay: Overlay::new(),
        events: Vec::new(),
        changes: Vec::new(),
        rev: cache.revision,
    };
    for op in ops {
        let key = (op.kind, op.name);
        let current = match p.overlay.get(&key) {
            Some(o) => o.clone(),
            None => cache.get(key.0, &key.1),
        };
        let deleting = matches!(op.proposal, Proposal::Delete { .. });
        let result = check_expect(key.0, &key.1, op.expect, current.as_deref(), deleting)
            .map(|()| p.apply(key, current, op.proposal));
        p.results.push(result);
    }
    p
}

impl Plan {
    fn apply(
        &mut self,
        (kind, name): (&'static str, String),
        current: Option<Arc<StoredObject>>,
        proposal: Proposal,
    ) -> Written {
        let rev = self.rev + 1;
        self.rev = rev;
        let (type_, body, labels, object) = match proposal {
            Proposal::Put { template, labels } => {
                let body = template.render(rev);
                let type_ = if current.is_some() {
                    ChangeType::Modified
                } else {
                    ChangeType::Added
                };
                let object = Arc::new(StoredObject {
                    rv: rev,
                    body: body.clone(),
                    labels: labels.clone(),
                });
                self.overlay
                    .insert((kind, name.clone()), Some(object.clone()));
                (type_, body, labels, object)
            }
            Proposal::Delete { template } => {
                let body = template.render(rev);
                let labels = current
                    .as_ref()
                    .map(|c| c.labels.clone())
                    .unwrap_or_default();
                let object = Arc::new(StoredObject {
                    rv: rev,
                    body: body.clone(),
                    labels: labels.clone(),
                });
                self.overlay.insert((kind, name.clone()), None);
                (ChangeType::Deleted, body, labels, object)
            }
        };
        let prev_labels = match type_ {
            ChangeType::Modified => current
                .as_ref()
                .filter(|c| c.labels != labels)
                .map(|c| c.labels.clone()),
            _ => None,
        };
        self.changes.push(Arc::new(Change {
            rv: rev,
            kind,
            type_,
            labels,
            prev_labels,
            line: event_line(type_, &body),
        }));
        self.events.push(EventRow {
            rv: rev,
            kind: kind.to_owned(),
            name,
            type_: type_.as_str().to_owned(),
            body,
        });
        Written {
            object,
            created: current.is_none() && type_ == ChangeType::Added,
            deleted: type_ == ChangeType::Deleted,
            unchanged: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::store::{REVISION_PLACEHOLDER, Template};

    fn template(name: &str, n: u64) -> Template {
        let body = format!(
            r#"{{"metadata":{{"name":"{name}","resourceVersion":"{REVISION_PLACEHOLDER}"}},"n":{n}}}"#
        );
        Template::new(Bytes::from(body)).expect("placeholder")
    }
    fn put(name: &str, n: u64, label: Option<&str>) -> Op {
        let labels: BTreeMap<String, String> = label
            .map(|l| ("l".to_owned(), l.to_owned()))
            .into_iter()
            .collect();
        Op {
            kind: "nodes",
            name: name.into(),
            expect: Expect::Absent,
            proposal: Proposal::Put {
                template: template(name, n),
                labels: Arc::new(labels),
            },
        }
    }
    fn at(mut op: Op, rv: u64) -> Op {
        op.expect = Expect::At(rv);
        op
    }
    fn delete(name: &str, rv: u64) -> Op {
        Op {
            kind: "nodes",
            name: name.into(),
            expect: Expect::At(rv),
            proposal: Proposal::Delete {
                template: template(name, 0),
            },
        }
    }

    /// A cache at revision 10 holding `a` at revision 7, labelled `l=x`.
    fn cache() -> Cache {
        let mut c = Cache {
            revision: 10,
            ..Cache::default()
        };
        c.objects.entry("nodes").or_default().insert(
            "a".into(),
            Arc::new(StoredObject {
                rv: 7,
                body: Bytes::from_static(b"{}"),
                labels: Arc::new([("l".to_owned(), "x".to_owned())].into()),
            }),
        );
        c
    }

    fn outcome(r: &Result<Written, StoreError>) -> String {
        match r {
            Ok(w) => format!(
                "ok {}{}{}",
                w.object.rv,
                if w.created { " created" } else { "" },
                if w.deleted { " deleted" } else { "" }
            ),
            Err(StoreError::Conflict { current, .. }) => format!("conflict at {current}"),
            Err(StoreError::NotFound { .. }) => "not found".into(),
            Err(StoreError::AlreadyExists { .. }) => "exists".into(),
            Err(e) => format!("{e}"),
        }
    }

    #[test]
    fn a_batch_applies_in_order_and_each_write_sees_the_ones_before() {
        for (case, ops, outcomes, events, rev) in [
            ("empty", vec![], vec![], vec![], 10),
            (
                "create then update in one batch",
                vec![put("b", 1, None), at(put("b", 2, None), 11)],
                vec!["ok 11 created", "ok 12"],
                vec!["11 ADDED b", "12 MODIFIED b"],
                12,
            ),
            (
                "stale update takes no revision",
                vec![at(put("a", 1, Some("x")), 6), at(put("a", 2, Some("x")), 7)],
                vec!["conflict at 7", "ok 11"],
                vec!["11 MODIFIED a"],
                11,
            ),
            (
                "create over existing, delete of missing",
                vec![put("a", 1, None), delete("zz", 3)],
                vec!["exists", "not found"],
                vec![],
                10,
            ),
            (
                "delete then create again",
                vec![delete("a", 7), put("a", 5, None), at(put("a", 6, None), 11)],
                vec!["ok 11 deleted", "ok 12 created", "conflict at 12"],
                vec!["11 DELETED a", "12 ADDED a"],
                12,
            ),
        ] {
            let p = plan(&cache(), ops);
            let got: Vec<String> = p.results.iter().map(outcome).collect();
            assert_eq!(got, outcomes, "{case}: outcomes");
            let got: Vec<String> = p
                .events
                .iter()
                .map(|e| format!("{} {} {}", e.rv, e.type_, e.name))
                .collect();
            assert_eq!(got, events, "{case}: events");
            assert_eq!(p.rev, rev, "{case}: revision");
            assert_eq!(p.changes.len(), p.events.len(), "{case}: changes");
        }
    }

    #[test]
    fn changes_carry_labels_before_and_the_final_overlay() {
        let p = plan(
            &cache(),
            vec![at(put("a", 1, Some("y")), 7), delete("a", 11)],
        );
        let labels = |c: &Change| c.labels.get("l").cloned();
        assert_eq!(labels(&p.changes[0]).as_deref(), Some("y"));
        assert_eq!(
            p.changes[0]
                .prev_labels
                .as_ref()
                .and_then(|l| l.get("l").cloned())
                .as_deref(),
            Some("x"),
            "a label change says what they were"
        );
        assert_eq!(
            labels(&p.changes[1]).as_deref(),
            Some("y"),
            "a delete carries the last labels"
        );
        assert_eq!(p.overlay.len(), 1);
        assert!(p.overlay[&("nodes", "a".to_owned())].is_none());
        let body = String::from_utf8_lossy(&p.events[0].body).into_owned();
        assert!(body.contains(r#""resourceVersion":"11""#), "{body}");
    }
}
