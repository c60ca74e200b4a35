//! Small building blocks shared by the models of every crate.

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::RngCore;
use rand_chacha::ChaCha8Rng;

use crate::gelu;

/// Inverted dropout with the mask drawn on the host from the training loop's seeded RNG. Burn
/// 0.21's Flex backend draws each Bernoulli sample through a generic distribution sampler (~13 ns
/// per element, 15% of a SASRec step); 16 random bits per element from ChaCha8 cost ~0.4 ns.
/// `rng = None` (evaluation) is the identity. The drop probability is `p` rounded to 1/65536.
pub fn drop_out<B: Backend, const D: usize>(x: Tensor<B, D>, p: f64, rng: Option<&mut ChaCha8Rng>) -> Tensor<B, D> {
    let Some(rng) = rng else { return x };
    if p == 0.0 {
        return x;
    }
    let shape = x.shape();
    let n = shape.num_elements();
    let threshold = (p * 65536.0).round() as u64;
    let keep = 65536.0 / (65536 - threshold) as f32;
    // Four 16-bit draws per u64, written in place (no per-element push).
    let mut mask = vec![0.0f32; n];
    for chunk in mask.chunks_mut(4) {
        let bits = rng.next_u64();
        for (k, m) in chunk.iter_mut().enumerate() {
            *m = if (bits >> (16 * k)) & 0xffff < threshold {
                0.0
            } else {
                keep
            };
        }
    }
    let mask = Tensor::from_data(TensorData::new(mask, shape), &x.device());
    x * mask
}

/// The most memory a model's training state may ask for, in GiB: a bound on sizes read from a
/// config, so that a typo (`d_model = 4480000`) is a named error rather than an allocation of
/// terabytes that aborts the process. Far above any model genrec trains (SmolLM2-135M fully
/// fine-tuned needs about 2 GiB).
pub const MAX_TRAINING_GIB: f64 = 256.0;

/// `Some(message)` when training a model of `params` f32 parameters would need more than
/// [`MAX_TRAINING_GIB`] for its weights, gradients and AdamW's two moments (16 bytes per
/// parameter): the end of an error sentence that names the fields at fault.
pub fn training_memory_excess(params: f64) -> Option<String> {
    let gib = params * 16.0 / (1u64 << 30) as f64;
    (!gib.is_finite() || gib > MAX_TRAINING_GIB).then(|| {
        format!(
            "make a model of {params:.3e} parameters: {gib:.0} GiB for its weights, gradients and optimizer \
             state, above the {MAX_TRAINING_GIB} GiB genrec allows"
        )
    })
}

/// Builds a module with the backend RNG seeded first. Burn's initialisers draw from one
/// process-wide backend RNG, so seeding and drawing happen under one lock shared by every model
/// of every genrec crate: models built on other threads at the same time cannot interleave their draws.
/// Parameters are lazy (drawn on first access, which would fall outside the lock on the first
/// forward), so every one is materialised here.
pub fn init_seeded<B: Backend, M: Module<B>>(seed: u64, device: &B::Device, build: impl FnOnce() -> M) -> M {
    static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    B::seed(device, seed);
    let model = build();
    struct Materialise;
    impl<B: Backend> ModuleVisitor<B> for Materialise {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let _ = param.val();
        }
    }
    model.visit(&mut Materialise);
    model
}

/// One pre-norm causal-decoder block (SASRec's and RPG's GPT-2-style decoder):
/// `x + Drop_r(Attn(LN(x)))`, then `x + Drop_r(FFN(LN(x)))` with a GELU feed-forward of width
/// `d_ff`; attention weights dropped with `attn_p`, the residual branches and the feed-forward's
/// hidden layer with `resid_p` (SASRec uses one `p` for all; RPG 0.5 / 0 — GPT-2 has no dropout
/// on the hidden layer, the same thing at 0).
#[derive(Module, Debug)]
pub struct DecoderBlock<B: Backend> {
    norm_attn: LayerNorm<B>,
    query: Linear<B>,
    key: Linear<B>,
    value: Linear<B>,
    out: Linear<B>,
    norm_ffn: LayerNorm<B>,
    ffn_in: Linear<B>,
    ffn_out: Linear<B>,
    n_heads: usize,
}

impl<B: Backend> DecoderBlock<B> {
    /// # Panics
    /// If `n_heads` does not divide `d` (configs check this first).
    pub fn new(d: usize, n_heads: usize, d_ff: usize, device: &B::Device) -> Self {
        assert!(n_heads > 0 && d.is_multiple_of(n_heads), "n_heads must divide d");
        DecoderBlock {
            norm_attn: LayerNormConfig::new(d).init(device),
            query: LinearConfig::new(d, d).init(device),
            key: LinearConfig::new(d, d).init(device),
            value: LinearConfig::new(d, d).init(device),
            out: LinearConfig::new(d, d).init(device),
            norm_ffn: LayerNormConfig::new(d).init(device),
            ffn_in: LinearConfig::new(d, d_ff).init(device),
            ffn_out: LinearConfig::new(d_ff, d).init(device),
            n_heads,
        }
    }

    /// The block with GPT-2's initialisation: every weight N(0, 0.02), the two projections back
    /// into the residual stream (`out`, `ffn_out`) N(0, 0.02 / √(2 · n_layers)). Burn's linear
    /// layers draw their biases from the same normal (GPT-2 zeroes them).
    pub fn gpt2(d: usize, n_heads: usize, d_ff: usize, n_layers: usize, device: &B::Device) -> Self {
        assert!(n_heads > 0 && d.is_multiple_of(n_heads), "n_heads must divide d");
        let normal = |std: f64| Initializer::Normal { mean: 0.0, std };
        let projection = normal(0.02 / (2.0 * n_layers.max(1) as f64).sqrt());
        let linear =
            |i: usize, o: usize, init: Initializer| LinearConfig::new(i, o).with_initializer(init).init(device);
        DecoderBlock {
            norm_attn: LayerNormConfig::new(d).init(device),
            query: linear(d, d, normal(0.02)),
            key: linear(d, d, normal(0.02)),
            value: linear(d, d, normal(0.02)),
            out: linear(d, d, projection.clone()),
            norm_ffn: LayerNormConfig::new(d).init(device),
            ffn_in: linear(d, d_ff, normal(0.02)),
            ffn_out: linear(d_ff, d, projection),
            n_heads,
        }
    }

    pub fn n_heads(&self) -> usize {
        self.n_heads
    }

    /// `rng = None` is evaluation (no dropout).
    ///
    /// # Shapes
    /// - `x`: `[batch, len, d]`; `bias`: `[batch, heads or 1, len, len]` additive (0 = attend,
    ///   [`crate::MASKED`] = not); output: `[batch, len, d]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        bias: Tensor<B, 4>,
        attn_p: f64,
        resid_p: f64,
        mut rng: Option<&mut ChaCha8Rng>,
    ) -> Tensor<B, 3> {
        let [batch, len, d] = x.dims();
        let (h, dk) = (self.n_heads, d / self.n_heads);
        // The linear layers see `[batch · len, d]` rows: Burn's `linear` on a 3-D input runs
        // `batch` small GEMMs (and sums a batched weight gradient); on rows it is one GEMM.
        let x = x.reshape([batch * len, d]);
        let heads = |t: Tensor<B, 2>| t.reshape([batch, len, h, dk]).swap_dims(1, 2);
        let normed = self.norm_attn.forward(x.clone());
        // Scaling q (len × dk) is cheaper than scaling the scores (len × len).
        let q = heads(self.query.forward(normed.clone()) * (1.0 / (dk as f64).sqrt()));
        let k = heads(self.key.forward(normed.clone()));
        let v = heads(self.value.forward(normed));
        let weights = softmax(q.matmul(k.swap_dims(2, 3)) + bias, 3);
        let weights = drop_out(weights, attn_p, rng.as_deref_mut());
        let attended = weights.matmul(v).swap_dims(1, 2).reshape([batch * len, d]);
        let x = x + drop_out(self.out.forward(attended), resid_p, rng.as_deref_mut());
        let hidden = gelu(self.ffn_in.forward(self.norm_ffn.forward(x.clone())));
        let hidden = drop_out(hidden, resid_p, rng.as_deref_mut());
        (x + drop_out(self.ffn_out.forward(hidden), resid_p, rng)).reshape([batch, len, d])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_bound_by_hand() {
        // 1e9 parameters × 16 bytes = 14.9 GiB: fine; 1e11 = 1,490 GiB: refused with the figure.
        assert!(training_memory_excess(1e9).is_none());
        let msg = training_memory_excess(1e11).unwrap();
        assert!(msg.contains("1490 GiB"), "{msg}");
        assert!(training_memory_excess(f64::INFINITY).is_some());
    }
    use burn::backend::Flex;
    use rand::SeedableRng;

    /// The mask follows the documented rule on the ChaCha8 stream (16 bits per element, four per
    /// u64, a partial last u64), so runs with the same seed stay reproducible across versions.
    #[test]
    fn drop_out_follows_the_seeded_stream() {
        let device = Default::default();
        let x = Tensor::<Flex, 1>::ones([10_001], &device);
        let got = drop_out(x.clone(), 0.25, Some(&mut ChaCha8Rng::seed_from_u64(5)))
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (threshold, keep) = (16_384u64, 4.0f32 / 3.0);
        let mut want = Vec::new();
        while want.len() < got.len() {
            let bits = rng.next_u64();
            for k in 0..4 {
                want.push(if (bits >> (16 * k)) & 0xffff < threshold {
                    0.0
                } else {
                    keep
                });
            }
        }
        want.truncate(got.len());
        assert_eq!(got, want);
        let dropped = got.iter().filter(|&&v| v == 0.0).count() as f64 / got.len() as f64;
        assert!((dropped - 0.25).abs() < 0.02, "dropped {dropped}");
        // Evaluation and p = 0 are the identity.
        let same = |y: Tensor<Flex, 1>| y.into_data().to_vec::<f32>().unwrap() == vec![1.0; 10_001];
        assert!(same(drop_out(x.clone(), 0.25, None)));
        assert!(same(drop_out(x, 0.0, Some(&mut ChaCha8Rng::seed_from_u64(5)))));
    }
}
