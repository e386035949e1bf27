//! The sandbox: run ONE process from an OCI runtime spec and a rootfs directory.
//!
//! It knows nothing of images or the store. [`Container`] is the lifecycle
//! (create → start → wait / signal → delete, see `handle`); [`run`] is the
//! foreground use of it: create, start, forward signals, proxy a pty, wait,
//! report OOM and remove the cgroup. The spec is resolved into plain values
//! (seccomp filter, capability masks, argv) by [`prepare`]: checked in the caller,
//! compiled for good in the child.
//!
//! Safety rules it keeps:
//! - safe from any caller thread: the cloned child runs only async-signal-safe
//!   system calls and then re-executes the runtime binary (`spawn`), which does
//!   the setup; nothing from the host is executed from inside the container;
//! - no process of the container runs imgctl's file on the host: the setup runs
//!   from a read-only detached bind mount of the binary (or a sealed memfd), is
//!   non-dumpable, and then `execve`s the container's own binary; the `--init`
//!   runs from a sealed in-memory copy ([`init`]); so neither `/proc/self/exe`
//!   nor `/proc/1/exe` can be opened for writing (CVE-2019-5736); the caller lives
//!   in the host PID namespace, out of the container's `/proc`;
//! - paths inside the rootfs are resolved with openat2(RESOLVE_IN_ROOT) and
//!   mounted through `/proc/self/fd/N` (CVE-2021-30465 class); the old root is
//!   detached after pivot_root;
//! - no host descriptor survives into the container: every fd above 2 is closed
//!   before `chdir` and `execve`, and the cwd is checked to be inside the new root
//!   (CVE-2024-21626).

mod caps;
mod cglimits;
pub mod cgroup;
pub mod cgstats;
mod child;
pub mod devfilter;
pub mod exec;
mod handle;
pub mod hooks;
pub mod idshift;
pub mod init;
mod mounts;
pub mod seccomp;
mod spawn;

pub use caps::{all_caps, docker_default_caps, parse_cap, ALL_CAPS};
pub use child::rlimit_resource;
pub use handle::{
    destroy_cgroup, signal_cgroup, start_created, Container, Detach, Signaller, Stdio,
};
pub use spawn::{entry as child_entry, set_runtime_binary};

use std::io::Write as _;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// Errors of the sandbox. Variants carry what failed and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the runtime spec is invalid: {reason}")]
    Spec { reason: String },
    #[error("cgroup {path}: {source}")]
    Cgroup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not supported on this host: {what}")]
    Unsupported { what: String },
    #[error("seccomp: {reason}")]
    Seccomp { reason: String },
    #[error("seccomp profile {origin}: {reason}")]
    SeccompProfile { origin: String, reason: String },
    #[error("unknown capability {name:?} (e.g. CAP_NET_ADMIN or NET_ADMIN)")]
    Capability { name: String },
    #[error("{step}: {source}")]
    Setup {
        step: String,
        source: std::io::Error,
    },
    /// The child failed before running the command; `code` is Docker's exit code
    /// (125 setup, 126 not executable, 127 not found).
    #[error("{message}")]
    Child { code: u8, message: String },
    /// An OCI hook failed (runtime-spec config.md, hooks).
    #[error("{kind} hook {}: {reason}", path.display())]
    Hook {
        kind: String,
        path: PathBuf,
        reason: String,
    },
}

impl Error {
    /// Docker-compatible exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Child { code, .. } => *code,
            _ => 125,
        }
    }
}

fn setup(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let step = step.into();
    move |source| Error::Setup { step, source }
}

fn nix_setup(step: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
    let step = step.into();
    move |e| Error::Setup {
        step,
        source: e.into(),
    }
}

/// How to run, beyond what the spec says.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where cgroupfs is mounted (`/sys/fs/cgroup`).
    pub cgroup_root: PathBuf,
    /// Run a tiny init as PID 1 that reaps zombies and forwards signals.
    pub init: bool,
    /// With a user namespace: the rootfs is already owned by the mapped ids (an
    /// [`idshift::shifted_copy`], shared and never written); the container writes
    /// to an overlay whose upper and work dirs are made under this directory,
    /// mounted inside the container's mount namespace (gone when it exits).
    pub rootfs_shifted: Option<PathBuf>,
    /// Where compiled seccomp filters are kept ([`seccomp::compile_bpf_cached`]);
    /// None compiles each time.
    pub seccomp_cache: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            init: false,
            rootfs_shifted: None,
            seccomp_cache: None,
        }
    }
}

/// How the container's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    Signaled(i32),
    /// The kernel's OOM killer ended it (exit 137, as Docker).
    OomKilled,
}

impl Outcome {
    /// The exit code imgctl ends with.
    pub fn exit_code(&self) -> u8 {
        match *self {
            Outcome::Exited(c) => (c & 0xff) as u8,
            Outcome::Signaled(s) => (128 + s).clamp(0, 255) as u8,
            Outcome::OomKilled => 137,
        }
    }
}

fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|v| v.trim() == "Y")
}

/// Everything the child needs, computed before the clone.
pub(crate) struct Prepared {
    pub spec: Spec,
    pub rootfs: PathBuf,
    pub init: bool,
    pub userns: bool,
    /// Attach an idmapped clone of the rootfs (user namespace, rootfs not shifted).
    pub idmap: bool,
    /// Dir holding `upper` and `work` of the writable overlay over a shared
    /// shifted rootfs.
    pub overlay_rw: Option<PathBuf>,
    pub netns_new: bool,
    /// A new time namespace with these offsets (`/proc/PID/timens_offsets`
    /// text): unshared by the child, which enters it at its execve.
    pub time_offsets: Option<String>,
    pub cgroupns: bool,
    pub cgroup_version: u8,
    /// (name under /sys/fs/cgroup, host directory) of the container's group.
    pub cgroup_dirs: Vec<(String, PathBuf)>,
    pub join: Vec<(nix::sched::CloneFlags, PathBuf)>,
    pub filter: Option<libseccomp::ScmpFilterContext>,
    pub caps: caps::Sets,
    pub argv: Vec<std::ffi::CString>,
    pub env: Vec<std::ffi::CString>,
    pub path_dirs: Vec<String>,
    pub pty_slave: Option<OwnedFd>,
    /// AppArmor profile and SELinux label to apply at exec.
    pub apparmor: Option<String>,
    pub selinux: Option<String>,
    /// `--init`: the sealed copy of imgctl the init runs from (close-on-exec).
    pub init_exe: Option<OwnedFd>,
    /// A container that outlives its creator (the OCI runtime CLI): waits on
    /// its exec fifo instead of the sync socket; see [`Detach`].
    pub detach: Option<spawn::DetachRequest>,
    /// The exec fifo, opened O_PATH before any namespace is joined.
    pub exec_fifo: Option<OwnedFd>,
    /// The exec fifo opened for writing, once `start` opened it: failures after
    /// that point are reported on it (the creator is gone).
    pub started: Option<OwnedFd>,
    /// The state JSON the in-container hooks get on stdin.
    pub hook_state: Vec<u8>,
    /// The seccomp filter compiled by the creator ([`seccomp::compile_bpf`]),
    /// once read from the socket (`None` before; empty: no filter).
    pub bpf: Option<Vec<u8>>,
}

fn ns_flag(t: LinuxNamespaceType) -> nix::sched::CloneFlags {
    use nix::sched::CloneFlags as C;
    match t {
        LinuxNamespaceType::Pid => C::CLONE_NEWPID,
        LinuxNamespaceType::Network => C::CLONE_NEWNET,
        LinuxNamespaceType::Mount => C::CLONE_NEWNS,
        LinuxNamespaceType::Ipc => C::CLONE_NEWIPC,
        LinuxNamespaceType::Uts => C::CLONE_NEWUTS,
        LinuxNamespaceType::User => C::CLONE_NEWUSER,
        LinuxNamespaceType::Cgroup => C::CLONE_NEWCGROUP,
        LinuxNamespaceType::Time => C::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

fn cstring(s: &str, what: &str) -> Result<std::ffi::CString, Error> {
    std::ffi::CString::new(s).map_err(|_| Error::Spec {
        reason: format!("{what} contains a NUL byte: {s:?}"),
    })
}

/// Resolve the spec into the plain values the child uses. `with_filter`: also
/// compile the seccomp filter (the child does; the caller only validates).
pub(crate) fn prepare(
    spec: &Spec,
    rootfs: &Path,
    opts: &Options,
    with_filter: bool,
) -> Result<(Prepared, nix::sched::CloneFlags), Error> {
    let process = spec.process().as_ref().ok_or_else(|| Error::Spec {
        reason: "no process".into(),
    })?;
    let args = process.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(Error::Spec {
            reason: "process.args is empty: no command to run".into(),
        });
    }
    let linux = spec.linux().clone().unwrap_or_default();

    // Namespaces: new ones are created by clone; ones with a path are joined.
    let mut clone_flags = nix::sched::CloneFlags::empty();
    let mut join = Vec::new();
    for ns in linux.namespaces().iter().flatten() {
        let f = ns_flag(ns.typ());
        match ns.path() {
            Some(p) => join.push((f, p.clone())),
            None => clone_flags |= f,
        }
    }
    let cgroupns = clone_flags.contains(nix::sched::CloneFlags::CLONE_NEWCGROUP);
    clone_flags.remove(nix::sched::CloneFlags::CLONE_NEWCGROUP);
    // CLONE_NEWTIME (0x80) lies in clone()'s exit-signal byte: it cannot be
    // passed to clone, and its offsets must be written before any process is
    // in it. The child unshares it and writes them (see child.rs).
    let newtime = nix::sched::CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);
    let time_offsets = clone_flags.contains(newtime).then(|| {
        let mut text = String::new();
        for (clock, off) in linux.time_offsets().iter().flatten() {
            text.push_str(&format!(
                "{clock} {} {}\n",
                off.secs().unwrap_or(0),
                off.nanosecs().unwrap_or(0)
            ));
        }
        text
    });
    clone_flags.remove(newtime);
    let userns = clone_flags.contains(nix::sched::CloneFlags::CLONE_NEWUSER);
    if !join.is_empty()
        && join
            .iter()
            .any(|(f, _)| f.contains(nix::sched::CloneFlags::CLONE_NEWUSER))
    {
        return Err(Error::Unsupported {
            what: "joining an existing user namespace".into(),
        });
    }
    if !clone_flags.contains(nix::sched::CloneFlags::CLONE_NEWNS) {
        return Err(Error::Spec {
            reason: "a mount namespace is required".into(),
        });
    }

    let caps = caps::Sets::from_spec(process.capabilities().as_ref())?;
    let filter = match linux.seccomp() {
        Some(s) if with_filter => Some(seccomp::build_filter(s)?),
        _ => None,
    };
    // LSM labels are applied at exec (child::apply_lsm); here only whether the
    // LSM is there at all, so the error comes before anything is created.
    let apparmor = process
        .apparmor_profile()
        .clone()
        .filter(|p| !p.is_empty() && p != "unconfined");
    if let Some(p) = &apparmor {
        if !apparmor_enabled() {
            return Err(Error::Unsupported {
                what: format!("apparmor profile {p:?}: AppArmor is not enabled in this kernel"),
            });
        }
    }
    let selinux = process.selinux_label().clone().filter(|l| !l.is_empty());
    if let Some(l) = &selinux {
        if !Path::new("/sys/fs/selinux/enforce").exists() {
            return Err(Error::Unsupported {
                what: format!("selinux label {l:?}: SELinux is not enabled on this host"),
            });
        }
    }
    if spec.hooks().is_some() {
        return Err(Error::Unsupported {
            what: "OCI hooks in the runtime spec".into(),
        });
    }
    let env: Vec<String> = process.env().clone().unwrap_or_default();
    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let path_dirs = path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .map(String::from)
        .collect();
    let argv = args
        .iter()
        .map(|a| cstring(a, "argument"))
        .collect::<Result<Vec<_>, _>>()?;
    let env_c = env
        .iter()
        .map(|e| cstring(e, "environment variable"))
        .collect::<Result<Vec<_>, _>>()?;

    let cgroup_version = match cgroup::Hierarchy::detect(&opts.cgroup_root)? {
        cgroup::Hierarchy::V1 { .. } => 1,
        cgroup::Hierarchy::V2 { .. } => 2,
    };
    let prepared = Prepared {
        spec: spec.clone(),
        rootfs: rootfs.to_path_buf(),
        init: opts.init,
        userns,
        idmap: userns && opts.rootfs_shifted.is_none(),
        overlay_rw: opts.rootfs_shifted.clone(),
        netns_new: clone_flags.contains(nix::sched::CloneFlags::CLONE_NEWNET),
        time_offsets,
        cgroupns,
        cgroup_version,
        cgroup_dirs: Vec::new(),
        join,
        filter,
        caps,
        argv,
        env: env_c,
        path_dirs,
        pty_slave: None,
        apparmor,
        selinux,
        init_exe: None,
        detach: None,
        exec_fifo: None,
        started: None,
        hook_state: Vec::new(),
        bpf: None,
    };
    Ok((prepared, clone_flags))
}

/// Run the spec's process in `rootfs` in the foreground and wait for it: the
/// caller's stdio (or a pty when `process.terminal`), signals forwarded, the
/// cgroup removed at the end. Built on [`Container`].
pub fn run(spec: &Spec, rootfs: &Path, opts: &Options) -> Result<Outcome, Error> {
    run_with_stdin(spec, rootfs, opts, true)
}

/// [`run`], choosing whether the container gets the caller's stdin (Docker's
/// `-i`): without it the container's stdin is `/dev/null` (or, with a pty, a
/// terminal nobody types into), so it never eats input meant for the caller.
/// A third SIGINT within [`INTERRUPT_WINDOW`] kills the container (a PID 1
/// without a handler ignores SIGINT).
pub fn run_with_stdin(
    spec: &Spec,
    rootfs: &Path,
    opts: &Options,
    stdin: bool,
) -> Result<Outcome, Error> {
    run_with_report(spec, rootfs, opts, stdin, &mut |_| Ok(())).map(|(o, _)| o)
}

/// What a foreground run used, read from its cgroup after the process was reaped
/// and before the cgroup is removed.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// `None` when the spec names no cgroup.
    pub stats: Option<cgstats::Stats>,
    pub cgroup_version: Option<u8>,
    /// From the start of the container's creation to its process reaped.
    pub took: std::time::Duration,
}

/// [`run_with_stdin`], calling `before_start(pid)` once the container is
/// created (its namespaces exist, `/proc/PID/ns/*` can be joined) and before
/// its command runs: where the caller attaches the container to a network (an
/// error from it deletes the container and is returned); also returns the final
/// figures of the container's cgroup.
pub fn run_with_report(
    spec: &Spec,
    rootfs: &Path,
    opts: &Options,
    stdin: bool,
    before_start: &mut dyn FnMut(i32) -> Result<(), Error>,
) -> Result<(Outcome, RunReport), Error> {
    run_with_hooks(spec, rootfs, opts, stdin, &mut |_| {}, before_start)
}

/// [`run_with_report`], also calling `on_clone(pid)` as soon as the process
/// exists (see [`Container::create_beside`]).
pub fn run_with_hooks(
    spec: &Spec,
    rootfs: &Path,
    opts: &Options,
    stdin: bool,
    on_clone: &mut dyn FnMut(i32),
    before_start: &mut dyn FnMut(i32) -> Result<(), Error>,
) -> Result<(Outcome, RunReport), Error> {
    let began = std::time::Instant::now();
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let sigs = forwarded_signals();
    let mut old = SigSet::empty();
    nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_BLOCK,
        Some(&sigs),
        Some(&mut old),
    )
    .map_err(nix_setup("sigprocmask"))?;
    let result = (|| {
        let stdio = if terminal {
            Stdio::Pty
        } else if stdin {
            Stdio::Inherit
        } else {
            let dup = |fd: i32| {
                // SAFETY: 1 and 2 are open for the life of the process; the copy
                // is owned here.
                let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                b.try_clone_to_owned().map_err(setup("dup stdout/stderr"))
            };
            Stdio::Fds {
                stdin: None,
                stdout: dup(1)?,
                stderr: dup(2)?,
            }
        };
        let mut c = Container::create_beside(spec, rootfs, opts, stdio, on_clone)?;
        before_start(c.pid())?;
        c.start()?;
        let pty = c.take_pty_master();
        let status = wait_loop(Pid::from_raw(c.pid()), &sigs, pty, stdin)?;
        let outcome = c.reaped(status);
        let report = RunReport {
            stats: c.stats(),
            cgroup_version: c.cgroup_version(),
            took: began.elapsed(),
        };
        if let Err(e) = c.delete() {
            tracing::warn!("{e}");
        }
        Ok((outcome, report))
    })();
    let _ = nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&old),
        None,
    );
    result
}

fn winsize_of_stdin() -> Option<nix::pty::Winsize> {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize into the pointer we pass.
    let r = unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) };
    (r == 0).then_some(ws)
}

/// The signals imgctl forwards to the container, plus SIGCHLD.
fn forwarded_signals() -> SigSet {
    let mut s = SigSet::empty();
    for sig in [
        Signal::SIGCHLD,
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGCONT,
        Signal::SIGALRM,
    ] {
        s.add(sig);
    }
    s
}

fn write_id_maps(pid: Pid, linux: &oci_spec::runtime::Linux) -> Result<(), Error> {
    let fmt = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        maps.iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    let uid = fmt(linux.uid_mappings());
    let gid = fmt(linux.gid_mappings());
    if uid.is_empty() || gid.is_empty() {
        return Err(Error::Spec {
            reason: "a user namespace needs linux.uidMappings and gidMappings".into(),
        });
    }
    let base = PathBuf::from(format!("/proc/{pid}"));
    std::fs::write(base.join("uid_map"), uid).map_err(setup("write uid_map"))?;
    std::fs::write(base.join("gid_map"), gid).map_err(setup("write gid_map"))?;
    Ok(())
}

fn send_fd(sock: &UnixStream, fd: std::os::fd::BorrowedFd<'_>) -> Result<(), Error> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut buf = SendAncillaryBuffer::new(&mut space);
    let fds = [fd];
    buf.push(SendAncillaryMessage::ScmRights(&fds));
    rustix::net::sendmsg(
        sock,
        &[std::io::IoSlice::new(b"F")],
        &mut buf,
        SendFlags::empty(),
    )
    .map_err(|e| Error::Setup {
        step: "pass the rootfs mount to the container".into(),
        source: e.into(),
    })?;
    Ok(())
}

/// Three SIGINTs within this window kill the container (Docker's rule).
pub const INTERRUPT_WINDOW: std::time::Duration = std::time::Duration::from_secs(3);

/// Counts interrupts: true when this one is the third within [`INTERRUPT_WINDOW`].
#[derive(Debug, Default)]
pub struct Interrupts {
    seen: Vec<std::time::Instant>,
}

impl Interrupts {
    pub fn third_within_window(&mut self, now: std::time::Instant) -> bool {
        self.seen
            .retain(|t| now.saturating_duration_since(*t) < INTERRUPT_WINDOW);
        self.seen.push(now);
        self.seen.len() >= 3
    }
}

fn wait_loop(
    pid: Pid,
    sigs: &SigSet,
    pty_master: Option<OwnedFd>,
    forward_stdin: bool,
) -> Result<Outcome, Error> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let sfd = SignalFd::with_flags(sigs, SfdFlags::SFD_CLOEXEC).map_err(nix_setup("signalfd"))?;
    // The host terminal goes raw only when what is typed goes to the container.
    let raw = pty_master
        .as_ref()
        .filter(|_| forward_stdin)
        .map(|m| RawTty::enter(m.as_raw_fd()));
    let mut stdin_open = pty_master.is_some() && forward_stdin;
    let mut interrupts = Interrupts::default();
    let mut buf = [0u8; 8192];
    loop {
        // Reap first: the child may have exited before the signalfd existed.
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => {
                if let Some(m) = &pty_master {
                    drain(m, &mut buf);
                }
                drop(raw);
                return Ok(Outcome::Exited(c));
            }
            Ok(WaitStatus::Signaled(_, s, _)) => {
                drop(raw);
                return Ok(Outcome::Signaled(s as i32));
            }
            Ok(_) => {}
            Err(nix::errno::Errno::ECHILD) => {
                return Err(Error::Setup {
                    step: "wait".into(),
                    source: std::io::Error::from_raw_os_error(libc::ECHILD),
                });
            }
            Err(_) => {}
        }
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let stdin = std::io::stdin();
        if let Some(m) = &pty_master {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
            if stdin_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return Err(Error::Setup {
                    step: "poll".into(),
                    source: e.into(),
                })
            }
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[0] {
            if let Ok(Some(si)) = sfd.read_signal() {
                let sig = si.ssi_signo as i32;
                if sig == libc::SIGWINCH {
                    if let (Some(m), Some(ws)) = (&pty_master, winsize_of_stdin()) {
                        // SAFETY: TIOCSWINSZ reads the winsize we pass.
                        unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
                    }
                } else if sig == libc::SIGINT
                    && interrupts.third_within_window(std::time::Instant::now())
                {
                    eprintln!("imgctl: third interrupt within 3 s: killing the container");
                    let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                } else if sig != libc::SIGCHLD {
                    if let Ok(s) = Signal::try_from(sig) {
                        let _ = nix::sys::signal::kill(pid, s);
                    }
                }
            }
        }
        if let Some(m) = &pty_master {
            if ready.get(1) == Some(&true) {
                match nix::unistd::read(m.as_raw_fd(), &mut buf) {
                    Ok(n) if n > 0 => {
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(&buf[..n]);
                        let _ = out.flush();
                    }
                    // EIO: every slave fd is closed; wait for the exit.
                    _ => {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                }
            }
            if ready.get(2) == Some(&true) {
                match nix::unistd::read(0, &mut buf) {
                    Ok(n) if n > 0 => {
                        let _ = nix::unistd::write(m, &buf[..n]);
                    }
                    _ => stdin_open = false,
                }
            }
        }
    }
}

fn drain(m: &OwnedFd, buf: &mut [u8]) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    loop {
        let mut fds = [PollFd::new(m.as_fd(), PollFlags::POLLIN)];
        if !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0) {
            return;
        }
        match nix::unistd::read(m.as_raw_fd(), buf) {
            Ok(n) if n > 0 => {
                let _ = std::io::stdout().write_all(&buf[..n]);
            }
            _ => return,
        }
    }
}

/// The host terminal in raw mode while a pty is proxied; restored on drop.
struct RawTty {
    saved: Option<nix::sys::termios::Termios>,
}

impl RawTty {
    fn enter(_master: i32) -> RawTty {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(&stdin) else {
            return RawTty { saved: None };
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &raw);
        RawTty { saved: Some(saved) }
    }
}

impl Drop for RawTty {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                t,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_docker() {
        assert_eq!(Outcome::Exited(3).exit_code(), 3);
        assert_eq!(Outcome::Signaled(9).exit_code(), 137);
        assert_eq!(Outcome::Signaled(15).exit_code(), 143);
        assert_eq!(Outcome::OomKilled.exit_code(), 137);
        assert_eq!(
            Error::Child {
                code: 127,
                message: String::new()
            }
            .exit_code(),
            127
        );
        assert_eq!(
            Error::Spec {
                reason: String::new()
            }
            .exit_code(),
            125
        );
    }
}

#[cfg(test)]
mod interrupt_tests {
    use super::Interrupts;
    use std::time::{Duration, Instant};

    #[test]
    fn only_a_third_interrupt_within_three_seconds_counts() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut i = Interrupts::default();
        assert!(!i.third_within_window(at(0)));
        assert!(!i.third_within_window(at(1000)));
        assert!(i.third_within_window(at(2900)));

        // Spread out over more than 3 s: never three in the window.
        let mut i = Interrupts::default();
        for n in 0..6 {
            assert!(!i.third_within_window(at(n * 1600)), "interrupt {n}");
        }
    }
}
