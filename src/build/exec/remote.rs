//! The executor's side of the shared cache and of `--push`: records imported by
//! `--cache-from` consulted when the local cache misses, every layer step's record
//! collected for `--cache-to`, and the export and push after the image is
//! committed.

use std::time::Instant;

use super::Exec;
use crate::build::cache::Entry;
use crate::build::progress::Event;
use crate::build::remote::{self, CacheMode, Imported, Record};
use crate::build::BuildError;
use crate::buildfile::Dep;
use crate::oci::{Digest, Reference};

impl Exec<'_> {
    /// Read every `--cache-from` source (manifest and records only).
    pub(super) fn import_caches(&self) -> Result<Vec<Imported>, BuildError> {
        let mut out = Vec::new();
        for src in &self.opts.cache_from {
            let n = self.next_step(&format!("[internal] importing cache manifest from {src}"));
            let t = Instant::now();
            match Imported::load(&self.opts.root, &self.store, src) {
                Ok((imp, warning)) => {
                    let text = match warning {
                        Some(w) => w,
                        None => format!("{} cache records", imp.len()),
                    };
                    self.progress.event(&Event::Note { n, text: &text });
                    self.progress.event(&Event::Done {
                        n,
                        took: t.elapsed(),
                    });
                    out.push(imp);
                }
                Err(e) => {
                    self.progress.event(&Event::Error {
                        n,
                        took: t.elapsed(),
                        message: &e.to_string(),
                    });
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// A step the local cache does not have, from an imported cache: its layer blob
    /// is downloaded (verified) and the entry kept in the local cache too.
    pub(super) fn remote_hit(&self, key: &str) -> Result<Option<Entry>, BuildError> {
        for imp in &self.imported {
            if let Some(e) = imp.hit(&self.opts.root, &self.store, key)? {
                self.cache.put(key, &e)?;
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    /// Remember what a layer step of stage `stage` produced, for `--cache-to`.
    pub(super) fn record(&self, stage: usize, key: &str, e: &Entry) {
        if self.opts.cache_to.is_empty() {
            return;
        }
        if let Ok(mut r) = self.records.lock() {
            r.push((
                stage,
                Record {
                    key: key.to_string(),
                    layer: e.layer.clone(),
                    diff_id: e.diff_id.clone(),
                    created: e.created.clone(),
                },
            ));
        }
    }

    /// The final stage and the stages it is based on (`FROM <stage>`).
    fn final_chain(&self, last: usize) -> Vec<usize> {
        let mut v = vec![last];
        let mut i = last;
        while let Some(Dep::Stage(s)) = self.graph.nodes.get(i).map(|n| &n.base) {
            if v.contains(s) {
                break;
            }
            v.push(*s);
            i = *s;
        }
        v
    }

    /// Export the collected records to every `--cache-to` target.
    pub(super) fn export_caches(&self, last: usize) -> Result<(), BuildError> {
        let all: Vec<(usize, Record)> = self.records.lock().map(|r| r.clone()).unwrap_or_default();
        for target in &self.opts.cache_to {
            let stages = match target.mode {
                CacheMode::Max => None,
                CacheMode::Min => Some(self.final_chain(last)),
            };
            let records: Vec<Record> = all
                .iter()
                .filter(|(s, _)| stages.as_ref().is_none_or(|v| v.contains(s)))
                .map(|(_, r)| r.clone())
                .collect();
            let n = self.next_step(&format!("exporting cache to {}", target.to));
            let t = Instant::now();
            match remote::export(&self.opts.root, &self.store, &records, &target.to) {
                Ok(d) => {
                    self.progress.event(&Event::Note {
                        n,
                        text: &format!("{} records, manifest {d}", records.len()),
                    });
                    self.progress.event(&Event::Done {
                        n,
                        took: t.elapsed(),
                    });
                }
                Err(e) => {
                    self.progress.event(&Event::Error {
                        n,
                        took: t.elapsed(),
                        message: &e.to_string(),
                    });
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// `--push`: every tag to its registry.
    pub(super) fn push_tags(&self) -> Result<Vec<(Reference, Digest)>, BuildError> {
        let mut out = Vec::new();
        for tag in &self.opts.tags {
            let n = self.next_step(&format!("pushing {tag}"));
            let t = Instant::now();
            let req = crate::image::PushRequest::new(&tag.to_string());
            match crate::image::push(&self.opts.root, &req, std::sync::Arc::new(())) {
                Ok((dest, pushed)) => {
                    self.progress.event(&Event::Note {
                        n,
                        text: &format!(
                            "{} blobs uploaded, {} already there, {} mounted; manifest {}",
                            pushed.blobs_uploaded,
                            pushed.blobs_existing,
                            pushed.blobs_mounted,
                            pushed.digest
                        ),
                    });
                    self.progress.event(&Event::Done {
                        n,
                        took: t.elapsed(),
                    });
                    out.push((dest, pushed.digest));
                }
                Err(e) => {
                    let msg = format!("push {tag}: {e}");
                    self.progress.event(&Event::Error {
                        n,
                        took: t.elapsed(),
                        message: &msg,
                    });
                    return Err(BuildError::Other(msg));
                }
            }
        }
        Ok(out)
    }
}
