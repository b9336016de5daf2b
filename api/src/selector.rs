//! Label selectors as kubectl writes them: `gpu=nvidia,zone!=b,ssd,!spot,tier in (a,b)`.

use std::collections::BTreeMap;
use std::fmt;

use crate::validate;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced ')'".into());
                }
            }
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced '('".into());
    }
    parts.push(&s[start..]);
    Ok(parts)
}

fn key(k: &str) -> Result<String, String> {
    let k = k.trim();
    validate::label_key(k)?;
    Ok(k.to_owned())
}

fn value(v: &str) -> Result<String, String> {
    let v = v.trim();
    validate::label_value(v)?;
    Ok(v.to_owned())
}

fn set(rest: &str) -> Result<Vec<String>, String> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| {
            format!(
                "expected a parenthesised list of values, got {:?}",
                rest.trim()
            )
        })?;
    inner.split(',').map(value).collect()
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self { requirements });
        }
        for raw in split_top_level(s).map_err(|e| format!("label selector {s:?}: {e}"))? {
            let part = raw.trim();
            let err = |e: String| format!("label selector {s:?}: {e}");
            let req = if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEq(key(k).map_err(err)?, value(v).map_err(err)?)
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement::Eq(key(k).map_err(err)?, value(v).map_err(err)?)
            } else if let Some(k) = part.strip_prefix('!') {
                Requirement::NotExists(key(k).map_err(err)?)
            } else if let Some((k, rest)) = part.split_once(" notin ") {
                Requirement::NotIn(key(k).map_err(err)?, set(rest).map_err(err)?)
            } else if let Some((k, rest)) = part.split_once(" in ") {
                Requirement::In(key(k).map_err(err)?, set(rest).map_err(err)?)
            } else if part.is_empty() {
                return Err(err("empty requirement".into()));
            } else {
                Requirement::Exists(key(part).map_err(err)?)
            };
            requirements.push(req);
        }
        Ok(Self { requirements })
    }

    /// A selector requiring every `key=value` of a `matchLabels` map.
    pub fn from_match_labels(labels: &BTreeMap<String, String>) -> Self {
        Self {
            requirements: labels
                .iter()
                .map(|(k, v)| Requirement::Eq(k.clone(), v.clone()))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Eq(k, v) => labels.get(k) == Some(v),
            Requirement::NotEq(k, v) => labels.get(k) != Some(v),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
        })
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| match r {
                Requirement::Eq(k, v) => format!("{k}={v}"),
                Requirement::NotEq(k, v) => format!("{k}!={v}"),
                Requirement::Exists(k) => k.clone(),
                Requirement::NotExists(k) => format!("!{k}"),
                Requirement::In(k, vs) => format!("{k} in ({})", vs.join(",")),
                Requirement::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn matching_table() {
        let l = labels(&[("gpu", "nvidia"), ("zone", "a")]);
        let cases = [
            ("", true),
            ("gpu=nvidia", true),
            ("gpu==nvidia", true),
            ("gpu=amd", false),
            ("gpu!=amd", true),
            ("gpu", true),
            ("!gpu", false),
            ("!spot", true),
            ("zone in (a,b)", true),
            ("zone in (b, c)", false),
            ("zone notin (b,c)", true),
            ("spot notin (yes)", true),
            ("gpu=nvidia,zone=b", false),
            ("gpu=nvidia, zone in (a,b)", true),
        ];
        for (sel, want) in cases {
            let s = LabelSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(s.matches(&l), want, "{sel}");
        }
    }

    #[test]
    fn rejects_bad_selectors() {
        for sel in [
            "gpu=nv idia",
            "=x",
            "a in b",
            "a in (b",
            "a,,b",
            "bad key=x",
            "a=-x",
        ] {
            assert!(
                LabelSelector::parse(sel).is_err(),
                "{sel:?} should be rejected"
            );
        }
    }
}
