//! Image references (`[registry/]repository[:tag][@digest]`), parsed and normalised the
//! way Docker does it (distribution's `reference.ParseNormalizedNamed`):
//!
//! * `nginx` is `docker.io/library/nginx:latest`;
//! * the first path component is a registry host when it contains `.` or `:` or is
//!   `localhost`, otherwise the registry is `docker.io`;
//! * one-component repositories on `docker.io` get the `library/` prefix;
//! * `index.docker.io` is spelt `docker.io`;
//! * with neither tag nor digest the tag is `latest`; `name:tag@digest` keeps both but
//!   is resolved by digest only.
//!
//! Repository components must be lowercase (`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`),
//! tags match `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, and the whole name is at most 255
//! characters, as in the distribution spec.

use std::fmt;
use std::str::FromStr;

use super::digest::{Digest, DigestError};

/// The registry that short names resolve to.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The tag used when a reference names neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";
const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const MAX_NAME_LEN: usize = 255;

/// A normalised image reference. At least one of `tag` and `digest` is set.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not an image reference.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid reference {input:?}: empty")]
    Empty { input: String },
    #[error("invalid reference {input:?}: repository name must be lowercase")]
    Uppercase { input: String },
    #[error("invalid reference {input:?}: bad repository component {component:?} (expected lowercase letters, digits and single separators . _ __ -)")]
    Component { input: String, component: String },
    #[error("invalid reference {input:?}: bad registry host {host:?}")]
    Host { input: String, host: String },
    #[error("invalid reference {input:?}: bad tag {tag:?} (expected [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})")]
    Tag { input: String, tag: String },
    #[error("invalid reference {input:?}: repository name longer than {MAX_NAME_LEN} characters")]
    TooLong { input: String },
    #[error("invalid reference {input:?}: {source}")]
    Digest {
        input: String,
        #[source]
        source: DigestError,
    },
}

impl Reference {
    /// Parse and normalise `s`.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        s.parse()
    }

    /// A reference to `registry/repository` with an explicit tag and/or digest.
    /// Validates like [`Reference::parse`].
    pub fn new(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<Digest>,
    ) -> Result<Reference, ReferenceError> {
        let mut s = format!("{registry}/{repository}");
        if let Some(t) = tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s.parse()
    }

    /// Registry host (and port), e.g. `docker.io` or `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Repository path inside the registry, e.g. `library/nginx`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, e.g. `docker.io/library/nginx`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short form Docker shows: `nginx` for `docker.io/library/nginx`,
    /// `user/app` for `docker.io/user/app`, the full name otherwise.
    pub fn familiar_name(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            match self.repository.strip_prefix(OFFICIAL_PREFIX) {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.repository.clone(),
            }
        } else {
            self.name()
        }
    }

    /// What to ask the registry for: the digest when there is one, else the tag.
    pub fn manifest_selector(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        Reference::new(&self.registry, &self.repository, Some(tag), None)
    }

    /// The same repository pinned to `digest`, without tag.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// The same repository on another registry host (used for mirrors).
    pub fn on_registry(&self, registry: &str) -> Result<Reference, ReferenceError> {
        let mut r = Reference::new(
            registry,
            &self.repository,
            self.tag.as_deref(),
            self.digest.clone(),
        )?;
        // Reference::new re-normalises; keep the repository exactly (a mirror of
        // docker.io serves `library/nginx`, not `nginx`).
        r.repository = self.repository.clone();
        Ok(r)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err_input = || input.to_string();
        if input.is_empty() {
            return Err(ReferenceError::Empty { input: err_input() });
        }
        // Split off the digest first: it may contain no '/' or ':' confusion.
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => {
                let d = d
                    .parse::<Digest>()
                    .map_err(|source| ReferenceError::Digest {
                        input: err_input(),
                        source,
                    })?;
                (r, Some(d))
            }
            None => (input, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(ReferenceError::Empty { input: err_input() });
        }
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(ReferenceError::Tag {
                    input: err_input(),
                    tag: t.to_string(),
                });
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), remainder.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        if !valid_host(&registry) {
            return Err(ReferenceError::Host {
                input: err_input(),
                host: registry,
            });
        }
        let registry = if registry == LEGACY_DEFAULT_REGISTRY {
            DEFAULT_REGISTRY.to_string()
        } else {
            registry
        };
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("{OFFICIAL_PREFIX}{repository}")
        } else {
            repository
        };
        if repository.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase { input: err_input() });
        }
        for component in repository.split('/') {
            if !valid_component(component) {
                return Err(ReferenceError::Component {
                    input: err_input(),
                    component: component.to_string(),
                });
            }
        }
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong { input: err_input() });
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__", or one or more "-".
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// A host name (labels of letters, digits and inner '-', dot separated) or an IPv6
/// literal in brackets, with an optional numeric port.
fn valid_host(h: &str) -> bool {
    let (host, port) = if let Some(rest) = h.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip6, after)) => {
                if ip6.is_empty() || !ip6.bytes().all(|c| c.is_ascii_hexdigit() || c == b':') {
                    return false;
                }
                match after {
                    "" => return true,
                    p => match p.strip_prefix(':') {
                        Some(port) => return valid_port(port),
                        None => return false,
                    },
                }
            }
            None => return false,
        }
    } else {
        match h.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (h, None),
        }
    };
    if let Some(p) = port {
        if !valid_port(p) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

fn valid_port(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 5
        && p.bytes().all(|c| c.is_ascii_digit())
        && p.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(norm("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(norm("nginx:1.25"), "docker.io/library/nginx:1.25");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(norm("docker.io/nginx"), "docker.io/library/nginx:latest");
        assert_eq!(
            norm("index.docker.io/nginx"),
            "docker.io/library/nginx:latest"
        );
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("localhost:5000/a/b:v1"), "localhost:5000/a/b:v1");
        assert_eq!(
            norm("127.0.0.1:5000/library/nginx:latest"),
            "127.0.0.1:5000/library/nginx:latest"
        );
        assert_eq!(norm("quay.example/a/b/c"), "quay.example/a/b/c:latest");
        assert_eq!(
            norm(&format!("nginx@{D}")),
            format!("docker.io/library/nginx@{D}")
        );
        assert_eq!(
            norm(&format!("nginx:1@{D}")),
            format!("docker.io/library/nginx:1@{D}")
        );
        assert_eq!(norm("[::1]:5000/app:x"), "[::1]:5000/app:x");
    }

    #[test]
    fn parts_and_forms() {
        let r = Reference::parse(&format!("host:5000/a/b:t@{D}")).unwrap();
        assert_eq!(r.registry(), "host:5000");
        assert_eq!(r.repository(), "a/b");
        assert_eq!(r.tag(), Some("t"));
        assert_eq!(r.manifest_selector(), D);
        assert_eq!(Reference::parse("nginx").unwrap().familiar_name(), "nginx");
        assert_eq!(Reference::parse("u/app").unwrap().familiar_name(), "u/app");
        let m = Reference::parse("nginx")
            .unwrap()
            .on_registry("127.0.0.1:9")
            .unwrap();
        assert_eq!(m.to_string(), "127.0.0.1:9/library/nginx:latest");
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "",
            "Nginx",
            "nginx:",
            ":tag",
            "a//b",
            "a/b/",
            "-a",
            "a--",
            "a..b",
            "a:b:c",
            "nginx@sha256:abc",
            "nginx@md5:abc",
            "host:99999/a",
            "ho_st.io/a",
            "nginx:-bad",
            "a b",
            "a/../b",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} accepted");
        }
        let long = "a".repeat(300);
        assert!(matches!(
            Reference::parse(&long),
            Err(ReferenceError::TooLong { .. })
        ));
        assert!(Reference::parse(&format!("x:{}", "t".repeat(129))).is_err());
    }

    proptest::proptest! {
        /// Arbitrary input never panics; whatever parses prints as a normalised
        /// reference that parses back to itself.
        #[test]
        fn parse_never_panics_and_normal_form_is_stable(s in "\\PC{0,80}") {
            if let Ok(r) = Reference::parse(&s) {
                let printed = r.to_string();
                proptest::prop_assert_eq!(Reference::parse(&printed).unwrap(), r);
            }
        }

        /// Reference-shaped input (host, path, tag) round-trips.
        #[test]
        fn structured_references_round_trip(
            host in "(localhost|[a-z]{1,8}\\.[a-z]{2,3})(:[1-9][0-9]{0,3})?",
            path in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,3}",
            tag in "[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}",
        ) {
            let s = format!("{host}/{path}:{tag}");
            let r = Reference::parse(&s).unwrap();
            proptest::prop_assert_eq!(r.to_string(), s);
            proptest::prop_assert_eq!(r.registry(), host.as_str());
        }
    }

    #[test]
    fn round_trips() {
        for s in [
            "docker.io/library/nginx:latest",
            "localhost:5000/a/b_c/d-e:v1.2",
        ] {
            assert_eq!(norm(s), s);
            assert_eq!(norm(&norm(s)), s);
        }
    }
}
