//! OCI runtime-spec hooks (config.md, "POSIX-platform Hooks"): run one program
//! with the container's state JSON on its stdin, within its timeout.
//!
//! Who runs which hook, and where, is the caller's business: `prestart`,
//! `createRuntime`, `poststart` and `poststop` run in the runtime's namespaces
//! (`container::runtime`), `createContainer` and `startContainer` in the
//! container's setup process (`child`), which is in the container's namespaces.
//! Here only the common part: the spec says a hook's `path` is absolute, `args`
//! is its argv (argv[0] included), `env` replaces the environment, and `timeout`
//! (seconds, > 0) bounds its run.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use super::Error;

/// The hook kinds of the runtime spec, in the order they run.
pub const KINDS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// Run `hooks` one after the other; the first failure ends the run.
pub fn run_all(kind: &str, hooks: &[Hook], state: &[u8]) -> Result<(), Error> {
    for h in hooks {
        run(kind, h, state)?;
    }
    Ok(())
}

fn hook_err(kind: &str, hook: &Hook, reason: impl Into<String>) -> Error {
    Error::Hook {
        kind: kind.to_string(),
        path: hook.path().clone(),
        reason: reason.into(),
    }
}

/// Run one hook and wait for it. Its stdout and stderr are the caller's.
pub fn run(kind: &str, hook: &Hook, state: &[u8]) -> Result<(), Error> {
    let path = hook.path();
    if !path.is_absolute() {
        return Err(hook_err(kind, hook, "the path must be absolute"));
    }
    let timeout = match hook.timeout() {
        Some(t) if t <= 0 => {
            return Err(hook_err(kind, hook, format!("timeout {t} is not positive")))
        }
        Some(t) => Some(Duration::from_secs(t as u64)),
        None => None,
    };
    let mut cmd = std::process::Command::new(path);
    if let Some(args) = hook.args() {
        if let Some((arg0, rest)) = args.split_first() {
            cmd.arg0(arg0);
            cmd.args(rest);
        }
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                cmd.env(k, v);
            }
            _ => return Err(hook_err(kind, hook, format!("env entry {kv:?} is not K=V"))),
        }
    }
    cmd.stdin(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| hook_err(kind, hook, format!("cannot start: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook need not read its stdin: a closed pipe is not an error.
        match stdin.write_all(state) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(hook_err(kind, hook, format!("write the state: {e}")));
            }
        }
    }
    let status = match timeout {
        None => child
            .wait()
            .map_err(|e| hook_err(kind, hook, format!("wait: {e}")))?,
        Some(limit) => {
            let start = Instant::now();
            let mut nap = Duration::from_millis(1);
            loop {
                match child.try_wait() {
                    Ok(Some(s)) => break s,
                    Ok(None) => {}
                    Err(e) => return Err(hook_err(kind, hook, format!("wait: {e}"))),
                }
                if start.elapsed() >= limit {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(hook_err(
                        kind,
                        hook,
                        format!("timed out after {} s (killed)", limit.as_secs()),
                    ));
                }
                std::thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(20));
            }
        }
    };
    if status.success() {
        return Ok(());
    }
    Err(hook_err(kind, hook, status.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::HookBuilder;

    fn sh(script: &str) -> Hook {
        HookBuilder::default()
            .path("/bin/sh")
            .args(vec!["sh".to_string(), "-c".to_string(), script.to_string()])
            .build()
            .unwrap()
    }

    #[test]
    fn a_hook_reads_the_state_on_stdin_and_gets_only_its_env() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        let mut h = sh(&format!(
            "cat > {}; echo \"[$FOO][$HOME]\" >> {}",
            out.display(),
            out.display()
        ));
        h.set_env(Some(vec!["FOO=bar".into()]));
        run("prestart", &h, b"{\"id\":\"x\"}").unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "{\"id\":\"x\"}[bar][]\n"
        );
    }

    #[test]
    fn a_failing_hook_is_one_line_naming_the_kind_and_path() {
        let e = run("createRuntime", &sh("exit 3"), b"{}").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("createRuntime hook /bin/sh: "), "{msg}");
        assert!(msg.contains('3') && !msg.contains('\n'), "{msg}");
        let e = run("poststop", &sh("").clone_with_path("relative"), b"{}").unwrap_err();
        assert!(e.to_string().contains("absolute"), "{e}");
    }

    #[test]
    fn a_hook_past_its_timeout_is_killed() {
        let mut h = sh("sleep 5");
        h.set_timeout(Some(1));
        let t0 = Instant::now();
        let e = run("startContainer", &h, b"{}").unwrap_err();
        assert!(e.to_string().contains("timed out after 1 s"), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(4));
        h.set_timeout(Some(0));
        assert!(run("startContainer", &h, b"{}").is_err());
    }

    trait WithPath {
        fn clone_with_path(&self, p: &str) -> Hook;
    }
    impl WithPath for Hook {
        fn clone_with_path(&self, p: &str) -> Hook {
            let mut h = self.clone();
            h.set_path(p.into());
            h
        }
    }
}
