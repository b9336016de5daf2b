//! Ollama model names: `[host/][namespace/]model[:tag]`.
//!
//! `llama3`, `llama3:latest`, `library/llama3` and
//! `registry.ollama.ai/library/llama3:latest` all name one model; the router
//! has to see them as equal when it looks for a node that holds the model.

use std::fmt;

pub const DEFAULT_HOST: &str = "registry.ollama.ai";
pub const DEFAULT_NAMESPACE: &str = "library";
pub const DEFAULT_TAG: &str = "latest";

/// A parsed model name with defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ModelName {
    pub host: String,
    pub namespace: String,
    pub model: String,
    pub tag: String,
}

fn part_ok(s: &str, max: usize, extra: &[char]) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || extra.contains(&c))
}

impl ModelName {
    /// Parses a model name as Ollama does; the error says which part is wrong.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
        if s.is_empty() {
            return Err("model name is empty".into());
        }
        // A digest suffix (`name@sha256:…`) names the same model; routing ignores it.
        let s = s.split_once('@').map_or(s, |(n, _)| n);
        let last_slash = s.rfind('/');
        let (path, tag) = match s.rfind(':') {
            Some(i) if last_slash.is_none_or(|j| i > j) => (&s[..i], Some(&s[i + 1..])),
            _ => (s, None),
        };
        let parts: Vec<&str> = path.split('/').collect();
        let (host, namespace, model) = match parts.as_slice() {
            [m] => (DEFAULT_HOST, DEFAULT_NAMESPACE, *m),
            [ns, m] => (DEFAULT_HOST, *ns, *m),
            [h, ns, m] => (*h, *ns, *m),
            _ => {
                return Err(format!(
                    "model name {raw:?} has too many '/' parts: expected [host/][namespace/]model[:tag]"
                ));
            }
        };
        if !part_ok(host, 350, &['.', ':']) {
            return Err(format!("model name {raw:?} has an invalid host {host:?}"));
        }
        if !part_ok(namespace, 80, &[]) {
            return Err(format!(
                "model name {raw:?} has an invalid namespace {namespace:?}"
            ));
        }
        if !part_ok(model, 80, &['.']) {
            return Err(format!(
                "model name {raw:?} has an invalid model part {model:?}"
            ));
        }
        let tag = match tag {
            None => DEFAULT_TAG,
            Some(t) if part_ok(t, 80, &['.']) => t,
            Some(t) => return Err(format!("model name {raw:?} has an invalid tag {t:?}")),
        };
        Ok(Self {
            host: host.to_owned(),
            namespace: namespace.to_owned(),
            model: model.to_owned(),
            tag: tag.to_owned(),
        })
    }

    /// The full form, lowercased: the key two names are compared by.
    pub fn canonical(&self) -> String {
        format!(
            "{}/{}/{}:{}",
            self.host, self.namespace, self.model, self.tag
        )
        .to_ascii_lowercase()
    }

    /// The form Ollama shows in `/api/tags`: default host and namespace dropped,
    /// tag always present (`llama3:latest`).
    pub fn short(&self) -> String {
        let mut out = String::new();
        if !self.host.eq_ignore_ascii_case(DEFAULT_HOST) {
            out.push_str(&self.host);
            out.push('/');
            out.push_str(&self.namespace);
            out.push('/');
        } else if !self.namespace.eq_ignore_ascii_case(DEFAULT_NAMESPACE) {
            out.push_str(&self.namespace);
            out.push('/');
        }
        out.push_str(&self.model);
        out.push(':');
        out.push_str(&self.tag);
        out
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())
    }
}

/// The comparison key of a raw name, or the lowercased input when it does not
/// parse (so an odd name still only matches itself).
pub fn canonical(raw: &str) -> String {
    ModelName::parse(raw).map_or_else(|_| raw.trim().to_ascii_lowercase(), |n| n.canonical())
}

/// True when two raw names name the same model (`llama3` = `llama3:latest`).
pub fn same_model(a: &str, b: &str) -> bool {
    canonical(a) == canonical(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let cases = [
            ("llama3", "llama3:latest"),
            ("llama3:latest", "llama3:latest"),
            ("llama3.2:1b", "llama3.2:1b"),
            ("library/llama3", "llama3:latest"),
            ("registry.ollama.ai/library/llama3:8b", "llama3:8b"),
            ("jmorganca/mymodel:v1", "jmorganca/mymodel:v1"),
            (
                "localhost:5000/team/model:q4_K_M",
                "localhost:5000/team/model:q4_K_M",
            ),
            (
                "hf.co/bartowski/Qwen2.5-0.5B-GGUF:Q4_K_M",
                "hf.co/bartowski/Qwen2.5-0.5B-GGUF:Q4_K_M",
            ),
            ("llama3@sha256:abc", "llama3:latest"),
        ];
        for (raw, short) in cases {
            let n = ModelName::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(n.short(), short, "{raw}");
        }
    }

    #[test]
    fn rejects_bad_names() {
        for raw in [
            "", " ", "a/b/c/d", "llama3:", ":tag", "lla ma", "-x", "x:-y", "a//b",
        ] {
            assert!(ModelName::parse(raw).is_err(), "{raw:?} should be rejected");
        }
    }

    #[test]
    fn equality_ignores_defaults_and_case() {
        assert!(same_model("llama3", "llama3:latest"));
        assert!(same_model(
            "Llama3",
            "registry.ollama.ai/library/llama3:latest"
        ));
        assert!(!same_model("llama3", "llama3:8b"));
        assert!(!same_model("llama3", "other/llama3"));
    }
}
