//! RPG in the shape of `benches/anchors/rpg_step.py` (the reference configuration): 12,101 items
//! with random distinct 32-digit IDs (32 sub-spaces × 256 codes), a GPT-2-style decoder of 2
//! blocks, d 448, 4 heads, inner 1024, dropout 0.5 on embeddings and attention, temperature 0.03.
//!
//! - `rpg_train_step/full50`: one AdamW step on 256 histories of 50 items (loss at all 50
//!   positions, all 32 digits) — the anchor's training step, no padding on either side.
//! - `rpg_train_step/short`: the same with history lengths drawn like Beauty's training
//!   sequences (1 + ⌊5.5 · Exp(1)⌋, at most 50; mean ≈ 6.5): genrec packs them into shared rows,
//!   the anchor (`--short`) pads each batch to its longest history, as the reference does.
//! - `rpg_decode/exact`: top-10 of all 12,101 items for 256 users with 50-item histories (mean
//!   digit log-probability of every item, full ranking).
//! - `rpg_decode/graph`: RPG's graph-constrained decoding of the same users (20 beams, 200 edges,
//!   3 steps); the item graph is built once before timing (its build time is printed).
//!
//! TIGER's trie-constrained beam search over the same number of items is `just bench-tiger`.
//!
//! `cargo bench -p genrec-benches --bench rpg` (or `just bench-rpg`), right after
//! `just anchor-rpg` on a quiet machine.

use std::time::{Duration, Instant};

use burn::backend::{Autodiff, Flex};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use genrec_eval::Recommender;
use genrec_generative::rpg::{Decode, RpgConfig, RpgRecommender};
use genrec_tokenize::ItemIndex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// As the `genrec` binary (see its main.rs): mimalloc, not glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type B = Autodiff<Flex>;
const ITEMS: usize = 12_101;
const DIGITS: usize = 32;
const USERS: usize = 256;
const LEN: usize = 50;

fn index(rng: &mut ChaCha8Rng) -> ItemIndex {
    let mut seen = std::collections::HashSet::new();
    let mut codes = Vec::with_capacity(ITEMS);
    while codes.len() < ITEMS {
        let c: Vec<u32> = (0..DIGITS).map(|_| rng.random_range(0..256)).collect();
        if seen.insert(c.clone()) {
            codes.push(c);
        }
    }
    ItemIndex::new("random", vec![256; DIGITS], codes)
        .unwrap()
        .with_unordered(true)
}

/// `USERS` sequences of `len(rng)` + 1 random items.
fn sequences(rng: &mut ChaCha8Rng, len: impl Fn(&mut ChaCha8Rng) -> usize) -> Vec<Vec<u32>> {
    (0..USERS)
        .map(|_| {
            let n = len(rng);
            (0..=n).map(|_| rng.random_range(0..ITEMS as u32)).collect()
        })
        .collect()
}

fn short_length(rng: &mut ChaCha8Rng) -> usize {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    (1 + (-u.ln() * 5.5) as usize).min(LEN)
}

fn bench(c: &mut Criterion) {
    genrec_benches::keep_freed_memory();
    let device = Default::default();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let index = index(&mut rng);
    let config = RpgConfig::default();

    let mut group = c.benchmark_group("rpg_train_step");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(USERS as u64));
    for (name, short) in [("full50", false), ("short", true)] {
        let mut model = Some(config.init::<B>(&index, LEN, &device));
        let mut optim = AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(0.0).init();
        let mut step = |rng: &mut ChaCha8Rng| {
            let seqs = if short {
                sequences(rng, short_length)
            } else {
                sequences(rng, |_| LEN)
            };
            let inputs: Vec<&[u32]> = seqs.iter().map(|s| &s[..s.len() - 1]).collect();
            let targets: Vec<&[u32]> = seqs.iter().map(|s| &s[1..]).collect();
            let m = model.take().unwrap();
            let loss = m.loss(&inputs, &targets, &index, rng);
            let grads = GradientsParams::from_grads(loss.backward(), &m);
            model = Some(optim.step(1e-3, m, grads));
        };
        step(&mut rng);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    step(&mut rng);
                }
                start.elapsed()
            })
        });
    }
    group.finish();

    let model = config.init::<Flex>(&index, LEN, &device);
    let histories = sequences(&mut rng, |_| LEN - 1);
    let refs: Vec<&[u32]> = histories.iter().map(Vec::as_slice).collect();
    let exact = RpgRecommender::new(model.clone(), index.clone(), config.clone(), 0);
    let graph_config = RpgConfig {
        decode: Decode::Graph,
        ..config.clone()
    };
    let graph = RpgRecommender::new(model, index.clone(), graph_config, 0);
    let started = Instant::now();
    let edges = graph.graph().len();
    eprintln!(
        "rpg item graph: {edges} items x {} edges built in {:.1} s",
        RpgConfig::default().n_edges,
        started.elapsed().as_secs_f64()
    );
    let mut group = c.benchmark_group("rpg_decode");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(USERS as u64));
    group.bench_function("exact", |b| b.iter(|| exact.recommend(&refs, 10)));
    group.bench_function("graph", |b| b.iter(|| graph.recommend(&refs, 10)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
