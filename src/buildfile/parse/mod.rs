//! Text -> syntax tree.
//!
//! Two passes in one loop, as BuildKit's frontend does: physical lines are joined into
//! logical lines (directives, comments, continuations, blank lines), then each logical
//! line becomes a typed [`Instruction`]; heredoc bodies are read from the physical lines
//! that follow the instruction.
//!
//! Files: this one holds the driver, logical lines, directives and stages;
//! [`instruction`] turns a logical line into a typed instruction, [`flags`] reads
//! `--name=value` flags, [`mount`] the `RUN --mount` specs, [`heredoc`] heredoc
//! markers and bodies, and [`values`] port and duration values.

use std::borrow::Cow;

use super::ast::*;
use super::error::{Error, Location};

mod flags;
mod heredoc;
mod instruction;
mod mount;
mod values;

pub use values::{parse_duration, parse_port};

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

/// BuildKit's stage-name rule: a letter, then letters, digits, `-`, `_`, `.`.
pub(crate) fn valid_stage_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic())
        && c.all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
}
