//! Integration tests: `imgctl pull` and `login`/`logout` against a real
//! `docker-registry` (open, basic auth, token auth), with images pushed by skopeo.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::registry::*;
use crate::common::*;

/// imgctl on `root` with a private HOME-like dir so the host's Docker config and
/// registries.toml are never read.
pub fn ic(root: &Path, home: &Path) -> Command {
    let mut c = imgctl(root);
    c.env("DOCKER_CONFIG", home.join(".docker"));
    c.env("XDG_CONFIG_HOME", home.join(".config"));
    c.env("HOME", home);
    c
}

fn json_of(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn index_names(root: &Path) -> Vec<String> {
    let v = json_of(&std::fs::read_to_string(root.join("index.json")).unwrap());
    v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

fn blob_files(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join("blobs/sha256"))
        .map(|rd| {
            rd.flatten()
                .map(|e| format!("sha256:{}", e.file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn ingest_files(root: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(root.join("ingest"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn skopeo_digest(root: &Path, name: &str) -> String {
    let out = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:{name}", root.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_of(&String::from_utf8_lossy(&out.stdout))["Digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The one stderr line of a failed imgctl run, checked to be a single line.
fn one_line_error(cmd: &mut Command) -> String {
    let (code, err) = fails(cmd);
    assert_ne!(code, 0);
    let err = err.trim_end().to_string();
    assert_eq!(err.lines().count(), 1, "expected one line, got:\n{err}");
    assert!(err.starts_with("imgctl: "), "{err}");
    err
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

#[test]
fn anonymous_pull_stores_a_verified_oci_layout_that_skopeo_reads() {
    if !registry_tools() {
        return;
    }
    let reg = Registry::open();
    let t = tempdir();
    let img = small_image(host_arch(), 1);
    let mut layout = Layout::new(&t.path().join("src"));
    layout.add_image("v1", &img);
    layout.push("v1", &reg.addr, "fixture/app:v1");
    let root = t.path().join("root");
    let name = format!("{}/fixture/app:v1", reg.addr);
    let out = ok(ic(&root, t.path()).args(["pull", "--no-unpack", &name]));
    assert_eq!(out.lines().last(), Some(name.as_str()), "{out}");
    let quiet = ok(ic(&root, t.path()).args(["pull", "-q", &name]));
    assert_eq!(quiet, format!("{name}\n"));
    assert_eq!(index_names(&root), vec![name.clone()]);
    assert_eq!(blob_files(&root), sorted(img.digests()));
    assert!(ingest_files(&root).is_empty());
    assert_eq!(skopeo_digest(&root, &name), img.manifest_digest());

    let v = json_of(&ok(ic(&root, t.path()).args(["inspect", &name])));
    let i = &v[0];
    assert_eq!(i["Id"], img.config_digest());
    let diff_ids: Vec<String> = img.layers.iter().map(|l| l.diff_id.clone()).collect();
    assert_eq!(i["RootFS"]["Layers"], serde_json::json!(diff_ids));
    assert_eq!(i["RepoTags"], serde_json::json!([name]));
    assert_eq!(
        i["RepoDigests"],
        serde_json::json!([format!(
            "{}/fixture/app@{}",
            reg.addr,
            img.manifest_digest()
        )])
    );
    assert_eq!(i["Architecture"], host_arch());
    assert_eq!(i["Config"]["Labels"]["fixture"], host_arch());

    // Second pull: everything present, nothing fetched.
    let out = ok(ic(&root, t.path()).args(["pull", &name]));
    assert_eq!(out.matches("already exists").count(), 3, "{out}");
    assert!(out.contains("(0B fetched from"), "{out}");
}

fn nginx_fixture() -> Option<PathBuf> {
    let base =
        std::env::var("IMGCTL_TESTDATA").unwrap_or_else(|_| "/var/cache/imgctl-testdata".into());
    let p = PathBuf::from(base).join("nginx-oci");
    require(
        p.join("index.json").is_file(),
        "nginx fixture (scripts/fixtures/nginx.sh)",
    )
    .then_some(p)
}

#[test]
fn nginx_fixture_pulls_directly_and_through_imgctl_registry_mirror() {
    if !registry_tools() {
        return;
    }
    let Some(nginx) = nginx_fixture() else { return };
    let reg = Registry::open();
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", nginx.display()))
        .arg(format!("docker://{}/library/nginx:latest", reg.addr))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = tempdir();
    let root = t.path().join("root");
    let direct = format!("{}/library/nginx:latest", reg.addr);
    ok(ic(&root, t.path()).args(["pull", &direct]));
    let d1 = skopeo_digest(&root, &direct);

    let mirrored = t.path().join("root2");
    ok(ic(&mirrored, t.path())
        .env("IMGCTL_REGISTRY_MIRROR", &reg.addr)
        .args(["pull", "nginx"]));
    assert_eq!(
        index_names(&mirrored),
        vec!["docker.io/library/nginx:latest".to_string()]
    );
    assert_eq!(
        skopeo_digest(&mirrored, "docker.io/library/nginx:latest"),
        d1
    );
    let images = json_of(&ok(
        ic(&mirrored, t.path()).args(["images", "--format", "json"])
    ));
    assert_eq!(images[0]["Repository"], "nginx");
    assert_eq!(images[0]["Tag"], "latest");
    let v = json_of(&ok(ic(&mirrored, t.path()).args(["inspect", "nginx"])));
    assert_eq!(v[0]["RootFS"]["Layers"].as_array().unwrap().len(), 2);
}

#[test]
fn basic_auth_login_pull_logout_and_wrong_password() {
    if !registry_tools() {
        return;
    }
    let open = Registry::open();
    let t = tempdir();
    let img = small_image(host_arch(), 2);
    let mut layout = Layout::new(&t.path().join("src"));
    layout.add_image("v1", &img);
    layout.push("v1", &open.addr, "private/app:v1");
    let reg = Registry::start(
        Auth::Basic {
            user: "alice",
            pass: "s3cret",
        },
        Some(&open.storage),
    );
    let root = t.path().join("root");
    let name = format!("{}/private/app:v1", reg.addr);

    let e = one_line_error(ic(&root, t.path()).args(["pull", &name]));
    assert!(
        e.contains("authentication required") && e.contains("imgctl login"),
        "{e}"
    );

    let e = one_line_error(
        ic(&root, t.path()).args(["login", "-u", "alice", "-p", "wrong", &reg.addr]),
    );
    assert!(e.contains("wrong username or password"), "{e}");
    assert!(!t.path().join(".docker/config.json").exists());

    ok(ic(&root, t.path())
        .args(["login", "-u", "alice", "--password-stdin", &reg.addr])
        .stdin_str("s3cret\n"));
    let cfg = json_of(&std::fs::read_to_string(t.path().join(".docker/config.json")).unwrap());
    assert!(cfg["auths"][&reg.addr]["auth"].is_string(), "{cfg}");
    ok(ic(&root, t.path()).args(["pull", &name]));
    assert_eq!(skopeo_digest(&root, &name), img.manifest_digest());

    ok(ic(&root, t.path()).args(["logout", &reg.addr]));
    let cfg = json_of(&std::fs::read_to_string(t.path().join(".docker/config.json")).unwrap());
    assert!(cfg["auths"].get(&reg.addr).is_none(), "{cfg}");

    // Credentials in the file that the registry rejects: one-line error.
    std::fs::write(
        t.path().join(".docker/config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"YWxpY2U6bm9wZQ=="}}}}}}"#,
            reg.addr
        ),
    )
    .unwrap();
    let e = one_line_error(ic(&t.path().join("root3"), t.path()).args(["pull", &name]));
    assert!(e.contains("wrong username or password"), "{e}");
}

trait StdinStr {
    fn stdin_str(&mut self, s: &str) -> &mut Self;
}

impl StdinStr for Command {
    /// Feed `s` on stdin through a temp file.
    fn stdin_str(&mut self, s: &str) -> &mut Self {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), s).unwrap();
        self.stdin(std::fs::File::open(f.path()).unwrap());
        self
    }
}

#[test]
fn token_auth_anonymous_and_with_credentials_one_token_per_scope() {
    if !registry_tools() {
        return;
    }
    let open = Registry::open();
    let t = tempdir();
    let img = small_image(host_arch(), 3);
    let mut layout = Layout::new(&t.path().join("src"));
    layout.add_image("v1", &img);
    layout.push("v1", &open.addr, "public/app:v1");
    layout.push("v1", &open.addr, "private/app:v1");
    let issuer = TokenIssuer::start("bob", "pw");
    let reg = Registry::start(Auth::Token(&issuer), Some(&open.storage));

    // Anonymous token for a public repository.
    let root = t.path().join("root");
    let public = format!("{}/public/app:v1", reg.addr);
    ok(ic(&root, t.path()).args(["pull", &public]));
    assert_eq!(skopeo_digest(&root, &public), img.manifest_digest());
    let scopes = issuer.scopes();
    assert_eq!(
        scopes
            .iter()
            .filter(|s| *s == "repository:public/app:pull")
            .count(),
        1,
        "one token for manifest and all blobs: {scopes:?}"
    );

    // Private needs credentials.
    let private = format!("{}/private/app:v1", reg.addr);
    let e = one_line_error(ic(&t.path().join("r2"), t.path()).args(["pull", &private]));
    assert!(
        e.contains("authentication required") || e.contains("unauthorized"),
        "{e}"
    );
    ok(ic(&root, t.path()).args(["login", "-u", "bob", "-p", "pw", &reg.addr]));
    ok(ic(&root, t.path()).args(["pull", &private]));
    assert_eq!(skopeo_digest(&root, &private), img.manifest_digest());
    let e =
        one_line_error(ic(&root, t.path()).args(["login", "-u", "bob", "-p", "bad", &reg.addr]));
    assert!(e.contains("wrong username or password"), "{e}");
}

#[test]
fn platform_is_chosen_from_a_multi_platform_index() {
    if !registry_tools() {
        return;
    }
    let reg = Registry::open();
    let t = tempdir();
    let amd = small_image("amd64", 10);
    let arm = small_image("arm64", 11);
    let mut layout = Layout::new(&t.path().join("src"));
    let index_digest = layout.add_index("multi", &[amd.clone(), arm.clone()]);
    layout.push("multi", &reg.addr, "fixture/multi:1");
    let name = format!("{}/fixture/multi:1", reg.addr);

    let root = t.path().join("root");
    ok(ic(&root, t.path()).args(["pull", "--platform", "linux/arm64", &name]));
    let v = json_of(&ok(ic(&root, t.path()).args(["inspect", &name])));
    assert_eq!(v[0]["Architecture"], "arm64");
    assert_eq!(v[0]["Id"], arm.config_digest());
    assert_eq!(
        v[0]["RepoDigests"][0],
        format!("{}/fixture/multi@{index_digest}", reg.addr)
    );
    for d in arm.digests() {
        assert!(blob_files(&root).contains(&d), "{d} missing");
    }
    for l in &amd.layers[1..] {
        assert!(
            !blob_files(&root).contains(&l.digest),
            "amd64 layer fetched"
        );
    }
    assert_eq!(skopeo_digest(&root, &name), arm.manifest_digest());

    let host = t.path().join("host");
    ok(ic(&host, t.path()).args(["pull", &name]));
    let v = json_of(&ok(ic(&host, t.path()).args(["inspect", &name])));
    assert_eq!(v[0]["Architecture"], host_arch());

    let e = one_line_error(ic(&host, t.path()).args(["pull", "--platform", "linux/s390x", &name]));
    assert!(
        e.contains("no image for platform linux/s390x") && e.contains("linux/arm64"),
        "{e}"
    );
    let e = one_line_error(ic(&host, t.path()).args(["pull", "--platform", "linux", &name]));
    assert!(e.contains("invalid platform"), "{e}");

    // A single-platform image: accepted by default, refused for an explicit other
    // platform.
    let mut single = Layout::new(&t.path().join("single"));
    single.add_image("arm", &arm);
    single.push("arm", &reg.addr, "fixture/armonly:1");
    let armonly = format!("{}/fixture/armonly:1", reg.addr);
    let e =
        one_line_error(ic(&host, t.path()).args(["pull", "--platform", "linux/amd64", &armonly]));
    assert!(
        e.contains("no image for platform linux/amd64") && e.contains("linux/arm64"),
        "{e}"
    );
    ok(ic(&host, t.path()).args(["pull", "--platform", "linux/arm64", &armonly]));
    ok(ic(&t.path().join("any"), t.path()).args(["pull", &armonly]));
}

/// An image with one large uncompressed layer.
fn big_image(mib: usize, seed: u64) -> Image {
    let data = noise(mib << 20, seed);
    Image::new(host_arch(), vec![layer(&[("big.bin", &data)], false)])
}

#[test]
fn killed_download_resumes_with_range_and_fetches_only_the_rest() {
    if !registry_tools() {
        return;
    }
    let reg = Registry::open();
    let t = tempdir();
    let img = big_image(24, 42);
    let big = img.layers[0].clone();
    let size = big.blob.len() as u64;
    let mut layout = Layout::new(&t.path().join("src"));
    layout.add_image("v1", &img);
    layout.push("v1", &reg.addr, "fixture/big:v1");
    let proxy = Proxy::start(&reg.addr);
    proxy.set(Faults {
        throttle: Some(Duration::from_millis(15)),
        ..Faults::default()
    });
    let root = t.path().join("root");
    let name = format!("{}/fixture/big:v1", proxy.addr);
    let mut child = ic(&root, t.path())
        .args(["pull", &name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let partial = root
        .join("ingest")
        .join(big.digest.trim_start_matches("sha256:"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) < 3 << 20 {
        assert!(Instant::now() < deadline, "download did not progress");
        assert!(child.try_wait().unwrap().is_none(), "pull ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGKILL: no chance to clean up.
    child.kill().unwrap();
    child.wait().unwrap();
    let offset = std::fs::metadata(&partial).unwrap().len();
    assert!(offset > 0 && offset < size, "offset {offset} of {size}");
    assert!(!blob_files(&root).contains(&big.digest));
    assert!(index_names(&root).is_empty());

    proxy.set(Faults::default());
    // The killed pull's proxy thread may still be in its throttle sleep and pass one
    // more chunk into the dead socket (a write that succeeds before the reset comes
    // back); let it finish before counting.
    std::thread::sleep(Duration::from_millis(300));
    proxy.reset_counters();
    ok(ic(&root, t.path()).args(["pull", &name]));
    let range = format!("bytes={offset}-");
    let blob_reqs: Vec<Head> = proxy
        .requests()
        .into_iter()
        .filter(|h| h.path.ends_with(&big.digest))
        .collect();
    assert_eq!(blob_reqs.len(), 1, "{blob_reqs:?}");
    assert_eq!(blob_reqs[0].header("range"), Some(range.as_str()));
    let served = proxy.blob_bytes();
    let rest = size - offset;
    assert!(
        served >= rest && served <= rest + img.config.len() as u64,
        "served {served}, expected the remaining {rest} (+ config)"
    );
    assert_eq!(blob_files(&root), sorted(img.digests()));
    assert!(ingest_files(&root).is_empty());
    assert_eq!(skopeo_digest(&root, &name), img.manifest_digest());
}

#[test]
fn connection_cut_mid_blob_is_resumed_in_the_same_pull() {
    if !registry_tools() {
        return;
    }
    let reg = Registry::open();
    let t = tempdir();
    let img = big_image(4, 7);
    let mut layout = Layout::new(&t.path().join("src"));
    layout.add_image("v1", &img);
    layout.push("v1", &reg.addr, "fixture/cut:v1");
    let proxy = Proxy::start(&reg.addr);
    // The proxy cuts the first blob body longer than 1 MiB (the big layer).
    let root = t.path().join("root");
    let name = format!("{}/fixture/cut:v1", proxy.addr);
    proxy.set(Faults {
        cut_blob_after: Some(1 << 20),
        ..Faults::default()
    });
    ok(ic(&root, t.path()).args(["pull", "--max-concurrent-downloads", "1", &name]));
    let big = &img.layers[0].digest;
    let ranged: Vec<Head> = proxy
        .requests()
        .into_iter()
        .filter(|h| h.path.ends_with(big.as_str()) && h.header("range").is_some())
        .collect();
    assert_eq!(
        ranged.len(),
        1,
        "no resumed request: {:?}",
        proxy.requests()
    );
    assert_eq!(ranged[0].header("range"), Some("bytes=1048576-"));
    assert_eq!(blob_files(&root), sorted(img.digests()));
}

#[test]
fn tampered_blob_in_registry_storage_is_refused_and_store_unchanged() {
    if !registry_tools() {
        return;
    }
    let reg = Registry::open();
    let t = tempdir();
    let good = small_image(host_arch(), 20);
    let img = small_image(host_arch(), 21);
    let mut layout = Layout::new(&t.path().join("src"));
    layout.add_image("good", &good);
    layout.add_image("bad", &img);
    layout.push("good", &reg.addr, "fixture/good:v1");
    layout.push("bad", &reg.addr, "fixture/bad:v1");
    let root = t.path().join("root");
    ok(ic(&root, t.path()).args(["pull", &format!("{}/fixture/good:v1", reg.addr)]));

    // Flip one byte of the (image-specific) base layer in the registry's own storage.
    let victim = &img.layers[0].digest;
    let data_path = reg.blob_data(victim);
    let original = std::fs::read(&data_path).unwrap();
    let mut bad = original.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&data_path, &bad).unwrap();

    let before_index = std::fs::read(root.join("index.json")).unwrap();
    let before_blobs = blob_files(&root);
    let name = format!("{}/fixture/bad:v1", reg.addr);
    let e = one_line_error(ic(&root, t.path()).args(["pull", &name]));
    assert!(
        e.contains("does not match its digest") && e.contains(victim.as_str()),
        "{e}"
    );
    assert_eq!(
        std::fs::read(root.join("index.json")).unwrap(),
        before_index
    );
    let after: Vec<String> = blob_files(&root);
    assert!(!after.contains(victim), "tampered blob visible");
    assert!(!after.contains(&img.manifest_digest()));
    // Only verified blobs of the bad image may have been added (unreferenced, prunable).
    for d in after.iter().filter(|d| !before_blobs.contains(d)) {
        assert!(img.digests().contains(d), "unexpected blob {d}");
    }
    // The bad bytes are not kept for reuse (siblings aborted mid-way may keep their
    // verified-later, resumable prefixes).
    let victim_partial = root
        .join("ingest")
        .join(victim.trim_start_matches("sha256:"));
    assert!(!victim_partial.exists(), "bad bytes kept for reuse");
    ok(ic(&root, t.path()).arg("prune"));
    assert_eq!(blob_files(&root), before_blobs);
    assert!(ingest_files(&root).is_empty());

    // Repaired registry: the next pull downloads afresh and succeeds.
    std::fs::write(&data_path, &original).unwrap();
    ok(ic(&root, t.path()).args(["pull", &name]));
    assert_eq!(skopeo_digest(&root, &name), img.manifest_digest());
}

#[test]
fn concurrent_pulls_all_succeed_with_one_copy_stored() {
    if !registry_tools() {
        return;
    }
    let reg = Registry::open();
    let t = tempdir();
    let img = Image::new(
        host_arch(),
        vec![
            layer(&[("a", &noise(3 << 20, 5))], false),
            layer(&[("b", &noise(2 << 20, 6))], true),
        ],
    );
    let mut layout = Layout::new(&t.path().join("src"));
    layout.add_image("v1", &img);
    layout.push("v1", &reg.addr, "fixture/conc:v1");
    let proxy = Proxy::start(&reg.addr);
    proxy.set(Faults {
        throttle: Some(Duration::from_millis(5)),
        ..Faults::default()
    });
    let root = t.path().join("root");
    let name = format!("{}/fixture/conc:v1", proxy.addr);
    let spawn = || {
        ic(&root, t.path())
            .args(["pull", &name])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Two pulls, as the issue asks, plus two more for good measure.
    let children: Vec<_> = (0..4).map(|_| spawn()).collect();
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let mut all = String::new();
    for o in &outs {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        all.push_str(&String::from_utf8_lossy(&o.stdout));
    }
    // They really overlapped: some found blobs held or finished by another.
    assert!(
        all.contains("waiting for another imgctl process") || all.contains("already exists"),
        "{all}"
    );
    assert_eq!(blob_files(&root), sorted(img.digests()));
    assert_eq!(index_names(&root), vec![name.clone()]);
    assert!(ingest_files(&root).is_empty());
    // Each layer body crossed the wire once in total.
    let total: u64 =
        img.layers.iter().map(|l| l.blob.len() as u64).sum::<u64>() + img.config.len() as u64;
    assert!(
        proxy.blob_bytes() <= total,
        "served {} > {total}",
        proxy.blob_bytes()
    );
    assert_eq!(skopeo_digest(&root, &name), img.manifest_digest());
}

#[test]
fn redirect_to_another_origin_does_not_carry_authorization() {
    if !registry_tools() {
        return;
    }
    let open = Registry::open();
    let t = tempdir();
    let img = small_image(host_arch(), 30);
    let mut layout = Layout::new(&t.path().join("src"));
    layout.add_image("v1", &img);
    layout.push("v1", &open.addr, "private/redir:v1");
    let reg = Registry::start(
        Auth::Basic {
            user: "u",
            pass: "p",
        },
        Some(&open.storage),
    );
    // Blob storage elsewhere: a second origin in front of an open registry.
    let storage_side = Proxy::start(&open.addr);
    let front = Proxy::start(&reg.addr);
    front.set(Faults {
        redirect_blobs_to: Some(format!("http://{}", storage_side.addr)),
        ..Faults::default()
    });
    ok(ic(&t.path().join("r"), t.path()).args(["login", "-u", "u", "-p", "p", &front.addr]));
    let root = t.path().join("root");
    let name = format!("{}/private/redir:v1", front.addr);
    ok(ic(&root, t.path()).args(["pull", &name]));
    let leaked: Vec<Head> = storage_side
        .requests()
        .into_iter()
        .filter(|h| h.header("authorization").is_some())
        .collect();
    assert!(
        leaked.is_empty(),
        "Authorization sent to another origin: {leaked:?}"
    );
    assert!(storage_side
        .requests()
        .iter()
        .any(|h| h.path.contains("/blobs/")));
    assert!(front
        .requests()
        .iter()
        .any(|h| h.path.contains("/manifests/") && h.header("authorization").is_some()));
    assert_eq!(skopeo_digest(&root, &name), img.manifest_digest());
}

#[test]
fn bad_input_gets_one_line_errors_and_nonzero_exit() {
    if !registry_tools() {
        return;
    }
    let reg = Registry::open();
    let t = tempdir();
    let img = small_image(host_arch(), 40);
    let mut layout = Layout::new(&t.path().join("src"));
    layout.add_image("v1", &img);
    layout.push("v1", &reg.addr, "fixture/app:v1");
    let root = t.path().join("root");

    let e = one_line_error(ic(&root, t.path()).args(["pull", "Not/A:Valid:Ref"]));
    assert!(e.contains("invalid reference"), "{e}");
    let e = one_line_error(
        ic(&root, t.path()).args(["pull", &format!("{}/fixture/app:nope", reg.addr)]),
    );
    assert!(e.contains("manifest nope not found"), "{e}");
    let e = one_line_error(ic(&root, t.path()).args(["pull", &format!("{}/no/such:v1", reg.addr)]));
    assert!(e.contains("repository no/such not found"), "{e}");
    let e = one_line_error(ic(&root, t.path()).args(["pull", "127.0.0.1:1/x/y:z"]));
    assert!(e.contains("cannot reach registry 127.0.0.1:1"), "{e}");

    let proxy = Proxy::start(&reg.addr);
    proxy.set(Faults {
        manifest_media_type: Some("application/vnd.example.unknown+json".into()),
        ..Faults::default()
    });
    let e = one_line_error(
        ic(&root, t.path()).args(["pull", &format!("{}/fixture/app:v1", proxy.addr)]),
    );
    assert!(
        e.contains("unsupported manifest media type") && e.contains("vnd.example.unknown"),
        "{e}"
    );

    let e = one_line_error(ic(&root, t.path()).args(["inspect", "nothere"]));
    assert!(e.contains("no such image"), "{e}");
    // Nothing was stored by any of these.
    assert!(index_names(&root).is_empty());
    assert!(blob_files(&root).is_empty());
}

/// A registry with `fixture/app:v1` pushed, and a proxy in front of it.
fn app_behind_proxy(seed: u64) -> (Registry, Proxy, Image, tempfile::TempDir) {
    let reg = Registry::open();
    let t = tempdir();
    let img = small_image(host_arch(), seed);
    let mut layout = Layout::new(&t.path().join("src"));
    layout.add_image("v1", &img);
    layout.push("v1", &reg.addr, "fixture/app:v1");
    let proxy = Proxy::start(&reg.addr);
    (reg, proxy, img, t)
}

#[test]
fn altered_manifest_is_refused_by_tag_and_by_digest_and_digest_refs_resolve_by_digest() {
    if !registry_tools() {
        return;
    }
    let (reg, proxy, img, t) = app_behind_proxy(50);
    let root = t.path().join("root");
    proxy.set(Faults {
        alter_manifest: true,
        ..Faults::default()
    });
    let by_tag = format!("{}/fixture/app:v1", proxy.addr);
    let e = one_line_error(ic(&root, t.path()).args(["pull", &by_tag]));
    assert!(e.contains("manifest digest mismatch"), "{e}");
    let by_digest = format!("{}/fixture/app@{}", proxy.addr, img.manifest_digest());
    let e = one_line_error(ic(&root, t.path()).args(["pull", &by_digest]));
    assert!(
        e.contains("manifest digest mismatch") && e.contains(&img.manifest_digest()),
        "{e}"
    );
    assert!(blob_files(&root).is_empty());

    // Unaltered: a digest reference is stored under that digest; tag+digest resolves
    // by the digest alone.
    let by_digest = format!("{}/fixture/app@{}", reg.addr, img.manifest_digest());
    ok(ic(&root, t.path()).args(["pull", &by_digest]));
    assert_eq!(index_names(&root), vec![by_digest.clone()]);
    let both = format!(
        "{}/fixture/app:no-such-tag@{}",
        reg.addr,
        img.manifest_digest()
    );
    ok(ic(&root, t.path()).args(["pull", &both]));
    assert_eq!(skopeo_digest(&root, &by_digest), img.manifest_digest());
    let other = small_image(host_arch(), 51);
    let e = one_line_error(ic(&root, t.path()).args([
        "pull",
        &format!("{}/fixture/app@{}", reg.addr, other.manifest_digest()),
    ]));
    assert!(e.contains("not found"), "{e}");
}

#[test]
fn oversized_manifest_and_overlong_blob_are_refused_and_leave_nothing() {
    if !registry_tools() {
        return;
    }
    let (_reg, proxy, img, t) = app_behind_proxy(52);
    let root = t.path().join("root");
    let name = format!("{}/fixture/app:v1", proxy.addr);
    proxy.set(Faults {
        pad_manifest_to: Some(4 * 1024 * 1024 + 1),
        ..Faults::default()
    });
    let e = one_line_error(ic(&root, t.path()).args(["pull", &name]));
    assert!(e.contains("larger than the 4194304-byte limit"), "{e}");

    proxy.set(Faults {
        extra_blob_bytes: 10,
        ..Faults::default()
    });
    // One download at a time: with more, the aborted siblings keep resumable
    // partial files (by design), which this test is not about.
    let e = one_line_error(ic(&root, t.path()).args([
        "pull",
        "--max-concurrent-downloads",
        "1",
        &name,
    ]));
    assert!(
        e.contains("more than the") && e.contains("bytes the manifest declares"),
        "{e}"
    );

    assert!(index_names(&root).is_empty());
    for l in &img.layers {
        assert!(!blob_files(&root).contains(&l.digest));
    }
    assert!(ingest_files(&root).is_empty(), "{:?}", ingest_files(&root));
}

#[test]
fn server_ignoring_range_restarts_the_blob_from_zero() {
    if !registry_tools() {
        return;
    }
    let reg = Registry::open();
    let t = tempdir();
    let img = big_image(3, 8);
    let size = img.layers[0].blob.len() as u64;
    let mut layout = Layout::new(&t.path().join("src"));
    layout.add_image("v1", &img);
    layout.push("v1", &reg.addr, "fixture/norange:v1");
    let proxy = Proxy::start(&reg.addr);
    proxy.set(Faults {
        cut_blob_after: Some(1 << 20),
        strip_range: true,
        ..Faults::default()
    });
    let root = t.path().join("root");
    let name = format!("{}/fixture/norange:v1", proxy.addr);
    ok(ic(&root, t.path()).args(["pull", &name]));
    let served = proxy.blob_bytes();
    assert!(
        served >= size + (1 << 20),
        "served {served}: the restart must refetch all {size}"
    );
    assert_eq!(blob_files(&root), sorted(img.digests()));
}

#[test]
fn transient_server_errors_are_retried() {
    if !registry_tools() {
        return;
    }
    let (_reg, proxy, img, t) = app_behind_proxy(53);
    proxy.set(Faults {
        fail_blob_requests: 3,
        ..Faults::default()
    });
    let root = t.path().join("root");
    let name = format!("{}/fixture/app:v1", proxy.addr);
    ok(ic(&root, t.path()).args(["pull", "--max-concurrent-downloads", "1", &name]));
    assert_eq!(blob_files(&root), sorted(img.digests()));
    let blob_gets = proxy
        .requests()
        .iter()
        .filter(|h| h.path.contains("/blobs/"))
        .count();
    assert_eq!(blob_gets, 3 + 3, "3 blobs + 3 failed attempts");
}

#[test]
fn docker_schema2_manifest_pulls_and_keeps_its_media_type() {
    if !registry_tools() {
        return;
    }
    let reg = Registry::open();
    let t = tempdir();
    let img = small_image(host_arch(), 54);
    let mut layout = Layout::new(&t.path().join("src"));
    layout.add_image("v1", &img);
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--format",
            "v2s2",
            "--dest-tls-verify=false",
        ])
        .arg(format!("oci:{}:v1", layout.dir.display()))
        .arg(format!("docker://{}/fixture/docker:v1", reg.addr))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = t.path().join("root");
    let name = format!("{}/fixture/docker:v1", reg.addr);
    ok(ic(&root, t.path()).args(["pull", &name]));
    // Stored converted to OCI (so OCI tools read the layout); the registry's digest
    // of the original Docker manifest is kept and shown as the repo digest.
    let served = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{name}"))
        .output()
        .unwrap();
    let original = digest_of(&served.stdout);
    let idx = json_of(&std::fs::read_to_string(root.join("index.json")).unwrap());
    let entry = &idx["manifests"][0];
    assert_eq!(
        entry["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(entry["annotations"]["io.imgctl.source-digest"], original);
    assert!(blob_files(&root).contains(&original));
    let v = json_of(&ok(ic(&root, t.path()).args(["inspect", &name])));
    let diff_ids: Vec<String> = img.layers.iter().map(|l| l.diff_id.clone()).collect();
    assert_eq!(v[0]["RootFS"]["Layers"], serde_json::json!(diff_ids));
    assert_eq!(
        v[0]["RepoDigests"][0],
        format!("{}/fixture/docker@{original}", reg.addr)
    );
    let stored = skopeo_digest(&root, &name);
    assert_eq!(stored, entry["digest"].as_str().unwrap());
    // The original survives prune.
    ok(ic(&root, t.path()).arg("prune"));
    assert!(blob_files(&root).contains(&original));
}

#[test]
fn prune_during_a_pull_waits_and_collects_nothing_the_pull_needs() {
    if !registry_tools() {
        return;
    }
    let reg = Registry::open();
    let t = tempdir();
    let img = Image::new(
        host_arch(),
        vec![
            layer(&[("x", &noise(64 << 10, 60))], true),
            layer(&[("y", &noise(4 << 20, 61))], false),
        ],
    );
    let mut layout = Layout::new(&t.path().join("src"));
    layout.add_image("v1", &img);
    layout.push("v1", &reg.addr, "fixture/gc:v1");
    let proxy = Proxy::start(&reg.addr);
    proxy.set(Faults {
        throttle: Some(Duration::from_millis(10)),
        ..Faults::default()
    });
    let root = t.path().join("root");
    let name = format!("{}/fixture/gc:v1", proxy.addr);
    let child = ic(&root, t.path())
        .args(["pull", "--max-concurrent-downloads", "1", &name])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until some blob is committed but the image is not named yet.
    let deadline = Instant::now() + Duration::from_secs(30);
    while blob_files(&root).is_empty() {
        assert!(Instant::now() < deadline, "no blob committed");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(index_names(&root).is_empty());
    let pruned = ok(ic(&root, t.path()).arg("prune"));
    assert!(
        !pruned.contains("Deleted:"),
        "prune removed in-flight blobs:\n{pruned}"
    );
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(blob_files(&root), sorted(img.digests()));
}

#[test]
fn https_registry_is_verified_with_the_per_registry_ca_directory() {
    if !registry_tools() {
        return;
    }
    let t = tempdir();
    let (ca, cert, key) = make_tls(t.path());
    let reg = Registry::start_with(Auth::Open, None, Some((&cert, &key)));
    let img = small_image(host_arch(), 70);
    let mut layout = Layout::new(&t.path().join("src"));
    layout.add_image("v1", &img);
    layout.push("v1", &reg.addr, "fixture/tls:v1");
    let name = format!("{}/fixture/tls:v1", reg.addr);

    // Without the CA the certificate is not trusted (and there is no plain-HTTP
    // service to fall back to): a one-line error, nothing stored.
    let root = t.path().join("root");
    let e = one_line_error(ic(&root, t.path()).args(["pull", &name]));
    assert!(
        e.contains(&reg.addr) && e.contains("HTTPS failed") && e.contains("certs.d"),
        "{e}"
    );
    assert!(blob_files(&root).is_empty());

    // $XDG_CONFIG_HOME/imgctl/certs.d/<host:port>/*.crt is trusted for that registry.
    let certs = t.path().join(".config/imgctl/certs.d").join(&reg.addr);
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(&ca, certs.join("ca.crt")).unwrap();
    ok(ic(&root, t.path()).args(["pull", &name]));
    assert_eq!(skopeo_digest(&root, &name), img.manifest_digest());
}

#[test]
fn registries_toml_mirror_is_used_for_docker_io_names() {
    if !registry_tools() {
        return;
    }
    let reg = Registry::open();
    let t = tempdir();
    let img = small_image(host_arch(), 71);
    let mut layout = Layout::new(&t.path().join("src"));
    layout.add_image("v1", &img);
    layout.push("v1", &reg.addr, "someone/tool:2");
    let cfg = t.path().join(".config/imgctl");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("registries.toml"),
        format!(
            "[[registry]]\nlocation = \"docker.io\"\nmirrors = [\"{}\"]\n",
            reg.addr
        ),
    )
    .unwrap();
    let root = t.path().join("root");
    ok(ic(&root, t.path()).args(["pull", "someone/tool:2"]));
    assert_eq!(
        index_names(&root),
        vec!["docker.io/someone/tool:2".to_string()]
    );
    assert_eq!(
        skopeo_digest(&root, "docker.io/someone/tool:2"),
        img.manifest_digest()
    );

    std::fs::write(
        cfg.join("registries.toml"),
        "[[registry]]\nlocation = \"a/b\"\n",
    )
    .unwrap();
    let e = one_line_error(ic(&root, t.path()).args(["pull", "someone/tool:2"]));
    assert!(
        e.contains("registries.toml") && e.contains("bad registry location"),
        "{e}"
    );
}

#[test]
fn token_rejected_by_the_registry_is_refreshed_and_the_pull_continues() {
    if !registry_tools() {
        return;
    }
    let open = Registry::open();
    let t = tempdir();
    let img = Image::new(
        host_arch(),
        vec![
            layer(&[("slow1", &noise(4 << 20, 80))], false),
            layer(&[("slow2", &noise(4 << 20, 81))], false),
        ],
    );
    let mut layout = Layout::new(&t.path().join("src"));
    layout.add_image("v1", &img);
    layout.push("v1", &open.addr, "public/expiring:v1");
    // Tokens expire (server side) about 2 s after issue, though announced for 300 s.
    let issuer = TokenIssuer::start_with("u", "p", -58);
    let reg = Registry::start(Auth::Token(&issuer), Some(&open.storage));
    let proxy = Proxy::start(&reg.addr);
    proxy.set(Faults {
        throttle: Some(Duration::from_millis(50)),
        ..Faults::default()
    });
    let root = t.path().join("root");
    let name = format!("{}/public/expiring:v1", proxy.addr);
    // One download at a time; each layer takes about 3 s, so the second one is
    // requested with a token the registry no longer accepts.
    ok(ic(&root, t.path()).args(["pull", "--max-concurrent-downloads", "1", &name]));
    let scope = "repository:public/expiring:pull";
    let n = issuer.scopes().iter().filter(|s| *s == scope).count();
    assert!(
        n >= 2,
        "no token refresh after expiry: {:?}",
        issuer.scopes()
    );
    assert_eq!(blob_files(&root), sorted(img.digests()));
}

/// Every committed blob hashes to its name.
fn assert_blobs_verify(root: &Path) {
    for d in blob_files(root) {
        let data = std::fs::read(
            root.join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .unwrap();
        assert_eq!(digest_of(&data), d, "blob {d} does not match its digest");
    }
}

#[test]
fn kill_9_at_arbitrary_points_never_leaves_a_broken_store() {
    if !registry_tools() {
        return;
    }
    let reg = Registry::open();
    let t = tempdir();
    let img = Image::new(
        host_arch(),
        vec![
            layer(&[("a", &noise(2 << 20, 90))], false),
            layer(&[("b", &noise(1 << 20, 91))], true),
            layer(&[("c", b"small")], true),
        ],
    );
    let mut layout = Layout::new(&t.path().join("src"));
    layout.add_image("v1", &img);
    layout.push("v1", &reg.addr, "fixture/crash:v1");
    let proxy = Proxy::start(&reg.addr);
    proxy.set(Faults {
        throttle: Some(Duration::from_millis(8)),
        ..Faults::default()
    });
    let root = t.path().join("root");
    let name = format!("{}/fixture/crash:v1", proxy.addr);
    // Deterministic spread of kill points over the pull (0..~600 ms).
    for i in 0..12u64 {
        let mut child = ic(&root, t.path())
            .args(["pull", &name])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis((i * 53) % 600));
        let _ = child.kill();
        child.wait().unwrap();
        // The store opens, lists, and holds only verified blobs.
        ok(ic(&root, t.path()).arg("images"));
        assert_blobs_verify(&root);
        // Killed before the store was made: `images` does not create one.
        let names = if root.join("oci-layout").exists() {
            index_names(&root)
        } else {
            Vec::new()
        };
        assert!(names.is_empty() || names == vec![name.clone()], "{names:?}");
    }
    ok(ic(&root, t.path()).args(["pull", &name]));
    assert_blobs_verify(&root);
    assert_eq!(blob_files(&root), sorted(img.digests()));
    assert_eq!(skopeo_digest(&root, &name), img.manifest_digest());
    ok(ic(&root, t.path()).arg("prune"));
    assert_eq!(blob_files(&root), sorted(img.digests()));
}

#[test]
fn oversized_config_is_refused_before_download() {
    if !registry_tools() {
        return;
    }
    let (_reg, proxy, _img, t) = app_behind_proxy(95);
    // skopeo itself refuses to push a config over 4 MiB, so the proxy makes the
    // manifest declare one.
    proxy.set(Faults {
        rewrite_manifest: Some(|m| m["config"]["size"] = serde_json::json!(4 * 1024 * 1024 + 1)),
        ..Faults::default()
    });
    let root = t.path().join("root");
    let e = one_line_error(
        ic(&root, t.path()).args(["pull", &format!("{}/fixture/app:v1", proxy.addr)]),
    );
    assert!(
        e.contains("config") && e.contains("larger than the 4194304-byte limit"),
        "{e}"
    );
    assert!(blob_files(&root).is_empty());
    assert!(
        !proxy.requests().iter().any(|h| h.path.contains("/blobs/")),
        "fetched anyway"
    );
}
