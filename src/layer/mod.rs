//! Layers: safe application of a layer tar (plain, gzip or zstd) onto a directory, and
//! the reverse, a deterministic layer tar from a changed (upper) directory.
//!
//! Apply has two output formats ([`ApplyMode`]): `Overlay` writes the layer as an
//! overlayfs lower directory (OCI whiteouts become whiteout devices and opaque
//! xattrs), `Flatten` applies it onto the result of the layers below (whiteouts
//! delete). Extraction is fd-relative: see [`crate::sys::fs`] for why every path is
//! resolved with `openat2(RESOLVE_IN_ROOT)`.

mod apply;
mod compress;
mod diff;
mod erofs;
mod guard;
pub mod index;

pub use apply::{
    apply, unpack_new, Applied, ApplyMode, ApplyOptions, ChannelReader, DevicePolicy, Limits,
    PoolDedup, Pooled,
};
pub use compress::{decoder, Compression, Encoder};
pub use diff::{
    changes, write_layer, write_layer_indexed, Change, ChangeKind, DiffOptions, LayerOutput,
    WhiteoutFormat,
};
pub use erofs::write_erofs;

use std::path::PathBuf;

/// Errors of layer application and creation. `layer` is the blob digest (or a
/// description of the stream) and `entry` the tar entry name, as the user would
/// look for them.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("layer {layer}: entry {entry:?}: {reason}")]
    InvalidEntry {
        layer: String,
        entry: String,
        reason: String,
    },
    #[error("layer {layer}: entry {entry:?}: {source}")]
    Extract {
        layer: String,
        entry: String,
        #[source]
        source: std::io::Error,
    },
    #[error("layer {layer}: reading the layer stream: {source}")]
    Read {
        layer: String,
        #[source]
        source: std::io::Error,
    },
    #[error("layer {layer}: media type says {declared} but the data is {found}")]
    CompressionMismatch {
        layer: String,
        declared: &'static str,
        found: &'static str,
    },
    #[error("unsupported layer media type {media_type:?}")]
    UnsupportedMediaType { media_type: String },
    #[error("layer {layer}: {what} exceeds the limit of {limit} (raise it with the unpack limits if the image is trusted)")]
    LimitExceeded {
        layer: String,
        what: &'static str,
        limit: u64,
    },
    #[error("layer {layer}: uncompressed content has digest {found}, but the image config lists diff ID {expected}")]
    DiffIdMismatch {
        layer: String,
        expected: String,
        found: String,
    },
    #[error("creating layer from {path}: {source}")]
    Diff {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unpacking into {path}: {source}")]
    Target {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
