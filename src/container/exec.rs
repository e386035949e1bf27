//! `imgctl exec`: find a running container and run one more process in it with
//! the container's own process settings (user, environment, capabilities,
//! seccomp, no_new_privs, LSM label), through [`crate::sandbox::exec`].

use std::path::{Path, PathBuf};

use super::state::{State, Status};
use super::{owner, Error};
use crate::sandbox;

/// What `exec` was asked for.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub cmd: Vec<String>,
    /// `-u user[:group]`, resolved in the container's `/etc/passwd`.
    pub user: Option<String>,
    /// `-w DIR`.
    pub workdir: Option<String>,
    /// `-e KEY=VALUE` (added to the container's environment).
    pub env: Vec<String>,
    /// Every capability.
    pub privileged: bool,
    pub interactive: bool,
    pub tty: bool,
    pub detach: bool,
}

/// The runtime spec container `id` runs with.
pub fn read_spec(dir: &Path) -> Result<oci_spec::runtime::Spec, Error> {
    let path = dir.join("config.json");
    let body = std::fs::read(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&body).map_err(|e| Error::Spec(format!("{}: {e}", path.display())))
}

/// Run `opts.cmd` in running container `id`; the command's outcome.
pub fn exec(root: &Path, id: &str, opts: &ExecOptions) -> Result<sandbox::Outcome, Error> {
    let dir = super::control::state_dir(root, id);
    let st = State::load(&dir)?;
    let short: String = id.chars().take(12).collect();
    let pid = match (st.status, st.pid) {
        (Status::Running, Some(pid)) if owner::is_owned(root, id) => pid as i32,
        _ => return Err(Error::NotRunning { id: short }),
    };
    let spec = read_spec(&dir)?;
    let mut process = spec.process().clone().unwrap_or_default();
    if opts.cmd.is_empty() {
        return Err(Error::Spec("exec needs a command".into()));
    }
    process.set_args(Some(opts.cmd.clone()));
    process.set_terminal(Some(opts.tty));
    let mut env = process.env().clone().unwrap_or_default();
    for e in &opts.env {
        let k = e.split_once('=').map(|(k, _)| k).unwrap_or(e);
        let v = if e.contains('=') {
            e.clone()
        } else {
            match std::env::var(k) {
                Ok(v) => format!("{k}={v}"),
                Err(_) => continue,
            }
        };
        env.retain(|x| x.split_once('=').map(|(xk, _)| xk).unwrap_or(x) != k);
        env.push(v);
    }
    if opts.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    process.set_env(Some(env));
    let proc_root = PathBuf::from(format!("/proc/{pid}/root"));
    if let Some(u) = &opts.user {
        let idn = super::user::resolve(u, &proc_root)?;
        let mut user = oci_spec::runtime::User::default();
        user.set_uid(idn.uid);
        user.set_gid(idn.gid);
        user.set_additional_gids((!idn.additional_gids.is_empty()).then_some(idn.additional_gids));
        process.set_user(user);
    }
    if let Some(w) = &opts.workdir {
        if !w.starts_with('/') {
            return Err(Error::BadFlag {
                flag: "--workdir".into(),
                value: w.clone(),
                hint: "an absolute path".into(),
            });
        }
        process.set_cwd(PathBuf::from(w));
    }
    if opts.privileged {
        let all: std::collections::HashSet<oci_spec::runtime::Capability> = sandbox::all_caps()
            .iter()
            .filter_map(|c| serde_json::from_value(serde_json::Value::String(c.clone())).ok())
            .collect();
        let mut lc = process.capabilities().clone().unwrap_or_default();
        lc.set_bounding(Some(all.clone()));
        lc.set_effective(Some(all.clone()));
        lc.set_permitted(Some(all));
        process.set_capabilities(Some(lc));
    }
    let linux = spec.linux().clone().unwrap_or_default();
    let cgroup_root = owner::cgroup_root(root, id);
    let cgroup_path = linux.cgroups_path().clone();
    let req = sandbox::exec::ExecRequest {
        pid,
        process: &process,
        seccomp: linux.seccomp().as_ref(),
        cgroup: cgroup_path.as_deref().map(|p| (p, cgroup_root.as_path())),
        stdin: opts.interactive,
        tty: opts.tty,
        detach: opts.detach,
    };
    Ok(sandbox::exec::exec(&req)?)
}
