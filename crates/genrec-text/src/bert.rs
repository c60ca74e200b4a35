//! BERT encoder (Devlin et al., 2019) as used by all-MiniLM-L6-v2 (sentence-transformers): post-norm
//! blocks, exact (erf) GELU, LayerNorm eps 1e-12, learned absolute positions, token type 0
//! everywhere; a sentence vector is the mean of the last hidden states over the attention mask,
//! L2-normalised. Inference only: no dropout, no pooler (sentence-transformers does not use it).
//!
//! `cargo run --release -p genrec -- features build amazon-p5:Beauty --kind text`

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// The fields of a Hugging Face BERT `config.json` that shape the network (others are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    /// Only `gelu` (exact) is supported; checked by [`BertConfig::validate`].
    pub hidden_act: String,
}

impl BertConfig {
    /// Reads and validates `config.json`.
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let config: BertConfig = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        config.validate().map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.hidden_size == 0 || self.num_attention_heads == 0 || self.num_hidden_layers == 0 {
            return Err("hidden_size, num_attention_heads and num_hidden_layers must be positive".into());
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.vocab_size == 0 || self.type_vocab_size == 0 {
            return Err("vocab_size and type_vocab_size must be positive".into());
        }
        if self.max_position_embeddings < crate::encoder::MAX_TOKENS {
            return Err(format!(
                "max_position_embeddings {} is below the {} tokens texts are truncated to",
                self.max_position_embeddings,
                crate::encoder::MAX_TOKENS
            ));
        }
        if self.hidden_act != "gelu" {
            return Err(format!(
                "hidden_act `{}` is not supported (only `gelu`)",
                self.hidden_act
            ));
        }
        Ok(())
    }

    /// The network with freshly initialised weights (load real ones with [`crate::loader`]).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Bert<B> {
        let d = self.hidden_size;
        let norm = || LayerNormConfig::new(d).with_epsilon(self.layer_norm_eps).init(device);
        Bert {
            embeddings: Embeddings {
                word_embeddings: EmbeddingConfig::new(self.vocab_size, d).init(device),
                position_embeddings: EmbeddingConfig::new(self.max_position_embeddings, d).init(device),
                token_type_embeddings: EmbeddingConfig::new(self.type_vocab_size, d).init(device),
                layer_norm: norm(),
            },
            layers: (0..self.num_hidden_layers)
                .map(|_| BertLayer {
                    query: LinearConfig::new(d, d).init(device),
                    key: LinearConfig::new(d, d).init(device),
                    value: LinearConfig::new(d, d).init(device),
                    attention_output: LinearConfig::new(d, d).init(device),
                    attention_norm: norm(),
                    intermediate: LinearConfig::new(d, self.intermediate_size).init(device),
                    output: LinearConfig::new(self.intermediate_size, d).init(device),
                    output_norm: norm(),
                    n_heads: self.num_attention_heads,
                })
                .collect(),
            max_positions: self.max_position_embeddings,
        }
    }
}

#[derive(Module, Debug)]
pub struct Embeddings<B: Backend> {
    pub word_embeddings: Embedding<B>,
    pub position_embeddings: Embedding<B>,
    pub token_type_embeddings: Embedding<B>,
    pub layer_norm: LayerNorm<B>,
}

/// One post-norm block: `LN(x + Attn(x))`, then `LN(h + FFN(h))`.
#[derive(Module, Debug)]
pub struct BertLayer<B: Backend> {
    pub query: Linear<B>,
    pub key: Linear<B>,
    pub value: Linear<B>,
    pub attention_output: Linear<B>,
    pub attention_norm: LayerNorm<B>,
    pub intermediate: Linear<B>,
    pub output: Linear<B>,
    pub output_norm: LayerNorm<B>,
    n_heads: usize,
}

/// `layer` applied to `[n, t, d_in]` as `[n·t, d_in]` rows. Burn's `linear` on a 3-D input runs
/// `n` small batched GEMMs (and a batched weight gradient summed afterwards); on rows it is one
/// GEMM each way, which Flex runs 1.2-2x faster at these sizes (docs/benchmarks.md).
///
/// # Shapes
/// - `x`: `[n, t, d_in]`; output `[n, t, d_out]`
fn linear_rows<B: Backend>(layer: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [n, t, d] = x.dims();
    let y = layer.forward(x.reshape([n * t, d]));
    let out = y.dims()[1];
    y.reshape([n, t, out])
}

/// `[batch, heads, len, dk]` -> `[batch, len, heads · dk]`. Flex copies a permuted 4-D tensor
/// element by element through a generic strided iterator; each head's `[batch, len, dk]` slice
/// collapses to a 2-D copy instead, and `cat` joins them with row copies.
fn merge_heads<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 3> {
    let [batch, heads, len, dk] = x.dims();
    let parts = (0..heads)
        .map(|h| {
            x.clone()
                .slice([0..batch, h..h + 1, 0..len, 0..dk])
                .reshape([batch, len, dk])
        })
        .collect();
    Tensor::cat(parts, 2)
}

/// Exact GELU `x · Φ(x) = x/2 · (1 + erf(x/√2))`. On the CPU backends, outside autodiff, it runs
/// on the host with the vectorised [`erf`], chunks in parallel: Flex's own `gelu` calls libm's
/// scalar `erff` on one thread, which was 23% of a Beauty encode.
///
/// # Shapes
/// - `x`: any; output the same
fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    use rayon::prelude::*;
    let device = x.device();
    if B::ad_enabled(&device) || !matches!(B::name(&device).as_str(), "flex" | "ndarray") {
        return burn::tensor::activation::gelu(x);
    }
    let shape = x.shape();
    let mut values = x
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 activations");
    values.par_chunks_mut(16_384).for_each(gelu_slice);
    Tensor::from_data(TensorData::new(values, shape), &device)
}

fn gelu_slice(values: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { gelu_slice_avx512(values) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { gelu_slice_avx2(values) };
        }
    }
    gelu_slice_portable(values)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn gelu_slice_avx512(values: &mut [f32]) {
    gelu_slice_portable(values)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn gelu_slice_avx2(values: &mut [f32]) {
    gelu_slice_portable(values)
}

#[inline(always)]
fn gelu_slice_portable(values: &mut [f32]) {
    for v in values.iter_mut() {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// `erf(x)` within 5e-7 absolute (a few f32 ulps near ±1): the rational approximation of Eigen and XLA (odd degree-13
/// numerator over even degree-8 denominator in x, on x clamped to [-4, 4], where f32's erf is
/// already ±1). Branch-free, so it vectorises.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = -2.726_142_3e-10_f32;
    let p = p * x2 + 2.770_681_4e-8;
    let p = p * x2 - 2.101_024e-6;
    let p = p * x2 - 5.692_506_4e-5;
    let p = p * x2 - 7.349_906_3e-4;
    let p = p * x2 - 2.954_600_1e-3;
    let p = p * x2 - 1.609_603_3e-2;
    let q = -1.456_607_2e-5_f32;
    let q = q * x2 - 2.133_740_6e-4;
    let q = q * x2 - 1.682_827e-3;
    let q = q * x2 - 7.373_329e-3;
    let q = q * x2 - 1.426_473_9e-2;
    x * p / q
}

/// Added to the attention scores of padding keys. Finite so that no row becomes NaN.
const MASKED: f32 = -1.0e9;

impl<B: Backend> BertLayer<B> {
    /// # Shapes
    /// - `x`: `[batch, len, d]`; `key_bias`: `[batch, 1, 1, len]` (0 or [`MASKED`]); output as `x`
    fn forward(&self, x: Tensor<B, 3>, key_bias: Tensor<B, 4>) -> Tensor<B, 3> {
        let [batch, len, d] = x.dims();
        let (h, dk) = (self.n_heads, d / self.n_heads);
        let heads = |t: Tensor<B, 3>| t.reshape([batch, len, h, dk]).swap_dims(1, 2);
        // Scaled while contiguous: Flex walks a permuted view element by element.
        let q = heads(linear_rows(&self.query, x.clone()) * (1.0 / (dk as f64).sqrt()));
        let k = heads(linear_rows(&self.key, x.clone()));
        let v = heads(linear_rows(&self.value, x.clone()));
        let weights = softmax(q.matmul(k.swap_dims(2, 3)) + key_bias, 3);
        let attended = merge_heads(weights.matmul(v));
        let x = self
            .attention_norm
            .forward(x + linear_rows(&self.attention_output, attended));
        let hidden = gelu(linear_rows(&self.intermediate, x.clone()));
        self.output_norm.forward(x + linear_rows(&self.output, hidden))
    }
}

#[derive(Module, Debug)]
pub struct Bert<B: Backend> {
    pub embeddings: Embeddings<B>,
    pub layers: Vec<BertLayer<B>>,
    max_positions: usize,
}

impl<B: Backend> Bert<B> {
    /// Last hidden states.
    ///
    /// # Shapes
    /// - `ids`: `[batch, len]` token ids; `mask`: `[batch, len]`, 1 = token, 0 = padding
    /// - output: `[batch, len, hidden]`
    pub fn forward(&self, ids: Tensor<B, 2, Int>, mask: Tensor<B, 2>) -> Tensor<B, 3> {
        let [batch, len] = ids.dims();
        assert!(
            len <= self.max_positions,
            "sequence of {len} tokens exceeds {} positions",
            self.max_positions
        );
        let device = ids.device();
        // Ids for every row rather than broadcast `[1, len]` embeddings: a same-shape add is one
        // vectorised pass, a broadcast one a strided walk on Flex.
        let positions = Tensor::<B, 1, Int>::arange(0..len as i64, &device)
            .unsqueeze::<2>()
            .repeat_dim(0, batch);
        let types = Tensor::<B, 2, Int>::zeros([batch, len], &device);
        let e = &self.embeddings;
        let h = e.word_embeddings.forward(ids)
            + e.position_embeddings.forward(positions)
            + e.token_type_embeddings.forward(types);
        let mut h = e.layer_norm.forward(h);
        // 0 for tokens, MASKED for padding keys.
        let key_bias = (mask.neg() + 1.0).mul_scalar(MASKED).reshape([batch, 1, 1, len]);
        for layer in &self.layers {
            h = layer.forward(h, key_bias.clone());
        }
        h
    }

    /// Sentence embeddings: masked mean of the last hidden states, L2-normalised.
    ///
    /// # Shapes
    /// - `ids`, `mask`: `[batch, len]`; output: `[batch, hidden]`
    pub fn embed(&self, ids: Tensor<B, 2, Int>, mask: Tensor<B, 2>) -> Tensor<B, 2> {
        let [batch, len] = ids.dims();
        let h = self.forward(ids, mask.clone());
        let m = mask.reshape([batch, len, 1]);
        let summed = (h * m.clone()).sum_dim(1).squeeze_dim::<2>(1);
        let counts = m.sum_dim(1).squeeze_dim::<2>(1).clamp_min(1e-9);
        let mean = summed / counts;
        let norm = mean.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
        mean / norm
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::Distribution;

    /// erf by its Taylor series in f64 (cancellation keeps it within ~1e-9 on [-4.2, 4.2]).
    fn erf_series(x: f64) -> f64 {
        let (mut term, mut sum, mut n) = (x, x, 0.0);
        while term.abs() > 1e-17 {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn erf_is_within_5e7_absolute() {
        let mut worst = 0.0f64;
        let mut x = -4.2f32;
        while x <= 4.2 {
            worst = worst.max((erf(x) as f64 - erf_series(x as f64)).abs());
            x += 0.000_61;
        }
        assert!(worst < 5e-7, "worst absolute error {worst}");
        assert!((erf(-9.0) + 1.0).abs() < 5e-7 && (erf(5.0) - 1.0).abs() < 5e-7);
    }

    #[test]
    fn host_gelu_matches_the_backend_gelu() {
        let x = Tensor::<Flex, 2>::random([33, 100], Distribution::Normal(0.0, 3.0), &Default::default());
        let host = gelu(x.clone()).into_data().to_vec::<f32>().unwrap();
        let backend = burn::tensor::activation::gelu(x).into_data().to_vec::<f32>().unwrap();
        for (h, b) in host.iter().zip(&backend) {
            assert!((h - b).abs() < 1e-6 * (1.0 + b.abs()), "{h} vs {b}");
        }
    }
}
