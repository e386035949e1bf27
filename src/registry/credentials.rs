//! Credentials in Docker's client config (`$DOCKER_CONFIG/config.json`, default
//! `~/.docker/config.json`): `auths` entries with a base64 `auth` (or `username` /
//! `password`), a default `credsStore` and per-registry `credHelpers`, which name
//! `docker-credential-<helper>` programs speaking the helper protocol (`get`, `store`,
//! `erase` with JSON on stdin/stdout).
//!
//! The file is rewritten atomically with mode 0600, keeping every field imgctl does
//! not know.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::RegistryError;
use crate::oci::DEFAULT_REGISTRY;

/// The key Docker uses for docker.io in `auths` and helpers.
const DOCKER_IO_KEY: &str = "https://index.docker.io/v1/";

/// A user name and secret for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

/// The Docker client config file.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
}

fn cfg_err(path: &Path, detail: impl Into<String>) -> RegistryError {
    RegistryError::Credentials {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

impl DockerConfig {
    /// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    pub fn default_location() -> DockerConfig {
        let dir = match std::env::var_os("DOCKER_CONFIG") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/root"))
                .join(".docker"),
        };
        DockerConfig {
            path: dir.join("config.json"),
        }
    }

    pub fn at(path: &Path) -> DockerConfig {
        DockerConfig {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<Map<String, Value>, RegistryError> {
        match std::fs::read(&self.path) {
            Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(Map::new()),
            Ok(b) => match serde_json::from_slice::<Value>(&b) {
                Ok(Value::Object(m)) => Ok(m),
                Ok(_) => Err(cfg_err(&self.path, "not a JSON object")),
                Err(e) => Err(cfg_err(&self.path, format!("invalid JSON: {e}"))),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
            Err(e) => Err(cfg_err(&self.path, e.to_string())),
        }
    }

    fn write(&self, m: &Map<String, Value>) -> Result<(), RegistryError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| cfg_err(dir, e.to_string()))?;
        let mut body =
            serde_json::to_vec_pretty(m).map_err(|e| cfg_err(&self.path, e.to_string()))?;
        body.push(b'\n');
        crate::store::write_atomic(&self.path, &body, 0o600)
            .map_err(|e| cfg_err(&self.path, e.to_string()))
    }

    /// The helper responsible for `registry`, if any.
    fn helper_for(m: &Map<String, Value>, registry: &str) -> Option<String> {
        let per = m
            .get("credHelpers")
            .and_then(|h| h.get(registry))
            .and_then(Value::as_str);
        per.or_else(|| m.get("credsStore").and_then(Value::as_str))
            .filter(|h| !h.is_empty())
            .map(str::to_string)
    }

    /// Credentials for `registry` (`host[:port]`), if configured.
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>, RegistryError> {
        let m = self.read()?;
        let keys = auth_keys(registry);
        if let Some(auths) = m.get("auths").and_then(Value::as_object) {
            for k in &keys {
                if let Some(entry) = auths.get(k) {
                    if let Some(c) = decode_entry(entry)
                        .map_err(|d| cfg_err(&self.path, format!("auths[{k:?}]: {d}")))?
                    {
                        return Ok(Some(c));
                    }
                }
            }
        }
        match Self::helper_for(&m, registry) {
            Some(h) => helper_get(&h, server_url(registry)),
            None => Ok(None),
        }
    }

    /// Save credentials (through the helper when one is configured).
    pub fn store(&self, registry: &str, c: &Credentials) -> Result<(), RegistryError> {
        let mut m = self.read()?;
        if let Some(h) = Self::helper_for(&m, registry) {
            helper_store(&h, server_url(registry), c)?;
            // Docker records an empty entry so `auths` lists the registry.
            let auths = m.entry("auths").or_insert_with(|| json!({}));
            if let Some(a) = auths.as_object_mut() {
                a.insert(server_url(registry).to_string(), json!({}));
            }
            return self.write(&m);
        }
        let auths = m.entry("auths").or_insert_with(|| json!({}));
        let Some(a) = auths.as_object_mut() else {
            return Err(cfg_err(&self.path, "`auths` is not an object"));
        };
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", c.username, c.secret));
        a.insert(server_url(registry).to_string(), json!({ "auth": token }));
        self.write(&m)
    }

    /// Remove credentials; `Ok(false)` when there were none.
    pub fn erase(&self, registry: &str) -> Result<bool, RegistryError> {
        let mut m = self.read()?;
        let mut found = false;
        if let Some(a) = m.get_mut("auths").and_then(Value::as_object_mut) {
            for k in auth_keys(registry) {
                found |= a.remove(&k).is_some();
            }
        }
        if let Some(h) = Self::helper_for(&m, registry) {
            found |= helper_erase(&h, server_url(registry))?;
        }
        if found {
            self.write(&m)?;
        }
        Ok(found)
    }
}

/// The key a registry is saved under.
fn server_url(registry: &str) -> &str {
    if registry == DEFAULT_REGISTRY {
        DOCKER_IO_KEY
    } else {
        registry
    }
}

/// Keys that may name `registry` in `auths` (Docker accepts URL forms too).
fn auth_keys(registry: &str) -> Vec<String> {
    let mut keys = vec![
        server_url(registry).to_string(),
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
        format!("https://{registry}/v1/"),
        format!("https://{registry}/v2/"),
    ];
    keys.dedup();
    keys
}

fn decode_entry(v: &Value) -> Result<Option<Credentials>, String> {
    if let Some(a) = v
        .get("auth")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.trim())
            .map_err(|e| format!("`auth` is not base64: {e}"))?;
        let s = String::from_utf8(raw).map_err(|_| "`auth` is not UTF-8".to_string())?;
        let (u, p) = s
            .split_once(':')
            .ok_or_else(|| "`auth` is not user:password".to_string())?;
        return Ok(Some(Credentials {
            username: u.into(),
            secret: p.into(),
        }));
    }
    let u = v.get("username").and_then(Value::as_str);
    let p = v.get("password").and_then(Value::as_str);
    Ok(match (u, p) {
        (Some(u), Some(p)) => Some(Credentials {
            username: u.into(),
            secret: p.into(),
        }),
        _ => None,
    })
}

fn helper_cmd(helper: &str) -> Result<Command, RegistryError> {
    if !helper
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
    {
        return Err(RegistryError::Helper {
            helper: helper.into(),
            detail: "invalid helper name".into(),
        });
    }
    let mut c = Command::new(format!("docker-credential-{helper}"));
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Ok(c)
}

fn run_helper(helper: &str, verb: &str, input: &[u8]) -> Result<(bool, String), RegistryError> {
    let herr = |detail: String| RegistryError::Helper {
        helper: helper.into(),
        detail,
    };
    let mut child = helper_cmd(helper)?
        .arg(verb)
        .spawn()
        .map_err(|e| herr(format!("cannot run docker-credential-{helper}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).map_err(|e| herr(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| herr(e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let text = if text.is_empty() {
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    } else {
        text
    };
    Ok((out.status.success(), text))
}

fn helper_get(helper: &str, server: &str) -> Result<Option<Credentials>, RegistryError> {
    let (ok, text) = run_helper(helper, "get", server.as_bytes())?;
    if !ok {
        if text.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        return Err(RegistryError::Helper {
            helper: helper.into(),
            detail: format!("get {server}: {text}"),
        });
    }
    let v: Value = serde_json::from_str(&text).map_err(|e| RegistryError::Helper {
        helper: helper.into(),
        detail: format!("get {server}: bad JSON: {e}"),
    })?;
    let u = v.get("Username").and_then(Value::as_str).unwrap_or("");
    let s = v.get("Secret").and_then(Value::as_str).unwrap_or("");
    if s.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials {
        username: u.into(),
        secret: s.into(),
    }))
}

fn helper_store(helper: &str, server: &str, c: &Credentials) -> Result<(), RegistryError> {
    let body = json!({"ServerURL": server, "Username": c.username, "Secret": c.secret});
    let (ok, text) = run_helper(helper, "store", body.to_string().as_bytes())?;
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Helper {
            helper: helper.into(),
            detail: format!("store {server}: {text}"),
        })
    }
}

fn helper_erase(helper: &str, server: &str) -> Result<bool, RegistryError> {
    let (ok, text) = run_helper(helper, "erase", server.as_bytes())?;
    if ok {
        Ok(true)
    } else if text.to_ascii_lowercase().contains("not found") {
        Ok(false)
    } else {
        Err(RegistryError::Helper {
            helper: helper.into(),
            detail: format!("erase {server}: {text}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn auths_round_trip_and_keep_unknown_fields() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("config.json");
        std::fs::write(
            &p,
            r#"{"psFormat":"x","auths":{"https://other.example":{"auth":"dTpw"}}}"#,
        )
        .unwrap();
        let c = DockerConfig::at(&p);
        assert_eq!(
            c.get("other.example").unwrap(),
            Some(Credentials {
                username: "u".into(),
                secret: "p".into()
            })
        );
        let cred = Credentials {
            username: "me".into(),
            secret: "s:e:c".into(),
        };
        c.store("127.0.0.1:5000", &cred).unwrap();
        assert_eq!(c.get("127.0.0.1:5000").unwrap(), Some(cred));
        let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(v["psFormat"], "x");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(c.erase("127.0.0.1:5000").unwrap());
        assert_eq!(c.get("127.0.0.1:5000").unwrap(), None);
        assert!(!c.erase("127.0.0.1:5000").unwrap());
        c.store(
            "docker.io",
            &Credentials {
                username: "a".into(),
                secret: "b".into(),
            },
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert!(v["auths"][DOCKER_IO_KEY]["auth"].is_string());
    }

    #[test]
    fn credential_helpers_are_used() {
        let t = tempfile::tempdir().unwrap();
        let bin = t.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let helper = bin.join("docker-credential-imgctltest");
        // A helper that knows one registry and stores into a file next to itself.
        std::fs::write(
            &helper,
            format!(
                "#!/bin/sh\nread -r input\ncase \"$1\" in\nget) if [ \"$input\" = reg.example ]; then echo '{{\"Username\":\"hu\",\"Secret\":\"hs\"}}'; else echo 'credentials not found in native keychain'; exit 1; fi;;\nstore) echo \"$input\" > {dir}/stored;;\nerase) echo erased > {dir}/erased;;\nesac\n",
                dir = t.path().display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        // PATH is process-wide; this test only adds a directory.
        std::env::set_var("PATH", path);
        let p = t.path().join("config.json");
        std::fs::write(&p, r#"{"credHelpers":{"reg.example":"imgctltest"}}"#).unwrap();
        let c = DockerConfig::at(&p);
        assert_eq!(
            c.get("reg.example").unwrap(),
            Some(Credentials {
                username: "hu".into(),
                secret: "hs".into()
            })
        );
        assert_eq!(c.get("nothere.example").unwrap(), None);
        c.store(
            "reg.example",
            &Credentials {
                username: "x".into(),
                secret: "y".into(),
            },
        )
        .unwrap();
        let stored = std::fs::read_to_string(t.path().join("stored")).unwrap();
        assert!(stored.contains("\"Secret\":\"y\""), "{stored}");
        assert!(c.erase("reg.example").unwrap());
    }
}
