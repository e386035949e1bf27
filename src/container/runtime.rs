//! The OCI runtime command line's library side (runtime-spec `runtime.md`):
//! `create`, `start`, `state`, `kill`, `delete` and `list` of containers made
//! from bundles, so other tools (and conformance suites) can drive imgctl's
//! sandbox the way they drive runc or crun.
//!
//! A container lives in `ROOT/ID/` (ROOT is `--root`, [`DEFAULT_ROOT`] by
//! default; 0700 directories): `state.json` ([`Record`], written atomically) and,
//! while it is "created", `exec.fifo`. `create` makes the container with
//! [`sandbox::Container::create_detached`]: its set-up process waits, blocked
//! opening the fifo for writing, after `create` has exited; `start` opens the
//! fifo for reading, which lets it exec the command (runc's design). The
//! status is never stored, it is judged at each look:
//!
//! | what is seen | status |
//! |---|---|
//! | no pid yet, the creator's lock held | creating |
//! | pid alive with the recorded start time, `exec.fifo` present | created |
//! | same, no `exec.fifo` | running |
//! | otherwise (gone, zombie, pid reused, creator died) | stopped |
//!
//! Hooks (config.md): `prestart` and `createRuntime` run here, in the
//! runtime's namespaces, once the container's namespaces and mounts exist and
//! before its pivot_root; `createContainer` (before pivot_root) and
//! `startContainer` (before the command's execve) run in the container's
//! set-up process; `poststart` after `start`, `poststop` in `delete`. Each gets
//! the state JSON on stdin. A failing hook fails `create`/`start` (the
//! container is removed) with one line; a failing `poststart` or `poststop`
//! hook is a warning, as the spec requires.

use std::collections::BTreeMap;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hooks, Spec};
use serde::{Deserialize, Serialize};

use crate::sandbox;

/// Where container state lives without `--root`.
pub const DEFAULT_ROOT: &str = "/run/imgctl-runtime";

/// The runtime-spec version of the state this runtime prints.
pub const OCI_VERSION: &str = "1.2.0";

/// Errors of the runtime commands. Each is one line naming the container.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("container ID {id:?} is invalid: {reason}")]
    BadId { id: String, reason: &'static str },
    #[error("container {id} already exists (delete it first, or pick another ID)")]
    Exists { id: String },
    #[error("container {id} does not exist")]
    NotFound { id: String },
    #[error("container {id} is {status}: cannot {op}{hint}")]
    Status {
        id: String,
        status: Status,
        op: &'static str,
        hint: &'static str,
    },
    #[error("bundle {path}: {reason}")]
    Bundle { path: PathBuf, reason: String },
    #[error("unknown signal {0:?} (a name like TERM or SIGKILL, or a number 1-64)")]
    Signal(String),
    #[error("console socket {path}: {reason}")]
    Console { path: PathBuf, reason: String },
    #[error("state of container {id}: {reason}")]
    State { id: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("container {id}: {source}")]
    Sandbox { id: String, source: sandbox::Error },
}

impl RuntimeError {
    /// The exit code: 125 for the runtime's own failures, the set-up's code
    /// (126 not executable, 127 not found) when the command cannot be run.
    pub fn exit_code(&self) -> u8 {
        match self {
            RuntimeError::Sandbox { source, .. } => source.exit_code(),
            _ => 125,
        }
    }
}

type R<T> = Result<T, RuntimeError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A container's status (runtime-spec runtime.md, "State").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Stopped,
}

impl Status {
    /// `start` needs a created container.
    pub fn can_start(self) -> bool {
        self == Status::Created
    }
    /// `kill` needs a created or running one.
    pub fn can_kill(self) -> bool {
        matches!(self, Status::Created | Status::Running)
    }
    /// `delete` without `--force` takes a created or stopped one.
    pub fn can_delete(self) -> bool {
        matches!(self, Status::Created | Status::Stopped)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        })
    }
}

/// What `ROOT/ID/state.json` holds (schemas/runtime-record.schema.json).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub id: String,
    /// Host pid of the container's process; 0 while creating.
    pub pid: i32,
    /// Its start time (clock ticks since boot, `/proc/PID/stat` field 22): a
    /// reused pid is not taken for the container.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub cgroup_root: PathBuf,
    pub cgroups_path: Option<PathBuf>,
    /// RFC 3339, UTC.
    pub created: String,
    /// The config's hooks (poststart and poststop run after `create` exited).
    pub hooks: Option<Hooks>,
}

/// The state a runtime prints and gives hooks (runtime-spec runtime.md;
/// schemas/runtime-state.schema.json).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    pub oci_version: String,
    pub id: String,
    pub status: Status,
    /// REQUIRED on Linux when created or running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    pub bundle: PathBuf,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
    /// Extras, as runc prints them.
    pub rootfs: PathBuf,
    pub created: String,
}

/// The runtime: where state lives and where cgroupfs is.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub root: PathBuf,
    pub cgroup_root: PathBuf,
}

/// What `create` was asked.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
}

/// An ID is a path component of the state directory and a cgroup name: kept
/// to what runc accepts.
pub fn check_id(id: &str) -> R<()> {
    let bad = |reason| {
        Err(RuntimeError::BadId {
            id: id.to_string(),
            reason,
        })
    };
    if id.is_empty() {
        return bad("it is empty");
    }
    if id.len() > 1024 {
        return bad("it is longer than 1024 bytes");
    }
    if id == "." || id == ".." {
        return bad("it is . or ..");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b))
    {
        return bad("use letters, digits and _ + - . only");
    }
    Ok(())
}

/// A process's start time and whether it is a zombie, from `/proc/PID/stat`.
fn proc_stat(pid: i32) -> Option<(u64, bool)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let state = *fields.first()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, state == "Z" || state == "X"))
}

fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open with plain integers; a new descriptor on success.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: r is a new descriptor we own.
    (r >= 0).then(|| unsafe { OwnedFd::from_raw_fd(r as i32) })
}

impl Runtime {
    pub fn new(root: PathBuf) -> Runtime {
        Runtime {
            root,
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
        }
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    fn load(&self, id: &str) -> R<Record> {
        check_id(id)?;
        let path = self.dir(id).join("state.json");
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RuntimeError::NotFound { id: id.into() })
            }
            Err(e) => return Err(io(&path)(e)),
        };
        serde_json::from_slice(&text).map_err(|e| RuntimeError::State {
            id: id.into(),
            reason: format!("{}: {e}", path.display()),
        })
    }

    fn save(&self, r: &Record) -> R<()> {
        let path = self.dir(&r.id).join("state.json");
        let body = serde_json::to_vec_pretty(r).map_err(|e| RuntimeError::State {
            id: r.id.clone(),
            reason: e.to_string(),
        })?;
        // Lives in /run: a crash may lose it, never tear it.
        crate::store::write_atomic_volatile(&path, &body, 0o600).map_err(io(&path))
    }

    /// The status of a loaded record, judged now.
    fn status(&self, r: &Record) -> Status {
        if r.pid <= 0 {
            return if self.creator_alive(&r.id) {
                Status::Creating
            } else {
                Status::Stopped
            };
        }
        match proc_stat(r.pid) {
            Some((start, false)) if start == r.start_time => {
                if self.dir(&r.id).join("exec.fifo").exists() {
                    Status::Created
                } else {
                    Status::Running
                }
            }
            _ => Status::Stopped,
        }
    }

    /// True while a `create` holds the container's lock.
    fn creator_alive(&self, id: &str) -> bool {
        let Ok(f) = std::fs::File::open(self.dir(id).join("lock")) else {
            return false;
        };
        matches!(f.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock))
    }

    fn oci_state(&self, r: &Record, status: Status) -> OciState {
        OciState {
            oci_version: OCI_VERSION.into(),
            id: r.id.clone(),
            status,
            pid: (r.pid > 0 && status != Status::Stopped).then_some(r.pid),
            bundle: r.bundle.clone(),
            annotations: r.annotations.clone(),
            rootfs: r.rootfs.clone(),
            created: r.created.clone(),
        }
    }

    /// `state ID`.
    pub fn state(&self, id: &str) -> R<OciState> {
        let r = self.load(id)?;
        let st = self.status(&r);
        Ok(self.oci_state(&r, st))
    }

    /// `list`: every container under the root, sorted by ID.
    pub fn list(&self) -> R<Vec<OciState>> {
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io(&self.root)(e)),
        };
        for ent in rd.flatten() {
            let name = ent.file_name().to_string_lossy().into_owned();
            if let Ok(s) = self.state(&name) {
                out.push(s);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// `create`: the container set up and waiting for `start`.
    pub fn create(&self, req: &CreateRequest) -> R<OciState> {
        check_id(&req.id)?;
        let bundle = std::path::absolute(&req.bundle).map_err(io(&req.bundle))?;
        let config = bundle.join("config.json");
        let mut spec = Spec::load(&config).map_err(|e| RuntimeError::Bundle {
            path: bundle.clone(),
            reason: format!("config.json: {e}"),
        })?;
        let root = spec.root().clone().ok_or_else(|| RuntimeError::Bundle {
            path: bundle.clone(),
            reason: "config.json has no root".into(),
        })?;
        let rootfs = bundle.join(root.path());
        if !rootfs.is_dir() {
            return Err(RuntimeError::Bundle {
                path: bundle.clone(),
                reason: format!("root.path {} is not a directory", rootfs.display()),
            });
        }
        let terminal = spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false);
        match (terminal, &req.console_socket) {
            (true, None) => {
                return Err(RuntimeError::Bundle {
                    path: bundle,
                    reason: "process.terminal is true: --console-socket is required".into(),
                })
            }
            (false, Some(_)) => {
                return Err(RuntimeError::Bundle {
                    path: bundle,
                    reason: "--console-socket given but process.terminal is false".into(),
                })
            }
            _ => {}
        }
        // A cgroup always: `kill --all` and `delete` find every process by it.
        let mut linux = spec.linux().clone().unwrap_or_default();
        if linux.cgroups_path().is_none() {
            linux.set_cgroups_path(Some(PathBuf::from(format!("/imgctl-runtime/{}", req.id))));
            spec.set_linux(Some(linux.clone()));
        }
        let hooks = spec.hooks().clone();
        spec.set_hooks(None);

        // The state directory: its mkdir is what makes the ID taken.
        if !self.root.is_dir() {
            // Like /run/runc: only root looks into it (an existing one is left
            // as it is).
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.root)
                .map_err(io(&self.root))?;
        }
        let dir = self.dir(&req.id);
        if let Err(e) = std::fs::create_dir(&dir) {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                return Err(RuntimeError::Exists { id: req.id.clone() });
            }
            return Err(io(&dir)(e));
        }
        let made = Made {
            dir: dir.clone(),
            keep: false,
        };
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io(&dir))?;
        let lock_path = dir.join("lock");
        let lock = std::fs::File::create(&lock_path).map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        let mut rec = Record {
            id: req.id.clone(),
            pid: 0,
            start_time: 0,
            bundle: bundle.clone(),
            rootfs: rootfs.clone(),
            annotations: spec
                .annotations()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            cgroup_root: self.cgroup_root.clone(),
            cgroups_path: linux.cgroups_path().clone(),
            created: crate::image::commit::rfc3339(crate::container::state::now() as i64),
            hooks: hooks.clone(),
        };
        self.save(&rec)?;
        let fifo = dir.join("exec.fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o622)).map_err(
            |e| RuntimeError::Io {
                path: fifo.clone(),
                source: e.into(),
            },
        )?;
        // mkfifo obeys the umask; the process may run as any uid.
        std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o622))
            .map_err(io(&fifo))?;

        let h = hooks.clone().unwrap_or_default();
        let list = |v: &Option<Vec<oci_spec::runtime::Hook>>| v.clone().unwrap_or_default();
        #[allow(deprecated)]
        let prestart = list(h.prestart());
        let create_runtime = list(h.create_runtime());
        let create_container = list(h.create_container());
        let start_container = list(h.start_container());
        let sync_hooks = !(prestart.is_empty()
            && create_runtime.is_empty()
            && create_container.is_empty()
            && start_container.is_empty());
        let this = self.clone();
        let rec_for_hooks = rec.clone();
        let mut on_namespaces = |pid: i32| -> Result<Vec<u8>, sandbox::Error> {
            let mut r = rec_for_hooks.clone();
            r.pid = pid;
            let state = this.state_json(&r, Status::Creating);
            sandbox::hooks::run_all("prestart", &prestart, &state)?;
            sandbox::hooks::run_all("createRuntime", &create_runtime, &state)?;
            Ok(state)
        };
        let stdio = if terminal {
            sandbox::Stdio::Pty
        } else {
            sandbox::Stdio::Inherit
        };
        let opts = sandbox::Options {
            cgroup_root: self.cgroup_root.clone(),
            ..Default::default()
        };
        let sb = |source| RuntimeError::Sandbox {
            id: req.id.clone(),
            source,
        };
        let mut c = sandbox::Container::create_detached(
            &spec,
            &rootfs,
            &opts,
            stdio,
            sandbox::Detach {
                exec_fifo: fifo.clone(),
                create_container,
                start_container,
                on_namespaces: &mut on_namespaces,
                sync_hooks,
            },
        )
        .map_err(sb)?;
        rec.pid = c.pid();
        rec.start_time = proc_stat(rec.pid).map(|(s, _)| s).unwrap_or(0);
        if let Some(sock) = &req.console_socket {
            let master = c.take_pty_master().ok_or_else(|| RuntimeError::Console {
                path: sock.clone(),
                reason: "no pty was made".into(),
            })?;
            send_console(sock, &master)?;
        }
        self.save(&rec)?;
        if let Some(pf) = &req.pid_file {
            let pf = std::path::absolute(pf).map_err(io(pf))?;
            crate::store::write_atomic(&pf, rec.pid.to_string().as_bytes(), 0o644)
                .map_err(io(&pf))?;
        }
        c.detach();
        let mut made = made;
        made.keep = true;
        drop(lock);
        Ok(self.oci_state(&rec, Status::Created))
    }

    fn state_json(&self, r: &Record, status: Status) -> Vec<u8> {
        serde_json::to_vec(&self.oci_state(r, status)).unwrap_or_default()
    }

    /// `start ID`: run the command of a created container; then the poststart
    /// hooks.
    pub fn start(&self, id: &str) -> R<()> {
        let r = self.load(id)?;
        let st = self.status(&r);
        if !st.can_start() {
            return Err(RuntimeError::Status {
                id: id.into(),
                status: st,
                op: "start it",
                hint: " (only a created container starts)",
            });
        }
        let fifo = self.dir(id).join("exec.fifo");
        let alive = || proc_stat(r.pid).is_some_and(|(s, z)| s == r.start_time && !z);
        sandbox::start_created(&fifo, &alive).map_err(|source| RuntimeError::Sandbox {
            id: id.into(),
            source,
        })?;
        if let Some(h) = r.hooks.as_ref().and_then(|h| h.poststart().clone()) {
            let state = self.state_json(&r, Status::Running);
            if let Err(e) = sandbox::hooks::run_all("poststart", &h, &state) {
                tracing::warn!("container {id}: {e}");
                eprintln!("imgctl: warning: container {id}: {e}");
            }
        }
        Ok(())
    }

    /// `kill ID SIGNAL` (or every process of its cgroup with `all`).
    pub fn kill(&self, id: &str, sig: i32, all: bool) -> R<()> {
        let r = self.load(id)?;
        let st = self.status(&r);
        if !st.can_kill() {
            return Err(RuntimeError::Status {
                id: id.into(),
                status: st,
                op: "signal it",
                hint: " (it is not running)",
            });
        }
        if all {
            if let Some(cg) = &r.cgroups_path {
                sandbox::signal_cgroup(&r.cgroup_root, cg, sig).map_err(|source| {
                    RuntimeError::Sandbox {
                        id: id.into(),
                        source,
                    }
                })?;
                return Ok(());
            }
        }
        self.signal_process(&r, sig)
    }

    /// Signal the container's process through a pidfd opened and then checked
    /// against the recorded start time, so a reused pid is never hit.
    fn signal_process(&self, r: &Record, sig: i32) -> R<()> {
        let gone = || RuntimeError::Status {
            id: r.id.clone(),
            status: Status::Stopped,
            op: "signal it",
            hint: " (it is not running)",
        };
        let fd = pidfd_open(r.pid).ok_or_else(gone)?;
        if proc_stat(r.pid).is_none_or(|(s, _)| s != r.start_time) {
            return Err(gone());
        }
        // SAFETY: pidfd_send_signal on our pidfd with plain integers.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if ret < 0 {
            return Err(RuntimeError::Io {
                path: PathBuf::from(format!("/proc/{}", r.pid)),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// `delete [--force] ID`: remove a created or stopped container (a running
    /// one only with `force`, killed first); then the poststop hooks.
    pub fn delete(&self, id: &str, force: bool) -> R<()> {
        let r = match self.load(id) {
            Ok(r) => r,
            Err(RuntimeError::NotFound { .. }) if force => return Ok(()),
            Err(e) => return Err(e),
        };
        let st = self.status(&r);
        if st == Status::Creating || (!st.can_delete() && !force) {
            return Err(RuntimeError::Status {
                id: id.into(),
                status: st,
                op: "delete it",
                hint: if st == Status::Running {
                    " (kill it first, or use --force)"
                } else {
                    ""
                },
            });
        }
        if st != Status::Stopped {
            // Created or running: SIGKILL its process and wait until it is gone.
            if let Some(fd) = pidfd_open(r.pid) {
                if proc_stat(r.pid).is_some_and(|(s, _)| s == r.start_time) {
                    // SAFETY: as in signal_process.
                    unsafe {
                        libc::syscall(
                            libc::SYS_pidfd_send_signal,
                            fd.as_raw_fd(),
                            libc::SIGKILL,
                            std::ptr::null::<libc::siginfo_t>(),
                            0,
                        )
                    };
                    wait_exit(&fd, Duration::from_secs(10));
                }
            }
        }
        if let Some(cg) = &r.cgroups_path {
            sandbox::destroy_cgroup(&r.cgroup_root, cg).map_err(|source| {
                RuntimeError::Sandbox {
                    id: id.into(),
                    source,
                }
            })?;
        }
        let dir = self.dir(id);
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        if let Some(h) = r.hooks.as_ref().and_then(|h| h.poststop().clone()) {
            let state = self.state_json(&r, Status::Stopped);
            if let Err(e) = sandbox::hooks::run_all("poststop", &h, &state) {
                tracing::warn!("container {id}: {e}");
                eprintln!("imgctl: warning: container {id}: {e}");
            }
        }
        Ok(())
    }
}

/// Wait (bounded) until the process behind `pidfd` has exited.
fn wait_exit(pidfd: &OwnedFd, limit: Duration) {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        let mut p = [nix::poll::PollFd::new(
            pidfd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if matches!(nix::poll::poll(&mut p, nix::poll::PollTimeout::from(100u8)), Ok(n) if n > 0) {
            return;
        }
    }
}

/// Removes a half-made state directory unless told to keep it.
struct Made {
    dir: PathBuf,
    keep: bool,
}

impl Drop for Made {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Hand the pty master to whoever listens on `path` (SCM_RIGHTS, as runc's
/// `--console-socket`; the message text is the pty's name).
fn send_console(path: &Path, master: &OwnedFd) -> R<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let err = |reason: String| RuntimeError::Console {
        path: path.to_path_buf(),
        reason,
    };
    let sock = std::os::unix::net::UnixStream::connect(path).map_err(|e| err(e.to_string()))?;
    let mut nb = [0 as libc::c_char; 64];
    // SAFETY: ptsname_r writes a NUL-terminated name of at most `nb.len()` bytes.
    let name = if unsafe { libc::ptsname_r(master.as_raw_fd(), nb.as_mut_ptr(), nb.len()) } == 0 {
        // SAFETY: NUL-terminated on success.
        unsafe { std::ffi::CStr::from_ptr(nb.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    } else {
        "/dev/ptmx".into()
    };
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut buf = SendAncillaryBuffer::new(&mut space);
    let fds = [master.as_fd()];
    buf.push(SendAncillaryMessage::ScmRights(&fds));
    rustix::net::sendmsg(
        &sock,
        &[std::io::IoSlice::new(name.as_bytes())],
        &mut buf,
        SendFlags::empty(),
    )
    .map_err(|e| err(format!("send the pty: {e}")))?;
    Ok(())
}

/// A signal by name (`TERM`, `SIGTERM`, `sigkill`) or number.
pub fn parse_signal(s: &str) -> R<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(RuntimeError::Signal(s.into()));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| RuntimeError::Signal(s.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_path_safe() {
        for ok in ["a", "web-1", "x_y.z+1", "0123456789abcdef"] {
            check_id(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "a\0b", "é"] {
            assert!(check_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("TERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("SIGKILL").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("usr1").unwrap(), libc::SIGUSR1);
        assert_eq!(parse_signal("9").unwrap(), 9);
        for bad in ["0", "65", "-1", "NOPE", "SIG"] {
            assert!(parse_signal(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn status_predicates_follow_the_lifecycle() {
        assert!(Status::Created.can_start());
        assert!(!Status::Running.can_start() && !Status::Stopped.can_start());
        assert!(Status::Created.can_kill() && Status::Running.can_kill());
        assert!(!Status::Stopped.can_kill());
        assert!(Status::Stopped.can_delete() && Status::Created.can_delete());
        assert!(!Status::Running.can_delete());
    }

    #[test]
    fn state_of_an_unknown_container_is_not_found() {
        let t = tempfile::tempdir().unwrap();
        let rt = Runtime::new(t.path().to_path_buf());
        assert!(matches!(
            rt.state("nope"),
            Err(RuntimeError::NotFound { .. })
        ));
        assert!(rt.list().unwrap().is_empty());
        rt.delete("nope", true).unwrap();
        assert!(rt.delete("nope", false).is_err());
    }
}
