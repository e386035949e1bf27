//! ARG/ENV expansion with Docker's scoping, and the stage graph.

use super::*;

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
    assert_eq!(s[1].command, run_sh("echo $X"));
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
