//! Config instructions -> the OCI image config (Docker's field names), and the
//! `created_by` text of history entries (BuildKit's wording).

use serde_json::{json, Map, Value};

use super::BuildError;
use crate::buildfile::{self, CmdLine, Command, Health, Heredoc};
use crate::image::commit::Image;

/// Per-stage state the config rules need beyond the config itself.
#[derive(Debug, Clone, Default)]
pub struct StageFlags {
    /// CMD was set in this stage (then ENTRYPOINT does not reset it).
    pub cmd_set: bool,
}

/// Go's `%q` of a string slice (`["a" "b"]`), as BuildKit writes CMD/ENTRYPOINT.
fn go_q(v: &[String]) -> String {
    let items: Vec<String> = v
        .iter()
        .map(|s| serde_json::to_string(s).unwrap_or_default())
        .collect();
    format!("[{}]", items.join(" "))
}

/// The shell of the image (`SHELL`), default `/bin/sh -c`.
pub fn shell(image: &Image) -> Vec<String> {
    image
        .config
        .config
        .as_ref()
        .and_then(|c| c.shell.clone())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
}

/// A command line as argv: exec form as is, shell form under the shell.
pub fn argv(cmd: &CmdLine, shell: &[String]) -> Vec<String> {
    match cmd {
        CmdLine::Exec { args } => args.clone(),
        CmdLine::Shell { text } => {
            let mut v = shell.to_vec();
            v.push(text.clone());
            v
        }
    }
}

/// The argv of a RUN with heredocs: a RUN that is only `<<EOF` runs the heredoc
/// as the script; otherwise the bodies follow the command, for the shell to read.
pub fn run_argv(cmd: &CmdLine, heredocs: &[Heredoc], shell: &[String]) -> Vec<String> {
    if let (CmdLine::Shell { text }, false) = (cmd, heredocs.is_empty()) {
        let t = text.trim();
        let only = heredocs.len() == 1 && {
            let h = &heredocs[0];
            let bare = t.trim_start_matches("<<").trim_start_matches('-');
            let bare = bare.trim_matches(|c| c == '"' || c == '\'');
            t.starts_with("<<") && bare == h.name
        };
        if only {
            let body = heredocs[0].content.clone();
            if let Some(first) = body.lines().next() {
                if let Some(interp) = first.strip_prefix("#!") {
                    let mut v: Vec<String> =
                        interp.split_whitespace().map(str::to_string).collect();
                    if !v.is_empty() {
                        v.push("-c".into());
                        v.push(body);
                        return v;
                    }
                }
            }
            let mut v = shell.to_vec();
            v.push(body);
            return v;
        }
        let mut full = text.clone();
        full.push('\n');
        for h in heredocs {
            full.push_str(&h.content);
            full.push_str(&h.name);
            full.push('\n');
        }
        let mut v = shell.to_vec();
        v.push(full);
        return v;
    }
    argv(cmd, shell)
}

fn env_list(c: &Map<String, Value>) -> Vec<String> {
    c.get("Env")
        .and_then(|v| serde_json::from_value::<Vec<String>>(v.clone()).ok())
        .unwrap_or_default()
}

/// Set `key=value` in the config's Env.
pub fn set_env(c: &mut Map<String, Value>, key: &str, value: &str) {
    let mut env = env_list(c);
    let kv = format!("{key}={value}");
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map(|(k, _)| k).unwrap_or(e) == key)
    {
        Some(e) => *e = kv,
        None => env.push(kv),
    }
    c.insert("Env".into(), json!(env));
}

fn object<'a>(c: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let v = c
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("made an object above"),
    }
}

fn nanos(at: &str, what: &str, d: &Option<String>) -> Result<Option<u64>, BuildError> {
    match d {
        None => Ok(None),
        Some(s) => buildfile::parse_duration(s)
            .map(|d| Some(d.as_nanos() as u64))
            .ok_or_else(|| BuildError::Instruction {
                at: at.to_string(),
                message: format!("HEALTHCHECK --{what}={s}: not a duration (e.g. 30s, 1m30s)"),
            }),
    }
}

/// Apply a config-only instruction to `image`; returns its `created_by`, or `None`
/// when the instruction leaves no history (ARG). `at` names the line for errors.
pub fn apply(
    image: &mut Image,
    cmd: &Command,
    flags: &mut StageFlags,
    at: &str,
) -> Result<Option<String>, BuildError> {
    let sh = shell(image);
    let workdir = image
        .config
        .config
        .as_ref()
        .and_then(|c| c.working_dir.clone())
        .unwrap_or_default();
    if let Command::Maintainer { name } = cmd {
        image.config.author = Some(name.clone());
        return Ok(Some(format!("MAINTAINER {name}")));
    }
    // Edited as Docker's JSON object (every key, typed or not), then read back.
    let json = |e: serde_json::Error| BuildError::Other(format!("image config: {e}"));
    let mut value = serde_json::to_value(image.config_mut()).map_err(json)?;
    if !value.is_object() {
        value = Value::Object(Map::new());
    }
    let Value::Object(c) = &mut value else {
        unreachable!("made an object above")
    };
    let by = match cmd {
        Command::Env { pairs, .. } => {
            for p in pairs {
                set_env(c, &p.key, &p.value);
            }
            let kv: Vec<String> = pairs
                .iter()
                .map(|p| format!("{}={}", p.key, p.value))
                .collect();
            format!("ENV {}", kv.join(" "))
        }
        Command::Label { pairs, .. } => {
            let l = object(c, "Labels");
            for p in pairs {
                l.insert(p.key.clone(), json!(p.value));
            }
            let kv: Vec<String> = pairs
                .iter()
                .map(|p| format!("{}={}", p.key, p.value))
                .collect();
            format!("LABEL {}", kv.join(" "))
        }
        Command::Expose { ports } => {
            let e = object(c, "ExposedPorts");
            let mut shown = Vec::new();
            for p in ports {
                let (lo, hi, proto) =
                    buildfile::parse_port(p).map_err(|m| BuildError::Instruction {
                        at: at.to_string(),
                        message: m,
                    })?;
                for port in lo..=hi {
                    e.insert(format!("{port}/{proto}"), json!({}));
                    shown.push(format!("{port}/{proto}:{{}}"));
                }
            }
            format!("EXPOSE map[{}]", shown.join(" "))
        }
        Command::User { user } => {
            c.insert("User".into(), json!(user));
            format!("USER {user}")
        }
        Command::Workdir { path } => {
            let p = if path.starts_with('/') {
                path.clone()
            } else {
                let base = if workdir.is_empty() { "/" } else { &workdir };
                format!("{}/{path}", base.trim_end_matches('/'))
            };
            let p = normalize(&p);
            c.insert("WorkingDir".into(), json!(p));
            format!("WORKDIR {p}")
        }
        Command::Volume { paths, .. } => {
            let v = object(c, "Volumes");
            for p in paths {
                v.insert(p.clone(), json!({}));
            }
            format!("VOLUME [{}]", paths.join(" "))
        }
        Command::Cmd { command } => {
            let a = argv(command, &sh);
            c.insert("Cmd".into(), json!(a));
            flags.cmd_set = true;
            format!("CMD {}", go_q(&a))
        }
        Command::Entrypoint { command } => {
            let a = argv(command, &sh);
            c.insert("Entrypoint".into(), json!(a));
            // Docker: an ENTRYPOINT resets a CMD inherited from the base.
            if !flags.cmd_set {
                c.remove("Cmd");
            }
            format!("ENTRYPOINT {}", go_q(&a))
        }
        Command::Shell { args } => {
            c.insert("Shell".into(), json!(args));
            format!("SHELL {}", go_q(args))
        }
        Command::Stopsignal { signal } => {
            c.insert("StopSignal".into(), json!(signal));
            format!("STOPSIGNAL {signal}")
        }
        Command::Healthcheck { check } => {
            match check {
                Health::None => {
                    c.insert("Healthcheck".into(), json!({"Test": ["NONE"]}));
                }
                Health::Cmd {
                    command,
                    interval,
                    timeout,
                    start_period,
                    start_interval,
                    retries,
                } => {
                    let test: Vec<String> = match command {
                        CmdLine::Shell { text } => vec!["CMD-SHELL".into(), text.clone()],
                        CmdLine::Exec { args } => {
                            let mut v = vec!["CMD".to_string()];
                            v.extend(args.iter().cloned());
                            v
                        }
                    };
                    let mut h = Map::new();
                    h.insert("Test".into(), json!(test));
                    for (k, v, name) in [
                        ("Interval", interval, "interval"),
                        ("Timeout", timeout, "timeout"),
                        ("StartPeriod", start_period, "start-period"),
                        ("StartInterval", start_interval, "start-interval"),
                    ] {
                        if let Some(n) = nanos(at, name, v)? {
                            h.insert(k.into(), json!(n));
                        }
                    }
                    if let Some(r) = retries {
                        h.insert("Retries".into(), json!(r));
                    }
                    c.insert("Healthcheck".into(), Value::Object(h));
                }
            }
            format!("HEALTHCHECK {}", health_text(check))
        }
        Command::Onbuild { trigger } => {
            let mut t = String::new();
            buildfile::print_instruction(&mut t, trigger, '\\');
            let list = c.entry("OnBuild".to_string()).or_insert_with(|| json!([]));
            if !list.is_array() {
                *list = json!([]);
            }
            if let Value::Array(a) = list {
                a.push(json!(t));
            }
            format!("ONBUILD {t}")
        }
        Command::Arg { .. } => return Ok(None),
        Command::Maintainer { .. }
        | Command::From { .. }
        | Command::Run { .. }
        | Command::Copy { .. }
        | Command::Add { .. } => {
            return Err(BuildError::Instruction {
                at: at.to_string(),
                message: format!("{} is not a config instruction", cmd.name()),
            })
        }
    };
    *image.config_mut() = serde_json::from_value(value).map_err(json)?;
    Ok(Some(by))
}

fn health_text(h: &Health) -> String {
    match h {
        Health::None => "NONE".into(),
        Health::Cmd { command, .. } => match command {
            CmdLine::Shell { text } => format!("CMD {text}"),
            CmdLine::Exec { args } => format!("CMD {}", go_q(args)),
        },
    }
}

/// `/a/./b/../c` -> `/a/c` (lexical, as Docker's WORKDIR).
pub fn normalize(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            x => out.push(x),
        }
    }
    format!("/{}", out.join("/"))
}

/// `created_by` of a RUN: `RUN |2 A=1 B=2 /bin/sh -c cmd # buildkit`, with the
/// build args the step sees (never secrets: they are not args).
pub fn run_created_by(argv: &[String], args: &[(String, String)]) -> String {
    let mut s = String::from("RUN ");
    if !args.is_empty() {
        s.push_str(&format!("|{} ", args.len()));
        for (k, v) in args {
            s.push_str(&format!("{k}={v} "));
        }
    }
    s.push_str(&argv.join(" "));
    s.push_str(" # buildkit");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buildfile::Pair;

    fn img() -> Image {
        Image::scratch("linux", "amd64", None)
    }

    #[test]
    fn entrypoint_resets_an_inherited_cmd_but_not_one_set_in_the_stage() {
        let mut i = img();
        i.config_mut().cmd = Some(vec!["sh".into()]);
        let mut f = StageFlags::default();
        let ep = Command::Entrypoint {
            command: CmdLine::Exec {
                args: vec!["/app".into()],
            },
        };
        let by = apply(&mut i, &ep, &mut f, "B:1").unwrap().unwrap();
        assert_eq!(by, "ENTRYPOINT [\"/app\"]");
        assert!(i.config_mut().cmd.is_none());
        let cmd = Command::Cmd {
            command: CmdLine::Shell { text: "run".into() },
        };
        apply(&mut i, &cmd, &mut f, "B:2").unwrap();
        apply(&mut i, &ep, &mut f, "B:3").unwrap();
        assert_eq!(
            i.config_mut().cmd,
            Some(vec!["/bin/sh".into(), "-c".into(), "run".into()])
        );
    }

    #[test]
    fn env_workdir_expose_and_healthcheck_fields() {
        let mut i = img();
        let mut f = StageFlags::default();
        let env = Command::Env {
            pairs: vec![
                Pair {
                    key: "A".into(),
                    value: "1".into(),
                },
                Pair {
                    key: "A".into(),
                    value: "2".into(),
                },
            ],
            legacy: false,
        };
        apply(&mut i, &env, &mut f, "B:1").unwrap();
        assert_eq!(i.config_mut().env, Some(vec!["A=2".to_string()]));
        for p in ["/app", "sub/../x", "."] {
            apply(&mut i, &Command::Workdir { path: p.into() }, &mut f, "B:2").unwrap();
        }
        assert_eq!(i.config_mut().working_dir.as_deref(), Some("/app/x"));
        apply(
            &mut i,
            &Command::Expose {
                ports: vec!["80".into(), "53/udp".into(), "8000-8001".into()],
            },
            &mut f,
            "B:3",
        )
        .unwrap();
        let ports: Vec<String> = i
            .config_mut()
            .exposed_ports
            .clone()
            .unwrap()
            .into_keys()
            .collect();
        assert_eq!(ports, ["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]);
        let hc = Command::Healthcheck {
            check: Health::Cmd {
                command: CmdLine::Shell {
                    text: "true".into(),
                },
                interval: Some("30s".into()),
                timeout: None,
                start_period: None,
                start_interval: None,
                retries: Some(3),
            },
        };
        apply(&mut i, &hc, &mut f, "B:4").unwrap();
        assert_eq!(
            i.config_mut().extra["Healthcheck"],
            json!({"Test": ["CMD-SHELL", "true"], "Interval": 30_000_000_000u64, "Retries": 3})
        );
    }

    #[test]
    fn heredoc_runs_as_a_script_or_feeds_the_command() {
        let h = Heredoc {
            name: "EOF".into(),
            content: "echo a\necho b\n".into(),
            expand: true,
            strip_tabs: false,
            fd: None,
        };
        let sh = vec!["/bin/sh".to_string(), "-c".to_string()];
        let only = CmdLine::Shell {
            text: "<<EOF".into(),
        };
        assert_eq!(
            run_argv(&only, std::slice::from_ref(&h), &sh),
            ["/bin/sh", "-c", "echo a\necho b\n"]
        );
        let cat = CmdLine::Shell {
            text: "cat <<EOF > /f".into(),
        };
        assert_eq!(
            run_argv(&cat, std::slice::from_ref(&h), &sh)[2],
            "cat <<EOF > /f\necho a\necho b\nEOF\n"
        );
    }
}
