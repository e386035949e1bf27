//! Collection and removal rules that need to know about containers: which active
//! snapshots still have an owner, removing stopped containers (`container prune`),
//! the whole-store prune (`prune`, `system prune`) and `rmi`'s refusals (an image a
//! container uses, an ID several names point at), as Docker has them.

use std::os::fd::AsFd;
use std::path::Path;

use super::owner::view_key;
use super::state::{self, State, Status};
use super::Error;
use crate::image::prune::{PruneOptions as StoreOptions, PruneReport};
use crate::image::ImageError;
use crate::oci::Digest;
use crate::store::{Store, StoreError};

pub use crate::snapshot::gc::{GcReport, ItemKind};

/// Whether the owner of container `id` is alive: its owner lock is held.
fn owner_alive(root: &Path, id: &str) -> bool {
    let path = root.join("locks").join("containers").join(id);
    let Ok(f) = std::fs::File::open(&path) else {
        return false;
    };
    rustix::fs::flock(f.as_fd(), rustix::fs::FlockOperation::NonBlockingLockShared).is_err()
}

fn pid_alive(key: &str) -> bool {
    // `PREFIX-PID-RANDOM` keys: the first numeric segment is the owner's pid.
    key.split('-')
        .skip(1)
        .find_map(|x| x.parse::<u32>().ok())
        .is_none_or(|p| Path::new(&format!("/proc/{p}")).exists())
}

/// Whether the active snapshot or view `key` of the store at `root` still has an
/// owner (what prune must keep):
/// * `ctr-ID`: the container's owner lock is held, or its state directory exists
///   (a stopped container keeps its view until removed);
/// * `build-…-PID-…`: the build process runs;
/// * `mount-…` (`imgctl mount`): its merged directory is mounted;
/// * anything else: kept.
pub fn snapshot_live(root: &Path, key: &str) -> bool {
    if let Some(id) = key.strip_prefix("ctr-") {
        return owner_alive(root, id) || state::containers_dir(root).join(id).exists();
    }
    if key.starts_with("build-") {
        return pid_alive(key);
    }
    if key.starts_with("mount-") {
        let merged = root
            .join("snapshots")
            .join("active")
            .join(key)
            .join("merged");
        return crate::sys::fs::is_mount_point(&merged).unwrap_or(false);
    }
    true
}

/// A container `container prune` removed (or would).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RemovedContainer {
    pub id: String,
    pub bytes: u64,
}

fn du(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if md.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else {
            total += md.len();
        }
    }
    total
}

/// Every container state in the store: (id, state), unreadable ones skipped.
fn containers(root: &Path) -> Vec<(String, State)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(state::containers_dir(root)) else {
        return out;
    };
    for e in rd.flatten() {
        let Some(id) = e.file_name().to_str().map(String::from) else {
            continue;
        };
        if let Ok(st) = State::load(&e.path()) {
            out.push((id, st));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Remove every container that is not running (stopped, or created and never
/// started, with no live owner): its view, state directory and name.
pub fn prune_containers(root: &Path, dry_run: bool) -> Result<Vec<RemovedContainer>, Error> {
    let mut out = Vec::new();
    for (id, st) in containers(root) {
        if st.status == Status::Running || owner_alive(root, &id) {
            continue;
        }
        let dir = state::containers_dir(root).join(&id);
        let mut bytes = du(&dir);
        let key = view_key(&id);
        let active = root.join("snapshots").join("active").join(&key);
        bytes += du(&active.join("upper"));
        if !dry_run {
            if active.exists() || active.with_extension("json").exists() {
                crate::image::release(root, &key)?;
            }
            if let Some(name) = &st.name {
                let p = root.join("container-names").join(name);
                if std::fs::read_to_string(&p).is_ok_and(|o| o.trim() == id) {
                    let _ = std::fs::remove_file(&p);
                }
            }
            std::fs::remove_dir_all(&dir).map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
        }
        out.push(RemovedContainer { id, bytes });
    }
    Ok(out)
}

/// Options of [`prune`].
#[derive(Debug, Clone, Copy, Default)]
pub struct PruneOptions {
    pub dry_run: bool,
    pub keep_storage: Option<u64>,
    /// Also remove stopped containers first (`system prune`).
    pub containers: bool,
    /// Also remove every image no container uses (`-a`).
    pub all_images: bool,
}

/// What [`prune`] did.
#[derive(Debug, Clone, Default)]
pub struct Pruned {
    pub containers: Vec<RemovedContainer>,
    /// Image names removed (`-a`).
    pub untagged: Vec<String>,
    pub store: PruneReport,
}

fn image_err(what: &str) -> impl FnOnce(StoreError) -> Error + '_ {
    move |source| {
        Error::Image(ImageError::Store {
            name: what.to_string(),
            source,
        })
    }
}

/// The image IDs (config digests) containers of the store use, with the container
/// ids and whether one of them is running. The ID recorded in the state (`image_id`)
/// wins; older states only have the name typed, resolved now.
fn images_in_use(root: &Path, store: &Store) -> Vec<(Digest, String, bool)> {
    let mut out = Vec::new();
    for (id, st) in containers(root) {
        let recorded = std::fs::read(state::containers_dir(root).join(&id).join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("image_id")?.as_str()?.parse::<Digest>().ok());
        let image = recorded.or_else(|| {
            let name = st.image.as_ref()?;
            store
                .find_image(name)
                .ok()
                .map(|r| r.manifest.config.digest.clone())
        });
        if let Some(image) = image {
            let running = st.status == Status::Running && owner_alive(root, &id);
            out.push((image, id, running));
        }
    }
    out
}

/// Prune the store: stopped containers (with `containers`), unused images (with
/// `all_images`), then blobs, partial downloads and snapshots nothing uses.
pub fn prune(root: &Path, opts: &PruneOptions) -> Result<Pruned, Error> {
    let mut out = Pruned::default();
    if opts.containers {
        out.containers = prune_containers(root, opts.dry_run)?;
    }
    if opts.all_images && root.join("oci-layout").exists() {
        let store = Store::open_existing(root).map_err(image_err("open store"))?;
        let used: Vec<Digest> = if opts.dry_run && opts.containers {
            // The containers above would be gone.
            Vec::new()
        } else {
            images_in_use(root, &store)
                .into_iter()
                .map(|u| u.0)
                .collect()
        };
        for rec in store.image_records().map_err(image_err("index.json"))? {
            let Ok(m) = store.read_manifest(&rec.descriptor) else {
                continue;
            };
            if used.contains(&m.config.digest) {
                continue;
            }
            if !opts.dry_run {
                store.remove_name(&rec.name).map_err(image_err(&rec.name))?;
            }
            out.untagged.push(if rec.name.is_empty() {
                rec.descriptor.digest.to_string()
            } else {
                rec.name
            });
        }
    }
    let so = StoreOptions {
        dry_run: opts.dry_run,
        keep_storage: opts.keep_storage,
    };
    if !opts.dry_run {
        // Compiled seccomp filters: a cache made again on the next run.
        let dir = super::seccomp_cache_dir(root);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(Error::Io {
                    path: dir,
                    source: e,
                });
            }
        }
    }
    out.store = if opts.dry_run && opts.all_images && !out.untagged.is_empty() {
        // What the index would reference once those names are gone is not on disk
        // yet: report everything the removed images alone hold as well.
        dry_run_without(root, &out.untagged, &so)?
    } else {
        crate::image::prune::prune(root, &so, &|k| snapshot_live(root, k))?
    };
    Ok(out)
}

/// A dry run of the store prune as if `names` were already removed: on a scratch
/// copy of `index.json` only (blobs and snapshots are only read).
fn dry_run_without(root: &Path, names: &[String], so: &StoreOptions) -> Result<PruneReport, Error> {
    // Removing names is cheap and reversible only by re-tagging; a dry run must not
    // touch the index, so the answer here is the prune as things stand plus the
    // blobs only these images use.
    let mut r = crate::image::prune::prune(root, so, &|k| snapshot_live(root, k))?;
    let store = Store::open_existing(root).map_err(image_err("open store"))?;
    let mut keep = std::collections::BTreeSet::new();
    let mut gone = std::collections::BTreeSet::new();
    for rec in store.image_records().map_err(image_err("index.json"))? {
        let Ok(m) = store.read_manifest(&rec.descriptor) else {
            continue;
        };
        let set = if names.contains(&rec.name) || names.contains(&rec.descriptor.digest.to_string())
        {
            &mut gone
        } else {
            &mut keep
        };
        set.insert(rec.descriptor.digest.clone());
        set.insert(m.config.digest.clone());
        set.extend(m.layers.iter().map(|l| l.digest.clone()));
    }
    for d in gone.difference(&keep) {
        if let Ok(Some(size)) = store.blob_size(d) {
            if !r.blobs.iter().any(|b| &b.0 == d) {
                r.blobs.push((d.clone(), size));
            }
        }
    }
    Ok(r)
}

/// `rmi`: remove the image name `query`, or every name of an image ID. Refused, as
/// Docker does, for an ID several names point at (unless `force`) and for an image
/// a container uses (unless `force` and the container is not running). Returns the
/// names removed.
pub fn remove_image(root: &Path, query: &str, force: bool) -> Result<Vec<String>, Error> {
    let store = Store::open_existing(root).map_err(image_err("open store"))?;
    let found = match store.find_image(query) {
        Ok(r) => r,
        Err(StoreError::ImageNotFound { .. }) => {
            return Err(Error::Image(ImageError::NotFound {
                name: query.to_string(),
            }))
        }
        Err(e) => return Err(image_err(query)(e)),
    };
    let id = found.manifest.config.digest.clone();
    let short = &id.hex()[..12];
    let exact = crate::oci::Reference::parse(query)
        .ok()
        .map(|r| r.to_string())
        .filter(|n| found.names.contains(n))
        .or_else(|| found.names.iter().find(|n| *n == query).cloned());
    // `NAME@DIGEST` stands for every name of that repository on the image it pins
    // (its own entry after `pull NAME@DIGEST` included): afterwards it no longer
    // resolves.
    let pinned = crate::oci::Reference::parse(query)
        .ok()
        .filter(|r| r.digest().is_some())
        .map(|r| r.name());
    let names: Vec<String> = match (&pinned, &exact) {
        (Some(repo), _) => found
            .names
            .iter()
            .filter(|n| crate::oci::Reference::parse(n).is_ok_and(|r| &r.name() == repo))
            .cloned()
            .collect(),
        (None, Some(n)) => vec![n.clone()],
        (None, None) => found.names.clone(),
    };
    let conflict = |msg: String| Err(Error::Conflict(msg));
    if exact.is_none() && pinned.is_none() && found.names.len() > 1 && !force {
        return conflict(format!(
            "conflict: unable to delete {short} (must be forced) - image is referenced in \
multiple repositories"
        ));
    }
    // Removing the last name of an image a container uses.
    let last = names.len() >= found.names.len();
    if last {
        for (img, ctr, running) in images_in_use(root, &store) {
            if img != id {
                continue;
            }
            let c = &ctr[..12.min(ctr.len())];
            if running {
                return conflict(format!(
                    "conflict: unable to delete {short} (cannot be forced) - image is being \
used by running container {c}"
                ));
            }
            if !force {
                return conflict(match &exact {
                    Some(n) => format!(
                        "conflict: unable to remove repository reference \"{query}\" (must \
force) - container {c} is using its referenced image {short}",
                    )
                    .replace(&format!("\"{query}\""), &format!("\"{}\"", familiar(n))),
                    None => format!(
                        "conflict: unable to delete {short} (must be forced) - image is being \
used by stopped container {c}"
                    ),
                });
            }
        }
    }
    let mut removed = Vec::new();
    for n in names {
        if store.remove_name(&n).map_err(image_err(&n))?.is_some() {
            removed.push(n);
        }
    }
    Ok(removed)
}

fn familiar(name: &str) -> String {
    crate::oci::Reference::parse(name)
        .map(|r| match r.tag() {
            Some(t) => format!("{}:{t}", r.familiar_name()),
            None => r.familiar_name(),
        })
        .unwrap_or_else(|_| name.to_string())
}

/// What `prune` would free in `snapshots/` (for `df`), per kind.
pub fn reclaimable(root: &Path) -> Result<crate::snapshot::gc::GcReport, Error> {
    Ok(crate::image::prune::reclaimable_snapshots(root, &|k| {
        snapshot_live(root, k)
    })?)
}

/// Files and bytes of the store's dedup pool.
pub fn pool_usage(root: &Path) -> Result<(u64, u64), Error> {
    Ok(crate::snapshot::gc::pool_usage(root).map_err(ImageError::from)?)
}
