//! `imgctl size IMAGE --probe [--probe-runs N] -- CMD`: CMD runs N times in the
//! sandbox; the report has each run's start-to-exit time, their median and the
//! cgroup's peak memory, and nothing of the runs is left behind.

use std::path::Path;

use super::fixtures::size_json;
use crate::common::sandbox::{ready, serial};
use crate::common::{imgctl, require, tempdir};

fn busybox_layout() -> String {
    let dir =
        std::env::var("IMGCTL_TESTDATA").unwrap_or_else(|_| "/var/cache/imgctl-testdata".into());
    format!("{dir}/busybox-oci")
}

#[test]
fn probe_reports_median_time_and_peak_memory() {
    let layout = busybox_layout();
    if !ready()
        || !require(
            Path::new(&layout).join("index.json").is_file(),
            "the busybox fixture",
        )
    {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let store = t.path().join("store");
    let image = format!("oci:{layout}:latest");
    let small = size_json(
        &store,
        &image,
        &["--probe", "--probe-runs", "3", "--", "/bin/true"],
    );
    let p = &small["probe"];
    assert_eq!(p["runs"], 3, "{p}");
    let walls: Vec<f64> = p["wall_seconds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(walls.len(), 3);
    let mut sorted = walls.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    assert_eq!(p["median_seconds"].as_f64().unwrap(), sorted[1], "{p}");
    assert!(sorted[0] > 0.0 && sorted[2] < 30.0, "{p}");
    // A command holding a 24 MiB buffer peaks above 24 MiB; `true` does not.
    let big = size_json(
        &store,
        &image,
        &[
            "--probe",
            "--probe-runs",
            "1",
            "--",
            "dd",
            "if=/dev/zero",
            "of=/dev/null",
            "bs=24M",
            "count=1",
        ],
    );
    let small_peak = p["peak_memory_bytes"].as_u64().unwrap();
    let big_peak = big["probe"]["peak_memory_bytes"].as_u64().unwrap();
    eprintln!(
        "probe: /bin/true median {:.3} s, peak {small_peak} B; dd bs=24M peak {big_peak} B",
        sorted[1]
    );
    assert!(big_peak >= 24 << 20, "dd peak {big_peak}");
    assert!(
        small_peak < 24 << 20 && small_peak > 0,
        "true peak {small_peak}"
    );
    // The table has the probe line; the runs left no container state.
    let table = crate::common::ok(imgctl(&store).args([
        "size",
        "--progress",
        "quiet",
        &image,
        "--probe",
        "--probe-runs",
        "1",
        "--",
        "/bin/true",
    ]));
    assert!(
        table.contains("Probe") && table.contains("median"),
        "{table}"
    );
    let left: Vec<_> = std::fs::read_dir(store.join("containers"))
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    assert!(left.is_empty(), "state left: {left:?}");
    // A failing command and a missing one: one line, exit 125.
    for cmd in [&["/bin/false"][..], &["/no/such"][..]] {
        let (code, err) = crate::common::fails(
            imgctl(&store)
                .args(["size", "--progress", "quiet", &image, "--probe", "--"])
                .args(cmd),
        );
        assert_eq!(code, 125, "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("--probe"), "{err}");
    }
}
