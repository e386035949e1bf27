//! The layer index: what reading a layer blob found (entries, uncompressed size, diff
//! ID), kept in the store under `cache/size/<algorithm>-<hex>.json` keyed by the
//! blob's digest, so a layer is decompressed for the size report once and not on
//! every report (a CI job compares each new image with a base whose layers it has
//! read before). The same idea as the tar-split metadata containers/storage keeps
//! per layer. A layer blob is immutable and content-addressed, so an entry never
//! goes stale; an unreadable or foreign-version entry is ignored and rewritten, and
//! `Store::prune` removes an entry with its blob.
//! `schemas/size-layer-index.schema.json` describes the file.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::scan::{Entry, Kind, Scanned};
use crate::oci::Digest;

/// Format version of the files; others are ignored.
const VERSION: u32 = 1;

/// Index files larger than this are not read (a real layer's index is well below).
const MAX_INDEX_BYTES: u64 = 512 << 20;

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    uncompressed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    diff_id: Option<Digest>,
    /// `[name, kind, size, content hash (hex) or ""]` per entry, in tar order.
    entries: Vec<(String, String, u64, String)>,
}

/// Where blob `digest`'s index lives under store `root`.
pub fn path(root: &Path, digest: &Digest) -> PathBuf {
    root.join("cache")
        .join("size")
        .join(format!("{}-{}.json", digest.algorithm(), digest.hex()))
}

fn kind_code(k: Kind) -> &'static str {
    match k {
        Kind::File => "f",
        Kind::Dir => "d",
        Kind::Symlink => "l",
        Kind::Hardlink => "h",
        Kind::Device => "c",
        Kind::Fifo => "p",
        Kind::Whiteout => "w",
        Kind::Opaque => "o",
    }
}

fn kind_of(code: &str) -> Option<Kind> {
    Some(match code {
        "f" => Kind::File,
        "d" => Kind::Dir,
        "l" => Kind::Symlink,
        "h" => Kind::Hardlink,
        "c" => Kind::Device,
        "p" => Kind::Fifo,
        "w" => Kind::Whiteout,
        "o" => Kind::Opaque,
        _ => return None,
    })
}

fn hex(b: &[u8; 32]) -> String {
    use std::fmt::Write as _;
    b.iter().fold(String::with_capacity(64), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The index of blob `digest`, when the store has a usable one.
pub fn load(root: &Path, digest: &Digest) -> Option<Scanned> {
    let p = path(root, digest);
    let meta = fs::metadata(&p).ok()?;
    if !meta.is_file() || meta.len() > MAX_INDEX_BYTES {
        return None;
    }
    let f: File = serde_json::from_slice(&fs::read(&p).ok()?).ok()?;
    if f.version != VERSION {
        return None;
    }
    let mut entries = Vec::with_capacity(f.entries.len());
    for (name, kind, size, content) in f.entries {
        let content = match content.as_str() {
            "" => None,
            h => Some(unhex(h)?),
        };
        entries.push(Entry {
            name,
            kind: kind_of(&kind)?,
            size,
            content,
        });
    }
    Some(Scanned {
        entries,
        uncompressed: f.uncompressed,
        compressed: 0,
        diff_id: f.diff_id,
    })
}

/// Record what reading blob `digest` found. Best effort: the report does not fail
/// when the cache cannot be written (read-only store, full disk).
pub fn save(root: &Path, digest: &Digest, s: &Scanned) {
    let f = File {
        version: VERSION,
        uncompressed: s.uncompressed,
        diff_id: s.diff_id.clone(),
        entries: s
            .entries
            .iter()
            .map(|e| {
                (
                    e.name.clone(),
                    kind_code(e.kind).to_string(),
                    e.size,
                    e.content.as_ref().map(hex).unwrap_or_default(),
                )
            })
            .collect(),
    };
    let Ok(data) = serde_json::to_vec(&f) else {
        return;
    };
    let p = path(root, digest);
    if let Some(dir) = p.parent() {
        if fs::create_dir_all(dir).is_err() {
            return;
        }
    }
    // A torn file after a crash only fails to parse and is rewritten: no fsync.
    if let Err(e) = crate::store::write_atomic_volatile(&p, &data, 0o644) {
        tracing::debug!("size index {}: {e}", p.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_field() {
        let dir = tempfile::tempdir().unwrap();
        let d: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        let s = Scanned {
            entries: vec![
                Entry {
                    name: "etc/passwd".into(),
                    kind: Kind::File,
                    size: 42,
                    content: Some(blake3::hash(b"x").into()),
                },
                Entry {
                    name: "etc/.wh.gone".into(),
                    kind: Kind::Whiteout,
                    size: 0,
                    content: None,
                },
                Entry {
                    name: "var/.wh..wh..opq".into(),
                    kind: Kind::Opaque,
                    size: 0,
                    content: None,
                },
            ],
            uncompressed: 10240,
            compressed: 0,
            diff_id: Some(d.clone()),
        };
        assert!(load(dir.path(), &d).is_none());
        save(dir.path(), &d, &s);
        let back = load(dir.path(), &d).unwrap();
        assert_eq!(back.uncompressed, 10240);
        assert_eq!(back.diff_id, Some(d.clone()));
        assert_eq!(back.entries.len(), 3);
        for (a, b) in s.entries.iter().zip(&back.entries) {
            assert_eq!(
                (&a.name, a.kind, a.size, a.content),
                (&b.name, b.kind, b.size, b.content)
            );
        }
        // A damaged file is not used.
        fs::write(path(dir.path(), &d), b"{\"version\":1,").unwrap();
        assert!(load(dir.path(), &d).is_none());
    }
}
