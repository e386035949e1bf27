//! Sizes as Docker prints them, everywhere the command line shows one (tables,
//! progress bars, progress lines): powers of 10 (`kB`, `MB`, `GB`), three
//! significant digits, no space (`1.5kB`, `74.5MB`, `187MB`), as go-units'
//! `HumanSizeWithPrecision(n, 3)` does; `stats` shows memory in binary units
//! (`50MiB`, `1.953GiB`), as `docker stats` does ([`binary_size`]).
//!
//! Off a terminal, progress is plain lines at a modest rate: one per state change
//! of a blob, plus one when a large blob passes each quarter of its size
//! ([`Steps`]), never one per chunk.

use std::collections::HashMap;
use std::sync::Mutex;

use indicatif::{ProgressState, ProgressStyle};

const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
const BINARY: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/// `n` bytes in Docker's units: `0B`, `999B`, `1.5kB`, `74.5MB`, `187MB`, `1GB`.
pub fn size(n: u64) -> String {
    let (mut v, mut u) = scaled(n, 1000.0);
    // Rounding to three digits can carry into the next unit (999.95kB -> 1MB).
    if significant(v, 3).parse::<f64>().is_ok_and(|r| r >= 1000.0) && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    format!("{}{}", significant(v, 3), UNITS[u])
}

/// `n` bytes in binary units with four significant digits, as `docker stats`
/// shows memory (go-units' `BytesSize`): `512B`, `50MiB`, `1.953GiB`.
pub fn binary_size(n: u64) -> String {
    let (v, u) = scaled(n, 1024.0);
    format!("{}{}", significant(v, 4), BINARY[u])
}

/// `n` divided by `base` until below it, and how many times.
fn scaled(n: u64, base: f64) -> (f64, usize) {
    let mut v = n as f64;
    let mut u = 0;
    while v >= base && u + 1 < UNITS.len() {
        v /= base;
        u += 1;
    }
    (v, u)
}

/// `v` (below 10^digits) with `digits` significant digits and no trailing zeros,
/// as Go's `%.{digits}g` prints such a value.
fn significant(v: f64, digits: usize) -> String {
    let whole = if v < 1.0 {
        1
    } else {
        (v.log10().floor() as usize) + 1
    };
    let decimals = digits.saturating_sub(whole);
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// `done/total` in Docker's units (`12.3MB/45.6MB`).
pub fn of(done: u64, total: u64) -> String {
    format!("{}/{}", size(done), size(total))
}

/// A progress bar style with sizes in Docker's units: `{dsize}`, `{dtotal}` and
/// `{drate}` in `template` (indicatif's own `{bytes}` keys use binary units).
pub fn bar_style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("dsize", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&size(s.pos()));
        })
        .with_key(
            "dtotal",
            |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&size(s.len().unwrap_or(0)));
            },
        )
        .with_key("drate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{}/s", size(s.per_sec() as u64));
        })
}

/// Blobs smaller than this get no quarter lines: their start and end say enough.
const QUARTER_LINES_FROM: u64 = 4_000_000;

/// What plain progress lines need to remember per blob: its size and the last
/// quarter reported, so that a chunk event prints a line only when its blob
/// passes 25, 50 or 75 %.
#[derive(Default)]
pub struct Steps(Mutex<HashMap<String, (u64, u64)>>);

impl Steps {
    /// A transfer of `key` (`size` bytes) starts at `offset`.
    pub fn start(&self, key: &str, size: u64, offset: u64) {
        let q = quarter(offset, size);
        self.lock().insert(key.to_string(), (size, q));
    }

    /// The blob's size, when its start was seen.
    pub fn size(&self, key: &str) -> Option<u64> {
        self.lock().get(key).map(|(s, _)| *s)
    }

    /// `Some(size)` when `done` bytes of `key` reach a quarter not reported yet
    /// (large blobs only): the caller prints one line.
    pub fn passed(&self, key: &str, done: u64) -> Option<u64> {
        let mut g = self.lock();
        let (size, last) = g.get_mut(key)?;
        if *size < QUARTER_LINES_FROM {
            return None;
        }
        let q = quarter(done, *size);
        (q > *last && q < 4).then(|| {
            *last = q;
            *size
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, u64)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Which quarter of `size` `done` is in: 0 below 25 %, ..., 4 at the end.
fn quarter(done: u64, size: u64) -> u64 {
    if size == 0 {
        4
    } else {
        (u128::from(done.min(size)) * 4 / u128::from(size)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values go-units' HumanSizeWithPrecision(n, 3) gives (docker images,
    /// docker history), except 999,999 bytes, which Go prints as "1e+03kB".
    #[test]
    fn sizes_as_docker_prints_them() {
        for (n, want) in [
            (0, "0B"),
            (999, "999B"),
            (1000, "1kB"),
            (1500, "1.5kB"),
            (4_261_000, "4.26MB"),
            (12_345_678, "12.3MB"),
            (74_500_000, "74.5MB"),
            (187_000_000, "187MB"),
            (187_600_000, "188MB"),
            (999_999, "1MB"),
            (1_000_000_000, "1GB"),
            (u64::MAX, "18.4EB"),
        ] {
            assert_eq!(size(n), want, "{n}");
        }
        assert_eq!(of(12_300_000, 45_600_000), "12.3MB/45.6MB");
        // docker stats' memory column.
        assert_eq!(binary_size(512), "512B");
        assert_eq!(binary_size(50 << 20), "50MiB");
        assert_eq!(binary_size(1 << 30), "1GiB");
        assert_eq!(binary_size(2_097_152_000), "1.953GiB");
        assert_eq!(binary_size(1_474_560), "1.406MiB");
    }

    #[test]
    fn quarter_lines_only_for_large_blobs_and_once_each() {
        let s = Steps::default();
        s.start("big", 40_000_000, 0);
        s.start("small", 1000, 0);
        assert_eq!(s.passed("big", 1_000_000), None);
        assert_eq!(s.passed("big", 10_000_000), Some(40_000_000));
        assert_eq!(s.passed("big", 11_000_000), None, "the same quarter again");
        assert_eq!(s.passed("big", 35_000_000), Some(40_000_000), "75 %");
        assert_eq!(
            s.passed("big", 40_000_000),
            None,
            "the end is the done line"
        );
        assert_eq!(s.passed("small", 600), None);
        assert_eq!(s.passed("unknown", 5), None);
        // A resumed transfer starts counting from where it resumes.
        s.start("resumed", 40_000_000, 25_000_000);
        assert_eq!(s.passed("resumed", 26_000_000), None);
        assert_eq!(s.passed("resumed", 30_000_000), Some(40_000_000));
        assert_eq!(s.size("big"), Some(40_000_000));
    }
}
