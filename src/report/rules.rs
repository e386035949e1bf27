//! CI rules: imgctl's thresholds (`--max-size`, `--max-compressed-size`,
//! `--max-growth`, `--max-wasted`, `--min-efficiency`) and dive's `.dive-ci` rules
//! (`lowestEfficiency`, `highestWastedBytes`, `highestUserWastedPercent`), read and
//! judged as dive 0.13.1 does (`runtime/ci/rules.go`), so a `.dive-ci` file gives
//! the same verdict here.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{ReportError, SizeReport};

/// A byte count or a percentage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    Bytes(u64),
    Percent(f64),
}

/// One rule to check.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    MaxSize(u64),
    MaxCompressedSize(u64),
    MaxGrowth(Amount),
    MaxWasted(Amount),
    MinEfficiency(f64),
    /// dive: fails when the efficiency score is below the ratio.
    LowestEfficiency(f64),
    /// dive: fails when dive's inefficient bytes exceed it.
    HighestWastedBytes(u64),
    /// dive: fails when inefficient bytes / user bytes exceed the ratio.
    HighestUserWastedPercent(f64),
}

/// Rules with where each came from (a flag or `FILE`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules(pub Vec<(Rule, String)>);

/// The verdict on one rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleResult {
    /// dive's key for dive rules, the flag name (without `--`) for imgctl's.
    pub name: String,
    /// `--flag` or the rules file it came from.
    pub origin: String,
    pub threshold: String,
    pub actual: String,
    pub passed: bool,
    /// One line: what failed, by how much.
    pub message: String,
}

/// go-humanize's `ParseBytes`, which dive uses for `highestWastedBytes`: a number
/// (`,` ignored), optional space, optional unit `B`, `K`/`KB` (1000), `Ki`/`KiB`
/// (1024), up to exa, case-insensitive.
pub fn parse_dive_bytes(s: &str) -> Result<u64, String> {
    let digits = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.' || *c == ','))
        .map_or(s.len(), |(i, _)| i);
    let num: String = s[..digits].chars().filter(|c| *c != ',').collect();
    let f: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 20MB, 1.5GiB, 1000)"))?;
    let unit = s[digits..].trim().to_ascii_lowercase();
    let k = |p: i32| 1000f64.powi(p);
    let ki = |p: i32| 1024f64.powi(p);
    let m = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => k(1),
        "ki" | "kib" => ki(1),
        "m" | "mb" => k(2),
        "mi" | "mib" => ki(2),
        "g" | "gb" => k(3),
        "gi" | "gib" => ki(3),
        "t" | "tb" => k(4),
        "ti" | "tib" => ki(4),
        "p" | "pb" => k(5),
        "pi" | "pib" => ki(5),
        "e" | "eb" => k(6),
        "ei" | "eib" => ki(6),
        _ => return Err(format!("unknown size unit {unit:?} in {s:?}")),
    };
    let v = f * m;
    if v >= u64::MAX as f64 {
        return Err(format!("{s:?} is too large"));
    }
    Ok(v as u64)
}

/// `10%` or a size (see [`parse_dive_bytes`]).
pub fn parse_amount(s: &str) -> Result<Amount, String> {
    if let Some(p) = s.trim().strip_suffix('%') {
        let v: f64 = p
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a percentage"))?;
        if !v.is_finite() || v < 0.0 {
            return Err(format!("{s:?} is not a percentage"));
        }
        return Ok(Amount::Percent(v));
    }
    parse_dive_bytes(s.trim()).map(Amount::Bytes)
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("{s:?} is not a number (a ratio between 0 and 1)"))
}

impl Rules {
    /// Read a rules file: dive's `.dive-ci` YAML (`rules:` then `key: value` lines;
    /// `disabled` turns a rule off), which may also hold imgctl's keys `maxSize`,
    /// `maxCompressedSize`, `maxGrowth`, `maxWasted`, `minEfficiency`.
    pub fn from_file(path: &Path) -> Result<Rules, ReportError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::RulesRead {
            path: path.to_path_buf(),
            source,
        })?;
        Rules::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Rules, ReportError> {
        let origin = path.display().to_string();
        let mut rules = Vec::new();
        let mut in_rules = false;
        for (n, raw) in text.lines().enumerate() {
            let err = |detail: String| ReportError::RulesFile {
                path: path.to_path_buf(),
                line: n + 1,
                detail,
            };
            let line = match raw.find(" #") {
                Some(i) => &raw[..i],
                None if raw.trim_start().starts_with('#') => "",
                None => raw,
            };
            if line.trim().is_empty() || line.trim() == "---" {
                continue;
            }
            let indented = line.starts_with(' ') || line.starts_with('\t');
            let Some((key, value)) = line.split_once(':') else {
                return Err(err(format!(
                    "expected `key: value`, found {:?}",
                    line.trim()
                )));
            };
            let key = key.trim();
            let value = value.trim().trim_matches('"').trim_matches('\'').trim();
            if !indented {
                in_rules = key == "rules";
                if in_rules && !value.is_empty() {
                    return Err(err("`rules:` takes indented `key: value` lines".into()));
                }
                continue;
            }
            if !in_rules {
                continue;
            }
            if value == "disabled" {
                continue;
            }
            let rule = match key {
                "lowestEfficiency" => Rule::LowestEfficiency(parse_ratio(value).map_err(err)?),
                "highestWastedBytes" => {
                    Rule::HighestWastedBytes(parse_dive_bytes(value).map_err(err)?)
                }
                "highestUserWastedPercent" => {
                    Rule::HighestUserWastedPercent(parse_ratio(value).map_err(err)?)
                }
                "maxSize" => Rule::MaxSize(parse_dive_bytes(value).map_err(err)?),
                "maxCompressedSize" => {
                    Rule::MaxCompressedSize(parse_dive_bytes(value).map_err(err)?)
                }
                "maxGrowth" => Rule::MaxGrowth(parse_amount(value).map_err(err)?),
                "maxWasted" => Rule::MaxWasted(parse_amount(value).map_err(err)?),
                "minEfficiency" => Rule::MinEfficiency(parse_ratio(value).map_err(err)?),
                other => {
                    return Err(err(format!(
                        "unknown rule {other:?} (dive: lowestEfficiency, highestWastedBytes, \
                         highestUserWastedPercent; imgctl: maxSize, maxCompressedSize, maxGrowth, \
                         maxWasted, minEfficiency)"
                    )))
                }
            };
            rules.push((rule, origin.clone()));
        }
        Ok(Rules(rules))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when a rule needs `--compare`.
    pub fn needs_compare(&self) -> bool {
        self.0.iter().any(|(r, _)| matches!(r, Rule::MaxGrowth(_)))
    }
}

fn amount(a: &Amount) -> String {
    match a {
        Amount::Bytes(b) => format!("{b} B"),
        Amount::Percent(p) => format!("{p}%"),
    }
}

/// Judge `report` by `rules` (in order).
pub fn evaluate(report: &SizeReport, rules: &Rules) -> Vec<RuleResult> {
    let d = &report.dive;
    let t = &report.totals;
    rules
        .0
        .iter()
        .map(|(rule, origin)| {
            let (name, threshold, actual, passed, what): (&str, String, String, bool, &str) =
                match rule {
                    Rule::MaxSize(max) => (
                        "max-size",
                        format!("{max} B"),
                        format!("{} B", t.uncompressed_bytes),
                        t.uncompressed_bytes <= *max,
                        "uncompressed size",
                    ),
                    Rule::MaxCompressedSize(max) => (
                        "max-compressed-size",
                        format!("{max} B"),
                        format!("{} B", t.compressed_bytes),
                        t.compressed_bytes <= *max,
                        "compressed size",
                    ),
                    Rule::MaxGrowth(a) => {
                        let (actual, passed) = match (&report.compare, a) {
                            (None, _) => ("no --compare base".to_string(), false),
                            (Some(c), Amount::Bytes(max)) => (
                                format!("{} B", c.uncompressed_delta),
                                c.uncompressed_delta <= *max as i64,
                            ),
                            (Some(c), Amount::Percent(p)) => {
                                let g = c.growth_percent();
                                (format!("{g:.3}%"), g <= *p)
                            }
                        };
                        ("max-growth", amount(a), actual, passed, "growth")
                    }
                    Rule::MaxWasted(a) => {
                        let (actual, passed) = match a {
                            Amount::Bytes(max) => (
                                format!("{} B", report.wasted.bytes),
                                report.wasted.bytes <= *max,
                            ),
                            Amount::Percent(p) => (
                                format!("{:.3}%", report.wasted.percent),
                                report.wasted.percent <= *p,
                            ),
                        };
                        ("max-wasted", amount(a), actual, passed, "wasted bytes")
                    }
                    Rule::MinEfficiency(min) => (
                        "min-efficiency",
                        min.to_string(),
                        d.efficiency_score.to_string(),
                        d.efficiency_score >= *min,
                        "efficiency",
                    ),
                    Rule::LowestEfficiency(min) => (
                        "lowestEfficiency",
                        min.to_string(),
                        d.efficiency_score.to_string(),
                        // dive: `if lowestEfficiency > analysis.Efficiency` fails.
                        *min <= d.efficiency_score,
                        "image efficiency",
                    ),
                    Rule::HighestWastedBytes(max) => (
                        "highestWastedBytes",
                        format!("{max} B"),
                        format!("{} B", d.inefficient_bytes),
                        d.inefficient_bytes <= *max,
                        "wasted bytes (dive)",
                    ),
                    Rule::HighestUserWastedPercent(max) => {
                        // dive divides without a guard: 0/0 is NaN (passes), x/0 is +Inf.
                        let ratio = d.inefficient_bytes as f64 / d.user_size_bytes as f64;
                        (
                            "highestUserWastedPercent",
                            max.to_string(),
                            ratio.to_string(),
                            ratio.is_nan() || ratio <= *max,
                            "wasted bytes relative to user bytes",
                        )
                    }
                };
            let minimum = matches!(rule, Rule::MinEfficiency(_) | Rule::LowestEfficiency(_));
            let message = match (passed, minimum) {
                (true, true) => format!("{name}: {what} {actual} is at least {threshold}"),
                (true, false) => format!("{name}: {what} {actual} is within {threshold}"),
                (false, true) => {
                    format!("{name}: {what} {actual} is below the minimum {threshold} ({origin})")
                }
                (false, false) => {
                    format!("{name}: {what} {actual} exceeds the limit {threshold} ({origin})")
                }
            };
            RuleResult {
                name: name.to_string(),
                origin: origin.clone(),
                threshold,
                actual,
                passed,
                message,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_go_humanize() {
        assert_eq!(parse_dive_bytes("20MB"), Ok(20_000_000));
        assert_eq!(parse_dive_bytes("20 MiB"), Ok(20 << 20));
        assert_eq!(parse_dive_bytes("1,000"), Ok(1000));
        assert_eq!(parse_dive_bytes("1.5k"), Ok(1500));
        assert_eq!(parse_dive_bytes("7"), Ok(7));
        assert!(parse_dive_bytes("MB").is_err());
        assert!(parse_dive_bytes("3 parsecs").is_err());
        assert_eq!(parse_amount("12.5%"), Ok(Amount::Percent(12.5)));
        assert_eq!(parse_amount("1KiB"), Ok(Amount::Bytes(1024)));
    }

    #[test]
    fn dive_ci_files_parse() {
        let text = "# dive settings\nrules:\n  # comment\n  lowestEfficiency: 0.95\n  highestWastedBytes: 20MB # inline\n  highestUserWastedPercent: disabled\n  maxWasted: \"10%\"\nother:\n  key: x\n";
        let r = Rules::parse(text, Path::new(".dive-ci")).expect("parses");
        assert_eq!(
            r.0.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>(),
            vec![
                Rule::LowestEfficiency(0.95),
                Rule::HighestWastedBytes(20_000_000),
                Rule::MaxWasted(Amount::Percent(10.0)),
            ]
        );
        let bad = Rules::parse("rules:\n  lowestEfficiency: high\n", Path::new("f"));
        assert!(matches!(bad, Err(ReportError::RulesFile { line: 2, .. })));
        let unknown = Rules::parse("rules:\n  fastest: 1\n", Path::new("f"));
        assert!(matches!(unknown, Err(ReportError::RulesFile { .. })));
    }
}
