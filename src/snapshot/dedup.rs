//! File-level deduplication across layers and images.
//!
//! Regular files with the same content *and* metadata (mode, owner, mtime, xattrs)
//! are stored once: the first copy is hardlinked into a content-addressed pool
//! (`snapshots/pool/<2 hex>/<key>`), later copies are replaced by hardlinks to it.
//! Because the key covers all metadata, a shared inode looks exactly like the file it
//! replaced; containers only ever see these files through overlayfs lower layers,
//! and overlayfs copies a file up before any write, so a write never reaches the
//! shared inode. (The visible difference is `st_nlink`.)

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::sys::fs as sfs;

/// What one dedup pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DedupStats {
    /// Regular files looked at.
    pub files: u64,
    /// Files replaced by a link to an identical pooled file.
    pub linked: u64,
    /// Bytes those files no longer take.
    pub bytes_saved: u64,
}

/// Files smaller than this are not pooled by default: linking costs a directory
/// entry (about as much as creating the file, on ext4 the dominant unpack cost, see
/// DESIGN.md section 6) while the bytes saved are few.
pub const DEFAULT_MIN_SIZE: u64 = 16 * 1024;

fn pool_key(path: &Path, md: &fs::Metadata) -> io::Result<String> {
    let mut content = Sha256::new();
    let mut f = fs::File::open(path)?;
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        content.update(&buf[..n]);
    }
    Ok(sfs::dedup_key(
        &content.finalize(),
        md.mode(),
        md.uid(),
        md.gid(),
        md.mtime(),
        md.len(),
        &sfs::xattrs_of(path)?,
    ))
}

static TMP_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Deduplicate the regular files of `dir` of at least `min_size` bytes against `pool`.
pub fn dedup_dir(pool: &Path, dir: &Path, min_size: u64) -> io::Result<DedupStats> {
    let mut stats = DedupStats::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)? {
            let e = e?;
            let ft = e.file_type()?;
            let path = e.path();
            if ft.is_dir() {
                stack.push(path);
                continue;
            }
            if !ft.is_file() {
                continue;
            }
            let md = fs::symlink_metadata(&path)?;
            // Multiply-linked files are hardlinks inside the layer (or already pooled).
            if md.nlink() != 1 || md.len() < min_size.max(1) {
                continue;
            }
            stats.files += 1;
            let key = pool_key(&path, &md)?;
            let shard = pool.join(&key[..2]);
            let pooled = shard.join(&key);
            match fs::symlink_metadata(&pooled) {
                Ok(_) => {
                    // A short name of its own: the file's name may already be
                    // 255 bytes long (issue 10: "File name too long").
                    let tmp = path.with_file_name(format!(
                        ".dedup-{}-{}",
                        std::process::id(),
                        TMP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    ));
                    fs::hard_link(&pooled, &tmp)?;
                    if let Err(err) = fs::rename(&tmp, &path) {
                        let _ = fs::remove_file(&tmp);
                        return Err(err);
                    }
                    stats.linked += 1;
                    stats.bytes_saved += md.len();
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir_all(&shard)?;
                    match fs::hard_link(&path, &pooled) {
                        Ok(()) => {}
                        // Too many links on this inode, or a racing writer: keep the file.
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) if e.raw_os_error() == Some(libc::EMLINK) => {}
                        Err(e) => return Err(e),
                    }
                }
                Err(err) => return Err(err),
            }
        }
    }
    Ok(stats)
}

/// Logical versus on-disk size of a set of directories.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DiskUsage {
    /// Sum of the sizes of every regular file as seen in each directory.
    pub logical_bytes: u64,
    /// Sum of the sizes of distinct inodes.
    pub on_disk_bytes: u64,
    /// `logical - on_disk`.
    pub saved_bytes: u64,
}

/// Measure the regular files under `dirs` (each inode counted once on disk).
pub fn disk_usage(dirs: &[PathBuf]) -> io::Result<DiskUsage> {
    let mut seen = HashSet::new();
    let mut u = DiskUsage::default();
    for dir in dirs {
        let mut stack = vec![dir.clone()];
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
                    u.logical_bytes += md.len();
                    if seen.insert((md.dev(), md.ino())) {
                        u.on_disk_bytes += md.len();
                    }
                }
            }
        }
    }
    u.saved_bytes = u.logical_bytes - u.on_disk_bytes;
    Ok(u)
}

/// Remove pool entries no layer links to any more (link count 1).
pub fn prune_pool(pool: &Path) -> io::Result<u64> {
    let mut removed = 0;
    for shard in fs::read_dir(pool)? {
        let shard = shard?.path();
        if !shard.is_dir() {
            continue;
        }
        for e in fs::read_dir(&shard)? {
            let e = e?;
            if e.metadata()?.nlink() == 1 {
                fs::remove_file(e.path())?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_files_share_an_inode_and_different_metadata_does_not() {
        let t = tempfile::tempdir().unwrap();
        let pool = t.path().join("pool");
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        fs::create_dir_all(&pool).unwrap();
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        fs::write(a.join("same"), vec![7u8; 10_000]).unwrap();
        fs::write(b.join("same"), vec![7u8; 10_000]).unwrap();
        fs::write(a.join("other"), b"one").unwrap();
        fs::write(b.join("other"), b"two").unwrap();
        fs::write(b.join("moded"), vec![7u8; 10_000]).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(b.join("moded"), fs::Permissions::from_mode(0o600)).unwrap();
        // Same mtime for the pair that should match.
        let mt = fs::metadata(a.join("same")).unwrap().modified().unwrap();
        fs::File::options()
            .write(true)
            .open(b.join("same"))
            .unwrap()
            .set_modified(mt)
            .unwrap();
        fs::File::options()
            .write(true)
            .open(b.join("moded"))
            .unwrap()
            .set_modified(mt)
            .unwrap();
        let s1 = dedup_dir(&pool, &a, 1).unwrap();
        assert_eq!(s1.linked, 0);
        let s2 = dedup_dir(&pool, &b, 1).unwrap();
        assert_eq!(s2.linked, 1);
        assert_eq!(s2.bytes_saved, 10_000);
        let ia = fs::metadata(a.join("same")).unwrap().ino();
        assert_eq!(fs::metadata(b.join("same")).unwrap().ino(), ia);
        assert_ne!(fs::metadata(b.join("moded")).unwrap().ino(), ia);
        assert_eq!(fs::read(b.join("other")).unwrap(), b"two");
        let u = disk_usage(&[a, b]).unwrap();
        assert_eq!(u.saved_bytes, 10_000);
    }
}
