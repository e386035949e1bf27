//! Directives, logical lines (continuations, comments, CRLF) and heredocs.

use super::*;

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
    assert_eq!(c(&bf, 1), &run_sh("echo   hi"));
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
    assert_eq!(c(&bf, 1), &run_sh("dir c:\\   && echo `$x"));
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
        &run_sh("apt-get update &&     apt-get install -y     curl")
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
    assert_eq!(c(&bf, 1), &run_sh("echo a\\\\"));
    let bf = p("# escape=`\nFROM a\nRUN echo a``\nRUN echo b `\n  c\n");
    assert_eq!(bf.instructions.len(), 3);
    assert_eq!(c(&bf, 2), &run_sh("echo b   c"));
}

#[test]
fn continuation_ending_the_file() {
    let bf = p("FROM a\nRUN echo hi \\");
    assert_eq!(c(&bf, 1), &run_sh("echo hi"));
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
    assert_eq!(c(&bf, 1), &run_sh("echo"));
}

#[test]
fn comment_after_instruction_text_is_not_a_comment() {
    let bf = p("FROM a\nRUN echo # not a comment\n");
    assert_eq!(c(&bf, 1), &run_sh("echo # not a comment"));
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
    assert_eq!(ins.command, run_sh("<<EOF"));
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
