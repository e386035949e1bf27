//! `--chmod` values: octal (`755`, `0644`) or symbolic (`u+x,g-w,o=r`, `a+X`, `+x`),
//! with chmod(1)'s meaning. Symbolic modes apply to each entry's own mode (Dockerfile
//! frontend 1.14+); `X` adds execute only to directories and to entries that already
//! have an execute bit.

/// A parsed `--chmod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    Octal(u32),
    Symbolic(Vec<Clause>),
}

/// One `who op perms` clause of a symbolic mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// Bits of `ugo` the clause touches (0o7777-style masks for u, g, o combined).
    who: u32,
    op: char,
    perms: String,
}

impl Chmod {
    /// Parse a `--chmod` value. The error says what is wrong with the value; the
    /// caller names the flag and the instruction.
    pub fn parse(s: &str) -> Result<Chmod, String> {
        let bad = || format!("{s:?} is not a mode: expected octal (0755) or symbolic (u+x,go-w)");
        if !s.is_empty() && s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            let v = u32::from_str_radix(s, 8).map_err(|_| bad())?;
            if v > 0o7777 {
                return Err(bad());
            }
            return Ok(Chmod::Octal(v));
        }
        let mut clauses = Vec::new();
        for part in s.split(',') {
            let opi = part.find(['+', '-', '=']).ok_or_else(bad)?;
            let (who_s, rest) = part.split_at(opi);
            let mut who = 0;
            for c in who_s.chars() {
                who |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o0007,
                    'a' => 0o6777,
                    _ => return Err(bad()),
                };
            }
            // Several ops may follow (`u+x-w`): split them.
            let mut chars = rest.chars().peekable();
            while let Some(op) = chars.next() {
                let mut perms = String::new();
                while let Some(&c) = chars.peek() {
                    if matches!(c, '+' | '-' | '=') {
                        break;
                    }
                    if !matches!(c, 'r' | 'w' | 'x' | 'X' | 's' | 't') {
                        return Err(bad());
                    }
                    perms.push(c);
                    chars.next();
                }
                clauses.push(Clause {
                    who,
                    op,
                    perms: perms.clone(),
                });
            }
        }
        if clauses.is_empty() {
            return Err(bad());
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The permission bits (0o7777) for an entry whose current bits are `mode`.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Octal(v) => *v,
            Chmod::Symbolic(clauses) => {
                let mut m = mode & 0o7777;
                for c in clauses {
                    // No `who` means all, filtered by the umask in chmod(1); Docker uses
                    // no umask here, so it is simply `a`.
                    let who = if c.who == 0 { 0o6777 } else { c.who };
                    let mut bits = 0;
                    for p in c.perms.chars() {
                        bits |= match p {
                            'r' => 0o444,
                            'w' => 0o222,
                            'x' => 0o111,
                            'X' if is_dir || m & 0o111 != 0 => 0o111,
                            'X' => 0,
                            's' => 0o6000,
                            't' => 0o1000,
                            _ => 0,
                        };
                    }
                    let sticky = if c.perms.contains('t') && (c.who == 0 || c.who & 0o7 != 0) {
                        0o1000
                    } else {
                        0
                    };
                    let bits = (bits & who) | sticky;
                    m = match c.op {
                        '+' => m | bits,
                        '-' => m & !bits,
                        _ => (m & !(who | if sticky != 0 { 0o1000 } else { 0 })) | bits,
                    };
                }
                m
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_and_symbolic() {
        assert_eq!(Chmod::parse("755").unwrap().apply(0o600, false), 0o755);
        assert_eq!(Chmod::parse("0640").unwrap().apply(0o777, true), 0o640);
        assert!(Chmod::parse("8").is_err());
        assert!(Chmod::parse("17777").is_err());
        assert!(Chmod::parse("").is_err());
        assert!(Chmod::parse("u+q").is_err());
        assert!(Chmod::parse("z+x").is_err());
        let s = |m: &str, mode: u32, dir: bool| Chmod::parse(m).unwrap().apply(mode, dir);
        assert_eq!(s("u+x", 0o644, false), 0o744);
        assert_eq!(s("+x", 0o644, false), 0o755);
        assert_eq!(s("go-w", 0o666, false), 0o644);
        assert_eq!(s("o=r", 0o666, false), 0o664);
        assert_eq!(s("a=rX", 0o600, false), 0o444);
        assert_eq!(s("a=rX", 0o700, false), 0o555);
        assert_eq!(s("a=rX", 0o700, true), 0o555);
        assert_eq!(s("u=rwx,g=rx,o=", 0o777, false), 0o750);
        assert_eq!(s("u+s", 0o755, false), 0o4755);
        assert_eq!(s("+t", 0o755, true), 0o1755);
        assert_eq!(s("u+x-w", 0o644, false), 0o544);
    }
}
