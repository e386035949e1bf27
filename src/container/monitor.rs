//! The monitor of a detached container: imgctl re-executed as `imgctl-monitor`,
//! forked again and `setsid`, so it outlives the CLI (`run -d`, `start`).
//!
//! It owns the container from first to last ([`super::owner`]: the owner lock is
//! claimed by the monitor itself, so there is nothing to hand over and a monitor
//! killed at any moment leaves leftovers that the next imgctl command reaps):
//! prepares it (or, for `start`, mounts its kept view again), creates it with
//! its stdout and stderr on pipes it pumps into json-lines logs
//! ([`super::logs`]), records `state.json` at each change, serves
//! `monitor.sock` (0600) for stop / kill / wait / attach, restarts it by its
//! `--restart` policy (100 ms doubling, as Docker) and runs its healthcheck
//! ([`super::health`]). When it ends for good the monitor removes the cgroup,
//! unmounts the view (keeping its changes, or everything with `--rm`), and exits.
//!
//! The CLI gives the monitor its [`MonitorConfig`] as JSON on stdin and reads
//! one line back on the monitor's stdout: `ok` once the command runs, or
//! `err CODE message`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::prepare::{prepare, HeldView, PrepareRequest, RootfsSource};
use super::state::{self, State, Status};
use super::Error;
use crate::sandbox::{self, Container, Outcome, Signaller, Stdio};

/// argv[0] of the monitor process.
pub const ARGV0: &str = "imgctl-monitor";

/// The control socket in a container's state directory.
pub const SOCKET: &str = "monitor.sock";

/// The monitor's configuration, kept as `monitor.json` in the state directory.
pub const CONFIG: &str = "monitor.json";

pub use super::monitor_config::{HealthConfig, ImageSource, MonitorConfig, RestartPolicy};

/// Called first by `main`: when this process is a monitor, run it and exit.
pub fn entry() {
    let mut args = std::env::args_os();
    if args.next().is_none_or(|a| a != ARGV0) {
        return;
    }
    let start = args.next().is_some_and(|a| a == "start");
    let mut body = Vec::new();
    let read = std::io::stdin().take(16 << 20).read_to_end(&mut body);
    // The report pipe is fd 1: keep a copy, then 0-2 become /dev/null.
    let report = dup_report();
    let cfg: Result<MonitorConfig, String> = match read {
        Ok(_) => serde_json::from_slice(&body).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => {
            say(&report, &format!("err 125 monitor configuration: {e}"));
            std::process::exit(125);
        }
    };
    // Second fork: the CLI reaps the first child at once; this one is adopted
    // and, in its own session, outlives the CLI and its terminal.
    // SAFETY: the process is single-threaded here (nothing else ran yet).
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => std::process::exit(0),
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(e) => {
            say(&report, &format!("err 125 fork the monitor: {e}"));
            std::process::exit(125);
        }
    }
    let _ = nix::unistd::setsid();
    null_stdio();
    let code = match run(cfg, start, report) {
        Ok(()) => 0,
        Err(_) => 125,
    };
    std::process::exit(code);
}

fn dup_report() -> Option<std::fs::File> {
    // SAFETY: fd 1 is open (the CLI's pipe); the copy is owned here.
    let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(1) };
    b.try_clone_to_owned().ok().map(std::fs::File::from)
}

fn null_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}

fn say(report: &Option<std::fs::File>, line: &str) {
    if let Some(mut f) = report.as_ref() {
        let _ = writeln!(f, "{}", line.replace('\n', " "));
    }
}

/// What the monitor and its threads share.
struct Shared {
    cfg: MonitorConfig,
    state_dir: PathBuf,
    inner: Mutex<Inner>,
    cv: Condvar,
}

struct Inner {
    state: State,
    signaller: Option<Signaller>,
    /// `stop`/`kill` by the user: no restart.
    manual_stop: bool,
    /// Exits so far (a waiter waits for the next one).
    exits: u64,
    /// The monitor is ending: no more runs.
    done: bool,
    /// Attached clients (framed output).
    attached: Vec<UnixStream>,
    /// The write end of the container's stdin (`-i`).
    stdin: Option<std::fs::File>,
    /// Incremented per run; a health thread stops when it changes.
    generation: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self, inner: &Inner) {
        if let Err(e) = inner.state.save(&self.state_dir) {
            tracing::warn!("{e}");
        }
    }
}

/// Frame header of attached output: stream (1 stdout, 2 stderr), 3 zero bytes,
/// big-endian length (Docker's multiplexed stream format).
pub fn frame(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + data.len());
    out.push(stream);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

struct Made {
    spec: oci_spec::runtime::Spec,
    rootfs: PathBuf,
    rootfs_shifted: Option<PathBuf>,
    state_dir: PathBuf,
    view: Option<HeldView>,
    lease: Option<super::UsernsLease>,
    state: State,
}

fn make(cfg: &MonitorConfig) -> Result<Made, Error> {
    let rootfs = match &cfg.image {
        ImageSource::Store { id } => {
            RootfsSource::Image(crate::image::resolve_image(&cfg.root, id)?)
        }
        ImageSource::Layout { name } => {
            RootfsSource::Image(crate::image::resolve_image(&cfg.root, name)?)
        }
        ImageSource::Dir { path, config } => RootfsSource::Dir {
            path: path.clone(),
            config: config.as_deref().cloned(),
        },
    };
    let p = prepare(PrepareRequest {
        root: cfg.root.clone(),
        flags: cfg.flags.clone(),
        rootfs,
        state_dir: None,
    })?;
    let mut st = State::new(&cfg.id, cfg.name.clone(), cfg.image_name.clone());
    st.image_id = cfg.image_id.clone();
    st.labels = cfg.labels.clone();
    st.detached = true;
    let written = (|| -> Result<(), Error> {
        let io = |path: PathBuf| move |source| Error::Io { path, source };
        let config = p.state_dir.join("config.json");
        let body = serde_json::to_vec_pretty(&p.spec).map_err(|e| Error::Spec(e.to_string()))?;
        crate::store::write_atomic(&config, &body, 0o600).map_err(io(config))?;
        let mon = p.state_dir.join(CONFIG);
        let body = serde_json::to_vec_pretty(cfg).map_err(|e| Error::Spec(e.to_string()))?;
        crate::store::write_atomic(&mon, &body, 0o600).map_err(io(mon))?;
        st.save(&p.state_dir)
    })();
    if let Err(e) = written {
        p.discard();
        return Err(e);
    }
    Ok(Made {
        spec: p.spec,
        rootfs: p.rootfs,
        rootfs_shifted: p.rootfs_shifted,
        state_dir: p.state_dir,
        view: p.view,
        lease: p.lease,
        state: st,
    })
}

/// `create`: what the monitor of `run -d` makes before it runs the container
/// (claimed, named, prepared, recorded as created), done here and kept for a
/// later `start`: the view is unmounted with its snapshot kept, as after an exit.
/// On failure nothing is left and the name is free.
pub(super) fn create(cfg: &MonitorConfig) -> Result<(), Error> {
    let owner = super::owner::claim(&cfg.root, &cfg.id, false, &cfg.cgroup_root)?;
    let name_lease = match &cfg.name {
        Some(n) => Some(state::reserve_name(&cfg.root, n, &cfg.id)?),
        None => None,
    };
    let made = match make(cfg) {
        Ok(m) => m,
        Err(e) => {
            if let Some(l) = name_lease {
                l.free();
            }
            return Err(e);
        }
    };
    if let Some(v) = made.view {
        if let Err(e) = v.keep() {
            let _ = std::fs::remove_dir_all(&made.state_dir);
            if let Some(l) = name_lease {
                l.free();
            }
            return Err(e);
        }
    }
    drop(made.lease);
    drop(owner);
    Ok(())
}

/// `start`: the kept state directory and view of a stopped container.
fn reopen(cfg: &MonitorConfig) -> Result<Made, Error> {
    let state_dir = state::containers_dir(&cfg.root).join(&cfg.id);
    let io = |path: PathBuf| move |source| Error::Io { path, source };
    let config = state_dir.join("config.json");
    let body = std::fs::read(&config).map_err(io(config.clone()))?;
    let spec: oci_spec::runtime::Spec =
        serde_json::from_slice(&body).map_err(|e| Error::Spec(format!("config.json: {e}")))?;
    // `--userns=auto`: the id range its files are owned by, held again while
    // it runs (another container may have been given it meanwhile: refused,
    // before its view is mounted again, so a refusal leaves it as it was).
    let lease = match cfg.flags.userns {
        super::Userns::Auto => {
            let base = spec
                .linux()
                .as_ref()
                .and_then(|l| l.uid_mappings().as_ref())
                .and_then(|m| m.first())
                .map(|m| m.host_id())
                .ok_or_else(|| {
                    Error::Spec("config.json: --userns=auto without a uid mapping".into())
                })?;
            let l = super::claim_userns(&cfg.root.join("locks").join("userns"), base)?;
            l.set_owner(std::process::id());
            Some(l)
        }
        _ => None,
    };
    let rootfs = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .ok_or_else(|| Error::Spec("config.json has no root".into()))?;
    let rw = state_dir.join("rw");
    let state = State::load(&state_dir)?;
    // Mounted last: an error above leaves the kept view as it was (dropping
    // a remounted one would release it, the container's changes with it).
    let view = match cfg.image {
        ImageSource::Dir { .. } => None,
        _ => {
            let key = super::owner::view_key(&cfg.id);
            if !crate::image::has_view(&cfg.root, &key) {
                return Err(Error::Spec(format!(
                    "the root filesystem of container {} is gone (its monitor was killed); remove it with `imgctl rm`",
                    &cfg.id[..12]
                )));
            }
            Some(HeldView::remount(&cfg.root, &key)?)
        }
    };
    Ok(Made {
        spec,
        rootfs,
        rootfs_shifted: rw.is_dir().then_some(rw),
        state_dir,
        view,
        lease,
        state,
    })
}

fn run(cfg: MonitorConfig, start: bool, mut report: Option<std::fs::File>) -> Result<(), Error> {
    let owner = match super::owner::claim(&cfg.root, &cfg.id, cfg.remove, &cfg.cgroup_root) {
        Ok(o) => o,
        Err(e) => {
            let e = if start {
                Error::Spec(format!(
                    "container {} is already running (its monitor owns it)",
                    &cfg.id[..12]
                ))
            } else {
                e
            };
            say(&report, &format!("err 125 {e}"));
            return Err(e);
        }
    };
    let name_lease = match (&cfg.name, start) {
        (Some(n), false) => match state::reserve_name(&cfg.root, n, &cfg.id) {
            Ok(l) => Some(l),
            Err(e) => {
                say(&report, &format!("err 125 {e}"));
                return Err(e);
            }
        },
        _ => None,
    };
    let made = if start { reopen(&cfg) } else { make(&cfg) };
    let made = match made {
        Ok(m) => m,
        Err(e) => {
            say(&report, &format!("err {} {e}", e.exit_code()));
            if let Some(l) = name_lease {
                l.free();
            }
            return Err(e);
        }
    };
    let Made {
        spec,
        rootfs,
        rootfs_shifted,
        state_dir,
        view,
        lease,
        mut state,
    } = made;
    state.detached = true;
    state.health = None;
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        state_dir: state_dir.clone(),
        inner: Mutex::new(Inner {
            state,
            signaller: None,
            manual_stop: false,
            exits: 0,
            done: false,
            attached: Vec::new(),
            stdin: None,
            generation: 0,
        }),
        cv: Condvar::new(),
    });
    let listener = listen(&state_dir);
    if let Some(l) = listener {
        let s = shared.clone();
        std::thread::spawn(move || serve(l, s));
    }
    let opts = sandbox::Options {
        init: cfg.init,
        rootfs_shifted,
        cgroup_root: cfg.cgroup_root.clone(),
        seccomp_cache: Some(super::seccomp_cache_dir(&cfg.root)),
    };
    let log = match super::logs::LogWriter::open(&state_dir, cfg.log_max_size, cfg.log_max_files) {
        Ok(l) => Arc::new(Mutex::new(l)),
        Err(e) => {
            say(&report, &format!("err 125 {e}"));
            return finish(&shared, view, lease, owner, name_lease, false);
        }
    };
    let mut delay = Duration::from_millis(100);
    let mut first = true;
    loop {
        let began = Instant::now();
        let outcome = match run_once(&shared, &spec, &rootfs, &opts, &log, &mut report) {
            Ok(o) => o,
            Err(e) => {
                if first {
                    say(&report, &format!("err {} {e}", e.exit_code()));
                    let mut g = shared.lock();
                    g.done = true;
                    drop(g);
                    shared.cv.notify_all();
                    // A container that never ran (`run -d`) goes; one that was
                    // created or ran before (`start`) stays, as in Docker, for
                    // another `start` or `rm`.
                    return finish(&shared, view, lease, owner, name_lease, !start);
                }
                let mut g = shared.lock();
                g.state.status = Status::Stopped;
                g.state.exit_code = Some(e.exit_code());
                g.state.finished = Some(state::now());
                g.state.pid = None;
                shared.save(&g);
                break;
            }
        };
        first = false;
        let code = outcome.exit_code();
        let mut g = shared.lock();
        g.signaller = None;
        g.stdin = None;
        g.generation += 1;
        g.state.status = Status::Stopped;
        g.state.pid = None;
        g.state.exit_code = Some(code);
        g.state.oom_killed = outcome == Outcome::OomKilled;
        g.state.finished = Some(state::now());
        g.exits += 1;
        shared.save(&g);
        shared.cv.notify_all();
        let again = !g.manual_stop && cfg.restart.restarts(code, g.state.restart_count);
        if !again {
            break;
        }
        if began.elapsed() >= Duration::from_secs(10) {
            delay = Duration::from_millis(100);
        }
        // Back off; a stop during the wait ends it.
        g.state.restarting = true;
        shared.save(&g);
        let deadline = Instant::now() + delay;
        while !g.manual_stop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            g = shared
                .cv
                .wait_timeout(g, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        g.state.restarting = false;
        if g.manual_stop {
            shared.save(&g);
            break;
        }
        g.state.restart_count += 1;
        drop(g);
        delay = (delay * 2).min(Duration::from_secs(60));
    }
    {
        let mut g = shared.lock();
        g.done = true;
        shared.save(&g);
    }
    shared.cv.notify_all();
    finish(&shared, view, lease, owner, name_lease, cfg.remove)
}

/// One run: create with pipes, start, pump output, wait, delete.
fn run_once(
    shared: &Arc<Shared>,
    spec: &oci_spec::runtime::Spec,
    rootfs: &Path,
    opts: &sandbox::Options,
    log: &Arc<Mutex<super::logs::LogWriter>>,
    report: &mut Option<std::fs::File>,
) -> Result<Outcome, Error> {
    let pipe = || -> Result<(OwnedFd, OwnedFd), Error> {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Io {
            path: PathBuf::from("pipe"),
            source: e.into(),
        })
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (stdin, stdin_w) = if shared.cfg.interactive {
        let (r, w) = pipe()?;
        (Some(r), Some(w))
    } else {
        (None, None)
    };
    // The network is attached beside the set-up, from the clone on (its
    // namespace exists then), and waited for between create and start.
    let mut pending: Option<super::net::PendingAttach> = None;
    let created = Container::create_beside(
        spec,
        rootfs,
        opts,
        Stdio::Fds {
            stdin,
            stdout: out_w,
            stderr: err_w,
        },
        &mut |pid| {
            pending = super::net::attach_beside(
                &shared.cfg.root,
                &shared.cfg.flags,
                shared.cfg.name.as_deref(),
                &shared.state_dir,
                pid,
            );
        },
    );
    let mut c = match created {
        Ok(c) => c,
        Err(e) => {
            if let Some(p) = pending.take() {
                let _ = p.finish();
                let _ = super::net::detach(&shared.cfg.root, &shared.cfg.id);
            }
            return Err(e.into());
        }
    };
    // An error drops `c`: the process is killed and the cgroup removed.
    let endpoint = match pending.take() {
        Some(p) => p.finish(),
        None => Ok(None),
    };
    let endpoint = match endpoint {
        Ok(e) => e,
        Err(e) => {
            drop(c);
            let _ = super::net::detach(&shared.cfg.root, &shared.cfg.id);
            return Err(e);
        }
    };
    let pumps = [(out_r, "stdout", 1u8), (err_r, "stderr", 2u8)].map(|(fd, name, n)| {
        let s = shared.clone();
        let log = log.clone();
        std::thread::spawn(move || pump(fd, name, n, &s, &log))
    });
    if let Err(e) = c.start() {
        drop(c);
        let _ = super::net::detach(&shared.cfg.root, &shared.cfg.id);
        return Err(e.into());
    }
    let generation = {
        let mut g = shared.lock();
        g.state.network = endpoint;
        g.signaller = c.signaller().ok();
        g.stdin = stdin_w.map(std::fs::File::from);
        g.state.status = Status::Running;
        g.state.pid = u32::try_from(c.pid()).ok();
        g.state.started = Some(state::now());
        g.state.finished = None;
        g.state.exit_code = None;
        g.state.oom_killed = false;
        if shared.cfg.health.is_some() {
            g.state.health = Some(state::Health {
                status: state::HealthStatus::Starting,
                failing_streak: 0,
                log: Vec::new(),
            });
        }
        shared.save(&g);
        g.generation
    };
    if let Some(r) = report.take() {
        say(&Some(r), "ok");
    }
    if let Some(h) = shared.cfg.health.clone() {
        let s = shared.clone();
        std::thread::spawn(move || health_loop(&s, &h, generation));
    }
    let outcome = c.wait();
    if let Err(e) = c.delete() {
        tracing::warn!("{e}");
    }
    if let Err(e) = super::net::detach(&shared.cfg.root, &shared.cfg.id) {
        tracing::warn!("network cleanup: {e}");
    }
    shared.lock().state.network = None;
    let outcome = outcome?;
    for p in pumps {
        let _ = p.join();
    }
    Ok(outcome)
}

fn pump(fd: OwnedFd, name: &str, n: u8, shared: &Shared, log: &Mutex<super::logs::LogWriter>) {
    let mut f = std::fs::File::from(fd);
    let mut lines = super::logs::LineBuffer::default();
    let mut buf = vec![0u8; 32 << 10];
    let write = |chunks: Vec<Vec<u8>>| {
        let now = super::logs::now_nanos();
        let mut w = log.lock().unwrap_or_else(|e| e.into_inner());
        for c in chunks {
            let _ = w.write(name, &c, now);
        }
    };
    loop {
        let k = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        write(lines.push(&buf[..k]));
        let mut g = shared.lock();
        if !g.attached.is_empty() {
            let fr = frame(n, &buf[..k]);
            g.attached.retain_mut(|s| s.write_all(&fr).is_ok());
        }
    }
    if let Some(rest) = lines.finish() {
        write(vec![rest]);
    }
}

fn health_loop(shared: &Shared, h: &HealthConfig, generation: u64) {
    let started = Instant::now();
    let interval = Duration::from_millis(h.interval_ms.max(10));
    loop {
        {
            let g = shared.lock();
            let (g, _) = shared
                .cv
                .wait_timeout_while(g, interval, |g| g.generation == generation && !g.done)
                .unwrap_or_else(|e| e.into_inner());
            if g.generation != generation || g.done {
                return;
            }
        }
        let probe = super::health::probe(&shared.cfg, h);
        let mut g = shared.lock();
        if g.generation != generation {
            return;
        }
        let in_start_period = started.elapsed() < Duration::from_millis(h.start_period_ms);
        if let Some(hs) = g.state.health.as_mut() {
            super::health::record(hs, probe, h.retries, in_start_period);
        }
        shared.save(&g);
    }
}

fn finish(
    shared: &Shared,
    view: Option<HeldView>,
    lease: Option<super::UsernsLease>,
    owner: super::owner::OwnerLock,
    name_lease: Option<state::NameLease>,
    remove: bool,
) -> Result<(), Error> {
    let _ = std::fs::remove_file(shared.state_dir.join(SOCKET));
    if remove {
        if let Some(v) = view {
            let _ = v.release();
        }
        let _ = std::fs::remove_dir_all(&shared.state_dir);
        match name_lease {
            Some(l) => l.free(),
            None => {
                if let Some(n) = &shared.cfg.name {
                    state::free_name(&shared.cfg.root, n, &shared.cfg.id);
                }
            }
        }
    } else if let Some(v) = view {
        let _ = v.keep();
    }
    drop(lease);
    drop(owner);
    Ok(())
}

/// A path to `dir/monitor.sock` short enough for `sockaddr_un` (108 bytes) however
/// deep the store is: through `/proc/self/fd/N` of the directory, opened
/// `O_PATH` (the descriptor is returned to be kept while the path is used).
pub fn socket_path(dir: &Path) -> std::io::Result<(OwnedFd, PathBuf)> {
    let fd = rustix::fs::open(
        dir,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let p = PathBuf::from(format!("/proc/self/fd/{}/{SOCKET}", fd.as_raw_fd()));
    Ok((fd, p))
}

fn listen(dir: &Path) -> Option<UnixListener> {
    let (_fd, p) = socket_path(dir).ok()?;
    let _ = std::fs::remove_file(dir.join(SOCKET));
    // Created 0600: the umask is set around the bind.
    // SAFETY: umask has no memory effects.
    let old = unsafe { libc::umask(0o177) };
    let l = UnixListener::bind(&p);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    l.ok()
}

fn serve(l: UnixListener, shared: Arc<Shared>) {
    for conn in l.incoming() {
        let Ok(conn) = conn else { continue };
        let s = shared.clone();
        std::thread::spawn(move || {
            let _ = handle(conn, &s);
        });
    }
}

fn handle(conn: UnixStream, shared: &Shared) -> std::io::Result<()> {
    let mut r = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut w = conn;
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["kill", sig] => {
            let sig: i32 = sig.parse().unwrap_or(libc::SIGKILL);
            let mut g = shared.lock();
            if sig == libc::SIGKILL || sig == libc::SIGTERM {
                g.manual_stop = true;
            }
            let res = match &g.signaller {
                Some(s) => s.signal(sig).map_err(|e| e.to_string()),
                None => Err("the container is not running".into()),
            };
            drop(g);
            shared.cv.notify_all();
            match res {
                Ok(()) => writeln!(w, "ok"),
                Err(e) => writeln!(w, "err {e}"),
            }
        }
        ["stop", secs] => {
            let secs: u64 = secs.parse().unwrap_or(shared.cfg.stop_timeout);
            let mut g = shared.lock();
            g.manual_stop = true;
            shared.cv.notify_all();
            if let Some(s) = &g.signaller {
                let _ = s.signal(shared.cfg.stop_signal);
                let exits = g.exits;
                let (g2, t) = shared
                    .cv
                    .wait_timeout_while(g, Duration::from_secs(secs), |g| g.exits == exits)
                    .unwrap_or_else(|e| e.into_inner());
                g = g2;
                if t.timed_out() {
                    if let Some(s) = &g.signaller {
                        let _ = s.signal(libc::SIGKILL);
                    }
                    g = shared
                        .cv
                        .wait_while(g, |g| g.exits == exits)
                        .unwrap_or_else(|e| e.into_inner());
                }
            }
            drop(g);
            writeln!(w, "ok")
        }
        ["wait"] => {
            let g = shared.lock();
            let exits = g.exits;
            let g = shared
                .cv
                .wait_while(g, |g| g.exits == exits && !g.done)
                .unwrap_or_else(|e| e.into_inner());
            let code = g.state.exit_code.map(i32::from).unwrap_or(-1);
            drop(g);
            writeln!(w, "exit {code}")
        }
        ["attach", rest @ ..] => {
            let forwards = rest == ["stdin"];
            let stdin = {
                let mut g = shared.lock();
                g.attached.push(w.try_clone()?);
                match forwards {
                    true => g.stdin.as_ref().and_then(|f| f.try_clone().ok()),
                    false => None,
                }
            };
            writeln!(w, "ok")?;
            // Input from the client goes to the container's stdin (-i). EOF
            // from a client that forwards its stdin (it shuts its write half
            // down, and keeps reading output) closes the container's stdin, as
            // Docker's attach of a `run -i` container does: the monitor drops
            // its write end, so a `cat` in the container sees EOF.
            let mut buf = [0u8; 8192];
            let mut stdin = stdin;
            loop {
                let n = r.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                if let Some(f) = stdin.as_mut() {
                    if f.write_all(&buf[..n]).is_err() {
                        stdin = None;
                    }
                }
            }
            if stdin.take().is_some() {
                shared.lock().stdin = None;
            }
            Ok(())
        }
        _ => writeln!(w, "err unknown request"),
    }
}
