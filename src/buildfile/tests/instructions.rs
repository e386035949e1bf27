//! Each instruction's forms and flags, and parse errors with their locations.

use super::*;

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
    assert_eq!(c(&bf, 3), &run_sh("[not json"));
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
