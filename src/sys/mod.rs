//! Thin wrappers over the syscalls the project uses (see docs/ARCHITECTURE.md).

pub mod fs;
pub mod mount;
