//! The `image` module (see docs/ARCHITECTURE.md).
