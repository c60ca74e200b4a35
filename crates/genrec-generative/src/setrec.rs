//! SETRec (Lin et al., "Order-agnostic Identifier for Large Language Model-based Generative
//! Recommendation", SIGIR 2025): every item is a *set* of continuous tokens — `n_cf`
//! collaborative ones from a trained SASRec's item table and `n_sem` semantic ones from an
//! auto-encoder over the item's text vector — and a T5 generates all tokens of the next item in
//! one decoder pass, which are grounded to items by inner products. No beam search.
//!
//! - Tokenizers (trained with the recommender): CF = frozen SASRec vectors (`model.cf_vectors`,
//!   the `item_embeddings.npy` every SASRec run writes) → a linear layer with bias → `n_cf`
//!   tokens of `d_model`; semantic = an MLP auto-encoder over frozen item text vectors
//!   (`model.features`), `text → ae_layers… → n_sem·d_model` (ReLU between layers, none after
//!   the last), its output cut into `n_sem` contiguous `d_model` chunks; the decoder mirrors the
//!   encoder and its reconstruction MSE (over the batch's history items, repeats included, as the
//!   reference) is added with weight `alpha`.
//! - Encoder input: the last `max_items` history items, oldest first, each as its `n_query =
//!   n_cf + n_sem` tokens `[cf…, sem…]`; all tokens of item `k` share relative position `k`.
//!   `sparse_mask = true` (default): a token sees every token of earlier items and, within its
//!   own item, only itself (causal across items; the reference's decoder-only mask).
//!   `false`: T5's ordinary bidirectional encoder (the reference's T5 path, which has no sparse
//!   mask).
//! - Simultaneous generation: `n_query` learnable queries are the decoder's only input, all at
//!   position 0, each attending to itself only ([`T5::decode_queries_with`], a hard mask — the
//!   reference's T5 adds an identity matrix to the scores, which does not isolate them) and to the
//!   whole encoder memory. Query `j`'s output `h_j` scores every item by `h_j · token_j(item)`.
//! - Loss: full-softmax cross-entropy over all items for every slot, averaged over slots (the
//!   item-side tokens get gradients too), plus `alpha` · MSE.
//! - Grounding: `score(i) = (1 − β) · Σ_cf h_j·cf_j(i) + β · Σ_sem h_j·sem_j(i)`. β is chosen
//!   from `model.betas` on the validation split only (the reference sweeps it on the test set);
//!   validation during training reports the best β's value.
//!
//! - `backbone = "smollm2"`: SmolLM2-135M (its first `layers` blocks, base frozen, LoRA as the
//!   reference's Qwen script: rank 8, α 16, dropout 0.02 on q, v, o) reads `[history tokens,
//!   queries]` as one sequence: history tokens as above at rotary position `k`, the queries at the
//!   position after the history, each seeing the history and itself only (a hard mask; the
//!   reference's mask is skipped under SDPA). `sparse_mask = false` is token-causal attention.
//!   Checkpoints hold the whole model, SmolLM2's frozen weights included.
//!
//! Not built: the reference's instruction text around the history (the T5 has no text
//! vocabulary; kept out of the SmolLM2 path so that both backbones read the same input).
//!
//! Run: `just setrec-study ml100k` (SASRec, then SETRec on its item table).

use std::path::PathBuf;

use burn::module::Param;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::backend::AutodiffBackend;
use genrec_data::{EvalCase, ItemId, LeaveOneOut};
use genrec_eval::evaluate::summarize;
use genrec_eval::ranking::{pessimistic_rank, top_k_rows};
use genrec_eval::{evaluate, EvalConfig, RankingMode, Recommender, UserOutcome};
use genrec_kernels::fused::linear_cross_entropy;
use genrec_kernels::MASKED;
use genrec_text::Matrix;
use genrec_train::{train_model, Run, Task, TrainConfig, Trained, ValidationError};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use genrec_llm::{GgufFile, Llama, LoraConfig, LoraTarget, RopeStyle};

use crate::t5::{T5Config, T5};
use crate::tiger::{example, training_examples};
use crate::GenerativeError;

/// The `[model]` table of a SETRec experiment (`kind = "setrec"`; the T5 in `[model.t5]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SetRecConfig {
    /// `t5` (default: an encoder–decoder trained from scratch) or `smollm2` (SmolLM2-135M with
    /// LoRA, decoder-only: history tokens then the queries in one sequence).
    pub backbone: Backbone,
    /// The encoder–decoder of `backbone = "t5"` (default TIGER's T5: 4 + 4 blocks, d_model 128,
    /// 6 heads × d_kv 64, d_ff 1024, dropout 0.1); its token vocabulary is unused.
    pub t5: T5Config,
    /// `backbone = "smollm2"`: the checkpoint's first `layers` blocks (0 = all 30).
    pub layers: usize,
    /// `backbone = "smollm2"`: LoRA (default the reference's Qwen script: rank 8, α 16, dropout
    /// 0.02 on q, v, o; the base stays frozen).
    pub lora: LoraConfig,
    /// Collaborative tokens per item (default 1, the reference's; 0 = the ablation without them).
    pub n_cf: usize,
    /// Semantic tokens per item (default 4, the reference's T5 example; 0 = the ablation
    /// without them).
    pub n_sem: usize,
    /// A trained SASRec's item table (`item_embeddings.npy` in its run directory: same data and
    /// seed, so that row `i` is item `i`), kept frozen; required when `n_cf > 0`.
    pub cf_vectors: Option<PathBuf>,
    /// Item text vectors the semantic auto-encoder reads: a features kind as `index.features`
    /// (default `"text"`: MiniLM over each item's title and attributes).
    pub features: String,
    /// Hidden widths of the auto-encoder (default the reference's `[512, 256, 128]`).
    pub ae_layers: Vec<usize>,
    /// Width of the auto-encoder's output, cut into `n_sem` tokens; 0 (default) =
    /// `n_sem · d_model` (the backbone's width), the only width whose chunks are `d_model` wide.
    pub ae_out: usize,
    /// Weight of the reconstruction MSE (default 0.5, the reference's default).
    pub alpha: f64,
    /// The values β (the semantic part's weight in grounding) is chosen from on validation
    /// (default 0, 0.1, …, 1).
    pub betas: Vec<f64>,
    /// Causal-across-items, self-only-within-item encoder attention (default true); false = the
    /// bidirectional T5 encoder (ablation).
    pub sparse_mask: bool,
    /// History items read (default 20).
    pub max_items: usize,
    /// Training examples per user and epoch: 0 = every position (default), n = n random ones.
    pub positions_per_user: usize,
    /// Users scored together (default 256).
    pub score_batch: usize,
}

impl Default for SetRecConfig {
    fn default() -> Self {
        SetRecConfig {
            backbone: Backbone::T5,
            t5: T5Config::default(),
            layers: 0,
            lora: LoraConfig {
                rank: 8,
                alpha: 16.0,
                dropout: 0.02,
                targets: vec![LoraTarget::Q, LoraTarget::V, LoraTarget::O],
            },
            n_cf: 1,
            n_sem: 4,
            cf_vectors: None,
            features: "text".into(),
            ae_layers: vec![512, 256, 128],
            ae_out: 0,
            alpha: 0.5,
            betas: (0..=10).map(|i| i as f64 / 10.0).collect(),
            sparse_mask: true,
            max_items: 20,
            positions_per_user: 0,
            score_batch: 256,
        }
    }
}

impl SetRecConfig {
    /// Tokens per item.
    pub fn n_query(&self) -> usize {
        self.n_cf + self.n_sem
    }

    /// The auto-encoder's output width over a backbone `d_model` wide.
    pub fn ae_out(&self, d_model: usize) -> usize {
        if self.ae_out == 0 {
            self.n_sem * d_model
        } else {
            self.ae_out
        }
    }

    /// The backbone's width: `model.t5.d_model`, or SmolLM2's 576.
    pub fn d_model(&self) -> usize {
        match self.backbone {
            Backbone::T5 => self.t5.d_model,
            Backbone::Smollm2 => SMOLLM2_WIDTH,
        }
    }

    /// The T5 this config describes (a one-token vocabulary: the inputs are vectors).
    pub fn t5(&self) -> T5Config {
        T5Config {
            vocab_size: 1,
            ..self.t5.clone()
        }
    }

    /// The β values validation chooses from: all of `betas` when both kinds of token exist,
    /// otherwise the one that reads the kind present.
    pub fn beta_grid(&self) -> Vec<f64> {
        match (self.n_cf, self.n_sem) {
            (0, _) => vec![1.0],
            (_, 0) => vec![0.0],
            _ => self.betas.clone(),
        }
    }

    /// Checks every field; the error names it.
    pub fn validate(&self) -> Result<(), GenerativeError> {
        if self.n_query() == 0 {
            return Err(GenerativeError::config(
                "model.n_cf",
                "and model.n_sem are both 0: an item needs at least one token",
            ));
        }
        for (field, value, most) in [("model.n_cf", self.n_cf, 16), ("model.n_sem", self.n_sem, 64)] {
            if value > most {
                return Err(GenerativeError::config(
                    field,
                    format!("= {value} is above {most} tokens per item"),
                ));
            }
        }
        if self.n_cf > 0 && self.cf_vectors.is_none() {
            return Err(GenerativeError::config(
                "model.cf_vectors",
                "is required when model.n_cf > 0: train a SASRec on the same data and seed \
                 (`genrec run experiments/sasrec-….toml`) and give its run directory's item_embeddings.npy, \
                 or set model.n_cf = 0",
            ));
        }
        if self.n_sem > 0 {
            let d_model = self.d_model();
            let out = self.ae_out(d_model);
            if !out.is_multiple_of(self.n_sem) {
                return Err(GenerativeError::config(
                    "model.ae_out",
                    format!("= {out} is not divisible by model.n_sem = {}", self.n_sem),
                ));
            }
            if out / self.n_sem != d_model {
                return Err(GenerativeError::config(
                    "model.ae_out",
                    format!(
                        "= {out} gives semantic tokens of {} values; each must be the backbone's d_model = {d_model} wide \
                         (leave ae_out at 0 for n_sem · d_model)",
                        out / self.n_sem,
                    ),
                ));
            }
            if self.ae_layers.iter().any(|&w| w == 0 || w > 65_536) {
                return Err(GenerativeError::config(
                    "model.ae_layers",
                    format!("= {:?}: every width must be in 1..=65536", self.ae_layers),
                ));
            }
        }
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            return Err(GenerativeError::config(
                "model.alpha",
                format!("= {} must be a finite number ≥ 0", self.alpha),
            ));
        }
        if self.betas.is_empty() || self.betas.iter().any(|b| !(0.0..=1.0).contains(b)) {
            return Err(GenerativeError::config(
                "model.betas",
                format!("= {:?} must be a non-empty list of values in [0, 1]", self.betas),
            ));
        }
        for (field, value) in [
            ("model.max_items", self.max_items),
            ("model.score_batch", self.score_batch),
        ] {
            if value == 0 {
                return Err(GenerativeError::config(field, "must be positive"));
            }
        }
        if self.max_items.checked_mul(self.n_query()).is_none_or(|t| t > 8192) {
            return Err(GenerativeError::config(
                "model.max_items",
                format!(
                    "= {} items of {} tokens is above 8,192 encoder tokens",
                    self.max_items,
                    self.n_query()
                ),
            ));
        }
        match self.backbone {
            Backbone::T5 => self.t5().validate(),
            Backbone::Smollm2 => self
                .lora
                .validate("model.lora")
                .map_err(|e| GenerativeError::config("model.lora", format!(": {e}"))),
        }
    }
}

/// SmolLM2-135M's hidden width (checked against the checkpoint when it is loaded).
const SMOLLM2_WIDTH: usize = 576;

/// The sequence model SETRec runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backbone {
    /// An encoder–decoder from scratch: history tokens in the encoder, queries in the decoder.
    T5,
    /// SmolLM2 with LoRA: `[history tokens, queries]` in one causal-by-item sequence.
    Smollm2,
}

/// SmolLM2's first `config.layers` blocks from its GGUF file, base frozen, LoRA attached: the
/// `backbone = "smollm2"` sequence model.
pub fn smollm2_backbone<B: Backend>(
    config: &SetRecConfig,
    file: &GgufFile,
    seed: u64,
    device: &B::Device,
) -> Result<Llama<B>, GenerativeError> {
    let llm_error = |e: genrec_llm::LlmError| GenerativeError::config("model.backbone", format!("(SmolLM2): {e}"));
    let (llm, llama) = Llama::<B>::from_gguf(file, RopeStyle::SplitHalf, device).map_err(llm_error)?;
    if llm.d_model() != SMOLLM2_WIDTH {
        return Err(GenerativeError::config(
            "model.backbone",
            format!(
                "(SmolLM2): the checkpoint is {} wide, not {SMOLLM2_WIDTH}",
                llm.d_model()
            ),
        ));
    }
    let llm = if config.layers == 0 || config.layers >= llama.n_layers {
        llm
    } else {
        llm.keep_first(config.layers).map_err(llm_error)?
    };
    llm.freeze_base().with_lora(&config.lora, seed).map_err(llm_error)
}

/// The frozen item inputs of SETRec's tokenizers, one row per item.
pub struct SetRecItems {
    /// SASRec item vectors (when `n_cf > 0`).
    pub cf: Option<Matrix>,
    /// Item text vectors (when `n_sem > 0`).
    pub text: Option<Matrix>,
}

impl SetRecItems {
    /// Checks that each matrix the config needs is there, has one row per item and holds only
    /// finite values; the error names the field (and file).
    pub fn check(&self, config: &SetRecConfig, n_items: usize) -> Result<(), GenerativeError> {
        let named = |field: &str| match field {
            "model.cf_vectors" => config
                .cf_vectors
                .as_ref()
                .map_or(field.to_string(), |p| format!("{field} ({})", p.display())),
            _ => format!("{field} (\"{}\")", config.features),
        };
        for (field, needed, matrix) in [
            ("model.cf_vectors", config.n_cf > 0, &self.cf),
            ("model.features", config.n_sem > 0, &self.text),
        ] {
            if !needed {
                continue;
            }
            let Some(m) = matrix else {
                return Err(GenerativeError::config(
                    named(field),
                    "is needed but no vectors were given",
                ));
            };
            if m.rows != n_items || m.cols == 0 {
                return Err(GenerativeError::config(
                    named(field),
                    format!(
                        "has {} rows × {} columns; the dataset has {n_items} items (row i must be item i)",
                        m.rows, m.cols
                    ),
                ));
            }
            if let Some(at) = m.data.iter().position(|v| !v.is_finite()) {
                return Err(GenerativeError::config(
                    named(field),
                    format!("row {} column {} is {}", at / m.cols, at % m.cols, m.data[at]),
                ));
            }
        }
        Ok(())
    }
}

/// Reads `model.cf_vectors` (when `n_cf > 0`) with its row count checked against `n_items`.
pub fn load_cf_vectors(config: &SetRecConfig, n_items: usize) -> Result<Option<Matrix>, GenerativeError> {
    let Some(path) = config.cf_vectors.as_ref().filter(|_| config.n_cf > 0) else {
        return Ok(None);
    };
    if !path.exists() {
        return Err(GenerativeError::config(
            format!("model.cf_vectors ({})", path.display()),
            "not found: train a SASRec on the same data and seed (`genrec run experiments/sasrec-….toml`); \
             its run directory holds item_embeddings.npy",
        ));
    }
    Matrix::load_checked(path, n_items, None)
        .map(Some)
        .map_err(|e| GenerativeError::config("model.cf_vectors", format!(": {e}")))
}

/// The model: the T5, the queries and both tokenizers (their frozen inputs included, so a
/// checkpoint is self-contained).
#[derive(Module, Debug)]
pub struct SetRec<B: Backend> {
    /// The encoder–decoder (`backbone = "t5"`).
    pub t5: Option<T5<B>>,
    /// The decoder-only LLM (`backbone = "smollm2"`).
    pub llm: Option<Llama<B>>,
    /// `[n_query, d_model]`: one learnable decoder input per token slot, collaborative first.
    queries: Param<Tensor<B, 2>>,
    /// `[n_items, cf_dim]`, frozen SASRec vectors; `None` without collaborative tokens.
    cf_table: Option<Param<Tensor<B, 2>>>,
    /// `cf_dim → n_cf · d_model`, with bias.
    cf_proj: Option<Linear<B>>,
    /// `[n_items, text_dim]`, frozen text vectors; `None` without semantic tokens.
    text: Option<Param<Tensor<B, 2>>>,
    /// `text_dim → ae_layers… → n_sem · d_model`.
    ae_encoder: Vec<Linear<B>>,
    /// The mirror image, back to `text_dim`.
    ae_decoder: Vec<Linear<B>>,
    n_cf: usize,
    n_sem: usize,
}

/// Linear layers through `widths`, Xavier-normal (the reference's auto-encoder init).
fn mlp<B: Backend>(widths: &[usize], device: &B::Device) -> Vec<Linear<B>> {
    widths
        .windows(2)
        .map(|w| {
            LinearConfig::new(w[0], w[1])
                .with_initializer(Initializer::XavierNormal { gain: 1.0 })
                .init(device)
        })
        .collect()
}

/// `x` through `layers`, ReLU between them (none after the last).
fn run_mlp<B: Backend>(layers: &[Linear<B>], mut x: Tensor<B, 2>) -> Tensor<B, 2> {
    for (i, layer) in layers.iter().enumerate() {
        x = layer.forward(x);
        if i + 1 < layers.len() {
            x = relu(x);
        }
    }
    x
}

fn frozen<B: Backend>(m: &Matrix, device: &B::Device) -> Param<Tensor<B, 2>> {
    let t = Tensor::<B, 2>::from_data(TensorData::new(m.data.clone(), [m.rows, m.cols]), device);
    Param::from_tensor(t).set_require_grad(false)
}

impl SetRecConfig {
    /// A fresh model over `items` (checked), with every random draw from `seed`; `llm` is the
    /// backbone of `backbone = "smollm2"` ([`smollm2_backbone`]), `None` for the T5.
    pub fn init_seeded<B: Backend>(
        &self,
        items: &SetRecItems,
        n_items: usize,
        llm: Option<Llama<B>>,
        seed: u64,
        device: &B::Device,
    ) -> Result<SetRec<B>, GenerativeError> {
        self.validate()?;
        items.check(self, n_items)?;
        let d = self.d_model();
        let (t5, llm) = match (self.backbone, llm) {
            (Backbone::T5, None) => (Some(self.t5().init_seeded(seed, device)), None),
            (Backbone::Smollm2, Some(llm)) => (None, Some(llm)),
            (Backbone::T5, Some(_)) => {
                return Err(GenerativeError::config("model.backbone", "= \"t5\" was given an LLM"))
            }
            (Backbone::Smollm2, None) => {
                return Err(GenerativeError::config(
                    "model.backbone",
                    "= \"smollm2\" needs SmolLM2 (`genrec assets fetch smollm2`)",
                ))
            }
        };
        let rest = genrec_kernels::nn::init_seeded(seed ^ 0x5E7, device, || {
            let queries = Tensor::<B, 2>::random(
                [self.n_query(), d],
                burn::tensor::Distribution::Normal(0.0, 0.02),
                device,
            );
            let cf = items.cf.as_ref().filter(|_| self.n_cf > 0).map(|m| {
                let proj = LinearConfig::new(m.cols, self.n_cf * d).init(device);
                (frozen(m, device), proj)
            });
            let sem = items.text.as_ref().filter(|_| self.n_sem > 0).map(|m| {
                let widths: Vec<usize> = std::iter::once(m.cols)
                    .chain(self.ae_layers.iter().copied())
                    .chain(std::iter::once(self.ae_out(d)))
                    .collect();
                let back: Vec<usize> = widths.iter().rev().copied().collect();
                (frozen(m, device), mlp(&widths, device), mlp(&back, device))
            });
            (Param::from_tensor(queries), cf, sem)
        });
        let (queries, cf, sem) = rest;
        let (cf_table, cf_proj) = cf.map_or((None, None), |(t, p)| (Some(t), Some(p)));
        let (text, ae_encoder, ae_decoder) = sem.map_or((None, Vec::new(), Vec::new()), |(t, e, d)| (Some(t), e, d));
        Ok(SetRec {
            t5,
            llm,
            queries,
            cf_table,
            cf_proj,
            text,
            ae_encoder,
            ae_decoder,
            n_cf: self.n_cf,
            n_sem: self.n_sem,
        })
    }
}

/// Encoder inputs of a batch of histories: item ids `[batch · slots]` (0 at padding), token
/// padding flags `[batch · slots · n_query]`, the slot count, and the item ids in order
/// (non-padding, repeats kept) for the reconstruction loss.
struct HistoryLayout {
    ids: Vec<i64>,
    pad: Vec<bool>,
    slots: usize,
    items: Vec<i64>,
}

impl HistoryLayout {
    fn new(histories: &[&[ItemId]], max_items: usize, n_query: usize) -> Self {
        let recent: Vec<&[ItemId]> = histories
            .iter()
            .map(|h| &h[h.len().saturating_sub(max_items)..])
            .collect();
        // An empty history still gets one (padded) slot; its padded keys softmax to uniform.
        let slots = recent.iter().map(|h| h.len()).max().unwrap_or(0).max(1);
        let mut ids = Vec::with_capacity(recent.len() * slots);
        let mut pad = Vec::with_capacity(recent.len() * slots * n_query);
        let mut items = Vec::new();
        for h in &recent {
            for k in 0..slots {
                let item = h.get(k).copied();
                ids.push(item.unwrap_or(0) as i64);
                items.extend(item.map(|i| i as i64));
                pad.extend(std::iter::repeat_n(item.is_none(), n_query));
            }
        }
        HistoryLayout { ids, pad, slots, items }
    }
}

/// Whether position `q` may attend to position `k` in the decoder-only sequence of `src` history
/// tokens (`n_query` per item, `pad` flags) followed by the queries: history tokens see earlier
/// items (`sparse`) or earlier tokens, queries see the real history; every position sees itself
/// (a padded token too, so that its row stays defined) and nothing else.
fn llm_sees(q: usize, k: usize, src: usize, n_query: usize, pad: &[bool], sparse: bool) -> bool {
    if q == k {
        return true;
    }
    match (q < src, k < src) {
        (true, true) => !pad[k] && if sparse { item_sees(q, k, n_query) } else { k < q },
        (false, true) => !pad[k],
        _ => false,
    }
}

/// SETRec's sparse rule between history tokens `q` (query) and `k` (key), `n_query` per item:
/// every token of an earlier item, and itself.
fn item_sees(q: usize, k: usize, n_query: usize) -> bool {
    q == k || k / n_query < q / n_query
}

/// The sparse mask over `slots` items of `n_query` tokens: token `a` of item `k` sees every
/// token of items before `k` and token `a` of item `k` itself.
///
/// # Shapes
/// - output: `[1, 1, slots · n_query, slots · n_query]`, 0 = attend, [`MASKED`] = not
pub fn sparse_mask<B: Backend>(slots: usize, n_query: usize, device: &B::Device) -> Tensor<B, 4> {
    let src = slots * n_query;
    let values: Vec<f32> = (0..src)
        .flat_map(|q| (0..src).map(move |k| if item_sees(q, k, n_query) { 0.0 } else { MASKED }))
        .collect();
    Tensor::from_data(TensorData::new(values, [1, 1, src, src]), device)
}

impl<B: Backend> SetRec<B> {
    pub fn n_items(&self) -> usize {
        match (&self.cf_table, &self.text) {
            (Some(t), _) | (None, Some(t)) => t.dims()[0],
            (None, None) => 0,
        }
    }

    pub fn n_query(&self) -> usize {
        self.n_cf + self.n_sem
    }

    /// The backbone's width.
    pub fn d_model(&self) -> usize {
        self.queries.dims()[1]
    }

    /// Every item's token set, and the auto-encoder's latent rows (for the reconstruction loss).
    ///
    /// # Shapes
    /// - output: `[n_items, n_query, d_model]` (collaborative tokens first), latent
    ///   `[n_items, n_sem · d_model]`
    pub fn item_tokens(&self) -> (Tensor<B, 3>, Option<Tensor<B, 2>>) {
        let d = self.d_model();
        let n = self.n_items();
        let mut parts = Vec::new();
        if let (Some(table), Some(proj)) = (&self.cf_table, &self.cf_proj) {
            parts.push(proj.forward(table.val()).reshape([n, self.n_cf, d]));
        }
        let latent = self.text.as_ref().map(|text| run_mlp(&self.ae_encoder, text.val()));
        if let Some(latent) = &latent {
            parts.push(latent.clone().reshape([n, self.n_sem, d]));
        }
        (Tensor::cat(parts, 1), latent)
    }

    /// The decoder's outputs, one per token slot, after each history.
    ///
    /// # Shapes
    /// - `tokens`: `[n_items, n_query, d_model]` ([`Self::item_tokens`])
    /// - output: `[histories.len(), n_query, d_model]`
    pub fn generate(
        &self,
        tokens: Tensor<B, 3>,
        histories: &[&[ItemId]],
        config: &SetRecConfig,
        rng: &mut Option<&mut ChaCha8Rng>,
    ) -> Tensor<B, 3> {
        let layout = HistoryLayout::new(histories, config.max_items, self.n_query());
        self.generate_from(tokens, &layout, config.sparse_mask, rng)
    }

    /// Dispatches to the backbone.
    fn generate_from(
        &self,
        tokens: Tensor<B, 3>,
        layout: &HistoryLayout,
        sparse: bool,
        rng: &mut Option<&mut ChaCha8Rng>,
    ) -> Tensor<B, 3> {
        match (&self.t5, &self.llm) {
            (Some(t5), _) => self.generate_t5(t5, tokens, layout, sparse, rng),
            (None, Some(llm)) => self.generate_llm(llm, tokens, layout, sparse, rng),
            (None, None) => unreachable!("a SetRec is built with one backbone"),
        }
    }

    /// Decoder-only: `[history tokens, queries]` in one sequence. History tokens as in the T5's
    /// encoder (item `k`'s tokens at rotary position `k`, sparse or causal attention); the
    /// queries at the position after the history, each seeing the real history tokens and
    /// itself.
    fn generate_llm(
        &self,
        llm: &Llama<B>,
        tokens: Tensor<B, 3>,
        layout: &HistoryLayout,
        sparse: bool,
        rng: &mut Option<&mut ChaCha8Rng>,
    ) -> Tensor<B, 3> {
        let device = tokens.device();
        let [_, nq, d] = tokens.dims();
        let (history, queries) = self.inputs(tokens, layout);
        let [rows, src, _] = history.dims();
        let t = src + nq;
        let x = Tensor::cat(vec![history, queries], 1);
        let mut positions = Vec::with_capacity(rows);
        let mut blocked = Vec::with_capacity(rows * t * t);
        for r in 0..rows {
            let pad = &layout.pad[r * src..(r + 1) * src];
            let len = pad.iter().step_by(nq).filter(|&&p| !p).count();
            positions.push(
                (0..t)
                    .map(|i| if i < src { i / nq } else { len })
                    .collect::<Vec<usize>>(),
            );
            blocked.extend((0..t).flat_map(|q| (0..t).map(move |k| !llm_sees(q, k, src, nq, pad, sparse))));
        }
        let blocked = Tensor::<B, 4, Bool>::from_data(TensorData::new(blocked, [rows, 1, t, t]), &device);
        let hidden = llm.hidden_from_embeddings_masked(x, &positions, blocked, rng.as_deref_mut());
        hidden.slice([0..rows, src..t, 0..d])
    }

    /// Encoder–decoder: history tokens in the encoder, the queries in the decoder.
    fn generate_t5(
        &self,
        t5: &T5<B>,
        tokens: Tensor<B, 3>,
        layout: &HistoryLayout,
        sparse: bool,
        rng: &mut Option<&mut ChaCha8Rng>,
    ) -> Tensor<B, 3> {
        let device = tokens.device();
        let nq = tokens.dims()[1];
        let (x, queries) = self.inputs(tokens, layout);
        let [rows, src, _] = x.dims();
        let pad = Tensor::<B, 2, Bool>::from_data(TensorData::new(layout.pad.clone(), [rows, src]), &device);
        let positions: Vec<usize> = (0..src).map(|t| t / nq).collect();
        let mask = sparse.then(|| sparse_mask(layout.slots, nq, &device));
        let memory = t5.encode_embeddings_with(x, &positions, mask, pad.clone(), rng);
        t5.decode_queries_with(memory, pad, queries, rng)
    }

    /// The history's token vectors in layout order and the queries, one copy per row.
    ///
    /// # Shapes
    /// - `tokens`: `[n_items, n_query, d_model]`
    /// - output: `[rows, slots · n_query, d_model]` and `[rows, n_query, d_model]`
    fn inputs(&self, tokens: Tensor<B, 3>, layout: &HistoryLayout) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let [_, nq, d] = tokens.dims();
        let rows = layout.ids.len() / layout.slots;
        let ids = Tensor::<B, 1, Int>::from_data(
            TensorData::new(layout.ids.clone(), [layout.ids.len()]),
            &tokens.device(),
        );
        let history = tokens.select(0, ids).reshape([rows, layout.slots * nq, d]);
        let queries = self.queries.val().unsqueeze::<3>().repeat_dim(0, rows);
        (history, queries)
    }

    /// Each history's collaborative and semantic score parts over all items (zeros for a kind
    /// the model lacks).
    ///
    /// # Shapes
    /// - `h`: `[batch, n_query, d_model]`; `tokens`: `[n_items, n_query, d_model]`
    /// - output: two `[batch, n_items]`
    pub fn score_parts(&self, h: Tensor<B, 3>, tokens: Tensor<B, 3>) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let [batch, nq, d] = h.dims();
        let n = tokens.dims()[0];
        let device = h.device();
        let slot_scores = |range: std::ops::Range<usize>| {
            if range.is_empty() {
                return Tensor::<B, 2>::zeros([batch, n], &device);
            }
            // Σ_j h_j · t_j(i) over the slots = one matmul over the slots' concatenation.
            let width = range.len() * d;
            let hs = h.clone().slice([0..batch, range.clone(), 0..d]).reshape([batch, width]);
            let ts = tokens.clone().slice([0..n, range, 0..d]).reshape([n, width]);
            hs.matmul(ts.transpose())
        };
        (slot_scores(0..self.n_cf), slot_scores(self.n_cf..nq))
    }
}

impl<B: AutodiffBackend> SetRec<B> {
    /// SETRec's training loss of one batch: per-slot full-softmax cross-entropy of the targets,
    /// averaged over slots, plus `alpha` × the reconstruction MSE of the batch's history items.
    pub fn loss(
        &self,
        histories: &[&[ItemId]],
        targets: &[ItemId],
        config: &SetRecConfig,
        rng: &mut Option<&mut ChaCha8Rng>,
    ) -> Tensor<B, 1> {
        let device = self.queries.val().device();
        let (tokens, latent) = self.item_tokens();
        let layout = HistoryLayout::new(histories, config.max_items, self.n_query());
        let h = self.generate_from(tokens.clone(), &layout, config.sparse_mask, rng);
        let [batch, nq, d] = h.dims();
        let n = tokens.dims()[0];
        let targets: Vec<i64> = targets.iter().map(|&t| t as i64).collect();
        let targets = Tensor::<B, 1, Int>::from_data(TensorData::new(targets, [batch]), &device);
        let mut loss = Tensor::<B, 1>::zeros([1], &device);
        for j in 0..nq {
            let hj = h.clone().slice([0..batch, j..j + 1, 0..d]).reshape([batch, d]);
            let tj = tokens.clone().slice([0..n, j..j + 1, 0..d]).reshape([n, d]);
            loss = loss + linear_cross_entropy(hj, tj, targets.clone());
        }
        loss = loss / nq as f64;
        if let (Some(latent), Some(text)) = (latent, &self.text) {
            if config.alpha > 0.0 && !layout.items.is_empty() {
                let m = layout.items.len();
                let rows = Tensor::<B, 1, Int>::from_data(TensorData::new(layout.items, [m]), &device);
                let rebuilt = run_mlp(&self.ae_decoder, latent.select(0, rows.clone()));
                let mse = (rebuilt - text.val().select(0, rows)).powf_scalar(2.0).mean();
                loss = loss + mse * config.alpha;
            }
        }
        loss
    }
}

/// SETRec behind genrec-eval's [`Recommender`]: item token sets computed once, every item
/// scored by grounding with the chosen β.
pub struct SetRecRecommender<B: Backend> {
    pub model: SetRec<B>,
    pub config: SetRecConfig,
    /// The semantic part's weight in grounding.
    pub beta: f64,
    /// Validation metric for each β tried (after training: on the validation sample).
    pub sweep: Vec<(f64, f64)>,
    /// `[n_items, n_query, d_model]`
    tokens: Tensor<B, 3>,
}

impl<B: Backend> SetRecRecommender<B> {
    pub fn new(model: SetRec<B>, config: SetRecConfig, beta: f64) -> Self {
        let (tokens, _) = model.item_tokens();
        SetRecRecommender {
            model,
            config,
            beta,
            sweep: Vec::new(),
            tokens,
        }
    }

    /// Collaborative and semantic score rows of each history, row-major
    /// `[histories.len() · n_items]` each (one decoder pass per chunk of `score_batch`).
    pub fn parts(&self, histories: &[&[ItemId]]) -> (Vec<f32>, Vec<f32>) {
        let (mut cf, mut sem) = (Vec::new(), Vec::new());
        for chunk in histories.chunks(self.config.score_batch) {
            let h = self.model.generate(self.tokens.clone(), chunk, &self.config, &mut None);
            let (c, s) = self.model.score_parts(h, self.tokens.clone());
            cf.extend(c.into_data().convert::<f32>().into_vec::<f32>().expect("f32 scores"));
            sem.extend(s.into_data().convert::<f32>().into_vec::<f32>().expect("f32 scores"));
        }
        (cf, sem)
    }

    /// The same model (item tokens shared, not recomputed) grounding with another β.
    fn with_beta(&self, beta: f64) -> Self {
        SetRecRecommender {
            model: self.model.clone(),
            config: self.config.clone(),
            beta,
            sweep: Vec::new(),
            tokens: self.tokens.clone(),
        }
    }

    /// Every item's score after each history at the model's β, row-major.
    fn mixed(&self, histories: &[&[ItemId]]) -> Vec<f32> {
        let (cf, sem) = self.parts(histories);
        Self::mix(&cf, &sem, self.beta)
    }

    /// `(1 − β) · cf + β · sem`, elementwise.
    fn mix(cf: &[f32], sem: &[f32], beta: f64) -> Vec<f32> {
        let (a, b) = ((1.0 - beta) as f32, beta as f32);
        cf.iter().zip(sem).map(|(&c, &s)| a * c + b * s).collect()
    }

    /// `metric` on `cases` for every β of the config's grid, and the best β (the first of equal
    /// values). Full ranking mixes one decoder pass's parts per β; sampled ranking evaluates
    /// a copy at each β in turn.
    pub fn sweep_beta(
        &self,
        cases: &[EvalCase],
        eval: &EvalConfig,
        metric: &str,
        seed: u64,
    ) -> Result<(f64, Vec<(f64, f64)>), ValidationError> {
        let n = self.model.n_items();
        let grid = self.config.beta_grid();
        let values: Vec<f64> = if eval.ranking == RankingMode::Full {
            // One decoder pass per chunk of users, ranked under every β before the next chunk:
            // memory stays at one chunk's score rows whatever the number of users.
            let set = eval.validate(n)?;
            let mut outcomes: Vec<Vec<UserOutcome>> = vec![Vec::with_capacity(cases.len()); grid.len()];
            for chunk in cases.chunks(self.config.score_batch) {
                let histories: Vec<&[ItemId]> = chunk.iter().map(|c| c.history.as_slice()).collect();
                let (cf, sem) = self.parts(&histories);
                for (beta, out) in grid.iter().zip(&mut outcomes) {
                    let scores = Self::mix(&cf, &sem, *beta);
                    out.extend(chunk.iter().zip(scores.chunks(n.max(1))).map(|(c, row)| {
                        let excluded: &[ItemId] = if eval.exclude_history { &c.history } else { &[] };
                        UserOutcome {
                            user: c.user,
                            target: c.target,
                            rank: pessimistic_rank(row, c.target, excluded),
                            history_len: c.history.len(),
                            invalid: Vec::new(),
                        }
                    }));
                }
            }
            outcomes
                .into_iter()
                .map(|out| summarize(&set, eval, out, None).metrics[metric])
                .collect()
        } else {
            grid.iter()
                .map(|&beta| Ok(evaluate(&self.with_beta(beta), cases, None, eval, seed)?.metrics[metric]))
                .collect::<Result<_, ValidationError>>()?
        };
        let values: Vec<(f64, f64)> = grid.into_iter().zip(values).collect();
        let best = values
            .iter()
            .fold(None, |best: Option<(f64, f64)>, &(b, v)| match best {
                Some((_, bv)) if bv >= v => best,
                _ => Some((b, v)),
            })
            .map_or(0.0, |(b, _)| b);
        Ok((best, values))
    }
}

impl<B: Backend> Recommender for SetRecRecommender<B> {
    fn name(&self) -> String {
        "setrec".into()
    }

    fn n_items(&self) -> usize {
        self.model.n_items()
    }

    fn recommend(&self, histories: &[&[ItemId]], k: usize) -> Vec<Vec<ItemId>> {
        top_k_rows(&self.mixed(histories), self.n_items(), k)
    }

    fn scores(&self, histories: &[&[ItemId]]) -> Option<Vec<f32>> {
        Some(self.mixed(histories))
    }
}

/// Trains SETRec with the shared loop (early stopping on validation `train.metric` at the best β
/// of each validation), then chooses β on the validation sample for the best model.
#[allow(clippy::too_many_arguments)]
pub fn train_setrec<B: AutodiffBackend>(
    config: &SetRecConfig,
    items: &SetRecItems,
    file: Option<&GgufFile>,
    train: &TrainConfig,
    eval: &EvalConfig,
    split: &LeaveOneOut,
    device: &B::Device,
    run: Run,
) -> Result<Trained<SetRecRecommender<B::InnerBackend>>, GenerativeError> {
    config.validate()?;
    train.validate(&eval.ks)?;
    let seed = run.seed;
    let llm = match (config.backbone, file) {
        (Backbone::Smollm2, Some(file)) => Some(smollm2_backbone::<B>(config, file, seed, device)?),
        _ => None,
    };
    let model: SetRec<B> = config.init_seeded(items, split.n_items, llm, seed, device)?;
    let examples = training_examples(split, config.positions_per_user);
    let loss = |model: &SetRec<B>, batch: &[usize], rng: &mut ChaCha8Rng| {
        let pairs: Vec<(&[ItemId], ItemId)> = batch.iter().map(|&i| example(split, examples[i], rng)).collect();
        let histories: Vec<&[ItemId]> = pairs.iter().map(|p| p.0).collect();
        let targets: Vec<ItemId> = pairs.iter().map(|p| p.1).collect();
        model.loss(&histories, &targets, config, &mut Some(rng))
    };
    let valid = split.valid_sample(train.valid_users, seed);
    let validate = |model: &SetRec<B::InnerBackend>| -> Result<f64, ValidationError> {
        let rec = SetRecRecommender::new(model.clone(), config.clone(), 0.0);
        let (best, values) = rec.sweep_beta(&valid, eval, &train.metric, seed)?;
        Ok(values.iter().find(|(b, _)| *b == best).map_or(0.0, |p| p.1))
    };
    let task = Task {
        examples: examples.len(),
        loss: &loss,
        validate: &validate,
        model_config: serde_json::to_value(config).expect("a SETRec config is plain data"),
    };
    let mut trained =
        train_model(model, task, train, device, run)?.map(|m| SetRecRecommender::new(m, config.clone(), 0.0));
    let (beta, sweep) = trained
        .model
        .sweep_beta(&valid, eval, &train.metric, seed)
        .map_err(genrec_train::TrainError::from)?;
    trained.model.beta = beta;
    trained.model.sweep = sweep;
    Ok(trained)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;
    use genrec_data::synthetic::SyntheticConfig;
    use genrec_data::SplitConfig;

    type B = burn::backend::Flex;
    type A = Autodiff<B>;

    const N_ITEMS: usize = 9;

    fn config() -> SetRecConfig {
        SetRecConfig {
            t5: T5Config {
                d_model: 8,
                d_kv: 4,
                n_heads: 2,
                d_ff: 16,
                encoder_layers: 2,
                decoder_layers: 2,
                dropout: 0.0,
                ..T5Config::default()
            },
            n_cf: 1,
            n_sem: 2,
            cf_vectors: Some("unused.npy".into()),
            ae_layers: vec![6, 5],
            max_items: 4,
            ..SetRecConfig::default()
        }
    }

    /// A deterministic `rows × cols` matrix of distinct values.
    fn matrix(rows: usize, cols: usize, salt: f32) -> Matrix {
        let data = (0..rows * cols).map(|i| (i as f32 * 0.37 + salt).sin() * 0.8).collect();
        Matrix::new(rows, cols, data)
    }

    fn items() -> SetRecItems {
        SetRecItems {
            cf: Some(matrix(N_ITEMS, 3, 0.1)),
            text: Some(matrix(N_ITEMS, 7, 0.7)),
        }
    }

    fn values<const D: usize, BK: Backend>(t: Tensor<BK, D>) -> Vec<f32> {
        t.into_data().convert::<f32>().into_vec::<f32>().unwrap()
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() <= 1e-4 * (1.0 + a.abs().max(b.abs()))
    }

    #[test]
    fn sparse_mask_by_hand() {
        // Two items of two tokens: (item 0: t0 t1) (item 1: t2 t3).
        let m = values(sparse_mask::<B>(2, 2, &Default::default()));
        let x = MASKED;
        #[rustfmt::skip]
        let expected = [
            0.0, x,   x,   x,   // t0: itself
            x,   0.0, x,   x,   // t1: itself
            0.0, 0.0, 0.0, x,   // t2: item 0 and itself
            0.0, 0.0, x,   0.0, // t3: item 0 and itself
        ];
        assert_eq!(m, expected);
    }

    #[test]
    fn validation_names_the_field() {
        let err = |c: SetRecConfig| c.validate().unwrap_err().to_string();
        assert!(err(SetRecConfig {
            n_cf: 0,
            n_sem: 0,
            ..config()
        })
        .contains("model.n_cf"));
        let e = err(SetRecConfig {
            cf_vectors: None,
            ..config()
        });
        assert!(
            e.contains("model.cf_vectors") && e.contains("item_embeddings.npy"),
            "{e}"
        );
        let e = err(SetRecConfig { ae_out: 7, ..config() });
        assert!(
            e.contains("model.ae_out") && e.contains("not divisible by model.n_sem = 2"),
            "{e}"
        );
        let e = err(SetRecConfig { ae_out: 12, ..config() });
        assert!(e.contains("model.ae_out") && e.contains("d_model = 8"), "{e}");
        assert!(err(SetRecConfig {
            alpha: f64::NAN,
            ..config()
        })
        .contains("model.alpha"));
        assert!(err(SetRecConfig {
            betas: vec![0.5, 1.5],
            ..config()
        })
        .contains("model.betas"));
        assert!(err(SetRecConfig {
            max_items: 0,
            ..config()
        })
        .contains("model.max_items"));
        // Without CF tokens no SASRec table is needed, and β reads the semantic part only.
        let no_cf = SetRecConfig {
            n_cf: 0,
            cf_vectors: None,
            ..config()
        };
        no_cf.validate().unwrap();
        assert_eq!(no_cf.beta_grid(), [1.0]);
        assert_eq!(SetRecConfig { n_sem: 0, ..config() }.beta_grid(), [0.0]);
    }

    #[test]
    fn item_matrices_are_checked() {
        let err = |items: SetRecItems| items.check(&config(), N_ITEMS).unwrap_err().to_string();
        let e = err(SetRecItems {
            cf: Some(matrix(N_ITEMS + 1, 3, 0.0)),
            ..items()
        });
        assert!(
            e.contains("model.cf_vectors (unused.npy)") && e.contains("10 rows"),
            "{e}"
        );
        let mut text = matrix(N_ITEMS, 7, 0.0);
        text.data[2 * 7 + 4] = f32::NAN;
        let e = err(SetRecItems {
            text: Some(text),
            ..items()
        });
        assert!(e.contains("model.features") && e.contains("row 2 column 4"), "{e}");
        let e = err(SetRecItems { text: None, ..items() });
        assert!(e.contains("model.features"), "{e}");
        let missing = SetRecConfig {
            cf_vectors: Some("/no/such/item_embeddings.npy".into()),
            ..config()
        };
        let e = load_cf_vectors(&missing, N_ITEMS).unwrap_err().to_string();
        assert!(
            e.contains("/no/such/item_embeddings.npy") && e.contains("train a SASRec"),
            "{e}"
        );
    }

    /// Host reference of one slot's logits: `h_j · t_j(i)` for every item.
    fn slot_logits(h: &[f32], tokens: &[f32], nq: usize, d: usize, j: usize) -> Vec<f32> {
        (0..N_ITEMS)
            .map(|i| (0..d).map(|c| h[j * d + c] * tokens[(i * nq + j) * d + c]).sum())
            .collect()
    }

    #[test]
    fn scores_are_the_grounding_formula() {
        let device = Default::default();
        let cfg = config();
        let model: SetRec<B> = cfg.init_seeded(&items(), N_ITEMS, None, 5, &device).unwrap();
        let rec = SetRecRecommender::new(model, cfg.clone(), 0.3);
        let histories: [&[ItemId]; 2] = [&[1, 4, 2], &[7]];
        let scores = rec.scores(&histories).unwrap();
        let (tokens, _) = rec.model.item_tokens();
        let tokens = values(tokens);
        let h = values(rec.model.generate(rec.tokens.clone(), &histories, &cfg, &mut None));
        let (nq, d) = (3, 8);
        for u in 0..2 {
            let hu = &h[u * nq * d..(u + 1) * nq * d];
            let cf = slot_logits(hu, &tokens, nq, d, 0);
            let sem: Vec<f32> = (0..N_ITEMS)
                .map(|i| slot_logits(hu, &tokens, nq, d, 1)[i] + slot_logits(hu, &tokens, nq, d, 2)[i])
                .collect();
            for i in 0..N_ITEMS {
                let want = 0.7 * cf[i] + 0.3 * sem[i];
                let got = scores[u * N_ITEMS + i];
                assert!(close(got, want), "user {u} item {i}: {got} vs {want}");
            }
        }
        // Scoring in chunks of one gives the same rows.
        let chunked = SetRecRecommender::new(rec.model.clone(), SetRecConfig { score_batch: 1, ..cfg }, 0.3);
        let again = chunked.scores(&histories).unwrap();
        assert!(scores.iter().zip(&again).all(|(a, b)| close(*a, *b)));
    }

    #[test]
    fn loss_is_slot_cross_entropy_plus_weighted_reconstruction() {
        let device = Default::default();
        let cfg = SetRecConfig {
            alpha: 0.25,
            ..config()
        };
        let model: SetRec<A> = cfg.init_seeded(&items(), N_ITEMS, None, 2, &device).unwrap();
        let histories: [&[ItemId]; 2] = [&[1, 4, 2, 4], &[7]];
        let targets = [3, 0];
        let loss = model.loss(&histories, &targets, &cfg, &mut None).into_scalar();
        let (tokens, latent) = model.item_tokens();
        let h = values(model.generate(tokens.clone(), &histories, &cfg, &mut None));
        let tokens = values(tokens);
        let (nq, d) = (3, 8);
        let mut ce = 0.0f64;
        for (u, &t) in targets.iter().enumerate() {
            for j in 0..nq {
                let logits = slot_logits(&h[u * nq * d..(u + 1) * nq * d], &tokens, nq, d, j);
                let max = logits.iter().cloned().fold(f32::MIN, f32::max) as f64;
                let lse = max + logits.iter().map(|&l| (l as f64 - max).exp()).sum::<f64>().ln();
                ce += lse - logits[t as usize] as f64;
            }
        }
        ce /= (targets.len() * nq) as f64;
        // Reconstruction over the history items with repeats: 1, 4, 2, 4, 7.
        let rebuilt = values(run_mlp(&model.ae_decoder, latent.unwrap()));
        let text = items().text.unwrap();
        let rows = [1usize, 4, 2, 4, 7];
        let mse: f64 = rows
            .iter()
            .flat_map(|&r| (0..7).map(move |c| (r, c)))
            .map(|(r, c)| ((rebuilt[r * 7 + c] - text.data[r * 7 + c]) as f64).powi(2))
            .sum::<f64>()
            / (rows.len() * 7) as f64;
        let want = ce + 0.25 * mse;
        assert!((loss as f64 - want).abs() < 1e-4 * want, "{loss} vs {want}");
    }

    #[test]
    fn token_order_within_an_item_does_not_matter() {
        // Reversing every item's tokens (positions shared, self-only attention within an item)
        // permutes the encoder outputs, which the queries cross-attend as a set: every query's
        // output stays the same. The bidirectional ablation is order-free too (shared positions).
        let device = Default::default();
        let cfg = config();
        let model: SetRec<B> = cfg.init_seeded(&items(), N_ITEMS, None, 9, &device).unwrap();
        let (tokens, _) = model.item_tokens();
        let histories: [&[ItemId]; 2] = [&[3, 5], &[1, 2, 7]];
        for sparse_mask in [true, false] {
            let cfg = SetRecConfig {
                sparse_mask,
                ..cfg.clone()
            };
            let h = values(model.generate(tokens.clone(), &histories, &cfg, &mut None));
            let flipped = values(model.generate(tokens.clone().flip([1]), &histories, &cfg, &mut None));
            assert!(
                h.iter().zip(&flipped).all(|(a, b)| close(*a, *b)),
                "sparse_mask = {sparse_mask}"
            );
        }
        // The mask reaches the model: with it, earlier items cannot read later ones.
        let with = values(model.generate(tokens.clone(), &histories, &cfg, &mut None));
        let without = SetRecConfig {
            sparse_mask: false,
            ..cfg.clone()
        };
        let without = values(model.generate(tokens, &histories, &without, &mut None));
        assert!(with.iter().zip(&without).any(|(a, b)| !close(*a, *b)));
    }

    /// The T5 encoder's inputs for one history (3 tokens per item): vectors and padding.
    fn encoder_inputs(
        model: &SetRec<B>,
        tokens: Tensor<B, 3>,
        history: &[ItemId],
    ) -> (Tensor<B, 3>, Tensor<B, 2, Bool>) {
        let layout = HistoryLayout::new(&[history], 4, 3);
        let (x, _) = model.inputs(tokens, &layout);
        let src = x.dims()[1];
        let pad = Tensor::from_data(TensorData::new(layout.pad, [1, src]), &x.device());
        (x, pad)
    }

    #[test]
    fn a_later_item_does_not_change_earlier_tokens_under_the_sparse_mask() {
        let device = Default::default();
        let cfg = config();
        let model: SetRec<B> = cfg.init_seeded(&items(), N_ITEMS, None, 4, &device).unwrap();
        let (tokens, _) = model.item_tokens();
        let encode = |last: ItemId, sparse: bool| {
            let (x, pad) = encoder_inputs(&model, tokens.clone(), &[2, 6, last]);
            let mask = sparse.then(|| sparse_mask(3, 3, &device));
            let positions: Vec<usize> = (0..9).map(|t| t / 3).collect();
            values(
                model
                    .t5
                    .as_ref()
                    .unwrap()
                    .encode_embeddings_with(x, &positions, mask, pad, &mut None),
            )
        };
        let (a, b) = (encode(1, true), encode(8, true));
        assert!(a[..6 * 8].iter().zip(&b[..6 * 8]).all(|(x, y)| close(*x, *y)));
        assert!(a[6 * 8..].iter().zip(&b[6 * 8..]).any(|(x, y)| !close(*x, *y)));
        // The bidirectional ablation lets the last item reach the first ones.
        let (a, b) = (encode(1, false), encode(8, false));
        assert!(a[..6 * 8].iter().zip(&b[..6 * 8]).any(|(x, y)| !close(*x, *y)));
    }

    #[test]
    fn queries_do_not_see_each_other() {
        let device = Default::default();
        let cfg = config();
        let model: SetRec<B> = cfg.init_seeded(&items(), N_ITEMS, None, 6, &device).unwrap();
        let (tokens, _) = model.item_tokens();
        let (x, pad) = encoder_inputs(&model, tokens, &[2, 6]);
        let t5 = model.t5.as_ref().unwrap();
        let memory = t5.encode_embeddings_with(x, &[0, 0, 0, 1, 1, 1], None, pad.clone(), &mut None);
        let queries = model.queries.val().unsqueeze::<3>();
        let base = values(t5.decode_queries_with(memory.clone(), pad.clone(), queries.clone(), &mut None));
        // Change query 2 only: outputs 0 and 1 stay, output 2 moves.
        let bumped = queries.slice_assign([0..1, 2..3, 0..8], Tensor::ones([1, 1, 8], &device));
        let moved = values(t5.decode_queries_with(memory, pad, bumped, &mut None));
        assert!(base[..16].iter().zip(&moved[..16]).all(|(a, b)| close(*a, *b)));
        assert!(base[16..].iter().zip(&moved[16..]).any(|(a, b)| !close(*a, *b)));
    }

    /// A leave-one-out split of `users` synthetic users over the test items (3 topics).
    fn synthetic_split(users: usize) -> LeaveOneOut {
        let data = SyntheticConfig {
            users,
            items: N_ITEMS,
            topics: 3,
            ..SyntheticConfig::default()
        }
        .generate();
        LeaveOneOut::new(&data, &SplitConfig { max_history: 10 })
    }

    #[test]
    fn the_full_ranking_sweep_matches_evaluation_at_each_beta() {
        let device = Default::default();
        let split = synthetic_split(30);
        let cfg = SetRecConfig {
            betas: vec![0.0, 0.4, 1.0],
            ..config()
        };
        let model: SetRec<B> = cfg.init_seeded(&items(), N_ITEMS, None, 1, &device).unwrap();
        let rec = SetRecRecommender::new(model, cfg.clone(), 0.0);
        let eval = EvalConfig {
            ks: vec![5],
            ..EvalConfig::default()
        };
        let (best, sweep) = rec.sweep_beta(&split.valid, &eval, "ndcg@5", 0).unwrap();
        assert_eq!(sweep.len(), 3);
        for &(beta, value) in &sweep {
            let at = SetRecRecommender::new(rec.model.clone(), cfg.clone(), beta);
            let reference = evaluate(&at, &split.valid, None, &eval, 0).unwrap().metrics["ndcg@5"];
            assert!((value - reference).abs() < 1e-9, "beta {beta}: {value} vs {reference}");
        }
        let top = sweep.iter().map(|p| p.1).fold(f64::MIN, f64::max);
        assert_eq!(sweep.iter().find(|p| p.1 == top).unwrap().0, best);
    }

    /// A SETRec on SmolLM2's first two blocks (LoRA), or `None` when the checkpoint is absent.
    fn on_smollm2(seed: u64) -> Option<(SetRecConfig, SetRec<A>)> {
        let file = crate::lcrec::tests::smollm2()?;
        let cfg = SetRecConfig {
            backbone: Backbone::Smollm2,
            layers: 2,
            ..config()
        };
        let device = Default::default();
        let llm = smollm2_backbone::<A>(&cfg, file, seed, &device).unwrap();
        Some((
            cfg.clone(),
            cfg.init_seeded(&items(), N_ITEMS, Some(llm), seed, &device).unwrap(),
        ))
    }

    #[test]
    fn on_smollm2_the_order_of_an_items_tokens_does_not_matter_under_the_sparse_mask() {
        let Some((cfg, model)) = on_smollm2(3) else { return };
        assert_eq!(model.d_model(), 576);
        let (tokens, _) = model.item_tokens();
        let histories: [&[ItemId]; 2] = [&[3, 5, 1], &[8]];
        let h = |tokens: Tensor<A, 3>, cfg: &SetRecConfig| values(model.generate(tokens, &histories, cfg, &mut None));
        // Reversing every item's tokens leaves each query's output unchanged: within an item the
        // tokens share a position and do not see each other, and the queries read them as a set.
        let (plain, flipped) = (h(tokens.clone(), &cfg), h(tokens.clone().flip([1]), &cfg));
        assert!(plain.iter().zip(&flipped).all(|(a, b)| close(*a, *b)));
        // Token-causal attention (the ablation) reads the order.
        let causal = SetRecConfig {
            sparse_mask: false,
            ..cfg.clone()
        };
        let (plain, flipped) = (h(tokens.clone(), &causal), h(tokens.flip([1]), &causal));
        assert!(plain.iter().zip(&flipped).any(|(a, b)| !close(*a, *b)));
        // The batch's padding changes nothing: the one-item history alone gives the same row.
        let alone = values(model.generate(model.item_tokens().0, &[&[8]], &cfg, &mut None));
        let batched = h(model.item_tokens().0, &cfg);
        let per_row = 3 * 576;
        assert!(alone.iter().zip(&batched[per_row..]).all(|(a, b)| close(*a, *b)));
    }

    #[test]
    fn on_smollm2_the_loss_falls_the_base_stays_and_the_rest_trains() {
        let Some((cfg, mut model)) = on_smollm2(4) else { return };
        let histories: [&[ItemId]; 3] = [&[3, 5, 1], &[8], &[2, 2]];
        let targets = [4, 0, 6];
        // A frozen weight the forward pass uses, and trained parts.
        let base_q = |m: &SetRec<A>| {
            values(
                m.llm.as_ref().unwrap().blocks()[0]
                    .proj(LoraTarget::Q)
                    .base
                    .weight
                    .val(),
            )
        };
        let trained = |m: &SetRec<A>| {
            (
                values(m.queries.val()),
                values(m.cf_proj.as_ref().unwrap().weight.val()),
            )
        };
        let (q0, t0) = (base_q(&model), trained(&model));
        let mut optim = burn::optim::AdamConfig::new().init();
        let first = model.loss(&histories, &targets, &cfg, &mut None).into_scalar();
        for _ in 0..5 {
            let loss = model.loss(&histories, &targets, &cfg, &mut None);
            let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
            model = burn::optim::Optimizer::step(&mut optim, 1e-2, model, grads);
        }
        let last = model.loss(&histories, &targets, &cfg, &mut None).into_scalar();
        assert!(last < first, "loss {first} -> {last}");
        assert_eq!(base_q(&model), q0, "the frozen base moved");
        let t1 = trained(&model);
        assert!(
            t1.0 != t0.0 && t1.1 != t0.1,
            "the queries or the CF projection did not train"
        );
    }

    #[test]
    fn trains_and_beats_its_start_on_synthetic_sequences() {
        let device = Default::default();
        let split = synthetic_split(60);
        let cfg = config();
        let train = TrainConfig {
            epochs: 6,
            batch_size: 32,
            lr: 1e-2,
            eval_every: 6,
            warmup_steps: 0,
            metric: "ndcg@5".into(),
            ..TrainConfig::default()
        };
        let eval = EvalConfig {
            ks: vec![5],
            ..EvalConfig::default()
        };
        let fresh = SetRecRecommender::new(
            cfg.init_seeded::<B>(&items(), N_ITEMS, None, 42, &device).unwrap(),
            cfg.clone(),
            0.5,
        );
        let before = evaluate(&fresh, &split.valid, None, &eval, 0).unwrap().metrics["ndcg@5"];
        let trained = train_setrec::<A>(&cfg, &items(), None, &train, &eval, &split, &device, Run::quiet(42)).unwrap();
        let after = evaluate(&trained.model, &split.valid, None, &eval, 0).unwrap().metrics["ndcg@5"];
        assert!(after > before, "validation ndcg@5 {before} -> {after}");
        assert!(cfg.betas.contains(&trained.model.beta));
        // Same seed, same model.
        let again = train_setrec::<A>(&cfg, &items(), None, &train, &eval, &split, &device, Run::quiet(42)).unwrap();
        assert_eq!(
            trained.model.scores(&[&[1, 2]]).unwrap(),
            again.model.scores(&[&[1, 2]]).unwrap()
        );
    }
}
