//! `run --pull missing|always|never`: resolve an image argument, pulling it first
//! when the policy says so (Docker's `--pull`, default `missing`).

use std::path::Path;
use std::sync::Arc;

use super::{pull, resolve_image, ImageError, OciDir, Progress, PullRequest, ResolvedImage};
use crate::oci::Reference;

/// When `run` pulls its image (Docker's `--pull`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Pull only when the store does not have the image.
    #[default]
    Missing,
    /// Always ask the registry (and fetch what changed) before running.
    Always,
    /// Never pull: a missing image is an error.
    Never,
}

impl PullPolicy {
    /// Parse `missing`, `always` or `never`.
    pub fn parse(s: &str) -> Result<PullPolicy, String> {
        match s {
            "missing" => Ok(PullPolicy::Missing),
            "always" => Ok(PullPolicy::Always),
            "never" => Ok(PullPolicy::Never),
            other => Err(format!(
                "invalid --pull {other:?}: expected missing, always or never"
            )),
        }
    }
}

/// `sha256:<64 hex>` or 64 hex digits: an image ID, never a repository name
/// (Docker refuses to pull such a name).
fn is_full_id(name: &str) -> bool {
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Resolve `name` once, pulling it into the store at `root` first according to
/// `policy` (with `progress` told about the download). `oci:DIR[:TAG]` layouts
/// are never pulled. With [`PullPolicy::Never`] a missing image is
/// [`ImageError::NotFound`].
pub fn resolve_or_pull(
    root: &Path,
    name: &str,
    policy: PullPolicy,
    progress: Arc<dyn Progress>,
) -> Result<ResolvedImage, ImageError> {
    // A layout on disk and a full image ID name nothing a registry has.
    if OciDir::parse_ref(name).is_some() || is_full_id(name) {
        return resolve_image(root, name);
    }
    if policy != PullPolicy::Always {
        match resolve_image(root, name) {
            Err(ImageError::NotFound { .. }) if policy == PullPolicy::Missing => {}
            other => return other,
        }
    }
    // A name that is not a valid reference (e.g. a mistyped ID) cannot be pulled:
    // say it is not in the store.
    let Ok(reference) = Reference::parse(name) else {
        return Err(ImageError::NotFound {
            name: name.to_string(),
        });
    };
    let req = PullRequest {
        reference,
        platform: None,
        max_concurrent_downloads: 3,
        unpack: true,
    };
    pull(root, &req, progress)?;
    resolve_image(root, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_parses_dockers_words_only() {
        assert_eq!(PullPolicy::parse("missing"), Ok(PullPolicy::Missing));
        assert_eq!(PullPolicy::parse("always"), Ok(PullPolicy::Always));
        assert_eq!(PullPolicy::parse("never"), Ok(PullPolicy::Never));
        assert_eq!(PullPolicy::default(), PullPolicy::Missing);
        let e = PullPolicy::parse("sometimes").unwrap_err();
        assert!(e.contains("missing, always or never"), "{e}");
    }

    #[test]
    fn never_on_an_empty_store_is_not_found_and_creates_nothing() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("store");
        let e = resolve_or_pull(&root, "busybox", PullPolicy::Never, Arc::new(())).unwrap_err();
        assert!(matches!(e, ImageError::NotFound { .. }), "{e}");
        assert!(!root.exists(), "a lookup created the store");
    }

    #[test]
    fn a_full_image_id_is_never_pulled() {
        let id = "a".repeat(64);
        assert!(is_full_id(&id));
        assert!(is_full_id(&format!("sha256:{id}")));
        assert!(!is_full_id("busybox"));
        assert!(!is_full_id(&id[..12]));
        // Always would pull a name; an ID is only looked up (no network).
        let t = tempfile::tempdir().unwrap();
        let e = resolve_or_pull(t.path(), &id, PullPolicy::Always, Arc::new(())).unwrap_err();
        assert!(matches!(e, ImageError::NotFound { .. }), "{e}");
    }
}
