//! Errors of the buildfile module. Every error names the file and, where there is one,
//! the line and column, keeps the offending source line for a caret display, and may
//! carry a hint (`did you mean RUN?`).

/// Where in a Buildfile something went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// File name as given by the caller (`Buildfile`, `path/to/Dockerfile`).
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub column: u32,
    /// The full source line (without its newline).
    pub source_line: String,
}

/// A buildfile error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The text is not a valid Buildfile.
    #[error("{}:{}:{}: {message}{}", .at.file, .at.line, .at.column, hint_suffix(.hint))]
    Syntax {
        at: Box<Location>,
        message: String,
        hint: Option<String>,
    },
    /// A variable could not be expanded (`${X:?msg}`, `${X` without `}`).
    #[error("{}:{}:{}: {message}", .at.file, .at.line, .at.column)]
    Expand { at: Box<Location>, message: String },
    /// The stage graph is invalid: unknown stage, cycle, bad index.
    #[error("{}: {message}{}", stage_prefix(.file, .at), hint_suffix(.hint))]
    Stage {
        file: String,
        at: Option<Box<Location>>,
        message: String,
        hint: Option<String>,
    },
    /// The bytes are not UTF-8.
    #[error("{}:{}:{}: file is not valid UTF-8 text", .at.file, .at.line, .at.column)]
    Encoding { at: Box<Location> },
}

fn hint_suffix(hint: &Option<String>) -> String {
    match hint {
        Some(h) => format!(" ({h})"),
        None => String::new(),
    }
}

fn stage_prefix(file: &str, at: &Option<Box<Location>>) -> String {
    match at {
        Some(a) => format!("{}:{}:{}", a.file, a.line, a.column),
        None => file.to_string(),
    }
}

impl Error {
    /// The source location, when the error has one.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Error::Syntax { at, .. } | Error::Expand { at, .. } | Error::Encoding { at } => {
                Some(at)
            }
            Error::Stage { at, .. } => at.as_deref(),
        }
    }

    /// The error as a compiler-style diagnostic: the one-line message, then the source
    /// line with a caret under the column.
    ///
    /// ```text
    /// Buildfile:7:1: unknown instruction RUNN (did you mean RUN?)
    ///    7 | RUNN make
    ///      | ^
    /// ```
    pub fn render(&self) -> String {
        let mut out = self.to_string();
        if let Some(at) = self.location() {
            let num = at.line.to_string();
            let pad = " ".repeat(num.len());
            let shown: String = at.source_line.chars().map(printable).collect();
            let caret_pad: String = at
                .source_line
                .chars()
                .take(at.column.saturating_sub(1) as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!("\n {num} | {shown}\n {pad} | {caret_pad}^"));
        }
        out
    }
}

/// Control characters would garble a terminal; show them as the replacement character.
fn printable(c: char) -> char {
    if c.is_control() && c != '\t' {
        '\u{fffd}'
    } else {
        c
    }
}

/// Edit distance with adjacent transpositions (optimal string alignment), for
/// "did you mean" hints: `RUNN` -> `RUN` is 1, `FORM` -> `FROM` is 1.
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

/// The closest candidate to `word` (case-insensitive), if it is close enough to be a
/// plausible typo.
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let w = word.to_ascii_lowercase();
    if w.len() > 64 {
        return None;
    }
    let mut best: Option<(usize, &'a str)> = None;
    for c in candidates {
        let d = distance(&w, &c.to_ascii_lowercase());
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    let limit = (w.chars().count() / 3).max(1);
    best.filter(|(d, _)| *d <= limit).map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_shows_line_and_caret() {
        let e = Error::Syntax {
            at: Box::new(Location {
                file: "Buildfile".into(),
                line: 7,
                column: 3,
                source_line: "  RUNN make".into(),
            }),
            message: "unknown instruction RUNN".into(),
            hint: Some("did you mean RUN?".into()),
        };
        assert_eq!(
            e.to_string(),
            "Buildfile:7:3: unknown instruction RUNN (did you mean RUN?)"
        );
        assert_eq!(
            e.render(),
            "Buildfile:7:3: unknown instruction RUNN (did you mean RUN?)\n 7 |   RUNN make\n   |   ^"
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("RUNN", &["RUN", "FROM"]), Some("RUN"));
        assert_eq!(suggest("form", &["RUN", "FROM"]), Some("FROM"));
        assert_eq!(suggest("xyzzy", &["RUN", "FROM"]), None);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
