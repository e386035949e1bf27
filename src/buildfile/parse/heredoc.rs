//! Heredocs: markers (`<<EOF`, `<<-"EOF"`) in RUN/COPY/ADD, and their bodies read
//! from the physical lines after the instruction.

use super::super::ast::{Command, Heredoc, Instruction};
use super::super::error::Error;
use super::super::words::unquote;
use super::{Logical, Parser};

impl Parser<'_> {
    /// Read heredoc bodies for `ins` (or its ONBUILD trigger) from the lines after the
    /// instruction.
    pub(super) fn read_heredocs(
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
}

/// A heredoc marker word: `[fd]<<[-]WORD`, WORD possibly quoted (then no expansion).
/// An unbalanced quote in WORD (`<<'EOF`) is an error, as in BuildKit.
pub(super) fn heredoc_marker(word: &str, escape: char) -> Result<Option<Heredoc>, String> {
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
