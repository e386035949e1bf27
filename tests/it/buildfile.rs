//! Integration tests: buildfile.
