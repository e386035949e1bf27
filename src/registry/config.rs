//! Registry configuration: mirrors, insecure (plain HTTP) hosts and per-registry CA
//! directories.
//!
//! Read, in order, from `/etc/imgctl/registries.toml` and
//! `$XDG_CONFIG_HOME/imgctl/registries.toml` (default `~/.config`); entries of the
//! later file replace earlier ones for the same location. `IMGCTL_REGISTRY_MIRROR`
//! (comma separated `host[:port]`) adds mirrors for `docker.io` in front of the
//! configured ones.
//!
//! ```toml
//! [[registry]]
//! location = "docker.io"          # registry host[:port] the entry is about
//! mirrors = ["127.0.0.1:5000"]   # tried in order before the registry itself
//! insecure = false               # true: plain HTTP
//! ```
//!
//! CA certificates for a registry are the `*.crt` files in
//! `/etc/imgctl/certs.d/<host[:port]>/` and `$XDG_CONFIG_HOME/imgctl/certs.d/<host[:port]>/`,
//! added to the system roots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::RegistryError;
use crate::oci::DEFAULT_REGISTRY;

/// The environment variable naming docker.io mirrors.
pub const MIRROR_ENV: &str = "IMGCTL_REGISTRY_MIRROR";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    registry: Vec<Entry>,
}

/// One `[[registry]]` table.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub location: String,
    #[serde(default)]
    pub mirrors: Vec<String>,
    #[serde(default)]
    pub insecure: bool,
}

/// The merged configuration.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    entries: BTreeMap<String, Entry>,
    env_mirrors: Vec<String>,
    cert_dirs: Vec<PathBuf>,
}

impl RegistryConfig {
    /// Load from the standard places and the environment.
    pub fn load() -> Result<RegistryConfig, RegistryError> {
        let mut files = vec![PathBuf::from("/etc/imgctl/registries.toml")];
        let mut cert_dirs = vec![PathBuf::from("/etc/imgctl/certs.d")];
        if let Some(dir) = user_config_dir() {
            files.push(dir.join("imgctl/registries.toml"));
            cert_dirs.push(dir.join("imgctl/certs.d"));
        }
        let mut cfg = RegistryConfig {
            cert_dirs,
            ..RegistryConfig::default()
        };
        for f in files {
            cfg.merge_file(&f)?;
        }
        if let Ok(v) = std::env::var(MIRROR_ENV) {
            cfg.env_mirrors = parse_mirror_list(&v)?;
        }
        Ok(cfg)
    }

    /// Merge one TOML file; a missing file is not an error.
    pub fn merge_file(&mut self, path: &Path) -> Result<(), RegistryError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(RegistryError::ConfigFile {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                })
            }
        };
        self.merge_str(&text)
            .map_err(|detail| RegistryError::ConfigFile {
                path: path.to_path_buf(),
                detail,
            })
    }

    fn merge_str(&mut self, text: &str) -> Result<(), String> {
        let parsed: FileConfig = toml::from_str(text).map_err(|e| e.message().to_string())?;
        for e in parsed.registry {
            if e.location.is_empty() || e.location.contains('/') {
                return Err(format!(
                    "bad registry location {:?} (expected host[:port])",
                    e.location
                ));
            }
            for m in &e.mirrors {
                check_host(m)?;
            }
            self.entries.insert(e.location.clone(), e);
        }
        Ok(())
    }

    /// Hosts to try for `registry`, mirrors first, the registry itself last.
    pub fn endpoints(&self, registry: &str) -> Vec<String> {
        let mut out = Vec::new();
        if registry == DEFAULT_REGISTRY {
            out.extend(self.env_mirrors.iter().cloned());
        }
        if let Some(e) = self.entries.get(registry) {
            out.extend(e.mirrors.iter().cloned());
        }
        out.push(registry.to_string());
        out.dedup();
        out
    }

    /// Plain HTTP for loopback hosts and those configured `insecure` (a mirror given
    /// in the environment counts as configured by the user).
    pub fn is_insecure(&self, host: &str) -> bool {
        let bare = host_without_port(host);
        matches!(bare, "localhost" | "127.0.0.1" | "::1" | "[::1]")
            || bare.starts_with("127.")
            || self.entries.get(host).is_some_and(|e| e.insecure)
            || self.env_mirrors.iter().any(|m| m == host)
    }

    /// PEM files to trust for `host` besides the system roots.
    pub fn ca_files(&self, host: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for d in &self.cert_dirs {
            let Ok(rd) = std::fs::read_dir(d.join(host)) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "crt" || x == "pem") {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }
}

impl RegistryConfig {
    /// Where a CA certificate for `host` would be read from, for error hints.
    pub fn ca_dir_hint(&self, host: &str) -> String {
        self.cert_dirs
            .iter()
            .map(|d| format!("{}/ca.crt", d.join(host).display()))
            .collect::<Vec<_>>()
            .join(" or ")
    }
}

fn user_config_dir() -> Option<PathBuf> {
    match std::env::var_os("XDG_CONFIG_HOME") {
        Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
        _ => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")),
    }
}

/// `host[:port]` without the port (IPv6 literals keep their brackets stripped).
pub fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
}

fn check_host(h: &str) -> Result<(), String> {
    let ok = !h.is_empty()
        && !h.contains('/')
        && h.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".-:[]".contains(&c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad mirror {h:?} (expected host[:port], no scheme or path)"
        ))
    }
}

fn parse_mirror_list(v: &str) -> Result<Vec<String>, RegistryError> {
    let mut out = Vec::new();
    for m in v.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        check_host(m).map_err(|detail| RegistryError::ConfigFile {
            path: PathBuf::from(format!("${MIRROR_ENV}")),
            detail,
        })?;
        out.push(m.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_and_insecure() {
        let mut c = RegistryConfig::default();
        c.merge_str(
            r#"
[[registry]]
location = "docker.io"
mirrors = ["mirror.example:5000"]

[[registry]]
location = "reg.example:8443"
insecure = true
"#,
        )
        .unwrap();
        c.env_mirrors = parse_mirror_list("127.0.0.1:9999").unwrap();
        assert_eq!(
            c.endpoints("docker.io"),
            ["127.0.0.1:9999", "mirror.example:5000", "docker.io"]
        );
        assert_eq!(c.endpoints("quay.example"), ["quay.example"]);
        assert!(c.is_insecure("reg.example:8443"));
        assert!(c.is_insecure("localhost:5000"));
        assert!(c.is_insecure("127.0.0.1"));
        assert!(!c.is_insecure("reg.example"));
        assert!(c.merge_str("[[registry]]\nlocation = \"a/b\"\n").is_err());
        assert!(c.merge_str("bogus = 1\n").is_err());
        assert!(parse_mirror_list("http://x").is_err());
    }
}
