//! Build context: context root and `.dockerignore` (owned by helper D; placeholder until D's version lands).
