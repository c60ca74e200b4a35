//! T5 encoder–decoder (Raffel et al., JMLR 2020, "Exploring the Limits of Transfer Learning with
//! a Unified Text-to-Text Transformer") sized for TIGER (Rajput et al., NeurIPS 2023,
//! "Recommender Systems with Generative Retrieval"): the encoder reads a user's history as
//! semantic-ID tokens, the decoder writes the next item's semantic ID one code at a time.
//!
//! Layout: T5 v1.0 as in transformers' `T5ForConditionalGeneration` with
//! `feed_forward_proj = "relu"` and the PyTorch anchor `../shared/anchors/torch_beam_decode.py`:
//! pre-RMSNorm blocks, no biases, relative position bias (bidirectional in the encoder, causal in
//! the decoder) computed in the first block of each stack and shared by the others, unscaled
//! dot-product attention (the `1/sqrt(d_kv)` lives in the query init), a final RMSNorm per stack
//! and an input embedding tied to the LM head with the decoder output scaled by `d_model^-0.5`.
//! `gated_ffn = true` switches to the v1.1 gated-GELU feed-forward (tanh GELU, as HF's `gelu_new`).
//!
//! Differences from HF T5:
//! - Padding keys get a finite `-1e9` bias rather than `f32::MIN`, so a fully padded row softmaxes
//!   to uniform instead of overflowing; such rows never reach a loss.
//! - Relative-position buckets are computed on the host in `f64` (HF: `f32` on the device). The
//!   bucket boundaries where the two could round differently are powers of two, exact in both.
//! - Dropout masks are drawn on the host from the caller's seeded ChaCha8 stream
//!   ([`T5::encode_with`], [`T5::decode_with`]; see [`drop_out`]): deterministic even with other
//!   models training in the same process, and far cheaper than Burn's Bernoulli sampler. They sit
//!   at T5's places: embeddings, attention weights, the FFN hidden layer, every sub-layer output
//!   and each stack's final norm. [`T5::encode`], [`T5::decode`] and decoding run without them.
//! - Incremental decoding ([`T5::decode_step`]) keeps one self-attention cache row per beam and
//!   folds a user's beams into the query axis of cross-attention, so encoder keys/values are
//!   computed once per user and never repeated per beam (the anchor's scheme).
//!
//! `cargo test -p genrec-generative --lib t5`

use std::ops::Range;

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig, RmsNorm, RmsNormConfig};
use burn::tensor::activation::{gelu_approximate, relu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use genrec_kernels::{bias_for_scores, linear_rows, MASKED};

use genrec_kernels::nn::drop_out;

use crate::GenerativeError;

/// T5 hyper-parameters (the defaults are TIGER's: 4+4 layers, 6 heads of 64, d_model 128): the
/// `[model.t5]` table of a model built on T5.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct T5Config {
    /// Token vocabulary, special tokens included. Set by the model that owns the T5 from its token
    /// layout (never read from a config file). Token 0 is conventionally the decoder start token,
    /// as in T5 (where it is also padding).
    #[serde(skip)]
    pub vocab_size: usize,
    /// Hidden size (default 128).
    pub d_model: usize,
    /// Size of one attention head (default 64); independent of `d_model / n_heads`, as in T5.
    pub d_kv: usize,
    /// Attention heads (default 6).
    pub n_heads: usize,
    /// Feed-forward width (default 1024).
    pub d_ff: usize,
    /// Encoder blocks (default 4).
    pub encoder_layers: usize,
    /// Decoder blocks (default 4).
    pub decoder_layers: usize,
    /// Dropout probability (default 0.1), in `[0, 1)`.
    pub dropout: f64,
    /// Relative-position buckets (default 32); at least 4 so that the bidirectional half has an
    /// exact range.
    pub relative_buckets: usize,
    /// Distance at which relative positions saturate in the last bucket (default 128); must
    /// exceed `relative_buckets / 2`, where the log-spaced buckets start.
    pub relative_max_distance: usize,
    /// `false` (default): ReLU feed-forward `wo(relu(wi x))` (T5 v1.0, TIGER).
    /// `true`: gated-GELU `wo(gelu(wi_0 x) * wi_1 x)` (T5 v1.1).
    pub gated_ffn: bool,
    /// RMSNorm epsilon (default 1e-6, T5's).
    pub norm_eps: f64,
    /// Whole-word embeddings (P5): a table of this many word positions added to the encoder's
    /// token embeddings, indexed by each token's word number (0 = padding); 0 = none (default,
    /// TIGER). Left out of the written config when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub whole_word_ids: usize,
}

impl Default for T5Config {
    fn default() -> Self {
        T5Config {
            vocab_size: 0,
            d_model: 128,
            d_kv: 64,
            n_heads: 6,
            d_ff: 1024,
            encoder_layers: 4,
            decoder_layers: 4,
            dropout: 0.1,
            relative_buckets: 32,
            relative_max_distance: 128,
            gated_ffn: false,
            norm_eps: 1e-6,
            whole_word_ids: 0,
        }
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl T5Config {
    /// The default sizes over a vocabulary of `vocab_size` tokens.
    pub fn new(vocab_size: usize) -> Self {
        T5Config {
            vocab_size,
            ..T5Config::default()
        }
    }

    pub fn validate(&self) -> Result<(), GenerativeError> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("d_kv", self.d_kv),
            ("n_heads", self.n_heads),
            ("d_ff", self.d_ff),
            ("encoder_layers", self.encoder_layers),
            ("decoder_layers", self.decoder_layers),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(GenerativeError::config(
                    format!("model.t5.{name}"),
                    "must be positive (got 0)",
                ));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(GenerativeError::config(
                "model.t5.dropout",
                format!("= {} must be in [0, 1)", self.dropout),
            ));
        }
        if self.relative_buckets < 4 {
            return Err(GenerativeError::config(
                "model.t5.relative_buckets",
                format!("= {} must be at least 4", self.relative_buckets),
            ));
        }
        // The log-spaced buckets divide by ln(max_distance / max_exact), max_exact being
        // relative_buckets / 2 in the causal decoder (/ 4 in the encoder).
        if self.relative_max_distance <= self.relative_buckets / 2 {
            return Err(GenerativeError::config(
                "model.t5.relative_max_distance",
                format!(
                    "= {} must exceed model.t5.relative_buckets / 2 = {}",
                    self.relative_max_distance,
                    self.relative_buckets / 2
                ),
            ));
        }
        if self.whole_word_ids > 100_000 {
            return Err(GenerativeError::config(
                "model.t5.whole_word_ids",
                format!("= {} is above 100,000 word positions", self.whole_word_ids),
            ));
        }
        // `!(x > 0)` also catches NaN (Burn's RMSNorm panics on it).
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return Err(GenerativeError::config(
                "model.t5.norm_eps",
                format!("= {} must be a positive number", self.norm_eps),
            ));
        }
        Ok(())
    }

    /// [`Self::init`] with the backend RNG seeded under the one init lock (see
    /// [`genrec_kernels::nn::init_seeded`]).
    ///
    /// # Panics
    /// If the configuration is invalid (see [`Self::validate`]).
    pub fn init_seeded<B: Backend>(&self, seed: u64, device: &B::Device) -> T5<B> {
        genrec_kernels::nn::init_seeded(seed, device, || self.init(device))
    }

    /// Builds the model with T5's initialisation (transformers' `_init_weights`, factor 1):
    /// embedding N(0, 1); query N(0, (d_model·d_kv)^-½) — the attention scale folded in —, key and
    /// value N(0, d_model^-½), attention output N(0, (n_heads·d_kv)^-½); FFN input N(0, d_model^-½),
    /// output N(0, d_ff^-½); relative bias N(0, d_model^-½); norms 1.
    ///
    /// # Panics
    /// If the configuration is invalid (see [`Self::validate`]).
    pub fn init<B: Backend>(&self, device: &B::Device) -> T5<B> {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let d = self.d_model as f64;
        let relative_bias = |bidirectional| RelativeBias {
            table: EmbeddingConfig::new(self.relative_buckets, self.n_heads)
                .with_initializer(normal(d.powf(-0.5)))
                .init(device),
            bidirectional,
            max_distance: self.relative_max_distance,
        };
        T5 {
            shared: EmbeddingConfig::new(self.vocab_size, self.d_model)
                .with_initializer(normal(1.0))
                .init(device),
            whole_word: (self.whole_word_ids > 0).then(|| {
                EmbeddingConfig::new(self.whole_word_ids, self.d_model)
                    .with_initializer(normal(1.0))
                    .init(device)
            }),
            encoder_bias: relative_bias(true),
            encoder: (0..self.encoder_layers)
                .map(|_| EncoderBlock {
                    attn_norm: self.norm(device),
                    attn: self.attention(device),
                    ffn: self.feed_forward(device),
                    dropout: self.dropout,
                })
                .collect(),
            encoder_norm: self.norm(device),
            decoder_bias: relative_bias(false),
            decoder: (0..self.decoder_layers)
                .map(|_| DecoderBlock {
                    self_norm: self.norm(device),
                    self_attn: self.attention(device),
                    cross_norm: self.norm(device),
                    cross_attn: self.attention(device),
                    ffn: self.feed_forward(device),
                    dropout: self.dropout,
                })
                .collect(),
            decoder_norm: self.norm(device),
            dropout: self.dropout,
            d_model: self.d_model,
        }
    }

    fn norm<B: Backend>(&self, device: &B::Device) -> RmsNorm<B> {
        RmsNormConfig::new(self.d_model)
            .with_epsilon(self.norm_eps)
            .init(device)
    }

    fn attention<B: Backend>(&self, device: &B::Device) -> Attention<B> {
        let (d, inner) = (self.d_model, self.n_heads * self.d_kv);
        Attention {
            q: linear(d, inner, ((d * self.d_kv) as f64).powf(-0.5), device),
            k: linear(d, inner, (d as f64).powf(-0.5), device),
            v: linear(d, inner, (d as f64).powf(-0.5), device),
            o: linear(inner, d, (inner as f64).powf(-0.5), device),
            dropout: self.dropout,
            n_heads: self.n_heads,
            d_kv: self.d_kv,
        }
    }

    fn feed_forward<B: Backend>(&self, device: &B::Device) -> FeedForward<B> {
        let (d, ff) = (self.d_model, self.d_ff);
        FeedForward {
            norm: self.norm(device),
            wi: linear(d, ff, (d as f64).powf(-0.5), device),
            wi_linear: self.gated_ffn.then(|| linear(d, ff, (d as f64).powf(-0.5), device)),
            wo: linear(ff, d, (ff as f64).powf(-0.5), device),
            dropout: self.dropout,
        }
    }
}

fn normal(std: f64) -> Initializer {
    Initializer::Normal { mean: 0.0, std }
}

/// T5 has no biases anywhere.
fn linear<B: Backend>(d_in: usize, d_out: usize, std: f64, device: &B::Device) -> Linear<B> {
    LinearConfig::new(d_in, d_out)
        .with_bias(false)
        .with_initializer(normal(std))
        .init(device)
}

/// T5's relative-position bucket of `relative = key_position - query_position` (transformers'
/// `_relative_position_bucket`, mesh-tensorflow's formula). Half the buckets (a quarter each
/// side when bidirectional) hold exact small distances; the rest are log-spaced up to
/// `max_distance`, beyond which everything shares the last bucket. Causal mode maps every future
/// key (`relative > 0`) to bucket 0; those keys are masked anyway.
fn relative_position_bucket(relative: i64, bidirectional: bool, num_buckets: usize, max_distance: usize) -> usize {
    let mut num_buckets = num_buckets;
    let mut bucket = 0;
    let distance = if bidirectional {
        num_buckets /= 2;
        if relative > 0 {
            bucket = num_buckets;
        }
        relative.unsigned_abs() as usize
    } else {
        (-relative).max(0) as usize
    };
    let max_exact = num_buckets / 2;
    if distance < max_exact {
        return bucket + distance;
    }
    let log_ratio = (distance as f64 / max_exact as f64).ln() / (max_distance as f64 / max_exact as f64).ln();
    // Truncation, as torch's `.long()`; log_ratio ≥ 0 here.
    let large = max_exact + (log_ratio * (num_buckets - max_exact) as f64) as usize;
    bucket + large.min(num_buckets - 1)
}

/// Learned per-head bias for each relative-position bucket; one per stack, owned by its first
/// block in T5 and added to the attention scores of every block.
#[derive(Module, Debug)]
struct RelativeBias<B: Backend> {
    /// `[buckets, n_heads]`
    table: Embedding<B>,
    bidirectional: bool,
    max_distance: usize,
}

impl<B: Backend> RelativeBias<B> {
    /// # Shapes
    /// - output: `[1, n_heads, queries.len(), keys]`, query positions `queries` against key
    ///   positions `0..keys`
    fn forward(&self, queries: Range<usize>, keys: usize, device: &B::Device) -> Tensor<B, 4> {
        let queries: Vec<usize> = queries.collect();
        let keys: Vec<usize> = (0..keys).collect();
        self.at(&queries, &keys, device)
    }

    /// As [`Self::forward`] for explicit positions (SETRec: every token of an item shares its
    /// item's position).
    ///
    /// # Shapes
    /// - output: `[1, n_heads, queries.len(), keys.len()]`
    fn at(&self, queries: &[usize], keys: &[usize], device: &B::Device) -> Tensor<B, 4> {
        let n_buckets = self.table.weight.dims()[0];
        let buckets: Vec<i64> = queries
            .iter()
            .flat_map(|&q| {
                keys.iter().map(move |&k| {
                    relative_position_bucket(k as i64 - q as i64, self.bidirectional, n_buckets, self.max_distance)
                        as i64
                })
            })
            .collect();
        let buckets = Tensor::<B, 2, Int>::from_data(TensorData::new(buckets, [queries.len(), keys.len()]), device);
        // [queries, keys, heads] -> [1, heads, queries, keys]
        self.table.forward(buckets).permute([2, 0, 1]).unsqueeze()
    }
}

/// Multi-head attention without biases or score scaling (T5 folds the scale into the query init).
#[derive(Module, Debug)]
struct Attention<B: Backend> {
    q: Linear<B>,
    k: Linear<B>,
    v: Linear<B>,
    o: Linear<B>,
    /// Dropout probability (masks drawn on the host, see [`drop_out`]).
    dropout: f64,
    n_heads: usize,
    d_kv: usize,
}

impl<B: Backend> Attention<B> {
    /// `[n, t, n_heads·d_kv]` -> `[n, n_heads, t, d_kv]`
    fn split(&self, x: Tensor<B, 3>) -> Tensor<B, 4> {
        let [n, t, _] = x.dims();
        x.reshape([n, t, self.n_heads, self.d_kv]).swap_dims(1, 2)
    }

    /// `[n, n_heads, t, d_kv]` -> `[n, t, d_model]` (heads merged, output projection applied)
    fn merge(&self, x: Tensor<B, 4>) -> Tensor<B, 3> {
        let [n, h, t, dk] = x.dims();
        linear_rows(&self.o, x.swap_dims(1, 2).reshape([n, t, h * dk]))
    }

    /// `softmax(q kᵀ + bias) v`, unscaled.
    ///
    /// # Shapes
    /// - `q`: `[n, heads, tq, d_kv]`; `k`, `v`: `[n, heads, tk, d_kv]`; `bias` broadcastable to
    ///   `[n, heads, tq, tk]`; output `[n, heads, tq, d_kv]`
    fn attend(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        bias: Tensor<B, 4>,
        rng: &mut Option<&mut ChaCha8Rng>,
    ) -> Tensor<B, 4> {
        let weights = softmax(q.matmul(k.swap_dims(2, 3)) + bias, 3);
        drop_out(weights, self.dropout, rng.as_deref_mut()).matmul(v)
    }

    /// Self-attention of `x` over itself, or, with `cache`, over the cached keys/values followed
    /// by this call's (which are appended to the cache).
    ///
    /// # Shapes
    /// - `x`: `[n, t, d_model]`; `bias` broadcastable to `[n, heads, t, past + t]`; output
    ///   `[n, t, d_model]`; cached K/V `[n, heads, past, d_kv]`
    fn self_attention(
        &self,
        x: Tensor<B, 3>,
        bias: Tensor<B, 4>,
        cache: Option<&mut Option<Kv<B>>>,
        rng: &mut Option<&mut ChaCha8Rng>,
    ) -> Tensor<B, 3> {
        let q = self.split(linear_rows(&self.q, x.clone()));
        let mut k = self.split(linear_rows(&self.k, x.clone()));
        let mut v = self.split(linear_rows(&self.v, x));
        if let Some(cache) = cache {
            if let Some(past) = cache.take() {
                k = Tensor::cat(vec![past.k, k], 2);
                v = Tensor::cat(vec![past.v, v], 2);
            }
            *cache = Some(Kv {
                k: k.clone(),
                v: v.clone(),
            });
        }
        self.merge(self.attend(q, k, v, bias, rng))
    }
}

/// Feed-forward sub-layer with its pre-norm: `wo(drop(relu(wi x)))`, or gated
/// `wo(drop(gelu(wi x) * wi_linear x))` (HF's `wi_0`, `wi_1`).
#[derive(Module, Debug)]
struct FeedForward<B: Backend> {
    norm: RmsNorm<B>,
    wi: Linear<B>,
    wi_linear: Option<Linear<B>>,
    wo: Linear<B>,
    /// Dropout probability (masks drawn on the host, see [`drop_out`]).
    dropout: f64,
}

impl<B: Backend> FeedForward<B> {
    /// Output only (the caller adds the residual). `[n, t, d_model]` -> `[n, t, d_model]`
    fn forward(&self, x: Tensor<B, 3>, rng: &mut Option<&mut ChaCha8Rng>) -> Tensor<B, 3> {
        let x = self.norm.forward(x);
        let hidden = match &self.wi_linear {
            None => relu(linear_rows(&self.wi, x)),
            Some(wi_linear) => gelu_approximate(linear_rows(&self.wi, x.clone())) * linear_rows(wi_linear, x),
        };
        linear_rows(&self.wo, drop_out(hidden, self.dropout, rng.as_deref_mut()))
    }
}

#[derive(Module, Debug)]
struct EncoderBlock<B: Backend> {
    attn_norm: RmsNorm<B>,
    attn: Attention<B>,
    ffn: FeedForward<B>,
    /// Dropout probability (masks drawn on the host, see [`drop_out`]).
    dropout: f64,
}

impl<B: Backend> EncoderBlock<B> {
    /// # Shapes
    /// - `x`: `[batch, src, d_model]`; `bias`: `[batch, heads, src, src]`; output like `x`
    fn forward(&self, x: Tensor<B, 3>, bias: Tensor<B, 4>, rng: &mut Option<&mut ChaCha8Rng>) -> Tensor<B, 3> {
        let attended = self
            .attn
            .self_attention(self.attn_norm.forward(x.clone()), bias, None, rng);
        let x = x + drop_out(attended, self.dropout, rng.as_deref_mut());
        x.clone() + drop_out(self.ffn.forward(x, rng), self.dropout, rng.as_deref_mut())
    }
}

/// Cached keys and values of one attention layer.
#[derive(Clone, Debug)]
struct Kv<B: Backend> {
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
}

#[derive(Module, Debug)]
struct DecoderBlock<B: Backend> {
    self_norm: RmsNorm<B>,
    self_attn: Attention<B>,
    cross_norm: RmsNorm<B>,
    cross_attn: Attention<B>,
    ffn: FeedForward<B>,
    /// Dropout probability (masks drawn on the host, see [`drop_out`]).
    dropout: f64,
}

impl<B: Backend> DecoderBlock<B> {
    /// Without `cache` (teacher forcing) the `n` rows of `x` are positions of one sequence per
    /// user. With `cache` (incremental) they are `n` beams, each at the same new position, and
    /// self-attention runs per beam against its own cache row; cross-attention is the same in both
    /// cases because every row attends to its user's memory independently of the others.
    ///
    /// # Shapes
    /// - `x`: `[batch, n, d_model]`; `self_bias`: `[1 or batch, heads, n, n]` without cache,
    ///   `[1, heads, 1, past + 1]` with it; `cross`: K/V `[batch, heads, src, d_kv]`;
    ///   `cross_bias`: `[batch, heads or 1, n, src]`; cache K/V `[batch·n, heads, past, d_kv]`;
    ///   output like `x`
    fn forward(
        &self,
        x: Tensor<B, 3>,
        self_bias: Tensor<B, 4>,
        cross: &Kv<B>,
        cross_bias: Tensor<B, 4>,
        cache: Option<&mut Option<Kv<B>>>,
        rng: &mut Option<&mut ChaCha8Rng>,
    ) -> Tensor<B, 3> {
        let [batch, n, d] = x.dims();
        let normed = self.self_norm.forward(x.clone());
        let attended = match cache {
            None => self.self_attn.self_attention(normed, self_bias, None, rng),
            Some(cache) => self
                .self_attn
                .self_attention(normed.reshape([batch * n, 1, d]), self_bias, Some(cache), rng)
                .reshape([batch, n, d]),
        };
        let x = x + drop_out(attended, self.dropout, rng.as_deref_mut());
        // A user's rows form the query axis against that user's memory: [batch, heads, n, d_kv].
        let q = self
            .cross_attn
            .split(linear_rows(&self.cross_attn.q, self.cross_norm.forward(x.clone())));
        let attended = self
            .cross_attn
            .attend(q, cross.k.clone(), cross.v.clone(), cross_bias, rng);
        let x = x + drop_out(self.cross_attn.merge(attended), self.dropout, rng.as_deref_mut());
        x.clone() + drop_out(self.ffn.forward(x, rng), self.dropout, rng.as_deref_mut())
    }
}

/// Cross-attention keys and values of every decoder layer for a batch of users, and the padding
/// bias of their encoder memory; computed once per user by [`T5::cross_cache`].
#[derive(Clone, Debug)]
pub struct CrossCache<B: Backend> {
    /// Per decoder layer, K and V `[batch, heads, src, d_kv]`.
    layers: Vec<Kv<B>>,
    /// `[batch, 1, 1, src]`: 0 for real keys, `-1e9` for padding.
    pad_bias: Tensor<B, 4>,
}

/// Decoder self-attention keys and values of every hypothesis decoded so far.
#[derive(Clone, Debug)]
pub struct SelfCache<B: Backend> {
    /// Per decoder layer, K and V `[batch·beams, heads, len, d_kv]` (row `user·beams + beam`);
    /// `None` before the first step.
    layers: Vec<Option<Kv<B>>>,
    len: usize,
}

impl<B: Backend> SelfCache<B> {
    /// An empty cache for a decoder of `n_layers` blocks ([`T5::decoder_layers`]).
    pub fn new(n_layers: usize) -> Self {
        SelfCache {
            layers: vec![None; n_layers],
            len: 0,
        }
    }

    /// Decoder positions cached so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Re-orders the hypotheses after a beam-search step: new beam `j` of user `u` continues old
    /// beam `parents[u, j]` of the same user. The number of beams may change (the first step goes
    /// from 1 to k).
    ///
    /// # Shapes
    /// - `parents`: `[batch, new_beams]`, values in `0..old_beams`
    pub fn reorder(&mut self, parents: Tensor<B, 2, Int>) {
        let [batch, new_beams] = parents.dims();
        let device = parents.device();
        for kv in self.layers.iter_mut().flatten() {
            let rows = kv.k.dims()[0];
            assert_eq!(
                rows % batch,
                0,
                "cache has {rows} rows, not a multiple of batch {batch}"
            );
            let old_beams = rows / batch;
            // Row of old beam p of user u: u·old_beams + p.
            let offsets = Tensor::<B, 1, Int>::arange(0..batch as i64, &device)
                .mul_scalar(old_beams as i64)
                .reshape([batch, 1]);
            let rows = (parents.clone() + offsets).reshape([batch * new_beams]);
            kv.k = kv.k.clone().select(0, rows.clone());
            kv.v = kv.v.clone().select(0, rows);
        }
    }
}

/// The model; build it with [`T5Config::init`] or [`T5Config::init_seeded`].
#[derive(Module, Debug)]
pub struct T5<B: Backend> {
    /// `[vocab, d_model]`, input embedding of both stacks and (transposed) the LM head.
    shared: Embedding<B>,
    /// `[word positions, d_model]`, added to the encoder input by word number (P5); `None` = off.
    whole_word: Option<Embedding<B>>,
    encoder_bias: RelativeBias<B>,
    encoder: Vec<EncoderBlock<B>>,
    encoder_norm: RmsNorm<B>,
    decoder_bias: RelativeBias<B>,
    decoder: Vec<DecoderBlock<B>>,
    decoder_norm: RmsNorm<B>,
    /// Dropout probability (masks drawn on the host, see [`drop_out`]).
    dropout: f64,
    d_model: usize,
}

impl<B: Backend> T5<B> {
    pub fn decoder_layers(&self) -> usize {
        self.decoder.len()
    }

    pub fn vocab_size(&self) -> usize {
        self.shared.weight.dims()[0]
    }

    /// Encoder memory of a batch of token sequences; padding keys are masked out of attention.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, src]`; `pad`: `[batch, src]`, `true` = padding
    /// - output: `[batch, src, d_model]`
    pub fn encode(&self, tokens: Tensor<B, 2, Int>, pad: Tensor<B, 2, Bool>) -> Tensor<B, 3> {
        self.encode_with(tokens, pad, &mut None)
    }

    /// [`Self::encode`] with dropout masks drawn from `rng` (training); `None` = no dropout.
    pub fn encode_with(
        &self,
        tokens: Tensor<B, 2, Int>,
        pad: Tensor<B, 2, Bool>,
        rng: &mut Option<&mut ChaCha8Rng>,
    ) -> Tensor<B, 3> {
        self.encode_words_with(tokens, None, pad, rng)
    }

    /// [`Self::encode_with`] with each token's whole-word number (P5), whose embedding is added
    /// to the token's when the model has a whole-word table (ignored otherwise).
    ///
    /// # Shapes
    /// - `tokens`, `words`, `pad`: `[batch, src]`; output `[batch, src, d_model]`
    pub fn encode_words_with(
        &self,
        tokens: Tensor<B, 2, Int>,
        words: Option<Tensor<B, 2, Int>>,
        pad: Tensor<B, 2, Bool>,
        rng: &mut Option<&mut ChaCha8Rng>,
    ) -> Tensor<B, 3> {
        let [_, src] = tokens.dims();
        let mut x = self.shared.forward(tokens);
        if let (Some(table), Some(words)) = (&self.whole_word, words) {
            x = x + table.forward(words);
        }
        let positions: Vec<usize> = (0..src).collect();
        self.encode_embeddings_with(x, &positions, None, pad, rng)
    }

    /// The encoder over input vectors instead of tokens (SETRec's item token sets), at explicit
    /// positions (tokens may share one), with an optional extra additive attention bias (a
    /// sparse mask: 0 = attend, [`MASKED`] = not).
    ///
    /// # Shapes
    /// - `x`: `[batch, src, d_model]`; `positions`: `src` entries; `mask`: `[1, 1, src, src]`
    ///   (query row, key column); `pad`: `[batch, src]`, `true` = padding
    /// - output: `[batch, src, d_model]`
    pub fn encode_embeddings_with(
        &self,
        x: Tensor<B, 3>,
        positions: &[usize],
        mask: Option<Tensor<B, 4>>,
        pad: Tensor<B, 2, Bool>,
        rng: &mut Option<&mut ChaCha8Rng>,
    ) -> Tensor<B, 3> {
        let [_, src, _] = x.dims();
        assert_eq!(positions.len(), src, "one position per encoder input");
        let device = x.device();
        let mut relative = self.encoder_bias.at(positions, positions, &device);
        if let Some(mask) = mask {
            relative = relative + mask;
        }
        let heads = relative.dims()[1];
        let bias = relative + full_pad_bias(pad_bias(pad), heads, src);
        let mut x = drop_out(x, self.dropout, rng.as_deref_mut());
        for block in &self.encoder {
            x = block.forward(x, bias.clone(), rng);
        }
        drop_out(self.encoder_norm.forward(x), self.dropout, rng.as_deref_mut())
    }

    /// The decoder over `n` query vectors decoded at once (SETRec's simultaneous generation):
    /// every query sits at position 0 and attends to itself only (a hard mask, so the outputs
    /// are independent of each other's inputs), and to the whole encoder memory. Returns the final
    /// hidden states after the decoder's norm (no LM head).
    ///
    /// # Shapes
    /// - `memory`: `[batch, src, d_model]`; `pad`: `[batch, src]`; `queries`: `[batch, n, d_model]`
    /// - output: `[batch, n, d_model]`
    pub fn decode_queries_with(
        &self,
        memory: Tensor<B, 3>,
        pad: Tensor<B, 2, Bool>,
        queries: Tensor<B, 3>,
        rng: &mut Option<&mut ChaCha8Rng>,
    ) -> Tensor<B, 3> {
        let cross = self.cross_cache(memory, pad);
        let [_, n, _] = queries.dims();
        let device = queries.device();
        let others: Vec<f32> = (0..n)
            .flat_map(|q| (0..n).map(move |k| if k == q { 0.0 } else { MASKED }))
            .collect();
        let others = Tensor::<B, 4>::from_data(TensorData::new(others, [1, 1, n, n]), &device);
        let self_bias = self.decoder_bias.at(&vec![0; n], &vec![0; n], &device) + others;
        let cross_bias = full_pad_bias(cross.pad_bias.clone(), self.cross_heads(), n);
        let mut x = drop_out(queries, self.dropout, rng.as_deref_mut());
        for (block, kv) in self.decoder.iter().zip(&cross.layers) {
            x = block.forward(x, self_bias.clone(), kv, cross_bias.clone(), None, rng);
        }
        drop_out(self.decoder_norm.forward(x), self.dropout, rng.as_deref_mut())
    }

    /// Model width.
    pub fn d_model(&self) -> usize {
        self.d_model
    }

    /// Teacher-forced decoder: logits of the next token at every position of `dec_tokens`
    /// (the decoder input, start token first), each position seeing only itself and earlier ones.
    ///
    /// # Shapes
    /// - `memory`: `[batch, src, d_model]`; `pad`: `[batch, src]`, `true` = padding;
    ///   `dec_tokens`: `[batch, tgt]`
    /// - output: `[batch, tgt, vocab]`
    pub fn decode(&self, memory: Tensor<B, 3>, pad: Tensor<B, 2, Bool>, dec_tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.decode_with(memory, pad, dec_tokens, &mut None)
    }

    /// [`Self::decode`] with dropout masks drawn from `rng` (training); `None` = no dropout.
    pub fn decode_with(
        &self,
        memory: Tensor<B, 3>,
        pad: Tensor<B, 2, Bool>,
        dec_tokens: Tensor<B, 2, Int>,
        rng: &mut Option<&mut ChaCha8Rng>,
    ) -> Tensor<B, 3> {
        let cross = self.cross_cache(memory, pad);
        let [_, tgt] = dec_tokens.dims();
        let device = dec_tokens.device();
        let future: Vec<f32> = (0..tgt)
            .flat_map(|q| (0..tgt).map(move |k| if k > q { MASKED } else { 0.0 }))
            .collect();
        let future = Tensor::<B, 4>::from_data(TensorData::new(future, [1, 1, tgt, tgt]), &device);
        let self_bias = self.decoder_bias.forward(0..tgt, tgt, &device) + future;
        let cross_bias = full_pad_bias(cross.pad_bias.clone(), self.cross_heads(), tgt);
        let mut x = drop_out(self.shared.forward(dec_tokens), self.dropout, rng.as_deref_mut());
        for (block, kv) in self.decoder.iter().zip(&cross.layers) {
            x = block.forward(x, self_bias.clone(), kv, cross_bias.clone(), None, rng);
        }
        self.logits(x, rng)
    }

    /// Cross-attention keys and values of every decoder layer, computed once per user.
    ///
    /// # Shapes
    /// - `memory`: `[batch, src, d_model]`; `pad`: `[batch, src]`, `true` = padding
    pub fn cross_cache(&self, memory: Tensor<B, 3>, pad: Tensor<B, 2, Bool>) -> CrossCache<B> {
        let layers = self
            .decoder
            .iter()
            .map(|block| Kv {
                k: block.cross_attn.split(linear_rows(&block.cross_attn.k, memory.clone())),
                v: block.cross_attn.split(linear_rows(&block.cross_attn.v, memory.clone())),
            })
            .collect();
        CrossCache {
            layers,
            pad_bias: pad_bias(pad),
        }
    }

    /// One incremental decoder step for `beams` hypotheses per user, all at decoder position
    /// `cache.len()` (the first call passes the start token, usually with one beam). Appends this
    /// step's self-attention keys/values to `cache`; after a beam-search step call
    /// [`SelfCache::reorder`] before the next one. Cross-attention folds a user's beams into the
    /// query axis, so the encoder memory is never repeated per beam.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, beams]`
    /// - output: `[batch, beams, vocab]`
    ///
    /// # Panics
    /// If `cache` was made for another number of layers or holds another number of hypotheses.
    pub fn decode_step(
        &self,
        tokens: Tensor<B, 2, Int>,
        cross: &CrossCache<B>,
        cache: &mut SelfCache<B>,
    ) -> Tensor<B, 3> {
        assert_eq!(
            cache.layers.len(),
            self.decoder.len(),
            "SelfCache built for another decoder depth"
        );
        let [batch, beams] = tokens.dims();
        if let Some(Some(kv)) = cache.layers.first() {
            let rows = kv.k.dims()[0];
            assert_eq!(
                rows,
                batch * beams,
                "SelfCache holds {rows} hypotheses, the step {batch}×{beams}: reorder it first"
            );
        }
        // Decoding is inference: no dropout.
        let rng = &mut None;
        let t = cache.len;
        let device = tokens.device();
        // Query position t against keys 0..=t: no future key exists, so no causal mask.
        let self_bias = self.decoder_bias.forward(t..t + 1, t + 1, &device);
        let cross_bias = full_pad_bias(cross.pad_bias.clone(), self.cross_heads(), beams);
        let mut x = drop_out(self.shared.forward(tokens), self.dropout, rng.as_deref_mut());
        for ((block, kv), slot) in self.decoder.iter().zip(&cross.layers).zip(&mut cache.layers) {
            x = block.forward(x, self_bias.clone(), kv, cross_bias.clone(), Some(slot), rng);
        }
        cache.len += 1;
        self.logits(x, rng)
    }

    /// Heads of the decoder's cross-attention (1 for a decoder without blocks).
    fn cross_heads(&self) -> usize {
        self.decoder.first().map_or(1, |block| block.cross_attn.n_heads)
    }

    /// Tied LM head: `(norm(x) · d_model^-½) Eᵀ`; the rescaling keeps the N(0, 1) embedding from
    /// producing logits √d_model too large. `[batch, n, d_model]` -> `[batch, n, vocab]`
    fn logits(&self, x: Tensor<B, 3>, rng: &mut Option<&mut ChaCha8Rng>) -> Tensor<B, 3> {
        let [batch, n, d] = x.dims();
        let x =
            drop_out(self.decoder_norm.forward(x), self.dropout, rng.as_deref_mut()) * (self.d_model as f64).powf(-0.5);
        let embedding = self.shared.weight.val();
        let vocab = embedding.dims()[0];
        x.reshape([batch * n, d])
            .matmul(embedding.transpose())
            .reshape([batch, n, vocab])
    }
}

/// `[batch, src]` padding flags -> `[batch, 1, 1, src]` additive key bias.
fn pad_bias<B: Backend>(pad: Tensor<B, 2, Bool>) -> Tensor<B, 4> {
    let [batch, src] = pad.dims();
    Tensor::<B, 2>::zeros([batch, src], &pad.device())
        .mask_fill(pad, MASKED)
        .reshape([batch, 1, 1, src])
}

/// A `[batch, 1, 1, src]` padding bias ready to add to `[batch, heads, queries, src]` scores
/// ([`bias_for_scores`]: repeated once per forward on the CPU backends).
fn full_pad_bias<B: Backend>(pad_bias: Tensor<B, 4>, heads: usize, queries: usize) -> Tensor<B, 4> {
    let [batch, _, _, src] = pad_bias.dims();
    bias_for_scores(pad_bias, [batch, heads, queries, src])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;
    use burn::optim::{AdamConfig, GradientsParams, Optimizer};
    use burn::tensor::activation::log_softmax;
    type B = burn::backend::Flex;

    fn small(vocab: usize) -> T5Config {
        T5Config {
            d_model: 32,
            d_kv: 8,
            n_heads: 4,
            d_ff: 64,
            encoder_layers: 2,
            decoder_layers: 3,
            dropout: 0.0,
            ..T5Config::new(vocab)
        }
    }

    fn ints(rows: &[&[i64]]) -> Tensor<B, 2, Int> {
        let data: Vec<i64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_data(TensorData::new(data, [rows.len(), rows[0].len()]), &Default::default())
    }

    fn bools(rows: &[&[bool]]) -> Tensor<B, 2, Bool> {
        let data: Vec<bool> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_data(TensorData::new(data, [rows.len(), rows[0].len()]), &Default::default())
    }

    fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.to_data().to_vec::<f32>().unwrap()
    }

    fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn relative_position_buckets_by_hand() {
        let bucket = |rel, bidirectional| relative_position_bucket(rel, bidirectional, 32, 128);
        // Bidirectional: 16 buckets per side (keys after the query start at 16), max_exact = 8,
        // log range: 8 + ⌊ln(n/8) / ln(128/8) · 8⌋ = 8 + ⌊2 log2(n/8)⌋, capped at 15.
        assert_eq!(bucket(0, true), 0);
        assert_eq!(bucket(-1, true), 1);
        assert_eq!(bucket(1, true), 17);
        assert_eq!(bucket(-7, true), 7);
        assert_eq!(bucket(7, true), 23);
        assert_eq!(bucket(-8, true), 8); // 8 + ⌊2 log2 1⌋ = 8
        assert_eq!(bucket(-12, true), 9); // 8 + ⌊2 · 0.585⌋ = 9
        assert_eq!(bucket(-16, true), 10); // 8 + 2 · 1
        assert_eq!(bucket(32, true), 28); // 16 + 8 + 2 · 2
        assert_eq!(bucket(-127, true), 15); // 8 + ⌊2 · 3.989⌋ = 15
        assert_eq!(bucket(-128, true), 15); // 8 + 8 = 16, capped at 15
        assert_eq!(bucket(1000, true), 31); // 16 + 15

        // Causal: future keys → 0; 32 buckets, max_exact = 16,
        // log range: 16 + ⌊ln(n/16) / ln(8) · 16⌋, capped at 31.
        assert_eq!(bucket(0, false), 0);
        assert_eq!(bucket(5, false), 0);
        assert_eq!(bucket(-3, false), 3);
        assert_eq!(bucket(-15, false), 15);
        assert_eq!(bucket(-16, false), 16);
        assert_eq!(bucket(-32, false), 21); // 16 + ⌊16/3⌋ = 16 + 5
        assert_eq!(bucket(-64, false), 26); // 16 + ⌊32/3⌋ = 16 + 10
        assert_eq!(bucket(-100, false), 30); // 16 + ⌊16 · ln 6.25 / ln 8 = 14.10⌋
        assert_eq!(bucket(-128, false), 31); // 16 + 16 = 32, capped
        assert_eq!(bucket(-500, false), 31);
    }

    #[test]
    fn encoder_ignores_padded_tokens() {
        let device = Default::default();
        let model = small(20).init_seeded::<B>(1, &device);
        let pad = bools(&[&[false; 6], &[false, false, false, false, true, true]]);
        let a = model.encode(ints(&[&[3, 4, 5, 6, 7, 8], &[9, 10, 11, 12, 0, 0]]), pad.clone());
        let b = model.encode(ints(&[&[3, 4, 5, 6, 7, 8], &[9, 10, 11, 12, 13, 19]]), pad.clone());
        let real = |t: Tensor<B, 3>| values(t.slice([0..2, 0..4, 0..32]));
        assert!(max_abs_diff(&real(a.clone()), &real(b)) < 1e-6);
        // …while a real token does change its neighbours.
        let c = model.encode(ints(&[&[3, 4, 5, 6, 7, 8], &[9, 10, 11, 13, 0, 0]]), pad);
        let first = |t: Tensor<B, 3>| values(t.slice([1..2, 0..1, 0..32]));
        assert!(max_abs_diff(&first(a), &first(c)) > 1e-3);
    }

    #[test]
    fn decoder_is_causal() {
        let device = Default::default();
        let model = small(20).init_seeded::<B>(2, &device);
        let pad = bools(&[&[false; 5]]);
        let memory = model.encode(ints(&[&[3, 4, 5, 6, 7]]), pad.clone());
        let a = model.decode(memory.clone(), pad.clone(), ints(&[&[0, 5, 6, 7]]));
        let b = model.decode(memory, pad, ints(&[&[0, 5, 12, 7]]));
        let at = |t: Tensor<B, 3>, p: Range<usize>| values(t.slice([0..1, p, 0..20]));
        assert!(max_abs_diff(&at(a.clone(), 0..2), &at(b.clone(), 0..2)) < 1e-6);
        assert!(max_abs_diff(&at(a, 2..4), &at(b, 2..4)) > 1e-3);
    }

    /// Beam-search-shaped incremental decoding equals teacher forcing of the re-assembled
    /// sequences, through a 1 → 3 beam expansion and two reorders that permute and duplicate.
    #[test]
    fn incremental_decoding_matches_teacher_forcing() {
        let device = Default::default();
        let vocab = 24;
        // Few buckets, so the decoder's 4 positions reach the log-spaced ones (causal: exact
        // distances 0, 1; log-spaced 2, 3).
        let model = T5Config {
            relative_buckets: 4,
            relative_max_distance: 8,
            ..small(vocab)
        }
        .init_seeded::<B>(3, &device);
        let (batch, beams) = (2, 3);
        let pad = bools(&[&[false; 6], &[false, false, false, false, true, true]]);
        let memory = model.encode(ints(&[&[3, 4, 5, 6, 7, 8], &[9, 10, 11, 12, 0, 0]]), pad.clone());
        let cross = model.cross_cache(memory.clone(), pad.clone());
        let mut cache = SelfCache::new(model.decoder_layers());

        // (tokens of this step, parents applied after it); step 0 is the start token, one beam.
        type Rows<'a> = &'a [&'a [i64]];
        let steps: [(Rows, Option<Rows>); 4] = [
            (&[&[0], &[0]], Some(&[&[0, 0, 0], &[0, 0, 0]])),
            (&[&[5, 6, 7], &[8, 9, 10]], Some(&[&[2, 0, 0], &[1, 1, 2]])),
            (&[&[11, 12, 13], &[14, 15, 16]], Some(&[&[0, 2, 1], &[2, 2, 0]])),
            (&[&[17, 18, 19], &[4, 5, 6]], None),
        ];
        // Host copy of every hypothesis' decoder input, re-assembled with the same parents.
        let mut seqs: Vec<Vec<Vec<i64>>> = vec![vec![vec![]]; batch];
        for (t, (tokens, parents)) in steps.iter().enumerate() {
            let n_beams = tokens[0].len();
            for (user, row) in tokens.iter().enumerate() {
                for (beam, &tok) in row.iter().enumerate() {
                    seqs[user][beam].push(tok);
                }
            }
            let step = model.decode_step(ints(tokens), &cross, &mut cache);
            assert_eq!(step.dims(), [batch, n_beams, vocab]);
            assert_eq!(cache.len(), t + 1);

            // Teacher forcing: one row per hypothesis, memory repeated per beam.
            let rows: Vec<&[i64]> = seqs.iter().flat_map(|u| u.iter().map(|s| s.as_slice())).collect();
            let user_of_row: Vec<i64> = (0..batch as i64)
                .flat_map(|u| std::iter::repeat_n(u, n_beams))
                .collect();
            let user_of_row = Tensor::<B, 1, Int>::from_data(TensorData::new(user_of_row, [batch * n_beams]), &device);
            let full = model.decode(
                memory.clone().select(0, user_of_row.clone()),
                pad.clone().select(0, user_of_row),
                ints(&rows),
            );
            let last = full.slice([0..batch * n_beams, t..t + 1, 0..vocab]);
            let diff = max_abs_diff(&values(step), &values(last));
            assert!(diff < 1e-4, "step {t}: max |incremental - teacher forced| = {diff}");

            if let Some(parents) = parents {
                cache.reorder(ints(parents));
                seqs = seqs
                    .iter()
                    .zip(parents.iter())
                    .map(|(user, ps)| ps.iter().map(|&p| user[p as usize].clone()).collect())
                    .collect();
            }
        }
        assert_eq!(beams, seqs[0].len());
    }

    #[test]
    fn validation_names_the_field() {
        assert!(T5Config::new(10).validate().is_ok());
        let err = T5Config {
            n_heads: 0,
            ..T5Config::new(10)
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.contains("model.t5.n_heads"), "{err}");
        let err = T5Config::new(0).validate().unwrap_err().to_string();
        assert!(err.contains("model.t5.vocab_size"), "{err}");
        let err = T5Config {
            dropout: 1.0,
            ..T5Config::new(10)
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.contains("model.t5.dropout"), "{err}");
        let err = T5Config {
            relative_max_distance: 16,
            ..T5Config::new(10)
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.contains("model.t5.relative_max_distance"), "{err}");
    }

    /// 30 Adam steps on a fixed copy batch (decoder reproduces the source) at least halve the
    /// cross-entropy, with dropout and the gated FFN switched on.
    #[test]
    fn learns_to_copy() {
        type A = Autodiff<B>;
        let device = Default::default();
        let vocab = 12;
        let mut model = T5Config {
            dropout: 0.1,
            gated_ffn: true,
            ..small(vocab)
        }
        .init_seeded::<A>(4, &device);
        let src: [&[i64]; 4] = [&[3, 7, 5, 9], &[4, 4, 10, 11], &[8, 6, 3, 5], &[11, 9, 7, 4]];
        let dec_in: Vec<Vec<i64>> = src.iter().map(|s| [&[0], &s[..3]].concat()).collect();
        let flat = |rows: Vec<&[i64]>| -> Tensor<A, 2, Int> {
            let data: Vec<i64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
            Tensor::from_data(TensorData::new(data, [rows.len(), rows[0].len()]), &device)
        };
        let tokens = flat(src.to_vec());
        let dec = flat(dec_in.iter().map(|r| r.as_slice()).collect());
        let pad = Tensor::<A, 2, Bool>::from_data(TensorData::new(vec![false; 16], [4, 4]), &device);
        let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
        let mut loss_of = |model: &T5<A>| {
            let rng = &mut Some(&mut rng);
            let memory = model.encode_with(tokens.clone(), pad.clone(), rng);
            let logits = model
                .decode_with(memory, pad.clone(), dec.clone(), rng)
                .reshape([16, vocab]);
            log_softmax(logits, 1)
                .gather(1, tokens.clone().reshape([16, 1]))
                .mean()
                .neg()
        };
        let mut optim = AdamConfig::new().init();
        let first: f32 = loss_of(&model).into_scalar();
        let mut last = first;
        for _ in 0..30 {
            let loss = loss_of(&model);
            last = loss.clone().into_scalar();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-2, model, grads);
        }
        assert!(first.is_finite() && last < first / 2.0, "loss {first} -> {last}");
    }
}
