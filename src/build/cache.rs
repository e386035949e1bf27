//! The build cache, persisted in the store under `cache/build/`:
//!
//! ```text
//! cache/build/keys/<key>.json      step key -> the layer it produced (or none) and its history
//! cache/build/explain/<id>.json    (parent key, instruction) -> the inputs seen last time,
//!                                  so a miss can name the file that changed
//! cache/mounts/<id>/               RUN --mount=type=cache directories
//! ```
//!
//! A step's key is sha256 over the parent's key, the instruction after expansion and
//! a digest of all its inputs (COPY/ADD sources' names, content, mode and owner; the
//! build args and environment a RUN sees). Secrets never enter a key. Files are
//! written atomically (temp + rename), so a killed build leaves either the old entry
//! or the new one. An entry whose blobs are gone from the store (pruned) is a miss.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::BuildError;
use crate::oci::{Descriptor, Digest};

/// One cached step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The layer the step produced; `None` when it changed nothing.
    pub layer: Option<Descriptor>,
    pub diff_id: Option<Digest>,
}

/// Inputs of a step, for `--explain`: name -> content digest.
pub type Inputs = BTreeMap<String, String>;

#[derive(Debug, Serialize, Deserialize)]
struct Explain {
    inputs: Inputs,
}

/// The cache directory of a store.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

/// What `prune --build-cache` removed / what `df` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CacheUsage {
    pub entries: u64,
    pub mounts: u64,
    pub bytes: u64,
}

fn hex(parts: &[&str]) -> String {
    let mut d = crate::oci::Digester::new();
    for p in parts {
        d.update(&(p.len() as u64).to_le_bytes());
        d.update(p.as_bytes());
    }
    d.finish().hex().to_string()
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    fs::write(&tmp, data)?;
    fs::rename(&tmp, path)
}

impl Cache {
    /// Open (creating) the cache of the store at `root`.
    pub fn open(root: &Path) -> Result<Cache, BuildError> {
        let dir = root.join("cache").join("build");
        for sub in ["keys", "explain"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(|e| BuildError::io(&p, e))?;
        }
        Ok(Cache { dir })
    }

    /// The directory of the store root's cache mounts.
    pub fn mounts_dir(root: &Path) -> PathBuf {
        root.join("cache").join("mounts")
    }

    /// The key of a step.
    pub fn key(parent: &str, instruction: &str, inputs: &str) -> String {
        hex(&["step-v1", parent, instruction, inputs])
    }

    /// A digest of a step's inputs list.
    pub fn inputs_digest(inputs: &Inputs) -> String {
        let mut parts: Vec<&str> = Vec::new();
        for (k, v) in inputs {
            parts.push(k);
            parts.push(v);
        }
        hex(&parts)
    }

    /// The cached entry for `key`, if any.
    pub fn get(&self, key: &str) -> Option<Entry> {
        let p = self.dir.join("keys").join(format!("{key}.json"));
        let data = fs::read(p).ok()?;
        serde_json::from_slice(&data).ok()
    }

    /// Record `entry` for `key`.
    pub fn put(&self, key: &str, entry: &Entry) -> Result<(), BuildError> {
        let p = self.dir.join("keys").join(format!("{key}.json"));
        let data = serde_json::to_vec(entry).map_err(|e| BuildError::Other(e.to_string()))?;
        write_atomic(&p, &data).map_err(|e| BuildError::io(&p, e))
    }

    fn explain_path(&self, parent: &str, instruction: &str) -> PathBuf {
        self.dir.join("explain").join(format!(
            "{}.json",
            hex(&["explain-v1", parent, instruction])
        ))
    }

    /// Remember the inputs of (parent, instruction) for a later [`Cache::explain`].
    pub fn record_inputs(
        &self,
        parent: &str,
        instruction: &str,
        inputs: &Inputs,
    ) -> Result<(), BuildError> {
        let p = self.explain_path(parent, instruction);
        let data = serde_json::to_vec(&Explain {
            inputs: inputs.clone(),
        })
        .map_err(|e| BuildError::Other(e.to_string()))?;
        write_atomic(&p, &data).map_err(|e| BuildError::io(&p, e))
    }

    /// Why (parent, instruction, inputs) missed, when the parent itself was cached:
    /// the inputs that changed since the last build of the same step, or that the
    /// step (instruction or what comes before it) is new.
    pub fn explain(&self, parent: &str, instruction: &str, inputs: &Inputs) -> String {
        let Some(old) = fs::read(self.explain_path(parent, instruction))
            .ok()
            .and_then(|d| serde_json::from_slice::<Explain>(&d).ok())
        else {
            return "no earlier build of this instruction on this parent (new or changed instruction)"
                .into();
        };
        let mut changed = Vec::new();
        for (k, v) in inputs {
            match old.inputs.get(k) {
                None => changed.push(format!("{k} (added)")),
                Some(o) if o != v => changed.push(format!("{k} (changed)")),
                _ => {}
            }
        }
        for k in old.inputs.keys() {
            if !inputs.contains_key(k) {
                changed.push(format!("{k} (removed)"));
            }
        }
        if changed.is_empty() {
            "the cached result is gone (pruned)".into()
        } else {
            let more = changed.len().saturating_sub(10);
            changed.truncate(10);
            let mut s = format!("inputs changed: {}", changed.join(", "));
            if more > 0 {
                s.push_str(&format!(" and {more} more"));
            }
            s
        }
    }

    /// Entries, cache mounts and their bytes.
    pub fn usage(root: &Path) -> CacheUsage {
        let dir = root.join("cache");
        let mut u = CacheUsage::default();
        if let Ok(rd) = fs::read_dir(dir.join("build").join("keys")) {
            u.entries = rd.flatten().count() as u64;
        }
        if let Ok(rd) = fs::read_dir(Cache::mounts_dir(root)) {
            u.mounts = rd.flatten().filter(|e| e.path().is_dir()).count() as u64;
        }
        u.bytes = du(&dir);
        u
    }

    /// Remove every cache entry and cache mount (`prune --build-cache`). Returns what
    /// was there. Cache mounts in use by a running build (locked) are kept.
    pub fn prune(root: &Path) -> Result<CacheUsage, BuildError> {
        let before = Cache::usage(root);
        let build = root.join("cache").join("build");
        for sub in ["keys", "explain"] {
            let p = build.join(sub);
            match fs::remove_dir_all(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(BuildError::io(&p, e)),
            }
        }
        let mounts = Cache::mounts_dir(root);
        if let Ok(rd) = fs::read_dir(&mounts) {
            for e in rd.flatten() {
                let p = e.path();
                if !p.is_dir() {
                    continue;
                }
                let lock = p.with_extension("lock");
                let Ok(f) = fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&lock)
                else {
                    continue;
                };
                if f.try_lock().is_ok() {
                    fs::remove_dir_all(&p).map_err(|e| BuildError::io(&p, e))?;
                }
            }
        }
        Ok(before)
    }
}

fn du(p: &Path) -> u64 {
    let Ok(m) = fs::symlink_metadata(p) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| du(&e.path())).sum())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_persist_and_explain_names_the_changed_file() {
        let root = tempfile::tempdir().unwrap();
        let c = Cache::open(root.path()).unwrap();
        let k = Cache::key("parent", "COPY a /a", "x");
        assert_ne!(k, Cache::key("parent", "COPY a /a", "y"));
        assert!(c.get(&k).is_none());
        let e = Entry {
            layer: None,
            diff_id: None,
        };
        c.put(&k, &e).unwrap();
        // A new handle (a new process) sees it.
        assert_eq!(Cache::open(root.path()).unwrap().get(&k), Some(e));
        let mut inputs = Inputs::new();
        inputs.insert("a.txt".into(), "1".into());
        inputs.insert("b.txt".into(), "2".into());
        c.record_inputs("parent", "COPY . /", &inputs).unwrap();
        inputs.insert("b.txt".into(), "3".into());
        let why = c.explain("parent", "COPY . /", &inputs);
        assert!(
            why.contains("b.txt (changed)") && !why.contains("a.txt"),
            "{why}"
        );
        assert!(c.explain("other", "COPY . /", &inputs).contains("new"));
        let u = Cache::prune(root.path()).unwrap();
        assert_eq!(u.entries, 1);
        assert!(Cache::open(root.path()).unwrap().get(&k).is_none());
    }
}
