//! What a detached container's monitor is given ([`MonitorConfig`], kept as
//! `monitor.json`, schemas/container-monitor.schema.json): the image, the parsed
//! run flags, `--restart`, the healthcheck, stop signal and timeout, log limits.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Error, RunFlags};
use crate::oci::RunConfig;

/// Where the container's root filesystem comes from (resolved by the CLI).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ImageSource {
    /// An image in the store, by ID.
    Store { id: String },
    /// An `oci:DIR[:TAG]` layout.
    Layout { name: String },
    /// `--rootfs DIR` as it is.
    Dir {
        path: PathBuf,
        config: Option<Box<RunConfig>>,
    },
}

/// `--restart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RestartPolicy {
    #[default]
    No,
    /// Restart after a non-zero exit, at most N times (unlimited without N).
    OnFailure(Option<u32>),
    Always,
    UnlessStopped,
}

impl RestartPolicy {
    /// Parse `no`, `on-failure[:N]`, `always`, `unless-stopped`.
    pub fn parse(s: &str) -> Result<RestartPolicy, Error> {
        let bad = || Error::BadFlag {
            flag: "--restart".into(),
            value: s.into(),
            hint: "no, on-failure[:N], always or unless-stopped".into(),
        };
        Ok(match s.split_once(':') {
            None if s == "no" || s.is_empty() => RestartPolicy::No,
            None if s == "always" => RestartPolicy::Always,
            None if s == "unless-stopped" => RestartPolicy::UnlessStopped,
            None if s == "on-failure" => RestartPolicy::OnFailure(None),
            Some(("on-failure", n)) => {
                RestartPolicy::OnFailure(Some(n.parse().map_err(|_| bad())?))
            }
            _ => return Err(bad()),
        })
    }

    /// Docker's name (`HostConfig.RestartPolicy.Name`).
    pub fn name(&self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure(_) => "on-failure",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
        }
    }

    /// `MaximumRetryCount` (0 = unlimited).
    pub fn max_retries(&self) -> u32 {
        match self {
            RestartPolicy::OnFailure(Some(n)) => *n,
            _ => 0,
        }
    }

    /// Restart after this exit? (`restarts` done so far; a stop by the user never
    /// restarts.)
    pub fn restarts(&self, exit_code: u8, restarts: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
            RestartPolicy::OnFailure(max) => exit_code != 0 && max.is_none_or(|m| restarts < m),
        }
    }
}

/// A healthcheck (the image's `HEALTHCHECK`, or `--health-*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthConfig {
    /// Docker's form: `["CMD-SHELL", "cmd"]` or `["CMD", "prog", "arg"...]`.
    pub test: Vec<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub start_period_ms: u64,
    pub retries: u32,
}

/// Everything the monitor needs; the CLI writes it, `start` reads it back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorConfig {
    pub root: PathBuf,
    pub id: String,
    pub name: Option<String>,
    /// The image argument as typed.
    pub image_name: Option<String>,
    pub image_id: Option<String>,
    pub image: ImageSource,
    pub flags: RunFlags,
    pub labels: std::collections::BTreeMap<String, String>,
    pub remove: bool,
    pub init: bool,
    pub interactive: bool,
    pub cgroup_root: PathBuf,
    pub restart: RestartPolicy,
    pub health: Option<HealthConfig>,
    /// Signal number `stop` sends first.
    pub stop_signal: i32,
    /// Seconds `stop` waits before SIGKILL.
    pub stop_timeout: u64,
    pub log_max_size: u64,
    pub log_max_files: u32,
}
