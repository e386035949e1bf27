//! Mount options as values, and the few mount-related syscalls the sandbox uses.
//!
//! [`MountOptions::parse`] turns the option strings of an OCI runtime-spec mount
//! (`["nosuid", "ro", "mode=755"]`) into flags, a propagation change and the
//! filesystem data string, without touching the kernel, so it is unit-tested.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::mount::MsFlags;

/// An OCI mount's options split the way mount(2) wants them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags for the first mount(2) call.
    pub flags: MsFlags,
    /// Flags cleared explicitly (`rw`, `suid`, ...); kept for remounts.
    pub cleared: MsFlags,
    /// Propagation to apply after mounting (`rprivate`, `shared`, ...).
    pub propagation: MsFlags,
    /// Filesystem-specific data (`mode=755,size=65536k`).
    pub data: String,
}

impl MountOptions {
    /// True when this is a bind mount (`bind` or `rbind`).
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    /// True when the mount must end read-only.
    pub fn is_readonly(&self) -> bool {
        self.flags.contains(MsFlags::MS_RDONLY)
    }

    /// Split option strings. Unknown options are passed to the filesystem as data,
    /// as runc and crun do.
    pub fn parse<S: AsRef<str>>(options: &[S]) -> MountOptions {
        let mut o = MountOptions {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: MsFlags::empty(),
            data: String::new(),
        };
        for opt in options {
            let opt = opt.as_ref();
            let (set, clear, prop) = match opt {
                "ro" => (MsFlags::MS_RDONLY, MsFlags::empty(), MsFlags::empty()),
                "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY, MsFlags::empty()),
                "bind" => (MsFlags::MS_BIND, MsFlags::empty(), MsFlags::empty()),
                "rbind" => (
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    MsFlags::empty(),
                    MsFlags::empty(),
                ),
                "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty(), MsFlags::empty()),
                "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID, MsFlags::empty()),
                "nodev" => (MsFlags::MS_NODEV, MsFlags::empty(), MsFlags::empty()),
                "dev" => (MsFlags::empty(), MsFlags::MS_NODEV, MsFlags::empty()),
                "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty(), MsFlags::empty()),
                "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC, MsFlags::empty()),
                "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty(), MsFlags::empty()),
                "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
                "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty(), MsFlags::empty()),
                "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME, MsFlags::empty()),
                "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty(), MsFlags::empty()),
                "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty(), MsFlags::empty()),
                "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty(), MsFlags::empty()),
                "mand" | "nomand" | "defaults" => {
                    (MsFlags::empty(), MsFlags::empty(), MsFlags::empty())
                }
                "private" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_PRIVATE),
                "rprivate" => (
                    MsFlags::empty(),
                    MsFlags::empty(),
                    MsFlags::MS_PRIVATE | MsFlags::MS_REC,
                ),
                "shared" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SHARED),
                "rshared" => (
                    MsFlags::empty(),
                    MsFlags::empty(),
                    MsFlags::MS_SHARED | MsFlags::MS_REC,
                ),
                "slave" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SLAVE),
                "rslave" => (
                    MsFlags::empty(),
                    MsFlags::empty(),
                    MsFlags::MS_SLAVE | MsFlags::MS_REC,
                ),
                "unbindable" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_UNBINDABLE),
                "runbindable" => (
                    MsFlags::empty(),
                    MsFlags::empty(),
                    MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
                ),
                other => {
                    if !o.data.is_empty() {
                        o.data.push(',');
                    }
                    o.data.push_str(other);
                    continue;
                }
            };
            o.flags.insert(set);
            o.flags.remove(clear);
            o.cleared.insert(clear);
            o.propagation.insert(prop);
        }
        o
    }
}

/// The `/proc/self/fd/N` path of an open file: mounting on it targets exactly the
/// inode the fd refers to, so a path swapped after the check cannot redirect the
/// mount (CVE-2021-30465).
pub fn fd_path(fd: impl AsFd) -> String {
    use std::os::fd::AsRawFd;
    format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())
}

/// Open `path` inside `root` for use as a mount target or source: every component,
/// symlinks included, is resolved as if `root` were `/` (openat2 RESOLVE_IN_ROOT).
/// With `no_symlinks`, any symlink on the way is an error (ELOOP), which is what
/// `/proc` and `/sys` targets need (CVE-2019-16884, CVE-2023-28642).
pub fn open_in_root(
    root: impl AsFd,
    path: &Path,
    no_symlinks: bool,
) -> rustix::io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let mut resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    if no_symlinks {
        resolve |= ResolveFlags::NO_SYMLINKS;
    }
    // The kernel answers EAGAIN when a rename or mount elsewhere raced with a
    // RESOLVE_IN_ROOT walk and it cannot vouch for the result; a new walk is safe.
    super::fs::openat2(
        root.as_fd(),
        rel,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        resolve,
    )
}

/// Close every descriptor from `first` up, except those in `keep` (which must be
/// sorted). Used right before exec so no host fd reaches the container
/// (CVE-2024-21626).
pub fn close_fds_from(first: u32, keep: &[u32]) -> std::io::Result<()> {
    let mut lo = first;
    for &k in keep {
        if k < lo {
            continue;
        }
        if k > lo {
            close_range(lo, k - 1)?;
        }
        lo = k + 1;
    }
    close_range(lo, u32::MAX)
}

fn close_range(lo: u32, hi: u32) -> std::io::Result<()> {
    // SAFETY: close_range only closes descriptors; callers own every fd in range.
    let r = unsafe { libc::syscall(libc::SYS_close_range, lo, hi, 0u32) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags_propagation_and_data() {
        let o = MountOptions::parse(&[
            "nosuid", "noexec", "rbind", "ro", "rprivate", "mode=755", "size=64k",
        ]);
        assert!(o.is_bind() && o.is_readonly());
        assert!(o
            .flags
            .contains(MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_REC));
        assert_eq!(o.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(o.data, "mode=755,size=64k");
    }

    #[test]
    fn later_option_wins() {
        let o = MountOptions::parse(&["ro", "rw"]);
        assert!(!o.is_readonly());
        assert!(o.cleared.contains(MsFlags::MS_RDONLY));
    }
}
