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
    pub fn complete(self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        // A second lease bridges the moment between seal (which drops the
        // writer's) and the rename.
        let _lease = self.store.lease()?;
        self.seal(expected)?.publish()
    }

    /// Verify against `expected`, but do not publish yet: the content stays a
    /// private temp file in `tmp/` until [`SealedBlob::publish`] (which fsyncs and
    /// renames it); dropping the sealed blob removes it. For a caller that must
    /// check several blobs against each other before any becomes visible (`imgctl
    /// load`). The sealed blob holds no lease and no descriptor (a load may hold
    /// thousands): the caller holds one [`Store::lease`] until it publishes, so
    /// `prune` cannot empty `tmp/` meanwhile.
    pub fn seal(mut self, expected: Option<&Digest>) -> Result<SealedBlob> {
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
        // The sealed blob now owns the temp file.
        let path = std::mem::take(&mut self.path);
        drop(f);
        Ok(SealedBlob {
            store: self.store.clone(),
            path,
            digest: found,
            len,
        })
    }
}

/// A blob written and verified but not visible yet (see [`UnknownBlob::seal`]).
pub struct SealedBlob {
    store: Store,
    path: PathBuf,
    digest: Digest,
    len: u64,
}

impl SealedBlob {
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Read the content back (e.g. a small JSON document to parse before
    /// publishing).
    pub fn open(&self) -> Result<File> {
        File::open(&self.path).map_err(io_err("open", &self.path))
    }

    /// fsync, make read-only and rename into `blobs/`. Returns the digest and size.
    pub fn publish(self) -> Result<(Digest, u64)> {
        let found = self.digest.clone();
        let len = self.len;
        let dest = self.store.blob_path(&found);
        if dest.is_file() {
            return Ok((found, len));
        }
        let f = File::open(&self.path).map_err(io_err("open", &self.path))?;
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

impl Drop for SealedBlob {
    fn drop(&mut self) {
        // Published: the file was renamed away (or is a duplicate to drop).
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
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
        // Sealed: the path moved to the SealedBlob (empty here).
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
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

    #[test]
    fn a_sealed_blob_is_invisible_until_published() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let _lease = store.lease().unwrap();
        let mut w = store.blob_writer().unwrap();
        w.write_all(b"sealed").unwrap();
        let d = Digest::of(b"sealed");
        assert!(matches!(
            store.blob_writer().unwrap().seal(Some(&Digest::of(b"x"))),
            Err(StoreError::DigestMismatch { .. })
        ));
        let s = w.seal(Some(&d)).unwrap();
        assert_eq!((s.digest(), s.len()), (&d, 6));
        assert!(!store.has_blob(&d));
        let tmp = s.path.clone();
        assert!(tmp.exists());
        drop(s);
        assert!(!tmp.exists() && !store.has_blob(&d));
        let mut w = store.blob_writer().unwrap();
        w.write_all(b"sealed").unwrap();
        let s = w.seal(None).unwrap();
        let tmp = s.path.clone();
        assert_eq!(s.publish().unwrap(), (d.clone(), 6));
        assert!(!tmp.exists());
        assert_eq!(store.read_blob(&d, 100).unwrap(), b"sealed");
    }
}
