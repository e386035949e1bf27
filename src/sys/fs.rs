//! Directory-fd-relative file system helpers used by layer extraction, diffs and the
//! overlay snapshotter.
//!
//! Every path that comes from outside (a tar entry, a container's upper dir) is
//! resolved with `openat2(RESOLVE_IN_ROOT)` against a directory fd, so `..`, absolute
//! symlinks and symlinks planted by earlier entries all stay inside the root, even
//! while another process renames things underneath (CVE-2018-15664 class). Final
//! components are never followed: callers use `*at` calls with `AT_SYMLINK_NOFOLLOW`
//! or `O_NOFOLLOW` on them.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};

fn to_io(e: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// Open `path` as a directory to resolve entries against (`O_PATH`).
pub fn open_dir_path(path: &Path) -> io::Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(to_io)
}

/// Ask the file system to place each new subdirectory of `dir` as it places top-level
/// directories (ext4's `FS_TOPDIR_FL`, `chattr +T`): in a block group with few
/// directories and many free inodes, instead of next to `dir`.
///
/// Why: on ext4 without a journal (this host, DESIGN.md section 6) the inode allocator
/// skips every free inode of the group deleted in the last ~30 s, one buffer-cache
/// lookup each, before it takes one. In a group where a store was just removed (a
/// `prune`, a benchmark or test cleaning up) every create then scans thousands of
/// them: 2,000 creates took 5.2 s of mostly system time next to a removed tree and
/// 0.2 s in a spread directory. A layer directory made under `dir` lands in a quiet
/// group and its contents follow it. Returns whether the flag is set; file systems
/// without the flag (`ENOTTY`, `EOPNOTSUPP`, `EINVAL`) leave placement as it is.
pub fn spread_subdirs(dir: &Path) -> io::Result<bool> {
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(to_io)?;
    let unsupported = |e: rustix::io::Errno| {
        matches!(
            e,
            rustix::io::Errno::NOTTY | rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::INVAL
        )
    };
    let flags = match rustix::fs::ioctl_getflags(&fd) {
        Ok(f) => f,
        Err(e) if unsupported(e) => return Ok(false),
        Err(e) => return Err(to_io(e)),
    };
    if flags.contains(rustix::fs::IFlags::TOPDIR) {
        return Ok(true);
    }
    match rustix::fs::ioctl_setflags(&fd, flags | rustix::fs::IFlags::TOPDIR) {
        Ok(()) => Ok(true),
        Err(e) if unsupported(e) || e == rustix::io::Errno::PERM => Ok(false),
        Err(e) => Err(to_io(e)),
    }
}

/// Resolve `rel` (relative; may be empty for the root itself) inside `root`, treating
/// `root` as `/` for `..` and for absolute symlinks, and open it as a directory with
/// `O_PATH`. The result is always a directory inside the root (or an error).
///
/// openat2 fails with `EAGAIN` when a rename or mount anywhere on the system raced
/// with the resolution (its `..` checks cannot tell an escape from a concurrent
/// change); the resolution is then simply tried again, a bounded number of times.
pub fn open_dir_in_root(root: BorrowedFd<'_>, rel: &[u8]) -> io::Result<OwnedFd> {
    let rel: &[u8] = if rel.is_empty() { b"." } else { rel };
    openat2(
        root,
        OsStr::from_bytes(rel),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
    )
    .map_err(to_io)
}

/// `openat2(2)`, walked again while it answers `EAGAIN` (see [`retry_eagain`]). Every
/// openat2 call of imgctl goes through here: with `RESOLVE_IN_ROOT` or
/// `RESOLVE_BENEATH` the kernel returns `EAGAIN` when a rename or mount anywhere raced
/// with the walk, and a new walk is the documented answer.
pub fn openat2<P: rustix::path::Arg + Copy>(
    dir: BorrowedFd<'_>,
    path: P,
    oflags: OFlags,
    mode: Mode,
    resolve: ResolveFlags,
) -> rustix::io::Result<OwnedFd> {
    retry_eagain(|| rustix::fs::openat2(dir, path, oflags, mode, resolve))
}

/// Call `f` again while it fails with `EAGAIN`, at most 64 times (openat2's
/// documented answer to a racing rename; a live attacker renaming in a loop only
/// gets the error after that).
pub fn retry_eagain<T>(mut f: impl FnMut() -> rustix::io::Result<T>) -> rustix::io::Result<T> {
    let mut tries = 0;
    loop {
        match f() {
            Err(rustix::io::Errno::AGAIN) if tries < 64 => {
                tries += 1;
                std::thread::yield_now();
            }
            r => return r,
        }
    }
}

/// Open a directory entry `name` of `dir` for reading its contents or setting its
/// metadata; fails with `ELOOP`/`ENOTDIR` when `name` is a symlink or not a directory.
pub fn open_subdir(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        OsStr::from_bytes(name),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(to_io)
}

/// The `/proc/self/fd/N/name` path of an entry of an open directory, for the few
/// calls (`lsetxattr`, `llistxattr`) that have no `*at` form. The last component is
/// never followed by the `l*` calls; the directory itself is reached through the
/// magic link of an fd we hold, so nothing on the way can be swapped.
pub fn proc_path(dir: BorrowedFd<'_>, name: &[u8]) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    if !name.is_empty() {
        p.push(OsStr::from_bytes(name));
    }
    p
}

/// `lstat` of an entry of `dir`.
pub fn lstat_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<rustix::fs::Stat> {
    rustix::fs::statat(dir, OsStr::from_bytes(name), AtFlags::SYMLINK_NOFOLLOW).map_err(to_io)
}

/// Whether a stat result is a directory.
pub fn is_dir(st: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::Directory
}

/// Remove `name` from `dir`, recursively if it is a directory. Symlinks are removed,
/// never followed. `ENOENT` counts as success.
pub fn remove_all_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let st = match lstat_at(dir, name) {
        Ok(st) => st,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if is_dir(&st) {
        let sub = open_subdir(dir, name)?;
        clear_dir(sub.as_fd(), |_| true)?;
        drop(sub);
        rustix::fs::unlinkat(dir, OsStr::from_bytes(name), AtFlags::REMOVEDIR).map_err(to_io)
    } else {
        match rustix::fs::unlinkat(dir, OsStr::from_bytes(name), AtFlags::empty()) {
            Err(rustix::io::Errno::NOENT) => Ok(()),
            r => r.map_err(to_io),
        }
    }
}

/// Names in a directory (without `.` and `..`), in readdir order.
pub fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    // Re-open: a `Dir` consumes its fd's file position.
    let fd = rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(to_io)?;
    let mut d = rustix::fs::Dir::new(fd).map_err(to_io)?;
    let mut out = Vec::new();
    while let Some(ent) = d.read() {
        let ent = ent.map_err(to_io)?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(n.to_vec());
        }
    }
    Ok(out)
}

/// Remove (recursively) every entry of `dir` for which `remove(name)` is true.
pub fn clear_dir(dir: BorrowedFd<'_>, mut remove: impl FnMut(&[u8]) -> bool) -> io::Result<()> {
    for name in list_dir(dir)? {
        if remove(&name) {
            remove_all_at(dir, &name)?;
        }
    }
    Ok(())
}

/// `chmod` an entry of `dir` without following it if it is a symlink (fchmodat2 with
/// `AT_SYMLINK_NOFOLLOW`, Linux 6.6+; older kernels fall back to plain `fchmodat`,
/// which callers only use on entries they just created as non-links).
pub fn chmod_nofollow(dir: BorrowedFd<'_>, name: &[u8], mode: u32) -> io::Result<()> {
    let cname = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: valid fd and NUL-terminated path for the duration of the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fchmodat2,
            dir.as_raw_fd(),
            cname.as_ptr(),
            mode as libc::c_uint,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENOSYS) {
        return rustix::fs::chmodat(
            dir,
            OsStr::from_bytes(name),
            Mode::from_raw_mode(mode),
            AtFlags::empty(),
        )
        .map_err(to_io);
    }
    Err(e)
}

/// Set an extended attribute on an entry of `dir` without following it; an empty
/// `name` means `dir` itself.
pub fn set_xattr_at(dir: BorrowedFd<'_>, name: &[u8], key: &str, value: &[u8]) -> io::Result<()> {
    let flags = rustix::fs::XattrFlags::empty();
    if name.is_empty() {
        // The magic link of our own fd leads to the directory itself.
        rustix::fs::setxattr(proc_path(dir, name), key, value, flags).map_err(to_io)
    } else {
        rustix::fs::lsetxattr(proc_path(dir, name), key, value, flags).map_err(to_io)
    }
}

/// Extended attributes of a path, without following a final symlink, sorted by name.
pub fn xattrs_of(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    collect_xattrs(
        |buf| rustix::fs::llistxattr(path, buf),
        |name, buf| rustix::fs::lgetxattr(path, name, buf),
    )
}

/// Extended attributes of an open file, sorted by name (as [`xattrs_of`]).
pub fn fxattrs_of(fd: BorrowedFd<'_>) -> io::Result<Vec<(String, Vec<u8>)>> {
    collect_xattrs(
        |buf| rustix::fs::flistxattr(fd, buf),
        |name, buf| rustix::fs::fgetxattr(fd, name, buf),
    )
}

/// The attributes `list` names, each read with `get`, sorted by name. Buffers
/// grow fourfold on ERANGE up to 1 MiB (the kernel's limits are 64 KiB); a
/// filesystem without xattrs has none; one listed but gone meanwhile is skipped.
fn collect_xattrs(
    list: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
    get: impl Fn(&[u8], &mut [u8]) -> rustix::io::Result<usize>,
) -> io::Result<Vec<(String, Vec<u8>)>> {
    const MAX: usize = 1 << 20;
    let mut names = vec![0u8; 1024];
    let n = loop {
        match list(&mut names[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) if names.len() < MAX => names.resize(names.len() * 4, 0),
            Err(rustix::io::Errno::OPNOTSUPP) => return Ok(Vec::new()),
            Err(e) => return Err(to_io(e)),
        }
    };
    let mut out = Vec::new();
    for raw in names[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let key = String::from_utf8_lossy(raw).into_owned();
        let mut val = vec![0u8; 256];
        let len = loop {
            match get(raw, &mut val[..]) {
                Ok(l) => break Some(l),
                Err(rustix::io::Errno::RANGE) if val.len() < MAX => val.resize(val.len() * 4, 0),
                // Listed but gone or not readable (e.g. a race): skip it.
                Err(rustix::io::Errno::NODATA) => break None,
                Err(e) => return Err(to_io(e)),
            }
        };
        if let Some(len) = len {
            val.truncate(len);
            out.push((key, val));
        }
    }
    out.sort();
    Ok(out)
}

/// The file-level dedup pool's name for a regular file: sha256 over the sha256 of its
/// content and all of its metadata (full `st_mode`, owner, mtime in seconds, size,
/// xattrs sorted by name), hex. Two files with the same key look the same in every
/// respect but `st_nlink` (see `snapshot::dedup`).
#[allow(clippy::too_many_arguments)]
pub fn dedup_key(
    content_sha256: &[u8],
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    len: u64,
    xattrs: &[(String, Vec<u8>)],
) -> String {
    use sha2::{Digest as _, Sha256};
    let mut key = Sha256::new();
    key.update(content_sha256);
    key.update(format!("|{mode:o}|{uid}|{gid}|{mtime}|{len}|"));
    for (k, v) in xattrs {
        key.update(k.as_bytes());
        key.update([0]);
        key.update(v);
        key.update([0]);
    }
    hex::encode(key.finalize())
}

/// Create a directory and any missing parents, each with mode 0700 unless it exists.
pub fn create_private_dir_all(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Mount an overlay filesystem on `target`: `lowers` top-most first, an optional
/// `(upper, work)` pair for a writable mount.
///
/// Uses the new mount API and passes each lower directory with its own `lowerdir+`
/// call (Linux 6.8+), so an image with any number of layers mounts regardless of the
/// one-page limit of the legacy option string; falls back to `mount(2)` with a
/// `lowerdir=a:b:c` option string on older kernels.
pub fn mount_overlay(
    lowers: &[PathBuf],
    upper_work: Option<(&Path, &Path)>,
    target: &Path,
) -> io::Result<()> {
    mount_overlay_with(lowers, upper_work, target, false)
}

/// [`mount_overlay`]; `volatile` (writable mounts only, Linux 5.10+): overlayfs
/// ignores fsync and syncfs and does not sync the upper filesystem when it is
/// unmounted (which on a busy host takes tens to hundreds of milliseconds). For
/// an upper directory thrown away after use (`run --rm`); after a crash the
/// kernel refuses to reuse it, which is what such a directory needs anyway.
pub fn mount_overlay_with(
    lowers: &[PathBuf],
    upper_work: Option<(&Path, &Path)>,
    target: &Path,
    volatile: bool,
) -> io::Result<()> {
    use rustix::mount::*;
    let attempt = || -> io::Result<()> {
        let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(to_io)?;
        // The kernel explains a refused parameter in the context's message log.
        let explain = |e: rustix::io::Errno, what: &str| {
            let mut buf = [0u8; 512];
            let msg = match rustix::io::read(&fs, &mut buf) {
                Ok(n) => String::from_utf8_lossy(&buf[..n]).trim().to_string(),
                Err(_) => String::new(),
            };
            io::Error::new(
                io::Error::from_raw_os_error(e.raw_os_error()).kind(),
                format!(
                    "overlay {what}: {} {msg}",
                    io::Error::from_raw_os_error(e.raw_os_error())
                ),
            )
        };
        // Layers by file descriptor (Linux 6.13+): no path length limit (fsconfig
        // strings stop at 256 bytes); by path on kernels that refuse fds here.
        let set = |key: &str, p: &Path| -> io::Result<()> {
            let fd = open_dir_path(p)?;
            match fsconfig_set_fd(fs.as_fd(), key, fd.as_fd()) {
                Ok(()) => Ok(()),
                Err(rustix::io::Errno::INVAL) => fsconfig_set_string(fs.as_fd(), key, p)
                    .map_err(|e| explain(e, &format!("{key} {}", p.display()))),
                Err(e) => Err(explain(e, &format!("{key} {}", p.display()))),
            }
        };
        for l in lowers {
            set("lowerdir+", l)?;
        }
        if let Some((u, w)) = upper_work {
            set("upperdir", u)?;
            set("workdir", w)?;
            if volatile {
                fsconfig_set_flag(fs.as_fd(), "volatile").map_err(|e| explain(e, "volatile"))?;
            }
        }
        fsconfig_create(fs.as_fd()).map_err(|e| explain(e, "create"))?;
        let attrs = if upper_work.is_none() {
            MountAttrFlags::MOUNT_ATTR_RDONLY
        } else {
            MountAttrFlags::empty()
        };
        let mnt = fsmount(fs.as_fd(), FsMountFlags::FSMOUNT_CLOEXEC, attrs).map_err(to_io)?;
        move_mount(
            mnt.as_fd(),
            "",
            rustix::fs::CWD,
            target,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(to_io)
    };
    match attempt() {
        Ok(()) => Ok(()),
        // No new mount API, or no `lowerdir+` (before 6.8): the legacy option string.
        Err(e)
            if matches!(e.raw_os_error(), Some(libc::ENOSYS))
                || (e.kind() == io::ErrorKind::InvalidInput
                    && lowers
                        .iter()
                        .map(|l| l.as_os_str().len() + 1)
                        .sum::<usize>()
                        < 3500) =>
        {
            let mut opts = String::from("lowerdir=");
            for (i, l) in lowers.iter().enumerate() {
                if i > 0 {
                    opts.push(':');
                }
                opts.push_str(&l.to_string_lossy());
            }
            let mut flags = MountFlags::empty();
            if let Some((u, w)) = upper_work {
                opts.push_str(&format!(
                    ",upperdir={},workdir={}",
                    u.display(),
                    w.display()
                ));
            } else {
                flags |= MountFlags::RDONLY;
            }
            let data =
                CString::new(opts).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
            mount("overlay", target, "overlay", flags, data.as_c_str()).map_err(to_io)
        }
        Err(e) => Err(e),
    }
}

/// Mount the EROFS image file `image` read-only on `target` (file-backed EROFS,
/// Linux 6.12+).
pub fn mount_erofs(image: &Path, target: &Path) -> io::Result<()> {
    use rustix::mount::*;
    let fs = fsopen("erofs", FsOpenFlags::FSOPEN_CLOEXEC).map_err(to_io)?;
    let step = |r: rustix::io::Result<()>, what: &str| {
        r.map_err(|e| {
            let mut buf = [0u8; 512];
            let msg = rustix::io::read(&fs, &mut buf)
                .map(|n| String::from_utf8_lossy(&buf[..n]).trim().to_string())
                .unwrap_or_default();
            io::Error::new(
                io::Error::from_raw_os_error(e.raw_os_error()).kind(),
                format!("erofs {what} {}: {} {msg}", image.display(), to_io(e)),
            )
        })
    };
    step(fsconfig_set_string(fs.as_fd(), "source", image), "source")?;
    step(fsconfig_create(fs.as_fd()), "create")?;
    let mnt = fsmount(
        fs.as_fd(),
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_RDONLY | MountAttrFlags::MOUNT_ATTR_NODEV,
    )
    .map_err(to_io)?;
    move_mount(
        mnt.as_fd(),
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(to_io)
}

/// Whether `path` is the root of a mount (its device differs from its parent's).
pub fn is_mount_point(path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let me = std::fs::symlink_metadata(path)?;
    let parent = std::fs::symlink_metadata(path.join(".."))?;
    Ok(me.dev() != parent.dev() || me.ino() == parent.ino())
}

/// Bind-mount `source` on `target`, read-only when `readonly`.
pub fn mount_bind(source: &Path, target: &Path, readonly: bool) -> io::Result<()> {
    use rustix::mount::*;
    mount_bind_recursive(source, target).map_err(to_io)?;
    if readonly {
        mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, c"").map_err(to_io)?;
    }
    Ok(())
}

/// Unmount `target` (lazily detaching it when `detach`).
pub fn unmount(target: &Path, detach: bool) -> io::Result<()> {
    use rustix::mount::UnmountFlags;
    let flags = if detach {
        UnmountFlags::DETACH
    } else {
        UnmountFlags::empty()
    };
    rustix::mount::unmount(target, flags).map_err(to_io)
}

/// Whether this process runs in a user namespace other than the initial one (as in
/// `unshare -r` or rootless containers): then only the mapped IDs can own files,
/// and device nodes and `trusted.*` xattrs cannot be created.
pub fn in_user_namespace() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(map) => {
            let fields: Vec<&str> = map.split_whitespace().collect();
            fields != ["0", "0", "4294967295"]
        }
        Err(_) => false,
    }
}

/// The process umask, read without changing it (`/proc/self/status`), so that
/// threads never see a temporarily different umask. Falls back to 022.
pub fn current_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// issue 10: layer directories are spread over quiet ext4 block groups. On ext4
    /// the flag must stick (and stay set on a second call); elsewhere nothing changes.
    #[test]
    fn spread_subdirs_sets_the_top_directory_flag_on_ext4() {
        let t = tempfile::tempdir_in("/var/tmp").unwrap();
        let on_ext4 = rustix::fs::statfs(t.path()).unwrap().f_type as i64 == 0xEF53;
        let set = spread_subdirs(t.path()).unwrap();
        assert_eq!(set, on_ext4, "ext4 takes FS_TOPDIR_FL");
        let fd =
            rustix::fs::open(t.path(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        if set {
            let flags = rustix::fs::ioctl_getflags(&fd).unwrap();
            assert!(flags.contains(rustix::fs::IFlags::TOPDIR));
            assert!(spread_subdirs(t.path()).unwrap());
        }
        // A path that is not a directory is an error, not a silent success.
        std::fs::write(t.path().join("f"), b"x").unwrap();
        assert!(spread_subdirs(&t.path().join("f")).is_err());
    }

    /// issue 10: every openat2 caller retries EAGAIN, because every one goes through
    /// [`openat2`]: no other file of the crate calls the raw one.
    #[test]
    fn no_raw_openat2_outside_this_module() {
        fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, found);
                } else if p.extension().is_some_and(|x| x == "rs")
                    && !p.ends_with("sys/fs.rs")
                    && std::fs::read_to_string(&p)
                        .unwrap()
                        .contains(concat!("rustix::fs::", "openat2("))
                {
                    found.push(p);
                }
            }
        }
        let mut found = Vec::new();
        walk(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
        );
        assert!(
            found.is_empty(),
            "raw openat2 (use sys::fs::openat2): {found:?}"
        );
    }

    /// issue 10: a transient EAGAIN from openat2 is retried; a permanent one ends.
    #[test]
    fn eagain_is_retried_a_bounded_number_of_times() {
        let mut calls = 0;
        let r = retry_eagain(|| {
            calls += 1;
            if calls < 3 {
                Err(rustix::io::Errno::AGAIN)
            } else {
                Ok(calls)
            }
        });
        assert_eq!(r, Ok(3));
        let mut calls = 0;
        let r: rustix::io::Result<()> = retry_eagain(|| {
            calls += 1;
            Err(rustix::io::Errno::AGAIN)
        });
        assert_eq!(r, Err(rustix::io::Errno::AGAIN));
        assert_eq!(calls, 65);
        // Other errors are not retried.
        let mut calls = 0;
        let r: rustix::io::Result<()> = retry_eagain(|| {
            calls += 1;
            Err(rustix::io::Errno::NOENT)
        });
        assert_eq!((r, calls), (Err(rustix::io::Errno::NOENT), 1));
    }

    #[test]
    fn resolution_stays_in_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::os::unix::fs::symlink("/", root.join("up")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("a/dots")).unwrap();
        let fd = open_dir_path(&root).unwrap();
        for rel in [&b"up"[..], b"a/dots", b"../..", b"/"] {
            let d = open_dir_in_root(fd.as_fd(), rel).unwrap();
            let st = rustix::fs::fstat(&d).unwrap();
            let rs = std::fs::metadata(&root).unwrap();
            use std::os::unix::fs::MetadataExt;
            assert_eq!(st.st_ino, rs.ino(), "{rel:?} escaped the root");
        }
    }

    #[test]
    fn remove_all_does_not_follow_links() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"x").unwrap();
        let d = t.path().join("d");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::os::unix::fs::symlink(&outside, d.join("sub/link")).unwrap();
        let fd = open_dir_path(t.path()).unwrap();
        remove_all_at(fd.as_fd(), b"d").unwrap();
        assert!(!d.exists());
        assert!(outside.join("keep").exists());
    }
}
