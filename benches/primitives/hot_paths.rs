//! hot_paths — cvm's own per-sample work (no privileges needed):
//! - `pss_read`: `measure::memory::pss_bytes` of this process (`/proc/self/smaps_rollup`);
//! - `sample_write`: one `results::SampleWriter::write` (serialise + flush a CSV row);
//! - `summary_30`, `summary_1000`: `stats::Summary::of` on 30 and 1000 samples (the median's
//!   order-statistic interval);
//! - `median_difference_30`, `median_difference_1000`: `stats::ab::median_difference` of two
//!   such samples (2000 bootstrap resamples of each side, as `cvm diff` and the summary's
//!   memory overhead take it).

use std::hint::black_box;
use std::io::Write;

use criterion::{Criterion, SamplingMode};

pub fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("hot_paths");
    g.sample_size(30);
    let me = std::process::id();
    g.bench_function("pss_read", |b| {
        b.iter(|| cvm::usage::memory::pss_bytes(black_box(me)).expect("pss"));
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let mut writer =
        cvm::results::SampleWriter::create(&dir.path().join("samples.csv")).expect("writer");
    let mut row = sample_row();
    g.bench_function("sample_write", |b| {
        b.iter(|| {
            row.iteration = row.iteration.wrapping_add(1);
            writer.write(black_box(&row)).expect("write");
        });
    });
    let mut rng = fastrand::Rng::with_seed(7);
    // Startup latencies: a skewed distribution around 10 ms with a few slow outliers.
    let mut samples =
        |n: usize| -> Vec<f64> { (0..n).map(|_| 0.01 * (1.0 + rng.f64().powi(4))).collect() };
    for n in [30, 1000] {
        if n == 1000 {
            // 2000 resamples of two sides of 1000 are slow: ten single-iteration samples.
            g.sampling_mode(SamplingMode::Flat).sample_size(10);
        }
        let v = samples(n);
        g.bench_function(format!("summary_{n}"), |b| {
            b.iter(|| cvm::stats::Summary::of(black_box(&v)).expect("summary"));
        });
        let w = samples(n);
        g.bench_function(format!("median_difference_{n}"), |b| {
            b.iter(|| cvm::stats::ab::median_difference(black_box(&v), black_box(&w)));
        });
    }
    g.finish();
    drop(writer);
    let _ = std::io::stderr().flush();
}

fn sample_row() -> cvm::results::SampleRow {
    cvm::results::SampleRow {
        run_id: "2026-01-01T00-00-00-startup".into(),
        scenario: "startup".into(),
        backend: "container".into(),
        iteration: 0,
        phase: cvm::results::Phase::Measure,
        metric: "ready_latency".into(),
        value: 0.012_345_678,
        unit: "s".into(),
        host: "bench-host".into(),
        kernel: "6.1.0-18-amd64".into(),
        cpu_model: "Intel(R) Xeon(R) CPU".into(),
        ncpu: 2,
        mem_total: 24 << 30,
        accel: "tcg".into(),
        qemu_version: "7.2.0".into(),
        cvm_version: "0.1.0".into(),
        git_sha: "0123456789ab".into(),
        config: "cgroup=hybrid (v1 controllers);network=none (loopback only)".into(),
        note: String::new(),
    }
}
