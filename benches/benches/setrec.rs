//! SETRec's speed claim, one-pass generation against beam search: SETRec and TIGER on the same
//! T5 (d_model 128, 6 heads × d_kv 64, d_ff 1024, 4 + 4 blocks, ReLU FFN), the same 12,101 items
//! and the same 256 users with 20 random history items, in one sitting.
//!
//! - `setrec_top10_256users`: SETRec's item tokens (computed once, as its recommender does), one
//!   encoder + one 5-query decoder pass per user, grounding against every item, top 10.
//! - `tiger_top10_256users_beam20`: TIGER's trie-constrained beam search (beam 20, top 10) over
//!   random 3 × 256 codes plus a dedup digit (the `tiger` bench's setup).
//! - `setrec_train_step` / `tiger_train_step`: one AdamW step on a batch of the 256 users (dropout
//!   0.1); SETRec's includes its auto-encoder over all items and 5 full softmaxes.
//!
//! SETRec's inputs are 1 CF token (random 64-d "SASRec" vectors) and 4 semantic tokens (random
//! 384-d "text" vectors through the 512-256-128 auto-encoder): 100 encoder tokens per user against
//! TIGER's 80. The paper reports 8–18× faster inference than sequence-ID models; the ratio here
//! is read off this bench's own two numbers.
//!
//! `cargo bench -p genrec-benches --bench setrec` (or `just bench-setrec`) on a quiet machine.

use std::time::Duration;

use burn::backend::{Autodiff, Flex};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use genrec_eval::Recommender;
use genrec_generative::setrec::{SetRecConfig, SetRecItems, SetRecRecommender};
use genrec_generative::tiger::{tiger_loss, Tiger, TigerBatch, TigerConfig};
use genrec_text::Matrix;
use genrec_tokenize::TokenLayout;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// As the `genrec` binary (see its main.rs): mimalloc, not glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type A = Autodiff<Flex>;

const ITEMS: usize = 12_101;
const USERS: usize = 256;
const HISTORY: usize = 20;

fn random_matrix(rows: usize, cols: usize, rng: &mut ChaCha8Rng) -> Matrix {
    Matrix::new(
        rows,
        cols,
        (0..rows * cols).map(|_| rng.random_range(-1.0..1.0)).collect(),
    )
}

fn bench(c: &mut Criterion) {
    genrec_benches::keep_freed_memory();
    let device = Default::default();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let (index, histories, targets) = genrec_benches::random_tiger_setup(ITEMS, USERS, HISTORY, &mut rng);
    let refs: Vec<&[u32]> = histories.iter().map(Vec::as_slice).collect();
    let items = SetRecItems {
        cf: Some(random_matrix(ITEMS, 64, &mut rng)),
        text: Some(random_matrix(ITEMS, 384, &mut rng)),
    };
    let setrec_config = SetRecConfig {
        cf_vectors: Some("bench".into()),
        max_items: HISTORY,
        ..SetRecConfig::default()
    };
    let tiger_config = TigerConfig::default();
    let layout = TokenLayout::new(&index.codebook_sizes);

    let mut group = c.benchmark_group("setrec_vs_tiger");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(USERS as u64));
    let setrec = SetRecRecommender::new(
        setrec_config
            .init_seeded::<Flex>(&items, ITEMS, None, 0, &device)
            .unwrap(),
        setrec_config.clone(),
        0.5,
    );
    assert!(setrec.recommend(&refs, 10).iter().all(|l| l.len() == 10));
    group.bench_function("setrec_top10_256users", |b| b.iter(|| setrec.recommend(&refs, 10)));
    let tiger = Tiger::new(
        tiger_config.t5(&layout).init_seeded::<Flex>(0, &device),
        index.clone(),
        tiger_config.clone(),
    );
    group.bench_function("tiger_top10_256users_beam20", |b| {
        b.iter(|| tiger.generate(None, &refs, 10))
    });

    let adamw = AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(0.0);
    let mut model = Some(setrec_config.init_seeded::<A>(&items, ITEMS, None, 0, &device).unwrap());
    let mut optim = adamw.init();
    let mut drops = ChaCha8Rng::seed_from_u64(1);
    group.bench_function("setrec_train_step", |b| {
        b.iter(|| {
            let m = model.take().unwrap();
            let loss = m.loss(&refs, &targets, &setrec_config, &mut Some(&mut drops));
            let grads = GradientsParams::from_grads(loss.backward(), &m);
            model = Some(optim.step(1e-3, m, grads));
        })
    });
    let mut model = Some(tiger_config.t5(&layout).init_seeded::<A>(0, &device));
    let mut optim = adamw.init();
    let batch = TigerBatch::<A>::new(&refs, None, &targets, &index, &layout, HISTORY, &device);
    group.bench_function("tiger_train_step", |b| {
        b.iter(|| {
            let m = model.take().unwrap();
            let loss = tiger_loss(&m, &batch, Some(&mut drops));
            let grads = GradientsParams::from_grads(loss.backward(), &m);
            model = Some(optim.step(1e-3, m, grads));
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
