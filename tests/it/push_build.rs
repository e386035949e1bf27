//! `imgctl build` with a registry: `--push`, pushing a built image (only its new
//! layers travel), and the shared build cache (`--cache-to` / `--cache-from`,
//! registry and local) between two stores standing for two CI machines.

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::registry::*;
use crate::common::*;
use crate::registry::ic;
use crate::store::check_schema;

const EPOCH: &str = "1700000000";

fn json_of(s: &[u8]) -> Value {
    serde_json::from_slice(s)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(s)))
}

/// Root, the registry tools and the busybox fixture: a registry holding
/// `library/busybox:latest` (pushed by skopeo) and the sandbox lock.
fn setup() -> Option<(
    Registry,
    tempfile::TempDir,
    std::sync::MutexGuard<'static, ()>,
)> {
    let ready = registry_tools()
        && require(is_root(), "root (overlayfs, namespaces, cgroups)")
        && fixture::require_layout(&fixture::busybox_layout(), "busybox.sh");
    if !ready {
        return None;
    }
    let serial = crate::common::sandbox::serial();
    let reg = Registry::open();
    fixture::push_layout(
        &fixture::busybox_layout(),
        &reg.addr,
        "library/busybox:latest",
    );
    Some((reg, tempdir(), serial))
}

/// `imgctl build` on store `root` under SOURCE_DATE_EPOCH; returns stderr (progress).
fn build(root: &Path, home: &Path, args: &[&str]) -> String {
    let out = output(
        ic(root, home)
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .args(["build", "--progress", "plain"])
            .args(args),
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "build {args:?} failed:\n{err}");
    err
}

/// The manifest digest `name` points at in the store at `root`.
fn stored_digest(root: &Path, name: &str) -> String {
    let idx = json_of(&fs::read(root.join("index.json")).unwrap());
    idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {idx}"))["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `skopeo inspect --raw` of `name`.
fn raw_manifest(name: &str) -> Value {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{name}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_of(&out.stdout)
}

/// The records blob of the cache artifact `name` (read from registry storage).
fn cache_records(reg: &Registry, name: &str) -> Value {
    let m = raw_manifest(name);
    check_schema("buildcache-manifest", &m);
    let digest = m["config"]["digest"].as_str().unwrap();
    let body = fs::read(reg.blob_data(digest)).unwrap();
    let v = json_of(&body);
    check_schema("buildcache-records", &v);
    v
}

/// Steps of a plain progress log: (RUN/COPY steps, how many said CACHED).
fn layer_steps(progress: &str) -> (Vec<String>, usize) {
    let mut steps = Vec::new();
    let mut cached = 0;
    let mut names = std::collections::HashMap::new();
    for l in progress.lines() {
        let Some((n, rest)) = l.split_once(' ') else {
            continue;
        };
        if rest.starts_with('[') && (rest.contains("] RUN ") || rest.contains("] COPY ")) {
            names.insert(n.to_string(), rest.to_string());
            steps.push(rest.to_string());
        } else if rest == "CACHED" && names.contains_key(n) {
            cached += 1;
        }
    }
    (steps, cached)
}

#[test]
fn second_machine_builds_the_bench_buildfile_fully_cached_from_the_registry() {
    let Some((reg, t, _serial)) = setup() else {
        return;
    };
    let ctx = fixture::multistage_context(t.path());
    let base = format!("BASE={}/library/busybox:latest", reg.addr);
    let tag = format!("{}/app/bench:v1", reg.addr);
    let cache = format!("{}/cache/bench:main", reg.addr);
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let ctx_s = ctx.to_str().unwrap();

    let pa = build(
        &a,
        t.path(),
        &[
            "--build-arg",
            &base,
            "-t",
            &tag,
            "--cache-to",
            &format!("type=registry,ref={cache},mode=max"),
            ctx_s,
        ],
    );
    let (steps, cached) = layer_steps(&pa);
    assert_eq!((steps.len(), cached), (8, 0), "A runs everything:\n{pa}");
    let records = cache_records(&reg, &cache);
    assert_eq!(records["records"].as_array().unwrap().len(), 8, "{records}");

    // B: an empty store (another machine); the base comes from the registry.
    let pb = build(
        &b,
        t.path(),
        &[
            "--build-arg",
            &base,
            "-t",
            &tag,
            "--cache-from",
            &format!("type=registry,ref={cache}"),
            ctx_s,
        ],
    );
    let (steps, cached) = layer_steps(&pb);
    assert_eq!(steps.len(), 8, "{pb}");
    assert_eq!(cached, 8, "every RUN and COPY step is CACHED on B:\n{pb}");
    assert!(!pb.contains("cache miss"), "{pb}");
    assert!(pb.contains("importing cache manifest from"), "{pb}");
    assert_eq!(stored_digest(&a, &tag), stored_digest(&b, &tag));
    // B has the layers (downloaded) and can run the image.
    let out = ok(ic(&b, t.path()).args(["run", "--rm", "--network", "none", &tag]));
    assert_eq!(out.lines().last(), Some("2000"), "{out}");

    // mode=min: only the final stage's steps (its four COPYs).
    let min = format!("{}/cache/bench:min", reg.addr);
    build(
        &a,
        t.path(),
        &[
            "--build-arg",
            &base,
            "--cache-to",
            &format!("type=registry,ref={min},mode=min"),
            ctx_s,
        ],
    );
    let records = cache_records(&reg, &min);
    assert_eq!(records["records"].as_array().unwrap().len(), 4, "{records}");
}

#[test]
fn local_cache_directory_round_trips_and_a_missing_cache_is_only_a_warning() {
    let Some((reg, t, _serial)) = setup() else {
        return;
    };
    let ctx = t.path().join("small");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("Buildfile"),
        format!(
            "FROM {}/library/busybox:latest\nRUN echo built > /built.txt\nCOPY hello.txt /hello.txt\n",
            reg.addr
        ),
    )
    .unwrap();
    fs::write(ctx.join("hello.txt"), "hello\n").unwrap();
    let ctx_s = ctx.to_str().unwrap();
    let dir = t.path().join("cachedir");
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let p = build(
        &a,
        t.path(),
        &[
            "-t",
            "local/app:v1",
            "--cache-from",
            &format!("type=local,src={}", dir.display()),
            "--cache-to",
            &format!("type=local,dest={}", dir.display()),
            ctx_s,
        ],
    );
    assert!(p.contains("not found: nothing imported"), "{p}");
    let idx = json_of(&fs::read(dir.join("index.json")).unwrap());
    assert_eq!(
        idx["manifests"][0]["artifactType"],
        "application/vnd.imgctl.buildcache.v1+json"
    );
    let p = build(
        &b,
        t.path(),
        &[
            "-t",
            "local/app:v1",
            "--cache-from",
            &format!("type=local,src={}", dir.display()),
            ctx_s,
        ],
    );
    assert_eq!(layer_steps(&p).1, 2, "{p}");
    assert_eq!(
        stored_digest(&a, "docker.io/local/app:v1"),
        stored_digest(&b, "docker.io/local/app:v1")
    );

    // A tampered layer in the cache directory is refused, not used.
    let c = t.path().join("c");
    let records = json_of(
        &fs::read(
            dir.join("blobs/sha256").join(
                json_of(
                    &fs::read(
                        dir.join("blobs/sha256").join(
                            idx["manifests"][0]["digest"]
                                .as_str()
                                .unwrap()
                                .trim_start_matches("sha256:"),
                        ),
                    )
                    .unwrap(),
                )["config"]["digest"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("sha256:"),
            ),
        )
        .unwrap(),
    );
    let layer = records["records"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|r| r["layer"]["digest"].as_str())
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let lp = dir.join("blobs/sha256").join(&layer);
    let mut bytes = fs::read(&lp).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&lp, bytes).unwrap();
    let out = output(
        ic(&c, t.path())
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .args(["build", "--progress", "plain", "--cache-from"])
            .arg(format!("type=local,src={}", dir.display()))
            .arg(ctx_s),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("digest"), "{err}");
    assert!(!c.join("blobs/sha256").join(&layer).exists());
}

#[test]
fn build_push_sends_only_the_new_layers_and_config() {
    let Some((reg, t, _serial)) = setup() else {
        return;
    };
    let ctx = t.path().join("small");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("Buildfile"),
        format!(
            "FROM {}/library/busybox:latest\nCOPY hello.txt /hello.txt\n",
            reg.addr
        ),
    )
    .unwrap();
    fs::write(ctx.join("hello.txt"), "hello\n").unwrap();
    let root = t.path().join("a");
    // Into the base's own repository: its layer is there already.
    let tag = format!("{}/library/busybox:hello", reg.addr);
    reg.clear_log();
    let p = build(
        &root,
        t.path(),
        &["-t", &tag, "--push", ctx.to_str().unwrap()],
    );
    assert!(p.contains(&format!("pushing {tag}")), "{p}");
    let log = reg.access_log();
    let pushes: Vec<&Access> = log
        .iter()
        .filter(|a| a.method == "PUT" && a.is_upload())
        .collect();
    assert_eq!(pushes.len(), 2, "config + the COPY layer: {log:?}");
    assert!(log
        .iter()
        .any(|a| a.method == "HEAD" && a.is_blob() && a.status == 200));
    assert_eq!(
        raw_manifest(&tag),
        json_of(
            &fs::read(
                root.join("blobs/sha256")
                    .join(stored_digest(&root, &tag).trim_start_matches("sha256:"))
            )
            .unwrap()
        )
    );
    // --push without a name is refused before building.
    let (code, err) = fails(ic(&root, t.path()).args(["build", "--push", ctx.to_str().unwrap()]));
    assert_eq!(code, 125);
    assert!(err.contains("--push needs a name"), "{err}");
}
