//! The executor: Buildfile -> plan -> stages -> steps -> committed image.
//!
//! Each stage starts from its base (an image in the store, `scratch`, or an earlier
//! stage's result) as an in-memory [`Image`]; config instructions change it in
//! place; RUN/COPY/ADD look their key up in the [`Cache`] and, on a miss, run on a
//! fresh overlay snapshot of the image so far, whose upper dir becomes the step's
//! layer ([`commit::write_layer`]) and, committed as a snapshot, the lower of the
//! next step. Only after every stage succeeded is the final image committed and
//! tagged. Every mount a step makes is undone before the step returns, on error too.

use std::fs;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use super::cache::Cache;
use super::config::StageFlags;
use super::progress::{Event, Progress};
use super::{BuildError, BuildOptions, BuildfileSource, Built};
use crate::buildfile::{self, Dep, Graph, Instruction, ResolveOptions, ResolvedStage};
use crate::image::commit::{self, Image};
use crate::oci::Digest;
use crate::snapshot::Overlay;
use crate::store::Store;

/// The result of one stage.
#[derive(Clone)]
struct StageResult {
    image: Image,
    key: String,
}

struct Exec<'a> {
    opts: &'a BuildOptions,
    progress: &'a dyn Progress,
    file: String,
    text: String,
    bf: buildfile::Buildfile,
    graph: Graph,
    stages: Vec<ResolvedStage>,
    store: Store,
    snaps: Overlay,
    context: super::context::Context,
    cache: Cache,
    epoch: Option<u64>,
    step_no: AtomicUsize,
    results: Mutex<Vec<Option<StageResult>>>,
    steps_run: AtomicUsize,
    steps_cached: AtomicUsize,
    /// Serialises unpacking a chain (two stages on one base start together) and pulls.
    unpack: Mutex<()>,
    /// Images pulled by this build (`--pull` refreshes each once).
    pulled: Mutex<std::collections::HashSet<String>>,
    secrets: Vec<Vec<u8>>,
    /// `--cache-from` records.
    imported: Vec<super::remote::Imported>,
    /// (stage, record) of every layer step, for `--cache-to`.
    records: Mutex<Vec<(usize, super::remote::Record)>>,
}

fn other(what: &str) -> impl Fn(&dyn std::fmt::Display) -> BuildError + '_ {
    move |e| BuildError::Other(format!("{what}: {e}"))
}

fn read_buildfile(opts: &BuildOptions) -> Result<(String, String), BuildError> {
    let path = match &opts.buildfile {
        BuildfileSource::Text(t) => return Ok(("Buildfile".into(), t.clone())),
        BuildfileSource::Path(p) => {
            if p.is_relative() && !p.exists() {
                opts.context.join(p)
            } else {
                p.clone()
            }
        }
        BuildfileSource::Default => {
            let b = opts.context.join("Buildfile");
            if b.exists() {
                b
            } else {
                let d = opts.context.join("Dockerfile");
                if !d.exists() {
                    return Err(BuildError::Context {
                        path: opts.context.clone(),
                        message:
                            "no Buildfile or Dockerfile in the context (name one with -f FILE)"
                                .into(),
                    });
                }
                d
            }
        }
    };
    let text = fs::read_to_string(&path).map_err(|e| BuildError::io(&path, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Buildfile".into());
    Ok((name, text))
}

fn source_date_epoch(opts: &BuildOptions) -> Result<Option<u64>, BuildError> {
    let v = opts
        .build_args
        .iter()
        .rev()
        .find(|(k, _)| k == "SOURCE_DATE_EPOCH")
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok());
    match v {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => s.trim().parse().map(Some).map_err(|_| {
            BuildError::Other(format!(
                "SOURCE_DATE_EPOCH={s}: not a number of seconds since 1970"
            ))
        }),
    }
}

pub(super) fn build(opts: &BuildOptions, progress: &dyn Progress) -> Result<Built, BuildError> {
    if !opts.context.is_dir() {
        return Err(BuildError::Context {
            path: opts.context.clone(),
            message: "not a directory".into(),
        });
    }
    let started = Instant::now();
    progress.event(&Event::Start {
        n: 1,
        name: "[internal] load build definition",
    });
    let (file, text) = read_buildfile(opts)?;
    let bf = buildfile::parse(&file, &text)?;
    let host = buildfile::Platform::host();
    let target_platform = match &opts.platform {
        None => host.clone(),
        Some(p) => {
            let t = buildfile::Platform::parse(p).ok_or_else(|| {
                BuildError::Other(format!("--platform {p}: expected os/arch[/variant]"))
            })?;
            if t.os != host.os || t.arch != host.arch {
                return Err(BuildError::Other(format!(
                    "--platform {p}: only this host's platform ({host}) can be built (no emulation)"
                )));
            }
            t
        }
    };
    let ro = ResolveOptions {
        build_args: opts.build_args.clone(),
        target_platform,
        build_platform: host,
    };
    let resolved = buildfile::resolve(&bf, &file, &text, &ro)?;
    let graph = Graph::new(&resolved, &file, &text)?;
    let plan = graph.plan(opts.target.as_deref())?;
    progress.event(&Event::Done {
        n: 1,
        took: started.elapsed(),
    });
    let store = Store::open(&opts.root).map_err(|e| other("open store")(&e))?;
    let _lease = store.lease().map_err(|e| other("store lease")(&e))?;
    let snaps = Overlay::open(&opts.root).map_err(|e| other("snapshots")(&e))?;
    let cache = Cache::open(&opts.root)?;
    reap_dead_builds(&snaps, &opts.root, &opts.cgroup_root);
    let bf_path = match &opts.buildfile {
        BuildfileSource::Path(p) => p.clone(),
        _ => opts.context.join(&file),
    };
    let context = super::context::Context::open(&opts.context, &bf_path)?;
    let mut secrets = Vec::new();
    for s in &opts.secrets {
        let v = s.value()?;
        let t = String::from_utf8_lossy(&v).trim().as_bytes().to_vec();
        if !t.is_empty() {
            secrets.push(t);
        }
    }
    let n = resolved.stages.len();
    let mut x = Exec {
        opts,
        progress,
        file,
        text,
        bf,
        graph,
        stages: resolved.stages,
        store,
        snaps,
        context,
        cache,
        epoch: source_date_epoch(opts)?,
        step_no: AtomicUsize::new(1),
        results: Mutex::new(vec![None; n]),
        steps_run: AtomicUsize::new(0),
        steps_cached: AtomicUsize::new(0),
        unpack: Mutex::new(()),
        pulled: Mutex::new(Default::default()),
        secrets,
        imported: Vec::new(),
        records: Mutex::new(Vec::new()),
    };
    x.imported = x.import_caches()?;
    x.run_plan(&plan)?;
    let last = *plan
        .last()
        .ok_or_else(|| BuildError::Other("nothing to build".into()))?;
    let mut image = x
        .results
        .lock()
        .ok()
        .and_then(|mut r| r[last].take())
        .map(|r| r.image)
        .ok_or_else(|| BuildError::Other("the target stage did not finish".into()))?;
    if !opts.labels.is_empty() {
        let l = image
            .config_mut()
            .labels
            .get_or_insert_with(Default::default);
        for (k, v) in &opts.labels {
            l.insert(k.clone(), v.clone());
        }
    }
    // The time of the last step that ran (a fully cached rebuild gives the same
    // image, as Docker's), or SOURCE_DATE_EPOCH.
    image.config.created = Some(x.config_step_time(&image));
    let n = x.step_no.fetch_add(1, Ordering::SeqCst) + 1;
    let t = Instant::now();
    x.progress.event(&Event::Start {
        n,
        name: "exporting to image",
    });
    let committed = commit::commit(&x.store, &image, None, &opts.tags)
        .map_err(|e| other("commit image")(&e))?;
    x.progress.event(&Event::Note {
        n,
        text: &format!("writing image {}", committed.config),
    });
    for t in &opts.tags {
        x.progress.event(&Event::Note {
            n,
            text: &format!("naming to {t}"),
        });
    }
    if let Some(out) = &opts.output {
        x.progress.event(&Event::Note {
            n,
            text: &format!("exporting to {}", out.dest.display()),
        });
        super::output::write(
            &x.store,
            &committed.manifest,
            &opts.tags,
            out.kind,
            &out.dest,
            x.epoch.unwrap_or(0),
        )?;
    }
    x.progress.event(&Event::Done {
        n,
        took: t.elapsed(),
    });
    x.export_caches(last)?;
    let pushed = if opts.push {
        x.push_tags()?
    } else {
        Vec::new()
    };
    Ok(Built {
        id: committed.config,
        manifest: committed.manifest,
        steps_run: x.steps_run.load(Ordering::SeqCst),
        steps_cached: x.steps_cached.load(Ordering::SeqCst),
        pushed,
    })
}

mod remote;
mod snap;
mod step;

use snap::reap_dead_builds;

impl<'a> Exec<'a> {
    fn now(&self) -> String {
        let secs = match self.epoch {
            Some(e) => e as i64,
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        };
        commit::rfc3339(secs)
    }

    /// `created` of a step that only changes the config (and of the image): the
    /// time of the latest history entry, so cached rebuilds are identical; with
    /// SOURCE_DATE_EPOCH that time.
    fn config_step_time(&self, image: &Image) -> String {
        if self.epoch.is_some() {
            return self.now();
        }
        image
            .config
            .history
            .iter()
            .rev()
            .find_map(|h| h.created.clone())
            .or_else(|| image.config.created.clone())
            .unwrap_or_else(|| self.now())
    }

    /// The key of the stage `from` names (name or index), when it is built.
    fn stage_key(&self, from: &str) -> Option<String> {
        let lower = from.to_ascii_lowercase();
        let i = self
            .stages
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
            .or_else(|| {
                from.parse::<usize>()
                    .ok()
                    .filter(|i| *i < self.stages.len())
            })?;
        self.result(i).map(|r| r.key)
    }

    fn at(&self, ins: &Instruction) -> String {
        format!("{}:{}", self.file, ins.lines.start)
    }

    fn source_line(&self, line: u32) -> String {
        self.text
            .split('\n')
            .nth((line as usize).saturating_sub(1))
            .unwrap_or("")
            .trim_end_matches('\r')
            .to_string()
    }

    fn redact(&self, s: &str) -> String {
        let mut out = s.to_string();
        for v in &self.secrets {
            let v = String::from_utf8_lossy(v);
            if !v.is_empty() {
                out = out.replace(v.as_ref(), "****");
            }
        }
        out
    }

    /// An image by reference: a stage name/index, or an image in the store.
    fn image_for(&self, from: &str) -> Result<Image, BuildError> {
        let by_name = self
            .stages
            .iter()
            .position(|s| s.name.as_deref() == Some(from.to_ascii_lowercase().as_str()));
        let idx = by_name.or_else(|| {
            from.parse::<usize>()
                .ok()
                .filter(|i| *i < self.stages.len())
        });
        if let Some(i) = idx {
            return self
                .result(i)
                .map(|r| r.image)
                .ok_or_else(|| BuildError::Other(format!("stage {from} has not been built")));
        }
        self.load_image(from).map(|(i, _)| i)
    }

    /// An image from the store by name (pulled first when missing or with --pull).
    fn load_image(&self, name: &str) -> Result<(Image, Digest), BuildError> {
        let refresh = self.opts.pull
            && self
                .pulled
                .lock()
                .map(|mut p| p.insert(name.to_string()))
                .unwrap_or(false);
        if refresh {
            self.pull(name)?;
        }
        let found = match self.store.find_image(name) {
            Ok(f) => f,
            Err(crate::store::StoreError::ImageNotFound { .. }) if !refresh => {
                self.pull(name)?;
                self.store.find_image(name).map_err(|e| other(name)(&e))?
            }
            Err(e) => return Err(other(name)(&e)),
        };
        let d = found.descriptor.digest;
        let img = Image::load(&self.store, &d).map_err(|e| other(name)(&e))?;
        Ok((img, d))
    }

    /// Pull `name` from its registry into the store (unpacked), once at a time.
    fn pull(&self, name: &str) -> Result<(), BuildError> {
        let reference: crate::oci::Reference = name.parse().map_err(|e| {
            BuildError::Other(format!(
                "base image {name}: not in the store and not a valid reference to pull: {e}"
            ))
        })?;
        let _one = self.unpack.lock();
        let n = self.next_step(&format!("[internal] pull {reference}"));
        let t = Instant::now();
        let req = crate::image::PullRequest {
            reference,
            platform: None,
            max_concurrent_downloads: 3,
            unpack: true,
        };
        match crate::image::pull(&self.opts.root, &req, std::sync::Arc::new(())) {
            Ok(_) => {
                self.progress.event(&Event::Done {
                    n,
                    took: t.elapsed(),
                });
                Ok(())
            }
            Err(e) => {
                let msg = format!("base image {name}: {e} (is it in the store? `imgctl images`)");
                self.progress.event(&Event::Error {
                    n,
                    took: t.elapsed(),
                    message: &msg,
                });
                Err(BuildError::Other(msg))
            }
        }
    }

    fn next_step(&self, name: &str) -> usize {
        let n = self.step_no.fetch_add(1, Ordering::SeqCst) + 1;
        self.progress.event(&Event::Start { n, name });
        n
    }

    fn result(&self, i: usize) -> Option<StageResult> {
        self.results
            .lock()
            .ok()
            .and_then(|r| r.get(i).cloned().flatten())
    }

    /// Run the stages of `plan`, each as soon as the stages it needs are done, up to
    /// `--jobs` at once. The first failure stops handing out stages; stages already
    /// running finish (their steps clean up after themselves).
    fn run_plan(&self, plan: &[usize]) -> Result<(), BuildError> {
        #[derive(Default)]
        struct Sched {
            started: Vec<usize>,
            done: Vec<usize>,
            failed: Option<BuildError>,
        }
        let sched = Mutex::new(Sched::default());
        let wake = Condvar::new();
        let deps: Vec<(usize, Vec<usize>)> = plan
            .iter()
            .map(|&i| {
                let d = self
                    .graph
                    .stage_deps(i)
                    .into_iter()
                    .filter(|d| plan.contains(d))
                    .collect();
                (i, d)
            })
            .collect();
        let workers = self.opts.jobs.clamp(1, plan.len().max(1));
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let next = {
                        let Ok(mut g) = sched.lock() else { return };
                        loop {
                            if g.failed.is_some() || g.started.len() == deps.len() {
                                return;
                            }
                            let ready = deps.iter().find(|(i, d)| {
                                !g.started.contains(i) && d.iter().all(|x| g.done.contains(x))
                            });
                            if let Some((i, _)) = ready {
                                g.started.push(*i);
                                break *i;
                            }
                            g = match wake.wait(g) {
                                Ok(g) => g,
                                Err(_) => return,
                            };
                        }
                    };
                    let r = self.stage(next);
                    if let Ok(mut g) = sched.lock() {
                        match r {
                            Ok(res) => {
                                if let Ok(mut all) = self.results.lock() {
                                    all[next] = Some(res);
                                }
                                g.done.push(next);
                            }
                            Err(e) => {
                                g.failed.get_or_insert(e);
                            }
                        }
                    }
                    wake.notify_all();
                });
            }
        });
        let g = sched
            .into_inner()
            .map_err(|_| BuildError::Other("a build thread panicked".into()))?;
        if let Some(e) = g.failed {
            return Err(e);
        }
        if g.done.len() != deps.len() {
            return Err(BuildError::Other("a build stage did not finish".into()));
        }
        Ok(())
    }

    fn base(&self, i: usize) -> Result<(Image, String), BuildError> {
        let node = &self.graph.nodes[i];
        match &node.base {
            Dep::Stage(s) => {
                let r = self
                    .result(*s)
                    .ok_or_else(|| BuildError::Other(format!("stage {s} has not been built")))?;
                Ok((r.image, r.key))
            }
            Dep::Scratch => {
                let p = buildfile::Platform::host();
                Ok((
                    Image::scratch(&p.os, &p.arch, p.variant.as_deref()),
                    format!("scratch {p}"),
                ))
            }
            Dep::Image(r) => {
                let r = r.clone();
                let (img, d) = self.load_image(&r)?;
                Ok((img, d.to_string()))
            }
        }
    }

    fn stage(&self, i: usize) -> Result<StageResult, BuildError> {
        let st = self.stages[i].clone();
        let label = st.name.clone().unwrap_or_else(|| format!("stage-{i}"));
        let total = st.steps.len() + 1;
        let t = Instant::now();
        let n = self.next_step(&format!("[{label} 1/{total}] FROM {}", st.base));
        if let Some(p) = st.platform.as_deref().filter(|p| !p.is_empty()) {
            let host = buildfile::Platform::host();
            let ok = buildfile::Platform::parse(p)
                .is_some_and(|q| q.os == host.os && q.arch == host.arch);
            if !ok {
                return Err(BuildError::Instruction {
                    at: format!("{}:{}", self.file, st.lines.start),
                    message: format!(
                        "FROM --platform={p}: only this host's platform ({host}) can be built (no emulation)"
                    ),
                });
            }
        }
        let (mut image, mut key) = self.base(i)?;
        self.progress.event(&Event::Done {
            n,
            took: t.elapsed(),
        });
        let no_cache = self.opts.no_cache
            || self
                .opts
                .no_cache_filter
                .iter()
                .any(|f| f.eq_ignore_ascii_case(&label) || f.parse::<usize>().ok() == Some(i));
        // ONBUILD triggers of the base run first, then are dropped (not inherited).
        let triggers: Vec<String> = image
            .config
            .config
            .as_ref()
            .and_then(|c| c.extra.get("OnBuild"))
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        if let Some(c) = image.config.config.as_mut() {
            c.extra.remove("OnBuild");
        }
        let mut flags = StageFlags::default();
        let mut parent_missed = false;
        for (k, trig) in triggers.iter().enumerate() {
            let text = format!("FROM scratch\n{trig}\n");
            let tbf = buildfile::parse("ONBUILD", &text)?;
            let Some(ins) = tbf.instructions.get(1).cloned() else {
                continue;
            };
            let step = buildfile::Step {
                index: usize::MAX,
                lines: ins.lines,
                command: ins.command.clone(),
                heredocs: ins.heredocs.clone(),
                undefined: Vec::new(),
            };
            let name = format!("[{label} 1/{total}] ONBUILD #{} {trig}", k + 1);
            self.step(
                &st,
                None,
                &step,
                &ins,
                &name,
                &mut image,
                &mut key,
                &mut flags,
                no_cache,
                &mut parent_missed,
            )?;
        }
        for (k, step) in st.steps.iter().enumerate() {
            let ins = self.bf.instructions[step.index].clone();
            let mut shown = String::new();
            buildfile::print_instruction(&mut shown, &ins, self.bf.escape);
            let name = format!("[{label} {}/{total}] {}", k + 2, shown);
            self.step(
                &st,
                Some(k),
                step,
                &ins,
                &name,
                &mut image,
                &mut key,
                &mut flags,
                no_cache,
                &mut parent_missed,
            )?;
        }
        Ok(StageResult { image, key })
    }
}
