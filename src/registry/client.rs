//! The HTTP side: one reqwest client per registry host (its CA files added to the
//! system roots), auth state per host, manual redirect handling and retries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::StreamExt;
use reqwest::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Method, Response, StatusCode, Url};

use super::auth::{parse_challenge, Challenge, TokenResponse};
use super::config::RegistryConfig;
use super::credentials::{Credentials, DockerConfig};
use super::{RegistryError, MAX_SMALL_BODY};

/// Makes a request body, again for each attempt of the request.
pub type BodyFn<'a> = &'a (dyn Fn() -> Result<reqwest::Body, RegistryError> + Send + Sync);

/// How long the HTTPS attempt on a host that also allows plain HTTP may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// How often and how patiently to retry.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request (1 = no retry).
    pub attempts: u32,
    /// First backoff; doubled each time, with jitter, capped at `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A body read that makes no progress for this long is treated as a failure.
    pub stall_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            stall_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(15),
        }
    }
}

impl RetryPolicy {
    /// Backoff before attempt `n` (n >= 1): exponential with +-25% jitter.
    pub fn delay(&self, n: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << n.min(16).saturating_sub(1));
        let capped = exp.min(self.max_delay);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let jitter = 0.75 + (nanos % 1000) as f64 / 2000.0;
        capped.mul_f64(jitter)
    }
}

#[derive(Default)]
struct HostAuth {
    /// The registry asked for basic auth.
    basic: bool,
    /// scope -> (token, expiry)
    tokens: HashMap<String, (String, Instant)>,
}

struct Inner {
    config: RegistryConfig,
    docker_config: DockerConfig,
    retry: RetryPolicy,
    clients: Mutex<HashMap<String, reqwest::Client>>,
    auth: Mutex<HashMap<String, HostAuth>>,
    /// Credentials given explicitly (login) or already looked up, per host.
    creds: Mutex<HashMap<String, Option<Credentials>>>,
    /// "http" or "https" per host, once decided.
    schemes: Mutex<HashMap<String, &'static str>>,
    /// Why HTTPS failed for hosts that fell back to plain HTTP.
    tls_errors: Mutex<HashMap<String, String>>,
}

/// A registry client. Cheap to clone (shared state inside).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Client {
    pub fn new(config: RegistryConfig, docker_config: DockerConfig, retry: RetryPolicy) -> Client {
        Client {
            inner: Arc::new(Inner {
                config,
                docker_config,
                retry,
                clients: Mutex::new(HashMap::new()),
                auth: Mutex::new(HashMap::new()),
                creds: Mutex::new(HashMap::new()),
                schemes: Mutex::new(HashMap::new()),
                tls_errors: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    pub fn retry(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// Use these credentials for `host` instead of looking them up (login).
    pub fn set_credentials(&self, host: &str, c: Credentials) {
        lock(&self.inner.creds).insert(host.to_string(), Some(c));
    }

    fn credentials(&self, host: &str) -> Result<Option<Credentials>, RegistryError> {
        if let Some(c) = lock(&self.inner.creds).get(host) {
            return Ok(c.clone());
        }
        let c = self.inner.docker_config.get(host)?;
        lock(&self.inner.creds).insert(host.to_string(), c.clone());
        Ok(c)
    }

    /// `https://host`, or for hosts where plain HTTP is allowed (loopback, configured
    /// insecure) `http://host` when HTTPS does not answer. HTTPS is tried first, as
    /// Docker does, and always with certificate verification; the choice is cached
    /// per host.
    pub async fn base_url(&self, host: &str) -> Result<String, RegistryError> {
        if let Some(s) = lock(&self.inner.schemes).get(host) {
            return Ok(format!("{s}://{host}"));
        }
        let scheme = if !self.inner.config.is_insecure(host) {
            "https"
        } else {
            // Bounded: a plain-HTTP server may sit silently on a TLS ClientHello.
            let probe = tokio::time::timeout(
                PROBE_TIMEOUT,
                self.http(host)?.get(format!("https://{host}/v2/")).send(),
            )
            .await;
            match probe {
                Ok(Ok(_)) => "https",
                Err(_) => {
                    tracing::debug!(host, "HTTPS probe timed out; using plain HTTP");
                    "http"
                }
                Ok(Err(e)) => {
                    tracing::debug!(host, error = %e, "HTTPS probe failed; using plain HTTP");
                    if !e.is_connect() || root_cause(&e).contains("certificate") {
                        lock(&self.inner.tls_errors).insert(host.to_string(), root_cause(&e));
                    }
                    "http"
                }
            }
        };
        lock(&self.inner.schemes).insert(host.to_string(), scheme);
        Ok(format!("{scheme}://{host}"))
    }

    fn http(&self, host: &str) -> Result<reqwest::Client, RegistryError> {
        if let Some(c) = lock(&self.inner.clients).get(host) {
            return Ok(c.clone());
        }
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.inner.retry.connect_timeout)
            .read_timeout(self.inner.retry.stall_timeout)
            .user_agent(concat!("imgctl/", env!("CARGO_PKG_VERSION")));
        for f in self.inner.config.ca_files(host) {
            let pem = std::fs::read(&f).map_err(|e| RegistryError::ConfigFile {
                path: f.clone(),
                detail: e.to_string(),
            })?;
            let cert =
                reqwest::Certificate::from_pem(&pem).map_err(|e| RegistryError::ConfigFile {
                    path: f.clone(),
                    detail: format!("not a PEM certificate: {e}"),
                })?;
            b = b.add_root_certificate(cert);
        }
        let c = b.build().map_err(|e| RegistryError::Http {
            url: host.to_string(),
            source: e,
        })?;
        lock(&self.inner.clients).insert(host.to_string(), c.clone());
        Ok(c)
    }

    fn auth_header(&self, host: &str, scope: &str) -> Result<Option<HeaderValue>, RegistryError> {
        let (basic, token) = {
            let mut all = lock(&self.inner.auth);
            let a = all.entry(host.to_string()).or_default();
            let token = match a.tokens.get(scope) {
                Some((t, exp)) if *exp > Instant::now() => Some(t.clone()),
                _ => None,
            };
            (a.basic, token)
        };
        if let Some(t) = token {
            return Ok(HeaderValue::from_str(&format!("Bearer {t}")).ok());
        }
        if basic {
            if let Some(c) = self.credentials(host)? {
                return Ok(basic_header(&c));
            }
        }
        Ok(None)
    }

    /// GET `path` on `host` for `scope` with auth, redirects and retries. Returns the
    /// final response whatever its status, except 401 after a fresh authentication
    /// (an error) and retryable failures once attempts run out (an error).
    pub async fn get(
        &self,
        host: &str,
        path: &str,
        scope: &str,
        headers: HeaderMap,
    ) -> Result<Response, RegistryError> {
        self.send(host, Method::GET, path, scope, headers, None, true)
            .await
    }

    /// Send `method` to `target` on `host` (a path starting with `/`, or an absolute
    /// URL such as an upload `Location`) for `scope`, with auth. The registry's
    /// `Authorization` header goes only to the registry's own origin. GET and HEAD
    /// follow redirects. `body` is made again for every attempt (after a 401 and its
    /// authentication, and for retries). With `retry` false, only authentication
    /// repeats the request: a half-sent upload is not blindly sent again.
    #[allow(clippy::too_many_arguments)]
    pub async fn send(
        &self,
        host: &str,
        method: Method,
        target: &str,
        scope: &str,
        headers: HeaderMap,
        body: Option<BodyFn<'_>>,
        retry: bool,
    ) -> Result<Response, RegistryError> {
        let base = self.base_url(host).await?;
        let joined = Url::parse(&format!("{base}/")).and_then(|b| b.join(target));
        let url = joined.map_err(|e| RegistryError::Status {
            url: format!("{base}{target}"),
            status: 0,
            detail: format!(": bad URL: {e}"),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(RegistryError::Status {
                url: url.to_string(),
                status: 0,
                detail: ": not an HTTP URL".into(),
            });
        }
        let origin = Url::parse(&format!("{base}/")).map_err(|e| RegistryError::Status {
            url: base.clone(),
            status: 0,
            detail: format!(": bad URL: {e}"),
        })?;
        let attempts = if retry { self.inner.retry.attempts } else { 1 };
        let http = self.http(host)?;
        let mut attempt = 0u32;
        let mut authenticated = false;
        loop {
            attempt += 1;
            let auth = self
                .auth_header(host, scope)?
                .filter(|_| same_origin(&url, &origin));
            let sent_auth = auth.is_some();
            let body = match body {
                Some(make) => Some(make()?),
                None => None,
            };
            let res = send_following_redirects(&http, &method, &url, auth, &headers, body).await;
            let retry_after = match &res {
                Ok(r) => r
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|s| Duration::from_secs(s.min(30))),
                Err(_) => None,
            };
            match res {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                    if authenticated {
                        let detail = error_detail(resp).await;
                        return Err(RegistryError::Unauthorized {
                            registry: host.to_string(),
                            detail,
                        });
                    }
                    let chal = resp
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let Some(chal) = chal else {
                        let detail = error_detail(resp).await;
                        return Err(RegistryError::Unauthorized {
                            registry: host.to_string(),
                            detail,
                        });
                    };
                    // A token that expired server-side: drop it and authenticate again.
                    self.authenticate(host, scope, &parse_challenge(&chal)?, sent_auth)
                        .await?;
                    authenticated = true;
                    attempt -= 1;
                }
                Ok(resp) if is_retryable_status(resp.status()) && attempt < attempts => {
                    tracing::debug!(status = %resp.status(), %url, attempt, "retrying");
                    let d = retry_after.unwrap_or_else(|| self.inner.retry.delay(attempt));
                    tokio::time::sleep(d).await;
                }
                Ok(resp) if resp.status() == StatusCode::BAD_REQUEST && url.scheme() == "http" => {
                    // Go's server answers plain HTTP on a TLS port with 400: the
                    // registry speaks HTTPS, and our HTTPS attempt failed. Say why.
                    if let Some(tls) = lock(&self.inner.tls_errors).get(host).cloned() {
                        return Err(RegistryError::Tls {
                            registry: host.to_string(),
                            detail: tls,
                            ca_dirs: self.inner.config.ca_dir_hint(host),
                        });
                    }
                    return Ok(resp);
                }
                Ok(resp) => return Ok(resp),
                Err(e) if e.is_retryable() && attempt < attempts => {
                    tracing::debug!(error = %e, attempt, "retrying");
                    tokio::time::sleep(self.inner.retry.delay(attempt)).await;
                }
                Err(RegistryError::Http { source, .. }) if source.is_connect() => {
                    return Err(RegistryError::Unreachable {
                        registry: host.to_string(),
                        detail: root_cause(&source),
                    })
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Answer a challenge: remember basic auth, or fetch a bearer token for `scope`.
    async fn authenticate(
        &self,
        host: &str,
        scope: &str,
        chal: &Challenge,
        sent_auth: bool,
    ) -> Result<(), RegistryError> {
        match chal {
            Challenge::Basic => {
                let was_basic = {
                    let mut all = lock(&self.inner.auth);
                    let a = all.entry(host.to_string()).or_default();
                    std::mem::replace(&mut a.basic, true)
                };
                if self.credentials(host)?.is_none() {
                    return Err(RegistryError::AuthRequired {
                        registry: host.to_string(),
                    });
                }
                if was_basic && sent_auth {
                    return Err(RegistryError::Unauthorized {
                        registry: host.to_string(),
                        detail: "basic credentials rejected".into(),
                    });
                }
                Ok(())
            }
            Challenge::Bearer {
                realm,
                service,
                scope: chal_scope,
            } => {
                let token_scope = chal_scope.clone().unwrap_or_else(|| scope.to_string());
                let (token, ttl) = self
                    .fetch_token(host, realm, service.as_deref(), &token_scope)
                    .await?;
                let mut all = lock(&self.inner.auth);
                let a = all.entry(host.to_string()).or_default();
                // Expire a little early so a token is never sent at its last second.
                // `ttl` comes from the server: bounded, so the sum cannot overflow.
                let life = ttl
                    .saturating_sub(10)
                    .clamp(1, crate::registry::auth::MAX_TOKEN_LIFETIME);
                let exp = Instant::now() + Duration::from_secs(life);
                a.tokens.insert(scope.to_string(), (token, exp));
                Ok(())
            }
        }
    }

    async fn fetch_token(
        &self,
        host: &str,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<(String, u64), RegistryError> {
        let terr = |detail: String| RegistryError::Token {
            realm: realm.to_string(),
            detail,
        };
        let mut url = Url::parse(realm).map_err(|e| terr(format!("bad realm URL: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            if !scope.is_empty() {
                q.append_pair("scope", scope);
            }
        }
        let creds = self.credentials(host)?;
        // Never send credentials in clear text to a realm we would not talk plain
        // HTTP to ourselves (SECURITY-TESTS item 26).
        let creds_ok = may_send_credentials(&url, &self.inner.config);
        let http = self.http(host)?;
        let mut rb = http.get(url.clone());
        if let (Some(c), true) = (&creds, creds_ok) {
            rb = rb.basic_auth(&c.username, Some(&c.secret));
        } else if creds.is_some() {
            tracing::warn!(realm, "not sending credentials to a plain-HTTP token realm");
        }
        let resp = rb.send().await.map_err(|e| {
            if e.is_connect() {
                terr(format!("cannot connect: {}", root_cause(&e)))
            } else {
                terr(e.to_string())
            }
        })?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let detail = error_detail(resp).await;
            return Err(if creds.is_some() {
                RegistryError::Unauthorized {
                    registry: host.to_string(),
                    detail,
                }
            } else {
                RegistryError::AuthRequired {
                    registry: host.to_string(),
                }
            });
        }
        if !status.is_success() {
            return Err(terr(format!("HTTP {status}{}", error_detail(resp).await)));
        }
        let body = read_limited(resp, MAX_SMALL_BODY, "token response").await?;
        let t: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| terr(format!("bad token JSON: {e}")))?;
        t.into_token()
            .ok_or_else(|| terr("response has no token".into()))
    }

    /// Check that `host` accepts our credentials (for `login`): GET /v2/.
    pub async fn ping(&self, host: &str) -> Result<(), RegistryError> {
        let resp = self.get(host, "/v2/", "", HeaderMap::new()).await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(status_error(resp, host, "", None).await)
        }
    }
}

fn basic_header(c: &Credentials) -> Option<HeaderValue> {
    let raw = format!("{}:{}", c.username, c.secret);
    let v = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    );
    let mut h = HeaderValue::from_str(&v).ok()?;
    h.set_sensitive(true);
    Some(h)
}

/// Credentials go to a token realm only over HTTPS, or over plain HTTP to a host we
/// would talk plain HTTP to ourselves (loopback, configured insecure): a registry
/// must not be able to send them in clear text elsewhere (SECURITY-TESTS item 26).
fn may_send_credentials(realm: &Url, config: &RegistryConfig) -> bool {
    realm.scheme() == "https" || config.is_insecure(&url_host_port(realm))
}

fn is_retryable_status(s: StatusCode) -> bool {
    s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS
}

fn url_host_port(u: &Url) -> String {
    match (u.host_str(), u.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => String::new(),
    }
}

/// Same scheme, host and port: the only case where the registry's Authorization
/// header may follow a redirect (CVE-2020-15157 class; SECURITY-TESTS item 25).
pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

async fn send_following_redirects(
    http: &reqwest::Client,
    method: &Method,
    origin: &Url,
    auth: Option<HeaderValue>,
    headers: &HeaderMap,
    body: Option<reqwest::Body>,
) -> Result<Response, RegistryError> {
    let follow = *method == Method::GET || *method == Method::HEAD;
    let mut url = origin.clone();
    let mut body = body;
    for _ in 0..10 {
        let mut rb = http
            .request(method.clone(), url.clone())
            .headers(headers.clone());
        if let Some(a) = &auth {
            if same_origin(&url, origin) {
                rb = rb.header(AUTHORIZATION, a.clone());
            }
        }
        if let Some(b) = body.take() {
            rb = rb.body(b);
        }
        let resp = rb.send().await.map_err(|source| RegistryError::Http {
            url: url.to_string(),
            source,
        })?;
        if follow && resp.status().is_redirection() {
            if let Some(loc) = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()) {
                let next = url.join(loc).map_err(|e| RegistryError::Status {
                    url: url.to_string(),
                    status: resp.status().as_u16(),
                    detail: format!(": bad redirect location {loc:?}: {e}"),
                })?;
                if !matches!(next.scheme(), "http" | "https") {
                    return Err(RegistryError::Status {
                        url: url.to_string(),
                        status: resp.status().as_u16(),
                        detail: format!(": refusing redirect to {next}"),
                    });
                }
                url = next;
                continue;
            }
        }
        return Ok(resp);
    }
    Err(RegistryError::Status {
        url: origin.to_string(),
        status: 310,
        detail: ": too many redirects".into(),
    })
}

pub(super) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(s) = cur.source() {
        cur = s;
    }
    cur.to_string()
}

/// Read a whole body, refusing more than `limit` bytes (by Content-Length before
/// reading, and while reading).
pub async fn read_limited(
    resp: Response,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = || RegistryError::TooLarge {
        what: what.to_string(),
        limit,
    };
    if resp.content_length().is_some_and(|l| l > limit) {
        return Err(too_large());
    }
    let url = resp.url().to_string();
    let mut out = Vec::new();
    let mut s = resp.bytes_stream();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|source| RegistryError::Http {
            url: url.clone(),
            source,
        })?;
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// `": CODE: message"` from a distribution error body, bounded, or "".
async fn error_detail(resp: Response) -> String {
    let Ok(body) = read_limited(resp, 64 * 1024, "error body").await else {
        return String::new();
    };
    let (code, msg) = error_code(&body);
    match (code, msg) {
        (Some(c), Some(m)) => format!(": {c}: {m}"),
        (Some(c), None) => format!(": {c}"),
        (None, Some(m)) => format!(": {m}"),
        (None, None) => String::new(),
    }
}

fn error_code(body: &[u8]) -> (Option<String>, Option<String>) {
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return (None, None),
    };
    let e = &v["errors"][0];
    (
        e["code"].as_str().map(str::to_string),
        e["message"].as_str().map(|m| m.chars().take(300).collect()),
    )
}

/// Turn a non-success response into the most specific error.
pub async fn status_error(
    resp: Response,
    host: &str,
    repository: &str,
    selector: Option<&str>,
) -> RegistryError {
    let status = resp.status();
    let url = resp.url().to_string();
    let body = read_limited(resp, 64 * 1024, "error body")
        .await
        .unwrap_or_default();
    let (code, msg) = error_code(&body);
    match (status, code.as_deref()) {
        (StatusCode::NOT_FOUND, Some("NAME_UNKNOWN")) => RegistryError::RepositoryUnknown {
            registry: host.into(),
            repository: repository.into(),
        },
        (StatusCode::NOT_FOUND, Some("BLOB_UNKNOWN")) => {
            match selector.and_then(|s| s.parse().ok()) {
                Some(digest) => RegistryError::BlobUnknown {
                    registry: host.into(),
                    repository: repository.into(),
                    digest,
                },
                None => RegistryError::Status {
                    url,
                    status: 404,
                    detail: ": BLOB_UNKNOWN".into(),
                },
            }
        }
        (StatusCode::NOT_FOUND, _) if selector.is_some() => RegistryError::ManifestUnknown {
            registry: host.into(),
            repository: repository.into(),
            selector: selector.unwrap_or_default().into(),
            hint: String::new(),
        },
        (StatusCode::FORBIDDEN, _) => RegistryError::Unauthorized {
            registry: host.into(),
            detail: msg.unwrap_or_else(|| "forbidden".into()),
        },
        _ => RegistryError::Status {
            url,
            status: status.as_u16(),
            detail: match (code, msg) {
                (Some(c), Some(m)) => format!(": {c}: {m}"),
                (_, Some(m)) => format!(": {m}"),
                (Some(c), None) => format!(": {c}"),
                _ => String::new(),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let a = Url::parse("http://127.0.0.1:5000/v2/x").unwrap();
        assert!(same_origin(
            &a,
            &Url::parse("http://127.0.0.1:5000/other").unwrap()
        ));
        assert!(!same_origin(
            &a,
            &Url::parse("http://127.0.0.1:5001/v2/x").unwrap()
        ));
        assert!(!same_origin(
            &a,
            &Url::parse("https://127.0.0.1:5000/v2/x").unwrap()
        ));
        assert!(!same_origin(
            &a,
            &Url::parse("http://localhost:5000/v2/x").unwrap()
        ));
        let h = Url::parse("https://h.example/x").unwrap();
        assert!(same_origin(
            &h,
            &Url::parse("https://h.example:443/y").unwrap()
        ));
    }

    #[test]
    fn credentials_are_withheld_from_plain_http_realms_elsewhere() {
        let c = RegistryConfig::default();
        let ok = |u: &str| may_send_credentials(&Url::parse(u).unwrap(), &c);
        assert!(ok("https://auth.example/token"));
        assert!(ok("http://127.0.0.1:5001/token"));
        assert!(ok("http://localhost/token"));
        assert!(!ok("http://auth.example/token"));
        assert!(!ok("http://10.0.0.1:8080/token"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        assert!(p.delay(1) <= Duration::from_millis(250));
        assert!(p.delay(3) >= Duration::from_millis(600));
        assert!(p.delay(30) <= Duration::from_millis(6250));
    }
}
