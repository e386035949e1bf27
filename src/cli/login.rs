//! `imgctl` verbs: login (owner fills in).
use std::process::ExitCode;
use super::Globals;

#[derive(clap::Args, Debug)]
pub struct LoginArgs {
    /// Arguments.
    pub args: Vec<String>,
}

pub fn login(_g: &Globals, _a: LoginArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("login: not built yet")
}

#[derive(clap::Args, Debug)]
pub struct LogoutArgs {
    /// Arguments.
    pub args: Vec<String>,
}

pub fn logout(_g: &Globals, _a: LogoutArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("logout: not built yet")
}
