//! Model names and the metadata the fake invents for them.
//!
//! Ollama names are `[host/][namespace/]model[:tag]`; the host defaults to
//! `registry.ollama.ai`, the namespace to `library`, the tag to `latest`, and
//! Ollama shows the shortest form (`llama3:latest`). Everything a client can
//! see about a model (digest, size, family) is derived from its name so two
//! fakes agree on it.

use crate::util::{fake_sha256, hash64};

const DEFAULT_HOST: &str = "registry.ollama.ai";
const DEFAULT_NAMESPACE: &str = "library";

/// Normalises a model name to the form Ollama lists it under:
/// `llama3` → `llama3:latest`, `registry.ollama.ai/library/qwen2.5:0.5b` →
/// `qwen2.5:0.5b`. Returns `None` for names Ollama rejects as invalid.
pub fn normalize_model_name(name: &str) -> Option<String> {
    ModelRef::parse(name).map(|r| r.display())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModelRef {
    host: String,
    namespace: String,
    model: String,
    tag: String,
}

impl ModelRef {
    pub(crate) fn parse(name: &str) -> Option<ModelRef> {
        let mut s = name.trim();
        for scheme in ["https://", "http://"] {
            if let Some(rest) = s.strip_prefix(scheme) {
                s = rest;
            }
        }
        // `model@sha256:...` pins a digest; the fake only knows names.
        let s = s.split_once('@').map_or(s, |(n, _)| n);
        let parts: Vec<&str> = s.split('/').collect();
        let (host, namespace, last) = match parts.as_slice() {
            [m] => (DEFAULT_HOST, DEFAULT_NAMESPACE, *m),
            [ns, m] => (DEFAULT_HOST, *ns, *m),
            [h, ns, m] => (*h, *ns, *m),
            _ => return None,
        };
        let (model, tag) = last.split_once(':').unwrap_or((last, "latest"));
        let ok = valid_part(model, 350, false)
            && valid_part(tag, 80, false)
            && valid_part(namespace, 80, false)
            && valid_part(host, 350, true);
        ok.then(|| ModelRef {
            host: host.to_owned(),
            namespace: namespace.to_owned(),
            model: model.to_owned(),
            tag: tag.to_owned(),
        })
    }

    /// Ollama's `DisplayShortest`.
    pub(crate) fn display(&self) -> String {
        if !self.host.eq_ignore_ascii_case(DEFAULT_HOST) {
            format!(
                "{}/{}/{}:{}",
                self.host, self.namespace, self.model, self.tag
            )
        } else if !self.namespace.eq_ignore_ascii_case(DEFAULT_NAMESPACE) {
            format!("{}/{}:{}", self.namespace, self.model, self.tag)
        } else {
            format!("{}:{}", self.model, self.tag)
        }
    }

    /// What the OpenAI endpoints report as `owned_by`.
    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }
}

/// Ollama's name-part rules: letters, digits, `_`, `-`, `.` (and `:` in a
/// host for its port), starting with a letter, digit or `_`.
fn valid_part(s: &str, max: usize, host: bool) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    s.len() <= max
        && (first.is_ascii_alphanumeric() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c) || (host && c == ':'))
}

/// What `/api/show`, `/api/tags` and `/api/ps` say about a model.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModelInfo {
    pub family: String,
    pub parameter_count: u64,
    pub parameter_size: String,
    pub quantization_level: &'static str,
    pub size: u64,
    pub context_length: u64,
    pub embedding_length: u64,
    pub capabilities: Vec<&'static str>,
}

impl ModelInfo {
    pub(crate) fn embedding_only(&self) -> bool {
        !self.capabilities.contains(&"completion")
    }

    pub(crate) fn can(&self, capability: &str) -> bool {
        self.capabilities.contains(&capability)
    }
}

/// Invents plausible metadata from a canonical name (`model:tag`).
pub(crate) fn derive_info(canonical: &str) -> ModelInfo {
    let last = canonical.rsplit('/').next().unwrap_or(canonical);
    let (model, tag) = last.split_once(':').unwrap_or((last, "latest"));
    let model = model.to_ascii_lowercase();
    let tag = tag.to_ascii_lowercase();
    let embedding = ["embed", "minilm", "bge-", "e5-"]
        .iter()
        .any(|k| model.contains(k));

    let family = family_of(&model);
    let parameter_count =
        params_from_tag(&tag).unwrap_or_else(|| default_params(&model, embedding));
    let (quant, bits) = if embedding {
        ("F16", 16.0)
    } else {
        ("Q4_K_M", 4.85)
    };
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let size = (parameter_count as f64 * bits / 8.0) as u64
        + 10_000_000
        + hash64(7, canonical.as_bytes()) % 1_000_000;

    let mut capabilities = Vec::new();
    if embedding {
        capabilities.push("embedding");
    } else {
        capabilities.push("completion");
        if [
            "llama3.1", "llama3.2", "llama3.3", "qwen", "mistral", "gpt-oss",
        ]
        .iter()
        .any(|p| model.starts_with(p))
        {
            capabilities.push("tools");
        }
        if ["qwen3", "deepseek-r1", "gpt-oss"]
            .iter()
            .any(|p| model.starts_with(p))
        {
            capabilities.push("thinking");
        }
    }

    ModelInfo {
        parameter_size: human_params(parameter_count),
        family,
        parameter_count,
        quantization_level: quant,
        size,
        context_length: if embedding {
            2048
        } else if model.starts_with("llama3") {
            131_072
        } else {
            32_768
        },
        embedding_length: if embedding { 768 } else { 2048 },
        capabilities,
    }
}

/// The manifest digest `/api/tags` shows (64 hex chars, no `sha256:`).
pub(crate) fn digest_of(canonical: &str) -> String {
    fake_sha256(&["manifest", &canonical.to_ascii_lowercase()])
}

fn family_of(model: &str) -> String {
    const TABLE: &[(&str, &str)] = &[
        ("llama", "llama"),
        ("mistral", "llama"),
        ("mixtral", "llama"),
        ("codellama", "llama"),
        ("qwen3", "qwen3"),
        ("qwen", "qwen2"),
        ("gemma3", "gemma3"),
        ("gemma2", "gemma2"),
        ("gemma", "gemma"),
        ("phi", "phi3"),
        ("deepseek-r1", "qwen2"),
        ("gpt-oss", "gptoss"),
        ("nomic-embed", "nomic-bert"),
        ("mxbai-embed", "bert"),
        ("all-minilm", "bert"),
        ("bge-", "bert"),
    ];
    TABLE
        .iter()
        .find(|(prefix, _)| model.starts_with(prefix))
        .map(|(_, f)| (*f).to_owned())
        .unwrap_or_else(|| {
            let letters: String = model
                .chars()
                .take_while(char::is_ascii_alphabetic)
                .collect();
            if letters.is_empty() {
                "llama".to_owned()
            } else {
                letters
            }
        })
}

/// `1b`, `0.5b`, `8b-instruct-q4_K_M`, `270m` → parameter count.
fn params_from_tag(tag: &str) -> Option<u64> {
    let bytes = tag.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()) {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                i += 1;
            }
            let unit = bytes.get(i).copied();
            let ends = bytes.get(i + 1).is_none_or(|b| !b.is_ascii_alphanumeric());
            if let (Some(u @ (b'b' | b'm')), true, Ok(n)) =
                (unit, ends, tag[start..i].parse::<f64>())
            {
                let scale = if u == b'b' { 1e9 } else { 1e6 };
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                return Some((n * scale) as u64);
            }
        }
        i += 1;
    }
    None
}

fn default_params(model: &str, embedding: bool) -> u64 {
    const TABLE: &[(&str, u64)] = &[
        ("nomic-embed", 137_000_000),
        ("mxbai-embed", 334_000_000),
        ("all-minilm", 23_000_000),
        ("llama3.2", 3_200_000_000),
        ("llama3", 8_000_000_000),
        ("qwen2.5", 7_600_000_000),
        ("mistral", 7_200_000_000),
        ("gemma3", 4_300_000_000),
    ];
    TABLE.iter().find(|(p, _)| model.starts_with(p)).map_or(
        if embedding {
            137_000_000
        } else {
            7_000_000_000
        },
        |(_, n)| *n,
    )
}

/// Ollama's `format.HumanNumber` style: `1.2B`, `137M`, `494.03M`.
#[allow(clippy::cast_precision_loss)]
fn human_params(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.1}B", n as f64 / 1e9)
    } else if n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else {
        format!("{:.2}M", n as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_ollama() {
        let n = |s: &str| normalize_model_name(s);
        assert_eq!(n("llama3").as_deref(), Some("llama3:latest"));
        assert_eq!(n("llama3:latest").as_deref(), Some("llama3:latest"));
        assert_eq!(n("qwen2.5:0.5b").as_deref(), Some("qwen2.5:0.5b"));
        assert_eq!(
            n("registry.ollama.ai/library/llama3.2:1b").as_deref(),
            Some("llama3.2:1b")
        );
        assert_eq!(n("library/llama3.2").as_deref(), Some("llama3.2:latest"));
        assert_eq!(n("jmorgan/foo").as_deref(), Some("jmorgan/foo:latest"));
        assert_eq!(
            n("hf.co/bartowski/Foo-GGUF:Q4_K_M").as_deref(),
            Some("hf.co/bartowski/Foo-GGUF:Q4_K_M")
        );
        assert_eq!(
            n("localhost:5000/ns/m:t").as_deref(),
            Some("localhost:5000/ns/m:t")
        );
        assert_eq!(n(""), None);
        assert_eq!(n("bad name"), None);
        assert_eq!(n("a/b/c/d"), None);
        assert_eq!(n("-x"), None);
    }

    #[test]
    fn derives_plausible_metadata() {
        let i = derive_info("llama3.2:1b");
        assert_eq!(i.family, "llama");
        assert_eq!(i.parameter_size, "1.0B");
        assert!(i.can("completion") && i.can("tools") && !i.embedding_only());
        assert!(i.size > 500_000_000 && i.size < 1_000_000_000, "{}", i.size);

        let e = derive_info("nomic-embed-text:latest");
        assert!(e.embedding_only());
        assert_eq!(e.family, "nomic-bert");
        assert_eq!(e.parameter_size, "137M");

        assert_eq!(derive_info("qwen2.5:0.5b").parameter_size, "500M");
        assert_eq!(derive_info("gemma3:270m").parameter_size, "270M");
        assert!(derive_info("qwen3:4b").can("thinking"));
        assert_eq!(digest_of("llama3:latest"), digest_of("LLAMA3:latest"));
    }
}
