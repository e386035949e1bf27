//! Run one more process in a running container (`imgctl exec`): join every
//! namespace of its first process, its cgroup, then take the container's
//! identity (user, groups, capabilities, no_new_privs, seccomp, LSM label)
//! and execve.
//!
//! The PID and time namespaces apply to children only, so the caller joins
//! them itself (`setns` sets `pid_for_children`) and forks; the child joins
//! the cgroup (by the host path, before the mount namespace hides it), then the
//! user namespace first and the others after it, and sets itself up as the
//! container's init did. The caller must be single-threaded (a CLI process):
//! the child allocates before its execve. A failure before the execve comes
//! back on a close-on-exec pipe as `exit-code byte + message` (126/127 as
//! Docker); EOF means the command runs.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxSeccomp, Process};

use super::child::{execvp, Fail};
use super::{cgroup, nix_setup, setup, Error, Outcome};

/// What to run and as whom.
pub struct ExecRequest<'a> {
    /// Host pid of the container's first process.
    pub pid: i32,
    /// args, env, cwd, user, capabilities, noNewPrivileges, LSM labels.
    pub process: &'a Process,
    pub seccomp: Option<&'a LinuxSeccomp>,
    /// The container's cgroup (`linux.cgroupsPath`) and cgroupfs root.
    pub cgroup: Option<(&'a Path, &'a Path)>,
    /// Give the command the caller's stdin (else `/dev/null`).
    pub stdin: bool,
    /// A new pty for the command (its controlling terminal).
    pub tty: bool,
    /// Do not wait: the command goes on alone, its output to `/dev/null`.
    pub detach: bool,
}

const NAMESPACES: [(&str, CloneFlags); 8] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("time", CloneFlags::from_bits_retain(libc::CLONE_NEWTIME)),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// The container's namespaces that differ from ours, in joining order (user
/// first, mount last).
fn namespaces(pid: i32) -> Result<Vec<(&'static str, CloneFlags, OwnedFd)>, Error> {
    let mut out = Vec::new();
    for (name, flag) in NAMESPACES {
        let theirs = PathBuf::from(format!("/proc/{pid}/ns/{name}"));
        let ours = PathBuf::from(format!("/proc/self/ns/{name}"));
        let (Ok(a), Ok(b)) = (std::fs::metadata(&theirs), std::fs::metadata(&ours)) else {
            continue; // not supported by this kernel
        };
        if a.ino() == b.ino() && a.dev() == b.dev() {
            continue;
        }
        let f =
            std::fs::File::open(&theirs).map_err(setup(format!("open {}", theirs.display())))?;
        out.push((name, flag, OwnedFd::from(f)));
    }
    Ok(out)
}

fn cstrings(v: &[String], what: &str) -> Result<Vec<CString>, Error> {
    v.iter()
        .map(|s| {
            CString::new(s.as_bytes()).map_err(|_| Error::Spec {
                reason: format!("{what} {s:?} contains a NUL byte"),
            })
        })
        .collect()
}

/// In the container's mount namespace: a new pty from its `/dev/ptmx`; the
/// master goes to the caller over `sock`, the slave is returned.
fn open_pty_here(sock: &UnixStream, ws: Option<&nix::pty::Winsize>) -> std::io::Result<OwnedFd> {
    use nix::fcntl::OFlag;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    nix::pty::grantpt(&master)?;
    nix::pty::unlockpt(&master)?;
    let name = nix::pty::ptsname_r(&master)?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY,
        nix::sys::stat::Mode::empty(),
    )?;
    // SAFETY: a new descriptor from open.
    let slave = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(slave) };
    if let Some(ws) = ws {
        // SAFETY: TIOCSWINSZ reads the winsize we pass.
        unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, ws as *const _) };
    }
    // SAFETY: the master's descriptor is valid while `master` lives.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(master.as_raw_fd()) };
    super::send_fd(sock, fd).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(slave)
}

fn recv_fd(sock: &UnixStream) -> Option<OwnedFd> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut buf = RecvAncillaryBuffer::new(&mut space);
    let mut b = [0u8; 1];
    rustix::net::recvmsg(
        sock,
        &mut [std::io::IoSliceMut::new(&mut b)],
        &mut buf,
        RecvFlags::CMSG_CLOEXEC,
    )
    .ok()?;
    let mut found = None;
    for m in buf.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = m {
            found = found.or(fds.next());
        }
    }
    found
}

/// Run the command in the container; its outcome (or, detached, `Exited(0)`
/// once it runs).
pub fn exec(req: &ExecRequest<'_>) -> Result<Outcome, Error> {
    let p = req.process;
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(Error::Spec {
            reason: "no command to exec".into(),
        });
    }
    let env: Vec<String> = p.env().clone().unwrap_or_default();
    let path_dirs: Vec<String> = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .split(':')
        .filter(|d| !d.is_empty())
        .map(String::from)
        .collect();
    let argv = cstrings(&args, "argument")?;
    let envp = cstrings(&env, "environment variable")?;
    let caps = super::caps::Sets::from_spec(p.capabilities().as_ref())?;
    let filter = match req.seccomp {
        Some(s) => Some(super::seccomp::build_filter(s)?),
        None => None,
    };
    let group = match req.cgroup {
        Some((path, root)) => Some(cgroup::Hierarchy::detect(root)?.group(path)),
        None => None,
    };
    let ns = namespaces(req.pid)?;
    // PID and time namespaces: for our children.
    for (_, flag, fd) in &ns {
        if flag.contains(CloneFlags::CLONE_NEWPID) || flag.bits() == libc::CLONE_NEWTIME {
            nix::sched::setns(fd.as_fd(), *flag).map_err(nix_setup("join the pid namespace"))?;
        }
    }
    // With a tty the child opens the pty in the container's devpts (so the
    // command can name its terminal, /dev/pts/N) and sends the master back.
    let winsize = super::winsize_of_stdin();
    let pty_sock = if req.tty {
        Some(UnixStream::pair().map_err(setup("socketpair"))?)
    } else {
        None
    };
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(nix_setup("pipe"))?;
    let user = p.user();
    let cwd = p.cwd().clone();
    let nnp = p.no_new_privileges().unwrap_or(false);
    let apparmor = p.apparmor_profile().clone();
    let selinux = p.selinux_label().clone();
    // SAFETY: the caller is single-threaded (see the module docs).
    let fork = unsafe { nix::unistd::fork() }.map_err(nix_setup("fork"))?;
    let child = match fork {
        nix::unistd::ForkResult::Child => {
            drop(rd);
            let fail = (|| -> Fail {
                let f125 = |m: String| Fail { code: 125, msg: m };
                if let Some(g) = &group {
                    if let Err(e) = g.add_pid(std::process::id() as i32) {
                        return f125(format!("join the container's cgroup: {e}"));
                    }
                }
                for (name, flag, fd) in &ns {
                    if flag.contains(CloneFlags::CLONE_NEWPID) || flag.bits() == libc::CLONE_NEWTIME
                    {
                        continue;
                    }
                    if let Err(e) = nix::sched::setns(fd.as_fd(), *flag) {
                        return f125(format!("join the container's {name} namespace: {e}"));
                    }
                }
                drop(ns);
                // Standard descriptors.
                if let Some((_, theirs)) = &pty_sock {
                    let slave = match open_pty_here(theirs, winsize.as_ref()) {
                        Ok(s) => s,
                        Err(e) => return f125(format!("open a pty in the container: {e}")),
                    };
                    let _ = nix::unistd::setsid();
                    // SAFETY: ioctl on the pty slave we own.
                    unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) };
                    for fd in 0..3 {
                        // SAFETY: dup2 onto the standard descriptors.
                        unsafe { libc::dup2(slave.as_raw_fd(), fd) };
                    }
                } else if req.detach || !req.stdin {
                    if let Ok(null) = std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open("/dev/null")
                    {
                        let upto = if req.detach { 3 } else { 1 };
                        for fd in 0..upto {
                            // SAFETY: as above.
                            unsafe { libc::dup2(null.as_raw_fd(), fd) };
                        }
                    }
                }
                if req.detach && pty_sock.is_none() {
                    let _ = nix::unistd::setsid();
                }
                drop(pty_sock);
                // No host descriptor reaches the container (CVE-2024-21626).
                if let Err(e) = crate::sys::mount::close_fds_from(3, &[wr.as_raw_fd() as u32]) {
                    return f125(format!("close inherited descriptors: {e}"));
                }
                if let Err(e) = nix::unistd::chdir(&cwd) {
                    return f125(format!("chdir to {}: {e}", cwd.display()));
                }
                match nix::unistd::getcwd() {
                    Ok(h) if h.is_absolute() && !h.starts_with("(unreachable)") => {}
                    _ => {
                        return f125(format!(
                            "working directory {} is outside the container",
                            cwd.display()
                        ))
                    }
                }
                if !nnp {
                    if let Some(f) = &filter {
                        if let Err(e) = f.load() {
                            return f125(format!("load seccomp filter: {e}"));
                        }
                    }
                }
                if let Err(e) = caps.apply_bounding() {
                    return f125(format!("drop bounding capabilities: {e}"));
                }
                // SAFETY: prctl with integer arguments only.
                unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
                let groups: Vec<nix::unistd::Gid> = user
                    .additional_gids()
                    .iter()
                    .flatten()
                    .map(|g| nix::unistd::Gid::from_raw(*g))
                    .collect();
                if let Err(e) = nix::unistd::setgroups(&groups) {
                    return f125(format!("setgroups: {e}"));
                }
                let (uid, gid) = (
                    nix::unistd::Uid::from_raw(user.uid()),
                    nix::unistd::Gid::from_raw(user.gid()),
                );
                if let Err(e) = nix::unistd::setresgid(gid, gid, gid) {
                    return f125(format!("setgid: {e}"));
                }
                if let Err(e) = nix::unistd::setresuid(uid, uid, uid) {
                    return f125(format!("setuid: {e}"));
                }
                // SAFETY: as above.
                unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
                if let Err(e) = caps.apply_process_sets() {
                    return f125(format!("set capabilities: {e}"));
                }
                if nnp {
                    // SAFETY: as above.
                    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
                        return f125("no_new_privs".into());
                    }
                    if let Some(f) = &filter {
                        if let Err(e) = f.load() {
                            return f125(format!("load seccomp filter: {e}"));
                        }
                    }
                }
                if let Some(profile) = &apparmor {
                    if let Err(e) =
                        std::fs::write("/proc/self/attr/exec", format!("exec {profile}"))
                    {
                        return f125(format!("apparmor profile {profile:?}: {e}"));
                    }
                }
                if let Some(label) = &selinux {
                    if let Err(e) = std::fs::write("/proc/self/attr/exec", label) {
                        return f125(format!("selinux label {label:?}: {e}"));
                    }
                }
                execvp(&argv, &envp, &path_dirs)
            })();
            let mut msg = vec![fail.code];
            msg.extend_from_slice(fail.msg.as_bytes());
            let _ = nix::unistd::write(&wr, &msg);
            // SAFETY: leave the forked child without running the parent's atexit.
            unsafe { libc::_exit(fail.code as i32) };
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop(wr);
    let master = match pty_sock {
        Some((ours, theirs)) => {
            drop(theirs);
            recv_fd(&ours)
        }
        None => None,
    };
    let mut report = Vec::new();
    let _ = std::fs::File::from(rd).read_to_end(&mut report);
    if let Some((&code, msg)) = report.split_first() {
        let _ = nix::sys::wait::waitpid(child, None);
        return Err(Error::Child {
            code,
            message: String::from_utf8_lossy(msg).into_owned(),
        });
    }
    if req.detach {
        return Ok(Outcome::Exited(0));
    }
    let sigs = super::forwarded_signals();
    let mut old = nix::sys::signal::SigSet::empty();
    nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_BLOCK,
        Some(&sigs),
        Some(&mut old),
    )
    .map_err(nix_setup("sigprocmask"))?;
    let r = super::wait_loop(Pid::from_raw(child.as_raw()), &sigs, master, req.stdin);
    let _ = nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&old),
        None,
    );
    r
}
