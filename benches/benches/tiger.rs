//! TIGER in the shape of `../shared/anchors/torch_beam_decode.py`: 12,101 items with random
//! 3 × 256 semantic IDs plus a dedup digit (4 levels), a T5 of d_model 128, 6 heads × d_kv 64,
//! d_ff 1024, 4 + 4 blocks, ReLU FFN; 256 users with 20 random history items (80 tokens).
//!
//! - `tiger_decode`: trie-constrained beam search (beam 20, top 10) of all 256 users at once,
//!   encoder once per user, cached decoder self-attention, cross-attention K/V once per user —
//!   the anchor's part A. Compare users/s with the anchor's (and its `--hf` generate path).
//! - `tiger_train_step`: one AdamW step (dropout 0.1) on a batch of 256 of those users, teacher
//!   forcing the next item's 4 tokens. No PyTorch anchor times a TIGER training step.
//!
//! Our vocabulary has 4 special tokens (the anchor 3) and the 4th level has as many codes as the
//! largest dedup group (the anchor reserves 256): the work per step is the same to within 1%.
//!
//! `cargo bench -p genrec-benches --bench tiger` (or `just bench-tiger`), right after
//! `python ../shared/anchors/torch_beam_decode.py` on a quiet machine.

use std::time::Duration;

use burn::backend::{Autodiff, Flex};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use genrec_generative::tiger::{tiger_loss, Tiger, TigerBatch, TigerConfig};
use genrec_tokenize::{ItemIndex, TokenLayout};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// As the `genrec` binary (see its main.rs): mimalloc, not glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ITEMS: usize = 12_101;
const USERS: usize = 256;
const HISTORY: usize = 20;

fn setup() -> (ItemIndex, Vec<Vec<u32>>, Vec<u32>) {
    genrec_benches::random_tiger_setup(ITEMS, USERS, HISTORY, &mut ChaCha8Rng::seed_from_u64(0))
}

fn bench(c: &mut Criterion) {
    genrec_benches::keep_freed_memory();
    let device = Default::default();
    let (index, histories, targets) = setup();
    let layout = TokenLayout::new(&index.codebook_sizes);
    let config = TigerConfig::default();
    let refs: Vec<&[u32]> = histories.iter().map(Vec::as_slice).collect();

    let mut group = c.benchmark_group("tiger");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(USERS as u64));

    let tiger = Tiger::new(
        config.t5(&layout).init_seeded::<Flex>(0, &device),
        index.clone(),
        config.clone(),
    );
    let lists = tiger.generate(None, &refs, 10);
    assert!(lists
        .iter()
        .all(|l| l.len() == 10 && l.iter().all(|&i| (i as usize) < ITEMS)));
    group.bench_function("decode_256users_beam20_top10", |b| {
        b.iter(|| tiger.generate(None, &refs, 10))
    });

    type A = Autodiff<Flex>;
    let mut model = Some(config.t5(&layout).init_seeded::<A>(0, &device));
    let mut optim = AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(0.0).init();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let batch = TigerBatch::<A>::new(&refs, None, &targets, &index, &layout, HISTORY, &device);
    let mut step = || {
        let m = model.take().unwrap();
        let loss = tiger_loss(&m, &batch, Some(&mut rng));
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        model = Some(optim.step(1e-3, m, grads));
    };
    // The warm-up step inside the closure: a filtered run (`-- decode`) then never trains, so
    // its memory and profile are the decoder's alone.
    group.bench_function("train_step_b256_src80", |b| {
        step();
        b.iter(&mut step)
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
