//! `imgctl size IMAGE --probe [--probe-runs N] -- CMD…`: the start-up and memory
//! figures users compare images by. CMD runs N times in the sandbox (network
//! none, Docker's defaults, output discarded); the report gets the median time
//! from the container's creation to its exit and the peak memory of its cgroup
//! (v1 `memory.max_usage_in_bytes`, v2 `memory.peak`).
//!
//! This is why `report` sits above `container` in the layering: it starts
//! containers through [`crate::container::run_silent_report`], the same path as
//! `imgctl run`.

use serde::{Deserialize, Serialize};

use super::ReportError;

/// What to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRequest {
    /// The command (replaces the image's CMD; its ENTRYPOINT stays, as `docker run`).
    pub command: Vec<String>,
    pub runs: usize,
    /// Where cgroupfs is mounted.
    pub cgroup_root: std::path::PathBuf,
}

/// The probe's figures in the size report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    pub command: Vec<String>,
    pub runs: usize,
    /// Median of `wall_seconds`.
    pub median_seconds: f64,
    /// Each run's time from the container's creation to its exit.
    pub wall_seconds: Vec<f64>,
    /// The highest cgroup memory peak over the runs (absent when the kernel
    /// keeps no peak).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<u64>,
    /// Median of the runs' cgroup memory peaks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median_peak_memory_bytes: Option<u64>,
    /// CPU time of each run, nanoseconds.
    pub cpu_ns: Vec<u64>,
    pub cgroup_version: u8,
}

fn median_f(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn median_u(v: &[u64]) -> u64 {
    let mut s = v.to_vec();
    s.sort_unstable();
    match s.len() {
        0 => 0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2,
    }
}

fn probe_err(detail: impl Into<String>) -> ReportError {
    ReportError::BadThreshold {
        what: "--probe".into(),
        detail: detail.into(),
    }
}

/// Run the probe on `image` (a store name or ID, or `oci:DIR[:TAG]`; a registry
/// image must be pulled first, since `size` never writes registry content to the
/// store).
pub fn probe(
    root: &std::path::Path,
    image: &str,
    req: &ProbeRequest,
) -> Result<ProbeReport, ReportError> {
    use crate::container::{self, PrepareRequest, RootfsSource, RunFlags, RunRequest};
    if req.command.is_empty() {
        return Err(probe_err(
            "no command: imgctl size IMAGE --probe -- CMD [ARG...]",
        ));
    }
    if req.runs == 0 {
        return Err(probe_err("--probe-runs must be at least 1"));
    }
    let mut walls = Vec::new();
    let mut peaks = Vec::new();
    let mut cpu = Vec::new();
    let mut version = 0;
    for i in 0..req.runs {
        let resolved = crate::image::resolve_image(root, image).map_err(|e| {
            probe_err(format!(
                "{image}: {e} (the probe runs images from the store or an OCI layout; pull it first)"
            ))
        })?;
        let id = container::new_id();
        let flags = RunFlags {
            id: id.clone(),
            cmd: req.command.clone(),
            hostname: Some(id.chars().take(12).collect()),
            ..Default::default()
        };
        let run = RunRequest {
            prepare: PrepareRequest {
                root: root.to_path_buf(),
                flags,
                rootfs: RootfsSource::Image(resolved),
                state_dir: None,
            },
            name: None,
            image_name: Some(image.to_string()),
            remove: true,
            init: false,
            interactive: false,
            cgroup_root: req.cgroup_root.clone(),
        };
        let (outcome, report) = container::run_silent_report(run)
            .map_err(|e| probe_err(format!("run {} of {}: {e}", i + 1, req.runs)))?;
        if outcome.exit_code() != 0 {
            return Err(probe_err(format!(
                "{:?} exited with status {} on run {} of {}; probe a command that succeeds",
                req.command.join(" "),
                outcome.exit_code(),
                i + 1,
                req.runs
            )));
        }
        walls.push(report.took.as_secs_f64());
        version = report.cgroup_version.unwrap_or(0);
        if let Some(s) = &report.stats {
            cpu.push(s.cpu_ns);
            if let Some(p) = s.memory_peak {
                peaks.push(p);
            }
        }
    }
    Ok(ProbeReport {
        command: req.command.clone(),
        runs: req.runs,
        median_seconds: median_f(&walls),
        wall_seconds: walls,
        peak_memory_bytes: peaks.iter().copied().max(),
        median_peak_memory_bytes: (!peaks.is_empty()).then(|| median_u(&peaks)),
        cpu_ns: cpu,
        cgroup_version: version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median_f(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_f(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median_u(&[10, 30, 20, 40]), 25);
        assert_eq!(median_u(&[]), 0);
    }
}
