//! `imgctl login` / `imgctl logout`: check credentials against a registry and keep
//! them in Docker's client config (or its credential helper).

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{bail, Context};

use super::Globals;
use crate::image::{self, Credentials};
use crate::oci::{Reference, DEFAULT_REGISTRY};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  imgctl login 127.0.0.1:5000 -u admin\n  printf %s \"$TOKEN\" | imgctl login --password-stdin -u ci registry.internal:5000\n  imgctl login"
)]
pub struct LoginArgs {
    /// Registry host[:port] (default: docker.io).
    pub server: Option<String>,

    /// User name (prompted for on a terminal when absent).
    #[arg(short, long)]
    pub username: Option<String>,

    /// Password (visible in the process list; prefer --password-stdin).
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,

    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  imgctl logout 127.0.0.1:5000\n  imgctl logout")]
pub struct LogoutArgs {
    /// Registry host[:port] (default: docker.io).
    pub server: Option<String>,
}

/// `https://host:port/v2/` or `host` -> `host[:port]`; docker.io synonyms -> docker.io.
fn server_host(s: Option<&str>) -> anyhow::Result<String> {
    let Some(s) = s else {
        return Ok(DEFAULT_REGISTRY.to_string());
    };
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or("");
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".-:[]".contains(&c));
    if !valid {
        bail!("invalid registry {s:?}: expected host[:port]");
    }
    // Normalise as a reference would (legacy docker.io spellings -> docker.io).
    let probe = Reference::parse(&format!("{host}/probe"))
        .with_context(|| format!("invalid registry {host:?}: expected host[:port]"))?;
    if !host.contains(['.', ':']) && host != "localhost" {
        bail!("invalid registry {host:?}: expected host[:port] (a name with a dot or a port, or localhost)");
    }
    Ok(probe.registry().to_string())
}

fn prompt(label: &str, hide: bool) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("{label} required: pass it as an option (stdin is not a terminal)");
    }
    eprint!("{label}: ");
    std::io::stderr().flush().ok();
    let saved = if hide {
        rustix::termios::tcgetattr(&stdin).ok().inspect(|t| {
            let mut quiet = t.clone();
            quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
            let _ =
                rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &quiet);
        })
    } else {
        None
    };
    let mut line = String::new();
    let res = stdin.lock().read_line(&mut line);
    if let Some(t) = saved {
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &t);
        eprintln!();
    }
    res.context("read from terminal")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub fn login(_g: &Globals, a: LoginArgs) -> anyhow::Result<ExitCode> {
    let host = server_host(a.server.as_deref())?;
    let username = match a.username {
        Some(u) => u,
        None => prompt("Username", false)?,
    };
    let password = if a.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut s)
            .context("read password from stdin")?;
        s.trim_end_matches(['\r', '\n']).to_string()
    } else {
        match a.password {
            Some(p) => p,
            None => prompt("Password", true)?,
        }
    };
    if username.is_empty() || password.is_empty() {
        bail!("login {host}: username and password must not be empty");
    }
    let creds = Credentials {
        username,
        secret: password,
    };
    let saved = image::login(&host, creds)?;
    writeln!(
        std::io::stdout().lock(),
        "Login Succeeded ({host}, saved in {})",
        saved.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn logout(_g: &Globals, a: LogoutArgs) -> anyhow::Result<ExitCode> {
    let host = server_host(a.server.as_deref())?;
    let mut out = std::io::stdout().lock();
    if image::logout(&host)? {
        writeln!(out, "Removed login credentials for {host}")?;
    } else {
        writeln!(out, "Not logged in to {host}")?;
    }
    Ok(ExitCode::SUCCESS)
}
