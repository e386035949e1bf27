//! Registries that lie: tampered or altered content, oversized manifests, configs and
//! blobs, and redirects that must not carry credentials.

use super::*;

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
fn redirect_to_another_origin_does_not_carry_authorization() {
    if !registry_tools() {
        return;
    }
    let open = Registry::open();
    let t = tempdir();
    let img = small_image(host_arch(), 30);
    push_image(&t.path().join("src"), &img, &open.addr, "private/redir:v1");
    let reg = Registry::start(
        Auth::Basic {
            user: "u",
            pass: "p",
        },
        Some(&open.storage),
    );
    // Blob storage elsewhere: a second origin in front of an open registry.
    let storage_side = Proxy::start(&open.addr);
    let front = Proxy::start_with(
        &reg.addr,
        Faults {
            redirect_blobs_to: Some(format!("http://{}", storage_side.addr)),
            ..Faults::default()
        },
    );
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
