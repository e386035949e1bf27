//! Docker's rule for the names users give to containers and networks.

/// Whether `name` is in Docker's name alphabet (moby's `RestrictedNameChars`,
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]*`) and at most `max_len` bytes long. Callers wrap it
/// in their own error (a `--name` flag, a network name...).
pub fn is_restricted_name(name: &str, max_len: usize) -> bool {
    name.len() <= max_len
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::is_restricted_name;

    #[test]
    fn docker_name_alphabet_and_length() {
        for ok in ["a", "web-1", "My_app.v2", "0db"] {
            assert!(is_restricted_name(ok, 64), "{ok} refused");
        }
        for bad in ["", "-a", ".a", "_a", "a b", "a/b", "a:b", "é", "a\n"] {
            assert!(!is_restricted_name(bad, 64), "{bad:?} accepted");
        }
        let long = "a".repeat(65);
        assert!(is_restricted_name(&long, 128));
        assert!(!is_restricted_name(&long, 64));
        assert!(is_restricted_name(&long[..64], 64));
    }
}
