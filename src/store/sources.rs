//! Where a blob is known to live in a registry: `sources/<hex>` holds one
//! `registry/repository` per line, appended when a pull fetched (or found) the blob
//! there and when a push put it there. A push to another repository of the same
//! registry asks for a cross-repository mount from one of them instead of uploading
//! the bytes (distribution spec, "Mounting a blob from another repository").
//!
//! A line is a hint, not a promise: the registry may have deleted the blob since, in
//! which case the mount is refused and the push uploads. Lines are appended with
//! `O_APPEND` (one short write each, so concurrent writers do not interleave), read
//! deduplicated, and dropped with the blob by `prune`.

use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;

use super::{fsutil, io_err, Result, Store};
use crate::oci::Digest;

/// Sources kept per blob (the most recent win); older lines are dropped on rewrite.
const MAX_SOURCES: usize = 16;

impl Store {
    fn sources_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("sources").join(digest.hex())
    }

    /// Record that `digest` lives in `repository` (`registry/path`).
    pub fn add_blob_source(&self, digest: &Digest, repository: &str) -> Result<()> {
        if repository.is_empty() || repository.contains('\n') {
            return Ok(());
        }
        let known = self.blob_sources(digest)?;
        if known.iter().any(|s| s == repository) {
            return Ok(());
        }
        let dir = self.root.join("sources");
        fsutil::mkdir_private(&dir).map_err(io_err("create", &dir))?;
        let p = self.sources_path(digest);
        if known.len() >= MAX_SOURCES {
            let mut keep: Vec<&str> = known[known.len() + 1 - MAX_SOURCES..]
                .iter()
                .map(String::as_str)
                .collect();
            keep.push(repository);
            let body = keep.join("\n") + "\n";
            return self.write_atomic(&p, body.as_bytes());
        }
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(io_err("open", &p))?;
        f.write_all(format!("{repository}\n").as_bytes())
            .map_err(io_err("write", &p))
    }

    /// The repositories `digest` is known to live in, oldest first, without repeats.
    pub fn blob_sources(&self, digest: &Digest) -> Result<Vec<String>> {
        let p = self.sources_path(digest);
        let text = match fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read", &p)(e)),
        };
        let mut out: Vec<String> = Vec::new();
        for l in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if !out.iter().any(|o| o == l) {
                out.push(l.to_string());
            }
        }
        Ok(out)
    }

    /// Forget the sources of a removed blob.
    pub(super) fn remove_blob_sources(&self, digest: &Digest) {
        let _ = fs::remove_file(self.sources_path(digest));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_recorded_once_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = Digest::of(b"x");
        assert!(s.blob_sources(&d).unwrap().is_empty());
        s.add_blob_source(&d, "127.0.0.1:5000/a").unwrap();
        s.add_blob_source(&d, "127.0.0.1:5000/b").unwrap();
        s.add_blob_source(&d, "127.0.0.1:5000/a").unwrap();
        assert_eq!(
            s.blob_sources(&d).unwrap(),
            ["127.0.0.1:5000/a", "127.0.0.1:5000/b"]
        );
        for i in 0..40 {
            s.add_blob_source(&d, &format!("r/{i}")).unwrap();
        }
        let all = s.blob_sources(&d).unwrap();
        assert!(all.len() <= MAX_SOURCES + 1, "{all:?}");
        assert_eq!(all.last().map(String::as_str), Some("r/39"));
        s.remove_blob_sources(&d);
        assert!(s.blob_sources(&d).unwrap().is_empty());
    }
}
