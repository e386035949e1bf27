//! The container's root: mounts from the spec, the standard devices, pivot_root
//! with the old root detached, masked and read-only paths.
//!
//! Every target inside the rootfs is resolved with openat2(RESOLVE_IN_ROOT) and
//! mounted through its `/proc/self/fd/N` path, so a symlink in the image (or one
//! swapped in by another container sharing a volume) cannot send a mount outside
//! the rootfs (CVE-2021-30465, CVE-2019-19921). `/proc`, `/sys` and the other
//! kernel filesystems must be mounted on real directories (CVE-2019-16884).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::Mount;

use super::{Error, Prepared};
use crate::sys::mount::{fd_path, open_in_root, MountOptions};

/// A failure inside the child, with the step that failed.
pub(crate) type R<T> = Result<T, String>;

fn msg(step: impl std::fmt::Display, e: impl std::fmt::Display) -> String {
    format!("{step}: {e}")
}

/// Parent side of `--userns`: an idmapped clone of the rootfs for the child's user
/// namespace, so files owned by 0 on disk are owned by the container's root and
/// nothing on disk is chowned.
pub(crate) fn idmapped_rootfs(rootfs: &Path, pid: nix::unistd::Pid) -> Result<OwnedFd, Error> {
    use rustix::mount::{open_tree, OpenTreeFlags};
    let userns = std::fs::File::open(format!("/proc/{pid}/ns/user")).map_err(|e| Error::Setup {
        step: "open the container's user namespace".into(),
        source: e,
    })?;
    let tree = open_tree(
        rustix::fs::CWD,
        rootfs,
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_RECURSIVE,
    )
    .map_err(|e| Error::Setup {
        step: format!("open_tree {}", rootfs.display()),
        source: e.into(),
    })?;
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    let empty = c"";
    // SAFETY: mount_setattr reads `attr` (size given) and the empty path.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(Error::Unsupported {
            what: format!(
                "an idmapped mount of {} for the user namespace ({}); run with --userns=host",
                rootfs.display(),
                std::io::Error::last_os_error()
            ),
        });
    }
    Ok(tree)
}

/// Create `path` (and its parents) inside `root`, as a directory or an empty file.
fn mkdir_p_in_root(root: &OwnedFd, path: &Path, leaf_is_dir: bool) -> R<()> {
    use rustix::fs::{mkdirat, openat, Mode, OFlags};
    let comps: Vec<&std::ffi::OsStr> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let mut cur = PathBuf::from("/");
    for (i, c) in comps.iter().enumerate() {
        let next = cur.join(c);
        match open_in_root(root, &next, false) {
            Ok(_) => {}
            Err(rustix::io::Errno::NOENT) => {
                let parent = open_in_root(root, &cur, false).map_err(|e| msg(cur.display(), e))?;
                let last = i + 1 == comps.len();
                let r = if last && !leaf_is_dir {
                    openat(
                        &parent,
                        *c,
                        OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                        Mode::from_raw_mode(0o644),
                    )
                    .map(drop)
                } else {
                    mkdirat(&parent, *c, Mode::from_raw_mode(0o755))
                };
                match r {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(msg(format!("create {}", next.display()), e)),
                }
            }
            Err(e) => return Err(msg(format!("resolve {}", next.display()), e)),
        }
        cur = next;
    }
    Ok(())
}

fn do_mount(
    src: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> nix::Result<()> {
    mount(src, target, fstype, flags, data)
}

/// Flags the kernel locks on a mount seen from a user namespace; a remount must
/// keep them or it fails with EPERM.
fn locked_flags(path: &str) -> MsFlags {
    use nix::sys::statvfs::{statvfs, FsFlags};
    let mut f = MsFlags::empty();
    if let Ok(s) = statvfs(path) {
        let fl = s.flags();
        if fl.contains(FsFlags::ST_NOSUID) {
            f |= MsFlags::MS_NOSUID;
        }
        if fl.contains(FsFlags::ST_NODEV) {
            f |= MsFlags::MS_NODEV;
        }
        if fl.contains(FsFlags::ST_NOEXEC) {
            f |= MsFlags::MS_NOEXEC;
        }
        if fl.contains(FsFlags::ST_RDONLY) {
            f |= MsFlags::MS_RDONLY;
        }
    }
    f
}

const REMOUNT_KEEP: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC)
    .union(MsFlags::MS_NOATIME)
    .union(MsFlags::MS_NODIRATIME)
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME);

/// Refuse a mount whose destination resolved to the container's root itself (an
/// image symlink such as `/data -> /` or `/dev -> ../..`): mounted there it would be
/// stacked under the root, not where the user asked for it.
fn not_the_root(root: &OwnedFd, target: &OwnedFd, dest: &Path) -> R<()> {
    let a = rustix::fs::fstat(root).map_err(|e| msg("stat the rootfs", e))?;
    let b = rustix::fs::fstat(target).map_err(|e| msg(dest.display(), e))?;
    if a.st_dev == b.st_dev && a.st_ino == b.st_ino {
        return Err(format!(
            "mount destination {} resolves to the container's root (a symlink in the image); \
             use another destination",
            dest.display()
        ));
    }
    Ok(())
}

fn mount_one(root: &OwnedFd, m: &Mount, p: &Prepared, pre: &Preopened) -> R<()> {
    let dest = m.destination();
    if !dest.is_absolute() {
        return Err(format!(
            "mount destination {} is not absolute",
            dest.display()
        ));
    }
    let opts = MountOptions::parse(m.options().as_deref().unwrap_or(&[]));
    let typ = m.typ().clone().unwrap_or_else(|| {
        if opts.is_bind() {
            "bind".into()
        } else {
            "none".into()
        }
    });
    let where_ = |e: &dyn std::fmt::Display| format!("mount {} on {}: {e}", typ, dest.display());
    if typ == "bind" || opts.is_bind() {
        let src = m
            .source()
            .clone()
            .ok_or_else(|| format!("bind mount on {} has no source", dest.display()))?;
        let srcfd = pre
            .binds
            .iter()
            .find(|(s, _)| *s == src)
            .map(|(_, fd)| fd)
            .ok_or_else(|| format!("bind source {} was not opened", src.display()))?;
        let st =
            rustix::fs::fstat(srcfd).map_err(|e| format!("bind source {}: {e}", src.display()))?;
        let is_dir =
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory;
        mkdir_p_in_root(root, dest, is_dir)?;
        let target = open_in_root(root, dest, false).map_err(|e| where_(&e))?;
        not_the_root(root, &target, dest)?;
        // The bind is made as a detached mount (open_tree) and attached to the
        // resolved target by descriptor; the read-only remount and the propagation
        // then go to that mount through its descriptor. Resolving the destination
        // again by path would let a racing symlink swap (a shared volume) send
        // them to another mount and leave this one writable (CVE-2021-30465).
        let mut tf = rustix::mount::OpenTreeFlags::OPEN_TREE_CLONE
            | rustix::mount::OpenTreeFlags::OPEN_TREE_CLOEXEC
            | rustix::mount::OpenTreeFlags::AT_EMPTY_PATH;
        if opts.flags.contains(MsFlags::MS_REC) {
            tf |= rustix::mount::OpenTreeFlags::AT_RECURSIVE;
        }
        let tree = rustix::mount::open_tree(srcfd, "", tf).map_err(|e| where_(&e))?;
        rustix::mount::move_mount(
            &tree,
            "",
            &target,
            "",
            rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH
                | rustix::mount::MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
        )
        .map_err(|e| where_(&e))?;
        let extra = opts.flags & REMOUNT_KEEP;
        let mp = fd_path(&tree);
        if !extra.is_empty() {
            let fl = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra | locked_flags(&mp);
            do_mount(None, &mp, None, fl, None).map_err(|e| where_(&format!("remount: {e}")))?;
        }
        if !opts.propagation.is_empty() {
            do_mount(None, &mp, None, opts.propagation, None).map_err(|e| where_(&e))?;
        }
        return Ok(());
    }
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(root, dest, &opts, p);
    }
    let strict = matches!(typ.as_str(), "proc" | "sysfs" | "devpts" | "mqueue");
    mkdir_p_in_root(root, dest, true)?;
    let target = open_in_root(root, dest, strict).map_err(|e| {
        if e == rustix::io::Errno::LOOP {
            format!(
                "{typ} must be mounted on an ordinary directory, but {} is a symlink in the image",
                dest.display()
            )
        } else {
            where_(&e)
        }
    })?;
    not_the_root(root, &target, dest)?;
    let st = rustix::fs::fstat(&target).map_err(|e| where_(&e))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Directory {
        return Err(format!(
            "{typ} must be mounted on an ordinary directory, but {} is not one",
            dest.display()
        ));
    }
    let src = m
        .source()
        .as_ref()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| typ.clone());
    let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
    let tp = fd_path(&target);
    let r = do_mount(Some(&src), &tp, Some(&typ), opts.flags, data);
    match (r, typ.as_str()) {
        (Ok(()), _) => {}
        // sysfs cannot be mounted in a user namespace that does not own the network
        // namespace (--network host): bind the host's, read-only, as runc does.
        (Err(nix::errno::Errno::EPERM), "sysfs") if p.userns => {
            do_mount(
                Some("/sys"),
                &tp,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )
            .map_err(|e| where_(&e))?;
            let again = open_in_root(root, dest, true).map_err(|e| where_(&e))?;
            let ap = fd_path(&again);
            let fl =
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked_flags(&ap);
            do_mount(None, &ap, None, fl, None).map_err(|e| where_(&e))?;
        }
        (Err(e), _) => return Err(where_(&e)),
    }
    if !opts.propagation.is_empty() {
        let again = open_in_root(root, dest, strict).map_err(|e| where_(&e))?;
        do_mount(None, &fd_path(&again), None, opts.propagation, None).map_err(|e| where_(&e))?;
    }
    Ok(())
}

/// `/sys/fs/cgroup`: the container's own cgroup directories, bound read-only (for
/// v1 one per controller under a tmpfs; for v2 the one directory). Binding works
/// the same with or without a user namespace.
fn mount_cgroup(root: &OwnedFd, dest: &Path, opts: &MountOptions, p: &Prepared) -> R<()> {
    let ro = opts.is_readonly();
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mkdir_p_in_root(root, dest, true)?;
    let target = open_in_root(root, dest, true)
        .map_err(|e| msg(format!("cgroup mount {}", dest.display()), e))?;
    let bind_ro = |src: &Path, dst: &Path| -> R<()> {
        mkdir_p_in_root(root, dst, true)?;
        let t = open_in_root(root, dst, true).map_err(|e| msg(dst.display(), e))?;
        do_mount(
            Some(&src.to_string_lossy()),
            &fd_path(&t),
            None,
            MsFlags::MS_BIND,
            None,
        )
        .map_err(|e| msg(format!("bind cgroup {}", src.display()), e))?;
        if ro {
            let t2 = open_in_root(root, dst, true).map_err(|e| msg(dst.display(), e))?;
            let tp = fd_path(&t2);
            let fl = MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | base
                | locked_flags(&tp);
            do_mount(None, &tp, None, fl, None)
                .map_err(|e| msg(format!("remount cgroup {}", dst.display()), e))?;
        }
        Ok(())
    };
    if p.cgroup_version == 2 {
        if let Some((_, src)) = p.cgroup_dirs.first() {
            bind_ro(src, dest)?;
        }
        return Ok(());
    }
    do_mount(
        Some("tmpfs"),
        &fd_path(&target),
        Some("tmpfs"),
        base,
        Some("mode=755"),
    )
    .map_err(|e| msg(format!("tmpfs on {}", dest.display()), e))?;
    for (name, src) in &p.cgroup_dirs {
        bind_ro(src, &dest.join(name))?;
    }
    if ro {
        let t = open_in_root(root, dest, true).map_err(|e| msg(dest.display(), e))?;
        let tp = fd_path(&t);
        do_mount(
            None,
            &tp,
            None,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | base,
            Some("mode=755"),
        )
        .map_err(|e| msg(format!("remount {} read-only", dest.display()), e))?;
    }
    Ok(())
}

/// Standard device nodes every container gets (OCI runtime spec, "Default Devices").
const DEFAULT_DEVICES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

fn make_devices(root: &OwnedFd, p: &Prepared) -> R<()> {
    let mut list: Vec<(PathBuf, u64, u64, u32, bool)> = DEFAULT_DEVICES
        .iter()
        .map(|(n, ma, mi)| (PathBuf::from(format!("/dev/{n}")), *ma, *mi, 0o666, false))
        .collect();
    if let Some(devs) = p.spec.linux().as_ref().and_then(|l| l.devices().clone()) {
        for d in devs {
            let block = matches!(d.typ(), oci_spec::runtime::LinuxDeviceType::B);
            list.push((
                d.path().clone(),
                d.major() as u64,
                d.minor() as u64,
                d.file_mode().unwrap_or(0o666),
                block,
            ));
        }
    }
    for (path, major, minor, mode, block) in list {
        let parent = path.parent().unwrap_or(Path::new("/dev"));
        mkdir_p_in_root(root, parent, true)?;
        let pfd = open_in_root(root, parent, true).map_err(|e| msg(parent.display(), e))?;
        let Some(name) = path.file_name() else {
            continue;
        };
        if !p.userns {
            let kind = if block {
                rustix::fs::FileType::BlockDevice
            } else {
                rustix::fs::FileType::CharacterDevice
            };
            let r = rustix::fs::mknodat(
                &pfd,
                name,
                kind,
                rustix::fs::Mode::from_raw_mode(mode),
                rustix::fs::makedev(major as u32, minor as u32),
            );
            match r {
                Ok(()) => {
                    // mknod honours the umask; set the mode the spec asked for.
                    let fd = open_in_root(root, &path, true).map_err(|e| msg(path.display(), e))?;
                    let _ = rustix::fs::chmod(fd_path(&fd), rustix::fs::Mode::from_raw_mode(mode));
                    continue;
                }
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(msg(format!("mknod {}", path.display()), e)),
            }
        }
        // In a user namespace mknod is refused: bind the host's node instead.
        mkdir_p_in_root(root, &path, false)?;
        let t = open_in_root(root, &path, true).map_err(|e| msg(path.display(), e))?;
        let src = host_node(&path, major, minor, block)
            .unwrap_or_else(|| format!("/dev/{}", name.to_string_lossy()));
        do_mount(Some(&src), &fd_path(&t), None, MsFlags::MS_BIND, None)
            .map_err(|e| msg(format!("bind {src}"), e))?;
    }
    for (link, to) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
        ("/dev/ptmx", "pts/ptmx"),
    ] {
        let dev = open_in_root(root, Path::new("/dev"), true).map_err(|e| msg("/dev", e))?;
        let name = &link[5..];
        match rustix::fs::symlinkat(to, &dev, name) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(msg(format!("symlink {link}"), e)),
        }
    }
    if let Some(slave) = &p.pty_slave {
        mkdir_p_in_root(root, Path::new("/dev/console"), false)?;
        let t = open_in_root(root, Path::new("/dev/console"), true)
            .map_err(|e| msg("/dev/console", e))?;
        // The pty was opened in the parent's mount namespace; bind it by its path in
        // this namespace's copy of the host tree.
        let name = std::fs::read_link(fd_path(slave)).map_err(|e| msg("pty path", e))?;
        do_mount(
            Some(&name.to_string_lossy()),
            &fd_path(&t),
            None,
            MsFlags::MS_BIND,
            None,
        )
        .map_err(|e| msg("bind /dev/console", e))?;
    }
    Ok(())
}

/// The host's node for a device (`--device /dev/null:/dev/mynull` is named
/// differently inside): the same path when it is that device, else the first node
/// with those numbers under `/dev`.
fn host_node(path: &Path, major: u64, minor: u64, block: bool) -> Option<String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let same = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| {
            let ft = m.file_type();
            let kind = if block {
                ft.is_block_device()
            } else {
                ft.is_char_device()
            };
            kind && libc::major(m.rdev()) as u64 == major && libc::minor(m.rdev()) as u64 == minor
        })
    };
    if same(path) {
        return Some(path.to_string_lossy().into_owned());
    }
    let mut dirs = vec![PathBuf::from("/dev")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() && !t.is_symlink() && dirs.len() < 64 => dirs.push(p),
                Ok(_) if same(&p) => return Some(p.to_string_lossy().into_owned()),
                _ => {}
            }
        }
    }
    None
}

/// `/dev/null`, verified to be the real character device 1:3 before it is used
/// to mask paths (CVE-2025-31133: a swapped /dev/null would expose what it masks).
pub(crate) fn open_dev_null() -> R<OwnedFd> {
    let fd = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::NOFOLLOW,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| msg("open /dev/null", e))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| msg("stat /dev/null", e))?;
    let is_chr =
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::CharacterDevice;
    if !is_chr || rustix::fs::major(st.st_rdev) != 1 || rustix::fs::minor(st.st_rdev) != 3 {
        return Err(
            "/dev/null is not the null device (1:3); refusing to mask paths with it".into(),
        );
    }
    Ok(fd)
}

/// Build the root and pivot into it. Runs in the child, in its mount namespace.
/// Descriptors the child opens before it becomes root of its user namespace:
/// until then it still has the host's root uid for permission checks, so paths
/// under 0700 directories (a bundle, a store, a volume's parent) stay reachable;
/// afterwards everything is done through these fds, in the child's own mount
/// namespace (fds of the parent's namespace cannot be mount targets).
pub(crate) struct Preopened {
    pub rootfs: OwnedFd,
    pub overlay: Option<(OwnedFd, OwnedFd)>,
    pub binds: Vec<(PathBuf, OwnedFd)>,
}

fn open_path(path: &Path, dir: bool) -> R<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let mut fl = OFlags::PATH | OFlags::CLOEXEC;
    if dir {
        fl |= OFlags::DIRECTORY;
    }
    rustix::fs::open(path, fl, Mode::empty())
        .map_err(|e| msg(format!("open {}", path.display()), e))
}

pub(crate) fn preopen(p: &Prepared) -> R<Preopened> {
    let rootfs = open_path(&p.rootfs, true)?;
    let overlay = match &p.overlay_rw {
        Some(rw) => Some((
            open_path(&rw.join("upper"), true)?,
            open_path(&rw.join("work"), true)?,
        )),
        None => None,
    };
    let mut binds = Vec::new();
    for m in p.spec.mounts().iter().flatten() {
        let opts = MountOptions::parse(m.options().as_deref().unwrap_or(&[]));
        if m.typ().as_deref() == Some("bind") || opts.is_bind() {
            if let Some(src) = m.source() {
                if !binds.iter().any(|(s, _)| s == src) {
                    let fd = open_path(src, false).map_err(|e| format!("bind source: {e}"))?;
                    binds.push((src.clone(), fd));
                }
            }
        }
    }
    Ok(Preopened {
        rootfs,
        overlay,
        binds,
    })
}

/// `before_pivot` runs once the root and its mounts are built, before
/// pivot_root (a detached container's hooks).
pub(crate) fn setup(
    p: &Prepared,
    idmapped: Option<OwnedFd>,
    pre: &Preopened,
    before_pivot: &mut dyn FnMut() -> R<()>,
) -> R<()> {
    use rustix::mount::{move_mount, MoveMountFlags};
    let rootfs = &p.rootfs;
    // Nothing we mount may propagate back to the host.
    do_mount(None, "/", None, MsFlags::MS_REC | MsFlags::MS_SLAVE, None)
        .map_err(|e| msg("make / rslave", e))?;
    // The root becomes a mount of its own, held by a mount fd, attached over the
    // rootfs directory through the fd the parent opened: in a user namespace the
    // path to the rootfs may not be searchable (a 0700 bundle or store directory).
    let attach = |mnt: &OwnedFd, what: &str| -> R<()> {
        move_mount(
            mnt,
            "",
            &pre.rootfs,
            "",
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
        )
        .map_err(|e| msg(format!("attach the {what} on {}", rootfs.display()), e))
    };
    let root: OwnedFd = match idmapped {
        Some(tree) => {
            attach(&tree, "idmapped rootfs")?;
            tree
        }
        None => match &pre.overlay {
            Some((upper, work)) => {
                use rustix::mount::{fsconfig_create, fsconfig_set_string, fsmount, fsopen};
                use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};
                let e = |step: &str, err: rustix::io::Errno| {
                    msg(format!("overlay over the shifted rootfs: {step}"), err)
                };
                let fs =
                    fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(|x| e("fsopen", x))?;
                fsconfig_set_string(&fs, "lowerdir", fd_path(&pre.rootfs))
                    .map_err(|x| e("lowerdir", x))?;
                fsconfig_set_string(&fs, "upperdir", fd_path(upper))
                    .map_err(|x| e("upperdir", x))?;
                fsconfig_set_string(&fs, "workdir", fd_path(work)).map_err(|x| e("workdir", x))?;
                fsconfig_create(&fs).map_err(|x| e("create", x))?;
                let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
                    .map_err(|x| e("fsmount", x))?;
                attach(&mnt, "overlay")?;
                mnt
            }
            None => {
                use rustix::mount::{open_tree, OpenTreeFlags};
                let tree = open_tree(
                    &pre.rootfs,
                    "",
                    OpenTreeFlags::OPEN_TREE_CLONE
                        | OpenTreeFlags::OPEN_TREE_CLOEXEC
                        | OpenTreeFlags::AT_RECURSIVE
                        | OpenTreeFlags::AT_EMPTY_PATH,
                )
                .map_err(|e| msg(format!("bind rootfs {}", rootfs.display()), e))?;
                attach(&tree, "rootfs bind mount")?;
                tree
            }
        },
    };
    do_mount(
        None,
        &fd_path(&root),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )
    .map_err(|e| msg("make rootfs private", e))?;
    for m in p.spec.mounts().iter().flatten() {
        mount_one(&root, m, p, pre)?;
    }
    make_devices(&root, p)?;
    before_pivot()?;

    rustix::process::fchdir(&root).map_err(|e| msg("chdir rootfs", e))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| msg("pivot_root", e))?;
    // The old root is now stacked on "."; detach it so no host path stays reachable.
    do_mount(None, ".", None, MsFlags::MS_REC | MsFlags::MS_SLAVE, None)
        .map_err(|e| msg("make old root rslave", e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| msg("detach the old root", e))?;
    nix::unistd::chdir("/").map_err(|e| msg("chdir /", e))?;

    let linux = p.spec.linux().clone().unwrap_or_default();
    // sysctls go in before /proc/sys turns read-only.
    for (k, v) in linux.sysctl().iter().flatten() {
        if k.contains("..") || k.contains('/') {
            return Err(format!("invalid sysctl name {k:?}"));
        }
        let path = format!("/proc/sys/{}", k.replace('.', "/"));
        std::fs::write(&path, v).map_err(|e| format!("sysctl {k}: {e}"))?;
    }
    // The container's own /dev/null, just created, checked before use.
    let devnull = open_dev_null()?;
    for path in linux.masked_paths().iter().flatten() {
        mask(path, &devnull)?;
    }
    for path in linux.readonly_paths().iter().flatten() {
        readonly(path)?;
    }
    Ok(())
}

fn open_nofollow(path: &str) -> R<Option<OwnedFd>> {
    use rustix::fs::{Mode, OFlags};
    match rustix::fs::open(
        path,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(msg(path, e)),
    }
}

fn mask(path: &str, devnull: &OwnedFd) -> R<()> {
    let Some(fd) = open_nofollow(path)? else {
        return Ok(());
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| msg(path, e))?;
    let tp = fd_path(&fd);
    if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory {
        do_mount(
            Some("tmpfs"),
            &tp,
            Some("tmpfs"),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("size=0"),
        )
        .map_err(|e| msg(format!("mask {path}"), e))?;
    } else {
        do_mount(Some(&fd_path(devnull)), &tp, None, MsFlags::MS_BIND, None)
            .map_err(|e| msg(format!("mask {path}"), e))?;
    }
    Ok(())
}

fn readonly(path: &str) -> R<()> {
    let Some(fd) = open_nofollow(path)? else {
        return Ok(());
    };
    let tp = fd_path(&fd);
    do_mount(
        Some(&tp),
        &tp,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(|e| msg(format!("bind {path}"), e))?;
    let Some(again) = open_nofollow(path)? else {
        return Ok(());
    };
    let ap = fd_path(&again);
    let fl = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked_flags(&ap);
    do_mount(None, &ap, None, fl, None).map_err(|e| msg(format!("remount {path} read-only"), e))?;
    Ok(())
}

/// Make `/` read-only (`root.readonly`), after the working directory exists.
pub(crate) fn readonly_root() -> R<()> {
    let fl = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked_flags("/");
    do_mount(None, "/", None, fl, None).map_err(|e| msg("remount / read-only", e))
}
