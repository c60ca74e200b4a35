//! RPG (Hou et al., "Generating Long Semantic IDs in Parallel for Recommendation", KDD 2025): a
//! GPT-2-style causal decoder over the history, each item entered as the mean of its `m` digit
//! embeddings (product-quantised, unordered digits: `index.method = "opq"`), and at every position
//! all `m` digits of the next item predicted at once — one residual SiLU head per digit, logits
//! the cosine between the head's output and that digit's code embeddings (tied with the input
//! table) over a temperature. The loss is the mean over digits and positions of the digits'
//! cross-entropies.
//!
//! Decoding, two ways: **exact** — an item's score is the mean of its digits' log-probabilities,
//! every item scored (full ranking with the evaluator's pessimistic ties); **graph** — RPG's
//! graph-constrained decoding: an item–item graph of each item's `n_edges` most similar items
//! (mean over digits of the cosine of their code embeddings), beams started from `beams` random
//! items and moved `steps` times to the best of their neighbourhood.
//!
//! Differences from the reference (facebookresearch/RPG_KDD2025), each deliberate:
//! - the decoder block is genrec's shared pre-norm block (exact GELU, LayerNorm ε 1e-5; GPT-2 uses
//!   the tanh GELU and ε 1e-12 in RPG), with the reference's dropouts (0.5 on embeddings and
//!   attention weights, 0 on residuals) and GPT-2's initialisation (weights N(0, 0.02), the two
//!   residual projections N(0, 0.02 / √(2 · layers)); biases drawn from the same normal, GPT-2's
//!   are zero);
//! - training sequences are each user's last `max_history + 1` items with the loss at every
//!   position (the reference adds, for longer users, sliding windows with the loss at their last
//!   position only — rare on the Amazon splits);
//! - graph decoding draws distinct beam starts from a generator seeded by the run's seed and the
//!   history (the reference: `torch.randint`, duplicates possible); an item's `n_edges`
//!   neighbours are other items, and the beam's own items stay candidates at every step (the
//!   reference's top-`n_edges` includes the item itself, so it has one other neighbour fewer).
//!
//! Validation during training uses exact scoring (as the reference), whatever `decode` says.

use std::sync::OnceLock;

use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig};
use burn::tensor::activation::{log_softmax, silu};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use genrec_data::{ItemId, LeaveOneOut};
use genrec_eval::{evaluate, EvalConfig, Recommender};
use genrec_kernels::fused::cross_entropy;
use genrec_kernels::nn::{drop_out, DecoderBlock};
use genrec_kernels::{bias_for_scores, MASKED};
use genrec_tokenize::ItemIndex;
use genrec_train::{train_model, Run, Task, TrainConfig, Trained, ValidationError};
use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::GenerativeError;

/// How RPG turns digit probabilities into a ranked list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decode {
    /// Every item scored by the mean log-probability of its digits.
    Exact,
    /// RPG's graph-constrained decoding.
    Graph,
}

/// RPG hyper-parameters; the `[model]` table of an experiment with `kind = "rpg"`. Defaults are
/// the reference's (GPT-2: 2 layers, d 448, 4 heads, inner 1024; τ 0.03; Beauty's decoding).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RpgConfig {
    /// Hidden size (default 448).
    pub d_model: usize,
    /// Decoder blocks (default 2).
    pub n_layers: usize,
    /// Attention heads; must divide `d_model` (default 4).
    pub n_heads: usize,
    /// Feed-forward width (default 1024).
    pub d_ff: usize,
    /// Dropout on the input embeddings and the attention weights (default 0.5).
    pub dropout: f64,
    /// Dropout on the residual branches (default 0).
    pub resid_dropout: f64,
    /// Softmax temperature of the cosine logits (default 0.03).
    pub temperature: f64,
    /// `exact` (default) or `graph` decoding for the reported metrics.
    pub decode: Decode,
    /// graph: beams (default 20; must be ≥ the largest evaluated k).
    pub beams: usize,
    /// graph: neighbours per item (default 200; < the number of items).
    pub n_edges: usize,
    /// graph: propagation steps (default 3).
    pub steps: usize,
}

impl Default for RpgConfig {
    fn default() -> Self {
        RpgConfig {
            d_model: 448,
            n_layers: 2,
            n_heads: 4,
            d_ff: 1024,
            dropout: 0.5,
            resid_dropout: 0.0,
            temperature: 0.03,
            decode: Decode::Exact,
            beams: 20,
            n_edges: 200,
            steps: 3,
        }
    }
}

impl RpgConfig {
    /// The checks that need no data; `max_k` is the largest evaluated cut-off.
    pub fn validate(&self, max_k: usize) -> Result<(), GenerativeError> {
        for (field, value) in [
            ("model.d_model", self.d_model),
            ("model.n_layers", self.n_layers),
            ("model.n_heads", self.n_heads),
            ("model.d_ff", self.d_ff),
            ("model.beams", self.beams),
            ("model.n_edges", self.n_edges),
            ("model.steps", self.steps),
        ] {
            if value == 0 {
                return Err(GenerativeError::config(field, "must be positive"));
            }
        }
        if !self.d_model.is_multiple_of(self.n_heads) {
            return Err(GenerativeError::config(
                "model.d_model",
                format!(
                    "= {} is not divisible by model.n_heads = {}",
                    self.d_model, self.n_heads
                ),
            ));
        }
        for (field, p) in [
            ("model.dropout", self.dropout),
            ("model.resid_dropout", self.resid_dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(GenerativeError::config(field, format!("= {p} must be in [0, 1)")));
            }
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(GenerativeError::config(
                "model.temperature",
                format!("= {} must be a positive number", self.temperature),
            ));
        }
        if self.decode == Decode::Graph && self.beams < max_k {
            return Err(GenerativeError::config(
                "model.beams",
                format!("= {} is below the largest evaluated k = {max_k}", self.beams),
            ));
        }
        Ok(())
    }

    /// The checks against the item index: equal-length digits, and fewer edges than items.
    pub fn check_index(&self, index: &ItemIndex, n_items: usize) -> Result<(), GenerativeError> {
        if index.n_items() != n_items {
            return Err(GenerativeError::IndexMismatch {
                index: index.n_items(),
                dataset: n_items,
            });
        }
        let m = index.codebook_sizes.len();
        if !index.unordered || index.codes.iter().any(|c| c.len() != m) {
            return Err(GenerativeError::config(
                "index.method",
                format!(
                    "`{}`: RPG needs unordered digits of one length (index.method = \"opq\")",
                    index.method
                ),
            ));
        }
        let (d, digits) = (self.d_model as f64, m as f64);
        let codes = index.codebook_sizes.iter().copied().max().unwrap_or(1) as f64;
        let blocks = self.n_layers as f64 * (4.0 * d * d + 2.0 * d * self.d_ff as f64);
        let params = (digits * codes + 1.0) * d + digits * d * d + blocks;
        if let Some(excess) = genrec_kernels::nn::training_memory_excess(params) {
            return Err(GenerativeError::config(
                "model.d_model",
                format!(
                    "= {} (d_ff {}) with {m} digits of {codes} codes would {excess}",
                    self.d_model, self.d_ff
                ),
            ));
        }
        if self.decode == Decode::Graph && self.n_edges >= n_items {
            return Err(GenerativeError::config(
                "model.n_edges",
                format!("= {} must be below the number of items ({n_items})", self.n_edges),
            ));
        }
        Ok(())
    }

    /// The fields that shape the weights, as `--resume` compares them: the decoding fields take
    /// their defaults, so a finished run can be resumed with another `model.decode` (or beams,
    /// edges, steps) to evaluate the same model that way.
    pub fn trained_part(&self) -> serde_json::Value {
        let defaults = RpgConfig::default();
        let trained = RpgConfig {
            decode: defaults.decode,
            beams: defaults.beams,
            n_edges: defaults.n_edges,
            steps: defaults.steps,
            ..self.clone()
        };
        serde_json::to_value(trained).expect("an RPG config is plain data")
    }

    /// [`Self::init`] under the one seeded-init lock.
    pub fn init_seeded<B: Backend>(&self, index: &ItemIndex, max_len: usize, seed: u64, device: &B::Device) -> Rpg<B> {
        genrec_kernels::nn::init_seeded(seed, device, || self.init(index, max_len, device))
    }

    /// Builds the model for `index`'s digits (`m` sub-spaces of `k` codes) and histories of at most
    /// `max_len` items.
    pub fn init<B: Backend>(&self, index: &ItemIndex, max_len: usize, device: &B::Device) -> Rpg<B> {
        let m = index.codebook_sizes.len();
        let k = index.codebook_sizes.iter().copied().max().unwrap_or(1) as usize;
        let d = self.d_model;
        let init = Initializer::Normal { mean: 0.0, std: 0.02 };
        // Heads start as the identity (zero weight: the residual passes the hidden state through),
        // as the reference's zero-initialised ResBlocks.
        let bound = 1.0 / (d as f64).sqrt();
        Rpg {
            // Row `s·k + c` = code `c` of digit `s`; the last row is padding.
            codes: EmbeddingConfig::new(m * k + 1, d)
                .with_initializer(init.clone())
                .init(device),
            pos: EmbeddingConfig::new(max_len, d).with_initializer(init).init(device),
            blocks: (0..self.n_layers)
                .map(|_| DecoderBlock::gpt2(d, self.n_heads, self.d_ff, self.n_layers, device))
                .collect(),
            norm: LayerNormConfig::new(d).init(device),
            head_weight: Param::from_tensor(Tensor::zeros([m, d, d], device)),
            head_bias: Param::from_tensor(Tensor::random(
                [m, 1, d],
                burn::tensor::Distribution::Uniform(-bound, bound),
                device,
            )),
            dropout: self.dropout,
            resid_dropout: self.resid_dropout,
            temperature: self.temperature,
            m,
            k,
            max_len,
        }
    }
}

#[derive(Module, Debug)]
pub struct Rpg<B: Backend> {
    codes: Embedding<B>,
    pos: Embedding<B>,
    blocks: Vec<DecoderBlock<B>>,
    norm: LayerNorm<B>,
    /// `[m, d, d]`: digit `s`'s head is `x + SiLU(x W_s + b_s)`.
    head_weight: Param<Tensor<B, 3>>,
    /// `[m, 1, d]`.
    head_bias: Param<Tensor<B, 3>>,
    dropout: f64,
    resid_dropout: f64,
    temperature: f64,
    m: usize,
    k: usize,
    max_len: usize,
}

/// Where each sequence of a batch sits once packed: [`pack`]'s result.
#[derive(Debug, Clone, PartialEq)]
pub struct Packing {
    /// Packed rows and their width.
    pub rows: usize,
    pub width: usize,
    /// Per sequence, the flat slot (`row · width + column`) of each of its items, in order.
    pub slots: Vec<Vec<usize>>,
}

/// Packs sequences of the given lengths into rows of `width = max(lengths)` slots, first fit in
/// order of decreasing length (ties by input order). Short sequences share a row instead of each
/// padding one to the longest: on Beauty (9 items on average, 50 at most) a batch of 256 becomes
/// about 40 rows instead of 256. A length of 0 gets one (padding) slot.
pub fn pack(lengths: &[usize]) -> Packing {
    let lengths: Vec<usize> = lengths.iter().map(|&l| l.max(1)).collect();
    let width = lengths.iter().copied().max().unwrap_or(1);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));
    let mut used: Vec<usize> = Vec::new();
    let mut slots = vec![Vec::new(); lengths.len()];
    for i in order {
        let row = match used.iter().position(|&u| u + lengths[i] <= width) {
            Some(r) => r,
            None => {
                used.push(0);
                used.len() - 1
            }
        };
        let start = row * width + used[row];
        slots[i] = (start..start + lengths[i]).collect();
        used[row] += lengths[i];
    }
    Packing {
        rows: used.len(),
        width,
        slots,
    }
}

/// A batch of histories in RPG's input form: packed rows (see [`pack`]), the distinct items of
/// the batch (their digit tokens, for one embedding lookup) and each slot's row among them.
pub struct RpgInput<B: Backend> {
    /// `[1, n_distinct · m]` digit tokens of the batch's distinct items; entry 0 is padding.
    item_tokens: Tensor<B, 2, Int>,
    /// `[rows · width]` entry of each slot in the distinct-item table (0 = padding).
    table_rows: Tensor<B, 1, Int>,
    /// `[rows, width]` learned position of each slot: a sequence's `j`-th item sits at position
    /// `j`, as GPT-2 numbers a right-padded sequence (the reference's), so the prediction after a
    /// prefix of `j` items is made at the same position in training and at inference.
    positions: Tensor<B, 2, Int>,
    /// `[rows, 1, width, width]` additive bias: causal within each packed sequence, nothing across.
    bias: Tensor<B, 4>,
    pub packing: Packing,
}

impl<B: Backend> RpgInput<B> {
    /// Each history's last `max_len` items.
    pub fn new(histories: &[&[ItemId]], max_len: usize, index: &ItemIndex, k: usize, device: &B::Device) -> Self {
        let histories: Vec<&[ItemId]> = histories
            .iter()
            .map(|h| &h[h.len().saturating_sub(max_len)..])
            .collect();
        let packing = pack(&histories.iter().map(|h| h.len()).collect::<Vec<_>>());
        let (rows, width) = (packing.rows, packing.width);
        let m = index.codebook_sizes.len();
        let pad = (m * k) as i64;
        let mut table: Vec<i64> = vec![pad; m];
        let mut entry_of = std::collections::HashMap::new();
        let mut table_rows = vec![0i64; rows * width];
        let mut positions = vec![0i64; rows * width];
        let mut bias = vec![MASKED; rows * width * width];
        for (h, slots) in histories.iter().zip(&packing.slots) {
            for (j, &slot) in slots.iter().enumerate() {
                positions[slot] = j as i64;
                if let Some(&item) = h.get(j) {
                    table_rows[slot] = *entry_of.entry(item).or_insert_with(|| {
                        table.extend(
                            index
                                .codes(item)
                                .iter()
                                .enumerate()
                                .map(|(s, &c)| (s * k) as i64 + c as i64),
                        );
                        (table.len() / m - 1) as i64
                    });
                }
                // Query `slot` attends the sequence's slots up to itself.
                let (row, column) = (slot / width, slot % width);
                let first = slots[0] % width;
                let at = (row * width + column) * width;
                bias[at + first..at + column + 1].fill(0.0);
            }
        }
        let n_table = table.len();
        RpgInput {
            item_tokens: Tensor::from_data(TensorData::new(table, [1, n_table]), device),
            table_rows: Tensor::from_data(TensorData::new(table_rows, [rows * width]), device),
            positions: Tensor::from_data(TensorData::new(positions, [rows, width]), device),
            bias: Tensor::from_data(TensorData::new(bias, [rows, 1, width, width]), device),
            packing,
        }
    }
}

impl<B: Backend> Rpg<B> {
    /// Digits per item.
    pub fn digits(&self) -> usize {
        self.m
    }

    /// Hidden state at every packed slot (`rng` = training: dropout drawn from it).
    ///
    /// # Shapes
    /// - output: `[rows · width, d_model]` (slots of `input.packing`)
    pub fn forward(&self, input: &RpgInput<B>, mut rng: Option<&mut ChaCha8Rng>) -> Tensor<B, 2> {
        let (rows, width) = (input.packing.rows, input.packing.width);
        let d = self.pos.weight.dims()[1];
        let [_, n_tokens] = input.item_tokens.dims();
        let distinct = n_tokens / self.m;
        // Each distinct item's input: the mean of its digits' embeddings (padding: the pad row).
        let items = self
            .codes
            .forward(input.item_tokens.clone())
            .reshape([distinct, self.m, d])
            .mean_dim(1)
            .reshape([distinct, d]);
        let x = items.select(0, input.table_rows.clone()).reshape([rows, width, d]);
        let mut h = drop_out(
            x + self.pos.forward(input.positions.clone()),
            self.dropout,
            rng.as_deref_mut(),
        );
        let bias = match self.blocks.first() {
            Some(block) => bias_for_scores(input.bias.clone(), [rows, block.n_heads(), width, width]),
            None => input.bias.clone(),
        };
        for block in &self.blocks {
            h = block.forward(h, bias.clone(), self.dropout, self.resid_dropout, rng.as_deref_mut());
        }
        self.norm.forward(h).reshape([rows * width, d])
    }

    /// The hidden state after each history's last item.
    ///
    /// # Shapes
    /// - output: `[histories.len(), d_model]`
    pub fn last_hidden(&self, histories: &[&[ItemId]], index: &ItemIndex) -> Tensor<B, 2> {
        let device = self.pos.weight.device();
        let input = RpgInput::new(histories, self.max_len, index, self.k, &device);
        let last: Vec<i64> = input
            .packing
            .slots
            .iter()
            .map(|s| *s.last().expect("a slot") as i64)
            .collect();
        let n = last.len();
        self.forward(&input, None)
            .select(0, Tensor::from_data(TensorData::new(last, [n]), &device))
    }

    /// Every digit's logits: cosine(head output, code embedding) / τ.
    ///
    /// # Shapes
    /// - `h`: `[n, d_model]`; output: `[m, n, k]`
    pub fn digit_logits(&self, h: Tensor<B, 2>) -> Tensor<B, 3> {
        let d = h.dims()[1];
        let (m, k) = (self.m, self.k);
        let x = h.unsqueeze::<3>().repeat_dim(0, m);
        let y = x.clone() + silu(x.matmul(self.head_weight.val()) + self.head_bias.val());
        let codes = self.codes.weight.val().slice([0..m * k, 0..d]).reshape([m, k, d]);
        let unit = |t: Tensor<B, 3>| t.clone() / (t.powi_scalar(2).sum_dim(2).sqrt() + 1e-12);
        unit(y).matmul(unit(codes).swap_dims(1, 2)) / self.temperature
    }

    /// Each history's per-digit log-probabilities after its last item.
    ///
    /// # Shapes
    /// - output: host `[histories.len(), m, k]`, row-major
    pub fn digit_log_probs(&self, histories: &[&[ItemId]], index: &ItemIndex) -> Vec<f32> {
        log_softmax(self.digit_logits(self.last_hidden(histories, index)), 2)
            .swap_dims(0, 1)
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("f32 log-probabilities")
    }

    /// Cosine similarity of every pair of codes within each digit.
    ///
    /// # Shapes
    /// - output: host `[m, k, k]`
    fn code_similarities(&self) -> Vec<f32> {
        let d = self.pos.weight.dims()[1];
        let (m, k) = (self.m, self.k);
        let codes = self.codes.weight.val().slice([0..m * k, 0..d]).reshape([m, k, d]);
        let unit = codes.clone() / (codes.powi_scalar(2).sum_dim(2).sqrt() + 1e-12);
        unit.clone()
            .matmul(unit.swap_dims(1, 2))
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("f32 similarities")
    }
}

impl<B: AutodiffBackend> Rpg<B> {
    /// Mean over digits and item positions of the digits' cross-entropies (training mode):
    /// `targets[i][j]` is the item after `inputs[i][..=j]`.
    ///
    /// # Panics
    /// If an input and its target sequence differ in length, or are longer than the model's
    /// `max_len` (a bug in the caller).
    pub fn loss(
        &self,
        inputs: &[&[ItemId]],
        targets: &[&[ItemId]],
        index: &ItemIndex,
        rng: &mut ChaCha8Rng,
    ) -> Tensor<B, 1> {
        let device = self.pos.weight.device();
        for (i, t) in inputs.iter().zip(targets) {
            assert!(
                i.len() == t.len() && i.len() <= self.max_len,
                "aligned sequences of at most max_len"
            );
        }
        let input = RpgInput::new(inputs, self.max_len, index, self.k, &device);
        let mut slots = Vec::new();
        let mut target_items = Vec::new();
        for (s, t) in input.packing.slots.iter().zip(targets) {
            slots.extend(s.iter().take(t.len()).map(|&x| x as i64));
            target_items.extend_from_slice(t);
        }
        let n = slots.len();
        let h = self
            .forward(&input, Some(rng))
            .select(0, Tensor::from_data(TensorData::new(slots, [n]), &device));
        let logits = self.digit_logits(h).reshape([self.m * n, self.k]);
        // Targets digit-major, matching the logits' [m, n] rows.
        let mut digits = vec![0i64; self.m * n];
        for (p, &t) in target_items.iter().enumerate() {
            for (s, &c) in index.codes(t).iter().enumerate() {
                digits[s * n + p] = c as i64;
            }
        }
        let digits = Tensor::from_data(TensorData::new(digits, [self.m * n]), &device);
        cross_entropy(logits, digits).mean()
    }
}

/// Each item's `n_edges` most similar other items (mean over digits of their codes' cosine), the
/// graph of RPG's decoding; rows sorted by similarity, ties by item id.
pub fn item_graph(similarities: &[f32], index: &ItemIndex, k: usize, n_edges: usize) -> Vec<Vec<ItemId>> {
    let n = index.n_items();
    let m = index.codebook_sizes.len();
    (0..n)
        .into_par_iter()
        .map(|i| {
            let ci = index.codes(i as ItemId);
            let mut sims: Vec<(f32, u32)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| {
                    let cj = index.codes(j as ItemId);
                    let s: f32 = (0..m)
                        .map(|s| similarities[(s * k + ci[s] as usize) * k + cj[s] as usize])
                        .sum();
                    (s / m as f32, j as u32)
                })
                .collect();
            let by_similarity = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
            let keep = n_edges.min(sims.len());
            if keep < sims.len() {
                sims.select_nth_unstable_by(keep, by_similarity);
                sims.truncate(keep);
            }
            sims.sort_by(by_similarity);
            sims.into_iter().map(|(_, j)| j).collect()
        })
        .collect()
}

/// Mean of the item's digits' log-probabilities (`log_probs` = one history's `[m, k]`).
fn item_score(log_probs: &[f32], codes: &[u32], k: usize) -> f32 {
    codes
        .iter()
        .enumerate()
        .map(|(s, &c)| log_probs[s * k + c as usize])
        .sum::<f32>()
        / codes.len() as f32
}

/// RPG's graph-constrained decoding of one history (`log_probs`: its `[m, k]` digit
/// log-probabilities): `beams` distinct random starting items, then
/// `steps` times the best `beams` of the beam and its neighbours; the best `top` of the last beam.
pub fn graph_decode(
    log_probs: &[f32],
    index: &ItemIndex,
    graph: &[Vec<ItemId>],
    beams: usize,
    steps: usize,
    top: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<ItemId> {
    let n = index.n_items();
    let k = log_probs.len() / index.codebook_sizes.len().max(1);
    let score = |i: ItemId| item_score(log_probs, index.codes(i), k);
    let rank = |items: &mut Vec<(f32, ItemId)>| items.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut beam: Vec<(f32, ItemId)> = sample(rng, n, beams.min(n))
        .into_iter()
        .map(|i| (score(i as ItemId), i as ItemId))
        .collect();
    rank(&mut beam);
    let mut seen = vec![false; n];
    for _ in 0..steps {
        let mut candidates = beam.clone();
        beam.iter().for_each(|&(_, i)| seen[i as usize] = true);
        for &(_, i) in &beam {
            for &j in &graph[i as usize] {
                if !seen[j as usize] {
                    seen[j as usize] = true;
                    candidates.push((score(j), j));
                }
            }
        }
        candidates.iter().for_each(|&(_, i)| seen[i as usize] = false);
        rank(&mut candidates);
        candidates.truncate(beams);
        beam = candidates;
    }
    beam.into_iter().take(top).map(|(_, i)| i).collect()
}

/// RPG behind the [`Recommender`] trait: exact scores, or graph-decoded lists.
pub struct RpgRecommender<B: Backend> {
    pub model: Rpg<B>,
    pub index: ItemIndex,
    pub config: RpgConfig,
    /// Seeds graph decoding's starting beams (mixed with each history).
    pub seed: u64,
    graph: OnceLock<Vec<Vec<ItemId>>>,
}

impl<B: Backend> RpgRecommender<B> {
    pub fn new(model: Rpg<B>, index: ItemIndex, config: RpgConfig, seed: u64) -> Self {
        RpgRecommender {
            model,
            index,
            config,
            seed,
            graph: OnceLock::new(),
        }
    }

    /// The item graph of graph decoding, built on first use from the trained code embeddings.
    pub fn graph(&self) -> &[Vec<ItemId>] {
        self.graph.get_or_init(|| {
            item_graph(
                &self.model.code_similarities(),
                &self.index,
                self.model.k,
                self.config.n_edges,
            )
        })
    }

    /// Exact scores of every item, host `[histories.len() · n_items]`.
    pub fn exact_scores(&self, histories: &[&[ItemId]]) -> Vec<f32> {
        let (m, k) = (self.model.m, self.model.k);
        let log_probs = self.model.digit_log_probs(histories, &self.index);
        let n = self.index.n_items();
        let mut scores = vec![0f32; histories.len() * n];
        scores.par_chunks_mut(n.max(1)).enumerate().for_each(|(u, row)| {
            let lp = &log_probs[u * m * k..(u + 1) * m * k];
            for (item, s) in row.iter_mut().enumerate() {
                *s = item_score(lp, self.index.codes(item as ItemId), k);
            }
        });
        scores
    }

    fn history_seed(&self, history: &[ItemId]) -> u64 {
        // FNV-1a over the history: the same history gets the same starting beams in any batch.
        history.iter().fold(0xcbf2_9ce4_8422_2325 ^ self.seed, |h, &i| {
            (h ^ i as u64).wrapping_mul(0x0100_0000_01b3)
        })
    }
}

impl<B: Backend> Recommender for RpgRecommender<B> {
    fn name(&self) -> String {
        "rpg".into()
    }

    fn n_items(&self) -> usize {
        self.index.n_items()
    }

    fn recommend(&self, histories: &[&[ItemId]], k: usize) -> Vec<Vec<ItemId>> {
        match self.config.decode {
            Decode::Exact => genrec_eval::ranking::top_k_rows(&self.exact_scores(histories), self.n_items(), k),
            Decode::Graph => {
                let (m, codes) = (self.model.m, self.model.k);
                let log_probs = self.model.digit_log_probs(histories, &self.index);
                let graph = self.graph();
                histories
                    .par_iter()
                    .enumerate()
                    .map(|(u, h)| {
                        let mut rng = ChaCha8Rng::seed_from_u64(self.history_seed(h));
                        let lp = &log_probs[u * m * codes..(u + 1) * m * codes];
                        let c = &self.config;
                        graph_decode(lp, &self.index, graph, c.beams, c.steps, k, &mut rng)
                    })
                    .collect()
            }
        }
    }

    fn scores(&self, histories: &[&[ItemId]]) -> Option<Vec<f32>> {
        (self.config.decode == Decode::Exact).then(|| self.exact_scores(histories))
    }
}

/// Trains RPG on `index`'s digits with early stopping on exact-scored validation; the returned
/// recommender decodes as `config.decode` says.
pub fn train_rpg<B: AutodiffBackend>(
    config: &RpgConfig,
    index: &ItemIndex,
    train: &TrainConfig,
    eval: &EvalConfig,
    split: &LeaveOneOut,
    device: &B::Device,
    run: Run,
) -> Result<Trained<RpgRecommender<B::InnerBackend>>, GenerativeError> {
    let max_k = eval.ks.iter().copied().max().unwrap_or(1);
    config.validate(max_k)?;
    config.check_index(index, split.n_items)?;
    train.validate(&eval.ks)?;
    let seed = run.seed;
    let data = split.shifted_pairs();
    if data.is_empty() {
        return Err(GenerativeError::config(
            "data",
            "no user has 2 training items: nothing to train on",
        ));
    }
    let model: Rpg<B> = config.init_seeded(index, split.max_history, seed, device);
    let loss = |model: &Rpg<B>, batch: &[usize], rng: &mut ChaCha8Rng| {
        let inputs: Vec<&[ItemId]> = batch.iter().map(|&i| data[i].0.as_slice()).collect();
        let targets: Vec<&[ItemId]> = batch.iter().map(|&i| data[i].1.as_slice()).collect();
        model.loss(&inputs, &targets, index, rng)
    };
    let valid = split.valid_sample(train.valid_users, seed);
    let exact = RpgConfig {
        decode: Decode::Exact,
        ..config.clone()
    };
    let validate = |model: &Rpg<B::InnerBackend>| -> Result<f64, ValidationError> {
        let rec = RpgRecommender::new(model.clone(), index.clone(), exact.clone(), seed);
        Ok(evaluate(&rec, &valid, None, eval, seed)?.metrics[&train.metric])
    };
    let task = Task {
        examples: data.len(),
        loss: &loss,
        validate: &validate,
        model_config: config.trained_part(),
    };
    let trained = train_model(model, task, train, device, run)?;
    Ok(trained.map(|model| RpgRecommender::new(model, index.clone(), config.clone(), seed)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use genrec_data::synthetic::SyntheticConfig;
    use genrec_data::SplitConfig;

    type B = burn::backend::Flex;
    type A = burn::backend::Autodiff<B>;

    /// Distinct random digits for `n` items: `m` sub-spaces of `k` codes.
    fn index(n: usize, m: usize, k: u32, seed: u64) -> ItemIndex {
        use rand::Rng;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut seen = std::collections::HashSet::new();
        let mut codes = Vec::new();
        while codes.len() < n {
            let c: Vec<u32> = (0..m).map(|_| rng.random_range(0..k)).collect();
            if seen.insert(c.clone()) {
                codes.push(c);
            }
        }
        ItemIndex::new("opq", vec![k; m], codes).unwrap().with_unordered(true)
    }

    fn small() -> RpgConfig {
        RpgConfig {
            d_model: 16,
            n_layers: 1,
            n_heads: 2,
            d_ff: 32,
            dropout: 0.1,
            temperature: 0.1,
            ..RpgConfig::default()
        }
    }

    /// Moves the code embeddings and heads away from their initial values (zero head weights,
    /// near-equal cosines) so that scores differ between items.
    fn perturbed(model: Rpg<B>, seed: u64) -> Rpg<B> {
        let device = Default::default();
        B::seed(&device, seed);
        let [m, d, _] = model.head_weight.dims();
        let noise = Tensor::<B, 3>::random([m, d, d], burn::tensor::Distribution::Normal(0.0, 0.3), &device);
        Rpg {
            head_weight: Param::from_tensor(noise),
            ..model
        }
    }

    #[test]
    fn exact_scores_equal_a_host_reference() {
        let device = Default::default();
        let index = index(30, 3, 8, 1);
        let model = perturbed(small().init_seeded::<B>(&index, 6, 2, &device), 3);
        let rec = RpgRecommender::new(model, index.clone(), small(), 0);
        let histories: [&[ItemId]; 2] = [&[3, 7, 1], &[29]];
        let scores = rec.exact_scores(&histories);
        // Reference: the last hidden state, every digit's head and cosine logits computed on the
        // host from the model's weights, log-softmax per digit, then each item's digit mean.
        let h = rec.model.last_hidden(&histories, &index);
        let d = h.dims()[1];
        let last = h.into_data().to_vec::<f32>().unwrap();
        let w = rec.model.head_weight.val().into_data().to_vec::<f32>().unwrap();
        let bias = rec.model.head_bias.val().into_data().to_vec::<f32>().unwrap();
        let codes = rec.model.codes.weight.val().into_data().to_vec::<f32>().unwrap();
        let unit = |v: Vec<f64>| {
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            v.into_iter().map(|x| x / norm).collect::<Vec<_>>()
        };
        for u in 0..2 {
            let x: Vec<f64> = last[u * d..(u + 1) * d].iter().map(|&v| v as f64).collect();
            let mut log_probs = vec![vec![0f64; 8]; 3];
            for s in 0..3 {
                let pre: Vec<f64> = (0..d)
                    .map(|j| bias[s * d + j] as f64 + (0..d).map(|i| x[i] * w[(s * d + i) * d + j] as f64).sum::<f64>())
                    .collect();
                let y = unit((0..d).map(|j| x[j] + pre[j] / (1.0 + (-pre[j]).exp())).collect());
                let logits: Vec<f64> = (0..8)
                    .map(|c| {
                        let e = unit(
                            codes[(s * 8 + c) * d..(s * 8 + c + 1) * d]
                                .iter()
                                .map(|&v| v as f64)
                                .collect(),
                        );
                        y.iter().zip(&e).map(|(a, b)| a * b).sum::<f64>() / 0.1
                    })
                    .collect();
                let lse = logits.iter().map(|l| l.exp()).sum::<f64>().ln();
                log_probs[s] = logits.iter().map(|l| l - lse).collect();
            }
            for item in 0..30 {
                let want = index
                    .codes(item)
                    .iter()
                    .enumerate()
                    .map(|(s, &c)| log_probs[s][c as usize])
                    .sum::<f64>()
                    / 3.0;
                let got = scores[u * 30 + item as usize] as f64;
                assert!((got - want).abs() < 1e-3, "user {u} item {item}: {got} vs {want}");
            }
        }
        // Items differ in score (the test is not comparing constants).
        let first = &scores[..30];
        assert!(first.iter().any(|&s| (s - first[0]).abs() > 1e-3));
    }

    #[test]
    fn packing_is_exact() {
        // Longest first (ties in input order), first fit: [0 0 0] [2 2 1] [3 4 -]; the empty
        // history (3) gets one padding slot.
        let p = pack(&[3, 1, 2, 0, 1]);
        assert_eq!((p.rows, p.width), (3, 3));
        assert_eq!(p.slots, [vec![0, 1, 2], vec![5], vec![3, 4], vec![6], vec![7]]);
        // A packed batch gives each history the hidden state it gets alone.
        let device = Default::default();
        let index = index(30, 3, 8, 1);
        let model = perturbed(small().init_seeded::<B>(&index, 6, 2, &device), 3);
        let histories: [&[ItemId]; 5] = [&[3, 7, 1, 4, 5, 6, 9], &[29], &[2, 2], &[], &[11, 12, 13]];
        let together = model
            .last_hidden(&histories, &index)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let d = 16;
        for (u, h) in histories.iter().enumerate() {
            let alone = model.last_hidden(&[h], &index).into_data().to_vec::<f32>().unwrap();
            for (a, b) in alone.iter().zip(&together[u * d..(u + 1) * d]) {
                assert!((a - b).abs() < 1e-4, "history {u}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn graph_decoding_with_every_edge_is_exact_top_k() {
        let device = Default::default();
        let index = index(40, 4, 6, 2);
        let model = perturbed(small().init_seeded::<B>(&index, 6, 5, &device), 7);
        let histories: [&[ItemId]; 3] = [&[1, 2, 3], &[39, 0], &[17]];
        let exact = RpgRecommender::new(model.clone(), index.clone(), small(), 0).recommend(&histories, 10);
        let full_graph = RpgConfig {
            decode: Decode::Graph,
            beams: 10,
            n_edges: 39,
            steps: 1,
            ..small()
        };
        let graph = RpgRecommender::new(model.clone(), index.clone(), full_graph.clone(), 0);
        assert_eq!(graph.recommend(&histories, 10), exact);
        assert!(
            graph.scores(&histories).is_none(),
            "graph decoding gives lists, not scores"
        );
        // A sparse graph explores less: still valid, distinct item lists, seeded.
        let sparse = RpgRecommender::new(
            model,
            index,
            RpgConfig {
                n_edges: 3,
                ..full_graph
            },
            0,
        );
        let lists = sparse.recommend(&histories, 10);
        for l in &lists {
            let distinct: std::collections::HashSet<_> = l.iter().collect();
            assert_eq!(distinct.len(), l.len());
            assert!(l.iter().all(|&i| i < 40));
        }
        assert_eq!(sparse.recommend(&histories, 10), lists);
        // The graph: each item's neighbours exclude itself and are ranked by similarity.
        let g = sparse.graph();
        assert!(g
            .iter()
            .enumerate()
            .all(|(i, row)| row.len() == 3 && !row.contains(&(i as ItemId))));
    }

    #[test]
    fn learns_topic_transitions_and_is_deterministic() {
        let device = Default::default();
        let data = SyntheticConfig {
            users: 400,
            items: 60,
            topics: 6,
            stay: 0.2,
            ..SyntheticConfig::default()
        }
        .generate();
        let split = LeaveOneOut::new(&data, &SplitConfig { max_history: 10 });
        // Semantic digits as a text encoder would give: the first names the item's topic (its
        // first attribute), the next two number the item (distinct tuples), the last is random.
        let random = index(split.n_items, 4, 8, 3);
        let codes: Vec<Vec<u32>> = (0..split.n_items)
            .map(|i| {
                vec![
                    data.items[i].attributes[0],
                    (i / 8) as u32,
                    (i % 8) as u32,
                    random.codes(i as ItemId)[3],
                ]
            })
            .collect();
        let index = ItemIndex::new("opq", vec![8; 4], codes).unwrap().with_unordered(true);
        let config = RpgConfig {
            d_model: 32,
            d_ff: 64,
            dropout: 0.1,
            ..small()
        };
        let train = TrainConfig {
            epochs: 8,
            batch_size: 64,
            lr: 5e-3,
            eval_every: 4,
            ..TrainConfig::default()
        };
        let eval = EvalConfig {
            ks: vec![10],
            ..EvalConfig::default()
        };
        let run = || train_rpg::<A>(&config, &index, &train, &eval, &split, &device, Run::quiet(1)).unwrap();
        let a = run();
        let b = run();
        assert_eq!(a.best_valid, b.best_valid, "same seed, same backend, same metrics");
        let first = a.curves.first().unwrap().loss;
        let last = a.curves.last().unwrap().loss;
        assert!(last < first * 0.9, "loss {first} -> {last}");
        let rpg = evaluate(&a.model, &split.test, None, &eval, 0).unwrap().metrics["ndcg@10"];
        let pop = genrec_seqrec::Popularity::fit(&split);
        let pop = evaluate(&pop, &split.test, None, &eval, 0).unwrap().metrics["ndcg@10"];
        assert!(rpg > pop * 1.3, "rpg {rpg} vs pop {pop}");
    }

    #[test]
    fn bad_settings_and_indexes_are_named() {
        let index30 = index(30, 3, 8, 1);
        let err = |e: GenerativeError| e.to_string();
        assert!(err(small().check_index(&index30, 31).unwrap_err()).contains("30 items, the dataset has 31"));
        let ordered = ItemIndex::new("rqvae", vec![8, 8, 8], index30.codes.clone()).unwrap();
        assert!(err(small().check_index(&ordered, 30).unwrap_err()).contains("index.method = \"opq\""));
        let graph = RpgConfig {
            decode: Decode::Graph,
            n_edges: 30,
            ..small()
        };
        assert!(err(graph.check_index(&index30, 30).unwrap_err()).starts_with("model.n_edges = 30"));
        let huge = RpgConfig {
            d_model: 1 << 20,
            n_heads: 1,
            ..small()
        };
        assert!(err(huge.check_index(&index30, 30).unwrap_err()).contains("GiB genrec allows"));
        assert!(err(RpgConfig {
            beams: 5,
            ..graph.clone()
        }
        .validate(10)
        .unwrap_err())
        .starts_with("model.beams = 5"));
        assert!(err(RpgConfig {
            temperature: 0.0,
            ..small()
        }
        .validate(10)
        .unwrap_err())
        .starts_with("model.temperature"));
        assert!(err(RpgConfig { n_heads: 3, ..small() }.validate(10).unwrap_err()).contains("not divisible"));
        assert!(err(RpgConfig {
            dropout: 1.0,
            ..small()
        }
        .validate(10)
        .unwrap_err())
        .starts_with("model.dropout"));
    }
}
