//! Text -> syntax tree.
//!
//! Two passes in one loop, as BuildKit's frontend does: physical lines are joined into
//! logical lines (directives, comments, continuations, blank lines), then each logical
//! line becomes a typed [`Instruction`]; heredoc bodies are read from the physical lines
//! that follow the instruction.

use std::borrow::Cow;

use super::ast::*;
use super::error::{suggest, Error, Location};
use super::words::{unquote, word_end, words};

/// Instruction keywords, upper case.
pub const KEYWORDS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

const DIRECTIVES: [&str; 3] = ["syntax", "escape", "check"];

/// Parse Buildfile bytes: checks UTF-8 (an error names the line and column of the first
/// bad byte) and drops a leading byte-order mark.
pub fn parse_bytes(file: &str, bytes: &[u8]) -> Result<Buildfile, Error> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(file, text),
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            let line = good.iter().filter(|b| **b == b'\n').count() as u32 + 1;
            let line_start = good
                .iter()
                .rposition(|b| *b == b'\n')
                .map(|p| p + 1)
                .unwrap_or(0);
            let prefix = String::from_utf8_lossy(&bytes[line_start..e.valid_up_to()]);
            let line_end = bytes[line_start..]
                .iter()
                .position(|b| *b == b'\n')
                .map(|p| line_start + p)
                .unwrap_or(bytes.len());
            Err(Error::Encoding {
                at: Box::new(Location {
                    file: file.to_string(),
                    line,
                    column: prefix.chars().count() as u32 + 1,
                    source_line: String::from_utf8_lossy(&bytes[line_start..line_end]).into_owned(),
                }),
            })
        }
    }
}

/// Parse Buildfile text. `file` is only used in error messages.
pub fn parse(file: &str, text: &str) -> Result<Buildfile, Error> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines: Vec<&str> = Vec::with_capacity(text.bytes().filter(|b| *b == b'\n').count() + 1);
    lines.extend(text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)));
    // The newline ending the last line does not start another line.
    if text.ends_with('\n') {
        lines.pop();
    }
    let mut p = Parser {
        file,
        lines: &lines,
        escape: '\\',
    };
    let (directives, mut i) = p.directives()?;
    // Reserve for the lines that may start an instruction (a letter first), so the
    // vector of ~230-byte instructions is not re-copied as it grows.
    let candidates = lines
        .iter()
        .filter(|l| {
            l.trim_start()
                .starts_with(|c: char| c.is_ascii_alphabetic())
        })
        .count();
    let mut instructions = Vec::with_capacity(candidates.min(1 << 16));
    while i < lines.len() {
        let Some(logical) = p.logical_line(&mut i) else {
            continue;
        };
        let mut ins = p.instruction(&logical, 0, false)?;
        p.read_heredocs(&mut ins, &logical, &mut i)?;
        instructions.push(ins);
    }
    let stages = p.stages(&instructions)?;
    Ok(Buildfile {
        escape: p.escape,
        directives,
        instructions,
        stages,
    })
}

/// A logical line: physical lines joined across continuations.
pub(crate) struct Logical<'a> {
    pub text: Cow<'a, str>,
    /// Where the first physical line starts: (0-based line, byte offset in it).
    first: (usize, usize),
    /// Continuation lines: (offset in `text`, 0-based line); they start at byte 0.
    more: Vec<(usize, usize)>,
    start: usize,
    end: usize,
}

struct Parser<'a> {
    file: &'a str,
    lines: &'a [&'a str],
    escape: char,
}

fn is_ws(c: char) -> bool {
    c == ' ' || c == '\t'
}

impl<'a> Parser<'a> {
    fn err_at(&self, line: usize, byte: usize, message: String, hint: Option<String>) -> Error {
        let src = self.lines.get(line).copied().unwrap_or("");
        let mut b = byte.min(src.len());
        while !src.is_char_boundary(b) {
            b -= 1;
        }
        Error::Syntax {
            at: Box::new(Location {
                file: self.file.to_string(),
                line: line as u32 + 1,
                column: src[..b].chars().count() as u32 + 1,
                source_line: src.to_string(),
            }),
            message,
            hint,
        }
    }

    /// An error at byte `off` of a logical line.
    fn err(
        &self,
        l: &Logical,
        off: usize,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Error {
        let (line, byte) = l.position(off);
        self.err_at(line, byte, message.into(), hint)
    }

    /// Parser directives: only at the very top, before any comment, blank line or
    /// instruction. An unknown directive is a comment and ends the directive block.
    fn directives(&mut self) -> Result<(Vec<Directive>, usize), Error> {
        let mut out: Vec<Directive> = Vec::new();
        let mut i = 0;
        while i < self.lines.len() {
            let line = self.lines[i];
            let Some((name, value, value_off)) = directive(line) else {
                break;
            };
            let lname = name.to_ascii_lowercase();
            if !DIRECTIVES.contains(&lname.as_str()) {
                break;
            }
            if out.iter().any(|d| d.name == lname) {
                return Err(self.err_at(
                    i,
                    0,
                    format!("only one {lname} parser directive can be used"),
                    Some("remove the repeated directive".into()),
                ));
            }
            if lname == "escape" {
                self.escape = match value {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(self.err_at(
                            i,
                            value_off,
                            format!("invalid escape token '{value}' does not match ` or \\"),
                            None,
                        ))
                    }
                };
            }
            out.push(Directive {
                name: lname,
                value: value.to_string(),
                line: i as u32 + 1,
            });
            i += 1;
        }
        Ok((out, i))
    }

    /// Strip a trailing escape character (and trailing blanks after it). As in
    /// BuildKit, an escape preceded by another escape (`foo \\\\`) is an escaped
    /// escape, not a continuation.
    fn continuation<'s>(&self, s: &'s str) -> (&'s str, bool) {
        let t = s.trim_end_matches(is_ws);
        match t.strip_suffix(self.escape) {
            Some(body) if !body.ends_with(self.escape) => (body, true),
            _ => (s, false),
        }
    }

    /// Read the next logical line starting at physical line `*i`; advances `*i` past it.
    /// Returns None for blank and comment lines.
    fn logical_line(&self, i: &mut usize) -> Option<Logical<'a>> {
        let start = *i;
        let raw = self.lines[start];
        *i += 1;
        let trimmed = raw.trim_start_matches(|c: char| c.is_whitespace());
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return None;
        }
        let lead = raw.len() - trimmed.len();
        let (body, mut cont) = self.continuation(trimmed);
        let mut text = Cow::Borrowed(body);
        let mut more = Vec::new();
        let mut end = start;
        while cont && *i < self.lines.len() {
            let l = self.lines[*i];
            end = *i;
            *i += 1;
            let t = l.trim_start_matches(|c: char| c.is_whitespace());
            // Comment lines inside a continuation are dropped.
            if t.starts_with('#') {
                continue;
            }
            // Blank lines inside a continuation are skipped (Docker warns about
            // them; see the NoEmptyContinuation lint).
            if t.is_empty() {
                continue;
            }
            let (body, c) = self.continuation(l);
            cont = c;
            more.push((text.len(), end));
            if let Cow::Borrowed(first) = text {
                // Room for a few more continuation lines without regrowing.
                let mut owned = String::with_capacity(first.len() + 4 * l.len());
                owned.push_str(first);
                text = Cow::Owned(owned);
            }
            text.to_mut().push_str(body);
        }
        if text.trim().is_empty() {
            return None;
        }
        Some(Logical {
            text,
            first: (start, lead),
            more,
            start,
            end,
        })
    }

    fn instruction(&self, l: &Logical, off: usize, in_onbuild: bool) -> Result<Instruction, Error> {
        let text: &str = &l.text;
        let rest_all = &text[off..];
        let kw_len = rest_all
            .find(|c: char| c.is_whitespace())
            .unwrap_or(rest_all.len());
        let keyword = &rest_all[..kw_len];
        let Some(&kind) = KEYWORDS.iter().find(|k| k.eq_ignore_ascii_case(keyword)) else {
            let hint = suggest(keyword, &KEYWORDS).map(|s| format!("did you mean {s}?"));
            let shown: String = keyword.chars().take(40).collect();
            let more = if shown.len() < keyword.len() {
                "..."
            } else {
                ""
            };
            return Err(self.err(l, off, format!("unknown instruction {shown}{more}"), hint));
        };
        let mut pos = off + kw_len;
        pos += ws_len(&text[pos..]);
        let flags_start = pos;
        let (flags, after) = self.flags(l, pos)?;
        pos = after;
        let args = text[pos..].trim_end();
        let mut ins = Instruction {
            keyword: if keyword == kind {
                Cow::Borrowed(kind)
            } else {
                Cow::Owned(keyword.to_string())
            },
            lines: LineRange {
                start: l.start as u32 + 1,
                end: l.end as u32 + 1,
            },
            flags,
            heredocs: Vec::new(),
            command: Command::Maintainer {
                name: String::new(),
            },
        };
        let fl = Flags {
            p: self,
            l,
            flags: &ins.flags,
            start: flags_start,
            kw: kind,
        };
        if matches!(
            kind,
            "RUN" | "CMD" | "ENTRYPOINT" | "SHELL" | "ADD" | "COPY" | "VOLUME"
        ) {
            self.strings_only(l, pos, args)?;
        }
        let need_args = |what: &str| -> Result<(), Error> {
            if args.is_empty() {
                Err(self.err(l, off, format!("{kind} requires {what}"), None))
            } else {
                Ok(())
            }
        };
        let cmd = match kind {
            "FROM" => {
                fl.allow(&["platform"])?;
                need_args("either one or three arguments")?;
                let words: Vec<(usize, &str)> = split_plain(args);
                let (image, name, as_kw) = match words.as_slice() {
                    [(_, img)] => (*img, None, None),
                    [(_, img), (_, as_kw), (noff, name)] if as_kw.eq_ignore_ascii_case("as") => {
                        if !valid_stage_name(name) {
                            return Err(self.err(
                                l,
                                pos + noff,
                                format!("invalid name for build stage: \"{name}\", name can't start with a number or contain symbols"),
                                None,
                            ));
                        }
                        (*img, Some(name.to_string()), Some(as_kw.to_string()))
                    }
                    _ => {
                        return Err(self.err(
                            l,
                            off,
                            "FROM requires either one or three arguments",
                            Some("use FROM image [AS name]".into()),
                        ))
                    }
                };
                Command::From {
                    image: image.to_string(),
                    platform: fl.string("platform")?,
                    name,
                    as_keyword: as_kw,
                }
            }
            "RUN" => {
                fl.allow(&["mount", "network", "security"])?;
                need_args("at least one argument")?;
                let mut mounts = Vec::new();
                for (i, f) in ins.flags.iter().enumerate() {
                    if f.name == "mount" {
                        let v = fl.value_of(i)?;
                        mounts.push(self.mount(&fl, i, v)?);
                    }
                }
                let network = fl.choice("network", &["default", "none", "host"])?;
                let security = fl.choice("security", &["sandbox", "insecure"])?;
                Command::Run {
                    command: cmdline(args),
                    mounts,
                    network,
                    security,
                }
            }
            "CMD" | "ENTRYPOINT" => {
                // BuildKit accepts an empty CMD/ENTRYPOINT (it clears the inherited one).
                fl.allow(&[])?;
                if kind == "CMD" {
                    Command::Cmd {
                        command: cmdline(args),
                    }
                } else {
                    Command::Entrypoint {
                        command: cmdline(args),
                    }
                }
            }
            "SHELL" => {
                fl.allow(&[])?;
                match cmdline(args) {
                    CmdLine::Exec { args: a } if !a.is_empty() => Command::Shell { args: a },
                    _ => {
                        return Err(self.err(
                            l,
                            off,
                            "SHELL requires the arguments to be in JSON form",
                            Some("write SHELL [\"/bin/sh\", \"-c\"]".into()),
                        ))
                    }
                }
            }
            "LABEL" | "ENV" => {
                fl.allow(&[])?;
                need_args("at least one argument")?;
                let (pairs, legacy) = self.name_vals(l, pos, args, kind)?;
                if kind == "LABEL" {
                    Command::Label { pairs, legacy }
                } else {
                    Command::Env { pairs, legacy }
                }
            }
            "EXPOSE" => {
                fl.allow(&[])?;
                need_args("at least one argument")?;
                let mut ports = Vec::new();
                for (o, w) in words(args, self.escape) {
                    if !w.contains('$') {
                        if let Err(m) = parse_port(&unquote(w, self.escape)) {
                            return Err(self.err(l, pos + o, m, None));
                        }
                    }
                    ports.push(w.to_string());
                }
                Command::Expose { ports }
            }
            "ADD" | "COPY" => {
                if kind == "ADD" {
                    fl.allow(&[
                        "chown",
                        "chmod",
                        "link",
                        "checksum",
                        "keep-git-dir",
                        "exclude",
                        "unpack",
                    ])?;
                } else {
                    fl.allow(&["from", "chown", "chmod", "link", "parents", "exclude"])?;
                }
                need_args("at least two arguments, but got 0")?;
                let (mut list, json) = match json_array(args) {
                    Some(args) => (args, true),
                    None => (
                        words(args, self.escape)
                            .map(|(_, w)| w.to_string())
                            .collect(),
                        false,
                    ),
                };
                if list.len() < 2 {
                    return Err(self.err(
                        l,
                        off,
                        format!(
                            "{kind} requires at least two arguments, but got {}",
                            list.len()
                        ),
                        Some(format!("use {kind} <src>... <dest>")),
                    ));
                }
                let dest = list.pop().unwrap_or_default();
                let exclude = fl.all("exclude")?;
                if kind == "ADD" {
                    Command::Add {
                        sources: list,
                        dest,
                        json,
                        chown: fl.string("chown")?,
                        chmod: fl.string("chmod")?,
                        link: fl.boolean("link")?,
                        checksum: fl.string("checksum")?,
                        keep_git_dir: fl.boolean("keep-git-dir")?,
                        exclude,
                        unpack: fl.optional_boolean("unpack")?,
                    }
                } else {
                    Command::Copy {
                        sources: list,
                        dest,
                        json,
                        from: fl.string("from")?,
                        chown: fl.string("chown")?,
                        chmod: fl.string("chmod")?,
                        link: fl.boolean("link")?,
                        parents: fl.boolean("parents")?,
                        exclude,
                    }
                }
            }
            "VOLUME" => {
                fl.allow(&[])?;
                need_args("at least one argument")?;
                match json_array(args) {
                    Some(args) => {
                        if args.iter().any(|a| a.trim().is_empty()) {
                            return Err(self.err(
                                l,
                                pos,
                                "VOLUME specified can not be an empty string",
                                None,
                            ));
                        }
                        Command::Volume {
                            paths: args,
                            json: true,
                        }
                    }
                    None => Command::Volume {
                        paths: words(args, self.escape)
                            .map(|(_, w)| w.to_string())
                            .collect(),
                        json: false,
                    },
                }
            }
            "USER" | "WORKDIR" | "STOPSIGNAL" | "MAINTAINER" => {
                fl.allow(&[])?;
                let what = if kind == "MAINTAINER" {
                    "at least one argument"
                } else {
                    "exactly one argument"
                };
                need_args(what)?;
                let s = args.to_string();
                match kind {
                    "USER" => Command::User { user: s },
                    "WORKDIR" => Command::Workdir { path: s },
                    "STOPSIGNAL" => Command::Stopsignal { signal: s },
                    _ => Command::Maintainer { name: s },
                }
            }
            "ARG" => {
                fl.allow(&[])?;
                need_args("at least one argument")?;
                let mut decls = Vec::new();
                for (o, w) in words(args, self.escape) {
                    let (name, default) = match w.split_once('=') {
                        Some((n, d)) => (n, Some(d.to_string())),
                        None => (w, None),
                    };
                    // BuildKit accepts any non-empty name (only names made of letters,
                    // digits and `_` can be referenced with `$`).
                    if name.is_empty() {
                        return Err(self.err(l, pos + o, "ARG names can not be blank", None));
                    }
                    decls.push(ArgDecl {
                        name: name.to_string(),
                        default,
                    });
                }
                Command::Arg { args: decls }
            }
            "ONBUILD" => {
                fl.allow(&[])?;
                need_args("at least one argument")?;
                if in_onbuild {
                    return Err(self.err(l, off, "ONBUILD ONBUILD isn't allowed", None));
                }
                let trigger = self.instruction(l, pos, true)?;
                match trigger.command {
                    Command::From { .. } | Command::Maintainer { .. } => {
                        return Err(self.err(
                            l,
                            pos,
                            format!(
                                "{} isn't allowed as an ONBUILD trigger",
                                trigger.command.name()
                            ),
                            None,
                        ))
                    }
                    Command::Onbuild { .. } => {
                        return Err(self.err(l, pos, "ONBUILD ONBUILD isn't allowed", None));
                    }
                    _ => {}
                }
                Command::Onbuild {
                    trigger: Box::new(trigger),
                }
            }
            "HEALTHCHECK" => {
                fl.allow(&[
                    "interval",
                    "timeout",
                    "start-period",
                    "start-interval",
                    "retries",
                ])?;
                need_args("at least one argument")?;
                let tlen = args.find(|c: char| c.is_whitespace()).unwrap_or(args.len());
                let (typ, rest) = (&args[..tlen], args[tlen..].trim());
                self.strings_only(
                    l,
                    pos + (args.len() - args[tlen..].trim_start().len()),
                    rest,
                )?;
                if typ.eq_ignore_ascii_case("none") {
                    if !rest.is_empty() {
                        return Err(self.err(l, pos, "HEALTHCHECK NONE takes no arguments", None));
                    }
                    // BuildKit ignores the (known) flags of HEALTHCHECK NONE; so do we.
                    Command::Healthcheck {
                        check: Health::None,
                    }
                } else if typ.eq_ignore_ascii_case("cmd") {
                    if rest.is_empty() {
                        return Err(self.err(
                            l,
                            pos,
                            "missing command after HEALTHCHECK CMD",
                            None,
                        ));
                    }
                    let dur = |name: &str| -> Result<Option<String>, Error> {
                        let v = fl.string(name)?;
                        if let Some(s) = &v {
                            match parse_duration(s) {
                                Some(d)
                                    if d.is_zero() || d >= std::time::Duration::from_millis(1) => {}
                                Some(_) => {
                                    return Err(fl.err(
                                        name,
                                        format!("{name} \"{s}\" cannot be less than 1ms"),
                                    ))
                                }
                                None => {
                                    return Err(fl.err(
                                        name,
                                        format!("invalid duration \"{s}\" for --{name}"),
                                    ))
                                }
                            }
                        }
                        Ok(v)
                    };
                    let retries = match fl.string("retries")? {
                        None => None,
                        Some(s) => match s.parse::<u32>() {
                            Ok(n) => Some(n),
                            Err(_) => {
                                return Err(fl.err(
                                    "retries",
                                    format!(
                                        "--retries must be a non-negative integer, not \"{s}\""
                                    ),
                                ))
                            }
                        },
                    };
                    Command::Healthcheck {
                        check: Health::Cmd {
                            command: cmdline(rest),
                            interval: dur("interval")?,
                            timeout: dur("timeout")?,
                            start_period: dur("start-period")?,
                            start_interval: dur("start-interval")?,
                            retries,
                        },
                    }
                } else {
                    return Err(self.err(
                        l,
                        pos,
                        format!("unknown type \"{typ}\" in HEALTHCHECK"),
                        Some("try CMD or NONE".into()),
                    ));
                }
            }
            _ => return Err(self.err(l, off, format!("unknown instruction {keyword}"), None)),
        };
        ins.command = cmd;
        // Heredoc markers (bodies are read by the caller).
        if matches!(kind, "RUN" | "COPY" | "ADD") {
            let is_shell = match &ins.command {
                Command::Run { command, .. } => !command.is_exec(),
                Command::Copy { json, .. } | Command::Add { json, .. } => !json,
                _ => false,
            };
            if is_shell && args.contains("<<") {
                for (o, w) in words(args, self.escape) {
                    match heredoc_marker(w, self.escape) {
                        Ok(Some(h)) => ins.heredocs.push(h),
                        Ok(None) => {}
                        Err(m) => {
                            return Err(self.err(
                                l,
                                pos + o,
                                m,
                                Some("quote the whole delimiter: <<'EOF' or <<\"EOF\"".into()),
                            ))
                        }
                    }
                }
            }
        }
        Ok(ins)
    }

    /// Read heredoc bodies for `ins` (or its ONBUILD trigger) from the lines after the
    /// instruction.
    fn read_heredocs(
        &self,
        ins: &mut Instruction,
        l: &Logical,
        i: &mut usize,
    ) -> Result<(), Error> {
        let target = match &mut ins.command {
            Command::Onbuild { trigger } => &mut trigger.heredocs,
            _ => &mut ins.heredocs,
        };
        if target.is_empty() {
            return Ok(());
        }
        for h in target.iter_mut() {
            let mut content = String::new();
            let mut done = false;
            while *i < self.lines.len() {
                let line = self.lines[*i];
                *i += 1;
                let cand = if h.strip_tabs {
                    line.trim_start_matches('\t')
                } else {
                    line
                };
                if cand == h.name {
                    done = true;
                    break;
                }
                content.push_str(cand);
                content.push('\n');
            }
            if !done {
                let off = l.text.find("<<").unwrap_or(0);
                return Err(self.err(
                    l,
                    off,
                    format!("unterminated heredoc {}", h.name),
                    Some(format!("end it with a line holding only {}", h.name)),
                ));
            }
            h.content = content;
        }
        let end = *i as u32;
        ins.lines.end = end;
        if let Command::Onbuild { trigger } = &mut ins.command {
            trigger.lines.end = end;
        }
        Ok(())
    }

    /// BuildKit's rule for the JSON form: text that is not valid JSON is shell
    /// form, but a valid JSON array holding anything other than strings
    /// (`CMD ["echo", ["x"]]`, `COPY ["a", 2, "/d/"]`) is an error.
    fn strings_only(&self, l: &Logical, at: usize, args: &str) -> Result<(), Error> {
        let t = args.trim();
        if !(t.starts_with('[') && t.ends_with(']')) {
            return Ok(());
        }
        match serde_json::from_str::<Vec<serde_json::Value>>(t) {
            Ok(items) if items.iter().any(|v| !v.is_string()) => Err(self.err(
                l,
                at,
                "when using JSON array syntax, arrays must be comprised of strings only",
                Some("quote every element, e.g. [\"echo\", \"2\"]".into()),
            )),
            _ => Ok(()),
        }
    }

    /// `--name[=value]` flags at the start of the arguments; returns them and where
    /// the arguments after them start. (Flag offsets for errors are recomputed by
    /// [`Flags::off`] only when an error needs one.)
    fn flags(&self, l: &Logical, mut pos: usize) -> Result<(Vec<Flag>, usize), Error> {
        let text: &str = &l.text;
        let mut flags = Vec::new();
        while text[pos..].starts_with("--") {
            let word_len = word_end(&text[pos..], self.escape);
            let word = &text[pos..pos + word_len];
            if word == "--" {
                pos += word_len;
                pos += ws_len(&text[pos..]);
                break;
            }
            let body = &word[2..];
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(unquote(v, self.escape))),
                None => (body, None),
            };
            if name.is_empty() {
                return Err(self.err(l, pos, format!("invalid flag {word}"), None));
            }
            // Names are case-sensitive, as in BuildKit (`--Link` is unknown).
            flags.push(Flag {
                name: name.to_string(),
                value,
            });
            pos += word_len;
            pos += ws_len(&text[pos..]);
        }
        Ok((flags, pos))
    }

    /// `ENV`/`LABEL` pairs: `k=v k2="v 2"` or the legacy `k v` form.
    fn name_vals(
        &self,
        l: &Logical,
        pos: usize,
        args: &str,
        kind: &str,
    ) -> Result<(Vec<Pair>, bool), Error> {
        let mut all = words(args, self.escape);
        let Some((_, first)) = all.next() else {
            return Err(self.err(
                l,
                pos,
                format!("{kind} requires at least one argument"),
                None,
            ));
        };
        if !first.contains('=') {
            let klen = first.len();
            let value = args[klen..].trim();
            if value.is_empty() {
                return Err(self.err(
                    l,
                    pos,
                    format!("{kind} must have two arguments"),
                    Some(format!("use {kind} {first}=<value>")),
                ));
            }
            return Ok((
                vec![Pair {
                    key: first.to_string(),
                    value: value.to_string(),
                }],
                true,
            ));
        }
        let mut pairs = Vec::new();
        for (o, w) in std::iter::once((0, first)).chain(all) {
            let Some((k, v)) = w.split_once('=') else {
                return Err(self.err(
                    l,
                    pos + o,
                    format!("syntax error - can't find = in \"{w}\""),
                    Some("must be of the form name=value".into()),
                ));
            };
            if k.is_empty() {
                return Err(self.err(l, pos + o, format!("{kind} names can not be blank"), None));
            }
            pairs.push(Pair {
                key: k.to_string(),
                value: v.to_string(),
            });
        }
        Ok((pairs, false))
    }

    /// A `--mount=` value: comma-separated `key=value` fields (CSV quoting allowed).
    fn mount(&self, fl: &Flags, flag: usize, spec: &str) -> Result<Mount, Error> {
        const KEYS: [&str; 19] = [
            "type",
            "target",
            "dst",
            "destination",
            "source",
            "src",
            "from",
            "readonly",
            "ro",
            "readwrite",
            "rw",
            "id",
            "sharing",
            "mode",
            "uid",
            "gid",
            "required",
            "size",
            "env",
        ];
        let mut m = Mount::default();
        // The flag's offset is only worked out when there is an error to report.
        let err = |msg: String, hint: Option<String>| self.err(fl.l, fl.off(flag), msg, hint);
        let mut field_fn = |field: &str| -> Result<(), Error> {
            let (key, value) = match field.split_once('=') {
                Some((k, v)) => (lower(k.trim()), Some(v.to_string())),
                None => (lower(field.trim()), None),
            };
            let boolean = |v: &Option<String>| -> Result<bool, Error> {
                match v.as_deref() {
                    None => Ok(true),
                    Some(s) => parse_strconv_bool(s).ok_or_else(|| {
                        let msg = format!("invalid value \"{s}\" for mount option {key}");
                        err(msg, Some("use true or false".into()))
                    }),
                }
            };
            let need = |v: Option<String>| -> Result<String, Error> {
                v.ok_or_else(|| {
                    err(
                        format!("mount option {key} requires a value"),
                        Some(format!("write {key}=<value>")),
                    )
                })
            };
            match &*key {
                "type" => {
                    let v = need(value)?;
                    m.kind = Some(MountType::parse(&v).ok_or_else(|| {
                        err(
                            format!("unsupported mount type \"{v}\""),
                            suggest(&v, &MountType::ALL)
                                .map(|s| format!("did you mean {s}?"))
                                .or_else(|| Some("use bind, cache, tmpfs, secret or ssh".into())),
                        )
                    })?);
                }
                "target" | "dst" | "destination" => m.target = Some(need(value)?),
                "source" | "src" => m.source = Some(need(value)?),
                "from" => m.from = Some(need(value)?),
                "readonly" | "ro" => m.readonly = Some(boolean(&value)?),
                "readwrite" | "rw" => m.readonly = Some(!boolean(&value)?),
                "id" => m.id = Some(need(value)?),
                "sharing" => {
                    let v = need(value)?;
                    if !v.contains('$')
                        && !["shared", "private", "locked"]
                            .contains(&v.to_ascii_lowercase().as_str())
                    {
                        return Err(err(
                            format!("unsupported sharing value \"{v}\""),
                            Some("use shared, private or locked".into()),
                        ));
                    }
                    m.sharing = Some(v);
                }
                "mode" => m.mode = Some(need(value)?),
                "uid" => m.uid = Some(need(value)?),
                "gid" => m.gid = Some(need(value)?),
                "required" => m.required = Some(boolean(&value)?),
                "size" => m.size = Some(need(value)?),
                "env" => m.env = Some(need(value)?),
                "" => {}
                other => {
                    return Err(err(
                        format!("unexpected key '{other}' in '{spec}'"),
                        suggest(other, &KEYS).map(|s| format!("did you mean {s}?")),
                    ))
                }
            }
            Ok(())
        };
        // Unquoted options (the common case) are split without allocating.
        if spec.contains('"') {
            for field in csv_fields(spec) {
                field_fn(&field)?;
            }
        } else {
            for field in spec.split(',') {
                field_fn(field)?;
            }
        }
        let t = m.mount_type();
        if m.target.is_none() && matches!(t, MountType::Bind | MountType::Cache | MountType::Tmpfs)
        {
            return Err(err(
                format!("mount type {} requires a target", t.as_str()),
                Some("add target=<path>".into()),
            ));
        }
        if m.from.is_some() && matches!(t, MountType::Tmpfs | MountType::Secret | MountType::Ssh) {
            return Err(err(
                format!("from is not allowed for mount type {}", t.as_str()),
                None,
            ));
        }
        Ok(m)
    }

    /// Group instructions into stages. Only `ARG` may come before the first `FROM`.
    fn stages(&self, ins: &[Instruction]) -> Result<Vec<Stage>, Error> {
        let mut stages: Vec<Stage> = Vec::new();
        for (i, inst) in ins.iter().enumerate() {
            match &inst.command {
                Command::From { image, name, .. } => {
                    if let Some(last) = stages.last_mut() {
                        last.end = i;
                        last.lines.end = ins[i - 1].lines.end;
                    }
                    stages.push(Stage {
                        index: stages.len(),
                        name: name.as_ref().map(|n| n.to_ascii_lowercase()),
                        base: image.clone(),
                        from: i,
                        end: ins.len(),
                        lines: LineRange {
                            start: inst.lines.start,
                            end: inst.lines.end,
                        },
                    });
                }
                Command::Arg { .. } => {}
                _ if stages.is_empty() => {
                    let line = inst.lines.start as usize - 1;
                    let src = self.lines.get(line).copied().unwrap_or("");
                    let col = src.len() - src.trim_start().len();
                    return Err(self.err_at(
                        line,
                        col,
                        format!(
                            "no build stage in current context: {} before the first FROM",
                            inst.command.name()
                        ),
                        Some("only ARG may come before FROM".into()),
                    ));
                }
                _ => {}
            }
        }
        if let (Some(last), Some(l)) = (stages.last_mut(), ins.last()) {
            last.lines.end = l.lines.end;
        }
        if stages.is_empty() {
            let line = ins.last().map(|i| i.lines.end as usize - 1).unwrap_or(0);
            let msg = if ins.is_empty() {
                "file has no instructions"
            } else {
                "file has no build stage"
            };
            return Err(self.err_at(line, 0, msg.into(), Some("add a FROM line".into())));
        }
        Ok(stages)
    }
}

impl Logical<'_> {
    /// Physical (line, byte) of a byte offset in the logical text.
    fn position(&self, off: usize) -> (usize, usize) {
        let idx = self.more.partition_point(|s| s.0 <= off);
        match idx.checked_sub(1).and_then(|i| self.more.get(i)) {
            Some(&(so, line)) => (line, off - so),
            None => (self.first.0, self.first.1 + off),
        }
    }
}

/// Flag access with allowed-set and type checks.
struct Flags<'p, 'a> {
    p: &'p Parser<'a>,
    l: &'p Logical<'p>,
    flags: &'p [Flag],
    /// Where the first flag starts in the logical text.
    start: usize,
    kw: &'static str,
}

impl Flags<'_, '_> {
    const REPEATABLE: [&'static str; 2] = ["mount", "exclude"];

    /// Byte offset of flag `i` in the logical text: the flags are one word each,
    /// separated by blanks, from `start`.
    fn off(&self, i: usize) -> usize {
        let text: &str = &self.l.text;
        let mut pos = self.start;
        for _ in 0..i {
            if pos >= text.len() {
                break;
            }
            pos += word_end(&text[pos..], self.p.escape);
            pos += ws_len(&text[pos..]);
        }
        pos.min(text.len())
    }

    fn err(&self, name: &str, msg: String) -> Error {
        let i = self.flags.iter().position(|f| f.name == name).unwrap_or(0);
        self.p.err(self.l, self.off(i), msg, None)
    }

    fn allow(&self, names: &[&str]) -> Result<(), Error> {
        // Non-repeatable flags seen so far, as a bit per entry of `names` (at most 6).
        let mut seen: u64 = 0;
        for (i, f) in self.flags.iter().enumerate() {
            if !names.contains(&f.name.as_str()) {
                let hint = suggest(&f.name, names)
                    .map(|s| format!("did you mean --{s}?"))
                    .or_else(|| {
                        Some(if names.is_empty() {
                            format!("{} takes no flags", self.kw)
                        } else {
                            format!("{} accepts --{}", self.kw, names.join(", --"))
                        })
                    });
                return Err(self.p.err(
                    self.l,
                    self.off(i),
                    format!("unknown flag --{} for {}", f.name, self.kw),
                    hint,
                ));
            }
            if Self::REPEATABLE.contains(&f.name.as_str()) {
                continue;
            }
            let bit = 1u64 << names.iter().position(|n| *n == f.name).unwrap_or(0).min(63);
            if seen & bit != 0 {
                return Err(self.p.err(
                    self.l,
                    self.off(i),
                    format!("duplicate flag specified: --{}", f.name),
                    None,
                ));
            }
            seen |= bit;
        }
        Ok(())
    }

    fn value_of(&self, i: usize) -> Result<&str, Error> {
        let f = &self.flags[i];
        match &f.value {
            Some(v) => Ok(v),
            None => Err(self.p.err(
                self.l,
                self.off(i),
                format!("missing a value on flag --{}", f.name),
                Some(format!("write --{}=<value>", f.name)),
            )),
        }
    }

    fn string(&self, name: &str) -> Result<Option<String>, Error> {
        match self.flags.iter().position(|f| f.name == name) {
            Some(i) => self.value_of(i).map(|v| Some(v.to_string())),
            None => Ok(None),
        }
    }

    fn all(&self, name: &str) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        for (i, f) in self.flags.iter().enumerate() {
            if f.name == name {
                out.push(self.value_of(i)?.to_string());
            }
        }
        Ok(out)
    }

    fn boolean(&self, name: &str) -> Result<bool, Error> {
        Ok(self.optional_boolean(name)?.unwrap_or(false))
    }

    /// A boolean flag as BuildKit's bflag reads it: `--x` is true, `--x=V` takes
    /// true or false in any case, `--x=` is a missing value; None when absent.
    fn optional_boolean(&self, name: &str) -> Result<Option<bool>, Error> {
        let Some(i) = self.flags.iter().position(|f| f.name == name) else {
            return Ok(None);
        };
        match self.flags[i].value.as_deref() {
            None => Ok(Some(true)),
            Some("") => self.value_of_nonempty(i).map(|_| None),
            Some(v) => parse_bool(v).map(Some).ok_or_else(|| {
                self.p.err(
                    self.l,
                    self.off(i),
                    format!("expecting boolean value for flag --{name}, not: {v}"),
                    Some(format!("write --{name}=true or --{name}=false")),
                )
            }),
        }
    }

    fn value_of_nonempty(&self, i: usize) -> Result<&str, Error> {
        let f = &self.flags[i];
        match f.value.as_deref() {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(self.p.err(
                self.l,
                self.off(i),
                format!("missing a value on flag --{}", f.name),
                Some(format!("write --{}=<value>", f.name)),
            )),
        }
    }

    fn choice(&self, name: &str, allowed: &[&str]) -> Result<Option<String>, Error> {
        let v = self.string(name)?;
        if let Some(s) = &v {
            if !s.contains('$') && !allowed.contains(&s.to_ascii_lowercase().as_str()) {
                let hint = suggest(s, allowed)
                    .map(|h| format!("did you mean {h}?"))
                    .unwrap_or_else(|| format!("use one of {}", allowed.join(", ")));
                return Err(self
                    .err(name, format!("unsupported --{name} value \"{s}\""))
                    .with_hint(hint));
            }
        }
        Ok(v)
    }
}

impl Error {
    fn with_hint(self, h: String) -> Error {
        match self {
            Error::Syntax { at, message, .. } => Error::Syntax {
                at,
                message,
                hint: Some(h),
            },
            other => other,
        }
    }
}

/// Go's `strconv.ParseBool`, which BuildKit uses for `--mount` options
/// (`readonly=1`, `ro=t`...), unlike instruction flags.
fn parse_strconv_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// BuildKit's boolean flag values: `true` or `false` in any case (not 1/0).
fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn ws_len(s: &str) -> usize {
    s.len() - s.trim_start_matches(|c: char| c.is_whitespace()).len()
}

/// Whitespace-separated words with their byte offsets (no quote handling; FROM).
fn split_plain(s: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        if c.is_whitespace() {
            if let Some(st) = start.take() {
                out.push((st, &s[st..i]));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(st) = start {
        out.push((st, &s[st..]));
    }
    out
}

/// JSON (exec) form when the text is a JSON array of strings, otherwise shell form.
pub(crate) fn cmdline(args: &str) -> CmdLine {
    match json_array(args) {
        Some(v) => CmdLine::Exec { args: v },
        None => CmdLine::Shell {
            text: args.trim().to_string(),
        },
    }
}

/// The strings of a JSON array of strings (`["a", "b"]`), if that is what `args` is.
fn json_array(args: &str) -> Option<Vec<String>> {
    let t = args.trim();
    if t.starts_with('[') && t.ends_with(']') {
        serde_json::from_str::<Vec<String>>(t).ok()
    } else {
        None
    }
}

/// Directive syntax: `# name = value` (name starts with a letter).
fn directive(line: &str) -> Option<(&str, &str, usize)> {
    let t = line.trim_start();
    let body = t.strip_prefix('#')?;
    let b = body.trim_start();
    let name_len = b
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(b.len());
    let name = &b[..name_len];
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let after = b[name_len..].trim_start();
    let value = after.strip_prefix('=')?;
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    let value_off = line.len() - value.trim_start().len();
    Some((name, v, value_off))
}

/// A heredoc marker word: `[fd]<<[-]WORD`, WORD possibly quoted (then no expansion).
/// An unbalanced quote in WORD (`<<'EOF`) is an error, as in BuildKit.
fn heredoc_marker(word: &str, escape: char) -> Result<Option<Heredoc>, String> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let Some(rest) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (strip_tabs, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.starts_with('<') {
        return Ok(None);
    }
    // The delimiter ends at an unquoted shell metacharacter (`cat <<EOF>out`).
    let mut end = rest.len();
    let mut quote = None;
    for (i, c) in rest.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if matches!(c, '>' | '<' | '|' | ';' | '&' | '(' | ')') => {
                end = i;
                break;
            }
            None => {}
        }
    }
    if let Some(q) = quote {
        return Err(format!("unterminated {q} in heredoc delimiter {word}"));
    }
    let raw = &rest[..end];
    let name = unquote(raw, escape);
    if name.is_empty() || name.contains(|c: char| c.is_whitespace()) {
        return Ok(None);
    }
    let fd = if digits > 0 {
        word[..digits].parse().ok()
    } else {
        None
    };
    Ok(Some(Heredoc {
        name,
        content: String::new(),
        expand: !raw.contains(['"', '\'']),
        strip_tabs,
        fd,
    }))
}

/// BuildKit's stage-name rule: a letter, then letters, digits, `-`, `_`, `.`.
pub(crate) fn valid_stage_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic())
        && c.all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
}

/// ASCII lower case, allocating only when something changes.
fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// Split a CSV record (`a=b,"c=d,e"`) into fields, honouring double quotes.
fn csv_fields(s: &str) -> Vec<Cow<'_, str>> {
    if !s.contains('"') {
        return s.split(',').map(Cow::Borrowed).collect();
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if in_q && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => in_q = !in_q,
            ',' if !in_q => out.push(Cow::Owned(std::mem::take(&mut cur))),
            _ => cur.push(c),
        }
    }
    out.push(Cow::Owned(cur));
    out
}

/// A port spec: `80`, `80/tcp`, `8000-8010/udp`. Returns (start, end, protocol).
pub fn parse_port(s: &str) -> Result<(u16, u16, String), String> {
    let (ports, proto) = match s.split_once('/') {
        Some((p, pr)) => (p, pr.to_ascii_lowercase()),
        None => (s, "tcp".to_string()),
    };
    if !["tcp", "udp", "sctp"].contains(&proto.as_str()) {
        return Err(format!(
            "invalid proto \"{proto}\" in port \"{s}\": use tcp, udp or sctp"
        ));
    }
    let num = |p: &str| -> Result<u16, String> {
        p.parse::<u16>()
            .map_err(|_| format!("invalid containerPort: {s}"))
    };
    let (a, b) = match ports.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => {
            let n = num(ports)?;
            (n, n)
        }
    };
    if b < a {
        return Err(format!("invalid range specified for containerPort: {s}"));
    }
    Ok((a, b, proto))
}

/// Go-style duration (`1m30s`, `0.5s`, `250ms`, `0`).
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    if s == "0" {
        return Some(std::time::Duration::ZERO);
    }
    let mut rest = s;
    let mut total: f64 = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let nlen = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if nlen == 0 {
            return None;
        }
        let n: f64 = rest[..nlen].parse().ok()?;
        rest = &rest[nlen..];
        let ulen = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..ulen] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[ulen..];
        total += n * mult;
    }
    if !total.is_finite() || total > 1e12 {
        return None;
    }
    Some(std::time::Duration::from_secs_f64(total))
}
