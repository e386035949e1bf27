//! `--format` Go templates as Docker users type them, over JSON values: text
//! with `{{.Field}}`, nested `{{.A.B}}`, `{{json .}}`, `{{json .Field}}`,
//! `{{index .Labels "k"}}`, `{{upper .X}}` / `{{lower .X}}` / `{{title .X}}`,
//! `{{join .List ", "}}`, pipes (`{{.Names | upper}}`), a `table` prefix (a
//! header row and aligned columns), and `\t` / `\n` escapes (Docker's CLI
//! replaces them). No `range`/`if`: an unknown field or function is a one-line
//! error, not an empty column.

use serde_json::Value;

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
    /// `table …`: print a header and align columns.
    pub table: bool,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Vec<Cmd>),
}

#[derive(Debug, Clone)]
struct Cmd {
    /// A function name, or empty for a bare argument.
    func: String,
    args: Vec<Arg>,
}

#[derive(Debug, Clone)]
enum Arg {
    /// `.` or `.A.B`.
    Field(Vec<String>),
    Str(String),
    Num(i64),
}

fn err(format: &str, msg: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("--format {format:?}: {msg}")
}

fn tokens(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut t = String::from("\"");
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            t.push(match n {
                                'n' => '\n',
                                't' => '\t',
                                o => o,
                            });
                        }
                    }
                    '"' => {
                        closed = true;
                        break;
                    }
                    o => t.push(o),
                }
            }
            if !closed {
                return Err("unterminated string".into());
            }
            out.push(t);
        } else if c == '|' {
            chars.next();
            out.push("|".into());
        } else {
            let mut t = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '|' || c == '"' {
                    break;
                }
                t.push(c);
                chars.next();
            }
            out.push(t);
        }
    }
    Ok(out)
}

fn arg(t: &str) -> Result<Arg, String> {
    if let Some(s) = t.strip_prefix('"') {
        return Ok(Arg::Str(s.to_string()));
    }
    if t == "." {
        return Ok(Arg::Field(Vec::new()));
    }
    if let Some(path) = t.strip_prefix('.') {
        let parts: Vec<String> = path.split('.').map(String::from).collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(format!("bad field {t:?}"));
        }
        return Ok(Arg::Field(parts));
    }
    if let Ok(n) = t.parse() {
        return Ok(Arg::Num(n));
    }
    Err(format!("unexpected {t:?}"))
}

const FUNCS: &[&str] = &[
    "json", "upper", "lower", "title", "index", "join", "len", "println",
];

impl Template {
    /// Parse `format` (Docker's `table` prefix and `\t`/`\n` escapes included).
    pub fn parse(format: &str) -> anyhow::Result<Template> {
        let text = format.replace("\\t", "\t").replace("\\n", "\n");
        let (table, body) = match text.strip_prefix("table") {
            Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => {
                (true, rest.trim_start().to_string())
            }
            _ => (false, text.clone()),
        };
        let mut nodes = Vec::new();
        let mut rest = body.as_str();
        while let Some(i) = rest.find("{{") {
            if i > 0 {
                nodes.push(Node::Text(rest[..i].to_string()));
            }
            let after = &rest[i + 2..];
            let Some(j) = after.find("}}") else {
                return Err(err(format, "unclosed action (missing }})"));
            };
            let inner = after[..j]
                .trim()
                .trim_start_matches('-')
                .trim_end_matches('-');
            let toks = tokens(inner).map_err(|e| err(format, e))?;
            let mut cmds = Vec::new();
            for part in toks.split(|t| t == "|") {
                let Some((first, more)) = part.split_first() else {
                    return Err(err(format, "empty command in a pipeline"));
                };
                let cmd = if first.starts_with('.') || first.starts_with('"') {
                    if !more.is_empty() {
                        return Err(err(format, format!("{first} is not a function")));
                    }
                    Cmd {
                        func: String::new(),
                        args: vec![arg(first).map_err(|e| err(format, e))?],
                    }
                } else if FUNCS.contains(&first.as_str()) {
                    Cmd {
                        func: first.clone(),
                        args: more
                            .iter()
                            .map(|t| arg(t))
                            .collect::<Result<_, _>>()
                            .map_err(|e| err(format, e))?,
                    }
                } else {
                    let what = if first.is_empty() {
                        "an empty action"
                    } else {
                        first
                    };
                    return Err(err(
                        format,
                        format!("function {what:?} not defined (fields start with a dot: {{{{.{what}}}}})"),
                    ));
                };
                cmds.push(cmd);
            }
            if cmds.is_empty() {
                return Err(err(format, "empty action {{}}"));
            }
            nodes.push(Node::Action(cmds));
            rest = &after[j + 2..];
        }
        if !rest.is_empty() {
            nodes.push(Node::Text(rest.to_string()));
        }
        Ok(Template { nodes, table })
    }

    /// Render one value.
    pub fn render(&self, v: &Value) -> anyhow::Result<String> {
        let mut out = String::new();
        for n in &self.nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Action(cmds) => {
                    let mut cur: Option<Value> = None;
                    for c in cmds {
                        cur = Some(call(c, v, cur)?);
                    }
                    out.push_str(&text(cur.as_ref().unwrap_or(&Value::Null)));
                }
            }
        }
        Ok(out)
    }

    /// The header row of a `table` template: each action's field named as
    /// `headers` says (Docker's column titles), else the field in capitals.
    pub fn header(&self, headers: &[(&str, &str)]) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Action(cmds) => {
                    let field = cmds.iter().find_map(|c| {
                        c.args.iter().find_map(|a| match a {
                            Arg::Field(p) if !p.is_empty() => Some(p.join(".")),
                            _ => None,
                        })
                    });
                    let name = match field {
                        Some(f) => headers
                            .iter()
                            .find(|(k, _)| *k == f)
                            .map(|(_, h)| h.to_string())
                            .unwrap_or_else(|| f.to_uppercase()),
                        None => String::new(),
                    };
                    out.push_str(&name);
                }
            }
        }
        out
    }

    /// Render every row; with `table`, a header first and tab-separated cells
    /// aligned (3 spaces between columns, as Docker's tabwriter).
    pub fn render_all(&self, rows: &[Value], headers: &[(&str, &str)]) -> anyhow::Result<String> {
        let mut lines = Vec::new();
        if self.table {
            lines.push(self.header(headers));
        }
        for r in rows {
            lines.push(self.render(r)?);
        }
        let mut out = if self.table {
            align(&lines)
        } else {
            lines.join("\n")
        };
        if !lines.is_empty() {
            out.push('\n');
        }
        Ok(out)
    }
}

/// Align tab-separated cells into columns.
pub fn align(lines: &[String]) -> String {
    let rows: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let ncol = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut widths = vec![0usize; ncol];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if i + 1 < r.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    rows.iter()
        .map(|r| {
            let mut s = String::new();
            for (i, c) in r.iter().enumerate() {
                s.push_str(c);
                if i + 1 < r.len() {
                    let pad = widths[i] - c.chars().count() + 3;
                    s.push_str(&" ".repeat(pad));
                }
            }
            s.trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn lookup<'a>(v: &'a Value, path: &[String]) -> anyhow::Result<&'a Value> {
    let mut cur = v;
    for (i, p) in path.iter().enumerate() {
        match cur {
            Value::Object(m) => match m.get(p) {
                Some(x) => cur = x,
                None => {
                    let mut keys: Vec<&str> = m.keys().map(String::as_str).collect();
                    keys.sort_unstable();
                    anyhow::bail!(
                        "--format: can't evaluate field {} (no field {p:?}{}; fields: {})",
                        path[..=i].join("."),
                        if i > 0 { " in ." } else { "" },
                        keys.join(", ")
                    );
                }
            },
            _ => anyhow::bail!(
                "--format: can't evaluate field {}: .{} is not an object",
                path[..=i].join("."),
                path[..i].join(".")
            ),
        }
    }
    Ok(cur)
}

fn eval(a: &Arg, v: &Value) -> anyhow::Result<Value> {
    Ok(match a {
        Arg::Field(p) => lookup(v, p)?.clone(),
        Arg::Str(s) => Value::String(s.clone()),
        Arg::Num(n) => Value::from(*n),
    })
}

fn call(c: &Cmd, v: &Value, piped: Option<Value>) -> anyhow::Result<Value> {
    let mut args: Vec<Value> = c
        .args
        .iter()
        .map(|a| eval(a, v))
        .collect::<Result<_, _>>()?;
    if let Some(p) = piped {
        args.push(p);
    }
    let one = |name: &str| -> anyhow::Result<Value> {
        match args.as_slice() {
            [x] => Ok(x.clone()),
            _ => anyhow::bail!("--format: {name} takes one argument, got {}", args.len()),
        }
    };
    Ok(match c.func.as_str() {
        "" => one("a value")?,
        "json" => Value::String(serde_json::to_string(&one("json")?)?),
        "upper" => Value::String(text(&one("upper")?).to_uppercase()),
        "lower" => Value::String(text(&one("lower")?).to_lowercase()),
        "title" => {
            let t = text(&one("title")?);
            let mut c = t.chars();
            Value::String(match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect(),
                None => t,
            })
        }
        "len" => Value::from(match one("len")? {
            Value::Array(a) => a.len(),
            Value::Object(m) => m.len(),
            Value::String(s) => s.len(),
            _ => 0,
        }),
        "println" => Value::String(format!(
            "{}\n",
            args.iter().map(text).collect::<Vec<_>>().join(" ")
        )),
        "join" => match args.as_slice() {
            [Value::Array(a), sep] => {
                Value::String(a.iter().map(text).collect::<Vec<_>>().join(&text(sep)))
            }
            _ => anyhow::bail!("--format: join takes a list and a separator"),
        },
        "index" => match args.as_slice() {
            [Value::Object(m), k] => m.get(&text(k)).cloned().unwrap_or(Value::Null),
            [Value::Array(a), Value::Number(n)] => n
                .as_u64()
                .and_then(|i| a.get(i as usize))
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("--format: index {n} out of range"))?,
            [Value::Null, _] => Value::Null,
            _ => anyhow::bail!("--format: index takes a map and a key (or a list and a number)"),
        },
        other => anyhow::bail!("--format: function {other:?} not defined"),
    })
}

/// How Go's template prints a value.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(text).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            format!(
                "map[{}]",
                keys.iter()
                    .map(|k| format!("{k}:{}", text(&m[*k])))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v() -> Value {
        json!({"ID": "abc", "Names": "web", "State": {"Status": "running", "Pid": 42},
               "Labels": {"k": "v"}, "List": ["a", "b"]})
    }

    #[test]
    fn fields_functions_and_pipes() {
        let r = |f: &str| Template::parse(f).unwrap().render(&v()).unwrap();
        assert_eq!(r("{{.ID}} {{.Names}}"), "abc web");
        assert_eq!(r("{{.State.Status}}/{{.State.Pid}}"), "running/42");
        assert_eq!(r("{{json .State}}"), r#"{"Pid":42,"Status":"running"}"#);
        assert_eq!(r("{{index .Labels \"k\"}}"), "v");
        assert_eq!(r("{{upper .Names}}|{{.Names | upper}}"), "WEB|WEB");
        assert_eq!(r("{{join .List \",\"}} {{len .List}}"), "a,b 2");
        assert_eq!(r("{{.ID}}\\t{{.Names}}"), "abc\tweb");
        assert!(r("{{json .}}").starts_with('{'));
    }

    #[test]
    fn unknown_fields_and_functions_are_errors() {
        let e = Template::parse("{{.Nope}}")
            .unwrap()
            .render(&v())
            .unwrap_err();
        assert!(
            e.to_string().contains("Nope") && e.to_string().contains("fields: ID"),
            "{e}"
        );
        let e = Template::parse("{{.State.Nope}}")
            .unwrap()
            .render(&v())
            .unwrap_err();
        assert!(e.to_string().contains("State.Nope"), "{e}");
        assert!(Template::parse("{{bogus .ID}}").is_err());
        assert!(Template::parse("{{.ID").is_err());
        assert!(Template::parse("{{ID}}").is_err());
    }

    #[test]
    fn table_has_a_header_and_aligned_columns() {
        let t = Template::parse("table {{.ID}}\\t{{.Names}}").unwrap();
        assert!(t.table);
        let rows = vec![
            json!({"ID": "a", "Names": "x"}),
            json!({"ID": "abcdef", "Names": "y"}),
        ];
        let out = t.render_all(&rows, &[("ID", "CONTAINER ID")]).unwrap();
        assert_eq!(
            out,
            "CONTAINER ID   NAMES\na              x\nabcdef         y\n"
        );
    }
}
