//! The `layer` module (see docs/ARCHITECTURE.md).
