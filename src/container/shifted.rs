//! Shifted rootfs copies for user namespaces (overlayfs cannot be idmapped, so a
//! container in a user namespace runs on a copy whose owners are shifted through
//! its id maps; see [`crate::sandbox::idshift`]).
//!
//! Where a copy lives and how long:
//! * an image's copy is shared, under `<root>/cache/userns/<key>/rootfs`, keyed by
//!   content and mapping: the image's chain ID plus the uid and gid maps. The
//!   same image with the same maps reuses it; a different image never does.
//!   Each container using it names the key in `<state dir>/userns-copy`;
//!   [`prune`] removes every copy no container directory names.
//! * a `--rootfs DIR` copy is not cached (nothing cheap tells that DIR changed):
//!   it is made in the container's state directory and goes with it.
//!
//! `locks/userns-copies.lock` orders the two: taking or making a copy and
//! recording its use hold it shared, `prune` holds it exclusively.

use std::fs::File;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

use super::{state, Error};
use crate::oci::Digest;
use crate::sandbox::idshift;

/// `(container id, host id, size)` ranges.
pub type IdMap = [(u32, u32, u32)];

/// The file in a container's state directory naming the shared copy it uses.
const USE_FILE: &str = "userns-copy";

/// Where the rootfs to shift comes from.
pub enum CopySource<'a> {
    /// A view of an image: the copy is shared by content (the image's chain ID;
    /// `None` for an image without layers).
    Image { chain_id: Option<&'a Digest> },
    /// A directory given as it is: copied for this container only.
    Dir,
}

fn cache_dir(root: &Path) -> PathBuf {
    root.join("cache").join("userns")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn lock(root: &Path, exclusive: bool) -> Result<File, Error> {
    let dir = root.join("locks");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let p = dir.join("userns-copies.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&p)
        .map_err(io(&p))?;
    if exclusive {
        f.lock().map_err(io(&p))?;
    } else {
        f.lock_shared().map_err(io(&p))?;
    }
    Ok(f)
}

/// The cache key of an image's copy: content (chain ID) and mapping.
pub fn key(chain_id: Option<&Digest>, uids: &IdMap, gids: &IdMap) -> String {
    let chain = chain_id.map(|d| d.to_string()).unwrap_or_default();
    hex::encode(sha2::Sha256::digest(format!(
        "image\n{chain}\n{uids:?}\n{gids:?}"
    )))
}

/// The shifted copy of `rootfs` for a container whose state directory is
/// `state_dir`: an image's shared copy (made when missing, its use recorded), or a
/// private copy of a directory. Returns the copy's path.
pub fn acquire(
    root: &Path,
    src: CopySource<'_>,
    rootfs: &Path,
    state_dir: &Path,
    uids: &IdMap,
    gids: &IdMap,
) -> Result<PathBuf, Error> {
    let chain_id = match src {
        CopySource::Dir => {
            let dst = state_dir.join("rootfs-shifted");
            if dst.exists() {
                std::fs::remove_dir_all(&dst).map_err(io(&dst))?;
            }
            idshift::shifted_copy(rootfs, &dst, uids, gids)?;
            return Ok(dst);
        }
        CopySource::Image { chain_id } => chain_id,
    };
    let _shared = lock(root, false)?;
    let k = key(chain_id, uids, gids);
    let dst = cache_dir(root).join(&k).join("rootfs");
    if !dst.is_dir() {
        idshift::shifted_copy(rootfs, &dst, uids, gids)?;
    }
    std::fs::create_dir_all(state_dir).map_err(io(state_dir))?;
    let use_file = state_dir.join(USE_FILE);
    std::fs::write(&use_file, &k).map_err(io(&use_file))?;
    Ok(dst)
}

/// What [`prune`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneCopies {
    /// Shared copies removed.
    pub removed: usize,
}

/// Remove every shared copy that no container (state directory under
/// `<root>/containers/`) uses. Waits for copies being taken or made.
pub fn prune(root: &Path) -> Result<PruneCopies, Error> {
    let cache = cache_dir(root);
    let mut report = PruneCopies::default();
    let entries = match std::fs::read_dir(&cache) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
        Err(e) => return Err(io(&cache)(e)),
    };
    let _exclusive = lock(root, true)?;
    let mut used = std::collections::HashSet::new();
    let containers = state::containers_dir(root);
    if let Ok(rd) = std::fs::read_dir(&containers) {
        for c in rd.flatten() {
            if let Ok(k) = std::fs::read_to_string(c.path().join(USE_FILE)) {
                used.insert(k.trim().to_string());
            }
        }
    }
    for e in entries {
        let e = e.map_err(io(&cache))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if used.contains(&name) {
            continue;
        }
        let p = e.path();
        std::fs::remove_dir_all(&p).map_err(io(&p))?;
        report.removed += 1;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: [(u32, u32, u32); 1] = [(0, 400_000, 65_536)];

    #[test]
    fn keyed_by_content_and_mapping() {
        let a: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let b: Digest = format!("sha256:{}", "b".repeat(64)).parse().unwrap();
        let other = [(0, 500_000, 65_536)];
        assert_eq!(key(Some(&a), &MAP, &MAP), key(Some(&a), &MAP, &MAP));
        assert_ne!(key(Some(&a), &MAP, &MAP), key(Some(&b), &MAP, &MAP));
        assert_ne!(key(Some(&a), &MAP, &MAP), key(Some(&a), &other, &MAP));
        assert_ne!(key(Some(&a), &MAP, &MAP), key(Some(&a), &MAP, &other));
        assert_ne!(key(None, &MAP, &MAP), key(Some(&a), &MAP, &MAP));
    }

    /// Copies used by a container stay; the rest go. (Ownership needs root.)
    #[test]
    fn prune_keeps_what_containers_use() {
        if !nix::unistd::geteuid().is_root() {
            return; // shifted_copy chowns; the integration test covers this as root.
        }
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let src = root.join("src");
        std::fs::create_dir_all(src.join("etc")).unwrap();
        std::fs::write(src.join("etc/os-release"), "x").unwrap();
        let a: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let b: Digest = format!("sha256:{}", "b".repeat(64)).parse().unwrap();
        let c1 = root.join("containers/c1");
        let c2 = root.join("containers/c2");
        let image = |d| CopySource::Image { chain_id: Some(d) };
        let p1 = acquire(root, image(&a), &src, &c1, &MAP, &MAP).unwrap();
        let p2 = acquire(root, image(&a), &src, &c2, &MAP, &MAP).unwrap();
        assert_eq!(p1, p2, "same image and maps: one copy");
        let p3 = acquire(root, image(&b), &src, &c2, &MAP, &MAP).unwrap();
        assert_ne!(p1, p3);
        // c1 uses a's copy, c2 now b's: nothing to remove.
        assert_eq!(prune(root).unwrap().removed, 0);
        std::fs::remove_dir_all(&c1).unwrap();
        assert_eq!(prune(root).unwrap().removed, 1);
        assert!(!p1.exists() && p3.exists());
        // A directory's copy is private to the container.
        let d = acquire(root, CopySource::Dir, &src, &c1, &MAP, &MAP).unwrap();
        assert!(d.starts_with(&c1));
        assert_eq!(
            std::fs::metadata(d.join("etc/os-release"))
                .map(|m| {
                    use std::os::unix::fs::MetadataExt;
                    m.uid()
                })
                .unwrap(),
            400_000
        );
    }
}
