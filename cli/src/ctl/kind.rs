//! The resource types the verbs accept, by every name kubectl users type.

use std::fmt;

use herd_api::{ApiKey, Event, Lease, ModelAssignment, Node, Resource, Secret};

/// A type of thing `herd get` can show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Node,
    ModelAssignment,
    Event,
    ApiKey,
    Secret,
    Lease,
    /// The proxy's request history (not a stored resource: read-only).
    Request,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Node,
        Kind::ModelAssignment,
        Kind::Event,
        Kind::ApiKey,
        Kind::Secret,
        Kind::Lease,
        Kind::Request,
    ];

    /// `nodes`, `node`, `no`, `Node`, `NODES` … (case-insensitive).
    pub fn parse(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|k| k.names().contains(&lower.as_str()))
            .ok_or_else(|| {
                format!(
                    "unknown resource type {s:?}; herd has {}",
                    Self::ALL
                        .iter()
                        .map(|k| k.usage())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }

    /// The kind a manifest names (`kind: Node`), exactly as the API spells it.
    pub fn from_manifest(kind: &str) -> Option<Self> {
        [
            Kind::Node,
            Kind::ModelAssignment,
            Kind::Event,
            Kind::ApiKey,
            Kind::Secret,
            Kind::Lease,
        ]
        .into_iter()
        .find(|k| k.kind_name() == kind)
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            Kind::Node => &["nodes", "node", "no"],
            Kind::ModelAssignment => &["modelassignments", "modelassignment", "ma"],
            Kind::Event => &["events", "event", "ev"],
            Kind::ApiKey => &["apikeys", "apikey", "key", "keys"],
            Kind::Secret => &["secrets", "secret"],
            Kind::Lease => &["leases", "lease"],
            Kind::Request => &["requests", "request", "req", "requestrecord"],
        }
    }

    fn usage(self) -> String {
        match self.names() {
            [plural, _, short, ..] => format!("{plural} ({short})"),
            [plural, ..] => (*plural).to_owned(),
            [] => String::new(),
        }
    }

    pub fn kind_name(self) -> &'static str {
        match self {
            Kind::Node => Node::KIND,
            Kind::ModelAssignment => ModelAssignment::KIND,
            Kind::Event => Event::KIND,
            Kind::ApiKey => ApiKey::KIND,
            Kind::Secret => Secret::KIND,
            Kind::Lease => Lease::KIND,
            Kind::Request => "RequestRecord",
        }
    }

    /// What `kind/name` starts with: `node/gpu-1`.
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Node => Node::SINGULAR,
            Kind::ModelAssignment => ModelAssignment::SINGULAR,
            Kind::Event => Event::SINGULAR,
            Kind::ApiKey => ApiKey::SINGULAR,
            Kind::Secret => Secret::SINGULAR,
            Kind::Lease => Lease::SINGULAR,
            Kind::Request => "request",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Kind::Node => Node::PLURAL,
            Kind::ModelAssignment => ModelAssignment::PLURAL,
            Kind::Event => Event::PLURAL,
            Kind::ApiKey => ApiKey::PLURAL,
            Kind::Secret => Secret::PLURAL,
            Kind::Lease => Lease::PLURAL,
            Kind::Request => "requests",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.singular())
    }
}

/// Splits kubectl-style targets: `no gpu-1 gpu-2`, `node/gpu-1`, or
/// `node/gpu-1 ma/llama` (every one with its type). Returns each (type, name);
/// a bare type with no names gives (type, None).
pub fn parse_targets(args: &[String]) -> Result<Vec<(Kind, Option<String>)>, String> {
    let Some(first) = args.first() else {
        return Err("name a resource type, e.g. `nodes`, `ma` or `node/gpu-1`".to_owned());
    };
    if first.contains('/') {
        return args
            .iter()
            .map(|a| match a.split_once('/') {
                Some((t, n)) if !n.is_empty() => Ok((Kind::parse(t)?, Some(n.to_owned()))),
                _ => Err(format!(
                    "{a:?}: when one target is TYPE/NAME, every one must be (e.g. node/gpu-1)"
                )),
            })
            .collect();
    }
    let kind = Kind::parse(first)?;
    if args.len() == 1 {
        return Ok(vec![(kind, None)]);
    }
    args[1..]
        .iter()
        .map(|n| {
            if n.contains('/') {
                Err(format!(
                    "{n:?}: a name cannot contain '/' (write `{} NAME` or `TYPE/NAME`)",
                    kind.plural()
                ))
            } else {
                Ok((kind, Some(n.clone())))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses() {
        for (s, k) in [
            ("no", Kind::Node),
            ("NODES", Kind::Node),
            ("node", Kind::Node),
            ("ma", Kind::ModelAssignment),
            ("modelassignment", Kind::ModelAssignment),
            ("ModelAssignments", Kind::ModelAssignment),
            ("ev", Kind::Event),
            ("events", Kind::Event),
            ("requests", Kind::Request),
            ("apikeys", Kind::ApiKey),
            ("ApiKey", Kind::ApiKey),
            ("keys", Kind::ApiKey),
            ("key", Kind::ApiKey),
            ("secrets", Kind::Secret),
            ("Secret", Kind::Secret),
        ] {
            assert_eq!(Kind::parse(s), Ok(k), "{s}");
        }
        let err = Kind::parse("pods").expect_err("unknown");
        assert!(err.contains("nodes (no)"), "{err}");
    }

    #[test]
    fn targets() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(parse_targets(&s(&["no"])), Ok(vec![(Kind::Node, None)]));
        assert_eq!(
            parse_targets(&s(&["no", "a", "b"])),
            Ok(vec![
                (Kind::Node, Some("a".into())),
                (Kind::Node, Some("b".into()))
            ])
        );
        assert_eq!(
            parse_targets(&s(&["node/a", "ma/m"])),
            Ok(vec![
                (Kind::Node, Some("a".into())),
                (Kind::ModelAssignment, Some("m".into()))
            ])
        );
        assert!(parse_targets(&s(&["node/a", "b"])).is_err());
        assert!(parse_targets(&s(&[])).is_err());
    }
}
