//! From the caller to the container's setup code: clone, then at once re-exec a
//! sealed copy of the runtime binary.
//!
//! The clone is made straight from the caller, whatever its thread count: the
//! child runs only async-signal-safe system calls (no allocation, no lock) until
//! it `execveat`s the runtime binary through a read-only detached mount of it
//! ([`sealed_exe`]). So a multi-threaded caller (a tokio runtime, a parallel
//! build) is safe, and the container's processes never run imgctl's file on the
//! host: their `/proc/self/exe`, before the command's own execve, is a file on a
//! read-only mount that nothing in the container can reach or remount
//! (CVE-2019-5736, also when no foreground imgctl holds the binary busy).
//!
//! The re-executed child enters through [`entry`] (argv[0] [`ARGV0`]), reads its
//! [`Request`] from the sync socket, rebuilds the plan (seccomp filter, caps,
//! argv) and runs [`super::child`]'s setup.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::OnceLock;

use oci_spec::runtime::Spec;

use super::Error;

/// argv[0] of the re-executed container setup process.
pub const ARGV0: &str = "imgctl-sandbox";

/// Upper bound of a request on the sync socket (the spec is a few kB; a seccomp
/// profile a few tens of kB).
const MAX_REQUEST: usize = 16 << 20;

/// What the re-executed child needs beyond the spec.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Request {
    pub spec: Spec,
    pub rootfs: PathBuf,
    pub init: bool,
    pub rootfs_shifted: Option<PathBuf>,
    pub cgroup_root: PathBuf,
    /// (name under /sys/fs/cgroup, host directory) of the container's group.
    pub cgroup_dirs: Vec<(String, PathBuf)>,
    /// Standard descriptors 0-2 are a pty slave: become its session leader.
    pub terminal: bool,
    /// Outlive the creator; see [`super::Detach`].
    #[serde(default)]
    pub detach: Option<DetachRequest>,
}

/// The child's part of [`super::Detach`].
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct DetachRequest {
    /// Opened for writing (blocking until `start` opens it for reading) between
    /// "created" and the command's execve.
    pub exec_fifo: PathBuf,
    /// Stop before pivot_root and let the creator run its hooks; it answers
    /// with the state JSON.
    pub sync_hooks: bool,
    pub create_container: Vec<oci_spec::runtime::Hook>,
    pub start_container: Vec<oci_spec::runtime::Hook>,
}

static RUNTIME_BINARY: OnceLock<PathBuf> = OnceLock::new();

/// Use `path` (an imgctl binary of this build) as the runtime the container's
/// setup re-executes, instead of `/proc/self/exe`. For programs other than imgctl
/// that link the library (tests); call before the first container is created.
pub fn set_runtime_binary(path: PathBuf) {
    let _ = RUNTIME_BINARY.set(path);
}

fn runtime_binary() -> PathBuf {
    RUNTIME_BINARY
        .get()
        .cloned()
        .unwrap_or_else(|| PathBuf::from("/proc/self/exe"))
}

/// The runtime binary as a read-only detached bind mount (one per process, made
/// once): executing it gives a process whose exe cannot be opened for writing
/// (EROFS) and whose mount is reachable from no mount namespace. Falls back to a
/// sealed memfd copy where open_tree is missing.
pub(super) fn sealed_exe() -> Result<RawFd, Error> {
    static EXE: OnceLock<Result<OwnedFd, String>> = OnceLock::new();
    match EXE.get_or_init(|| make_sealed_exe().map_err(|e| e.to_string())) {
        Ok(fd) => Ok(fd.as_raw_fd()),
        Err(e) => Err(Error::Unsupported {
            what: format!("a sealed copy of the runtime binary: {e}"),
        }),
    }
}

fn make_sealed_exe() -> Result<OwnedFd, Error> {
    use rustix::mount::{open_tree, OpenTreeFlags};
    let path = runtime_binary();
    let tree = match open_tree(
        rustix::fs::CWD,
        &path,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    ) {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!("open_tree {}: {e}; using a memfd copy", path.display());
            return super::init::sealed_copy_of(&path);
        }
    };
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_NOSUID: u64 = 0x2;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads `attr` (size given) and the empty path.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        tracing::debug!(
            "mount_setattr on the runtime binary: {}; using a memfd copy",
            std::io::Error::last_os_error()
        );
        return super::init::sealed_copy_of(&path);
    }
    // Keep it above the standard descriptors so the child's dup2s never hit it.
    dup_high(tree.as_raw_fd())
}

/// A close-on-exec duplicate of `fd` numbered 3 or higher.
pub(super) fn dup_high(fd: RawFd) -> Result<OwnedFd, Error> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor we then own.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if r < 0 {
        return Err(Error::Setup {
            step: "dup a descriptor".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: r is a new descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// Everything the cloned child uses before its exec, computed in the caller so the
/// child allocates nothing.
pub(super) struct PreExec {
    pub exe: RawFd,
    pub sock: RawFd,
    /// Sources for descriptors 0, 1, 2 (all >= 3); None keeps the inherited one.
    pub stdio: [Option<RawFd>; 3],
    pub deathsig: bool,
    pub userns: bool,
    /// Cgroup files the child writes `0` to, to join its cgroup itself
    /// (`Cgroup::self_join_files`; at most [`MAX_JOIN`]).
    pub cgroup_join: Vec<RawFd>,
    argv: [CString; 2],
}

/// At most this many cgroup files are joined by the child itself (one per v1
/// controller); any more are left to the creator's `cgroup.procs` write.
pub(super) const MAX_JOIN: usize = 12;

impl PreExec {
    pub fn new(
        exe: RawFd,
        sock: RawFd,
        stdio: [Option<RawFd>; 3],
        userns: bool,
        detached: bool,
    ) -> PreExec {
        // The parent-death signal follows the creating *thread*: only the main
        // thread (the CLI) asks for it; a worker thread may end before the
        // container, and a detached container outlives its creator.
        let deathsig = !detached && nix::unistd::gettid() == nix::unistd::getpid();
        PreExec {
            exe,
            sock,
            stdio,
            deathsig,
            userns,
            cgroup_join: Vec::new(),
            argv: [
                CString::new(ARGV0).unwrap_or_default(),
                CString::new(sock.to_string()).unwrap_or_default(),
            ],
        }
    }
}

/// The child after clone. Async-signal-safe only: raw system calls on values
/// prepared by the caller. Never returns.
pub(super) fn pre_exec(x: &PreExec) -> ! {
    // SAFETY: raw system calls with integer arguments and pointers into `x`,
    // which the caller keeps alive (this is a copy of its memory).
    unsafe {
        let fail = |msg: &[u8]| -> ! {
            let mut out = [0u8; 160];
            out[0] = 125;
            let n = msg.len().min(out.len() - 1);
            out[1..1 + n].copy_from_slice(&msg[..n]);
            libc::write(x.sock, out.as_ptr().cast(), n + 1);
            libc::_exit(125)
        };
        // Nothing else of the caller's, from the start: above all no lock it
        // holds (an owner lock must be free the moment the caller dies), not its
        // end of our socket (EOF when it dies), no other container's socket.
        close_all_but(
            &[
                Some(x.sock),
                Some(x.exe),
                x.stdio[0],
                x.stdio[1],
                x.stdio[2],
            ],
            &x.cgroup_join,
        );
        if x.deathsig {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
        }
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        // Wait until the caller has written the id maps and moved us into the cgroup.
        let mut b = 0u8;
        loop {
            let r = libc::read(x.sock, (&mut b as *mut u8).cast(), 1);
            if r == 1 {
                break;
            }
            if r < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            libc::_exit(125);
        }
        // Into the container's cgroup, before anything else: each file gets `0`
        // (this thread, and we have no other), which spares the kernel's global
        // threadgroup lock and its RCU grace period (`Cgroup::self_join_files`).
        for fd in &x.cgroup_join {
            if libc::write(*fd, c"0".as_ptr().cast(), 1) != 1 {
                fail(b"join the container's cgroup");
            }
            libc::close(*fd);
        }
        if x.userns {
            // Still host uid 0, which the new user namespace may not map: the exec
            // would drop the namespace's capabilities. Keep them as ambient ones
            // (the setup clears them again); the uid stays the host's, so the
            // setup can still open what only host root may (a 0700 bundle dir).
            if let Err(msg) = keep_caps_across_exec() {
                fail(msg);
            }
        }
        // After the credential change, which clears it.
        if x.deathsig {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
        }
        for (target, src) in x.stdio.iter().enumerate() {
            if let Some(src) = src {
                if libc::dup2(*src, target as libc::c_int) < 0 {
                    fail(b"set up the container's standard descriptors");
                }
            }
        }
        if libc::fcntl(x.sock, libc::F_SETFD, 0) < 0 {
            fail(b"keep the sync socket across exec");
        }
        let argv: [*const libc::c_char; 3] =
            [x.argv[0].as_ptr(), x.argv[1].as_ptr(), std::ptr::null()];
        let envp: [*const libc::c_char; 1] = [std::ptr::null()];
        libc::syscall(
            libc::SYS_execveat,
            x.exe,
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
        fail(b"exec the sealed copy of the runtime binary")
    }
}

/// Close every descriptor from 3 up except `keep`. Async-signal-safe (no
/// allocation: the list is sorted in place on the stack).
fn close_all_but(keep: &[Option<RawFd>; 5], more: &[RawFd]) {
    let mut k = [libc::c_int::MAX; 5 + MAX_JOIN];
    let mut n = 0;
    let more = &more[..more.len().min(MAX_JOIN)];
    for fd in keep.iter().flatten().chain(more) {
        if *fd >= 3 && !k[..n].contains(fd) {
            k[n] = *fd;
            n += 1;
        }
    }
    k[..n].sort_unstable();
    let mut first = 3;
    for &fd in &k[..n] {
        if first < fd {
            // SAFETY: close_range with plain integers.
            unsafe { libc::syscall(libc::SYS_close_range, first as u32, (fd - 1) as u32, 0u32) };
        }
        first = fd + 1;
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, first as u32, u32::MAX, 0u32) };
}

/// Make every permitted capability inheritable and ambient. Async-signal-safe.
///
/// # Safety
/// Raw system calls only.
unsafe fn keep_caps_across_exec() -> Result<(), &'static [u8]> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut hdr = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    if libc::syscall(libc::SYS_capget, &mut hdr as *mut Header, data.as_mut_ptr()) < 0 {
        return Err(b"capget before exec");
    }
    for d in data.iter_mut() {
        d.inheritable = d.permitted;
    }
    if libc::syscall(libc::SYS_capset, &mut hdr as *mut Header, data.as_ptr()) < 0 {
        return Err(b"make the capabilities inheritable before exec");
    }
    for cap in 0..64u32 {
        let word = data[(cap / 32) as usize].permitted;
        if word & (1 << (cap % 32)) != 0
            && libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                cap as libc::c_ulong,
                0,
                0,
            ) < 0
        {
            return Err(b"keep the capabilities across exec");
        }
    }
    Ok(())
}

/// The byte the creator sends once the child is in its cgroup (after the
/// request; the child waits for it before its setup).
pub(super) const IN_CGROUP: u8 = b'C';

/// The byte a detached container's setup sends when its namespaces and mounts
/// exist (before pivot_root): the creator runs its hooks, then answers with
/// the state JSON ([`send_bytes`]).
pub(super) const HOOKS_POINT: u8 = 1;

/// Upper bound of the state JSON sent to the setup process.
const MAX_STATE: usize = 1 << 20;

/// Send `data`, length-prefixed.
pub(super) fn send_bytes(sock: &UnixStream, data: &[u8]) -> Result<(), Error> {
    let mut msg = Vec::with_capacity(data.len() + 4);
    msg.extend_from_slice(&(data.len() as u32).to_le_bytes());
    msg.extend_from_slice(data);
    (&*sock)
        .write_all(&msg)
        .map_err(super::setup("send the state to the container"))
}

/// Read what [`send_bytes`] sent.
pub(super) fn read_bytes(sock: &UnixStream) -> Result<Vec<u8>, String> {
    let mut len = [0u8; 4];
    (&*sock)
        .read_exact(&mut len)
        .map_err(|e| format!("read the state: {e}"))?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_STATE {
        return Err(format!("state of {len} bytes is too large"));
    }
    let mut body = vec![0u8; len];
    (&*sock)
        .read_exact(&mut body)
        .map_err(|e| format!("read the state: {e}"))?;
    Ok(body)
}

/// Send the request, length-prefixed.
pub(super) fn send_request(sock: &UnixStream, req: &Request) -> Result<(), Error> {
    let body = serde_json::to_vec(req).map_err(|e| Error::Spec {
        reason: format!("serialize the runtime spec: {e}"),
    })?;
    let mut msg = Vec::with_capacity(body.len() + 4);
    msg.extend_from_slice(&(body.len() as u32).to_le_bytes());
    msg.extend_from_slice(&body);
    (&*sock)
        .write_all(&msg)
        .map_err(super::setup("send the spec to the container"))
}

fn read_request(sock: &UnixStream) -> Result<Request, String> {
    let mut len = [0u8; 4];
    (&*sock)
        .read_exact(&mut len)
        .map_err(|e| format!("read the spec: {e}"))?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_REQUEST {
        return Err(format!("spec of {len} bytes is too large"));
    }
    let mut body = vec![0u8; len];
    (&*sock)
        .read_exact(&mut body)
        .map_err(|e| format!("read the spec: {e}"))?;
    serde_json::from_slice(&body).map_err(|e| format!("parse the spec: {e}"))
}

/// Called first by `cli::main`: when this process is the re-executed container
/// setup, run it and never return; otherwise return at once.
pub fn entry() {
    let mut args = std::env::args_os();
    if args.next().is_none_or(|a| a != ARGV0) {
        return;
    }
    // SAFETY: prctl with integer arguments only. The exec made us dumpable again.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let fd = args
        .next()
        .and_then(|a| a.to_str().and_then(|s| s.parse::<RawFd>().ok()))
        .filter(|fd| *fd > 2 && nix::fcntl::fcntl(*fd, nix::fcntl::FcntlArg::F_GETFD).is_ok());
    let Some(fd) = fd else {
        eprintln!(
            "imgctl-sandbox: internal entry point of the container runtime, not for direct use"
        );
        std::process::exit(125)
    };
    // SAFETY: the descriptor was passed to us by number and is open (checked).
    let sock = unsafe { UnixStream::from_raw_fd(fd) };
    let _ = nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    let prepared = read_request(&sock).and_then(|req| {
        // The seccomp filter comes compiled from the creator (later, on the socket).
        let (mut p, _) = super::prepare(
            &req.spec,
            &req.rootfs,
            &super::Options {
                cgroup_root: req.cgroup_root.clone(),
                init: req.init,
                rootfs_shifted: req.rootfs_shifted.clone(),
                seccomp_cache: None,
            },
            false,
        )
        .map_err(|e| e.to_string())?;
        p.cgroup_dirs = req.cgroup_dirs;
        p.detach = req.detach;
        if req.terminal {
            p.pty_slave = Some(super::spawn::dup_high(0).map_err(|e| e.to_string())?);
        }
        if req.init {
            p.init_exe = Some(super::init::sealed_copy().map_err(|e| e.to_string())?);
        }
        Ok(p)
    });
    // Nothing of the container's happens before the creator has moved us into
    // its cgroup (the parsing and the filter above are the runtime's own work).
    let prepared = prepared.and_then(|p| {
        let mut b = [0u8; 1];
        match (&sock).read_exact(&mut b) {
            Ok(()) if b[0] == IN_CGROUP => Ok(p),
            Ok(()) => Err(format!("unexpected sync byte {} from the creator", b[0])),
            Err(e) => Err(format!("wait for the cgroup: {e}")),
        }
    });
    match prepared {
        Ok(mut p) => super::child::main(&mut p, sock),
        Err(msg) => {
            let mut out = vec![125u8];
            out.extend_from_slice(msg.as_bytes());
            let _ = (&sock).write_all(&out);
            std::process::exit(125)
        }
    }
}
