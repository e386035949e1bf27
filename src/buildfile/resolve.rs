//! Variable expansion with Docker's scoping rules.
//!
//! * Global `ARG`s (before the first `FROM`) and the predefined platform ARGs are visible
//!   in `FROM` lines only. Inside a stage a global ARG is visible only after it is
//!   redeclared (`ARG NAME` without a value takes the global value).
//! * A build arg (`--build-arg K=V`) overrides an ARG default; it is visible only where
//!   the ARG is declared. The proxy ARGs need no declaration and only reach `RUN`.
//! * `ENV` overrides `ARG` in expansion; all pairs of one `ENV` see the values from
//!   before the instruction. A stage built `FROM` another stage inherits its ENV.
//! * Expanded: FROM, ADD, COPY (and their flags), ENV, EXPOSE, LABEL, STOPSIGNAL, USER,
//!   VOLUME, WORKDIR, ARG defaults, RUN `--mount` options and unquoted COPY/ADD heredocs.
//!   Not expanded: RUN/CMD/ENTRYPOINT/HEALTHCHECK commands (the shell does it at run
//!   time; exec form never), SHELL, ONBUILD, MAINTAINER.

use std::collections::HashMap;

use serde::Serialize;

use super::ast::*;
use super::error::{Error, Location};
use super::words::{expand, unquote};

/// ARGs available in RUN without an `ARG` line (and kept out of the image history).
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The platform ARGs Docker predefines in the global scope.
pub const PLATFORM_ARGS: [&str; 8] = [
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
];

/// An OCI platform `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    /// Parse `linux/arm64/v8`; the OS defaults to linux when only an arch is given.
    pub fn parse(s: &str) -> Option<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        };
        match parts.as_slice() {
            [arch] if ok(arch) => Some(Platform {
                os: "linux".into(),
                arch: arch.to_string(),
                variant: None,
            }),
            [os, arch] if ok(os) && ok(arch) => Some(Platform {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => Some(Platform {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => None,
        }
    }

    /// The platform this binary was built for, in OCI (GOARCH) spelling.
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", None),
            "x86" => ("386", None),
            "arm" => ("arm", Some("v7".to_string())),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            arch: arch.to_string(),
            variant,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Inputs of expansion.
#[derive(Debug, Clone)]
pub struct ResolveOptions {
    /// `--build-arg` values in the order given.
    pub build_args: Vec<(String, String)>,
    pub target_platform: Platform,
    pub build_platform: Platform,
}

impl Default for ResolveOptions {
    fn default() -> Self {
        ResolveOptions {
            build_args: Vec::new(),
            target_platform: Platform::host(),
            build_platform: Platform::host(),
        }
    }
}

/// A Buildfile with every instruction expanded for one build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolved {
    /// Global ARGs with their values (None: declared without a value).
    pub global_args: Vec<(String, Option<String>)>,
    pub stages: Vec<ResolvedStage>,
    /// Build args no ARG consumed (Docker warns about these).
    pub unused_build_args: Vec<String>,
}

/// One stage after expansion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedStage {
    pub index: usize,
    pub name: Option<String>,
    /// Expanded base: an image reference, `scratch`, or an earlier stage's name.
    pub base: String,
    /// Expanded `--platform`.
    pub platform: Option<String>,
    pub lines: LineRange,
    /// ENV inherited from a parent stage (`FROM <stage>`), sorted.
    pub inherited_env: Vec<(String, String)>,
    /// Proxy build args: they reach every RUN without an ARG line. Sorted.
    pub proxy_env: Vec<(String, String)>,
    /// The stage's instructions after its FROM.
    pub steps: Vec<Step>,
}

impl ResolvedStage {
    /// The environment a RUN at `steps[pos]` sees: ENV (inherited and set so far),
    /// declared ARGs with a value (ENV wins over an ARG of the same name), and the proxy
    /// build args. Sorted by name. Computed on demand, so that a long stage does not
    /// store one copy of its environment per step.
    pub fn env_at(&self, pos: usize) -> Vec<(String, String)> {
        let mut env: HashMap<&str, &str> = self
            .inherited_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut args: HashMap<&str, &str> = HashMap::new();
        for step in self.steps.iter().take(pos.saturating_add(1)) {
            match &step.command {
                Command::Env { pairs, .. } => {
                    for p in pairs {
                        env.insert(&p.key, &p.value);
                    }
                }
                Command::Arg { args: decls } => {
                    for d in decls {
                        match &d.default {
                            Some(v) => args.insert(&d.name, v),
                            None => args.remove(d.name.as_str()),
                        };
                    }
                }
                _ => {}
            }
        }
        for (k, v) in args
            .into_iter()
            .chain(self.proxy_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        {
            env.entry(k).or_insert(v);
        }
        let mut out: Vec<(String, String)> = env
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        out.sort();
        out
    }
}

/// One expanded instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Index in [`Buildfile::instructions`].
    pub index: usize,
    pub lines: LineRange,
    /// The instruction with its values expanded. For `ARG`, each declaration's
    /// `default` holds the value in effect (build arg, default or global value), `None`
    /// when the ARG is declared without one.
    pub command: Command,
    pub heredocs: Vec<Heredoc>,
    /// Variables referenced here that no ARG or ENV declared (for the linter).
    pub undefined: Vec<String>,
}

/// Variables visible at one point.
#[derive(Debug, Clone, Default)]
struct Scope {
    env: HashMap<String, String>,
    args: HashMap<String, Option<String>>,
}

impl Scope {
    fn get(&self, name: &str) -> Option<String> {
        match self.env.get(name) {
            Some(v) => Some(v.clone()),
            None => self.args.get(name).cloned().flatten(),
        }
    }

    fn declared(&self, name: &str) -> bool {
        self.env.contains_key(name) || self.args.contains_key(name)
    }

    fn set_env(&mut self, k: String, v: String) {
        self.env.insert(k, v);
    }

    fn set_arg(&mut self, k: String, v: Option<String>) {
        self.args.insert(k, v);
    }
}

struct Ctx<'a> {
    file: &'a str,
    escape: char,
    lines: &'a [&'a str],
}

impl Ctx<'_> {
    fn expand(
        &self,
        word: &str,
        scope: &Scope,
        ins_line: u32,
        undefined: &mut Vec<String>,
    ) -> Result<String, Error> {
        let mut missing = Vec::new();
        let out = expand(word, self.escape, &|n| scope.get(n), &mut missing).map_err(|e| {
            let src = self
                .lines
                .get((ins_line as usize).saturating_sub(1))
                .copied()
                .unwrap_or("");
            let col = src
                .find(word.lines().next().unwrap_or(word))
                .map(|b| src[..b].chars().count())
                .unwrap_or(0);
            Error::Expand {
                at: Box::new(Location {
                    file: self.file.to_string(),
                    line: ins_line,
                    column: col as u32 + 1,
                    source_line: src.to_string(),
                }),
                message: e.message,
            }
        })?;
        for m in missing {
            if !scope.declared(&m) && !undefined.contains(&m) {
                undefined.push(m);
            }
        }
        Ok(out)
    }

    fn opt(
        &self,
        w: &Option<String>,
        s: &Scope,
        line: u32,
        u: &mut Vec<String>,
    ) -> Result<Option<String>, Error> {
        w.as_ref().map(|w| self.expand(w, s, line, u)).transpose()
    }

    fn list(
        &self,
        w: &[String],
        s: &Scope,
        line: u32,
        u: &mut Vec<String>,
    ) -> Result<Vec<String>, Error> {
        w.iter().map(|w| self.expand(w, s, line, u)).collect()
    }

    /// Words of an instruction with a JSON form: kept as written in JSON form
    /// (Docker does not expand them there), expanded in shell form.
    fn words(
        &self,
        w: &[String],
        json: bool,
        s: &Scope,
        line: u32,
        u: &mut Vec<String>,
    ) -> Result<Vec<String>, Error> {
        if json {
            Ok(w.to_vec())
        } else {
            self.list(w, s, line, u)
        }
    }

    /// One word of an instruction with a JSON form (see [`Ctx::words`]).
    fn word(
        &self,
        w: &str,
        json: bool,
        s: &Scope,
        line: u32,
        u: &mut Vec<String>,
    ) -> Result<String, Error> {
        if json {
            Ok(w.to_string())
        } else {
            self.expand(w, s, line, u)
        }
    }
}

/// Expand a parsed Buildfile for one build. `text` is the source the Buildfile was parsed
/// from (for error lines); `file` names it in errors.
pub fn resolve(
    bf: &Buildfile,
    file: &str,
    text: &str,
    opts: &ResolveOptions,
) -> Result<Resolved, Error> {
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let cx = Ctx {
        file,
        escape: bf.escape,
        lines: &lines,
    };
    let build_arg = |n: &str| {
        opts.build_args
            .iter()
            .rev()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    let mut consumed: Vec<String> = Vec::new();

    // Global scope: predefined platform ARGs, then the meta ARGs in order.
    let tp = &opts.target_platform;
    let bp = &opts.build_platform;
    let mut global = Scope::default();
    for (k, v) in [
        ("TARGETPLATFORM", Some(tp.to_string())),
        ("TARGETOS", Some(tp.os.clone())),
        ("TARGETARCH", Some(tp.arch.clone())),
        (
            "TARGETVARIANT",
            Some(tp.variant.clone().unwrap_or_default()),
        ),
        ("BUILDPLATFORM", Some(bp.to_string())),
        ("BUILDOS", Some(bp.os.clone())),
        ("BUILDARCH", Some(bp.arch.clone())),
        ("BUILDVARIANT", Some(bp.variant.clone().unwrap_or_default())),
    ] {
        global.set_arg(k.to_string(), v);
    }
    let mut meta: Vec<(String, Option<String>)> = Vec::new();
    let mut ignored = Vec::new();
    for ins in bf.global_args() {
        if let Command::Arg { args } = &ins.command {
            for d in args {
                let v = match build_arg(&d.name) {
                    Some(v) => {
                        consumed.push(d.name.clone());
                        Some(v)
                    }
                    None => cx.opt(&d.default, &global, ins.lines.start, &mut ignored)?,
                };
                global.set_arg(d.name.clone(), v.clone());
                match meta.iter_mut().find(|(k, _)| *k == d.name) {
                    Some(slot) => slot.1 = v,
                    None => meta.push((d.name.clone(), v)),
                }
            }
        }
    }

    let mut stages: Vec<ResolvedStage> = Vec::new();
    let mut final_env: Vec<HashMap<String, String>> = Vec::new();
    // First stage of each name, among the stages resolved so far.
    let mut stage_by_name: HashMap<String, usize> = HashMap::new();
    let mut proxy_env: Vec<(String, String)> = PROXY_ARGS
        .iter()
        .filter_map(|p| build_arg(p).map(|v| (p.to_string(), v)))
        .collect();
    proxy_env.sort();
    for st in &bf.stages {
        let Some(from) = bf.instructions.get(st.from) else {
            continue;
        };
        let (image, platform) = match &from.command {
            Command::From {
                image, platform, ..
            } => (image, platform),
            _ => continue,
        };
        let mut u = Vec::new();
        let base = cx.expand(image, &global, from.lines.start, &mut u)?;
        let platform = cx.opt(platform, &global, from.lines.start, &mut u)?;
        let mut scope = Scope::default();
        // ENV carries over from a parent stage; ARGs do not.
        let lower = base.to_ascii_lowercase();
        if let Some(&parent) = stage_by_name.get(lower.as_str()) {
            if let Some(e) = final_env.get(parent) {
                scope.env = e.clone();
            }
        }
        let mut inherited_env: Vec<(String, String)> = scope
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        inherited_env.sort();
        let mut steps = Vec::new();
        for (idx, ins) in bf.stage_instructions(st).iter().enumerate().skip(1) {
            let idx = st.from + idx;
            let line = ins.lines.start;
            let mut u = Vec::new();
            let mut heredocs = ins.heredocs.clone();
            let command = match &ins.command {
                Command::Arg { args } => {
                    let mut effective = Vec::with_capacity(args.len());
                    for d in args {
                        let v = match build_arg(&d.name) {
                            Some(v) => {
                                consumed.push(d.name.clone());
                                Some(v)
                            }
                            None => match &d.default {
                                Some(def) => Some(cx.expand(def, &scope, line, &mut u)?),
                                None => global.args.get(&d.name).cloned().flatten(),
                            },
                        };
                        effective.push(ArgDecl {
                            name: d.name.clone(),
                            default: v.clone(),
                        });
                        scope.set_arg(d.name.clone(), v);
                    }
                    Command::Arg { args: effective }
                }
                Command::Env { pairs, legacy } => {
                    // Every pair sees the values from before the instruction.
                    let mut out = Vec::with_capacity(pairs.len());
                    for p in pairs {
                        let k = unquote(&p.key, bf.escape);
                        let v = cx.expand(&p.value, &scope, line, &mut u)?;
                        out.push(Pair { key: k, value: v });
                    }
                    for p in &out {
                        scope.set_env(p.key.clone(), p.value.clone());
                    }
                    Command::Env {
                        pairs: out,
                        legacy: *legacy,
                    }
                }
                Command::Label { pairs, legacy } => {
                    let mut out = Vec::new();
                    for p in pairs {
                        out.push(Pair {
                            key: cx.expand(&p.key, &scope, line, &mut u)?,
                            value: cx.expand(&p.value, &scope, line, &mut u)?,
                        });
                    }
                    Command::Label {
                        pairs: out,
                        legacy: *legacy,
                    }
                }
                Command::Expose { ports } => Command::Expose {
                    ports: cx.list(ports, &scope, line, &mut u)?,
                },
                Command::User { user } => Command::User {
                    user: cx.expand(user, &scope, line, &mut u)?,
                },
                Command::Workdir { path } => Command::Workdir {
                    path: cx.expand(path, &scope, line, &mut u)?,
                },
                Command::Stopsignal { signal } => Command::Stopsignal {
                    signal: cx.expand(signal, &scope, line, &mut u)?,
                },
                Command::Volume { paths, json } => Command::Volume {
                    paths: cx.words(paths, *json, &scope, line, &mut u)?,
                    json: *json,
                },
                Command::Add {
                    sources,
                    dest,
                    json,
                    chown,
                    chmod,
                    link,
                    checksum,
                    keep_git_dir,
                    exclude,
                    unpack,
                } => {
                    expand_heredocs(&cx, &mut heredocs, &scope, line, &mut u)?;
                    Command::Add {
                        sources: cx.words(sources, *json, &scope, line, &mut u)?,
                        dest: cx.word(dest, *json, &scope, line, &mut u)?,
                        json: *json,
                        chown: cx.opt(chown, &scope, line, &mut u)?,
                        chmod: cx.opt(chmod, &scope, line, &mut u)?,
                        link: *link,
                        checksum: cx.opt(checksum, &scope, line, &mut u)?,
                        keep_git_dir: *keep_git_dir,
                        exclude: cx.list(exclude, &scope, line, &mut u)?,
                        unpack: *unpack,
                    }
                }
                Command::Copy {
                    sources,
                    dest,
                    json,
                    from,
                    chown,
                    chmod,
                    link,
                    parents,
                    exclude,
                } => {
                    expand_heredocs(&cx, &mut heredocs, &scope, line, &mut u)?;
                    Command::Copy {
                        sources: cx.words(sources, *json, &scope, line, &mut u)?,
                        dest: cx.word(dest, *json, &scope, line, &mut u)?,
                        json: *json,
                        from: cx.opt(from, &scope, line, &mut u)?,
                        chown: cx.opt(chown, &scope, line, &mut u)?,
                        chmod: cx.opt(chmod, &scope, line, &mut u)?,
                        link: *link,
                        parents: *parents,
                        exclude: cx.list(exclude, &scope, line, &mut u)?,
                    }
                }
                Command::Run {
                    command,
                    mounts,
                    network,
                    security,
                } => {
                    let mut ms = Vec::new();
                    for m in mounts {
                        ms.push(Mount {
                            kind: m.kind,
                            target: cx.opt(&m.target, &scope, line, &mut u)?,
                            source: cx.opt(&m.source, &scope, line, &mut u)?,
                            from: cx.opt(&m.from, &scope, line, &mut u)?,
                            id: cx.opt(&m.id, &scope, line, &mut u)?,
                            readonly: m.readonly,
                            sharing: cx.opt(&m.sharing, &scope, line, &mut u)?,
                            mode: cx.opt(&m.mode, &scope, line, &mut u)?,
                            uid: cx.opt(&m.uid, &scope, line, &mut u)?,
                            gid: cx.opt(&m.gid, &scope, line, &mut u)?,
                            required: m.required,
                            size: cx.opt(&m.size, &scope, line, &mut u)?,
                            env: cx.opt(&m.env, &scope, line, &mut u)?,
                        });
                    }
                    Command::Run {
                        command: command.clone(),
                        mounts: ms,
                        network: cx.opt(network, &scope, line, &mut u)?,
                        security: cx.opt(security, &scope, line, &mut u)?,
                    }
                }
                other => other.clone(),
            };
            steps.push(Step {
                index: idx,
                lines: ins.lines,
                command,
                heredocs,
                undefined: u,
            });
        }
        final_env.push(scope.env);
        if let Some(n) = &st.name {
            stage_by_name.entry(n.clone()).or_insert(stages.len());
        }
        stages.push(ResolvedStage {
            index: st.index,
            name: st.name.clone(),
            base,
            platform,
            lines: st.lines,
            inherited_env,
            proxy_env: proxy_env.clone(),
            steps,
        });
    }
    let mut unused: Vec<String> = opts
        .build_args
        .iter()
        .map(|(k, _)| k.clone())
        .filter(|k| !consumed.contains(k) && !PROXY_ARGS.contains(&k.as_str()))
        .collect();
    unused.sort();
    unused.dedup();
    Ok(Resolved {
        global_args: meta,
        stages,
        unused_build_args: unused,
    })
}

fn expand_heredocs(
    cx: &Ctx,
    hs: &mut [Heredoc],
    scope: &Scope,
    line: u32,
    u: &mut Vec<String>,
) -> Result<(), Error> {
    for h in hs.iter_mut().filter(|h| h.expand) {
        h.content = expand_body(cx, &h.content, scope, line, u)?;
    }
    Ok(())
}

/// Expand `$VAR`/`${...}` in a heredoc body; everything else (quotes, backslashes)
/// stays as written, as in a shell heredoc.
fn expand_body(
    cx: &Ctx,
    body: &str,
    scope: &Scope,
    line: u32,
    u: &mut Vec<String>,
) -> Result<String, Error> {
    let mut out = String::with_capacity(body.len());
    let bytes: Vec<char> = body.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        // Escapes stay as written (BuildKit expands heredocs with raw quotes and raw
        // escapes), but an escaped `$` is not a variable.
        if c == cx.escape && bytes.get(i + 1) == Some(&'$') {
            out.push(c);
            out.push('$');
            i += 2;
            continue;
        }
        if c == '$' {
            // Find the extent of the reference and expand just that.
            let mut j = i + 1;
            if bytes.get(j) == Some(&'{') {
                let mut depth = 0;
                while j < bytes.len() {
                    match bytes[j] {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                j += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
            } else {
                while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == '_') {
                    j += 1;
                }
            }
            let r: String = bytes[i..j].iter().collect();
            out.push_str(&cx.expand(&r, scope, line, u)?);
            i = j;
            continue;
        }
        out.push(c);
        i += 1;
    }
    Ok(out)
}
