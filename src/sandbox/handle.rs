//! The container as a handle: create → start → wait / signal → delete.
//!
//! [`Container::create`] makes the cgroup, clones the child into its namespaces
//! (see [`super::spawn`]: safe from any thread), writes its id maps, moves it into
//! the cgroup and lets it build its root; the child then waits, set up, before
//! the command's execve. [`Container::start`] lets it exec. The process is a
//! child of the calling process, so [`Container::wait`] reaps it; signals go
//! through a pidfd, so a recycled pid is never hit. Dropping the handle (or
//! [`Container::delete`]) kills what is left, reaps it and removes the cgroup.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::signal::SigSet;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use super::spawn::{self, dup_high, PreExec, Request};
use super::{cgroup, mounts, prepare, setup, Error, Options, Outcome};

/// Where the container's standard descriptors 0, 1 and 2 come from.
#[derive(Debug)]
pub enum Stdio {
    /// The caller's own 0, 1 and 2.
    Inherit,
    /// `/dev/null` for all three.
    Null,
    /// Given descriptors (pipes, log files, sockets); no stdin is `/dev/null`.
    Fds {
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// A new pseudo-terminal: the container's controlling terminal on 0, 1, 2; the
    /// master end is kept in the handle ([`Container::take_pty_master`]).
    Pty,
}

/// A container that outlives the process creating it, as an OCI runtime's
/// `create` makes: no parent-death signal, and once set up the process waits
/// for its start on `exec_fifo` (opened for writing through `/proc/self/fd`,
/// which blocks until [`start_created`] opens it for reading, as runc's
/// `exec.fifo`), not on the creator's socket. After [`Container::detach`] the
/// creator may exit; whoever reaps orphans reaps the container.
pub struct Detach<'a> {
    /// A FIFO the caller made (mode 0622 in a 0700 directory).
    pub exec_fifo: PathBuf,
    /// Run in the container's mount namespace before pivot_root.
    pub create_container: Vec<oci_spec::runtime::Hook>,
    /// Run in the container after start, before the command's execve.
    pub start_container: Vec<oci_spec::runtime::Hook>,
    /// Called in the creator with the container's pid once its namespaces and
    /// mounts exist, before its pivot_root (the runtime's `prestart` and
    /// `createRuntime` hooks); returns the state JSON the in-container hooks
    /// read. Called only when `sync_hooks`.
    pub on_namespaces: &'a mut dyn FnMut(i32) -> Result<Vec<u8>, Error>,
    pub sync_hooks: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Created,
    Running,
    Exited(Outcome),
}

/// A container's process and cgroup. `Send`: create it on one thread, wait for it
/// on another.
#[derive(Debug)]
pub struct Container {
    pid: i32,
    pidfd: Option<OwnedFd>,
    sock: Option<UnixStream>,
    state: State,
    /// (hierarchy, cgroup path) when the spec names a cgroup.
    cgroup: Option<(cgroup::Hierarchy, PathBuf)>,
    pty_master: Option<OwnedFd>,
    /// Cleaned up already (by `delete`).
    done: bool,
}

fn io_last(step: &str) -> Error {
    Error::Setup {
        step: step.into(),
        source: std::io::Error::last_os_error(),
    }
}

impl Container {
    /// Create the container: cgroup, namespaces, root filesystem, identity; the
    /// process waits before running the command until [`Container::start`].
    pub fn create(
        spec: &Spec,
        rootfs: &Path,
        opts: &Options,
        stdio: Stdio,
    ) -> Result<Container, Error> {
        Container::create_inner(spec, rootfs, opts, stdio, None, None)
    }

    /// [`Container::create`], calling `on_clone(pid)` as soon as the process
    /// exists (its namespaces too) and while it still builds its root: work
    /// that needs only the namespaces (a network attach) can run beside the
    /// set-up instead of after it. `pid` is an unreaped child here, so it
    /// names this container for as long as `on_clone` runs.
    pub fn create_beside(
        spec: &Spec,
        rootfs: &Path,
        opts: &Options,
        stdio: Stdio,
        on_clone: &mut dyn FnMut(i32),
    ) -> Result<Container, Error> {
        Container::create_inner(spec, rootfs, opts, stdio, None, Some(on_clone))
    }

    /// [`Container::create`] for a container that outlives its creator; see
    /// [`Detach`]. Start it with [`start_created`], from any process.
    pub fn create_detached(
        spec: &Spec,
        rootfs: &Path,
        opts: &Options,
        stdio: Stdio,
        detach: Detach<'_>,
    ) -> Result<Container, Error> {
        Container::create_inner(spec, rootfs, opts, stdio, Some(detach), None)
    }

    fn create_inner(
        spec: &Spec,
        rootfs: &Path,
        opts: &Options,
        stdio: Stdio,
        mut detach: Option<Detach<'_>>,
        on_clone: Option<&mut dyn FnMut(i32)>,
    ) -> Result<Container, Error> {
        let (p, clone_flags) = prepare(spec, rootfs, opts, false)?;
        let linux = spec.linux().clone().unwrap_or_default();
        let exe = spawn::sealed_exe()?;

        // Standard descriptors: sources numbered 3 or higher, kept open until the
        // clone has its copies.
        let mut sources: Vec<OwnedFd> = Vec::new();
        let mut pty_master = None;
        let terminal = matches!(stdio, Stdio::Pty);
        let srcs: [Option<RawFd>; 3] = match stdio {
            Stdio::Inherit => [None; 3],
            Stdio::Null => {
                let null = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/null")
                    .map_err(setup("open /dev/null"))?;
                let null = dup_high(null.as_raw_fd())?;
                let fd = null.as_raw_fd();
                sources.push(null);
                [Some(fd); 3]
            }
            Stdio::Fds {
                stdin,
                stdout,
                stderr,
            } => {
                let stdin = match stdin {
                    Some(f) => f,
                    None => std::fs::File::open("/dev/null")
                        .map_err(setup("open /dev/null"))?
                        .into(),
                };
                let mut out = [None; 3];
                for (i, f) in [stdin, stdout, stderr].into_iter().enumerate() {
                    let h = dup_high(f.as_raw_fd())?;
                    out[i] = Some(h.as_raw_fd());
                    sources.push(h);
                }
                out
            }
            Stdio::Pty => {
                let ws = super::winsize_of_stdin();
                let pty =
                    nix::pty::openpty(ws.as_ref(), None).map_err(super::nix_setup("openpty"))?;
                let slave = dup_high(pty.slave.as_raw_fd())?;
                let fd = slave.as_raw_fd();
                sources.push(slave);
                pty_master = Some(pty.master);
                [Some(fd); 3]
            }
        };

        let hierarchy = cgroup::Hierarchy::detect(&opts.cgroup_root)?;
        let mut c = Container {
            pid: 0,
            pidfd: None,
            sock: None,
            state: State::Created,
            cgroup: linux.cgroups_path().clone().map(|p| (hierarchy, p)),
            pty_master,
            done: false,
        };
        let mut cgroup_dirs = Vec::new();
        if let Some(g) = c.group() {
            g.create(linux.resources().as_ref())?;
            cgroup_dirs = g.mount_sources();
        }

        let (sock, child_end) = UnixStream::pair().map_err(setup("socketpair"))?;
        let child_sock = dup_high(child_end.as_raw_fd())?;
        drop(child_end);
        let mut pre = PreExec::new(
            exe,
            child_sock.as_raw_fd(),
            srcs,
            p.userns,
            detach.is_some(),
        );
        // The child joins its cgroup itself where it can (v1), first thing
        // after the clone; the creator moves it into the rest.
        let join_files = c.group().map(|g| g.self_join_files()).unwrap_or_default();
        let mut join = Vec::new();
        if join_files.len() <= spawn::MAX_JOIN {
            for f in &join_files {
                let fd = std::fs::OpenOptions::new()
                    .write(true)
                    .open(f)
                    .map_err(|e| Error::Cgroup {
                        path: f.clone(),
                        source: e,
                    })?;
                join.push(OwnedFd::from(fd));
            }
        }
        pre.cgroup_join = join.iter().map(|f| f.as_raw_fd()).collect();
        let child_joined = !join.is_empty();

        // All signals blocked in this thread across the clone: the child must run
        // no handler before its exec (the mask is restored here at once).
        let mut old = SigSet::empty();
        nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_BLOCK,
            Some(&SigSet::all()),
            Some(&mut old),
        )
        .map_err(super::nix_setup("sigprocmask"))?;
        // SAFETY: a raw clone without CLONE_VM behaves like fork with namespace
        // flags; the child only runs `pre_exec`, which is async-signal-safe, so
        // this is sound from a multi-threaded process too.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_clone,
                (clone_flags.bits() as libc::c_long) | libc::SIGCHLD as libc::c_long,
                0,
                0,
                0,
                0,
            )
        };
        if ret == 0 {
            spawn::pre_exec(&pre);
        }
        let clone_err = std::io::Error::last_os_error();
        let _ = nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_SETMASK,
            Some(&old),
            None,
        );
        drop(child_sock);
        drop(sources);
        drop(join);
        if ret < 0 {
            return Err(Error::Setup {
                step: "clone".into(),
                source: clone_err,
            });
        }
        c.pid = ret as i32;
        // SAFETY: pidfd_open on our own unreaped child.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, c.pid, 0) };
        if pidfd >= 0 {
            // SAFETY: a new descriptor.
            c.pidfd = Some(unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) });
        }

        // From here on, an error drops `c`: the child is killed and reaped and
        // the cgroup removed.
        if p.userns {
            super::write_id_maps(Pid::from_raw(c.pid), &linux)?;
        }
        (&sock)
            .write_all(b"G")
            .map_err(setup("sync with the container"))?;
        spawn::send_request(
            &sock,
            &Request {
                spec: spec.clone(),
                rootfs: rootfs.to_path_buf(),
                init: opts.init,
                rootfs_shifted: opts.rootfs_shifted.clone(),
                cgroup_root: opts.cgroup_root.clone(),
                cgroup_dirs,
                terminal,
                detach: detach.as_ref().map(|d| spawn::DetachRequest {
                    exec_fifo: d.exec_fifo.clone(),
                    sync_hooks: d.sync_hooks,
                    create_container: d.create_container.clone(),
                    start_container: d.start_container.clone(),
                }),
            },
        )?;
        if let Some(f) = on_clone {
            f(c.pid);
        }
        // The rest of the cgroup (all of it where the child cannot join
        // itself: a `cgroup.procs` write by another process waits for an RCU
        // grace period on v1). The child waits for this byte before it does
        // anything of the container's (its cgroup namespace is made after it).
        if let Some(g) = c.group() {
            if child_joined {
                g.add_pid_rest(c.pid)?;
            } else {
                g.add_pid(c.pid)?;
            }
        }
        // (A child that failed already has its report waiting: read below.)
        let _ = (&sock).write_all(&[spawn::IN_CGROUP]);
        if p.idmap {
            let fd = mounts::idmapped_rootfs(rootfs, Pid::from_raw(c.pid))?;
            if let Err(e) = super::send_fd(&sock, fd.as_fd()) {
                tracing::debug!("{e}; reading the child's report");
            }
        }
        // The seccomp filter, compiled here while the child builds its mounts
        // (it reads it just before loading it); empty: none.
        let bpf = match linux.seccomp() {
            Some(s) => super::seccomp::compile_bpf_cached(s, opts.seccomp_cache.as_deref())?,
            None => Vec::new(),
        };
        if let Err(e) = spawn::send_bytes(&sock, &bpf) {
            tracing::debug!("{e}; reading the child's report");
        }
        // One zero byte: set up and waiting. A one (detached, with hooks): the
        // namespaces exist, run the creator's hooks and answer with the state.
        // Anything else is a failure report.
        let mut b = [0u8; 1];
        let mut hooks_point = detach.as_ref().is_some_and(|d| d.sync_hooks);
        loop {
            match (&sock).read(&mut b) {
                Ok(1) if b[0] == spawn::HOOKS_POINT && hooks_point => {
                    hooks_point = false;
                    if let Some(d) = detach.as_mut() {
                        let state = (d.on_namespaces)(c.pid)?;
                        spawn::send_bytes(&sock, &state)?;
                    }
                    continue;
                }
                other => {
                    b[0] = match other {
                        Ok(1) => b[0],
                        _ => 255,
                    };
                    break;
                }
            }
        }
        match b[0] {
            0 => {}
            255 => {
                return Err(Error::Child {
                    code: 125,
                    message: "the container's setup process ended without a report".into(),
                })
            }
            code => {
                let mut msg = Vec::new();
                let _ = (&sock).read_to_end(&mut msg);
                return Err(Error::Child {
                    code,
                    message: String::from_utf8_lossy(&msg).into_owned(),
                });
            }
        }
        c.sock = Some(sock);
        Ok(c)
    }

    /// Run the command (execve in the container). An exec failure (not found, not
    /// executable) is returned with Docker's exit code (127 / 126).
    pub fn start(&mut self) -> Result<(), Error> {
        if self.state != State::Created {
            return Err(Error::Spec {
                reason: "the container was already started".into(),
            });
        }
        let Some(sock) = self.sock.take() else {
            return Err(Error::Spec {
                reason: "the container was already started".into(),
            });
        };
        (&sock)
            .write_all(b"S")
            .map_err(setup("start the container"))?;
        // The socket is close-on-exec in the child: EOF means execve succeeded.
        let mut report = Vec::new();
        let _ = (&sock).read_to_end(&mut report);
        self.state = State::Running;
        if let Some((&code, msg)) = report.split_first() {
            let err = Error::Child {
                code,
                message: String::from_utf8_lossy(msg).into_owned(),
            };
            let _ = self.kill_and_reap();
            return Err(err);
        }
        Ok(())
    }

    /// Let the container live on without this handle (made with
    /// [`Container::create_detached`]): nothing is killed or removed; returns
    /// its pid.
    pub fn detach(mut self) -> i32 {
        self.done = true;
        self.sock = None;
        self.pidfd = None;
        self.pid
    }

    /// Host pid of the container's process.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The cgroup's usage counters now (CPU time, memory now and peak, I/O bytes,
    /// pids); `None` when the spec names no cgroup. Read them after
    /// [`Container::wait`] and before [`Container::delete`] for the final figures.
    pub fn stats(&self) -> Option<super::cgstats::Stats> {
        self.group().map(|g| g.stats())
    }

    /// Cgroup hierarchy version of the container's group (1 or 2), if it has one.
    pub fn cgroup_version(&self) -> Option<u8> {
        self.group().map(|g| g.version())
    }

    /// The pty's master end (with [`Stdio::Pty`]), once.
    pub fn take_pty_master(&mut self) -> Option<OwnedFd> {
        self.pty_master.take()
    }

    /// Wait for the process to end (blocking) and return how; again after that,
    /// the same outcome.
    pub fn wait(&mut self) -> Result<Outcome, Error> {
        if let State::Exited(o) = self.state {
            return Ok(o);
        }
        loop {
            match waitpid(Pid::from_raw(self.pid), None) {
                Ok(WaitStatus::Exited(_, c)) => return Ok(self.reaped(Outcome::Exited(c))),
                Ok(WaitStatus::Signaled(_, s, _)) => {
                    return Ok(self.reaped(Outcome::Signaled(s as i32)))
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    return Err(Error::Setup {
                        step: format!("wait for pid {}", self.pid),
                        source: e.into(),
                    })
                }
            }
        }
    }

    /// Record that the process was reaped by the caller with this outcome; returns
    /// it, with an OOM kill of the command told apart (exit 137, as Docker).
    pub(crate) fn reaped(&mut self, o: Outcome) -> Outcome {
        self.pidfd = None;
        let oom = self.group().is_some_and(|g| g.oom_killed());
        let o = match o {
            // (With --init the init reports the kill as status 137.)
            Outcome::Signaled(libc::SIGKILL) | Outcome::Exited(137) if oom => Outcome::OomKilled,
            _ if oom => {
                tracing::warn!(
                    "a process of the container was killed by the kernel: out of memory"
                );
                o
            }
            _ => o,
        };
        self.state = State::Exited(o);
        o
    }

    /// Send `sig` to the container's process.
    pub fn signal(&self, sig: i32) -> Result<(), Error> {
        if matches!(self.state, State::Exited(_)) || self.pid <= 0 {
            return Err(Error::Setup {
                step: format!("signal {sig} to the container"),
                source: std::io::Error::from_raw_os_error(libc::ESRCH),
            });
        }
        // SAFETY: pidfd_send_signal on our pidfd (or kill of our unreaped child).
        let r = unsafe {
            match &self.pidfd {
                Some(fd) => libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    sig,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                ),
                None => libc::kill(self.pid, sig) as libc::c_long,
            }
        };
        if r < 0 {
            return Err(io_last(&format!("signal {sig} to the container")));
        }
        Ok(())
    }

    /// A handle that signals this container from any thread while another waits
    /// for it (a pidfd: once the process is reaped, signals fail with ESRCH
    /// instead of reaching a recycled pid).
    pub fn signaller(&self) -> Result<Signaller, Error> {
        match &self.pidfd {
            Some(fd) => Ok(Signaller {
                pidfd: fd.try_clone().map_err(setup("dup the pidfd"))?,
            }),
            None => Err(Error::Unsupported {
                what: "signalling from another thread needs pidfd_open (Linux 5.3)".into(),
            }),
        }
    }

    /// Kill the process if it is still there, reap it and remove the cgroup.
    pub fn delete(mut self) -> Result<(), Error> {
        self.done = true;
        self.cleanup()
    }

    fn group(&self) -> Option<Box<dyn cgroup::Cgroup>> {
        self.cgroup.as_ref().map(|(h, p)| h.group(p))
    }

    fn kill_and_reap(&mut self) -> Result<(), Error> {
        if self.pid <= 0 || matches!(self.state, State::Exited(_)) {
            return Ok(());
        }
        let _ = self.signal(libc::SIGKILL);
        let _ = self.wait()?;
        Ok(())
    }

    fn cleanup(&mut self) -> Result<(), Error> {
        self.sock = None;
        self.pty_master = None;
        let reaped = self.kill_and_reap();
        if let Some(g) = self.group() {
            // Without a PID namespace the command's children outlive it.
            kill_members(g.as_ref());
            g.remove()?;
        }
        reaped
    }
}

/// Signals one container from any thread; see [`Container::signaller`].
#[derive(Debug)]
pub struct Signaller {
    pidfd: OwnedFd,
}

impl Signaller {
    /// Send `sig`; ESRCH once the container's process is gone.
    pub fn signal(&self, sig: i32) -> Result<(), Error> {
        // SAFETY: pidfd_send_signal on our own pidfd.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r < 0 {
            return Err(io_last(&format!("signal {sig} to the container")));
        }
        Ok(())
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.cleanup() {
                tracing::warn!("{e}");
            }
        }
    }
}

/// SIGKILL every process still in the group (by its `cgroup.procs` files).
pub(crate) fn kill_members(g: &dyn cgroup::Cgroup) {
    for _ in 0..50 {
        let mut any = false;
        for (_, dir) in g.mount_sources() {
            let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) else {
                continue;
            };
            for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                any = true;
                // SAFETY: kill with plain integers.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if !any {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Kill every process left in the cgroup at `path` (e.g. `/imgctl/ID`) and remove
/// it; nothing to do when it does not exist. For leftovers of a dead owner.
pub fn destroy_cgroup(cgroup_root: &Path, path: &Path) -> Result<(), Error> {
    let g = cgroup::Hierarchy::detect(cgroup_root)?.group(path);
    if g.mount_sources().is_empty() {
        return Ok(());
    }
    kill_members(g.as_ref());
    g.remove()
}

/// Send `sig` to every process in the cgroup at `path` (`kill --all`); returns
/// how many were signalled.
pub fn signal_cgroup(cgroup_root: &Path, path: &Path, sig: i32) -> Result<usize, Error> {
    let g = cgroup::Hierarchy::detect(cgroup_root)?.group(path);
    let mut pids = std::collections::BTreeSet::new();
    for (_, dir) in g.mount_sources() {
        let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) else {
            continue;
        };
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    let mut n = 0;
    for pid in pids {
        // SAFETY: kill with plain integers.
        if unsafe { libc::kill(pid, sig) } == 0 {
            n += 1;
        }
    }
    Ok(n)
}

/// How long [`start_created`] waits for the created process to open its end of
/// the exec fifo (it is blocked in that open, so this is a bound, not a delay).
const START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Start a container made by [`Container::create_detached`], from any process:
/// open its exec fifo for reading (the waiting process's open for writing then
/// returns), remove the fifo (the container is no longer "created"), and wait
/// until the command's execve closes the other end, or a failure is reported on
/// it (a `startContainer` hook, a command not found: Docker's exit code and one
/// line). `alive` tells whether the container's process still exists.
pub fn start_created(exec_fifo: &Path, alive: &dyn Fn() -> bool) -> Result<(), Error> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        exec_fifo,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::Setup {
        step: format!("open {}", exec_fifo.display()),
        source: e.into(),
    })?;
    let _ = std::fs::remove_file(exec_fifo);
    let read = |buf: &mut [u8]| -> Result<usize, rustix::io::Errno> {
        loop {
            match rustix::io::read(&fd, &mut *buf) {
                Err(rustix::io::Errno::INTR) => {}
                r => return r,
            }
        }
    };
    // First the one byte the process writes once its open returned (before it,
    // a read finds no writer and returns 0 as well).
    let t0 = std::time::Instant::now();
    let mut b = [0u8; 1];
    loop {
        match read(&mut b) {
            Ok(1) => break,
            Ok(_) | Err(rustix::io::Errno::AGAIN) => {}
            Err(e) => {
                return Err(Error::Setup {
                    step: "read the exec fifo".into(),
                    source: e.into(),
                })
            }
        }
        if !alive() {
            return Err(Error::Child {
                code: 125,
                message: "the container's process ended before it was started".into(),
            });
        }
        if t0.elapsed() > START_TIMEOUT {
            return Err(Error::Child {
                code: 125,
                message: "the container's process did not answer on its exec fifo".into(),
            });
        }
        let mut pfd = [nix::poll::PollFd::new(
            fd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let _ = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(5u8));
    }
    // Then, blocking, until EOF: the write end is close-on-exec, and the process
    // closes it on failure too (it exits).
    let flags = rustix::fs::fcntl_getfl(&fd).map_err(|e| Error::Setup {
        step: "exec fifo flags".into(),
        source: e.into(),
    })?;
    let _ = rustix::fs::fcntl_setfl(&fd, flags - OFlags::NONBLOCK);
    let mut report = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match read(&mut buf) {
            Ok(0) => break,
            Ok(n) if report.len() < 64 * 1024 => report.extend_from_slice(&buf[..n]),
            Ok(_) => {}
            Err(e) => {
                return Err(Error::Setup {
                    step: "read the exec fifo".into(),
                    source: e.into(),
                })
            }
        }
    }
    if let Some((&code, msg)) = report.split_first() {
        return Err(Error::Child {
            code,
            message: String::from_utf8_lossy(msg).into_owned(),
        });
    }
    Ok(())
}
