//! Unit tests, written from Docker's documented Dockerfile behaviour.

use super::*;

fn p(text: &str) -> Buildfile {
    match parse("Buildfile", text) {
        Ok(b) => b,
        Err(e) => panic!("parse failed: {}", e.render()),
    }
}

fn perr(text: &str) -> Error {
    match parse("Buildfile", text) {
        Ok(b) => panic!("expected an error, got {b:#?}"),
        Err(e) => e,
    }
}

fn msg(text: &str) -> String {
    perr(text).to_string()
}

fn c(bf: &Buildfile, i: usize) -> &Command {
    &bf.instructions[i].command
}

fn shell(s: &str) -> CmdLine {
    CmdLine::Shell {
        text: s.to_string(),
    }
}

fn exec(v: &[&str]) -> CmdLine {
    CmdLine::Exec {
        args: v.iter().map(|s| s.to_string()).collect(),
    }
}

fn resolved(text: &str, args: &[(&str, &str)]) -> Resolved {
    let bf = p(text);
    let opts = ResolveOptions {
        build_args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        target_platform: Platform::parse("linux/arm64/v8").unwrap(),
        build_platform: Platform::parse("linux/amd64").unwrap(),
    };
    match resolve(&bf, "Buildfile", text, &opts) {
        Ok(r) => r,
        Err(e) => panic!("resolve failed: {}", e.render()),
    }
}

fn env_of(st: &ResolvedStage, pos: usize, k: &str) -> Option<String> {
    st.env_at(pos)
        .iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.clone())
}

// ---------------------------------------------------------------- directives

#[test]
fn directives_at_top() {
    let bf =
        p("# syntax=docker/dockerfile:1\n#ESCAPE = `\n# check=skip=JSONArgsRecommended\nFROM a\n");
    let names: Vec<&str> = bf.directives.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["syntax", "escape", "check"]);
    assert_eq!(bf.directives[0].value, "docker/dockerfile:1");
    assert_eq!(bf.escape, '`');
}

#[test]
fn escape_directive_after_comment_is_not_a_directive() {
    let bf = p("# a comment\n# escape=`\nFROM a\nRUN echo \\\n  hi\n");
    assert_eq!(bf.escape, '\\');
    assert!(bf.directives.is_empty());
    assert_eq!(
        c(&bf, 1),
        &Command::Run {
            command: shell("echo   hi"),
            mounts: vec![],
            network: None,
            security: None
        }
    );
}

#[test]
fn directive_after_blank_line_or_instruction_is_a_comment() {
    assert_eq!(p("\n# escape=`\nFROM a\n").escape, '\\');
    assert_eq!(p("FROM a\n# escape=`\nRUN x\n").escape, '\\');
    // An unknown directive is a comment and ends the directive block.
    let bf = p("# unknowndirective=value\n# escape=`\nFROM a\n");
    assert_eq!(bf.escape, '\\');
    assert!(bf.directives.is_empty());
}

#[test]
fn directive_errors() {
    assert!(msg("# escape=\\\n# escape=`\nFROM a\n").contains("only one escape parser directive"));
    assert_eq!(
        msg("# escape=x\nFROM a\n"),
        "Buildfile:1:10: invalid escape token 'x' does not match ` or \\"
    );
}

#[test]
fn backtick_escape_everywhere() {
    let bf = p("# escape=`\nFROM a\nRUN dir c:\\ `\n  && echo `$x\nCOPY a` b c\\d /dst\n");
    assert_eq!(
        c(&bf, 1),
        &Command::Run {
            command: shell("dir c:\\   && echo `$x"),
            mounts: vec![],
            network: None,
            security: None
        }
    );
    match c(&bf, 2) {
        Command::Copy { sources, .. } => {
            assert_eq!(sources, &vec!["a` b".to_string(), "c\\d".to_string()])
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(unquote("a` b", '`'), "a b");
}

// ---------------------------------------------------------------- lines

#[test]
fn continuations_comments_and_blank_lines() {
    let text = "FROM a\nRUN apt-get update && \\\n# a comment inside\n    apt-get install -y \\\n\n    curl\nCMD x\n";
    let bf = p(text);
    assert_eq!(
        c(&bf, 1),
        &Command::Run {
            command: shell("apt-get update &&     apt-get install -y     curl"),
            mounts: vec![],
            network: None,
            security: None
        }
    );
    assert_eq!(bf.instructions[1].lines, LineRange { start: 2, end: 6 });
    assert_eq!(bf.instructions[2].lines, LineRange { start: 7, end: 7 });
    // The blank line inside the continuation is accepted, and flagged by the linter.
    assert!(lint(&bf, text)
        .iter()
        .any(|w| w.rule == Rule::NoEmptyContinuation && w.lines.start == 5));
}

#[test]
fn escaped_escape_at_line_end_is_not_a_continuation() {
    let bf = p("FROM a\nRUN echo a\\\\\nRUN echo b\n");
    assert_eq!(bf.instructions.len(), 3);
    assert_eq!(
        c(&bf, 1),
        &Command::Run {
            command: shell("echo a\\\\"),
            mounts: vec![],
            network: None,
            security: None
        }
    );
    let bf = p("# escape=`\nFROM a\nRUN echo a``\nRUN echo b `\n  c\n");
    assert_eq!(bf.instructions.len(), 3);
    assert_eq!(
        c(&bf, 2),
        &Command::Run {
            command: shell("echo b   c"),
            mounts: vec![],
            network: None,
            security: None
        }
    );
}

#[test]
fn continuation_ending_the_file() {
    let bf = p("FROM a\nRUN echo hi \\");
    assert_eq!(
        c(&bf, 1),
        &Command::Run {
            command: shell("echo hi"),
            mounts: vec![],
            network: None,
            security: None
        }
    );
    let bf = p("FROM a \\\n");
    assert_eq!(
        c(&bf, 0),
        &Command::From {
            image: "a".into(),
            platform: None,
            name: None,
            as_keyword: None
        }
    );
    // Only a trailing escape: nothing to parse on that line.
    assert_eq!(p("FROM a\n\\\n").instructions.len(), 1);
}

#[test]
fn keywords_case_insensitive_with_leading_whitespace_and_crlf() {
    let bf = p("  from a as Build\r\n\t\trUn echo\r\n");
    assert_eq!(bf.instructions[0].keyword, "from");
    assert_eq!(bf.instructions[1].keyword, "rUn");
    assert_eq!(bf.stages[0].name.as_deref(), Some("build"));
    assert_eq!(
        c(&bf, 1),
        &Command::Run {
            command: shell("echo"),
            mounts: vec![],
            network: None,
            security: None
        }
    );
}

#[test]
fn comment_after_instruction_text_is_not_a_comment() {
    let bf = p("FROM a\nRUN echo # not a comment\n");
    assert_eq!(
        c(&bf, 1),
        &Command::Run {
            command: shell("echo # not a comment"),
            mounts: vec![],
            network: None,
            security: None
        }
    );
}

// ---------------------------------------------------------------- heredocs

fn heredoc(name: &str, content: &str, expand: bool, strip_tabs: bool) -> Heredoc {
    Heredoc {
        name: name.into(),
        content: content.into(),
        expand,
        strip_tabs,
        fd: None,
    }
}

#[test]
fn run_heredoc() {
    let bf = p("FROM a\nRUN <<EOF\napt-get update\n  echo $HOME\nEOF\nCMD x\n");
    let ins = &bf.instructions[1];
    assert_eq!(
        ins.heredocs,
        vec![heredoc(
            "EOF",
            "apt-get update\n  echo $HOME\n",
            true,
            false
        )]
    );
    assert_eq!(ins.lines, LineRange { start: 2, end: 5 });
    assert_eq!(bf.instructions[2].lines.start, 6);
    assert_eq!(
        ins.command,
        Command::Run {
            command: shell("<<EOF"),
            mounts: vec![],
            network: None,
            security: None
        }
    );
}

#[test]
fn heredoc_dash_strips_leading_tabs() {
    let bf = p("FROM a\nRUN <<-EOT\n\techo a\n\t\t  b\n  c\n\tEOT\n");
    assert_eq!(
        bf.instructions[1].heredocs,
        vec![heredoc("EOT", "echo a\n  b\n  c\n", true, true)]
    );
    // Without `-`, a tab-indented terminator does not end the heredoc.
    assert!(msg("FROM a\nRUN <<EOT\n\techo a\n\tEOT\n").contains("unterminated heredoc EOT"));
}

#[test]
fn quoted_heredoc_delimiters_are_not_expanded() {
    let bf = p("FROM a\nRUN <<\"EOF\"\necho $x\nEOF\nRUN <<'E2'\ny\nE2\nRUN <<E\"3\"\nz\nE3\n");
    assert_eq!(
        bf.instructions[1].heredocs,
        vec![heredoc("EOF", "echo $x\n", false, false)]
    );
    assert_eq!(
        bf.instructions[2].heredocs,
        vec![heredoc("E2", "y\n", false, false)]
    );
    assert_eq!(
        bf.instructions[3].heredocs,
        vec![heredoc("E3", "z\n", false, false)]
    );
}

#[test]
fn several_heredocs_in_one_instruction() {
    let bf = p("FROM a\nRUN <<FILE1 cat > file1 && <<FILE2 cat > file2\nI am\nfirst\nFILE1\nI am\nsecond\nFILE2\n");
    assert_eq!(
        bf.instructions[1].heredocs,
        vec![
            heredoc("FILE1", "I am\nfirst\n", true, false),
            heredoc("FILE2", "I am\nsecond\n", true, false)
        ]
    );
    assert_eq!(bf.instructions[1].lines, LineRange { start: 2, end: 8 });
}

#[test]
fn copy_heredoc_sources() {
    let text = "FROM a\nARG NAME=world\nCOPY <<EOF <<\"RAW\" /dst/\nhello ${NAME}\nEOF\nkeep ${NAME}\nRAW\n";
    let bf = p(text);
    match c(&bf, 2) {
        Command::Copy { sources, dest, .. } => {
            assert_eq!(sources, &vec!["<<EOF".to_string(), "<<\"RAW\"".to_string()]);
            assert_eq!(dest, "/dst/");
        }
        other => panic!("{other:?}"),
    }
    let r = resolved(text, &[]);
    let step = &r.stages[0].steps[1];
    assert_eq!(step.heredocs[0].content, "hello world\n");
    assert_eq!(step.heredocs[1].content, "keep ${NAME}\n");
}

#[test]
fn heredoc_inside_a_continuation() {
    let bf = p("FROM a\nRUN --mount=type=cache,target=/c \\\n    <<EOF\necho hi\nEOF\nCMD x\n");
    let ins = &bf.instructions[1];
    assert_eq!(ins.heredocs, vec![heredoc("EOF", "echo hi\n", true, false)]);
    assert_eq!(ins.lines, LineRange { start: 2, end: 5 });
    assert_eq!(
        c(&bf, 2),
        &Command::Cmd {
            command: shell("x")
        }
    );
}

#[test]
fn heredoc_details() {
    // File descriptor prefix, redirect glued to the delimiter, here-strings and exec form.
    let bf = p("FROM a\nRUN 3<<EOF cat <&3\nx\nEOF\nRUN cat <<EOF>out\ny\nEOF\nRUN cat <<<\"str\"\nRUN [\"<<EOF\"]\n");
    assert_eq!(bf.instructions[1].heredocs[0].fd, Some(3));
    assert_eq!(bf.instructions[2].heredocs[0].name, "EOF");
    assert!(bf.instructions[3].heredocs.is_empty());
    assert!(bf.instructions[4].heredocs.is_empty());
    // Heredocs only on RUN, COPY, ADD (and an ONBUILD trigger of those).
    let bf = p("FROM a\nLABEL a=<<EOF\nONBUILD RUN <<X\nbody\nX\n");
    assert!(bf.instructions[1].heredocs.is_empty());
    match c(&bf, 2) {
        Command::Onbuild { trigger } => {
            assert_eq!(trigger.heredocs, vec![heredoc("X", "body\n", true, false)])
        }
        other => panic!("{other:?}"),
    }
    // An empty heredoc and one ending the file without a newline.
    let bf = p("FROM a\nRUN <<E\nE");
    assert_eq!(bf.instructions[1].heredocs[0].content, "");
}

#[test]
fn heredoc_delimiter_forms() {
    // Delimiters that make a heredoc, and whether the body is expanded.
    for (word, name, expand, strip) in [
        ("<<EOF", "EOF", true, false),
        ("<<'EOF'", "EOF", false, false),
        ("<<\"EOF\"", "EOF", false, false),
        ("<<-EOF", "EOF", true, true),
        ("<<-'EOF'", "EOF", false, true),
        ("<<-\"EOF\"", "EOF", false, true),
        ("<<EO\"F\"", "EOF", false, false),
    ] {
        let bf = p(&format!("FROM a\nRUN {word}\nbody\n{name}\n"));
        let h = &bf.instructions[1].heredocs;
        assert_eq!(h.len(), 1, "{word}");
        assert_eq!(
            (h[0].name.as_str(), h[0].expand, h[0].strip_tabs),
            (name, expand, strip),
            "{word}"
        );
    }
    // Words that are not heredocs at all.
    for word in ["EOF", "<<", "<<-", "<EOF", "<<<EOF", "\"<<EOF\""] {
        let bf = p(&format!("FROM a\nRUN cat {word}\n"));
        assert!(bf.instructions[1].heredocs.is_empty(), "{word}");
    }
    // Unbalanced quotes are errors.
    for word in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
        let e = perr(&format!("FROM a\nRUN cat {word}\nEOF\n"));
        assert!(
            e.to_string().starts_with("Buildfile:2:9: unterminated"),
            "{word}: {e}"
        );
    }
}

#[test]
fn copy_heredoc_expansion_keeps_quotes_and_escapes() {
    let text = "FROM a\nARG V=x\nCOPY <<EOF /f\n\"$V\" '$V' \\$V ${V:-d}\nEOF\n";
    let r = resolved(text, &[]);
    assert_eq!(
        r.stages[0].steps[1].heredocs[0].content,
        "\"x\" 'x' \\$V x\n"
    );
}

#[test]
fn unterminated_heredoc_is_an_error() {
    let e = perr("FROM a\nRUN <<EOF\necho\n");
    assert_eq!(
        e.to_string(),
        "Buildfile:2:5: unterminated heredoc EOF (end it with a line holding only EOF)"
    );
}

// ---------------------------------------------------------------- instructions

#[test]
fn from_forms() {
    let bf = p("FROM --platform=$BUILDPLATFORM golang:1.22 AS Build\nFROM build\nFROM scratch\n");
    assert_eq!(
        c(&bf, 0),
        &Command::From {
            image: "golang:1.22".into(),
            platform: Some("$BUILDPLATFORM".into()),
            name: Some("Build".into()),
            as_keyword: Some("AS".into())
        }
    );
    assert_eq!(
        bf.instructions[0].flags,
        vec![Flag {
            name: "platform".into(),
            value: Some("$BUILDPLATFORM".into())
        }]
    );
    assert_eq!(bf.stages.len(), 3);
    assert_eq!(bf.stages[0].name.as_deref(), Some("build"));
    assert_eq!(bf.stages[1].base, "build");
    assert!(msg("FROM a b\n").contains("FROM requires either one or three arguments"));
    assert!(msg("FROM a AS 1x\n").contains("invalid name for build stage"));
    assert!(msg("FROM\n").contains("FROM requires"));
}

#[test]
fn run_forms_and_flags() {
    let bf = p("FROM a\nRUN [\"echo\", \"$HOME\"]\nRUN --network=none --security=insecure make\nRUN [not json\n");
    assert_eq!(
        c(&bf, 1),
        &Command::Run {
            command: exec(&["echo", "$HOME"]),
            mounts: vec![],
            network: None,
            security: None
        }
    );
    assert_eq!(
        c(&bf, 2),
        &Command::Run {
            command: shell("make"),
            mounts: vec![],
            network: Some("none".into()),
            security: Some("insecure".into())
        }
    );
    assert_eq!(
        c(&bf, 3),
        &Command::Run {
            command: shell("[not json"),
            mounts: vec![],
            network: None,
            security: None
        }
    );
    assert_eq!(
        msg("FROM a\nRUN --network=hots make\n"),
        "Buildfile:2:5: unsupported --network value \"hots\" (did you mean host?)"
    );
    assert!(msg("FROM a\nRUN --security=x y\n").contains("unsupported --security value"));
    assert!(msg("FROM a\nRUN\n").contains("RUN requires at least one argument"));
}

#[test]
fn run_mounts() {
    let bf = p(concat!(
        "FROM a\n",
        "RUN --mount=type=cache,target=/root/.cache,id=go,sharing=locked,mode=0755,uid=1,gid=2 \\\n",
        "    --mount=type=bind,from=build,source=/out,target=/in,rw \\\n",
        "    --mount=type=tmpfs,target=/tmp,size=64m \\\n",
        "    --mount=type=secret,id=token,env=TOKEN,required \\\n",
        "    --mount=type=ssh \\\n",
        "    --mount=target=/src,ro \\\n",
        "    --mount=\"type=bind,target=/a,source=x\" make\n"
    ));
    let Command::Run { mounts, .. } = c(&bf, 1) else {
        panic!()
    };
    assert_eq!(mounts.len(), 7);
    assert_eq!(mounts[0].kind, Some(MountType::Cache));
    assert_eq!(mounts[0].sharing.as_deref(), Some("locked"));
    assert_eq!(mounts[0].uid.as_deref(), Some("1"));
    assert_eq!(mounts[1].from.as_deref(), Some("build"));
    assert_eq!(mounts[1].readonly, Some(false));
    assert_eq!(mounts[2].size.as_deref(), Some("64m"));
    assert_eq!(mounts[3].required, Some(true));
    assert_eq!(mounts[3].env.as_deref(), Some("TOKEN"));
    assert_eq!(mounts[4].mount_type(), MountType::Ssh);
    assert_eq!(mounts[5].mount_type(), MountType::Bind);
    assert_eq!(mounts[5].readonly, Some(true));
    assert_eq!(mounts[6].source.as_deref(), Some("x"));

    assert_eq!(
        msg("FROM a\nRUN --mount=type=cahce,target=/x make\n"),
        "Buildfile:2:5: unsupported mount type \"cahce\" (did you mean cache?)"
    );
    assert!(msg("FROM a\nRUN --mount=type=cache make\n").contains("requires a target"));
    assert!(
        msg("FROM a\nRUN --mount=type=cache,target=/x,sharing=all make\n")
            .contains("unsupported sharing value")
    );
    assert!(msg("FROM a\nRUN --mount=type=bind,taget=/x make\n").contains("did you mean target?"));
    assert!(msg("FROM a\nRUN --mount make\n").contains("missing a value on flag --mount"));
}

#[test]
fn cmd_entrypoint_shell() {
    let bf = p("FROM a\nCMD [\"nginx\", \"-g\", \"daemon off;\"]\nENTRYPOINT exec app\nSHELL [\"/bin/bash\", \"-c\"]\nCMD []\n");
    assert_eq!(
        c(&bf, 1),
        &Command::Cmd {
            command: exec(&["nginx", "-g", "daemon off;"])
        }
    );
    assert_eq!(
        c(&bf, 2),
        &Command::Entrypoint {
            command: shell("exec app")
        }
    );
    assert_eq!(
        c(&bf, 3),
        &Command::Shell {
            args: vec!["/bin/bash".into(), "-c".into()]
        }
    );
    assert_eq!(c(&bf, 4), &Command::Cmd { command: exec(&[]) });
    // Empty CMD/ENTRYPOINT are accepted, as BuildKit does.
    let bf = p("FROM a\nCMD\nENTRYPOINT\n");
    assert_eq!(c(&bf, 1), &Command::Cmd { command: shell("") });
    assert_eq!(c(&bf, 2), &Command::Entrypoint { command: shell("") });
    assert!(msg("FROM a\nSHELL /bin/sh -c\n")
        .contains("SHELL requires the arguments to be in JSON form"));
}

#[test]
fn label_and_env_pairs() {
    let bf = p("FROM a\nLABEL a=b \"c d\"=\"e f\" g='h i' j=k\\ l\nENV A=1 B=\"two words\" C=\nENV OLD value with  spaces\nLABEL legacy value\n");
    let pair = |k: &str, v: &str| Pair {
        key: k.into(),
        value: v.into(),
    };
    assert_eq!(
        c(&bf, 1),
        &Command::Label {
            pairs: vec![
                pair("a", "b"),
                pair("\"c d\"", "\"e f\""),
                pair("g", "'h i'"),
                pair("j", "k\\ l")
            ],
            legacy: false
        }
    );
    assert_eq!(
        c(&bf, 2),
        &Command::Env {
            pairs: vec![pair("A", "1"), pair("B", "\"two words\""), pair("C", "")],
            legacy: false
        }
    );
    assert_eq!(
        c(&bf, 3),
        &Command::Env {
            pairs: vec![pair("OLD", "value with  spaces")],
            legacy: true
        }
    );
    assert_eq!(
        c(&bf, 4),
        &Command::Label {
            pairs: vec![pair("legacy", "value")],
            legacy: true
        }
    );
    assert!(msg("FROM a\nENV A=1 B\n").contains("can't find = in \"B\""));
    assert!(msg("FROM a\nENV =x\n").contains("ENV names can not be blank"));
    assert!(msg("FROM a\nENV ONLY\n").contains("ENV must have two arguments"));
    let r = resolved(
        "FROM a\nENV A=1 B=\"two words\" C=\nENV OLD value with  spaces\n",
        &[],
    );
    let e = &r.stages[0].env_at(1);
    assert!(e.contains(&("B".into(), "two words".into())));
    assert!(e.contains(&("OLD".into(), "value with  spaces".into())));
}

#[test]
fn expose_ports_and_ranges() {
    let bf = p("FROM a\nEXPOSE 80 443/tcp 53/udp 8000-8010/udp 9000/SCTP $PORT\n");
    assert_eq!(
        c(&bf, 1),
        &Command::Expose {
            ports: [
                "80",
                "443/tcp",
                "53/udp",
                "8000-8010/udp",
                "9000/SCTP",
                "$PORT"
            ]
            .map(String::from)
            .to_vec()
        }
    );
    assert_eq!(
        parse_port("8000-8010/udp").unwrap(),
        (8000, 8010, "udp".to_string())
    );
    assert_eq!(parse_port("80").unwrap(), (80, 80, "tcp".to_string()));
    assert!(msg("FROM a\nEXPOSE 80/xyz\n").contains("invalid proto"));
    assert!(msg("FROM a\nEXPOSE 70000\n").contains("invalid containerPort: 70000"));
    assert!(msg("FROM a\nEXPOSE 90-80\n").contains("invalid range"));
    assert_eq!(
        msg("FROM a\nEXPOSE 80 x\n"),
        "Buildfile:2:11: invalid containerPort: x"
    );
}

#[test]
fn add_and_copy_flags() {
    let bf = p(concat!(
        "FROM a\n",
        "ADD --chown=1:2 --chmod=644 --link --checksum=sha256:24454f8 --keep-git-dir=true --exclude=*.md --exclude=.git src.tar /dst/\n",
        "COPY --from=build --chown=app --chmod=0755 --link=false --parents --exclude=*.tmp a b /dst/\n",
        "COPY [\"with space\", \"/d st/\"]\n",
    ));
    assert_eq!(
        c(&bf, 1),
        &Command::Add {
            sources: vec!["src.tar".into()],
            dest: "/dst/".into(),
            json: false,
            chown: Some("1:2".into()),
            chmod: Some("644".into()),
            link: true,
            checksum: Some("sha256:24454f8".into()),
            keep_git_dir: true,
            exclude: vec!["*.md".into(), ".git".into()],
            unpack: None,
        }
    );
    assert_eq!(
        c(&bf, 2),
        &Command::Copy {
            sources: vec!["a".into(), "b".into()],
            dest: "/dst/".into(),
            json: false,
            from: Some("build".into()),
            chown: Some("app".into()),
            chmod: Some("0755".into()),
            link: false,
            parents: true,
            exclude: vec!["*.tmp".into()],
        }
    );
    let Command::Copy {
        sources,
        dest,
        json,
        ..
    } = c(&bf, 3)
    else {
        panic!()
    };
    assert_eq!(
        (sources.as_slice(), dest.as_str(), *json),
        (&["with space".to_string()][..], "/d st/", true)
    );

    assert_eq!(
        msg("FROM a\nCOPY --form=x a b\n"),
        "Buildfile:2:6: unknown flag --form for COPY (did you mean --from?)"
    );
    assert!(msg("FROM a\nADD --from=x a b\n").contains("unknown flag --from for ADD"));
    assert!(
        msg("FROM a\nCOPY --from=x --from=y a b\n").contains("duplicate flag specified: --from")
    );
    assert!(
        msg("FROM a\nCOPY --link=maybe a b\n").contains("expecting boolean value for flag --link")
    );
    assert!(
        msg("FROM a\nCOPY onlyone\n").contains("COPY requires at least two arguments, but got 1")
    );
    assert!(
        msg("FROM a\nENV --x=1 A=b\n").contains("unknown flag --x for ENV (ENV takes no flags)")
    );
}

#[test]
fn volume_user_workdir_arg_stopsignal_maintainer() {
    let bf = p("FROM a\nVOLUME [\"/data\", \"/logs\"]\nVOLUME /a /b\nUSER app:staff\nWORKDIR /srv/app\nARG A B=2 C=\"x y\"\nSTOPSIGNAL SIGQUIT\nMAINTAINER Jane <j@x>\n");
    assert_eq!(
        c(&bf, 1),
        &Command::Volume {
            paths: vec!["/data".into(), "/logs".into()],
            json: true
        }
    );
    assert_eq!(
        c(&bf, 2),
        &Command::Volume {
            paths: vec!["/a".into(), "/b".into()],
            json: false
        }
    );
    assert_eq!(
        c(&bf, 3),
        &Command::User {
            user: "app:staff".into()
        }
    );
    assert_eq!(
        c(&bf, 4),
        &Command::Workdir {
            path: "/srv/app".into()
        }
    );
    assert_eq!(
        c(&bf, 5),
        &Command::Arg {
            args: vec![
                ArgDecl {
                    name: "A".into(),
                    default: None
                },
                ArgDecl {
                    name: "B".into(),
                    default: Some("2".into())
                },
                ArgDecl {
                    name: "C".into(),
                    default: Some("\"x y\"".into())
                },
            ]
        }
    );
    assert_eq!(
        c(&bf, 6),
        &Command::Stopsignal {
            signal: "SIGQUIT".into()
        }
    );
    assert_eq!(
        c(&bf, 7),
        &Command::Maintainer {
            name: "Jane <j@x>".into()
        }
    );
    assert!(msg("FROM a\nVOLUME [\"\"]\n").contains("can not be an empty string"));
    assert!(msg("FROM a\nARG =x\n").contains("ARG names can not be blank"));
    assert!(
        matches!(c(&p("FROM a\nARG my-arg=1\n"), 1), Command::Arg { args } if args[0].name == "my-arg")
    );
}

#[test]
fn onbuild() {
    let bf = p("FROM a\nONBUILD ADD . /app/src\nonbuild run --mount=type=cache,target=/c make\n");
    let Command::Onbuild { trigger } = c(&bf, 1) else {
        panic!()
    };
    assert_eq!(trigger.keyword, "ADD");
    assert!(matches!(trigger.command, Command::Add { .. }));
    let Command::Onbuild { trigger } = c(&bf, 2) else {
        panic!()
    };
    assert_eq!(trigger.keyword, "run");
    assert!(matches!(&trigger.command, Command::Run { mounts, .. } if mounts.len() == 1));
    assert!(msg("FROM a\nONBUILD ONBUILD RUN x\n").contains("ONBUILD ONBUILD isn't allowed"));
    assert!(msg("FROM a\nONBUILD FROM b\n").contains("FROM isn't allowed as an ONBUILD trigger"));
    assert!(msg("FROM a\nONBUILD MAINTAINER b\n")
        .contains("MAINTAINER isn't allowed as an ONBUILD trigger"));
    assert_eq!(
        msg("FROM a\nONBUILD RUMN x\n"),
        "Buildfile:2:9: unknown instruction RUMN (did you mean RUN?)"
    );
}

#[test]
fn healthcheck() {
    let bf = p("FROM a\nHEALTHCHECK NONE\nHEALTHCHECK --interval=5m --timeout=3s --start-period=1m30s --start-interval=500ms --retries=3 CMD curl -f http://localhost/ || exit 1\nHEALTHCHECK cmd [\"/bin/check\"]\n");
    assert_eq!(
        c(&bf, 1),
        &Command::Healthcheck {
            check: Health::None
        }
    );
    assert_eq!(
        c(&bf, 2),
        &Command::Healthcheck {
            check: Health::Cmd {
                command: shell("curl -f http://localhost/ || exit 1"),
                interval: Some("5m".into()),
                timeout: Some("3s".into()),
                start_period: Some("1m30s".into()),
                start_interval: Some("500ms".into()),
                retries: Some(3),
            }
        }
    );
    assert_eq!(
        c(&bf, 3),
        &Command::Healthcheck {
            check: Health::Cmd {
                command: exec(&["/bin/check"]),
                interval: None,
                timeout: None,
                start_period: None,
                start_interval: None,
                retries: None
            }
        }
    );
    assert_eq!(
        parse_duration("1m30s"),
        Some(std::time::Duration::from_secs(90))
    );
    assert_eq!(
        parse_duration("1.5h"),
        Some(std::time::Duration::from_secs(5400))
    );
    assert_eq!(parse_duration("5"), None);
    assert!(msg("FROM a\nHEALTHCHECK NONE x\n").contains("HEALTHCHECK NONE takes no arguments"));
    let bf = p("FROM a\nHEALTHCHECK --interval=5s NONE\n");
    assert_eq!(
        c(&bf, 1),
        &Command::Healthcheck {
            check: Health::None
        }
    );
    assert!(msg("FROM a\nHEALTHCHECK --bogus=1 NONE\n")
        .contains("unknown flag --bogus for HEALTHCHECK"));
    assert!(msg("FROM a\nHEALTHCHECK --interval=5 CMD x\n").contains("invalid duration \"5\""));
    assert!(msg("FROM a\nHEALTHCHECK --timeout=10us CMD x\n").contains("cannot be less than 1ms"));
    assert!(msg("FROM a\nHEALTHCHECK --retries=-1 CMD x\n")
        .contains("--retries must be a non-negative integer"));
    assert!(msg("FROM a\nHEALTHCHECK CMD\n").contains("missing command after HEALTHCHECK CMD"));
    assert_eq!(
        msg("FROM a\nHEALTHCHECK RUN x\n"),
        "Buildfile:2:13: unknown type \"RUN\" in HEALTHCHECK (try CMD or NONE)"
    );
}

// ---------------------------------------------------------------- errors

#[test]
fn unknown_instruction_has_location_line_caret_and_hint() {
    let text = "FROM a\n\n\n\n\n\nRUNN make\n";
    let e = perr(text);
    assert_eq!(
        e.to_string(),
        "Buildfile:7:1: unknown instruction RUNN (did you mean RUN?)"
    );
    assert_eq!(
        e.render(),
        "Buildfile:7:1: unknown instruction RUNN (did you mean RUN?)\n 7 | RUNN make\n   | ^"
    );
    let loc = e.location().unwrap();
    assert_eq!(
        (loc.line, loc.column, loc.source_line.as_str()),
        (7, 1, "RUNN make")
    );
    assert_eq!(
        msg("FROM a\n    form b\n"),
        "Buildfile:2:5: unknown instruction form (did you mean FROM?)"
    );
    assert_eq!(
        msg("FROM a\nxyzzy\n"),
        "Buildfile:2:1: unknown instruction xyzzy"
    );
}

#[test]
fn error_column_on_a_continuation_line() {
    let e = perr("FROM a\nCOPY --chown=1 \\\n     --bogus=2 a b\n");
    let loc = e.location().unwrap();
    assert_eq!((loc.line, loc.column), (3, 6));
    assert_eq!(loc.source_line, "     --bogus=2 a b");
}

#[test]
fn stage_structure_errors() {
    assert_eq!(
        msg("ARG A\nRUN x\nFROM a\n"),
        "Buildfile:2:1: no build stage in current context: RUN before the first FROM (only ARG may come before FROM)"
    );
    assert!(msg("").contains("file has no instructions"));
    assert!(msg("# only a comment\n\n").contains("file has no instructions"));
    assert!(msg("ARG A=1\n").contains("file has no build stage"));
}

#[test]
fn invalid_utf8_is_reported_with_position() {
    let e = parse_bytes("Buildfile", b"FROM a\nRUN echo \xff\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "Buildfile:2:10: file is not valid UTF-8 text"
    );
    assert!(parse_bytes("Buildfile", "\u{feff}FROM a\n".as_bytes()).is_ok());
}

// ---------------------------------------------------------------- expansion

#[test]
fn global_arg_usable_in_from_but_not_in_stage_without_redeclaration() {
    let text = "ARG VERSION=3.19\nFROM alpine:${VERSION}\nENV V=\"[$VERSION]\"\nARG VERSION\nENV W=\"[$VERSION]\"\n";
    let r = resolved(text, &[]);
    let st = &r.stages[0];
    assert_eq!(st.base, "alpine:3.19");
    assert_eq!(env_of(st, 0, "V").as_deref(), Some("[]"));
    assert_eq!(st.steps[0].undefined, vec!["VERSION".to_string()]);
    assert_eq!(env_of(st, 2, "W").as_deref(), Some("[3.19]"));
    // A build arg overrides the global default, also where the stage redeclares it.
    let r = resolved(text, &[("VERSION", "3.20")]);
    assert_eq!(r.stages[0].base, "alpine:3.20");
    assert_eq!(env_of(&r.stages[0], 2, "W").as_deref(), Some("[3.20]"));
    assert!(r.unused_build_args.is_empty());
}

#[test]
fn arg_defaults_build_args_and_env_precedence() {
    let text = "FROM a\nARG A=def\nARG B\nENV A=env\nENV X=$A-${B:-none}\nARG A=again\nENV Y=$A\n";
    let r = resolved(text, &[("B", "bee"), ("UNUSED", "1")]);
    let st = &r.stages[0];
    assert_eq!(env_of(st, 3, "X").as_deref(), Some("env-bee"));
    // ENV overrides ARG of the same name, even after a later ARG.
    assert_eq!(env_of(st, 5, "Y").as_deref(), Some("env"));
    assert_eq!(r.unused_build_args, vec!["UNUSED".to_string()]);
}

#[test]
fn env_pairs_see_values_from_before_the_instruction() {
    let r = resolved(
        "FROM a\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n",
        &[],
    );
    let st = &r.stages[0];
    assert_eq!(env_of(st, 1, "def").as_deref(), Some("hello"));
    assert_eq!(env_of(st, 2, "ghi").as_deref(), Some("bye"));
}

#[test]
fn predefined_platform_and_proxy_args() {
    let text = "FROM --platform=$BUILDPLATFORM img:$TARGETARCH AS b\nRUN echo\nARG TARGETOS TARGETVARIANT\nENV T=$TARGETOS/$TARGETVARIANT P=$TARGETPLATFORM\n";
    let r = resolved(text, &[("HTTP_PROXY", "http://proxy:3128")]);
    let st = &r.stages[0];
    assert_eq!(st.base, "img:arm64");
    assert_eq!(st.platform.as_deref(), Some("linux/amd64"));
    // Proxy args reach RUN without an ARG line and are not "unused".
    assert_eq!(
        env_of(st, 0, "HTTP_PROXY").as_deref(),
        Some("http://proxy:3128")
    );
    assert!(r.unused_build_args.is_empty());
    assert_eq!(env_of(st, 2, "T").as_deref(), Some("linux/v8"));
    // TARGETPLATFORM was not redeclared in the stage.
    assert_eq!(env_of(st, 2, "P").as_deref(), Some(""));
}

#[test]
fn exec_form_and_run_commands_are_not_expanded() {
    let r = resolved(
        "FROM a\nARG X=1\nRUN echo $X\nCMD [\"echo\", \"$X\"]\nENTRYPOINT echo $X\n",
        &[],
    );
    let s = &r.stages[0].steps;
    assert_eq!(
        s[1].command,
        Command::Run {
            command: shell("echo $X"),
            mounts: vec![],
            network: None,
            security: None
        }
    );
    assert_eq!(
        s[2].command,
        Command::Cmd {
            command: exec(&["echo", "$X"])
        }
    );
    assert_eq!(
        s[3].command,
        Command::Entrypoint {
            command: shell("echo $X")
        }
    );
    // RUN sees the ARG as an environment variable instead.
    assert_eq!(env_of(&r.stages[0], 1, "X").as_deref(), Some("1"));
}

#[test]
fn expanded_instructions() {
    let text = concat!(
        "FROM a\n",
        "ARG D=/data P=8080 U=app C=cache S=SIGINT\n",
        "WORKDIR $D/w\nUSER ${U}:${U}\nEXPOSE $P/tcp\nVOLUME $D\nSTOPSIGNAL $S\nLABEL \"k-$U\"=\"v $U\"\n",
        "COPY --chown=$U --from=${C} src $D/\n",
        "RUN --mount=type=cache,id=$C,target=$D/c make\n",
        "COPY [\"$D\", \"/x\"]\n",
        "ENV Q='$D' R=\\$D S=\"${U:+yes} ${NONE:-no}\"\n",
    );
    let r = resolved(text, &[]);
    let cmds: Vec<&Command> = r.stages[0].steps.iter().map(|s| &s.command).collect();
    assert_eq!(
        cmds[1],
        &Command::Workdir {
            path: "/data/w".into()
        }
    );
    assert_eq!(
        cmds[2],
        &Command::User {
            user: "app:app".into()
        }
    );
    assert_eq!(
        cmds[3],
        &Command::Expose {
            ports: vec!["8080/tcp".into()]
        }
    );
    assert_eq!(
        cmds[4],
        &Command::Volume {
            paths: vec!["/data".into()],
            json: false
        }
    );
    assert_eq!(
        cmds[5],
        &Command::Stopsignal {
            signal: "SIGINT".into()
        }
    );
    assert_eq!(
        cmds[6],
        &Command::Label {
            pairs: vec![Pair {
                key: "k-app".into(),
                value: "v app".into()
            }],
            legacy: false
        }
    );
    let Command::Copy {
        from, chown, dest, ..
    } = cmds[7]
    else {
        panic!()
    };
    assert_eq!(
        (from.as_deref(), chown.as_deref(), dest.as_str()),
        (Some("cache"), Some("app"), "/data/")
    );
    let Command::Run { mounts, .. } = cmds[8] else {
        panic!()
    };
    assert_eq!(
        (mounts[0].id.as_deref(), mounts[0].target.as_deref()),
        (Some("cache"), Some("/data/c"))
    );
    // JSON-form COPY keeps its strings.
    let Command::Copy { sources, .. } = cmds[9] else {
        panic!()
    };
    assert_eq!(sources, &vec!["$D".to_string()]);
    let Command::Env { pairs, .. } = cmds[10] else {
        panic!()
    };
    let vals: Vec<&str> = pairs.iter().map(|p| p.value.as_str()).collect();
    assert_eq!(vals, ["$D", "$D", "yes no"]);
}

#[test]
fn nested_default_in_a_buildfile() {
    let r = resolved(
        "ARG OTHER=fallback\nARG VAR\nFROM img:${VAR:-${OTHER}}\n",
        &[],
    );
    assert_eq!(r.stages[0].base, "img:fallback");
    let r = resolved(
        "ARG OTHER=fallback\nARG VAR\nFROM img:${VAR:-${OTHER}}\n",
        &[("VAR", "set")],
    );
    assert_eq!(r.stages[0].base, "img:set");
}

#[test]
fn a_long_single_stage_resolves_without_per_step_copies() {
    // 20,000 ENV lines in one stage: expansion and env_at stay linear.
    let mut text = String::from("FROM a\nENV V0=start\n");
    for i in 1..20_000 {
        text.push_str(&format!("ENV V{i}=${{V{}:+x}}-{i}\n", i - 1));
    }
    text.push_str("RUN true\n");
    let r = resolved(&text, &[]);
    let st = &r.stages[0];
    let env = st.env_at(st.steps.len() - 1);
    assert_eq!(env.len(), 20_000);
    assert!(env.contains(&("V2".to_string(), "x-2".to_string())));
    assert_eq!(lint(&p(&text), &text), vec![]);
}

#[test]
fn env_inherited_from_parent_stage() {
    let r = resolved(
        "FROM a AS base\nENV P=/opt\nARG Q=1\nFROM base\nWORKDIR $P\nENV Z=${Q:-unset}\n",
        &[],
    );
    let s = &r.stages[1].steps;
    assert_eq!(
        s[0].command,
        Command::Workdir {
            path: "/opt".into()
        }
    );
    assert_eq!(env_of(&r.stages[1], 1, "Z").as_deref(), Some("unset"));
}

#[test]
fn expansion_errors_have_a_location() {
    let text = "FROM a\nARG X\nWORKDIR ${X:?must be set}\n";
    let bf = p(text);
    let e = resolve(&bf, "Buildfile", text, &ResolveOptions::default()).unwrap_err();
    assert_eq!(e.to_string(), "Buildfile:3:9: X: must be set");
    let e = resolve(
        &p("FROM img:${X\n"),
        "Buildfile",
        "FROM img:${X\n",
        &ResolveOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("missing '}'"));
}

// ---------------------------------------------------------------- stage graph

const MULTI: &str = concat!(
    "FROM golang AS build\nRUN make\n",
    "FROM alpine AS unused\nRUN echo never\n",
    "FROM build AS test\nRUN go test\n",
    "FROM scratch AS final\nCOPY --from=build /out /app\nCOPY --from=nginx:latest /etc/nginx /etc/nginx\nRUN --mount=from=test,target=/t true\n",
);

fn graph(text: &str) -> Result<Graph, Error> {
    let r = resolved(text, &[]);
    Graph::new(&r, "Buildfile", text)
}

#[test]
fn graph_dependencies_and_target_pruning() {
    let g = graph(MULTI).unwrap();
    assert_eq!(g.nodes[2].base, Dep::Stage(0));
    assert_eq!(g.nodes[3].base, Dep::Scratch);
    assert_eq!(g.stage_deps(3), vec![0, 2]);
    assert!(g.nodes[3]
        .deps
        .contains(&(Dep::Image("nginx:latest".into()), 9)));
    // The last stage is the default target; stage "unused" is never built.
    assert_eq!(g.plan(None).unwrap(), vec![0, 2, 3]);
    assert_eq!(g.plan(Some("test")).unwrap(), vec![0, 2]);
    assert_eq!(g.plan(Some("UNUSED")).unwrap(), vec![1]);
    assert_eq!(g.plan(Some("build")).unwrap(), vec![0]);
}

#[test]
fn graph_by_index_and_forward_references() {
    let g = graph("FROM a\nFROM b\nCOPY --from=0 /x /y\n").unwrap();
    assert_eq!(g.stage_deps(1), vec![0]);
    // FROM naming a later stage is an image; COPY --from may point forward.
    let g = graph("FROM later AS first\nCOPY --from=later /a /b\nFROM c AS later\n").unwrap();
    assert_eq!(g.nodes[0].base, Dep::Image("later".into()));
    assert_eq!(g.stage_deps(0), vec![1]);
    assert_eq!(g.plan(Some("first")).unwrap(), vec![1, 0]);
}

#[test]
fn graph_errors() {
    let e = graph(MULTI).unwrap().plan(Some("tset")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Buildfile: target stage \"tset\" could not be found (did you mean test?)"
    );
    let e =
        graph("FROM a AS x\nCOPY --from=y /a /b\nFROM b AS y\nCOPY --from=x /a /b\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "Buildfile:4:6: circular dependency between stages: x -> y -> x (a stage cannot copy from itself or from a stage that needs it)"
    );
    assert!(
        e.render()
            .ends_with("\n 4 | COPY --from=x /a /b\n   |      ^"),
        "{}",
        e.render()
    );
    let e = graph("FROM a AS self\nCOPY --from=self /a /b\n").unwrap_err();
    assert!(e.to_string().contains("self -> self"));
    // A `from=` on a continuation line is located there.
    let e = graph("FROM a AS m\nRUN --network=none \\\n    --mount=from=m,target=/x true\n")
        .unwrap_err();
    let at = e.location().unwrap();
    assert_eq!((at.line, at.column), (3, 13));
    let e = graph("FROM a\nCOPY --from=3 /a /b\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "Buildfile:2:6: invalid stage index 3: the file has 1 stages (stage indexes start at 0)"
    );
}

// ---------------------------------------------------------------- linter

fn rules(text: &str) -> Vec<(Rule, u32)> {
    lint(&p(text), text)
        .into_iter()
        .map(|w| (w.rule, w.lines.start))
        .collect()
}

#[test]
fn lint_rules() {
    let text = concat!(
        "ARG TAG\n",
        "FROM alpine:$TAG AS Build\n",
        "from a as ok\n",
        "MAINTAINER me\n",
        "ENV legacy value\n",
        "WORKDIR rel\n",
        "CMD echo one\n",
        "CMD [\"two\"]\n",
        "ENV X=$NOPE\n",
        "ARG DB_PASSWORD\n",
        "EXPOSE 80/TCP\n",
        "FROM --platform=$TARGETPLATFORM $BASE AS ok\n",
        "FROM a AS scratch\n",
        "ENTRYPOINT run\n",
    );
    let got = rules(text);
    for (rule, line) in [
        (Rule::StageNameCasing, 2),
        (Rule::InvalidDefaultArgInFrom, 2),
        (Rule::ConsistentInstructionCasing, 3),
        (Rule::MaintainerDeprecated, 4),
        (Rule::LegacyKeyValueFormat, 5),
        (Rule::WorkdirRelativePath, 6),
        (Rule::JSONArgsRecommended, 7),
        (Rule::MultipleInstructionsDisallowed, 7),
        (Rule::UndefinedVar, 9),
        (Rule::SecretsUsedInArgOrEnv, 10),
        (Rule::ExposeProtoCasing, 11),
        (Rule::RedundantTargetPlatform, 12),
        (Rule::UndefinedArgInFrom, 12),
        (Rule::DuplicateStageName, 12),
        (Rule::ReservedStageName, 13),
        (Rule::JSONArgsRecommended, 14),
    ] {
        assert!(
            got.contains(&(rule, line)),
            "missing {rule:?} at line {line} in {got:?}"
        );
    }
    assert!(!got.contains(&(Rule::FromAsCasing, 3)));
    // Hints suggest a close declared name.
    let text = "ARG VERSION=1\nFROM a:$VERSON\nENV APP_HOME=/srv\nWORKDIR $APP_HOM\n";
    let hints: Vec<(Rule, Option<String>)> = lint(&p(text), text)
        .into_iter()
        .map(|w| (w.rule, w.hint))
        .collect();
    assert!(
        hints.contains(&(
            Rule::UndefinedArgInFrom,
            Some("did you mean VERSION?".into())
        )),
        "{hints:?}"
    );
    assert!(
        hints.contains(&(Rule::UndefinedVar, Some("did you mean $APP_HOME?".into()))),
        "{hints:?}"
    );
    assert!(rules("FROM a as b\n").contains(&(Rule::FromAsCasing, 1)));
    assert!(rules("FROM a\nWORKDIR /abs\nWORKDIR rel\n").is_empty());
    assert!(rules("FROM a\nCMD [\"x\"]\nENV A=1\nRUN echo $A\nENV B=$A\n").is_empty());
}

#[test]
fn check_directive_skips_rules_and_sets_error() {
    let text = "# check=skip=JSONArgsRecommended,MaintainerDeprecated;error=true\nFROM a\nCMD x\nMAINTAINER m\nENV a b\n";
    let bf = p(text);
    let got: Vec<Rule> = lint(&bf, text).into_iter().map(|w| w.rule).collect();
    assert_eq!(got, vec![Rule::LegacyKeyValueFormat]);
    assert!(CheckConfig::from_buildfile(&bf).error);
    assert!(rules("# check=skip=all\nFROM a\nCMD x\n").is_empty());
}

// ---------------------------------------------------------------- printer round trip

fn strip_lines(mut bf: Buildfile) -> Buildfile {
    let z = LineRange { start: 0, end: 0 };
    for d in &mut bf.directives {
        d.line = 0;
    }
    for i in &mut bf.instructions {
        i.lines = z;
        if let Command::Onbuild { trigger } = &mut i.command {
            trigger.lines = z;
        }
    }
    for s in &mut bf.stages {
        s.lines = z;
    }
    bf
}

fn ast_schema() -> &'static jsonschema::Validator {
    static V: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../schemas/buildfile-ast.schema.json"))
                .expect("schema is JSON");
        jsonschema::validator_for(&schema).expect("schema compiles")
    })
}

/// The JSON `imgctl buildfile parse --json` would print for `bf` matches the schema.
fn check_schema(bf: &Buildfile) -> Result<(), String> {
    let mut doc = serde_json::to_value(bf).map_err(|e| e.to_string())?;
    doc["file"] = serde_json::Value::from("Buildfile");
    let errs: Vec<String> = ast_schema()
        .iter_errors(&doc)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    if errs.is_empty() {
        Ok(())
    } else {
        Err(format!("schema violations: {}\n{doc:#}", errs.join("; ")))
    }
}

fn round_trip(text: &str) -> Result<(), String> {
    let Ok(a) = parse("Buildfile", text) else {
        return Ok(());
    };
    check_schema(&a)?;
    let printed = print(&a);
    let b = parse("Buildfile", &printed)
        .map_err(|e| format!("reparse failed: {}\n---\n{printed}", e.render()))?;
    if strip_lines(a.clone()) != strip_lines(b.clone()) {
        return Err(format!(
            "AST changed.\ninput:\n{text}\nprinted:\n{printed}\nbefore: {a:#?}\nafter: {b:#?}"
        ));
    }
    Ok(())
}

#[test]
fn print_round_trips_the_golden_shapes() {
    for t in [
        MULTI,
        "# escape=`\nFROM a\nRUN echo `\n  hi\nCOPY --chown=\"a b\" x y\n",
        "FROM a\nRUN <<-EOF cat >/x && <<\"B\" cat\n\tline\n\tEOF\n$raw\nB\nONBUILD RUN <<X\nbody\nX\n",
        "FROM a\nHEALTHCHECK --interval=1s CMD [\"x\"]\nHEALTHCHECK NONE\nENV a b c\nLABEL \"x y\"=z\nVOLUME [\"/v\"]\n",
    ] {
        round_trip(t).unwrap();
    }
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn word() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9_./-]{0,7}"
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9_./:-]{0,8}",
            "\"[a-z $]{0,6}\"",
            "'[a-z \"]{0,6}'",
            "\\$\\{?[A-Z]{1,3}\\}?",
            "\\$\\{[A-Z]{1,3}:-[a-z]{0,3}\\}",
        ]
    }

    fn kw(k: &'static str) -> impl Strategy<Value = String> {
        prop_oneof![Just(k.to_string()), Just(k.to_ascii_lowercase())]
    }

    fn cmdline() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z][a-z0-9 &|;$=-]{0,20}",
            proptest::collection::vec("[a-z $\"\\\\]{0,6}", 0..4)
                .prop_map(|v| serde_json::to_string(&v).unwrap()),
        ]
    }

    fn flag(names: &'static [&'static str]) -> impl Strategy<Value = String> {
        (proptest::sample::select(names), value()).prop_map(|(n, v)| match n {
            "link" | "parents" | "keep-git-dir" => format!("--{n}"),
            _ => format!("--{n}={v}"),
        })
    }

    fn mount() -> impl Strategy<Value = String> {
        (
            proptest::sample::select(&["cache", "bind", "tmpfs", "secret", "ssh"][..]),
            word(),
            proptest::option::of(word()),
        )
            .prop_map(|(t, target, id)| {
                let mut s = format!("--mount=type={t},target=/{target}");
                if let Some(i) = id {
                    s.push_str(&format!(",id={i}"));
                }
                s
            })
    }

    fn instruction() -> impl Strategy<Value = String> {
        prop_oneof![
            (
                kw("FROM"),
                word(),
                proptest::option::of(word()),
                proptest::option::of(word())
            )
                .prop_map(|(k, img, name, plat)| {
                    let p = plat.map(|p| format!("--platform={p} ")).unwrap_or_default();
                    match name {
                        Some(n) => format!("{k} {p}{img} AS {n}"),
                        None => format!("{k} {p}{img}"),
                    }
                }),
            (
                kw("RUN"),
                proptest::collection::vec(mount(), 0..3),
                cmdline()
            )
                .prop_map(|(k, m, c)| format!("{k} {} {c}", m.join(" "))),
            (kw("CMD"), cmdline()).prop_map(|(k, c)| format!("{k} {c}")),
            (kw("ENTRYPOINT"), cmdline()).prop_map(|(k, c)| format!("{k} {c}")),
            (
                kw("ENV"),
                proptest::collection::vec((word(), value()), 1..4)
            )
                .prop_map(|(k, v)| format!(
                    "{k} {}",
                    v.iter()
                        .map(|(a, b)| format!("{a}={b}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                )),
            (kw("LABEL"), word(), "[a-z][a-z ]{0,10}").prop_map(|(k, a, b)| format!("{k} {a} {b}")),
            (
                kw("EXPOSE"),
                proptest::collection::vec(
                    (
                        1u16..9000,
                        proptest::option::of(1u16..50),
                        proptest::sample::select(&["", "/tcp", "/udp"][..])
                    ),
                    1..4
                )
            )
                .prop_map(|(k, v)| format!(
                    "{k} {}",
                    v.iter()
                        .map(|(a, r, p)| match r {
                            Some(r) => format!("{a}-{}{p}", a + r),
                            None => format!("{a}{p}"),
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                )),
            (
                kw("COPY"),
                proptest::collection::vec(
                    flag(&["from", "chown", "chmod", "link", "parents", "exclude"]),
                    0..3
                ),
                proptest::collection::vec(word(), 2..4)
            )
                .prop_map(|(k, f, w)| format!("{k} {} {}", f.join(" "), w.join(" "))),
            (
                kw("ADD"),
                proptest::collection::vec(
                    flag(&[
                        "chown",
                        "chmod",
                        "link",
                        "checksum",
                        "keep-git-dir",
                        "exclude"
                    ]),
                    0..3
                ),
                proptest::collection::vec(word(), 2..4)
            )
                .prop_map(|(k, f, w)| format!("{k} {} {}", f.join(" "), w.join(" "))),
            (kw("COPY"), proptest::collection::vec(word(), 2..4))
                .prop_map(|(k, w)| format!("{k} {}", serde_json::to_string(&w).unwrap())),
            (
                kw("VOLUME"),
                proptest::collection::vec(word(), 1..3),
                any::<bool>()
            )
                .prop_map(|(k, w, j)| if j {
                    format!("{k} {}", serde_json::to_string(&w).unwrap())
                } else {
                    format!("{k} {}", w.join(" "))
                }),
            (kw("USER"), value()).prop_map(|(k, v)| format!("{k} u{v}")),
            (kw("WORKDIR"), value()).prop_map(|(k, v)| format!("{k} /{v}")),
            (kw("STOPSIGNAL"), "SIG[A-Z]{2,4}").prop_map(|(k, v)| format!("{k} {v}")),
            (
                kw("ARG"),
                proptest::collection::vec(
                    ("[A-Z_][A-Z0-9_]{0,5}", proptest::option::of(value())),
                    1..3
                )
            )
                .prop_map(|(k, v)| format!(
                    "{k} {}",
                    v.iter()
                        .map(|(n, d)| match d {
                            Some(d) => format!("{n}={d}"),
                            None => n.clone(),
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                )),
            (kw("ONBUILD"), cmdline()).prop_map(|(k, c)| format!("{k} RUN {c}")),
            (
                kw("HEALTHCHECK"),
                proptest::option::of(1u32..100),
                cmdline()
            )
                .prop_map(|(k, i, c)| match i {
                    Some(i) => format!("{k} --interval={i}s --retries={i} CMD {c}"),
                    None => format!("{k} CMD {c}"),
                }),
            kw("HEALTHCHECK").prop_map(|k| format!("{k} NONE")),
            (kw("SHELL"), proptest::collection::vec(word(), 1..3))
                .prop_map(|(k, w)| format!("{k} {}", serde_json::to_string(&w).unwrap())),
            (kw("MAINTAINER"), "[a-z <>@.]{1,12}").prop_map(|(k, v)| format!("{k} {v}")),
            (
                kw("RUN"),
                any::<bool>(),
                proptest::collection::vec("[a-z $\t{}]{0,12}", 0..4),
                "[A-Z]{1,4}",
                any::<bool>()
            )
                .prop_map(|(k, dash, body, name, quoted)| {
                    let d = if dash { "-" } else { "" };
                    let q = if quoted {
                        format!("\"{name}\"")
                    } else {
                        name.clone()
                    };
                    let body: String = body
                        .iter()
                        .map(|l| format!("{}\n", l.trim_start_matches('\t')))
                        .filter(|l| l.trim_end() != name)
                        .collect();
                    format!("{k} <<{d}{q} sh\n{body}{name}")
                }),
            (
                kw("COPY"),
                "[A-Z]{1,4}",
                proptest::collection::vec("[a-z $]{0,12}", 0..3),
                word()
            )
                .prop_map(|(k, name, body, dst)| {
                    let body: String = body.iter().map(|l| format!("{l}\n")).collect();
                    format!("{k} <<{name} /{dst}\n{body}{name}")
                }),
        ]
    }

    /// Random layout noise: continuations, comment lines, blank lines, indentation.
    fn layout(ins: String, cont: bool, indent: bool, escape: char) -> String {
        let mut s = ins;
        if cont {
            // Break the first line at its first space (not inside a heredoc body).
            let first_end = s.find('\n').unwrap_or(s.len());
            if let Some(sp) = s[..first_end].find(' ') {
                s.replace_range(
                    sp..sp + 1,
                    &format!(" {escape}\n# comment in a continuation\n\n   "),
                );
            }
        }
        if indent {
            s.insert_str(0, "  ");
        }
        s
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn print_then_parse_gives_the_same_ast(
            backtick in any::<bool>(),
            body in proptest::collection::vec((instruction(), any::<bool>(), any::<bool>()), 1..12),
        ) {
            let mut text = String::new();
            if backtick {
                text.push_str("# escape=`\n");
            }
            text.push_str("FROM base\n");
            let escape = if backtick { '`' } else { '\\' };
            for (ins, cont, indent) in body {
                text.push_str(&layout(ins, cont, indent, escape));
                text.push('\n');
            }
            // Generated text should nearly always be valid; too many rejects fail the test.
            prop_assume!(parse("Buildfile", &text).is_ok());
            if let Err(e) = round_trip(&text) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}

// Regression tests for the parser defects of issue 9 item 9, each checked against
// BuildKit's parser (frontend/dockerfile/parser/line_parsers.go, instructions/bflag.go,
// shell/lex.go).

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
