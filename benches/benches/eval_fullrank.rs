//! Full-ranking evaluation cost: 10,000 users × 100,000 items of random scores, pessimistic rank
//! of each user's target plus the top-10 list, rayon over users.
//!
//! `cargo bench -p genrec-benches --bench eval_fullrank` (or `just bench-eval`); compare with
//! `../shared/anchors/torch_fullsort_eval.py`, whose per-phase breakdown separates the matmul
//! from the top-k and rank phases this bench covers.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use genrec_eval::ranking::rank_and_top_k;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

const USERS: usize = 10_000;
const ITEMS: usize = 100_000;

fn bench(c: &mut Criterion) {
    // 4 GB of scores, filled in parallel from per-row seeds so the data is deterministic.
    let mut scores = vec![0f32; USERS * ITEMS];
    scores.par_chunks_mut(ITEMS).enumerate().for_each(|(u, row)| {
        let mut rng = ChaCha8Rng::seed_from_u64(u as u64);
        row.iter_mut().for_each(|s| *s = rng.random::<f32>());
    });
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let targets: Vec<u32> = (0..USERS).map(|_| rng.random_range(0..ITEMS as u32)).collect();
    let mut group = c.benchmark_group("eval_fullrank");
    group.sample_size(10);
    group.throughput(Throughput::Elements(USERS as u64));
    group.bench_function("10k_users_x_100k_items_top10", |b| {
        b.iter(|| {
            let out = rank_and_top_k(&scores, ITEMS, &targets, 10);
            criterion::black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
