//! Keeping a server's cache current from the event log that every server
//! writes: rows read in revision order are applied one by one, each exactly
//! once. No I/O here.

use std::sync::Arc;

use super::plan::EventRow;
use crate::store::cache::{Cache, WindowLimits};
use crate::store::{Change, ChangeType, Labels, StoredObject, event_line, labels_of};

/// An object row as loaded at start.
pub(super) struct ObjectRow {
    pub kind: String,
    pub name: String,
    pub rv: u64,
    pub body: bytes::Bytes,
}

/// The log does not go on from the cache's revision: the changes in between
/// were compacted away, and the cache must be loaded again.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the event log skips from revision {after} to {found}")]
pub(super) struct Gap {
    pub after: u64,
    pub found: u64,
}

/// Where a change of a kind this server does not hold goes: a kind no watch
/// asks for, so the log stays contiguous and the change is seen by no one.
const UNKNOWN_KIND: &str = "";

fn kind_of(kinds: &[&'static str], kind: &str) -> Option<&'static str> {
    kinds.iter().copied().find(|k| *k == kind)
}

fn labels_from(body: &[u8]) -> Labels {
    Arc::new(labels_of(body).unwrap_or_default())
}

/// Applies `rows` (in revision order) to `cache`, stopping at the first that
/// does not follow on; returns how many were applied.
pub(super) fn apply_events(
    cache: &mut Cache,
    rows: Vec<EventRow>,
    kinds: &[&'static str],
    window: WindowLimits,
) -> Result<usize, Gap> {
    let mut changes = Vec::with_capacity(rows.len());
    let mut result = Ok(rows.len());
    for row in rows {
        if row.rv <= cache.revision {
            // Already applied (a commit of this server, read back).
            continue;
        }
        if row.rv != cache.revision + 1 {
            result = Err(Gap {
                after: cache.revision,
                found: row.rv,
            });
            break;
        }
        changes.push(Arc::new(apply_one(cache, row, kinds)));
    }
    cache.extend_log(changes, window);
    result
}

/// Applies one row that follows the cache's revision and returns its change.
fn apply_one(cache: &mut Cache, row: EventRow, kinds: &[&'static str]) -> Change {
    cache.revision = row.rv;
    let (Some(kind), Some(type_)) = (kind_of(kinds, &row.kind), ChangeType::parse(&row.type_))
    else {
        tracing::warn!(kind = %row.kind, rv = row.rv, "ignoring a change of an unknown kind or type");
        return Change {
            rv: row.rv,
            kind: UNKNOWN_KIND,
            type_: ChangeType::Modified,
            labels: Labels::default(),
            prev_labels: None,
            line: event_line(ChangeType::Modified, b"{}"),
        };
    };
    let map = cache.objects.entry(kind).or_default();
    let before = map.get(&row.name).cloned();
    let (labels, prev_labels) = match type_ {
        ChangeType::Deleted => {
            map.remove(&row.name);
            let labels = before.map_or_else(|| labels_from(&row.body), |b| b.labels.clone());
            (labels, None)
        }
        ChangeType::Added | ChangeType::Modified => {
            let labels = labels_from(&row.body);
            let prev = before
                .filter(|b| b.labels != labels)
                .map(|b| b.labels.clone());
            map.insert(
                row.name,
                Arc::new(StoredObject {
                    rv: row.rv,
                    body: row.body.clone(),
                    labels: labels.clone(),
                }),
            );
            (labels, prev)
        }
    };
    Change {
        rv: row.rv,
        kind,
        type_,
        labels,
        prev_labels,
        line: event_line(type_, &row.body),
    }
}

/// A cache holding `objects` at `revision`, with `events` (the last ones up
/// to `revision`, in order) as its window. Events that do not end at
/// `revision` without a gap are dropped: watchers older than the cache then
/// get 410 and list again.
pub(super) fn fresh_cache(
    revision: u64,
    objects: Vec<ObjectRow>,
    events: Vec<EventRow>,
    kinds: &[&'static str],
    window: WindowLimits,
) -> Cache {
    let mut cache = Cache::default();
    for kind in kinds {
        cache.objects.entry(*kind).or_default();
    }
    for o in objects {
        let Some(kind) = kind_of(kinds, &o.kind) else {
            tracing::warn!(kind = %o.kind, name = %o.name, "ignoring stored object of an unknown kind");
            continue;
        };
        let labels = match labels_of(&o.body) {
            Ok(l) => Arc::new(l),
            Err(e) => {
                tracing::warn!(%kind, name = %o.name, error = %e, "stored object has unreadable labels");
                Labels::default()
            }
        };
        cache.objects.entry(kind).or_default().insert(
            o.name,
            Arc::new(StoredObject {
                rv: o.rv,
                body: o.body,
                labels,
            }),
        );
    }
    // Without the objects as they were before each event, which labels a
    // change moved is unknown, as after a SQLite restart.
    let contiguous = events.windows(2).all(|w| w[0].rv + 1 == w[1].rv)
        && events.last().is_none_or(|e| e.rv == revision);
    let mut changes = Vec::new();
    if contiguous {
        for row in events {
            let kind = kind_of(kinds, &row.kind).unwrap_or(UNKNOWN_KIND);
            let type_ = ChangeType::parse(&row.type_).unwrap_or(ChangeType::Modified);
            let labels = labels_from(&row.body);
            changes.push(Arc::new(Change {
                rv: row.rv,
                kind,
                type_,
                labels,
                prev_labels: None,
                line: event_line(type_, &row.body),
            }));
        }
    }
    cache.revision = revision;
    cache.extend_log(changes, window);
    cache
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    const KINDS: &[&str] = &["nodes", "modelassignments"];
    const WIDE: WindowLimits = WindowLimits {
        events: 100,
        bytes: usize::MAX,
    };

    fn row(rv: u64, kind: &str, type_: &str, name: &str, label: &str) -> EventRow {
        EventRow {
            rv,
            kind: kind.into(),
            name: name.into(),
            type_: type_.into(),
            body: Bytes::from(format!(
                r#"{{"metadata":{{"name":"{name}","resourceVersion":"{rv}","labels":{{"l":"{label}"}}}}}}"#
            )),
        }
    }

    fn summary(cache: &Cache) -> (u64, Vec<String>, Vec<String>) {
        let objects = cache
            .objects
            .iter()
            .flat_map(|(k, m)| m.iter().map(move |(n, o)| format!("{k}/{n}@{}", o.rv)))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let log = cache
            .log
            .iter()
            .map(|c| {
                let prev = c
                    .prev_labels
                    .as_ref()
                    .and_then(|l| l.get("l").cloned())
                    .map_or(String::new(), |l| format!(" was {l}"));
                let now = c.labels.get("l").cloned().unwrap_or_default();
                format!("{} {} {:?} l={now}{prev}", c.rv, c.kind, c.type_)
            })
            .collect();
        (cache.revision, objects, log)
    }

    #[test]
    fn events_apply_in_order_exactly_once() {
        let mut cache = fresh_cache(0, vec![], vec![], KINDS, WIDE);
        let applied = apply_events(
            &mut cache,
            vec![
                row(1, "nodes", "ADDED", "a", "x"),
                row(2, "modelassignments", "ADDED", "m", "x"),
                row(3, "nodes", "MODIFIED", "a", "y"),
                row(4, "nodes", "DELETED", "a", "ignored"),
            ],
            KINDS,
            WIDE,
        );
        assert_eq!(applied, Ok(4));
        // Reading rows again (a commit read back, a repeated poll) changes nothing.
        let again = apply_events(
            &mut cache,
            vec![
                row(3, "nodes", "MODIFIED", "a", "z"),
                row(4, "nodes", "DELETED", "a", "q"),
            ],
            KINDS,
            WIDE,
        );
        assert_eq!(again, Ok(2));
        let (rev, objects, log) = summary(&cache);
        assert_eq!(rev, 4);
        assert_eq!(objects, ["modelassignments/m@2"]);
        assert_eq!(
            log,
            [
                "1 nodes Added l=x",
                "2 modelassignments Added l=x",
                "3 nodes Modified l=y was x",
                "4 nodes Deleted l=y",
            ]
        );
    }

    #[test]
    fn a_gap_stops_at_the_last_contiguous_event() {
        let mut cache = fresh_cache(5, vec![], vec![], KINDS, WIDE);
        let result = apply_events(
            &mut cache,
            vec![
                row(6, "nodes", "ADDED", "a", "x"),
                row(9, "nodes", "ADDED", "b", "x"),
            ],
            KINDS,
            WIDE,
        );
        assert_eq!(result, Err(Gap { after: 6, found: 9 }));
        assert_eq!(cache.revision, 6);
        assert!(cache.get("nodes", "b").is_none());
    }

    #[test]
    fn unknown_kinds_keep_the_log_contiguous_and_invisible() {
        let mut cache = fresh_cache(0, vec![], vec![], KINDS, WIDE);
        let rows = vec![
            row(1, "nodes", "ADDED", "a", "x"),
            row(2, "widgets", "ADDED", "w", "x"),
            row(3, "nodes", "BOGUS", "a", "x"),
            row(4, "nodes", "MODIFIED", "a", "x"),
        ];
        assert_eq!(apply_events(&mut cache, rows, KINDS, WIDE), Ok(4));
        let kinds: Vec<&str> = cache.log.iter().map(|c| c.kind).collect();
        assert_eq!(kinds, ["nodes", "", "", "nodes"]);
        assert_eq!(
            cache.events_after(0, 10).map(|v| v.len()),
            Ok(4),
            "no hole in the window"
        );
    }

    #[test]
    fn a_fresh_cache_keeps_its_events_only_when_they_reach_its_revision() {
        let objects = || {
            vec![ObjectRow {
                kind: "nodes".into(),
                name: "a".into(),
                rv: 3,
                body: Bytes::from_static(br#"{"metadata":{"labels":{"l":"x"}}}"#),
            }]
        };
        let events = || {
            vec![
                row(2, "nodes", "ADDED", "a", "x"),
                row(3, "nodes", "MODIFIED", "a", "x"),
            ]
        };
        let cache = fresh_cache(3, objects(), events(), KINDS, WIDE);
        assert_eq!(cache.events_after(1, 10).map(|v| v.len()), Ok(2));
        assert_eq!(cache.get("nodes", "a").map(|o| o.labels.len()), Some(1));
        // Events that stop short of the revision are dropped, not served with a hole.
        let cache = fresh_cache(4, objects(), events(), KINDS, WIDE);
        assert!(cache.log.is_empty());
        assert!(cache.events_after(3, 10).is_err());
        assert_eq!(cache.events_after(4, 10).map(|v| v.len()), Ok(0));
    }
}
