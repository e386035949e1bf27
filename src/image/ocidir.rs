//! Read-only access to an OCI image layout directory (`oci-layout`, `index.json`,
//! `blobs/sha256/`), e.g. one written by skopeo or umoci. Used for `oci:DIR[:TAG]`
//! image arguments and by tests.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::oci::{Descriptor, Digest, Index, ANNOTATION_REF_NAME};
use crate::store::BlobReader;

/// An OCI image layout on disk.
#[derive(Debug, Clone)]
pub struct OciDir {
    path: PathBuf,
}

impl OciDir {
    pub fn open(path: &Path) -> io::Result<OciDir> {
        if !path.join("index.json").is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} is not an OCI image layout (no index.json)",
                    path.display()
                ),
            ));
        }
        Ok(OciDir {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The manifest digest tagged `tag` (`org.opencontainers.image.ref.name`), or the
    /// only manifest when `tag` is `None`.
    pub fn manifest_for(&self, tag: Option<&str>) -> io::Result<Digest> {
        Ok(self.descriptor_for(tag)?.digest)
    }

    /// The index.json descriptor tagged `tag`, or the only one when `tag` is `None`.
    pub fn descriptor_for(&self, tag: Option<&str>) -> io::Result<Descriptor> {
        let data = fs::read(self.path.join("index.json"))?;
        let idx: Index = serde_json::from_slice(&data)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("index.json: {e}")))?;
        let found: Vec<&Descriptor> = idx
            .manifests
            .iter()
            .filter(|m| match tag {
                Some(t) => m.annotation(ANNOTATION_REF_NAME) == Some(t),
                None => true,
            })
            .collect();
        match (found.as_slice(), tag) {
            ([one], _) => Ok((*one).clone()),
            ([], Some(t)) => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no image tagged {t:?} in {}", self.path.display()),
            )),
            (_, _) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} holds several images; name one as oci:DIR:TAG",
                    self.path.display()
                ),
            )),
        }
    }

    /// Parse `oci:DIR[:TAG]`.
    pub fn parse_ref(s: &str) -> Option<(PathBuf, Option<String>)> {
        let rest = s.strip_prefix("oci:")?;
        match rest.rsplit_once(':') {
            Some((dir, tag)) if !tag.contains('/') && !dir.is_empty() => {
                Some((PathBuf::from(dir), Some(tag.to_string())))
            }
            _ => Some((PathBuf::from(rest), None)),
        }
    }
}

impl BlobReader for OciDir {
    fn open_blob(&self, digest: &Digest) -> io::Result<fs::File> {
        fs::File::open(
            self.path
                .join("blobs")
                .join(digest.algorithm())
                .join(digest.hex()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_oci_refs() {
        assert_eq!(
            OciDir::parse_ref("oci:/a/b:latest"),
            Some(("/a/b".into(), Some("latest".into())))
        );
        assert_eq!(OciDir::parse_ref("oci:/a/b"), Some(("/a/b".into(), None)));
        assert_eq!(OciDir::parse_ref("nginx"), None);
    }
}
