//! Path patterns as `.dockerignore`, `COPY --exclude` and COPY source globs use them:
//! the semantics of moby/patternmatcher (Go `filepath.Match` per character, plus `**`
//! for any number of directories, anchored at both ends).
//!
//! * `*` matches any run of characters except `/`; `?` one character except `/`;
//!   `[a-z]`, `[^a-z]` a character class; `\x` the character `x`.
//! * `**` matches any number of characters including `/`; `**/` also matches nothing
//!   (so `**/x` matches `x`), and a trailing `**` matches everything below.
//!
//! Written as a small backtracking matcher over tokens instead of a regex, so no
//! pattern can make it slow in the size of the input beyond the usual glob bound.

/// One compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    tokens: Vec<Tok>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `*`
    Star,
    /// `?`
    One,
    /// `[...]`: ranges (inclusive), negated.
    Class(Vec<(char, char)>, bool),
    /// `**/` or `**` inside: `(.*/)?`
    DirStar,
    /// trailing `**`: `.*`
    Rest,
}

/// Why a pattern is not valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPattern(pub String);

impl Pattern {
    /// Compile `text` (already cleaned by the caller when it comes from an ignore file).
    pub fn new(text: &str) -> Result<Pattern, BadPattern> {
        let chars: Vec<char> = text.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            match c {
                '*' if chars.get(i + 1) == Some(&'*') => {
                    i += 2;
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    if i >= chars.len() {
                        tokens.push(Tok::Rest);
                    } else {
                        tokens.push(Tok::DirStar);
                    }
                    continue;
                }
                '*' => tokens.push(Tok::Star),
                '?' => tokens.push(Tok::One),
                '\\' => {
                    i += 1;
                    let e = chars
                        .get(i)
                        .ok_or_else(|| BadPattern(format!("{text:?}: trailing backslash")))?;
                    tokens.push(Tok::Lit(*e));
                }
                '[' => {
                    let mut j = i + 1;
                    let neg = matches!(chars.get(j), Some('^') | Some('!'));
                    if neg {
                        j += 1;
                    }
                    let mut ranges = Vec::new();
                    let mut first = true;
                    loop {
                        let Some(&ch) = chars.get(j) else {
                            return Err(BadPattern(format!("{text:?}: unclosed '['")));
                        };
                        if ch == ']' && !first {
                            break;
                        }
                        first = false;
                        let lo = if ch == '\\' {
                            j += 1;
                            *chars
                                .get(j)
                                .ok_or_else(|| BadPattern(format!("{text:?}: unclosed '['")))?
                        } else {
                            ch
                        };
                        j += 1;
                        if chars.get(j) == Some(&'-') && chars.get(j + 1).is_some_and(|c| *c != ']')
                        {
                            let hi = chars[j + 1];
                            if hi < lo {
                                return Err(BadPattern(format!("{text:?}: bad range in '[]'")));
                            }
                            ranges.push((lo, hi));
                            j += 2;
                        } else {
                            ranges.push((lo, lo));
                        }
                    }
                    tokens.push(Tok::Class(ranges, neg));
                    i = j;
                }
                c => tokens.push(Tok::Lit(c)),
            }
            i += 1;
        }
        Ok(Pattern {
            text: text.to_string(),
            tokens,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the whole of `path` (relative, `/`-separated) matches.
    pub fn matches(&self, path: &str) -> bool {
        let p: Vec<char> = path.chars().collect();
        let mut budget = 1_000_000u32;
        match_at(&self.tokens, &p, &mut budget)
    }

    /// Whether `path` or one of its ancestors matches: an excluded directory takes
    /// everything below it along (what a context walk that skips the directory does).
    pub fn matches_or_parent(&self, path: &str) -> bool {
        if self.matches(path) {
            return true;
        }
        path.match_indices('/')
            .any(|(i, _)| self.matches(&path[..i]))
    }

    /// True when the pattern has no wildcard (a plain path).
    pub fn is_literal(&self) -> bool {
        self.tokens.iter().all(|t| matches!(t, Tok::Lit(_)))
    }
}

/// Whether `s` contains a glob metacharacter.
pub fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '\\'])
}

fn match_at(toks: &[Tok], s: &[char], budget: &mut u32) -> bool {
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    let Some((t, rest)) = toks.split_first() else {
        return s.is_empty();
    };
    match t {
        Tok::Lit(c) => s.first() == Some(c) && match_at(rest, &s[1..], budget),
        Tok::One => s.first().is_some_and(|c| *c != '/') && match_at(rest, &s[1..], budget),
        Tok::Class(ranges, neg) => match s.first() {
            Some(c) if *c != '/' => {
                let inside = ranges.iter().any(|(lo, hi)| lo <= c && c <= hi);
                inside != *neg && match_at(rest, &s[1..], budget)
            }
            _ => false,
        },
        Tok::Star => {
            for i in 0..=s.len() {
                if match_at(rest, &s[i..], budget) {
                    return true;
                }
                if i < s.len() && s[i] == '/' {
                    break;
                }
            }
            false
        }
        Tok::Rest => true,
        Tok::DirStar => {
            // `(.*/)?`: nothing, or anything ending in `/`.
            if match_at(rest, s, budget) {
                return true;
            }
            for i in 0..s.len() {
                if s[i] == '/' && match_at(rest, &s[i + 1..], budget) {
                    return true;
                }
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        Pattern::new(p).unwrap().matches(s)
    }

    #[test]
    fn go_filepath_match_cases() {
        assert!(m("abc", "abc"));
        assert!(m("*", "abc"));
        assert!(!m("*", "a/b"));
        assert!(m("*c", "abc"));
        assert!(m("a*", "a"));
        assert!(m("a*/b", "abc/b"));
        assert!(!m("a*/b", "a/c/b"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "a/c"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[^a-c]x", "bx"));
        assert!(m("[^a-c]x", "dx"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(Pattern::new("[a-").is_err());
        assert!(Pattern::new("a\\").is_err());
    }

    #[test]
    fn double_star() {
        assert!(m("**", "a/b/c"));
        assert!(m("**/x", "x"));
        assert!(m("**/x", "a/b/x"));
        assert!(!m("**/x", "a/bx"));
        assert!(m("a/**", "a/b/c"));
        assert!(m("a/**/z", "a/z"));
        assert!(m("a/**/z", "a/b/c/z"));
        assert!(m("**/*.go", "src/x/main.go"));
        assert!(m("a**b", "a/x/b"));
    }

    #[test]
    fn parents() {
        let p = Pattern::new("dir").unwrap();
        assert!(p.matches_or_parent("dir/a/b"));
        assert!(!p.matches_or_parent("dirx/a"));
        let p = Pattern::new("a/*").unwrap();
        assert!(p.matches_or_parent("a/b/c"));
    }

    #[test]
    fn pathological_pattern_is_bounded() {
        let p = Pattern::new(&"*a".repeat(30)).unwrap();
        let s = "a".repeat(60) + "b";
        // Stops at the step budget instead of running for 2^30 steps.
        assert!(!p.matches(&s));
    }
}
