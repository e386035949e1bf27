//! Real-registry test harness: Debian's `docker-registry` on 127.0.0.1 with a free
//! port and temp storage (open, htpasswd basic auth, or token auth backed by a small
//! token issuer written here), fixture images generated as OCI layouts with known
//! content and pushed with `skopeo copy` (an independent client), and a small
//! fault-injecting HTTP proxy for what a registry never does by itself (cut or slow
//! transfers, unknown media types, redirects to another origin).
//!
//! Files: this one runs the registry (and its TLS and HTTP bits); [`token`] is the
//! token issuer, [`proxy`] the fault proxy, [`image`] the fixture images and layouts.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use super::{have, require, tempdir};

mod image;
mod proxy;
mod token;

pub use image::*;
pub use proxy::*;
pub use token::*;

/// True (or a strict-mode failure) when the registry tools are installed.
pub fn registry_tools() -> bool {
    require(
        have("docker-registry") && have("skopeo") && have("htpasswd") && have("openssl"),
        "docker-registry, skopeo, htpasswd and openssl (scripts/install-deps.sh)",
    )
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

pub fn digest_of(b: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(b))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait_listening(addr: &str, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{what} did not start on {addr}; log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// How a registry authenticates clients.
pub enum Auth<'a> {
    Open,
    Basic { user: &'a str, pass: &'a str },
    Token(&'a TokenIssuer),
}

/// A running `docker-registry`; killed on drop.
pub struct Registry {
    pub addr: String,
    pub storage: PathBuf,
    /// The registry's stdout: its access log (combined log format) among others.
    pub log: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Start a registry. `storage` shares another registry's storage (e.g. an open
    /// one used for pushing); `None` makes a fresh one.
    pub fn start(auth: Auth<'_>, storage: Option<&Path>) -> Registry {
        Registry::start_with(auth, storage, None)
    }

    /// Like [`Registry::start`], serving HTTPS with `tls` = (certificate, key).
    pub fn start_with(
        auth: Auth<'_>,
        storage: Option<&Path>,
        tls: Option<(&Path, &Path)>,
    ) -> Registry {
        let dir = tempdir();
        let storage = storage
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.path().join("storage"));
        std::fs::create_dir_all(&storage).unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let auth_yaml = match auth {
            Auth::Open => String::new(),
            Auth::Basic { user, pass } => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, pass])
                    .output()
                    .expect("run htpasswd");
                assert!(out.status.success(), "htpasswd failed");
                let f = dir.path().join("htpasswd");
                std::fs::write(&f, out.stdout).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n",
                    f.display()
                )
            }
            Auth::Token(t) => format!(
                "auth:\n  token:\n    realm: http://{}/token\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                t.addr,
                TokenIssuer::SERVICE,
                TokenIssuer::ISSUER,
                t.cert.display()
            ),
        };
        let tls_yaml = match tls {
            Some((cert, key)) => format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ),
            None => String::new(),
        };
        let cfg = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{tls_yaml}{auth_yaml}",
            storage.display()
        );
        let cfg_path = dir.path().join("config.yml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let log = dir.path().join("registry.log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg_path)
            // O_APPEND, so `clear_log` truncating it leaves no hole before new lines.
            .stdout(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            ))
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("registry.err")).unwrap(),
            ))
            .spawn()
            .expect("start docker-registry");
        wait_listening(&addr, "docker-registry", &dir.path().join("registry.err"));
        Registry {
            addr,
            storage,
            log,
            child,
            _dir: dir,
        }
    }

    pub fn open() -> Registry {
        Registry::start(Auth::Open, None)
    }

    /// The requests of the access log so far: (method, path with query, status).
    pub fn access_log(&self) -> Vec<Access> {
        let text = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(&text)
            .lines()
            .filter_map(|l| {
                // ... "METHOD /path HTTP/1.1" STATUS SIZE ...
                let start = l.find("\"")?;
                let rest = &l[start + 1..];
                let end = rest.find('"')?;
                let mut req = rest[..end].split(' ');
                let method = req.next()?.to_string();
                let path = req.next()?.to_string();
                let status = rest[end + 1..].split_whitespace().next()?.parse().ok()?;
                path.starts_with("/v2/").then_some(Access {
                    method,
                    path,
                    status,
                })
            })
            .collect()
    }

    /// Forget the access log so far (the next [`Registry::access_log`] starts here).
    pub fn clear_log(&self) {
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&self.log);
    }

    /// The file holding a blob in the registry's filesystem storage.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request of a registry's access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub method: String,
    pub path: String,
    pub status: u16,
}

impl Access {
    /// A request on a blob or an upload (not a manifest, not /v2/ itself).
    pub fn is_blob(&self) -> bool {
        self.path.contains("/blobs/")
    }

    pub fn is_upload(&self) -> bool {
        self.path.contains("/blobs/uploads/")
    }
}

/// A test CA and a server certificate for 127.0.0.1 signed by it, in `dir`:
/// returns (ca.crt, server.crt, server.key).
pub fn make_tls(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=imgctl test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.crt",
    ]);
    (
        dir.join("ca.crt"),
        dir.join("server.crt"),
        dir.join("server.key"),
    )
}

// ---------------------------------------------------------------- HTTP bits

/// Read an HTTP head (through the blank line).
pub(super) fn read_head(s: &mut TcpStream) -> Option<String> {
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return None,
        }
        // A TLS ClientHello on this plain-HTTP port: answer as Go's server does.
        if buf.len() == 1 && !buf[0].is_ascii_uppercase() {
            let _ = s.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n");
            return None;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// A parsed request or response head.
#[derive(Debug, Clone)]
pub struct Head {
    pub first: String,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn render(&self) -> String {
        let mut s = format!("{}\r\n", self.first);
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        s.push_str("\r\n");
        s
    }

    pub(super) fn set(&mut self, name: &str, value: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
    }

    pub(super) fn remove(&mut self, name: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }
}

pub(super) fn parse_request(head: &str) -> Head {
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or("").to_string();
    let mut parts = first.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Head {
        first,
        method,
        path,
        headers,
    }
}
