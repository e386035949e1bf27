//! Buildfile parser throughput. Target (issue 4): a generated 10,000-instruction
//! Buildfile parses in under 10 ms on the project's CI machine.
//! Run: `cargo bench --bench buildfile`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

/// A Buildfile of `n` instructions in a realistic mix: stages, continuations, flags,
/// quoted pairs, JSON forms, mounts and heredocs.
pub fn generate(n: usize) -> String {
    let mut s = String::from("# syntax=docker/dockerfile:1\nARG BASE=debian:12\n");
    let mut count = 1;
    let mut i = 0;
    while count < n {
        let line = match i % 20 {
            0 => format!("FROM ${{BASE}} AS stage{i}\n"),
            1 => "RUN apt-get update && \\\n    apt-get install -y --no-install-recommends \\\n        curl ca-certificates \\\n    && rm -rf /var/lib/apt/lists/*\n".to_string(),
            2 => format!("ENV APP_HOME=/srv/app{i} PATH=\"/srv/app/bin:$PATH\" LANG=C.UTF-8\n"),
            3 => format!("COPY --from=stage0 --chown=app:app --chmod=0755 --link ./src/{i} /srv/app/\n"),
            4 => "RUN --mount=type=cache,target=/root/.cache,sharing=locked --mount=type=secret,id=token,required make -j4\n".to_string(),
            5 => format!("LABEL org.opencontainers.image.title=\"app {i}\" version=1.{i}\n"),
            6 => "WORKDIR /srv/app\n".to_string(),
            7 => "EXPOSE 80 443/tcp 8000-8010/udp\n".to_string(),
            8 => "CMD [\"/srv/app/bin/server\", \"--port\", \"8080\"]\n".to_string(),
            9 => "RUN <<EOF\nset -e\necho building\nmake install\nEOF\n".to_string(),
            10 => format!("ARG VERSION_{i}=1.0.{i}\n"),
            11 => "USER app:app\n".to_string(),
            12 => "HEALTHCHECK --interval=30s --timeout=3s --retries=3 CMD curl -f http://localhost/ || exit 1\n".to_string(),
            13 => "ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d https://example.org/a.tar.gz /tmp/\n".to_string(),
            14 => "VOLUME [\"/data\", \"/logs\"]\n".to_string(),
            15 => "ONBUILD RUN echo triggered\n".to_string(),
            16 => "# a comment line between instructions\nSTOPSIGNAL SIGTERM\n".to_string(),
            17 => "ENTRYPOINT [\"/usr/bin/tini\", \"--\"]\n".to_string(),
            18 => "SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]\n".to_string(),
            _ => "RUN echo ${APP_HOME} && ls -la /srv/app\n".to_string(),
        };
        s.push_str(&line);
        count += 1;
        i += 1;
    }
    s
}

fn bench(c: &mut Criterion) {
    let text = generate(10_000);
    let bf = imgctl::buildfile::parse("Buildfile", &text).expect("generated Buildfile parses");
    assert_eq!(bf.instructions.len(), 10_000);
    let mut g = c.benchmark_group("buildfile");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("parse_10k_instructions", |b| {
        b.iter(|| imgctl::buildfile::parse("Buildfile", black_box(&text)))
    });
    // The same parse with the tree's deallocation kept out of the timing.
    g.bench_function("parse_10k_instructions_without_drop", |b| {
        b.iter_with_large_drop(|| imgctl::buildfile::parse("Buildfile", black_box(&text)))
    });
    g.bench_function("parse_and_lint_10k_instructions", |b| {
        b.iter(|| {
            let bf = imgctl::buildfile::parse("Buildfile", black_box(&text)).expect("parses");
            imgctl::buildfile::lint(&bf, &text).len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
