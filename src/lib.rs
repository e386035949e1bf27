//! imgctl: a daemonless container image builder, layer store and runner.
//!
//! The crate is layered (see docs/ARCHITECTURE.md); a module may only `use crate::X`
//! for an `X` of lower rank. `tests/layering.rs` checks this.
//!
//! | rank | modules |
//! |---|---|
//! | 0 | [`oci`], [`sys`], [`buildfile`] |
//! | 1 | [`store`], [`sandbox`] |
//! | 2 | [`layer`], [`snapshot`], [`registry`], [`network`] |
//! | 3 | [`image`] |
//! | 4 | [`container`] (and `report`) |
//! | 5 | `build` (uses `container` for Docker's step defaults and users) |
//! | 6 | [`cli`] |

pub mod buildfile;
pub mod oci;
pub mod sys;

pub mod sandbox;
pub mod store;

pub mod layer;
pub mod network;
pub mod registry;
pub mod snapshot;

pub mod container;
pub mod image;
pub mod report;

pub mod build;

pub mod cli;
