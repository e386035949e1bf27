//! `--userns=auto`: a free slice of subordinate ids, held by a lock file while in use.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxIdMapping, LinuxIdMappingBuilder};

use super::Error;

/// `--userns=auto`: the first free 65536-id slice of the `/etc/subuid` range of
/// `root` (or 100000:65536). Freedom is claimed with an exclusive lock file under
/// `lock_dir`, removed by the returned guard.
pub fn allocate_userns(lock_dir: &Path) -> Result<(u32, UsernsLease), Error> {
    let io = |p: &Path, e| Error::Io {
        path: p.to_path_buf(),
        source: e,
    };
    let (start, count) = std::fs::read_to_string("/etc/subuid")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() == 3 && (f[0] == "imgctl" || f[0] == "root"))
                    .then(|| Some((f[1].parse::<u32>().ok()?, f[2].parse::<u32>().ok()?)))
                    .flatten()
            })
        })
        .unwrap_or((100_000, 65_536 * 16));
    std::fs::create_dir_all(lock_dir).map_err(|e| io(lock_dir, e))?;
    let slices = (count / 65_536).max(1);
    for i in 0..slices {
        let base = start + i * 65_536;
        if let Some(lease) = try_claim(lock_dir, base)? {
            return Ok((base, lease));
        }
    }
    Err(Error::Spec(
        "--userns=auto: every id range from /etc/subuid is in use".into(),
    ))
}

/// Claim the slice at `base` again (`start` of a `--userns=auto` container,
/// whose root filesystem is owned by those ids): refused when another
/// container holds it now.
pub fn claim_userns(lock_dir: &Path, base: u32) -> Result<UsernsLease, Error> {
    std::fs::create_dir_all(lock_dir).map_err(|e| Error::Io {
        path: lock_dir.to_path_buf(),
        source: e,
    })?;
    try_claim(lock_dir, base)?.ok_or_else(|| {
        Error::Conflict(format!(
            "--userns=auto: the id range {base}-{} of this container is held by another running container; stop that one first",
            u64::from(base) + 65_535
        ))
    })
}

/// The slice at `base` when free: its lock file under `lock_dir`, exclusively
/// flock'ed. A slice is taken while its file is locked by its holder: the
/// kernel drops the lock when the holder dies, and a lock looks the same from
/// every PID namespace (a pid does not).
fn try_claim(lock_dir: &Path, base: u32) -> Result<Option<UsernsLease>, Error> {
    let p = lock_dir.join(base.to_string());
    for _ in 0..3 {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&p)
            .map_err(|e| Error::Io {
                path: p.clone(),
                source: e,
            })?;
        if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            return Ok(None);
        }
        // Removed by its last holder between our open and our lock: again.
        let same = matches!((f.metadata(), std::fs::metadata(&p)),
            (Ok(a), Ok(b)) if std::os::unix::fs::MetadataExt::ino(&a) == std::os::unix::fs::MetadataExt::ino(&b));
        if same {
            return Ok(Some(UsernsLease {
                path: p,
                file: Some(f),
            }));
        }
    }
    Ok(None)
}

/// A claimed id range (its lock file, flock'ed); released on drop.
#[derive(Debug)]
pub struct UsernsLease {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl UsernsLease {
    /// Record the owning process (informational: the lock is what holds the range).
    pub fn set_owner(&self, pid: u32) {
        if let Some(f) = &self.file {
            use std::io::Write;
            let _ = f.set_len(0);
            let _ = (&*f).write_all(pid.to_string().as_bytes());
        }
    }
}

impl Drop for UsernsLease {
    fn drop(&mut self) {
        // Unlink before unlocking (closing): whoever locks the old file next sees
        // it is no longer the one at the path.
        if let Some(f) = self.file.take() {
            let _ = std::fs::remove_file(&self.path);
            drop(f);
        }
    }
}

pub(super) fn id_mapping(c: u32, h: u32, s: u32) -> LinuxIdMapping {
    LinuxIdMappingBuilder::default()
        .container_id(c)
        .host_id(h)
        .size(s)
        .build()
        .unwrap_or_default()
}
