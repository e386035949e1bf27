//! Blob ingest: partial downloads live in `ingest/<hex>` (their length is the resume
//! offset), guarded by `locks/ingest-<hex>.lock` so one process writes a blob at a
//! time. A writer hashes while writing; [`BlobWriter::commit`] verifies size and
//! digest, fsyncs, makes the file read-only and renames it into `blobs/` (then fsyncs
//! the directory), so no blob is ever visible before it is verified. Taking `self`
//! makes a double commit impossible.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use super::{fsutil, io_err, Result, Store, StoreError};
use crate::oci::{Digest, Digester};

/// Outcome of asking to write a blob.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // returned once per blob; boxing buys nothing
pub enum IngestStart {
    /// The blob is already committed; nothing to do.
    Present,
    /// Another process is writing this blob now; try again later.
    Busy,
    /// This process holds the blob's ingest; the writer may already hold a prefix.
    Writer(BlobWriter),
}

/// Writes one blob into `ingest/`, hashing as it goes. Dropping it without commit
/// keeps the partial data for a later resume and releases the lock.
pub struct BlobWriter {
    expected: Digest,
    size: Option<u64>,
    path: PathBuf,
    blob_path: PathBuf,
    out: BufWriter<File>,
    digester: Digester,
    _lock: File,
}

impl std::fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter")
            .field("expected", &self.expected)
            .field("size", &self.size)
            .field("offset", &self.digester.len())
            .field("path", &self.path)
            .finish()
    }
}

const BUF: usize = 1 << 20;

fn lock_path(store: &Store, d: &Digest) -> PathBuf {
    store
        .root
        .join("locks")
        .join(format!("ingest-{}.lock", d.hex()))
}

pub(super) fn start(store: &Store, expected: &Digest, size: Option<u64>) -> Result<IngestStart> {
    if store.has_blob(expected) {
        return Ok(IngestStart::Present);
    }
    let lp = lock_path(store, expected);
    let lock = fsutil::open_lock_file(&lp).map_err(io_err("open lock", &lp))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => return Ok(IngestStart::Busy),
        Err(fs::TryLockError::Error(e)) => return Err(io_err("lock", &lp)(e)),
    }
    // The previous holder may have committed it while we waited.
    if store.has_blob(expected) {
        return Ok(IngestStart::Present);
    }
    let path = store.root.join("ingest").join(expected.hex());
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io_err("open", &path))?;
    let mut digester = Digester::new();
    let len = file.metadata().map_err(io_err("stat", &path))?.len();
    if size.is_some_and(|s| len > s) {
        file.set_len(0).map_err(io_err("truncate", &path))?;
    } else if len > 0 {
        // Resume: the hash state is not persisted, so re-hash the prefix on disk.
        let mut buf = vec![0u8; BUF];
        loop {
            let n = file.read(&mut buf).map_err(io_err("read", &path))?;
            if n == 0 {
                break;
            }
            digester.update(&buf[..n]);
        }
    }
    file.seek(SeekFrom::End(0)).map_err(io_err("seek", &path))?;
    Ok(IngestStart::Writer(BlobWriter {
        expected: expected.clone(),
        size,
        blob_path: store.blob_path(expected),
        path,
        out: BufWriter::with_capacity(BUF, file),
        digester,
        _lock: lock,
    }))
}

impl BlobWriter {
    /// Bytes already written (the offset to resume from).
    pub fn offset(&self) -> u64 {
        self.digester.len()
    }

    pub fn digest(&self) -> &Digest {
        &self.expected
    }

    /// Append `buf`. Refuses to grow beyond the expected size (an endless stream).
    pub fn write_all(&mut self, buf: &[u8]) -> Result<()> {
        if let Some(size) = self.size {
            if self.digester.len() + buf.len() as u64 > size {
                return Err(StoreError::TooLarge {
                    digest: self.expected.clone(),
                    limit: size,
                });
            }
        }
        self.out
            .write_all(buf)
            .map_err(io_err("write", &self.path))?;
        self.digester.update(buf);
        Ok(())
    }

    /// Forget what was written and start from byte 0 (e.g. the server ignored a
    /// Range request).
    pub fn restart(&mut self) -> Result<()> {
        self.out.flush().map_err(io_err("write", &self.path))?;
        let f = self.out.get_mut();
        f.set_len(0).map_err(io_err("truncate", &self.path))?;
        f.seek(SeekFrom::Start(0))
            .map_err(io_err("seek", &self.path))?;
        self.digester = Digester::new();
        Ok(())
    }

    /// Push buffered bytes to the file so its length reflects progress.
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(io_err("write", &self.path))
    }

    /// Verify, fsync and atomically publish the blob. On a size or digest mismatch
    /// the partial file is deleted (the next attempt downloads afresh, never reusing
    /// bad bytes) and nothing becomes visible.
    pub fn commit(mut self) -> Result<()> {
        self.flush()?;
        let len = self.digester.len();
        if let Some(size) = self.size {
            if len != size {
                // Short: keep the prefix for a resume.
                return Err(StoreError::SizeMismatch {
                    digest: self.expected.clone(),
                    expected: size,
                    found: len,
                });
            }
        }
        let found = std::mem::take(&mut self.digester).finish();
        if found != self.expected {
            let _ = fs::remove_file(&self.path);
            return Err(StoreError::DigestMismatch {
                expected: self.expected.clone(),
                found,
            });
        }
        let f = self.out.get_ref();
        f.sync_all().map_err(io_err("fsync", &self.path))?;
        f.set_permissions(fs::Permissions::from_mode(0o444))
            .map_err(io_err("chmod", &self.path))?;
        fs::rename(&self.path, &self.blob_path).map_err(io_err("commit", &self.blob_path))?;
        if let Some(dir) = self.blob_path.parent() {
            fsutil::sync_dir(dir).map_err(io_err("fsync", dir))?;
        }
        Ok(())
    }

    /// Delete the partial data (used when the bytes are known to be bad).
    pub fn discard(self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Remove partial downloads that no process is writing; returns the bytes freed.
pub(super) fn remove_idle(store: &Store, dry_run: bool) -> Result<u64> {
    let dir = store.root.join("ingest");
    let mut freed = 0;
    for e in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
        let e = e.map_err(io_err("list", &dir))?;
        let Some(d) = e
            .file_name()
            .to_str()
            .and_then(|h| Digest::from_hex(h).ok())
        else {
            continue;
        };
        let lp = lock_path(store, &d);
        let lock = fsutil::open_lock_file(&lp).map_err(io_err("open lock", &lp))?;
        if lock.try_lock().is_ok() {
            freed += e.metadata().map(|m| m.len()).unwrap_or(0);
            // The lock file stays: deleting it could let two writers lock different
            // inodes of the same name.
            if !dry_run {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    Ok(freed)
}

/// Bytes held by partial downloads.
pub(super) fn bytes(store: &Store) -> Result<u64> {
    let dir = store.root.join("ingest");
    let mut total = 0;
    for e in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
        let e = e.map_err(io_err("list", &dir))?;
        total += e.metadata().map(|m| m.len()).unwrap_or(0);
    }
    Ok(total)
}

/// How many bytes a partial download of `d` holds (0 when there is none).
pub(super) fn partial_len(store: &Store, d: &Digest) -> u64 {
    fs::metadata(store.root.join("ingest").join(d.hex()))
        .map(|m| m.len())
        .unwrap_or(0)
}
