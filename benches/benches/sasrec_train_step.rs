//! One SASRec training step in the shape of `../shared/anchors/torch_seqrec.py`: batch 128,
//! length 50, d 64, 2 layers, 2 heads, 1,700 output rows, full-softmax cross-entropy at every
//! position, AdamW, on Flex (SIMD + rayon). Differences from the anchor: our output layer is the
//! tied item embedding (the anchor has a separate Linear head) and a final LayerNorm.
//!
//! `cargo bench -p genrec-benches --bench sasrec_train_step` (or `just bench-sasrec`), right after
//! `python ../shared/anchors/torch_seqrec.py` on a quiet machine.

use std::time::{Duration, Instant};

use burn::backend::{Autodiff, Flex};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use genrec_seqrec::sasrec::{SasRecConfig, SeqBatch};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// As the `genrec` binary (see its main.rs): mimalloc, not glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type B = Autodiff<Flex>;
const BATCH: usize = 128;
const LEN: usize = 50;
const ITEMS: usize = 1_699; // + the padding row = 1,700 output rows

/// A batch of full-length random histories (no padding, as in the anchor).
fn batch(rng: &mut ChaCha8Rng, device: &burn::backend::flex::FlexDevice) -> SeqBatch<B> {
    let rows: Vec<Vec<u32>> = (0..BATCH)
        .map(|_| (0..=LEN).map(|_| rng.random_range(0..ITEMS as u32)).collect())
        .collect();
    let inputs: Vec<&[u32]> = rows.iter().map(|r| &r[..LEN]).collect();
    let targets: Vec<&[u32]> = rows.iter().map(|r| &r[1..]).collect();
    SeqBatch::new(&inputs, &targets, LEN, device)
}

fn bench(c: &mut Criterion) {
    genrec_benches::keep_freed_memory();
    let device = Default::default();
    let config = SasRecConfig {
        dropout: 0.1,
        ..SasRecConfig::default()
    };
    let mut model = Some(config.init::<B>(ITEMS, LEN, &device));
    let mut optim = AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(0.01).init();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut step = |rng: &mut ChaCha8Rng| {
        let m = model.take().unwrap();
        let loss = m.loss_full_softmax(&batch(rng, &device), rng);
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        model = Some(optim.step(1e-3, m, grads));
    };
    for _ in 0..2 {
        step(&mut rng);
    }
    let mut group = c.benchmark_group("sasrec_train_step");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("b128_l50_d64_1700items_ce", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                step(&mut rng);
            }
            start.elapsed()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
