//! Layer apply throughput: a generated layer of many small files (the inode-creation
//! bound case, DESIGN.md section 6) and, when present, the nginx fixture's layers.
//! Wall-time comparisons against umoci and tar live in scripts/bench-unpack.sh.

use std::io::Write;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use imgctl::layer::{self, ApplyMode, ApplyOptions, Compression};

fn small_files_layer(n: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for d in 0..n / 100 {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, format!("d{d}/"), std::io::empty())
            .unwrap();
        for f in 0..100 {
            let data = format!("file {d}/{f}\n").repeat(20);
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, format!("d{d}/f{f}"), data.as_bytes())
                .unwrap();
        }
    }
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

fn bench(c: &mut Criterion) {
    let base = std::env::var_os("IMGCTL_BENCH_DIR")
        .map(Into::into)
        .unwrap_or_else(std::env::temp_dir);
    let mut g = c.benchmark_group("apply");
    g.sample_size(10);
    let blob = small_files_layer(5000);
    g.bench_function("5000 small files (gzip, overlay mode)", |b| {
        b.iter_batched(
            || tempfile::tempdir_in(&base).unwrap(),
            |dir| {
                let o = ApplyOptions::new(ApplyMode::Overlay, "bench");
                layer::apply(&blob[..], Compression::Gzip, dir.path(), &o).unwrap();
                dir
            },
            BatchSize::PerIteration,
        )
    });
    let nginx = Path::new("/var/cache/imgctl-testdata/nginx-oci");
    if nginx.join("index.json").is_file() {
        let oci = imgctl::image::OciDir::open(nginx).unwrap();
        let m = oci.manifest_for(Some("latest")).unwrap();
        g.bench_function("nginx fixture unpack (all layers, no dedup)", |b| {
            b.iter_batched(
                || tempfile::tempdir_in(&base).unwrap(),
                |dir| {
                    let opts = imgctl::image::UnpackOptions {
                        dedup: false,
                        ..Default::default()
                    };
                    imgctl::image::unpack_with(&oci, &m, dir.path(), &opts).unwrap();
                    dir
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
