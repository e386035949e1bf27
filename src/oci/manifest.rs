//! Manifests, indexes, descriptors, platforms and image configs: the subset of the OCI
//! image spec (and Docker schema 2, which has the same shape under other media types)
//! that imgctl reads and writes. Unknown fields are kept where a document is written
//! back (`extra`), so nothing a registry sent is lost when the store re-serialises it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::digest::Digest;

/// Media types imgctl knows. Open set: anything else is `Other`, which callers
/// turn into an "unsupported media type" error where a known one is REQUIRED.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum MediaType {
    OciManifest,
    OciIndex,
    OciConfig,
    OciLayerTar,
    OciLayerGzip,
    OciLayerZstd,
    DockerManifest,
    DockerManifestList,
    DockerConfig,
    DockerLayerGzip,
    Other(String),
}

impl MediaType {
    pub fn as_str(&self) -> &str {
        match self {
            MediaType::Other(s) => s,
            known => known.as_str_static(),
        }
    }

    /// The string of a known media type (`None` for `Other`).
    pub fn as_str_static(&self) -> &'static str {
        match self {
            MediaType::OciManifest => "application/vnd.oci.image.manifest.v1+json",
            MediaType::OciIndex => "application/vnd.oci.image.index.v1+json",
            MediaType::OciConfig => "application/vnd.oci.image.config.v1+json",
            MediaType::OciLayerTar => "application/vnd.oci.image.layer.v1.tar",
            MediaType::OciLayerGzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            MediaType::OciLayerZstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            MediaType::DockerManifest => "application/vnd.docker.distribution.manifest.v2+json",
            MediaType::DockerManifestList => {
                "application/vnd.docker.distribution.manifest.list.v2+json"
            }
            MediaType::DockerConfig => "application/vnd.docker.container.image.v1+json",
            MediaType::DockerLayerGzip => "application/vnd.docker.image.rootfs.diff.tar.gzip",
            MediaType::Other(_) => "",
        }
    }

    pub fn parse(s: &str) -> MediaType {
        // Content-Type may carry parameters ("; charset=utf-8").
        let s = s.split(';').next().unwrap_or("").trim();
        [
            MediaType::OciManifest,
            MediaType::OciIndex,
            MediaType::OciConfig,
            MediaType::OciLayerTar,
            MediaType::OciLayerGzip,
            MediaType::OciLayerZstd,
            MediaType::DockerManifest,
            MediaType::DockerManifestList,
            MediaType::DockerConfig,
            MediaType::DockerLayerGzip,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
        .unwrap_or_else(|| MediaType::Other(s.to_string()))
    }

    /// An image manifest (one platform).
    pub fn is_manifest(&self) -> bool {
        matches!(self, MediaType::OciManifest | MediaType::DockerManifest)
    }

    /// An index / manifest list (several platforms).
    pub fn is_index(&self) -> bool {
        matches!(self, MediaType::OciIndex | MediaType::DockerManifestList)
    }

    /// The `Accept` header value for manifest requests.
    pub fn manifest_accept() -> String {
        [
            MediaType::OciManifest,
            MediaType::OciIndex,
            MediaType::DockerManifest,
            MediaType::DockerManifestList,
        ]
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(", ")
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for MediaType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MediaType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(MediaType::parse(&String::deserialize(d)?))
    }
}

/// The largest manifest or index imgctl accepts or reads back (4 MiB, as
/// containers/image does; CVE-2020-1702 class, SECURITY-TESTS B23).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

/// The largest image config imgctl accepts or reads back (same bound as manifests).
pub const MAX_CONFIG_SIZE: u64 = 4 << 20;

/// The one map from Rust's `std::env::consts::ARCH` to the OCI/Go architecture name
/// (image-spec config.md: `architecture` uses GOARCH values).
pub fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "loongarch64" => "loong64",
        "mips64" => "mips64le",
        other => other,
    }
}

/// A platform as in the image index (`os`, `architecture`, optional `variant`).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, Default)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Why a platform string is not `os/arch[/variant]`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid platform {input:?}: expected os/arch[/variant], e.g. linux/arm64/v8")]
pub struct PlatformError {
    pub input: String,
}

impl Platform {
    /// The platform this binary runs on, in OCI (GOARCH) spelling.
    pub fn host() -> Platform {
        let arch = go_arch(std::env::consts::ARCH);
        Platform {
            architecture: arch.to_string(),
            os: "linux".to_string(),
            variant: if arch == "arm64" {
                Some("v8".into())
            } else {
                None
            },
            ..Platform::default()
        }
    }

    /// Parse `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform, PlatformError> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok =
            |p: &&str| !p.is_empty() && p.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(ok) {
            return Err(PlatformError { input: s.into() });
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture: parts[1].to_ascii_lowercase(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
            ..Platform::default()
        })
    }

    /// True when a candidate from an index satisfies this wanted platform. A wanted
    /// variant must match, except that arm64's `v8` is also the default (no variant).
    pub fn matches(&self, candidate: &Platform) -> bool {
        if self.os != candidate.os || self.architecture != candidate.architecture {
            return false;
        }
        let norm = |v: &Option<String>| match (self.architecture.as_str(), v.as_deref()) {
            ("arm64", None) => Some("v8".to_string()),
            (_, v) => v.map(str::to_string),
        };
        match &self.variant {
            None => true,
            Some(_) => norm(&self.variant) == norm(&candidate.variant),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A content descriptor.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: MediaType,
    pub digest: Digest,
    /// REQUIRED by the spec; a negative size does not deserialise (u64).
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Descriptor {
    pub fn new(media_type: MediaType, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type,
            digest,
            size,
            platform: None,
            annotations: None,
            urls: None,
            extra: BTreeMap::new(),
        }
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<MediaType>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// An image index / Docker manifest list.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<MediaType>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Index {
    pub fn empty() -> Index {
        Index {
            schema_version: 2,
            media_type: Some(MediaType::OciIndex),
            manifests: Vec::new(),
            annotations: None,
            extra: BTreeMap::new(),
        }
    }
}

/// A manifest document that is either an index or an image manifest, told apart by
/// media type (`mediaType` field or the transport's Content-Type).
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // short-lived parse result; boxing buys nothing
pub enum AnyManifest {
    Index(Index),
    Image(Manifest),
}

/// Why a manifest document cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("unsupported manifest media type {media_type:?}")]
    UnsupportedMediaType { media_type: String },
    #[error("manifest is not valid JSON of type {media_type}: {source}")]
    Json {
        media_type: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("manifest has both `layers` and `manifests`: refused as ambiguous")]
    Ambiguous,
    #[error("manifest declares media type {declared} but was served as {served}")]
    MediaTypeMismatch { declared: String, served: String },
    #[error("unsupported manifest schema version {version}")]
    SchemaVersion { version: u64 },
}

/// Decode a manifest. `served` is the media type the transport declared (Content-Type
/// or descriptor); the document's own `mediaType`, when present, must agree with it
/// (CVE-2021-41190: a document must not be readable as two kinds).
pub fn parse_manifest(served: &MediaType, body: &[u8]) -> Result<AnyManifest, ManifestError> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "schemaVersion", default)]
        schema_version: Option<u64>,
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
        #[serde(default)]
        layers: Option<serde_json::Value>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(body).map_err(|source| ManifestError::Json {
        media_type: served.to_string(),
        source,
    })?;
    if probe.layers.is_some() && probe.manifests.is_some() {
        return Err(ManifestError::Ambiguous);
    }
    let declared = probe.media_type.as_deref().map(MediaType::parse);
    let effective = match (&declared, served) {
        (Some(d), MediaType::Other(s)) if s.is_empty() || s == "application/json" => d.clone(),
        // Neither the transport nor the document says (an old OCI layout): the
        // shape decides; `layers` and `manifests` together were refused above.
        (None, MediaType::Other(s)) if s.is_empty() && probe.manifests.is_some() => {
            MediaType::OciIndex
        }
        (None, MediaType::Other(s)) if s.is_empty() && probe.layers.is_some() => {
            MediaType::OciManifest
        }
        (Some(d), s) if d != s => {
            return Err(ManifestError::MediaTypeMismatch {
                declared: d.to_string(),
                served: s.to_string(),
            })
        }
        (_, s) => s.clone(),
    };
    if let Some(v) = probe.schema_version {
        if v != 2 {
            return Err(ManifestError::SchemaVersion { version: v });
        }
    }
    let json_err = |source| ManifestError::Json {
        media_type: effective.to_string(),
        source,
    };
    if effective.is_index() {
        Ok(AnyManifest::Index(
            serde_json::from_slice(body).map_err(json_err)?,
        ))
    } else if effective.is_manifest() {
        Ok(AnyManifest::Image(
            serde_json::from_slice(body).map_err(json_err)?,
        ))
    } else {
        Err(ManifestError::UnsupportedMediaType {
            media_type: effective.to_string(),
        })
    }
}

/// The parts of an image config (OCI `config.json` / Docker image JSON) imgctl reads.
/// Everything else is kept in `extra`.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, Default)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<RunConfig>,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The execution parameters of an image (`config` in image-spec config.md; Docker's
/// `container_config` shape). The fields imgctl acts on are typed; Docker's extra
/// keys (`Healthcheck`, `OnBuild`, `Shell`, `ArgsEscaped`, ...) are kept in `extra`
/// so a config read and written back loses nothing.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, Default)]
pub struct RunConfig {
    #[serde(rename = "User", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(
        rename = "ExposedPorts",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(rename = "Env", default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(
        rename = "Entrypoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Volumes", default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(
        rename = "WorkingDir",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub working_dir: Option<String>,
    #[serde(rename = "Labels", default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(
        rename = "StopSignal",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_signal: Option<String>,
    #[serde(rename = "Shell", default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Parse an image config document (the whole `config.json` of image-spec).
pub fn parse_image_config(body: &[u8]) -> Result<ImageConfig, ManifestError> {
    serde_json::from_slice(body).map_err(|source| ManifestError::Json {
        media_type: MediaType::OciConfig.as_str().to_string(),
        source,
    })
}

/// The OCI media type of a layer of media type `mt`: Docker's layer types become
/// their OCI twins, anything else is kept. Used when a Docker image is stored or
/// committed as OCI.
pub fn oci_layer_type(mt: &MediaType) -> MediaType {
    match mt {
        MediaType::DockerLayerGzip => MediaType::OciLayerGzip,
        MediaType::Other(s) if s == "application/vnd.docker.image.rootfs.diff.tar" => {
            MediaType::OciLayerTar
        }
        MediaType::Other(s) if s == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
            MediaType::Other("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip".into())
        }
        other => other.clone(),
    }
}

/// Rewrite a Docker schema 2 manifest as an OCI one: the media types change, digests
/// and sizes stay (the config and layer blobs are the same bytes). Unknown layer
/// types are refused with their media type as the error. The one place imgctl
/// converts between the Docker and OCI vocabularies.
pub fn docker_to_oci(body: &[u8]) -> Result<Vec<u8>, String> {
    let mut v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    // Layer types imgctl can unpack after conversion; anything else is refused.
    let map_layer = |mt: &str| -> Result<String, String> {
        match oci_layer_type(&MediaType::parse(mt)) {
            m @ (MediaType::OciLayerTar | MediaType::OciLayerGzip | MediaType::OciLayerZstd) => {
                Ok(m.as_str().to_string())
            }
            MediaType::Other(s)
                if s == "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
                    && mt != s =>
            {
                Ok(s)
            }
            _ => Err(mt.to_string()),
        }
    };
    v["mediaType"] = MediaType::OciManifest.as_str().into();
    v["config"]["mediaType"] = MediaType::OciConfig.as_str().into();
    if let Some(layers) = v["layers"].as_array_mut() {
        for l in layers {
            let mt = l["mediaType"].as_str().unwrap_or("").to_string();
            l["mediaType"] = map_layer(&mt)?.into();
        }
    }
    serde_json::to_vec(&v).map_err(|e| e.to_string())
}

/// Rewrite an OCI image manifest as Docker schema 2 (`push --format v2s2`): media
/// types change, digests and sizes stay. Docker's schema has no annotations, subject
/// or artifact type, so those are dropped; a layer type Docker has no name for
/// (zstd) is refused with its media type as the error.
pub fn oci_to_docker(body: &[u8]) -> Result<Vec<u8>, String> {
    let mut v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let map_layer = |mt: &str| -> Result<&'static str, String> {
        match MediaType::parse(mt) {
            MediaType::OciLayerGzip | MediaType::DockerLayerGzip => {
                Ok(MediaType::DockerLayerGzip.as_str_static())
            }
            MediaType::OciLayerTar => Ok("application/vnd.docker.image.rootfs.diff.tar"),
            MediaType::Other(s) if s == "application/vnd.docker.image.rootfs.diff.tar" => {
                Ok("application/vnd.docker.image.rootfs.diff.tar")
            }
            MediaType::Other(s)
                if s == "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
                    || s == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" =>
            {
                Ok("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip")
            }
            _ => Err(mt.to_string()),
        }
    };
    let Some(obj) = v.as_object_mut() else {
        return Err("not a JSON object".into());
    };
    for k in ["annotations", "subject", "artifactType"] {
        obj.remove(k);
    }
    v["mediaType"] = MediaType::DockerManifest.as_str().into();
    match MediaType::parse(v["config"]["mediaType"].as_str().unwrap_or("")) {
        MediaType::OciConfig | MediaType::DockerConfig => {}
        other => return Err(format!("config {}", other.as_str())),
    }
    v["config"]["mediaType"] = MediaType::DockerConfig.as_str().into();
    if let Some(c) = v["config"].as_object_mut() {
        c.remove("annotations");
    }
    if let Some(layers) = v["layers"].as_array_mut() {
        for l in layers {
            let mt = l["mediaType"].as_str().unwrap_or("").to_string();
            l["mediaType"] = map_layer(&mt)?.into();
            if let Some(o) = l.as_object_mut() {
                o.remove("annotations");
            }
        }
    }
    serde_json::to_vec(&v).map_err(|e| e.to_string())
}

#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, Default)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, Default)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn media_types_round_trip() {
        for m in [MediaType::OciManifest, MediaType::DockerManifestList] {
            assert_eq!(MediaType::parse(m.as_str()), m);
        }
        assert_eq!(
            MediaType::parse("application/vnd.oci.image.index.v1+json; charset=utf-8"),
            MediaType::OciIndex
        );
        assert!(matches!(MediaType::parse("text/html"), MediaType::Other(_)));
    }

    #[test]
    fn platforms() {
        let p = Platform::parse("linux/arm64").unwrap();
        assert_eq!(p.to_string(), "linux/arm64");
        let cand = Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            ..Platform::default()
        };
        assert!(Platform::parse("linux/arm64/v8").unwrap().matches(&cand));
        assert!(!Platform::parse("linux/amd64").unwrap().matches(&cand));
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux/../x").is_err());
    }

    #[test]
    fn parses_manifests_and_refuses_ambiguity() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D}","size":2}},
            "layers":[]}}"#
        );
        let got = parse_manifest(&MediaType::OciManifest, m.as_bytes()).unwrap();
        assert!(matches!(got, AnyManifest::Image(_)));
        let err = parse_manifest(&MediaType::OciIndex, m.as_bytes()).unwrap_err();
        assert!(matches!(err, ManifestError::MediaTypeMismatch { .. }));
        let both = r#"{"schemaVersion":2,"layers":[],"manifests":[]}"#;
        assert!(matches!(
            parse_manifest(&MediaType::OciManifest, both.as_bytes()),
            Err(ManifestError::Ambiguous)
        ));
        let other = MediaType::Other("application/x-unknown".into());
        assert!(matches!(
            parse_manifest(&other, br#"{"schemaVersion":2}"#),
            Err(ManifestError::UnsupportedMediaType { .. })
        ));
        let neg = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{D}","size":-1}},"layers":[]}}"#
        );
        assert!(parse_manifest(&MediaType::OciManifest, neg.as_bytes()).is_err());
    }
}
