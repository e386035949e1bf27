//! Fixture images with known content, written as OCI layouts and pushed with skopeo.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::super::fixture::skopeo_copy;
use super::{digest_of, sha256_hex};

/// A layer blob with its digests.
#[derive(Clone)]
pub struct Layer {
    pub blob: Vec<u8>,
    pub media_type: &'static str,
    pub digest: String,
    pub diff_id: String,
}

/// A gzip tar layer of regular files (path, content). `compress: false` writes
/// stored (level 0) deflate blocks: still gzip, so registries and skopeo keep it
/// byte-for-byte, but fast to make for large noise layers.
pub fn layer(files: &[(&str, &[u8])], compress: bool) -> Layer {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        // Owner fields must hold numbers: `pull` now extracts the layers, and an
        // empty uid field is not a valid tar header.
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, path, *content).unwrap();
    }
    let tar = tar.into_inner().unwrap();
    let diff_id = digest_of(&tar);
    let level = if compress {
        flate2::Compression::fast()
    } else {
        flate2::Compression::none()
    };
    let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
    e.write_all(&tar).unwrap();
    let (blob, media_type) = (
        e.finish().unwrap(),
        "application/vnd.oci.image.layer.v1.tar+gzip",
    );
    Layer {
        digest: digest_of(&blob),
        blob,
        media_type,
        diff_id,
    }
}

/// `n` bytes that do not compress (xorshift), different per `seed`.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// One platform's image: manifest, config and layers.
#[derive(Clone)]
pub struct Image {
    pub arch: String,
    pub layers: Vec<Layer>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

impl Image {
    pub fn new(arch: &str, layers: Vec<Layer>) -> Image {
        let config = json!({
            "created": "2024-01-02T03:04:05Z",
            "architecture": arch,
            "os": "linux",
            "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"], "Labels": {"fixture": arch}},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
            "history": layers.iter().enumerate().map(|(i, _)| json!({"created": "2024-01-02T03:04:05Z", "created_by": format!("fixture layer {i}")})).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(&config), "size": config.len()},
            "layers": layers.iter().map(|l| json!({"mediaType": l.media_type, "digest": l.digest, "size": l.blob.len()})).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes();
        Image {
            arch: arch.to_string(),
            layers,
            config,
            manifest,
        }
    }

    pub fn config_digest(&self) -> String {
        digest_of(&self.config)
    }

    pub fn manifest_digest(&self) -> String {
        digest_of(&self.manifest)
    }

    /// Every blob digest of the image (manifest, config, layers).
    pub fn digests(&self) -> Vec<String> {
        let mut v = vec![self.manifest_digest(), self.config_digest()];
        v.extend(self.layers.iter().map(|l| l.digest.clone()));
        v
    }
}

/// An OCI image layout directory written by the tests (not by imgctl).
pub struct Layout {
    pub dir: PathBuf,
    entries: Vec<serde_json::Value>,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let l = Layout {
            dir: dir.to_path_buf(),
            entries: Vec::new(),
        };
        l.flush();
        l
    }

    fn blob(&self, b: &[u8]) {
        std::fs::write(self.dir.join("blobs/sha256").join(sha256_hex(b)), b).unwrap();
    }

    fn put_image(&self, img: &Image) {
        for l in &img.layers {
            self.blob(&l.blob);
        }
        self.blob(&img.config);
        self.blob(&img.manifest);
    }

    fn flush(&self) {
        let idx = json!({"schemaVersion": 2, "manifests": self.entries});
        std::fs::write(self.dir.join("index.json"), idx.to_string()).unwrap();
    }

    /// Add a single-platform image under `tag`.
    pub fn add_image(&mut self, tag: &str, img: &Image) {
        self.put_image(img);
        self.entries.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": img.manifest_digest(), "size": img.manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag}
        }));
        self.flush();
    }

    /// Add a multi-platform index of `imgs` under `tag`; returns the index digest.
    pub fn add_index(&mut self, tag: &str, imgs: &[Image]) -> String {
        for i in imgs {
            self.put_image(i);
        }
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": imgs.iter().map(|i| json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": i.manifest_digest(), "size": i.manifest.len(),
                "platform": {"architecture": i.arch, "os": "linux"}
            })).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes();
        self.blob(&index);
        self.entries.push(json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest_of(&index), "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag}
        }));
        self.flush();
        digest_of(&index)
    }

    /// Push `tag` to `registry/dest` with skopeo (all platforms of an index).
    pub fn push(&self, tag: &str, registry: &str, dest: &str) {
        skopeo_copy(
            &["--all", "--dest-tls-verify=false"],
            &format!("oci:{}:{tag}", self.dir.display()),
            &format!("docker://{registry}/{dest}"),
        );
    }
}

/// A layout at `dir` holding only `img`, pushed to `registry` as `dest` (repo:tag).
pub fn push_image(dir: &Path, img: &Image, registry: &str, dest: &str) -> Layout {
    let mut layout = Layout::new(dir);
    layout.add_image("v1", img);
    layout.push("v1", registry, dest);
    layout
}

/// A small two-layer image for `arch` with content that names it.
pub fn small_image(arch: &str, seed: u64) -> Image {
    let base = layer(
        &[
            ("etc/os-release", b"ID=fixture\n"),
            ("bin/hello", &noise(4096, seed)),
        ],
        true,
    );
    let top = layer(&[("app/arch", arch.as_bytes())], true);
    Image::new(arch, vec![base, top])
}

/// The architecture this host's imgctl picks by default.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}
