use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::oci::{Reference, ANNOTATION_REF_NAME};

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("imgctl-store-")
        .tempdir()
        .unwrap()
}

fn manifest_for(store: &Store, config: &[u8], layers: &[&[u8]]) -> Descriptor {
    let c = store.write_blob(config).unwrap();
    let mut ls = Vec::new();
    for l in layers {
        let d = store.write_blob(l).unwrap();
        ls.push(serde_json::json!({"mediaType": MediaType::OciLayerGzip.as_str(), "digest": d, "size": l.len()}));
    }
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MediaType::OciManifest.as_str(),
        "config": {"mediaType": MediaType::OciConfig.as_str(), "digest": c, "size": config.len()},
        "layers": ls,
    });
    let body = serde_json::to_vec(&m).unwrap();
    let d = store.write_blob(&body).unwrap();
    Descriptor::new(MediaType::OciManifest, d, body.len() as u64)
}

#[test]
fn open_creates_a_private_oci_layout() {
    let t = tmp();
    let root = t.path().join("s");
    let s = Store::open(&root).unwrap();
    let layout: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    assert!(s.index().unwrap().manifests.is_empty());
    for d in ["", "blobs", "blobs/sha256", "ingest", "locks", "tmp"] {
        let mode = fs::metadata(root.join(d)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{d}");
    }
    // Re-open is idempotent.
    Store::open(&root).unwrap();
}

#[test]
fn blobs_are_verified_before_they_are_visible() {
    let t = tmp();
    let s = Store::open(t.path()).unwrap();
    let good = Digest::of(b"hello");
    let IngestStart::Writer(mut w) = s.try_ingest(&good, Some(5)).unwrap() else {
        panic!("expected writer")
    };
    w.write_all(b"hel").unwrap();
    assert!(!s.has_blob(&good));
    w.write_all(b"lo").unwrap();
    w.commit().unwrap();
    assert!(s.has_blob(&good));
    let mode = fs::metadata(s.blob_path(&good))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o444);
    assert!(matches!(
        s.try_ingest(&good, Some(5)).unwrap(),
        IngestStart::Present
    ));

    // Wrong content: refused, not visible, partial data gone.
    let other = Digest::of(b"world");
    let IngestStart::Writer(mut w) = s.try_ingest(&other, Some(5)).unwrap() else {
        panic!()
    };
    w.write_all(b"WORLD").unwrap();
    assert!(matches!(w.commit(), Err(StoreError::DigestMismatch { .. })));
    assert!(!s.has_blob(&other));
    assert_eq!(s.partial_len(&other), 0);

    // Longer than declared: refused at write time.
    let IngestStart::Writer(mut w) = s.try_ingest(&other, Some(5)).unwrap() else {
        panic!()
    };
    assert!(matches!(
        w.write_all(b"worlds"),
        Err(StoreError::TooLarge { .. })
    ));
}

#[test]
fn ingest_resumes_from_the_partial_file_and_locks_out_others() {
    let t = tmp();
    let s = Store::open(t.path()).unwrap();
    let data = vec![7u8; 3 << 20];
    let d = Digest::of(&data);
    {
        let IngestStart::Writer(mut w) = s.try_ingest(&d, Some(data.len() as u64)).unwrap() else {
            panic!()
        };
        w.write_all(&data[..(2 << 20) + 5]).unwrap();
        // While held, another opener is told it is busy.
        assert!(matches!(s.try_ingest(&d, None).unwrap(), IngestStart::Busy));
        w.flush().unwrap();
    }
    assert_eq!(s.partial_len(&d), (2 << 20) + 5);
    let IngestStart::Writer(mut w) = s.try_ingest(&d, Some(data.len() as u64)).unwrap() else {
        panic!()
    };
    assert_eq!(w.offset(), (2 << 20) + 5);
    w.write_all(&data[(2 << 20) + 5..]).unwrap();
    w.commit().unwrap();
    assert_eq!(fs::read(s.blob_path(&d)).unwrap(), data);
}

#[test]
fn images_tags_and_prune() {
    let t = tmp();
    let s = Store::open(t.path()).unwrap();
    let a = manifest_for(
        &s,
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
        &[b"layer-a", b"shared"],
    );
    let b = manifest_for(
        &s,
        br#"{"architecture":"arm64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
        &[b"layer-b", b"shared"],
    );
    let stray = s.write_blob(b"nobody references me").unwrap();
    let ra = Reference::parse("a").unwrap();
    let rb = Reference::parse("example.com/b:1").unwrap();
    s.set_image(&ra, a.clone(), None).unwrap();
    s.set_image(&rb, b.clone(), None).unwrap();
    let idx = s.index().unwrap();
    assert_eq!(idx.manifests.len(), 2);
    assert_eq!(
        idx.manifests[0].annotation(ANNOTATION_REF_NAME),
        Some("docker.io/library/a:latest")
    );
    // Find by short name, by ID prefix.
    assert_eq!(s.find_image("a").unwrap().descriptor.digest, a.digest);
    let cfg = s.find_image("a").unwrap().manifest.config.digest;
    assert_eq!(
        s.find_image(&cfg.hex()[..12]).unwrap().descriptor.digest,
        a.digest
    );
    assert!(matches!(
        s.find_image("zzz"),
        Err(StoreError::ImageNotFound { .. })
    ));

    let report = s.prune().unwrap();
    let removed: Vec<_> = report.removed.iter().map(|(d, _)| d.clone()).collect();
    assert_eq!(removed, vec![stray.clone()]);
    assert!(!s.has_blob(&stray));

    // Untag b: its unique blobs go, the shared layer stays.
    s.remove_name(&rb.to_string()).unwrap();
    let report = s.prune().unwrap();
    assert_eq!(report.removed.len(), 3, "manifest, config, layer-b");
    assert!(s.has_blob(&Digest::of(b"shared")));
    assert!(s.has_blob(&Digest::of(b"layer-a")));
    assert!(!s.has_blob(&Digest::of(b"layer-b")));
    let u = s.usage().unwrap();
    assert_eq!(u.blobs, u.referenced_blobs);
}

#[test]
fn corrupt_index_fails_loudly_and_gc_does_not_run() {
    let t = tmp();
    let s = Store::open(t.path()).unwrap();
    let keep = s.write_blob(b"x").unwrap();
    fs::write(t.path().join("index.json"), b"{ not json").unwrap();
    assert!(matches!(s.prune(), Err(StoreError::Corrupt { .. })));
    assert!(s.has_blob(&keep));
}

#[test]
fn blob_reader_opens_committed_blobs_only() {
    let t = tmp();
    let s = Store::open(t.path()).unwrap();
    let d = s.write_blob(b"content").unwrap();
    let r: &dyn BlobReader = &s;
    let mut out = String::new();
    r.open_blob(&d).unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(out, "content");
    let e = r.open_blob(&Digest::of(b"absent")).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
}

/// `--root DIR` on an existing directory used to chmod it 0700 (a 1777 directory
/// became 0700 after a read-only `images`).
#[test]
fn an_existing_directory_is_never_chmodded() {
    let t = tmp();
    let root = t.path().join("shared");
    fs::create_dir(&root).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o1777)).unwrap();
    let s = Store::open_existing(&root).unwrap();
    assert!(s.image_records().unwrap().is_empty());
    assert_eq!(
        fs::read_dir(&root).unwrap().count(),
        0,
        "opening for reading created nothing"
    );
    Store::open(&root).unwrap();
    let mode = fs::metadata(&root).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o1777, "the named directory keeps its mode");
    // What the store creates inside is private.
    for d in ["blobs", "ingest", "locks", "tmp"] {
        let mode = fs::metadata(root.join(d)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{d}");
    }
}

#[test]
fn a_non_empty_non_store_directory_is_refused() {
    let t = tmp();
    let root = t.path().join("home");
    fs::create_dir(&root).unwrap();
    fs::write(root.join("notes.txt"), "mine").unwrap();
    for r in [Store::open(&root), Store::open_existing(&root)] {
        let e = r.unwrap_err();
        assert!(matches!(e, StoreError::NotAStore { .. }), "{e}");
        assert!(e.to_string().contains("notes.txt"), "{e}");
    }
    let names: Vec<_> = fs::read_dir(&root).unwrap().flatten().collect();
    assert_eq!(names.len(), 1, "nothing was created");
    // A directory holding only what imgctl itself puts there (e.g. the container
    // state `run --rootfs` writes before any pull) or lost+found becomes a store.
    let root = t.path().join("fresh");
    fs::create_dir_all(root.join("containers")).unwrap();
    fs::create_dir_all(root.join("lost+found")).unwrap();
    Store::open(&root).unwrap();
    assert!(root.join("oci-layout").is_file());
}

/// Read-only commands never create a store: a missing root reads as an empty one.
#[test]
fn open_existing_on_a_missing_root_creates_nothing() {
    let t = tmp();
    let root = t.path().join("absent");
    let s = Store::open_existing(&root).unwrap();
    assert!(s.image_records().unwrap().is_empty());
    assert!(s.index().unwrap().manifests.is_empty());
    let u = s.usage().unwrap();
    assert_eq!((u.images, u.blobs, u.ingest_bytes), (0, 0, 0));
    assert!(matches!(
        s.find_image("nginx"),
        Err(StoreError::ImageNotFound { .. })
    ));
    assert!(s.prune().unwrap().removed.is_empty());
    assert!(!root.exists(), "no store was created");
    // A store that does exist opens and sees its images.
    let made = Store::open(&root).unwrap();
    let d = manifest_for(&made, b"{}", &[b"layer"]);
    made.update_index(|i| {
        i.manifests.push(d.clone());
        Ok(())
    })
    .unwrap();
    assert_eq!(
        Store::open_existing(&root)
            .unwrap()
            .index()
            .unwrap()
            .manifests
            .len(),
        1
    );
}

#[test]
fn a_pinned_reference_resolves_by_digest_in_its_repository_only() {
    let t = tmp();
    let s = Store::open(t.path()).unwrap();
    let img = manifest_for(
        &s,
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#,
        &[b"layer"],
    );
    // What the registry served (an index, say), recorded beside the stored manifest.
    let served = s
        .write_blob(br#"{"schemaVersion":2,"manifests":[]}"#)
        .unwrap();
    let name = Reference::parse("example.com/app:1").unwrap();
    s.set_image(&name, img.clone(), Some(&served)).unwrap();
    let found = |q: &str| s.find_image(q).map(|r| r.descriptor.digest);
    // By the served digest and by the stored one; a tag beside it is ignored.
    assert_eq!(
        found(&format!("example.com/app@{served}")).unwrap(),
        img.digest
    );
    assert_eq!(
        found(&format!("example.com/app:other@{served}")).unwrap(),
        img.digest
    );
    assert_eq!(
        found(&format!("example.com/app@{}", img.digest)).unwrap(),
        img.digest
    );
    // Another repository, an unknown digest, a layer's digest: not found (no error).
    let layer = Digest::of(b"layer");
    for q in [
        format!("example.com/other@{served}"),
        format!("example.com/app@{}", Digest::of(b"nothing")),
        format!("example.com/app@{layer}"),
    ] {
        assert!(
            matches!(s.find_image(&q), Err(StoreError::ImageNotFound { .. })),
            "{q}"
        );
    }
}
