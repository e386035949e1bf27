//! The syntax tree: what a Buildfile says, before any variable is expanded.
//!
//! Strings are kept as written (quotes included where the Dockerfile grammar keeps them
//! until expansion, e.g. `ENV a="b c"` keeps `"b c"`), so that tools see the source and the
//! printer can reproduce it. Expansion (quote removal, `$VAR`) is done by `resolve.rs`.

use serde::Serialize;

/// A parsed Buildfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Buildfile {
    /// The escape character in effect (`\` unless `# escape=` says otherwise).
    pub escape: char,
    /// Parser directives found at the top of the file, in order.
    pub directives: Vec<Directive>,
    /// Every instruction in source order, including the global `ARG`s before the first `FROM`.
    pub instructions: Vec<Instruction>,
    /// Stages in order; each names the slice of `instructions` it owns.
    pub stages: Vec<Stage>,
}

/// A parser directive (`# syntax=`, `# escape=`, `# check=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directive {
    /// Lower-cased directive name.
    pub name: String,
    /// Value with surrounding whitespace removed.
    pub value: String,
    /// 1-based line.
    pub line: u32,
}

/// Inclusive 1-based line range of an instruction, heredoc bodies included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LineRange {
    pub start: u32,
    pub end: u32,
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instruction {
    /// The keyword exactly as written (`run`, `Run`, `RUN`). Borrowed from a static
    /// table when written in upper case, which saves an allocation per instruction.
    pub keyword: std::borrow::Cow<'static, str>,
    /// Source lines the instruction spans.
    pub lines: LineRange,
    /// Flags (`--name[=value]`) as written, value unquoted.
    pub flags: Vec<Flag>,
    /// Heredocs attached to this instruction, in the order their bodies appear.
    pub heredocs: Vec<Heredoc>,
    /// The typed instruction.
    pub command: Command,
}

/// A `--name[=value]` flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flag {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A heredoc (`<<EOF`, `<<-EOF`, `<<"EOF"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// Delimiter word without quotes.
    pub name: String,
    /// Body, each line ending in `\n`; leading tabs already removed when `strip_tabs`.
    pub content: String,
    /// False when the delimiter was quoted: the body is taken literally.
    pub expand: bool,
    /// True for `<<-`.
    pub strip_tabs: bool,
    /// File descriptor prefix (`3<<EOF`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd: Option<u32>,
}

/// A command line: shell form (a string for `/bin/sh -c`) or exec (JSON) form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "form", rename_all = "lowercase")]
pub enum CmdLine {
    Shell { text: String },
    Exec { args: Vec<String> },
}

impl CmdLine {
    /// True when the JSON (exec) form was used.
    pub fn is_exec(&self) -> bool {
        matches!(self, CmdLine::Exec { .. })
    }
}

/// `key=value` (LABEL, ENV), both as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pair {
    pub key: String,
    pub value: String,
}

/// One `ARG name[=default]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDecl {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// `RUN --mount` type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    pub const ALL: [&'static str; 5] = ["bind", "cache", "tmpfs", "secret", "ssh"];

    pub fn parse(s: &str) -> Option<MountType> {
        Some(match s.to_ascii_lowercase().as_str() {
            "bind" => MountType::Bind,
            "cache" => MountType::Cache,
            "tmpfs" => MountType::Tmpfs,
            "secret" => MountType::Secret,
            "ssh" => MountType::Ssh,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

/// A parsed `RUN --mount=...` value. Option values are as written (they may hold variables).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Mount {
    #[serde(rename = "type")]
    pub kind: Option<MountType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readonly: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sharing: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

impl Mount {
    /// The mount type, `bind` when none was given (Docker's default).
    pub fn mount_type(&self) -> MountType {
        self.kind.unwrap_or(MountType::Bind)
    }
}

/// HEALTHCHECK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "test", rename_all = "lowercase")]
pub enum Health {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    /// `HEALTHCHECK [flags] CMD ...`. Durations as written (`30s`, `1m30s`).
    Cmd {
        command: CmdLine,
        #[serde(skip_serializing_if = "Option::is_none")]
        interval: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        timeout: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        start_period: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        start_interval: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        retries: Option<u32>,
    },
}

/// The typed instruction. Values hold variables unexpanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Command {
    From {
        image: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        platform: Option<String>,
        /// Stage name as written after `AS`.
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The `AS` keyword as written (for casing checks).
        #[serde(skip_serializing_if = "Option::is_none")]
        as_keyword: Option<String>,
    },
    Run {
        command: CmdLine,
        mounts: Vec<Mount>,
        #[serde(skip_serializing_if = "Option::is_none")]
        network: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        security: Option<String>,
    },
    Cmd {
        command: CmdLine,
    },
    Entrypoint {
        command: CmdLine,
    },
    Shell {
        args: Vec<String>,
    },
    Label {
        pairs: Vec<Pair>,
        /// The old `LABEL key value` form.
        legacy: bool,
    },
    Expose {
        ports: Vec<String>,
    },
    Env {
        pairs: Vec<Pair>,
        /// The old `ENV key value` form.
        legacy: bool,
    },
    Add {
        sources: Vec<String>,
        dest: String,
        json: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        chown: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        chmod: Option<String>,
        link: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        checksum: Option<String>,
        keep_git_dir: bool,
        exclude: Vec<String>,
        /// `--unpack[=BOOL]`: None when not given (local archives are unpacked,
        /// URLs are not); `Some(true)` also unpacks a downloaded archive,
        /// `Some(false)` copies a local archive as it is (BuildKit 1.17 syntax).
        #[serde(skip_serializing_if = "Option::is_none")]
        unpack: Option<bool>,
    },
    Copy {
        sources: Vec<String>,
        dest: String,
        json: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        chown: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        chmod: Option<String>,
        link: bool,
        parents: bool,
        exclude: Vec<String>,
    },
    Volume {
        paths: Vec<String>,
        json: bool,
    },
    User {
        user: String,
    },
    Workdir {
        path: String,
    },
    Arg {
        args: Vec<ArgDecl>,
    },
    Onbuild {
        trigger: Box<Instruction>,
    },
    Stopsignal {
        signal: String,
    },
    Healthcheck {
        check: Health,
    },
    Maintainer {
        name: String,
    },
}

impl Command {
    /// Upper-case instruction name.
    pub fn name(&self) -> &'static str {
        match self {
            Command::From { .. } => "FROM",
            Command::Run { .. } => "RUN",
            Command::Cmd { .. } => "CMD",
            Command::Entrypoint { .. } => "ENTRYPOINT",
            Command::Shell { .. } => "SHELL",
            Command::Label { .. } => "LABEL",
            Command::Expose { .. } => "EXPOSE",
            Command::Env { .. } => "ENV",
            Command::Add { .. } => "ADD",
            Command::Copy { .. } => "COPY",
            Command::Volume { .. } => "VOLUME",
            Command::User { .. } => "USER",
            Command::Workdir { .. } => "WORKDIR",
            Command::Arg { .. } => "ARG",
            Command::Onbuild { .. } => "ONBUILD",
            Command::Stopsignal { .. } => "STOPSIGNAL",
            Command::Healthcheck { .. } => "HEALTHCHECK",
            Command::Maintainer { .. } => "MAINTAINER",
        }
    }
}

/// A build stage: a `FROM` and the instructions up to the next `FROM`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// 0-based stage index (what `COPY --from=0` refers to).
    pub index: usize,
    /// Stage name from `AS name`, lower-cased (names are case-insensitive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Base as written: an image reference, a stage name or `scratch`.
    pub base: String,
    /// Index of the stage's `FROM` in [`Buildfile::instructions`].
    pub from: usize,
    /// One past the stage's last instruction in [`Buildfile::instructions`].
    pub end: usize,
    /// Lines from the `FROM` to the stage's last instruction.
    pub lines: LineRange,
}

impl Buildfile {
    /// Global `ARG` instructions (before the first `FROM`).
    pub fn global_args(&self) -> impl Iterator<Item = &Instruction> {
        let end = self
            .stages
            .first()
            .map(|s| s.from)
            .unwrap_or(self.instructions.len());
        self.instructions.get(..end).unwrap_or(&[]).iter()
    }

    /// Instructions of one stage, its `FROM` first.
    pub fn stage_instructions(&self, stage: &Stage) -> &[Instruction] {
        self.instructions.get(stage.from..stage.end).unwrap_or(&[])
    }

    /// The stage with this name (case-insensitive) or decimal index.
    pub fn find_stage(&self, name_or_index: &str) -> Option<&Stage> {
        let lower = name_or_index.to_ascii_lowercase();
        if let Some(s) = self
            .stages
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
        {
            return Some(s);
        }
        name_or_index
            .parse::<usize>()
            .ok()
            .and_then(|i| self.stages.get(i))
    }
}
