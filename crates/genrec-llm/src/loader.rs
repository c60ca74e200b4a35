//! Weight loading and saving for [`crate::llama::Llama`], with one declarative key map between
//! the model's tensors, Hugging Face names (safetensors) and llama.cpp names (GGUF).
//!
//! Host weights ([`LlamaWeights`]) are f32, row-major, in Hugging Face layout: linear weights
//! `[out, in]`, q/k rows in split-half rotary order. Reading a GGUF file undoes llama.cpp's q/k
//! permutation unless the interleaved rotary convention is asked for. A safetensors directory
//! holds `model.safetensors` (Hugging Face names) and `config.json` (Hugging Face `LlamaConfig`
//! keys); loading it fails on a missing tensor, a wrong shape and on tensors it does not use.

use crate::LlmError;
use std::collections::BTreeSet;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde_json::json;

use crate::gguf::GgufFile;
use crate::llama::{unpermute_rows, LlamaConfig, RopeStyle};

/// One decoder block's weights, Hugging Face layout.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockWeights {
    pub attn_norm: Vec<f32>,
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    pub o: Vec<f32>,
    pub ffn_norm: Vec<f32>,
    pub gate: Vec<f32>,
    pub up: Vec<f32>,
    pub down: Vec<f32>,
}

/// Every weight of a model on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaWeights {
    /// `[vocab, d_model]`
    pub embed: Vec<f32>,
    pub blocks: Vec<BlockWeights>,
    pub norm: Vec<f32>,
    /// Untied head `[vocab, d_model]`.
    pub head: Option<Vec<f32>>,
}

/// Per-block tensors: (Hugging Face suffix after `model.layers.N.`, GGUF suffix after `blk.N.`).
pub const BLOCK_KEYS: [(&str, &str); 9] = [
    ("input_layernorm.weight", "attn_norm.weight"),
    ("self_attn.q_proj.weight", "attn_q.weight"),
    ("self_attn.k_proj.weight", "attn_k.weight"),
    ("self_attn.v_proj.weight", "attn_v.weight"),
    ("self_attn.o_proj.weight", "attn_output.weight"),
    ("post_attention_layernorm.weight", "ffn_norm.weight"),
    ("mlp.gate_proj.weight", "ffn_gate.weight"),
    ("mlp.up_proj.weight", "ffn_up.weight"),
    ("mlp.down_proj.weight", "ffn_down.weight"),
];

/// Model-level tensors: (Hugging Face name, GGUF name).
pub const GLOBAL_KEYS: [(&str, &str); 3] = [
    ("model.embed_tokens.weight", "token_embd.weight"),
    ("model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
];

/// The shape of each block tensor, in [`BLOCK_KEYS`] order.
fn block_shapes(c: &LlamaConfig) -> [Vec<usize>; 9] {
    let (d, q, kv, f) = (c.d_model, c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim, c.ffn_dim);
    [
        vec![d],
        vec![q, d],
        vec![kv, d],
        vec![kv, d],
        vec![d, q],
        vec![d],
        vec![f, d],
        vec![f, d],
        vec![d, f],
    ]
}

/// Assembles the weights from a lookup by Hugging Face name (`get(name, shape)`).
fn collect(
    c: &LlamaConfig,
    mut get: impl FnMut(&str, &[usize]) -> Result<Vec<f32>, LlmError>,
) -> Result<LlamaWeights, LlmError> {
    let shapes = block_shapes(c);
    let mut blocks = Vec::with_capacity(c.n_layers);
    for l in 0..c.n_layers {
        let mut t: Vec<Vec<f32>> = Vec::with_capacity(9);
        for ((hf, _), shape) in BLOCK_KEYS.iter().zip(&shapes) {
            t.push(get(&format!("model.layers.{l}.{hf}"), shape)?);
        }
        let mut t = t.into_iter();
        let mut next = || t.next().expect("nine tensors");
        blocks.push(BlockWeights {
            attn_norm: next(),
            q: next(),
            k: next(),
            v: next(),
            o: next(),
            ffn_norm: next(),
            gate: next(),
            up: next(),
            down: next(),
        });
    }
    let (v, d) = (c.vocab_size, c.d_model);
    Ok(LlamaWeights {
        embed: get(GLOBAL_KEYS[0].0, &[v, d])?,
        blocks,
        norm: get(GLOBAL_KEYS[1].0, &[d])?,
        head: if c.tied {
            None
        } else {
            Some(get(GLOBAL_KEYS[2].0, &[v, d])?)
        },
    })
}

/// Weights for a model trained from scratch (or a tiny model in tests): norms 1, every other
/// tensor N(0, 0.02²) as Hugging Face's `LlamaPreTrainedModel` initialises them, drawn from a
/// ChaCha8 stream seeded by `seed`.
pub fn random_weights(config: &LlamaConfig, seed: u64) -> Result<LlamaWeights, LlmError> {
    use rand::SeedableRng;
    config.validate()?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    collect(config, |name, shape| {
        let n: usize = shape.iter().product();
        Ok(if name.ends_with("norm.weight") {
            vec![1.0; n]
        } else {
            normal_values(n, 0.02, &mut rng)
        })
    })
}

/// `n` draws from N(0, std²) (Box–Muller over two uniforms; the second normal is dropped).
pub fn normal_values(n: usize, std: f64, rng: &mut rand_chacha::ChaCha8Rng) -> Vec<f32> {
    use rand::Rng;
    (0..n)
        .map(|_| {
            let u: f64 = 1.0 - rng.random::<f64>();
            let v: f64 = rng.random::<f64>();
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos() * std) as f32
        })
        .collect()
}

/// The GGUF name of a Hugging Face name (through the key map).
fn gguf_name(hf: &str) -> String {
    if let Some(&(_, g)) = GLOBAL_KEYS.iter().find(|(h, _)| *h == hf) {
        return g.to_string();
    }
    let rest = hf.strip_prefix("model.layers.").expect("a block key");
    let (layer, suffix) = rest.split_once('.').expect("layer.suffix");
    let &(_, g) = BLOCK_KEYS
        .iter()
        .find(|(h, _)| *h == suffix)
        .expect("a known block key");
    format!("blk.{layer}.{g}")
}

/// Reads the config and weights of a GGUF LLaMA checkpoint (dequantised to f32). With
/// `SplitHalf` the q/k rows are put back in Hugging Face order; with `Interleaved` they stay in
/// llama.cpp's order (the model then rotates interleaved pairs).
pub fn read_gguf(file: &GgufFile, rope_style: RopeStyle) -> Result<(LlamaConfig, LlamaWeights), LlmError> {
    let err = LlmError::Gguf;
    let arch = file.get_str("general.architecture").map_err(err)?;
    if arch != "llama" {
        return Err(LlmError::Weights(format!(
            "{}: general.architecture is `{arch}`, not llama",
            file.path().display()
        )));
    }
    let key = |k: &str| format!("llama.{k}");
    let d_model = file.get_usize(&key("embedding_length")).map_err(err)?;
    let n_heads = file.get_usize(&key("attention.head_count")).map_err(err)?;
    let config = LlamaConfig {
        vocab_size: file.tensor("token_embd.weight").map_err(err)?.row_major_shape()[0],
        d_model,
        n_layers: file.get_usize(&key("block_count")).map_err(err)?,
        n_heads,
        n_kv_heads: file.get_usize(&key("attention.head_count_kv")).map_err(err)?,
        head_dim: file
            .get_usize(&key("rope.dimension_count"))
            .unwrap_or(d_model / n_heads.max(1)),
        ffn_dim: file.get_usize(&key("feed_forward_length")).map_err(err)?,
        rope_base: file.get_f64(&key("rope.freq_base")).unwrap_or(10_000.0),
        rope_style,
        rms_eps: file.get_f64(&key("attention.layer_norm_rms_epsilon")).map_err(err)?,
        max_len: file.get_usize(&key("context_length")).map_err(err)?,
        tied: file.tensor("output.weight").is_err(),
    };
    config
        .validate()
        .map_err(|e| LlmError::Weights(format!("{}: {e}", file.path().display())))?;
    let weights = collect(&config, |hf, shape| {
        let name = gguf_name(hf);
        let info = file.tensor(&name).map_err(err)?;
        if info.row_major_shape() != shape {
            return Err(LlmError::Weights(format!(
                "{}: tensor {name} has shape {:?}, expected {shape:?}",
                file.path().display(),
                info.row_major_shape()
            )));
        }
        let values = file.tensor_f32(&name).map_err(err)?;
        let heads = if hf.ends_with("q_proj.weight") {
            Some(config.n_heads)
        } else if hf.ends_with("k_proj.weight") {
            Some(config.n_kv_heads)
        } else {
            None
        };
        Ok(match heads {
            Some(n) if rope_style == RopeStyle::SplitHalf => unpermute_rows(&values, n, config.head_dim, shape[1]),
            _ => values,
        })
    })?;
    Ok((config, weights))
}

/// Hugging Face `config.json` of a model.
fn hf_config(c: &LlamaConfig) -> serde_json::Value {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": c.vocab_size,
        "hidden_size": c.d_model,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads,
        "head_dim": c.head_dim,
        "intermediate_size": c.ffn_dim,
        "rope_theta": c.rope_base,
        "rms_norm_eps": c.rms_eps,
        "max_position_embeddings": c.max_len,
        "tie_word_embeddings": c.tied,
        "hidden_act": "silu",
        "torch_dtype": "float32",
    })
}

/// Writes `dir/model.safetensors` and `dir/config.json` (each through a temporary file and a
/// rename). Only Hugging Face (split-half) layout can be written.
pub fn write_safetensors(dir: &Path, config: &LlamaConfig, weights: &LlamaWeights) -> Result<(), LlmError> {
    if config.rope_style != RopeStyle::SplitHalf {
        return Err(LlmError::Weights(
            "only split-half (Hugging Face layout) weights can be written as safetensors".into(),
        ));
    }
    let io = |e: &dyn std::fmt::Display| LlmError::Weights(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(|e| io(&e))?;
    let shapes = block_shapes(config);
    let mut named: Vec<(String, Vec<usize>, &[f32])> = Vec::new();
    let (v, d) = (config.vocab_size, config.d_model);
    named.push((GLOBAL_KEYS[0].0.into(), vec![v, d], &weights.embed));
    named.push((GLOBAL_KEYS[1].0.into(), vec![d], &weights.norm));
    if let Some(head) = &weights.head {
        named.push((GLOBAL_KEYS[2].0.into(), vec![v, d], head));
    }
    for (l, b) in weights.blocks.iter().enumerate() {
        let tensors = [
            &b.attn_norm,
            &b.q,
            &b.k,
            &b.v,
            &b.o,
            &b.ffn_norm,
            &b.gate,
            &b.up,
            &b.down,
        ];
        for (((hf, _), shape), t) in BLOCK_KEYS.iter().zip(&shapes).zip(tensors) {
            named.push((format!("model.layers.{l}.{hf}"), shape.clone(), t));
        }
    }
    let bytes: Vec<Vec<u8>> = named
        .iter()
        .map(|(_, _, t)| t.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = named
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|view| (name.clone(), view))
                .map_err(|e| io(&e))
        })
        .collect::<Result<Vec<_>, LlmError>>()?;
    let tmp = dir.join("model.safetensors.tmp");
    safetensors::serialize_to_file(views, None, &tmp).map_err(|e| io(&e))?;
    std::fs::rename(&tmp, dir.join("model.safetensors")).map_err(|e| io(&e))?;
    let tmp = dir.join("config.json.tmp");
    let text = serde_json::to_string_pretty(&hf_config(config)).map_err(|e| io(&e))?;
    std::fs::write(&tmp, text + "\n").map_err(|e| io(&e))?;
    std::fs::rename(&tmp, dir.join("config.json")).map_err(|e| io(&e))
}

/// Reads a directory written by [`write_safetensors`] (or a Hugging Face LLaMA checkpoint in
/// float32 with the same names).
pub fn read_safetensors(dir: &Path) -> Result<(LlamaConfig, LlamaWeights), LlmError> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| LlmError::Weights(format!("{}: {e}", config_path.display())))?;
    let j: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| LlmError::Weights(format!("{}: {e}", config_path.display())))?;
    let field = |k: &str| -> Result<&serde_json::Value, LlmError> {
        j.get(k)
            .ok_or_else(|| LlmError::Weights(format!("{}: missing `{k}`", config_path.display())))
    };
    let usize_of = |k: &str| -> Result<usize, LlmError> {
        field(k)?
            .as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| LlmError::Weights(format!("{}: `{k}` is not a whole number", config_path.display())))
    };
    let f64_of = |k: &str| -> Result<f64, LlmError> {
        field(k)?
            .as_f64()
            .ok_or_else(|| LlmError::Weights(format!("{}: `{k}` is not a number", config_path.display())))
    };
    let d_model = usize_of("hidden_size")?;
    let n_heads = usize_of("num_attention_heads")?;
    let config = LlamaConfig {
        vocab_size: usize_of("vocab_size")?,
        d_model,
        n_layers: usize_of("num_hidden_layers")?,
        n_heads,
        n_kv_heads: usize_of("num_key_value_heads").unwrap_or(n_heads),
        head_dim: usize_of("head_dim").unwrap_or(d_model / n_heads.max(1)),
        ffn_dim: usize_of("intermediate_size")?,
        rope_base: f64_of("rope_theta").unwrap_or(10_000.0),
        rope_style: RopeStyle::SplitHalf,
        rms_eps: f64_of("rms_norm_eps")?,
        max_len: usize_of("max_position_embeddings")?,
        tied: j.get("tie_word_embeddings").and_then(|v| v.as_bool()).unwrap_or(false),
    };
    config
        .validate()
        .map_err(|e| LlmError::Weights(format!("{}: {e}", config_path.display())))?;
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).map_err(|e| LlmError::Weights(format!("{}: {e}", path.display())))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| LlmError::Weights(format!("{}: {e}", path.display())))?;
    let mut unused: BTreeSet<String> = file.names().into_iter().map(String::from).collect();
    let weights = collect(&config, |name, shape| {
        let view = file
            .tensor(name)
            .map_err(|_| LlmError::Weights(format!("{}: missing tensor {name}", path.display())))?;
        if view.shape() != shape || view.dtype() != Dtype::F32 {
            return Err(LlmError::Weights(format!(
                "{}: tensor {name} is {:?} {:?}, expected F32 {shape:?}",
                path.display(),
                view.dtype(),
                view.shape()
            )));
        }
        unused.remove(name);
        Ok(view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    })?;
    // Hugging Face checkpoints may carry precomputed rotary buffers; nothing else may be left.
    unused.retain(|n| !n.ends_with("rotary_emb.inv_freq"));
    if !unused.is_empty() {
        let list: Vec<&str> = unused.iter().map(String::as_str).take(5).collect();
        return Err(LlmError::Weights(format!(
            "{}: {} tensors are not used by the model (first: {})",
            path.display(),
            unused.len(),
            list.join(", ")
        )));
    }
    Ok((config, weights))
}
