//! Real-registry test harness: Debian's `docker-registry` on 127.0.0.1 with a free
//! port and temp storage (open, htpasswd basic auth, or token auth backed by a small
//! token issuer written here), fixture images generated as OCI layouts with known
//! content and pushed with `skopeo copy` (an independent client), and a small
//! fault-injecting HTTP proxy for what a registry never does by itself (cut or slow
//! transfers, unknown media types, redirects to another origin).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::{have, require, tempdir};

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

/// A token issuer for the registry's `token` auth (distribution
/// `docs/spec/auth/jwt.md`): RS256 JWTs whose `x5c` header carries a self-signed
/// certificate that is also the registry's `rootcertbundle`. Signing uses the
/// `openssl` CLI. Grants `pull` on `public/*` to anyone and everything to
/// `user`/`pass`; counts requests per scope.
pub struct TokenIssuer {
    pub addr: String,
    pub cert: PathBuf,
    pub requests: Arc<Mutex<Vec<String>>>,
    /// The `expires_in` value each token response announces (300 by default); a
    /// test may set any JSON value, e.g. 2^64-1 or a negative number.
    pub expires_in: Arc<Mutex<serde_json::Value>>,
    stop: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

impl TokenIssuer {
    pub const SERVICE: &'static str = "imgctl-test-registry";
    pub const ISSUER: &'static str = "imgctl-test-issuer";

    pub fn start(user: &str, pass: &str) -> TokenIssuer {
        TokenIssuer::start_with(user, pass, 300)
    }

    /// Tokens whose JWT `exp` is `lifetime` seconds from now (the registry allows 60 s
    /// of leeway), while the response still announces `expires_in: 300`: a token the
    /// client believes valid but the registry rejects, as after a server-side expiry.
    pub fn start_with(user: &str, pass: &str, lifetime: i64) -> TokenIssuer {
        let dir = tempdir();
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        let st = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=imgctl-test-token",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .expect("run openssl");
        assert!(st.success(), "openssl req failed");
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .expect("openssl x509");
        assert!(der.status.success());
        let x5c = base64::engine::general_purpose::STANDARD.encode(&der.stdout);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (reqs, stop2) = (requests.clone(), stop.clone());
        let expires_in = Arc::new(Mutex::new(json!(300)));
        let announced = expires_in.clone();
        let expected_basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        );
        let user = user.to_string();
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let (mut s, _) = match listener.accept() {
                    Ok(c) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                let _ = s.set_nonblocking(false);
                let Some(head) = read_head(&mut s) else {
                    continue;
                };
                let req = parse_request(&head);
                let query = req.path.split_once('?').map(|x| x.1).unwrap_or("");
                let params: BTreeMap<String, String> = query
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), url_decode(v)))
                    .collect();
                let scope = params.get("scope").cloned().unwrap_or_default();
                reqs.lock().unwrap().push(scope.clone());
                let authed = req.header("authorization") == Some(expected_basic.as_str());
                if req.header("authorization").is_some() && !authed {
                    let _ = s.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 64\r\nConnection: close\r\n\r\n{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"bad password\"}]} ");
                    continue;
                }
                let mut access = Vec::new();
                for sc in scope.split(' ').filter(|x| !x.is_empty()) {
                    let parts: Vec<&str> = sc.split(':').collect();
                    if parts.len() != 3 {
                        continue;
                    }
                    let granted: Vec<&str> = if authed {
                        parts[2].split(',').collect()
                    } else if parts[1].starts_with("public/") {
                        parts[2].split(',').filter(|a| *a == "pull").collect()
                    } else {
                        vec![]
                    };
                    access.push(json!({"type": parts[0], "name": parts[1], "actions": granted}));
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
                let claims = json!({
                    "iss": TokenIssuer::ISSUER, "sub": if authed { user.as_str() } else { "" },
                    "aud": TokenIssuer::SERVICE, "exp": now as i64 + lifetime, "nbf": now - 10, "iat": now,
                    "jti": format!("{now}-{}", reqs.lock().unwrap().len()), "access": access,
                });
                let b64 = |v: &serde_json::Value| {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
                };
                let signing_input = format!("{}.{}", b64(&header), b64(&claims));
                let Some(sig) = openssl_sign(&key, signing_input.as_bytes()) else {
                    let _ = s.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    continue;
                };
                let token = format!(
                    "{signing_input}.{}",
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
                );
                let expires = announced.lock().unwrap().clone();
                let body = json!({"token": token, "expires_in": expires}).to_string();
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        TokenIssuer {
            addr,
            cert,
            requests,
            expires_in,
            stop,
            _dir: dir,
        }
    }

    /// Token requests received so far (their `scope` parameter).
    pub fn scopes(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn openssl_sign(key: &Path, data: &[u8]) -> Option<Vec<u8>> {
    let mut c = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    c.stdin.take()?.write_all(data).ok()?;
    let out = c.wait_with_output().ok()?;
    out.status.success().then_some(out.stdout)
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                    out.push(v);
                    i += 2;
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------- HTTP bits

/// Read an HTTP head (through the blank line).
fn read_head(s: &mut TcpStream) -> Option<String> {
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

    fn render(&self) -> String {
        let mut s = format!("{}\r\n", self.first);
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        s.push_str("\r\n");
        s
    }

    fn set(&mut self, name: &str, value: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
    }

    fn remove(&mut self, name: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }
}

fn parse_request(head: &str) -> Head {
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

// ---------------------------------------------------------------- fault proxy

/// What the proxy does to traffic. Change it at any time through [`Proxy::set`].
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Sleep this long after every 64 KiB of a blob body.
    pub throttle: Option<Duration>,
    /// Close the connection after this many bytes of the next blob body (once).
    pub cut_blob_after: Option<u64>,
    /// Serve manifests with this media type (header and body), digest header removed.
    pub manifest_media_type: Option<String>,
    /// Answer blob GETs with a 307 to this base URL (`http://host:port`).
    pub redirect_blobs_to: Option<String>,
    /// Append a space to manifest bodies (Content-Length fixed, digest header kept).
    pub alter_manifest: bool,
    /// Pad manifest bodies with spaces to this many bytes (digest header removed).
    pub pad_manifest_to: Option<usize>,
    /// Remove `Range` from requests, as a server that ignores it.
    pub strip_range: bool,
    /// Answer this many blob GETs with 503 before passing them on.
    pub fail_blob_requests: u32,
    /// Append these bytes to blob bodies (Content-Length adjusted).
    pub extra_blob_bytes: usize,
    /// Edit manifest JSON bodies (digest header removed, length fixed).
    pub rewrite_manifest: Option<fn(&mut serde_json::Value)>,
}

/// An HTTP/1.1 proxy in front of a registry: one request per connection, every
/// request head recorded, blob body bytes counted.
pub struct Proxy {
    pub addr: String,
    faults: Arc<Mutex<Faults>>,
    requests: Arc<Mutex<Vec<Head>>>,
    blob_bytes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let p = Proxy {
            addr,
            faults: Arc::default(),
            requests: Arc::default(),
            blob_bytes: Arc::default(),
            stop: Arc::default(),
        };
        let (faults, requests, bytes, stop) = (
            p.faults.clone(),
            p.requests.clone(),
            p.blob_bytes.clone(),
            p.stop.clone(),
        );
        let upstream = upstream.to_string();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let (f, r, b, u) = (
                            faults.clone(),
                            requests.clone(),
                            bytes.clone(),
                            upstream.clone(),
                        );
                        std::thread::spawn(move || {
                            let _ = s.set_nonblocking(false);
                            let _ = serve(s, &u, &f, &r, &b);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        p
    }

    pub fn set(&self, f: Faults) {
        *self.faults.lock().unwrap() = f;
    }

    pub fn requests(&self) -> Vec<Head> {
        self.requests.lock().unwrap().clone()
    }

    pub fn blob_bytes(&self) -> u64 {
        self.blob_bytes.load(Ordering::Relaxed)
    }

    pub fn reset_counters(&self) {
        self.requests.lock().unwrap().clear();
        self.blob_bytes.store(0, Ordering::Relaxed);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    mut client: TcpStream,
    upstream: &str,
    faults: &Mutex<Faults>,
    requests: &Mutex<Vec<Head>>,
    blob_bytes: &AtomicU64,
) -> std::io::Result<()> {
    let Some(head) = read_head(&mut client) else {
        return Ok(());
    };
    let mut req = parse_request(&head);
    requests.lock().unwrap().push(req.clone());
    let f = faults.lock().unwrap().clone();
    let is_blob = req.path.contains("/blobs/sha256:");
    let is_manifest = req.path.contains("/manifests/");
    if is_blob && req.method == "GET" {
        if let Some(base) = &f.redirect_blobs_to {
            let resp = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {base}{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                req.path
            );
            return client.write_all(resp.as_bytes());
        }
    }
    if is_blob && req.method == "GET" && f.fail_blob_requests > 0 {
        faults.lock().unwrap().fail_blob_requests -= 1;
        return client.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
    if f.strip_range {
        req.remove("Range");
    }
    req.set("Connection", "close");
    req.set("Host", upstream);
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(req.render().as_bytes())?;
    let mut up_reader = BufReader::new(up.try_clone()?);
    // Response head.
    let mut rhead = String::new();
    loop {
        let mut line = String::new();
        if up_reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        rhead.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut resp = parse_request(&rhead);
    resp.set("Connection", "close");
    let ok_status = resp.first.contains(" 200 ");
    if is_manifest
        && req.method == "GET"
        && ok_status
        && (f.alter_manifest || f.pad_manifest_to.is_some())
    {
        let mut body = Vec::new();
        up_reader.read_to_end(&mut body)?;
        if f.alter_manifest {
            body.push(b' ');
        }
        if let Some(n) = f.pad_manifest_to {
            body.resize(n.max(body.len()), b' ');
            resp.remove("Docker-Content-Digest");
        }
        resp.set("Content-Length", &body.len().to_string());
        client.write_all(resp.render().as_bytes())?;
        return client.write_all(&body);
    }
    if let (true, true, Some(edit)) = (
        is_manifest && req.method == "GET",
        ok_status,
        f.rewrite_manifest,
    ) {
        let mut body = Vec::new();
        up_reader.read_to_end(&mut body)?;
        if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&body) {
            edit(&mut v);
            body = serde_json::to_vec(&v).unwrap_or(body);
        }
        resp.remove("Docker-Content-Digest");
        resp.set("Content-Length", &body.len().to_string());
        client.write_all(resp.render().as_bytes())?;
        return client.write_all(&body);
    }
    if is_blob && req.method == "GET" && ok_status && f.extra_blob_bytes > 0 {
        let mut body = Vec::new();
        up_reader.read_to_end(&mut body)?;
        body.extend(std::iter::repeat_n(b'x', f.extra_blob_bytes));
        resp.set("Content-Length", &body.len().to_string());
        client.write_all(resp.render().as_bytes())?;
        return client.write_all(&body);
    }
    if is_manifest && req.method == "GET" {
        if let Some(mt) = &f.manifest_media_type {
            let mut body = Vec::new();
            up_reader.read_to_end(&mut body)?;
            let text = String::from_utf8_lossy(&body).into_owned();
            let re = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|mut v| {
                    v.get_mut("mediaType")?;
                    v["mediaType"] = json!(mt);
                    Some(v.to_string())
                })
                .unwrap_or(text);
            resp.set("Content-Type", mt);
            resp.set("Content-Length", &re.len().to_string());
            resp.remove("Docker-Content-Digest");
            client.write_all(resp.render().as_bytes())?;
            return client.write_all(re.as_bytes());
        }
    }
    client.write_all(resp.render().as_bytes())?;
    let counting = is_blob && req.method == "GET";
    let body_len: u64 = resp
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // Cut only a body longer than the cut point, once.
    let mut cut = match f.cut_blob_after {
        Some(c) if counting && body_len > c => {
            faults.lock().unwrap().cut_blob_after = None;
            Some(c)
        }
        _ => None,
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let want = match cut {
            Some(0) => {
                let _ = client.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
            Some(n) => buf.len().min(n as usize),
            None => buf.len(),
        };
        let n = up_reader.read(&mut buf[..want])?;
        if n == 0 {
            return Ok(());
        }
        client.write_all(&buf[..n])?;
        if counting {
            blob_bytes.fetch_add(n as u64, Ordering::Relaxed);
            if let Some(d) = faults.lock().unwrap().throttle {
                std::thread::sleep(d);
            }
        }
        if let Some(c) = cut.as_mut() {
            *c -= n as u64;
        }
    }
}

// ---------------------------------------------------------------- fixture images

/// A layer blob with its digests.
#[derive(Clone)]
pub struct Layer {
    pub blob: Vec<u8>,
    pub media_type: &'static str,
    pub digest: String,
    pub diff_id: String,
}

/// A gzip tar layer of regular files (path, content). `compress: false` writes
/// stored (level 0) deflate blocks: still gzip, so registries and skopeo keep it
/// byte-for-byte, but fast to make for large noise layers.
pub fn layer(files: &[(&str, &[u8])], compress: bool) -> Layer {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        // Owner fields must hold numbers: `pull` now extracts the layers, and an
        // empty uid field is not a valid tar header.
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, path, *content).unwrap();
    }
    let tar = tar.into_inner().unwrap();
    let diff_id = digest_of(&tar);
    let level = if compress {
        flate2::Compression::fast()
    } else {
        flate2::Compression::none()
    };
    let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
    e.write_all(&tar).unwrap();
    let (blob, media_type) = (
        e.finish().unwrap(),
        "application/vnd.oci.image.layer.v1.tar+gzip",
    );
    Layer {
        digest: digest_of(&blob),
        blob,
        media_type,
        diff_id,
    }
}

/// `n` bytes that do not compress (xorshift), different per `seed`.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// One platform's image: manifest, config and layers.
#[derive(Clone)]
pub struct Image {
    pub arch: String,
    pub layers: Vec<Layer>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

impl Image {
    pub fn new(arch: &str, layers: Vec<Layer>) -> Image {
        let config = json!({
            "created": "2024-01-02T03:04:05Z",
            "architecture": arch,
            "os": "linux",
            "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"], "Labels": {"fixture": arch}},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
            "history": layers.iter().enumerate().map(|(i, _)| json!({"created": "2024-01-02T03:04:05Z", "created_by": format!("fixture layer {i}")})).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(&config), "size": config.len()},
            "layers": layers.iter().map(|l| json!({"mediaType": l.media_type, "digest": l.digest, "size": l.blob.len()})).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes();
        Image {
            arch: arch.to_string(),
            layers,
            config,
            manifest,
        }
    }

    pub fn config_digest(&self) -> String {
        digest_of(&self.config)
    }

    pub fn manifest_digest(&self) -> String {
        digest_of(&self.manifest)
    }

    /// Every blob digest of the image (manifest, config, layers).
    pub fn digests(&self) -> Vec<String> {
        let mut v = vec![self.manifest_digest(), self.config_digest()];
        v.extend(self.layers.iter().map(|l| l.digest.clone()));
        v
    }
}

/// An OCI image layout directory written by the tests (not by imgctl).
pub struct Layout {
    pub dir: PathBuf,
    entries: Vec<serde_json::Value>,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let l = Layout {
            dir: dir.to_path_buf(),
            entries: Vec::new(),
        };
        l.flush();
        l
    }

    fn blob(&self, b: &[u8]) {
        std::fs::write(self.dir.join("blobs/sha256").join(sha256_hex(b)), b).unwrap();
    }

    fn put_image(&self, img: &Image) {
        for l in &img.layers {
            self.blob(&l.blob);
        }
        self.blob(&img.config);
        self.blob(&img.manifest);
    }

    fn flush(&self) {
        let idx = json!({"schemaVersion": 2, "manifests": self.entries});
        std::fs::write(self.dir.join("index.json"), idx.to_string()).unwrap();
    }

    /// Add a single-platform image under `tag`.
    pub fn add_image(&mut self, tag: &str, img: &Image) {
        self.put_image(img);
        self.entries.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": img.manifest_digest(), "size": img.manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag}
        }));
        self.flush();
    }

    /// Add a multi-platform index of `imgs` under `tag`; returns the index digest.
    pub fn add_index(&mut self, tag: &str, imgs: &[Image]) -> String {
        for i in imgs {
            self.put_image(i);
        }
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": imgs.iter().map(|i| json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": i.manifest_digest(), "size": i.manifest.len(),
                "platform": {"architecture": i.arch, "os": "linux"}
            })).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes();
        self.blob(&index);
        self.entries.push(json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest_of(&index), "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag}
        }));
        self.flush();
        digest_of(&index)
    }

    /// Push `tag` to `registry/dest` with skopeo (all platforms of an index).
    pub fn push(&self, tag: &str, registry: &str, dest: &str) {
        let out = Command::new("skopeo")
            .args(["copy", "--all", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:{tag}", self.dir.display()))
            .arg(format!("docker://{registry}/{dest}"))
            .output()
            .expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo copy {tag} -> {registry}/{dest} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A small two-layer image for `arch` with content that names it.
pub fn small_image(arch: &str, seed: u64) -> Image {
    let base = layer(
        &[
            ("etc/os-release", b"ID=fixture\n"),
            ("bin/hello", &noise(4096, seed)),
        ],
        true,
    );
    let top = layer(&[("app/arch", arch.as_bytes())], true);
    Image::new(arch, vec![base, top])
}

/// The architecture this host's imgctl picks by default.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}
