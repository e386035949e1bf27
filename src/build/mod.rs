//! The build executor: a Buildfile plan (stage graph) -> images in the store.
//!
//! Owns the joining of the lower layers for `imgctl build`: the context ([`context`]),
//! COPY/ADD semantics ([`copy`]), RUN steps through the sandbox, the step cache and the
//! commit of each step's layer as a new image.

pub mod context;
pub mod copy;

use std::path::PathBuf;

/// Errors of the build module. Every variant that comes from a Buildfile instruction
/// names where (`Buildfile:LINE`), so the CLI can print the line with a caret.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Buildfile could not be parsed, resolved or planned.
    #[error(transparent)]
    Buildfile(#[from] crate::buildfile::Error),
    /// The build context is unusable (missing, not a directory, unreadable ignore file).
    #[error("build context {}: {message}", .path.display())]
    Context { path: PathBuf, message: String },
    /// A COPY/ADD source is invalid (outside the context, no match, unreadable).
    #[error("{at}: {message}")]
    Source { at: String, message: String },
    /// An instruction or flag is invalid or unsupported here.
    #[error("{at}: {message}")]
    Instruction { at: String, message: String },
    /// A RUN step exited non-zero (or was killed).
    #[error("{at}: {what} exited with code {code}")]
    StepFailed {
        at: String,
        what: String,
        code: i32,
        /// The last lines of the step's output.
        tail: String,
    },
    /// A filesystem operation failed.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Any other failure from a lower layer (store, image, sandbox, registry).
    #[error("{0}")]
    Other(String),
}

impl BuildError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> BuildError {
        BuildError::Io {
            path: path.into(),
            source,
        }
    }
}
