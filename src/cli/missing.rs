//! Docker commands imgctl does not have: one line saying what to type instead
//! (or that it is not supported), exit 125, instead of clap's usage block. A
//! Docker user's muscle memory lands here first (docs/docker-habits.md).

/// What to type instead of Docker's `name`, when imgctl has no such command.
pub fn instead(name: &str) -> Option<&'static str> {
    Some(match name {
        "cp" => {
            "copy out with `imgctl exec C tar -cf - PATH | tar -xf -`, \
             in with `tar -cf - FILE | imgctl exec -i C tar -xf - -C DIR`"
        }
        "volume" | "volumes" => {
            "imgctl has no named volumes: bind a host directory with \
             `imgctl run -v /host/dir:/path …` (created if missing)"
        }
        "port" => {
            "`imgctl ps --filter name=C --format '{{.Ports}}'` shows a container's published ports"
        }
        "top" => "`imgctl exec C ps` lists a container's processes; `imgctl stats C` its usage",
        "rename" => "not supported: a container's name is set once, by `imgctl run --name NAME`",
        "commit" => "not supported: write a Buildfile and `imgctl build -t NAME .`",
        "pause" => "`imgctl kill -s STOP C` stops its processes (`-s CONT` resumes them)",
        "unpause" => "`imgctl kill -s CONT C` resumes processes stopped with `-s STOP`",
        "update" => "not supported: resource limits are set at `imgctl run` (--memory, --cpus, …)",
        "events" => "not supported: imgctl has no daemon to report events",
        "info" | "version" => "`imgctl --version`; `imgctl df` shows the store",
        "search" => "not supported: registries are read by `imgctl pull NAME[:TAG]`",
        "container" | "image" | "system" | "network" => return None,
        "compose" | "swarm" | "service" | "stack" | "node" | "secret" | "config" | "plugin"
        | "context" | "trust" | "manifest" | "buildx" | "builder" | "checkpoint" => {
            "not supported by imgctl (no daemon, no orchestration)"
        }
        _ => return None,
    })
}

/// The one line for an unknown command `name` (`suggested`: a close imgctl
/// command, as clap found it).
pub fn line(name: &str, suggested: Option<&str>) -> String {
    match (instead(name), suggested) {
        (Some(i), _) => format!("`{name}` is not an imgctl command: {i}"),
        (None, Some(s)) => format!(
            "unknown command `{name}`: did you mean `{s}`? (`imgctl --help` lists the commands)"
        ),
        (None, None) => {
            format!("unknown command `{name}` (`imgctl --help` lists the commands)")
        }
    }
}

/// For a clap error about an unknown subcommand: the one line to print instead.
pub fn for_error(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue};
    if e.kind() != clap::error::ErrorKind::InvalidSubcommand {
        return None;
    }
    let name = match e.get(ContextKind::InvalidSubcommand)? {
        ContextValue::String(s) => s.clone(),
        _ => return None,
    };
    let suggested = match e.get(ContextKind::SuggestedSubcommand) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        // clap lists them from the least to the most similar.
        Some(ContextValue::Strings(v)) => v.last().cloned(),
        _ => None,
    };
    Some(line(&name, suggested.as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[test]
    fn docker_commands_imgctl_lacks_get_one_line_naming_what_to_type() {
        for (argv, want) in [
            (
                &["imgctl", "cp", "c:/etc/hosts", "."][..],
                "imgctl exec C tar",
            ),
            (&["imgctl", "--root", "/x", "top", "c"], "imgctl exec C ps"),
            (&["imgctl", "port", "c"], "--format '{{.Ports}}'"),
            (&["imgctl", "volume", "ls"], "-v /host/dir"),
            (&["imgctl", "rename", "a", "b"], "not supported"),
        ] {
            let e = crate::cli::Cli::try_parse_from(argv).expect_err("no such command");
            let l = for_error(&e).expect("a line");
            assert!(l.contains(want), "{argv:?}: {l}");
            assert!(!l.contains('\n'), "one line: {l}");
        }
    }

    #[test]
    fn an_unknown_command_suggests_a_close_one_and_other_errors_are_left_to_clap() {
        let e = crate::cli::Cli::try_parse_from(["imgctl", "stpo", "c"]).expect_err("unknown");
        let l = for_error(&e).expect("a line");
        assert!(l.contains("did you mean `stop`"), "{l}");
        let e = crate::cli::Cli::try_parse_from(["imgctl", "frobnicate"]).expect_err("unknown");
        assert_eq!(
            for_error(&e).unwrap(),
            "unknown command `frobnicate` (`imgctl --help` lists the commands)"
        );
        let e = crate::cli::Cli::try_parse_from(["imgctl", "ps", "--bogus"]).expect_err("flag");
        assert!(for_error(&e).is_none());
        // Real commands are never shadowed by the table.
        assert!(crate::cli::Cli::try_parse_from(["imgctl", "network", "ls"]).is_ok());
    }
}
