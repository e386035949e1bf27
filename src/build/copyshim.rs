//! COPY/ADD until helper D's [`super::copy`] lands: plain sources (a file, a directory's
//! contents, `*`/`?` in the last component), resolved lexically inside their root
//! (`..` past the root is an error), symlinks copied as links, owner root or
//! `--chown UID[:GID]`, `--chmod` octal. The destination is resolved inside the
//! target root with openat2(RESOLVE_IN_ROOT). Used through [`copy_step`] only.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::cache::Inputs;
use super::BuildError;
use crate::sys::fs as sfs;

/// A COPY/ADD as the shim takes it.
pub struct CopyReq<'a> {
    pub at: &'a str,
    pub srcs: &'a [String],
    pub dest: &'a str,
    pub workdir: &'a str,
    pub chown: Option<(u32, u32)>,
    pub chmod: Option<u32>,
}

fn lexical_in_root(root: &Path, rel: &str, at: &str) -> Result<PathBuf, BuildError> {
    let mut parts: Vec<&str> = Vec::new();
    for c in rel.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(BuildError::Source {
                        at: at.to_string(),
                        message: format!(
                            "{rel}: outside of the build context (sources must be inside it)"
                        ),
                    });
                }
            }
            x => parts.push(x),
        }
    }
    Ok(parts.iter().fold(root.to_path_buf(), |p, c| p.join(c)))
}

fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    match (pat.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob_match(&pat[1..], s) || (!s.is_empty() && glob_match(pat, &s[1..])),
        (Some(b'?'), Some(_)) => glob_match(&pat[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob_match(&pat[1..], &s[1..]),
        _ => false,
    }
}

/// Expand sources to (path on the host, name under the destination).
fn expand(root: &Path, req: &CopyReq<'_>) -> Result<Vec<PathBuf>, BuildError> {
    let mut out = Vec::new();
    for s in req.srcs {
        let p = lexical_in_root(root, s, req.at)?;
        let name = p
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_default();
        if name.contains(&b'*') || name.contains(&b'?') {
            let dir = p.parent().unwrap_or(root);
            let mut found: Vec<PathBuf> = fs::read_dir(dir)
                .map_err(|e| BuildError::io(dir, e))?
                .flatten()
                .filter(|e| glob_match(&name, e.file_name().as_bytes()))
                .map(|e| e.path())
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(BuildError::Source {
                    at: req.at.to_string(),
                    message: format!("{s}: no source files were specified (nothing matches)"),
                });
            }
            out.extend(found);
        } else {
            if fs::symlink_metadata(&p).is_err() {
                return Err(BuildError::Source {
                    at: req.at.to_string(),
                    message: format!("{s}: not found in the build context"),
                });
            }
            out.push(p);
        }
    }
    Ok(out)
}

fn walk(p: &Path, rel: String, out: &mut Inputs) -> io::Result<()> {
    let m = fs::symlink_metadata(p)?;
    let mut d = crate::oci::Digester::new();
    d.update(format!("{:o} {}:{}\n", m.mode(), m.uid(), m.gid()).as_bytes());
    if m.file_type().is_symlink() {
        d.update(fs::read_link(p)?.as_os_str().as_bytes());
    } else if m.is_file() {
        let mut f = fs::File::open(p)?;
        io::copy(&mut f, &mut d)?;
    }
    out.insert(
        if rel.is_empty() {
            ".".into()
        } else {
            rel.clone()
        },
        d.finish().to_string(),
    );
    if m.is_dir() {
        let mut names: Vec<_> = fs::read_dir(p)?.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for n in names {
            let r = if rel.is_empty() {
                n.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", n.to_string_lossy())
            };
            walk(&p.join(&n), r, out)?;
        }
    }
    Ok(())
}

/// The inputs of a COPY: every source entry's name, mode, owner and content.
pub fn inputs(root: &Path, req: &CopyReq<'_>) -> Result<Inputs, BuildError> {
    let mut out = Inputs::new();
    for p in expand(root, req)? {
        let rel = p
            .strip_prefix(root)
            .map(|r| r.to_string_lossy().into_owned())
            .unwrap_or_default();
        walk(&p, rel, &mut out).map_err(|e| BuildError::io(&p, e))?;
    }
    Ok(out)
}

/// Create `rel` (and parents) inside `root`; returns it opened.
pub(super) fn mkdir_in_root(
    root: std::os::fd::BorrowedFd<'_>,
    rel: &str,
) -> io::Result<std::os::fd::OwnedFd> {
    let mut cur = String::new();
    for c in rel.split('/').filter(|c| !c.is_empty() && *c != ".") {
        let parent = sfs::open_dir_in_root(root, cur.as_bytes())?;
        match rustix::fs::mkdirat(parent.as_fd(), c, rustix::fs::Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(io::Error::from_raw_os_error(e.raw_os_error())),
        }
        if !cur.is_empty() {
            cur.push('/');
        }
        cur.push_str(c);
    }
    sfs::open_dir_in_root(root, cur.as_bytes())
}

fn put(
    src: &Path,
    dir: std::os::fd::BorrowedFd<'_>,
    name: &[u8],
    req: &CopyReq<'_>,
) -> io::Result<()> {
    let m = fs::symlink_metadata(src)?;
    let target = sfs::proc_path(dir, name);
    let (uid, gid) = req.chown.unwrap_or((0, 0));
    if m.is_dir() {
        match rustix::fs::mkdirat(
            dir,
            std::ffi::OsStr::from_bytes(name),
            rustix::fs::Mode::from_raw_mode(0o755),
        ) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(io::Error::from_raw_os_error(e.raw_os_error())),
        }
        let sub = sfs::open_dir_in_root(dir, name)?;
        let mut names: Vec<_> = fs::read_dir(src)?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for n in names {
            put(&src.join(&n), sub.as_fd(), n.as_bytes(), req)?;
        }
        let t = sfs::proc_path(sub.as_fd(), b"");
        fs::set_permissions(
            &t,
            fs::Permissions::from_mode(req.chmod.unwrap_or(m.mode() & 0o7777)),
        )?;
        std::os::unix::fs::lchown(&t, Some(uid), Some(gid))?;
        return Ok(());
    }
    let _ = sfs::remove_all_at(dir, name);
    if m.file_type().is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, &target)?;
    } else if m.is_file() {
        fs::copy(src, &target)?;
        fs::set_permissions(
            &target,
            fs::Permissions::from_mode(req.chmod.unwrap_or(m.mode() & 0o7777)),
        )?;
    } else {
        return Ok(());
    }
    std::os::unix::fs::lchown(&target, Some(uid), Some(gid))?;
    if !m.file_type().is_symlink() {
        let t = fs::File::options().write(true).open(&target)?;
        t.set_modified(m.modified()?)?;
    }
    Ok(())
}

/// Copy the sources of `req` from `src_root` into the root filesystem `dest_root`.
pub fn copy_step(src_root: &Path, req: &CopyReq<'_>, dest_root: &Path) -> Result<(), BuildError> {
    let srcs = expand(src_root, req)?;
    let dest = if req.dest.starts_with('/') {
        req.dest.to_string()
    } else {
        format!("{}/{}", req.workdir.trim_end_matches('/'), req.dest)
    };
    let into_dir = dest.ends_with('/')
        || srcs.len() > 1
        || req.srcs.iter().any(|s| s.contains('*') || s.contains('?'))
        || srcs.iter().any(|s| s.is_dir());
    let err = |e| BuildError::io(dest_root.join(dest.trim_start_matches('/')), e);
    let root = sfs::open_dir_path(dest_root).map_err(err)?;
    for s in &srcs {
        if into_dir {
            let d = mkdir_in_root(root.as_fd(), &dest).map_err(err)?;
            if s.is_dir()
                && !fs::symlink_metadata(s)
                    .map(|m| m.file_type().is_symlink())
                    .unwrap_or(false)
            {
                let mut names: Vec<_> = fs::read_dir(s)
                    .map_err(|e| BuildError::io(s, e))?
                    .flatten()
                    .map(|e| e.file_name())
                    .collect();
                names.sort();
                for n in names {
                    put(&s.join(&n), d.as_fd(), n.as_bytes(), req).map_err(err)?;
                }
            } else {
                let n = s
                    .file_name()
                    .map(|n| n.as_bytes().to_vec())
                    .unwrap_or_default();
                put(s, d.as_fd(), &n, req).map_err(err)?;
            }
        } else {
            let (parent, name) = dest.rsplit_once('/').unwrap_or(("", &dest));
            let d = mkdir_in_root(root.as_fd(), parent).map_err(err)?;
            put(s, d.as_fd(), name.as_bytes(), req).map_err(err)?;
        }
    }
    Ok(())
}
