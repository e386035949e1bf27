//! Images as files: `save` writes store images into one tar (a docker-archive or an
//! OCI image layout archive), `load` reads either back, `import` makes a one-layer
//! image from a root filesystem tar or directory. See docs/archives.md.
//!
//! Both archive formats hold the same OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`); a docker-archive adds Docker's `manifest.json` and
//! `repositories`, as Docker 25+ writes them, so `docker load` (which reads only
//! `manifest.json`) and every OCI reader take it. Layer blobs are written as they
//! are stored (compressed): no recompression on save, and the manifest digest
//! survives a round trip.
//!
//! Loading streams the tar once: every file entry goes through the store's blob
//! writer (hashed while written) into a sealed temp file, and compressed entries are
//! decompressed on a second thread to compute their diff IDs. Only when every image
//! of the archive checks out (manifest and config parse, blobs present, names
//! valid, digests and diff IDs equal) are the blobs published and the names
//! tagged; anything else drops the temp files and leaves the store as it was.

mod import;
mod input;
mod listing;
mod load;
mod save;

use std::path::PathBuf;

use crate::oci::Digest;
use crate::store::StoreError;

pub use import::{import, ImportRequest, ImportSource};
pub use load::{load, LoadedImage};
pub use save::{save, save_to_file, SaveReport};

/// The two archive formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `docker save`'s format: `manifest.json` + `repositories` (+ the OCI layout).
    Docker,
    /// An OCI image layout in a tar, names in `org.opencontainers.image.ref.name`.
    Oci,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "docker-archive" | "docker" => Some(Format::Docker),
            "oci-archive" | "oci" => Some(Format::Oci),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Docker => "docker-archive",
            Format::Oci => "oci-archive",
        }
    }
}

/// Annotation Docker (and containerd) put on an index.json entry: the full image
/// name, while `org.opencontainers.image.ref.name` holds only the tag.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Entries an archive may have (a safety bound: each becomes a temp file while
/// the archive is checked).
pub const MAX_ENTRIES: usize = 65_536;

/// What went wrong with an archive. Every variant names the entry, blob or image.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("archive entry {entry:?}: {reason}")]
    Entry { entry: String, reason: String },
    #[error("archive has more than {limit} entries")]
    TooManyEntries { limit: usize },
    #[error("not an image archive: {reason}")]
    NotAnArchive { reason: String },
    #[error("{file} in the archive: {reason}")]
    Json { file: String, reason: String },
    #[error("{what} names {path} which is not in the archive (the archive is incomplete)")]
    Missing { what: String, path: String },
    #[error("{what}: blob content hashes to {found}, not {expected} (the archive is damaged or was tampered with)")]
    Digest {
        what: String,
        expected: Digest,
        found: Digest,
    },
    #[error("layer {layer} of {image}: its uncompressed content hashes to {found} but the config lists {expected} (the archive is damaged or was tampered with)")]
    DiffId {
        image: String,
        layer: String,
        expected: Digest,
        found: Digest,
    },
    #[error("image {image}: {reason}")]
    Image { image: String, reason: String },
    #[error("{name:?} is not a valid image name: {reason}")]
    Name { name: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Resolve(#[from] super::ImageError),
    #[error("{path}: {source}")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ArchiveError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ArchiveError {
        let what = what.into();
        move |source| ArchiveError::Io { what, source }
    }
}

/// `blobs/sha256/<hex>`: where a blob lives in an OCI layout.
pub(crate) fn blob_path(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm(), d.hex())
}
