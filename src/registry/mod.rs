//! The `registry` module (see docs/ARCHITECTURE.md).
