//! A fault-injecting HTTP proxy in front of a registry.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::{parse_request, read_head, Head};

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

    /// [`Proxy::start`] with `faults` set from the first request on.
    pub fn start_with(upstream: &str, faults: Faults) -> Proxy {
        let p = Proxy::start(upstream);
        p.set(faults);
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
