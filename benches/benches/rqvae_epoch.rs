//! One RQ-VAE training epoch in the shape of `../shared/anchors/torch_rqvae_fit.py`: 12,101 × 384
//! standard-normal rows, encoder 384-512-256-128-32 (decoder mirrored), 3 levels × 256 codes,
//! batch 1024 (12 steps), Adam 1e-3, β 0.25, on Flex (SIMD + rayon). As in the anchor, the
//! k-means initialisation (10 Lloyd iterations on the first batch) runs once before timing and
//! the timed epochs are plain (no dead-code re-seeding), so the figure compares with the anchor's
//! "mean of epochs 2–6". Our reconstruction term sums over dims (the loss) where the
//! anchor averages; the work per step is the same.
//!
//! `cargo bench -p genrec-benches --bench rqvae_epoch` (or `just bench-rqvae`), right after
//! `python ../shared/anchors/torch_rqvae_fit.py` on a quiet machine.

use std::time::Duration;

use burn::backend::{Autodiff, Flex};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use genrec_tokenize::rqvae::{RqVaeConfig, RqVaeTrainConfig, RqVaeTrainer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// As the `genrec` binary (see its main.rs): mimalloc, not glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type B = Autodiff<Flex>;
const ITEMS: usize = 12_101;
const DIM: usize = 384;

/// Standard-normal rows (Box–Muller).
fn gaussian(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let (u, v): (f64, f64) = (rng.random_range(f64::EPSILON..1.0), rng.random());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    genrec_benches::keep_freed_memory();
    let device = Default::default();
    let data = gaussian(ITEMS * DIM, 0);
    let model = RqVaeConfig::new();
    let train = RqVaeTrainConfig::new()
        .with_batch_size(1024)
        .with_init_rows(1024)
        .with_kmeans_iters(10)
        .with_reseed_dead(false);
    let mut trainer = RqVaeTrainer::<B>::new(&data, DIM, &model, &train, &device).unwrap();
    // Epoch 1: k-means initialisation and first-touch allocations, outside the timing.
    let first = trainer.epoch(false).unwrap();
    let mut group = c.benchmark_group("rqvae_epoch");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(ITEMS as u64));
    group.bench_function("12101x384_3x256_b1024", |b| b.iter(|| trainer.epoch(false).unwrap()));
    group.finish();
    let last = trainer.epoch(false).unwrap();
    assert!(
        last.loss < first.loss,
        "training loss did not fall: {} → {}",
        first.loss,
        last.loss
    );
    eprintln!(
        "rqvae_epoch: loss {:.3} → {:.3}, codes used per level {:?}",
        first.loss, last.loss, last.usage
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
