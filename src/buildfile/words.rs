//! Shell-style words as the Dockerfile grammar uses them: splitting on unquoted
//! whitespace, removing quotes, and expanding `$VAR` / `${VAR...}` the way BuildKit's
//! shell lexer does (a subset of POSIX `sh` word expansion; no command substitution,
//! no globbing, no field splitting).

use super::pattern::{self, Pattern};

/// Split on unquoted whitespace; words keep their quotes and escapes (as written).
/// Returns byte offsets with the words.
pub fn split_words(s: &str, escape: char) -> Vec<(usize, &str)> {
    words(s, escape).collect()
}

/// [`split_words`] as an iterator (no allocation).
pub fn words(s: &str, escape: char) -> Words<'_> {
    Words { s, pos: 0, escape }
}

/// Iterator over the words of a string; see [`words`].
pub struct Words<'s> {
    s: &'s str,
    pos: usize,
    escape: char,
}

impl<'s> Iterator for Words<'s> {
    type Item = (usize, &'s str);

    fn next(&mut self) -> Option<(usize, &'s str)> {
        let rest = self.s.get(self.pos..)?;
        self.pos += rest.len() - rest.trim_start_matches(|c: char| c.is_whitespace()).len();
        if self.pos >= self.s.len() {
            return None;
        }
        let start = self.pos;
        self.pos += word_end(&self.s[start..], self.escape);
        Some((start, &self.s[start..self.pos]))
    }
}

/// Length of the word at the start of `s`: up to unquoted whitespace. Works on bytes
/// (every special character is ASCII) and decodes only non-ASCII characters, to test
/// them for Unicode whitespace.
pub fn word_end(s: &str, escape: char) -> usize {
    let b = s.as_bytes();
    let esc = escape as u32;
    let mut quote: u8 = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c >= 0x80 {
            let ch = s[i..].chars().next().unwrap_or(' ');
            if quote == 0 && ch.is_whitespace() {
                return i;
            }
            i += ch.len_utf8();
            continue;
        }
        if quote != 0 {
            if c == quote {
                quote = 0;
            } else if quote == b'"' && u32::from(c) == esc {
                i += 1;
                // Skip the escaped character (whole, if it is not ASCII).
                if let Some(ch) = s.get(i..).and_then(|r| r.chars().next()) {
                    i += ch.len_utf8();
                }
                continue;
            }
        } else if c.is_ascii_whitespace() || c == 0x0b {
            return i;
        } else if c == b'"' || c == b'\'' {
            quote = c;
        } else if u32::from(c) == esc {
            i += 1;
            if let Some(ch) = s.get(i..).and_then(|r| r.chars().next()) {
                i += ch.len_utf8();
            }
            continue;
        }
        i += 1;
    }
    b.len()
}

/// Remove quotes and escapes without expanding variables. Never fails: an unterminated
/// quote runs to the end of the word.
pub fn unquote(word: &str, escape: char) -> String {
    if !word.contains(['"', '\'', escape]) {
        return word.to_string();
    }
    let mut lx = Lex {
        chars: word.chars().collect(),
        pos: 0,
        escape,
        lookup: None,
        undefined: None,
        depth: 0,
        raw_escapes: false,
    };
    lx.word(None, true).unwrap_or_else(|_| word.to_string())
}

/// A variable expansion failure (`${X:?unset}`, a missing `}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandError {
    pub message: String,
}

/// Expand one word: quotes removed, escapes applied, variables substituted with
/// `lookup`. Names looked up but not defined are pushed to `undefined`.
pub fn expand(
    word: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
    undefined: &mut Vec<String>,
) -> Result<String, ExpandError> {
    let mut lx = Lex {
        chars: word.chars().collect(),
        pos: 0,
        escape,
        lookup: Some(lookup),
        undefined: Some(undefined),
        depth: 0,
        raw_escapes: false,
    };
    lx.word(None, false)
}

/// Names of the variables a word refers to (for linting), without expanding.
pub fn references(word: &str, escape: char) -> Vec<String> {
    let mut found = Vec::new();
    let _ = expand(word, escape, &|_| None, &mut found);
    found
}

/// A variable lookup: name -> value, None when unset.
type Lookup<'f> = &'f dyn Fn(&str) -> Option<String>;

struct Lex<'f, 'u> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    /// None: remove quotes only, keep `$` text.
    lookup: Option<Lookup<'f>>,
    undefined: Option<&'u mut Vec<String>>,
    depth: usize,
    /// Keep escapes as written (patterns of `${v#p}`, `${v/p/r}`), as BuildKit does.
    raw_escapes: bool,
}

fn err<T>(m: impl Into<String>) -> Result<T, ExpandError> {
    Err(ExpandError { message: m.into() })
}

impl Lex<'_, '_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Process until `stop` (not consumed) or the end.
    fn word(&mut self, stop: Option<char>, lenient: bool) -> Result<String, ExpandError> {
        let mut out = String::new();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                return Ok(out);
            }
            self.pos += 1;
            if c == '\'' {
                let start = self.pos;
                loop {
                    match self.next() {
                        Some('\'') => break,
                        Some(ch) => out.push(ch),
                        None if lenient => break,
                        None => {
                            self.pos = start;
                            return err("unexpected end of statement while looking for matching single-quote");
                        }
                    }
                }
            } else if c == '"' {
                loop {
                    match self.next() {
                        Some('"') => break,
                        Some('$') if self.lookup.is_some() => {
                            let v = self.dollar()?;
                            out.push_str(&v);
                        }
                        Some(ch) if ch == self.escape => match self.peek() {
                            Some(n) if n == '"' || n == '$' || n == self.escape => {
                                self.pos += 1;
                                if self.raw_escapes {
                                    out.push(ch);
                                }
                                out.push(n);
                            }
                            Some(_) => out.push(ch),
                            None if lenient => break,
                            None => return err("unexpected end of statement while looking for matching double-quote"),
                        },
                        Some(ch) => out.push(ch),
                        None if lenient => break,
                        None => return err("unexpected end of statement while looking for matching double-quote"),
                    }
                }
            } else if c == self.escape {
                // An escape at the very end of the word is dropped.
                if let Some(n) = self.next() {
                    if self.raw_escapes {
                        out.push(c);
                    }
                    out.push(n);
                }
            } else if c == '$' && self.lookup.is_some() {
                let v = self.dollar()?;
                out.push_str(&v);
            } else {
                out.push(c);
            }
        }
        match stop {
            Some('}') => err("syntax error: missing '}'"),
            Some(s) => err(format!("syntax error: missing '{s}' in ${{}}")),
            None => Ok(out),
        }
    }

    fn get(&mut self, name: &str) -> Option<String> {
        // Positional (`$1`, `$10`) and special (`$#`, `$@`...) parameters are never
        // set in a Buildfile: empty, as BuildKit expands them, and not worth a
        // warning about an undefined variable.
        if is_positional_or_special(name) {
            return None;
        }
        let v = self.lookup.and_then(|f| f(name));
        if v.is_none() {
            if let Some(u) = self.undefined.as_deref_mut() {
                if !u.iter().any(|x| x == name) {
                    u.push(name.to_string());
                }
            }
        }
        v
    }

    /// A parameter name after `$` or `${`, as BuildKit's lexer reads it: all the
    /// digits of a positional parameter (`$10` is parameter 10, not `$1` then
    /// `0`), one special parameter character, or letters, digits and `_`.
    fn name(&mut self) -> String {
        let mut n = String::new();
        match self.peek() {
            Some(c) if c.is_ascii_digit() => {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    n.push(d);
                    self.pos += 1;
                }
                return n;
            }
            Some(c) if is_special_param(c) => {
                self.pos += 1;
                n.push(c);
                return n;
            }
            _ => {}
        }
        while let Some(c) = self.peek() {
            if c.is_alphanumeric() || c == '_' {
                n.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        n
    }

    /// The text up to `stop` with variables expanded and escapes kept (BuildKit's
    /// `processStopOn(stop, rawEscapes=true)`); `stop` is consumed.
    fn raw_until(&mut self, stop: char) -> Result<String, ExpandError> {
        let saved = std::mem::replace(&mut self.raw_escapes, true);
        let r = self.word(Some(stop), false);
        self.raw_escapes = saved;
        let w = r?;
        self.pos += 1;
        Ok(w)
    }

    fn pattern(&self, raw: &str, value: &str) -> Result<Pattern, ExpandError> {
        let p = Pattern::new(raw, self.escape).map_err(|e| ExpandError {
            message: format!("invalid pattern ({raw}) in substitution: {e}"),
        })?;
        if p.too_large_for(value.chars().count()) {
            return err(format!(
                "pattern ({raw}) in substitution is too large for a value of {} bytes",
                value.len()
            ));
        }
        Ok(p)
    }

    /// After a `$`.
    fn dollar(&mut self) -> Result<String, ExpandError> {
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(self.get(&name).unwrap_or_default());
        }
        self.pos += 1;
        self.depth += 1;
        if self.depth > 64 {
            return err("variable substitution nested too deeply");
        }
        let name = self.name();
        if name.is_empty() {
            return err("bad substitution: a variable name must follow ${");
        }
        let result = match self.next() {
            Some('}') => Ok(self.get(&name).unwrap_or_default()),
            Some(':') => {
                let op = self.next();
                let word = self.word(Some('}'), false)?;
                self.pos += 1;
                let val = self.get(&name);
                let set_nonempty = val.as_deref().is_some_and(|v| !v.is_empty());
                match op {
                    Some('-') => Ok(if set_nonempty {
                        val.unwrap_or_default()
                    } else {
                        word
                    }),
                    Some('+') => Ok(if set_nonempty { word } else { String::new() }),
                    Some('?') if set_nonempty => Ok(val.unwrap_or_default()),
                    Some('?') => err(match (word.is_empty(), val.is_some()) {
                        (false, _) => format!("{name}: {word}"),
                        (true, true) => format!("{name}: is not allowed to be empty"),
                        (true, false) => format!("{name}: is not allowed to be unset"),
                    }),
                    _ => err(format!(
                        "unsupported modifier in substitution of ${{{name}:...}}: use :-, :+ or :?"
                    )),
                }
            }
            Some(op @ ('-' | '+' | '?')) => {
                let word = self.word(Some('}'), false)?;
                self.pos += 1;
                let val = self.get(&name);
                match (op, val) {
                    ('-', Some(v)) => Ok(v),
                    ('-', None) => Ok(word),
                    ('+', Some(_)) => Ok(word),
                    ('+', None) => Ok(String::new()),
                    ('?', Some(v)) => Ok(v),
                    _ => err(if word.is_empty() {
                        format!("{name}: is not allowed to be unset")
                    } else {
                        format!("{name}: {word}")
                    }),
                }
            }
            Some(op @ ('#' | '%')) => {
                let longest = self.peek() == Some(op);
                if longest {
                    self.pos += 1;
                }
                let raw = self.raw_until('}')?;
                let val = self.get(&name).unwrap_or_default();
                let pat = self.pattern(&raw, &val)?;
                Ok(if op == '#' {
                    pattern::trim_prefix(&val, &pat, longest)
                } else {
                    pattern::trim_suffix(&val, &pat, longest)
                })
            }
            Some('/') => {
                // `${v/pat/rep}` replaces the first match, `${v//pat/rep}` every one.
                let all = self.peek() == Some('/');
                if all {
                    self.pos += 1;
                }
                let raw = self.raw_until('/')?;
                let rep = self.raw_until('}')?;
                let val = self.get(&name).unwrap_or_default();
                let pat = self.pattern(&raw, &val)?;
                Ok(pattern::replace(&val, &pat, &rep, all))
            }
            None => err("syntax error: missing '}'"),
            Some(c) => err(format!(
                "bad substitution: unexpected '{c}' after ${{{name}"
            )),
        };
        self.depth -= 1;
        result
    }
}

/// POSIX special parameters (sh "Special Parameters"); `0` is read as a digit.
fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!')
}

fn is_positional_or_special(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_digit() || is_special_param(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn ex(word: &str, vars: &[(&str, &str)]) -> Result<String, ExpandError> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut u = Vec::new();
        expand(word, '\\', &|n| m.get(n).cloned(), &mut u)
    }

    #[test]
    fn simple_and_braced() {
        let v = [("A", "x"), ("E", "")];
        assert_eq!(ex("$A", &v).unwrap(), "x");
        assert_eq!(ex("${A}y", &v).unwrap(), "xy");
        assert_eq!(ex("$Ay", &v).unwrap(), "");
        assert_eq!(ex("a$", &v).unwrap(), "a$");
        assert_eq!(ex("$1", &v).unwrap(), "");
    }

    #[test]
    fn defaults_and_alternatives() {
        let v = [("A", "x"), ("E", "")];
        assert_eq!(ex("${U:-d}", &v).unwrap(), "d");
        assert_eq!(ex("${E:-d}", &v).unwrap(), "d");
        assert_eq!(ex("${E-d}", &v).unwrap(), "");
        assert_eq!(ex("${U-d}", &v).unwrap(), "d");
        assert_eq!(ex("${A:-d}", &v).unwrap(), "x");
        assert_eq!(ex("${A:+alt}", &v).unwrap(), "alt");
        assert_eq!(ex("${E:+alt}", &v).unwrap(), "");
        assert_eq!(ex("${E+alt}", &v).unwrap(), "alt");
        assert_eq!(ex("${U+alt}", &v).unwrap(), "");
    }

    #[test]
    fn nested_default() {
        let v = [("OTHER", "o")];
        assert_eq!(ex("${VAR:-${OTHER}}", &v).unwrap(), "o");
        assert_eq!(ex("${VAR:-${NOPE:-deep}}", &v).unwrap(), "deep");
        assert_eq!(ex("${OTHER:+${OTHER}-${OTHER}}", &v).unwrap(), "o-o");
    }

    #[test]
    fn required_errors() {
        assert_eq!(
            ex("${U:?must be set}", &[]).unwrap_err().message,
            "U: must be set"
        );
        assert_eq!(
            ex("${U?}", &[]).unwrap_err().message,
            "U: is not allowed to be unset"
        );
        assert_eq!(ex("${E:?x}", &[("E", "")]).unwrap_err().message, "E: x");
        assert_eq!(ex("${E?x}", &[("E", "")]).unwrap(), "");
        assert!(ex("${A", &[]).is_err());
        assert!(ex("${}", &[]).is_err());
        assert!(ex("${A!}", &[]).is_err());
    }

    #[test]
    fn quotes_and_escapes() {
        let v = [("A", "x y")];
        assert_eq!(ex("'$A'", &v).unwrap(), "$A");
        assert_eq!(ex("\"$A\"", &v).unwrap(), "x y");
        assert_eq!(ex("\\$A", &v).unwrap(), "$A");
        assert_eq!(ex("\"\\$A \\\" \\n\"", &v).unwrap(), "$A \" \\n");
        assert_eq!(ex("a\\ b", &v).unwrap(), "a b");
        assert!(ex("'open", &v).is_err());
        assert!(ex("\"open", &v).is_err());
        let mut u = Vec::new();
        assert_eq!(
            expand("`$A", '`', &|_| Some("z".into()), &mut u).unwrap(),
            "$A"
        );
    }

    #[test]
    fn pattern_trims() {
        let v = [("P", "a/b/c.tar.gz")];
        assert_eq!(ex("${P#*/}", &v).unwrap(), "b/c.tar.gz");
        assert_eq!(ex("${P##*/}", &v).unwrap(), "c.tar.gz");
        assert_eq!(ex("${P%.*}", &v).unwrap(), "a/b/c.tar");
        assert_eq!(ex("${P%%.*}", &v).unwrap(), "a/b/c");
    }

    #[test]
    fn undefined_are_recorded() {
        let mut u = Vec::new();
        let r = expand(
            "$A ${B:-x} ${C}",
            '\\',
            &|n| (n == "C").then(|| "c".to_string()),
            &mut u,
        )
        .unwrap();
        assert_eq!(r, " x c");
        assert_eq!(u, vec!["A".to_string(), "B".to_string()]);
        assert_eq!(references("'$NO' $YES", '\\'), vec!["YES".to_string()]);
    }

    #[test]
    fn split_keeps_quotes() {
        let w: Vec<&str> = split_words("a=\"b c\" d='e f' g\\ h", '\\')
            .into_iter()
            .map(|x| x.1)
            .collect();
        assert_eq!(w, vec!["a=\"b c\"", "d='e f'", "g\\ h"]);
        assert_eq!(unquote("\"a b\"c'd'", '\\'), "a bcd");
    }
}
