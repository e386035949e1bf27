//! Containers: runtime spec from an image config and run flags; later lifecycle and state.
