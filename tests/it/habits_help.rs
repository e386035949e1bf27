//! Issue 15 item 10: help texts and colour.
//! * `run`'s usage line names IMAGE and COMMAND;
//! * every subcommand's help (nested ones and `imgctl runtime`'s included) ends
//!   with an "Examples:" block of at least two `imgctl ...` lines;
//! * the global options (`--root`, `--log-level`, `--snapshotter`) are listed once,
//!   under "Global options" in `imgctl --help`, and in no subcommand's options;
//! * no colour codes on a stderr that is not a terminal; on a terminal, colour
//!   unless NO_COLOR or CLICOLOR=0 (and CLICOLOR_FORCE forces it on a pipe).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::common::{self, have, imgctl, imgctl_bin, is_root, output, require};

const GLOBALS: [&str; 3] = ["--root", "--log-level", "--snapshotter"];

fn help(path: &[String]) -> String {
    let out = output(Command::new(imgctl_bin()).args(path).arg("--help"));
    assert!(
        out.status.success(),
        "imgctl {} --help failed",
        path.join(" ")
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 help")
}

/// The subcommand names of a help text's "Commands:" block (without `help`).
fn commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect()
}

/// The long options listed in a help text's option blocks (lines starting with
/// `-x, --name` or `--name`), by block heading.
fn options(help: &str) -> Vec<(String, String)> {
    let mut heading = String::new();
    let mut out = Vec::new();
    for l in help.lines() {
        if !l.starts_with(' ') && l.ends_with(':') {
            heading = l.trim_end_matches(':').to_string();
            continue;
        }
        let t = l.trim_start();
        let t = match t.as_bytes() {
            [b'-', c, b',', b' ', ..] if *c != b'-' => &t[4..],
            _ => t,
        };
        if l.starts_with("  ") && t.starts_with("--") {
            let name = t.split([' ', '[', '=', '<']).next().unwrap_or(t);
            out.push((heading.clone(), name.to_string()));
        }
    }
    out
}

fn check_examples(what: &str, help: &str, problems: &mut Vec<String>) {
    let Some((_, tail)) = help.split_once("\nExamples:\n") else {
        problems.push(format!("{what}: no \"Examples:\" section"));
        return;
    };
    let lines: Vec<&str> = tail.lines().filter(|l| !l.trim().is_empty()).collect();
    let runs = lines.iter().filter(|l| l.starts_with("  imgctl ")).count();
    if runs < 2 {
        problems.push(format!("{what}: {runs} example(s) starting with `imgctl `"));
    }
    // The help ends with the examples: nothing after them but indented lines.
    if let Some(l) = lines.iter().find(|l| !l.starts_with("  ")) {
        problems.push(format!("{what}: {l:?} after the examples"));
    }
}

#[test]
fn every_help_ends_with_examples_and_lists_global_options_once() {
    let top = help(&[]);
    // The global options: once, in their own block of the top-level help.
    let listed = options(&top);
    for g in GLOBALS {
        let at: Vec<_> = listed.iter().filter(|(_, n)| n == g).collect();
        assert_eq!(at.len(), 1, "{g} in imgctl --help: {at:?}\n{top}");
        assert_eq!(at[0].0, "Global options", "{g}\n{top}");
    }
    let mut problems = Vec::new();
    check_examples("imgctl", &top, &mut problems);
    let mut todo: Vec<Vec<String>> = commands(&top).into_iter().map(|c| vec![c]).collect();
    let mut seen = BTreeSet::new();
    while let Some(path) = todo.pop() {
        let what = format!("imgctl {}", path.join(" "));
        let text = help(&path);
        seen.insert(what.clone());
        check_examples(&what, &text, &mut problems);
        for (heading, name) in options(&text) {
            // `imgctl runtime` is runc's command line: its `--root` is its own
            // state directory, not the store.
            let own_root = path[0] == "runtime" && name == "--root";
            if GLOBALS.contains(&name.as_str()) && !own_root {
                problems.push(format!("{what}: global {name} listed under {heading:?}"));
            }
        }
        for c in commands(&text) {
            let mut p = path.clone();
            p.push(c);
            todo.push(p);
        }
    }
    // The walk reached the nested commands too.
    for nested in [
        "imgctl network create",
        "imgctl runtime kill",
        "imgctl image ls",
    ] {
        assert!(seen.contains(nested), "{nested} not reached: {seen:?}");
    }
    assert!(seen.len() >= 50, "only {} commands: {seen:?}", seen.len());
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn run_and_create_usage_names_image_and_command_and_globals_work_after_the_verb() {
    for verb in ["run", "create"] {
        let text = help(&[verb.to_string()]);
        assert!(
            text.contains(&format!(
                "Usage: imgctl {verb} [OPTIONS] IMAGE [COMMAND] [ARG...]"
            )),
            "{text}"
        );
    }
    // Hidden in the subcommand's help, a global option is still accepted there.
    let t = common::tempdir();
    let store = t.path().join("store");
    let out = output(
        Command::new(imgctl_bin())
            .args(["images", "--format", "json", "--root"])
            .arg(&store)
            .env_remove("IMGCTL_ROOT"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
}

const ESC: u8 = 0x1b;

/// A failing `run` that logs at debug level (the seccomp notes) and ends with
/// imgctl's one-line error, stderr to a pipe.
fn failing_run(store: &Path, layout: &Path) -> Command {
    let mut c = imgctl(store);
    c.args(["--log-level", "debug", "run", "--rm", "--network", "none"])
        .arg(format!("oci:{}:latest", layout.display()))
        .arg("/nonexistent")
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR")
        .env_remove("CLICOLOR_FORCE");
    c
}

#[test]
fn no_colour_codes_when_stderr_is_not_a_terminal() {
    let layout = Path::new("/var/cache/imgctl-testdata/busybox-oci");
    if !(require(is_root(), "root (namespaces)")
        && require(layout.join("index.json").is_file(), "busybox-oci fixture"))
    {
        return;
    }
    let t = common::tempdir();
    let store = t.path().join("store");
    let out = output(&mut failing_run(&store, layout));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "{err}");
    assert!(err.contains("DEBUG"), "no log line to check: {err}");
    assert!(err.contains("imgctl: "), "{err}");
    assert!(
        !out.stderr.contains(&ESC),
        "colour codes on a pipe: {err:?}"
    );
    // clap's own errors too.
    let out = output(imgctl(&store).args(["run", "--bogus", "x"]));
    assert_eq!(out.status.code(), Some(125));
    assert!(!out.stderr.contains(&ESC), "{:?}", out.stderr);
    // The check above can fail: CLICOLOR_FORCE puts colour on the same pipe.
    let out = output(failing_run(&store, layout).env("CLICOLOR_FORCE", "1"));
    assert!(out.stderr.contains(&ESC), "CLICOLOR_FORCE=1 gave no colour");
}

/// On a terminal (util-linux `script` gives the command a pty) logs and clap's
/// errors are coloured, unless NO_COLOR is set or CLICOLOR=0.
#[test]
fn colour_on_a_terminal_unless_no_color_or_clicolor_0() {
    let layout = Path::new("/var/cache/imgctl-testdata/busybox-oci");
    if !(require(is_root(), "root (namespaces)")
        && require(have("script"), "script (util-linux)")
        && require(layout.join("index.json").is_file(), "busybox-oci fixture"))
    {
        return;
    }
    let t = common::tempdir();
    let store = t.path().join("store");
    let on_tty = |args: &[&str], env: &[(&str, &str)]| -> Vec<u8> {
        let mut line = imgctl_bin().display().to_string();
        for a in args {
            line.push(' ');
            line.push_str(a);
        }
        let mut c = Command::new("script");
        c.args(["-qec", &line, "/dev/null"])
            .env("IMGCTL_ROOT", &store)
            .env("TERM", "xterm")
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR")
            .env_remove("CLICOLOR_FORCE");
        for (k, v) in env {
            c.env(k, v);
        }
        output(&mut c).stdout
    };
    let image = format!("oci:{}:latest", layout.display());
    let run = [
        "--log-level",
        "debug",
        "run",
        "--rm",
        "--network",
        "none",
        &image,
        "/nonexistent",
    ];
    let bogus = ["run", "--bogus", "x"];
    for args in [&run[..], &bogus[..]] {
        let plain = on_tty(args, &[]);
        assert!(plain.contains(&ESC), "{args:?}: no colour on a terminal");
        for env in [("NO_COLOR", "1"), ("CLICOLOR", "0")] {
            let out = on_tty(args, &[env]);
            assert!(
                !out.is_empty() && !out.contains(&ESC),
                "{args:?} {env:?}: {:?}",
                String::from_utf8_lossy(&out)
            );
        }
    }
}
