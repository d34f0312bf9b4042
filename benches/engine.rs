//! Criterion benchmarks of the hot paths (`cargo bench`). Workloads are synthetic and seeded;
//! the side-by-side comparison with the peers lives in `bench/compare.sh` (README "Performance").

use criterion::{Criterion, criterion_group, criterion_main};
use flatcert::Dataset;
use flatcert::measure::gram::{GramOptions, gauss_newton_gram};
use flatcert::measure::hvp::{CurvatureOperator, OperatorOptions};
use flatcert::measure::lanczos::{LanczosOptions, gauss_newton_lambda_max};
use flatcert::measure::lipschitz::{BallNorm, local_lipschitz};
use flatcert::measure::per_sample::{PerSampleOptions, per_sample_stats};
use flatcert::model::Activation;
use flatcert::testutil::{random_data, random_mlp};

fn dataset(d: usize, n: usize, seed: u64) -> Dataset {
    let x = random_data(d, n, seed);
    Dataset::new(x.as_slice().to_vec(), n, d, None, "bench", "").expect("finite data")
}

fn per_sample(c: &mut Criterion) {
    let mlp = random_mlp(&[784, 512, 512, 10], Activation::Relu, 1);
    let ds = dataset(784, 1024, 2);
    let opts = PerSampleOptions {
        ks: vec![1, 2, 4],
        ..Default::default()
    };
    c.bench_function("per_sample W1-shape n=1024 k=1,2,4", |b| {
        b.iter(|| per_sample_stats(&mlp, &ds, &opts, &|_| {}).expect("runs"))
    });
}

fn gram(c: &mut Criterion) {
    let mlp = random_mlp(&[64, 64, 64, 10], Activation::Relu, 3);
    let ds = dataset(64, 100, 4);
    let mut group = c.benchmark_group("gram");
    group.sample_size(10);
    group.bench_function("K + eigh + Weyl, nC = 1000", |b| {
        b.iter(|| gauss_newton_gram(&mlp, &ds, &GramOptions::default()).expect("runs"))
    });
    group.finish();
}

fn lanczos(c: &mut Criterion) {
    let mlp = random_mlp(&[256, 256, 256, 10], Activation::Relu, 5);
    let ds = dataset(256, 512, 6);
    let op = CurvatureOperator::new(&mlp, &ds, OperatorOptions::default()).expect("operator");
    let mut group = c.benchmark_group("lanczos");
    group.sample_size(10);
    group.bench_function("GN lambda_max to 1e-8, nC = 5120", |b| {
        b.iter(|| gauss_newton_lambda_max(&op, &LanczosOptions::default()).expect("runs"))
    });
    group.finish();
}

fn lipschitz(c: &mut Criterion) {
    let mlp = random_mlp(&[64, 64, 64, 10], Activation::Relu, 7);
    let x0 = vec![0.3; 64];
    c.bench_function("T10 local Lipschitz, 64-64-64-10, one point", |b| {
        b.iter(|| local_lipschitz(&mlp, &x0, 0.1, BallNorm::L2).expect("runs"))
    });
}

criterion_group!(benches, per_sample, gram, lanczos, lipschitz);
criterion_main!(benches);
