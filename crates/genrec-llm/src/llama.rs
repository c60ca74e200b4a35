//! A LLaMA-family decoder in Burn (Touvron et al. 2023; SmolLM2 is this architecture): token
//! embedding, pre-RMSNorm blocks with rotary grouped-query attention and a SwiGLU feed-forward,
//! a final RMSNorm and a tied or untied output head, with a KV cache for incremental decoding.
//!
//! Rotary embeddings come in two conventions ([`RopeStyle`]): Hugging Face checkpoints rotate the
//! pairs `(i, i + d/2)` of each head ("split-half"); llama.cpp rotates `(2i, 2i + 1)`
//! ("interleaved") and its converter permutes the rows of `W_q` / `W_k` so that the same model
//! results. [`Llama::from_gguf`] undoes that permutation, so the loaded weights are in Hugging
//! Face layout (what a safetensors export holds) and the model uses split-half rotation; loading
//! with the permutation kept and interleaved rotation gives the same logits (tested).
//!
//! `cargo test -p genrec-llm llama` (needs `genrec assets fetch smollm2`).

use crate::LlmError;
use burn::module::{Module, Param};
use burn::nn::{Linear, RmsNorm, RmsNormConfig};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use genrec_kernels::MASKED;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::gguf::GgufFile;
use crate::loader::{BlockWeights, LlamaWeights};
use crate::lora::{Adapter, LoraConfig, LoraTarget, Proj};

/// Which element pairs a rotary embedding rotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RopeStyle {
    /// `(i, i + head_dim/2)`: Hugging Face LLaMA.
    SplitHalf,
    /// `(2i, 2i + 1)`: llama.cpp / the original Meta code.
    Interleaved,
}

/// Shape and numerics of a LLaMA-family model, read from the checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    pub rope_base: f64,
    pub rope_style: RopeStyle,
    pub rms_eps: f64,
    pub max_len: usize,
    /// The output head is the token embedding.
    pub tied: bool,
}

impl LlamaConfig {
    /// Checks the shape; the error names the field.
    pub fn validate(&self) -> Result<(), LlmError> {
        if self.n_heads == 0 || self.n_kv_heads == 0 || !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(LlmError::Config(format!(
                "n_heads = {} must be a positive multiple of n_kv_heads = {}",
                self.n_heads, self.n_kv_heads
            )));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return Err(LlmError::Config(format!(
                "head_dim = {} must be even and positive",
                self.head_dim
            )));
        }
        if self.vocab_size == 0 || self.d_model == 0 || self.ffn_dim == 0 || self.max_len == 0 {
            return Err(LlmError::Config(
                "vocab_size, d_model, ffn_dim and max_len must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// One decoder block.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    attn_norm: RmsNorm<B>,
    q: Proj<B>,
    k: Proj<B>,
    v: Proj<B>,
    o: Proj<B>,
    ffn_norm: RmsNorm<B>,
    gate: Proj<B>,
    up: Proj<B>,
    down: Proj<B>,
}

/// What every block of one forward shares: the rotary tables of the input positions (`[batch, 1,
/// len, head_dim/2]`), the rotation convention, and the attention mask over cache + input
/// (`[batch, n_kv_heads, group · len, cache_len + len]` with `group = n_heads / n_kv_heads`, true =
/// not attended).
pub struct Attention<B: Backend> {
    cos: Tensor<B, 4>,
    sin: Tensor<B, 4>,
    interleaved: bool,
    mask: Tensor<B, 4, Bool>,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
}

impl<B: Backend> Attention<B> {
    /// Rotates `x` `[batch, heads, len, head_dim]` by the tables.
    fn rotate(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let (cos, sin) = (&self.cos, &self.sin);
        let [b, h, t, d] = x.dims();
        let half = d / 2;
        if self.interleaved {
            let pairs = x.reshape([b, h, t, half, 2]);
            let even = pairs
                .clone()
                .slice([0..b, 0..h, 0..t, 0..half, 0..1])
                .reshape([b, h, t, half]);
            let odd = pairs.slice([0..b, 0..h, 0..t, 0..half, 1..2]).reshape([b, h, t, half]);
            let re = even.clone() * cos.clone() - odd.clone() * sin.clone();
            let ro = odd * cos.clone() + even * sin.clone();
            Tensor::stack::<5>(vec![re, ro], 4).reshape([b, h, t, d])
        } else {
            let x1 = x.clone().slice([0..b, 0..h, 0..t, 0..half]);
            let x2 = x.slice([0..b, 0..h, 0..t, half..d]);
            let r1 = x1.clone() * cos.clone() - x2.clone() * sin.clone();
            let r2 = x2 * cos.clone() + x1 * sin.clone();
            Tensor::cat(vec![r1, r2], 3)
        }
    }
}

impl<B: Backend> Block<B> {
    /// One pre-norm decoder layer: grouped-query self-attention over this layer's cached keys and
    /// values plus the input's (which join the cache), then the SwiGLU feed-forward; both residual.
    ///
    /// # Shapes
    /// - `x`: `[batch, len, d_model]`; output the same
    /// - `cache`: `[batch, n_kv_heads, cache_len, head_dim]` keys and values, `None` when empty
    ///
    /// `rng` = training: LoRA dropout drawn from it.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        attention: &Attention<B>,
        cache: &mut Option<(Tensor<B, 4>, Tensor<B, 4>)>,
        mut rng: Option<&mut ChaCha8Rng>,
    ) -> Tensor<B, 3> {
        let [b, t, _] = x.dims();
        let (nh, nkv, hd) = (attention.n_heads, attention.n_kv_heads, attention.head_dim);
        let h = self.attn_norm.forward(x.clone());
        let q = self
            .q
            .forward(h.clone(), rng.as_deref_mut())
            .reshape([b, t, nh, hd])
            .swap_dims(1, 2);
        let k = self
            .k
            .forward(h.clone(), rng.as_deref_mut())
            .reshape([b, t, nkv, hd])
            .swap_dims(1, 2);
        let v = self
            .v
            .forward(h, rng.as_deref_mut())
            .reshape([b, t, nkv, hd])
            .swap_dims(1, 2);
        let q = attention.rotate(q);
        let k = attention.rotate(k);
        let (k, v) = match cache.take() {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
            None => (k, v),
        };
        *cache = Some((k.clone(), v.clone()));
        // Grouped-query attention: query head h reads key/value head h / group. The `group`
        // query heads of one key/value head are stacked as `group · t` rows against its keys,
        // so the keys and values are never copied out per query head (an expand + reshape of
        // the whole cache in every layer and decoding step).
        let group = nh / nkv;
        let q = q.reshape([b, nkv, group * t, hd]);
        let scores = q.matmul(k.swap_dims(2, 3)).div_scalar((hd as f64).sqrt());
        let scores = scores.mask_fill(attention.mask.clone(), MASKED);
        let attn = softmax(scores, 3)
            .matmul(v)
            .reshape([b, nh, t, hd])
            .swap_dims(1, 2)
            .reshape([b, t, nh * hd]);
        let x = x + self.o.forward(attn, rng.as_deref_mut());
        let h = self.ffn_norm.forward(x.clone());
        let gated = silu(self.gate.forward(h.clone(), rng.as_deref_mut())) * self.up.forward(h, rng.as_deref_mut());
        x + self.down.forward(gated, rng)
    }

    /// The projection `target`.
    pub(crate) fn proj_mut(&mut self, target: LoraTarget) -> &mut Proj<B> {
        match target {
            LoraTarget::Q => &mut self.q,
            LoraTarget::K => &mut self.k,
            LoraTarget::V => &mut self.v,
            LoraTarget::O => &mut self.o,
            LoraTarget::Gate => &mut self.gate,
            LoraTarget::Up => &mut self.up,
            LoraTarget::Down => &mut self.down,
        }
    }

    /// The projection `target`.
    pub fn proj(&self, target: LoraTarget) -> &Proj<B> {
        match target {
            LoraTarget::Q => &self.q,
            LoraTarget::K => &self.k,
            LoraTarget::V => &self.v,
            LoraTarget::O => &self.o,
            LoraTarget::Gate => &self.gate,
            LoraTarget::Up => &self.up,
            LoraTarget::Down => &self.down,
        }
    }
}

/// Keys and values of the positions seen so far, per layer: `[batch, n_kv_heads, len, head_dim]`.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
}

impl<B: Backend> KvCache<B> {
    pub fn new(n_layers: usize) -> Self {
        KvCache {
            layers: vec![None; n_layers],
        }
    }

    /// Cached positions (0 when empty).
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map_or(0, |(k, _)| k.dims()[2])
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps the batch rows `rows` (in that order, repeats allowed): beams follow their parents.
    pub fn reorder(&mut self, rows: &[usize]) {
        let Some(device) = self.layers.iter().flatten().next().map(|(k, _)| k.device()) else {
            return;
        };
        let idx: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [rows.len()]), &device);
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.clone().select(0, idx.clone());
            *v = v.clone().select(0, idx.clone());
        }
    }
}

/// The decoder.
#[derive(Module, Debug)]
pub struct Llama<B: Backend> {
    /// `[vocab, d_model]` (the checkpoint's tokens)
    embed: Param<Tensor<B, 2>>,
    /// Rows of added tokens `[added, d_model]` (ids `vocab..vocab + added`), kept apart so they
    /// can train while the checkpoint's rows stay frozen; `None` = no added tokens.
    added: Option<Param<Tensor<B, 2>>>,
    blocks: Vec<Block<B>>,
    norm: RmsNorm<B>,
    /// Untied head `[d_model, vocab]`; `None` = tied to `embed`.
    head: Option<Param<Tensor<B, 2>>>,
    /// Untied head columns of added tokens `[d_model, added]`.
    added_head: Option<Param<Tensor<B, 2>>>,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    rope_base: f64,
    interleaved: bool,
}

/// A bias-free linear layer from a row-major `[out, in]` matrix (the checkpoint layout).
fn linear<B: Backend>(rows_out_in: Vec<f32>, d_out: usize, d_in: usize, device: &B::Device) -> Proj<B> {
    Proj::new(Linear {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(transpose(&rows_out_in, d_out, d_in), [d_in, d_out]),
            device,
        )),
        bias: None,
    })
}

/// Row-major `[rows, cols]` → row-major `[cols, rows]` on the host, so weights are stored
/// contiguously in Burn's `[in, out]` layout (a transposed view would be copied by every matmul).
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

fn rms_norm<B: Backend>(gamma: Vec<f32>, eps: f64, device: &B::Device) -> RmsNorm<B> {
    let d = gamma.len();
    let mut norm = RmsNormConfig::new(d).with_epsilon(eps).init(device);
    norm.gamma = Param::from_tensor(Tensor::from_data(TensorData::new(gamma, [d]), device));
    norm
}

/// Undoes llama.cpp's row permutation of `W_q` / `W_k` (`convert_hf_to_gguf.py`'s `permute`):
/// within each head, GGUF row `2p + h` is Hugging Face row `h · head_dim/2 + p`.
pub fn unpermute_rows(rows: &[f32], n_heads: usize, head_dim: usize, d_in: usize) -> Vec<f32> {
    let half = head_dim / 2;
    let mut out = vec![0f32; rows.len()];
    for head in 0..n_heads {
        for p in 0..half {
            for h in 0..2 {
                let gguf = head * head_dim + 2 * p + h;
                let hf = head * head_dim + h * half + p;
                out[hf * d_in..(hf + 1) * d_in].copy_from_slice(&rows[gguf * d_in..(gguf + 1) * d_in]);
            }
        }
    }
    out
}

impl<B: Backend> Llama<B> {
    /// Reads a GGUF LLaMA checkpoint (see [`crate::loader::read_gguf`]).
    pub fn from_gguf(
        file: &GgufFile,
        rope_style: RopeStyle,
        device: &B::Device,
    ) -> Result<(Self, LlamaConfig), LlmError> {
        let (config, weights) = crate::loader::read_gguf(file, rope_style)?;
        Ok((Self::from_weights(&config, weights, device)?, config))
    }

    /// Reads a safetensors directory (see [`crate::loader::read_safetensors`]).
    pub fn from_safetensors(dir: &std::path::Path, device: &B::Device) -> Result<(Self, LlamaConfig), LlmError> {
        let (config, weights) = crate::loader::read_safetensors(dir)?;
        Ok((Self::from_weights(&config, weights, device)?, config))
    }

    /// Writes the model as `dir/model.safetensors` + `dir/config.json` (Hugging Face layout).
    pub fn save_safetensors(&self, config: &LlamaConfig, dir: &std::path::Path) -> Result<(), LlmError> {
        crate::loader::write_safetensors(dir, config, &self.to_weights()?)
    }

    /// Builds the model from host weights in Hugging Face layout.
    pub fn from_weights(config: &LlamaConfig, w: LlamaWeights, device: &B::Device) -> Result<Self, LlmError> {
        config.validate()?;
        let c = config;
        let (d, kv, q_out, f) = (c.d_model, c.n_kv_heads * c.head_dim, c.n_heads * c.head_dim, c.ffn_dim);
        if w.blocks.len() != c.n_layers || w.embed.len() != c.vocab_size * d {
            return Err(LlmError::Weights(format!(
                "weights hold {} blocks and {} embedding values for a config of {} layers × {} × {d}",
                w.blocks.len(),
                w.embed.len(),
                c.n_layers,
                c.vocab_size
            )));
        }
        let blocks = w
            .blocks
            .into_iter()
            .map(|b| Block {
                attn_norm: rms_norm(b.attn_norm, c.rms_eps, device),
                q: linear(b.q, q_out, d, device),
                k: linear(b.k, kv, d, device),
                v: linear(b.v, kv, d, device),
                o: linear(b.o, d, q_out, device),
                ffn_norm: rms_norm(b.ffn_norm, c.rms_eps, device),
                gate: linear(b.gate, f, d, device),
                up: linear(b.up, f, d, device),
                down: linear(b.down, d, f, device),
            })
            .collect();
        let head = w.head.map(|h| {
            let t = transpose(&h, c.vocab_size, d);
            Param::from_tensor(Tensor::from_data(TensorData::new(t, [d, c.vocab_size]), device))
        });
        Ok(Llama {
            embed: Param::from_tensor(Tensor::from_data(TensorData::new(w.embed, [c.vocab_size, d]), device)),
            added: None,
            blocks,
            norm: rms_norm(w.norm, c.rms_eps, device),
            head,
            added_head: None,
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
            rope_base: c.rope_base,
            interleaved: c.rope_style == RopeStyle::Interleaved,
        })
    }

    /// The weights back on the host, Hugging Face layout; LoRA adapters merged, added tokens
    /// appended to the vocabulary.
    pub fn to_weights(&self) -> Result<LlamaWeights, LlmError> {
        let host = |t: Tensor<B, 2>| -> Result<Vec<f32>, LlmError> {
            t.into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .map_err(|e| LlmError::Weights(format!("{e:?}")))
        };
        let host1 = |t: Tensor<B, 1>| -> Result<Vec<f32>, LlmError> {
            t.into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .map_err(|e| LlmError::Weights(format!("{e:?}")))
        };
        // Linear weights are stored `[in, out]`; the checkpoint layout is `[out, in]`.
        let out_in = |p: &Proj<B>| {
            let w = match &p.lora {
                Some(adapter) => p.base.weight.val() + adapter.delta(),
                None => p.base.weight.val(),
            };
            host(w.transpose())
        };
        let blocks = self
            .blocks
            .iter()
            .map(|b| {
                Ok(BlockWeights {
                    attn_norm: host1(b.attn_norm.gamma.val())?,
                    q: out_in(&b.q)?,
                    k: out_in(&b.k)?,
                    v: out_in(&b.v)?,
                    o: out_in(&b.o)?,
                    ffn_norm: host1(b.ffn_norm.gamma.val())?,
                    gate: out_in(&b.gate)?,
                    up: out_in(&b.up)?,
                    down: out_in(&b.down)?,
                })
            })
            .collect::<Result<Vec<_>, LlmError>>()?;
        let head = match (&self.head, &self.added_head) {
            (Some(h), Some(a)) => Some(Tensor::cat(vec![h.val(), a.val()], 1)),
            (Some(h), None) => Some(h.val()),
            (None, _) => None,
        };
        Ok(LlamaWeights {
            embed: host(self.embedding())?,
            blocks,
            norm: host1(self.norm.gamma.val())?,
            head: head.map(|h| host(h.transpose())).transpose()?,
        })
    }

    pub fn n_layers(&self) -> usize {
        self.blocks.len()
    }

    /// `cos` and `sin` of the rotation angles at `positions`, `[batch, 1, len, head_dim/2]`:
    /// angle `pos · base^(-2i/head_dim)` (computed in f64, as the reference's f32 tables agree to
    /// rounding).
    fn rope_tables(&self, positions: &[Vec<usize>], device: &B::Device) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let half = self.head_dim / 2;
        let (b, t) = (positions.len(), positions[0].len());
        let mut cos = Vec::with_capacity(b * t * half);
        let mut sin = Vec::with_capacity(b * t * half);
        for row in positions {
            for &p in row {
                for i in 0..half {
                    let inv = self.rope_base.powf(-(2.0 * i as f64) / self.head_dim as f64);
                    let angle = p as f64 * inv;
                    cos.push(angle.cos() as f32);
                    sin.push(angle.sin() as f32);
                }
            }
        }
        let t4 = |v: Vec<f32>| Tensor::<B, 4>::from_data(TensorData::new(v, [b, 1, t, half]), device);
        (t4(cos), t4(sin))
    }

    /// Runs the decoder on `tokens` at `positions`, appending their keys and values to `cache`;
    /// returns the final hidden states (after the last norm). See [`hidden_states`](Self::hidden_states).
    pub fn hidden(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: &[Vec<usize>],
        pad: Option<Tensor<B, 2, Bool>>,
        cache: &mut KvCache<B>,
    ) -> Tensor<B, 3> {
        self.hidden_states(tokens, positions, pad, cache, &[]).0
    }

    /// As [`hidden`](Self::hidden), also returning the output of each block listed in `layers`
    /// (0-based, in the order given; before the final norm) — what hidden-state distillation
    /// matches between a teacher and a student.
    ///
    /// `pad` marks padded cache+input positions (`[batch, cache_len + len]`, true = padding) that
    /// no query may attend to; attention is causal over cache + input.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, len]`
    /// - `positions`: `batch` rows of `len` rotary positions
    /// - output: `[batch, len, d_model]`
    pub fn hidden_states(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: &[Vec<usize>],
        pad: Option<Tensor<B, 2, Bool>>,
        cache: &mut KvCache<B>,
        layers: &[usize],
    ) -> (Tensor<B, 3>, Vec<Tensor<B, 3>>) {
        self.run(tokens, positions, pad, cache, layers, None)
    }

    /// As [`hidden`](Self::hidden) from an empty cache, for training: LoRA dropout is drawn from
    /// `rng`.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, len]`; `pad`: `[batch, len]`; output `[batch, len, d_model]`
    pub fn hidden_train(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: &[Vec<usize>],
        pad: Option<Tensor<B, 2, Bool>>,
        rng: &mut ChaCha8Rng,
    ) -> Tensor<B, 3> {
        let mut cache = KvCache::new(self.blocks.len());
        self.run(tokens, positions, pad, &mut cache, &[], Some(rng)).0
    }

    /// The token embeddings of `tokens`.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, len]`; output `[batch, len, d_model]`
    pub fn embed(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [b, t] = tokens.dims();
        let embedding = self.embedding();
        let d = embedding.dims()[1];
        embedding.select(0, tokens.reshape([b * t])).reshape([b, t, d])
    }

    /// The final RMSNorm (what [`hidden`](Self::hidden) applies after the last block): reads an
    /// intermediate block's output as the last one's is read (early exit, multiple supervision).
    ///
    /// # Shapes
    /// - `x`: `[batch, len, d_model]`, output the same
    pub fn final_norm(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.norm.forward(x)
    }

    /// The decoder on input vectors instead of tokens (from an empty cache): what a model that
    /// feeds its own embeddings (projected item ids, E4SRec / SLMRec) runs. Returns the final
    /// hidden states (after the last norm) and the outputs of the blocks listed in `layers`
    /// (before the final norm), as [`hidden_states`](Self::hidden_states). `rng` draws LoRA
    /// dropout (training); `None` is evaluation.
    ///
    /// # Shapes
    /// - `x`: `[batch, len, d_model]`; `pad`: `[batch, len]`, true = padding
    /// - output: `[batch, len, d_model]` and one `[batch, len, d_model]` per entry of `layers`
    pub fn hidden_from_embeddings(
        &self,
        x: Tensor<B, 3>,
        positions: &[Vec<usize>],
        pad: Option<Tensor<B, 2, Bool>>,
        layers: &[usize],
        rng: Option<&mut ChaCha8Rng>,
    ) -> (Tensor<B, 3>, Vec<Tensor<B, 3>>) {
        let mut cache = KvCache::new(self.blocks.len());
        self.run_embedded(x, positions, pad, None, &mut cache, layers, rng)
    }

    /// As [`hidden_from_embeddings`](Self::hidden_from_embeddings) with the attention pattern
    /// given instead of the causal one (SETRec: causal across items, self-only within one,
    /// queries that see the history and themselves). Padding goes into `blocked` too.
    ///
    /// # Shapes
    /// - `x`: `[batch, len, d_model]`; `blocked`: `[batch, 1, len, len]`, true = the query (row)
    ///   may not attend to the key (column)
    /// - output: `[batch, len, d_model]`
    pub fn hidden_from_embeddings_masked(
        &self,
        x: Tensor<B, 3>,
        positions: &[Vec<usize>],
        blocked: Tensor<B, 4, Bool>,
        rng: Option<&mut ChaCha8Rng>,
    ) -> Tensor<B, 3> {
        let mut cache = KvCache::new(self.blocks.len());
        self.run_embedded(x, positions, None, Some(blocked), &mut cache, &[], rng)
            .0
    }

    fn run(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: &[Vec<usize>],
        pad: Option<Tensor<B, 2, Bool>>,
        cache: &mut KvCache<B>,
        layers: &[usize],
        rng: Option<&mut ChaCha8Rng>,
    ) -> (Tensor<B, 3>, Vec<Tensor<B, 3>>) {
        let x = self.embed(tokens);
        self.run_embedded(x, positions, pad, None, cache, layers, rng)
    }

    /// `blocked` (`[batch, 1, len, len]`, empty cache only) replaces the causal mask.
    #[allow(clippy::too_many_arguments)]
    fn run_embedded(
        &self,
        mut x: Tensor<B, 3>,
        positions: &[Vec<usize>],
        pad: Option<Tensor<B, 2, Bool>>,
        blocked: Option<Tensor<B, 4, Bool>>,
        cache: &mut KvCache<B>,
        layers: &[usize],
        mut rng: Option<&mut ChaCha8Rng>,
    ) -> (Tensor<B, 3>, Vec<Tensor<B, 3>>) {
        let mut kept: Vec<Option<Tensor<B, 3>>> = vec![None; layers.len()];
        let device = x.device();
        let [b, t, _] = x.dims();
        let past = cache.len();
        let total = past + t;
        let (cos, sin) = self.rope_tables(positions, &device);
        // Causal mask over cache + input: query i (absolute past + i) sees keys ≤ past + i.
        let mut mask = match blocked {
            Some(blocked) => {
                assert_eq!(past, 0, "a custom attention mask needs an empty cache");
                blocked
            }
            None => {
                let causal: Vec<bool> = (0..t).flat_map(|i| (0..total).map(move |j| j > past + i)).collect();
                Tensor::<B, 4, Bool>::from_data(TensorData::new(causal, [1, 1, t, total]), &device)
                    .expand([b, 1, t, total])
            }
        };
        if let Some(pad) = pad {
            mask = mask.bool_or(pad.reshape([b, 1, 1, total]).expand([b, 1, t, total]));
        }
        // One mask for every layer and head, laid out as the grouped scores are: `[batch,
        // n_kv_heads, group · len, total]`, the same `[len, total]` block for each query head.
        let group = self.n_heads / self.n_kv_heads;
        let mask = mask
            .unsqueeze_dim::<5>(1)
            .expand([b, group, 1, t, total])
            .reshape([b, 1, group * t, total])
            .expand([b, self.n_kv_heads, group * t, total]);
        let attention = Attention {
            cos,
            sin,
            interleaved: self.interleaved,
            mask,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
        };
        for (l, block) in self.blocks.iter().enumerate() {
            x = block.forward(x, &attention, &mut cache.layers[l], rng.as_deref_mut());
            for (slot, _) in layers.iter().enumerate().filter(|(_, &want)| want == l) {
                kept[slot] = Some(x.clone());
            }
        }
        let kept = kept
            .into_iter()
            .zip(layers)
            .map(|(t, l)| t.unwrap_or_else(|| panic!("layer {l} is out of range ({} blocks)", self.blocks.len())))
            .collect();
        (self.norm.forward(x), kept)
    }

    /// Keeps the blocks at `indices` (strictly ascending, in range), dropping the rest: the
    /// student of layer-pruning distillation. Embedding, final norm and head are kept.
    pub fn keep_layers(mut self, indices: &[usize]) -> Result<Self, LlmError> {
        let n = self.blocks.len();
        if indices.is_empty() || indices.windows(2).any(|w| w[0] >= w[1]) || indices[indices.len() - 1] >= n {
            return Err(LlmError::Layers(format!(
                "layer indices {indices:?} must be non-empty, strictly ascending and below {n}"
            )));
        }
        let mut blocks: Vec<Option<Block<B>>> = self.blocks.into_iter().map(Some).collect();
        self.blocks = indices
            .iter()
            .map(|&i| blocks[i].take().expect("distinct indices"))
            .collect();
        Ok(self)
    }

    /// The first `n` blocks.
    pub fn keep_first(self, n: usize) -> Result<Self, LlmError> {
        let indices: Vec<usize> = (0..n).collect();
        self.keep_layers(&indices)
    }

    /// Every `k`-th block, starting with block 0.
    pub fn keep_every(self, k: usize) -> Result<Self, LlmError> {
        if k == 0 {
            return Err(LlmError::Layers("keep_every: k must be at least 1".into()));
        }
        let indices: Vec<usize> = (0..self.blocks.len()).step_by(k).collect();
        self.keep_layers(&indices)
    }

    /// Next-token logits of hidden states.
    ///
    /// # Shapes
    /// - `hidden`: `[batch, len, d_model]`, output `[batch, len, vocab]`
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, t, d] = hidden.dims();
        let w = self.head_rows().transpose();
        let v = w.dims()[1];
        hidden.reshape([b * t, d]).matmul(w).reshape([b, t, v])
    }

    /// The output head as rows, `[vocab, d_model]` (the embedding when tied): logits are
    /// `hidden · head_rowsᵀ` (what a fused cross-entropy takes).
    pub fn head_rows(&self) -> Tensor<B, 2> {
        match (&self.head, &self.added_head) {
            (Some(h), Some(a)) => Tensor::cat(vec![h.val(), a.val()], 1).transpose(),
            (Some(h), None) => h.val().transpose(),
            (None, _) => self.embedding(),
        }
    }

    /// The input embedding with the added tokens' rows, `[vocab, d_model]`.
    pub fn embedding(&self) -> Tensor<B, 2> {
        match &self.added {
            Some(a) => Tensor::cat(vec![self.embed.val(), a.val()], 0),
            None => self.embed.val(),
        }
    }

    /// Vocabulary size (rows of the embedding, added tokens included).
    pub fn vocab_size(&self) -> usize {
        self.base_vocab_size() + self.added_tokens()
    }

    /// Tokens of the checkpoint's own vocabulary.
    pub fn base_vocab_size(&self) -> usize {
        self.embed.val().dims()[0]
    }

    /// Tokens appended by [`grow_vocab`](Self::grow_vocab).
    pub fn added_tokens(&self) -> usize {
        self.added.as_ref().map_or(0, |a| a.val().dims()[0])
    }

    /// `d_model`.
    pub fn d_model(&self) -> usize {
        self.embed.val().dims()[1]
    }

    /// Appends `n` token rows (new item-code tokens, see `Tokenizer::add_tokens`) to the embedding
    /// and an untied head, each initialised to the mean of the checkpoint's rows, so a new token
    /// starts as an "average" token and the old tokens' logits do not change.
    pub fn grow_vocab(self, n: usize) -> Self {
        let d = self.d_model();
        let mean = self.embed.val().mean_dim(0).expand([n, d]);
        let head_mean = self.head.as_ref().map(|h| h.val().mean_dim(1).expand([d, n]));
        self.append_rows(mean, head_mean)
    }

    /// As [`grow_vocab`](Self::grow_vocab) with rows drawn from N(0, std²) (seeded): what
    /// Hugging Face's `resize_token_embeddings` did before transformers 4.46 (`_init_weights`,
    /// `initializer_range` 0.02), and so what LC-Rec's reference ran with.
    pub fn grow_vocab_normal(self, n: usize, std: f64, seed: u64) -> Self {
        let d = self.d_model();
        let device = self.embed.val().device();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut rows = |shape: [usize; 2]| {
            let values = crate::loader::normal_values(shape[0] * shape[1], std, &mut rng);
            Tensor::<B, 2>::from_data(TensorData::new(values, shape), &device)
        };
        let embed = rows([n, d]);
        let head = self.head.is_some().then(|| rows([d, n]));
        self.append_rows(embed, head)
    }

    /// Appends embedding rows `[n, d]` (and untied head columns `[d, n]`) as trainable leaves.
    fn append_rows(mut self, embed: Tensor<B, 2>, head: Option<Tensor<B, 2>>) -> Self {
        if embed.dims()[0] == 0 {
            return self;
        }
        let device = self.embed.val().device();
        // Built from host values: a fresh leaf that can train (an expression of `embed` cannot).
        let leaf = |t: Tensor<B, 2>| Tensor::<B, 2>::from_data(t.into_data(), &device);
        self.added = Some(Param::from_tensor(leaf(match self.added.take() {
            Some(a) => Tensor::cat(vec![a.val(), embed], 0),
            None => embed,
        })));
        if let (Some(head), true) = (head, self.head.is_some()) {
            self.added_head = Some(Param::from_tensor(leaf(match self.added_head.take() {
                Some(a) => Tensor::cat(vec![a.val(), head], 1),
                None => head,
            })));
        }
        self
    }

    /// Attaches a fresh LoRA adapter (A seeded by `seed`, B zero) to each projection named in
    /// `config.targets` of every block; the model's outputs do not change until B trains.
    pub fn with_lora(mut self, config: &LoraConfig, seed: u64) -> Result<Self, LlmError> {
        config.validate("lora")?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let device = self.embed.val().device();
        for block in &mut self.blocks {
            for &target in &config.targets {
                let proj = block.proj_mut(target);
                let [d_in, d_out] = proj.dims();
                proj.lora = Some(Adapter::new(d_in, d_out, config, &mut rng, &device));
            }
        }
        Ok(self)
    }

    /// Freezes the checkpoint's weights (embedding rows, norms, projections, head) so that only
    /// LoRA adapters and added-token rows receive gradients.
    pub fn freeze_base(mut self) -> Self {
        self.embed = self.embed.set_require_grad(false);
        self.norm = self.norm.no_grad();
        self.head = self.head.map(|h| h.set_require_grad(false));
        for block in &mut self.blocks {
            block.attn_norm = block.attn_norm.clone().no_grad();
            block.ffn_norm = block.ffn_norm.clone().no_grad();
            for target in LoraTarget::ALL {
                let proj = block.proj_mut(target);
                proj.base = proj.base.clone().no_grad();
            }
        }
        self
    }

    /// Folds every adapter into its projection (`W + (α/r)·A·B`): the same outputs, no adapter
    /// cost at inference.
    pub fn merge_lora(mut self) -> Self {
        for block in &mut self.blocks {
            for target in LoraTarget::ALL {
                let proj = block.proj_mut(target);
                let p = std::mem::replace(proj, Proj::new(proj.base.clone()));
                *proj = p.merged();
            }
        }
        self
    }

    /// The model as decoding wants it — adapters merged, added rows folded into the vocabulary,
    /// and the head stored as its own contiguous `[d_model, vocab]` matrix (a tied head is
    /// otherwise the embedding transposed, a view that every logits matmul copies on the CPU
    /// backends). The same logits; the head is untied from then on (its memory is doubled).
    pub fn prepared_for_decoding(self) -> Self {
        let mut model = self.merge_lora();
        let device = model.embed.val().device();
        // Fresh leaves (from host values): expressions of trainable tensors cannot be parameters.
        let embed = Tensor::<B, 2>::from_data(model.embedding().into_data(), &device);
        let head = Tensor::<B, 2>::from_data(model.head_rows().transpose().into_data(), &device);
        model.embed = Param::from_tensor(embed);
        model.added = None;
        model.added_head = None;
        model.head = Some(Param::from_tensor(head));
        model
    }

    /// The blocks, in order.
    pub fn blocks(&self) -> &[Block<B>] {
        &self.blocks
    }

    /// The checkpoint's own embedding rows `[base_vocab, d]` (frozen by [`freeze_base`](Self::freeze_base)).
    pub fn embed_param(&self) -> &Param<Tensor<B, 2>> {
        &self.embed
    }

    pub(crate) fn blocks_mut(&mut self) -> &mut [Block<B>] {
        &mut self.blocks
    }

    /// The added tokens' embedding rows `[added, d]` and untied head columns `[d, added]`.
    pub fn added_rows(&self) -> (Option<Tensor<B, 2>>, Option<Tensor<B, 2>>) {
        (
            self.added.as_ref().map(|a| a.val()),
            self.added_head.as_ref().map(|a| a.val()),
        )
    }

    /// Replaces the added tokens' rows (a checkpoint of what changed; shapes checked by the caller).
    pub(crate) fn set_added_rows(&mut self, embed: Tensor<B, 2>, head: Option<Tensor<B, 2>>) {
        self.added = Some(Param::from_tensor(embed));
        self.added_head = head.map(Param::from_tensor);
    }

    /// Whether the head is untied from the embedding.
    pub fn untied(&self) -> bool {
        self.head.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    type B = Flex;

    #[test]
    fn unpermute_by_hand() {
        // One head of dim 4, d_in 1: GGUF rows [a0, b0, a1, b1] (pairs) → HF [a0, a1, b0, b1].
        let gguf = [10.0, 20.0, 11.0, 21.0];
        assert_eq!(unpermute_rows(&gguf, 1, 4, 1), vec![10.0, 11.0, 20.0, 21.0]);
    }

    mod smollm2 {
        //! The real checkpoint: skipped with a message outside CI when it cannot be fetched.
        use super::*;

        fn file() -> Option<&'static GgufFile> {
            crate::smollm2_for_tests()
        }

        fn logits(model: &Llama<B>, ids: &[u32]) -> Vec<f32> {
            let device = Default::default();
            let mut cache = KvCache::new(model.n_layers());
            let tokens = Tensor::<B, 2, Int>::from_data(
                TensorData::new(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [1, ids.len()]),
                &device,
            );
            let positions = vec![(0..ids.len()).collect::<Vec<_>>()];
            let h = model.hidden(tokens, &positions, None, &mut cache);
            model.logits(h).into_data().to_vec::<f32>().unwrap()
        }

        // "The capital of France is" in SmolLM2's vocabulary (checked by the tokenizer tests).
        const PROMPT: [u32; 5] = [504, 3575, 282, 4649, 314];

        #[test]
        fn config_rope_styles_and_kv_cache() {
            let Some(f) = file() else { return };
            let device = Default::default();
            let (hf, config) = Llama::<B>::from_gguf(f, RopeStyle::SplitHalf, &device).unwrap();
            assert_eq!(
                (
                    config.n_layers,
                    config.d_model,
                    config.n_heads,
                    config.n_kv_heads,
                    config.head_dim
                ),
                (30, 576, 9, 3, 64)
            );
            assert_eq!((config.vocab_size, config.ffn_dim, config.tied), (49_152, 1536, true));
            assert_eq!(config.rope_base, 100_000.0);
            let a = logits(&hf, &PROMPT);
            assert!(a.iter().all(|v| v.is_finite()));
            // llama.cpp's layout with interleaved rotation is the same model.
            let (cpp, _) = Llama::<B>::from_gguf(f, RopeStyle::Interleaved, &device).unwrap();
            let b = logits(&cpp, &PROMPT);
            let max = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(max < 1e-3, "split-half vs interleaved: max |Δlogit| = {max}");
            // Incremental decoding with the cache gives the full pass's last-position logits.
            let mut cache = KvCache::new(hf.n_layers());
            let step = |ids: &[u32], start: usize, cache: &mut KvCache<B>| {
                let tokens = Tensor::<B, 2, Int>::from_data(
                    TensorData::new(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [1, ids.len()]),
                    &device,
                );
                let positions = vec![(start..start + ids.len()).collect::<Vec<_>>()];
                hf.logits(hf.hidden(tokens, &positions, None, cache))
                    .into_data()
                    .to_vec::<f32>()
                    .unwrap()
            };
            step(&PROMPT[..3], 0, &mut cache);
            step(&PROMPT[3..4], 3, &mut cache);
            let last = step(&PROMPT[4..], 4, &mut cache);
            let v = config.vocab_size;
            let full_last = &a[4 * v..5 * v];
            let max = last
                .iter()
                .zip(full_last)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(max < 1e-3, "cached vs full: max |Δlogit| = {max}");
            // The safetensors export loads back to the same logits.
            let dir = tempfile::tempdir().unwrap();
            hf.save_safetensors(&config, dir.path()).unwrap();
            let (st, st_config) = Llama::<B>::from_safetensors(dir.path(), &device).unwrap();
            assert_eq!(st_config, config);
            assert_eq!(
                logits(&st, &PROMPT),
                a,
                "GGUF and converted safetensors give the same logits"
            );
            // Only Hugging Face layout is exported; a tensor too many is refused.
            assert!(cpp
                .save_safetensors(
                    &Llama::<B>::from_gguf(f, RopeStyle::Interleaved, &device).unwrap().1,
                    dir.path()
                )
                .is_err());
        }

        #[test]
        fn layer_surgery_keeps_the_chosen_blocks() {
            let Some(f) = file() else { return };
            let device = Default::default();
            let (full, _) = Llama::<B>::from_gguf(f, RopeStyle::SplitHalf, &device).unwrap();
            let tokens = |ids: &[u32]| {
                Tensor::<B, 2, Int>::from_data(
                    TensorData::new(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [1, ids.len()]),
                    &device,
                )
            };
            let positions = vec![(0..PROMPT.len()).collect::<Vec<_>>()];
            let mut cache = KvCache::new(full.n_layers());
            let (_, states) = full.hidden_states(tokens(&PROMPT), &positions, None, &mut cache, &[0, 1, 29]);
            assert_eq!(states.len(), 3);
            let first = full.clone().keep_first(2).unwrap();
            assert_eq!(first.n_layers(), 2);
            let mut cache = KvCache::new(2);
            let (_, small) = first.hidden_states(tokens(&PROMPT), &positions, None, &mut cache, &[1]);
            let a = states[1].clone().into_data().to_vec::<f32>().unwrap();
            let b = small[0].clone().into_data().to_vec::<f32>().unwrap();
            assert_eq!(a, b, "the truncated model's block 1 is the full model's block 1");
            assert_eq!(full.clone().keep_every(10).unwrap().n_layers(), 3);
            assert!(full
                .clone()
                .keep_layers(&[3, 3])
                .unwrap_err()
                .to_string()
                .contains("strictly ascending"));
            assert!(full.keep_layers(&[30]).unwrap_err().to_string().contains("below 30"));
        }

        /// Expected values from `transformers` 5.23 loading the same GGUF file
        /// (`AutoModelForCausalLM.from_pretrained(dir, gguf_file=…)`, float32, CPU), 2026-11-23:
        /// an independent implementation over the same dequantised weights.
        #[test]
        fn logits_and_greedy_match_transformers() {
            let Some(f) = file() else { return };
            let device = Default::default();
            let (model, config) = Llama::<B>::from_gguf(f, RopeStyle::SplitHalf, &device).unwrap();
            let v = config.vocab_size;
            let all = logits(&model, &PROMPT);
            let close = |got: f32, want: f32| (got - want).abs() < 2e-3 * want.abs().max(1.0);
            for (k, want) in [15.6553f32, 6.8245, 10.5912, 5.1095, 6.5944].into_iter().enumerate() {
                assert!(close(all[k], want), "position 0, id {k}: {} vs {want}", all[k]);
            }
            let last = &all[4 * v..5 * v];
            for (id, want) in [
                (0usize, 1.6136f32),
                (1, -11.8719),
                (2, -7.9445),
                (100, 1.3192),
                (1000, 2.8672),
                (7042, 17.3713),
                (260, 14.8886),
            ] {
                assert!(close(last[id], want), "last position, id {id}: {} vs {want}", last[id]);
            }
            // Greedy continuation: " Paris." then two newlines and "The ...".
            let out = model.generate_greedy(&PROMPT, 8, None);
            assert_eq!(out, vec![7042, 30, 198, 198, 504, 2988, 314, 42]);
            let tokenizer = crate::tokenizer::Tokenizer::from_gguf(f).unwrap();
            let text = tokenizer.decode(&out).unwrap();
            assert!(text.starts_with(" Paris."), "{text:?}");
            assert_eq!(tokenizer.encode("The capital of France is").unwrap(), PROMPT.to_vec());
        }

        #[test]
        fn beam_search_and_grown_vocabulary() {
            let Some(f) = file() else { return };
            let device = Default::default();
            let (model, config) = Llama::<B>::from_gguf(f, RopeStyle::SplitHalf, &device).unwrap();
            let greedy = model.generate_greedy(&PROMPT, 4, None);
            let one = model.generate_beam(&PROMPT, 1, 4, None);
            assert_eq!(one.len(), 1);
            assert_eq!(one[0].0, greedy, "one beam is greedy decoding");
            let three = model.generate_beam(&PROMPT, 3, 4, None);
            assert_eq!(three.len(), 3);
            assert!(three.windows(2).all(|w| w[0].1 >= w[1].1), "best first");
            assert!(
                three[0].1 >= one[0].1 - 1e-4,
                "a wider beam never finds a worse best sequence here"
            );
            assert_ne!(three[0].0, three[1].0);
            // New tokens: old logits unchanged, new rows present.
            let before = logits(&model, &PROMPT);
            let grown = model.grow_vocab(4);
            assert_eq!(grown.vocab_size(), config.vocab_size + 4);
            let after = logits(&grown, &PROMPT);
            let v = config.vocab_size;
            for p in 0..PROMPT.len() {
                let (a, b) = (&before[p * v..(p + 1) * v], &after[p * (v + 4)..p * (v + 4) + v]);
                let max = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
                assert!(max < 1e-4, "position {p}: old logits moved by {max}");
            }
            let with_new = logits(&grown, &[PROMPT[0], (v + 2) as u32]);
            assert!(with_new.iter().all(|x| x.is_finite()));
        }

        #[test]
        fn batched_greedy_equals_one_by_one() {
            let Some(f) = file() else { return };
            let device = Default::default();
            let (model, _) = Llama::<B>::from_gguf(f, RopeStyle::SplitHalf, &device).unwrap();
            let prompts = vec![PROMPT.to_vec(), PROMPT[2..].to_vec(), vec![504, 3575]];
            let batch = model.generate_greedy_batch(&prompts, 5, Some(30));
            for (p, got) in prompts.iter().zip(&batch) {
                assert_eq!(got, &model.generate_greedy(p, 5, Some(30)), "prompt {p:?}");
            }
            assert_eq!(batch[0], vec![7042], "stops before the '.' (id 30)");
        }
    }
}
