//! Content-addressed store: blobs (ingest -> verify -> atomic commit), the image
//! index (tags in the OCI `index.json`), locks and metadata. Knows bytes and digests,
//! never tar or overlay.

use crate::oci::Digest;

/// Read access to verified blobs: the narrow contract that `layer`, `snapshot` and
/// `image` consumers take instead of the whole store.
pub trait BlobReader: Send + Sync {
    /// Open a committed blob for reading. `ErrorKind::NotFound` when it is absent.
    fn open_blob(&self, digest: &Digest) -> std::io::Result<std::fs::File>;
}
