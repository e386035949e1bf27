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
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use super::cache::{Cache, Entry, Inputs};
use super::config::{self, StageFlags};
use super::progress::{Event, Progress};
use super::run::{self, MountSources};
use super::{copy, BuildError, BuildOptions, BuildfileSource, Built};
use crate::buildfile::{self, Command, Dep, Graph, Instruction, ResolveOptions, ResolvedStage};
use crate::image::commit::{self, Image};
use crate::layer::{DiffOptions, WhiteoutFormat};
use crate::oci::{Digest, History};
use crate::snapshot::{self, Overlay, Snapshotter};
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
    let x = Exec {
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
    };
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
    image.config.created = Some(x.now());
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
    Ok(Built {
        id: committed.config,
        manifest: committed.manifest,
        steps_run: x.steps_run.load(Ordering::SeqCst),
        steps_cached: x.steps_cached.load(Ordering::SeqCst),
    })
}

/// An overlay snapshot mounted for one step; unmounted and removed when dropped
/// unless committed.
struct Active<'a> {
    snaps: &'a Overlay,
    key: String,
    merged: PathBuf,
    mounted: bool,
}

impl Active<'_> {
    fn unmount(&mut self) -> Result<(), BuildError> {
        if self.mounted {
            crate::sys::fs::unmount(&self.merged, false)
                .map_err(|e| BuildError::io(&self.merged, e))?;
            self.mounted = false;
        }
        Ok(())
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        if self.mounted {
            let _ = crate::sys::fs::unmount(&self.merged, true);
        }
        if self.snaps.stat(&self.key).ok().flatten().is_some() {
            let _ = self.snaps.remove(&self.key);
        }
        let _ = self.snaps.unmount_unused_layers();
    }
}

/// A snapshot key owned by this process: `PREFIX-PID-RANDOM`.
fn new_key(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        crate::container::new_id().get(..12).unwrap_or("0")
    )
}

/// Snapshots and step directories left by builds that were killed (their process is
/// gone): unmounted and removed before a new build starts.
fn reap_dead_builds(snaps: &Overlay, root: &Path, cgroup_root: &Path) {
    // The first numeric segment after the prefix is the owner's pid.
    let dead = |key: &str| {
        key.split('-')
            .skip(1)
            .find_map(|x| x.parse::<u32>().ok())
            .is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists())
    };
    // Step containers of a killed build (cgroup `imgctl-build/build-PID-*`): killed,
    // their cgroups removed (v1: every controller's copy; v2: the one group).
    let mut groups = Vec::new();
    for base in std::iter::once(cgroup_root.to_path_buf()).chain(
        fs::read_dir(cgroup_root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path()),
    ) {
        if let Ok(rd) = fs::read_dir(base.join("imgctl-build")) {
            groups.extend(
                rd.flatten()
                    .filter(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        n.starts_with("build-") && dead(&n)
                    })
                    .map(|e| e.path()),
            );
        }
    }
    for g in &groups {
        for pid in fs::read_to_string(g.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse::<i32>().ok())
        {
            // SAFETY: kill(2) with a pid read from the leftover group.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    for g in &groups {
        for _ in 0..50 {
            if fs::remove_dir(g).is_ok() || !g.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    for info in snaps.list().unwrap_or_default() {
        if info.kind != snapshot::Kind::Committed
            && info.key.starts_with("build-")
            && dead(&info.key)
        {
            let merged = snaps.merged_dir(&info.key);
            let _ = crate::sys::fs::unmount(&merged, true);
            let _ = snaps.remove(&info.key);
        }
    }
    if let Ok(rd) = fs::read_dir(root.join("tmp")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("step-") && dead(&name) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Views of other stages, images and the context for `COPY --from` and bind mounts.
struct Sources<'e, 'a> {
    exec: &'e Exec<'a>,
    views: std::cell::RefCell<Vec<(String, Active<'e>)>>,
}

impl MountSources for Sources<'_, '_> {
    fn root_of(&self, from: Option<&str>) -> Result<PathBuf, BuildError> {
        let Some(from) = from else {
            return Ok(self.exec.opts.context.clone());
        };
        if let Some((_, a)) = self.views.borrow().iter().find(|(f, _)| f == from) {
            return Ok(a.merged.clone());
        }
        let image = self.exec.image_for(from)?;
        let a = self.exec.view(&image)?;
        let p = a.merged.clone();
        self.views.borrow_mut().push((from.to_string(), a));
        Ok(p)
    }
}

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

    /// The snapshot chain of `image`, unpacked when missing. `None` for no layers.
    fn chain(&self, image: &Image) -> Result<Option<Digest>, BuildError> {
        let Some(chain) = crate::oci::chain_id(image.diff_ids()) else {
            return Ok(None);
        };
        if self
            .snaps
            .stat(&chain.to_string())
            .map_err(|e| other("snapshot")(&e))?
            .is_some()
        {
            return Ok(Some(chain));
        }
        let _one = self.unpack.lock();
        let c = commit::commit(&self.store, image, None, &[]).map_err(|e| other("commit")(&e))?;
        let u = crate::image::unpack(&self.store, &c.manifest, &self.opts.root)
            .map_err(|e| other("unpack")(&e))?;
        Ok(u.chain_id)
    }

    fn mount(&self, image: &Image, prefix: &str, view: bool) -> Result<Active<'_>, BuildError> {
        let chain = self.chain(image)?;
        let key = new_key(prefix);
        let mounts = if view {
            self.snaps.view(&key, chain.as_ref())
        } else {
            self.snaps.prepare(&key, chain.as_ref())
        }
        .map_err(|e| other("prepare snapshot")(&e))?;
        let merged = self.snaps.merged_dir(&key);
        let mut a = Active {
            snaps: &self.snaps,
            key,
            merged,
            mounted: false,
        };
        if view && chain.is_none() {
            // An empty view (scratch): an empty directory.
            fs::create_dir_all(&a.merged).map_err(|e| BuildError::io(&a.merged, e))?;
            return Ok(a);
        }
        snapshot::mount_all(&mounts, &a.merged).map_err(|e| BuildError::io(&a.merged, e))?;
        a.mounted = true;
        Ok(a)
    }

    fn view(&self, image: &Image) -> Result<Active<'_>, BuildError> {
        self.mount(image, "build-view", true)
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

    #[allow(clippy::too_many_arguments)]
    fn step(
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
                        created: Some(self.now()),
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
                    None => copy::inputs_digest(&copy::Source::Context(&self.context), &spec)?,
                    Some(f) => {
                        let root = sources.root_of(Some(f))?;
                        copy::inputs_digest(&copy::Source::Root(&root), &spec)?
                    }
                };
                for f in &d.files {
                    inputs.insert(
                        f.path.clone(),
                        serde_json::to_string(f).map_err(|e| BuildError::Other(e.to_string()))?,
                    );
                }
            }
            Command::Run { .. } => {
                for (k, v) in &args {
                    inputs.insert(format!("arg {k}"), v.clone());
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
        let created_by = match &step.command {
            Command::Run { command, .. } => {
                let argv = config::run_argv(command, &step.heredocs, &config::shell(image));
                config::run_created_by(&argv, &args)
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
                    limits: self.opts.limits,
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
                    run::run_step(&spec, &merged, &self.opts.cgroup_root, &mut on_line)
                });
                let _ = fs::remove_dir_all(&state);
                drop(sm);
                let line = self.source_line(ins.lines.start);
                let what = line.trim().to_string();
                let fail = |reason: String, code: i32, out: &[u8]| {
                    let text = self.redact(&String::from_utf8_lossy(out));
                    let lines: Vec<&str> = text.lines().collect();
                    let tail = lines[lines.len().saturating_sub(10)..].join("\n");
                    BuildError::StepFailed(Box::new(super::StepFailure {
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
            }
        };
        drop(active);
        self.cache.put(&step_key, &entry)?;
        self.cache.record_inputs(key, &instruction, &inputs)?;
        self.apply_entry(image, key, &step_key, &entry, history);
        Ok(())
    }

    fn apply_entry(
        &self,
        image: &mut Image,
        key: &mut String,
        step_key: &str,
        e: &Entry,
        history: History,
    ) {
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
            ..
        } => {
            spec.srcs = sources.clone();
            spec.dest = dest.clone();
            spec.link = *link;
            spec.exclude = exclude.clone();
            spec.add = true;
            spec.checksum = checksum.clone();
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
fn step_network(cmd: &Command, at: &str) -> Result<Option<super::Network>, BuildError> {
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
        Some("none") => Ok(Some(super::Network::None)),
        Some("host") => Ok(Some(super::Network::Host)),
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
