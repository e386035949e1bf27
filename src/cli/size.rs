//! `imgctl size`: per-layer sizes, dive's efficiency, wasted bytes, comparisons and
//! CI rules for an image in the store, an OCI layout or a registry. Parses the
//! arguments, calls [`crate::report::size`] once, renders.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::Context;

use super::units;
use super::Globals;
use crate::oci::Platform;
use crate::report::{
    self, parse_amount, parse_dive_bytes, LayerReport, Rule, Rules, SizeOptions, SizeRequest,
};

/// Exit status when the report was made but a rule failed (imgctl's own errors
/// exit 125).
pub const RULE_FAILED: u8 = 1;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Markdown,
    Junit,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// A live line on a terminal, nothing otherwise.
    Auto,
    /// One line per layer read.
    Plain,
    /// Nothing.
    Quiet,
}

#[derive(clap::Args, Debug)]
#[command(after_help = "\
IMAGE and BASE: a name or ID in the store, oci:DIR[:TAG] (an OCI image layout), or a
registry reference (docker://REF, or REF with a registry host such as
127.0.0.1:5000/app:v2 when the store does not have it); registry layers are streamed and
analysed without writing to the store.
SIZE: 1000, 20MB (10^6), 20MiB (2^20)... as dive reads them. AMOUNT: a SIZE or N%.
Exit status: 0, or 1 when a rule failed (one line each on stderr), 125 on errors.
Rules file: dive's .dive-ci (rules: lowestEfficiency, highestWastedBytes,
highestUserWastedPercent) plus maxSize, maxCompressedSize, maxGrowth, maxWasted,
minEfficiency. See docs/size.md.

Examples:
  imgctl size nginx
  imgctl size app:2 --compare app:1 --max-growth 10%
  imgctl size --format markdown --rules .dive-ci 127.0.0.1:5000/app:2")]
pub struct Args {
    /// The image to analyse.
    pub image: String,

    /// Compare with this base image (total and per-layer growth, file changes).
    #[arg(long, value_name = "BASE")]
    pub compare: Option<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// How many of the largest files, directories, wasted items and changes to list.
    #[arg(long, default_value_t = 10)]
    pub top: usize,

    /// Fail when the uncompressed size (sum of the layer tars) exceeds SIZE.
    #[arg(long, value_name = "SIZE", value_parser = parse_dive_bytes)]
    pub max_size: Option<u64>,

    /// Fail when the compressed size (sum of the layer blobs) exceeds SIZE.
    #[arg(long, value_name = "SIZE", value_parser = parse_dive_bytes)]
    pub max_compressed_size: Option<u64>,

    /// Fail when the uncompressed size grew by more than AMOUNT over --compare BASE.
    #[arg(long, value_name = "AMOUNT", value_parser = parse_amount)]
    pub max_growth: Option<report::Amount>,

    /// Fail when imgctl's complete wasted bytes exceed AMOUNT (N% of the file bytes).
    #[arg(long, value_name = "AMOUNT", value_parser = parse_amount)]
    pub max_wasted: Option<report::Amount>,

    /// Fail when dive's efficiency score is below RATIO (0-1).
    #[arg(long, value_name = "RATIO")]
    pub min_efficiency: Option<f64>,

    /// Rules file: a dive `.dive-ci` (read as dive reads it), with imgctl's keys allowed.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,

    /// Progress on stderr while layers are read.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,

    /// Platform of a multi-platform registry image, `os/arch[/variant]`.
    #[arg(long)]
    pub platform: Option<String>,

    /// Run the command after `--` in the image (network none, output discarded)
    /// and add the median start-to-exit time and the cgroup's peak memory.
    #[arg(long, requires = "command")]
    pub probe: bool,

    /// How many times --probe runs the command.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub probe_runs: u64,

    /// Where cgroupfs is mounted (for --probe).
    #[arg(long, value_name = "DIR", default_value = "/sys/fs/cgroup")]
    pub cgroup_root: PathBuf,

    /// The command --probe runs: `imgctl size IMAGE --probe -- CMD [ARG...]`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

struct Lines {
    live: bool,
    last: Mutex<Vec<u64>>,
}

impl report::Progress for Lines {
    fn bytes(&self, index: usize, read: u64, size: u64) {
        if !self.live {
            return;
        }
        if let Ok(mut g) = self.last.lock() {
            if g.len() <= index {
                g.resize(index + 1, 0);
            }
            g[index] = read;
            let total: u64 = g.iter().sum();
            let _ = write!(
                std::io::stderr(),
                "\rreading layer {}: {} (all layers: {})   ",
                index,
                units::of(read, size),
                units::size(total)
            );
        }
    }

    fn layer_done(&self, l: &LayerReport, done: usize, total: usize) {
        let _ = writeln!(
            std::io::stderr(),
            "{}layer {done}/{total} {} read: {} compressed, {} uncompressed, {} entries",
            if self.live { "\r" } else { "" },
            l.digest.short(),
            units::size(l.compressed_bytes),
            units::size(l.uncompressed_bytes),
            l.entries
        );
    }
}

impl report::Progress for Quiet {}
struct Quiet;

fn rules_of(a: &Args) -> anyhow::Result<Rules> {
    let mut rules = match &a.rules {
        Some(p) => Rules::from_file(p)?,
        None => Rules::default(),
    };
    let flag = |s: &str| format!("--{s}");
    if let Some(v) = a.max_size {
        rules.0.push((Rule::MaxSize(v), flag("max-size")));
    }
    if let Some(v) = a.max_compressed_size {
        rules
            .0
            .push((Rule::MaxCompressedSize(v), flag("max-compressed-size")));
    }
    if let Some(v) = a.max_growth {
        rules.0.push((Rule::MaxGrowth(v), flag("max-growth")));
    }
    if let Some(v) = a.max_wasted {
        rules.0.push((Rule::MaxWasted(v), flag("max-wasted")));
    }
    if let Some(v) = a.min_efficiency {
        rules
            .0
            .push((Rule::MinEfficiency(v), flag("min-efficiency")));
    }
    Ok(rules)
}

pub fn run(g: &Globals, a: Args) -> anyhow::Result<ExitCode> {
    let mut opts = SizeOptions::new(g.root.clone());
    opts.top = a.top;
    if let Some(p) = &a.platform {
        opts.platform = Platform::parse(p)?;
    }
    let req = SizeRequest {
        image: a.image.clone(),
        compare: a.compare.clone(),
        rules: rules_of(&a)?,
        opts,
        probe: a.probe.then(|| report::ProbeRequest {
            command: a.command.clone(),
            runs: a.probe_runs as usize,
            cgroup_root: a.cgroup_root.clone(),
        }),
    };
    if !a.probe && !a.command.is_empty() {
        anyhow::bail!(
            "a command after -- is only used with --probe: imgctl size IMAGE --probe -- CMD"
        );
    }
    let tty = std::io::stderr().is_terminal();
    let lines = Lines {
        live: tty,
        last: Mutex::new(Vec::new()),
    };
    let progress: &dyn report::Progress = match a.progress {
        ProgressMode::Quiet => &Quiet,
        ProgressMode::Auto if !tty => &Quiet,
        ProgressMode::Plain => &Lines {
            live: false,
            last: Mutex::new(Vec::new()),
        },
        ProgressMode::Auto => &lines,
    };
    let r = report::size(&req, progress).with_context(|| format!("size {}", a.image))?;
    let text = match a.format {
        Format::Table => report::render_table(&r, a.top),
        Format::Json => format!("{}\n", serde_json::to_string_pretty(&r)?),
        Format::Markdown => report::render_markdown(&r, a.top),
        Format::Junit => report::render_junit(&r),
    };
    std::io::stdout().write_all(text.as_bytes())?;
    std::io::stdout().flush()?;
    let failed: Vec<_> = r.rules.iter().flatten().filter(|x| !x.passed).collect();
    for x in &failed {
        eprintln!("imgctl: size rule failed: {}", x.message);
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(RULE_FAILED)
    })
}
