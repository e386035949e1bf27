//! Snapshots: the file systems of image layers stacked by chain ID, and writable
//! (active) snapshots on top of them for containers and build steps.
//!
//! Vocabulary and lifecycle (after containerd's snapshotter contract):
//! * A **layer** is the unpacked content of one diff ID. It is filled once, by a
//!   caller-supplied function, into a temporary place and published atomically; a gzip
//!   and a zstd blob of the same tar, or the same tar at another position of another
//!   image, share it.
//! * A **committed** snapshot is keyed by chain ID: a parent chain plus one layer.
//! * An **active** snapshot (`prepare`) is writable, keyed by a caller-chosen name, on
//!   top of a committed chain; a **view** is a read-only one. `mounts` returns what to
//!   mount as data ([`Mount`]); [`mount_all`] performs it. `commit` turns an active
//!   snapshot into a layer + chain, `remove` deletes one.
//! * Reference counts: a chain is referenced by the chains and active snapshots built
//!   on it; `remove` refuses while the count is not zero.
//!
//! The overlayfs implementation is [`overlay::Overlay`]. A layer is kept either as
//! extracted files or as one EROFS image mounted on demand on its directory
//! ([`Mount::Erofs`]); which one new layers get is decided a level up
//! (`image::layer_format`), and both stack in the same chains.

pub mod dedup;
pub mod durable;
pub mod gc;
pub mod overlay;

use std::path::{Path, PathBuf};

use crate::oci::Digest;

pub use dedup::{DedupStats, DiskUsage};
pub use overlay::{layer_usage, LayerUsage, Overlay};

/// Errors of snapshot operations.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot {key}: {source}")]
    Io {
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("snapshot {key} not found")]
    NotFound { key: String },
    #[error("snapshot {key} already exists")]
    AlreadyExists { key: String },
    #[error("snapshot {key} is in use by {refs} other snapshot(s); remove those first")]
    InUse { key: String, refs: usize },
    #[error("invalid snapshot key {key:?}: use letters, digits, '-', '_' and '.' (at most 128)")]
    InvalidKey { key: String },
    #[error("filling layer {diff_id}: {source}")]
    Fill {
        diff_id: Digest,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("snapshot metadata {path}: {source}")]
    Metadata {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// A mount to perform, as data (nothing is mounted until [`mount_all`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Mount {
    /// overlayfs: `lowers` top-most first; `upper`/`work` for a writable mount.
    Overlay {
        lowers: Vec<PathBuf>,
        upper: Option<PathBuf>,
        work: Option<PathBuf>,
    },
    /// A bind mount of one directory.
    Bind { source: PathBuf, readonly: bool },
    /// A layer kept as an EROFS image, mounted read-only on its own `target` (a layer
    /// directory the overlay mount that follows uses as a lower). Shared by every
    /// snapshot using the layer; mounting it again is a no-op.
    Erofs { image: PathBuf, target: PathBuf },
}

impl Mount {
    /// The mount as `mount -t TYPE -o OPTIONS` would take it (for display and for
    /// tools that want an option string; may exceed a page for deep images).
    pub fn options(&self) -> (String, String) {
        match self {
            Mount::Overlay {
                lowers,
                upper,
                work,
            } => {
                let l: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
                let mut o = format!("lowerdir={}", l.join(":"));
                if let (Some(u), Some(w)) = (upper, work) {
                    o.push_str(&format!(
                        ",upperdir={},workdir={}",
                        u.display(),
                        w.display()
                    ));
                }
                ("overlay".into(), o)
            }
            Mount::Bind { source, readonly } => {
                let ro = if *readonly { ",ro" } else { "" };
                (
                    "bind".into(),
                    format!("bind{ro},source={}", source.display()),
                )
            }
            Mount::Erofs { image, target } => (
                "erofs".into(),
                format!("ro,source={},target={}", image.display(), target.display()),
            ),
        }
    }
}

/// The lock file next to an EROFS layer image that orders mounting it (shared,
/// held from "is it mounted?" until the overlay using it is mounted) against
/// detaching it (exclusive, see [`Overlay::unmount_unused_layers`]).
pub(crate) fn erofs_mount_lock(image: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(image.with_file_name(".mount.lock"))
}

/// An flock held until dropped.
pub(crate) struct Flock(std::fs::File);

impl Flock {
    pub(crate) fn take(f: std::fs::File, exclusive: bool) -> std::io::Result<Flock> {
        use rustix::fs::FlockOperation as Op;
        let op = if exclusive {
            Op::LockExclusive
        } else {
            Op::LockShared
        };
        rustix::fs::flock(&f, op)
            .map_err(|e| std::io::Error::from_raw_os_error(e.raw_os_error()))?;
        Ok(Flock(f))
    }
}

impl Drop for Flock {
    fn drop(&mut self) {
        let _ = rustix::fs::flock(&self.0, rustix::fs::FlockOperation::Unlock);
    }
}

/// Perform `mounts` on `target` (in order).
///
/// An EROFS layer already mounted is shared; its lock is held (shared) until every
/// mount here is done, so another process cannot detach it between the check and
/// the overlay mount that uses it (which would give the overlay an empty lower
/// directory: issue 10). Once the overlay holds it, a detach no longer matters.
pub fn mount_all(mounts: &[Mount], target: &Path) -> std::io::Result<()> {
    mount_all_with(mounts, target, false)
}

/// [`mount_all`]; `volatile`: a writable overlay is mounted with overlayfs's
/// `volatile` option (no sync of the store's filesystem at unmount), for a
/// snapshot removed after use (see [`crate::sys::fs::mount_overlay_with`]).
pub fn mount_all_with(mounts: &[Mount], target: &Path, volatile: bool) -> std::io::Result<()> {
    let mut held = Vec::new();
    for m in mounts {
        match m {
            Mount::Overlay {
                lowers,
                upper,
                work,
            } => {
                let uw = match (upper, work) {
                    (Some(u), Some(w)) => Some((u.as_path(), w.as_path())),
                    _ => None,
                };
                crate::sys::fs::mount_overlay_with(lowers, uw, target, volatile)?;
            }
            Mount::Bind { source, readonly } => {
                crate::sys::fs::mount_bind(source, target, *readonly)?
            }
            Mount::Erofs { image, target } => {
                held.push(Flock::take(erofs_mount_lock(image)?, false)?);
                if !crate::sys::fs::is_mount_point(target)? {
                    // Every holder of the shared lock may see "not mounted": one
                    // mounts, the others then find its mount. Two mounts stacked
                    // on one directory would outlive the single detach that
                    // removes an unused layer (a leak seen under parallel runs).
                    let _mounting = Flock::take(std::fs::File::open(image)?, true)?;
                    if !crate::sys::fs::is_mount_point(target)? {
                        crate::sys::fs::mount_erofs(image, target)?;
                    }
                }
            }
        }
    }
    drop(held);
    Ok(())
}

/// Detach every mount on `dir` (a layer's `fs`): stores used by versions that
/// could stack two EROFS mounts there hold more than one.
pub(crate) fn detach_all(dir: &Path) -> std::io::Result<()> {
    for _ in 0..16 {
        if !crate::sys::fs::is_mount_point(dir)? {
            break;
        }
        crate::sys::fs::unmount(dir, true)?;
    }
    Ok(())
}

/// Whether a snapshot is writable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Active,
    View,
    Committed,
}

/// What is known about a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Info {
    /// Chain ID for committed snapshots, the caller's key otherwise.
    pub key: String,
    pub kind: Kind,
    /// Parent chain ID.
    pub parent: Option<Digest>,
    /// The layer a committed snapshot adds.
    pub diff_id: Option<Digest>,
}

/// Fills a layer's directory; returns an error to abandon it.
pub type Fill<'a> = dyn FnMut(&Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>> + 'a;

/// A snapshot backend. See the module docs for the vocabulary.
pub trait Snapshotter: Send + Sync {
    /// Ensure the layer `diff_id` exists, calling `fill` with an empty directory to
    /// populate it when it does not. The layer is published only if `fill` succeeds.
    /// Returns true when `fill` ran. Safe to call from several threads for different
    /// layers at once (that is how independent layers unpack in parallel).
    fn ensure_layer(&self, diff_id: &Digest, fill: &mut Fill<'_>) -> Result<bool, SnapshotError>;

    /// Record the committed snapshot `parent` + `diff_id` (whose layer must exist) and
    /// return its chain ID. Idempotent.
    fn commit_chain(
        &self,
        parent: Option<&Digest>,
        diff_id: &Digest,
    ) -> Result<Digest, SnapshotError>;

    /// Create a writable snapshot `key` on top of the chain `parent`.
    fn prepare(&self, key: &str, parent: Option<&Digest>) -> Result<Vec<Mount>, SnapshotError>;

    /// Create a read-only snapshot `key` of the chain `parent`.
    fn view(&self, key: &str, parent: Option<&Digest>) -> Result<Vec<Mount>, SnapshotError>;

    /// The mounts of an active snapshot or view.
    fn mounts(&self, key: &str) -> Result<Vec<Mount>, SnapshotError>;

    /// Turn the active snapshot `key` into the layer `diff_id` (the caller computed it
    /// from the upper directory's diff) on top of its parent; returns the chain ID.
    fn commit(&self, key: &str, diff_id: &Digest) -> Result<Digest, SnapshotError>;

    /// Remove an active snapshot/view by key, or a committed one by chain ID. A
    /// committed snapshot still referenced gives [`SnapshotError::InUse`].
    fn remove(&self, key: &str) -> Result<(), SnapshotError>;

    /// Snapshot info by key or chain ID, if it exists.
    fn stat(&self, key: &str) -> Result<Option<Info>, SnapshotError>;

    /// How many snapshots reference the committed chain `chain`.
    fn refs(&self, chain: &Digest) -> Result<usize, SnapshotError>;

    /// Every snapshot.
    fn list(&self) -> Result<Vec<Info>, SnapshotError>;
}
