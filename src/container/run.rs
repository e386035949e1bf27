//! The one-shot foreground run (`imgctl run`) and OCI bundles (`imgctl bundle`),
//! both on [`super::prepare`].

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::prepare::{prepare, PrepareRequest, RootfsSource};
use super::state::{self, State, Status};
use super::{Error, RunFlags};
use crate::sandbox;

pub use crate::sandbox::Outcome;

/// A foreground run.
pub struct RunRequest {
    pub prepare: PrepareRequest,
    /// `--name`, reserved before anything is made.
    pub name: Option<String>,
    /// The image argument, recorded in the state.
    pub image_name: Option<String>,
    /// Remove the state when the container exits (`--rm`).
    pub remove: bool,
    /// Run a tiny init as PID 1.
    pub init: bool,
    /// Pass the caller's stdin to the container (`-i`); else it reads `/dev/null`.
    pub interactive: bool,
    /// Where cgroupfs is mounted.
    pub cgroup_root: PathBuf,
}

/// Prepare, run in the foreground with the caller's stdio, record the outcome.
/// The state directory is removed with `remove` or when the container could not
/// start; the image view and id lease are always released before returning.
pub fn run_foreground(req: RunRequest) -> Result<Outcome, Error> {
    run_foreground_report(req).map(|(o, _)| o)
}

/// [`run_foreground`], also returning what the container used (its cgroup's
/// final counters and the time from creation to exit), for `run --stats-file` and
/// `size --probe`.
pub fn run_foreground_report(req: RunRequest) -> Result<(Outcome, sandbox::RunReport), Error> {
    run_inner(req, false)
}

/// [`run_foreground_report`] with the container's stdin, stdout and stderr on
/// `/dev/null` and no signal forwarding: a measured run whose output is not
/// wanted (`size --probe`).
pub fn run_silent_report(req: RunRequest) -> Result<(Outcome, sandbox::RunReport), Error> {
    run_inner(req, true)
}

fn run_inner(req: RunRequest, silent: bool) -> Result<(Outcome, sandbox::RunReport), Error> {
    let RunRequest {
        prepare: mut preq,
        name,
        image_name,
        remove,
        init,
        interactive,
        cgroup_root,
    } = req;
    let id = preq.flags.id.clone();
    super::net::check(&preq.root, &preq.flags)?;
    let root = preq.root.clone();
    let mut net_flags = preq.flags.clone();
    if net_flags.publish_all {
        let config = match &preq.rootfs {
            RootfsSource::Image(img) => img.run_config(),
            RootfsSource::Dir { config, .. } => config.as_ref(),
        };
        super::net::publish_exposed(&mut net_flags, config)?;
    }
    preq.flags.volatile |= remove;
    // Held until everything below is gone: if this process is killed, the next
    // imgctl command cleans up after it (super::owner).
    let owner = super::owner::claim(&preq.root, &id, remove, &cgroup_root)?;
    let name_lease = match &name {
        Some(n) => Some(state::reserve_name(&preq.root, n, &id)?),
        None => None,
    };
    let p = match prepare(preq) {
        Ok(p) => p,
        Err(e) => {
            if let Some(l) = name_lease {
                l.free();
            }
            return Err(e);
        }
    };
    let mut st = State::new(&id, name, image_name);
    let pending: std::cell::RefCell<Option<super::net::PendingAttach>> = Default::default();
    let result = (|| -> Result<(Outcome, sandbox::RunReport), Error> {
        let config = p.state_dir.join("config.json");
        let body = serde_json::to_vec_pretty(&p.spec).map_err(|e| Error::Spec(e.to_string()))?;
        let durable = !remove;
        let written = if durable {
            crate::store::write_atomic(&config, &body, 0o600)
        } else {
            crate::store::write_atomic_volatile(&config, &body, 0o600)
        };
        written.map_err(|source| Error::Io {
            path: config,
            source,
        })?;
        // A foreground container starts right away: recorded running with its
        // pid once its command runs (`exec` and `ps` read it).
        st.status = Status::Running;
        st.started = Some(state::now());
        let opts = sandbox::Options {
            init,
            rootfs_shifted: p.rootfs_shifted.clone(),
            cgroup_root,
            seccomp_cache: Some(super::seccomp_cache_dir(&root)),
        };
        // The network is attached beside the container's set-up, from its
        // clone on (its namespace exists then), and waited for between create
        // and start; recorded with the pid so `--network container:` can find it.
        let ctr_name = st.name.clone();
        let mut on_clone = |pid: i32| {
            *pending.borrow_mut() = super::net::attach_beside(
                &root,
                &net_flags,
                ctr_name.as_deref(),
                &p.state_dir,
                pid,
            );
        };
        let mut before_start = |pid: i32| -> Result<(), sandbox::Error> {
            let as_setup = |e: Error| sandbox::Error::Setup {
                step: "network".into(),
                source: std::io::Error::other(e.to_string()),
            };
            let attached = pending.borrow_mut().take();
            let ep = match attached {
                Some(a) => a.finish(),
                None => {
                    super::net::attach(&root, &net_flags, ctr_name.as_deref(), &p.state_dir, pid)
                }
            }
            .map_err(as_setup)?;
            st.pid = u32::try_from(pid).ok();
            st.network = ep;
            st.save_with(&p.state_dir, durable).map_err(as_setup)
        };
        if silent {
            return Ok(run_null(
                &p.spec,
                &p.rootfs,
                &opts,
                &mut on_clone,
                &mut before_start,
            )?);
        }
        Ok(sandbox::run_with_hooks(
            &p.spec,
            &p.rootfs,
            &opts,
            interactive,
            &mut on_clone,
            &mut before_start,
        )?)
    })();
    // An attach still running (the container failed in its set-up) ends
    // before the clean-up, so nothing is made after it.
    drop(pending.borrow_mut().take());
    if let Err(e) = super::net::detach_soon(&id) {
        tracing::warn!(
            "container {}: network cleanup: {e}",
            &id[..12.min(id.len())]
        );
    }
    let started = result.is_ok();
    // With --rm the state is about to go: nothing to record.
    if let (Ok((outcome, _)), false) = (&result, remove) {
        st.status = Status::Stopped;
        st.pid = None;
        st.network = None;
        st.finished = Some(state::now());
        st.exit_code = Some(outcome.exit_code());
        st.oom_killed = *outcome == Outcome::OomKilled;
        if let Err(e) = st.save(&p.state_dir) {
            tracing::warn!("container {}: record exit: {e}", &id[..12.min(id.len())]);
        }
    }
    if remove || !started {
        let _ = std::fs::remove_dir_all(&p.state_dir);
        if let Some(l) = name_lease {
            l.free();
        }
    }
    // The container is gone: release the id range and the image's rootfs.
    drop(p.lease);
    if let Some(v) = p.view {
        if let Err(e) = v.release() {
            tracing::warn!("release the rootfs of {}: {e}", &id[..12.min(id.len())]);
        }
    }
    drop(owner);
    result
}

/// Run with stdio on `/dev/null`, wait, read the cgroup's final figures.
fn run_null(
    spec: &oci_spec::runtime::Spec,
    rootfs: &Path,
    opts: &sandbox::Options,
    on_clone: &mut dyn FnMut(i32),
    before_start: &mut dyn FnMut(i32) -> Result<(), sandbox::Error>,
) -> Result<(Outcome, sandbox::RunReport), sandbox::Error> {
    let began = std::time::Instant::now();
    let mut c =
        sandbox::Container::create_beside(spec, rootfs, opts, sandbox::Stdio::Null, on_clone)?;
    before_start(c.pid())?;
    c.start()?;
    let outcome = c.wait()?;
    let report = sandbox::RunReport {
        stats: c.stats(),
        cgroup_version: c.cgroup_version(),
        took: began.elapsed(),
    };
    c.delete()?;
    Ok((outcome, report))
}

/// Create the directory the user named for a bundle: 0700 like runc/containerd
/// state dirs, since the rootfs below holds the image's setuid files and device
/// nodes. An existing directory is used as it is (never chmodded).
fn bundle_dir(dir: &Path) -> Result<PathBuf, Error> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {
            // The umask may only have removed bits; make sure of 0700 exactly.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(io(e)),
    }
    std::fs::canonicalize(dir).map_err(io)
}

/// Write an OCI runtime bundle (`config.json` + rootfs) in `dir` for `flags`,
/// runnable by crun or runc. An image is resolved once by the caller and flattened
/// into `dir/rootfs` (created 0755, root-owned; no overlay is mounted). Returns the
/// bundle's absolute path.
pub fn write_bundle(
    root: &Path,
    flags: RunFlags,
    rootfs: RootfsSource,
    dir: &Path,
) -> Result<PathBuf, Error> {
    let dir = bundle_dir(dir)?;
    let (source, flattened) = match rootfs {
        RootfsSource::Dir { path, config } => (RootfsSource::Dir { path, config }, None),
        RootfsSource::Image(img) => {
            let rootfs = dir.join("rootfs");
            match std::fs::DirBuilder::new().mode(0o755).create(&rootfs) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(Error::Spec(format!(
                        "bundle directory {} already has a rootfs; remove it or choose another directory",
                        dir.display()
                    )))
                }
                Err(source) => {
                    return Err(Error::Io {
                        path: rootfs,
                        source,
                    })
                }
            }
            if let Err(e) = crate::image::flatten_to_dir(&img, &rootfs) {
                let _ = std::fs::remove_dir_all(&rootfs);
                return Err(e.into());
            }
            (
                RootfsSource::Dir {
                    path: rootfs.clone(),
                    config: img.run_config().cloned(),
                },
                Some(rootfs),
            )
        }
    };
    let cleanup = |e: Error| {
        if let Some(r) = &flattened {
            let _ = std::fs::remove_dir_all(r);
        }
        e
    };
    let mut p = prepare(PrepareRequest {
        root: root.to_path_buf(),
        flags,
        rootfs: source,
        state_dir: Some(dir.clone()),
    })
    .map_err(cleanup)?;
    // A flattened rootfs is named relative to the bundle so the bundle can move
    // (a user-namespace copy in the store's cache keeps its absolute path).
    if flattened.is_some() && p.rootfs_shifted.is_none() {
        if let Some(mut r) = p.spec.root().clone() {
            r.set_path(PathBuf::from("rootfs"));
            p.spec.set_root(Some(r));
        }
    }
    let config = dir.join("config.json");
    let body = serde_json::to_vec_pretty(&p.spec).map_err(|e| Error::Spec(e.to_string()))?;
    crate::store::write_atomic(&config, &body, 0o600).map_err(|source| Error::Io {
        path: config,
        source,
    })?;
    Ok(dir)
}
