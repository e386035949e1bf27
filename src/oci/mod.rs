//! OCI vocabulary shared by every layer of imgctl: digests, chain IDs, image references
//! (Docker-style normalisation), media types, descriptors, manifests, indexes and image
//! configs. Pure: no I/O.

mod digest;
mod manifest;
mod name;
mod reference;

pub use digest::{chain_id, Digest, DigestError, Digester};
pub use manifest::{
    docker_to_oci, go_arch, oci_layer_type, oci_to_docker, parse_image_config, parse_manifest,
    AnyManifest, Descriptor, History, ImageConfig, Index, Manifest, ManifestError, MediaType,
    Platform, PlatformError, RootFs, RunConfig, MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE,
};
pub use name::is_restricted_name;
pub use reference::{Reference, ReferenceError, DEFAULT_REGISTRY, DEFAULT_TAG};

/// Annotation holding an image's name in an OCI layout's `index.json` (image-spec
/// annotations.md). imgctl stores the full normalised reference there.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
