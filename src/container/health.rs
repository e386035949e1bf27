//! Healthchecks run by the monitor: each probe is `imgctl exec` of the check
//! inside the container (the same namespaces, cgroup, capabilities and seccomp
//! as the container's own processes), killed after its timeout. Docker's rules:
//! `starting` until the first success; `unhealthy` after `retries` failures in
//! a row (failures inside the start period do not count); the last 5 probes are
//! kept.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::monitor::{HealthConfig, MonitorConfig};
use super::state::{Health, HealthProbe, HealthStatus};

/// Output kept per probe (Docker: 4 KiB).
const MAX_OUTPUT: usize = 4096;

fn ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The argv after `imgctl exec ID` for a test.
pub fn command(test: &[String]) -> Vec<String> {
    match test.split_first() {
        Some((k, rest)) if k == "CMD-SHELL" => {
            vec!["/bin/sh".into(), "-c".into(), rest.join(" ")]
        }
        Some((k, rest)) if k == "CMD" => rest.to_vec(),
        _ => test.to_vec(),
    }
}

/// Run one probe.
pub fn probe(cfg: &MonitorConfig, h: &HealthConfig) -> HealthProbe {
    let start = ms_now();
    let argv = command(&h.test);
    let child = std::process::Command::new("/proc/self/exe")
        .arg("--root")
        .arg(&cfg.root)
        .arg("exec")
        .arg(&cfg.id)
        .args(&argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return HealthProbe {
                start,
                end: ms_now(),
                exit_code: -1,
                output: format!("cannot run the healthcheck: {e}"),
            }
        }
    };
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut r| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = (&mut r).take(MAX_OUTPUT as u64).read_to_end(&mut v);
            // Drain the rest so the check never blocks on a full pipe.
            let _ = std::io::copy(&mut r, &mut std::io::sink());
            v
        })
    })
    .collect();
    let deadline = Instant::now() + Duration::from_millis(h.timeout_ms.max(1));
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break None,
        }
    };
    let mut output = Vec::new();
    for r in readers {
        if let Ok(v) = r.join() {
            output.extend(v);
        }
    }
    output.truncate(MAX_OUTPUT);
    let (exit_code, output) = match status {
        Some(s) => (
            s.code().unwrap_or(-1),
            String::from_utf8_lossy(&output).into_owned(),
        ),
        None => (
            -1,
            format!("Health check exceeded timeout ({}ms)", h.timeout_ms),
        ),
    };
    HealthProbe {
        start,
        end: ms_now(),
        exit_code,
        output,
    }
}

/// Fold a probe into the health status.
pub fn record(h: &mut Health, p: HealthProbe, retries: u32, in_start_period: bool) {
    if p.exit_code == 0 {
        h.status = HealthStatus::Healthy;
        h.failing_streak = 0;
    } else if !in_start_period || h.status != HealthStatus::Starting {
        h.failing_streak += 1;
        if h.failing_streak >= retries.max(1) {
            h.status = HealthStatus::Unhealthy;
        }
    }
    h.log.push(p);
    if h.log.len() > 5 {
        let extra = h.log.len() - 5;
        h.log.drain(..extra);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(code: i32) -> HealthProbe {
        HealthProbe {
            start: 1,
            end: 2,
            exit_code: code,
            output: String::new(),
        }
    }

    #[test]
    fn unhealthy_after_retries_and_start_period_failures_do_not_count() {
        let mut h = Health {
            status: HealthStatus::Starting,
            failing_streak: 0,
            log: vec![],
        };
        record(&mut h, probe(1), 2, true);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 0));
        record(&mut h, probe(1), 2, false);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 1));
        record(&mut h, probe(1), 2, false);
        assert_eq!(h.status, HealthStatus::Unhealthy);
        record(&mut h, probe(0), 2, false);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Healthy, 0));
        for _ in 0..10 {
            record(&mut h, probe(0), 2, false);
        }
        assert_eq!(h.log.len(), 5);
        assert_eq!(
            command(&["CMD-SHELL".into(), "exit 1".into()]),
            ["/bin/sh", "-c", "exit 1"]
        );
        assert_eq!(command(&["CMD".into(), "true".into()]), ["true"]);
    }
}
