//! What `--help` shows, Docker's way: the global options (`--root`,
//! `--log-level`, `--snapshotter`) are listed once, under "Global options" in
//! `imgctl --help`, and not again in every subcommand's option list; every
//! subcommand's help ends with an "Examples:" block (the texts live next to
//! each command's arguments, in `after_help`).
//!
//! clap copies a `global = true` argument into every subcommand when the
//! command is built, with the same settings, so it would be shown everywhere.
//! It skips a subcommand that already has an argument of that id: [`command`]
//! gives each subcommand a hidden copy first. The copy is still global, so
//! `imgctl images --root DIR` and `imgctl network ls --root DIR` keep working
//! and the value reaches [`super::Cli`] as before.

use clap::{Arg, Command};

/// The heading of the global options in `imgctl --help`.
pub const GLOBAL_HEADING: &str = "Global options";

/// The command line as parsed by [`super::main`]: [`super::Cli`] with the global
/// options hidden in subcommands.
pub fn command() -> Command {
    let top = <super::Cli as clap::CommandFactory>::command();
    let globals: Vec<Arg> = top
        .get_arguments()
        .filter(|a| a.is_global_set())
        .cloned()
        .collect();
    top.mut_subcommands(|sc| hide_globals(sc, &globals))
}

fn hide_globals(sc: Command, globals: &[Arg]) -> Command {
    let missing: Vec<Arg> = globals
        .iter()
        .filter(|g| sc.get_arguments().all(|a| a.get_id() != g.get_id()))
        .map(|g| g.clone().hide(true))
        .collect();
    let sc = missing.into_iter().fold(sc, Command::arg);
    sc.mut_subcommands(|s| hide_globals(s, globals))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{FromArgMatches as _, Parser as _};

    /// Every subcommand, as the words a user types after `imgctl`.
    fn paths(c: &Command, prefix: Vec<String>, out: &mut Vec<(Vec<String>, Command)>) {
        for s in c.get_subcommands() {
            let mut p = prefix.clone();
            p.push(s.get_name().to_string());
            out.push((p.clone(), s.clone()));
            paths(s, p, out);
        }
    }

    /// Shell words of one example line, up to the first `|`, `>`, `<` or `;`
    /// (what comes after is another program). Single and double quotes group.
    fn words(line: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut has = false;
        let mut quote = None;
        for ch in line.chars() {
            match (quote, ch) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), c) => cur.push(c),
                (None, '\'' | '"') => {
                    quote = Some(ch);
                    has = true;
                }
                (None, '|' | '>' | '<' | ';' | '&' | ')') => break,
                (None, c) if c.is_whitespace() => {
                    if has {
                        out.push(std::mem::take(&mut cur));
                        has = false;
                    }
                }
                (None, c) => {
                    cur.push(c);
                    has = true;
                }
            }
        }
        if has {
            out.push(cur);
        }
        out
    }

    /// The example lines of a help text (after its "Examples:" line).
    fn examples(help: &str) -> Vec<String> {
        let Some((_, ex)) = help.split_once("Examples:\n") else {
            return Vec::new();
        };
        ex.lines()
            .filter_map(|l| l.find("imgctl ").map(|at| l[at..].trim().to_string()))
            .collect()
    }

    /// Every example of every help parses with imgctl's own parser (the one of
    /// `imgctl runtime` for its examples): the flags it shows exist and take the
    /// values it gives them.
    #[test]
    fn every_example_parses() {
        let mut all = vec![(Vec::new(), command())];
        paths(&command(), Vec::new(), &mut all);
        let rt = <super::super::runtime::RuntimeCli as clap::CommandFactory>::command();
        all.push((vec!["runtime".to_string()], rt.clone()));
        paths(&rt, vec!["runtime".to_string()], &mut all);
        let mut checked = 0;
        for (path, mut sc) in all {
            if path.last().is_some_and(|p| p == "help") {
                continue;
            }
            for line in examples(&sc.render_help().to_string()) {
                let argv = words(&line);
                let parsed = if argv.get(1).is_some_and(|w| w == "runtime") {
                    super::super::runtime::RuntimeCli::try_parse_from(&argv[1..])
                        .map(drop)
                        .map_err(|e| e.to_string())
                } else {
                    command()
                        .try_get_matches_from(&argv)
                        .and_then(|m| super::super::Cli::from_arg_matches(&m))
                        .map(drop)
                        .map_err(|e| e.to_string())
                };
                let shown = path.join(" ");
                assert!(parsed.is_ok(), "{shown}: example `{line}`: {parsed:?}");
                checked += 1;
            }
        }
        assert!(checked > 100, "only {checked} examples found");
    }

    #[test]
    fn global_options_are_accepted_after_the_verb_and_shown_once() {
        let m = command()
            .try_get_matches_from([
                "imgctl",
                "network",
                "ls",
                "--root",
                "/tmp/x",
                "--log-level",
                "debug",
            ])
            .expect("parses");
        let cli = super::super::Cli::from_arg_matches(&m).expect("cli");
        assert_eq!(cli.root, std::path::Path::new("/tmp/x"));
        assert_eq!(cli.log_level, "debug");
        let top = command().render_help().to_string();
        assert!(top.contains(&format!("{GLOBAL_HEADING}:")), "{top}");
        assert!(top.contains("--root"), "{top}");
        let run = command()
            .find_subcommand_mut("run")
            .expect("run")
            .render_help()
            .to_string();
        assert!(!run.contains("--root <"), "{run}");
        assert!(!run.contains("--log-level"), "{run}");
    }

    #[test]
    fn example_words() {
        assert_eq!(
            words(r#"imgctl import - app --change 'CMD ["/bin/sh"]' | x"#),
            [
                "imgctl",
                "import",
                "-",
                "app",
                "--change",
                r#"CMD ["/bin/sh"]"#
            ]
        );
        assert_eq!(
            words("imgctl save busybox > b.tar"),
            ["imgctl", "save", "busybox"]
        );
        assert_eq!(
            words("imgctl run -e A= x"),
            ["imgctl", "run", "-e", "A=", "x"]
        );
        assert_eq!(words("imgctl x ''"), ["imgctl", "x", ""]);
    }
}
