//! Renderers of a [`SizeReport`]: a table for terminals, Markdown for a
//! pull-request comment (summary first, details folded) and JUnit XML (one test case
//! per rule). JSON is the report's serde form.

use std::fmt::Write as _;

use super::compare::Change;
use super::{Reason, SizeReport};

/// Bytes in decimal units, as Docker prints them (`48.9 MB`).
pub fn human(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn signed(d: i64) -> String {
    if d < 0 {
        format!("-{}", human(d.unsigned_abs()))
    } else {
        format!("+{}", human(d as u64))
    }
}

fn reason(r: Reason) -> &'static str {
    match r {
        Reason::Overwritten => "overwritten",
        Reason::Deleted => "deleted",
        Reason::Opaque => "opaque-hidden",
        Reason::Duplicate => "duplicate",
    }
}

fn change(c: Change) -> &'static str {
    match c {
        Change::Added => "added",
        Change::Removed => "removed",
        Change::Changed => "changed",
    }
}

fn one_line(s: &str, max: usize) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > max {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        s
    }
}

/// Left-aligned columns separated by two spaces.
fn table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let pad = w[i] - c.chars().count();
                l.push_str(c);
                l.push_str(&" ".repeat(pad + 2));
            }
        }
        l.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(head.to_vec()));
    for r in rows {
        let _ = writeln!(out, "{}", line(r.iter().map(|s| s.as_str()).collect()));
    }
}

fn summary_lines(r: &SizeReport) -> Vec<(String, String)> {
    let t = &r.totals;
    let d = &r.dive;
    let mut v = vec![
        (
            "Image".to_string(),
            format!(
                "{} ({}, {}/{}) {}",
                r.image.reference,
                r.image.source,
                r.image.os,
                r.image.architecture,
                r.image.manifest
            ),
        ),
        (
            "Size".into(),
            format!(
                "{} uncompressed, {} compressed, {} layers (+{} empty)",
                human(t.uncompressed_bytes),
                human(t.compressed_bytes),
                t.layers,
                t.empty_layers
            ),
        ),
        (
            "Files".into(),
            format!(
                "{} entries, {} files ({}); visible: {} files ({})",
                t.entries,
                t.files,
                human(t.file_bytes),
                t.visible_files,
                human(t.visible_bytes)
            ),
        ),
        (
            "dive".into(),
            format!(
                "efficiency {:.6}, inefficient {} ({} B){}",
                d.efficiency_score,
                human(d.inefficient_bytes),
                d.inefficient_bytes,
                d.user_wasted_ratio
                    .map(|x| format!(", user wasted ratio {x:.4}"))
                    .unwrap_or_default()
            ),
        ),
        (
            "Wasted".into(),
            format!(
                "{} ({} B, {:.2}% of file bytes) in {} items",
                human(r.wasted.bytes),
                r.wasted.bytes,
                r.wasted.percent,
                r.wasted.items.len()
            ),
        ),
    ];
    if let Some(p) = &r.probe {
        v.push((
            "Probe".into(),
            format!(
                "{:?}: median {:.3} s start to exit over {} runs, peak memory {}",
                p.command.join(" "),
                p.median_seconds,
                p.runs,
                p.peak_memory_bytes
                    .map(human)
                    .unwrap_or_else(|| "unknown".into())
            ),
        ));
    }
    if let Some(c) = &r.compare {
        v.push((
            "Compare".into(),
            format!(
                "vs {}: {} uncompressed ({:+.2}%), {} compressed; layers {} shared, {} added, {} removed; files +{} -{} ~{}",
                c.base.reference,
                signed(c.uncompressed_delta),
                c.growth_percent(),
                signed(c.compressed_delta),
                c.layers_shared,
                c.layers_added.len(),
                c.layers_removed.len(),
                c.files_added,
                c.files_removed,
                c.files_changed
            ),
        ));
    }
    v
}

/// The terminal table.
pub fn render_table(r: &SizeReport, top: usize) -> String {
    let mut out = String::new();
    for (k, v) in summary_lines(r) {
        let _ = writeln!(out, "{k:<8} {v}");
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = r
        .layers
        .iter()
        .map(|l| {
            vec![
                l.index.to_string(),
                human(l.compressed_bytes),
                human(l.uncompressed_bytes),
                l.entries.to_string(),
                l.files.to_string(),
                (l.whiteouts + l.opaque_dirs).to_string(),
                one_line(l.created_by.as_deref().unwrap_or("-"), 60),
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "LAYER",
            "COMPRESSED",
            "UNCOMPRESSED",
            "ENTRIES",
            "FILES",
            "WHITEOUTS",
            "CREATED BY",
        ],
        &rows,
    );
    if !r.wasted.items.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = r
            .wasted
            .items
            .iter()
            .take(top)
            .map(|w| {
                vec![
                    human(w.bytes),
                    reason(w.reason).into(),
                    w.layer.to_string(),
                    match &w.same_as {
                        Some(s) => format!("{} (same as {s})", w.path),
                        None => w.path.clone(),
                    },
                ]
            })
            .collect();
        table(&mut out, &["WASTED", "REASON", "LAYER", "PATH"], &rows);
    }
    if !r.largest_files.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = r
            .largest_files
            .iter()
            .map(|f| {
                vec![
                    human(f.bytes),
                    f.layer.map(|l| l.to_string()).unwrap_or_default(),
                    f.path.clone(),
                ]
            })
            .collect();
        table(&mut out, &["LARGEST FILES", "LAYER", "PATH"], &rows);
        out.push('\n');
        let rows: Vec<Vec<String>> = r
            .largest_dirs
            .iter()
            .map(|f| {
                vec![
                    human(f.bytes),
                    f.files.unwrap_or(0).to_string(),
                    f.path.clone(),
                ]
            })
            .collect();
        table(&mut out, &["LARGEST DIRS", "FILES", "PATH"], &rows);
    }
    if let Some(c) = &r.compare {
        if !c.files.is_empty() {
            out.push('\n');
            let rows: Vec<Vec<String>> = c
                .files
                .iter()
                .map(|f| vec![signed(f.delta), change(f.change).into(), f.path.clone()])
                .collect();
            table(&mut out, &["DELTA", "CHANGE", "PATH"], &rows);
        }
    }
    if let Some(rules) = &r.rules {
        out.push('\n');
        for x in rules {
            let _ = writeln!(
                out,
                "{}  {}",
                if x.passed { "PASS" } else { "FAIL" },
                x.message
            );
        }
    }
    out
}

fn md_escape(s: &str) -> String {
    one_line(s, 80).replace('|', "\\|").replace('`', "'")
}

/// Markdown for a pull-request comment: the verdict and summary first, the rest
/// folded in `<details>`.
pub fn render_markdown(r: &SizeReport, top: usize) -> String {
    let mut out = String::new();
    let verdict = match &r.rules {
        None => String::new(),
        Some(rules) => {
            let failed = rules.iter().filter(|x| !x.passed).count();
            if failed == 0 {
                format!(" — passed {} rules", rules.len())
            } else {
                format!(" — **{failed} of {} rules failed**", rules.len())
            }
        }
    };
    let _ = writeln!(
        out,
        "### Image size: `{}`{verdict}\n",
        md_escape(&r.image.reference)
    );
    let _ = writeln!(out, "| | |\n|---|---|");
    for (k, v) in summary_lines(r) {
        let _ = writeln!(out, "| {k} | {} |", v.replace('|', "\\|"));
    }
    if let Some(rules) = &r.rules {
        let _ = writeln!(
            out,
            "\n| rule | threshold | actual | result |\n|---|---|---|---|"
        );
        for x in rules {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                x.name,
                x.threshold,
                x.actual,
                if x.passed { "pass" } else { "**FAIL**" }
            );
        }
    }
    let _ = writeln!(
        out,
        "\n<details><summary>Layers ({})</summary>\n\n| # | compressed | uncompressed | entries | files | created by |\n|---|---|---|---|---|---|",
        r.layers.len()
    );
    for l in &r.layers {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            l.index,
            human(l.compressed_bytes),
            human(l.uncompressed_bytes),
            l.entries,
            l.files,
            md_escape(l.created_by.as_deref().unwrap_or("-"))
        );
    }
    let _ = writeln!(out, "\n</details>");
    if !r.wasted.items.is_empty() {
        let _ = writeln!(
            out,
            "\n<details><summary>Wasted: {} in {} items</summary>\n\n| bytes | reason | layer | path |\n|---|---|---|---|",
            human(r.wasted.bytes),
            r.wasted.items.len()
        );
        for w in r.wasted.items.iter().take(top) {
            let path = match &w.same_as {
                Some(s) => format!("`{}` (same as `{}`)", md_escape(&w.path), md_escape(s)),
                None => format!("`{}`", md_escape(&w.path)),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {path} |",
                human(w.bytes),
                reason(w.reason),
                w.layer
            );
        }
        let _ = writeln!(out, "\n</details>");
    }
    if !r.largest_files.is_empty() {
        let _ = writeln!(
            out,
            "\n<details><summary>Largest files and directories</summary>\n\n| bytes | layer | file |\n|---|---|---|"
        );
        for f in &r.largest_files {
            let _ = writeln!(
                out,
                "| {} | {} | `{}` |",
                human(f.bytes),
                f.layer.map(|l| l.to_string()).unwrap_or_default(),
                md_escape(&f.path)
            );
        }
        let _ = writeln!(out, "\n| bytes | files | directory |\n|---|---|---|");
        for f in &r.largest_dirs {
            let _ = writeln!(
                out,
                "| {} | {} | `{}` |",
                human(f.bytes),
                f.files.unwrap_or(0),
                md_escape(&f.path)
            );
        }
        let _ = writeln!(out, "\n</details>");
    }
    if let Some(c) = &r.compare {
        let _ = writeln!(
            out,
            "\n<details><summary>Changes since {}: {} files added, {} removed, {} changed</summary>\n\n| delta | change | path |\n|---|---|---|",
            md_escape(&c.base.reference),
            c.files_added,
            c.files_removed,
            c.files_changed
        );
        for f in &c.files {
            let _ = writeln!(
                out,
                "| {} | {} | `{}` |",
                signed(f.delta),
                change(f.change),
                md_escape(&f.path)
            );
        }
        let _ = writeln!(out, "\n</details>");
    }
    out
}

fn xml(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// JUnit XML: one test case per rule, the summary as the suite's output.
pub fn render_junit(r: &SizeReport) -> String {
    let rules = r.rules.as_deref().unwrap_or(&[]);
    let failures = rules.iter().filter(|x| !x.passed).count();
    let name = xml(&format!("imgctl size {}", r.image.reference));
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"imgctl size\" tests=\"{}\" failures=\"{failures}\">",
        rules.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{name}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\">",
        rules.len()
    );
    for x in rules {
        let _ = write!(
            out,
            "    <testcase classname=\"imgctl.size\" name=\"{}\"",
            xml(&x.name)
        );
        if x.passed {
            let _ = writeln!(out, "/>");
        } else {
            let _ = writeln!(
                out,
                ">\n      <failure type=\"threshold\" message=\"{}\">threshold {} ({}), actual {}</failure>\n    </testcase>",
                xml(&x.message),
                xml(&x.threshold),
                xml(&x.origin),
                xml(&x.actual)
            );
        }
    }
    let summary: Vec<String> = summary_lines(r)
        .into_iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let _ = writeln!(
        out,
        "    <system-out>{}</system-out>\n  </testsuite>\n</testsuites>",
        xml(&summary.join("\n"))
    );
    out
}
