//! `imgctl build` end to end: a real store seeded with the busybox fixture (copied in
//! by skopeo, an independent writer of OCI layouts), RUN steps in the sandbox, the
//! cache across processes, secrets, limits and reproducibility.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::fixture::{
    busybox_layout, multistage_context, push_layout, require_layout, store_with_busybox,
};
use crate::common::{self, fails, imgctl, is_root, mounts_under, ok, output, require};

/// What most build tests start from: a temp dir, a store in it holding `busybox`, and the
/// sandbox tests' lock (builds start containers). `None` when a prerequisite is missing.
fn busybox_build() -> Option<(
    tempfile::TempDir,
    PathBuf,
    std::sync::MutexGuard<'static, ()>,
)> {
    let t = common::tempdir();
    let store = store_with_busybox(t.path())?;
    let serial = common::sandbox::serial();
    Some((t, store, serial))
}

/// Runs a build; returns (exit code, stdout, stderr).
fn build(store: &Path, args: &[&str]) -> (i32, String, String) {
    let out = output(imgctl(store).arg("build").args(args));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn build_ok(store: &Path, args: &[&str]) -> String {
    let (code, _, err) = build(store, args);
    assert_eq!(code, 0, "build {args:?} failed:\n{err}");
    err
}

fn images(store: &Path) -> String {
    fs::read_to_string(store.join("index.json")).unwrap_or_default()
}

#[test]
fn multistage_builds_runs_and_target_stops_at_builder() {
    let Some((t, store, _serial)) = busybox_build() else {
        return;
    };
    let ctx = multistage_context(t.path());
    let ctx_s = ctx.to_str().unwrap();
    let err = build_ok(&store, &["--progress", "plain", "-t", "app:1", ctx_s]);
    // BuildKit-like plain progress.
    assert!(err.contains("[builder 3/5] RUN mkdir -p /build"), "{err}");
    assert!(err.contains("[stage-2 8/8] CMD"), "{err}");
    assert!(err.contains(" DONE "), "{err}");
    let out = ok(imgctl(&store).args(["run", "--rm", "app:1"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0].len(), 64, "a sha256 of the random file: {out}");
    assert!(lines[0].bytes().all(|b| b.is_ascii_hexdigit()), "{out}");
    assert_eq!(lines[1], "2000");
    let files = ok(imgctl(&store).args([
        "run",
        "--rm",
        "app:1",
        "sh",
        "-c",
        "cat /app/hello.txt; ls /app/docs | wc -l; echo $APP_MODE; pwd; test -e /build && echo LEAK; test -e /run/secrets && echo STUB; true",
    ]));
    assert_eq!(files, "hello from the build context\n500\nbench\n/app\n");

    // --target builder: the builder's filesystem, none of the final stage's.
    let err = build_ok(
        &store,
        &[
            "--progress",
            "plain",
            "--target",
            "builder",
            "-t",
            "b:1",
            ctx_s,
        ],
    );
    assert!(
        !err.contains("[docs"),
        "docs is not needed for builder:\n{err}"
    );
    let out = ok(imgctl(&store).args([
        "run",
        "--rm",
        "b:1",
        "sh",
        "-c",
        "wc -l < /build/artifact.txt; ls /build/small | wc -l; test -e /app && echo app; pwd",
    ]));
    assert_eq!(out, "2\n2000\n/work\n");
    assert!(
        mounts_under(&store).is_empty(),
        "nothing stays mounted: {:?}",
        mounts_under(&store)
    );
}

#[test]
fn cache_is_keyed_by_content_explains_misses_and_survives_restarts() {
    let Some((t, store, _serial)) = busybox_build() else {
        return;
    };
    let ctx = t.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("a.txt"), "a1\n").unwrap();
    fs::write(ctx.join("b.txt"), "b1\n").unwrap();
    fs::write(
        ctx.join("Buildfile"),
        "FROM busybox\nRUN echo one > /one\nCOPY a.txt /a.txt\nRUN cat /a.txt > /from-a\nCOPY b.txt /b.txt\nRUN cat /b.txt > /from-b\n",
    )
    .unwrap();
    let c = ctx.to_str().unwrap();
    let iid = |n: &str| t.path().join(n).to_str().unwrap().to_string();
    let (i1, i2) = (iid("iid1"), iid("iid2"));
    let first = build_ok(
        &store,
        &["--progress", "plain", "--iidfile", &i1, "-t", "c:1", c],
    );
    assert_eq!(first.matches("CACHED").count(), 0, "{first}");
    // Each build is a new process: the cache lives in the store.
    let again = build_ok(
        &store,
        &["--progress", "plain", "--iidfile", &i2, "-t", "c:1", c],
    );
    assert_eq!(again.matches("CACHED").count(), 5, "fully cached:\n{again}");
    assert!(!again.contains("cache miss"), "{again}");
    assert_eq!(
        fs::read_to_string(&i1).unwrap(),
        fs::read_to_string(&i2).unwrap(),
        "a fully cached rebuild is the same image"
    );

    // Touching a file's mtime alone misses nothing.
    let f = fs::File::options()
        .write(true)
        .open(ctx.join("a.txt"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(100))
        .unwrap();
    drop(f);
    let touched = build_ok(&store, &["--progress", "plain", c]);
    assert_eq!(touched.matches("CACHED").count(), 5, "{touched}");

    // Changing b.txt re-runs from its COPY on, and --explain names the file.
    fs::write(ctx.join("b.txt"), "b2\n").unwrap();
    let changed = build_ok(&store, &["--progress", "tty", "--explain", "-t", "c:2", c]);
    assert_eq!(changed.matches("CACHED").count(), 3, "{changed}");
    assert!(changed.contains("b.txt (changed)"), "{changed}");
    assert!(!changed.contains("a.txt (changed)"), "{changed}");
    let out = ok(imgctl(&store).args(["run", "--rm", "c:2", "cat", "/from-a", "/from-b"]));
    assert_eq!(out, "a1\nb2\n");

    // The stored cache records follow their schemas.
    for (dir, schema) in [
        ("keys", "build-cache-entry"),
        ("explain", "build-cache-explain"),
    ] {
        let d = store.join("cache/build").join(dir);
        let mut n = 0;
        for e in fs::read_dir(&d).unwrap().flatten() {
            let v: serde_json::Value =
                serde_json::from_slice(&fs::read(e.path()).unwrap()).unwrap();
            crate::store::check_schema(schema, &v);
            n += 1;
        }
        assert!(n >= 5, "{n} records in {}", d.display());
    }

    // --no-cache rebuilds everything.
    let none = build_ok(&store, &["--progress", "plain", "--no-cache", c]);
    assert_eq!(none.matches("CACHED").count(), 0, "{none}");
    assert_eq!(none.matches("cache miss: --no-cache").count(), 5, "{none}");

    // prune --build-cache empties it: the next build misses again.
    ok(imgctl(&store).args(["prune", "--build-cache"]));
    let after = build_ok(&store, &["--progress", "plain", c]);
    assert_eq!(after.matches("CACHED").count(), 0, "{after}");
}

/// Every regular file under `dir` (blobs, cache, snapshots) that contains `needle`,
/// gzip and zstd layers decompressed first.
fn files_containing(dir: &Path, needle: &[u8], found: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            files_containing(&p, needle, found);
        } else if m.is_file() {
            let data = fs::read(&p).unwrap_or_default();
            let mut plain = Vec::new();
            if data.starts_with(&[0x1f, 0x8b]) {
                use std::io::Read;
                let _ = flate2::read::GzDecoder::new(&data[..]).read_to_end(&mut plain);
            }
            let hit = |d: &[u8]| d.windows(needle.len()).any(|w| w == needle);
            if hit(&data) || hit(&plain) {
                found.push(p);
            }
        }
    }
}

#[test]
fn secrets_never_reach_layers_cache_history_or_progress() {
    let Some((t, store, _serial)) = busybox_build() else {
        return;
    };
    let secret = "s3cr3t-T0KEN-9f8e7d6c";
    let ctx = t.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(t.path().join("token"), secret).unwrap();
    fs::write(
        ctx.join("Buildfile"),
        "FROM busybox\n\
         RUN --mount=type=secret,id=tok stat -c '%a %s' /run/secrets/tok > /seen && cat /run/secrets/tok\n\
         RUN --mount=type=secret,id=tok,target=/etc/tok.txt wc -c < /etc/tok.txt > /len\n",
    )
    .unwrap();
    let src = format!("id=tok,src={}", t.path().join("token").display());
    let (code, stdout, stderr) = build(
        &store,
        &[
            "--progress",
            "plain",
            "--secret",
            &src,
            "-t",
            "s:1",
            ctx.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !stderr.contains(secret) && !stdout.contains(secret),
        "{stderr}"
    );
    assert!(
        stderr.contains("****"),
        "the printed secret is masked:\n{stderr}"
    );
    let out = ok(imgctl(&store).args([
        "run",
        "--rm",
        "s:1",
        "sh",
        "-c",
        "cat /seen /len; ls /run/secrets /etc/tok.txt 2>&1 | wc -l",
    ]));
    let want = format!("400 {}\n{}\n2\n", secret.len(), secret.len());
    assert_eq!(out, want, "secret mounted 0400, gone from the image");
    let mut found = Vec::new();
    files_containing(&store, secret.as_bytes(), &mut found);
    assert!(found.is_empty(), "secret found in {found:?}");
}

#[test]
fn hostile_steps_fail_cleanly_leaving_nothing_tagged_or_mounted() {
    let Some((t, store, _serial)) = busybox_build() else {
        return;
    };
    let ctx = t.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    let c = ctx.to_str().unwrap();

    fs::write(
        ctx.join("Buildfile"),
        "FROM busybox\nRUN echo fine > /f\nRUN dd if=/dev/zero of=/dev/null bs=256M count=1\n",
    )
    .unwrap();
    let (code, _, err) = build(&store, &["--memory", "64m", "-t", "mem:1", c]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("Buildfile:3"), "names the step: {err}");
    assert!(err.contains("RUN dd if=/dev/zero"), "{err}");
    assert!(err.contains('^'), "a caret under the line: {err}");

    fs::write(
        ctx.join("Buildfile"),
        "FROM busybox\nRUN i=0; while [ $i -lt 300 ]; do sleep 10 & i=$((i+1)); done; wait\n",
    )
    .unwrap();
    let (code, _, err) = build(&store, &["--pids-limit", "32", "-t", "fork:1", c]);
    assert_ne!(code, 0, "a fork bomb under --pids-limit fails: {err}");
    assert!(err.contains("Buildfile:2"), "{err}");

    fs::write(
        ctx.join("Buildfile"),
        "FROM busybox\nRUN echo out; exit 7\n",
    )
    .unwrap();
    let (code, _, err) = build(&store, &["-t", "exit:1", c]);
    assert_eq!(code, 7, "the step's exit code: {err}");
    assert!(
        err.contains("exit code 7") && err.contains("last output:\nout"),
        "{err}"
    );

    let idx = images(&store);
    for name in ["mem:1", "fork:1", "exit:1"] {
        assert!(
            !idx.contains(name),
            "{name} tagged after a failed build: {idx}"
        );
    }
    assert!(
        mounts_under(&store).is_empty(),
        "nothing stays mounted: {:?}",
        mounts_under(&store)
    );
    let active: Vec<_> = fs::read_dir(store.join("snapshots/active"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(active.is_empty(), "no active snapshot left: {active:?}");

    // Bad input: one clear line, exit 125.
    fs::write(
        ctx.join("Buildfile"),
        "FROM busybox\nCOPY ../etc/passwd /x\n",
    )
    .unwrap();
    let (code, err) = fails(imgctl(&store).args(["build", c]));
    assert_eq!(code, 125, "{err}");
    assert!(
        err.contains("Buildfile:2") && err.contains("outside"),
        "{err}"
    );
    fs::write(
        ctx.join("Buildfile"),
        "FROM busybox\nRUN --mount=type=ssh true\n",
    )
    .unwrap();
    let (code, err) = fails(imgctl(&store).args(["build", c]));
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("type=ssh is not supported"), "{err}");
}

#[test]
fn source_date_epoch_builds_are_byte_identical_across_dirs_and_times() {
    let t = common::tempdir();
    let Some(store_a) = store_with_busybox(&t.path().join("a")) else {
        return;
    };
    let store_b = store_with_busybox(&t.path().join("b")).unwrap();
    let _serial = common::sandbox::serial();
    let mut digests = Vec::new();
    for (i, store) in [&store_a, &store_b].into_iter().enumerate() {
        let ctx = t.path().join(format!("ctx{i}"));
        fs::create_dir_all(ctx.join("sub")).unwrap();
        fs::write(ctx.join("sub/data.txt"), "data\n").unwrap();
        fs::write(
            ctx.join("Buildfile"),
            "FROM busybox\nCOPY sub /app/\nRUN echo built > /app/out && mkdir -p /var/x && ln -s /app/out /var/x/link\nENV A=1\nCMD [\"cat\", \"/app/out\"]\n",
        )
        .unwrap();
        let id = t.path().join(format!("iid{i}"));
        let out = output(
            imgctl(store)
                .env("SOURCE_DATE_EPOCH", "0")
                .args(["build", "-q", "-t", "r:1", "--iidfile"])
                .arg(&id)
                .arg("--output")
                .arg(format!(
                    "type={},dest={}",
                    ["oci", "docker"][i],
                    t.path().join(format!("out{i}.tar")).display()
                ))
                .arg(&ctx),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(
            printed,
            fs::read_to_string(&id).unwrap(),
            "-q prints the image ID"
        );
        assert!(printed.starts_with("sha256:"), "{printed}");
        digests.push(printed);
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    assert_eq!(digests[0], digests[1], "same image ID from both builds");
    // The whole store content of the image is the same: compare manifests too.
    let manifests: Vec<String> = [&store_a, &store_b]
        .iter()
        .map(|s| {
            let v: serde_json::Value = serde_json::from_str(&images(s)).unwrap();
            v["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["digest"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    assert_eq!(manifests[0], manifests[1]);
    // The archives: an OCI layout skopeo reads, the docker one with manifest.json.
    for i in 0..2 {
        let tar = t.path().join(format!("out{i}.tar"));
        let raw = ok(Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci-archive:{}", tar.display())));
        let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(m["config"]["digest"].as_str(), Some(digests[0].as_str()));
        let list = ok(Command::new("tar").arg("tf").arg(&tar));
        assert_eq!(list.lines().any(|l| l == "manifest.json"), i == 1, "{list}");
    }
}

fn inspect(store: &Path, name: &str) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&ok(imgctl(store).args(["inspect", name]))).unwrap();
    v[0].clone()
}

#[test]
fn config_instructions_mounts_onbuild_and_flags() {
    let Some((t, store, _serial)) = busybox_build() else {
        return;
    };
    let ctx = t.path().join("ctx");
    fs::create_dir_all(ctx.join("src")).unwrap();
    fs::write(ctx.join("src/input.txt"), "from the context\n").unwrap();
    fs::write(
        ctx.join("Buildfile"),
        r#"ARG BASE=busybox
FROM ${BASE} AS base
ARG GREETING=hello
ENV HOME_DIR=/home/app
LABEL org.example.role=base
ONBUILD RUN echo triggered > /onbuild.txt
WORKDIR /work
USER 65534:65534
RUN id -u > /tmp/uid && echo "$GREETING" > /tmp/greeting
USER root
SHELL ["/bin/sh", "-ec"]
RUN --mount=type=cache,target=/cache,id=c1 echo x >> /cache/runs && wc -l < /cache/runs > /cache-runs
RUN --mount=type=bind,source=src,target=/mnt/src cat /mnt/src/input.txt > /bound.txt
RUN --mount=type=tmpfs,target=/scratch touch /scratch/gone && ls /scratch > /tmpfs-list
RUN echo "$HTTP_PROXY" > /proxy.txt
RUN <<EOF
echo one > /heredoc.txt
echo two >> /heredoc.txt
EOF
EXPOSE 8080 53/udp
VOLUME /data
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s CMD true
CMD ["sh"]
ENTRYPOINT ["/bin/echo"]
"#,
    )
    .unwrap();
    let c = ctx.to_str().unwrap();
    build_ok(
        &store,
        &[
            "--progress",
            "plain",
            "--build-arg",
            "GREETING=hi there",
            "--label",
            "org.example.build=1",
            "--build-arg",
            "HTTP_PROXY=http://user:s3cret-pw@proxy:3128",
            "--compression",
            "zstd",
            "-t",
            "cfg:1",
            c,
        ],
    );
    let i = inspect(&store, "cfg:1");
    let cfg = &i["Config"];
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["/bin/echo"]));
    // CMD was set in this stage before ENTRYPOINT: it stays.
    assert_eq!(cfg["Cmd"], serde_json::json!(["sh"]), "{cfg}");
    assert_eq!(cfg["WorkingDir"], "/work");
    assert_eq!(cfg["User"], "root");
    assert_eq!(cfg["StopSignal"], "SIGINT");
    assert_eq!(cfg["Labels"]["org.example.role"], "base");
    assert_eq!(cfg["Labels"]["org.example.build"], "1");
    assert!(cfg["ExposedPorts"]["8080/tcp"].is_object(), "{cfg}");
    assert!(cfg["ExposedPorts"]["53/udp"].is_object(), "{cfg}");
    assert!(cfg["Volumes"]["/data"].is_object(), "{cfg}");
    assert!(
        cfg["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "HOME_DIR=/home/app"),
        "{cfg}"
    );
    for l in i["Layers"].as_array().unwrap().iter().skip(1) {
        assert_eq!(
            l["MediaType"], "application/vnd.oci.image.layer.v1.tar+zstd",
            "--compression zstd: {l}"
        );
    }
    let out = ok(imgctl(&store).args([
        "run",
        "--rm",
        "--entrypoint",
        "",
        "cfg:1",
        "sh",
        "-c",
        "cat /tmp/uid /tmp/greeting /cache-runs /bound.txt /tmpfs-list /heredoc.txt; test -e /onbuild.txt && echo ONBUILD-RAN; ls -d /cache /mnt/src /scratch 2>&1 | grep -c 'No such'",
    ]));
    assert_eq!(
        out, "65534\nhi there\n1\nfrom the context\ngone\none\ntwo\n3\n",
        "USER, build args, cache/bind/tmpfs mounts (stubs removed), heredoc"
    );
    // Proxy args reach RUN but not the history or config.
    let out = ok(imgctl(&store).args([
        "run",
        "--rm",
        "--entrypoint",
        "",
        "cfg:1",
        "cat",
        "/proxy.txt",
    ]));
    assert_eq!(out, "http://user:s3cret-pw@proxy:3128\n");
    let id = i["Id"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let config = fs::read_to_string(store.join("blobs/sha256").join(id)).unwrap();
    assert!(
        config.contains("RUN |1 GREETING=hi there /bin/sh -ec echo"),
        "{config}"
    );
    assert!(!config.contains("s3cret-pw"), "{config}");
    // The cache mount keeps its content across builds.
    build_ok(&store, &["--no-cache", "-t", "cfg:2", c]);
    let out = ok(imgctl(&store).args([
        "run",
        "--rm",
        "--entrypoint",
        "",
        "cfg:2",
        "cat",
        "/cache-runs",
    ]));
    assert_eq!(out, "2\n");

    // ONBUILD triggers run when the image is used as a base, and are not inherited.
    fs::write(ctx.join("Child"), "FROM cfg:1\nRUN echo child\n").unwrap();
    build_ok(
        &store,
        &[
            "-f",
            ctx.join("Child").to_str().unwrap(),
            "-t",
            "child:1",
            c,
        ],
    );
    let out = ok(imgctl(&store).args([
        "run",
        "--rm",
        "--entrypoint",
        "",
        "child:1",
        "cat",
        "/onbuild.txt",
    ]));
    assert_eq!(out, "triggered\n");
    let child = inspect(&store, "child:1");
    assert!(child["Config"]["OnBuild"].is_null(), "{}", child["Config"]);

    // -f - reads the Buildfile from stdin; -q prints only the image ID.
    let mut cmd = imgctl(&store);
    cmd.args(["build", "-q", "-f", "-", c])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut proc = cmd.spawn().unwrap();
    use std::io::Write;
    proc.stdin
        .take()
        .unwrap()
        .write_all(b"FROM busybox\nCMD [\"true\"]\n")
        .unwrap();
    let out = proc.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout);
    assert!(
        id.trim().starts_with("sha256:") && id.lines().count() == 1,
        "{id}"
    );
}

#[test]
fn independent_stages_run_at_the_same_time() {
    let Some((t, store, _serial)) = busybox_build() else {
        return;
    };
    let ctx = t.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    let step =
        "RUN cut -d' ' -f1 /proc/uptime > /start && sleep 2 && cut -d' ' -f1 /proc/uptime > /end";
    fs::write(
        ctx.join("Buildfile"),
        format!(
            "FROM busybox AS a\n{step}\nFROM busybox AS b\n{step}\n\
             FROM busybox\nCOPY --from=a /start /a-start\nCOPY --from=a /end /a-end\n\
             COPY --from=b /start /b-start\nCOPY --from=b /end /b-end\n"
        ),
    )
    .unwrap();
    build_ok(
        &store,
        &["--jobs", "2", "-t", "par:1", ctx.to_str().unwrap()],
    );
    let out = ok(imgctl(&store).args([
        "run", "--rm", "par:1", "cat", "/a-start", "/a-end", "/b-start", "/b-end",
    ]));
    let v: Vec<f64> = out.lines().map(|l| l.trim().parse().unwrap()).collect();
    let (a0, a1, b0, b1) = (v[0], v[1], v[2], v[3]);
    assert!(a1 - a0 >= 1.9 && b1 - b0 >= 1.9, "{v:?}");
    assert!(
        a0 < b1 && b0 < a1,
        "the two stages' RUN steps overlap in time: a {a0}..{a1}, b {b0}..{b1}"
    );
}

#[test]
fn base_image_is_pulled_when_missing() {
    use crate::common::registry::{registry_tools, Registry};
    let layout = busybox_layout();
    let ready = require(is_root(), "root")
        && require(registry_tools(), "docker-registry and skopeo")
        && require_layout(&layout, "busybox.sh");
    if !ready {
        return;
    }
    let _serial = common::sandbox::serial();
    let reg = Registry::open();
    push_layout(&layout, &reg.addr, "library/busybox:latest");
    let t = common::tempdir();
    let store = t.path().join("store");
    let ctx = t.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("Buildfile"),
        "ARG BASE\nFROM $BASE\nRUN echo pulled-and-built > /x\nCMD [\"cat\", \"/x\"]\n",
    )
    .unwrap();
    let base = format!("BASE={}/library/busybox:latest", reg.addr);
    let err = build_ok(
        &store,
        &[
            "--progress",
            "plain",
            "--build-arg",
            &base,
            "-t",
            "p:1",
            ctx.to_str().unwrap(),
        ],
    );
    assert!(err.contains("[internal] pull"), "{err}");
    assert_eq!(
        ok(imgctl(&store).args(["run", "--rm", "p:1"])),
        "pulled-and-built\n"
    );
    // In the store now: no pull without --pull, one with it.
    let err = build_ok(
        &store,
        &[
            "--progress",
            "plain",
            "--build-arg",
            &base,
            ctx.to_str().unwrap(),
        ],
    );
    assert!(!err.contains("[internal] pull"), "{err}");
    let err = build_ok(
        &store,
        &[
            "--progress",
            "plain",
            "--pull",
            "--build-arg",
            &base,
            ctx.to_str().unwrap(),
        ],
    );
    assert_eq!(err.matches("[internal] pull").count(), 1, "{err}");
}

#[test]
fn a_killed_build_is_cleaned_up_by_the_next_one() {
    let Some((t, store, _serial)) = busybox_build() else {
        return;
    };
    let ctx = t.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    // A duration no other process on a shared machine is likely to sleep for.
    let nap = format!("sleep 60.{}", std::process::id() % 100_000);
    fs::write(ctx.join("Buildfile"), format!("FROM busybox\nRUN {nap}\n")).unwrap();
    let mut child = imgctl(&store)
        .args(["build", "-t", "killed:1"])
        .arg(&ctx)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let active = store.join("snapshots/active");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while mounts_under(&active).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the step never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    fs::write(ctx.join("Buildfile"), "FROM busybox\nRUN true\n").unwrap();
    build_ok(&store, &["-t", "next:1", ctx.to_str().unwrap()]);
    assert!(!images(&store).contains("killed:1"));
    // The killed build's step is gone too (killed through its cgroup).
    let ps = ok(Command::new("ps").args(["-eo", "args"]));
    assert!(!ps.lines().any(|l| l.trim_end().ends_with(&nap)), "{ps}");
    assert!(
        mounts_under(&store).is_empty(),
        "{:?}",
        mounts_under(&store)
    );
    let left: Vec<_> = fs::read_dir(&active)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn add_unpack_flag_reaches_the_executor() {
    let Some((t, store, _serial)) = busybox_build() else {
        return;
    };
    let ctx = t.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    // A local tar holding one file: ADD extracts it by default, `--unpack=false` copies it.
    let mut tar = tar::Builder::new(Vec::new());
    let body = b"inside the archive\n";
    let mut h = tar::Header::new_gnu();
    h.set_size(body.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "inner.txt", &body[..]).unwrap();
    fs::write(ctx.join("a.tar"), tar.into_inner().unwrap()).unwrap();
    fs::write(
        ctx.join("Buildfile"),
        "FROM busybox\nADD a.tar /x/\nADD --unpack=false a.tar /y/\n",
    )
    .unwrap();
    build_ok(&store, &["-q", "-t", "unpack:1", ctx.to_str().unwrap()]);
    let out = ok(imgctl(&store).args([
        "run",
        "--rm",
        "unpack:1",
        "sh",
        "-c",
        "cat /x/inner.txt; ls /y",
    ]));
    assert_eq!(out, "inside the archive\na.tar\n");
}
