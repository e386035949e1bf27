//! The `sys` module (see docs/ARCHITECTURE.md).

pub mod fs;
