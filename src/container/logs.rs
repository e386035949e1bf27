//! A detached container's logs: json-lines in `<state dir>/container.log`, one
//! object per line as Docker's json-file driver writes them
//! (`{"log":"text\n","stream":"stdout","time":"2026-11-30T09:00:00.123456789Z"}`,
//! schemas/container-log-line.schema.json), rotated at a size limit into
//! `container.log.1` .. `container.log.N-1` (`--log-opt max-size=,max-file=`).
//!
//! The monitor writes ([`LogWriter`]); `imgctl logs` reads ([`read`]), following
//! the current file across rotations with `-f`.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Error;

/// File name of the current log in a container's state directory.
pub const LOG_FILE: &str = "container.log";

/// Default rotation: 10 MiB per file, 3 files.
pub const DEFAULT_MAX_SIZE: u64 = 10 << 20;
pub const DEFAULT_MAX_FILES: u32 = 3;

/// A partial line longer than this is written as one entry (Docker: 16 KiB).
const MAX_LINE: usize = 16 << 10;

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_nanos() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// RFC 3339 with nanoseconds, UTC (`2026-11-30T09:00:00.000000001Z`).
pub fn rfc3339_nanos(nanos: i128) -> String {
    let secs = nanos.div_euclid(1_000_000_000) as i64;
    let frac = nanos.rem_euclid(1_000_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Parse RFC 3339 (`2026-11-30T09:00:00Z`, fraction and offset optional, or a
/// bare date) into nanoseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut secs = days_from_civil(y, mo, d) * 86_400;
    if b.len() == 10 {
        return Some(secs as i128 * 1_000_000_000);
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || mi > 59 || se > 60 {
        return None;
    }
    secs += h * 3600 + mi * 60 + se;
    let mut i = 19;
    let mut frac: i128 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = s.get(start..i)?;
        if digits.is_empty() {
            return None;
        }
        let mut padded = digits.chars().take(9).collect::<String>();
        while padded.len() < 9 {
            padded.push('0');
        }
        frac = padded.parse().ok()?;
    }
    let offset = match s.get(i..)? {
        "Z" | "z" | "" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let v = o[1..3].parse::<i64>().ok()? * 3600 + o[4..6].parse::<i64>().ok()? * 60;
            if o.starts_with('+') {
                v
            } else {
                -v
            }
        }
        _ => return None,
    };
    Some((secs - offset) as i128 * 1_000_000_000 + frac)
}

/// Parse a duration like Go's (`10s`, `5m`, `1h30m`, `250ms`, `1.5h`) into
/// nanoseconds.
pub fn parse_duration(s: &str) -> Option<i128> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s == "0" {
        return Some(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 {
            return None;
        }
        let v: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[u..];
        total += v * mult;
    }
    Some(total as i128)
}

/// `--since`/`--until`: an RFC 3339 time, Unix seconds (`1700000000.5`), or a
/// duration before `now` (`10m`).
pub fn parse_time_arg(flag: &str, s: &str, now: i128) -> Result<i128, Error> {
    if let Some(t) = parse_rfc3339(s) {
        return Ok(t);
    }
    if let Ok(v) = s.parse::<f64>() {
        return Ok((v * 1e9) as i128);
    }
    if let Some(d) = parse_duration(s) {
        return Ok(now - d);
    }
    Err(Error::BadFlag {
        flag: flag.into(),
        value: s.into(),
        hint: "an RFC 3339 time, Unix seconds, or a duration such as 10m".into(),
    })
}

/// Writes a container's output as json-lines with rotation.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_files: u32,
}

impl LogWriter {
    /// Open (append to) `dir/container.log`.
    pub fn open(dir: &Path, max_size: u64, max_files: u32) -> Result<LogWriter, Error> {
        let path = dir.join(LOG_FILE);
        let file = open_append(&path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogWriter {
            path,
            file,
            size,
            max_size: max_size.max(1),
            max_files: max_files.max(1),
        })
    }

    /// Write one entry for `stream` at `time` (nanoseconds).
    pub fn write(&mut self, stream: &str, data: &[u8], time: i128) -> Result<(), Error> {
        let line = Line {
            log: String::from_utf8_lossy(data).into_owned(),
            stream: stream.to_string(),
            time: rfc3339_nanos(time),
        };
        let mut body = serde_json::to_vec(&line).map_err(|e| Error::Spec(e.to_string()))?;
        body.push(b'\n');
        if self.size > 0 && self.size + body.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(&body).map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })?;
        self.size += body.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), Error> {
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| Error::Io { path: p, source }
        };
        if self.max_files <= 1 {
            self.file.set_len(0).map_err(io(&self.path))?;
            self.file.seek(SeekFrom::Start(0)).map_err(io(&self.path))?;
            self.size = 0;
            return Ok(());
        }
        let name = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        let _ = std::fs::remove_file(name(self.max_files - 1));
        for n in (1..self.max_files - 1).rev() {
            let _ = std::fs::rename(name(n), name(n + 1));
        }
        std::fs::rename(&self.path, name(1)).map_err(io(&self.path))?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> Result<File, Error> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Splits a stream into lines for [`LogWriter`]: complete lines as they come, a
/// partial one once it is [`MAX_LINE`] long or at the end.
#[derive(Default)]
pub struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    /// Add bytes; returns the entries now complete.
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(data);
        let mut out = Vec::new();
        while let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
            out.push(self.pending.drain(..=i).collect());
        }
        while self.pending.len() >= MAX_LINE {
            out.push(self.pending.drain(..MAX_LINE).collect());
        }
        out
    }

    /// What is left at the end of the stream.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

/// What `imgctl logs` shows.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Nanoseconds since the epoch; entries before are skipped.
    pub since: Option<i128>,
    /// Entries after are skipped (and `follow` stops there).
    pub until: Option<i128>,
    /// Only the last N entries (of those in the time range).
    pub tail: Option<usize>,
    pub timestamps: bool,
    pub follow: bool,
}

fn rotated(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e
                .file_name()
                .to_str()?
                .strip_prefix("container.log.")?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    files.into_iter().map(|(_, p)| p).collect()
}

struct Sink<'a> {
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    opts: &'a ReadOptions,
}

impl Sink<'_> {
    /// Whether the entry is in range; `Err` on a write error.
    fn keep(&self, l: &Line) -> Option<i128> {
        let t = parse_rfc3339(&l.time)?;
        if self.opts.since.is_some_and(|s| t < s) || self.opts.until.is_some_and(|u| t > u) {
            return None;
        }
        Some(t)
    }

    fn emit(&mut self, l: &Line) -> std::io::Result<()> {
        let w: &mut dyn Write = if l.stream == "stderr" {
            &mut *self.err
        } else {
            &mut *self.out
        };
        if self.opts.timestamps {
            write!(w, "{} ", l.time)?;
        }
        w.write_all(l.log.as_bytes())?;
        w.flush()
    }
}

/// Print the logs in `dir` to `out`/`err` (by stream). With `follow`, keep
/// printing new entries until `running()` turns false (then what is left is
/// printed) or `until` passes.
pub fn read(
    dir: &Path,
    opts: &ReadOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
    running: &dyn Fn() -> bool,
) -> Result<(), Error> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| Error::Io { path: p, source }
    };
    let mut sink = Sink { out, err, opts };
    let current = dir.join(LOG_FILE);
    let mut files = rotated(dir);
    files.push(current.clone());
    let mut tail: VecDeque<Line> = VecDeque::new();
    let mut cur: Option<(File, u64)> = None;
    for p in &files {
        let Ok(mut f) = File::open(p) else { continue };
        let mut r = BufReader::new(&mut f);
        let mut buf = String::new();
        let mut consumed = 0u64;
        loop {
            buf.clear();
            let n = r.read_line(&mut buf).map_err(io(p))?;
            if n == 0 || !buf.ends_with('\n') {
                break; // a line the monitor is still writing: read it later
            }
            consumed += n as u64;
            let Ok(l) = serde_json::from_str::<Line>(&buf) else {
                continue;
            };
            if sink.keep(&l).is_none() {
                continue;
            }
            match opts.tail {
                Some(0) => {}
                Some(n) => {
                    if tail.len() == n {
                        tail.pop_front();
                    }
                    tail.push_back(l);
                }
                None => sink.emit(&l).map_err(io(p))?,
            }
        }
        drop(r);
        if p == &current {
            let ino = f.metadata().map(|m| m.ino()).unwrap_or(0);
            cur = Some((f, consumed));
            let _ = ino;
        }
    }
    for l in &tail {
        sink.emit(l).map_err(io(&current))?;
    }
    if !opts.follow {
        return Ok(());
    }
    follow(&current, cur, &mut sink, running)
}

fn follow(
    current: &Path,
    mut cur: Option<(File, u64)>,
    sink: &mut Sink<'_>,
    running: &dyn Fn() -> bool,
) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: current.to_path_buf(),
        source,
    };
    let mut pending = String::new();
    loop {
        let alive = running();
        if cur.is_none() {
            if let Ok(f) = File::open(current) {
                cur = Some((f, 0));
            }
        }
        let mut progressed = false;
        if let Some((f, off)) = cur.as_mut() {
            f.seek(SeekFrom::Start(*off)).map_err(io)?;
            let mut chunk = Vec::new();
            f.read_to_end(&mut chunk).map_err(io)?;
            *off += chunk.len() as u64;
            progressed = !chunk.is_empty();
            pending.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(i) = pending.find('\n') {
                let line: String = pending.drain(..=i).collect();
                if let Ok(l) = serde_json::from_str::<Line>(&line) {
                    if let Some(t) = sink.keep(&l) {
                        sink.emit(&l).map_err(io)?;
                        let _ = t;
                    } else if sink
                        .opts
                        .until
                        .is_some_and(|u| parse_rfc3339(&l.time).is_some_and(|t| t > u))
                    {
                        return Ok(());
                    }
                }
            }
            // Rotated: the old file is read to its end; go on with the new one.
            let rotated = match (f.metadata(), std::fs::metadata(current)) {
                (Ok(a), Ok(b)) => a.ino() != b.ino(),
                (Ok(_), Err(_)) => true,
                _ => false,
            };
            if rotated && !progressed {
                cur = None;
                pending.clear();
                continue;
            }
        }
        if sink.opts.until.is_some_and(|u| now_nanos() > u) {
            return Ok(());
        }
        if !alive && !progressed {
            return Ok(());
        }
        if !progressed {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        let t = 1_764_493_200_123_456_789i128;
        let s = rfc3339_nanos(t);
        assert_eq!(s, "2025-11-30T09:00:00.123456789Z");
        assert_eq!(parse_rfc3339(&s), Some(t));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339("2000-02-29"), Some(951_782_400_000_000_000));
        assert_eq!(parse_rfc3339("nope"), None);
        assert_eq!(parse_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_duration("250ms"), Some(250_000_000));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(
            parse_time_arg("--since", "10s", 20_000_000_000).unwrap(),
            10_000_000_000
        );
        assert_eq!(parse_time_arg("--since", "2.5", 0).unwrap(), 2_500_000_000);
        assert!(parse_time_arg("--since", "soon", 0).is_err());
    }

    #[test]
    fn lines_are_split_and_long_ones_cut() {
        let mut b = LineBuffer::default();
        assert_eq!(b.push(b"a\nb"), vec![b"a\n".to_vec()]);
        assert_eq!(b.push(b"c\n\n"), vec![b"bc\n".to_vec(), b"\n".to_vec()]);
        let big = vec![b'x'; MAX_LINE + 3];
        let out = b.push(&big);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), MAX_LINE);
        assert_eq!(b.finish(), Some(vec![b'x'; 3]));
        assert_eq!(b.finish(), None);
    }

    #[test]
    fn rotation_keeps_max_files_and_reading_spans_them_in_order() {
        let d = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(d.path(), 300, 3).unwrap();
        for i in 0..40 {
            w.write(
                if i % 2 == 0 { "stdout" } else { "stderr" },
                format!("line {i}\n").as_bytes(),
                1_000_000_000 * (i + 1),
            )
            .unwrap();
        }
        let names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        for n in &names {
            assert!(
                std::fs::metadata(d.path().join(n)).unwrap().len() <= 300,
                "{n}"
            );
        }
        let (mut out, mut err) = (Vec::new(), Vec::new());
        read(
            d.path(),
            &ReadOptions::default(),
            &mut out,
            &mut err,
            &|| false,
        )
        .unwrap();
        let out = String::from_utf8(out).unwrap();
        let err = String::from_utf8(err).unwrap();
        assert!(
            out.ends_with("line 38\n") && err.ends_with("line 39\n"),
            "{out}{err}"
        );
        assert!(
            !out.contains("line 0\n"),
            "the oldest entries were rotated away"
        );
        let nums: Vec<u32> = out
            .lines()
            .map(|l| l.trim_start_matches("line ").parse().unwrap())
            .collect();
        assert!(nums.windows(2).all(|w| w[0] < w[1]), "{nums:?}");
        // --tail 2 --since/--until and timestamps.
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let o = ReadOptions {
            tail: Some(2),
            until: Some(38_000_000_000),
            timestamps: true,
            ..Default::default()
        };
        read(d.path(), &o, &mut out, &mut err, &|| false).unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap()
        );
        assert!(
            all.contains("1970-01-01T00:00:38.000000000Z line 37"),
            "{all}"
        );
        assert_eq!(all.lines().count(), 2, "{all}");
    }
}
