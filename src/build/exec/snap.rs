//! Snapshots for steps: the overlay a step runs on ([`Active`], unmounted and removed
//! when dropped), views of other stages and images for `COPY --from` and bind mounts
//! ([`Sources`]), and the cleanup after a killed build.

use std::fs;
use std::path::{Path, PathBuf};

use super::{other, Exec};
use crate::build::run::MountSources;
use crate::build::BuildError;
use crate::image::commit::{self, Image};
use crate::oci::Digest;
use crate::snapshot::{self, Overlay, Snapshotter};
/// An overlay snapshot mounted for one step; unmounted and removed when dropped
/// unless committed.
pub(super) struct Active<'a> {
    pub(super) snaps: &'a Overlay,
    pub(super) key: String,
    pub(super) merged: PathBuf,
    pub(super) mounted: bool,
}

impl Active<'_> {
    pub(super) fn unmount(&mut self) -> Result<(), BuildError> {
        if self.mounted {
            crate::sys::fs::unmount(&self.merged, false)
                .map_err(|e| BuildError::io(&self.merged, e))?;
            self.mounted = false;
        }
        Ok(())
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        if self.mounted {
            let _ = crate::sys::fs::unmount(&self.merged, true);
        }
        if self.snaps.stat(&self.key).ok().flatten().is_some() {
            let _ = self.snaps.remove(&self.key);
        }
        let _ = self.snaps.unmount_unused_layers();
    }
}

/// A snapshot key owned by this process: `PREFIX-PID-RANDOM`.
pub(super) fn new_key(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        crate::container::new_id().get(..12).unwrap_or("0")
    )
}

/// Snapshots and step directories left by builds that were killed (their process is
/// gone): unmounted and removed before a new build starts.
pub(super) fn reap_dead_builds(snaps: &Overlay, root: &Path, cgroup_root: &Path) {
    // The first numeric segment after the prefix is the owner's pid.
    let dead = |key: &str| {
        key.split('-')
            .skip(1)
            .find_map(|x| x.parse::<u32>().ok())
            .is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists())
    };
    // Step containers of a killed build (cgroup `imgctl-build/build-PID-*`): killed,
    // their cgroups removed (v1: every controller's copy; v2: the one group).
    let mut groups = Vec::new();
    for base in std::iter::once(cgroup_root.to_path_buf()).chain(
        fs::read_dir(cgroup_root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path()),
    ) {
        if let Ok(rd) = fs::read_dir(base.join("imgctl-build")) {
            groups.extend(
                rd.flatten()
                    .filter(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        n.starts_with("build-") && dead(&n)
                    })
                    .map(|e| e.path()),
            );
        }
    }
    for g in &groups {
        for pid in fs::read_to_string(g.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse::<i32>().ok())
        {
            // SAFETY: kill(2) with a pid read from the leftover group.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    for g in &groups {
        for _ in 0..50 {
            if fs::remove_dir(g).is_ok() || !g.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    for info in snaps.list().unwrap_or_default() {
        if info.kind != snapshot::Kind::Committed
            && info.key.starts_with("build-")
            && dead(&info.key)
        {
            let merged = snaps.merged_dir(&info.key);
            let _ = crate::sys::fs::unmount(&merged, true);
            let _ = snaps.remove(&info.key);
        }
    }
    if let Ok(rd) = fs::read_dir(root.join("tmp")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("step-") && dead(&name) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Views of other stages, images and the context for `COPY --from` and bind mounts.
pub(super) struct Sources<'e, 'a> {
    pub(super) exec: &'e Exec<'a>,
    pub(super) views: std::cell::RefCell<Vec<(String, Active<'e>)>>,
}

impl MountSources for Sources<'_, '_> {
    fn root_of(&self, from: Option<&str>) -> Result<PathBuf, BuildError> {
        let Some(from) = from else {
            return Ok(self.exec.opts.context.clone());
        };
        if let Some((_, a)) = self.views.borrow().iter().find(|(f, _)| f == from) {
            return Ok(a.merged.clone());
        }
        let image = self.exec.image_for(from)?;
        let a = self.exec.view(&image)?;
        let p = a.merged.clone();
        self.views.borrow_mut().push((from.to_string(), a));
        Ok(p)
    }
}

impl Exec<'_> {
    /// The snapshot chain of `image`, unpacked when missing. `None` for no layers.
    pub(super) fn chain(&self, image: &Image) -> Result<Option<Digest>, BuildError> {
        let Some(chain) = crate::oci::chain_id(image.diff_ids()) else {
            return Ok(None);
        };
        if self
            .snaps
            .stat(&chain.to_string())
            .map_err(|e| other("snapshot")(&e))?
            .is_some()
        {
            return Ok(Some(chain));
        }
        let _one = self.unpack.lock();
        let c = commit::commit(&self.store, image, None, &[]).map_err(|e| other("commit")(&e))?;
        let u = crate::image::unpack(&self.store, &c.manifest, &self.opts.root)
            .map_err(|e| other("unpack")(&e))?;
        Ok(u.chain_id)
    }

    pub(super) fn mount(
        &self,
        image: &Image,
        prefix: &str,
        view: bool,
    ) -> Result<Active<'_>, BuildError> {
        let chain = self.chain(image)?;
        let key = new_key(prefix);
        let mounts = if view {
            self.snaps.view(&key, chain.as_ref())
        } else {
            self.snaps.prepare(&key, chain.as_ref())
        }
        .map_err(|e| other("prepare snapshot")(&e))?;
        let merged = self.snaps.merged_dir(&key);
        let mut a = Active {
            snaps: &self.snaps,
            key,
            merged,
            mounted: false,
        };
        if view && chain.is_none() {
            // An empty view (scratch): an empty directory.
            fs::create_dir_all(&a.merged).map_err(|e| BuildError::io(&a.merged, e))?;
            return Ok(a);
        }
        snapshot::mount_all(&mounts, &a.merged).map_err(|e| BuildError::io(&a.merged, e))?;
        a.mounted = true;
        Ok(a)
    }

    pub(super) fn view(&self, image: &Image) -> Result<Active<'_>, BuildError> {
        self.mount(image, "build-view", true)
    }
}
