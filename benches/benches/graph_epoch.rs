//! LightGCN on RLMRec's Amazon-book split in the shape of `../shared/anchors/torch_lightgcn_rlmrec.py
//! --timing-only`: one training epoch (120,464 BPR triples in 30 batches of 4,096, each batch a
//! full-graph 3-layer propagation over the edge-dropped adjacency (keep 0.8), backward, Adam step)
//! and one full validation pass (propagation + scoring all 9,332 items for the 9,857 validation
//! users + metrics), on Flex (SIMD + rayon). The anchor's figures are its `mean_s_per_epoch` and
//! `eval_s`.
//!
//! `cargo bench -p genrec-benches --bench graph_epoch` (or `just bench-graph`), right after
//! `just anchor-graph` on a quiet machine. Reads `$GENREC_DATA_DIR/rlmrec/amazon-book` (default
//! `../shared/data`).

use std::path::PathBuf;
use std::time::Duration;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use genrec_data::HoldOut;
use genrec_eval::multi::{HoldOutEvalConfig, HoldOutSplit};
use genrec_graph::model::{batch_loss, Triples};
use genrec_graph::train::{training_pairs, NegativeSampler};
use genrec_graph::{evaluate_graph_cf, Backbone, Graph, GraphCf, GraphCfConfig};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// As the `genrec` binary (see its main.rs): mimalloc, not glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type B = Autodiff<Flex>;

fn data_dir() -> PathBuf {
    match std::env::var_os("GENREC_DATA_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"),
    }
    .join("rlmrec/amazon-book")
}

fn bench(c: &mut Criterion) {
    genrec_benches::keep_freed_memory();
    let device = Default::default();
    let data = HoldOut::load_dir(&data_dir()).expect("rlmrec/amazon-book (set GENREC_DATA_DIR)");
    let settings = GraphCfConfig::default().resolve(Backbone::LightGcn).unwrap();
    let graph = Graph::<B>::new(&data, &device);
    let pairs = training_pairs(&data);
    let sampler = NegativeSampler::new(&data).unwrap();
    let mut model = GraphCf::<B>::new(&settings, data.n_users, data.n_items, None, 2023, &device).unwrap();
    let mut optim = AdamConfig::new().with_epsilon(1e-8).init();
    let mut rng = ChaCha8Rng::seed_from_u64(2023);
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    let mut epoch = |model: GraphCf<B>| -> (GraphCf<B>, f64) {
        let mut model = model;
        order.shuffle(&mut rng);
        let mut total = 0.0;
        for chunk in order.chunks(4096) {
            let (mut u, mut p, mut n) = (Vec::new(), Vec::new(), Vec::new());
            for &k in chunk {
                let (user, item) = pairs[k];
                u.push(user as i64);
                p.push(item as i64);
                n.push(sampler.sample(user, &mut rng) as i64);
            }
            let batch = Triples::new(u, p, n, &device);
            let loss = batch_loss(&model, &settings, &graph, None, &batch, &mut rng);
            total += loss.clone().into_scalar() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-3, model, grads);
        }
        (model, total / order.len().div_ceil(4096) as f64)
    };
    // Epoch 1 (first-touch allocations) outside the timing.
    let (m, first) = epoch(model);
    model = m;
    let mut group = c.benchmark_group("graph_epoch");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(25));
    group.throughput(Throughput::Elements(pairs.len() as u64));
    let mut last = first;
    group.bench_function("lightgcn_amazon_book_train_epoch", |b| {
        b.iter(|| {
            let (m, loss) = epoch(model.clone());
            model = m;
            last = loss;
        })
    });
    let inner = model.valid();
    let inner_graph = Graph::<Flex>::new(&data, &device);
    let eval = HoldOutEvalConfig {
        batch_size: 1024,
        ..HoldOutEvalConfig::default()
    };
    let mut recall = 0.0;
    group.bench_function("lightgcn_amazon_book_valid_pass", |b| {
        b.iter(|| {
            let e = evaluate_graph_cf(&inner, &settings, &inner_graph, &data, HoldOutSplit::Valid, &eval).unwrap();
            recall = e.metrics["recall@20"];
        })
    });
    group.finish();
    assert!(last < first, "training loss did not fall: {first} → {last}");
    eprintln!("graph_epoch: loss {first:.4} → {last:.4}, valid recall@20 {recall:.4}");
}

criterion_group!(benches, bench);
criterion_main!(benches);
