//! Who owns a container's leftovers, whatever PID namespace they look from.
//!
//! The process that makes a container (`imgctl run` today, the monitor of
//! `run -d` later) first takes an exclusive `flock` on
//! `<root>/locks/containers/<id>` ([`claim`]) and keeps it until the container's
//! cgroup, image view and (with `--rm`) state directory are gone; then it removes
//! the file. The kernel drops the lock when its holder dies, even by SIGKILL, and
//! a lock is seen the same from every PID namespace (a pid is not: two imgctl
//! processes in different PID namespaces sharing a store would each take the
//! other's pids for dead). So a lock file that can be locked belongs to a dead
//! owner, and [`reap_stale`] (called by every imgctl command at start-up) cleans
//! what it made: kills what is left in its cgroup and removes it, unmounts and
//! removes its view (snapshot key [`view_key`]; a detached container's view is
//! only unmounted, so `start` can mount it again), and removes its state directory
//! (`--rm`) or records it as stopped with an unknown exit code. A detached
//! container with `--restart always|unless-stopped` is then started again (a
//! new monitor), as Docker does when its daemon comes back.
//!
//! The file also records the owner's pid, PID-namespace inode and start time, for
//! people reading it; liveness is judged by the lock alone.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::state::{self, State, Status};
use super::Error;

/// The snapshot key of a container's image view.
pub fn view_key(id: &str) -> String {
    format!("ctr-{id}")
}

fn locks_dir(root: &Path) -> PathBuf {
    root.join("locks").join("containers")
}

/// The owner lock file of container `id`.
pub fn lock_path(root: &Path, id: &str) -> PathBuf {
    locks_dir(root).join(id)
}

/// What the lock file says (informational, and how to clean up).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OwnerInfo {
    pub pid: u32,
    /// Inode of the owner's PID namespace (`/proc/self/ns/pid`).
    pub pid_ns: u64,
    /// The owner's start time in clock ticks since boot (`/proc/self/stat` field 22).
    pub start_time: u64,
    /// `--rm`: the state directory goes with the container.
    pub remove: bool,
    /// Where the container's cgroup lives.
    pub cgroup_root: PathBuf,
}

impl OwnerInfo {
    fn of_self(remove: bool, cgroup_root: &Path) -> OwnerInfo {
        let start_time = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                // Fields after the command name (which may hold spaces) in parentheses.
                let rest = s.rsplit_once(')')?.1;
                rest.split_whitespace().nth(19)?.parse().ok()
            })
            .unwrap_or(0);
        OwnerInfo {
            pid: std::process::id(),
            pid_ns: std::fs::metadata("/proc/self/ns/pid")
                .map(|m| m.ino())
                .unwrap_or(0),
            start_time,
            remove,
            cgroup_root: cgroup_root.to_path_buf(),
        }
    }
}

/// The held owner lock of one container; dropping it removes the lock file (the
/// owner has cleaned up by then).
#[derive(Debug)]
pub struct OwnerLock {
    path: PathBuf,
    file: Option<File>,
}

impl Drop for OwnerLock {
    fn drop(&mut self) {
        // Unlink before unlocking (closing): a reaper that locks the old file
        // next sees it is no longer the one at the path.
        if let Some(f) = self.file.take() {
            let _ = std::fs::remove_file(&self.path);
            drop(f);
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Become the owner of container `id`: before anything of it is made.
pub fn claim(root: &Path, id: &str, remove: bool, cgroup_root: &Path) -> Result<OwnerLock, Error> {
    let dir = locks_dir(root);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let path = dir.join(id);
    // Made under a temporary name (which reapers skip), locked and filled,
    // then renamed into place without replacing anything: a reaper of another
    // imgctl command never sees the file unlocked or empty. (Created at its
    // name, a reaper's probe could lock it first, take the new container for
    // a dead one, clean it and remove the file.)
    let tmp = dir.join(format!(".{id}.{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    let made = (|| -> Result<(), Error> {
        // Blocking: a reaper's probe of this name (it removes only a dead
        // maker's) holds the lock for a moment.
        rustix::fs::flock(file.as_fd(), rustix::fs::FlockOperation::LockExclusive).map_err(
            |e| Error::Io {
                path: tmp.clone(),
                source: e.into(),
            },
        )?;
        let body = serde_json::to_vec(&OwnerInfo::of_self(remove, cgroup_root))
            .map_err(|e| Error::Spec(e.to_string()))?;
        file.write_all(&body).map_err(io(&tmp))?;
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &tmp,
            rustix::fs::CWD,
            &path,
            rustix::fs::RenameFlags::NOREPLACE,
        )
        .map_err(|e| Error::Io {
            path: path.clone(),
            source: e.into(),
        })
    })();
    if let Err(e) = made {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(OwnerLock {
        path,
        file: Some(file),
    })
}

/// Where container `id`'s cgroup lives, as its owner recorded
/// (`/sys/fs/cgroup` when unknown).
pub fn cgroup_root(root: &Path, id: &str) -> PathBuf {
    std::fs::read(locks_dir(root).join(id))
        .ok()
        .and_then(|b| serde_json::from_slice::<OwnerInfo>(&b).ok())
        .map(|i| i.cgroup_root)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"))
}

/// Whether a live process owns container `id` (its lock file is held).
pub fn is_owned(root: &Path, id: &str) -> bool {
    let path = locks_dir(root).join(id);
    let Ok(file) = std::fs::OpenOptions::new().read(true).open(&path) else {
        return false;
    };
    match rustix::fs::flock(
        file.as_fd(),
        rustix::fs::FlockOperation::NonBlockingLockShared,
    ) {
        Ok(()) => false,
        Err(_) => true,
    }
}

/// Clean what containers of dead owners left in the store at `root`; returns
/// their ids. Never fails: what cannot be cleaned now is logged and tried again
/// next time (the lock file stays).
pub fn reap_stale(root: &Path) -> Vec<String> {
    let dir = locks_dir(root);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut reaped = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        let Some(id) = path.file_name().and_then(|n| n.to_str()).map(String::from) else {
            continue;
        };
        if let Some(tmp) = id.strip_prefix('.') {
            remove_dead_claim(&path, tmp);
            continue;
        }
        let Ok(file) = std::fs::OpenOptions::new().read(true).open(&path) else {
            continue;
        };
        if rustix::fs::flock(
            file.as_fd(),
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        )
        .is_err()
        {
            continue; // held: the owner is alive (in whatever PID namespace)
        }
        // Locked after another reaper finished and removed it: nothing to do.
        let same = match (file.metadata(), std::fs::metadata(&path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if !same {
            continue;
        }
        let info: OwnerInfo = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let resume = resumes(root, &id, &info);
        match clean(root, &id, &info) {
            Ok(()) => {
                let _ = std::fs::remove_file(&path);
                tracing::info!(
                    "cleaned up container {} of a dead imgctl (pid {})",
                    &id[..12.min(id.len())],
                    info.pid
                );
                if resume {
                    // As Docker restarts `always` containers when its daemon
                    // comes back: a new monitor, the kept view, the same policy.
                    if let Err(e) = super::control::start(root, &id) {
                        tracing::warn!(
                            "container {} (--restart): start again after its monitor died: {e}",
                            &id[..12.min(id.len())]
                        );
                    }
                }
                reaped.push(id);
            }
            Err(e) => tracing::warn!(
                "container {} of a dead imgctl: {e}",
                &id[..12.min(id.len())]
            ),
        }
    }
    reaped
}

/// A claim's temporary file (`.ID.PID`, see [`claim`]) whose maker died
/// before renaming it into place: removed when nobody holds its lock and its
/// maker is gone (or it is older than a claim ever takes).
fn remove_dead_claim(path: &Path, name: &str) {
    let Ok(file) = std::fs::OpenOptions::new().read(true).open(path) else {
        return;
    };
    if rustix::fs::flock(
        file.as_fd(),
        rustix::fs::FlockOperation::NonBlockingLockExclusive,
    )
    .is_err()
    {
        return; // its maker holds it: a claim in progress
    }
    let maker_gone = name
        .rsplit('.')
        .next()
        .and_then(|p| p.parse::<u32>().ok())
        .is_none_or(|p| !Path::new(&format!("/proc/{p}")).exists());
    let old = file
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > std::time::Duration::from_secs(5));
    if maker_gone || old {
        let _ = std::fs::remove_file(path);
    }
}

/// Whether a container whose owner died is started again once cleaned: a
/// detached container (its monitor died, not the container's own exit) that was
/// live, with `--restart always` or `unless-stopped`.
fn resumes(root: &Path, id: &str, info: &OwnerInfo) -> bool {
    use super::monitor::{MonitorConfig, RestartPolicy, CONFIG};
    let dir = state::containers_dir(root).join(id);
    if info.remove || !State::load(&dir).is_ok_and(|s| s.status != Status::Stopped) {
        return false;
    }
    std::fs::read(dir.join(CONFIG))
        .ok()
        .and_then(|b| serde_json::from_slice::<MonitorConfig>(&b).ok())
        .is_some_and(|c| {
            matches!(
                c.restart,
                RestartPolicy::Always | RestartPolicy::UnlessStopped
            )
        })
}

fn clean(root: &Path, id: &str, info: &OwnerInfo) -> Result<(), Error> {
    let state_dir = state::containers_dir(root).join(id);
    // Every step is tried; the first error is returned (the lock file then stays,
    // and the next command tries again).
    let mut first: Result<(), Error> = Ok(());
    let mut note = |r: Result<(), Error>| {
        if let Err(e) = r {
            tracing::debug!("container {id}: {e}");
            if first.is_ok() {
                first = Err(e);
            }
        }
    };
    // The cgroup is made only after config.json is written.
    if let Ok(body) = std::fs::read(state_dir.join("config.json")) {
        match serde_json::from_slice::<oci_spec::runtime::Spec>(&body) {
            Ok(spec) => {
                if let Some(cg) = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone()) {
                    let croot = if info.cgroup_root.as_os_str().is_empty() {
                        PathBuf::from("/sys/fs/cgroup")
                    } else {
                        info.cgroup_root.clone()
                    };
                    note(crate::sandbox::destroy_cgroup(&croot, &cg).map_err(Error::from));
                }
            }
            Err(e) => note(Err(Error::Spec(format!("config.json: {e}")))),
        }
    }
    // Network: veth, DNAT chains, address and port leases (found by id).
    note(super::net::detach(root, id));
    // A detached container (`run -d`, not `--rm`) keeps its view, unmounted, as
    // its monitor would at a normal exit: `start`/`restart` mount it again, `rm`
    // removes it. Anything else: also a view whose making was cut short (no
    // metadata yet); an error counts only when the view is still there afterwards.
    let key = view_key(id);
    let restartable = !info.remove
        && state_dir.join("state.json").is_file()
        && state_dir.join(super::monitor::CONFIG).is_file()
        && crate::image::has_view(root, &key);
    if restartable {
        note(crate::image::unmount(root, &key).map_err(Error::from));
    } else if let Err(e) = crate::image::release(root, &key) {
        if crate::image::view_key(root, &key).is_ok() {
            note(Err(e.into()));
        }
    }
    if info.remove || !state_dir.join("state.json").exists() {
        match std::fs::remove_dir_all(&state_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => note(Err(io(&state_dir)(e))),
        }
    } else if let Ok(mut st) = State::load(&state_dir) {
        if st.status != Status::Stopped {
            st.status = Status::Stopped;
            st.pid = None;
            st.exit_code = None;
            st.finished = Some(state::now());
            note(st.save(&state_dir));
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Another command's reaper running while containers are claimed never
    /// sees a claim unlocked: every claim succeeds, holds its lock at its
    /// name, and nothing of it is cleaned or removed meanwhile.
    #[test]
    fn a_claim_is_never_seen_unlocked_by_a_concurrent_reaper() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_path_buf();
        let stop = AtomicBool::new(false);
        // Set however the claiming loop ends (a failed claim panics), so the
        // reapers stop and the failure is reported instead of hanging.
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        assert_eq!(
                            reap_stale(&root),
                            Vec::<String>::new(),
                            "a live claim was reaped"
                        );
                    }
                });
            }
            let _stop = Stop(&stop);
            for i in 0..3000 {
                let id = format!("{i:064x}");
                let lock = claim(&root, &id, true, Path::new("/nonexistent")).expect("claim");
                assert!(is_owned(&root, &id), "claim {i} is not held at its name");
                drop(lock);
                assert!(!lock_path(&root, &id).exists());
            }
        });
        let left: Vec<_> = std::fs::read_dir(locks_dir(&root))
            .unwrap()
            .flatten()
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    /// A claim's temporary file left by a maker that died before the rename is
    /// removed by the next reaper; one whose maker holds it is kept.
    #[test]
    fn a_dead_claims_temporary_file_is_removed() {
        let t = tempfile::tempdir().unwrap();
        let dir = locks_dir(t.path());
        std::fs::create_dir_all(&dir).unwrap();
        // pid 0 never names a live process here.
        let dead = dir.join(format!(".{}.0", "a".repeat(64)));
        std::fs::write(&dead, b"").unwrap();
        let held = dir.join(format!(".{}.{}", "b".repeat(64), std::process::id()));
        let f = std::fs::File::create(&held).unwrap();
        rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
        reap_stale(t.path());
        assert!(!dead.exists(), "a dead maker's file stayed");
        assert!(held.exists(), "a claim in progress was removed");
    }
}
