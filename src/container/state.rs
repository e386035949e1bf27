//! A container's state on disk (`<root>/containers/<id>/state.json`, described by
//! `schemas/container-state.schema.json`) and its name reservation
//! (`<root>/container-names/<name>`).
//!
//! Every state change replaces `state.json` with [`crate::store::write_atomic`]
//! (temp, fsync, rename, fsync dir): a crash leaves the previous state, never a
//! torn one. A name is reserved by creating its file with `O_EXCL`, so two
//! `imgctl run --name x` at once cannot both get it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Error;

/// Where container state directories live.
pub fn containers_dir(root: &Path) -> PathBuf {
    root.join("containers")
}

fn names_dir(root: &Path) -> PathBuf {
    root.join("container-names")
}

/// Lifecycle status (the OCI runtime spec's `state` vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Stopped,
}

impl Status {
    /// A created container may be started.
    pub fn can_start(self) -> bool {
        self == Status::Created
    }

    /// Only a running container has a process to signal.
    pub fn can_kill(self) -> bool {
        self == Status::Running
    }
}

/// What `state.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The image argument it was created from (absent for `--rootfs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    pub status: Status,
    /// Host pid of the container's first process while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u8>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oom_killed: bool,
    /// Seconds since the Unix epoch.
    pub created: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<u64>,
    /// The bridge-network endpoint while attached (address, ports, rates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<super::net::NetState>,
    /// The image ID (config digest) it was created from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// `--label` values.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Times the monitor restarted it (`--restart`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restart_count: u32,
    /// A detached container: a monitor owns it (`run -d`, `start`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub detached: bool,
    /// Stopped, its monitor waiting out the restart back-off (`--restart`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restarting: bool,
    /// Healthcheck results while a check is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Healthcheck status (Docker's vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// One healthcheck run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthProbe {
    /// Milliseconds since the Unix epoch.
    pub start: u64,
    pub end: u64,
    pub exit_code: i32,
    pub output: String,
}

/// The health of a container with a healthcheck.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: HealthStatus,
    pub failing_streak: u32,
    /// The last few probes (at most 5, as Docker).
    pub log: Vec<HealthProbe>,
}

/// Seconds since the Unix epoch, now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl State {
    pub fn new(id: &str, name: Option<String>, image: Option<String>) -> State {
        State {
            id: id.to_string(),
            name,
            image,
            status: Status::Created,
            pid: None,
            exit_code: None,
            oom_killed: false,
            created: now(),
            started: None,
            finished: None,
            network: None,
            image_id: None,
            labels: Default::default(),
            restart_count: 0,
            detached: false,
            restarting: false,
            health: None,
        }
    }

    /// Write (replace) `state.json` in `state_dir`, atomically and durably.
    pub fn save(&self, state_dir: &Path) -> Result<(), Error> {
        self.save_with(state_dir, true)
    }

    /// Write `state.json` atomically; durably (fsync) only when `durable`. A
    /// container removed when it exits (`run --rm`) skips the fsyncs: a crash of
    /// imgctl still finds a whole state file, and after a power loss there is no
    /// container left to describe.
    pub fn save_with(&self, state_dir: &Path, durable: bool) -> Result<(), Error> {
        let path = state_dir.join("state.json");
        let body = serde_json::to_vec_pretty(self).map_err(|e| Error::Spec(e.to_string()))?;
        let r = if durable {
            crate::store::write_atomic(&path, &body, 0o600)
        } else {
            crate::store::write_atomic_volatile(&path, &body, 0o600)
        };
        r.map_err(|source| Error::Io { path, source })
    }

    /// Read `state.json` from `state_dir`.
    pub fn load(state_dir: &Path) -> Result<State, Error> {
        let path = state_dir.join("state.json");
        let body = std::fs::read(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&body).map_err(|e| Error::Io {
            path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })
    }
}

/// Check a `--name`: letters, digits, `_`, `.`, `-` (Docker's set, no leading
/// punctuation).
pub fn check_name(name: &str) -> Result<(), Error> {
    if crate::oci::is_restricted_name(name, 128) {
        Ok(())
    } else {
        Err(Error::BadFlag {
            flag: "--name".into(),
            value: name.into(),
            hint: "letters, digits, '_', '.' and '-', starting with a letter or digit".into(),
        })
    }
}

/// A reserved container name; [`NameLease::free`] gives it back (it is kept when
/// the lease is dropped, as the container keeps its name until removed).
#[derive(Debug)]
pub struct NameLease {
    path: PathBuf,
}

impl NameLease {
    /// Give the name back.
    pub fn free(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Give back `name` if container `id` holds it (a removed container's name).
pub fn free_name(root: &Path, name: &str, id: &str) {
    let path = names_dir(root).join(name);
    if std::fs::read_to_string(&path).is_ok_and(|owner| owner.trim() == id) {
        let _ = std::fs::remove_file(&path);
    }
}

/// The container id holding `name`, if any.
pub fn name_owner(root: &Path, name: &str) -> Option<String> {
    if check_name(name).is_err() {
        return None;
    }
    let owner = std::fs::read_to_string(names_dir(root).join(name)).ok()?;
    let owner = owner.trim();
    (!owner.is_empty()).then(|| owner.to_string())
}

/// Reserve `name` for container `id` (atomically: `O_CREAT|O_EXCL`). A name whose
/// container directory is gone (a crashed run) is taken over.
pub fn reserve_name(root: &Path, name: &str, id: &str) -> Result<NameLease, Error> {
    check_name(name)?;
    let dir = names_dir(root);
    crate::store::fsutil::mkdir_private(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    let path = dir.join(name);
    for _ in 0..2 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(id.as_bytes())
                    .and_then(|()| f.sync_all())
                    .and_then(|()| crate::store::fsutil::sync_dir(&dir))
                    .map_err(|source| Error::Io {
                        path: path.clone(),
                        source,
                    })?;
                return Ok(NameLease { path });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let owner = std::fs::read_to_string(&path).unwrap_or_default();
                let owner = owner.trim();
                // An owner still being written (empty) or whose state exists holds it.
                if owner.is_empty() || containers_dir(root).join(owner).exists() {
                    return Err(Error::NameInUse {
                        name: name.into(),
                        id: owner.chars().take(12).collect(),
                    });
                }
                let _ = std::fs::remove_file(&path);
            }
            Err(source) => return Err(Error::Io { path, source }),
        }
    }
    Err(Error::NameInUse {
        name: name.into(),
        id: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_is_replaced_whole() {
        let d = tempfile::tempdir().unwrap();
        let mut s = State::new("abc", Some("web".into()), Some("busybox".into()));
        s.save(d.path()).unwrap();
        assert_eq!(State::load(d.path()).unwrap(), s);
        s.status = Status::Stopped;
        s.exit_code = Some(3);
        s.finished = Some(now());
        s.save(d.path()).unwrap();
        let back = State::load(d.path()).unwrap();
        assert_eq!(back.status, Status::Stopped);
        assert_eq!(back.exit_code, Some(3));
        assert!(!back.status.can_start() && !back.status.can_kill());
        let files: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(files.len(), 1, "no temp file left next to state.json");
    }

    #[test]
    fn a_name_is_reserved_once_and_a_stale_one_is_taken_over() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(containers_dir(root).join("id1")).unwrap();
        let lease = reserve_name(root, "web", "id1").unwrap();
        let e = reserve_name(root, "web", "id2").unwrap_err();
        assert!(matches!(e, Error::NameInUse { .. }), "{e}");
        // id1's state is gone (crashed run): the name can be taken over.
        std::fs::remove_dir(containers_dir(root).join("id1")).unwrap();
        let l2 = reserve_name(root, "web", "id2").unwrap();
        l2.free();
        drop(lease);
        assert!(reserve_name(root, "-bad", "x").is_err());
        assert!(reserve_name(root, "a/b", "x").is_err());
    }

    #[test]
    fn a_bad_container_name_is_a_name_flag_error() {
        assert!(check_name(&"a".repeat(128)).is_ok());
        for bad in ["-web".to_string(), "a b".into(), "a".repeat(129)] {
            match check_name(&bad) {
                Err(Error::BadFlag { flag, value, .. }) => {
                    assert_eq!((flag.as_str(), value.as_str()), ("--name", bad.as_str()))
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn two_racing_reservations_get_one_name() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().to_path_buf();
        for i in 0..8 {
            std::fs::create_dir_all(containers_dir(&root).join(format!("id{i}"))).unwrap();
        }
        let wins: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let root = &root;
                    s.spawn(move || reserve_name(root, "same", &format!("id{i}")).is_ok())
                })
                .collect();
            hs.into_iter().map(|h| usize::from(h.join().unwrap())).sum()
        });
        assert_eq!(wins, 1);
    }
}
