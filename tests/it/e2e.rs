//! End-to-end flows across modules: registry -> store -> snapshots -> sandbox.
//! Each pushes a fixture image with skopeo into a real docker-registry, pulls it with
//! imgctl (which unpacks into overlay snapshots) and uses it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::fixture::{push_layout, require_layout, testdata};
use crate::common::layer::{assert_same_tree, tree, umoci_unpack};
use crate::common::registry::{registry_tools, Registry};
use crate::common::{self, fails, imgctl, is_root, mounts_under, ok, output, require};

/// Root, the registry tools, and the named fixture layout (built by scripts/fixtures).
fn ready(fixture: &str) -> Option<PathBuf> {
    let layout = testdata().join(fixture);
    let ok = require(is_root(), "root (overlayfs, namespaces)")
        && require(registry_tools(), "docker-registry and skopeo")
        && require_layout(&layout, "");
    ok.then_some(layout)
}

fn entries(dir: &Path) -> usize {
    fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn pulled_nginx_is_unpacked_and_mounts_like_umoci() {
    let Some(layout) = ready("nginx-oci") else {
        return;
    };
    if !require(common::have("umoci"), "umoci") {
        return;
    }
    let reg = Registry::open();
    push_layout(&layout, &reg.addr, "library/nginx:latest");
    let image = format!("{}/library/nginx:latest", reg.addr);
    // Both snapshotters (issue 10), each with a fresh store.
    for backend in ["files", "erofs"] {
        if backend == "erofs"
            && !require(
                std::fs::read_to_string("/proc/filesystems")
                    .map(|s| s.contains("erofs"))
                    .unwrap_or(false),
                "erofs in /proc/filesystems",
            )
        {
            continue;
        }
        pulled_nginx_mounts_like_umoci(&layout, &image, backend);
    }
}

fn pulled_nginx_mounts_like_umoci(layout: &Path, image: &str, backend: &str) {
    let t = common::tempdir();
    let store = t.path().join("store");
    let imgctl = |store: &Path| {
        let mut c = imgctl(store);
        c.env("IMGCTL_SNAPSHOTTER", backend);
        c
    };
    ok(imgctl(&store).args(["pull", "--quiet", image]));
    assert_eq!(
        std::fs::read_dir(store.join("snapshots/layers"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().join("layer.erofs").is_file())
            .count(),
        if backend == "erofs" { 2 } else { 0 },
        "{backend}: layers kept as EROFS images"
    );
    // Pull unpacked both layers into snapshots.
    assert_eq!(
        entries(&store.join("snapshots/layers")),
        2,
        "two layer snapshots after pull"
    );

    let merged = PathBuf::from(ok(imgctl(&store).args(["mount", image])).trim());
    let mounted = tree(&merged, false);
    let by_umoci = tree(
        &umoci_unpack(layout, "latest", &t.path().join("bundle")),
        false,
    );
    assert!(
        mounted.len() > 5000,
        "nginx has thousands of paths, got {}",
        mounted.len()
    );
    assert_same_tree(
        &mounted,
        &by_umoci,
        &format!("pulled nginx ({backend}): imgctl mount vs umoci unpack"),
    );
    ok(imgctl(&store).args(["umount"]).arg(&merged));
    assert!(
        mounts_under(&store.join("snapshots/active")).is_empty(),
        "umount leaves no view mounted"
    );
}

#[test]
fn run_on_a_pulled_image_and_clean_up() {
    let Some(layout) = ready("busybox-oci") else {
        return;
    };
    let _serial = common::sandbox::serial();
    let reg = Registry::open();
    push_layout(&layout, &reg.addr, "library/busybox:latest");
    let t = common::tempdir();
    let store = t.path().join("store");
    let image = format!("{}/library/busybox:latest", reg.addr);

    // --no-unpack stores blobs only; run unpacks on demand.
    ok(imgctl(&store).args(["pull", "--quiet", "--no-unpack", &image]));
    assert_eq!(entries(&store.join("snapshots/layers")), 0);
    let out = ok(imgctl(&store).args([
        "run",
        "--rm",
        "--hostname",
        "e2e",
        &image,
        "sh",
        "-c",
        "echo hi from $(hostname); echo $$",
    ]));
    assert_eq!(out, "hi from e2e\n1\n");
    assert_eq!(entries(&store.join("snapshots/layers")), 1);

    // The image's CMD (`sh`) runs when no command is given; stdin is empty, so it exits 0.
    ok(imgctl(&store).args(["run", "--rm", &image]));

    // Exit codes propagate; writes go to the container's own layer only.
    let st = output(imgctl(&store).args([
        "run",
        "--rm",
        &image,
        "sh",
        "-c",
        "echo x > /bin/busybox; exit 3",
    ]));
    assert_eq!(st.status.code(), Some(3));
    let out = ok(imgctl(&store).args([
        "run",
        "--rm",
        &image,
        "sh",
        "-c",
        "busybox true && echo intact",
    ]));
    assert_eq!(
        out, "intact\n",
        "a container's write did not reach the image"
    );

    // 127 for a missing command, 125 for an unknown image.
    let (code, err) = fails(imgctl(&store).args(["run", "--rm", &image, "no-such-command"]));
    assert_eq!(code, 127, "{err}");
    let (code, err) =
        fails(imgctl(&store).args(["run", "--rm", "--pull", "never", "no-such-image:1"]));
    assert_eq!(code, 125);
    assert!(
        err.contains("no such image") && err.lines().count() == 1,
        "{err}"
    );

    // Nothing left mounted, no active snapshot left behind.
    assert!(
        mounts_under(&store).is_empty(),
        "left mounted: {:?}",
        mounts_under(&store)
    );
    assert_eq!(
        entries(&store.join("snapshots/active")),
        0,
        "active snapshots left behind"
    );
}

#[test]
fn bundle_of_a_pulled_image_runs_under_runc() {
    let Some(layout) = ready("busybox-oci") else {
        return;
    };
    if !require(common::have("runc"), "runc") {
        return;
    }
    let _serial = common::sandbox::serial();
    let reg = Registry::open();
    push_layout(&layout, &reg.addr, "library/busybox:latest");
    let t = common::tempdir();
    let store = t.path().join("store");
    let image = format!("{}/library/busybox:latest", reg.addr);
    ok(imgctl(&store).args(["pull", "--quiet", &image]));
    let bundle = t.path().join("bundle");
    ok(imgctl(&store).arg("bundle").arg(&image).arg(&bundle).args([
        "sh",
        "-c",
        "echo bundled; cat /etc/hostname >/dev/null",
    ]));
    assert!(
        bundle.join("rootfs/bin/busybox").is_file(),
        "rootfs flattened into the bundle"
    );
    assert!(
        mounts_under(&store).is_empty(),
        "bundle leaves nothing mounted"
    );
    let id = format!("imgctl-e2e-{}", std::process::id());
    let out = output(
        Command::new("runc")
            .arg("run")
            .arg("-b")
            .arg(&bundle)
            .arg(&id),
    );
    let _ = Command::new("runc").args(["delete", "-f", &id]).output();
    assert!(
        out.status.success(),
        "runc run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "bundled\n");
}

/// A small first layer and a large, slowly served second one, pushed to a real
/// registry behind the throttling proxy.
fn slow_two_layer_image(
    t: &Path,
    reg: &Registry,
    dest: &str,
    big: usize,
) -> (
    crate::common::registry::Image,
    crate::common::registry::Proxy,
) {
    use crate::common::registry::{host_arch, noise, push_image, Faults, Image, Proxy};
    let early = extractable_layer(&[("early/hello", b"first layer\n")]);
    let late = extractable_layer(&[("late/blob", &noise(big, 11))]);
    let img = Image::new(host_arch(), vec![early, late]);
    push_image(&t.join("src"), &img, &reg.addr, dest);
    let proxy = Proxy::start_with(
        &reg.addr,
        Faults {
            throttle: Some(std::time::Duration::from_millis(20)),
            ..Faults::default()
        },
    );
    (img, proxy)
}

/// A gzip layer of root-owned files with one mtime (stored deflate blocks: quick to
/// make and kept byte for byte by the registry).
fn extractable_layer(files: &[(&str, &[u8])]) -> crate::common::registry::Layer {
    use crate::common::registry::digest_of;
    use std::io::Write;
    let mut tar = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, path, *content).expect("tar entry");
    }
    let tar = tar.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    gz.write_all(&tar).expect("gzip");
    let blob = gz.finish().expect("gzip");
    crate::common::registry::Layer {
        digest: digest_of(&blob),
        diff_id: digest_of(&tar),
        blob,
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
    }
}

/// A published layer directory: extracted files, or an EROFS image (whose `fs`
/// is only a mount point).
fn layer_published(dir: &Path) -> bool {
    dir.join("fs/early/hello").is_file() || dir.join("layer.erofs").is_file()
}

fn hex(d: &str) -> &str {
    d.trim_start_matches("sha256:")
}

#[test]
fn pull_extracts_early_layers_while_later_ones_download() {
    if !(require(is_root(), "root (overlay whiteouts, ownership)")
        && require(registry_tools(), "docker-registry and skopeo"))
    {
        return;
    }
    let reg = Registry::open();
    let t = common::tempdir();
    // 6 MiB in 64 KiB reads with a 20 ms pause each: about two seconds of download.
    let (img, proxy) = slow_two_layer_image(t.path(), &reg, "fixture/pipe:v1", 6 << 20);
    let store = t.path().join("store");
    let name = format!("{}/fixture/pipe:v1", proxy.addr);
    let mut child = imgctl(&store)
        .args(["pull", "--quiet", &name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn imgctl pull");
    // A layer directory is published (renamed into place) only once the layer is
    // complete and verified, in either snapshotter's form.
    let early_layer = store
        .join("snapshots/layers")
        .join(hex(&img.layers[0].diff_id));
    let late_blob = store.join("blobs/sha256").join(hex(&img.layers[1].digest));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut late_committed_when_early_extracted = None;
    while std::time::Instant::now() < deadline {
        if layer_published(&early_layer) {
            late_committed_when_early_extracted = Some(late_blob.exists());
            break;
        }
        if child.try_wait().expect("wait for imgctl").is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let out = child.wait_with_output().expect("wait for imgctl pull");
    assert!(
        out.status.success(),
        "pull failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        late_committed_when_early_extracted,
        Some(false),
        "the first layer was extracted (Some) before the second layer's blob was committed (false)"
    );
    assert!(
        proxy.blob_bytes() >= 6 << 20,
        "the large blob went through the proxy"
    );
    // After the pull the chain is committed bottom-up: two chains, and the image mounts.
    assert_eq!(entries(&store.join("snapshots/chains")), 2);
    let merged = PathBuf::from(ok(imgctl(&store).args(["mount", &name])).trim());
    assert_eq!(
        fs::read(merged.join("early/hello")).expect("early layer file in the mount"),
        b"first layer\n"
    );
    assert_eq!(
        fs::metadata(merged.join("late/blob"))
            .expect("late layer file in the mount")
            .len(),
        6 << 20
    );
    ok(imgctl(&store).args(["umount"]).arg(&merged));
}

#[test]
fn pull_failing_on_a_later_layer_commits_no_chain() {
    if !(require(is_root(), "root (overlay whiteouts, ownership)")
        && require(registry_tools(), "docker-registry and skopeo"))
    {
        return;
    }
    let reg = Registry::open();
    let t = common::tempdir();
    let (img, proxy) = slow_two_layer_image(t.path(), &reg, "fixture/bad:v1", 2 << 20);
    // Corrupt the second layer in the registry's storage (same length): its digest
    // check fails after the first layer is already in and extracted.
    let data = reg.blob_data(&img.layers[1].digest);
    let good = fs::read(&data).expect("registry blob data");
    let mut bad = good.clone();
    let n = bad.len();
    bad[n / 2] ^= 0xff;
    fs::write(&data, &bad).expect("corrupt registry blob");
    let store = t.path().join("store");
    let name = format!("{}/fixture/bad:v1", proxy.addr);
    let (code, err) = fails(imgctl(&store).args(["pull", "--quiet", &name]));
    assert_eq!(code, 125, "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one-line error: {err}");
    assert!(
        err.contains(hex(&img.layers[1].digest)) && err.contains("does not match its digest"),
        "error names the bad blob: {err}"
    );
    // The first layer was extracted while the second downloaded ...
    assert!(
        layer_published(
            &store
                .join("snapshots/layers")
                .join(hex(&img.layers[0].diff_id))
        ),
        "the verified first layer was extracted during the pull"
    );
    // ... but no chain was committed, nothing half-extracted stayed, no name exists.
    assert_eq!(
        entries(&store.join("snapshots/chains")),
        0,
        "no committed chain after a failed pull"
    );
    let leftovers: Vec<String> = fs::read_dir(store.join("snapshots/layers"))
        .expect("layers dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary layer dirs: {leftovers:?}");
    assert!(
        !ok(imgctl(&store).arg("images")).contains("fixture/bad"),
        "the failed image has no name"
    );
    // With the registry repaired, the same pull completes and commits the chain.
    fs::write(&data, &good).expect("restore registry blob");
    ok(imgctl(&store).args(["pull", "--quiet", &name]));
    assert_eq!(entries(&store.join("snapshots/chains")), 2);
}

#[test]
fn df_shows_bytes_saved_by_dedup_across_images_sharing_files_not_layers() {
    use crate::common::registry::{host_arch, noise, Image, Layout};
    if !(require(is_root(), "root (overlay whiteouts, ownership)")
        && require(registry_tools(), "docker-registry and skopeo"))
    {
        return;
    }
    let reg = Registry::open();
    let t = common::tempdir();
    let (lib, tool) = (noise(256 << 10, 1), noise(64 << 10, 2));
    // Image a: two layers; image b: the same files (same content, mode, owner, mtime)
    // under the same and other paths, repacked into one layer, plus one of its own.
    let a = Image::new(
        host_arch(),
        vec![
            extractable_layer(&[("usr/lib/libbig.so", &lib)]),
            extractable_layer(&[("usr/bin/tool", &tool), ("etc/a", b"a\n")]),
        ],
    );
    let b = Image::new(
        host_arch(),
        vec![extractable_layer(&[
            ("usr/lib/libbig.so", &lib),
            ("opt/tool", &tool),
            ("etc/b", b"b\n"),
        ])],
    );
    let mut l = Layout::new(&t.path().join("src"));
    l.add_image("a", &a);
    l.add_image("b", &b);
    l.push("a", &reg.addr, "fixture/dedup-a:1");
    l.push("b", &reg.addr, "fixture/dedup-b:1");
    let store = t.path().join("store");
    // File-level dedup is a feature of the files snapshotter (docs/layers.md says
    // why EROFS layers do not share files yet).
    for n in ["dedup-a", "dedup-b"] {
        ok(imgctl(&store).args([
            "pull",
            "--quiet",
            "--snapshotter",
            "files",
            &format!("{}/fixture/{n}:1", reg.addr),
        ]));
    }
    let df: serde_json::Value =
        serde_json::from_str(&ok(imgctl(&store).args(["df", "--format", "json"])))
            .expect("df JSON");
    crate::store::check_schema("df", &df);
    let n = |k: &str| df[k].as_u64().unwrap_or_else(|| panic!("{k} in {df}"));
    assert_eq!(n("layers"), 3, "{df}");
    let shared = (lib.len() + tool.len()) as u64;
    assert_eq!(n("layer_logical_bytes"), 2 * shared + 4, "{df}");
    assert!(n("dedup_saved_bytes") > 0, "{df}");
    assert_eq!(
        n("dedup_saved_bytes"),
        shared,
        "both shared files stored once: {df}"
    );
    assert!(n("layer_on_disk_bytes") < n("layer_logical_bytes"), "{df}");
    assert_eq!(
        n("layer_on_disk_bytes") + n("dedup_saved_bytes"),
        n("layer_logical_bytes")
    );
    let table = ok(imgctl(&store).arg("df"));
    assert!(
        table.contains("saved by file-level dedup") && table.contains("Unpacked layers"),
        "{table}"
    );
}
