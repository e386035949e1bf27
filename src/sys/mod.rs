//! The `sys` module (see docs/ARCHITECTURE.md).
