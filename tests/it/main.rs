//! imgctl's integration tests: one test binary, one module per area, shared helpers in
//! `common`. Tests that need root or a kernel feature call `common::require(...)`, which
//! skips with a reason, or fails when `IMGCTL_TEST_STRICT=1` (CI).

mod common;

mod archive;
mod build;
mod build_compat;
mod build_copy;
mod buildfile;
mod cli;
mod defects;
mod e2e;
mod gc;
mod habits;
mod habits_create;
mod habits_digest;
mod habits_help;
mod habits_images;
mod habits_load;
mod habits_missing;
mod habits_rootless;
mod habits_sizes;
mod hostile;
mod layer;
mod lifecycle;
mod lifecycle_d;
mod lifecycle_monitor;
mod network;
mod push;
mod push_build;
mod registry;
mod resources;
mod runtime_cli;
mod sandbox;
mod size;
mod startup;
mod stats;
mod store;
