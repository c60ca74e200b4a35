//! RQ-VAE (TIGER, Rajput et al. 2023): an MLP auto-encoder whose latent is quantised by `L`
//! residual codebooks. An item's semantic ID is the tuple of code indices its latent picks.
//!
//! - Encoder `in → h1 → h2 → h3 → code_dim` (ReLU between layers, none on the output); the decoder
//!   mirrors it. Widths default to TIGER's 512/256/128 → 32 for inputs of 384 dims or more and
//!   shrink proportionally for smaller inputs (attribute vectors), never below `code_dim`.
//! - Quantiser: level `l` picks the code nearest (squared L2) to the residual `r_l`, then
//!   `r_{l+1} = r_l − e_l`. The decoder sees `z + sg(Σ e_l − z)`: the straight-through estimator
//!   passes the reconstruction gradient to the encoder unchanged.
//! - Loss per batch: reconstruction (squared error summed over input dims, mean over rows)
//!   `+ Σ_l [ mse(e_l, sg(r_l)) + β · mse(r_l, sg(e_l)) ]`, β = 0.25.
//! - Codebooks start from k-means (k-means++ seeding) on the first `init_rows` latents of the
//!   first epoch, level by level on the residuals. After every epoch a code no row chose is
//!   re-seeded with a random current residual of that level, so codebooks stay in use.
//!
//! [`fit_rqvae`] trains on host rows with a progress bar, stops with an error on a non-finite
//! loss, and returns every row's codes, the codebooks and latents on the host (for Sinkhorn
//! collision handling) and per-level usage, perplexity and reconstruction error.

use crate::TokenizeError;
use burn::module::{AutodiffModule, Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{Adam, AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::kmeans::kmeans;
use crate::rq::{level_report, LevelReport, ResidualCodebooks};

/// The network and quantiser shape.
#[derive(Config, Debug)]
pub struct RqVaeConfig {
    /// Encoder hidden widths (the decoder mirrors them). Default: none given, which means
    /// 512, 256, 128 for inputs of ≥ 384 dims, scaled by `input_dim / 384` below that.
    #[config(default = "None")]
    pub hidden: Option<Vec<usize>>,
    /// Latent (code) dimension.
    #[config(default = 32)]
    pub code_dim: usize,
    /// Residual levels `L`.
    #[config(default = 3)]
    pub levels: usize,
    /// Codes per level `K`.
    #[config(default = 256)]
    pub codes: usize,
}

/// How to train it.
#[derive(Config, Debug)]
pub struct RqVaeTrainConfig {
    /// Epochs over all rows.
    #[config(default = 200)]
    pub epochs: usize,
    #[config(default = 1024)]
    pub batch_size: usize,
    /// Adam learning rate.
    #[config(default = 1e-3)]
    pub lr: f64,
    /// Commitment weight β.
    #[config(default = 0.25)]
    pub beta: f64,
    /// Rows of the first (shuffled) epoch whose latents initialise the codebooks by k-means; 0
    /// keeps the random-normal initialisation.
    #[config(default = 4096)]
    pub init_rows: usize,
    /// Lloyd iterations of that k-means.
    #[config(default = 25)]
    pub kmeans_iters: usize,
    /// Re-seed codes unused during an epoch from current residuals.
    #[config(default = true)]
    pub reseed_dead: bool,
    #[config(default = 0)]
    pub seed: u64,
}

impl RqVaeConfig {
    /// Encoder widths after the input: hidden widths, then `code_dim`.
    pub fn widths(&self, input_dim: usize) -> Vec<usize> {
        let hidden = self.hidden.clone().unwrap_or_else(|| {
            [512usize, 256, 128]
                .iter()
                .map(|&w| {
                    if input_dim >= 384 {
                        w
                    } else {
                        (w * input_dim / 384).max(self.code_dim)
                    }
                })
                .collect()
        });
        hidden.into_iter().chain([self.code_dim]).collect()
    }

    pub fn validate(&self, input_dim: usize) -> Result<(), TokenizeError> {
        if input_dim == 0 || self.code_dim == 0 || self.levels == 0 {
            return Err(TokenizeError::RqVae(format!(
                "rqvae: input dim {input_dim}, code_dim {} and levels {} must be positive",
                self.code_dim, self.levels
            )));
        }
        if self.codes < 2 {
            return Err(TokenizeError::RqVae(format!(
                "rqvae: codes = {} (need ≥ 2 per level)",
                self.codes
            )));
        }
        if self.hidden.as_ref().is_some_and(|h| h.contains(&0)) {
            return Err(TokenizeError::RqVae("rqvae: hidden widths must be positive".into()));
        }
        Ok(())
    }

    /// Builds the model with the backend RNG seeded under a lock and every parameter
    /// materialised inside it (Burn's parameters are lazy and draw from one process-wide RNG).
    pub fn init<B: Backend>(&self, input_dim: usize, seed: u64, device: &B::Device) -> RqVae<B> {
        static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
        B::seed(device, seed);
        let dims: Vec<usize> = std::iter::once(input_dim).chain(self.widths(input_dim)).collect();
        let linear = |a: usize, b: usize| LinearConfig::new(a, b).init(device);
        let encoder = dims.windows(2).map(|w| linear(w[0], w[1])).collect();
        let decoder = dims.windows(2).rev().map(|w| linear(w[1], w[0])).collect();
        let codebooks = (0..self.levels)
            .map(|_| {
                Param::from_tensor(Tensor::random(
                    [self.codes, self.code_dim],
                    burn::tensor::Distribution::Normal(0.0, 1.0),
                    device,
                ))
            })
            .collect();
        let model = RqVae {
            encoder,
            decoder,
            codebooks,
        };
        // Touch every parameter so the lazy draws happen now, under the lock.
        let _ = model.clone().into_record();
        model
    }
}

/// Encoder, decoder and one `K × code_dim` codebook per level.
#[derive(Module, Debug)]
pub struct RqVae<B: Backend> {
    encoder: Vec<Linear<B>>,
    decoder: Vec<Linear<B>>,
    codebooks: Vec<Param<Tensor<B, 2>>>,
}

/// One batch's forward pass.
pub struct RqVaeOutput<B: Backend> {
    /// Squared error summed over input dims, mean over rows (scalar).
    pub reconstruction: Tensor<B, 1>,
    /// `Σ_l mse(e_l, sg(r_l))` (scalar): moves codes towards residuals.
    pub codebook: Tensor<B, 1>,
    /// `Σ_l mse(r_l, sg(e_l))` (scalar): keeps the encoder near its codes.
    pub commitment: Tensor<B, 1>,
    /// `[batch, levels]` code indices.
    pub codes: Tensor<B, 2, Int>,
}

fn mlp<B: Backend>(layers: &[Linear<B>], mut x: Tensor<B, 2>) -> Tensor<B, 2> {
    for (i, layer) in layers.iter().enumerate() {
        x = layer.forward(x);
        if i + 1 < layers.len() {
            x = relu(x);
        }
    }
    x
}

/// Index of the nearest row of `book` (`[K, d]`) for each row of `r` (`[n, d]`) → `[n]`.
fn nearest_code<B: Backend>(r: Tensor<B, 2>, book: Tensor<B, 2>) -> Tensor<B, 1, Int> {
    let [n, _] = r.dims();
    let [k, _] = book.dims();
    // ‖r‖² is the same for every code of a row, so it does not change the argmin.
    let dist = book.clone().powi_scalar(2).sum_dim(1).reshape([1, k]) - r.matmul(book.transpose()).mul_scalar(2.0);
    dist.argmin(1).reshape([n])
}

impl<B: Backend> RqVae<B> {
    /// Encoder output `z`: `[n, input_dim]` → `[n, code_dim]`.
    pub fn encode(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        mlp(&self.encoder, x)
    }

    /// Decoder: `[n, code_dim]` → `[n, input_dim]`.
    pub fn decode(&self, z: Tensor<B, 2>) -> Tensor<B, 2> {
        mlp(&self.decoder, z)
    }

    /// Loss terms and codes of a batch `x`: `[batch, input_dim]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> RqVaeOutput<B> {
        let device = x.device();
        let z = self.encode(x.clone());
        let mut residual = z.clone();
        let mut quantised = z.zeros_like();
        let mut codebook = Tensor::<B, 1>::zeros([1], &device);
        let mut commitment = Tensor::<B, 1>::zeros([1], &device);
        let mut codes = Vec::with_capacity(self.codebooks.len());
        for book in &self.codebooks {
            let book = book.val();
            let idx = nearest_code(residual.clone().detach(), book.clone().detach());
            let e = book.select(0, idx.clone());
            codebook = codebook + (e.clone() - residual.clone().detach()).powi_scalar(2).mean();
            commitment = commitment + (residual.clone() - e.clone().detach()).powi_scalar(2).mean();
            quantised = quantised + e.clone().detach();
            residual = residual - e.detach();
            codes.push(idx.unsqueeze_dim(1));
        }
        // Straight-through: the value is Σ e_l, the gradient reaches z as if unquantised.
        let z_q = z.clone() + (quantised - z).detach();
        let reconstruction = (self.decode(z_q) - x).powi_scalar(2).sum_dim(1).mean();
        RqVaeOutput {
            reconstruction,
            codebook,
            commitment,
            codes: Tensor::cat(codes, 1),
        }
    }

    /// Host copy of the codebooks.
    pub fn host_codebooks(&self) -> ResidualCodebooks {
        let [k, dim] = self.codebooks[0].val().dims();
        ResidualCodebooks {
            dim,
            levels: self.codebooks.iter().map(|b| to_vec(b.val())).collect(),
            sizes: vec![k; self.codebooks.len()],
        }
    }

    /// Replaces level `level`'s codebook (`K × code_dim`, row-major), keeping its parameter id
    /// so the optimiser state still applies.
    fn set_codebook(mut self, level: usize, values: Vec<f32>) -> Self {
        let param = self.codebooks.remove(level);
        let [k, dim] = param.val().dims();
        let device = param.val().device();
        let param = param.map(|_| Tensor::from_data(TensorData::new(values, [k, dim]), &device).require_grad());
        self.codebooks.insert(level, param);
        self
    }
}

fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec::<f32>().expect("f32 tensor")
}

/// One epoch's means and codebook health.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub loss: f64,
    pub reconstruction: f64,
    /// Share of each level's codes chosen by at least one row this epoch.
    pub usage: Vec<f64>,
    /// Codes re-seeded after this epoch, per level.
    pub reseeded: Vec<usize>,
}

/// A trained RQ-VAE's result on the host.
#[derive(Debug, Clone)]
pub struct RqVaeFit {
    /// Codes of every input row (greedy residual quantisation of its latent).
    pub codes: Vec<Vec<u32>>,
    /// The trained codebooks (latent space).
    pub codebooks: ResidualCodebooks,
    /// Encoder outputs, `n × code_dim` row-major.
    pub latents: Vec<f32>,
    /// Per level: usage, perplexity, mean squared latent residual after the level.
    pub levels: Vec<LevelReport>,
    /// Mean over rows of the squared reconstruction error summed over input dims, decoding the
    /// quantised latent.
    pub reconstruction: f64,
    pub epochs: Vec<EpochReport>,
}

/// Trains an RQ-VAE on `data` (`n × dim`, row-major) with a progress bar over epochs and
/// quantises every row.
pub fn fit_rqvae<B: AutodiffBackend>(
    data: &[f32],
    dim: usize,
    model_config: &RqVaeConfig,
    config: &RqVaeTrainConfig,
    device: &B::Device,
    progress: bool,
) -> Result<RqVaeFit, TokenizeError> {
    let mut trainer = RqVaeTrainer::<B>::new(data, dim, model_config, config, device)?;
    let bar = if progress {
        let bar = ProgressBar::new(config.epochs as u64);
        bar.set_style(
            ProgressStyle::with_template("rqvae {bar:30} {pos}/{len} epochs {elapsed} {msg}").expect("static template"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut epochs = Vec::with_capacity(config.epochs);
    for epoch in 1..=config.epochs {
        let report = trainer.epoch(config.reseed_dead && epoch < config.epochs)?;
        bar.set_message(format!(
            "loss {:.4} rec {:.4} usage {:?}",
            report.loss,
            report.reconstruction,
            report
                .usage
                .iter()
                .map(|u| format!("{:.0}%", 100.0 * u))
                .collect::<Vec<_>>()
        ));
        bar.inc(1);
        epochs.push(report);
    }
    bar.finish_and_clear();
    let mut fit = trainer.finish();
    fit.epochs = epochs;
    Ok(fit)
}

/// The training state between epochs (what [`fit_rqvae`] drives; public for benchmarks).
pub struct RqVaeTrainer<'a, B: AutodiffBackend> {
    data: &'a [f32],
    dim: usize,
    model: Option<RqVae<B>>,
    optim: OptimizerAdaptor<Adam, RqVae<B>, B>,
    model_config: RqVaeConfig,
    config: RqVaeTrainConfig,
    rng: ChaCha8Rng,
    order: Vec<usize>,
    epoch: usize,
    device: B::Device,
}

impl<'a, B: AutodiffBackend> RqVaeTrainer<'a, B> {
    /// Checks the input and builds the seeded model (codebooks are set by k-means at the start of
    /// the first epoch).
    pub fn new(
        data: &'a [f32],
        dim: usize,
        model_config: &RqVaeConfig,
        config: &RqVaeTrainConfig,
        device: &B::Device,
    ) -> Result<Self, TokenizeError> {
        model_config.validate(dim)?;
        if !data.len().is_multiple_of(dim) {
            return Err(TokenizeError::RqVae(format!(
                "{} values do not form rows of dimension {dim}",
                data.len()
            )));
        }
        let n = data.len() / dim;
        if n < model_config.codes {
            return Err(TokenizeError::RqVae(format!(
                "rqvae: {n} rows for {} codes per level",
                model_config.codes
            )));
        }
        if config.batch_size == 0 || config.epochs == 0 {
            return Err(TokenizeError::RqVae(
                "rqvae: batch_size and epochs must be positive".into(),
            ));
        }
        if config.init_rows > 0 && config.init_rows.min(n) < model_config.codes {
            return Err(TokenizeError::RqVae(format!(
                "rqvae: k-means initialisation on {} rows cannot fill {} codes (raise init_rows)",
                config.init_rows.min(n),
                model_config.codes
            )));
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(TokenizeError::RqVae(format!(
                "rqvae: input row {} has a non-finite value",
                i / dim
            )));
        }
        Ok(RqVaeTrainer {
            data,
            dim,
            model: Some(model_config.init::<B>(dim, config.seed, device)),
            optim: AdamConfig::new().with_epsilon(1e-8).init::<B, RqVae<B>>(),
            model_config: model_config.clone(),
            config: config.clone(),
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            order: (0..n).collect(),
            epoch: 0,
            device: device.clone(),
        })
    }

    fn n(&self) -> usize {
        self.data.len() / self.dim
    }

    fn rows(&self, ids: &[usize]) -> Tensor<B, 2> {
        let mut values = Vec::with_capacity(ids.len() * self.dim);
        for &i in ids {
            values.extend_from_slice(&self.data[i * self.dim..(i + 1) * self.dim]);
        }
        Tensor::from_data(TensorData::new(values, [ids.len(), self.dim]), &self.device)
    }

    fn model(&self) -> &RqVae<B> {
        self.model.as_ref().expect("model is present between steps")
    }

    /// Encoder outputs of rows `ids`, `len × code_dim` on the host.
    fn latents(&self, ids: &[usize]) -> Vec<f32> {
        let inner = self.model().valid();
        ids.chunks(4096)
            .flat_map(|chunk| to_vec(inner.encode(self.rows(chunk).inner())))
            .collect()
    }

    fn set_codebook(&mut self, level: usize, values: Vec<f32>) {
        let model = self.model.take().expect("model is present between steps");
        self.model = Some(model.set_codebook(level, values));
    }

    /// One shuffled pass over all rows (k-means initialisation first, in epoch 1), then, with
    /// `reseed`, dead codes re-seeded from current residuals.
    pub fn epoch(&mut self, reseed: bool) -> Result<EpochReport, TokenizeError> {
        self.epoch += 1;
        let (n, epoch) = (self.n(), self.epoch);
        let (levels, k, code_dim) = (
            self.model_config.levels,
            self.model_config.codes,
            self.model_config.code_dim,
        );
        let mut order = std::mem::take(&mut self.order);
        order.shuffle(&mut self.rng);
        if epoch == 1 && self.config.init_rows > 0 {
            let mut residual = self.latents(&order[..self.config.init_rows.min(n)]);
            for l in 0..levels {
                let seed = self.config.seed.wrapping_add(l as u64);
                let fit = kmeans(&residual, code_dim, k, self.config.kmeans_iters, seed);
                for (r, &c) in residual.chunks_exact_mut(code_dim).zip(&fit.assignments) {
                    let centre = &fit.centroids[c as usize * code_dim..(c as usize + 1) * code_dim];
                    r.iter_mut().zip(centre).for_each(|(x, m)| *x -= m);
                }
                self.set_codebook(l, fit.centroids);
            }
        }
        let mut counts = vec![vec![0usize; k]; levels];
        let (mut loss_sum, mut rec_sum) = (0.0f64, 0.0f64);
        for batch in order.chunks(self.config.batch_size) {
            let model = self.model.take().expect("model is present between steps");
            let out = model.forward(self.rows(batch));
            let loss = out.reconstruction.clone() + out.codebook + out.commitment.mul_scalar(self.config.beta);
            let (loss_value, rec_value) = (scalar(&loss), scalar(&out.reconstruction));
            if !loss_value.is_finite() {
                return Err(TokenizeError::RqVae(format!(
                    "rqvae: loss became {loss_value} in epoch {epoch}; lower the learning rate or check the input scale"
                )));
            }
            loss_sum += loss_value * batch.len() as f64;
            rec_sum += rec_value * batch.len() as f64;
            let codes = out
                .codes
                .into_data()
                .convert::<i64>()
                .into_vec::<i64>()
                .expect("int codes");
            for row in codes.chunks_exact(levels) {
                for (l, &c) in row.iter().enumerate() {
                    counts[l][c as usize] += 1;
                }
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            self.model = Some(self.optim.step(self.config.lr, model, grads));
        }
        let usage: Vec<f64> = counts
            .iter()
            .map(|c| c.iter().filter(|&&x| x > 0).count() as f64 / k as f64)
            .collect();
        let mut reseeded = vec![0; levels];
        if reseed && counts.iter().any(|c| c.contains(&0)) {
            let sample = &order[..n.min(4096)];
            let mut residual = self.latents(sample);
            let mut books = self.model().host_codebooks();
            for l in 0..levels {
                let dead: Vec<usize> = (0..k).filter(|&c| counts[l][c] == 0).collect();
                for &c in &dead {
                    let i = self.rng.random_range(0..sample.len());
                    books.levels[l][c * code_dim..(c + 1) * code_dim]
                        .copy_from_slice(&residual[i * code_dim..(i + 1) * code_dim]);
                }
                reseeded[l] = dead.len();
                if !dead.is_empty() {
                    self.set_codebook(l, books.levels[l].clone());
                }
                for r in residual.chunks_exact_mut(code_dim) {
                    let (c, _) = crate::kmeans::nearest(r, &books.levels[l], code_dim);
                    let centre = &books.levels[l][c as usize * code_dim..(c as usize + 1) * code_dim];
                    r.iter_mut().zip(centre).for_each(|(x, m)| *x -= m);
                }
            }
        }
        self.order = order;
        Ok(EpochReport {
            epoch,
            loss: loss_sum / n as f64,
            reconstruction: rec_sum / n as f64,
            usage,
            reseeded,
        })
    }

    /// Quantises every row on the host with the final codebooks and measures the reconstruction
    /// of the quantised latents (`epochs` is left empty for the caller).
    pub fn finish(self) -> RqVaeFit {
        let (n, code_dim, k) = (self.n(), self.model_config.code_dim, self.model_config.codes);
        let all: Vec<usize> = (0..n).collect();
        let latents = self.latents(&all);
        let codebooks = self.model().host_codebooks();
        let codes: Vec<Vec<u32>> = latents.chunks_exact(code_dim).map(|z| codebooks.encode(z)).collect();
        let levels = (0..self.model_config.levels)
            .map(|l| {
                let residual_mse = (0..n)
                    .map(|i| {
                        let r = codebooks.residual(&latents[i * code_dim..(i + 1) * code_dim], &codes[i], l + 1);
                        r.iter().map(|v| (*v as f64).powi(2)).sum::<f64>()
                    })
                    .sum::<f64>()
                    / n as f64;
                let at_level: Vec<u32> = codes.iter().map(|c| c[l]).collect();
                level_report(&at_level, k, residual_mse)
            })
            .collect();
        let inner = self.model().valid();
        let mut reconstruction = 0.0f64;
        for chunk in all.chunks(4096) {
            let quantised: Vec<f32> = chunk.iter().flat_map(|&i| codebooks.decode(&codes[i])).collect();
            let z_q = Tensor::from_data(TensorData::new(quantised, [chunk.len(), code_dim]), &self.device);
            let err = (inner.decode(z_q) - self.rows(chunk).inner()).powi_scalar(2).sum();
            reconstruction += to_vec(err)[0] as f64;
        }
        RqVaeFit {
            codes,
            codebooks,
            latents,
            levels,
            reconstruction: reconstruction / n as f64,
            epochs: Vec::new(),
        }
    }
}

fn scalar<B: Backend>(t: &Tensor<B, 1>) -> f64 {
    to_vec(t.clone())[0] as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = burn::backend::Autodiff<burn::backend::Flex>;

    /// Rows around 16 well-separated centres in 24 dims.
    fn clustered(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let centres: Vec<f32> = (0..16 * 24).map(|_| rng.random_range(-3.0..3.0f32)).collect();
        (0..n)
            .flat_map(|i| {
                let c = i % 16;
                let noise: Vec<f32> = (0..24).map(|_| rng.random_range(-0.3..0.3f32)).collect();
                centres[c * 24..(c + 1) * 24]
                    .iter()
                    .zip(noise)
                    .map(|(m, e)| m + e)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn small() -> (RqVaeConfig, RqVaeTrainConfig) {
        (
            RqVaeConfig::new()
                .with_hidden(Some(vec![32, 16]))
                .with_code_dim(8)
                .with_codes(16),
            RqVaeTrainConfig::new()
                .with_epochs(30)
                .with_batch_size(64)
                .with_init_rows(256)
                .with_seed(3),
        )
    }

    #[test]
    fn widths_scale_with_small_inputs() {
        let c = RqVaeConfig::new();
        assert_eq!(c.widths(384), [512, 256, 128, 32]);
        assert_eq!(c.widths(768), [512, 256, 128, 32]);
        assert_eq!(c.widths(96), [128, 64, 32, 32]);
        assert_eq!(c.with_hidden(Some(vec![7])).widths(5), [7, 32]);
    }

    #[test]
    fn straight_through_reaches_the_encoder_and_codes_match_host_quantiser() {
        let device = Default::default();
        let (mc, _) = small();
        let model = mc.init::<B>(24, 1, &device);
        let data = clustered(40, 1);
        let x = Tensor::<B, 2>::from_data(TensorData::new(data.clone(), [40, 24]), &device);
        let out = model.forward(x.clone());
        // Reconstruction alone gives the first encoder layer a gradient through the quantiser.
        let grads = out.reconstruction.backward();
        let g = model.encoder[0].weight.grad(&grads).expect("encoder gradient");
        assert!(g.abs().sum().into_scalar() > 0.0);
        // The tensor quantiser and the host one pick the same codes.
        let z = to_vec(model.valid().encode(x.inner()));
        let books = model.host_codebooks();
        let tensor_codes = out.codes.into_data().convert::<i64>().into_vec::<i64>().unwrap();
        for i in 0..40 {
            let host: Vec<i64> = books.encode(&z[i * 8..(i + 1) * 8]).iter().map(|&c| c as i64).collect();
            assert_eq!(host, tensor_codes[i * 3..(i + 1) * 3]);
        }
    }

    #[test]
    fn training_lowers_the_loss_uses_codes_and_is_deterministic() {
        let device = Default::default();
        let (mc, tc) = small();
        let data = clustered(512, 2);
        let fit = fit_rqvae::<B>(&data, 24, &mc, &tc, &device, false).unwrap();
        let (first, last) = (&fit.epochs[0], fit.epochs.last().unwrap());
        assert!(last.loss < 0.5 * first.loss, "{} → {}", first.loss, last.loss);
        assert_eq!(fit.codes.len(), 512);
        // 16 clusters: the first level separates them (usage ≥ 16 of 16 codes is not required,
        // but every code stays alive thanks to k-means init and re-seeding).
        assert!(fit.levels[0].usage >= 0.8, "{:?}", fit.levels);
        // Later levels refine: latent residual falls level by level.
        for w in fit.levels.windows(2) {
            assert!(w[1].residual_mse < w[0].residual_mse, "{:?}", fit.levels);
        }
        assert!(fit.reconstruction.is_finite());
        let again = fit_rqvae::<B>(&data, 24, &mc, &tc, &device, false).unwrap();
        assert_eq!(fit.codes, again.codes);
        assert_eq!(fit.epochs, again.epochs);
    }

    #[test]
    fn bad_input_is_refused() {
        let device = Default::default();
        let (mc, tc) = small();
        let mut data = clustered(64, 3);
        let e = fit_rqvae::<B>(&data, 24, &mc, &tc.clone().with_init_rows(8), &device, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("init_rows"), "{e}");
        data[30] = f32::NAN;
        let tc = tc.with_init_rows(0);
        let e = fit_rqvae::<B>(&data, 24, &mc, &tc, &device, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("row 1 has a non-finite"), "{e}");
        let e = fit_rqvae::<B>(&data[..10], 24, &mc, &tc, &device, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("dimension 24"), "{e}");
        let lr = RqVaeTrainConfig::new().with_lr(1e30).with_init_rows(0).with_epochs(50);
        let e = fit_rqvae::<B>(&clustered(64, 4), 24, &mc, &lr, &device, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("loss became"), "{e}");
    }
}
