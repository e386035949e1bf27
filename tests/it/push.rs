//! Integration tests: `imgctl push` against a real `docker-registry`, checked from
//! the registry's own access log (what was HEADed, mounted, uploaded), and read back
//! by an independent client (skopeo).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::registry::*;
use crate::common::*;
use crate::registry::ic;

/// The one stderr line of a failed imgctl run, checked to be a single line.
fn one_line_error(cmd: &mut Command) -> String {
    let (code, err) = fails(cmd);
    assert_eq!(code, 125, "{err}");
    let err = err.trim_end().to_string();
    assert_eq!(err.lines().count(), 1, "expected one line, got:\n{err}");
    assert!(err.starts_with("imgctl: "), "{err}");
    err
}

/// Blob uploads in the log: (POSTs without mount, PATCHes, blob PUTs).
fn uploads(log: &[Access]) -> (usize, usize, usize) {
    let posts = log
        .iter()
        .filter(|a| a.method == "POST" && a.is_upload() && !a.path.contains("mount="))
        .count();
    let patches = log.iter().filter(|a| a.method == "PATCH").count();
    let puts = log
        .iter()
        .filter(|a| a.method == "PUT" && a.is_upload())
        .count();
    (posts, patches, puts)
}

/// The log, one short line per request (for assertion messages).
fn brief(log: &[Access]) -> String {
    log.iter()
        .map(|a| {
            let p: String = a
                .path
                .split('?')
                .next()
                .unwrap_or("")
                .chars()
                .take(70)
                .collect();
            let mount = if a.path.contains("mount=") {
                " (mount)"
            } else {
                ""
            };
            format!("\n  {} {p}{mount} {}", a.method, a.status)
        })
        .collect()
}

fn manifest_puts(log: &[Access]) -> Vec<&Access> {
    log.iter()
        .filter(|a| a.method == "PUT" && a.path.contains("/manifests/"))
        .collect()
}

/// `skopeo inspect --raw` of what the registry serves for `name`.
fn skopeo_raw(name: &str) -> Vec<u8> {
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
    out.stdout
}

/// Copy `name` with skopeo into an OCI layout (every blob verified by skopeo) and
/// return the manifest digest it wrote.
fn skopeo_copy_out(name: &str, dir: &Path) -> String {
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{name}"))
        .arg(format!("oci:{}:x", dir.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let idx = json_of(&std::fs::read_to_string(dir.join("index.json")).unwrap());
    idx["manifests"][0]["digest"].as_str().unwrap().to_string()
}

/// A registry with `img` pushed by skopeo as `repo:v1`, and a store that pulled it.
fn pulled(img: &Image, repo: &str) -> (Registry, tempfile::TempDir, String) {
    let reg = Registry::open();
    let t = tempdir();
    push_image(&t.path().join("src"), img, &reg.addr, &format!("{repo}:v1"));
    let name = format!("{}/{repo}:v1", reg.addr);
    ok(ic(&t.path().join("root"), t.path()).args(["pull", "--no-unpack", &name]));
    (reg, t, name)
}

#[test]
fn push_of_a_pulled_image_heads_every_blob_and_puts_only_the_manifest() {
    if !registry_tools() {
        return;
    }
    let img = small_image(host_arch(), 11);
    let (reg, t, name) = pulled(&img, "fixture/app");
    let root = t.path().join("root");
    reg.clear_log();
    let digestfile = t.path().join("digest");
    let out = ok(ic(&root, t.path())
        .args(["push", "--digestfile"])
        .arg(&digestfile)
        .arg(&name));
    assert_eq!(out.matches("Layer already exists").count(), 3, "{out}");
    assert!(
        out.contains(&format!("v1: digest: {}", img.manifest_digest())),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(&digestfile).unwrap(),
        img.manifest_digest()
    );
    let log = reg.access_log();
    let heads: Vec<&Access> = log.iter().filter(|a| a.method == "HEAD").collect();
    assert_eq!(heads.len(), img.digests().len() - 1, "{}", brief(&log));
    assert!(heads.iter().all(|a| a.status == 200), "{}", brief(&log));
    assert_eq!(uploads(&log), (0, 0, 0), "{}", brief(&log));
    assert!(
        !log.iter().any(|a| a.path.contains("mount=")),
        "{}",
        brief(&log)
    );
    let m = manifest_puts(&log);
    assert_eq!(m.len(), 1, "{}", brief(&log));
    assert_eq!(
        (m[0].path.as_str(), m[0].status),
        ("/v2/fixture/app/manifests/v1", 201)
    );
    // Pulled as OCI, pushed back byte for byte.
    assert_eq!(skopeo_raw(&name), img.manifest);
}

#[test]
fn cross_repository_push_mounts_every_blob_and_skopeo_reads_it() {
    if !registry_tools() {
        return;
    }
    let img = small_image(host_arch(), 12);
    let (reg, t, name) = pulled(&img, "fixture/app");
    let root = t.path().join("root");
    reg.clear_log();
    let dest = format!("{}/team/copy:v2", reg.addr);
    let out = ok(ic(&root, t.path()).args(["push", &name, &dest]));
    assert_eq!(out.matches("Mounted from").count(), 3, "{out}");
    let log = reg.access_log();
    let mounts: Vec<&Access> = log
        .iter()
        .filter(|a| a.method == "POST" && a.path.contains("mount="))
        .collect();
    assert_eq!(mounts.len(), 3, "{}", brief(&log));
    for m in &mounts {
        assert!(m.path.contains("from=fixture/app"), "{m:?}");
        assert_eq!(m.status, 201, "a mount, not an upload session: {m:?}");
    }
    assert_eq!(uploads(&log), (0, 0, 0), "{}", brief(&log));
    assert_eq!(skopeo_raw(&dest), img.manifest);
    let copied = tempdir();
    assert_eq!(skopeo_copy_out(&dest, copied.path()), img.manifest_digest());

    // A source repository that lost the blob: the mount is declined (202) and the
    // session it opened takes the upload.
    let gone = format!("{}/team/copy2:v1", reg.addr);
    let other = Registry::open();
    let moved = format!("{}/team/moved:v1", other.addr);
    ok(ic(&root, t.path()).args(["push", &name, &moved]));
    let src = root.join("sources");
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        // Point every source at a repository of `reg` that never held the blobs.
        std::fs::write(e.path(), format!("{}/nowhere/repo\n", reg.addr)).unwrap();
    }
    reg.clear_log();
    ok(ic(&root, t.path()).args(["push", &name, &gone]));
    let log = reg.access_log();
    let declined = log
        .iter()
        .filter(|a| a.path.contains("mount=") && a.status == 202)
        .count();
    assert_eq!(declined, 3, "{}", brief(&log));
    assert_eq!(
        uploads(&log).2,
        3,
        "uploaded in the declined sessions: {}",
        brief(&log)
    );
    assert_eq!(skopeo_raw(&gone), img.manifest);
}

/// An image with one large layer of noise (stored deflate: quick to make).
fn big_image(mib: usize, seed: u64) -> Image {
    let small = layer(&[("etc/hello", b"hi\n")], true);
    let big = layer(&[("big.bin", &noise(mib << 20, seed))], false);
    Image::new(host_arch(), vec![small, big])
}

#[test]
fn chunked_push_patches_1mib_chunks_to_an_empty_registry_and_v2s2_converts() {
    if !registry_tools() {
        return;
    }
    let img = big_image(3, 13);
    let (_src, t, name) = pulled(&img, "fixture/big");
    let root = t.path().join("root");
    let reg = Registry::open();
    let dest = format!("{}/chunked/big:v1", reg.addr);
    ok(ic(&root, t.path()).args(["push", "--chunk-size", "1MiB", &name, &dest]));
    let log = reg.access_log();
    let big = img.layers[1].blob.len();
    let want_patches = big.div_ceil(1 << 20) + 2; // + config, + small layer
    let (posts, patches, puts) = uploads(&log);
    assert_eq!((posts, puts), (3, 3), "{}", brief(&log));
    assert_eq!(patches, want_patches, "{}", brief(&log));
    assert!(log
        .iter()
        .filter(|a| a.method == "PATCH")
        .all(|a| a.status == 202));
    assert!(
        !root.join("uploads").exists()
            || std::fs::read_dir(root.join("uploads")).unwrap().count() == 0,
        "upload state left behind"
    );
    let copied = tempdir();
    assert_eq!(skopeo_copy_out(&dest, copied.path()), img.manifest_digest());

    // --format v2s2: a Docker manifest naming the same blobs; skopeo reads it.
    let v2 = format!("{}/chunked/big:docker", reg.addr);
    ok(ic(&root, t.path()).args(["push", "--format", "v2s2", &name, &v2]));
    let raw = json_of(&String::from_utf8_lossy(&skopeo_raw(&v2)));
    assert_eq!(
        raw["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        raw["layers"][1]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    assert_eq!(raw["layers"][1]["digest"], img.layers[1].digest.as_str());
    let copied = tempdir();
    skopeo_copy_out(&v2, copied.path());
}

#[test]
fn killed_push_is_completed_by_the_next_push_without_sending_finished_blobs_again() {
    if !registry_tools() {
        return;
    }
    let img = big_image(48, 14);
    let (_src, t, name) = pulled(&img, "fixture/big");
    let root = t.path().join("root");
    let reg = Registry::open();
    let dest = format!("{}/resume/big:v1", reg.addr);
    let push = |extra: &[&str]| {
        let mut c = ic(&root, t.path());
        c.args(["push", "--chunk-size", "256KiB"])
            .args(extra)
            .args([&name, &dest]);
        c
    };
    let mut child = push(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let big = &img.layers[1];
    // Wait until the small blobs are in and the big one is on its way.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = reg.access_log();
        let done = log
            .iter()
            .filter(|a| a.method == "PUT" && a.is_upload() && a.status == 201)
            .count();
        let patches = log.iter().filter(|a| a.method == "PATCH").count();
        if done >= 2 && patches >= 8 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "push did not progress: {}",
            brief(&log)
        );
        assert!(child.try_wait().unwrap().is_none(), "push ended early");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // A chunk already on the wire may still complete on the registry's side.
    std::thread::sleep(Duration::from_millis(500));
    let before = reg.access_log();
    assert!(
        manifest_puts(&before).is_empty(),
        "killed before the manifest"
    );
    let sent_before = before.iter().filter(|a| a.method == "PATCH").count();
    // The session is remembered for the next push.
    let states: Vec<_> = std::fs::read_dir(root.join("uploads"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert_eq!(states.len(), 1, "{states:?}");
    crate::store::check_schema(
        "upload-state",
        &json_of(&std::fs::read_to_string(&states[0]).unwrap()),
    );
    reg.clear_log();

    let out = ok(push(&[]).env("IMGCTL_LOG", "debug"));
    let log = reg.access_log();
    // The blobs that were done are only HEADed.
    for l in &img.layers[..1] {
        let heads: Vec<&Access> = log.iter().filter(|a| a.path.ends_with(&l.digest)).collect();
        assert_eq!(heads.len(), 1, "{}", brief(&log));
        assert_eq!((heads[0].method.as_str(), heads[0].status), ("HEAD", 200));
    }
    let config = img.config_digest();
    assert!(log
        .iter()
        .any(|a| a.method == "HEAD" && a.path.ends_with(&config) && a.status == 200));
    // The big blob: resumed where the session stopped (GET status, then only the
    // remaining chunks), or - when the kill fell mid-chunk and the registry dropped
    // the session - started again. Either way only it is sent.
    let resumed = log
        .iter()
        .any(|a| a.method == "GET" && a.is_upload() && a.status == 204);
    let patches = log.iter().filter(|a| a.method == "PATCH").count();
    let all = big.blob.len().div_ceil(256 << 10);
    if resumed {
        assert!(out.contains("resuming at"), "{out}");
        assert!(
            patches < all && patches + sent_before >= all,
            "resumed: {patches} + {sent_before} of {all} chunks"
        );
    } else {
        assert_eq!(patches, all, "restarted: {}", brief(&log));
    }
    eprintln!("kill -9 mid-push: resumed={resumed}, chunks {sent_before} before, {patches} after, of {all}");
    assert_eq!(manifest_puts(&log).len(), 1);
    let copied = tempdir();
    assert_eq!(skopeo_copy_out(&dest, copied.path()), img.manifest_digest());
}

#[test]
fn push_to_basic_and_token_auth_registries_and_denied_without_credentials() {
    if !registry_tools() {
        return;
    }
    let img = small_image(host_arch(), 15);
    let (_src, t, name) = pulled(&img, "fixture/app");
    let root = t.path().join("root");

    let basic = Registry::start(
        Auth::Basic {
            user: "alice",
            pass: "s3cret",
        },
        None,
    );
    let dest = format!("{}/private/app:v1", basic.addr);
    let err = one_line_error(ic(&root, t.path()).args(["push", &name, &dest]));
    assert!(err.contains("authentication required"), "{err}");
    ok(ic(&root, t.path()).args(["login", "-u", "alice", "-p", "s3cret", &basic.addr]));
    ok(ic(&root, t.path()).args(["push", &name, &dest]));
    let log = basic.access_log();
    assert_eq!(manifest_puts(&log).last().map(|a| a.status), Some(201));

    let issuer = TokenIssuer::start("bob", "hunter2");
    let token = Registry::start(Auth::Token(&issuer), None);
    let dest = format!("{}/team/app:v1", token.addr);
    let err = one_line_error(ic(&root, t.path()).args(["push", &name, &dest]));
    assert!(
        err.contains("unauthorized") || err.contains("authentication required"),
        "{err}"
    );
    ok(ic(&root, t.path()).args(["login", "-u", "bob", "-p", "hunter2", &token.addr]));
    ok(ic(&root, t.path()).args(["push", &name, &dest]));
    assert!(
        issuer
            .scopes()
            .iter()
            .any(|s| s.contains("repository:team/app:pull,push")),
        "{:?}",
        issuer.scopes()
    );
    let raw = skopeo_raw_auth(&dest, "bob:hunter2");
    assert_eq!(raw, img.manifest);
}

fn skopeo_raw_auth(name: &str, creds: &str) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", "--creds", creds])
        .arg(format!("docker://{name}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn push_errors_are_one_line() {
    if !registry_tools() {
        return;
    }
    let img = small_image(host_arch(), 16);
    let (reg, t, name) = pulled(&img, "fixture/app");
    let root = t.path().join("root");
    let err = one_line_error(ic(&root, t.path()).args(["push", "127.0.0.1:1/no/such:v1"]));
    assert!(err.contains("no such image"), "{err}");
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = one_line_error(ic(&root, t.path()).args([
        "push",
        &name,
        &format!("127.0.0.1:{dead}/x/y:v1"),
    ]));
    assert!(err.contains("cannot reach registry"), "{err}");
    // An image ID has no registry in it: a destination is needed.
    let id = img.config_digest();
    let err = one_line_error(ic(&root, t.path()).args(["push", &id[7..19]]));
    assert!(err.contains("REGISTRY/REPOSITORY"), "{err}");
    let err = one_line_error(ic(&root, t.path()).args(["push", "--chunk-size", "lots", &name]));
    assert!(err.contains("--chunk-size"), "{err}");
    drop(reg);
}
