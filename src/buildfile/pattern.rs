//! Shell patterns of `${VAR#pat}`, `${VAR%pat}`, `${VAR/pat/rep}` and
//! `${VAR//pat/rep}` with BuildKit's semantics (frontend/dockerfile/shell/lex.go,
//! `convertShellPatternToRegex`): `*` is any string, `?` one character, no bracket
//! expressions; `\*`, `\?` and the escape itself are literal, `\}` and `\/` stand for
//! the character, any other escape is an error. BuildKit compiles the pattern to a Go
//! regexp and takes its leftmost-first match; the matcher here is a small
//! backtracking one with the same preferences (greedy or lazy `*`), memoised so a
//! pattern with many stars stays polynomial.

/// Largest memo (pattern tokens x value characters) a match may use.
const MAX_MEMO: usize = 1 << 24;

/// One pattern element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Star,
    Any,
    Lit(char),
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub(super) struct Pattern {
    toks: Vec<Tok>,
}

impl Pattern {
    /// Compile `raw` (escapes still in it, written with `escape`).
    pub(super) fn new(raw: &str, escape: char) -> Result<Pattern, String> {
        let mut toks = Vec::new();
        let mut it = raw.chars().peekable();
        while let Some(c) = it.next() {
            if c == escape {
                match it.next() {
                    Some(n @ ('}' | '/' | '*' | '?')) => toks.push(Tok::Lit(n)),
                    Some(n) if n == escape => toks.push(Tok::Lit(n)),
                    Some(n) => return Err(format!("invalid escape '{escape}{n}'")),
                    // A trailing escape: BuildKit's regexp compile fails on it.
                    None => return Err(format!("trailing '{escape}'")),
                }
            } else {
                toks.push(match c {
                    '*' => Tok::Star,
                    '?' => Tok::Any,
                    c => Tok::Lit(c),
                });
            }
        }
        Ok(Pattern { toks })
    }

    /// Whether matching against a value of `len` characters would need more memo
    /// than imgctl allows (a hostile Buildfile must not exhaust memory).
    pub(super) fn too_large_for(&self, len: usize) -> bool {
        (self.toks.len() + 1).saturating_mul(len + 1) > MAX_MEMO
    }

    fn reversed(&self) -> Pattern {
        Pattern {
            toks: self.toks.iter().rev().copied().collect(),
        }
    }

    /// A matcher of this pattern against `s`; its memo is shared by every start.
    fn on<'p>(&'p self, s: &'p [char], greedy: bool) -> Matcher<'p> {
        Matcher {
            toks: &self.toks,
            s,
            greedy,
            memo: vec![None; (self.toks.len() + 1) * (s.len() + 1)],
        }
    }
}

/// memo[pi * (len + 1) + ti]: where the rest of the pattern from token `pi`,
/// started at character `ti`, ends (leftmost-first), once computed. It does
/// not depend on where the whole match started, so one memo serves every start.
struct Matcher<'p> {
    toks: &'p [Tok],
    s: &'p [char],
    greedy: bool,
    memo: Vec<Option<Option<usize>>>,
}

impl Matcher<'_> {
    /// End of the match starting at `start`, if any.
    fn at(&mut self, start: usize) -> Option<usize> {
        self.m(0, start)
    }

    fn m(&mut self, pi: usize, ti: usize) -> Option<usize> {
        let key = pi * (self.s.len() + 1) + ti;
        if let Some(r) = self.memo[key] {
            return r;
        }
        let r = match self.toks.get(pi) {
            None => Some(ti),
            Some(Tok::Lit(c)) => match self.s.get(ti) {
                Some(x) if x == c => self.m(pi + 1, ti + 1),
                _ => None,
            },
            Some(Tok::Any) if ti < self.s.len() => self.m(pi + 1, ti + 1),
            Some(Tok::Any) => None,
            Some(Tok::Star) => {
                let n = self.s.len();
                let mut found = None;
                for j in 0..=(n - ti) {
                    let k = if self.greedy { n - j } else { ti + j };
                    if let Some(e) = self.m(pi + 1, k) {
                        found = Some(e);
                        break;
                    }
                }
                found
            }
        };
        self.memo[key] = Some(r);
        r
    }
}

/// `${v#pat}` (shortest) / `${v##pat}` (longest): remove a matching prefix.
pub(super) fn trim_prefix(value: &str, pat: &Pattern, longest: bool) -> String {
    let s: Vec<char> = value.chars().collect();
    match pat.on(&s, longest).at(0) {
        Some(end) => s[end..].iter().collect(),
        None => value.to_string(),
    }
}

/// `${v%pat}` (shortest) / `${v%%pat}` (longest): remove a matching suffix. As in
/// BuildKit, the reversed pattern is matched against the reversed value.
pub(super) fn trim_suffix(value: &str, pat: &Pattern, longest: bool) -> String {
    let rev: Vec<char> = value.chars().rev().collect();
    let rpat = pat.reversed();
    match rpat.on(&rev, longest).at(0) {
        Some(end) => rev[end..].iter().rev().collect(),
        None => value.to_string(),
    }
}

/// `${v/pat/rep}` (first match) / `${v//pat/rep}` (every match): `*` greedy,
/// matches found left to right without overlapping; an empty match right after
/// a previous match is skipped (Go's `ReplaceAllString`).
pub(super) fn replace(value: &str, pat: &Pattern, rep: &str, all: bool) -> String {
    let s: Vec<char> = value.chars().collect();
    let mut out = String::with_capacity(value.len());
    let mut i = 0;
    let mut prev_end: Option<usize> = None;
    let mut replaced = false;
    let mut m = pat.on(&s, true);
    while i <= s.len() {
        if replaced && !all {
            out.extend(&s[i..]);
            break;
        }
        match m.at(i) {
            Some(end) if !(end == i && prev_end == Some(i)) => {
                out.push_str(rep);
                replaced = true;
                prev_end = Some(end);
                if end > i {
                    i = end;
                    continue;
                }
            }
            _ => {}
        }
        if let Some(c) = s.get(i) {
            out.push(*c);
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(p: &str) -> Pattern {
        Pattern::new(p, '\\').unwrap()
    }

    #[test]
    fn trims() {
        let v = "a/b/c.tar.gz";
        assert_eq!(trim_prefix(v, &pat("*/"), false), "b/c.tar.gz");
        assert_eq!(trim_prefix(v, &pat("*/"), true), "c.tar.gz");
        assert_eq!(trim_suffix(v, &pat(".*"), false), "a/b/c.tar");
        assert_eq!(trim_suffix(v, &pat(".*"), true), "a/b/c");
        assert_eq!(trim_prefix(v, &pat("x"), true), v);
        assert_eq!(trim_prefix(v, &pat(""), true), v);
        assert_eq!(trim_prefix("*x", &pat("\\*"), false), "x");
        assert_eq!(trim_prefix("ax", &pat("\\*"), false), "ax");
    }

    #[test]
    fn replacements() {
        assert_eq!(replace("a-b-c", &pat("-"), "_", false), "a_b-c");
        assert_eq!(replace("a-b-c", &pat("-"), "_", true), "a_b_c");
        assert_eq!(replace("a-b-c", &pat("*-"), "X", false), "Xc");
        assert_eq!(replace("abc", &pat("?"), ".", true), "...");
        assert_eq!(replace("abc", &pat("z"), ".", true), "abc");
        // Empty matches: Go inserts the replacement between characters.
        assert_eq!(replace("ab", &pat(""), "-", true), "-a-b-");
        assert_eq!(replace("ab", &pat("*"), "-", true), "-");
        assert_eq!(replace("", &pat("*"), "x", false), "x");
        assert_eq!(replace("a/b", &pat("\\/"), "|", true), "a|b");
    }

    #[test]
    fn bad_escapes_are_errors() {
        assert!(Pattern::new("\\x", '\\').is_err());
        assert!(Pattern::new("a\\", '\\').is_err());
        assert!(Pattern::new("`*", '`').is_ok());
    }

    /// Exponential backtracking would not finish: the memo keeps it polynomial.
    #[test]
    fn many_stars_on_a_long_value() {
        let v = "a".repeat(300);
        assert_eq!(
            replace(&v, &pat(&format!("{}b", "*a".repeat(40))), "x", true),
            v
        );
        assert_eq!(trim_prefix(&v, &pat(&"*a".repeat(40)), true), "");
    }
}
