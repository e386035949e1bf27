//! A writer for content whose digest is not known in advance (a layer being
//! diffed, a config being built): bytes go to a private temp file in `tmp/` while
//! they are hashed; [`UnknownBlob::complete`] then fsyncs, makes the file read-only
//! and renames it to `blobs/sha256/<digest>` — the shape of ocidir-rs's
//! `BlobWriter::complete`. Taking `self` makes a double commit impossible; dropping
//! the writer without completing removes the temp file, so a failed or killed writer
//! never leaves a visible blob (a kill -9 leaves only a `tmp/` file, which the next
//! [`super::Store::prune`] removes). The writer holds a store lease meanwhile.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use super::{fsutil, io_err, Result, Store, StoreError};
use crate::oci::{Digest, Digester};

/// An open writer for a blob of unknown digest. See the module docs.
pub struct UnknownBlob {
    store: Store,
    path: PathBuf,
    out: Option<BufWriter<File>>,
    digester: Digester,
    /// Held while writing, so a concurrent `prune` (which empties `tmp/`) waits.
    _lease: super::Lease,
}

impl Store {
    /// Start writing a blob whose digest will be known once it is written.
    pub fn blob_writer(&self) -> Result<UnknownBlob> {
        let lease = self.lease()?;
        let path =
            self.root
                .join("tmp")
                .join(format!("blob.{}.{}", std::process::id(), fsutil::unique()));
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("create", &path))?;
        Ok(UnknownBlob {
            store: self.clone(),
            path,
            out: Some(BufWriter::with_capacity(1 << 20, f)),
            digester: Digester::new(),
            _lease: lease,
        })
    }
}

impl UnknownBlob {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.digester.len()
    }

    /// True before anything was written.
    pub fn is_empty(&self) -> bool {
        self.digester.is_empty()
    }

    /// Verify (against `expected`, when the caller computed one on its side), fsync
    /// and publish the blob under its digest. Returns the digest and size. When the
    /// blob is already in the store, the new copy is dropped. On a mismatch nothing
    /// becomes visible.
    pub fn complete(mut self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let out = self.out.take().ok_or_else(|| StoreError::Io {
            op: "complete",
            path: self.path.clone(),
            source: io::Error::other("writer already closed"),
        })?;
        let f = out
            .into_inner()
            .map_err(|e| io_err("write", &self.path)(e.into_error()))?;
        let len = self.digester.len();
        let found = std::mem::take(&mut self.digester).finish();
        if let Some(e) = expected {
            if e != &found {
                // Drop removes the temp file.
                return Err(StoreError::DigestMismatch {
                    expected: e.clone(),
                    found,
                });
            }
        }
        let dest = self.store.blob_path(&found);
        if dest.is_file() {
            return Ok((found, len));
        }
        f.sync_all().map_err(io_err("fsync", &self.path))?;
        f.set_permissions(fs::Permissions::from_mode(0o444))
            .map_err(io_err("chmod", &self.path))?;
        fs::rename(&self.path, &dest).map_err(io_err("commit", &dest))?;
        if let Some(dir) = dest.parent() {
            fsutil::sync_dir(dir).map_err(io_err("fsync", dir))?;
        }
        Ok((found, len))
    }
}

impl Write for UnknownBlob {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer already closed"))?;
        let n = out.write(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.out.as_mut() {
            Some(o) => o.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for UnknownBlob {
    fn drop(&mut self) {
        // Completed: the file was renamed away (or is a duplicate to drop).
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_publishes_under_the_content_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut w = store.blob_writer().unwrap();
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let tmp = w.path.clone();
        let (d, n) = w.complete(None).unwrap();
        assert_eq!(d, Digest::of(b"hello world"));
        assert_eq!(n, 11);
        assert_eq!(store.read_blob(&d, 100).unwrap(), b"hello world");
        assert!(!tmp.exists());
        let mode = fs::metadata(store.blob_path(&d))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o444);
        // The same content again: already there, the duplicate goes away.
        let mut w = store.blob_writer().unwrap();
        w.write_all(b"hello world").unwrap();
        let tmp = w.path.clone();
        assert_eq!(w.complete(Some(&d)).unwrap().0, d);
        assert!(!tmp.exists());
    }

    #[test]
    fn mismatch_or_drop_leaves_nothing_visible() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut w = store.blob_writer().unwrap();
        w.write_all(b"abc").unwrap();
        let tmp = w.path.clone();
        let wrong = Digest::of(b"xyz");
        assert!(matches!(
            w.complete(Some(&wrong)),
            Err(StoreError::DigestMismatch { .. })
        ));
        assert!(!tmp.exists());
        assert!(!store.has_blob(&Digest::of(b"abc")));
        let mut w = store.blob_writer().unwrap();
        w.write_all(b"dropped").unwrap();
        let tmp = w.path.clone();
        drop(w);
        assert!(!tmp.exists());
        assert!(!store.has_blob(&Digest::of(b"dropped")));
    }
}
