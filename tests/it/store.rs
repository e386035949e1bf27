//! Integration tests: the store as seen through imgctl's commands (images, inspect,
//! history, tag, rmi, df, prune), its OCI-layout interoperability with skopeo, its
//! permissions, and the JSON schemas of everything it prints or stores.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::registry::*;
use crate::common::*;
use crate::registry::ic;

/// Validate `instance` against `schemas/<name>.schema.json`.
pub fn check_schema(name: &str, instance: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(format!("{name}.schema.json"));
    let schema = json_of(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    );
    let v =
        jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{name} schema invalid: {e}"));
    let errors: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{name}: {errors:#?}\n{instance:#}");
}

fn blob_set(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|e| format!("sha256:{}", e.file_name().to_string_lossy()))
        .collect();
    v.sort();
    v
}

/// Two images sharing a base layer, pushed to a fresh open registry.
struct Two {
    reg: Registry,
    a: Image,
    b: Image,
    t: tempfile::TempDir,
}

fn two_images() -> Two {
    let reg = Registry::open();
    let t = tempdir();
    let base = layer(&[("etc/base", &noise(8192, 99))], true);
    let a = Image::new(
        host_arch(),
        vec![base.clone(), layer(&[("a", b"only in a")], true)],
    );
    let b = Image::new(host_arch(), vec![base, layer(&[("b", b"only in b")], true)]);
    let mut layout = Layout::new(&t.path().join("src"));
    layout.add_image("a", &a);
    layout.add_image("b", &b);
    layout.push("a", &reg.addr, "fixture/a:1");
    layout.push("b", &reg.addr, "fixture/b:1");
    Two { reg, a, b, t }
}

#[test]
fn json_outputs_and_stored_files_match_their_schemas() {
    if !registry_tools() {
        return;
    }
    let Two { reg, a, t, .. } = two_images();
    let root = t.path().join("root");
    let name = format!("{}/fixture/a:1", reg.addr);
    ok(ic(&root, t.path()).args(["pull", &name]));

    let images = json_of(&ok(ic(&root, t.path()).args(["images", "--format", "json"])));
    check_schema("images", &images);
    assert_eq!(images[0]["Id"], a.config_digest());
    assert_eq!(images[0]["Digest"], a.manifest_digest());
    let inspect = json_of(&ok(ic(&root, t.path()).args(["inspect", &name])));
    check_schema("inspect", &inspect);
    let history = json_of(&ok(
        ic(&root, t.path()).args(["history", "--format", "json", &name])
    ));
    check_schema("history", &history);
    assert_eq!(history.as_array().unwrap().len(), 2);
    assert_eq!(history[0]["Layer"], a.layers[1].digest);
    let df = json_of(&ok(ic(&root, t.path()).args(["df", "--format", "json"])));
    check_schema("df", &df);
    assert_eq!(df["images"], 1);
    assert_eq!(df["blobs"], 4);
    // Pull unpacked the two layers; nothing in them is shared.
    assert_eq!(df["layers"], 2);
    assert!(df["layer_logical_bytes"].as_u64().unwrap() >= 8192);
    assert_eq!(df["layer_logical_bytes"], df["layer_on_disk_bytes"]);
    assert_eq!(df["dedup_saved_bytes"], 0);
    check_schema(
        "index",
        &json_of(&std::fs::read_to_string(root.join("index.json")).unwrap()),
    );
    check_schema(
        "oci-layout",
        &json_of(&std::fs::read_to_string(root.join("oci-layout")).unwrap()),
    );
    ok(ic(&root, t.path()).args(["login", "-u", "x", "-p", "y", &reg.addr]));
    check_schema(
        "docker-config",
        &json_of(&std::fs::read_to_string(t.path().join(".docker/config.json")).unwrap()),
    );
}

#[test]
fn prune_keeps_every_referenced_blob_and_removes_the_rest() {
    if !registry_tools() {
        return;
    }
    let Two { reg, a, b, t } = two_images();
    let root = t.path().join("root");
    let na = format!("{}/fixture/a:1", reg.addr);
    let nb = format!("{}/fixture/b:1", reg.addr);
    ok(ic(&root, t.path()).args(["pull", &na]));
    ok(ic(&root, t.path()).args(["pull", &nb]));
    // A verified but unreferenced blob, as an interrupted pull leaves behind.
    let stray = b"left over by an interrupted pull";
    let stray_digest = digest_of(stray);
    std::fs::write(root.join("blobs/sha256").join(sha256_hex(stray)), stray).unwrap();

    // Nothing to remove but the stray.
    let out = ok(ic(&root, t.path()).arg("prune"));
    assert!(out.contains(&format!("Deleted: {stray_digest}")), "{out}");
    assert_eq!(out.matches("Deleted:").count(), 1, "{out}");

    ok(ic(&root, t.path()).args(["rmi", &nb]));
    let out = ok(ic(&root, t.path()).arg("prune"));
    let mut expect: Vec<String> = a.digests();
    expect.sort();
    assert_eq!(blob_set(&root), expect, "prune output:\n{out}");
    for d in [
        b.manifest_digest(),
        b.config_digest(),
        b.layers[1].digest.clone(),
    ] {
        assert!(out.contains(&d), "{d} not reported deleted:\n{out}");
    }
    assert!(
        !out.contains(&b.layers[0].digest),
        "shared base layer deleted:\n{out}"
    );
    // The remaining image is whole: skopeo can copy it out of the store.
    let dest = t.path().join("copy");
    let st = Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:{na}", root.display()))
        .arg(format!("oci:{}:a", dest.display()))
        .status()
        .unwrap();
    assert!(st.success());
    ok(ic(&root, t.path()).args(["inspect", &na]));
}

#[test]
fn tag_rmi_history_and_images_table() {
    if !registry_tools() {
        return;
    }
    let Two { reg, a, t, .. } = two_images();
    let root = t.path().join("root");
    let na = format!("{}/fixture/a:1", reg.addr);
    ok(ic(&root, t.path()).args(["pull", &na]));
    ok(ic(&root, t.path()).args(["tag", &na, "local/app:v2"]));
    let id = a.config_digest();
    let short = &id["sha256:".len().."sha256:".len() + 12];

    let table = ok(ic(&root, t.path()).arg("images"));
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("REPOSITORY")
            && lines[0].contains("IMAGE ID")
            && lines[0].ends_with("SIZE"),
        "{table}"
    );
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        table.contains("local/app") && table.contains("v2") && table.contains(short),
        "{table}"
    );

    let v = json_of(&ok(ic(&root, t.path()).args(["inspect", short])));
    let mut tags: Vec<String> = v[0]["RepoTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    tags.sort();
    assert_eq!(tags, vec![na.clone(), "local/app:v2".to_string()]);

    let hist = ok(ic(&root, t.path()).args(["history", "local/app:v2"]));
    assert!(
        hist.contains("fixture layer 1") && hist.contains(short),
        "{hist}"
    );

    let e = fails(ic(&root, t.path()).args(["tag", &na, "Bad:Name"])).1;
    assert!(e.contains("invalid reference"), "{e}");
    let e = fails(ic(&root, t.path()).args(["tag", "nothere", "x:y"])).1;
    assert!(e.contains("no such image"), "{e}");

    // rmi by name removes that name only; by ID, every name.
    let out = ok(ic(&root, t.path()).args(["rmi", "local/app:v2"]));
    assert!(out.contains("Untagged: docker.io/local/app:v2"), "{out}");
    ok(ic(&root, t.path()).args(["tag", &na, "x:1"]));
    ok(ic(&root, t.path()).args(["tag", &na, "y:1"]));
    // An ID several names point at needs -f (Docker's rule); then every name goes.
    let (code, e) = fails(ic(&root, t.path()).args(["rmi", short]));
    assert_eq!(code, 125, "{e}");
    assert!(
        e.contains(&format!("unable to delete {short} (must be forced)"))
            && e.contains("referenced in multiple repositories"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    let out = ok(ic(&root, t.path()).args(["rmi", "-f", short]));
    assert_eq!(out.matches("Untagged:").count(), 3, "{out}");
    let images = json_of(&ok(ic(&root, t.path()).args(["images", "--format", "json"])));
    assert_eq!(images, serde_json::json!([]));
    // Blobs stay until prune.
    assert_eq!(blob_set(&root).len(), 4);
    ok(ic(&root, t.path()).arg("prune"));
    assert!(blob_set(&root).is_empty());
}

#[test]
fn store_directories_are_private_and_blobs_read_only() {
    if !registry_tools() {
        return;
    }
    let Two { reg, t, .. } = two_images();
    let root = t.path().join("root");
    ok(ic(&root, t.path()).args(["pull", &format!("{}/fixture/a:1", reg.addr)]));
    for d in ["", "blobs", "blobs/sha256", "ingest", "locks", "tmp"] {
        let mode = std::fs::metadata(root.join(d))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700, "{d:?} is {mode:o}");
    }
    for e in std::fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .flatten()
    {
        let mode = e.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o444, "{:?}", e.path());
    }
    let mode = std::fs::metadata(root.join("index.json"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode & 0o077, 0, "index.json is {mode:o}");
}

#[test]
fn concurrent_tag_processes_do_not_lose_index_updates() {
    if !registry_tools() {
        return;
    }
    let Two { reg, t, .. } = two_images();
    let root = t.path().join("root");
    let na = format!("{}/fixture/a:1", reg.addr);
    ok(ic(&root, t.path()).args(["pull", &na]));
    let children: Vec<_> = (0..12)
        .map(|i| {
            ic(&root, t.path())
                .args(["tag", &na, &format!("many/t:{i}")])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let images = json_of(&ok(ic(&root, t.path()).args(["images", "--format", "json"])));
    assert_eq!(images.as_array().unwrap().len(), 13, "{images:#}");
}

#[test]
fn corrupt_index_is_a_loud_one_line_error_and_prune_does_nothing() {
    let t = tempdir();
    let root = t.path().join("root");
    // A bare OCI layout (as skopeo writes one) is a store; `images` creates none.
    std::fs::create_dir_all(root.join("blobs/sha256")).unwrap();
    std::fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let blob = b"some blob";
    std::fs::write(root.join("blobs/sha256").join(sha256_hex(blob)), blob).unwrap();
    std::fs::write(root.join("index.json"), "{ truncated").unwrap();
    for args in [&["images"][..], &["prune"][..]] {
        let (code, err) = fails(imgctl(&root).args(args));
        assert_eq!(code, 125);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains("index.json is corrupt"), "{err}");
    }
    assert_eq!(blob_set(&root), vec![digest_of(blob)]);
}
