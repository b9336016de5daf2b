//! The models "on disk": what `/api/tags` lists and `/api/pull` adds.
//!
//! With a models directory (`OLLAMA_MODELS` for the binary) the list is kept
//! in a small JSON file there, so a restarted fake still has what it pulled,
//! as a restarted Ollama does; the nodelet's restart tests rely on that.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::names::{ModelInfo, ModelRef, derive_info, digest_of};

/// File the model list is persisted in, inside the models directory
/// ([`FakeOllamaBuilder::models_dir`](crate::FakeOllamaBuilder::models_dir)).
pub const STORE_FILE: &str = "fake-ollama-models.json";

/// One installed model.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModelEntry {
    /// Canonical name, e.g. `llama3.2:1b`.
    pub name: String,
    /// The name whose weights this is (differs after `/api/copy` or
    /// `/api/create FROM`), which decides digest and metadata.
    pub base: String,
    pub modified_at: Timestamp,
}

impl ModelEntry {
    pub(crate) fn new(name: String) -> ModelEntry {
        ModelEntry {
            base: name.clone(),
            name,
            modified_at: Timestamp::now(),
        }
    }

    pub(crate) fn info(&self) -> ModelInfo {
        derive_info(&self.base)
    }

    pub(crate) fn digest(&self) -> String {
        digest_of(&self.base)
    }

    pub(crate) fn model_ref(&self) -> Option<ModelRef> {
        ModelRef::parse(&self.name)
    }
}

#[derive(Serialize, Deserialize)]
struct PersistedEntry {
    name: String,
    base: String,
    modified_at: String,
}

#[derive(Serialize, Deserialize, Default)]
struct PersistedStore {
    models: Vec<PersistedEntry>,
}

pub(crate) struct ModelStore {
    /// Keyed by lowercase canonical name: Ollama matches names
    /// case-insensitively.
    models: BTreeMap<String, ModelEntry>,
    /// Canonical names `/api/pull` can fetch; `None` means any valid name.
    pullable: Option<Vec<String>>,
    dir: Option<PathBuf>,
}

impl ModelStore {
    pub(crate) fn new(pullable: Option<Vec<String>>, dir: Option<PathBuf>) -> ModelStore {
        ModelStore {
            models: BTreeMap::new(),
            pullable,
            dir,
        }
    }

    /// Loads the persisted list, if there is a directory and a file in it.
    pub(crate) fn load(&mut self) -> io::Result<()> {
        let Some(path) = self.file() else {
            return Ok(());
        };
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let stored: PersistedStore = serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        for p in stored.models {
            let Some(name) = crate::normalize_model_name(&p.name) else {
                continue;
            };
            let entry = ModelEntry {
                base: crate::normalize_model_name(&p.base).unwrap_or_else(|| name.clone()),
                modified_at: p.modified_at.parse().unwrap_or_else(|_| Timestamp::now()),
                name,
            };
            self.models.insert(entry.name.to_ascii_lowercase(), entry);
        }
        Ok(())
    }

    fn file(&self) -> Option<PathBuf> {
        self.dir.as_deref().map(|d| d.join(STORE_FILE))
    }

    /// Writes the list atomically (temp file + rename); a no-op without a
    /// directory. Failures are logged, not fatal: the in-memory list stays
    /// right for this run.
    pub(crate) fn persist(&self) {
        let Some(dir) = self.dir.as_deref() else {
            return;
        };
        if let Err(e) = self.write_to(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "could not persist the model list");
        }
    }

    fn write_to(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let stored = PersistedStore {
            models: self
                .models
                .values()
                .map(|e| PersistedEntry {
                    name: e.name.clone(),
                    base: e.base.clone(),
                    modified_at: e.modified_at.to_string(),
                })
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&stored).map_err(io::Error::other)?;
        let tmp = dir.join(format!("{STORE_FILE}.tmp"));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(tmp, dir.join(STORE_FILE))
    }

    pub(crate) fn get(&self, canonical: &str) -> Option<ModelEntry> {
        self.models.get(&canonical.to_ascii_lowercase()).cloned()
    }

    /// Adds or replaces (bumping `modified_at`, as a re-pull does).
    pub(crate) fn insert(&mut self, entry: ModelEntry) {
        self.models.insert(entry.name.to_ascii_lowercase(), entry);
    }

    pub(crate) fn remove(&mut self, canonical: &str) -> Option<ModelEntry> {
        self.models.remove(&canonical.to_ascii_lowercase())
    }

    /// Most recently modified first, as `/api/tags` sorts.
    pub(crate) fn list(&self) -> Vec<ModelEntry> {
        let mut v: Vec<ModelEntry> = self.models.values().cloned().collect();
        v.sort_by(|a, b| {
            b.modified_at
                .cmp(&a.modified_at)
                .then_with(|| a.name.cmp(&b.name))
        });
        v
    }

    pub(crate) fn is_pullable(&self, canonical: &str) -> bool {
        self.pullable
            .as_ref()
            .is_none_or(|p| p.iter().any(|n| n.eq_ignore_ascii_case(canonical)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persists_and_reloads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = ModelStore::new(None, Some(dir.path().to_owned()));
        s.insert(ModelEntry::new("llama3:latest".into()));
        let mut copy = ModelEntry::new("mine:latest".into());
        copy.base = "llama3:latest".into();
        s.insert(copy);
        s.persist();

        let mut t = ModelStore::new(None, Some(dir.path().to_owned()));
        t.load().expect("load");
        assert_eq!(t.list().len(), 2);
        let mine = t.get("MINE:latest").expect("case-insensitive get");
        assert_eq!(
            mine.digest(),
            t.get("llama3:latest").expect("llama3").digest()
        );
    }

    #[test]
    fn pullable_restricts_names() {
        let s = ModelStore::new(Some(vec!["llama3:latest".into()]), None);
        assert!(s.is_pullable("llama3:latest"));
        assert!(!s.is_pullable("qwen2.5:latest"));
        assert!(ModelStore::new(None, None).is_pullable("anything:latest"));
    }
}
