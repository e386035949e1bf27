//! COPY/ADD semantics and the inputs digest (owned by helper D; placeholder until D's version lands).
