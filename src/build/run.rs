//! RUN steps: the runtime spec for one step (Docker's defaults for build steps via
//! [`crate::container::runtime_spec`], the build's limits and network, the step's
//! `--mount`s) and [`run_step`], the ONE place a step's process is started.
//!
//! Steps are started through the sandbox's lifecycle handle, so stages can run on
//! threads.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Mount as OciMount, Spec};

use super::cache::Cache;
use super::{BuildError, Limits, Network, Secret};
use crate::buildfile::{Mount, MountType};
use crate::container::{self, RunFlags};

/// What a finished step reports.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    pub outcome: crate::sandbox::Outcome,
    /// The step's output (stdout and stderr interleaved).
    pub output: Vec<u8>,
    pub took: Duration,
}

/// Run the process of `spec` on `rootfs` and wait for it: the ONE function that
/// starts a step's process, through the sandbox's lifecycle handle (usable from the
/// build's stage threads). Stdin is /dev/null; stdout and stderr go through one pipe
/// whose lines are handed to `on_line` (with the time since the start) as they come.
/// If the build dies, the container dies with it (the sandbox's parent-death signal).
pub fn run_step(
    spec: &Spec,
    rootfs: &Path,
    cgroup_root: &Path,
    seccomp_cache: Option<&Path>,
    net: Option<&StepNet<'_>>,
    on_line: &mut dyn FnMut(Duration, &str),
) -> Result<StepOutcome, BuildError> {
    use crate::sandbox::{Container, Stdio};
    use std::io::BufRead;
    let started = Instant::now();
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| BuildError::io("pipe", io::Error::from_raw_os_error(e.raw_os_error())))?;
    let w2 = w.try_clone().map_err(|e| BuildError::io("pipe", e))?;
    let opts = crate::sandbox::Options {
        cgroup_root: cgroup_root.to_path_buf(),
        init: false,
        rootfs_shifted: None,
        seccomp_cache: seccomp_cache.map(Path::to_path_buf),
    };
    let fail = |e: crate::sandbox::Error, output: &[u8]| {
        BuildError::StepFailed(Box::new(super::StepFailure {
            at: String::new(),
            what: String::new(),
            reason: e.to_string(),
            code: i32::from(e.exit_code()),
            source_line: String::new(),
            tail: String::from_utf8_lossy(output).into_owned(),
        }))
    };
    let stdio = Stdio::Fds {
        stdin: None,
        stdout: w,
        stderr: w2,
    };
    // Declared before the container so it is dropped after it: the network
    // goes once the step's processes are dead.
    let attached = match net {
        Some(n) => Some(StepAttachment::claim(n, cgroup_root)?),
        None => None,
    };
    // The write ends are handed over (and closed here) by `create`, so the read end
    // sees EOF when the container's processes are gone.
    let mut c = Container::create(spec, rootfs, &opts, stdio).map_err(|e| fail(e, b""))?;
    if let Some(a) = &attached {
        a.attach(c.pid())?;
    }
    c.start().map_err(|e| fail(e, b""))?;
    let mut output = Vec::new();
    let mut reader = io::BufReader::new(fs::File::from(r));
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {
                output.extend_from_slice(&line);
                let text = String::from_utf8_lossy(&line);
                on_line(started.elapsed(), text.trim_end_matches(['\n', '\r']));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let outcome = c.wait().map_err(|e| fail(e, &output))?;
    c.delete().map_err(|e| fail(e, &output))?;
    Ok(StepOutcome {
        outcome,
        output,
        took: started.elapsed(),
    })
}

/// A RUN step on the build's bridge network (Docker's default for RUN: its own
/// namespace with outbound access through NAT).
pub struct StepNet<'a> {
    /// The store root (network definitions, owner locks).
    pub root: &'a Path,
    /// The step's state directory, holding its generated `/etc/hosts`.
    pub state_dir: &'a Path,
}

/// A step's network identity: an owner lock of its own (so `reap_stale`
/// detaches it after a killed build) and, once attached, its endpoint.
/// Dropping it detaches.
struct StepAttachment {
    root: PathBuf,
    id: String,
    state_dir: PathBuf,
    _owner: container::owner::OwnerLock,
}

impl StepAttachment {
    fn claim(n: &StepNet<'_>, cgroup_root: &Path) -> Result<StepAttachment, BuildError> {
        // Step keys share their first characters; veths are named by the
        // first 12 of the id, so the network gets a random id of its own.
        let id = container::new_id();
        let owner = container::owner::claim(n.root, &id, true, cgroup_root)
            .map_err(|e| BuildError::Other(format!("RUN network: {e}")))?;
        Ok(StepAttachment {
            root: n.root.to_path_buf(),
            id,
            state_dir: n.state_dir.to_path_buf(),
            _owner: owner,
        })
    }

    fn attach(&self, pid: i32) -> Result<(), BuildError> {
        let flags = RunFlags {
            id: self.id.clone(),
            hostname: Some("buildkitsandbox".into()),
            network: container::Network::Bridge(crate::network::DEFAULT_NETWORK.into()),
            ..Default::default()
        };
        container::net::attach(&self.root, &flags, None, &self.state_dir, pid)
            .map(drop)
            .map_err(|e| BuildError::Other(format!("RUN network: {e}")))
    }
}

impl Drop for StepAttachment {
    fn drop(&mut self) {
        if let Err(e) = container::net::detach(&self.root, &self.id) {
            tracing::warn!("RUN network cleanup: {e}");
        }
    }
}

/// Resolves `RUN --mount=from=` and the context for bind mounts.
pub trait MountSources {
    /// The root directory for `from` (`None`: the build context).
    fn root_of(&self, from: Option<&str>) -> Result<PathBuf, BuildError>;
}

/// Mounts of one step and what holds them (locks, temp dirs); dropped after the step.
#[derive(Default)]
pub struct StepMounts {
    pub mounts: Vec<OciMount>,
    _locks: Vec<fs::File>,
    temp: Vec<PathBuf>,
}

impl Drop for StepMounts {
    fn drop(&mut self) {
        for t in &self.temp {
            let _ = fs::remove_dir_all(t);
        }
    }
}

fn oci_mount(dest: &str, typ: &str, source: &Path, opts: &[&str]) -> OciMount {
    let mut m = OciMount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(source.to_path_buf()));
    m.set_options(Some(opts.iter().map(|s| s.to_string()).collect()));
    m
}

fn num(at: &str, what: &str, v: &Option<String>, radix: u32) -> Result<Option<u32>, BuildError> {
    v.as_deref()
        .map(|s| {
            u32::from_str_radix(s, radix).map_err(|_| BuildError::Instruction {
                at: at.to_string(),
                message: format!("--mount {what}={s}: not a number"),
            })
        })
        .transpose()
}

fn target_of(m: &Mount, at: &str, workdir: &str) -> Result<String, BuildError> {
    let t = m.target.clone().ok_or_else(|| BuildError::Instruction {
        at: at.to_string(),
        message: format!(
            "--mount=type={}: target= is required",
            m.mount_type().as_str()
        ),
    })?;
    Ok(if t.starts_with('/') {
        t
    } else {
        super::config::normalize(&format!("{workdir}/{t}"))
    })
}

/// Make the mounts of a RUN's `--mount` flags. Secrets are written to a private
/// tmpfs directory (/dev/shm) and bound read-only; they never touch the rootfs.
pub fn step_mounts(
    root: &Path,
    mounts: &[Mount],
    secrets: &[Secret],
    sources: &dyn MountSources,
    at: &str,
    workdir: &str,
) -> Result<StepMounts, BuildError> {
    let mut out = StepMounts::default();
    for m in mounts {
        match m.mount_type() {
            MountType::Ssh => {
                return Err(BuildError::Instruction {
                    at: at.to_string(),
                    message: "RUN --mount=type=ssh is not supported by imgctl (no SSH agent forwarding); use --secret for keys".into(),
                })
            }
            MountType::Tmpfs => {
                let t = target_of(m, at, workdir)?;
                let size = m.size.as_deref().map(|s| format!("size={s}"));
                let mut o = vec!["nosuid", "nodev"];
                if let Some(s) = &size {
                    o.push(s);
                }
                out.mounts.push(oci_mount(&t, "tmpfs", Path::new("tmpfs"), &o));
            }
            MountType::Secret => {
                let id = m
                    .id
                    .clone()
                    .or_else(|| {
                        m.target
                            .as_deref()
                            .and_then(|t| t.rsplit('/').next())
                            .map(str::to_string)
                    })
                    .ok_or_else(|| BuildError::Instruction {
                        at: at.to_string(),
                        message: "--mount=type=secret: id= (or target=) is required".into(),
                    })?;
                let Some(secret) = secrets.iter().find(|s| s.id == id) else {
                    if m.required == Some(true) {
                        return Err(BuildError::Instruction {
                            at: at.to_string(),
                            message: format!(
                                "secret {id} is required but was not given (pass --secret id={id},src=FILE)"
                            ),
                        });
                    }
                    continue;
                };
                if m.env.is_some() {
                    return Err(BuildError::Instruction {
                        at: at.to_string(),
                        message: "--mount=type=secret,env=: not supported; read /run/secrets/ID".into(),
                    });
                }
                let value = secret.value()?;
                let dir = PathBuf::from("/dev/shm").join(format!(
                    "imgctl-secret-{}-{}",
                    std::process::id(),
                    crate::container::new_id().get(..12).unwrap_or("0")
                ));
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&dir)
                    .map_err(|e| BuildError::io(&dir, e))?;
                out.temp.push(dir.clone());
                let file = dir.join("secret");
                let uid = num(at, "uid", &m.uid, 10)?.unwrap_or(0);
                let gid = num(at, "gid", &m.gid, 10)?.unwrap_or(0);
                let mode = num(at, "mode", &m.mode, 8)?.unwrap_or(0o400);
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&file)
                    .map_err(|e| BuildError::io(&file, e))?;
                f.write_all(&value).map_err(|e| BuildError::io(&file, e))?;
                drop(f);
                fs::set_permissions(&file, fs::Permissions::from_mode(mode))
                    .map_err(|e| BuildError::io(&file, e))?;
                std::os::unix::fs::chown(&file, Some(uid), Some(gid))
                    .map_err(|e| BuildError::io(&file, e))?;
                let t = match &m.target {
                    Some(_) => target_of(m, at, workdir)?,
                    None => format!("/run/secrets/{id}"),
                };
                out.mounts.push(oci_mount(
                    &t,
                    "bind",
                    &file,
                    &["rbind", "rprivate", "ro", "nosuid", "nodev", "noexec"],
                ));
            }
            MountType::Cache => {
                let t = target_of(m, at, workdir)?;
                let id = m.id.clone().unwrap_or_else(|| t.clone());
                let dir = Cache::mounts_dir(root);
                fs::create_dir_all(&dir).map_err(|e| BuildError::io(&dir, e))?;
                let hexid = crate::oci::Digest::of(id.as_bytes()).hex().to_string();
                let mut path = dir.join(&hexid);
                let lock_path = path.with_extension("lock");
                let lock = fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&lock_path)
                    .map_err(|e| BuildError::io(&lock_path, e))?;
                match m.sharing.as_deref().unwrap_or("shared") {
                    "shared" => lock.lock_shared(),
                    "locked" => lock.lock(),
                    "private" => {
                        if lock.try_lock().is_err() {
                            // In use: this step gets its own empty directory.
                            path = dir.join(format!("{hexid}.private-{}", std::process::id()));
                            out.temp.push(path.clone());
                        }
                        Ok(())
                    }
                    other => {
                        return Err(BuildError::Instruction {
                            at: at.to_string(),
                            message: format!(
                                "--mount sharing={other}: expected shared, private or locked"
                            ),
                        })
                    }
                }
                .map_err(|e| BuildError::io(&lock_path, e))?;
                out._locks.push(lock);
                if !path.is_dir() {
                    fs::create_dir_all(&path).map_err(|e| BuildError::io(&path, e))?;
                    let mode = num(at, "mode", &m.mode, 8)?.unwrap_or(0o755);
                    fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                        .map_err(|e| BuildError::io(&path, e))?;
                    let uid = num(at, "uid", &m.uid, 10)?.unwrap_or(0);
                    let gid = num(at, "gid", &m.gid, 10)?.unwrap_or(0);
                    std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                        .map_err(|e| BuildError::io(&path, e))?;
                }
                let ro = if m.readonly == Some(true) { "ro" } else { "rw" };
                out.mounts
                    .push(oci_mount(&t, "bind", &path, &["rbind", "rprivate", ro]));
            }
            MountType::Bind => {
                let t = target_of(m, at, workdir)?;
                if m.readonly == Some(false) {
                    return Err(BuildError::Instruction {
                        at: at.to_string(),
                        message: "--mount=type=bind,rw: writable bind mounts are not supported yet; copy what you need instead".into(),
                    });
                }
                let base = sources.root_of(m.from.as_deref())?;
                let src = m.source.as_deref().unwrap_or("/");
                let fd = crate::sys::fs::open_dir_path(&base).map_err(|e| BuildError::io(&base, e))?;
                // Resolve the source inside its root: a directory by openat2, a file
                // through its parent directory.
                let rel = src.trim_start_matches('/');
                let (parent, name) = match rel.rsplit_once('/') {
                    Some((p, n)) => (p, n),
                    None => ("", rel),
                };
                let host = match crate::sys::fs::open_dir_in_root(
                    std::os::fd::AsFd::as_fd(&fd),
                    parent.as_bytes(),
                ) {
                    Ok(dirfd) => {
                        let real = fs::read_link(crate::sys::fs::proc_path(
                            std::os::fd::AsFd::as_fd(&dirfd),
                            b"",
                        ))
                        .map_err(|e| BuildError::io(&base, e))?;
                        if name.is_empty() {
                            real
                        } else {
                            real.join(name)
                        }
                    }
                    Err(e) => {
                        return Err(BuildError::Source {
                            at: at.to_string(),
                            message: format!("--mount source={src}: {e}"),
                        })
                    }
                };
                if fs::symlink_metadata(&host).is_err() {
                    return Err(BuildError::Source {
                        at: at.to_string(),
                        message: format!("--mount source={src}: not found"),
                    });
                }
                out.mounts.push(oci_mount(
                    &t,
                    "bind",
                    &host,
                    &["rbind", "rprivate", "ro"],
                ));
            }
        }
    }
    Ok(out)
}

/// What a step runs with.
pub struct StepConfig<'a> {
    pub id: &'a str,
    pub argv: Vec<String>,
    /// The image config in effect (Env, User, WorkingDir).
    pub image: Option<&'a crate::oci::RunConfig>,
    /// Build args and proxy variables added to the environment.
    pub extra_env: Vec<String>,
    pub limits: Limits,
    pub network: Network,
    pub state_dir: &'a Path,
}

/// The runtime spec of a RUN step on `rootfs`: Docker's defaults for a container
/// (capabilities, seccomp, masked paths), the build's limits, and `extra` mounts.
pub fn step_spec(
    c: &StepConfig<'_>,
    rootfs: &Path,
    extra: &[OciMount],
) -> Result<Spec, BuildError> {
    let network = match c.network {
        Network::Host => container::Network::Host,
        Network::None => container::Network::None,
        Network::Bridge => container::Network::Bridge(crate::network::DEFAULT_NETWORK.into()),
    };
    let flags = RunFlags {
        id: c.id.to_string(),
        hostname: Some("buildkitsandbox".into()),
        env: c.extra_env.clone(),
        entrypoint: Some(String::new()),
        cmd: c.argv.clone(),
        network: network.clone(),
        memory: c.limits.memory,
        // No swap beyond the limit: a step over its memory fails instead of swapping.
        memory_swap: c.limits.memory,
        cpu_quota: c.limits.cpu_quota,
        cpu_period: c.limits.cpu_period,
        pids_limit: c.limits.pids,
        devices: c.limits.devices.clone(),
        shm_size: c.limits.shm_size,
        ulimits: c.limits.ulimits.clone(),
        cgroup_parent: Some("imgctl-build".into()),
        ..Default::default()
    };
    let etc = container::write_etc_files(c.state_dir, "buildkitsandbox", &network)
        .map_err(|e| BuildError::Other(format!("prepare step: {e}")))?;
    let mut spec = container::runtime_spec(c.image, &flags, rootfs, etc, None)
        .map_err(|e| BuildError::Other(format!("runtime spec: {e}")))?;
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.extend(extra.iter().cloned());
    spec.set_mounts(Some(mounts));
    Ok(spec)
}
