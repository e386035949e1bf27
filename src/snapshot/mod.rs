//! The `snapshot` module (see docs/ARCHITECTURE.md).
