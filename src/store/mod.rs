//! Content-addressed store: blobs (ingest -> verify -> atomic commit), the image
//! index (tags in the OCI `index.json`), locks and metadata. Knows bytes and digests,
//! never tar or overlay.
//!
//! On-disk layout under the root (an OCI image layout, image-spec `image-layout.md`):
//!
//! ```text
//! oci-layout              {"imageLayoutVersion": "1.0.0"}
//! index.json              one descriptor per image name; the full normalised reference
//!                         is in the `org.opencontainers.image.ref.name` annotation
//! blobs/sha256/<hex>      verified, read-only content
//! ingest/<hex>            partial downloads; the file length is the resume offset
//! locks/                  lock files (std `File::lock`; released by the kernel when
//!                         the holder dies, so a kill -9 never leaves a stale lock)
//! tmp/                    temp files for atomic replace of index.json
//! sources/<hex>           registry repositories a blob is known to live in (push
//!                         mounts from them); see [`Store::blob_sources`]
//! uploads/<key>.json      resumable push uploads (the registry's upload location)
//! ```
//!
//! Every directory the store creates is 0700 and blobs are made 0444 after commit.
//! The root named by the user is never chmodded: a missing root is created 0700,
//! an existing empty one keeps its mode (its private subdirectories guard the
//! content), and a non-empty directory that is not a store is refused.
//! [`OpenMode::Existing`] (read-only commands) never creates anything.

pub mod fsutil;
mod images;
mod ingest;
mod sources;
mod writer;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::oci::{AnyManifest, Descriptor, Digest, Index, MediaType};

pub use fsutil::{write_atomic, write_atomic_via, write_atomic_volatile};
pub use images::{ImageRecord, Resolved};
pub use ingest::{BlobWriter, IngestStart};
pub use writer::{SealedBlob, UnknownBlob};

/// The `imageLayoutVersion` this store writes and reads.
pub const LAYOUT_VERSION: &str = "1.0.0";

pub use crate::oci::{MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE};

/// Annotation on an index.json entry recording the digest the registry serves for
/// the image when it differs from the stored manifest: the index a platform was
/// chosen from, or the original Docker schema 2 manifest that was stored converted
/// to OCI. That blob is kept too (prune treats it as referenced), and it is the
/// digest shown in RepoDigests.
pub const ANNOTATION_SOURCE_DIGEST: &str = "io.imgctl.source-digest";

/// Read access to verified blobs: the narrow contract that `layer`, `snapshot` and
/// `image` consumers take instead of the whole store.
pub trait BlobReader: Send + Sync {
    /// Open a committed blob for reading. `ErrorKind::NotFound` when it is absent.
    fn open_blob(&self, digest: &Digest) -> std::io::Result<std::fs::File>;
}

/// The one verified reader for small blobs (manifests, indexes, configs) from any
/// [`BlobReader`]: refuses more than `limit` bytes and checks the content against
/// `digest`, so a blob changed on disk after commit (or a tampered OCI layout) is
/// noticed before it is parsed.
pub fn read_verified(blobs: &dyn BlobReader, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
    let f = match blobs.open_blob(digest) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StoreError::BlobMissing {
                digest: digest.clone(),
            })
        }
        Err(source) => {
            return Err(StoreError::Io {
                op: "open blob",
                path: PathBuf::from(digest.to_string()),
                source,
            })
        }
    };
    let mut buf = Vec::new();
    f.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|source| StoreError::Io {
            op: "read blob",
            path: PathBuf::from(digest.to_string()),
            source,
        })?;
    if buf.len() as u64 > limit {
        return Err(StoreError::TooLarge {
            digest: digest.clone(),
            limit,
        });
    }
    let found = Digest::of(&buf);
    if &found != digest {
        return Err(StoreError::DigestMismatch {
            expected: digest.clone(),
            found,
        });
    }
    Ok(buf)
}

/// Errors of the store. Every variant names what it was working on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("digest mismatch: expected {expected}, content hashes to {found}")]
    DigestMismatch { expected: Digest, found: Digest },
    #[error("size mismatch for {digest}: expected {expected} bytes, got {found}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        found: u64,
    },
    #[error("blob {digest} is larger than the {limit}-byte limit")]
    TooLarge { digest: Digest, limit: u64 },
    #[error("blob {digest} is not in the store")]
    BlobMissing { digest: Digest },
    #[error("{path} is corrupt: {detail} (restore it, or move the store aside and pull again)")]
    Corrupt { path: PathBuf, detail: String },
    #[error("{path} is not an imgctl/OCI store (unsupported layout version {version:?})")]
    Layout { path: PathBuf, version: String },
    #[error("{path} is not an imgctl store: it is not empty ({entry} is there) and has no oci-layout (choose a new or empty directory for --root)")]
    NotAStore { path: PathBuf, entry: String },
    #[error("no such image: {name}")]
    ImageNotFound { name: String },
    #[error("{name} is ambiguous: it matches {count} images")]
    Ambiguous { name: String, count: usize },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Whether opening a store may create it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the layout when the root is missing or empty (pull, build, load...).
    Create,
    /// Only use a store that exists: a missing or empty root reads as an empty
    /// store and nothing is written (images, inspect, history, df...).
    Existing,
}

/// Entries imgctl itself puts in a store root (besides the layout), plus what a
/// dedicated filesystem holds: a directory with only these may become a store.
const OWN_ENTRIES: [&str; 13] = [
    "oci-layout",
    "index.json",
    "blobs",
    "ingest",
    "locks",
    "tmp",
    "snapshots",
    "containers",
    "container-names",
    "networks",
    "cache",
    "mounts",
    "lost+found",
];

/// An open store. Cheap to clone; holds no file descriptors.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

/// A shared lease on the store: while any lease is held, `prune` waits, so blobs a
/// running pull has written but not yet referenced cannot be collected.
#[derive(Debug)]
pub struct Lease {
    _file: File,
}

/// The exclusive GC lock ([`Store::gc_lock`]); released when dropped.
#[derive(Debug)]
pub struct GcLock {
    _file: File,
}

/// What `prune` removed.
#[derive(Debug, Default, Clone)]
pub struct PruneReport {
    pub removed: Vec<(Digest, u64)>,
    pub ingest_removed: u64,
    /// Bytes of interrupted atomic writes removed from `tmp/`.
    pub tmp_removed: u64,
}

/// Disk usage of the store.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Usage {
    pub images: usize,
    pub blobs: usize,
    pub blob_bytes: u64,
    pub referenced_blobs: usize,
    pub referenced_bytes: u64,
    pub ingest_bytes: u64,
}

impl Store {
    /// Open the store at `root`, creating an empty OCI layout when the directory is
    /// missing or empty ([`OpenMode::Create`]).
    pub fn open(root: &Path) -> Result<Store> {
        Store::open_with(root, OpenMode::Create)
    }

    /// Open the store at `root` without ever creating it ([`OpenMode::Existing`]).
    pub fn open_existing(root: &Path) -> Result<Store> {
        Store::open_with(root, OpenMode::Existing)
    }

    /// Open the store at `root`; see [`OpenMode`].
    pub fn open_with(root: &Path, mode: OpenMode) -> Result<Store> {
        let store = Store {
            root: root.to_path_buf(),
        };
        let layout = root.join("oci-layout");
        let is_store = match fs::symlink_metadata(&layout) {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_err("stat", &layout)(e)),
        };
        if !is_store {
            match fs::read_dir(root) {
                Ok(entries) => {
                    for e in entries {
                        let e = e.map_err(io_err("list", root))?;
                        let name = e.file_name();
                        if !OWN_ENTRIES.iter().any(|o| name == *o) {
                            return Err(StoreError::NotAStore {
                                path: root.to_path_buf(),
                                entry: name.to_string_lossy().into_owned(),
                            });
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("open store directory", root)(e)),
            }
            if mode == OpenMode::Existing {
                // Nothing to read yet, and a read-only command creates nothing.
                return Ok(store);
            }
        }
        fsutil::mkdir_private(root).map_err(io_err("create store directory", root))?;
        for d in ["blobs", "blobs/sha256", "ingest", "locks", "tmp"] {
            let p = root.join(d);
            fsutil::mkdir_private(&p).map_err(io_err("create store directory", &p))?;
        }
        let layout = root.join("oci-layout");
        match fs::read(&layout) {
            Ok(bytes) => {
                let v: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                        path: layout.clone(),
                        detail: e.to_string(),
                    })?;
                let version = v["imageLayoutVersion"].as_str().unwrap_or("").to_string();
                if version != LAYOUT_VERSION {
                    return Err(StoreError::Layout {
                        path: root.to_path_buf(),
                        version,
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Under the index lock, like every other writer of tmp/ (see prune).
                let _lock = store.lock_exclusive("index")?;
                if !layout.exists() {
                    let body = serde_json::json!({ "imageLayoutVersion": LAYOUT_VERSION });
                    store.write_atomic(&layout, body.to_string().as_bytes())?;
                }
            }
            Err(e) => return Err(io_err("read", &layout)(e)),
        }
        let index = root.join("index.json");
        if !index.exists() {
            let _lock = store.lock_exclusive("index")?;
            if !index.exists() {
                store.write_index(&Index::empty())?;
            }
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// False for a store opened with [`OpenMode::Existing`] where none exists yet;
    /// it reads as empty.
    fn exists(&self) -> bool {
        self.root.join("oci-layout").exists()
    }

    /// Where a committed blob lives. The digest type guarantees a safe file name.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm())
            .join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Size of a committed blob, `None` when absent.
    pub fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        let p = self.blob_path(digest);
        match fs::metadata(&p) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("stat", &p)(e)),
        }
    }

    /// Read a whole (small) blob, refusing more than `limit` bytes, and re-check its
    /// digest so a blob changed on disk after commit is noticed.
    pub fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        read_verified(self, digest, limit)
    }

    /// Store `data` (a manifest, index or config) and return its digest.
    pub fn write_blob(&self, data: &[u8]) -> Result<Digest> {
        let digest = Digest::of(data);
        if let Some(mut w) = self.ingest_blocking(&digest, Some(data.len() as u64))? {
            w.restart()?;
            w.write_all(data)?;
            w.commit()?;
        }
        Ok(digest)
    }

    /// Begin (or resume) writing the blob `expected`. Returns `Present` when it is
    /// already committed and `Busy` when another process is writing it right now.
    pub fn try_ingest(&self, expected: &Digest, size: Option<u64>) -> Result<IngestStart> {
        ingest::start(self, expected, size)
    }

    /// Like [`Store::try_ingest`] but waits while another process holds the blob.
    /// `None` when the blob is (by then) committed.
    pub fn ingest_blocking(
        &self,
        expected: &Digest,
        size: Option<u64>,
    ) -> Result<Option<BlobWriter>> {
        let mut delay = std::time::Duration::from_millis(10);
        loop {
            match self.try_ingest(expected, size)? {
                IngestStart::Busy => {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(std::time::Duration::from_millis(500));
                }
                IngestStart::Present => return Ok(None),
                IngestStart::Writer(w) => return Ok(Some(w)),
            }
        }
    }

    /// Bytes a partial download of `digest` holds in `ingest/` (0 when none).
    pub fn partial_len(&self, digest: &Digest) -> u64 {
        ingest::partial_len(self, digest)
    }

    /// Take a shared lease (see [`Lease`]).
    pub fn lease(&self) -> Result<Lease> {
        let p = self.root.join("locks").join("gc.lock");
        let f = fsutil::open_lock_file(&p).map_err(io_err("open lock", &p))?;
        f.lock_shared().map_err(io_err("lock", &p))?;
        Ok(Lease { _file: f })
    }

    pub(crate) fn lock_exclusive(&self, name: &str) -> Result<File> {
        let p = self.root.join("locks").join(format!("{name}.lock"));
        let f = fsutil::open_lock_file(&p).map_err(io_err("open lock", &p))?;
        f.lock().map_err(io_err("lock", &p))?;
        Ok(f)
    }

    /// Write `data` to `path` atomically through [`fsutil::write_atomic_via`], with
    /// the temp file in tmp/ (cleaned by `prune`).
    fn write_atomic(&self, path: &Path, data: &[u8]) -> Result<()> {
        let tmp = self.root.join("tmp");
        fsutil::write_atomic_via(&tmp, path, data, 0o600).map_err(io_err("write", path))
    }

    /// The image index (`index.json`).
    pub fn index(&self) -> Result<Index> {
        let p = self.root.join("index.json");
        if !self.exists() {
            return Ok(Index::empty());
        }
        let bytes = fs::read(&p).map_err(io_err("read", &p))?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path: p,
            detail: e.to_string(),
        })
    }

    fn write_index(&self, index: &Index) -> Result<()> {
        let mut body = serde_json::to_vec_pretty(index).map_err(|e| StoreError::Corrupt {
            path: self.root.join("index.json"),
            detail: e.to_string(),
        })?;
        body.push(b'\n');
        self.write_atomic(&self.root.join("index.json"), &body)
    }

    /// Change the index under the index lock; `f` sees the current version. A failed
    /// or corrupt read aborts without writing.
    pub fn update_index<T>(&self, f: impl FnOnce(&mut Index) -> Result<T>) -> Result<T> {
        let _lock = self.lock_exclusive("index")?;
        let mut index = self.index()?;
        let out = f(&mut index)?;
        self.write_index(&index)?;
        Ok(out)
    }

    /// Every digest reachable from the index: manifests, indexes, configs, layers, and
    /// the source indexes recorded on entries. Fails (so GC never runs) when a
    /// referenced manifest cannot be read.
    pub fn referenced(&self) -> Result<BTreeSet<Digest>> {
        let index = self.index()?;
        let mut seen = BTreeSet::new();
        let mut todo: Vec<Descriptor> = index.manifests.clone();
        for d in &index.manifests {
            if let Some(src) = d.annotation(ANNOTATION_SOURCE_DIGEST) {
                if let Ok(dg) = src.parse::<Digest>() {
                    seen.insert(dg);
                }
            }
        }
        while let Some(desc) = todo.pop() {
            if !seen.insert(desc.digest.clone()) {
                continue;
            }
            if desc.media_type.is_manifest() || desc.media_type.is_index() {
                if !self.has_blob(&desc.digest) {
                    continue;
                }
                let body = self.read_blob(&desc.digest, MAX_MANIFEST_SIZE)?;
                match crate::oci::parse_manifest(&desc.media_type, &body) {
                    Ok(AnyManifest::Image(m)) => {
                        seen.insert(m.config.digest.clone());
                        seen.extend(m.layers.iter().map(|l| l.digest.clone()));
                    }
                    Ok(AnyManifest::Index(i)) => {
                        for child in i.manifests {
                            if !seen.contains(&child.digest) {
                                todo.push(child);
                            }
                        }
                    }
                    Err(e) => {
                        return Err(StoreError::Corrupt {
                            path: self.blob_path(&desc.digest),
                            detail: e.to_string(),
                        })
                    }
                }
            }
        }
        Ok(seen)
    }

    /// All committed blobs with their sizes.
    pub fn blobs(&self) -> Result<BTreeMap<Digest, u64>> {
        let dir = self.root.join("blobs").join("sha256");
        let mut out = BTreeMap::new();
        if !self.exists() {
            return Ok(out);
        }
        for e in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let e = e.map_err(io_err("list", &dir))?;
            let name = e.file_name();
            let Some(hex) = name.to_str() else { continue };
            let Ok(d) = Digest::from_hex(hex) else {
                continue;
            };
            let len = e.metadata().map_err(io_err("stat", &e.path()))?.len();
            out.insert(d, len);
        }
        Ok(out)
    }

    /// Remove every blob that no image references, and partial downloads no process
    /// is working on. Waits for running pulls (their leases) to finish first.
    pub fn prune(&self) -> Result<PruneReport> {
        if !self.exists() {
            return Ok(PruneReport::default());
        }
        let lock = self.gc_lock()?;
        self.prune_locked(&lock, false)
    }

    /// Take the store's GC lock exclusively: waits until no [`Lease`] is held (no
    /// pull, build or mount is between writing something and referencing it), and
    /// keeps new leases out while it is held.
    pub fn gc_lock(&self) -> Result<GcLock> {
        let p = self.root.join("locks").join("gc.lock");
        let gc = fsutil::open_lock_file(&p).map_err(io_err("open lock", &p))?;
        gc.lock().map_err(io_err("lock", &p))?;
        Ok(GcLock { _file: gc })
    }

    /// [`Store::prune`] under a GC lock the caller holds; with `dry_run` only says
    /// what would go.
    pub fn prune_locked(&self, _gc: &GcLock, dry_run: bool) -> Result<PruneReport> {
        if !self.exists() {
            return Ok(PruneReport::default());
        }
        let _index_lock = self.lock_exclusive("index")?;
        let keep = self.referenced()?;
        let mut report = PruneReport::default();
        for (d, size) in self.blobs()? {
            if keep.contains(&d) {
                continue;
            }
            let path = self.blob_path(&d);
            if !dry_run {
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
                self.remove_blob_sources(&d);
                // Caches keyed by the blob (the size report's layer index) go with it.
                let _ = fs::remove_file(self.root.join("cache").join("size").join(format!(
                    "{}-{}.json",
                    d.algorithm(),
                    d.hex()
                )));
            }
            report.removed.push((d, size));
        }
        report.ingest_removed = ingest::remove_idle(self, dry_run)?;
        // Remembered push sessions: pushes hold a lease, so none is running now; a
        // later push of the same blob starts a fresh session.
        if !dry_run {
            if let Ok(rd) = fs::read_dir(self.root.join("uploads")) {
                for e in rd.flatten() {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        // Temp files of atomic writes interrupted by a crash. Every writer of tmp/
        // (index.json, oci-layout) holds the index lock we hold, so nothing in tmp/
        // is in use now.
        let tmp = self.root.join("tmp");
        for e in fs::read_dir(&tmp).map_err(io_err("list", &tmp))?.flatten() {
            report.tmp_removed += e.metadata().map(|m| m.len()).unwrap_or(0);
            if !dry_run {
                let _ = fs::remove_file(e.path());
            }
        }
        if !dry_run {
            let dir = self.root.join("blobs").join("sha256");
            fsutil::sync_dir(&dir).map_err(io_err("fsync", &dir))?;
        }
        Ok(report)
    }

    /// Disk usage summary.
    pub fn usage(&self) -> Result<Usage> {
        let blobs = self.blobs()?;
        let keep = self.referenced()?;
        let mut u = Usage {
            images: self.index()?.manifests.len(),
            blobs: blobs.len(),
            ..Usage::default()
        };
        for (d, size) in &blobs {
            u.blob_bytes += size;
            if keep.contains(d) {
                u.referenced_blobs += 1;
                u.referenced_bytes += size;
            }
        }
        if self.exists() {
            u.ingest_bytes = ingest::bytes(self)?;
        }
        Ok(u)
    }
}

impl BlobReader for Store {
    fn open_blob(&self, digest: &Digest) -> io::Result<File> {
        File::open(self.blob_path(digest))
    }
}

/// The media type an index.json entry should carry for a stored manifest body.
pub fn media_type_of(body: &[u8]) -> Option<MediaType> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("mediaType")?.as_str().map(MediaType::parse)
}

#[cfg(test)]
mod tests;
