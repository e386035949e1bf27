//! Lint warnings in the spirit of BuildKit's build checks. Rule names follow BuildKit's
//! so that a `# check=skip=<Rule>,...` directive written for Docker works here too;
//! `# check=error=true` makes warnings fail `imgctl buildfile check`.

use serde::Serialize;

use super::ast::*;
use super::error::suggest;
use super::graph::Graph;
use super::resolve::{resolve, ResolveOptions, PLATFORM_ARGS};
use super::words::references;

/// A lint rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Rule {
    JSONArgsRecommended,
    StageNameCasing,
    FromAsCasing,
    ConsistentInstructionCasing,
    UndefinedVar,
    UndefinedArgInFrom,
    InvalidDefaultArgInFrom,
    DuplicateStageName,
    ReservedStageName,
    MaintainerDeprecated,
    LegacyKeyValueFormat,
    WorkdirRelativePath,
    MultipleInstructionsDisallowed,
    NoEmptyContinuation,
    SecretsUsedInArgOrEnv,
    RedundantTargetPlatform,
    ExposeProtoCasing,
}

impl Rule {
    pub const ALL: [Rule; 17] = [
        Rule::JSONArgsRecommended,
        Rule::StageNameCasing,
        Rule::FromAsCasing,
        Rule::ConsistentInstructionCasing,
        Rule::UndefinedVar,
        Rule::UndefinedArgInFrom,
        Rule::InvalidDefaultArgInFrom,
        Rule::DuplicateStageName,
        Rule::ReservedStageName,
        Rule::MaintainerDeprecated,
        Rule::LegacyKeyValueFormat,
        Rule::WorkdirRelativePath,
        Rule::MultipleInstructionsDisallowed,
        Rule::NoEmptyContinuation,
        Rule::SecretsUsedInArgOrEnv,
        Rule::RedundantTargetPlatform,
        Rule::ExposeProtoCasing,
    ];

    /// The rule's name as used in `# check=skip=`.
    pub fn name(self) -> &'static str {
        match self {
            Rule::JSONArgsRecommended => "JSONArgsRecommended",
            Rule::StageNameCasing => "StageNameCasing",
            Rule::FromAsCasing => "FromAsCasing",
            Rule::ConsistentInstructionCasing => "ConsistentInstructionCasing",
            Rule::UndefinedVar => "UndefinedVar",
            Rule::UndefinedArgInFrom => "UndefinedArgInFrom",
            Rule::InvalidDefaultArgInFrom => "InvalidDefaultArgInFrom",
            Rule::DuplicateStageName => "DuplicateStageName",
            Rule::ReservedStageName => "ReservedStageName",
            Rule::MaintainerDeprecated => "MaintainerDeprecated",
            Rule::LegacyKeyValueFormat => "LegacyKeyValueFormat",
            Rule::WorkdirRelativePath => "WorkdirRelativePath",
            Rule::MultipleInstructionsDisallowed => "MultipleInstructionsDisallowed",
            Rule::NoEmptyContinuation => "NoEmptyContinuation",
            Rule::SecretsUsedInArgOrEnv => "SecretsUsedInArgOrEnv",
            Rule::RedundantTargetPlatform => "RedundantTargetPlatform",
            Rule::ExposeProtoCasing => "ExposeProtoCasing",
        }
    }
}

/// One warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub rule: Rule,
    pub message: String,
    /// Lines of the instruction the warning is about.
    pub lines: LineRange,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// What the `# check=` directive asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckConfig {
    pub skip_all: bool,
    pub skip: Vec<String>,
    /// `error=true`: warnings fail the check.
    pub error: bool,
}

impl CheckConfig {
    /// Read `# check=skip=A,B;error=true`.
    pub fn from_buildfile(bf: &Buildfile) -> CheckConfig {
        let mut c = CheckConfig::default();
        for d in bf.directives.iter().filter(|d| d.name == "check") {
            for part in d.value.split(';') {
                let Some((k, v)) = part.split_once('=') else {
                    continue;
                };
                match k.trim().to_ascii_lowercase().as_str() {
                    "skip" => {
                        for r in v.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                            if r.eq_ignore_ascii_case("all") {
                                c.skip_all = true;
                            } else {
                                c.skip.push(r.to_string());
                            }
                        }
                    }
                    "error" => c.error = v.trim().eq_ignore_ascii_case("true"),
                    _ => {}
                }
            }
        }
        c
    }
}

/// Names commonly set by base images; not reported as undefined.
const COMMON_ENV: [&str; 8] = [
    "PATH", "HOME", "HOSTNAME", "USER", "TERM", "SHELL", "PWD", "LANG",
];

fn w(rule: Rule, lines: LineRange, message: String, hint: Option<&str>) -> Warning {
    Warning {
        rule,
        message,
        lines,
        hint: hint.map(str::to_string),
    }
}

/// Lint a parsed Buildfile. `text` is its source (for checks that look at raw lines).
/// Warnings are sorted by line; rules skipped by `# check=skip=` are left out.
pub fn lint(bf: &Buildfile, text: &str) -> Vec<Warning> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();

    // Keyword casing: majority wins.
    let (mut upper, mut lower) = (0, 0);
    for ins in &bf.instructions {
        if ins.keyword == ins.keyword.to_ascii_uppercase() {
            upper += 1;
        } else if ins.keyword == ins.keyword.to_ascii_lowercase() {
            lower += 1;
        }
    }
    let want_upper = upper >= lower;
    for ins in &bf.instructions {
        let ok = if want_upper {
            ins.keyword == ins.keyword.to_ascii_uppercase()
        } else {
            ins.keyword == ins.keyword.to_ascii_lowercase()
        };
        if !ok {
            out.push(w(
                Rule::ConsistentInstructionCasing,
                ins.lines,
                format!(
                    "command '{}' should match the case of the command majority ({})",
                    ins.keyword,
                    if want_upper { "uppercase" } else { "lowercase" }
                ),
                None,
            ));
        }
    }

    let global_names: Vec<String> = bf
        .global_args()
        .flat_map(|i| match &i.command {
            Command::Arg { args } => args.iter().map(|a| a.name.clone()).collect(),
            _ => Vec::new(),
        })
        .collect();

    let mut seen_names: std::collections::HashSet<String> = std::collections::HashSet::new();
    for st in &bf.stages {
        let Some(from) = bf.instructions.get(st.from) else {
            continue;
        };
        if let Command::From {
            image,
            platform,
            name,
            as_keyword,
        } = &from.command
        {
            if let (Some(n), Some(ak)) = (name, as_keyword) {
                if n != &n.to_ascii_lowercase() {
                    out.push(w(
                        Rule::StageNameCasing,
                        from.lines,
                        format!("stage name '{n}' should be lowercase"),
                        None,
                    ));
                }
                let kw_up = from.keyword == from.keyword.to_ascii_uppercase();
                let as_up = ak == &ak.to_ascii_uppercase();
                if kw_up != as_up {
                    out.push(w(
                        Rule::FromAsCasing,
                        from.lines,
                        format!(
                            "'{ak}' and '{}' keywords' casing do not match",
                            from.keyword
                        ),
                        None,
                    ));
                }
                let l = n.to_ascii_lowercase();
                if seen_names.contains(&l) {
                    out.push(w(
                        Rule::DuplicateStageName,
                        from.lines,
                        format!("duplicate stage name '{n}'"),
                        Some("stage names should be unique"),
                    ));
                }
                if l == "scratch" || l == "context" {
                    out.push(w(
                        Rule::ReservedStageName,
                        from.lines,
                        format!("'{n}' is reserved and should not be used as a stage name"),
                        None,
                    ));
                }
                seen_names.insert(l);
            }
            let mut refs = references(image, bf.escape);
            if let Some(p) = platform {
                refs.extend(references(p, bf.escape));
                if matches!(p.as_str(), "$TARGETPLATFORM" | "${TARGETPLATFORM}") {
                    out.push(w(
                        Rule::RedundantTargetPlatform,
                        from.lines,
                        format!("setting platform to predefined {p} in FROM is redundant as this is the default behavior"),
                        None,
                    ));
                }
            }
            for r in refs {
                if !global_names.contains(&r) && !PLATFORM_ARGS.contains(&r.as_str()) {
                    let known: Vec<&str> = global_names
                        .iter()
                        .map(String::as_str)
                        .chain(PLATFORM_ARGS)
                        .collect();
                    let hint = match suggest(&r, &known) {
                        Some(s) => format!("did you mean {s}?"),
                        None => "declare it with ARG before the first FROM".to_string(),
                    };
                    out.push(w(
                        Rule::UndefinedArgInFrom,
                        from.lines,
                        format!("FROM argument '{r}' is not declared"),
                        Some(&hint),
                    ));
                }
            }
        }

        let mut abs_workdir = false;
        let mut counts: [(&str, usize, Option<LineRange>); 3] = [
            ("CMD", 0, None),
            ("ENTRYPOINT", 0, None),
            ("HEALTHCHECK", 0, None),
        ];
        for ins in bf.stage_instructions(st).iter().skip(1) {
            for c in counts.iter_mut() {
                if ins.command.name() == c.0 {
                    c.1 += 1;
                    if c.1 > 1 {
                        if let Some(prev) = c.2 {
                            out.push(w(
                                Rule::MultipleInstructionsDisallowed,
                                prev,
                                format!("multiple {} instructions should not be used in the same stage because only the last one will be used", c.0),
                                None,
                            ));
                        }
                    }
                    c.2 = Some(ins.lines);
                }
            }
            match &ins.command {
                Command::Cmd { command } | Command::Entrypoint { command } if !command.is_exec() => {
                    out.push(w(
                        Rule::JSONArgsRecommended,
                        ins.lines,
                        format!("JSON arguments recommended for {} to prevent unintended behavior related to OS signals", ins.command.name()),
                        Some("use the exec form: [\"executable\", \"arg\"]"),
                    ));
                }
                Command::Maintainer { .. } => out.push(w(
                    Rule::MaintainerDeprecated,
                    ins.lines,
                    "the MAINTAINER instruction is deprecated, use a label instead to define an image author".into(),
                    Some("LABEL org.opencontainers.image.authors=\"...\""),
                )),
                Command::Env { legacy: true, pairs } | Command::Label { legacy: true, pairs } => {
                    let k = pairs.first().map(|p| p.key.as_str()).unwrap_or("");
                    out.push(w(
                        Rule::LegacyKeyValueFormat,
                        ins.lines,
                        format!("\"{} key=value\" should be used instead of legacy \"{} key value\" format", ins.command.name(), ins.command.name()),
                        Some(&format!("write {} {k}=...", ins.command.name())),
                    ));
                }
                Command::Workdir { path } => {
                    let unq = super::words::unquote(path, bf.escape);
                    if unq.starts_with('/') || unq.starts_with('$') {
                        abs_workdir = true;
                    } else if !abs_workdir {
                        out.push(w(
                            Rule::WorkdirRelativePath,
                            ins.lines,
                            format!("relative workdir \"{path}\" can have unexpected results if the base image changes"),
                            Some("use an absolute path"),
                        ));
                    }
                }
                Command::Expose { ports } => {
                    for p in ports {
                        if let Some((_, proto)) = p.split_once('/') {
                            if proto != proto.to_ascii_lowercase() {
                                out.push(w(Rule::ExposeProtoCasing, ins.lines, format!("defined protocol '{p}' in EXPOSE should be lowercase"), None));
                            }
                        }
                    }
                }
                _ => {}
            }
            let names: Vec<&str> = match &ins.command {
                Command::Arg { args } => args.iter().map(|a| a.name.as_str()).collect(),
                Command::Env { pairs, .. } => pairs.iter().map(|p| p.key.as_str()).collect(),
                _ => Vec::new(),
            };
            for n in names {
                if looks_secret(n) {
                    out.push(w(
                        Rule::SecretsUsedInArgOrEnv,
                        ins.lines,
                        format!(
                            "do not use ARG or ENV instructions for sensitive data ({} \"{n}\")",
                            ins.command.name()
                        ),
                        Some("use RUN --mount=type=secret instead"),
                    ));
                }
            }
        }
    }

    // Undefined variables, from an expansion with no build args.
    if let Ok(r) = resolve(bf, "", text, &ResolveOptions::default()) {
        for st in &r.stages {
            // Names declared so far in the stage (and inherited ENV), for suggestions.
            let mut declared: Vec<String> =
                st.inherited_env.iter().map(|(k, _)| k.clone()).collect();
            for step in &st.steps {
                for u in &step.undefined {
                    if !COMMON_ENV.contains(&u.as_str()) {
                        let known: Vec<&str> = declared.iter().map(String::as_str).collect();
                        let hint = match suggest(u, &known) {
                            Some(s) => format!("did you mean ${s}?"),
                            None => "declare it with ARG or ENV first (a global ARG must be redeclared inside the stage)"
                                .to_string(),
                        };
                        out.push(w(
                            Rule::UndefinedVar,
                            step.lines,
                            format!("usage of undefined variable '${u}'"),
                            Some(&hint),
                        ));
                    }
                }
                match &step.command {
                    Command::Env { pairs, .. } => {
                        declared.extend(pairs.iter().map(|p| p.key.clone()))
                    }
                    Command::Arg { args } => declared.extend(args.iter().map(|a| a.name.clone())),
                    _ => {}
                }
            }
            let from = bf
                .stages
                .get(st.index)
                .and_then(|s| bf.instructions.get(s.from));
            if let (true, Some(ins)) = (
                st.base.is_empty() || st.base.ends_with(':') || st.base.ends_with('@'),
                from,
            ) {
                out.push(w(
                    Rule::InvalidDefaultArgInFrom,
                    ins.lines,
                    format!(
                        "default value for the ARGs in FROM gives an invalid base image \"{}\"",
                        st.base
                    ),
                    Some("give the ARG a default value"),
                ));
            }
        }
        let _ = Graph::new(&r, "", text);
    }

    // Blank lines inside a continuation (instructions with heredocs are skipped: their
    // bodies may hold blank lines).
    for ins in bf.instructions.iter().filter(|i| i.heredocs.is_empty()) {
        let (s, e) = (ins.lines.start as usize, ins.lines.end as usize);
        if e <= s {
            continue;
        }
        for ln in s + 1..=e {
            if lines.get(ln - 1).is_some_and(|l| l.trim().is_empty()) {
                out.push(w(
                    Rule::NoEmptyContinuation,
                    LineRange {
                        start: ln as u32,
                        end: ln as u32,
                    },
                    "empty continuation line".into(),
                    Some("remove the blank line or end the line before it"),
                ));
                break;
            }
        }
    }

    let cfg = CheckConfig::from_buildfile(bf);
    out.retain(|x| {
        !cfg.skip_all
            && !cfg
                .skip
                .iter()
                .any(|s| s.eq_ignore_ascii_case(x.rule.name()))
    });
    out.sort_by_key(|x| (x.lines.start, x.rule.name()));
    out
}

/// BuildKit's secret-name heuristic: a `_`-separated part of the name is a known
/// secret word.
fn looks_secret(name: &str) -> bool {
    const WORDS: [&str; 10] = [
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    name.split('_')
        .any(|p| WORDS.contains(&p.to_ascii_lowercase().as_str()))
}
