//! dive's figures against the real dive 0.13.1; wasted bytes against hand counts.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::layer::{dir, file, whiteout};
use crate::common::registry::noise;
use crate::common::*;

use super::fixtures::*;

#[test]
fn nginx_figures_equal_dive_and_gzip() {
    if !require(
        Path::new(NGINX).join("index.json").is_file(),
        "nginx fixture (scripts/fixtures/nginx.sh)",
    ) {
        return;
    }
    let Some(dive) = dive_ready() else { return };
    let root = tempdir();
    let ours = size_json(root.path(), &format!("oci:{NGINX}"), &[]);
    assert_same_as_dive(&dive, Path::new(NGINX), "latest", &ours);
    assert_uncompressed_sizes(Path::new(NGINX), &ours);
    assert_eq!(
        ours["layers"][0]["created_by"],
        "debootstrap --variant=minbase"
    );
}

#[test]
fn whiteouts_and_opaque_dirs_equal_dive() {
    let Some(dive) = dive_ready() else { return };
    let t = tempdir();
    let layout = t.path().join("img");
    whiteout_image(&layout);
    let ours = size_json(t.path(), &format!("oci:{}:v1", layout.display()), &[]);
    assert_same_as_dive(&dive, &layout, "v1", &ours);
    assert_uncompressed_sizes(&layout, &ours);
    // Complete waste: etc/a (100) deleted, var/lib/z (70) under a deleted
    // directory, opt/x (300) and opt/y (50) hidden by the opaque directory.
    let items: Vec<(String, u64, String, u64)> = ours["wasted"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["path"].as_str().unwrap().into(),
                w["layer"].as_u64().unwrap(),
                w["reason"].as_str().unwrap().into(),
                w["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, u64, String, u64)> = vec![
        ("/opt/x".into(), 0, "opaque".into(), 300),
        ("/etc/a".into(), 0, "deleted".into(), 100),
        ("/var/lib/z".into(), 0, "deleted".into(), 70),
        ("/opt/y".into(), 0, "opaque".into(), 50),
    ];
    assert_eq!(items, want);
    assert_eq!(ours["wasted"]["bytes"], 520);
    assert_eq!(ours["layers"][1]["whiteouts"], 2);
    assert_eq!(ours["layers"][1]["opaque_dirs"], 1);
    assert_eq!(ours["totals"]["empty_layers"], 1);
    assert_eq!(ours["empty_layers"][0]["created_by"], "ENV A=1");
    assert_eq!(ours["layers"][2]["created_by"], "COPY c /etc/c");
}

#[test]
fn built_to_waste_equals_dive_and_the_hand_count() {
    let Some(dive) = dive_ready() else { return };
    let t = tempdir();
    let layout = t.path().join("img");
    waste_image(&layout);
    let ours = size_json(t.path(), &format!("oci:{}:v1", layout.display()), &[]);
    assert_same_as_dive(&dive, &layout, "v1", &ours);
    assert_uncompressed_sizes(&layout, &ours);
    assert_eq!(ours["wasted"]["bytes"].as_u64(), Some(HAND_COUNT));
    let by_path: BTreeMap<(String, u64), (String, u64)> = ours["wasted"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                (
                    w["path"].as_str().unwrap().into(),
                    w["layer"].as_u64().unwrap(),
                ),
                (
                    w["reason"].as_str().unwrap().into(),
                    w["bytes"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    let want: BTreeMap<(String, u64), (String, u64)> = [
        (("/tmp/big", 1), ("deleted", BIG as u64)),
        (("/app/config", 1), ("overwritten", 300)),
        (("/app/config", 2), ("overwritten", 400)),
        (("/copy/two", 3), ("duplicate", DUP as u64)),
        (("/data/hidden", 0), ("opaque", HIDDEN as u64)),
    ]
    .into_iter()
    .map(|((p, l), (r, b))| ((p.to_string(), l), (r.to_string(), b)))
    .collect();
    assert_eq!(by_path, want);
    // dive misses what the opaque directory hides and the duplicate content.
    let dive_bytes = ours["dive"]["inefficient_bytes"].as_u64().unwrap();
    assert_eq!(dive_bytes, BIG as u64 + 300 + 400 + 500);
    assert_eq!(ours["largest_files"][0]["path"], "/copy/one");
    assert_eq!(ours["empty_layers"].as_array().unwrap().len(), 2);
    assert_eq!(
        ours["layers"][3]["created_by"],
        "RUN write config v3 && cp twice"
    );
}

/// dive's corner cases, each compared with the real dive: a whiteout of a path that
/// does not exist below (dive stops walking that layer), a whiteout of a directory
/// that only existed implicitly (dive sizes it 0), a whiteout in the first layer, a
/// path twice in one layer, a file replaced by a directory, links, empty directories
/// in several layers, and the busybox fixture (hardlinks).
#[test]
fn dive_corner_cases_equal_dive() {
    let Some(dive) = dive_ready() else { return };
    use crate::common::layer::{hardlink, symlink};
    let t = tempdir();
    let images: Vec<(&str, Layers)> = vec![
        (
            "missing-whiteout",
            vec![
                (
                    "l0",
                    vec![
                        dir("a"),
                        file("a/x", &noise(10, 1)),
                        file("z", &noise(20, 2)),
                    ],
                ),
                (
                    "l1",
                    vec![
                        dir("a"),
                        whiteout("a/.wh.nothere"),
                        file("a/y", &noise(30, 3)),
                        file("z", &noise(40, 4)),
                    ],
                ),
            ],
        ),
        (
            "implicit-dir-whiteout",
            vec![
                (
                    "l0",
                    vec![
                        file("imp/f", &noise(100, 5)),
                        dir("exp"),
                        file("exp/g", &noise(200, 6)),
                    ],
                ),
                ("l1", vec![whiteout(".wh.imp"), whiteout(".wh.exp")]),
                ("l2", vec![dir("imp"), dir("exp")]),
            ],
        ),
        (
            "first-layer-whiteout",
            vec![
                ("l0", vec![whiteout(".wh.ghost"), file("b", &noise(10, 7))]),
                ("l1", vec![file("b", &noise(11, 8))]),
            ],
        ),
        (
            "duplicates-and-type-changes",
            vec![
                (
                    "l0",
                    vec![
                        file("x", &noise(50, 9)),
                        file("d", &noise(60, 10)),
                        file("d", &noise(70, 11)),
                        dir("e"),
                        dir("e2"),
                    ],
                ),
                (
                    "l1",
                    vec![
                        dir("x"),
                        file("x/y", &noise(5, 12)),
                        symlink("s", "/x/y"),
                        hardlink("h", "x/y"),
                        dir("e"),
                        dir("e2"),
                    ],
                ),
                (
                    "l2",
                    vec![dir("e"), whiteout("x/.wh.y"), file("s", &noise(3, 13))],
                ),
            ],
        ),
    ];
    for (name, layers) in images {
        let layout = t.path().join(name);
        write_image(&layout, "v1", &layers, &[]);
        let ours = size_json(t.path(), &format!("oci:{}:v1", layout.display()), &[]);
        assert_same_as_dive(&dive, &layout, "v1", &ours);
        let inefficient = ours["dive"]["inefficient_bytes"].as_u64().unwrap();
        match name {
            // The walk of layer 1 stopped at the whiteout: /z counts once.
            "missing-whiteout" => assert_eq!(inefficient, 0),
            // /imp (implicit) is sized 0, /exp (explicit) 200.
            "implicit-dir-whiteout" => assert_eq!(inefficient, 200),
            _ => {}
        }
    }
    let busybox = Path::new("/var/cache/imgctl-testdata/busybox-oci");
    if busybox.join("index.json").is_file() {
        let ours = size_json(t.path(), &format!("oci:{}", busybox.display()), &[]);
        let tag = "latest";
        assert_same_as_dive(&dive, busybox, tag, &ours);
    }
}
