//! The child, from clone to execve. Runs in the new namespaces; reports a failure
//! to the parent as `exit-code byte + message` on the sync socket, which is
//! close-on-exec, so a clean EOF tells the parent that execve succeeded.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal};

use super::{mounts, Prepared};

/// A failure in the child: Docker's exit code and one line of text.
pub(super) struct Fail {
    pub(super) code: u8,
    pub(super) msg: String,
}

fn f125(m: impl Into<String>) -> Fail {
    Fail {
        code: 125,
        msg: m.into(),
    }
}

fn ctx<E: std::fmt::Display>(step: &'static str) -> impl FnOnce(E) -> Fail {
    move |e| f125(format!("{step}: {e}"))
}

/// Entry point after clone; never returns.
pub(super) fn main(p: &mut Prepared, sock: UnixStream) -> ! {
    let code = match setup_and_exec(p, &sock) {
        Ok(never) => match never {},
        Err(f) => {
            let mut out = Vec::with_capacity(f.msg.len() + 1);
            out.push(f.code);
            out.extend_from_slice(f.msg.as_bytes());
            // Once started through the exec fifo, the creator is gone: `start`
            // reads the report there.
            match &p.started {
                Some(fifo) => {
                    let _ = rustix::io::write(fifo, &out);
                }
                None => {
                    let _ = (&sock).write_all(&out);
                }
            }
            f.code
        }
    };
    // SAFETY: _exit skips atexit handlers and buffered I/O of the parent's copy.
    unsafe { libc::_exit(code as i32) }
}

/// With an idmapped rootfs, the parent sends its mount after the request.
fn recv_idmapped(sock: &UnixStream, idmap: bool) -> Result<Option<OwnedFd>, Fail> {
    if !idmap {
        return Ok(None);
    }
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
    .map_err(ctx("receive the rootfs mount"))?;
    for m in buf.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = m {
            if let Some(fd) = fds.next() {
                return Ok(Some(fd));
            }
        }
    }
    Err(f125("the parent sent no rootfs mount"))
}

fn setup_and_exec(p: &mut Prepared, sock: &UnixStream) -> Result<std::convert::Infallible, Fail> {
    // SAFETY: prctl with integer arguments only. Keep /proc/self/exe unreachable
    // for others (CVE-2019-5736). (The parent-death signal was set before the exec.)
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let idmapped = recv_idmapped(sock, p.idmap)?;
    if let Some(d) = &p.detach {
        // Before any namespace is joined and while still the host's root: the
        // fifo is in the runtime's 0700 state directory.
        let fd = rustix::fs::open(
            &d.exec_fifo,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| f125(format!("open the exec fifo {}: {e}", d.exec_fifo.display())))?;
        p.exec_fifo = Some(fd);
    }
    for (flag, path) in &p.join {
        let f = std::fs::File::open(path)
            .map_err(|e| f125(format!("namespace {}: {e}", path.display())))?;
        nix::sched::setns(f, *flag)
            .map_err(|e| f125(format!("join namespace {}: {e}", path.display())))?;
    }
    if let Some(offsets) = &p.time_offsets {
        // Our children and our execve enter the new namespace; the offsets are
        // written while nobody is in it yet (time_namespaces(7)).
        nix::sched::unshare(nix::sched::CloneFlags::from_bits_retain(
            libc::CLONE_NEWTIME,
        ))
        .map_err(ctx("time namespace"))?;
        std::fs::write("/proc/self/timens_offsets", offsets)
            .map_err(|e| f125(format!("time namespace offsets {offsets:?}: {e}")))?;
    }
    let pre = mounts::preopen(p).map_err(f125)?;
    if p.userns {
        nix::unistd::setresgid(0.into(), 0.into(), 0.into())
            .map_err(ctx("become root in the user namespace (gid)"))?;
        nix::unistd::setresuid(0.into(), 0.into(), 0.into())
            .map_err(ctx("become root in the user namespace (uid)"))?;
    }
    if p.cgroupns {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
            .map_err(ctx("cgroup namespace"))?;
    }
    if p.init {
        // The init loads the filter too, and closes its copy of the socket.
        receive_filter(p, sock)?;
        start_init(p, sock)?;
    }
    nix::unistd::setsid().map_err(ctx("setsid"))?;
    if let Some(slave) = &p.pty_slave {
        // SAFETY: TIOCSCTTY on a terminal fd we own.
        if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
            return Err(f125(format!(
                "set controlling terminal: {}",
                std::io::Error::last_os_error()
            )));
        }
        for target in 0..3 {
            // SAFETY: dup2 onto the standard descriptors.
            if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
                return Err(f125(format!(
                    "dup2 pty: {}",
                    std::io::Error::last_os_error()
                )));
            }
        }
    }

    if p.detach.as_ref().is_some_and(|d| d.sync_hooks) {
        // The creator sends the filter before it answers the hooks point.
        receive_filter(p, sock)?;
    }
    let mut hook_state = Vec::new();
    let detach = p.detach.clone();
    let mut before_pivot = || -> Result<(), String> {
        if let Some(d) = detach.as_ref().filter(|d| d.sync_hooks) {
            // The creator runs prestart and createRuntime now, then sends the
            // state; createContainer runs here, in the container's mount
            // namespace, before pivot_root (runtime-spec config.md).
            (&*sock)
                .write_all(&[super::spawn::HOOKS_POINT])
                .map_err(|e| format!("ask the creator to run its hooks: {e}"))?;
            hook_state = super::spawn::read_bytes(sock)?;
            super::hooks::run_all("createContainer", &d.create_container, &hook_state)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    };
    mounts::setup(p, idmapped, &pre, &mut before_pivot).map_err(f125)?;
    drop(pre);
    p.hook_state = hook_state;

    let spec = &p.spec;
    if let Some(h) = spec.hostname() {
        nix::unistd::sethostname(h).map_err(ctx("sethostname"))?;
    }
    if let Some(d) = spec.domainname() {
        // SAFETY: setdomainname reads `len` bytes from the pointer.
        if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } < 0 {
            return Err(f125(format!(
                "setdomainname: {}",
                std::io::Error::last_os_error()
            )));
        }
    }
    if p.netns_new {
        loopback_up().map_err(ctx("bring up lo"))?;
    }
    let process = spec.process().clone().unwrap_or_default();
    for rl in process.rlimits().iter().flatten() {
        let res = rlimit_resource(rl.typ());
        let lim = libc::rlimit {
            rlim_cur: rl.soft(),
            rlim_max: rl.hard(),
        };
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(res, &lim) } < 0 {
            return Err(f125(format!(
                "setrlimit {:?} {}:{}: {} (a limit cannot be raised above the current hard limit)",
                rl.typ(),
                rl.soft(),
                rl.hard(),
                std::io::Error::last_os_error()
            )));
        }
    }
    if let Some(adj) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(ctx("oom_score_adj"))?;
    }
    let cwd = process.cwd().clone();
    if !cwd.is_absolute() {
        return Err(f125(format!(
            "working directory {} is not absolute",
            cwd.display()
        )));
    }
    let user = process.user();
    if std::fs::symlink_metadata(&cwd).is_err() {
        std::fs::create_dir_all(&cwd)
            .map_err(|e| f125(format!("create working directory {}: {e}", cwd.display())))?;
        let _ = std::os::unix::fs::lchown(&cwd, Some(user.uid()), Some(user.gid()));
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        mounts::readonly_root().map_err(f125)?;
    }

    // No descriptor of the host may reach the container (CVE-2024-21626): close
    // everything but stdio and the sync socket (close-on-exec) before chdir.
    let mut keep = vec![sock.as_raw_fd() as u32];
    keep.extend(p.exec_fifo.as_ref().map(|f| f.as_raw_fd() as u32));
    keep.sort_unstable();
    crate::sys::mount::close_fds_from(3, &keep).map_err(ctx("close inherited descriptors"))?;
    nix::unistd::chdir(&cwd)
        .map_err(|e| f125(format!("chdir to working directory {}: {e}", cwd.display())))?;
    let here = nix::unistd::getcwd().map_err(ctx("getcwd"))?;
    if !here.is_absolute() || here.starts_with("(unreachable)") {
        return Err(f125(format!(
            "working directory {} is outside the container",
            cwd.display()
        )));
    }

    reset_signals();
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
        user.umask().unwrap_or(0o022) as libc::mode_t,
    ));

    receive_filter(p, sock)?;
    let nnp = process.no_new_privileges().unwrap_or(false);
    // Without no_new_privs the filter must be loaded while CAP_SYS_ADMIN is held;
    // the default profile allows the few calls that follow.
    if !nnp {
        load_seccomp(p)?;
    }
    p.caps
        .apply_bounding()
        .map_err(ctx("drop bounding capabilities"))?;
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    let groups: Vec<nix::unistd::Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&groups).map_err(ctx("setgroups"))?;
    let (uid, gid) = (
        nix::unistd::Uid::from_raw(user.uid()),
        nix::unistd::Gid::from_raw(user.gid()),
    );
    nix::unistd::setresgid(gid, gid, gid).map_err(ctx("setgid"))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(ctx("setuid"))?;
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    p.caps
        .apply_process_sets()
        .map_err(ctx("set capabilities"))?;
    if nnp {
        // SAFETY: as above.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
            return Err(f125(format!(
                "no_new_privs: {}",
                std::io::Error::last_os_error()
            )));
        }
        load_seccomp(p)?;
    }
    if p.detach.is_some() {
        // The startContainer hooks exec before the command: the LSM label
        // (consumed by the next execve) is set after them.
        wait_for_fifo(p, sock)?;
        apply_lsm(p)?;
    } else {
        apply_lsm(p)?;
        wait_for_start(sock)?;
    }
    Err(exec(p))
}

/// Created, detached: report it to the creator, then block opening the exec
/// fifo for writing (through `/proc/self/fd`: the O_PATH descriptor opened
/// before pivot_root, as runc does) until `start` opens it for reading; one
/// byte tells `start` the open returned; then the `startContainer` hooks.
fn wait_for_fifo(p: &mut Prepared, sock: &UnixStream) -> Result<(), Fail> {
    (&*sock)
        .write_all(&[0])
        .map_err(ctx("report the container created"))?;
    let Some(path_fd) = &p.exec_fifo else {
        return Err(f125("no exec fifo"));
    };
    let proc_path = format!("/proc/self/fd/{}", path_fd.as_raw_fd());
    let fifo = loop {
        match rustix::fs::open(
            proc_path.as_str(),
            rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        ) {
            Ok(f) => break f,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                return Err(f125(format!(
                    "reopen the exec fifo through {proc_path} (is /proc mounted?): {e}"
                )))
            }
        }
    };
    p.started = Some(fifo);
    if let Some(f) = &p.started {
        rustix::io::write(f, &[0]).map_err(ctx("answer on the exec fifo"))?;
    }
    p.exec_fifo = None;
    if let Some(d) = p.detach.as_ref().filter(|d| !d.start_container.is_empty()) {
        // The state the creator sent, as of now: created.
        let state = match serde_json::from_slice::<serde_json::Value>(&p.hook_state) {
            Ok(mut v) => {
                v["status"] = "created".into();
                serde_json::to_vec(&v).unwrap_or_default()
            }
            Err(_) => p.hook_state.clone(),
        };
        super::hooks::run_all("startContainer", &d.start_container, &state)
            .map_err(|e| f125(e.to_string()))?;
    }
    Ok(())
}

/// Created: tell the parent (one zero byte, never an exit code) and wait for its
/// start byte. EOF means the container was deleted before it started.
fn wait_for_start(sock: &UnixStream) -> Result<(), Fail> {
    (&*sock)
        .write_all(&[0])
        .map_err(ctx("report the container created"))?;
    let mut b = [0u8; 1];
    loop {
        match (&*sock).read(&mut b) {
            Ok(1) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // SAFETY: deleted before start: end quietly.
            _ => unsafe { libc::_exit(0) },
        }
    }
}

/// Ask the LSM to switch to the profile / label at the next execve.
fn apply_lsm(p: &Prepared) -> Result<(), Fail> {
    if let Some(profile) = &p.apparmor {
        let attr = if Path::new("/proc/self/attr/apparmor/exec").exists() {
            "/proc/self/attr/apparmor/exec"
        } else {
            "/proc/self/attr/exec"
        };
        std::fs::write(attr, format!("exec {profile}"))
            .map_err(|e| f125(format!("apparmor profile {profile:?}: {e}")))?;
    }
    if let Some(label) = &p.selinux {
        std::fs::write("/proc/self/attr/exec", label)
            .map_err(|e| f125(format!("selinux label {label:?}: {e}")))?;
    }
    Ok(())
}

fn load_seccomp(p: &Prepared) -> Result<(), Fail> {
    if let Some(f) = &p.filter {
        f.load()
            .map_err(|e| f125(format!("load seccomp filter: {e}")))?;
    }
    match p.bpf.as_deref() {
        Some(bpf) if !bpf.is_empty() => {
            super::seccomp::load_bpf(bpf).map_err(|e| f125(format!("load seccomp filter: {e}")))
        }
        Some(_) => Ok(()),
        None => Err(f125("the seccomp filter was not received")),
    }
}

/// Read the compiled seccomp filter the creator sends after the request (once).
fn receive_filter(p: &mut Prepared, sock: &UnixStream) -> Result<(), Fail> {
    if p.bpf.is_none() {
        p.bpf = Some(super::spawn::read_bytes(sock).map_err(f125)?);
    }
    Ok(())
}

/// `--init`: this process (PID 1) forks; the child goes on to become the command,
/// and this process becomes the init from a sealed copy of the binary (see
/// [`super::init`]). The exec happens here, before pivot_root, so the copy's
/// dynamic loader and libraries come from the host; pivot_root later moves the
/// init's root along with everyone else's. Returns in the child only.
fn start_init(p: &mut Prepared, sock: &UnixStream) -> Result<(), Fail> {
    let all = SigSet::all();
    let mut old = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), Some(&mut old))
        .map_err(ctx("init sigprocmask"))?;
    // The command waits for EOF on this pipe before going on.
    let (ready_rd, ready_wr) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(ctx("init pipe"))?;
    // SAFETY: single-threaded process.
    match unsafe { nix::unistd::fork() }.map_err(ctx("init fork"))? {
        nix::unistd::ForkResult::Child => {
            let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
            // SAFETY: prctl with integer arguments only.
            unsafe {
                libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                )
            };
            drop(ready_wr);
            // Wait until the init has exec'd and is non-dumpable (it then closes the
            // pipe's write end): its loader must still see the host root, so no
            // mount may happen before.
            let mut f = std::fs::File::from(ready_rd);
            let mut buf = [0u8; 1];
            while matches!(f.read(&mut buf), Ok(n) if n > 0) {}
            Ok(())
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(ready_rd);
            // SAFETY: closing our copy of the socket; the command reports on it.
            unsafe { libc::close(sock.as_raw_fd()) };
            // The init needs no privilege: no_new_privs, the container's seccomp
            // filter, and no capabilities at all (an empty bounding set, so the
            // exec as uid 0 gains none).
            // SAFETY: prctl with integer arguments only.
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            let _ = load_seccomp(p);
            let none = super::caps::Sets::default();
            let _ = none.apply_bounding();
            let _ = none.apply_process_sets();
            // Its root and cwd must be exactly the old root, so that pivot_root
            // moves them into the container; and it keeps no descriptor but the
            // ones it needs (CVE-2024-21626 class).
            let _ = nix::unistd::chdir("/");
            let mut keep = vec![ready_wr.as_raw_fd() as u32];
            keep.extend(p.init_exe.as_ref().map(|f| f.as_raw_fd() as u32));
            keep.sort_unstable();
            let _ = crate::sys::mount::close_fds_from(3, &keep);
            if let Some(memfd) = &p.init_exe {
                // The write end must survive the exec: the init closes it when ready.
                let _ = nix::fcntl::fcntl(
                    ready_wr.as_raw_fd(),
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
                );
                let e = super::init::exec_sealed(memfd, child, ready_wr.as_raw_fd());
                tracing::debug!("--init: exec of the sealed copy failed ({e}); staying in-process");
            }
            // Still imgctl's image: non-dumpable and without capabilities.
            drop(ready_wr);
            super::init::reap_and_forward(child)
        }
    }
}

fn reset_signals() {
    for sig in Signal::iterator() {
        if sig == Signal::SIGKILL || sig == Signal::SIGSTOP {
            continue;
        }
        // SAFETY: restoring default dispositions; no handler code runs here.
        let _ = unsafe { nix::sys::signal::signal(sig, SigHandler::SigDfl) };
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// The kernel's resource number for an OCI rlimit type.
pub fn rlimit_resource(t: oci_spec::runtime::PosixRlimitType) -> libc::__rlimit_resource_t {
    use oci_spec::runtime::PosixRlimitType as T;
    match t {
        T::RlimitCpu => libc::RLIMIT_CPU,
        T::RlimitFsize => libc::RLIMIT_FSIZE,
        T::RlimitData => libc::RLIMIT_DATA,
        T::RlimitStack => libc::RLIMIT_STACK,
        T::RlimitCore => libc::RLIMIT_CORE,
        T::RlimitRss => libc::RLIMIT_RSS,
        T::RlimitNproc => libc::RLIMIT_NPROC,
        T::RlimitNofile => libc::RLIMIT_NOFILE,
        T::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        T::RlimitAs => libc::RLIMIT_AS,
        T::RlimitLocks => libc::RLIMIT_LOCKS,
        T::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        T::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        T::RlimitNice => libc::RLIMIT_NICE,
        T::RlimitRtprio => libc::RLIMIT_RTPRIO,
        T::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

fn loopback_up() -> std::io::Result<()> {
    // SAFETY: plain socket/ioctl calls on a struct we own.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        let mut r = libc::ioctl(s, libc::SIOCGIFFLAGS, &mut ifr);
        if r == 0 {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            r = libc::ioctl(s, libc::SIOCSIFFLAGS, &ifr);
        }
        let e = std::io::Error::last_os_error();
        libc::close(s);
        if r < 0 {
            return Err(e);
        }
    }
    Ok(())
}

/// execve the command, searching PATH like execvp. Only returns on failure, with
/// Docker's code: 127 not found, 126 found but not executable.
fn exec(p: &Prepared) -> Fail {
    execvp(&p.argv, &p.env, &p.path_dirs)
}

/// execve `argv` with `env`, searching `path_dirs` for a bare name (also used
/// by `exec` into a running container, [`super::exec`]).
pub(super) fn execvp(argv: &[CString], env: &[CString], path_dirs: &[String]) -> Fail {
    let Some(arg0) = argv.first() else {
        return f125("no command");
    };
    let name = arg0.to_string_lossy().into_owned();
    let try_exec = |path: &CString| nix::unistd::execve(path, argv, env).unwrap_err();
    if name.contains('/') {
        let e = try_exec(arg0);
        return exec_fail(&name, e);
    }
    let mut denied = None;
    for dir in path_dirs {
        let full = Path::new(dir).join(&name);
        let Ok(c) = CString::new(full.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        match try_exec(&c) {
            nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR => {}
            nix::errno::Errno::EACCES => denied = Some(full.display().to_string()),
            e => return exec_fail(&full.display().to_string(), e),
        }
    }
    match denied {
        Some(path) => exec_fail(&path, nix::errno::Errno::EACCES),
        None => Fail {
            code: 127,
            msg: format!("exec: {name:?}: executable file not found in $PATH"),
        },
    }
}

fn exec_fail(path: &str, e: nix::errno::Errno) -> Fail {
    match e {
        nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR => Fail {
            code: 127,
            msg: format!("exec: {path:?}: no such file or directory"),
        },
        nix::errno::Errno::EACCES
        | nix::errno::Errno::ENOEXEC
        | nix::errno::Errno::EISDIR
        | nix::errno::Errno::EPERM => Fail {
            code: 126,
            msg: format!("exec: {path:?}: {}", e.desc().to_lowercase()),
        },
        e => Fail {
            code: 126,
            msg: format!("exec: {path:?}: {}", e.desc().to_lowercase()),
        },
    }
}
