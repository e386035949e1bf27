//! CI rules: each passes and fails with its exit code; `.dive-ci` verdicts equal dive's.

use std::fs;
use std::process::Command;

use crate::common::*;

use super::fixtures::*;

#[test]
fn every_rule_passes_and_fails_with_its_exit_code() {
    let t = tempdir();
    let layout = t.path().join("img");
    waste_image(&layout);
    let base = t.path().join("base");
    whiteout_image(&base);
    let img = format!("oci:{}:v1", layout.display());
    let base_img = format!("oci:{}:v1", base.display());
    let r = size_json(t.path(), &img, &["--compare", &base_img]);
    let total = r["totals"]["uncompressed_bytes"].as_u64().unwrap();
    let compressed = r["totals"]["compressed_bytes"].as_u64().unwrap();
    let growth = r["compare"]["uncompressed_delta"].as_i64().unwrap();
    let growth_pct =
        growth as f64 * 100.0 / r["compare"]["base_uncompressed_bytes"].as_f64().unwrap();
    let wasted = r["wasted"]["bytes"].as_u64().unwrap();
    let wasted_pct = r["wasted"]["percent"].as_f64().unwrap();
    let eff = r["dive"]["efficiency_score"].as_f64().unwrap();
    // Rule results are part of the JSON report (and validate against the schema).
    let judged = size_json(
        t.path(),
        &img,
        &[
            "--compare",
            &base_img,
            "--max-size",
            &total.to_string(),
            "--min-efficiency",
            "0",
        ],
    );
    let results = judged["rules"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|x| x["passed"] == true), "{results:?}");
    assert_eq!(results[0]["name"], "max-size");
    let cases: Vec<(&str, String, String)> = vec![
        ("--max-size", total.to_string(), (total - 1).to_string()),
        (
            "--max-compressed-size",
            compressed.to_string(),
            (compressed - 1).to_string(),
        ),
        ("--max-growth", growth.to_string(), (growth - 1).to_string()),
        (
            "--max-growth",
            format!("{}%", growth_pct + 0.01),
            format!("{}%", growth_pct - 0.01),
        ),
        ("--max-wasted", wasted.to_string(), (wasted - 1).to_string()),
        (
            "--max-wasted",
            format!("{}%", wasted_pct + 0.01),
            format!("{}%", wasted_pct - 0.01),
        ),
        (
            "--min-efficiency",
            format!("{}", eff - 1e-9),
            format!("{}", eff + 1e-9),
        ),
    ];
    for (flag, pass, fail) in cases {
        let run = |v: &str| {
            exit_of(imgctl(t.path()).args([
                "size",
                "--progress",
                "quiet",
                "--compare",
                &base_img,
                &img,
                flag,
                v,
            ]))
        };
        let (code, err) = run(&pass);
        assert_eq!(code, 0, "{flag} {pass} should pass: {err}");
        let (code, err) = run(&fail);
        assert_eq!(code, RULE_FAILED, "{flag} {fail} should fail: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "one line per failed rule: {err}");
        assert!(lines[0].starts_with("imgctl: size rule failed: "), "{err}");
    }
    // Errors are not rule failures.
    let (code, err) = exit_of(imgctl(t.path()).args(["size", &img, "--max-growth", "1"]));
    assert_eq!(code, 125, "max-growth without --compare: {err}");
    let (code, err) = exit_of(imgctl(&t.path().join("store")).args(["size", "no-such-image"]));
    assert_eq!(code, 125);
    assert!(err.contains("no such image"), "{err}");
    let (code, _) = exit_of(imgctl(t.path()).args(["size", &img, "--max-size", "3 parsecs"]));
    assert_eq!(code, 125);
}

#[test]
fn dive_ci_rules_give_dives_verdict() {
    let Some(dive) = dive_ready() else { return };
    let t = tempdir();
    let layout = t.path().join("img");
    waste_image(&layout);
    let img = format!("oci:{}:v1", layout.display());
    let archive = t.path().join("image.tar");
    docker_archive(&layout, "v1", &archive);
    let r = size_json(t.path(), &img, &[]);
    let eff = r["dive"]["efficiency_score"].as_f64().unwrap();
    let wasted = r["dive"]["inefficient_bytes"].as_u64().unwrap();
    let ratio = r["dive"]["user_wasted_ratio"].as_f64().unwrap();
    let files = [
        format!("rules:\n  lowestEfficiency: {}\n  highestWastedBytes: disabled\n  highestUserWastedPercent: disabled\n", eff - 0.001),
        format!("rules:\n  lowestEfficiency: {}\n  highestWastedBytes: disabled\n  highestUserWastedPercent: disabled\n", eff + 0.001),
        format!("rules:\n  lowestEfficiency: disabled\n  highestWastedBytes: {}\n  highestUserWastedPercent: disabled\n", wasted),
        format!("rules:\n  lowestEfficiency: disabled\n  highestWastedBytes: {}B\n  highestUserWastedPercent: disabled\n", wasted - 1),
        "rules:\n  lowestEfficiency: disabled\n  highestWastedBytes: 1MB\n  highestUserWastedPercent: disabled\n".to_string(),
        "rules:\n  lowestEfficiency: disabled\n  highestWastedBytes: 1kB\n  highestUserWastedPercent: disabled\n".to_string(),
        format!("rules:\n  lowestEfficiency: disabled\n  highestWastedBytes: disabled\n  highestUserWastedPercent: {}\n", ratio + 0.001),
        format!("rules:\n  lowestEfficiency: disabled\n  highestWastedBytes: disabled\n  highestUserWastedPercent: {}\n", ratio - 0.001),
        "# all three, as dive's README shows them\nrules:\n  lowestEfficiency: 0.95\n  highestWastedBytes: 20MB\n  highestUserWastedPercent: 0.20\n".to_string(),
    ];
    let mut verdicts = Vec::new();
    for (i, text) in files.iter().enumerate() {
        let f = t.path().join(format!("dive-ci-{i}"));
        fs::write(&f, text).unwrap();
        let dive_code = output(
            Command::new(&dive)
                .current_dir(t.path())
                .args(["--source", "docker-archive", "--ci", "--ci-config"])
                .arg(&f)
                .arg(&archive),
        )
        .status
        .code();
        let (ours, err) = exit_of(
            imgctl(t.path())
                .args(["size", "--progress", "quiet", "--rules"])
                .arg(&f)
                .arg(&img),
        );
        let dive_pass = dive_code == Some(0);
        assert_eq!(
            ours == 0,
            dive_pass,
            "rules {text:?}: dive {dive_code:?}, imgctl {ours} {err}"
        );
        assert!(ours == 0 || ours == RULE_FAILED, "{err}");
        verdicts.push(dive_pass);
    }
    // The cases were chosen so both verdicts occur.
    assert!(
        verdicts.contains(&true) && verdicts.contains(&false),
        "{verdicts:?}"
    );
}
