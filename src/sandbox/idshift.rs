//! Root filesystem ownership for user namespaces when an idmapped mount is not
//! possible (overlayfs cannot be idmapped itself): a copy of the tree with every
//! owner shifted through the id maps. The caller keys and caches the copy per
//! mapping; it is built in a temporary directory and renamed into place, so a
//! half-made copy is never used.

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use super::Error;

/// `statfs` magic of overlayfs.
const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;

/// True when `rootfs` cannot take an idmapped mount and needs a shifted copy.
pub fn needs_copy(rootfs: &Path) -> bool {
    #[allow(clippy::unnecessary_cast)]
    nix::sys::statfs::statfs(rootfs)
        .is_ok_and(|s| s.filesystem_type().0 as i64 == OVERLAYFS_SUPER_MAGIC)
}

/// Map an id of the container to the host through `(container, host, size)`
/// ranges; ids outside every range go to the host id of the container's 65534
/// ("nobody") when mapped, else stay unmapped-looking at the first range's end.
pub fn map_id(id: u32, maps: &[(u32, u32, u32)]) -> u32 {
    let find = |id: u32| {
        maps.iter()
            .find(|(c, _, n)| id >= *c && id - *c < *n)
            .map(|(c, h, _)| h + (id - c))
    };
    find(id)
        .or_else(|| find(65534))
        .unwrap_or_else(|| maps.first().map(|(_, h, n)| h + n - 1).unwrap_or(65534))
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Setup {
        step: format!("shifted rootfs copy {}", path.display()),
        source,
    }
}

/// Copy `src` to `dst` (which must not exist) with owners shifted.
pub fn shifted_copy(
    src: &Path,
    dst: &Path,
    uids: &[(u32, u32, u32)],
    gids: &[(u32, u32, u32)],
) -> Result<(), Error> {
    let tmp = dst.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    }
    let mut links: HashMap<(u64, u64), std::path::PathBuf> = HashMap::new();
    let r = copy_tree(src, &tmp, uids, gids, &mut links);
    if let Err(e) = r {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&tmp, dst) {
        let _ = std::fs::remove_dir_all(&tmp);
        // Another process made the same copy first: use theirs.
        if dst.is_dir() {
            return Ok(());
        }
        return Err(io(dst, e));
    }
    Ok(())
}

fn copy_tree(
    src: &Path,
    dst: &Path,
    uids: &[(u32, u32, u32)],
    gids: &[(u32, u32, u32)],
    links: &mut HashMap<(u64, u64), std::path::PathBuf>,
) -> Result<(), Error> {
    let m = std::fs::symlink_metadata(src).map_err(|e| io(src, e))?;
    let ft = m.file_type();
    let (uid, gid) = (map_id(m.uid(), uids), map_id(m.gid(), gids));
    if ft.is_dir() {
        std::fs::create_dir(dst).map_err(|e| io(dst, e))?;
        for e in std::fs::read_dir(src).map_err(|e| io(src, e))? {
            let e = e.map_err(|e| io(src, e))?;
            copy_tree(&e.path(), &dst.join(e.file_name()), uids, gids, links)?;
        }
    } else if ft.is_symlink() {
        let target = std::fs::read_link(src).map_err(|e| io(src, e))?;
        std::os::unix::fs::symlink(target, dst).map_err(|e| io(dst, e))?;
    } else if m.nlink() > 1 && links.contains_key(&(m.dev(), m.ino())) {
        std::fs::hard_link(&links[&(m.dev(), m.ino())], dst).map_err(|e| io(dst, e))?;
        return Ok(());
    } else if ft.is_file() {
        std::fs::copy(src, dst).map_err(|e| io(dst, e))?;
        if m.nlink() > 1 {
            links.insert((m.dev(), m.ino()), dst.to_path_buf());
        }
    } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() || ft.is_socket() {
        let kind = if ft.is_fifo() {
            nix::sys::stat::SFlag::S_IFIFO
        } else if ft.is_char_device() {
            nix::sys::stat::SFlag::S_IFCHR
        } else if ft.is_block_device() {
            nix::sys::stat::SFlag::S_IFBLK
        } else {
            nix::sys::stat::SFlag::S_IFSOCK
        };
        nix::sys::stat::mknod(
            dst,
            kind,
            nix::sys::stat::Mode::from_bits_truncate(m.mode()),
            m.rdev(),
        )
        .map_err(|e| io(dst, e.into()))?;
    }
    std::os::unix::fs::lchown(dst, Some(uid), Some(gid)).map_err(|e| io(dst, e))?;
    if !ft.is_symlink() {
        // chown clears set-id bits; put the mode back afterwards.
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(|e| io(dst, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_through_ranges() {
        let maps = [(0, 100_000, 65_536)];
        assert_eq!(map_id(0, &maps), 100_000);
        assert_eq!(map_id(33, &maps), 100_033);
        assert_eq!(map_id(70_000, &maps), 165_534, "unmapped ids become nobody");
        assert_eq!(
            map_id(5, &[(0, 1000, 1)]),
            1000,
            "no nobody in the map: the last mapped id"
        );
    }

    #[test]
    fn copy_keeps_tree_modes_and_links() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIP: chown needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("d")).unwrap();
        std::fs::write(src.join("d/f"), "x").unwrap();
        std::fs::set_permissions(src.join("d/f"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::fs::hard_link(src.join("d/f"), src.join("h")).unwrap();
        std::os::unix::fs::symlink("d/f", src.join("l")).unwrap();
        let dst = t.path().join("dst");
        shifted_copy(&src, &dst, &[(0, 300_000, 65_536)], &[(0, 300_000, 65_536)]).unwrap();
        let m = std::fs::metadata(dst.join("d/f")).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777),
            (300_000, 300_000, 0o4755)
        );
        assert_eq!(std::fs::metadata(dst.join("h")).unwrap().ino(), m.ino());
        assert_eq!(std::fs::read_link(dst.join("l")).unwrap(), Path::new("d/f"));
        assert_eq!(
            std::fs::symlink_metadata(dst.join("l")).unwrap().uid(),
            300_000
        );
    }
}
