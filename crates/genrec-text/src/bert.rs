//! BERT encoder (Devlin et al., 2019) as used by all-MiniLM-L6-v2 (sentence-transformers): post-norm
//! blocks, exact (erf) GELU, LayerNorm eps 1e-12, learned absolute positions, token type 0
//! everywhere; a sentence vector is the mean of the last hidden states over the attention mask,
//! L2-normalised. Inference only: no dropout, no pooler (sentence-transformers does not use it).
//!
//! `cargo run --release -p genrec -- features build amazon-p5:Beauty --kind text`

use crate::TextError;
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use genrec_kernels::{gelu, linear_rows, MASKED};
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
    pub fn load(path: &std::path::Path) -> Result<Self, TextError> {
        let text = std::fs::read_to_string(path).map_err(|e| TextError::Encoder(format!("{}: {e}", path.display())))?;
        let config: BertConfig =
            serde_json::from_str(&text).map_err(|e| TextError::Encoder(format!("{}: {e}", path.display())))?;
        config
            .validate()
            .map_err(|e| TextError::Encoder(format!("{}: {e}", path.display())))?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), TextError> {
        if self.hidden_size == 0 || self.num_attention_heads == 0 || self.num_hidden_layers == 0 {
            return Err(TextError::Encoder(
                "hidden_size, num_attention_heads and num_hidden_layers must be positive".into(),
            ));
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(TextError::Encoder(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if self.vocab_size == 0 || self.type_vocab_size == 0 {
            return Err(TextError::Encoder(
                "vocab_size and type_vocab_size must be positive".into(),
            ));
        }
        if self.max_position_embeddings < crate::encoder::MAX_TOKENS {
            return Err(TextError::Encoder(format!(
                "max_position_embeddings {} is below the {} tokens texts are truncated to",
                self.max_position_embeddings,
                crate::encoder::MAX_TOKENS
            )));
        }
        if self.hidden_act != "gelu" {
            return Err(TextError::Encoder(format!(
                "hidden_act `{}` is not supported (only `gelu`)",
                self.hidden_act
            )));
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
