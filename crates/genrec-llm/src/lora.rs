//! LoRA (Hu et al., ICLR 2022): a frozen projection `W` plus a trainable low-rank update,
//! `y = x·W + (α / r) · dropout(x)·A·B`, with `A` `[in, r]` drawn as PEFT draws it
//! (Kaiming-uniform, bound `1/√in`) and `B` `[r, out]` zero, so a fresh adapter leaves the model
//! unchanged. [`Proj`] is every projection of a [`crate::Llama`] block; adapters attach to the
//! projections named in [`LoraConfig::targets`] ([`crate::Llama::with_lora`]) and fold into `W`
//! for inference ([`crate::Llama::merge_lora`]).

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use genrec_kernels::linear_rows;
use genrec_kernels::nn::drop_out;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::LlmError;

/// A projection of a LLaMA block that LoRA may adapt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoraTarget {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl LoraTarget {
    /// Every projection, in block order.
    pub const ALL: [LoraTarget; 7] = [
        LoraTarget::Q,
        LoraTarget::K,
        LoraTarget::V,
        LoraTarget::O,
        LoraTarget::Gate,
        LoraTarget::Up,
        LoraTarget::Down,
    ];

    /// The name in checkpoints and configs (`q`, `gate`, …).
    pub fn name(self) -> &'static str {
        match self {
            LoraTarget::Q => "q",
            LoraTarget::K => "k",
            LoraTarget::V => "v",
            LoraTarget::O => "o",
            LoraTarget::Gate => "gate",
            LoraTarget::Up => "up",
            LoraTarget::Down => "down",
        }
    }
}

/// Which projections get adapters and how large they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank `r` of the update `A·B`.
    pub rank: usize,
    /// Scale numerator: the update is multiplied by `alpha / rank`.
    pub alpha: f64,
    /// Dropout on the adapter's input during training.
    pub dropout: f64,
    /// Projections adapted in every block (`q`, `k`, `v`, `o`, `gate`, `up`, `down`).
    pub targets: Vec<LoraTarget>,
}

impl Default for LoraConfig {
    /// LC-Rec's LoRA settings: rank 8, α 32, dropout 0.05, every attention and feed-forward
    /// projection.
    fn default() -> Self {
        LoraConfig {
            rank: 8,
            alpha: 32.0,
            dropout: 0.05,
            targets: LoraTarget::ALL.to_vec(),
        }
    }
}

impl LoraConfig {
    /// Checks every field; the error names the field (`prefix` is where the table sits in the
    /// experiment config, e.g. `model.lora`).
    pub fn validate(&self, prefix: &str) -> Result<(), LlmError> {
        let bad = |field: &str, why: String| Err(LlmError::Config(format!("{prefix}.{field} {why}")));
        if self.rank == 0 || self.rank > 4096 {
            return bad("rank", format!("= {} must be in 1..=4096", self.rank));
        }
        if !self.alpha.is_finite() || self.alpha <= 0.0 {
            return bad("alpha", format!("= {} must be finite and positive", self.alpha));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout", format!("= {} must be in [0, 1)", self.dropout));
        }
        if self.targets.is_empty() {
            return bad(
                "targets",
                "is empty: name at least one of q, k, v, o, gate, up, down".into(),
            );
        }
        for (i, t) in self.targets.iter().enumerate() {
            if self.targets[..i].contains(t) {
                return bad("targets", format!("names `{}` twice", t.name()));
            }
        }
        Ok(())
    }

    /// `alpha / rank`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

/// The trainable low-rank update of one projection.
#[derive(Module, Debug)]
pub struct Adapter<B: Backend> {
    /// `[in, r]`
    pub a: Param<Tensor<B, 2>>,
    /// `[r, out]`
    pub b: Param<Tensor<B, 2>>,
    scale: f64,
    dropout: f64,
}

impl<B: Backend> Adapter<B> {
    /// A fresh adapter for a `[d_in, d_out]` projection: `A` Kaiming-uniform from `rng`, `B` zero.
    pub fn new(d_in: usize, d_out: usize, config: &LoraConfig, rng: &mut ChaCha8Rng, device: &B::Device) -> Self {
        let r = config.rank;
        let bound = 1.0 / (d_in as f32).sqrt();
        let a: Vec<f32> = (0..d_in * r).map(|_| rng.random_range(-bound..bound)).collect();
        Adapter {
            a: Param::from_tensor(Tensor::from_data(TensorData::new(a, [d_in, r]), device)),
            b: Param::from_tensor(Tensor::zeros([r, d_out], device)),
            scale: config.scale(),
            dropout: config.dropout,
        }
    }

    /// An adapter from stored factors (a checkpoint): `a` `[d_in, r]`, `b` `[r, d_out]`.
    pub fn from_factors(a: Tensor<B, 2>, b: Tensor<B, 2>, scale: f64, dropout: f64) -> Self {
        Adapter {
            a: Param::from_tensor(a),
            b: Param::from_tensor(b),
            scale,
            dropout,
        }
    }

    /// `(α / r) · A·B`, `[in, out]`: what merging adds to the frozen weight.
    pub fn delta(&self) -> Tensor<B, 2> {
        self.a.val().matmul(self.b.val()).mul_scalar(self.scale)
    }

    /// `(α / r) · dropout(x)·A·B`.
    ///
    /// # Shapes
    /// - `x`: `[batch, len, in]`, output `[batch, len, out]`
    pub fn forward(&self, x: Tensor<B, 3>, rng: Option<&mut ChaCha8Rng>) -> Tensor<B, 3> {
        let [b, t, d] = x.dims();
        let x = drop_out(x, self.dropout, rng).reshape([b * t, d]);
        let y = x.matmul(self.a.val()).matmul(self.b.val()).mul_scalar(self.scale);
        let out = y.dims()[1];
        y.reshape([b, t, out])
    }
}

/// A bias-free projection with an optional LoRA adapter.
#[derive(Module, Debug)]
pub struct Proj<B: Backend> {
    /// `W`, stored `[in, out]`.
    pub base: Linear<B>,
    pub lora: Option<Adapter<B>>,
}

impl<B: Backend> Proj<B> {
    pub fn new(base: Linear<B>) -> Self {
        Proj { base, lora: None }
    }

    /// `x·W`, plus the adapter's update when one is attached (`rng` = training: its dropout).
    ///
    /// # Shapes
    /// - `x`: `[batch, len, in]`, output `[batch, len, out]`
    pub fn forward(&self, x: Tensor<B, 3>, rng: Option<&mut ChaCha8Rng>) -> Tensor<B, 3> {
        match &self.lora {
            None => linear_rows(&self.base, x),
            Some(adapter) => linear_rows(&self.base, x.clone()) + adapter.forward(x, rng),
        }
    }

    /// `[in, out]` of `W`.
    pub fn dims(&self) -> [usize; 2] {
        self.base.weight.val().dims()
    }

    /// `W + (α / r)·A·B` as a plain projection (no adapter).
    pub fn merged(self) -> Self {
        match self.lora {
            None => self,
            Some(adapter) => {
                let w = self.base.weight.val() + adapter.delta();
                // A fresh leaf: an expression of trainable tensors cannot become a parameter.
                let w = Tensor::from_data(w.into_data(), &adapter.a.val().device());
                Proj {
                    base: Linear {
                        weight: Param::from_tensor(w),
                        bias: None,
                    },
                    lora: None,
                }
            }
        }
    }
}

/// What [`save_delta`] writes beside the tensors.
const DELTA_FORMAT: &str = "genrec-lora-v1";

/// PEFT's name of an adapter factor (`"A"` or `"B"`) of block `layer`'s projection `target`.
fn peft_name(layer: usize, target: LoraTarget, factor: &str) -> String {
    let module = match target {
        LoraTarget::Q | LoraTarget::K | LoraTarget::V | LoraTarget::O => format!("self_attn.{}_proj", target.name()),
        _ => format!("mlp.{}_proj", target.name()),
    };
    format!("base_model.model.model.layers.{layer}.{module}.lora_{factor}.weight")
}

/// A 64-bit FNV-1a digest of a model's checkpoint weights (final norm, the first and last
/// embedding rows of its own vocabulary, block 0's query projection, the block count): what
/// [`load_delta`] compares to refuse adapters trained on another base.
pub fn base_fingerprint<B: Backend>(model: &crate::Llama<B>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |values: Vec<f32>| {
        for v in values {
            for byte in v.to_bits().to_le_bytes() {
                hash ^= byte as u64;
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    };
    let host = |t: Tensor<B, 2>| t.into_data().convert::<f32>().to_vec::<f32>().unwrap_or_default();
    let embed = model.embedding();
    let (v, d) = (model.base_vocab_size(), model.d_model());
    eat(host(embed.clone().slice([0..v.min(8), 0..d])));
    eat(host(embed.slice([v - 1..v, 0..d])));
    if let Some(block) = model.blocks().first() {
        let w = block.proj(LoraTarget::Q).base.weight.val();
        let [r, c] = w.dims();
        eat(host(w.slice([0..r.min(8), 0..c])));
    }
    eat(vec![model.blocks().len() as f32, v as f32]);
    format!("{hash:016x}")
}

/// Writes what fine-tuning changed — every LoRA adapter (PEFT's names and layout: `lora_A`
/// `[r, in]`, `lora_B` `[out, r]`) and the added tokens' rows (`added.embed_tokens`
/// `[added, d]`, `added.lm_head` for an untied head) — to `path` as safetensors, with the base's
/// fingerprint and the LoRA settings in its metadata; through a temporary file and a rename.
pub fn save_delta<B: Backend>(
    model: &crate::Llama<B>,
    config: &LoraConfig,
    path: &std::path::Path,
) -> Result<(), LlmError> {
    let io = |e: &dyn std::fmt::Display| LlmError::Weights(format!("{}: {e}", path.display()));
    let host = |t: Tensor<B, 2>| -> Result<(Vec<usize>, Vec<u8>), LlmError> {
        let dims = t.dims().to_vec();
        let values = t
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| io(&format!("{e:?}")))?;
        Ok((dims, values.iter().flat_map(|x| x.to_le_bytes()).collect()))
    };
    // The metadata must describe the tensors written: every block adapts exactly `config.targets`
    // at `config.rank`.
    for (l, block) in model.blocks().iter().enumerate() {
        for target in LoraTarget::ALL {
            let rank = block.proj(target).lora.as_ref().map(|a| a.a.val().dims()[1]);
            let expected = config.targets.contains(&target).then_some(config.rank);
            if rank != expected {
                return Err(io(&format!(
                    "block {l}'s `{}` projection has an adapter of rank {rank:?}, the LoRA config says {expected:?}",
                    target.name()
                )));
            }
        }
    }
    let mut named: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (l, block) in model.blocks().iter().enumerate() {
        for target in LoraTarget::ALL {
            if let Some(adapter) = &block.proj(target).lora {
                let (dims, bytes) = host(adapter.a.val().transpose())?;
                named.push((peft_name(l, target, "A"), dims, bytes));
                let (dims, bytes) = host(adapter.b.val().transpose())?;
                named.push((peft_name(l, target, "B"), dims, bytes));
            }
        }
    }
    let (embed, head) = model.added_rows();
    if let Some(embed) = embed {
        let (dims, bytes) = host(embed)?;
        named.push(("added.embed_tokens".into(), dims, bytes));
    }
    if let Some(head) = head {
        let (dims, bytes) = host(head.transpose())?;
        named.push(("added.lm_head".into(), dims, bytes));
    }
    let targets: Vec<&str> = config.targets.iter().map(|t| t.name()).collect();
    let metadata: std::collections::HashMap<String, String> = [
        ("format", DELTA_FORMAT.to_string()),
        ("fingerprint", base_fingerprint(model)),
        ("base_vocab", model.base_vocab_size().to_string()),
        ("added", model.added_tokens().to_string()),
        ("d_model", model.d_model().to_string()),
        ("n_layers", model.blocks().len().to_string()),
        ("rank", config.rank.to_string()),
        ("alpha", config.alpha.to_string()),
        ("dropout", config.dropout.to_string()),
        ("targets", targets.join(",")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let views = named
        .iter()
        .map(|(name, dims, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, dims.clone(), bytes)
                .map(|view| (name.clone(), view))
                .map_err(|e| io(&e))
        })
        .collect::<Result<Vec<_>, LlmError>>()?;
    let tmp = path.with_extension("safetensors.tmp");
    safetensors::serialize_to_file(views, Some(metadata), &tmp).map_err(|e| io(&e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(&e))
}

/// Loads a file written by [`save_delta`] onto `model`, the base it was trained on (loaded from
/// GGUF or safetensors, with the same layers kept, no tokens added yet): attaches the adapters
/// and the added tokens' rows. A file from another base (fingerprint, vocabulary, width or
/// depth differ) is an error that says which.
pub fn load_delta<B: Backend>(
    mut model: crate::Llama<B>,
    path: &std::path::Path,
) -> Result<(crate::Llama<B>, LoraConfig), LlmError> {
    let err = |why: String| LlmError::Weights(format!("{}: {why}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| err(e.to_string()))?;
    let file = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| err(e.to_string()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let get = |k: &str| {
        meta.get(k)
            .cloned()
            .ok_or_else(|| err(format!("metadata has no `{k}`: not a genrec adapter file")))
    };
    let num = |k: &str| -> Result<usize, LlmError> {
        get(k)?
            .parse()
            .map_err(|_| err(format!("metadata `{k}` is not a whole number")))
    };
    let real = |k: &str| -> Result<f64, LlmError> {
        get(k)?
            .parse()
            .map_err(|_| err(format!("metadata `{k}` is not a number")))
    };
    if get("format")? != DELTA_FORMAT {
        return Err(err(format!("format `{}` is not {DELTA_FORMAT}", get("format")?)));
    }
    let checks = [
        ("n_layers", num("n_layers")?, model.blocks().len()),
        ("base_vocab", num("base_vocab")?, model.base_vocab_size()),
        ("d_model", num("d_model")?, model.d_model()),
    ];
    for (key, theirs, ours) in checks {
        if theirs != ours {
            return Err(err(format!(
                "adapters were trained on a base with {key} = {theirs}; this model has {ours}"
            )));
        }
    }
    if model.added_tokens() != 0 {
        return Err(err(
            "load the adapters onto the base model, before tokens are added".into()
        ));
    }
    let fingerprint = base_fingerprint(&model);
    if get("fingerprint")? != fingerprint {
        return Err(err(format!(
            "adapters were trained on a different base model (fingerprint {}, this model {fingerprint})",
            get("fingerprint")?
        )));
    }
    let targets = get("targets")?
        .split(',')
        .map(|name| {
            LoraTarget::ALL
                .into_iter()
                .find(|t| t.name() == name)
                .ok_or_else(|| err(format!("metadata names an unknown target `{name}`")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let config = LoraConfig {
        rank: num("rank")?,
        alpha: real("alpha")?,
        dropout: real("dropout")?,
        targets,
    };
    config.validate("metadata").map_err(|e| err(e.to_string()))?;
    let device = model.embedding().device();
    let tensor = |name: &str, shape: [usize; 2]| -> Result<Tensor<B, 2>, LlmError> {
        let view = file.tensor(name).map_err(|_| err(format!("missing tensor {name}")))?;
        if view.shape() != shape || view.dtype() != safetensors::Dtype::F32 {
            return Err(err(format!(
                "tensor {name} is {:?} {:?}, expected F32 {shape:?}",
                view.dtype(),
                view.shape()
            )));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok(Tensor::from_data(TensorData::new(values, shape), &device))
    };
    let r = config.rank;
    for (l, block) in model.blocks_mut().iter_mut().enumerate() {
        for &target in &config.targets {
            let proj = block.proj_mut(target);
            let [d_in, d_out] = proj.dims();
            let a = tensor(&peft_name(l, target, "A"), [r, d_in])?.transpose();
            let b = tensor(&peft_name(l, target, "B"), [d_out, r])?.transpose();
            proj.lora = Some(Adapter::from_factors(a, b, config.scale(), config.dropout));
        }
    }
    let added = num("added")?;
    if added > 0 {
        let d = model.d_model();
        let embed = tensor("added.embed_tokens", [added, d])?;
        let head = if model.untied() {
            Some(tensor("added.lm_head", [added, d])?.transpose())
        } else {
            None
        };
        model.set_added_rows(embed, head);
    }
    Ok((model, config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::random_weights;
    use crate::{Llama, LlamaConfig, RopeStyle};
    use burn::tensor::Int;
    use rand::SeedableRng;

    type B = burn::backend::Flex;
    type A = burn::backend::Autodiff<B>;

    fn config(tied: bool) -> LlamaConfig {
        LlamaConfig {
            vocab_size: 40,
            d_model: 16,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 4,
            ffn_dim: 24,
            rope_base: 10_000.0,
            rope_style: RopeStyle::SplitHalf,
            rms_eps: 1e-5,
            max_len: 64,
            tied,
        }
    }

    fn tiny<Bk: Backend>(tied: bool, seed: u64) -> Llama<Bk> {
        let c = config(tied);
        Llama::from_weights(&c, random_weights(&c, seed).unwrap(), &Default::default()).unwrap()
    }

    const TOKENS: [i64; 6] = [3, 17, 5, 41, 9, 40];

    fn logits<Bk: Backend>(model: &Llama<Bk>) -> Vec<f32> {
        let device = Default::default();
        let tokens = Tensor::<Bk, 2, Int>::from_data(TensorData::new(TOKENS.to_vec(), [1, TOKENS.len()]), &device);
        let positions = vec![(0..TOKENS.len()).collect::<Vec<_>>()];
        let mut cache = crate::llama::KvCache::new(model.n_layers());
        let h = model.hidden(tokens, &positions, None, &mut cache);
        model.logits(h).into_data().to_vec::<f32>().unwrap()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    /// Sets every adapter's B to seeded noise, as if it had trained.
    fn perturb<Bk: Backend>(mut model: Llama<Bk>, seed: u64) -> Llama<Bk> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for block in model.blocks_mut() {
            for target in LoraTarget::ALL {
                if let Some(adapter) = &mut block.proj_mut(target).lora {
                    let [r, out] = adapter.b.val().dims();
                    let values: Vec<f32> = (0..r * out).map(|_| rng.random_range(-0.5..0.5)).collect();
                    adapter.b = Param::from_tensor(Tensor::from_data(
                        TensorData::new(values, [r, out]),
                        &Default::default(),
                    ));
                }
            }
        }
        model
    }

    #[test]
    fn fresh_adapters_leave_the_model_unchanged() {
        for tied in [true, false] {
            let base = tiny::<B>(tied, 1).grow_vocab(2);
            let before = logits(&base);
            let adapted = base.with_lora(&LoraConfig::default(), 7).unwrap();
            assert_eq!(logits(&adapted), before, "B = 0 must give the base's logits exactly");
        }
    }

    #[test]
    fn merged_adapters_equal_unmerged() {
        for tied in [true, false] {
            let config = LoraConfig {
                targets: vec![LoraTarget::Q, LoraTarget::V, LoraTarget::Down],
                ..LoraConfig::default()
            };
            let base = tiny::<B>(tied, 2).grow_vocab(2);
            let before = logits(&base);
            let adapted = perturb(base.with_lora(&config, 3).unwrap(), 4);
            let unmerged = logits(&adapted);
            assert!(
                max_diff(&unmerged, &before) > 1e-3,
                "the perturbed adapters must change the logits"
            );
            let prepared = logits(&adapted.clone().prepared_for_decoding());
            let diff = max_diff(&prepared, &unmerged);
            assert!(diff < 1e-4, "prepared-for-decoding vs unmerged logits differ by {diff}");
            let merged = adapted.merge_lora();
            assert!(merged
                .blocks()
                .iter()
                .all(|b| LoraTarget::ALL.iter().all(|&t| b.proj(t).lora.is_none())));
            let diff = max_diff(&logits(&merged), &unmerged);
            assert!(diff < 1e-4, "merged vs unmerged logits differ by {diff}");
        }
    }

    #[test]
    fn merging_and_growing_work_on_an_autodiff_model() {
        // Expressions of trainable tensors become fresh parameters (a non-leaf would panic).
        let model = perturb(tiny::<A>(true, 1).grow_vocab(2).grow_vocab_normal(3, 0.02, 1), 2);
        let model = perturb(model.with_lora(&LoraConfig::default(), 3).unwrap(), 4);
        assert_eq!(model.vocab_size(), 45);
        let merged = model.clone().merge_lora().prepared_for_decoding();
        assert!(max_diff(&logits(&merged), &logits(&model)) < 1e-4);
        let wrong = LoraConfig {
            rank: 4,
            ..LoraConfig::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let err = save_delta(&model, &wrong, &dir.path().join("a.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("rank Some(8)") && err.contains("Some(4)"), "{err}");
    }

    #[test]
    fn only_adapters_and_added_rows_get_gradients() {
        let model = tiny::<A>(false, 5)
            .grow_vocab(3)
            .freeze_base()
            .with_lora(&LoraConfig::default(), 6)
            .unwrap();
        let model = perturb(model, 8);
        let device = Default::default();
        let tokens = Tensor::<A, 2, Int>::from_data(TensorData::new(TOKENS.to_vec(), [1, TOKENS.len()]), &device);
        let positions = vec![(0..TOKENS.len()).collect::<Vec<_>>()];
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let h = model.hidden_train(tokens, &positions, None, &mut rng);
        let loss = model.logits(h).powi_scalar(2).mean();
        let grads = loss.backward();
        let block = &model.blocks()[1];
        let adapter = block.proj(LoraTarget::Up).lora.as_ref().unwrap();
        assert!(adapter.a.grad(&grads).is_some() && adapter.b.grad(&grads).is_some());
        let (added, added_head) = model.added_rows();
        assert!(added.unwrap().grad(&grads).is_some(), "added embedding rows must train");
        assert!(
            added_head.unwrap().grad(&grads).is_some(),
            "added head columns must train"
        );
        assert!(
            block.proj(LoraTarget::Up).base.weight.grad(&grads).is_none(),
            "a frozen projection got a gradient"
        );
        let weights_without_grad = model.embed_param().grad(&grads).is_none();
        assert!(weights_without_grad, "the checkpoint's embedding rows got a gradient");
    }

    #[test]
    fn delta_round_trip_and_a_different_base_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("adapters.safetensors");
        for tied in [true, false] {
            let config = LoraConfig {
                rank: 3,
                targets: vec![LoraTarget::K, LoraTarget::Gate],
                ..LoraConfig::default()
            };
            let trained = perturb(tiny::<B>(tied, 10).grow_vocab(2).with_lora(&config, 11).unwrap(), 12);
            save_delta(&trained, &config, &path).unwrap();
            let (loaded, read) = load_delta(tiny::<B>(tied, 10), &path).unwrap();
            assert_eq!(read, config);
            assert_eq!(loaded.vocab_size(), trained.vocab_size());
            let diff = max_diff(&logits(&loaded), &logits(&trained));
            assert!(diff < 1e-5, "loaded vs saved logits differ by {diff}");
            let err = load_delta(tiny::<B>(tied, 99), &path).unwrap_err().to_string();
            assert!(
                err.contains("different base model") && err.contains("adapters.safetensors"),
                "{err}"
            );
            let err = load_delta(tiny::<B>(tied, 10).keep_first(1).unwrap(), &path)
                .unwrap_err()
                .to_string();
            assert!(err.contains("n_layers = 2") && err.contains("has 1"), "{err}");
        }
        std::fs::write(&path, b"not safetensors").unwrap();
        let err = load_delta(tiny::<B>(true, 10), &path).unwrap_err().to_string();
        assert!(err.contains("adapters.safetensors"), "{err}");
    }

    #[test]
    fn normal_new_rows_are_seeded_draws_of_the_asked_spread() {
        let grow = |seed| {
            let (rows, head) = tiny::<B>(false, 1).grow_vocab_normal(500, 0.02, seed).added_rows();
            (rows.unwrap().into_data().to_vec::<f32>().unwrap(), head.unwrap().dims())
        };
        let (a, head) = grow(3);
        assert_eq!(head, [16, 500], "untied head columns grow too");
        assert_eq!(a, grow(3).0, "same seed, same rows");
        assert_ne!(a, grow(4).0);
        let n = a.len() as f64;
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / n;
        let std = (a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!(
            mean.abs() < 0.002 && (std - 0.02).abs() < 0.001,
            "mean {mean}, std {std}"
        );
    }

    #[test]
    fn config_errors_name_the_field() {
        let cases = [
            (
                LoraConfig {
                    rank: 0,
                    ..LoraConfig::default()
                },
                "model.lora.rank",
            ),
            (
                LoraConfig {
                    alpha: f64::NAN,
                    ..LoraConfig::default()
                },
                "model.lora.alpha",
            ),
            (
                LoraConfig {
                    dropout: 1.0,
                    ..LoraConfig::default()
                },
                "model.lora.dropout",
            ),
            (
                LoraConfig {
                    targets: vec![],
                    ..LoraConfig::default()
                },
                "model.lora.targets",
            ),
            (
                LoraConfig {
                    targets: vec![LoraTarget::Q, LoraTarget::Q],
                    ..LoraConfig::default()
                },
                "twice",
            ),
        ];
        for (config, expected) in cases {
            let err = config.validate("model.lora").unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
    }
}
