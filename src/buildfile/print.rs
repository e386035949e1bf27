//! Syntax tree -> Buildfile text. Parsing the output gives the same tree (line ranges
//! aside: every instruction is printed on one line, followed by its heredoc bodies).

use super::ast::*;

/// Print a whole Buildfile.
pub fn print(bf: &Buildfile) -> String {
    let mut out = String::new();
    for d in &bf.directives {
        out.push_str(&format!("# {}={}\n", d.name, d.value));
    }
    for ins in &bf.instructions {
        instruction(&mut out, ins, bf.escape);
        out.push('\n');
        let hs = match &ins.command {
            Command::Onbuild { trigger } => &trigger.heredocs,
            _ => &ins.heredocs,
        };
        for h in hs {
            out.push_str(&h.content);
            out.push_str(&h.name);
            out.push('\n');
        }
    }
    out
}

fn quote_if_needed(v: &str, escape: char) -> String {
    if v.is_empty()
        || !v.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == escape)
    {
        return v.to_string();
    }
    let mut s = String::from("\"");
    for c in v.chars() {
        if c == '"' || c == escape {
            s.push(escape);
        }
        s.push(c);
    }
    s.push('"');
    s
}

fn json(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".to_string())
}

fn cmdline(c: &CmdLine) -> String {
    match c {
        CmdLine::Shell { text } => text.clone(),
        CmdLine::Exec { args } => json(args),
    }
}

/// Print one instruction as a single line (no heredoc bodies).
pub fn instruction(out: &mut String, ins: &Instruction, escape: char) {
    out.push_str(&ins.keyword);
    for f in &ins.flags {
        out.push_str(" --");
        out.push_str(&f.name);
        if let Some(v) = &f.value {
            out.push('=');
            out.push_str(&quote_if_needed(v, escape));
        }
    }
    let args = match &ins.command {
        Command::From {
            image,
            name,
            as_keyword,
            ..
        } => match name {
            Some(n) => format!("{image} {} {n}", as_keyword.as_deref().unwrap_or("AS")),
            None => image.clone(),
        },
        Command::Run { command, .. }
        | Command::Cmd { command }
        | Command::Entrypoint { command } => cmdline(command),
        Command::Shell { args } => json(args),
        Command::Label { pairs, legacy } | Command::Env { pairs, legacy } => {
            if *legacy {
                pairs
                    .iter()
                    .map(|p| format!("{} {}", p.key, p.value))
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                pairs
                    .iter()
                    .map(|p| format!("{}={}", p.key, p.value))
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        }
        Command::Expose { ports } => ports.join(" "),
        Command::Add {
            sources,
            dest,
            json: j,
            ..
        }
        | Command::Copy {
            sources,
            dest,
            json: j,
            ..
        } => {
            let mut all = sources.clone();
            all.push(dest.clone());
            if *j {
                json(&all)
            } else {
                all.join(" ")
            }
        }
        Command::Volume { paths, json: j } => {
            if *j {
                json(paths)
            } else {
                paths.join(" ")
            }
        }
        Command::User { user } => user.clone(),
        Command::Workdir { path } => path.clone(),
        Command::Stopsignal { signal } => signal.clone(),
        Command::Maintainer { name } => name.clone(),
        Command::Arg { args } => args
            .iter()
            .map(|a| match &a.default {
                Some(d) => format!("{}={d}", a.name),
                None => a.name.clone(),
            })
            .collect::<Vec<_>>()
            .join(" "),
        Command::Onbuild { trigger } => {
            let mut s = String::new();
            instruction(&mut s, trigger, escape);
            s
        }
        Command::Healthcheck { check } => match check {
            Health::None => "NONE".to_string(),
            Health::Cmd { command, .. } => format!("CMD {}", cmdline(command)),
        },
    };
    if !args.is_empty() {
        out.push(' ');
        out.push_str(&args);
    }
}
