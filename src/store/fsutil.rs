//! Small filesystem helpers for durable, private writes. [`write_atomic`] is the one
//! way imgctl replaces a state file (index.json, snapshot metadata, container state):
//! temp file in the same directory, fsync, rename, fsync the directory, so a crash
//! leaves either the old or the new content, never a torn file.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Create a directory (and parents) with mode 0700. An existing directory is
/// left as it is: it may be one the user named (`--root /srv/shared`), and
/// changing its mode would break whoever else uses it.
pub fn mkdir_private(p: &Path) -> io::Result<()> {
    match DirBuilder::new().recursive(true).mode(0o700).create(p) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = fs::metadata(p)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "exists and is not a directory",
        ));
    }
    Ok(())
}

/// Open (creating 0600) a lock file.
pub fn open_lock_file(p: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(p)
}

/// Write a new file with `mode` and fsync it.
pub fn write_synced(p: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(p)?;
    f.write_all(data)?;
    f.sync_all()
}

/// fsync a directory so a rename inside it is durable.
pub fn sync_dir(p: &Path) -> io::Result<()> {
    File::open(p)?.sync_all()
}

/// A process-unique counter for temp file names.
pub fn unique() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Replace `path` with `data` atomically and durably: write a temp file next to it
/// (same filesystem, so the rename is atomic), fsync it, rename it over `path`,
/// fsync the directory. The file gets `mode` (before umask). A temp file left by a
/// crash is named `.NAME.tmp.PID.N` in the same directory.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    write_atomic_via(dir, path, data, mode)
}

/// Replace `path` with `data` atomically but without fsync: a crash of the
/// process leaves the old or the new content, a power loss may lose the update.
/// For state that lives only as long as the process writing it (a `run --rm`
/// container's files, removed when it exits), where fsync would only add latency.
pub fn write_atomic_volatile(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.tmp.{}.{}", std::process::id(), unique()));
    let result = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| f.write_all(data))
        .and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// [`write_atomic`] with the temp file in `tmp_dir` (which must be on the same
/// filesystem as `path`), e.g. the store's `tmp/` that `prune` cleans.
pub fn write_atomic_via(tmp_dir: &Path, path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = tmp_dir.join(format!(".{name}.tmp.{}.{}", std::process::id(), unique()));
    let result = write_synced(&tmp, data, mode).and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn write_atomic_replaces_whole_file_with_mode_and_no_temp_left() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        write_atomic(&p, b"first", 0o600).unwrap();
        write_atomic(&p, b"second", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second");
        // The mode is the new file's (umask may only remove bits).
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o077 & !0o044,
            0
        );
        let names: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn write_atomic_volatile_replaces_whole_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        write_atomic_volatile(&p, b"one", 0o600).unwrap();
        write_atomic_volatile(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn write_atomic_failure_keeps_old_content() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x");
        write_atomic(&p, b"old", 0o600).unwrap();
        // A temp dir on which the write cannot happen: the target is untouched.
        let missing = d.path().join("nope");
        assert!(write_atomic_via(&missing, &p, b"new", 0o600).is_err());
        assert_eq!(fs::read(&p).unwrap(), b"old");
    }
}
