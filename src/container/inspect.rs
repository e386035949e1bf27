//! `imgctl inspect CONTAINER` and the rows of `ps`: Docker's keys
//! (schemas/container-inspect.schema.json, schemas/ps.schema.json), built from
//! `state.json`, `config.json` and `monitor.json`.

use std::path::Path;

use serde_json::{json, Value};

use super::control::{self, Summary};
use super::monitor::{MonitorConfig, CONFIG};
use super::state::{self, State, Status};
use super::{exec::read_spec, owner, Error};

fn rfc3339(secs: Option<u64>) -> String {
    match secs {
        Some(s) => super::logs::rfc3339_nanos(s as i128 * 1_000_000_000),
        None => "0001-01-01T00:00:00Z".into(),
    }
}

fn monitor_config(dir: &Path) -> Option<MonitorConfig> {
    serde_json::from_slice(&std::fs::read(dir.join(CONFIG)).ok()?).ok()
}

/// Docker's `State.Status`: created, running, restarting (stopped, its live
/// monitor waiting out the back-off), exited.
pub fn docker_status(st: &State, alive: bool) -> &'static str {
    match st.status {
        Status::Created => "created",
        Status::Running => "running",
        Status::Stopped if st.restarting && alive => "restarting",
        Status::Stopped => "exited",
    }
}

/// "3 seconds", "About a minute", "2 hours" (Docker's units).
pub fn human_duration(secs: u64) -> String {
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if s < 7200 => "About an hour".into(),
        s if s < 48 * 3600 => format!("{} hours", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// `ps`'s STATUS column: `Up 3 seconds (healthy)`, `Exited (0) 2 minutes ago`.
pub fn status_text(st: &State, now: u64, alive: bool) -> String {
    match st.status {
        Status::Created => "Created".into(),
        Status::Running => {
            let up = human_duration(now.saturating_sub(st.started.unwrap_or(st.created)));
            match &st.health {
                Some(h) if h.status == state::HealthStatus::Starting => {
                    format!("Up {up} (health: starting)")
                }
                Some(h) => format!("Up {up} ({})", h.status.as_str()),
                None => format!("Up {up}"),
            }
        }
        Status::Stopped => {
            let ago = human_duration(now.saturating_sub(st.finished.unwrap_or(st.created)));
            if st.restarting && alive {
                return format!("Restarting ({}) {ago} ago", st.exit_code.unwrap_or(0));
            }
            match st.exit_code {
                Some(c) => format!("Exited ({c}) {ago} ago"),
                None => format!("Exited (unknown) {ago} ago"),
            }
        }
    }
}

/// `docker ps --format '{{json .}}'` keys for one container.
pub fn ps_row(s: &Summary, now: u64) -> Value {
    let st = &s.state;
    let labels = st
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    json!({
        "ID": st.id.chars().take(12).collect::<String>(),
        "Image": st.image.clone().unwrap_or_default(),
        "Command": s.command.join(" "),
        "CreatedAt": rfc3339(Some(st.created)),
        "RunningFor": format!("{} ago", human_duration(now.saturating_sub(st.created))),
        "Status": status_text(st, now, s.alive),
        "State": docker_status(st, s.alive),
        "Names": st.name.clone().unwrap_or_default(),
        "Labels": labels,
        "Ports": st.network.as_ref().map(|n| n.ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")).unwrap_or_default(),
        "Mounts": "",
        "Networks": st.network.as_ref().map(|n| n.network.clone()).unwrap_or_default(),
        "Size": "",
    })
}

/// `ps --filter KEY=VALUE` on one container.
pub fn matches(s: &Summary, key: &str, value: &str) -> Result<bool, Error> {
    let st = &s.state;
    Ok(match key {
        "status" => docker_status(st, s.alive) == value,
        "name" => st.name.as_deref().is_some_and(|n| n.contains(value)),
        "id" => st.id.starts_with(value),
        "label" => match value.split_once('=') {
            Some((k, v)) => st.labels.get(k).is_some_and(|x| x == v),
            None => st.labels.contains_key(value),
        },
        "ancestor" => {
            st.image.as_deref() == Some(value)
                || st.image_id.as_deref().is_some_and(|i| {
                    i == value
                        || i.strip_prefix("sha256:")
                            .is_some_and(|h| h.starts_with(value) && value.len() >= 4)
                })
        }
        "exited" => {
            st.status == Status::Stopped
                && st.exit_code.map(|c| c.to_string()).as_deref() == Some(value)
        }
        "health" => {
            st.health
                .as_ref()
                .map(|h| h.status.as_str())
                .unwrap_or("none")
                == value
        }
        _ => {
            return Err(Error::BadFlag {
                flag: "--filter".into(),
                value: format!("{key}={value}"),
                hint: "status=, name=, id=, label=, ancestor=, exited= or health=".into(),
            })
        }
    })
}

/// The Docker-like inspect object of container `id`.
pub fn inspect(root: &Path, id: &str) -> Result<Value, Error> {
    let dir = control::state_dir(root, id);
    let st = State::load(&dir)?;
    let spec = read_spec(&dir).ok();
    let mon = monitor_config(&dir);
    let process = spec.as_ref().and_then(|s| s.process().clone());
    let args: Vec<String> = process
        .as_ref()
        .and_then(|p| p.args().clone())
        .unwrap_or_default();
    let env: Vec<String> = process
        .as_ref()
        .and_then(|p| p.env().clone())
        .unwrap_or_default();
    let alive = owner::is_owned(root, id);
    let running = st.status == Status::Running && alive;
    let health = st.health.as_ref().map(|h| {
        json!({
            "Status": h.status.as_str(),
            "FailingStreak": h.failing_streak,
            "Log": h.log.iter().map(|p| json!({
                "Start": super::logs::rfc3339_nanos(p.start as i128 * 1_000_000),
                "End": super::logs::rfc3339_nanos(p.end as i128 * 1_000_000),
                "ExitCode": p.exit_code,
                "Output": p.output,
            })).collect::<Vec<_>>(),
        })
    });
    let mut state = json!({
        "Status": docker_status(&st, alive),
        "Running": running,
        "Paused": false,
        "Restarting": docker_status(&st, alive) == "restarting",
        "OOMKilled": st.oom_killed,
        "Dead": false,
        "Pid": if running { st.pid.unwrap_or(0) } else { 0 },
        "ExitCode": st.exit_code.map(i64::from).unwrap_or(if st.status == Status::Stopped { -1 } else { 0 }),
        "Error": "",
        "StartedAt": rfc3339(st.started),
        "FinishedAt": rfc3339(st.finished),
    });
    if let (Some(h), Some(o)) = (health, state.as_object_mut()) {
        o.insert("Health".into(), h);
    }
    let restart = mon.as_ref().map(|m| m.restart).unwrap_or_default();
    let healthcheck = mon.as_ref().and_then(|m| m.health.as_ref()).map(|h| {
        json!({
            "Test": h.test,
            "Interval": h.interval_ms * 1_000_000,
            "Timeout": h.timeout_ms * 1_000_000,
            "StartPeriod": h.start_period_ms * 1_000_000,
            "Retries": h.retries,
        })
    });
    let hostname = spec
        .as_ref()
        .and_then(|s| s.hostname().clone())
        .unwrap_or_default();
    let log_path = dir.join(super::logs::LOG_FILE);
    let network = st.network.as_ref().map(|n| {
        let mut ports = serde_json::Map::new();
        for p in &n.ports {
            let key = format!("{}/{}", p.container_port, p.proto.as_str());
            let bind = json!({
                "HostIp": p.host_ip.map(|i| i.to_string()).unwrap_or_else(|| "0.0.0.0".into()),
                "HostPort": p.host_port.to_string(),
            });
            match ports.get_mut(&key).and_then(|v| v.as_array_mut()) {
                Some(a) => a.push(bind),
                None => {
                    ports.insert(key, json!([bind]));
                }
            }
        }
        json!({
            "IPAddress": n.ip.to_string(),
            "IPPrefixLen": n.prefix,
            "Gateway": n.gateway.to_string(),
            "MacAddress": n.mac,
            "Ports": ports,
            "Networks": { n.network.clone(): {
                "IPAddress": n.ip.to_string(),
                "IPPrefixLen": n.prefix,
                "Gateway": n.gateway.to_string(),
                "MacAddress": n.mac,
            }},
        })
    });
    Ok(json!({
        "Id": st.id,
        "Created": rfc3339(Some(st.created)),
        "Path": args.first().cloned().unwrap_or_default(),
        "Args": args.iter().skip(1).cloned().collect::<Vec<_>>(),
        "State": state,
        "Image": st.image_id.clone().unwrap_or_default(),
        "Name": format!("/{}", st.name.clone().unwrap_or_default()),
        "RestartCount": st.restart_count,
        "NetworkSettings": network.unwrap_or_else(|| json!({
            "IPAddress": "", "IPPrefixLen": 0, "Gateway": "", "MacAddress": "",
            "Ports": {}, "Networks": {},
        })),
        "LogPath": if log_path.exists() { log_path.display().to_string() } else { String::new() },
        "HostConfig": {
            "RestartPolicy": { "Name": restart.name(), "MaximumRetryCount": restart.max_retries() },
            "AutoRemove": mon.as_ref().is_some_and(|m| m.remove),
            "Privileged": mon.as_ref().is_some_and(|m| m.flags.privileged),
            "Init": mon.as_ref().is_some_and(|m| m.init),
        },
        "Config": {
            "Hostname": hostname,
            "Env": env,
            "Cmd": args,
            "Image": st.image.clone().unwrap_or_default(),
            "WorkingDir": process.as_ref().map(|p| p.cwd().display().to_string()).unwrap_or_default(),
            "Labels": st.labels,
            "Tty": process.as_ref().and_then(|p| p.terminal()).unwrap_or(false),
            "OpenStdin": mon.as_ref().is_some_and(|m| m.interactive),
            "StopSignal": mon.as_ref().map(|m| m.stop_signal).unwrap_or(libc::SIGTERM),
            "StopTimeout": mon.as_ref().map(|m| m.stop_timeout).unwrap_or(10),
            "Healthcheck": healthcheck,
        },
    }))
}
