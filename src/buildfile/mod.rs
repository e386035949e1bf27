//! Buildfile language: Dockerfile syntax text -> syntax tree with line ranges, variable
//! expansion with Docker's ARG/ENV scoping, the stage graph, and a linter.
//!
//! Pure (rank 0): no I/O beyond the text handed in, and no `use crate::`.
//!
//! Pipeline, as in BuildKit's Dockerfile frontend:
//! 1. [`parse`]: directives, logical lines, heredocs -> [`Buildfile`] (typed instructions,
//!    strings as written, each with its [`LineRange`]).
//! 2. [`resolve`]: build args + platform -> per-stage expanded instructions ([`Resolved`]).
//! 3. [`Graph`]: stage dependencies, `--target` pruning, cycle and unknown-stage errors.
//! 4. [`lint`]: warnings in the spirit of BuildKit's build checks.

mod ast;
mod error;
mod graph;
mod lint;
mod parse;
mod pattern;
mod print;
mod resolve;
mod words;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;

pub use ast::*;
pub use error::{Error, Location};
pub use graph::{Dep, Graph};
pub use lint::{lint, CheckConfig, Rule, Warning};
pub use parse::{parse, parse_bytes, parse_duration, parse_port, KEYWORDS};
pub use print::{instruction as print_instruction, print};
pub use resolve::{
    resolve, Platform, ResolveOptions, Resolved, ResolvedStage, Step, PLATFORM_ARGS, PROXY_ARGS,
};
pub use words::{expand, references, split_words, unquote, words, ExpandError, Words};
