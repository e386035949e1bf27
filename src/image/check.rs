//! `imgctl check [--repair] [IMAGE…]`: verify the store against its own digests.
//!
//! * Blobs: each file under `blobs/sha256/` (or each blob of the named images) is
//!   hashed and compared with its name; a referenced blob that is missing is a
//!   problem too.
//! * Unpacked layers in files: the layer's blob is streamed again and every entry is
//!   compared with the directory (`verify`), the blob's diff ID checked on the way.
//! * Layers kept as EROFS images: the image's sha256 is compared with the digest
//!   recorded when it was made (`snapshot::durable::ERO_DIGEST`); a missing image is
//!   a problem.
//! * Chains: a committed chain whose layer is gone.
//!
//! `--repair` holds the store's GC lock (no pull, build or mount runs meanwhile),
//! re-creates a bad layer from its blob (refused while a container or view uses
//! it), and removes a bad blob, fetching it again from the registry the image was
//! pulled from when it can (otherwise it says to pull the image again).

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsFd;
use std::path::Path;

use super::verify::verify_tree;
use super::{unpack_layer, ImageError, LayerFormat, UnpackOptions};
use crate::oci::{Descriptor, Digest, Platform, Reference};
use crate::snapshot::durable::{file_digest, ERO_DIGEST};
use crate::snapshot::overlay::EROFS_IMAGE;
use crate::snapshot::{Kind, Overlay, Snapshotter};
use crate::store::{Store, StoreError};

/// What a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    Blob,
    Layer,
    Chain,
}

/// One bad item.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Problem {
    pub kind: CheckKind,
    /// Blob digest, diff ID or chain ID.
    pub id: String,
    /// Names of the images that use it.
    pub images: Vec<String>,
    pub problem: String,
    pub repaired: bool,
    /// What was done, or what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// The result of a check (`schemas/check.schema.json`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CheckReport {
    pub blobs_checked: u64,
    pub layers_checked: u64,
    pub chains_checked: u64,
    pub problems: Vec<Problem>,
}

impl CheckReport {
    /// 0: nothing wrong; 1: problems found (with `--repair`: all repaired);
    /// 2: with `--repair`, problems left.
    pub fn exit_code(&self, repair: bool) -> u8 {
        if self.problems.is_empty() {
            0
        } else if repair && self.problems.iter().any(|p| !p.repaired) {
            2
        } else {
            1
        }
    }
}

/// Options of [`check`].
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    pub repair: bool,
    /// Only these images (names or IDs); all when empty.
    pub images: Vec<String>,
}

/// One image of the store as the check sees it.
struct Img {
    names: Vec<String>,
    blobs: Vec<Descriptor>,
    layers: Vec<(Descriptor, Digest)>,
}

fn store_err(what: &str) -> impl FnOnce(StoreError) -> ImageError + '_ {
    move |source| ImageError::Store {
        name: what.to_string(),
        source,
    }
}

fn inventory(store: &Store, only: &[String]) -> Result<Vec<Img>, ImageError> {
    let records = store.image_records().map_err(store_err("index.json"))?;
    let mut wanted: Option<BTreeSet<Digest>> = None;
    if !only.is_empty() {
        let mut set = BTreeSet::new();
        for q in only {
            match store.find_image(q) {
                Ok(r) => {
                    set.insert(r.descriptor.digest);
                }
                Err(StoreError::ImageNotFound { .. }) => {
                    return Err(ImageError::NotFound { name: q.clone() })
                }
                Err(e) => return Err(store_err(q)(e)),
            }
        }
        wanted = Some(set);
    }
    let mut by_digest: BTreeMap<Digest, Img> = BTreeMap::new();
    for r in records {
        if wanted
            .as_ref()
            .is_some_and(|w| !w.contains(&r.descriptor.digest))
        {
            continue;
        }
        if let Some(img) = by_digest.get_mut(&r.descriptor.digest) {
            img.names.push(r.name);
            continue;
        }
        let mut img = Img {
            names: vec![r.name.clone()],
            blobs: vec![r.descriptor.clone()],
            layers: Vec::new(),
        };
        if let Ok(m) = super::read_manifest(
            store,
            &r.descriptor.digest,
            &r.descriptor.media_type,
            &Platform::host(),
        ) {
            if m.digest != r.descriptor.digest {
                img.blobs.push(Descriptor::new(
                    m.media_type.clone(),
                    m.digest.clone(),
                    m.size,
                ));
            }
            img.blobs.push(m.manifest.config.clone());
            img.blobs.extend(m.manifest.layers.iter().cloned());
            img.layers = m
                .manifest
                .layers
                .iter()
                .cloned()
                .zip(m.config.rootfs.diff_ids.iter().cloned())
                .collect();
        }
        by_digest.insert(r.descriptor.digest.clone(), img);
    }
    Ok(by_digest.into_values().collect())
}

/// Check the store at `root`; see the module docs.
pub fn check(root: &Path, opts: &CheckOptions) -> Result<CheckReport, ImageError> {
    let mut report = CheckReport::default();
    if !root.join("oci-layout").exists() {
        if !opts.images.is_empty() {
            return Err(ImageError::NotFound {
                name: opts.images[0].clone(),
            });
        }
        return Ok(report);
    }
    let store = Store::open_existing(root).map_err(store_err("open store"))?;
    let _gc = if opts.repair {
        Some(store.gc_lock().map_err(store_err("GC lock"))?)
    } else {
        None
    };
    let images = inventory(&store, &opts.images)?;
    let names_of = |d: &Digest| -> Vec<String> {
        let mut v: Vec<String> = images
            .iter()
            .filter(|i| i.blobs.iter().any(|b| &b.digest == d))
            .flat_map(|i| i.names.iter().cloned())
            .collect();
        v.sort();
        v.dedup();
        v
    };

    // 1. Blobs.
    let mut to_check: BTreeMap<Digest, Option<Descriptor>> = BTreeMap::new();
    for i in &images {
        for b in &i.blobs {
            to_check.insert(b.digest.clone(), Some(b.clone()));
        }
    }
    if opts.images.is_empty() {
        for d in store.blobs().map_err(store_err("blobs"))?.into_keys() {
            to_check.entry(d).or_insert(None);
        }
    }
    let mut bad_blobs: BTreeSet<Digest> = BTreeSet::new();
    for (d, desc) in &to_check {
        report.blobs_checked += 1;
        let path = store.blob_path(d);
        let problem = match file_digest(&path) {
            Ok(found) if found == d.to_string() => continue,
            Ok(found) => {
                format!("content does not match its digest (sha256 of the file is {found})")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "missing".to_string(),
            Err(e) => e.to_string(),
        };
        bad_blobs.insert(d.clone());
        let mut p = Problem {
            kind: CheckKind::Blob,
            id: d.to_string(),
            images: names_of(d),
            problem,
            repaired: false,
            action: None,
        };
        if opts.repair {
            repair_blob(&store, d, desc.as_ref(), &mut p);
            if p.repaired {
                bad_blobs.remove(d);
            }
        } else {
            p.action = Some(if p.images.is_empty() {
                "no image uses it: imgctl prune removes it".into()
            } else {
                "imgctl check --repair removes it and fetches it again".into()
            });
        }
        report.problems.push(p);
    }

    // 2. Layers and chains.
    let snap_dir = root.join("snapshots");
    if !snap_dir.join("layers").is_dir() {
        return Ok(report);
    }
    let snaps = Overlay::open(root)?;
    let mut layer_blob: BTreeMap<Digest, (Descriptor, Vec<String>)> = BTreeMap::new();
    for i in &images {
        for (desc, diff) in &i.layers {
            let e = layer_blob
                .entry(diff.clone())
                .or_insert_with(|| (desc.clone(), Vec::new()));
            e.1.extend(i.names.iter().cloned());
        }
    }
    let mut layers: Vec<Digest> = Vec::new();
    if opts.images.is_empty() {
        for e in std::fs::read_dir(snap_dir.join("layers")).map_err(|source| ImageError::Io {
            path: snap_dir.join("layers"),
            source,
        })? {
            let Ok(e) = e else { continue };
            if let Some(d) = e
                .file_name()
                .to_str()
                .and_then(|h| Digest::from_hex(h).ok())
            {
                layers.push(d);
            }
        }
    } else {
        layers.extend(
            layer_blob
                .keys()
                .filter(|d| snaps.layer_dir(d).is_dir())
                .cloned(),
        );
    }
    layers.sort();
    for diff in &layers {
        report.layers_checked += 1;
        let Some(problem) = check_layer(&store, &snaps, diff, layer_blob.get(diff), &bad_blobs)
        else {
            continue;
        };
        let mut p = Problem {
            kind: CheckKind::Layer,
            id: diff.to_string(),
            images: layer_blob
                .get(diff)
                .map(|l| l.1.clone())
                .unwrap_or_default(),
            problem,
            repaired: false,
            action: None,
        };
        p.images.sort();
        p.images.dedup();
        repair_or_advise(
            &store,
            &snaps,
            diff,
            layer_blob.get(diff),
            &bad_blobs,
            opts.repair,
            &mut p,
        );
        report.problems.push(p);
    }
    for info in snaps.list()? {
        if info.kind != Kind::Committed {
            continue;
        }
        let Some(diff) = info.diff_id.clone() else {
            continue;
        };
        if !opts.images.is_empty() && !layer_blob.contains_key(&diff) {
            continue;
        }
        report.chains_checked += 1;
        if snaps.layer_dir(&diff).is_dir() {
            continue;
        }
        let mut p = Problem {
            kind: CheckKind::Chain,
            id: info.key.clone(),
            images: layer_blob
                .get(&diff)
                .map(|l| l.1.clone())
                .unwrap_or_default(),
            problem: format!("its layer {diff} is missing"),
            repaired: false,
            action: None,
        };
        repair_or_advise(
            &store,
            &snaps,
            &diff,
            layer_blob.get(&diff),
            &bad_blobs,
            opts.repair,
            &mut p,
        );
        report.problems.push(p);
    }
    Ok(report)
}

/// What is wrong with the unpacked layer `diff`, if anything.
fn check_layer(
    store: &Store,
    snaps: &Overlay,
    diff: &Digest,
    blob: Option<&(Descriptor, Vec<String>)>,
    bad_blobs: &BTreeSet<Digest>,
) -> Option<String> {
    let fsdir = snaps.layer_dir(diff);
    let base = fsdir.parent()?.to_path_buf();
    let image = base.join(EROFS_IMAGE);
    let recorded = std::fs::read_to_string(base.join(ERO_DIGEST)).ok();
    if let Some(rec) = recorded {
        return match file_digest(&image) {
            Ok(d) if d == rec.trim() => None,
            Ok(d) => Some(format!(
                "EROFS image has sha256 {d}, recorded {}",
                rec.trim()
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Some("EROFS image missing".into())
            }
            Err(e) => Some(format!("EROFS image: {e}")),
        };
    }
    if image.is_file() {
        // Made before digests were recorded: nothing to compare with.
        return None;
    }
    let (desc, _) = blob?;
    if bad_blobs.contains(&desc.digest) {
        return Some(format!(
            "cannot be verified: its blob {} is bad",
            desc.digest
        ));
    }
    match verify_tree(store, desc, diff, &fsdir, 5) {
        Ok(bad) if bad.is_empty() => None,
        Ok(bad) => Some(bad.join("; ")),
        Err(e) => Some(e),
    }
}

fn repair_or_advise(
    store: &Store,
    snaps: &Overlay,
    diff: &Digest,
    blob: Option<&(Descriptor, Vec<String>)>,
    bad_blobs: &BTreeSet<Digest>,
    repair: bool,
    p: &mut Problem,
) {
    let Some((desc, _)) = blob else {
        p.action = Some("no image uses this layer: imgctl prune removes it".into());
        return;
    };
    if bad_blobs.contains(&desc.digest) {
        p.action = Some(format!(
            "its blob {} is bad: pull the image again, then run imgctl check --repair",
            desc.digest
        ));
        return;
    }
    if !repair {
        p.action = Some("imgctl check --repair re-creates it from its blob".into());
        return;
    }
    match recreate_layer(store, snaps, diff, desc) {
        Ok(()) => match check_layer(store, snaps, diff, blob, bad_blobs) {
            None => {
                p.repaired = true;
                p.action = Some(format!("re-created from blob {}", desc.digest));
            }
            Some(still) => p.action = Some(format!("re-created, still bad: {still}")),
        },
        Err(e) => p.action = Some(format!("not repaired: {e}")),
    }
}

/// Replace the layer `diff` by a fresh unpack of `desc` (same format as before).
fn recreate_layer(
    store: &Store,
    snaps: &Overlay,
    diff: &Digest,
    desc: &Descriptor,
) -> Result<(), String> {
    let fsdir = snaps.layer_dir(diff);
    for info in snaps.list().map_err(|e| e.to_string())? {
        if info.kind == Kind::Committed {
            continue;
        }
        if let Some(parent) = &info.parent {
            if snaps
                .lowers(parent)
                .map_err(|e| e.to_string())?
                .contains(&fsdir)
            {
                return Err(format!(
                    "in use by snapshot {} (stop the container or umount the view, then repair again)",
                    info.key
                ));
            }
        }
    }
    let layers = snaps.dir().join("layers");
    let base = layers.join(diff.hex());
    let erofs = base.join(EROFS_IMAGE).exists() || base.join(ERO_DIGEST).exists();
    if base.exists() {
        // Pool files sharing an inode with this layer hold the same bad bytes, and
        // the unpack below would link to them by name: they go first.
        evict_pooled(&fsdir, &snaps.pool_dir()).map_err(|e| format!("dedup pool: {e}"))?;
        if crate::sys::fs::is_mount_point(&fsdir).unwrap_or(false) {
            crate::sys::fs::unmount(&fsdir, true).map_err(|e| e.to_string())?;
        }
        let fd = crate::sys::fs::open_dir_path(&layers).map_err(|e| e.to_string())?;
        let gone = format!(".gc-{}-{}", diff.hex(), std::process::id());
        rustix::fs::renameat(&fd, diff.hex(), &fd, gone.as_str()).map_err(|e| e.to_string())?;
        crate::sys::fs::remove_all_at(fd.as_fd(), gone.as_bytes()).map_err(|e| e.to_string())?;
    }
    let opts = UnpackOptions {
        format: Some(if erofs {
            LayerFormat::Erofs
        } else {
            LayerFormat::Files
        }),
        ..UnpackOptions::default()
    };
    unpack_layer(store, snaps, desc, diff, &opts, Some(store.root())).map_err(|e| e.to_string())?;
    Ok(())
}

/// Remove the bad blob `d` and, for a layer or config of an image pulled from a
/// registry, fetch it again.
fn repair_blob(store: &Store, d: &Digest, desc: Option<&Descriptor>, p: &mut Problem) {
    let path = store.blob_path(d);
    if let Err(e) = std::fs::remove_file(&path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            p.action = Some(format!("not repaired: remove {}: {e}", path.display()));
            return;
        }
    }
    if p.images.is_empty() {
        p.repaired = true;
        p.action = Some("removed (no image used it)".into());
        return;
    }
    let refetch = desc.filter(|x| !x.media_type.is_manifest() && !x.media_type.is_index());
    let mut last_err = String::from("no registry name to fetch it from");
    if let Some(desc) = refetch {
        for name in &p.images {
            let Ok(r) = Reference::parse(name) else {
                continue;
            };
            match super::pull::fetch_blob(store, &r, desc) {
                Ok(()) => {
                    p.repaired = true;
                    p.action = Some(format!("fetched again from {}", r.registry()));
                    return;
                }
                Err(e) => last_err = e.to_string(),
            }
        }
    }
    p.action = Some(format!(
        "removed; fetch it again with imgctl pull {} ({last_err})",
        p.images[0]
    ));
}

/// Remove the dedup-pool entries that are hardlinks of files under `dir`.
fn evict_pooled(dir: &Path, pool: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut inodes = std::collections::HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                let md = e.metadata()?;
                if md.nlink() > 1 {
                    inodes.insert((md.dev(), md.ino()));
                }
            }
        }
    }
    if inodes.is_empty() {
        return Ok(());
    }
    for shard in std::fs::read_dir(pool)?.flatten() {
        for e in std::fs::read_dir(shard.path())?.flatten() {
            let md = e.metadata()?;
            if inodes.contains(&(md.dev(), md.ino())) {
                std::fs::remove_file(e.path())?;
            }
        }
    }
    Ok(())
}
