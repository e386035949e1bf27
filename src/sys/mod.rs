//! The `sys` module: thin wrappers over the syscalls the project uses (see docs/ARCHITECTURE.md).

pub mod mount;
