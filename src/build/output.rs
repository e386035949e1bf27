//! `--output type=oci|docker,dest=FILE`: the built image as a tar archive.
//!
//! `oci` is an OCI image layout (image-spec `image-layout.md`: `oci-layout`,
//! `index.json`, `blobs/sha256/*`). `docker` is the same layout plus the
//! `manifest.json` that `docker load` reads (the shape `docker save` writes since
//! Docker 25), so one archive loads into both worlds. Entries are written in a fixed
//! order with fixed metadata, so the archive is as reproducible as the image. The file
//! appears at `dest` only when complete (written beside it, then renamed).

use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde_json::json;

use super::{BuildError, OutputKind};
use crate::oci::{Digest, Manifest, Reference};
use crate::store::{Store, MAX_MANIFEST_SIZE};

fn header(path: &str, size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    let _ = h.set_path(path);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    h
}

/// Write the image `manifest` (in `store`) to `dest` as `kind`.
pub fn write(
    store: &Store,
    manifest: &Digest,
    tags: &[Reference],
    kind: OutputKind,
    dest: &Path,
    mtime: u64,
) -> Result<(), BuildError> {
    let other =
        |e: &dyn std::fmt::Display| BuildError::Other(format!("--output {}: {e}", dest.display()));
    let body = store
        .read_blob(manifest, MAX_MANIFEST_SIZE)
        .map_err(|e| other(&e))?;
    let m: Manifest = serde_json::from_slice(&body).map_err(|e| other(&e))?;
    let tmp = dest.with_file_name(format!(
        ".{}.tmp-{}",
        dest.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| -> Result<(), BuildError> {
        let f = fs::File::create(&tmp).map_err(|e| BuildError::io(&tmp, e))?;
        let mut t = tar::Builder::new(BufWriter::new(f));
        let mut put = |path: &str, data: &[u8]| -> Result<(), BuildError> {
            let h = header(path, data.len() as u64, mtime);
            t.append(&h, data).map_err(|e| BuildError::io(dest, e))
        };
        put("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let mut desc = json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest.to_string(),
            "size": body.len(),
        });
        if let Some(tag) = tags.first() {
            desc["annotations"] = json!({
                "io.containerd.image.name": tag.to_string(),
                "org.opencontainers.image.ref.name": tag.tag().unwrap_or("latest"),
            });
        }
        let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [desc]});
        put(
            "index.json",
            &serde_json::to_vec(&index).map_err(|e| other(&e))?,
        )?;
        if kind == OutputKind::Docker {
            let blob = |d: &Digest| format!("blobs/sha256/{}", d.hex());
            let mj = json!([{
                "Config": blob(&m.config.digest),
                "RepoTags": tags.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
                "Layers": m.layers.iter().map(|l| blob(&l.digest)).collect::<Vec<_>>(),
            }]);
            put(
                "manifest.json",
                &serde_json::to_vec(&mj).map_err(|e| other(&e))?,
            )?;
        }
        put(&format!("blobs/sha256/{}", manifest.hex()), &body)?;
        let mut seen = std::collections::BTreeSet::new();
        for d in std::iter::once(&m.config.digest).chain(m.layers.iter().map(|l| &l.digest)) {
            if !seen.insert(d.clone()) {
                continue;
            }
            let p = store.blob_path(d);
            let mut f = fs::File::open(&p).map_err(|e| BuildError::io(&p, e))?;
            let size = f.metadata().map_err(|e| BuildError::io(&p, e))?.len();
            let h = header(&format!("blobs/sha256/{}", d.hex()), size, mtime);
            t.append(&h, &mut f).map_err(|e| BuildError::io(dest, e))?;
        }
        let mut w = t.into_inner().map_err(|e| BuildError::io(dest, e))?;
        w.flush().map_err(|e| BuildError::io(dest, e))?;
        w.get_ref()
            .sync_all()
            .map_err(|e| BuildError::io(dest, e))?;
        Ok(())
    })();
    match result {
        Ok(()) => fs::rename(&tmp, dest).map_err(|e| BuildError::io(dest, e)),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}
