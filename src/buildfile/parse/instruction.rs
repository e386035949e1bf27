//! One logical line -> a typed [`Instruction`]: the per-keyword argument rules.

use std::borrow::Cow;

use super::super::ast::*;
use super::super::error::{suggest, Error};
use super::super::words::{unquote, words};
use super::flags::Flags;
use super::heredoc::heredoc_marker;
use super::values::{parse_duration, parse_port};
use super::{
    cmdline, json_array, split_plain, valid_stage_name, ws_len, Logical, Parser, KEYWORDS,
};

impl Parser<'_> {
    pub(super) fn instruction(
        &self,
        l: &Logical,
        off: usize,
        in_onbuild: bool,
    ) -> Result<Instruction, Error> {
        let text: &str = &l.text;
        let rest_all = &text[off..];
        let kw_len = rest_all
            .find(|c: char| c.is_whitespace())
            .unwrap_or(rest_all.len());
        let keyword = &rest_all[..kw_len];
        let Some(&kind) = KEYWORDS.iter().find(|k| k.eq_ignore_ascii_case(keyword)) else {
            let hint = suggest(keyword, &KEYWORDS).map(|s| format!("did you mean {s}?"));
            let shown: String = keyword.chars().take(40).collect();
            let more = if shown.len() < keyword.len() {
                "..."
            } else {
                ""
            };
            return Err(self.err(l, off, format!("unknown instruction {shown}{more}"), hint));
        };
        let mut pos = off + kw_len;
        pos += ws_len(&text[pos..]);
        let flags_start = pos;
        let (flags, after) = self.flags(l, pos)?;
        pos = after;
        let args = text[pos..].trim_end();
        let mut ins = Instruction {
            keyword: if keyword == kind {
                Cow::Borrowed(kind)
            } else {
                Cow::Owned(keyword.to_string())
            },
            lines: LineRange {
                start: l.start as u32 + 1,
                end: l.end as u32 + 1,
            },
            flags,
            heredocs: Vec::new(),
            command: Command::Maintainer {
                name: String::new(),
            },
        };
        let fl = Flags {
            p: self,
            l,
            flags: &ins.flags,
            start: flags_start,
            kw: kind,
        };
        if matches!(
            kind,
            "RUN" | "CMD" | "ENTRYPOINT" | "SHELL" | "ADD" | "COPY" | "VOLUME"
        ) {
            self.strings_only(l, pos, args)?;
        }
        let need_args = |what: &str| -> Result<(), Error> {
            if args.is_empty() {
                Err(self.err(l, off, format!("{kind} requires {what}"), None))
            } else {
                Ok(())
            }
        };
        let cmd = match kind {
            "FROM" => {
                fl.allow(&["platform"])?;
                need_args("either one or three arguments")?;
                let words: Vec<(usize, &str)> = split_plain(args);
                let (image, name, as_kw) = match words.as_slice() {
                    [(_, img)] => (*img, None, None),
                    [(_, img), (_, as_kw), (noff, name)] if as_kw.eq_ignore_ascii_case("as") => {
                        if !valid_stage_name(name) {
                            return Err(self.err(
                                l,
                                pos + noff,
                                format!("invalid name for build stage: \"{name}\", name can't start with a number or contain symbols"),
                                None,
                            ));
                        }
                        (*img, Some(name.to_string()), Some(as_kw.to_string()))
                    }
                    _ => {
                        return Err(self.err(
                            l,
                            off,
                            "FROM requires either one or three arguments",
                            Some("use FROM image [AS name]".into()),
                        ))
                    }
                };
                Command::From {
                    image: image.to_string(),
                    platform: fl.string("platform")?,
                    name,
                    as_keyword: as_kw,
                }
            }
            "RUN" => {
                fl.allow(&["mount", "network", "security"])?;
                need_args("at least one argument")?;
                let mut mounts = Vec::new();
                for (i, f) in ins.flags.iter().enumerate() {
                    if f.name == "mount" {
                        let v = fl.value_of(i)?;
                        mounts.push(self.mount(&fl, i, v)?);
                    }
                }
                let network = fl.choice("network", &["default", "none", "host"])?;
                let security = fl.choice("security", &["sandbox", "insecure"])?;
                Command::Run {
                    command: cmdline(args),
                    mounts,
                    network,
                    security,
                }
            }
            "CMD" | "ENTRYPOINT" => {
                // BuildKit accepts an empty CMD/ENTRYPOINT (it clears the inherited one).
                fl.allow(&[])?;
                if kind == "CMD" {
                    Command::Cmd {
                        command: cmdline(args),
                    }
                } else {
                    Command::Entrypoint {
                        command: cmdline(args),
                    }
                }
            }
            "SHELL" => {
                fl.allow(&[])?;
                match cmdline(args) {
                    CmdLine::Exec { args: a } if !a.is_empty() => Command::Shell { args: a },
                    _ => {
                        return Err(self.err(
                            l,
                            off,
                            "SHELL requires the arguments to be in JSON form",
                            Some("write SHELL [\"/bin/sh\", \"-c\"]".into()),
                        ))
                    }
                }
            }
            "LABEL" | "ENV" => {
                fl.allow(&[])?;
                need_args("at least one argument")?;
                let (pairs, legacy) = self.name_vals(l, pos, args, kind)?;
                if kind == "LABEL" {
                    Command::Label { pairs, legacy }
                } else {
                    Command::Env { pairs, legacy }
                }
            }
            "EXPOSE" => {
                fl.allow(&[])?;
                need_args("at least one argument")?;
                let mut ports = Vec::new();
                for (o, w) in words(args, self.escape) {
                    if !w.contains('$') {
                        if let Err(m) = parse_port(&unquote(w, self.escape)) {
                            return Err(self.err(l, pos + o, m, None));
                        }
                    }
                    ports.push(w.to_string());
                }
                Command::Expose { ports }
            }
            "ADD" | "COPY" => {
                if kind == "ADD" {
                    fl.allow(&[
                        "chown",
                        "chmod",
                        "link",
                        "checksum",
                        "keep-git-dir",
                        "exclude",
                        "unpack",
                    ])?;
                } else {
                    fl.allow(&["from", "chown", "chmod", "link", "parents", "exclude"])?;
                }
                need_args("at least two arguments, but got 0")?;
                let (mut list, json) = match json_array(args) {
                    Some(args) => (args, true),
                    None => (
                        words(args, self.escape)
                            .map(|(_, w)| w.to_string())
                            .collect(),
                        false,
                    ),
                };
                if list.len() < 2 {
                    return Err(self.err(
                        l,
                        off,
                        format!(
                            "{kind} requires at least two arguments, but got {}",
                            list.len()
                        ),
                        Some(format!("use {kind} <src>... <dest>")),
                    ));
                }
                let dest = list.pop().unwrap_or_default();
                let exclude = fl.all("exclude")?;
                if kind == "ADD" {
                    Command::Add {
                        sources: list,
                        dest,
                        json,
                        chown: fl.string("chown")?,
                        chmod: fl.string("chmod")?,
                        link: fl.boolean("link")?,
                        checksum: fl.string("checksum")?,
                        keep_git_dir: fl.boolean("keep-git-dir")?,
                        exclude,
                        unpack: fl.optional_boolean("unpack")?,
                    }
                } else {
                    Command::Copy {
                        sources: list,
                        dest,
                        json,
                        from: fl.string("from")?,
                        chown: fl.string("chown")?,
                        chmod: fl.string("chmod")?,
                        link: fl.boolean("link")?,
                        parents: fl.boolean("parents")?,
                        exclude,
                    }
                }
            }
            "VOLUME" => {
                fl.allow(&[])?;
                need_args("at least one argument")?;
                match json_array(args) {
                    Some(args) => {
                        if args.iter().any(|a| a.trim().is_empty()) {
                            return Err(self.err(
                                l,
                                pos,
                                "VOLUME specified can not be an empty string",
                                None,
                            ));
                        }
                        Command::Volume {
                            paths: args,
                            json: true,
                        }
                    }
                    None => Command::Volume {
                        paths: words(args, self.escape)
                            .map(|(_, w)| w.to_string())
                            .collect(),
                        json: false,
                    },
                }
            }
            "USER" | "WORKDIR" | "STOPSIGNAL" | "MAINTAINER" => {
                fl.allow(&[])?;
                let what = if kind == "MAINTAINER" {
                    "at least one argument"
                } else {
                    "exactly one argument"
                };
                need_args(what)?;
                let s = args.to_string();
                match kind {
                    "USER" => Command::User { user: s },
                    "WORKDIR" => Command::Workdir { path: s },
                    "STOPSIGNAL" => Command::Stopsignal { signal: s },
                    _ => Command::Maintainer { name: s },
                }
            }
            "ARG" => {
                fl.allow(&[])?;
                need_args("at least one argument")?;
                let mut decls = Vec::new();
                for (o, w) in words(args, self.escape) {
                    let (name, default) = match w.split_once('=') {
                        Some((n, d)) => (n, Some(d.to_string())),
                        None => (w, None),
                    };
                    // BuildKit accepts any non-empty name (only names made of letters,
                    // digits and `_` can be referenced with `$`).
                    if name.is_empty() {
                        return Err(self.err(l, pos + o, "ARG names can not be blank", None));
                    }
                    decls.push(ArgDecl {
                        name: name.to_string(),
                        default,
                    });
                }
                Command::Arg { args: decls }
            }
            "ONBUILD" => {
                fl.allow(&[])?;
                need_args("at least one argument")?;
                if in_onbuild {
                    return Err(self.err(l, off, "ONBUILD ONBUILD isn't allowed", None));
                }
                let trigger = self.instruction(l, pos, true)?;
                match trigger.command {
                    Command::From { .. } | Command::Maintainer { .. } => {
                        return Err(self.err(
                            l,
                            pos,
                            format!(
                                "{} isn't allowed as an ONBUILD trigger",
                                trigger.command.name()
                            ),
                            None,
                        ))
                    }
                    Command::Onbuild { .. } => {
                        return Err(self.err(l, pos, "ONBUILD ONBUILD isn't allowed", None));
                    }
                    _ => {}
                }
                Command::Onbuild {
                    trigger: Box::new(trigger),
                }
            }
            "HEALTHCHECK" => {
                fl.allow(&[
                    "interval",
                    "timeout",
                    "start-period",
                    "start-interval",
                    "retries",
                ])?;
                need_args("at least one argument")?;
                let tlen = args.find(|c: char| c.is_whitespace()).unwrap_or(args.len());
                let (typ, rest) = (&args[..tlen], args[tlen..].trim());
                self.strings_only(
                    l,
                    pos + (args.len() - args[tlen..].trim_start().len()),
                    rest,
                )?;
                if typ.eq_ignore_ascii_case("none") {
                    if !rest.is_empty() {
                        return Err(self.err(l, pos, "HEALTHCHECK NONE takes no arguments", None));
                    }
                    // BuildKit ignores the (known) flags of HEALTHCHECK NONE; so do we.
                    Command::Healthcheck {
                        check: Health::None,
                    }
                } else if typ.eq_ignore_ascii_case("cmd") {
                    if rest.is_empty() {
                        return Err(self.err(
                            l,
                            pos,
                            "missing command after HEALTHCHECK CMD",
                            None,
                        ));
                    }
                    let dur = |name: &str| -> Result<Option<String>, Error> {
                        let v = fl.string(name)?;
                        if let Some(s) = &v {
                            match parse_duration(s) {
                                Some(d)
                                    if d.is_zero() || d >= std::time::Duration::from_millis(1) => {}
                                Some(_) => {
                                    return Err(fl.err(
                                        name,
                                        format!("{name} \"{s}\" cannot be less than 1ms"),
                                    ))
                                }
                                None => {
                                    return Err(fl.err(
                                        name,
                                        format!("invalid duration \"{s}\" for --{name}"),
                                    ))
                                }
                            }
                        }
                        Ok(v)
                    };
                    let retries = match fl.string("retries")? {
                        None => None,
                        Some(s) => match s.parse::<u32>() {
                            Ok(n) => Some(n),
                            Err(_) => {
                                return Err(fl.err(
                                    "retries",
                                    format!(
                                        "--retries must be a non-negative integer, not \"{s}\""
                                    ),
                                ))
                            }
                        },
                    };
                    Command::Healthcheck {
                        check: Health::Cmd {
                            command: cmdline(rest),
                            interval: dur("interval")?,
                            timeout: dur("timeout")?,
                            start_period: dur("start-period")?,
                            start_interval: dur("start-interval")?,
                            retries,
                        },
                    }
                } else {
                    return Err(self.err(
                        l,
                        pos,
                        format!("unknown type \"{typ}\" in HEALTHCHECK"),
                        Some("try CMD or NONE".into()),
                    ));
                }
            }
            _ => return Err(self.err(l, off, format!("unknown instruction {keyword}"), None)),
        };
        ins.command = cmd;
        // Heredoc markers (bodies are read by the caller).
        if matches!(kind, "RUN" | "COPY" | "ADD") {
            let is_shell = match &ins.command {
                Command::Run { command, .. } => !command.is_exec(),
                Command::Copy { json, .. } | Command::Add { json, .. } => !json,
                _ => false,
            };
            if is_shell && args.contains("<<") {
                for (o, w) in words(args, self.escape) {
                    match heredoc_marker(w, self.escape) {
                        Ok(Some(h)) => ins.heredocs.push(h),
                        Ok(None) => {}
                        Err(m) => {
                            return Err(self.err(
                                l,
                                pos + o,
                                m,
                                Some("quote the whole delimiter: <<'EOF' or <<\"EOF\"".into()),
                            ))
                        }
                    }
                }
            }
        }
        Ok(ins)
    }

    /// BuildKit's rule for the JSON form: text that is not valid JSON is shell
    /// form, but a valid JSON array holding anything other than strings
    /// (`CMD ["echo", ["x"]]`, `COPY ["a", 2, "/d/"]`) is an error.
    fn strings_only(&self, l: &Logical, at: usize, args: &str) -> Result<(), Error> {
        let t = args.trim();
        if !(t.starts_with('[') && t.ends_with(']')) {
            return Ok(());
        }
        match serde_json::from_str::<Vec<serde_json::Value>>(t) {
            Ok(items) if items.iter().any(|v| !v.is_string()) => Err(self.err(
                l,
                at,
                "when using JSON array syntax, arrays must be comprised of strings only",
                Some("quote every element, e.g. [\"echo\", \"2\"]".into()),
            )),
            _ => Ok(()),
        }
    }

    /// `ENV`/`LABEL` pairs: `k=v k2="v 2"` or the legacy `k v` form.
    fn name_vals(
        &self,
        l: &Logical,
        pos: usize,
        args: &str,
        kind: &str,
    ) -> Result<(Vec<Pair>, bool), Error> {
        let mut all = words(args, self.escape);
        let Some((_, first)) = all.next() else {
            return Err(self.err(
                l,
                pos,
                format!("{kind} requires at least one argument"),
                None,
            ));
        };
        if !first.contains('=') {
            let klen = first.len();
            let value = args[klen..].trim();
            if value.is_empty() {
                return Err(self.err(
                    l,
                    pos,
                    format!("{kind} must have two arguments"),
                    Some(format!("use {kind} {first}=<value>")),
                ));
            }
            return Ok((
                vec![Pair {
                    key: first.to_string(),
                    value: value.to_string(),
                }],
                true,
            ));
        }
        let mut pairs = Vec::new();
        for (o, w) in std::iter::once((0, first)).chain(all) {
            let Some((k, v)) = w.split_once('=') else {
                return Err(self.err(
                    l,
                    pos + o,
                    format!("syntax error - can't find = in \"{w}\""),
                    Some("must be of the form name=value".into()),
                ));
            };
            if k.is_empty() {
                return Err(self.err(l, pos + o, format!("{kind} names can not be blank"), None));
            }
            pairs.push(Pair {
                key: k.to_string(),
                value: v.to_string(),
            });
        }
        Ok((pairs, false))
    }
}
