//! The overlayfs snapshotter.
//!
//! Layout under `ROOT/snapshots/` (0700):
//! ```text
//! layers/<diff-id hex>/fs      one unpacked layer (an overlay lower dir), shared by every chain using it,
//!                              or the mount point of layers/<diff-id hex>/layer.erofs (EROFS snapshotter;
//!                              layers/<diff-id hex>/.mount.lock orders mounting it against detaching it)
//! config.json                  snapshotter setting and cached EROFS probe (`image::layer_format`)
//! chains/<chain-id hex>.json   a committed snapshot: parent chain + diff ID
//! active/<key>/{upper,work,merged}, active/<key>.json   writable snapshots and views
//! pool/                        the file-level dedup pool (see `dedup`)
//! empty/                       an empty lower for snapshots without a parent
//! .lock                        flock serialising metadata changes between processes
//! ```
//! Layers are filled in `layers/.tmp-*` and renamed into place, so a crash never
//! leaves a half-unpacked layer under its real name; leftovers are removed by
//! [`Overlay::cleanup`].

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Fill, Info, Kind, Mount, SnapshotError, Snapshotter};
use crate::oci::{chain_id, Digest};
use crate::sys::fs as sfs;

/// Overlayfs snapshots under `<store root>/snapshots`.
#[derive(Debug, Clone)]
pub struct Overlay {
    dir: PathBuf,
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// File name of a layer kept as an EROFS image (next to its `fs` mount point).
pub const EROFS_IMAGE: &str = "layer.erofs";

fn io_err(key: &str) -> impl Fn(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        key: key.to_string(),
        source,
    }
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && !key.starts_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

pub(crate) struct Lock(fs::File);

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = rustix::fs::flock(self.0.as_fd(), rustix::fs::FlockOperation::Unlock);
    }
}

/// Disk usage of the unpacked layers of a store.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LayerUsage {
    /// Layers present (extracted directories and EROFS images).
    pub layers: u64,
    /// Regular file bytes as every layer holds them (an EROFS image counts its size).
    pub logical_bytes: u64,
    /// Bytes of distinct inodes: what the layers take once dedup links are shared.
    pub on_disk_bytes: u64,
    /// `logical_bytes - on_disk_bytes`: saved by file-level dedup.
    pub saved_bytes: u64,
}

/// Measure the layers under `<store_root>/snapshots` without creating anything (a
/// store that never unpacked gives zeros). Temporary layer directories of unpacks in
/// progress are not counted; mounted EROFS layers are not walked (their image file
/// is counted instead).
pub fn layer_usage(store_root: &Path) -> Result<LayerUsage, SnapshotError> {
    let layers = store_root.join("snapshots").join("layers");
    let rd = match fs::read_dir(&layers) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(LayerUsage::default()),
        Err(e) => return Err(io_err("layers")(e)),
    };
    let mut u = LayerUsage::default();
    let mut dirs = Vec::new();
    for e in rd {
        let e = e.map_err(io_err("layers"))?;
        if e.file_name().as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let image = e.path().join(EROFS_IMAGE);
        match fs::symlink_metadata(&image) {
            Ok(md) if md.is_file() => {
                u.layers += 1;
                u.logical_bytes += md.len();
                u.on_disk_bytes += md.len();
                continue;
            }
            _ => {}
        }
        let fsdir = e.path().join("fs");
        if fsdir.is_dir() {
            u.layers += 1;
            dirs.push(fsdir);
        }
    }
    let files = super::dedup::disk_usage(&dirs).map_err(io_err("layers"))?;
    u.logical_bytes += files.logical_bytes;
    u.on_disk_bytes += files.on_disk_bytes;
    u.saved_bytes = u.logical_bytes - u.on_disk_bytes;
    Ok(u)
}

impl Overlay {
    /// Open (creating) the snapshot directory of the store at `store_root`.
    pub fn open(store_root: &Path) -> Result<Overlay, SnapshotError> {
        let dir = store_root.join("snapshots");
        for sub in ["layers", "chains", "active", "pool", "empty"] {
            sfs::create_private_dir_all(&dir.join(sub)).map_err(io_err("snapshots"))?;
        }
        // Each layer directory in its own quiet block group (see `spread_subdirs`):
        // best effort, placement only.
        if let Err(e) = sfs::spread_subdirs(&dir.join("layers")) {
            tracing::debug!("snapshots/layers: cannot set the top-directory flag: {e}");
        }
        Ok(Overlay { dir })
    }

    /// The snapshots directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory holding the unpacked layer `diff_id`.
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join("layers").join(diff_id.hex()).join("fs")
    }

    /// Where the EROFS image of layer `diff_id` lives, when it is kept in that form.
    pub fn erofs_image(&self, diff_id: &Digest) -> PathBuf {
        self.dir
            .join("layers")
            .join(diff_id.hex())
            .join(EROFS_IMAGE)
    }

    /// Detach every mounted EROFS layer (they are remounted on demand by `mounts`).
    pub fn unmount_layers(&self) -> Result<(), SnapshotError> {
        let rd = fs::read_dir(self.dir.join("layers")).map_err(io_err("layers"))?;
        for e in rd {
            let fsdir = e.map_err(io_err("layers"))?.path().join("fs");
            if fsdir.is_dir() && sfs::is_mount_point(&fsdir).unwrap_or(false) {
                sfs::unmount(&fsdir, true).map_err(io_err("layers"))?;
            }
        }
        Ok(())
    }

    /// Detach mounted EROFS layers that no active snapshot or view uses any more.
    ///
    /// Each layer is checked and detached under its mount lock (exclusive), and the
    /// users are listed after taking it: a `mount_all` either finished (its snapshot
    /// is listed, or its overlay already holds the layer) or waits and mounts the
    /// layer again.
    pub fn unmount_unused_layers(&self) -> Result<(), SnapshotError> {
        let rd = fs::read_dir(self.dir.join("layers")).map_err(io_err("layers"))?;
        for e in rd {
            let dir = e.map_err(io_err("layers"))?.path();
            let fsdir = dir.join("fs");
            if !fsdir.is_dir() || !sfs::is_mount_point(&fsdir).unwrap_or(false) {
                continue;
            }
            let lock = super::erofs_mount_lock(&dir.join(EROFS_IMAGE))
                .and_then(|f| super::Flock::take(f, true))
                .map_err(io_err("layers"))?;
            if !self.used_lowers()?.contains(&fsdir) && sfs::is_mount_point(&fsdir).unwrap_or(false)
            {
                sfs::unmount(&fsdir, true).map_err(io_err("layers"))?;
            }
            drop(lock);
        }
        Ok(())
    }

    /// The layer directories active snapshots and views use.
    fn used_lowers(&self) -> Result<std::collections::HashSet<PathBuf>, SnapshotError> {
        let mut used = std::collections::HashSet::new();
        for info in self.list()? {
            if info.kind != Kind::Committed {
                if let Some(p) = &info.parent {
                    used.extend(self.lowers(p)?);
                }
            }
        }
        Ok(used)
    }

    /// The dedup pool directory.
    pub fn pool_dir(&self) -> PathBuf {
        self.dir.join("pool")
    }

    /// Where an active snapshot or view gets mounted by `imgctl mount`.
    pub fn merged_dir(&self, key: &str) -> PathBuf {
        self.dir.join("active").join(key).join("merged")
    }

    /// The upper directory of an active snapshot.
    pub fn upper_dir(&self, key: &str) -> PathBuf {
        self.dir.join("active").join(key).join("upper")
    }

    /// The key of the active snapshot whose merged dir is `path`, if any.
    pub fn key_for_merged(&self, path: &Path) -> Option<String> {
        let path = fs::canonicalize(path).ok()?;
        let active = fs::canonicalize(self.dir.join("active")).ok()?;
        let rest = path.strip_prefix(&active).ok()?;
        let mut it = rest.components();
        let key = it.next()?.as_os_str().to_str()?.to_string();
        (it.next()?.as_os_str() == "merged" && it.next().is_none()).then_some(key)
    }

    pub(crate) fn lock(&self) -> Result<Lock, SnapshotError> {
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(".lock"))
            .map_err(io_err("lock"))?;
        rustix::fs::flock(f.as_fd(), rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io_err("lock")(io::Error::from_raw_os_error(e.raw_os_error())))?;
        Ok(Lock(f))
    }

    fn chain_path(&self, chain: &Digest) -> PathBuf {
        self.dir
            .join("chains")
            .join(format!("{}.json", chain.hex()))
    }

    fn active_meta(&self, key: &str) -> PathBuf {
        self.dir.join("active").join(format!("{key}.json"))
    }

    fn read_info(&self, path: &Path, key: &str) -> Result<Option<Info>, SnapshotError> {
        match fs::read(path) {
            Ok(b) => {
                serde_json::from_slice(&b)
                    .map(Some)
                    .map_err(|source| SnapshotError::Metadata {
                        path: path.to_path_buf(),
                        source,
                    })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(key)(e)),
        }
    }

    fn write_info(&self, path: &Path, info: &Info) -> Result<(), SnapshotError> {
        let data = serde_json::to_vec_pretty(info).map_err(|source| SnapshotError::Metadata {
            path: path.to_path_buf(),
            source,
        })?;
        write_atomic(path, &data).map_err(io_err(&info.key))
    }

    /// The lower directories of `chain`, top-most first.
    pub fn lowers(&self, chain: &Digest) -> Result<Vec<PathBuf>, SnapshotError> {
        let mut out = Vec::new();
        let mut cur = Some(chain.clone());
        while let Some(c) = cur {
            let info = self
                .read_info(&self.chain_path(&c), &c.to_string())?
                .ok_or_else(|| SnapshotError::NotFound { key: c.to_string() })?;
            let diff = info
                .diff_id
                .ok_or_else(|| SnapshotError::NotFound { key: c.to_string() })?;
            out.push(self.layer_dir(&diff));
            if out.len() > 10_000 {
                return Err(io_err(&c.to_string())(io::Error::other("chain loop")));
            }
            cur = info.parent;
        }
        Ok(out)
    }

    /// [`Snapshotter::prepare`] for a snapshot that does not outlive its
    /// process's use of it (a `run --rm` container): its metadata is renamed into
    /// place without fsync. A crash of the process still leaves it complete (the
    /// page cache is the kernel's); only a power loss may lose it, and with it
    /// the container it belonged to.
    pub fn prepare_volatile(
        &self,
        key: &str,
        parent: Option<&Digest>,
    ) -> Result<Vec<Mount>, SnapshotError> {
        self.new_active_with(key, parent, Kind::Active, false)
    }

    fn new_active(
        &self,
        key: &str,
        parent: Option<&Digest>,
        kind: Kind,
    ) -> Result<Vec<Mount>, SnapshotError> {
        self.new_active_with(key, parent, kind, true)
    }

    fn new_active_with(
        &self,
        key: &str,
        parent: Option<&Digest>,
        kind: Kind,
        durable: bool,
    ) -> Result<Vec<Mount>, SnapshotError> {
        if !valid_key(key) {
            return Err(SnapshotError::InvalidKey {
                key: key.to_string(),
            });
        }
        let _l = self.lock()?;
        if let Some(p) = parent {
            if !self.chain_path(p).exists() {
                return Err(SnapshotError::NotFound { key: p.to_string() });
            }
        }
        let meta = self.active_meta(key);
        if meta.exists() {
            return Err(SnapshotError::AlreadyExists {
                key: key.to_string(),
            });
        }
        let base = self.dir.join("active").join(key);
        for sub in ["upper", "work", "merged"] {
            if kind == Kind::View && sub != "merged" {
                continue;
            }
            fs::create_dir_all(base.join(sub)).map_err(io_err(key))?;
        }
        if kind == Kind::Active {
            // The upper dir's root is the container's `/`: give it the usual mode.
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(base.join("upper"), fs::Permissions::from_mode(0o755))
                .map_err(io_err(key))?;
        }
        let info = Info {
            key: key.to_string(),
            kind,
            parent: parent.cloned(),
            diff_id: None,
        };
        if durable {
            self.write_info(&meta, &info)?;
        } else {
            let data =
                serde_json::to_vec_pretty(&info).map_err(|source| SnapshotError::Metadata {
                    path: meta.clone(),
                    source,
                })?;
            crate::store::write_atomic_volatile(&meta, &data, 0o644).map_err(io_err(key))?;
        }
        drop(_l);
        if let Some(p) = parent {
            super::gc::touch_layers(&self.lowers(p)?);
        }
        self.mounts(key)
    }

    /// Remove leftovers of interrupted work (temporary layer directories).
    /// Only directories of processes that no longer run are touched, so a concurrent
    /// unpack in another process keeps its work (SECURITY-TESTS C31: a killed unpack
    /// is never visible as committed, and its leftovers go away).
    pub fn cleanup(&self) -> Result<(), SnapshotError> {
        let layers = self.dir.join("layers");
        let fd = sfs::open_dir_path(&layers).map_err(io_err("layers"))?;
        sfs::clear_dir(fd.as_fd(), |n| {
            let Some(rest) = n.strip_prefix(b".tmp-") else {
                return false;
            };
            // .tmp-<short digest>-<pid>-<seq>
            let pid = std::str::from_utf8(rest)
                .ok()
                .and_then(|r| r.split('-').nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            match pid {
                Some(pid) => !Path::new(&format!("/proc/{pid}")).exists(),
                None => true,
            }
        })
        .map_err(io_err("layers"))
    }

    fn remove_layer_if_unused(&self, diff_id: &Digest) -> Result<(), SnapshotError> {
        for info in self.list()? {
            if info.kind == Kind::Committed && info.diff_id.as_ref() == Some(diff_id) {
                return Ok(());
            }
        }
        let fsdir = self.layer_dir(diff_id);
        if fsdir.is_dir() && sfs::is_mount_point(&fsdir).unwrap_or(false) {
            sfs::unmount(&fsdir, true).map_err(io_err(&diff_id.to_string()))?;
        }
        let layers = sfs::open_dir_path(&self.dir.join("layers")).map_err(io_err("layers"))?;
        sfs::remove_all_at(layers.as_fd(), diff_id.hex().as_bytes())
            .map_err(io_err(&diff_id.to_string()))
    }
}

/// Write snapshot metadata through the store's one atomic-write helper (temp,
/// fsync, rename, fsync dir).
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    crate::store::write_atomic(path, data, 0o644)
}

impl Snapshotter for Overlay {
    fn ensure_layer(&self, diff_id: &Digest, fill: &mut Fill<'_>) -> Result<bool, SnapshotError> {
        let key = diff_id.to_string();
        let dest = self.dir.join("layers").join(diff_id.hex());
        if dest.join("fs").is_dir() {
            return Ok(false);
        }
        let tmp = self.dir.join("layers").join(format!(
            ".tmp-{}-{}-{}",
            diff_id.short(),
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let fsdir = tmp.join("fs");
        let discard = |tmp: &Path| {
            if let Ok(fd) = sfs::open_dir_path(&self.dir.join("layers")) {
                let name = tmp
                    .file_name()
                    .map(|n| n.as_encoded_bytes().to_vec())
                    .unwrap_or_default();
                let _ = sfs::remove_all_at(fd.as_fd(), &name);
            }
        };
        fs::create_dir_all(&fsdir).map_err(io_err(&key))?;
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&fsdir, fs::Permissions::from_mode(0o755)).map_err(io_err(&key))?;
        }
        if let Err(source) = fill(&fsdir) {
            discard(&tmp);
            return Err(SnapshotError::Fill {
                diff_id: diff_id.clone(),
                source,
            });
        }
        // Durable before it is visible (see `durable`).
        let sealing = std::time::Instant::now();
        if let Err(e) = super::durable::seal(&tmp) {
            discard(&tmp);
            return Err(io_err(&key)(e));
        }
        tracing::debug!(layer = %diff_id, took_ms = sealing.elapsed().as_millis() as u64, "layer sealed (syncfs)");
        match fs::rename(&tmp, &dest) {
            Ok(()) => {
                super::durable::published(&self.dir.join("layers")).map_err(io_err(&key))?;
                Ok(true)
            }
            // Another process published the same layer first: keep theirs.
            Err(_) if dest.join("fs").is_dir() => {
                discard(&tmp);
                Ok(true)
            }
            Err(e) => {
                discard(&tmp);
                Err(io_err(&key)(e))
            }
        }
    }

    fn commit_chain(
        &self,
        parent: Option<&Digest>,
        diff_id: &Digest,
    ) -> Result<Digest, SnapshotError> {
        let mut ids = Vec::new();
        if let Some(p) = parent {
            // The chain ID of parent + layer per the image spec: sha256("<parent> <diff>").
            ids.push(p.clone());
        }
        ids.push(diff_id.clone());
        let chain = match parent {
            Some(_) => chain_id(&ids).unwrap_or_else(|| diff_id.clone()),
            None => diff_id.clone(),
        };
        if !self.layer_dir(diff_id).is_dir() {
            return Err(SnapshotError::NotFound {
                key: diff_id.to_string(),
            });
        }
        let _l = self.lock()?;
        if let Some(p) = parent {
            if !self.chain_path(p).exists() {
                return Err(SnapshotError::NotFound { key: p.to_string() });
            }
        }
        let path = self.chain_path(&chain);
        if !path.exists() {
            self.write_info(
                &path,
                &Info {
                    key: chain.to_string(),
                    kind: Kind::Committed,
                    parent: parent.cloned(),
                    diff_id: Some(diff_id.clone()),
                },
            )?;
        }
        Ok(chain)
    }

    fn prepare(&self, key: &str, parent: Option<&Digest>) -> Result<Vec<Mount>, SnapshotError> {
        self.new_active(key, parent, Kind::Active)
    }

    fn view(&self, key: &str, parent: Option<&Digest>) -> Result<Vec<Mount>, SnapshotError> {
        self.new_active(key, parent, Kind::View)
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>, SnapshotError> {
        let info = self
            .read_info(&self.active_meta(key), key)?
            .ok_or_else(|| SnapshotError::NotFound {
                key: key.to_string(),
            })?;
        let lowers = match &info.parent {
            Some(p) => self.lowers(p)?,
            None => vec![self.dir.join("empty")],
        };
        let base = self.dir.join("active").join(key);
        // Layers kept as EROFS images are mounted on their layer directory first.
        let mut out: Vec<Mount> = lowers
            .iter()
            .filter_map(|l| {
                let image = l.parent()?.join(EROFS_IMAGE);
                image.is_file().then(|| Mount::Erofs {
                    image,
                    target: l.clone(),
                })
            })
            .collect();
        out.extend(match info.kind {
            Kind::View if lowers.len() == 1 => vec![Mount::Bind {
                source: lowers[0].clone(),
                readonly: true,
            }],
            Kind::View => vec![Mount::Overlay {
                lowers,
                upper: None,
                work: None,
            }],
            _ => vec![Mount::Overlay {
                lowers,
                upper: Some(base.join("upper")),
                work: Some(base.join("work")),
            }],
        });
        Ok(out)
    }

    fn commit(&self, key: &str, diff_id: &Digest) -> Result<Digest, SnapshotError> {
        let info = self
            .read_info(&self.active_meta(key), key)?
            .filter(|i| i.kind == Kind::Active)
            .ok_or_else(|| SnapshotError::NotFound {
                key: key.to_string(),
            })?;
        let base = self.dir.join("active").join(key);
        let upper = base.join("upper");
        let mut moved = Some(upper);
        self.ensure_layer(diff_id, &mut |fsdir: &Path| {
            let src = moved.take().ok_or("upper dir already moved")?;
            fs::remove_dir(fsdir)?;
            fs::rename(&src, fsdir)?;
            Ok(())
        })?;
        let chain = self.commit_chain(info.parent.as_ref(), diff_id)?;
        self.remove(key)?;
        Ok(chain)
    }

    fn remove(&self, key: &str) -> Result<(), SnapshotError> {
        if let Ok(chain) = key.parse::<Digest>() {
            let _l = self.lock()?;
            let path = self.chain_path(&chain);
            let info = self
                .read_info(&path, key)?
                .ok_or_else(|| SnapshotError::NotFound {
                    key: key.to_string(),
                })?;
            let refs = self.refs(&chain)?;
            if refs > 0 {
                return Err(SnapshotError::InUse {
                    key: key.to_string(),
                    refs,
                });
            }
            fs::remove_file(&path).map_err(io_err(key))?;
            if let Some(d) = info.diff_id {
                self.remove_layer_if_unused(&d)?;
            }
            return Ok(());
        }
        if !valid_key(key) {
            return Err(SnapshotError::InvalidKey {
                key: key.to_string(),
            });
        }
        let _l = self.lock()?;
        let meta = self.active_meta(key);
        // Without its metadata, the directory of a `prepare` that was killed half
        // way is removed all the same.
        let partial = !meta.exists() && self.dir.join("active").join(key).exists();
        if !meta.exists() && !partial {
            return Err(SnapshotError::NotFound {
                key: key.to_string(),
            });
        }
        let merged = self.merged_dir(key);
        // Still mounted (e.g. a crashed user): detach it before deleting below it.
        let _ = sfs::unmount(&merged, true);
        let active = sfs::open_dir_path(&self.dir.join("active")).map_err(io_err(key))?;
        sfs::remove_all_at(active.as_fd(), key.as_bytes()).map_err(io_err(key))?;
        // Temporary files of a metadata write that was cut short.
        let tmp = format!(".{key}.json.tmp.");
        for e in fs::read_dir(self.dir.join("active"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.file_name().to_string_lossy().starts_with(&tmp) {
                let _ = fs::remove_file(e.path());
            }
        }
        match fs::remove_file(&meta) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && partial => Ok(()),
            r => r.map_err(io_err(key)),
        }
    }

    fn stat(&self, key: &str) -> Result<Option<Info>, SnapshotError> {
        if let Ok(chain) = key.parse::<Digest>() {
            return self.read_info(&self.chain_path(&chain), key);
        }
        if !valid_key(key) {
            return Err(SnapshotError::InvalidKey {
                key: key.to_string(),
            });
        }
        self.read_info(&self.active_meta(key), key)
    }

    fn refs(&self, chain: &Digest) -> Result<usize, SnapshotError> {
        Ok(self
            .list()?
            .iter()
            .filter(|i| i.parent.as_ref() == Some(chain))
            .count())
    }

    fn list(&self) -> Result<Vec<Info>, SnapshotError> {
        let mut out = Vec::new();
        for sub in ["chains", "active"] {
            let rd = fs::read_dir(self.dir.join(sub)).map_err(io_err(sub))?;
            for e in rd {
                let e = e.map_err(io_err(sub))?;
                let p = e.path();
                if p.extension().map(|x| x == "json").unwrap_or(false) {
                    if let Some(i) = self.read_info(&p, sub)? {
                        out.push(i);
                    }
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(s: &str) -> Digest {
        Digest::of(s.as_bytes())
    }

    /// issue 10: every store's `layers/` spreads new layer directories over quiet
    /// block groups where the file system can (ext4), also for a store made before.
    #[test]
    fn open_sets_the_top_directory_flag_on_layers() {
        let t = tempfile::tempdir_in("/var/tmp").unwrap();
        let on_ext4 = rustix::fs::statfs(t.path()).unwrap().f_type as i64 == 0xEF53;
        let flag = || {
            let fd = std::fs::File::open(t.path().join("snapshots/layers")).unwrap();
            rustix::fs::ioctl_getflags(&fd)
                .unwrap()
                .contains(rustix::fs::IFlags::TOPDIR)
        };
        Overlay::open(t.path()).unwrap();
        assert_eq!(flag(), on_ext4);
        if on_ext4 {
            let fd = std::fs::File::open(t.path().join("snapshots/layers")).unwrap();
            let flags = rustix::fs::ioctl_getflags(&fd).unwrap() - rustix::fs::IFlags::TOPDIR;
            rustix::fs::ioctl_setflags(&fd, flags).unwrap();
            assert!(!flag());
            Overlay::open(t.path()).unwrap();
            assert!(flag(), "an existing store gets the flag on open");
        }
    }

    #[test]
    fn chains_refcounts_and_removal() {
        let t = tempfile::tempdir().unwrap();
        let o = Overlay::open(t.path()).unwrap();
        let (a, b) = (digest("a"), digest("b"));
        let mut calls = 0;
        for d in [&a, &b, &a] {
            o.ensure_layer(d, &mut |dir: &Path| {
                calls += 1;
                fs::write(dir.join("f"), b"x")?;
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(calls, 2, "a shared diff ID is filled once");
        let ca = o.commit_chain(None, &a).unwrap();
        assert_eq!(ca, a);
        let cb = o.commit_chain(Some(&ca), &b).unwrap();
        assert_eq!(cb, chain_id(&[a.clone(), b.clone()]).unwrap());
        assert_eq!(
            o.lowers(&cb).unwrap(),
            vec![o.layer_dir(&b), o.layer_dir(&a)]
        );
        assert_eq!(o.refs(&ca).unwrap(), 1);
        let m = o.prepare("c1", Some(&cb)).unwrap();
        assert!(
            matches!(&m[0], Mount::Overlay { lowers, upper: Some(_), .. } if lowers.len() == 2)
        );
        assert!(matches!(
            o.remove(&cb.to_string()),
            Err(SnapshotError::InUse { refs: 1, .. })
        ));
        assert!(matches!(
            o.prepare("c1", Some(&cb)),
            Err(SnapshotError::AlreadyExists { .. })
        ));
        assert!(matches!(
            o.prepare("../x", None),
            Err(SnapshotError::InvalidKey { .. })
        ));
        o.remove("c1").unwrap();
        o.remove(&cb.to_string()).unwrap();
        assert!(!o.layer_dir(&b).exists());
        o.remove(&ca.to_string()).unwrap();
        assert!(o.list().unwrap().is_empty());
    }

    #[test]
    fn failed_fill_publishes_nothing() {
        let t = tempfile::tempdir().unwrap();
        let o = Overlay::open(t.path()).unwrap();
        let d = digest("x");
        let r = o.ensure_layer(&d, &mut |dir: &Path| {
            fs::write(dir.join("half"), b"x")?;
            Err("broken layer".into())
        });
        assert!(matches!(r, Err(SnapshotError::Fill { .. })));
        assert!(!o.layer_dir(&d).exists());
        assert_eq!(fs::read_dir(o.dir().join("layers")).unwrap().count(), 0);
    }

    #[test]
    fn cleanup_removes_only_dead_processes_leftovers() {
        let t = tempfile::tempdir().unwrap();
        let o = Overlay::open(t.path()).unwrap();
        let layers = o.dir().join("layers");
        let dead = layers.join(".tmp-abcdef012345-4000000000-0");
        let live = layers.join(format!(".tmp-abcdef012345-{}-7", std::process::id()));
        fs::create_dir_all(dead.join("fs/x")).unwrap();
        fs::create_dir_all(live.join("fs")).unwrap();
        o.cleanup().unwrap();
        assert!(!dead.exists());
        assert!(live.exists());
    }
}
