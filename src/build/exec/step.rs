//! One step: config instructions applied in place; RUN, COPY and ADD looked up in the
//! cache and, on a miss, executed on a fresh snapshot whose upper dir becomes the
//! step's layer.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::snap::{new_key, Sources};
use super::{other, Exec};
use crate::build::cache::{Cache, Entry, Inputs};
use crate::build::config::{self, StageFlags};
use crate::build::progress::Event;
use crate::build::run::{self, MountSources};
use crate::build::{copy, BuildError};
use crate::buildfile::{self, Command, Instruction, ResolvedStage};
use crate::image::commit::{self, Image};
use crate::layer::{DiffOptions, WhiteoutFormat};
use crate::oci::History;
use crate::snapshot::Snapshotter;

impl Exec<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn step(
        &self,
        st: &ResolvedStage,
        pos: Option<usize>,
        step: &buildfile::Step,
        ins: &Instruction,
        name: &str,
        image: &mut Image,
        key: &mut String,
        flags: &mut StageFlags,
        no_cache: bool,
        parent_missed: &mut bool,
    ) -> Result<(), BuildError> {
        let at = self.at(ins);
        let t = Instant::now();
        match &step.command {
            Command::Run { .. } | Command::Copy { .. } | Command::Add { .. } => {}
            Command::Arg { .. } => return Ok(()),
            other_cmd => {
                let n = self.next_step(name);
                let by = config::apply(image, other_cmd, flags, &at)?;
                if let Some(by) = by {
                    image.push_empty(History {
                        created: Some(self.config_step_time(image)),
                        created_by: Some(by.clone()),
                        ..Default::default()
                    });
                    *key = Cache::key(key, &by, "");
                }
                self.progress.event(&Event::Done {
                    n,
                    took: t.elapsed(),
                });
                return Ok(());
            }
        }
        let n = self.next_step(name);
        let result = self.layer_step(st, pos, step, ins, n, image, key, no_cache, parent_missed);
        match &result {
            Ok(()) => self.progress.event(&Event::Done {
                n,
                took: t.elapsed(),
            }),
            Err(e) => self.progress.event(&Event::Error {
                n,
                took: t.elapsed(),
                message: &self.redact(&e.to_string()),
            }),
        }
        result
    }

    /// RUN, COPY or ADD: cache lookup, else execute and commit the layer.
    #[allow(clippy::too_many_arguments)]
    fn layer_step(
        &self,
        st: &ResolvedStage,
        pos: Option<usize>,
        step: &buildfile::Step,
        ins: &Instruction,
        n: usize,
        image: &mut Image,
        key: &mut String,
        no_cache: bool,
        parent_missed: &mut bool,
    ) -> Result<(), BuildError> {
        let at = self.at(ins);
        let cfg = image.runtime_config();
        let workdir = cfg
            .as_ref()
            .and_then(|c| c.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into());
        let image_env: Vec<String> = cfg.as_ref().and_then(|c| c.env.clone()).unwrap_or_default();
        // Build args (and proxy args) the step sees, beyond the image's ENV.
        let mut args: Vec<(String, String)> = match pos {
            Some(p) => st.env_at(p),
            None => Vec::new(),
        };
        args.retain(|(k, _)| {
            !image_env
                .iter()
                .any(|e| e.split_once('=').map(|(ek, _)| ek).unwrap_or(e) == k)
        });
        let instruction = serde_json::to_string(&(&step.command, &step.heredocs, &workdir))
            .map_err(|e| BuildError::Other(e.to_string()))?;
        let sources = Sources {
            exec: self,
            views: std::cell::RefCell::new(Vec::new()),
        };
        // Inputs: COPY/ADD source content; RUN's args and environment.
        let mut inputs = Inputs::new();
        let copy_from: Option<String> = match &step.command {
            Command::Copy { from, .. } => from.clone(),
            _ => None,
        };
        match &step.command {
            Command::Copy { .. } | Command::Add { .. } => {
                // --chown is part of the instruction (and so of the key); the inputs
                // are the sources' names, content, modes and owners.
                let spec = copy_spec(&step.command, &step.heredocs, &at, &workdir, None)?;
                let d = match copy_from.as_deref() {
                    None => Some(copy::inputs_digest(
                        &copy::Source::Context(&self.context),
                        &spec,
                    )?),
                    // A stage's content is named by its key (every layer step's key
                    // holds the diff ID it produced): no need to mount and read it.
                    Some(f) if self.stage_key(f).is_some() => {
                        let k = self.stage_key(f).unwrap_or_default();
                        inputs.insert(format!("stage {f}"), k);
                        None
                    }
                    Some(f) => {
                        let root = sources.root_of(Some(f))?;
                        Some(copy::inputs_digest(&copy::Source::Root(&root), &spec)?)
                    }
                };
                for f in d.iter().flat_map(|d| &d.files) {
                    inputs.insert(
                        f.path.clone(),
                        serde_json::to_string(f).map_err(|e| BuildError::Other(e.to_string()))?,
                    );
                }
            }
            Command::Run { .. } => {
                for (k, v) in &args {
                    if !buildfile::PROXY_ARGS.contains(&k.as_str()) {
                        inputs.insert(format!("arg {k}"), v.clone());
                    }
                }
                for e in &image_env {
                    inputs.insert(format!("env {e}"), String::new());
                }
                let network = step_network(&step.command, &at)?.unwrap_or(self.opts.network);
                inputs.insert(format!("network {network:?}"), String::new());
            }
            _ => {}
        }
        let inputs_digest = Cache::inputs_digest(&inputs);
        let step_key = Cache::key(key, &instruction, &inputs_digest);
        let hit = if no_cache {
            None
        } else {
            self.cache.get(&step_key).filter(|e| match &e.layer {
                Some(l) => self.store.has_blob(&l.digest),
                None => true,
            })
        };
        let hit = match hit {
            None if !no_cache && !self.imported.is_empty() => self.remote_hit(&step_key)?,
            h => h,
        };
        let created_by = match &step.command {
            Command::Run { command, .. } => {
                let argv = config::run_argv(command, &step.heredocs, &config::shell(image));
                // Proxy variables reach the step but, as in Docker, neither the
                // history nor the cache key (they may hold credentials).
                let shown: Vec<(String, String)> = args
                    .iter()
                    .filter(|(k, _)| !buildfile::PROXY_ARGS.contains(&k.as_str()))
                    .cloned()
                    .collect();
                config::run_created_by(&argv, &shown)
            }
            Command::Copy {
                sources: s, dest, ..
            } => format!("COPY {} {dest} # buildkit", s.join(" ")),
            Command::Add {
                sources: s, dest, ..
            } => format!("ADD {} {dest} # buildkit", s.join(" ")),
            _ => String::new(),
        };
        let history = History {
            created: Some(self.now()),
            created_by: Some(created_by),
            comment: Some("buildkit.dockerfile.v0".into()),
            ..Default::default()
        };
        if let Some(e) = hit {
            self.progress.event(&Event::Cached { n });
            self.steps_cached.fetch_add(1, Ordering::SeqCst);
            self.record(st.index, &step_key, &e);
            self.apply_entry(image, key, &step_key, &e, history);
            return Ok(());
        }
        let reason = if no_cache {
            "--no-cache".to_string()
        } else if *parent_missed {
            "an earlier step of this stage ran again".to_string()
        } else {
            self.cache.explain(key, &instruction, &inputs)
        };
        self.progress.event(&Event::Miss { n, reason: &reason });
        *parent_missed = true;
        self.steps_run.fetch_add(1, Ordering::SeqCst);
        let mut active = self.mount(image, "build", false)?;
        let merged = active.merged.clone();
        // The working directory exists for every step (BuildKit creates it).
        if workdir != "/" {
            let rootfd =
                crate::sys::fs::open_dir_path(&merged).map_err(|e| BuildError::io(&merged, e))?;
            mkdir_in_root(std::os::fd::AsFd::as_fd(&rootfd), &workdir)
                .map_err(|e| BuildError::io(&merged, e))?;
        }
        let mut stubs: Vec<PathBuf> = Vec::new();
        match &step.command {
            Command::Run {
                command, mounts, ..
            } => {
                let argv = config::run_argv(command, &step.heredocs, &config::shell(image));
                let sm = run::step_mounts(
                    &self.opts.root,
                    mounts,
                    &self.opts.secrets,
                    &sources,
                    &at,
                    &workdir,
                )?;
                let state = self.opts.root.join("tmp").join(new_key("step"));
                fs::create_dir_all(&state).map_err(|e| BuildError::io(&state, e))?;
                let network = match step_network(&step.command, &at)? {
                    Some(n) => n,
                    None => self.opts.network,
                };
                let sc = run::StepConfig {
                    id: &new_key("build"),
                    argv,
                    image: cfg.as_ref(),
                    extra_env: args.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                    limits: self.opts.limits.clone(),
                    network,
                    state_dir: &state,
                };
                let spec = run::step_spec(&sc, &merged, &sm.mounts);
                let r = spec.and_then(|spec| {
                    for m in spec.mounts().iter().flatten() {
                        if let Some(s) = first_missing(&merged, m.destination()) {
                            stubs.push(s);
                        }
                    }
                    let mut on_line = |at: std::time::Duration, l: &str| {
                        self.progress.event(&Event::Output {
                            n,
                            at,
                            line: &self.redact(l),
                        });
                    };
                    let net = (network == crate::build::Network::Bridge).then(|| run::StepNet {
                        root: &self.opts.root,
                        state_dir: &state,
                    });
                    run::run_step(
                        &spec,
                        &merged,
                        &self.opts.cgroup_root,
                        Some(&crate::container::seccomp_cache_dir(&self.opts.root)),
                        net.as_ref(),
                        &mut on_line,
                    )
                });
                let _ = fs::remove_dir_all(&state);
                drop(sm);
                let line = self.source_line(ins.lines.start);
                let what = line.trim().to_string();
                let fail = |reason: String, code: i32, out: &[u8]| {
                    let text = self.redact(&String::from_utf8_lossy(out));
                    let lines: Vec<&str> = text.lines().collect();
                    let tail = lines[lines.len().saturating_sub(10)..].join("\n");
                    BuildError::StepFailed(Box::new(crate::build::StepFailure {
                        at: at.clone(),
                        what: what.clone(),
                        reason,
                        code,
                        source_line: line.clone(),
                        tail,
                    }))
                };
                let out = match r {
                    Ok(o) => o,
                    Err(BuildError::StepFailed(f)) => {
                        return Err(fail(f.reason, f.code, f.tail.as_bytes()))
                    }
                    Err(e) => return Err(e),
                };
                use crate::sandbox::Outcome;
                match out.outcome {
                    Outcome::Exited(0) => {}
                    Outcome::Exited(c) => {
                        return Err(fail(
                            format!("did not complete successfully: exit code {c}"),
                            c,
                            &out.output,
                        ))
                    }
                    Outcome::Signaled(s) => {
                        return Err(fail(format!("killed by signal {s}"), 128 + s, &out.output))
                    }
                    Outcome::OomKilled => {
                        let lim = self
                            .opts
                            .limits
                            .memory
                            .map(|m| format!("{} MiB", m >> 20))
                            .unwrap_or_else(|| "none".into());
                        return Err(fail(
                            format!("killed: out of memory (--memory {lim})"),
                            137,
                            &out.output,
                        ));
                    }
                }
            }
            Command::Copy { .. } | Command::Add { .. } => {
                let spec = copy_spec(&step.command, &step.heredocs, &at, &workdir, Some(&merged))?;
                match copy_from.as_deref() {
                    None => copy::copy(&copy::Source::Context(&self.context), &spec, &merged)?,
                    Some(f) => {
                        let root = sources.root_of(Some(f))?;
                        copy::copy(&copy::Source::Root(&root), &spec, &merged)?
                    }
                }
            }
            _ => {}
        }
        drop(sources);
        active.unmount()?;
        let upper = self.snaps.upper_dir(&active.key);
        for s in &stubs {
            if let Ok(rel) = s.strip_prefix(&merged) {
                let p = upper.join(rel);
                let _ = match fs::symlink_metadata(&p) {
                    Ok(m) if m.is_dir() => fs::remove_dir_all(&p),
                    Ok(_) => fs::remove_file(&p),
                    Err(_) => Ok(()),
                };
            }
        }
        let empty = fs::read_dir(&upper)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        let entry = if empty {
            Entry {
                layer: None,
                diff_id: None,
                created: history.created.clone(),
            }
        } else {
            let dopts = DiffOptions {
                compression: self.opts.compression,
                source_date_epoch: self.epoch,
                whiteouts: WhiteoutFormat::Overlay,
            };
            let l = commit::write_layer(&self.store, &upper, &dopts)
                .map_err(|e| other("write layer")(&e))?;
            self.snaps
                .commit(&active.key, &l.diff_id)
                .map_err(|e| other("commit snapshot")(&e))?;
            Entry {
                layer: Some(l.descriptor),
                diff_id: Some(l.diff_id),
                created: history.created.clone(),
            }
        };
        drop(active);
        self.cache.put(&step_key, &entry)?;
        self.cache.record_inputs(key, &instruction, &inputs)?;
        self.record(st.index, &step_key, &entry);
        self.apply_entry(image, key, &step_key, &entry, history);
        Ok(())
    }

    fn apply_entry(
        &self,
        image: &mut Image,
        key: &mut String,
        step_key: &str,
        e: &Entry,
        mut history: History,
    ) {
        if self.epoch.is_none() {
            if let Some(c) = &e.created {
                history.created = Some(c.clone());
            }
        }
        match (&e.layer, &e.diff_id) {
            (Some(l), Some(d)) => {
                image.push_layer(
                    commit::NewLayer {
                        descriptor: l.clone(),
                        diff_id: d.clone(),
                    },
                    history,
                );
                *key = Cache::key(step_key, &d.to_string(), "");
            }
            _ => {
                image.push_empty(history);
                *key = Cache::key(step_key, "empty", "");
            }
        }
    }
}

/// The [`copy::CopySpec`] of a COPY/ADD. `dest_root` resolves `--chown` names (the
/// inputs digest is computed without it: the flag is part of the step's key).
fn copy_spec(
    cmd: &Command,
    heredocs: &[buildfile::Heredoc],
    at: &str,
    workdir: &str,
    dest_root: Option<&Path>,
) -> Result<copy::CopySpec, BuildError> {
    let mut spec = copy::CopySpec {
        workdir: workdir.to_string(),
        at: at.to_string(),
        heredocs: heredocs
            .iter()
            .map(|h| copy::HeredocSource {
                name: h.name.clone(),
                content: h.content.clone(),
            })
            .collect(),
        ..Default::default()
    };
    let (chown, chmod) = match cmd {
        Command::Copy {
            sources,
            dest,
            chown,
            chmod,
            link,
            parents,
            exclude,
            ..
        } => {
            spec.srcs = sources.clone();
            spec.dest = dest.clone();
            spec.link = *link;
            spec.parents = *parents;
            spec.exclude = exclude.clone();
            (chown, chmod)
        }
        Command::Add {
            sources,
            dest,
            chown,
            chmod,
            link,
            checksum,
            exclude,
            unpack,
            ..
        } => {
            spec.srcs = sources.clone();
            spec.dest = dest.clone();
            spec.link = *link;
            spec.exclude = exclude.clone();
            spec.add = true;
            spec.checksum = checksum.clone();
            spec.unpack = *unpack;
            (chown, chmod)
        }
        _ => {
            return Err(BuildError::Instruction {
                at: at.to_string(),
                message: format!("{} is not COPY or ADD", cmd.name()),
            })
        }
    };
    if let (Some(c), Some(root)) = (chown, dest_root) {
        spec.chown = Some(copy::resolve_chown(c, root, at)?);
    }
    if let Some(m) = chmod {
        spec.chmod = Some(copy::Chmod::parse(m).map_err(|e| BuildError::Instruction {
            at: at.to_string(),
            message: format!("--chmod={m}: {e}"),
        })?);
    }
    Ok(spec)
}

/// `RUN --network=` and `--security=`: `None` for the build's default network.
fn step_network(cmd: &Command, at: &str) -> Result<Option<crate::build::Network>, BuildError> {
    let Command::Run {
        network, security, ..
    } = cmd
    else {
        return Ok(None);
    };
    if let Some(sec) = security.as_deref() {
        if sec != "sandbox" {
            return Err(BuildError::Instruction {
                at: at.to_string(),
                message: format!(
                    "RUN --security={sec}: only sandbox is supported (imgctl never runs build steps privileged)"
                ),
            });
        }
    }
    match network.as_deref() {
        None | Some("default") => Ok(None),
        Some("none") => Ok(Some(crate::build::Network::None)),
        Some("host") => Ok(Some(crate::build::Network::Host)),
        Some(other) => Err(BuildError::Instruction {
            at: at.to_string(),
            message: format!("RUN --network={other}: expected default, none or host"),
        }),
    }
}

/// The first component of `dest` (a container path) missing under `root`: what a
/// mount creates as its mount point, removed from the layer afterwards.
fn first_missing(root: &Path, dest: &Path) -> Option<PathBuf> {
    let mut p = root.to_path_buf();
    for c in dest.components() {
        if let std::path::Component::Normal(n) = c {
            p.push(n);
            if fs::symlink_metadata(&p).is_err() {
                return Some(p);
            }
        }
    }
    None
}

/// Create `rel` (and parents, 0755) inside the root `root`, each component resolved
/// with openat2(RESOLVE_IN_ROOT) so a symlink in the image cannot lead out.
fn mkdir_in_root(
    root: std::os::fd::BorrowedFd<'_>,
    rel: &str,
) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd;
    let mut cur = String::new();
    for c in rel.split('/').filter(|c| !c.is_empty() && *c != ".") {
        let parent = crate::sys::fs::open_dir_in_root(root, cur.as_bytes())?;
        match rustix::fs::mkdirat(parent.as_fd(), c, rustix::fs::Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(std::io::Error::from_raw_os_error(e.raw_os_error())),
        }
        if !cur.is_empty() {
            cur.push('/');
        }
        cur.push_str(c);
    }
    crate::sys::fs::open_dir_in_root(root, cur.as_bytes())
}
