//! Preparing a container: its root filesystem (a mounted view of a resolved image,
//! or a directory given as it is), the runtime spec, the state directory, and with
//! a user namespace the shifted copy of the rootfs ([`super::shifted`]).
//! Also the one-shot foreground run and OCI bundles built on it.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use super::shifted::CopySource;
use super::{
    allocate_userns, runtime_spec, state, write_etc_files, Error, RunFlags, Userns, UsernsLease,
};
use crate::image::{self, MountOptions, ResolvedImage, View};
use crate::oci::RunConfig;

/// Where a container's root filesystem comes from. Made once per container, so
/// the size difference of the variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum RootfsSource {
    /// An image resolved once by the caller: `run` mounts a fresh writable view of
    /// it, `bundle` flattens it into the bundle.
    Image(ResolvedImage),
    /// A directory used as it is, with an optional image config for its defaults.
    Dir {
        path: PathBuf,
        config: Option<RunConfig>,
    },
}

/// What to prepare.
pub struct PrepareRequest {
    /// The store root (`containers/`, `cache/userns/`, `locks/` live there).
    pub root: PathBuf,
    pub flags: RunFlags,
    pub rootfs: RootfsSource,
    /// The state directory; default `<root>/containers/<id>`.
    pub state_dir: Option<PathBuf>,
}

/// An image view held for a container; dropping it unmounts and removes it.
pub struct HeldView {
    root: PathBuf,
    view: Option<View>,
}

impl HeldView {
    /// Mount again a stopped container's kept view `key` (see [`Self::keep`]).
    pub fn remount(root: &Path, key: &str) -> Result<HeldView, Error> {
        let v = image::remount(root, key)?;
        Ok(HeldView {
            root: root.to_path_buf(),
            view: Some(v),
        })
    }

    /// The mounted root filesystem.
    pub fn merged(&self) -> Option<&Path> {
        self.view.as_ref().map(|v| v.merged.as_path())
    }

    /// Unmount but keep the snapshot (its upper dir holds the container's
    /// changes until `rm`).
    pub fn keep(mut self) -> Result<(), Error> {
        match self.view.take() {
            Some(v) => image::unmount(&self.root, &v.key).map_err(Error::from),
            None => Ok(()),
        }
    }

    /// Release now, reporting failure (drop only logs it).
    pub fn release(mut self) -> Result<(), Error> {
        match self.view.take() {
            Some(v) => image::release(&self.root, &v.key).map_err(Error::from),
            None => Ok(()),
        }
    }
}

impl Drop for HeldView {
    fn drop(&mut self) {
        if let Some(v) = self.view.take() {
            if let Err(e) = image::release(&self.root, &v.key) {
                tracing::warn!("release rootfs view {}: {e}", v.key);
            }
        }
    }
}

/// Everything one container needs to start; created by [`prepare`].
pub struct Prepared {
    pub id: String,
    pub spec: Spec,
    pub rootfs: PathBuf,
    /// The rootfs is a shared copy owned by the user namespace's ids; the
    /// container's writes go to an overlay under this directory.
    pub rootfs_shifted: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub lease: Option<UsernsLease>,
    /// Held until the container is gone.
    pub view: Option<HeldView>,
}

impl Prepared {
    /// Remove what [`prepare`] made: the state directory, the id lease, the view.
    pub fn discard(self) {
        let _ = std::fs::remove_dir_all(&self.state_dir);
        drop(self.lease);
        drop(self.view);
    }
}

/// Flags + rootfs -> runtime spec, with the state directory written. On failure
/// nothing it made is left behind.
pub fn prepare(req: PrepareRequest) -> Result<Prepared, Error> {
    let PrepareRequest {
        root,
        flags,
        rootfs,
        state_dir,
    } = req;
    let id = flags.id.clone();
    // What a shifted copy (user namespace on overlayfs) is keyed by: the image's
    // content, or nothing for a directory (copied per container).
    let mut image_chain: Option<Option<crate::oci::Digest>> = None;
    let (config, rootfs, view) = match rootfs {
        RootfsSource::Dir { path, config } => {
            let dir = std::fs::canonicalize(&path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            if !dir.is_dir() {
                return Err(Error::Io {
                    path: dir,
                    source: std::io::Error::other("rootfs is not a directory"),
                });
            }
            (config, dir, None)
        }
        RootfsSource::Image(img) => {
            image_chain = Some(img.resolved().chain_id());
            let key = super::owner::view_key(&id);
            let v =
                image::mount_as_with(&root, &img, MountOptions::default(), &key, flags.volatile)?;
            let merged = v.merged.clone();
            (
                img.run_config().cloned(),
                merged,
                Some(HeldView {
                    root: root.clone(),
                    view: Some(v),
                }),
            )
        }
    };
    let state_dir = state_dir.unwrap_or_else(|| state::containers_dir(&root).join(&id));
    let (base, lease) = if flags.userns == Userns::Auto {
        let (b, l) = allocate_userns(&root.join("locks").join("userns"))?;
        l.set_owner(std::process::id());
        (Some(b), Some(l))
    } else {
        (None, None)
    };
    let made_state_dir = !state_dir.exists();
    let built = (|| -> Result<(Spec, PathBuf, Option<PathBuf>), Error> {
        let hostname = flags.hostname.clone().unwrap_or_default();
        let etc = write_etc_files(&state_dir, &hostname, &flags.network)?;
        let mut spec = runtime_spec(config.as_ref(), &flags, &rootfs, etc, base)?;
        if let super::Network::Container(target) = &flags.network {
            super::net::join_container(&root, target, &mut spec, &state_dir)?;
        }
        let src = match &image_chain {
            Some(chain_id) => CopySource::Image {
                chain_id: chain_id.as_ref(),
            },
            None => CopySource::Dir,
        };
        let (rootfs, shifted) = shifted_rootfs(&root, src, &mut spec, &rootfs, &state_dir)?;
        Ok((spec, rootfs, shifted))
    })();
    match built {
        Ok((spec, rootfs, rootfs_shifted)) => Ok(Prepared {
            id,
            spec,
            rootfs,
            rootfs_shifted,
            state_dir,
            lease,
            view,
        }),
        Err(e) => {
            if made_state_dir {
                let _ = std::fs::remove_dir_all(&state_dir);
            }
            Err(e)
        }
    }
}

/// With a user namespace on a rootfs that cannot be idmapped (overlayfs), use a
/// copy with shifted owners (an image's shared by content and mapping, a
/// directory's private; see [`super::shifted`]), read-only under a per-container
/// overlay whose upper and work dirs are made (owned by the container's root) in
/// `state_dir/rw`. Returns the rootfs to use and, when shifted, that directory.
fn shifted_rootfs(
    root: &Path,
    src: CopySource<'_>,
    spec: &mut Spec,
    rootfs: &Path,
    state_dir: &Path,
) -> Result<(PathBuf, Option<PathBuf>), Error> {
    use crate::sandbox::idshift;
    let Some(linux) = spec.linux().clone() else {
        return Ok((rootfs.to_path_buf(), None));
    };
    let triples = |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| -> Vec<(u32, u32, u32)> {
        m.iter()
            .flatten()
            .map(|x| (x.container_id(), x.host_id(), x.size()))
            .collect()
    };
    let (uids, gids) = (triples(linux.uid_mappings()), triples(linux.gid_mappings()));
    if uids.is_empty() || !idshift::needs_copy(rootfs) {
        return Ok((rootfs.to_path_buf(), None));
    }
    let dst = super::shifted::acquire(root, src, rootfs, state_dir, &uids, &gids)?;
    if let Some(mut r) = spec.root().clone() {
        r.set_path(dst.clone());
        spec.set_root(Some(r));
    }
    let rw = state_dir.join("rw");
    for d in ["upper", "work"] {
        let p = rw.join(d);
        let io = |source| Error::Io {
            path: p.clone(),
            source,
        };
        std::fs::create_dir_all(&p).map_err(io)?;
        let (uid, gid) = (idshift::map_id(0, &uids), idshift::map_id(0, &gids));
        std::os::unix::fs::chown(&p, Some(uid), Some(gid)).map_err(|source| Error::Io {
            path: p.clone(),
            source,
        })?;
    }
    Ok((dst, Some(rw)))
}

/// Read `--image-config FILE`: a whole image configuration or just its `config`
/// object (ENTRYPOINT, CMD, ENV, USER, WORKDIR...). Capped like a stored config.
pub fn read_image_config_file(path: &Path) -> Result<RunConfig, Error> {
    use std::io::Read;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut data = Vec::new();
    f.take(crate::oci::MAX_CONFIG_SIZE + 1)
        .read_to_end(&mut data)
        .map_err(io)?;
    if data.len() as u64 > crate::oci::MAX_CONFIG_SIZE {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {} bytes", crate::oci::MAX_CONFIG_SIZE),
        )));
    }
    let invalid =
        |e: serde_json::Error| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
    let v: serde_json::Value = serde_json::from_slice(&data).map_err(invalid)?;
    let inner = v.get("config").cloned().unwrap_or(v);
    serde_json::from_value(inner).map_err(invalid)
}
