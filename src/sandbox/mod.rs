//! The `sandbox` module (see docs/ARCHITECTURE.md).
