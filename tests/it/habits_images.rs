//! Issue 15 item 5: `images` flags and filters, its sizes (unpacked, as Docker shows
//! them), and `history -q/--no-trunc/-H=false`. Stores are filled offline from the
//! busybox fixture; a second image is that one given a label and a later creation
//! time by umoci.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::{self, fails, have, imgctl, is_root, ok, output, require};

fn busybox_store(t: &Path) -> Option<PathBuf> {
    let layout = Path::new("/var/cache/imgctl-testdata/busybox-oci");
    if !(require(is_root(), "root")
        && require(have("skopeo"), "skopeo")
        && require(layout.join("index.json").is_file(), "busybox-oci fixture"))
    {
        return None;
    }
    let root = t.join("store");
    let out = output(
        Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(format!("oci:{}:latest", layout.display()))
            .arg(format!(
                "oci:{}:docker.io/library/busybox:latest",
                root.display()
            )),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(root)
}

/// busybox:latest, busybox:other (same image) and labelled:1 (busybox with a label
/// and a later creation time, made by umoci in a copy of the fixture layout).
fn three_names(t: &Path) -> Option<PathBuf> {
    if !require(have("umoci"), "umoci") {
        return None;
    }
    let store = busybox_store(t)?;
    ok(imgctl(&store).args(["tag", "busybox", "busybox:other"]));
    let layout = t.join("layout");
    let l = layout.display();
    ok(Command::new("skopeo").args([
        "copy",
        "--quiet",
        "oci:/var/cache/imgctl-testdata/busybox-oci:latest",
        &format!("oci:{l}:latest"),
    ]));
    ok(Command::new("umoci").args([
        "config",
        "--image",
        &format!("{l}:latest"),
        "--tag",
        "labelled",
        "--created",
        "2026-06-01T00:00:00Z",
        "--config.label",
        "habit=yes",
    ]));
    ok(Command::new("skopeo").args([
        "copy",
        "--quiet",
        &format!("oci:{l}:labelled"),
        &format!("oci:{}:docker.io/library/labelled:1", store.display()),
    ]));
    Some(store)
}

fn names(store: &Path, args: &[&str]) -> Vec<String> {
    let out = ok(imgctl(store)
        .arg("images")
        .args(args)
        .args(["--format", "{{.Repository}}:{{.Tag}}"]));
    let mut v: Vec<String> = out.lines().map(str::to_string).collect();
    v.sort();
    v
}

fn json_images(store: &Path) -> Vec<Value> {
    let v: Value =
        serde_json::from_str(&ok(imgctl(store).args(["images", "--format", "json"]))).unwrap();
    crate::store::check_schema("images", &v);
    v.as_array().unwrap().clone()
}

/// Regular-file bytes of a layer tar, computed here with the system's tar (a second
/// implementation): `tar -tvz` lists sizes; regular files start with `-`.
fn layer_files_bytes(blob: &Path) -> u64 {
    let out = output(Command::new("tar").arg("-tvzf").arg(blob));
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('-'))
        .map(|l| l.split_whitespace().nth(2).unwrap().parse::<u64>().unwrap())
        .sum()
}

#[test]
fn images_size_is_the_unpacked_size_and_compressed_is_in_json() {
    let t = common::tempdir();
    let Some(store) = busybox_store(t.path()) else {
        return;
    };
    let img = &json_images(&store)[0];
    let manifest_digest = img["Digest"].as_str().unwrap();
    let blob = |d: &str| {
        store
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let mut s = String::new();
    fs::File::open(blob(manifest_digest))
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    let m: Value = serde_json::from_str(&s).unwrap();
    let layers = m["layers"].as_array().unwrap();
    let want: u64 = layers
        .iter()
        .map(|l| layer_files_bytes(&blob(l["digest"].as_str().unwrap())))
        .sum();
    assert!(want > 0);
    assert_eq!(img["Size"].as_u64().unwrap(), want, "{img:#}");
    let compressed: u64 = layers.iter().map(|l| l["size"].as_u64().unwrap()).sum();
    assert!(img["CompressedSize"].as_u64().unwrap() > compressed);
    assert!(img["CompressedSize"].as_u64().unwrap() < want);
    // The table shows the same figure in Docker's decimal units.
    let table = ok(imgctl(&store).args(["images", "--format", "{{.Size}}"]));
    let shown = table.trim();
    let (num, unit) = shown.split_at(shown.find(|c: char| c.is_ascii_alphabetic()).unwrap());
    let mult = match unit {
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        u => panic!("unit {u}"),
    };
    let v: f64 = num.parse::<f64>().unwrap() * mult;
    assert!(
        (v - want as f64).abs() / (want as f64) < 0.01,
        "{shown} vs {want}"
    );
}

#[test]
fn images_flags_and_filters() {
    let t = common::tempdir();
    let Some(store) = three_names(t.path()) else {
        return;
    };
    let all = ["busybox:latest", "busybox:other", "labelled:1"];
    assert_eq!(names(&store, &[]), all);
    // -a lists the same (no intermediate images in this store).
    assert_eq!(names(&store, &["-a"]), all);
    // REPO and REPO:TAG, familiar or full.
    assert_eq!(
        names(&store, &["busybox"]),
        ["busybox:latest", "busybox:other"]
    );
    assert_eq!(names(&store, &["busybox:other"]), ["busybox:other"]);
    assert_eq!(
        names(&store, &["docker.io/library/busybox:latest"]),
        ["busybox:latest"]
    );
    assert!(names(&store, &["nginx"]).is_empty());
    // -q: one ID per image, busybox's two names share one.
    let q = ok(imgctl(&store).args(["images", "-q"]));
    assert_eq!(q.lines().count(), 2, "{q}");
    assert!(q.lines().all(|l| l.len() == 12), "{q}");
    let q = ok(imgctl(&store).args(["images", "-q", "--no-trunc"]));
    assert!(
        q.lines().all(|l| l.len() == 71 && l.starts_with("sha256:")),
        "{q}"
    );
    // --digests adds the registry digest column.
    let d = ok(imgctl(&store).args(["images", "--digests", "busybox:latest"]));
    let mut lines = d.lines();
    assert!(lines.next().unwrap().contains("DIGEST"), "{d}");
    let digest = json_images(&store)
        .iter()
        .find(|i| i["Tag"] == "latest" && i["Repository"] == "busybox")
        .map(|i| i["RepoDigest"].as_str().unwrap().to_string())
        .unwrap();
    assert!(lines.next().unwrap().contains(&digest), "{d}");
    // Filters.
    assert_eq!(
        names(&store, &["--filter", "reference=busy*"]),
        ["busybox:latest", "busybox:other"]
    );
    assert_eq!(
        names(&store, &["--filter", "reference=*:1"]),
        ["labelled:1"]
    );
    assert_eq!(names(&store, &["--filter", "label=habit"]), ["labelled:1"]);
    assert_eq!(
        names(&store, &["--filter", "label=habit=yes"]),
        ["labelled:1"]
    );
    assert!(names(&store, &["--filter", "label=habit=no"]).is_empty());
    assert_eq!(
        names(&store, &["--filter", "since=busybox:latest"]),
        ["labelled:1"]
    );
    assert_eq!(
        names(&store, &["--filter", "before=labelled:1"]),
        ["busybox:latest", "busybox:other"]
    );
    assert!(names(&store, &["--filter", "dangling=true"]).is_empty());
    assert_eq!(names(&store, &["--filter", "dangling=false"]), all);
    // Filters combine (all must match).
    assert_eq!(
        names(
            &store,
            &["--filter", "reference=busybox", "--filter", "since=busybox"]
        ),
        Vec::<String>::new()
    );
    // Bad filters: one line, 125.
    for bad in ["colour=red", "dangling=maybe", "nokey", "since=nothere:1"] {
        let (code, err) = fails(imgctl(&store).args(["images", "--filter", bad]));
        assert_eq!(code, 125, "{bad}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{bad}: {err}");
    }
}

#[test]
fn history_quiet_no_trunc_and_raw_units() {
    let t = common::tempdir();
    let Some(store) = busybox_store(t.path()) else {
        return;
    };
    let id = json_images(&store)[0]["Id"].as_str().unwrap().to_string();
    let q = ok(imgctl(&store).args(["history", "-q", "busybox"]));
    assert_eq!(q.trim(), &id["sha256:".len().."sha256:".len() + 12]);
    let q = ok(imgctl(&store).args(["history", "-q", "--no-trunc", "busybox"]));
    assert_eq!(q.trim(), id);
    let human = ok(imgctl(&store).args(["history", "busybox"]));
    let raw = ok(imgctl(&store).args(["history", "-H=false", "busybox"]));
    // Human: "N units ago" and kB/MB; raw: RFC 3339 and a plain byte count.
    let row = |s: &str| s.lines().nth(1).unwrap().to_string();
    assert!(row(&human).contains(" ago"), "{human}");
    assert!(row(&raw).contains("2026-01-01T00:00:00Z"), "{raw}");
    let raw_row = row(&raw);
    let sizes: Vec<&str> = raw_row
        .split_whitespace()
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert!(!sizes.is_empty(), "no byte count: {raw}");
    assert!(
        row(&human).contains("MB") || row(&human).contains("kB"),
        "{human}"
    );
    // -H alone and --human=true are the default.
    assert_eq!(ok(imgctl(&store).args(["history", "-H", "busybox"])), human);
}
