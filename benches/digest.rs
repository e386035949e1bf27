//! Digest throughput: one-shot `Digest::of` and streaming `Digester` in the 64 KiB
//! chunks a registry download delivers, over 1 MiB and 64 MiB inputs.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use imgctl::oci::{Digest, Digester};

fn data(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("sha256");
    for size in [1usize << 20, 64 << 20] {
        let buf = data(size);
        g.throughput(Throughput::Bytes(size as u64));
        g.sample_size(if size > 1 << 20 { 10 } else { 50 });
        g.bench_with_input(BenchmarkId::new("one_shot", size), &buf, |b, buf| {
            b.iter(|| Digest::of(black_box(buf)))
        });
        g.bench_with_input(BenchmarkId::new("stream_64k", size), &buf, |b, buf| {
            b.iter(|| {
                let mut d = Digester::new();
                for chunk in buf.chunks(64 * 1024) {
                    d.update(black_box(chunk));
                }
                d.finish()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
