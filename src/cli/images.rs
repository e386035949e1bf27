//! `imgctl images`, `inspect`, `history`, `tag`, `rmi`: read and name images in the
//! store. JSON outputs are described by `schemas/{images,inspect,history}.schema.json`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;
use serde_json::{json, Value};

use super::Globals;
use crate::image::{self, catalog};
use crate::oci::{Descriptor, Reference};

/// Output format of listing commands.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  imgctl images\n  imgctl images busybox --digests\n  imgctl images --filter dangling=true -q"
)]
pub struct ImagesArgs {
    /// Only images of this repository (`busybox`), or this name (`busybox:1.36`);
    /// `*` and `?` match as in a shell.
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
    /// Show all images (the store keeps no intermediate images, so this lists the
    /// same as without it; accepted for Docker's habit).
    #[arg(short, long)]
    pub all: bool,
    /// Show the digest the registry serves for each image.
    #[arg(long)]
    pub digests: bool,
    /// Filter: dangling=true|false, reference=PATTERN, before=IMAGE, since=IMAGE,
    /// label=KEY or label=KEY=VALUE (repeat to combine; all must match).
    #[arg(short, long, value_name = "FILTER")]
    pub filter: Vec<String>,
    /// Output format: table, json, or a Go template (`{{.Repository}}:{{.Tag}}`,
    /// `table {{.ID}}\t{{.Size}}`).
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Show full image IDs.
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  imgctl inspect busybox\n  imgctl inspect --format '{{json .Config.Env}}' nginx\n  imgctl inspect --type container web"
)]
pub struct InspectArgs {
    /// Container or image names or IDs (a container is looked for first).
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Only look for: container or image.
    #[arg(long = "type", value_parser = ["container", "image"])]
    pub kind: Option<String>,
    /// Format each object with a Go template (`{{.State.Status}}`, `{{json .Config}}`).
    #[arg(short, long)]
    pub format: Option<String>,
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  imgctl history nginx\n  imgctl history --no-trunc -H=false busybox\n  imgctl history --format json busybox"
)]
pub struct HistoryArgs {
    /// Image name or ID.
    pub image: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Do not truncate the CREATED BY column or the image ID.
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Sizes and dates in human units (`-H=false`: bytes and RFC 3339 times).
    #[arg(short = 'H', long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value_t = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub human: bool,
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  imgctl tag busybox 127.0.0.1:5000/tools/busybox:1.36\n  imgctl tag 3f57d9401f8d app:latest"
)]
pub struct TagArgs {
    /// Existing image name or ID.
    pub source: String,
    /// New name.
    pub target: String,
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  imgctl rmi busybox\n  imgctl rmi app:1 app:2\n  imgctl rmi -f 3f57d9401f8d"
)]
pub struct RmiArgs {
    /// Image names (removes that name) or IDs (removes every name of the image).
    /// Blobs are freed by `imgctl prune`.
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Remove an image ID several names point at, or one a stopped container uses.
    #[arg(short, long)]
    pub force: bool,
}

/// Repository and tag columns for an index name.
fn repo_tag(name: &str) -> (String, String) {
    match Reference::parse(name) {
        Ok(r) => (
            r.familiar_name(),
            r.tag()
                .map(str::to_string)
                .unwrap_or_else(|| "<none>".into()),
        ),
        Err(_) => (
            if name.is_empty() {
                "<none>".into()
            } else {
                name.to_string()
            },
            "<none>".into(),
        ),
    }
}

/// Bytes of the image's blobs (manifest, config, compressed layers).
fn image_size(desc: &Descriptor, r: &crate::oci::Manifest) -> u64 {
    desc.size + r.config.size + r.layers.iter().map(|l| l.size).sum::<u64>()
}

/// Shell-style match of `pat` (`*`, `?`) against the whole of `s`.
fn glob(pat: &str, s: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pat.chars().collect(), s.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Whether the image named (`repo`, `tag`) matches a `REPOSITORY[:TAG]` pattern as
/// Docker's `reference` filter does: against the repository, or `repo:tag`.
fn reference_matches(pat: &str, repo: &str, tag: &str) -> bool {
    // A plain name is compared in its familiar form (docker.io/library/x = x).
    let pat = match Reference::parse(pat) {
        Ok(r) if !pat.contains(['*', '?']) => match r.tag() {
            Some(t) if pat.ends_with(&format!(":{t}")) => format!("{}:{t}", r.familiar_name()),
            _ => r.familiar_name(),
        },
        _ => pat.to_string(),
    };
    glob(&pat, repo) || glob(&pat, &format!("{repo}:{tag}"))
}

/// One parsed `--filter KEY=VALUE` of `images`.
enum Filter {
    Dangling(bool),
    Reference(String),
    Before(i64),
    Since(i64),
    Label(String, Option<String>),
}

fn created_of(g: &Globals, what: &str, q: &str) -> anyhow::Result<i64> {
    let r = image::resolve_image(&g.root, q)?;
    r.image
        .config
        .created
        .as_deref()
        .and_then(parse_rfc3339)
        .ok_or_else(|| {
            anyhow::anyhow!("images --filter {what}={q}: that image records no creation time")
        })
}

fn parse_filter(g: &Globals, f: &str) -> anyhow::Result<Filter> {
    let Some((k, v)) = f.split_once('=') else {
        bail!(
            "images --filter {f}: expected KEY=VALUE (dangling, reference, before, since, label)"
        );
    };
    Ok(match k {
        "dangling" => match v {
            "true" | "1" => Filter::Dangling(true),
            "false" | "0" => Filter::Dangling(false),
            _ => bail!("images --filter dangling={v}: expected true or false"),
        },
        "reference" => Filter::Reference(v.to_string()),
        "before" => Filter::Before(created_of(g, k, v)?),
        "since" => Filter::Since(created_of(g, k, v)?),
        "label" => match v.split_once('=') {
            Some((lk, lv)) => Filter::Label(lk.to_string(), Some(lv.to_string())),
            None => Filter::Label(v.to_string(), None),
        },
        _ => bail!(
            "images --filter {f}: unknown filter {k:?} (dangling, reference, before, since, label)"
        ),
    })
}

fn keep(f: &Filter, rec: &catalog::ImageInfo, repo: &str, tag: &str) -> bool {
    let created = rec.config.created.as_deref().and_then(parse_rfc3339);
    match f {
        Filter::Dangling(d) => (tag == "<none>") == *d,
        Filter::Reference(p) => reference_matches(p, repo, tag),
        Filter::Before(t) => created.is_some_and(|c| c < *t),
        Filter::Since(t) => created.is_some_and(|c| c > *t),
        Filter::Label(k, v) => {
            let labels = rec.config.config.as_ref().and_then(|c| c.labels.as_ref());
            match (labels.and_then(|l| l.get(k)), v) {
                (Some(have), Some(want)) => have == want,
                (Some(_), None) => true,
                (None, _) => false,
            }
        }
    }
}

pub fn images(g: &Globals, a: ImagesArgs) -> anyhow::Result<ExitCode> {
    let filters: Vec<Filter> = a
        .filter
        .iter()
        .map(|f| parse_filter(g, f))
        .collect::<anyhow::Result<_>>()?;
    let mut recs = Vec::new();
    for rec in catalog::without_pinned_duplicates(catalog::list(&g.root)?) {
        let (repo, tag) = repo_tag(&rec.name);
        let wanted = a
            .reference
            .as_deref()
            .is_none_or(|p| reference_matches(p, &repo, &tag))
            && filters.iter().all(|f| keep(f, &rec, &repo, &tag));
        if wanted {
            recs.push(rec);
        }
    }
    let sizes = catalog::unpacked_sizes(&g.root, &recs)?;
    let mut rows = Vec::new();
    for (rec, size) in recs.iter().zip(sizes) {
        let (manifest, config) = (&rec.manifest, &rec.config);
        let (repo, tag) = repo_tag(&rec.name);
        rows.push(json!({
            "Name": rec.name,
            "Repository": repo,
            "Tag": tag,
            "Id": manifest.config.digest.to_string(),
            "Digest": rec.descriptor.digest.to_string(),
            "RepoDigest": catalog::registry_digest(&rec.descriptor),
            "Created": config.created,
            "Size": size,
            "CompressedSize": image_size(&rec.descriptor, manifest),
        }));
    }
    let mut out = std::io::stdout().lock();
    if a.format == "json" {
        serde_json::to_writer_pretty(&mut out, &rows)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    if a.format != "table" {
        let t = super::template::Template::parse(&a.format)?;
        let trows: Vec<Value> = rows
            .iter()
            .map(|r| {
                let id = r["Id"].as_str().unwrap_or("");
                let short: String = id.trim_start_matches("sha256:").chars().take(12).collect();
                json!({
                    "ID": if a.no_trunc { id.to_string() } else { short },
                    "Repository": r["Repository"],
                    "Tag": r["Tag"],
                    "Digest": r["RepoDigest"],
                    "CreatedAt": r["Created"].as_str().unwrap_or(""),
                    "CreatedSince": r["Created"].as_str().map(time_ago).unwrap_or_else(|| "N/A".into()),
                    "Size": human_size(r["Size"].as_u64().unwrap_or(0)),
                    "Containers": "N/A",
                })
            })
            .collect();
        let headers = [
            ("ID", "IMAGE ID"),
            ("CreatedSince", "CREATED"),
            ("CreatedAt", "CREATED AT"),
        ];
        out.write_all(t.render_all(&trows, &headers)?.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let id = |v: &Value| {
        let full = v["Id"].as_str().unwrap_or("").to_string();
        if a.no_trunc {
            full
        } else {
            full.trim_start_matches("sha256:")
                .chars()
                .take(12)
                .collect()
        }
    };
    if a.quiet {
        let mut seen = Vec::new();
        for r in &rows {
            let i = id(r);
            if !seen.contains(&i) {
                writeln!(out, "{i}")?;
                seen.push(i);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Docker's columns; `--digests` adds DIGEST after TAG.
    let mut header = vec!["REPOSITORY", "TAG"];
    if a.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap_or("").to_string();
            let mut row = vec![text("Repository"), text("Tag")];
            if a.digests {
                row.push(text("RepoDigest"));
            }
            row.extend([
                id(r),
                r["Created"]
                    .as_str()
                    .map(time_ago)
                    .unwrap_or_else(|| "N/A".into()),
                human_size(r["Size"].as_u64().unwrap_or(0)),
            ]);
            row
        })
        .collect();
    print_rows(&mut out, &header, &table)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn print_table<const N: usize>(
    out: &mut impl Write,
    header: &[&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.to_vec()).collect();
    print_rows(out, header, &rows)
}

/// Columns padded to their widest cell, three spaces apart, the last unpadded.
fn print_rows(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let n = header.len();
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == n {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}   ", width = w[i]));
            }
        }
        s
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for r in rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

pub fn inspect(g: &Globals, a: InspectArgs) -> anyhow::Result<ExitCode> {
    let mut all = Vec::new();
    for q in &a.images {
        if a.kind.as_deref() != Some("image") {
            match crate::container::control::lookup(&g.root, q) {
                Ok(id) => {
                    all.push(crate::container::inspect::inspect(&g.root, &id)?);
                    continue;
                }
                Err(e) if a.kind.as_deref() == Some("container") => return Err(e.into()),
                Err(crate::container::Error::Ambiguous { .. }) if q.len() >= 12 => {}
                Err(_) => {}
            }
        }
        let r = image::resolve_image(&g.root, q)?;
        let (manifest, config) = (&r.image.manifest, &r.image.config);
        let tags: Vec<String> = r
            .names
            .iter()
            .filter_map(|n| Reference::parse(n).ok())
            .filter_map(|rf| rf.tag().map(|t| format!("{}:{t}", rf.familiar_name())))
            .collect();
        let layers: Vec<Value> = manifest
            .layers
            .iter()
            .map(|l| json!({"Digest": l.digest, "MediaType": l.media_type, "Size": l.size}))
            .collect();
        all.push(json!({
            "Id": manifest.config.digest,
            "RepoTags": tags,
            "RepoDigests": catalog::repo_digests(&r),
            "Created": config.created,
            "Author": config.author.clone().unwrap_or_default(),
            "Architecture": config.architecture,
            "Os": config.os,
            "Variant": config.variant,
            "Size": manifest.layers.iter().map(|l| l.size).sum::<u64>(),
            "Config": config.config.clone(),
            "RootFS": {"Type": if config.rootfs.kind.is_empty() { "layers".to_string() } else { config.rootfs.kind.clone() },
                       "Layers": config.rootfs.diff_ids},
            "Manifest": manifest_json(&r),
            "Layers": layers,
        }));
    }
    let mut out = std::io::stdout().lock();
    if let Some(f) = &a.format {
        let t = super::template::Template::parse(f)?;
        for v in &all {
            writeln!(out, "{}", t.render(v)?)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    serde_json::to_writer_pretty(&mut out, &all)?;
    writeln!(out)?;
    Ok(ExitCode::SUCCESS)
}

pub fn history(g: &Globals, a: HistoryArgs) -> anyhow::Result<ExitCode> {
    let r = image::resolve_image(&g.root, &a.image)?;
    let (manifest, config) = (&r.image.manifest, &r.image.config);
    // SIZE is what the layer unpacks to, as `docker history` and `images` show it;
    // the blob's own size is CompressedSize in JSON.
    let unpacked = catalog::layer_sizes(&g.root, &manifest.layers)?;
    // Non-empty history entries correspond, in order, to the manifest's layers.
    let mut layers = manifest.layers.iter().zip(&unpacked);
    let mut entries: Vec<Value> = config
        .history
        .iter()
        .map(|h| {
            let layer = if h.empty_layer { None } else { layers.next() };
            json!({
                "Created": h.created,
                "CreatedBy": h.created_by.clone().unwrap_or_default(),
                "Comment": h.comment.clone().unwrap_or_default(),
                "EmptyLayer": h.empty_layer,
                "Layer": layer.map(|(l, _)| l.digest.to_string()),
                "Size": layer.map(|(_, n)| *n).unwrap_or(0),
                "CompressedSize": layer.map(|(l, _)| l.size).unwrap_or(0),
            })
        })
        .collect();
    if config.history.is_empty() {
        // No history recorded: one row per layer.
        for (l, n) in manifest.layers.iter().zip(&unpacked) {
            entries.push(
                json!({"Created": null, "CreatedBy": "", "Comment": "", "EmptyLayer": false,
                                "Layer": l.digest, "Size": n, "CompressedSize": l.size}),
            );
        }
    }
    entries.reverse();
    let mut out = std::io::stdout().lock();
    if a.format == Format::Json {
        serde_json::to_writer_pretty(&mut out, &entries)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let id = if a.no_trunc {
        manifest.config.digest.to_string()
    } else {
        manifest.config.digest.short().to_string()
    };
    if a.quiet {
        // Docker prints the IDs it has: the image's own for the top row only.
        writeln!(out, "{id}")?;
        return Ok(ExitCode::SUCCESS);
    }
    let human = a.human;
    let rows: Vec<[String; 5]> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let by = e["CreatedBy"].as_str().unwrap_or("");
            let by = if a.no_trunc || by.chars().count() <= 45 {
                by.to_string()
            } else {
                format!("{}...", by.chars().take(42).collect::<String>())
            };
            [
                if i == 0 {
                    id.clone()
                } else {
                    "<missing>".into()
                },
                e["Created"]
                    .as_str()
                    .map(|c| if human { time_ago(c) } else { c.to_string() })
                    .unwrap_or_else(|| "N/A".into()),
                by,
                if human {
                    human_size(e["Size"].as_u64().unwrap_or(0))
                } else {
                    e["Size"].as_u64().unwrap_or(0).to_string()
                },
                e["Comment"].as_str().unwrap_or("").to_string(),
            ]
        })
        .collect();
    print_table(
        &mut out,
        &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
        &rows,
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn tag(g: &Globals, a: TagArgs) -> anyhow::Result<ExitCode> {
    let target = Reference::parse(&a.target)?;
    if target.tag().is_none() {
        bail!(
            "tag {}: the new name needs a tag, not only a digest",
            a.target
        );
    }
    catalog::tag(&g.root, &a.source, &target)?;
    Ok(ExitCode::SUCCESS)
}

pub fn rmi(g: &Globals, a: RmiArgs) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    for q in &a.images {
        let removed = crate::container::gc::remove_image(&g.root, q, a.force)?;
        if removed.is_empty() {
            bail!("rmi {q}: image has no name to remove");
        }
        for n in removed {
            writeln!(out, "Untagged: {n}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The descriptor of an inspected image's manifest.
fn manifest_json(r: &image::ResolvedImage) -> Value {
    let m = &r.image;
    json!({"Digest": m.digest, "MediaType": m.media_type, "Size": m.size})
}

/// `1.5kB`, `23.4MB` (decimal units, as Docker prints): [`super::units::size`].
pub(super) fn human_size(n: u64) -> String {
    super::units::size(n)
}

/// Seconds since the epoch of an RFC 3339 timestamp (`2024-01-02T03:04:05.5Z`,
/// offsets allowed). `None` when it does not parse.
pub(super) fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o.get(1..3)?.parse::<i64>().ok()? * 3600
                + o.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + h * 3600 + mi * 60 + se - offset)
}

/// "3 days ago" for an RFC 3339 timestamp; the raw string when it does not parse.
pub(super) fn time_ago(s: &str) -> String {
    let Some(t) = parse_rfc3339(s) else {
        return s.to_string();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let d = now - t;
    let plural = |n: i64, unit: &str| format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" });
    match d {
        d if d < 0 => "in the future".into(),
        d if d < 60 => "Less than a minute ago".into(),
        d if d < 3600 => plural(d / 60, "minute"),
        d if d < 86400 => plural(d / 3600, "hour"),
        d if d < 86400 * 14 => plural(d / 86400, "day"),
        d if d < 86400 * 60 => plural(d / (86400 * 7), "week"),
        d if d < 86400 * 730 => plural(d / (86400 * 30), "month"),
        d => plural(d / (86400 * 365), "year"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1500), "1.5kB");
        assert_eq!(human_size(74_500_000), "74.5MB");
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-03-01T12:00:00.123456789Z"),
            Some(1709294400)
        );
        assert_eq!(parse_rfc3339("2024-03-01T13:00:00+01:00"), Some(1709294400));
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(time_ago("bogus"), "bogus");
    }
}
