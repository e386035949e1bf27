//! The `buildfile` module (see docs/ARCHITECTURE.md).
