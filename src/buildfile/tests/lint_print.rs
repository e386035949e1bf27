//! The linter's rules and the printer on hand-written shapes.

use super::*;

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

// ---------------------------------------------------------------- printer

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
