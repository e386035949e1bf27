//! Property test: printing a generated Buildfile and parsing it again gives the same
//! syntax tree (and the tree matches the JSON schema).

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
