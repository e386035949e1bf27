//! `WWW-Authenticate` challenges (RFC 7235 auth-params) and the registry token flow
//! (distribution `docs/spec/auth/token.md`): GET the realm with `service` and `scope`,
//! optionally with basic credentials, and read `token` / `access_token`.

use std::collections::BTreeMap;

use super::RegistryError;

/// A parsed challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parse a `WWW-Authenticate` header value. Unknown schemes and malformed input are
/// errors (never panics).
pub fn parse_challenge(header: &str) -> Result<Challenge, RegistryError> {
    let bad = |why: &str| RegistryError::Challenge {
        header: header.chars().take(200).collect(),
        detail: why.into(),
    };
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest).ok_or_else(|| bad("malformed auth parameters"))?;
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Ok(Challenge::Basic),
        "bearer" => {
            let realm = params
                .get("realm")
                .cloned()
                .ok_or_else(|| bad("bearer challenge without realm"))?;
            if !(realm.starts_with("https://") || realm.starts_with("http://")) {
                return Err(bad("realm is not an http(s) URL"));
            }
            Ok(Challenge::Bearer {
                realm,
                service: params.get("service").cloned(),
                scope: params.get("scope").cloned(),
            })
        }
        _ => Err(bad("unsupported auth scheme")),
    }
}

/// `k=v, k="quoted \" v"` pairs. Keys are lowercased.
fn parse_params(s: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let b = s.as_bytes();
    let mut i = 0;
    loop {
        while i < b.len() && (b[i] == b' ' || b[i] == b',') {
            i += 1;
        }
        if i >= b.len() {
            return Some(out);
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' {
            if b[i] == b' ' || b[i] == b',' || b[i] == b'"' {
                return None;
            }
            i += 1;
        }
        if i >= b.len() || i == ks {
            return None;
        }
        let key = s[ks..i].to_ascii_lowercase();
        i += 1;
        let mut val = String::new();
        if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut closed = false;
            let mut chars = s[i..].char_indices();
            while let Some((off, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            val.push(n);
                        }
                    }
                    '"' => {
                        i += off + 1;
                        closed = true;
                        break;
                    }
                    c => val.push(c),
                }
            }
            if !closed {
                return None;
            }
        } else {
            let vs = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            val = s[vs..i].trim().to_string();
        }
        out.insert(key, val);
    }
}

/// A token response body.
#[derive(Debug, serde::Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    /// Seconds; kept as the server sent it (any JSON) and read leniently: a
    /// negative, fractional, huge or non-numeric value must not fail or overflow.
    #[serde(default)]
    pub expires_in: Option<serde_json::Value>,
}

/// Longest lifetime imgctl trusts a token for (a day), whatever the server says.
pub const MAX_TOKEN_LIFETIME: u64 = 24 * 3600;

impl TokenResponse {
    /// The token and its lifetime in seconds, between the spec's default of 60 s
    /// and [`MAX_TOKEN_LIFETIME`].
    pub fn into_token(self) -> Option<(String, u64)> {
        let t = self.token.or(self.access_token).filter(|t| !t.is_empty())?;
        let secs = match &self.expires_in {
            // `as` saturates a float (1e300 -> u64::MAX); negatives mean "unknown".
            Some(serde_json::Value::Number(n)) => n
                .as_u64()
                .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
            Some(serde_json::Value::String(s)) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        Some((t, secs.unwrap_or(60).clamp(60, MAX_TOKEN_LIFETIME)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let c = parse_challenge(
            r#"Bearer realm="http://127.0.0.1:1/token",service="reg",scope="repository:a/b:pull""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "http://127.0.0.1:1/token".into(),
                service: Some("reg".into()),
                scope: Some("repository:a/b:pull".into())
            }
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#).unwrap(),
            Challenge::Basic
        );
        assert_eq!(
            parse_challenge(r#"Bearer realm="https://x/t", scope="a,b""#).unwrap(),
            Challenge::Bearer {
                realm: "https://x/t".into(),
                service: None,
                scope: Some("a,b".into())
            }
        );
        for bad in [
            "",
            "Bearer",
            "Bearer realm=\"unterminated",
            "Bearer service=x",
            "Negotiate abc",
            "Bearer realm=\"ftp://x\"",
            "Bearer =x",
            "Bearer \"x\"=y",
        ] {
            assert!(parse_challenge(bad).is_err(), "{bad:?} accepted");
        }
    }

    /// `expires_in` = 2^64-1 made `pull` panic (Instant overflow): every value a
    /// token server may send gives a lifetime between 60 s and a day.
    #[test]
    fn token_lifetime_is_bounded_whatever_the_server_says() {
        let life = |v: &str| {
            let r: TokenResponse =
                serde_json::from_str(&format!(r#"{{"token":"t","expires_in":{v}}}"#)).unwrap();
            r.into_token().unwrap().1
        };
        assert_eq!(life("18446744073709551615"), MAX_TOKEN_LIFETIME);
        assert_eq!(life("1e300"), MAX_TOKEN_LIFETIME);
        assert_eq!(life("-1"), 60);
        assert_eq!(life("-1e300"), 60);
        assert_eq!(life("0"), 60);
        assert_eq!(life("300"), 300);
        assert_eq!(life("300.7"), 300);
        assert_eq!(life("\"600\""), 600);
        assert_eq!(life("null"), 60);
        assert_eq!(life("[1]"), 60);
        let r: TokenResponse = serde_json::from_str(r#"{"access_token":"t"}"#).unwrap();
        assert_eq!(r.into_token().unwrap().1, 60);
    }

    proptest::proptest! {
        /// A hostile `WWW-Authenticate` header is an error or a challenge, never a panic
        /// (SECURITY-TESTS item 26).
        #[test]
        fn arbitrary_challenges_never_panic(h in "\\PC{0,200}", tail in "[a-z=\",\\\\ ]{0,40}") {
            let _ = parse_challenge(&h);
            let _ = parse_challenge(&format!("Bearer {tail}"));
            let _ = parse_challenge(&format!("Bearer realm=\"http://x/t\",{tail}"));
        }
    }
}
