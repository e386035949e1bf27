//! Instruction flags (`--name[=value]`): reading them off the line, then typed access
//! with BuildKit's allowed-set, duplicate and boolean rules.

use super::super::ast::Flag;
use super::super::error::{suggest, Error};
use super::super::words::{unquote, word_end};
use super::{ws_len, Logical, Parser};

impl Parser<'_> {
    /// `--name[=value]` flags at the start of the arguments; returns them and where
    /// the arguments after them start. (Flag offsets for errors are recomputed by
    /// [`Flags::off`] only when an error needs one.)
    pub(super) fn flags(&self, l: &Logical, mut pos: usize) -> Result<(Vec<Flag>, usize), Error> {
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
}

/// Flag access with allowed-set and type checks.
pub(super) struct Flags<'p, 'a> {
    pub(super) p: &'p Parser<'a>,
    pub(super) l: &'p Logical<'p>,
    pub(super) flags: &'p [Flag],
    /// Where the first flag starts in the logical text.
    pub(super) start: usize,
    pub(super) kw: &'static str,
}

impl Flags<'_, '_> {
    const REPEATABLE: [&'static str; 2] = ["mount", "exclude"];

    /// Byte offset of flag `i` in the logical text: the flags are one word each,
    /// separated by blanks, from `start`.
    pub(super) fn off(&self, i: usize) -> usize {
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

    pub(super) fn err(&self, name: &str, msg: String) -> Error {
        let i = self.flags.iter().position(|f| f.name == name).unwrap_or(0);
        self.p.err(self.l, self.off(i), msg, None)
    }

    pub(super) fn allow(&self, names: &[&str]) -> Result<(), Error> {
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

    pub(super) fn value_of(&self, i: usize) -> Result<&str, Error> {
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

    pub(super) fn string(&self, name: &str) -> Result<Option<String>, Error> {
        match self.flags.iter().position(|f| f.name == name) {
            Some(i) => self.value_of(i).map(|v| Some(v.to_string())),
            None => Ok(None),
        }
    }

    pub(super) fn all(&self, name: &str) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        for (i, f) in self.flags.iter().enumerate() {
            if f.name == name {
                out.push(self.value_of(i)?.to_string());
            }
        }
        Ok(out)
    }

    pub(super) fn boolean(&self, name: &str) -> Result<bool, Error> {
        Ok(self.optional_boolean(name)?.unwrap_or(false))
    }

    /// A boolean flag as BuildKit's bflag reads it: `--x` is true, `--x=V` takes
    /// true or false in any case, `--x=` is a missing value; None when absent.
    pub(super) fn optional_boolean(&self, name: &str) -> Result<Option<bool>, Error> {
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

    pub(super) fn choice(&self, name: &str, allowed: &[&str]) -> Result<Option<String>, Error> {
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

/// BuildKit's boolean flag values: `true` or `false` in any case (not 1/0).
fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}
