//! SASRec (Kang & McAuley, ICDM 2018): causal self-attention over the item history with learned
//! positions; the item embedding table doubles as the output layer.
//!
//! Differences from the reference: pre-norm blocks with GELU (as the PyTorch anchor
//! `../shared/anchors/sasrec_beauty.py`), a final LayerNorm, and full-softmax cross-entropy over
//! every position as the default loss. Padding keys are masked out of attention.
//!
//! `cargo run -p genrec -- run experiments/sasrec-ml100k.toml`

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig};
use burn::tensor::activation::softplus;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use genrec_data::ItemId;
use genrec_kernels::{bias_for_scores, MASKED};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use genrec_kernels::fused::{cross_entropy, linear_cross_entropy};
use genrec_kernels::nn::{drop_out, DecoderBlock};

use crate::SeqRecError;

pub mod train;

/// SASRec hyper-parameters; the `[model]` table of an experiment with `kind = "sasrec"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SasRecConfig {
    /// Hidden size (default 64).
    pub d_model: usize,
    /// Transformer blocks (default 2).
    pub n_layers: usize,
    /// Attention heads; must divide `d_model` (default 2).
    pub n_heads: usize,
    /// Dropout on embeddings and inside blocks (default 0.2).
    pub dropout: f64,
    /// Training loss: `ce` (full softmax, default), `sampled` (softmax over the target and
    /// `negatives` shared negatives drawn by training popularity, log-Q corrected) or `bce` (the
    /// original SASRec: one uniform negative per position, binary cross-entropy).
    pub loss: Loss,
    /// Shared negatives per batch for `loss = "sampled"` (default 256).
    pub negatives: usize,
}

/// See [`SasRecConfig::loss`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    Ce,
    Sampled,
    Bce,
}

impl Default for SasRecConfig {
    fn default() -> Self {
        SasRecConfig {
            d_model: 64,
            n_layers: 2,
            n_heads: 2,
            dropout: 0.2,
            loss: Loss::Ce,
            negatives: 256,
        }
    }
}

impl SasRecConfig {
    pub fn validate(&self) -> Result<(), SeqRecError> {
        for (field, value) in [
            ("model.d_model", self.d_model),
            ("model.n_layers", self.n_layers),
            ("model.n_heads", self.n_heads),
        ] {
            if value == 0 {
                return Err(SeqRecError::config(field, "must be positive"));
            }
        }
        if !self.d_model.is_multiple_of(self.n_heads) {
            return Err(SeqRecError::config(
                "model.d_model",
                format!(
                    "= {} is not divisible by model.n_heads = {}",
                    self.d_model, self.n_heads
                ),
            ));
        }
        if self.loss == Loss::Sampled && self.negatives == 0 {
            return Err(SeqRecError::config(
                "model.negatives",
                "must be positive for loss = \"sampled\"",
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(SeqRecError::config(
                "model.dropout",
                format!("= {} must be in [0, 1)", self.dropout),
            ));
        }
        Ok(())
    }

    /// Refuses a model too large to train (see [`genrec_kernels::nn::training_memory_excess`]):
    /// item and position tables plus the blocks.
    pub fn check_size(&self, n_items: usize, max_len: usize) -> Result<(), SeqRecError> {
        let d = self.d_model as f64;
        let params = (n_items as f64 + 1.0 + max_len as f64) * d + self.n_layers as f64 * 12.0 * d * d;
        match genrec_kernels::nn::training_memory_excess(params) {
            Some(excess) => Err(SeqRecError::config(
                "model.d_model",
                format!(
                    "= {} with data.max_history = {max_len} and {n_items} items would {excess}",
                    self.d_model
                ),
            )),
            None => Ok(()),
        }
    }

    /// [`Self::init`] with the backend RNG seeded under the one init lock (see
    /// [`genrec_kernels::nn::init_seeded`]).
    pub fn init_seeded<B: Backend>(&self, n_items: usize, max_len: usize, seed: u64, device: &B::Device) -> SasRec<B> {
        genrec_kernels::nn::init_seeded(seed, device, || self.init(n_items, max_len, device))
    }

    /// Builds the model for `n_items` items and histories of at most `max_len` items.
    pub fn init<B: Backend>(&self, n_items: usize, max_len: usize, device: &B::Device) -> SasRec<B> {
        let init = Initializer::Normal { mean: 0.0, std: 0.02 };
        SasRec {
            // Row 0 is padding; item i is row i + 1.
            item: EmbeddingConfig::new(n_items + 1, self.d_model)
                .with_initializer(init.clone())
                .init(device),
            pos: EmbeddingConfig::new(max_len, self.d_model)
                .with_initializer(init)
                .init(device),
            blocks: (0..self.n_layers)
                .map(|_| DecoderBlock::new(self.d_model, self.n_heads, 4 * self.d_model, device))
                .collect(),
            norm: LayerNormConfig::new(self.d_model).init(device),
            dropout: self.dropout,
            max_len,
            n_items,
        }
    }
}

/// Left-padded token rows: item `i` → token `i + 1`, 0 = padding; each history keeps its last
/// `len` items. Returns `[batch, len]`.
pub fn tokens<B: Backend>(histories: &[&[ItemId]], len: usize, device: &B::Device) -> Tensor<B, 2, Int> {
    let data = left_pad(histories, len);
    Tensor::from_data(TensorData::new(data, [histories.len(), len]), device)
}

fn left_pad(histories: &[&[ItemId]], len: usize) -> Vec<i64> {
    let mut data = vec![0i64; histories.len() * len];
    for (row, h) in histories.iter().enumerate() {
        let h = &h[h.len().saturating_sub(len)..];
        let start = row * len + len - h.len();
        for (slot, &i) in data[start..start + h.len()].iter_mut().zip(h) {
            *slot = i as i64 + 1;
        }
    }
    data
}

/// A batch of histories ready for [`SasRec::forward`]: left-padded to the longest history in the
/// batch rather than to `max_len`, which is exact (padding never reaches a real position) and
/// saves most of the work on short-history datasets (Beauty averages 9 items of 50).
pub struct SeqInput<B: Backend> {
    /// `[batch, len]` tokens, 0 = padding, `len` = the longest (truncated) history in the batch.
    pub tokens: Tensor<B, 2, Int>,
    /// `[batch, 1, len, len]` additive attention bias (0 = attend, [`MASKED`] = not).
    pub bias: Tensor<B, 4>,
    /// Learned position of column 0 (`max_len - len`): a history's last item always sits at
    /// position `max_len - 1`, exactly as if padded to `max_len`.
    pub first_position: usize,
}

impl<B: Backend> SeqInput<B> {
    pub fn new(histories: &[&[ItemId]], max_len: usize, device: &B::Device) -> Self {
        let len = histories.iter().map(|h| h.len().min(max_len)).max().unwrap_or(0).max(1);
        let mut bias = vec![MASKED; histories.len() * len * len];
        for (row, h) in histories.iter().enumerate() {
            let pad = len - h.len().min(len);
            for query in pad..len {
                let at = (row * len + query) * len;
                bias[at + pad..at + query + 1].fill(0.0);
            }
        }
        SeqInput {
            tokens: tokens(histories, len, device),
            bias: Tensor::from_data(TensorData::new(bias, [histories.len(), 1, len, len]), device),
            first_position: max_len - len,
        }
    }
}

/// A training batch: (input, target) sequences of equal lengths, aligned position by position.
pub struct SeqBatch<B: Backend> {
    pub input: SeqInput<B>,
    /// `[n]` flat indices (`row * len + column`) of the positions holding an item.
    pub positions: Tensor<B, 1, Int>,
    /// `[n]` target tokens at those positions.
    pub targets: Tensor<B, 1, Int>,
    /// Host copy of `targets`.
    pub target_tokens: Vec<i64>,
}

impl<B: Backend> SeqBatch<B> {
    /// # Panics
    /// If an input and its target sequence differ in length (a bug in the caller).
    pub fn new(inputs: &[&[ItemId]], targets: &[&[ItemId]], max_len: usize, device: &B::Device) -> Self {
        assert_eq!(inputs.len(), targets.len(), "one target sequence per input");
        for (i, t) in inputs.iter().zip(targets) {
            assert_eq!(i.len(), t.len(), "input and target sequences must align");
        }
        let input = SeqInput::new(inputs, max_len, device);
        let len = input.tokens.dims()[1];
        let padded = left_pad(targets, len);
        let (positions, target_tokens): (Vec<i64>, Vec<i64>) = padded
            .iter()
            .enumerate()
            .filter(|(_, &t)| t != 0)
            .map(|(at, &t)| (at as i64, t))
            .unzip();
        let n = positions.len();
        SeqBatch {
            input,
            positions: Tensor::from_data(TensorData::new(positions, [n]), device),
            targets: Tensor::from_data(TensorData::new(target_tokens.clone(), [n]), device),
            target_tokens,
        }
    }
}

#[derive(Module, Debug)]
pub struct SasRec<B: Backend> {
    item: Embedding<B>,
    pos: Embedding<B>,
    blocks: Vec<DecoderBlock<B>>,
    norm: LayerNorm<B>,
    dropout: f64,
    max_len: usize,
    n_items: usize,
}

impl<B: Backend> SasRec<B> {
    pub fn n_items(&self) -> usize {
        self.n_items
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Hidden state at every position. `rng` switches dropout on (training) and draws its masks;
    /// `None` is evaluation.
    ///
    /// # Shapes
    /// - `input.tokens`: `[batch, len]`, 0 = padding (left-padded), `len ≤ max_len`
    /// - output: `[batch, len, d_model]`
    pub fn forward(&self, input: &SeqInput<B>, mut rng: Option<&mut ChaCha8Rng>) -> Tensor<B, 3> {
        let [batch, len] = input.tokens.dims();
        let device = input.tokens.device();
        let first = input.first_position as i64;
        // Positions for every row: a same-shape add is one vectorised pass, a broadcast one (and
        // its batch-summed gradient) a strided walk on Flex.
        let positions = Tensor::<B, 1, Int>::arange(first..first + len as i64, &device)
            .unsqueeze::<2>()
            .repeat_dim(0, batch);
        let h = self.item.forward(input.tokens.clone()) + self.pos.forward(positions);
        let mut h = drop_out(h, self.dropout, rng.as_deref_mut());
        // Repeated over the heads once here on the CPU backends, not broadcast in every block.
        let bias = match self.blocks.first() {
            Some(block) => bias_for_scores(input.bias.clone(), [batch, block.n_heads(), len, len]),
            None => input.bias.clone(),
        };
        for block in &self.blocks {
            h = block.forward(h, bias.clone(), self.dropout, self.dropout, rng.as_deref_mut());
        }
        self.norm.forward(h)
    }

    /// Hidden states at the batch's item positions (padding dropped before any output work).
    ///
    /// # Shapes
    /// - output: `[n, d_model]`, `n` = `batch.targets` length
    fn hidden_at_items(&self, batch: &SeqBatch<B>, rng: &mut ChaCha8Rng) -> Tensor<B, 2> {
        let h = self.forward(&batch.input, Some(rng));
        let [b, len, d] = h.dims();
        h.reshape([b * len, d]).select(0, batch.positions.clone())
    }

    /// Item embeddings without the padding row.
    ///
    /// # Shapes
    /// - output: `[n_items, d_model]`
    pub fn item_embeddings(&self) -> Tensor<B, 2> {
        let w = self.item.weight.val();
        let [rows, d] = w.dims();
        w.slice([1..rows, 0..d])
    }

    /// Binary cross-entropy with one negative per item position (the original SASRec loss).
    ///
    /// # Shapes
    /// - `negatives`: `[n]` tokens, one per item position of `batch`
    pub fn loss_bce(&self, batch: &SeqBatch<B>, negatives: Tensor<B, 1, Int>, rng: &mut ChaCha8Rng) -> Tensor<B, 1> {
        let h = self.hidden_at_items(batch, rng);
        let [n, d] = h.dims();
        let embed = |t: Tensor<B, 1, Int>| self.item.forward(t.unsqueeze::<2>()).reshape([n, d]);
        let pos = (h.clone() * embed(batch.targets.clone())).sum_dim(1);
        let neg = (h * embed(negatives)).sum_dim(1);
        // -ln σ(x) = softplus(-x); -ln(1 - σ(x)) = softplus(x).
        (softplus(pos.neg(), 1.0) + softplus(neg, 1.0)).mean()
    }

    /// Scores of every item after each history (last position · item embeddings).
    ///
    /// # Shapes
    /// - output: `[histories.len(), n_items]`
    pub fn score(&self, histories: &[&[ItemId]]) -> Tensor<B, 2> {
        let device = self.item.weight.val().device();
        let h = self.forward(&SeqInput::new(histories, self.max_len, &device), None);
        let [batch, len, d] = h.dims();
        let last = h.slice([0..batch, len - 1..len, 0..d]).reshape([batch, d]);
        last.matmul(self.item_embeddings().transpose())
    }
}

/// The softmax losses go through the fused losses of [`genrec_kernels::fused`], which need the autodiff
/// backend.
impl<B: AutodiffBackend> SasRec<B> {
    /// Full-softmax cross-entropy of the next item, averaged over the batch's item positions.
    /// Training mode (dropout drawn from `rng`).
    pub fn loss_full_softmax(&self, batch: &SeqBatch<B>, rng: &mut ChaCha8Rng) -> Tensor<B, 1> {
        let h = self.hidden_at_items(batch, rng);
        // Logits over all rows, padding included; the padding column is never a target.
        linear_cross_entropy(h, self.item.weight.val(), batch.targets.clone())
    }

    /// Sampled softmax: at each item position, the target against `negatives` shared negative
    /// tokens, every logit corrected by `- ln q` (log-Q) so the estimate of the full softmax is
    /// unbiased in expectation. A negative equal to the position's target is masked out.
    ///
    /// # Shapes
    /// - `negatives`: `[n_neg]` tokens; `log_q_targets`: `[n]`; `log_q_negatives`: `[n_neg]`
    pub fn loss_sampled_softmax(
        &self,
        batch: &SeqBatch<B>,
        negatives: Tensor<B, 1, Int>,
        log_q_targets: Tensor<B, 1>,
        log_q_negatives: Tensor<B, 1>,
        rng: &mut ChaCha8Rng,
    ) -> Tensor<B, 1> {
        let [n_neg] = negatives.dims();
        let h = self.hidden_at_items(batch, rng);
        let [n, d] = h.dims();
        let pos = (h.clone()
            * self
                .item
                .forward(batch.targets.clone().unsqueeze::<2>())
                .reshape([n, d]))
        .sum_dim(1)
            - log_q_targets.reshape([n, 1]);
        let neg_emb = self
            .item
            .forward(negatives.clone().unsqueeze::<2>())
            .reshape([n_neg, d]);
        let neg = h.matmul(neg_emb.transpose()) - log_q_negatives.unsqueeze::<2>();
        let hit = batch
            .targets
            .clone()
            .reshape([n, 1])
            .repeat_dim(1, n_neg)
            .equal(negatives.unsqueeze::<2>().repeat_dim(0, n));
        let neg = neg.mask_fill(hit, MASKED);
        let targets = Tensor::zeros([n], &pos.device());
        cross_entropy(Tensor::cat(vec![pos, neg], 1), targets).mean()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    type B = burn::backend::Flex;
    type A = burn::backend::Autodiff<B>;

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(0)
    }

    #[test]
    fn shapes_and_padding() {
        let device = Default::default();
        let model = SasRecConfig::default().init_seeded::<B>(10, 4, 1, &device);
        let t = tokens::<B>(&[&[3, 4, 5, 6, 7], &[2]], 4, &device);
        assert_eq!(
            t.to_data().convert::<i64>().to_vec::<i64>().unwrap(),
            [5, 6, 7, 8, 0, 0, 0, 3]
        );
        // Trimmed to the longest history (2 of 4 columns); positions 2 and 3.
        let input = SeqInput::<B>::new(&[&[1, 2], &[5]], 4, &device);
        assert_eq!(input.tokens.dims(), [2, 2]);
        assert_eq!(input.first_position, 2);
        let bias = input.bias.to_data().to_vec::<f32>().unwrap();
        // Row 0 (no padding): causal. Row 1 (one padding column): only key 1 from query 1.
        assert_eq!(bias, [0.0, MASKED, 0.0, 0.0, MASKED, MASKED, MASKED, 0.0]);
        assert_eq!(model.forward(&input, None).dims(), [2, 2, 64]);
        assert_eq!(model.score(&[&[1, 2], &[]]).dims(), [2, 10]);
        let cfg = SasRecConfig {
            d_model: 10,
            n_heads: 3,
            ..Default::default()
        };
        assert!(cfg.validate().unwrap_err().to_string().contains("not divisible"));
        let huge = SasRecConfig {
            d_model: 1 << 22,
            ..Default::default()
        };
        let err = huge.check_size(1000, 50).unwrap_err().to_string();
        assert!(
            err.starts_with("model.d_model = 4194304 with data.max_history = 50"),
            "{err}"
        );
        assert!(
            SasRecConfig::default().check_size(1000, 1 << 40).is_err(),
            "max_history alone"
        );
        assert!(SasRecConfig::default().check_size(12_101, 50).is_ok());
    }

    #[test]
    fn trimming_to_the_batch_is_exact() {
        // Scores with the batch trimmed to 2 columns equal scores with the history padded to 6.
        let device = Default::default();
        let model = SasRecConfig::default().init_seeded::<B>(20, 6, 3, &device);
        let short = model.score(&[&[4, 9], &[1]]).to_data().to_vec::<f32>().unwrap();
        let long = model
            .score(&[&[4, 9], &[1], &[0, 1, 2, 3, 4, 5]])
            .to_data()
            .to_vec::<f32>()
            .unwrap();
        for (a, b) in short.iter().zip(&long) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn batch_keeps_only_item_positions() {
        let device = Default::default();
        let batch = SeqBatch::<B>::new(&[&[1, 2, 3], &[7]], &[&[2, 3, 4], &[8]], 5, &device);
        // 3 columns; row 1 holds its item in column 2 → flat index 5.
        assert_eq!(
            batch.positions.to_data().convert::<i64>().to_vec::<i64>().unwrap(),
            [0, 1, 2, 5]
        );
        assert_eq!(batch.target_tokens, [3, 4, 5, 9]);
    }

    #[test]
    fn host_dropout_drops_about_p_and_keeps_the_mean() {
        let device = Default::default();
        let x = Tensor::<B, 2>::ones([100, 100], &device);
        let y = drop_out(x.clone(), 0.2, Some(&mut rng()))
            .to_data()
            .to_vec::<f32>()
            .unwrap();
        let dropped = y.iter().filter(|&&v| v == 0.0).count() as f64 / 1e4;
        assert!((dropped - 0.2).abs() < 0.02, "{dropped}");
        let mean = y.iter().sum::<f32>() / 1e4;
        assert!((mean - 1.0).abs() < 0.03, "{mean}");
        let same = drop_out(x.clone(), 0.2, None).to_data().to_vec::<f32>().unwrap();
        assert!(same.iter().all(|&v| v == 1.0));
    }

    #[test]
    fn loss_ignores_padding_and_starts_near_log_vocab() {
        let device = Default::default();
        let model = SasRecConfig {
            dropout: 0.0,
            ..Default::default()
        }
        .init_seeded::<A>(50, 5, 7, &device);
        let batch = SeqBatch::<A>::new(&[&[1, 2, 3]], &[&[2, 3, 4]], 5, &device);
        let loss: f32 = model.loss_full_softmax(&batch, &mut rng()).into_scalar();
        // Small random init: predictions near uniform over 51 rows, loss ≈ ln 51 = 3.93.
        assert!((loss - 51f32.ln()).abs() < 0.2, "{loss}");
    }

    #[test]
    fn cheaper_losses_by_hand_at_init() {
        let device = Default::default();
        // Seeded init: logits are LayerNorm outputs · N(0, 0.02) embeddings, small but random.
        let model = SasRecConfig {
            dropout: 0.0,
            ..Default::default()
        }
        .init_seeded::<A>(50, 5, 7, &device);
        let batch = SeqBatch::<A>::new(&[&[1, 2, 3]], &[&[2, 3, 4]], 5, &device);
        // Near-zero logits: BCE ≈ 2 ln 2 per position.
        let negatives = Tensor::<A, 1, Int>::from_ints([10, 10, 10], &device);
        let bce: f32 = model.loss_bce(&batch, negatives, &mut rng()).into_scalar();
        assert!((bce - 2.0 * 2f32.ln()).abs() < 0.25, "{bce}");
        // Uniform q over 51 tokens cancels out: softmax over 1 + 10 near-equal logits ≈ ln 11.
        // Token 4 (a target) among the negatives is masked where it is the target.
        let negs = Tensor::<A, 1, Int>::from_ints([4, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19], &device);
        let lq = -(51f32.ln());
        let s: f32 = model
            .loss_sampled_softmax(
                &batch,
                negs,
                Tensor::full([3], lq, &device),
                Tensor::full([11], lq, &device),
                &mut rng(),
            )
            .into_scalar();
        // Positions with targets 2 and 3 see 11 negatives (ln 12); target 4 sees 10 (ln 11).
        let want = (2.0 * 12f32.ln() + 11f32.ln()) / 3.0;
        // Hidden states are LayerNorm outputs, so logits are small but not zero: same tolerance as
        // the full-softmax test.
        assert!((s - want).abs() < 0.2, "{s} vs {want}");
    }
}
