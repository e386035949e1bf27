//! Docker commands imgctl does not have (issue 15's table, docs/docker-habits.md):
//! one line on stderr saying what to type instead, nothing on stdout, exit 125,
//! and no store is made. A typo gets the closest command.

use crate::common::{imgctl, output, tempdir};

#[test]
fn docker_commands_imgctl_lacks_print_one_line_and_exit_125() {
    let t = tempdir();
    let store = t.path().join("store");
    for (args, want) in [
        (
            &["cp", "web:/etc/hostname", "."][..],
            "imgctl exec C tar -cf - PATH",
        ),
        (&["top", "web"], "imgctl exec C ps"),
        (&["port", "web"], "{{.Ports}}"),
        (&["volume", "create", "data"], "-v /host/dir:/path"),
        (&["rename", "a", "b"], "run --name NAME"),
        (&["stpo", "web"], "did you mean `stop`?"),
    ] {
        let out = output(imgctl(&store).args(args));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line, got {err}");
        assert!(
            err.starts_with("imgctl: ") && err.contains(want),
            "{args:?}: {err}"
        );
    }
    assert!(!store.exists(), "an unknown command made the store");
}
