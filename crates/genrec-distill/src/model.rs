//! The LLM sequential recommender SLMRec distils (E4SRec-style; Li et al. 2023, the base of the
//! SLMRec reference): item ids become vectors of a small item table, a linear layer lifts them
//! into the LLM's input space, the LLM runs causally over the history, and every position's last
//! hidden state is mapped back to the item width and scored against every item's vector
//! (full-softmax cross-entropy; the reference's `score(h) · Eᵀ`, tied to its input table).
//!
//! No text prompt precedes the items: the LLM sees the projected history only, so a batch is as
//! long as its longest history and every position trains in one pass (as SASRec does).

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use genrec_data::ItemId;
use genrec_eval::Recommender;
use genrec_kernels::fused::linear_cross_entropy;
use genrec_llm::Llama;
use rand_chacha::ChaCha8Rng;

/// Histories laid out for [`LlmRec::forward`]: right-padded rows of item ids (the causal mask
/// keeps every real position away from the padding after it).
pub struct ItemBatch<B: Backend> {
    /// `[batch, len]` item ids, padding = 0 (never read: it only sits after a row's end).
    pub items: Tensor<B, 2, Int>,
    /// Each row's length (≥ 1).
    pub lengths: Vec<usize>,
    /// `[n]` flat indices (`row * len + column`) of the positions that carry a target.
    pub positions: Tensor<B, 1, Int>,
    /// `[n]` the item that follows each of those positions.
    pub targets: Tensor<B, 1, Int>,
}

impl<B: Backend> ItemBatch<B> {
    /// A batch of histories, each cut to its last `max_len` items, with no targets (scoring).
    pub fn histories(histories: &[&[ItemId]], max_len: usize, device: &B::Device) -> Self {
        let rows: Vec<&[ItemId]> = histories
            .iter()
            .map(|h| &h[h.len().saturating_sub(max_len)..])
            .collect();
        Self::build(&rows, None, device)
    }

    /// Aligned (input, target) sequences, every position a training example.
    ///
    /// # Panics
    /// If an input and its target differ in length (a bug in the caller).
    pub fn pairs(inputs: &[&[ItemId]], targets: &[&[ItemId]], device: &B::Device) -> Self {
        for (i, t) in inputs.iter().zip(targets) {
            assert_eq!(i.len(), t.len(), "input and target sequences must align");
        }
        Self::build(inputs, Some(targets), device)
    }

    fn build(rows: &[&[ItemId]], targets: Option<&[&[ItemId]]>, device: &B::Device) -> Self {
        let len = rows.iter().map(|r| r.len()).max().unwrap_or(1).max(1);
        let mut items = vec![0i64; rows.len() * len];
        let (mut positions, mut wanted) = (Vec::new(), Vec::new());
        for (r, row) in rows.iter().enumerate() {
            for (c, &item) in row.iter().enumerate() {
                items[r * len + c] = item as i64;
            }
            if let Some(targets) = targets {
                for (c, &t) in targets[r].iter().enumerate() {
                    positions.push((r * len + c) as i64);
                    wanted.push(t as i64);
                }
            }
        }
        let n = positions.len();
        ItemBatch {
            items: Tensor::from_data(TensorData::new(items, [rows.len(), len]), device),
            lengths: rows.iter().map(|r| r.len().max(1)).collect(),
            positions: Tensor::from_data(TensorData::new(positions, [n]), device),
            targets: Tensor::from_data(TensorData::new(wanted, [n]), device),
        }
    }

    /// `[batch]` flat indices of each row's last item.
    pub fn last_positions(&self) -> Tensor<B, 1, Int> {
        let len = self.items.dims()[1];
        let last: Vec<i64> = self
            .lengths
            .iter()
            .enumerate()
            .map(|(r, &l)| (r * len + l - 1) as i64)
            .collect();
        let n = last.len();
        Tensor::from_data(TensorData::new(last, [n]), &self.items.device())
    }
}

/// Item table → projection → LLM → item head.
#[derive(Module, Debug)]
pub struct LlmRec<B: Backend> {
    /// `[n_items, item_dim]` item vectors (learned, or a trained SASRec's).
    pub items: Param<Tensor<B, 2>>,
    /// `item_dim → d_model`.
    pub proj: Linear<B>,
    pub llm: Llama<B>,
    /// `d_model → item_dim` (no bias): an item's score is `score(hidden) · item vector`.
    pub score: Linear<B>,
    /// History items the model reads (older ones are dropped).
    pub max_history: usize,
}

impl<B: Backend> LlmRec<B> {
    /// Wraps `llm` with a fresh projection and score layer (seeded) around the item vectors
    /// `items` (`[n_items, item_dim]`, trainable or frozen as the param says).
    pub fn new(llm: Llama<B>, items: Param<Tensor<B, 2>>, max_history: usize, seed: u64) -> Self {
        let device = items.val().device();
        let [_, item_dim] = items.dims();
        let d = llm.d_model();
        let (proj, score) = genrec_kernels::nn::init_seeded(seed, &device, || {
            (
                LinearConfig::new(item_dim, d).init(&device),
                LinearConfig::new(d, item_dim).with_bias(false).init(&device),
            )
        });
        LlmRec {
            items,
            proj,
            llm,
            score,
            max_history,
        }
    }

    pub fn n_items(&self) -> usize {
        self.items.dims()[0]
    }

    pub fn n_layers(&self) -> usize {
        self.llm.n_layers()
    }

    /// Hidden states at every position after the final norm, and the outputs of the blocks in
    /// `layers` (before it). `rng` = training (LoRA dropout).
    ///
    /// # Shapes
    /// - `batch.items`: `[batch, len]`; outputs `[batch, len, d_model]` each
    pub fn forward(
        &self,
        batch: &ItemBatch<B>,
        layers: &[usize],
        rng: Option<&mut ChaCha8Rng>,
    ) -> (Tensor<B, 3>, Vec<Tensor<B, 3>>) {
        let [b, len] = batch.items.dims();
        let [_, item_dim] = self.items.dims();
        let vectors = self
            .items
            .val()
            .select(0, batch.items.clone().reshape([b * len]))
            .reshape([b, len, item_dim]);
        let x = self.proj.forward(vectors);
        let positions: Vec<Vec<usize>> = vec![(0..len).collect(); b];
        self.llm.hidden_from_embeddings(x, &positions, None, layers, rng)
    }

    /// The rows of `hidden` at flat `positions`.
    ///
    /// # Shapes
    /// - `hidden`: `[batch, len, d]`; `positions`: `[n]`; output `[n, d]`
    pub fn pick(hidden: Tensor<B, 3>, positions: Tensor<B, 1, Int>) -> Tensor<B, 2> {
        let [b, len, d] = hidden.dims();
        hidden.reshape([b * len, d]).select(0, positions)
    }

    /// Scores of every item after each history.
    ///
    /// # Shapes
    /// - output: `[histories.len(), n_items]`
    pub fn scores(&self, histories: &[&[ItemId]]) -> Tensor<B, 2> {
        let device = self.items.val().device();
        let batch = ItemBatch::histories(histories, self.max_history, &device);
        let (hidden, _) = self.forward(&batch, &[], None);
        self.logits(Self::pick(hidden, batch.last_positions()))
    }

    /// Item logits of final hidden-state rows.
    ///
    /// # Shapes
    /// - `rows`: `[n, d_model]`, output `[n, n_items]`
    pub fn logits(&self, rows: Tensor<B, 2>) -> Tensor<B, 2> {
        self.score.forward(rows).matmul(self.items.val().transpose())
    }
}

impl<B: AutodiffBackend> LlmRec<B> {
    /// Full-softmax cross-entropy of the next item over rows `[n, d_model]` of final hidden states
    /// (fused: the `[n, n_items]` logits are never kept for the backward pass).
    pub fn item_loss(&self, rows: Tensor<B, 2>, targets: Tensor<B, 1, Int>) -> Tensor<B, 1> {
        linear_cross_entropy(self.score.forward(rows), self.items.val(), targets)
    }
}

/// An [`LlmRec`] behind genrec-eval's [`Recommender`]: scores every item from the last position.
pub struct LlmRecRecommender<B: Backend> {
    pub model: LlmRec<B>,
    /// The name written into reports (`llmrec` for a teacher, `slmrec` for a student).
    pub name: &'static str,
}

impl<B: Backend> Recommender for LlmRecRecommender<B> {
    fn name(&self) -> String {
        self.name.into()
    }

    fn n_items(&self) -> usize {
        self.model.n_items()
    }

    fn recommend(&self, histories: &[&[ItemId]], k: usize) -> Vec<Vec<ItemId>> {
        let scores = self.scores(histories).unwrap_or_default();
        genrec_eval::ranking::top_k_rows(&scores, self.n_items(), k)
    }

    fn scores(&self, histories: &[&[ItemId]]) -> Option<Vec<f32>> {
        Some(
            self.model
                .scores(histories)
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .expect("f32 scores"),
        )
    }
}
