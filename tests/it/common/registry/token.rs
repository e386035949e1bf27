//! A token issuer for the registry's `token` auth.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::json;

use super::super::tempdir;
use super::{parse_request, read_head};

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
