//! Walking sources and writing them into the destination root, fd by fd.
//!
//! Sources: each entry is opened `O_PATH | O_NOFOLLOW` relative to its parent
//! directory's fd, so nothing in the source tree is followed (a symlink is copied as a
//! link). Destination: directories are resolved inside the step's root with
//! `openat2(RESOLVE_IN_ROOT)`; final components are created with `O_EXCL` / `*at`
//! calls and never followed; an entry in the way is removed, not written through.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{
    AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps, Uid,
};

use super::{add, CopySpec, Item, Plan};
use crate::build::context::{Ignore, Pattern};
use crate::build::BuildError;
use crate::sys::fs as sfs;

fn to_io(e: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

pub(super) fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// Open `rel` in `root`: symlinks on the way (and a final one whose target exists in
/// the root) are resolved inside the root; a final link whose target does not exist
/// there (e.g. one pointing at `/etc/shadow` of the host) is returned itself.
pub(super) fn open_source(root: BorrowedFd<'_>, rel: &str) -> io::Result<(OwnedFd, Stat)> {
    let flags = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV;
    let path = if rel.is_empty() { "." } else { rel };
    let fd = match sfs::openat2(
        root,
        path,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        flags,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::LOOP) => sfs::openat2(
            root,
            path,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            flags,
        )
        .map_err(to_io)?,
        Err(e) => return Err(to_io(e)),
    };
    let st = rustix::fs::fstat(&fd).map_err(to_io)?;
    Ok((fd, st))
}

/// Open an entry of `dir` as `O_PATH` without following it.
fn open_child(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<(OwnedFd, Stat)> {
    let fd = rustix::fs::openat(
        dir,
        OsStr::from_bytes(name),
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(to_io)?;
    let st = rustix::fs::fstat(&fd).map_err(to_io)?;
    Ok((fd, st))
}

/// Re-open an `O_PATH` fd for reading (a regular file or a directory).
pub(super) fn reopen(fd: BorrowedFd<'_>, dir: bool) -> io::Result<OwnedFd> {
    let mut flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    if dir {
        flags |= OFlags::DIRECTORY;
    }
    rustix::fs::open(sfs::proc_path(fd, b""), flags, Mode::empty()).map_err(to_io)
}

/// Paths (relative to `root`) that match the glob `pat`, not ignored, sorted.
pub(super) fn glob(
    root: BorrowedFd<'_>,
    pat: &Pattern,
    ignore: &Ignore,
) -> io::Result<Vec<String>> {
    let text = pat.as_str();
    let max_depth = if text.contains("**") {
        usize::MAX
    } else {
        text.split('/').count()
    };
    let mut out = Vec::new();
    let top = rustix::fs::openat(
        root,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(to_io)?;
    glob_dir(top.as_fd(), "", 1, max_depth, pat, ignore, &mut out)?;
    out.sort();
    Ok(out)
}

fn glob_dir(
    dir: BorrowedFd<'_>,
    prefix: &str,
    depth: usize,
    max_depth: usize,
    pat: &Pattern,
    ignore: &Ignore,
    out: &mut Vec<String>,
) -> io::Result<()> {
    let mut names = sfs::list_dir(dir)?;
    names.sort();
    for name in names {
        let n = String::from_utf8_lossy(&name);
        let rel = if prefix.is_empty() {
            n.to_string()
        } else {
            format!("{prefix}/{n}")
        };
        let ignored = ignore.is_excluded(&rel);
        if ignored && !ignore.has_includes() {
            continue;
        }
        if !ignored && pat.matches(&rel) {
            out.push(rel.clone());
        }
        if depth < max_depth {
            if let Ok(sub) = sfs::open_subdir(dir, &name) {
                glob_dir(sub.as_fd(), &rel, depth + 1, max_depth, pat, ignore, out)?;
            }
        }
    }
    Ok(())
}

/// One entry met by [`walk`].
pub(super) struct Entry<'a> {
    /// `O_PATH` fd of the entry (not followed).
    pub fd: BorrowedFd<'a>,
    pub st: &'a Stat,
    /// Path relative to the copied source item (`""` for the item itself).
    pub sub: &'a str,
    /// Path relative to the source root.
    pub rel: &'a str,
}

/// What a walk does with entries.
pub(super) trait Visit {
    /// A directory, before its contents (not called for the item root).
    fn enter(&mut self, e: &Entry) -> Result<(), BuildError>;
    /// After a directory's contents (also for the item root, with `sub == ""`).
    fn leave(&mut self, e: &Entry) -> Result<(), BuildError>;
    /// Anything that is not a directory.
    fn node(&mut self, e: &Entry) -> Result<(), BuildError>;
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() || a == "." {
        b.to_string()
    } else {
        format!("{a}/{b}")
    }
}

/// Walk the contents of the directory item `fd` (at `rel` in the source root), leaving
/// out what the ignore file and `--exclude` exclude.
pub(super) fn walk(
    plan: &Plan,
    spec: &CopySpec,
    fd: BorrowedFd<'_>,
    st: &Stat,
    rel: &str,
    v: &mut dyn Visit,
) -> Result<(), BuildError> {
    walk_dir(plan, spec, fd, rel, "", v)?;
    v.leave(&Entry {
        fd,
        st,
        sub: "",
        rel,
    })
}

fn walk_dir(
    plan: &Plan,
    spec: &CopySpec,
    fd: BorrowedFd<'_>,
    rel: &str,
    sub: &str,
    v: &mut dyn Visit,
) -> Result<(), BuildError> {
    let ioe = |e: io::Error| spec.err(format!("{}: {e}", if rel.is_empty() { "." } else { rel }));
    let dir = reopen(fd, true).map_err(ioe)?;
    let mut names = sfs::list_dir(dir.as_fd()).map_err(ioe)?;
    names.sort();
    for name in names {
        let n = String::from_utf8_lossy(&name).into_owned();
        let crel = join(rel, &n);
        let csub = join(sub, &n);
        if plan.exclude.is_excluded(&csub) {
            continue;
        }
        let ignored = plan.ignore.is_excluded(&crel);
        if ignored && !plan.ignore.has_includes() {
            continue;
        }
        let (cfd, cst) =
            open_child(dir.as_fd(), &name).map_err(|e| spec.err(format!("{crel}: {e}")))?;
        let is_dir = file_type(&cst) == FileType::Directory;
        if ignored && !(is_dir && has_included(plan, cfd.as_fd(), &crel)) {
            continue;
        }
        let e = Entry {
            fd: cfd.as_fd(),
            st: &cst,
            sub: &csub,
            rel: &crel,
        };
        if is_dir {
            v.enter(&e)?;
            walk_dir(plan, spec, cfd.as_fd(), &crel, &csub, v)?;
            v.leave(&e)?;
        } else {
            v.node(&e)?;
        }
    }
    Ok(())
}

/// Whether an ignored directory holds an entry a `!` rule re-includes.
fn has_included(plan: &Plan, fd: BorrowedFd<'_>, rel: &str) -> bool {
    let Ok(dir) = reopen(fd, true) else {
        return false;
    };
    let Ok(names) = sfs::list_dir(dir.as_fd()) else {
        return false;
    };
    names.iter().any(|name| {
        let crel = join(rel, &String::from_utf8_lossy(name));
        if !plan.ignore.is_excluded(&crel) {
            return true;
        }
        matches!(open_child(dir.as_fd(), name), Ok((cfd, st)) if file_type(&st) == FileType::Directory && has_included(plan, cfd.as_fd(), &crel))
    })
}

/// Owner and permission bits an entry lands with.
pub(super) fn landing(plan: &Plan, spec: &CopySpec, st: &Stat) -> (u32, u32, u32) {
    let (uid, gid) = match spec.chown {
        Some(o) => o,
        None if plan.from_context => (0, 0),
        None => (st.st_uid, st.st_gid),
    };
    let ft = file_type(st);
    let bits = st.st_mode & 0o7777;
    let mode = match (&spec.chmod, ft) {
        (_, FileType::Symlink) => 0o777,
        (Some(c), _) => c.apply(bits, ft == FileType::Directory),
        (None, _) => bits,
    };
    (uid, gid, mode)
}

fn times(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

fn chown_fd(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    rustix::fs::fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).map_err(to_io)
}

/// Create (or open) the directory `abs` inside `root`; missing components are created
/// 0755 owned by `owner`. A symlink on the way is followed inside the root, and a
/// missing target directory created (as `mkdir -p` through a link does). Returns a
/// readable fd and whether the last component was created.
pub(super) fn ensure_dir(
    root: BorrowedFd<'_>,
    abs: &str,
    owner: (u32, u32),
) -> io::Result<(OwnedFd, bool)> {
    ensure_dir_depth(root, abs, owner, 0)
}

fn ensure_dir_depth(
    root: BorrowedFd<'_>,
    abs: &str,
    owner: (u32, u32),
    depth: u32,
) -> io::Result<(OwnedFd, bool)> {
    if depth > 40 {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    let mut cur = sfs::open_dir_in_root(root, b"")?;
    let mut prefix = String::new();
    let mut created = false;
    for c in abs.split('/').filter(|c| !c.is_empty() && *c != ".") {
        let parent = prefix.clone();
        prefix = join(&prefix, c);
        match sfs::open_dir_in_root(root, prefix.as_bytes()) {
            Ok(fd) => {
                cur = fd;
                created = false;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Ok(st) = sfs::lstat_at(cur.as_fd(), c.as_bytes()) {
                    if file_type(&st) == FileType::Symlink {
                        let t = rustix::fs::readlinkat(&cur, c, Vec::new()).map_err(to_io)?;
                        let t = String::from_utf8_lossy(t.as_bytes()).into_owned();
                        let target = if t.starts_with('/') {
                            t
                        } else {
                            format!("/{parent}/{t}")
                        };
                        let target = crate::build::context::clean(&target);
                        let (_, made) = ensure_dir_depth(root, &target, owner, depth + 1)?;
                        cur = sfs::open_dir_in_root(root, prefix.as_bytes())?;
                        created = made;
                        continue;
                    }
                }
                match rustix::fs::mkdirat(&cur, c, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(to_io(e)),
                }
                let d = sfs::open_subdir(cur.as_fd(), c.as_bytes())?;
                chown_fd(d.as_fd(), owner.0, owner.1)?;
                rustix::fs::fchmod(&d, Mode::from_raw_mode(0o755)).map_err(to_io)?;
                cur = sfs::open_dir_in_root(root, prefix.as_bytes())?;
                created = true;
            }
            Err(e) => {
                return Err(io::Error::new(e.kind(), format!("/{prefix}: {e}")));
            }
        }
    }
    Ok((reopen(cur.as_fd(), true)?, created))
}

/// Remove whatever is at `name` in `dir` unless it is a directory (returned true then).
fn clear_slot(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<bool> {
    match sfs::lstat_at(dir, name) {
        Ok(st) if sfs::is_dir(&st) => Ok(true),
        Ok(_) => {
            rustix::fs::unlinkat(dir, OsStr::from_bytes(name), AtFlags::empty()).map_err(to_io)?;
            Ok(false)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// `user.*` and `security.capability` extended attributes of an open file.
fn copy_xattrs(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> io::Result<()> {
    let mut names = vec![0u8; 4096];
    let n = match rustix::fs::flistxattr(from, &mut names[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::OPNOTSUPP) | Err(rustix::io::Errno::RANGE) => return Ok(()),
        Err(e) => return Err(to_io(e)),
    };
    for raw in names[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        if !(raw.starts_with(b"user.") || raw == b"security.capability") {
            continue;
        }
        let mut val = vec![0u8; 65536];
        let Ok(len) = rustix::fs::fgetxattr(from, raw, &mut val[..]) else {
            continue;
        };
        rustix::fs::fsetxattr(to, raw, &val[..len], rustix::fs::XattrFlags::empty())
            .map_err(to_io)?;
    }
    Ok(())
}

/// Writes entries into the destination.
struct Writer<'p> {
    plan: &'p Plan,
    spec: &'p CopySpec,
    root: BorrowedFd<'p>,
    /// Destination directories, innermost last (item root first).
    stack: Vec<(OwnedFd, String)>,
    /// Hard links seen: (dev, ino) -> (destination parent path, name).
    links: HashMap<(u64, u64), (String, Vec<u8>)>,
}

impl Writer<'_> {
    fn err(&self, what: &str, e: io::Error) -> BuildError {
        self.spec.err(format!("{what}: {e}"))
    }

    /// The innermost destination directory (the walk pushes the item root first).
    fn top(&self) -> Result<(BorrowedFd<'_>, &str), BuildError> {
        match self.stack.last() {
            Some((fd, p)) => Ok((fd.as_fd(), p)),
            None => Err(self.spec.err("internal: no destination directory")),
        }
    }

    /// Write the non-directory `src` as `name` in the directory `dir` (at `dir_path`).
    fn write_node(
        &mut self,
        src: BorrowedFd<'_>,
        st: &Stat,
        dir: BorrowedFd<'_>,
        dir_path: &str,
        name: &[u8],
        what: &str,
    ) -> Result<(), BuildError> {
        let spec = self.spec;
        let er = |e: io::Error| spec.err(format!("{what}: {e}"));
        let (uid, gid, mode) = landing(self.plan, self.spec, st);
        if clear_slot(dir, name).map_err(er)? {
            return Err(self.spec.err(format!(
                "{what}: cannot overwrite directory {dir_path}/{} with a non-directory",
                String::from_utf8_lossy(name)
            )));
        }
        let ft = file_type(st);
        let oname = OsStr::from_bytes(name);
        if ft == FileType::RegularFile && st.st_nlink > 1 {
            if let Some((p, n)) = self.links.get(&(st.st_dev, st.st_ino)) {
                let pfd = sfs::open_dir_in_root(self.root, p.as_bytes()).map_err(er)?;
                rustix::fs::linkat(&pfd, OsStr::from_bytes(n), dir, oname, AtFlags::empty())
                    .map_err(|e| er(to_io(e)))?;
                return Ok(());
            }
            self.links.insert(
                (st.st_dev, st.st_ino),
                (dir_path.to_string(), name.to_vec()),
            );
        }
        match ft {
            FileType::RegularFile => {
                let input = reopen(src, false).map_err(er)?;
                let out = rustix::fs::openat(
                    dir,
                    oname,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| er(to_io(e)))?;
                let mut out = File::from(out);
                io::copy(&mut File::from(input.try_clone().map_err(er)?), &mut out).map_err(er)?;
                finish_fd(out.as_fd(), uid, gid, mode, st).map_err(er)?;
                copy_xattrs(input.as_fd(), out.as_fd()).map_err(er)?;
                rustix::fs::futimens(&out, &times(st)).map_err(|e| er(to_io(e)))?;
            }
            FileType::Symlink => {
                let target =
                    rustix::fs::readlinkat(src, "", Vec::new()).map_err(|e| er(to_io(e)))?;
                rustix::fs::symlinkat(target.as_c_str(), dir, oname).map_err(|e| er(to_io(e)))?;
                rustix::fs::chownat(
                    dir,
                    oname,
                    Some(Uid::from_raw(uid)),
                    Some(Gid::from_raw(gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| er(to_io(e)))?;
                rustix::fs::utimensat(dir, oname, &times(st), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| er(to_io(e)))?;
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                rustix::fs::mknodat(dir, oname, ft, Mode::from_raw_mode(0o600), st.st_rdev)
                    .map_err(|e| er(to_io(e)))?;
                rustix::fs::chownat(
                    dir,
                    oname,
                    Some(Uid::from_raw(uid)),
                    Some(Gid::from_raw(gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| er(to_io(e)))?;
                sfs::chmod_nofollow(dir, name, mode).map_err(er)?;
                rustix::fs::utimensat(dir, oname, &times(st), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| er(to_io(e)))?;
            }
            // Sockets are not copied (Docker skips them too).
            _ => {}
        }
        Ok(())
    }

    /// Set owner, mode, xattrs and times of a directory from its source.
    fn dir_meta(
        &self,
        src: BorrowedFd<'_>,
        st: &Stat,
        dst: BorrowedFd<'_>,
        what: &str,
    ) -> Result<(), BuildError> {
        let er = |e: io::Error| self.err(what, e);
        let (uid, gid, mode) = landing(self.plan, self.spec, st);
        finish_fd(dst, uid, gid, mode, st).map_err(er)?;
        if let Ok(rd) = reopen(src, true) {
            copy_xattrs(rd.as_fd(), dst).map_err(er)?;
        }
        rustix::fs::futimens(dst, &times(st)).map_err(|e| er(to_io(e)))
    }
}

fn finish_fd(fd: BorrowedFd<'_>, uid: u32, gid: u32, mode: u32, _st: &Stat) -> io::Result<()> {
    chown_fd(fd, uid, gid)?;
    // After chown, which clears set-id bits.
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode)).map_err(to_io)
}

impl Visit for Writer<'_> {
    fn enter(&mut self, e: &Entry) -> Result<(), BuildError> {
        let (dir, dir_path) = self.top()?;
        let dir_path = dir_path.to_string();
        let name = e
            .sub
            .rsplit('/')
            .next()
            .unwrap_or(e.sub)
            .as_bytes()
            .to_vec();
        let er = |err: io::Error| self.err(e.rel, err);
        let dir = dir.try_clone_to_owned().map_err(er)?;
        if !clear_slot(dir.as_fd(), &name).map_err(er)? {
            rustix::fs::mkdirat(&dir, OsStr::from_bytes(&name), Mode::from_raw_mode(0o700))
                .map_err(|x| er(to_io(x)))?;
        }
        let sub = sfs::open_subdir(dir.as_fd(), &name).map_err(er)?;
        let path = format!(
            "{}/{}",
            dir_path.trim_end_matches('/'),
            String::from_utf8_lossy(&name)
        );
        self.stack.push((sub, path));
        Ok(())
    }

    fn leave(&mut self, e: &Entry) -> Result<(), BuildError> {
        if e.sub.is_empty() {
            return Ok(());
        }
        match self.stack.pop() {
            Some((fd, _)) => self.dir_meta(e.fd, e.st, fd.as_fd(), e.rel),
            None => Err(self.spec.err("internal: directory left twice")),
        }
    }

    fn node(&mut self, e: &Entry) -> Result<(), BuildError> {
        let (dir, dir_path) = self.top()?;
        let dir_path = dir_path.to_string();
        let dir = dir.try_clone_to_owned().map_err(|x| self.err(e.rel, x))?;
        let name = e
            .sub
            .rsplit('/')
            .next()
            .unwrap_or(e.sub)
            .as_bytes()
            .to_vec();
        self.write_node(e.fd, e.st, dir.as_fd(), &dir_path, &name, e.rel)
    }
}

pub(super) fn parent_and_name(abs: &str) -> (String, String) {
    match abs.rsplit_once('/') {
        Some((p, n)) => (
            if p.is_empty() {
                "/".into()
            } else {
                p.to_string()
            },
            n.to_string(),
        ),
        None => ("/".into(), abs.to_string()),
    }
}

/// Where a non-directory source named `name` lands: (parent directory, file name).
pub(super) fn file_target(
    plan: &Plan,
    spec: &CopySpec,
    root: BorrowedFd<'_>,
    name: &str,
) -> (String, String) {
    let into_dir = plan.dest_is_dir
        || sfs::open_dir_in_root(root, plan.dest.trim_start_matches('/').as_bytes()).is_ok();
    if into_dir {
        let full = format!("{}/{}", plan.dest.trim_end_matches('/'), name);
        let (p, n) = parent_and_name(&full);
        let _ = spec;
        (p, n)
    } else {
        parent_and_name(&plan.dest)
    }
}

/// Copy every item of `plan` into `root`.
pub(super) fn run(plan: &Plan, spec: &CopySpec, root: BorrowedFd<'_>) -> Result<(), BuildError> {
    let owner = spec.chown.unwrap_or((0, 0));
    let mut w = Writer {
        plan,
        spec,
        root,
        stack: Vec::new(),
        links: HashMap::new(),
    };
    for item in &plan.items {
        match item {
            Item::Path { rel, name, fd, st } => {
                let ft = file_type(st);
                if ft == FileType::Directory {
                    let target = if spec.parents && name != "." {
                        format!("{}/{}", plan.dest.trim_end_matches('/'), name)
                    } else {
                        plan.dest.clone()
                    };
                    // The destination directory itself is not the source directory: when
                    // missing it is created 0755 (owned by --chown), as buildah does; an
                    // existing one is left as it is.
                    let (dfd, _) =
                        ensure_dir(root, &target, owner).map_err(|e| w.err(&target, e))?;
                    w.stack.push((dfd, target.clone()));
                    walk(plan, spec, fd.as_fd(), st, rel, &mut w)?;
                    w.stack.pop();
                } else if let Some(kind) =
                    add::local_archive(plan, spec, fd.as_fd(), st).map_err(|e| w.err(rel, e))?
                {
                    let (dfd, _) =
                        ensure_dir(root, &plan.dest, owner).map_err(|e| w.err(&plan.dest, e))?;
                    add::extract(spec, rel, fd.as_fd(), kind, dfd.as_fd())?;
                } else {
                    let (parent, fname) = file_target(plan, spec, root, name);
                    let (dfd, _) =
                        ensure_dir(root, &parent, owner).map_err(|e| w.err(&parent, e))?;
                    w.write_node(fd.as_fd(), st, dfd.as_fd(), &parent, fname.as_bytes(), rel)?;
                }
            }
            Item::Heredoc { name, content } => {
                let (parent, fname) = file_target(plan, spec, root, name);
                let (dfd, _) = ensure_dir(root, &parent, owner).map_err(|e| w.err(&parent, e))?;
                let mode = spec
                    .chmod
                    .as_ref()
                    .map(|c| c.apply(0o644, false))
                    .unwrap_or(0o644);
                write_bytes(dfd.as_fd(), &fname, content.as_bytes(), owner, mode, None)
                    .map_err(|e| w.err(&format!("<<{name}"), e))?;
            }
            Item::Url { url } => add::url(plan, spec, root, url, owner)?,
        }
    }
    Ok(())
}

/// Write `data` as the new file `name` in `dir`.
pub(super) fn write_file(
    dir: BorrowedFd<'_>,
    name: &str,
    src: &mut dyn io::Read,
    owner: (u32, u32),
    mode: u32,
    mtime: Option<i64>,
) -> io::Result<()> {
    if clear_slot(dir, name.as_bytes())? {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{name} is a directory"),
        ));
    }
    let out = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(to_io)?;
    let mut out = File::from(out);
    io::copy(src, &mut out)?;
    chown_fd(out.as_fd(), owner.0, owner.1)?;
    rustix::fs::fchmod(&out, Mode::from_raw_mode(mode)).map_err(to_io)?;
    if let Some(t) = mtime {
        let ts = Timespec {
            tv_sec: t,
            tv_nsec: 0,
        };
        rustix::fs::futimens(
            &out,
            &Timestamps {
                last_access: ts,
                last_modification: ts,
            },
        )
        .map_err(to_io)?;
    }
    Ok(())
}

fn write_bytes(
    dir: BorrowedFd<'_>,
    name: &str,
    data: &[u8],
    owner: (u32, u32),
    mode: u32,
    mtime: Option<i64>,
) -> io::Result<()> {
    write_file(dir, name, &mut &data[..], owner, mode, mtime)
}

/// `/proc/self/fd/N` of a directory fd, for APIs that take a path.
pub(super) fn fd_path(fd: BorrowedFd<'_>) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}
