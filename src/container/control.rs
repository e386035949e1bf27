//! Containers after `run`: look one up by name or ID prefix, start a detached
//! one (its [`super::monitor`]), and stop, kill, wait for, restart or remove it
//! through its monitor's socket; list them for `ps`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio as PStdio;
use std::time::{Duration, Instant};

use super::monitor::{self, HealthConfig, ImageSource, MonitorConfig, RestartPolicy};
use super::prepare::RootfsSource;
use super::state::{self, State, Status};
use super::{owner, Error, RunFlags};

/// The id of the container `reference` names: a full ID, a name, or a unique
/// prefix of an ID.
pub fn lookup(root: &Path, reference: &str) -> Result<String, Error> {
    let dir = state::containers_dir(root);
    let no = || Error::NoSuchContainer {
        reference: reference.to_string(),
    };
    if reference.is_empty() || reference.contains('/') || reference.starts_with('.') {
        return Err(no());
    }
    if reference.len() == 64 && dir.join(reference).join("state.json").is_file() {
        return Ok(reference.to_string());
    }
    if let Some(id) = state::name_owner(root, reference) {
        if dir.join(&id).join("state.json").is_file() {
            return Ok(id);
        }
    }
    let hits: Vec<String> = ids(root)
        .into_iter()
        .filter(|id| id.starts_with(reference))
        .collect();
    match hits.len() {
        0 => Err(no()),
        1 => Ok(hits.into_iter().next().unwrap_or_default()),
        count => Err(Error::Ambiguous {
            reference: reference.to_string(),
            count,
        }),
    }
}

/// Ids of every container with a state file.
pub fn ids(root: &Path) -> Vec<String> {
    let dir = state::containers_dir(root);
    std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            (n.len() == 64 && e.path().join("state.json").is_file()).then_some(n)
        })
        .collect()
}

/// The state directory of container `id`.
pub fn state_dir(root: &Path, id: &str) -> PathBuf {
    state::containers_dir(root).join(id)
}

/// What `run -d` adds to a foreground run's request.
pub struct DetachRequest {
    pub root: PathBuf,
    pub flags: RunFlags,
    pub rootfs: RootfsSource,
    pub name: Option<String>,
    pub image_name: Option<String>,
    pub labels: std::collections::BTreeMap<String, String>,
    pub remove: bool,
    pub init: bool,
    pub interactive: bool,
    pub cgroup_root: PathBuf,
    pub restart: RestartPolicy,
    pub health: HealthFlags,
    /// `--stop-signal` (else the image's STOPSIGNAL, else SIGTERM).
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<u64>,
    /// `--log-opt max-size=`, `max-file=`.
    pub log_max_size: Option<u64>,
    pub log_max_files: Option<u32>,
}

/// `--health-*` and `--no-healthcheck`.
#[derive(Debug, Clone, Default)]
pub struct HealthFlags {
    pub cmd: Option<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub retries: Option<u32>,
    pub none: bool,
}

/// Parse a signal: `SIGTERM`, `TERM`, `term` or `15`.
pub fn parse_signal(s: &str) -> Result<i32, Error> {
    let bad = || Error::BadFlag {
        flag: "signal".into(),
        value: s.into(),
        hint: "a signal name (SIGTERM, KILL) or number".into(),
    };
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "CHLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => return Err(bad()),
    };
    Ok(n)
}

fn nanos_ms(v: Option<&serde_json::Value>) -> Option<u64> {
    v.and_then(|v| v.as_u64())
        .filter(|&n| n > 0)
        .map(|n| n / 1_000_000)
}

/// The healthcheck to run: the image's `Healthcheck` with `--health-*` on top;
/// none with `--no-healthcheck` or a `NONE` test.
pub fn health_config(
    image: Option<&crate::oci::RunConfig>,
    f: &HealthFlags,
) -> Option<HealthConfig> {
    if f.none {
        return None;
    }
    let img = image.and_then(|c| c.extra.get("Healthcheck"));
    let mut test: Vec<String> = img
        .and_then(|h| h.get("Test"))
        .and_then(|t| serde_json::from_value(t.clone()).ok())
        .unwrap_or_default();
    if let Some(cmd) = &f.cmd {
        test = vec!["CMD-SHELL".into(), cmd.clone()];
    }
    if test.is_empty() || test[0] == "NONE" {
        return None;
    }
    let ms = |flag: Option<Duration>, key: &str, default: u64| {
        flag.map(|d| d.as_millis() as u64)
            .or_else(|| nanos_ms(img.and_then(|h| h.get(key))))
            .unwrap_or(default)
    };
    Some(HealthConfig {
        test,
        interval_ms: ms(f.interval, "Interval", 30_000),
        timeout_ms: ms(f.timeout, "Timeout", 30_000),
        start_period_ms: ms(f.start_period, "StartPeriod", 0),
        retries: f
            .retries
            .or_else(|| {
                img.and_then(|h| h.get("Retries"))
                    .and_then(|v| v.as_u64())
                    .filter(|&n| n > 0)
                    .map(|n| n as u32)
            })
            .unwrap_or(3),
    })
}

/// `run -d`: start a monitor that prepares and runs the container; returns its
/// id once the command runs (or the error that kept it from running).
pub fn run_detached(req: DetachRequest) -> Result<String, Error> {
    let cfg = monitor_config(req)?;
    spawn_monitor(&cfg, false)?;
    Ok(cfg.id)
}

/// `create`: prepare the container as `run -d` does (its view, runtime spec,
/// `monitor.json`, state and name) without starting it; [`start`] runs it later
/// through a monitor. Returns its id; it is listed as created until then.
pub fn create(req: DetachRequest) -> Result<String, Error> {
    let cfg = monitor_config(req)?;
    monitor::create(&cfg)?;
    Ok(cfg.id)
}

/// What a detached container's monitor is given, from the request (flags checked,
/// the image's stop signal and healthcheck applied).
fn monitor_config(req: DetachRequest) -> Result<MonitorConfig, Error> {
    super::net::check(&req.root, &req.flags)?;
    let (image, image_id, run_config) = match req.rootfs {
        RootfsSource::Image(img) => {
            let id = img.id().to_string();
            let cfg = img.run_config().cloned();
            let src = if img.store().is_some() {
                ImageSource::Store { id: id.clone() }
            } else {
                ImageSource::Layout {
                    name: img.name.clone(),
                }
            };
            (src, Some(id), cfg)
        }
        RootfsSource::Dir { path, config } => {
            let path = std::fs::canonicalize(&path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            let cfg = config.clone();
            (
                ImageSource::Dir {
                    path,
                    config: config.map(Box::new),
                },
                None,
                cfg,
            )
        }
    };
    let stop_signal = match req
        .stop_signal
        .as_deref()
        .or(run_config.as_ref().and_then(|c| c.stop_signal.as_deref()))
    {
        Some(s) => parse_signal(s)?,
        None => libc::SIGTERM,
    };
    let cfg = MonitorConfig {
        root: std::path::absolute(&req.root).unwrap_or(req.root.clone()),
        id: req.flags.id.clone(),
        name: req.name,
        image_name: req.image_name,
        image_id,
        image,
        health: health_config(run_config.as_ref(), &req.health),
        flags: req.flags,
        labels: req.labels,
        remove: req.remove,
        init: req.init,
        interactive: req.interactive,
        cgroup_root: req.cgroup_root,
        restart: req.restart,
        stop_signal,
        stop_timeout: req.stop_timeout.unwrap_or(10),
        log_max_size: req.log_max_size.unwrap_or(super::logs::DEFAULT_MAX_SIZE),
        log_max_files: req.log_max_files.unwrap_or(super::logs::DEFAULT_MAX_FILES),
    };
    Ok(cfg)
}

/// Start the monitor and read its one-line report.
fn spawn_monitor(cfg: &MonitorConfig, start: bool) -> Result<(), Error> {
    use std::os::unix::process::CommandExt;
    let body = serde_json::to_vec(cfg).map_err(|e| Error::Spec(e.to_string()))?;
    let io = |source| Error::Io {
        path: PathBuf::from("/proc/self/exe"),
        source,
    };
    let mut child = std::process::Command::new("/proc/self/exe")
        .arg0(monitor::ARGV0)
        .arg(if start { "start" } else { "create" })
        .stdin(PStdio::piped())
        .stdout(PStdio::piped())
        .stderr(PStdio::null())
        .spawn()
        .map_err(io)?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(&body).map_err(io)?;
    }
    let mut out = String::new();
    if let Some(o) = child.stdout.take() {
        let _ = BufReader::new(o).read_line(&mut out);
    }
    let _ = child.wait();
    let out = out.trim();
    if out == "ok" {
        return Ok(());
    }
    let rest = out.strip_prefix("err ").unwrap_or(out);
    let (code, msg) = rest.split_once(' ').unwrap_or(("125", rest));
    let msg = if msg.is_empty() {
        "the container's monitor ended without a report".to_string()
    } else {
        msg.to_string()
    };
    Err(Error::Sandbox(crate::sandbox::Error::Child {
        code: code.parse().unwrap_or(125),
        message: msg,
    }))
}

/// Send one request to the monitor of the container in `dir`; `None` when no
/// monitor listens (the container is not running detached).
fn request(dir: &Path, line: &str) -> Option<String> {
    let (_fd, p) = monitor::socket_path(dir).ok()?;
    let mut s = UnixStream::connect(&p).ok()?;
    writeln!(s, "{line}").ok()?;
    let mut out = String::new();
    BufReader::new(s).read_line(&mut out).ok()?;
    Some(out.trim().to_string())
}

fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

/// Wait until no process owns `id` (its monitor or foreground run ended).
fn wait_unowned(root: &Path, id: &str, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while owner::is_owned(root, id) {
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// `kill [-s SIG]`.
pub fn kill(root: &Path, id: &str, sig: i32) -> Result<(), Error> {
    let dir = state_dir(root, id);
    match request(&dir, &format!("kill {sig}")) {
        Some(r) if r == "ok" => Ok(()),
        Some(r) if r.starts_with("err") => Err(Error::NotRunning { id: short(id) }),
        Some(_) | None => {
            // A foreground container: its pid, while its owner lives.
            let st = State::load(&dir)?;
            match (st.status, st.pid, owner::is_owned(root, id)) {
                (Status::Running, Some(pid), true) => {
                    // SAFETY: kill with plain integers.
                    if unsafe { libc::kill(pid as i32, sig) } == 0 {
                        Ok(())
                    } else {
                        Err(Error::NotRunning { id: short(id) })
                    }
                }
                _ => Err(Error::NotRunning { id: short(id) }),
            }
        }
    }
}

/// `stop [-t N]`: the stop signal, then SIGKILL after `timeout` seconds. A
/// stopped container is not an error.
pub fn stop(root: &Path, id: &str, timeout: Option<u64>) -> Result<(), Error> {
    let dir = state_dir(root, id);
    let t = timeout.map(|t| t.to_string()).unwrap_or_else(|| "-".into());
    match request(&dir, &format!("stop {t}")) {
        Some(_) => {
            wait_unowned(root, id, Duration::from_secs(30));
            Ok(())
        }
        None => {
            let st = State::load(&dir)?;
            if st.status == Status::Running && owner::is_owned(root, id) {
                kill(root, id, libc::SIGTERM)?;
                if !wait_unowned(root, id, Duration::from_secs(timeout.unwrap_or(10))) {
                    let _ = kill(root, id, libc::SIGKILL);
                    wait_unowned(root, id, Duration::from_secs(10));
                }
            }
            Ok(())
        }
    }
}

/// `wait`: block until the container stops; its exit code (-1 unknown).
pub fn wait(root: &Path, id: &str) -> Result<i32, Error> {
    let dir = state_dir(root, id);
    let mut st = State::load(&dir)?;
    // A created container: waited for until it has been started (as Docker
    // does); an error if it is removed meanwhile.
    while st.status == Status::Created {
        std::thread::sleep(Duration::from_millis(50));
        st = State::load(&dir)?;
    }
    if st.status == Status::Running {
        if let Some(r) = request(&dir, "wait") {
            if let Some(c) = r.strip_prefix("exit ").and_then(|c| c.parse().ok()) {
                return Ok(c);
            }
        }
        while owner::is_owned(root, id) {
            std::thread::sleep(Duration::from_millis(50));
        }
        // A dead owner's container is recorded by the reaper.
        owner::reap_stale(root);
    }
    let st = State::load(&dir)?;
    Ok(st.exit_code.map(i32::from).unwrap_or(-1))
}

/// `start`: run a created (`create`) or stopped detached container, with its kept
/// filesystem.
pub fn start(root: &Path, id: &str) -> Result<(), Error> {
    let dir = state_dir(root, id);
    // A monitor finishing up after the exit (unmounting the view) holds it a
    // moment longer: that is not a running container.
    if State::load(&dir).is_ok_and(|s| s.status != Status::Running && !s.restarting) {
        wait_unowned(root, id, Duration::from_secs(10));
    }
    if owner::is_owned(root, id) {
        return Ok(()); // already running: Docker's start is a no-op then
    }
    let body = std::fs::read(dir.join(monitor::CONFIG)).map_err(|_| {
        Error::Spec(format!(
            "container {} was not run detached (run -d); it cannot be started again",
            short(id)
        ))
    })?;
    let cfg: MonitorConfig =
        serde_json::from_slice(&body).map_err(|e| Error::Spec(format!("monitor.json: {e}")))?;
    spawn_monitor(&cfg, true)
}

/// `start -a`: start, then copy what this run writes (from its logs, so output
/// written before the copy began is not lost) to `out` and `err` until it ends;
/// its exit code. With `stdin` (`start -ai`), this process's stdin goes to the
/// container's (a `create -i` container), its EOF closing it.
pub fn start_attached(
    root: &Path,
    id: &str,
    stdin: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32, Error> {
    let since = super::logs::now_nanos();
    start(root, id)?;
    if stdin {
        forward_stdin(root, id)?;
    }
    // Asked now, while the container runs: with `--rm` its state is gone after.
    let waiter = {
        let (root, id) = (root.to_path_buf(), id.to_string());
        std::thread::spawn(move || wait(&root, &id))
    };
    let opts = super::logs::ReadOptions {
        since: Some(since),
        until: None,
        tail: None,
        timestamps: false,
        follow: true,
    };
    let copied = logs(root, id, &opts, out, err);
    let code = waiter
        .join()
        .unwrap_or_else(|_| Err(Error::Spec("the wait for the container panicked".into())));
    copied?;
    code
}

/// Send this process's stdin to the running container `id`'s (through its
/// monitor's `attach stdin`; EOF closes the container's stdin). The output the
/// monitor also sends on that connection is read and dropped: `start -ai`
/// takes it from the logs, where nothing written before the attach is lost.
fn forward_stdin(root: &Path, id: &str) -> Result<(), Error> {
    let (mut s, mut r) = attach_request(root, id, "attach stdin")?;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut r, &mut std::io::sink());
    });
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut s);
        let _ = s.shutdown(std::net::Shutdown::Write);
    });
    Ok(())
}

/// `restart`: stop, then start.
pub fn restart(root: &Path, id: &str, timeout: Option<u64>) -> Result<(), Error> {
    stop(root, id, timeout)?;
    start(root, id)
}

/// `rm [-f]`: remove a stopped container (a running one with `force`, killed
/// first): its view, state directory and name. Nothing is left.
pub fn remove(root: &Path, id: &str, force: bool) -> Result<(), Error> {
    let dir = state_dir(root, id);
    // A monitor finishing up after the exit holds it a moment longer.
    let stopped = State::load(&dir).is_ok_and(|s| s.status != Status::Running);
    if stopped {
        wait_unowned(root, id, Duration::from_secs(10));
    }
    if owner::is_owned(root, id) {
        if !force {
            return Err(Error::Running { id: short(id) });
        }
        let _ = kill(root, id, libc::SIGKILL);
        if !wait_unowned(root, id, Duration::from_secs(20)) {
            return Err(Error::Spec(format!(
                "container {} did not stop after SIGKILL",
                short(id)
            )));
        }
    }
    // What a dead owner left (cgroup, view) is cleaned first.
    owner::reap_stale(root);
    let st = State::load(&dir).ok();
    let key = owner::view_key(id);
    if crate::image::has_view(root, &key) {
        crate::image::release(root, &key)?;
    }
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(Error::Io { path: dir, source }),
    }
    if let Some(n) = st.as_ref().and_then(|s| s.name.as_deref()) {
        state::free_name(root, n, id);
    }
    Ok(())
}

/// One row of `ps`.
#[derive(Debug, Clone)]
pub struct Summary {
    pub state: State,
    /// The process's argv (from `config.json`).
    pub command: Vec<String>,
    /// A monitor or foreground run owns it now.
    pub alive: bool,
}

/// Every container (only running ones unless `all`), newest first.
pub fn list(root: &Path, all: bool) -> Vec<Summary> {
    let mut out: Vec<Summary> = ids(root)
        .into_iter()
        .filter_map(|id| {
            let dir = state_dir(root, &id);
            let state = State::load(&dir).ok()?;
            let alive = owner::is_owned(root, &id);
            // Without `all`: running ones, and those about to be restarted.
            if !all && state.status != Status::Running && !(state.restarting && alive) {
                return None;
            }
            let command = read_command(&dir);
            Some(Summary {
                state,
                command,
                alive,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        b.state
            .created
            .cmp(&a.state.created)
            .then(a.state.id.cmp(&b.state.id))
    });
    out
}

/// The container's argv from its `config.json`.
pub fn read_command(dir: &Path) -> Vec<String> {
    let Ok(f) = std::fs::File::open(dir.join("config.json")) else {
        return Vec::new();
    };
    let mut body = Vec::new();
    if f.take(4 << 20).read_to_end(&mut body).is_err() {
        return Vec::new();
    }
    serde_json::from_slice::<oci_spec::runtime::Spec>(&body)
        .ok()
        .and_then(|s| s.process().as_ref().and_then(|p| p.args().clone()))
        .unwrap_or_default()
}

/// `logs`: print the logs of `id`, following while it runs with `opts.follow`.
pub fn logs(
    root: &Path,
    id: &str,
    opts: &super::logs::ReadOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Error> {
    let dir = state_dir(root, id);
    let st = State::load(&dir)?;
    if !st.detached && !dir.join(super::logs::LOG_FILE).exists() {
        return Err(Error::Spec(format!(
            "container {} ran in the foreground: its output went to the terminal, there are no logs",
            short(id)
        )));
    }
    super::logs::read(&dir, opts, out, err, &|| owner::is_owned(root, id))
}

/// Connect to container `id`'s monitor and make an attach request (`attach`
/// or `attach stdin`): the connection, and a reader past the monitor's "ok".
fn attach_request(
    root: &Path,
    id: &str,
    req: &str,
) -> Result<(UnixStream, BufReader<UnixStream>), Error> {
    let dir = state_dir(root, id);
    let not_running = || Error::NotRunning { id: short(id) };
    let (_fd, p) = monitor::socket_path(&dir).map_err(|_| not_running())?;
    let mut s = UnixStream::connect(&p).map_err(|_| not_running())?;
    writeln!(s, "{req}").map_err(|_| not_running())?;
    let mut r = BufReader::new(s.try_clone().map_err(|_| not_running())?);
    let mut line = String::new();
    r.read_line(&mut line).map_err(|_| not_running())?;
    if line.trim() != "ok" {
        return Err(not_running());
    }
    Ok((s, r))
}

/// `attach`: stream the container's output (and with `-i` at run, our stdin to
/// it, EOF included: the container's stdin is closed then) until it stops.
/// Returns its exit code.
pub fn attach(
    root: &Path,
    id: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
    forward_stdin: bool,
) -> Result<i32, Error> {
    let not_running = || Error::NotRunning { id: short(id) };
    let req = match forward_stdin {
        true => "attach stdin",
        false => "attach",
    };
    let (s, mut r) = attach_request(root, id, req)?;
    let p = state_dir(root, id);
    if forward_stdin {
        let mut w = s.try_clone().map_err(|_| not_running())?;
        // EOF on our stdin ends the write half: the monitor then closes the
        // container's stdin (a `cat` in it ends), and output keeps coming.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut w);
            let _ = w.shutdown(std::net::Shutdown::Write);
        });
    }
    let io = |source| Error::Io {
        path: p.clone(),
        source,
    };
    let mut hdr = [0u8; 8];
    loop {
        match r.read_exact(&mut hdr) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(io(e)),
        }
        let len = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
        let mut data = vec![0u8; len];
        r.read_exact(&mut data).map_err(io)?;
        let w: &mut dyn Write = if hdr[0] == 2 { &mut *err } else { &mut *out };
        w.write_all(&data).map_err(io)?;
        w.flush().map_err(io)?;
    }
    drop(s);
    wait(root, id)
}
