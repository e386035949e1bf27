//! Digests a Docker user pins (issue 15 item 3): the digest `pull` prints, and
//! every `RepoDigests` entry of `inspect`, is accepted by `pull`, `run`,
//! `inspect` and `rmi` as `NAME@DIGEST`, for an OCI image, a Docker schema 2
//! image (stored converted to OCI) and a multi-platform index, all pushed
//! offline from the busybox fixture into a real docker-registry by skopeo.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::common::registry::{digest_of, registry_tools, sha256_hex, Registry};
use crate::common::{self, fails, imgctl, is_root, ok, output, require};

fn busybox_layout() -> Option<PathBuf> {
    let layout = PathBuf::from(
        std::env::var("IMGCTL_TESTDATA").unwrap_or_else(|_| "/var/cache/imgctl-testdata".into()),
    )
    .join("busybox-oci");
    let ok = require(is_root(), "root (overlayfs, namespaces)")
        && require(registry_tools(), "docker-registry and skopeo")
        && require(
            layout.join("index.json").is_file(),
            &format!("fixture {} (scripts/fixtures/busybox.sh)", layout.display()),
        );
    ok.then_some(layout)
}

fn skopeo_copy(extra: &[&str], from: String, to: String) {
    let out = output(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .args(extra)
            .arg(from)
            .arg(to),
    );
    assert!(
        out.status.success(),
        "skopeo copy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The digest the registry serves for `reference` (the bytes skopeo reads raw).
fn served_digest(reference: &str) -> String {
    let out = output(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{reference}")),
    );
    assert!(out.status.success(), "skopeo inspect {reference}");
    digest_of(&out.stdout)
}

fn write_blob(dir: &Path, body: &[u8]) -> String {
    std::fs::write(dir.join("blobs/sha256").join(sha256_hex(body)), body).unwrap();
    digest_of(body)
}

/// A copy of the busybox layout whose `multi` tag is an OCI index: busybox for
/// this host and an arm64 twin (same layers, another config).
fn multi_platform_layout(busybox: &Path, dir: &Path) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    for e in std::fs::read_dir(busybox.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join("blobs/sha256").join(e.file_name())).unwrap();
    }
    std::fs::copy(busybox.join("oci-layout"), dir.join("oci-layout")).unwrap();
    let index: Value =
        serde_json::from_slice(&std::fs::read(busybox.join("index.json")).unwrap()).unwrap();
    let amd = index["manifests"][0].clone();
    let blob = |d: &Value| {
        let hex = d
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
            .to_string();
        std::fs::read(busybox.join("blobs/sha256").join(hex)).unwrap()
    };
    let mut manifest: Value = serde_json::from_slice(&blob(&amd["digest"])).unwrap();
    let mut config: Value = serde_json::from_slice(&blob(&manifest["config"]["digest"])).unwrap();
    config["architecture"] = json!("arm64");
    let config = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = json!(write_blob(dir, &config));
    manifest["config"]["size"] = json!(config.len());
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let arm = json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": write_blob(dir, &manifest),
        "size": manifest.len(),
        "platform": {"architecture": "arm64", "os": "linux"},
    });
    let mut host = amd.clone();
    host.as_object_mut().unwrap().remove("annotations");
    let idx = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [arm, host],
    }))
    .unwrap();
    let top = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": write_blob(dir, &idx),
            "size": idx.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
}

fn inspect(store: &Path, name: &str) -> Value {
    let v: Value = serde_json::from_str(&ok(imgctl(store).args(["inspect", name]))).unwrap();
    v[0].clone()
}

/// `pull NAME` prints `Digest: D`; D is what the registry serves, and
/// `pull`/`inspect`/`run` by `NAME@D` and by every RepoDigests entry work; `rmi`
/// by it removes the name.
fn pinned_digest_round_trip(store: &Path, reg: &Registry, repo: &str) {
    let name = format!("{}/{repo}:v1", reg.addr);
    let out = ok(imgctl(store).args(["pull", &name]));
    let digest = out
        .lines()
        .find_map(|l| l.strip_prefix("Digest: "))
        .unwrap_or_else(|| panic!("pull printed no digest: {out}"))
        .trim()
        .to_string();
    assert_eq!(
        digest,
        served_digest(&name),
        "{repo}: the registry's digest"
    );
    let pinned = format!("{}/{repo}@{digest}", reg.addr);
    let id = inspect(store, &name)["Id"].clone();
    let v = inspect(store, &pinned);
    assert_eq!(v["Id"], id, "{repo}: inspect by digest");
    let repo_digests = v["RepoDigests"].as_array().unwrap().clone();
    assert!(
        repo_digests.iter().any(|d| d == &json!(pinned)),
        "{repo}: {pinned} not in {repo_digests:?}"
    );
    for d in &repo_digests {
        let d = d.as_str().unwrap();
        assert_eq!(inspect(store, d)["Id"], id, "inspect {d}");
        ok(imgctl(store).args([
            "run",
            "--rm",
            "--pull",
            "never",
            "--network",
            "none",
            d,
            "true",
        ]));
    }
    // Pull by the digest it printed: the same digest again.
    let again = ok(imgctl(store).args(["pull", &pinned]));
    assert!(again.contains(&format!("Digest: {digest}")), "{again}");
    // Listed once, under its tag (Docker's way), with that digest.
    let rows: Value =
        serde_json::from_str(&ok(imgctl(store).args(["images", "--format", "json"]))).unwrap();
    let rows: Vec<&Value> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["Repository"] == json!(format!("{}/{repo}", reg.addr)))
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (&rows[0]["Tag"], &rows[0]["RepoDigest"]),
        (&json!("v1"), &json!(digest))
    );
    // rmi by digest removes the names of that repository on the image.
    ok(imgctl(store).args(["rmi", &pinned]));
    for gone in [&pinned, &name] {
        let (code, err) = fails(imgctl(store).args(["inspect", gone]));
        assert_eq!(code, 125, "{err}");
        assert!(err.contains("no such image"), "{gone}: {err}");
    }
}

#[test]
fn the_digest_pull_prints_is_what_pull_run_inspect_and_rmi_take() {
    let Some(busybox) = busybox_layout() else {
        return;
    };
    let _serial = common::sandbox::serial();
    let reg = Registry::open();
    let t = common::tempdir();
    let src = format!("oci:{}:latest", busybox.display());
    skopeo_copy(
        &[],
        src.clone(),
        format!("docker://{}/fixture/oci:v1", reg.addr),
    );
    skopeo_copy(
        &["--format", "v2s2"],
        src,
        format!("docker://{}/fixture/docker:v1", reg.addr),
    );
    let multi = t.path().join("multi");
    multi_platform_layout(&busybox, &multi);
    skopeo_copy(
        &["--all"],
        format!("oci:{}:multi", multi.display()),
        format!("docker://{}/fixture/multi:v1", reg.addr),
    );
    skopeo_copy(
        &["--all", "--format", "v2s2"],
        format!("oci:{}:multi", multi.display()),
        format!("docker://{}/fixture/multilist:v1", reg.addr),
    );
    let store = t.path().join("store");
    for repo in [
        "fixture/oci",
        "fixture/docker",
        "fixture/multi",
        "fixture/multilist",
    ] {
        pinned_digest_round_trip(&store, &reg, repo);
    }

    // An index pinned by digest on an empty store: `run` pulls it, and the same
    // pinned name resolves afterwards.
    let index = served_digest(&format!("{}/fixture/multilist:v1", reg.addr));
    let pinned = format!("{}/fixture/multilist@{index}", reg.addr);
    let fresh = t.path().join("fresh");
    ok(imgctl(&fresh).args(["run", "--rm", "--network", "none", &pinned, "true"]));
    let v = inspect(&fresh, &pinned);
    assert_eq!(v["RepoDigests"], json!([pinned]));
    // The Docker platform manifest it was stored from (converted) names it too.
    let raw = output(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{pinned}")),
    );
    let list: Value = serde_json::from_slice(&raw.stdout).unwrap();
    let child = list["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] != "arm64")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        list["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    let by_child = format!("{}/fixture/multilist@{child}", reg.addr);
    assert_eq!(inspect(&fresh, &by_child)["Id"], v["Id"]);
    // A digest is looked up in its own repository only.
    let elsewhere = format!("{}/fixture/oci@{index}", reg.addr);
    let (code, err) = fails(imgctl(&fresh).args(["inspect", &elsewhere]));
    assert_eq!((code, err.contains("no such image")), (125, true), "{err}");
}
