//! `imgctl size`: dive's figures against the real dive 0.13.1 on the docker-archive
//! of the same image, complete wasted bytes against a hand count, uncompressed sizes
//! against `gzip -dc | wc -c`, every CI rule passing and failing with its exit code,
//! `.dive-ci` verdicts equal to dive's, a registry image analysed with the store
//! untouched, the JSON schema, and golden Markdown and JUnit output
//! (`IMGCTL_BLESS=1` rewrites the golden files).

mod dive;
mod fixtures;
mod indexed;
mod output;
mod probe;
mod rules;
