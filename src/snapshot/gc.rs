//! Garbage collection of snapshots: committed chains no root reaches, unpacked layers
//! no kept chain uses, dedup-pool files nothing else links, temporary layer
//! directories of dead processes and active snapshots whose owner is gone.
//!
//! The caller names the roots (the chain IDs of the images it keeps) and says which
//! active snapshots are still owned (`live`); everything a root or a live active
//! snapshot reaches through parent links is kept. The caller must also make sure no
//! unpack or prepare runs meanwhile (the store's GC lock, held exclusively while
//! every pull, build and mount holds a shared lease), because a layer a pull just
//! published is not yet reachable from any root.
//!
//! Bytes are counted per inode: a layer's own bytes are the files only it links (and
//! its EROFS image); a pooled file is freed, with its bytes, when the last layer
//! linking it goes. The same computation answers a dry run, changing nothing.
//!
//! With a storage limit (`keep_storage`) unreferenced layers are removed least
//! recently used first (the mtime of `layers/<diff-id>`, set by [`touch_layers`]
//! whenever a snapshot on them is prepared) only until the store fits.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::overlay::EROFS_IMAGE;
use super::{Info, Kind, Overlay, SnapshotError, Snapshotter};
use crate::oci::Digest;
use crate::sys::fs as sfs;

/// What a collection may remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ItemKind {
    /// A writable snapshot or view whose owner is gone.
    Active,
    /// A committed chain's metadata.
    Chain,
    /// An unpacked layer (directory or EROFS image).
    Layer,
    /// A dedup-pool file no layer links any more.
    Pool,
    /// A temporary layer directory of a process that no longer runs.
    Temp,
}

/// One thing removed (or, in a dry run, that would be).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Item {
    pub kind: ItemKind,
    /// Snapshot key, chain ID, diff ID or pool key.
    pub id: String,
    /// Bytes freed by removing it.
    pub bytes: u64,
}

/// Options of [`collect`].
#[derive(Debug, Clone, Copy, Default)]
pub struct GcOptions {
    /// Only say what would go.
    pub dry_run: bool,
    /// Keep unreferenced layers (least recently used go first) while the store,
    /// `other_bytes` included, stays within this many bytes.
    pub keep_storage: Option<u64>,
    /// Bytes of the store outside `snapshots/` (blobs left after their prune).
    pub other_bytes: u64,
}

/// What a collection removed, in removal order.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    pub items: Vec<Item>,
}

impl GcReport {
    /// Total bytes freed.
    pub fn bytes(&self) -> u64 {
        self.items.iter().map(|i| i.bytes).sum()
    }

    /// Items and bytes of one kind.
    pub fn count(&self, kind: ItemKind) -> (usize, u64) {
        self.items
            .iter()
            .filter(|i| i.kind == kind)
            .fold((0, 0), |(n, b), i| (n + 1, b + i.bytes))
    }
}

fn io_err(key: &str) -> impl Fn(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        key: key.to_string(),
        source,
    }
}

/// Record that the layers below `lowers` (layer `fs` dirs) were just used: the mtime
/// of each `layers/<diff-id>` directory is what `keep_storage` orders by. Best effort.
pub fn touch_layers(lowers: &[PathBuf]) {
    let now = SystemTime::now();
    for l in lowers {
        if let Some(dir) = l.parent() {
            if let Ok(f) = fs::File::open(dir) {
                let _ = f.set_modified(now);
            }
        }
    }
}

/// Per-inode link accounting over the files of the layers and the pool.
#[derive(Default)]
struct Links {
    /// (dev, ino) -> (links left, size).
    left: HashMap<(u64, u64), (u64, u64)>,
    /// Pool files by inode.
    pool: HashMap<(u64, u64), PathBuf>,
    /// Inodes whose bytes a removed layer already reported.
    counted: HashSet<(u64, u64)>,
}

impl Links {
    fn note(&mut self, md: &fs::Metadata) -> (u64, u64) {
        let k = (md.dev(), md.ino());
        self.left.entry(k).or_insert((md.nlink(), md.len()));
        k
    }

    /// Drop one link of `k`; the bytes freed when that was the last link besides
    /// the pool's (the pool entry goes then too) or the very last.
    fn unlink(&mut self, k: (u64, u64)) -> u64 {
        let Some(e) = self.left.get_mut(&k) else {
            return 0;
        };
        e.0 = e.0.saturating_sub(1);
        let pooled = self.pool.contains_key(&k);
        if (e.0 == 0 || (e.0 == 1 && pooled)) && self.counted.insert(k) {
            e.1
        } else {
            0
        }
    }
}

/// A layer directory with what removing it frees.
struct LayerEntry {
    diff_id: Option<Digest>,
    name: String,
    /// Inodes of its regular files, one entry per link it holds.
    inodes: Vec<(u64, u64)>,
    /// Bytes it holds that no other inode accounting covers (an EROFS image).
    image_bytes: u64,
    used: SystemTime,
}

fn walk_files(dir: &Path, links: &mut Links, out: &mut Vec<(u64, u64)>) -> io::Result<()> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = match fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for e in rd {
            let e = e?;
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                let md = e.metadata()?;
                out.push(links.note(&md));
            }
        }
    }
    Ok(())
}

fn du(path: &Path) -> u64 {
    let mut total = 0;
    let mut seen = HashSet::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(md) = fs::symlink_metadata(&p) else {
            continue;
        };
        if md.is_dir() {
            if let Ok(rd) = fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else if md.is_file() && seen.insert((md.dev(), md.ino())) {
            total += md.len();
        }
    }
    total
}

fn pid_of_tmp(name: &str) -> Option<u32> {
    // .tmp-<short digest>-<pid>-<seq>
    name.strip_prefix(".tmp-")?.split('-').nth(1)?.parse().ok()
}

/// Collect what `roots` (chain IDs to keep) and the live active snapshots do not
/// reach. `live(key)` says whether an active snapshot or view still has an owner.
pub fn collect(
    snaps: &Overlay,
    roots: &[Digest],
    live: &dyn Fn(&str) -> bool,
    opts: &GcOptions,
) -> Result<GcReport, SnapshotError> {
    let dir = snaps.dir().to_path_buf();
    let mut report = GcReport::default();

    // 1. Active snapshots and views of owners that are gone, and directories of a
    //    `prepare` killed before its metadata was written.
    let infos = snaps.list()?;
    let mut kept_active: Vec<Info> = Vec::new();
    let mut known: HashSet<String> = HashSet::new();
    for info in infos.iter().filter(|i| i.kind != Kind::Committed) {
        known.insert(info.key.clone());
        if live(&info.key) {
            kept_active.push(info.clone());
            continue;
        }
        let bytes = du(&dir.join("active").join(&info.key));
        if !opts.dry_run {
            let _ = sfs::unmount(&snaps.merged_dir(&info.key), true);
            snaps.remove(&info.key)?;
        }
        report.items.push(Item {
            kind: ItemKind::Active,
            id: info.key.clone(),
            bytes,
        });
    }
    for e in fs::read_dir(dir.join("active")).map_err(io_err("active"))? {
        let e = e.map_err(io_err("active"))?;
        let Some(name) = e.file_name().to_str().map(String::from) else {
            continue;
        };
        if name.starts_with('.') || name.ends_with(".json") || known.contains(&name) {
            continue;
        }
        if live(&name) {
            continue;
        }
        let bytes = du(&e.path());
        if !opts.dry_run {
            let _ = sfs::unmount(&snaps.merged_dir(&name), true);
            // `remove` deletes a directory without metadata as well.
            snaps.remove(&name)?;
        }
        report.items.push(Item {
            kind: ItemKind::Active,
            id: name,
            bytes,
        });
    }

    // 2. Chains: keep what roots and live active snapshots reach.
    let chains: HashMap<Digest, Info> = infos
        .into_iter()
        .filter(|i| i.kind == Kind::Committed)
        .filter_map(|i| i.key.parse::<Digest>().ok().map(|d| (d, i)))
        .collect();
    let mut keep: HashSet<Digest> = HashSet::new();
    let mut todo: Vec<Digest> = roots.to_vec();
    todo.extend(kept_active.iter().filter_map(|i| i.parent.clone()));
    while let Some(c) = todo.pop() {
        if !keep.insert(c.clone()) {
            continue;
        }
        if let Some(p) = chains.get(&c).and_then(|i| i.parent.clone()) {
            todo.push(p);
        }
    }
    let keep_layers: HashSet<String> = keep
        .iter()
        .filter_map(|c| chains.get(c))
        .filter_map(|i| i.diff_id.as_ref().map(|d| d.hex().to_string()))
        .collect();
    let _lock = snaps.lock()?;
    let mut dead_chains: Vec<&Digest> = chains.keys().filter(|c| !keep.contains(*c)).collect();
    dead_chains.sort();
    for c in dead_chains {
        let path = dir.join("chains").join(format!("{}.json", c.hex()));
        let bytes = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if !opts.dry_run {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&c.to_string())(e)),
            }
        }
        report.items.push(Item {
            kind: ItemKind::Chain,
            id: c.to_string(),
            bytes,
        });
    }

    // 3. Layers no kept chain uses, and leftovers of dead unpacks.
    let layers_dir = dir.join("layers");
    let mut links = Links::default();
    let pool_dir = snaps.pool_dir();
    for shard in fs::read_dir(&pool_dir).map_err(io_err("pool"))?.flatten() {
        for e in fs::read_dir(shard.path()).into_iter().flatten().flatten() {
            if let Ok(md) = e.metadata() {
                if md.is_file() {
                    let k = links.note(&md);
                    links.pool.insert(k, e.path());
                }
            }
        }
    }
    let mut candidates: Vec<LayerEntry> = Vec::new();
    let mut kept_bytes_inodes: Vec<(u64, u64)> = Vec::new();
    let mut kept_images = 0u64;
    for e in fs::read_dir(&layers_dir).map_err(io_err("layers"))? {
        let e = e.map_err(io_err("layers"))?;
        let Some(name) = e.file_name().to_str().map(String::from) else {
            continue;
        };
        if let Some(rest) = name.strip_prefix('.') {
            let dead = match pid_of_tmp(&name) {
                Some(pid) => !Path::new(&format!("/proc/{pid}")).exists(),
                None => rest.starts_with("tmp-") || rest.starts_with("gc-"),
            };
            if dead {
                let bytes = du(&e.path());
                if !opts.dry_run {
                    let fd = sfs::open_dir_path(&layers_dir).map_err(io_err("layers"))?;
                    sfs::remove_all_at(fd.as_fd(), name.as_bytes()).map_err(io_err(&name))?;
                }
                report.items.push(Item {
                    kind: ItemKind::Temp,
                    id: name,
                    bytes,
                });
            }
            continue;
        }
        let image = e.path().join(EROFS_IMAGE);
        let image_bytes = fs::symlink_metadata(&image)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .unwrap_or(0);
        let fsdir = e.path().join("fs");
        let mounted = sfs::is_mount_point(&fsdir).unwrap_or(false);
        let mut inodes = Vec::new();
        if !mounted {
            walk_files(&fsdir, &mut links, &mut inodes).map_err(io_err(&name))?;
        }
        if keep_layers.contains(&name) {
            kept_bytes_inodes.extend(inodes);
            kept_images += image_bytes;
            continue;
        }
        let used = e
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        candidates.push(LayerEntry {
            diff_id: Digest::from_hex(&name).ok(),
            name,
            inodes,
            image_bytes,
            used,
        });
    }
    // Least recently used first (the order `keep_storage` removes in).
    candidates.sort_by(|a, b| a.used.cmp(&b.used).then(a.name.cmp(&b.name)));
    let mut total = match opts.keep_storage {
        Some(_) => {
            let mut seen = HashSet::new();
            let mut t = opts.other_bytes + kept_images;
            for k in kept_bytes_inodes
                .iter()
                .chain(candidates.iter().flat_map(|c| c.inodes.iter()))
            {
                if seen.insert(*k) {
                    t += links.left.get(k).map(|e| e.1).unwrap_or(0);
                }
            }
            t + candidates.iter().map(|c| c.image_bytes).sum::<u64>()
        }
        None => 0,
    };
    let layer_fd = sfs::open_dir_path(&layers_dir).map_err(io_err("layers"))?;
    for c in candidates {
        if let Some(limit) = opts.keep_storage {
            if total <= limit {
                break;
            }
        }
        let mut bytes = c.image_bytes;
        for k in &c.inodes {
            bytes += links.unlink(*k);
        }
        total = total.saturating_sub(bytes);
        if !opts.dry_run {
            let fsdir = layers_dir.join(&c.name).join("fs");
            if sfs::is_mount_point(&fsdir).unwrap_or(false) {
                // Under its mount lock, as `Overlay::unmount_unused_layers` does.
                let _m = super::erofs_mount_lock(&layers_dir.join(&c.name).join(EROFS_IMAGE))
                    .and_then(|f| super::Flock::take(f, true))
                    .map_err(io_err(&c.name))?;
                super::detach_all(&fsdir).map_err(io_err(&c.name))?;
            }
            // Renamed first, so a crash half-way leaves a temporary directory (removed
            // next time), never a half-deleted layer under its real name.
            let gone = format!(".gc-{}-{}", c.name, std::process::id());
            rustix::fs::renameat(&layer_fd, c.name.as_str(), &layer_fd, gone.as_str())
                .map_err(|e| io_err(&c.name)(e.into()))?;
            sfs::remove_all_at(layer_fd.as_fd(), gone.as_bytes()).map_err(io_err(&c.name))?;
        }
        report.items.push(Item {
            kind: ItemKind::Layer,
            id: c
                .diff_id
                .map(|d| d.to_string())
                .unwrap_or_else(|| c.name.clone()),
            bytes,
        });
    }

    // 4. Pool files only the pool links (now, or once the layers above are gone).
    let mut pool: Vec<(&(u64, u64), &PathBuf)> = links.pool.iter().collect();
    pool.sort_by(|a, b| a.1.cmp(b.1));
    for (k, path) in pool {
        let Some(&(left, size)) = links.left.get(k) else {
            continue;
        };
        if left > 1 {
            continue;
        }
        if !opts.dry_run {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("pool")(e)),
            }
        }
        report.items.push(Item {
            kind: ItemKind::Pool,
            id: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            // Already counted with the layer whose removal orphaned it.
            bytes: if links.counted.contains(k) { 0 } else { size },
        });
    }
    if !opts.dry_run {
        for d in ["layers", "chains", "active"] {
            let p = dir.join(d);
            crate::store::fsutil::sync_dir(&p).map_err(io_err(d))?;
        }
    }
    Ok(report)
}

/// Bytes a collection would free, per kind, without changing anything.
pub fn reclaimable(
    snaps: &Overlay,
    roots: &[Digest],
    live: &dyn Fn(&str) -> bool,
) -> Result<GcReport, SnapshotError> {
    collect(
        snaps,
        roots,
        live,
        &GcOptions {
            dry_run: true,
            ..GcOptions::default()
        },
    )
}

/// Files in the dedup pool of the store at `store_root` and the bytes of their
/// inodes (a pooled file's bytes are shared with the layers linking it).
pub fn pool_usage(store_root: &Path) -> Result<(u64, u64), SnapshotError> {
    let pool = store_root.join("snapshots").join("pool");
    let rd = match fs::read_dir(&pool) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(io_err("pool")(e)),
    };
    let (mut n, mut bytes) = (0, 0);
    for shard in rd.flatten() {
        for e in fs::read_dir(shard.path()).into_iter().flatten().flatten() {
            if let Ok(md) = e.metadata() {
                if md.is_file() {
                    n += 1;
                    bytes += md.len();
                }
            }
        }
    }
    Ok((n, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::dedup::dedup_dir;

    fn layer(o: &Overlay, name: &str, files: &[(&str, &[u8])]) -> Digest {
        let d = Digest::of(name.as_bytes());
        o.ensure_layer(&d, &mut |dir: &Path| {
            for (p, c) in files {
                fs::write(dir.join(p), c)?;
                // Same metadata, so equal content shares one pooled inode.
                let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
                fs::File::options()
                    .write(true)
                    .open(dir.join(p))?
                    .set_modified(t)?;
            }
            dedup_dir(&o.pool_dir(), dir, 1)?;
            Ok(())
        })
        .unwrap();
        d
    }

    #[test]
    fn keeps_what_roots_and_live_snapshots_reach_and_a_dry_run_agrees() {
        let t = tempfile::tempdir().unwrap();
        let o = Overlay::open(t.path()).unwrap();
        let shared = vec![5u8; 3000];
        let a = layer(&o, "a", &[("x", &shared), ("only-a", &[1u8; 100])]);
        let b = layer(&o, "b", &[("x", &shared), ("only-b", &[2u8; 200])]);
        let c = layer(&o, "c", &[("only-c", &[3u8; 400])]);
        let ca = o.commit_chain(None, &a).unwrap();
        let cb = o.commit_chain(None, &b).unwrap();
        let cc = o.commit_chain(None, &c).unwrap();
        // c is only used by a live container's snapshot; b by nothing.
        o.prepare("ctr-live", Some(&cc)).unwrap();
        o.prepare("ctr-dead", Some(&cb)).unwrap();
        let live = |k: &str| k == "ctr-live";
        let (ia, ib) = (
            fs::metadata(o.layer_dir(&a).join("x")).unwrap(),
            fs::metadata(o.layer_dir(&b).join("x")).unwrap(),
        );
        assert_eq!(
            (ia.ino(), ia.nlink()),
            (ib.ino(), 3),
            "x is shared through the pool"
        );
        let dry = reclaimable(&o, std::slice::from_ref(&ca), &live).unwrap();
        assert!(o.layer_dir(&b).is_dir(), "a dry run removes nothing");
        let done = collect(&o, std::slice::from_ref(&ca), &live, &GcOptions::default()).unwrap();
        assert_eq!(dry, done);
        assert_eq!(done.count(ItemKind::Active), (1, 0));
        assert_eq!(done.count(ItemKind::Chain).0, 1);
        // b's own file goes with it; the shared file stays pooled for a.
        assert_eq!(done.count(ItemKind::Layer), (1, 200));
        // only-b's pool entry goes too; its bytes count with the layer.
        assert_eq!(done.count(ItemKind::Pool), (1, 0));
        assert!(!o.layer_dir(&b).exists() && o.layer_dir(&a).is_dir() && o.layer_dir(&c).is_dir());
        assert!(o.stat(&cb.to_string()).unwrap().is_none());
        assert!(o.stat(&cc.to_string()).unwrap().is_some());
        // Without roots, a's layer and the pooled file go: 100 + 3000 bytes.
        o.remove("ctr-live").unwrap();
        let done = collect(&o, &[], &live, &GcOptions::default()).unwrap();
        assert_eq!(done.count(ItemKind::Layer).0, 2);
        assert_eq!(
            done.bytes(),
            100 + 3000 + 400 + done.count(ItemKind::Chain).1
        );
        assert_eq!(pool_usage(t.path()).unwrap(), (0, 0));
    }

    #[test]
    fn keep_storage_removes_least_recently_used_first() {
        let t = tempfile::tempdir().unwrap();
        let o = Overlay::open(t.path()).unwrap();
        let old = layer(&o, "old", &[("f", &[1u8; 1000])]);
        let new = layer(&o, "new", &[("f", &[2u8; 1000])]);
        let past = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        fs::File::open(o.layer_dir(&old).parent().unwrap())
            .unwrap()
            .set_modified(past)
            .unwrap();
        touch_layers(&[o.layer_dir(&new)]);
        let opts = GcOptions {
            keep_storage: Some(1500),
            ..GcOptions::default()
        };
        let r = collect(&o, &[], &|_| true, &opts).unwrap();
        assert_eq!(r.count(ItemKind::Layer), (1, 1000));
        assert!(!o.layer_dir(&old).exists() && o.layer_dir(&new).is_dir());
    }
}
