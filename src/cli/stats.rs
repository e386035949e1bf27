//! `imgctl stats [CONTAINER…] [--no-stream] [--format table|json]`: what running
//! containers use, from their cgroups' own counters (see
//! [`crate::container::stats`]). Streams a refreshed table every second until
//! interrupted, or prints one sample with `--no-stream`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::Globals;
use crate::container::stats::{self, Sample};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  imgctl stats\n  imgctl stats --no-stream web\n  imgctl stats --no-stream --format json"
)]
pub struct Args {
    /// Containers (id, id prefix or name); default: every running container.
    pub containers: Vec<String>,
    /// Print one sample and exit.
    #[arg(long)]
    pub no_stream: bool,
    /// table (Docker's columns) or json (one object per container and line).
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Where cgroupfs is mounted; v1 or v2 is detected there.
    #[arg(long, value_name = "DIR", default_value = "/sys/fs/cgroup")]
    pub cgroup_root: PathBuf,
}

/// Binary units for memory (`MiB`), as `docker stats`.
fn binary(n: u64) -> String {
    super::units::binary_size(n)
}

/// Decimal units for I/O (`kB`, `MB`), as `docker stats`.
fn decimal(n: u64) -> String {
    super::units::size(n)
}

fn table(samples: &[Sample]) -> String {
    let mut rows = vec![[
        "CONTAINER ID".to_string(),
        "NAME".into(),
        "CPU %".into(),
        "MEM USAGE / LIMIT".into(),
        "MEM %".into(),
        "NET I/O".into(),
        "BLOCK I/O".into(),
        "PIDS".into(),
    ]];
    for s in samples {
        rows.push([
            s.id.chars().take(12).collect(),
            if s.name.is_empty() {
                "--".into()
            } else {
                s.name.clone()
            },
            format!("{:.2}%", s.cpu_percent),
            format!(
                "{} / {}",
                binary(s.memory_bytes),
                binary(s.memory_limit_bytes)
            ),
            format!("{:.2}%", s.memory_percent),
            format!("{} / {}", decimal(s.net_rx_bytes), decimal(s.net_tx_bytes)),
            format!(
                "{} / {}",
                decimal(s.block_read_bytes),
                decimal(s.block_write_bytes)
            ),
            s.pids.to_string(),
        ]);
    }
    let mut width = [0usize; 8];
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

fn render(format: &str, samples: &[Sample]) -> anyhow::Result<String> {
    if format == "json" {
        let mut out = String::new();
        for s in samples {
            out.push_str(&serde_json::to_string(s)?);
            out.push('\n');
        }
        Ok(out)
    } else {
        Ok(table(samples))
    }
}

pub fn run(g: &Globals, a: Args) -> anyhow::Result<ExitCode> {
    let interval = Duration::from_secs(1);
    let mut stdout = std::io::stdout();
    loop {
        let samples = stats::sample(&g.root, &a.cgroup_root, &a.containers, interval)?;
        let text = render(&a.format, &samples)?;
        if a.no_stream {
            stdout.write_all(text.as_bytes())?;
            return Ok(ExitCode::SUCCESS);
        }
        let clear = if a.format == "table" {
            "\x1b[2J\x1b[H"
        } else {
            ""
        };
        if write!(stdout, "{clear}{text}")
            .and_then(|_| stdout.flush())
            .is_err()
        {
            // The reader went away (a closed pipe): stop quietly.
            return Ok(ExitCode::SUCCESS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_as_docker() {
        assert_eq!(binary(50 << 20), "50MiB");
        assert_eq!(binary(512), "512B");
        assert_eq!(decimal(1_500), "1.5kB");
        let s = Sample {
            id: "0123456789abcdef".into(),
            name: "web".into(),
            cpu_percent: 99.5,
            memory_bytes: 50 << 20,
            memory_limit_bytes: 1 << 30,
            memory_percent: 4.88,
            net_rx_bytes: 0,
            net_tx_bytes: 0,
            block_read_bytes: 0,
            block_write_bytes: 4096,
            pids: 3,
        };
        let t = table(&[s]);
        assert!(t.starts_with("CONTAINER ID"), "{t}");
        assert!(
            t.contains("0123456789ab   web") && t.contains("99.50%"),
            "{t}"
        );
        assert!(t.contains("50MiB / 1GiB"), "{t}");
        assert!(t.contains("0B / 4.1kB"), "{t}");
    }
}
