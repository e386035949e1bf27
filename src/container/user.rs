//! `USER` / `-u user[:group]` resolved against the image's `/etc/passwd` and
//! `/etc/group`, read inside the rootfs with openat2(RESOLVE_IN_ROOT) so a
//! symlinked `/etc/passwd` cannot point outside the image (CVE-2024-9676 class).

use std::io::Read;
use std::path::Path;

use super::Error;

/// The identity the process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

/// Largest id accepted: ids are signed 32-bit in many tools, and 4294967295 is
/// the kernel's "no change" value (CVE-2024-40635: a wrapped id must never become 0).
const MAX_ID: u64 = i32::MAX as u64;

/// Largest `/etc/passwd` or `/etc/group` read from an image (a hostile image
/// could make either one huge); glibc-based distributions ship a few KiB.
pub const MAX_ID_FILE: u64 = 4 << 20;

fn numeric(s: &str) -> Option<Result<u32, ()>> {
    if s.is_empty()
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'-' || b == b'+')
    {
        return None;
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Err(()));
    }
    Some(match s.parse::<u64>() {
        Ok(v) if v <= MAX_ID => Ok(v as u32),
        _ => Err(()),
    })
}

/// Read a file of the image, resolved inside `rootfs`; a missing file is `None`.
///
/// The host does this open, so the image must not be able to make it block or
/// reach a host object: symlinks resolve inside the root (RESOLVE_IN_ROOT, no
/// magic links), the open never blocks (O_NONBLOCK: a FIFO would otherwise wait
/// for a writer forever), and only a regular file of at most [`MAX_ID_FILE`]
/// bytes is read (a device node is refused before any read).
pub fn read_in_root(rootfs: &Path, path: &str) -> Result<Option<String>, Error> {
    use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
    let shown = rootfs.join(path.trim_start_matches('/'));
    let io = |e: std::io::Error| Error::Io {
        path: shown.clone(),
        source: e,
    };
    let root = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io(e.into()))?;
    let fd = match crate::sys::fs::openat2(
        std::os::fd::AsFd::as_fd(&root),
        path.trim_start_matches('/'),
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(io(e.into())),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| io(e.into()))?;
    let refuse = |reason: String| Error::ImageFile {
        path: path.to_string(),
        reason,
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(refuse("not a regular file".into()));
    }
    if st.st_size as u64 > MAX_ID_FILE {
        return Err(refuse(format!("larger than {MAX_ID_FILE} bytes")));
    }
    let mut f = std::fs::File::from(fd);
    let mut buf = Vec::new();
    // The file may grow after fstat: read one byte past the cap to notice.
    (&mut f)
        .take(MAX_ID_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(io)?;
    if buf.len() as u64 > MAX_ID_FILE {
        return Err(refuse(format!("larger than {MAX_ID_FILE} bytes")));
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

fn passwd_entries(text: &str) -> Vec<Passwd> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            let uid = numeric(f[2])?.ok()?;
            let gid = numeric(f[3])?.ok()?;
            Some(Passwd {
                name: f[0].to_string(),
                uid,
                gid,
                home: f[5].to_string(),
            })
        })
        .collect()
}

struct Group {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn group_entries(text: &str) -> Vec<Group> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            let gid = numeric(f[2])?.ok()?;
            let members = f[3]
                .split(',')
                .filter(|m| !m.is_empty())
                .map(String::from)
                .collect();
            Some(Group {
                name: f[0].to_string(),
                gid,
                members,
            })
        })
        .collect()
}

/// Resolve `user[:group]` (names or numbers; empty means root).
pub fn resolve(spec: &str, rootfs: &Path) -> Result<Identity, Error> {
    let bad = |reason: &str| Error::User {
        user: spec.to_string(),
        reason: reason.to_string(),
    };
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read_in_root(rootfs, "/etc/passwd")?
        .map(|t| passwd_entries(&t))
        .unwrap_or_default();
    let groups = read_in_root(rootfs, "/etc/group")?
        .map(|t| group_entries(&t))
        .unwrap_or_default();

    let (uid, mut gid, name, home) = match numeric(u) {
        _ if u.is_empty() => (0, 0, Some("root".to_string()), "/root".to_string()),
        Some(Ok(uid)) => {
            // A number is a uid, never a name; its passwd line (if any) gives the group.
            let e = passwd.iter().find(|p| p.uid == uid);
            (
                uid,
                e.map(|p| p.gid).unwrap_or(0),
                e.map(|p| p.name.clone()),
                e.map(|p| p.home.clone()).unwrap_or("/".into()),
            )
        }
        Some(Err(())) => return Err(bad("a numeric uid must be between 0 and 2147483647")),
        None => {
            let e = passwd
                .iter()
                .find(|p| p.name == u)
                .ok_or_else(|| bad("no such user in the image's /etc/passwd"))?;
            (e.uid, e.gid, Some(e.name.clone()), e.home.clone())
        }
    };
    if let Some(g) = g {
        gid = match numeric(g) {
            Some(Ok(n)) => n,
            Some(Err(())) => return Err(bad("a numeric gid must be between 0 and 2147483647")),
            None => groups
                .iter()
                .find(|x| x.name == g)
                .map(|x| x.gid)
                .ok_or_else(|| bad("no such group in the image's /etc/group"))?,
        };
    }
    let mut additional = Vec::new();
    if g.is_none() {
        if let Some(n) = &name {
            for gr in groups.iter().filter(|gr| gr.members.iter().any(|m| m == n)) {
                if gr.gid != gid && !additional.contains(&gr.gid) {
                    additional.push(gr.gid);
                }
            }
        }
    }
    Ok(Identity {
        uid,
        gid,
        additional_gids: additional,
        home: if home.is_empty() { "/".into() } else { home },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\n1000:x:0:0:tricky:/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nwww:x:33:\nadm:x:4:www\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn names_and_numbers() {
        let r = rootfs();
        let id = resolve("www", r.path()).unwrap();
        assert_eq!(
            (id.uid, id.gid, id.additional_gids.clone(), id.home.as_str()),
            (33, 33, vec![4], "/var/www")
        );
        assert_eq!(resolve("www:adm", r.path()).unwrap().gid, 4);
        assert_eq!(resolve("33:0", r.path()).unwrap().gid, 0);
        assert_eq!(resolve("", r.path()).unwrap().uid, 0);
        // 1000 is a uid, not the user named "1000" (whose uid is 0).
        let id = resolve("1000", r.path()).unwrap();
        assert_eq!((id.uid, id.gid), (1000, 0));
    }

    #[test]
    fn hostile_ids_rejected_never_root() {
        let r = rootfs();
        for u in [
            "2147483648",
            "4294967295",
            "-1",
            "18446744073709551616123",
            "0:4294967295",
        ] {
            assert!(
                matches!(resolve(u, r.path()), Err(Error::User { .. })),
                "{u}"
            );
        }
        assert!(resolve("nobody", r.path()).is_err());
    }

    #[test]
    fn symlinked_passwd_stays_inside() {
        let r = rootfs();
        std::fs::remove_file(r.path().join("etc/passwd")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("passwd"), "evil:x:0:0::/:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink(outside.path().join("passwd"), r.path().join("etc/passwd"))
            .unwrap();
        // Resolved inside the rootfs, the absolute target does not exist there.
        assert!(resolve("evil", r.path()).is_err());
    }

    /// Run `resolve` on another thread so a hang shows up as a failure, not a stuck test.
    fn resolve_within(spec: &str, root: &Path) -> Result<Identity, Error> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (spec, root) = (spec.to_string(), root.to_path_buf());
        std::thread::spawn(move || {
            let _ = tx.send(resolve(&spec, &root));
        });
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .expect("resolve hung on the image's /etc/passwd")
    }

    #[test]
    fn fifo_passwd_is_refused_without_hanging() {
        let r = rootfs();
        std::fs::remove_file(r.path().join("etc/passwd")).unwrap();
        nix::unistd::mkfifo(
            &r.path().join("etc/passwd"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let err = resolve_within("www", r.path()).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        // A FIFO /etc/group as well, even for a numeric user.
        let r = rootfs();
        std::fs::remove_file(r.path().join("etc/group")).unwrap();
        nix::unistd::mkfifo(
            &r.path().join("etc/group"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        assert!(resolve_within("33", r.path()).is_err());
    }

    #[test]
    fn device_and_directory_passwd_refused() {
        let r = rootfs();
        std::fs::remove_file(r.path().join("etc/passwd")).unwrap();
        std::fs::create_dir(r.path().join("etc/passwd")).unwrap();
        let err = resolve_within("0", r.path()).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        if !nix::unistd::geteuid().is_root() {
            return; // mknod of a device needs root; the FIFO and directory cases cover the check.
        }
        let r = rootfs();
        std::fs::remove_file(r.path().join("etc/passwd")).unwrap();
        // /dev/null's numbers: opening it on the host would succeed and read nothing.
        nix::sys::stat::mknod(
            &r.path().join("etc/passwd"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .unwrap();
        let err = resolve_within("", r.path()).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn oversized_passwd_refused() {
        let r = rootfs();
        let f = std::fs::File::create(r.path().join("etc/passwd")).unwrap();
        f.set_len(MAX_ID_FILE + 1).unwrap();
        let err = resolve_within("www", r.path()).unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
    }
}
