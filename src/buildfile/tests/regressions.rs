//! Regression tests for the parser defects of issue 9 item 9, each checked against
//! BuildKit's parser (frontend/dockerfile/parser/line_parsers.go, instructions/bflag.go,
//! shell/lex.go).

use super::*;

/// A valid JSON array holding a non-string used to be taken silently as shell
/// form; BuildKit refuses it. Text that is not valid JSON stays shell form.
#[test]
fn json_array_with_a_non_string_is_an_error() {
    for text in [
        "FROM a\nCMD [ \"echo\", [ \"nested json\" ] ]\n",
        "FROM a\nENTRYPOINT [\"sh\", 1]\n",
        "FROM a\nRUN [\"echo\", true]\n",
        "FROM a\nCOPY [\"a\", 2, \"/dst/\"]\n",
        "FROM a\nADD [\"a\", null, \"/dst/\"]\n",
        "FROM a\nVOLUME [\"/v\", {\"x\": 1}]\n",
        "FROM a\nSHELL [\"/bin/sh\", 3]\n",
        "FROM a\nHEALTHCHECK CMD [\"curl\", 8080]\n",
        "FROM a\nONBUILD RUN [\"echo\", 1.5]\n",
    ] {
        let m = msg(text);
        assert!(
            m.contains("when using JSON array syntax, arrays must be comprised of strings only"),
            "{text:?}: {m}"
        );
        assert!(m.starts_with("Buildfile:2:"), "{m}");
    }
    // Not valid JSON: shell form, as before (BuildKit falls back too).
    let bf = p("FROM a\nCMD [ \"echo\", 'single' ]\nCMD [\"a\"] trailing\n");
    assert_eq!(
        c(&bf, 1),
        &Command::Cmd {
            command: shell("[ \"echo\", 'single' ]")
        }
    );
    assert_eq!(
        c(&bf, 2),
        &Command::Cmd {
            command: shell("[\"a\"] trailing")
        }
    );
    assert_eq!(
        c(&p("FROM a\nCMD []\n"), 1),
        &Command::Cmd { command: exec(&[]) }
    );
}

/// Flag names are case-sensitive in BuildKit (`Unknown flag: Link`).
#[test]
fn flag_names_are_case_sensitive() {
    for (text, flag) in [
        ("FROM a\nCOPY --Link a /b\n", "Link"),
        ("FROM a\nCOPY --FROM=x a /b\n", "FROM"),
        ("FROM --PLATFORM=linux/amd64 a\n", "PLATFORM"),
        ("FROM a\nRUN --Mount=type=tmpfs,target=/t true\n", "Mount"),
    ] {
        let m = msg(text);
        assert!(
            m.contains(&format!("unknown flag --{flag} ")),
            "{text:?}: {m}"
        );
    }
}

/// Boolean flags take true/false (any case) only, as BuildKit's bflag does;
/// `--link=1` used to be accepted and `--link=` too.
#[test]
fn boolean_flags_accept_true_and_false_only() {
    for v in ["1", "0", "yes", "on"] {
        let m = msg(&format!("FROM a\nCOPY --link={v} a /b\n"));
        assert!(
            m.contains(&format!(
                "expecting boolean value for flag --link, not: {v}"
            )),
            "{v}: {m}"
        );
    }
    assert!(msg("FROM a\nCOPY --link= a /b\n").contains("missing a value on flag --link"));
    for (v, want) in [("TRUE", true), ("False", false), ("true", true)] {
        let Command::Copy { link, .. } =
            c(&p(&format!("FROM a\nCOPY --link={v} a /b\n")), 1).clone()
        else {
            panic!()
        };
        assert_eq!(link, want, "{v}");
    }
}

/// `ADD --unpack` (BuildKit 1.17 syntax): parsed, tri-state (unset / true / false).
#[test]
fn add_unpack_flag() {
    let unpack_of = |text: &str| match c(&p(text), 1).clone() {
        Command::Add { unpack, .. } => unpack,
        other => panic!("{other:?}"),
    };
    assert_eq!(unpack_of("FROM a\nADD x.tar /d/\n"), None);
    assert_eq!(unpack_of("FROM a\nADD --unpack x.tar /d/\n"), Some(true));
    assert_eq!(
        unpack_of("FROM a\nADD --unpack=true x.tar /d/\n"),
        Some(true)
    );
    assert_eq!(
        unpack_of("FROM a\nADD --unpack=false https://h/x.tar.gz /d/\n"),
        Some(false)
    );
    assert!(msg("FROM a\nCOPY --unpack x /d/\n").contains("unknown flag --unpack for COPY"));
    // Round trip through the printer keeps it.
    round_trip("FROM a\nADD --unpack=false x.tar /d/\nADD --unpack y.tar /d/\n").unwrap();
}

/// `$10`, `${10:-x}`, `${@:-app}`, `$#`, `$?`, `$$`: BuildKit reads several
/// digits as one positional name and the POSIX special parameters as names that
/// are never set, so they expand to empty (or to the default).
#[test]
fn multi_digit_and_special_parameters_expand_like_buildkit() {
    let r = resolved(
        concat!(
            "FROM a\n",
            "ARG A=x\n",
            "ENV P1=\"$10\" P2=\"${10:-ten}\" P3=\"${@:-app}\" P4=\"[$#][$?][$$][$*][$!][$-][$0]\"\n",
            "ENV P5=\"${1}${#:-h}${$:+alt}$A\"\n",
        ),
        &[],
    );
    let st = &r.stages[0];
    assert_eq!(env_of(st, 3, "P1").as_deref(), Some(""));
    assert_eq!(env_of(st, 3, "P2").as_deref(), Some("ten"));
    assert_eq!(env_of(st, 3, "P3").as_deref(), Some("app"));
    assert_eq!(env_of(st, 3, "P4").as_deref(), Some("[][][][][][][]"));
    assert_eq!(env_of(st, 3, "P5").as_deref(), Some("hx"));
}

/// `${VAR/pat/rep}` and `${VAR//pat/rep}` (BuildKit's lexer: `*` greedy, `?` one
/// character, first match or all matches), next to `#`, `##`, `%`, `%%`.
#[test]
fn pattern_replacement_and_trims() {
    let r = resolved(
        concat!(
            "FROM a\n",
            "ARG V=a-b-c.tar.gz\n",
            "ENV R1=${V/-/_} R2=${V//-/_} R3=${V/*./X} R4=${V//?/.} R5=${V/nomatch/z}\n",
            "ENV T1=${V#*-} T2=${V##*-} T3=${V%.*} T4=${V%%.*} R7=${UNSET//a/b} R8=${V/#a/z}\n",
        ),
        &[],
    );
    let st = &r.stages[0];
    let get = |k: &str, at: usize| env_of(st, at, k).unwrap_or_else(|| panic!("{k} unset"));
    assert_eq!(get("R1", 2), "a_b-c.tar.gz");
    assert_eq!(get("R2", 2), "a_b_c.tar.gz");
    assert_eq!(get("R3", 2), "Xgz");
    assert_eq!(get("R4", 2), "............");
    assert_eq!(get("R5", 2), "a-b-c.tar.gz");
    assert_eq!(get("T1", 3), "b-c.tar.gz");
    assert_eq!(get("T2", 3), "c.tar.gz");
    assert_eq!(get("T3", 3), "a-b-c.tar");
    assert_eq!(get("T4", 3), "a-b-c");
    assert_eq!(get("R7", 3), "");
    // `#` is not an anchor in BuildKit's pattern: it is a literal character.
    assert_eq!(get("R8", 3), "a-b-c.tar.gz");
}
