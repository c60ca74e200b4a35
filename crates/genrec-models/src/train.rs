//! The training loop shared by the learned models ([`train_model`], any Burn module given a
//! [`Task`]: batch loss and validation closures), and SASRec's use of it ([`train_sasrec`]): seeded shuffling of leave-one-out training
//! sequences, AdamW with explicit eps and weight decay, warm-up + cosine or constant learning rate,
//! gradient-norm clipping, validation on the *validation* split every N epochs with early stopping
//! on a chosen metric, best model restored before test, NaN/inf detection, atomic checkpoints.

use std::path::Path;
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn_store::{ModuleSnapshot, SafetensorsStore};
use genrec_data::{EvalCase, ItemId, LeaveOneOut};
use genrec_eval::{evaluate, EvalConfig, Recommender};
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::sasrec::{Loss, SasRec, SasRecConfig, SeqBatch};
use burn::tensor::{Tensor, TensorData};
use rand::distr::weighted::WeightedIndex;
use rand::distr::Distribution;
use rand::Rng;

/// Learning-rate shape after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    Constant,
    /// Cosine decay to 0 over the remaining steps.
    Cosine,
    /// `lr · sqrt(w / (step + 1))` after `w` warm-up steps, steps counted from 0 (the Transformer
    /// / T5 schedule); with no warm-up, `lr / sqrt(step + 1)`.
    InverseSqrt,
}

/// The `[train]` table of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Maximum epochs (default 200).
    #[serde(default = "epochs")]
    pub epochs: usize,
    /// Sequences per step (default 128).
    #[serde(default = "batch")]
    pub batch_size: usize,
    /// Peak learning rate (default 1e-3).
    #[serde(default = "lr")]
    pub lr: f64,
    /// AdamW decoupled weight decay (default 0; Burn's own default is 1e-4).
    #[serde(default)]
    pub weight_decay: f64,
    /// AdamW epsilon (default 1e-8, PyTorch's; Burn's own default is 1e-5).
    #[serde(default = "eps")]
    pub eps: f64,
    /// Clip the global gradient norm to this value; 0 = off (default 1.0).
    #[serde(default = "clip")]
    pub grad_clip: f64,
    /// Linear warm-up steps (default 0).
    #[serde(default)]
    pub warmup_steps: usize,
    /// `constant` (default), `cosine` (decay to 0 over all steps) or `inverse_sqrt`.
    #[serde(default = "schedule")]
    pub schedule: Schedule,
    /// Validate every this many epochs (default 1).
    #[serde(default = "one")]
    pub eval_every: usize,
    /// Stop after this many validations without improvement (default 5).
    #[serde(default = "patience")]
    pub patience: usize,
    /// Validation metric for early stopping and model selection (default `ndcg@10`).
    #[serde(default = "metric")]
    pub metric: String,
    /// Validate during training on this many validation users, a fixed seeded sample (default 0:
    /// all). A budget knob for slow decoders; the reported valid/test metrics always use all users.
    #[serde(default)]
    pub valid_users: usize,
}

fn epochs() -> usize {
    200
}
fn batch() -> usize {
    128
}
fn lr() -> f64 {
    1e-3
}
fn eps() -> f64 {
    1e-8
}
fn clip() -> f64 {
    1.0
}
fn schedule() -> Schedule {
    Schedule::Constant
}
fn one() -> usize {
    1
}
fn patience() -> usize {
    5
}
fn metric() -> String {
    "ndcg@10".into()
}

impl Default for TrainConfig {
    fn default() -> Self {
        toml_defaults()
    }
}

fn toml_defaults() -> TrainConfig {
    serde_json::from_str("{}").expect("every field has a default")
}

impl TrainConfig {
    pub fn validate(&self, eval: &EvalConfig) -> Result<(), String> {
        if self.epochs == 0 || self.batch_size == 0 || self.eval_every == 0 {
            return Err("train.epochs, train.batch_size and train.eval_every must be positive".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(format!("train.lr = {} must be a positive number", self.lr));
        }
        if self.eps <= 0.0 || self.weight_decay < 0.0 || self.grad_clip < 0.0 {
            return Err("train.eps must be positive; train.weight_decay and train.grad_clip non-negative".into());
        }
        let (name, k) = self
            .metric
            .split_once('@')
            .ok_or_else(|| format!("train.metric `{}` is not name@K", self.metric))?;
        let k: usize = k
            .parse()
            .map_err(|_| format!("train.metric `{}`: K is not a number", self.metric))?;
        if !["recall", "ndcg", "mrr"].contains(&name) || !eval.ks.contains(&k) {
            return Err(format!(
                "train.metric `{}` must be recall/ndcg/mrr at one of eval.ks {:?}",
                self.metric, eval.ks
            ));
        }
        Ok(())
    }

    /// Learning rate at optimisation step `step` (0-based) of `total`.
    pub fn lr_at(&self, step: usize, total: usize) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                let span = total.saturating_sub(self.warmup_steps).max(1) as f64;
                let t = (step - self.warmup_steps) as f64 / span;
                self.lr * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
            }
            Schedule::InverseSqrt => self.lr * (self.warmup_steps.max(1) as f64 / (step + 1) as f64).sqrt(),
        }
    }
}

/// One row of curves.csv.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    pub epoch: usize,
    pub step: usize,
    pub loss: f64,
    /// Validation metric, when this epoch validated.
    pub valid: Option<f64>,
    pub seconds: f64,
}

/// What training returns: the best model (by validation) on the inference backend.
pub struct Trained<M> {
    pub model: M,
    pub best_epoch: usize,
    pub best_valid: f64,
    pub curves: Vec<CurvePoint>,
}

/// SASRec behind the [`Recommender`] trait: scores every item from the last position.
pub struct SasRecRecommender<B: Backend> {
    pub model: SasRec<B>,
}

impl<B: Backend> Recommender for SasRecRecommender<B> {
    fn name(&self) -> String {
        "sasrec".into()
    }

    fn n_items(&self) -> usize {
        self.model.n_items()
    }

    fn recommend(&self, histories: &[&[ItemId]], k: usize) -> Vec<Vec<ItemId>> {
        let scores = self.scores(histories).unwrap_or_default();
        scores
            .chunks(self.n_items())
            .map(|row| genrec_eval::ranking::top_k(row, k, &[]))
            .collect()
    }

    fn scores(&self, histories: &[&[ItemId]]) -> Option<Vec<f32>> {
        Some(
            self.model
                .score(histories)
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .expect("f32 scores"),
        )
    }
}

/// (input, target) sequences: each user's training sequence shifted by one, the last `max_len`
/// positions. Users with fewer than 2 training items give no example.
fn examples(split: &LeaveOneOut) -> Vec<(Vec<ItemId>, Vec<ItemId>)> {
    split
        .train
        .iter()
        .filter(|s| s.len() >= 2)
        .map(|s| {
            let n = s.len();
            let from = (n - 1).saturating_sub(split.max_history);
            (s[from..n - 1].to_vec(), s[from + 1..].to_vec())
        })
        .collect()
}

/// Popularity-proportional negative sampling (counts + 1, so every item can be drawn) with the
/// log-probabilities the sampled softmax needs for its log-Q correction.
struct NegativeSampler {
    dist: WeightedIndex<f64>,
    /// `log_q[token]`; token 0 (padding) gets 0.
    log_q: Vec<f32>,
}

impl NegativeSampler {
    fn new(counts: &[u32]) -> Self {
        let weights: Vec<f64> = counts.iter().map(|&c| c as f64 + 1.0).collect();
        let total: f64 = weights.iter().sum();
        let mut log_q = vec![0f32];
        log_q.extend(weights.iter().map(|w| (w / total).ln() as f32));
        NegativeSampler {
            dist: WeightedIndex::new(&weights).expect("positive weights"),
            log_q,
        }
    }
}

/// The configured loss on one batch of (input, target) sequences.
#[allow(clippy::too_many_arguments)]
fn batch_loss<B: AutodiffBackend>(
    model: &SasRec<B>,
    config: &SasRecConfig,
    inputs: &[&[ItemId]],
    targets: &[&[ItemId]],
    split: &LeaveOneOut,
    sampler: &NegativeSampler,
    rng: &mut ChaCha8Rng,
    device: &B::Device,
) -> Tensor<B, 1> {
    let batch = SeqBatch::new(inputs, targets, split.max_history, device);
    match config.loss {
        Loss::Ce => model.loss_full_softmax(&batch, rng),
        Loss::Sampled => {
            let negs: Vec<i64> = (0..config.negatives)
                .map(|_| sampler.dist.sample(rng) as i64 + 1)
                .collect();
            let log_q_neg: Vec<f32> = negs.iter().map(|&t| sampler.log_q[t as usize]).collect();
            let log_q_t: Vec<f32> = batch.target_tokens.iter().map(|&t| sampler.log_q[t as usize]).collect();
            let n = log_q_t.len();
            model.loss_sampled_softmax(
                &batch,
                Tensor::from_data(TensorData::new(negs, [config.negatives]), device),
                Tensor::from_data(TensorData::new(log_q_t, [n]), device),
                Tensor::from_data(TensorData::new(log_q_neg, [config.negatives]), device),
                rng,
            )
        }
        Loss::Bce => {
            // One uniform negative token per item position, never the target itself.
            let n = split.n_items as i64;
            let negatives: Vec<i64> = batch
                .target_tokens
                .iter()
                .map(|&target| loop {
                    let c = rng.random_range(1..=n);
                    if c != target || n == 1 {
                        break c;
                    }
                })
                .collect();
            let count = negatives.len();
            model.loss_bce(
                &batch,
                Tensor::from_data(TensorData::new(negatives, [count]), device),
                rng,
            )
        }
    }
}

/// Saves `model` to `path` atomically (temporary file, then rename).
pub fn save_checkpoint<B: Backend, M: Module<B>>(model: &M, path: &Path) -> Result<(), String> {
    let tmp = path.with_extension("safetensors.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut store = SafetensorsStore::from_file(&tmp);
    model
        .save_into(&mut store)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Everything but the weights that `--resume` needs to continue a run exactly where its last
/// completed epoch left it: same batches, same dropout masks, same early-stopping state. The model
/// config and batch size must match the interrupted run's; `train.epochs` may change (a cosine
/// schedule then follows the new total from that point on).
#[derive(Serialize, Deserialize)]
struct ResumeState {
    /// The model config as JSON (any model's).
    model: serde_json::Value,
    batch_size: usize,
    /// Epochs completed.
    epoch: usize,
    step: usize,
    /// The loop's ChaCha8 stream (seed + word position; u128 as a decimal string for JSON).
    rng_seed: [u8; 32],
    rng_word_pos: String,
    order: Vec<usize>,
    best_epoch: usize,
    /// `None` before the first validation.
    best_valid: Option<f64>,
    waited: usize,
    curves: Vec<CurvePoint>,
}

fn recorder() -> BinFileRecorder<FullPrecisionSettings> {
    BinFileRecorder::<FullPrecisionSettings>::new()
}

/// Writes `dir/resume/` (model and optimizer records with their parameter ids, the best model,
/// state.json) through a temporary directory and renames, so a crash mid-write leaves the previous
/// epoch's state intact.
fn save_resume<B: AutodiffBackend, M: AutodiffModule<B>, O: Optimizer<M, B>>(
    dir: &Path,
    model: &M,
    optim: &O,
    best: Option<&M::InnerModule>,
    state: &ResumeState,
) -> Result<(), String> {
    let tmp = dir.join("resume.tmp");
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", tmp.display());
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| err(&e))?;
    recorder()
        .record(model.clone().into_record(), tmp.join("model"))
        .map_err(|e| err(&e))?;
    recorder()
        .record(optim.to_record(), tmp.join("optim"))
        .map_err(|e| err(&e))?;
    if let Some(best) = best {
        recorder()
            .record(best.clone().into_record(), tmp.join("best"))
            .map_err(|e| err(&e))?;
    }
    std::fs::write(
        tmp.join("state.json"),
        serde_json::to_string(state).map_err(|e| err(&e))?,
    )
    .map_err(|e| err(&e))?;
    let target = dir.join("resume");
    let old = dir.join("resume.old");
    let _ = std::fs::remove_dir_all(&old);
    if target.exists() {
        std::fs::rename(&target, &old).map_err(|e| err(&e))?;
    }
    std::fs::rename(&tmp, &target).map_err(|e| err(&e))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Where and how [`train_sasrec`] keeps its files.
#[derive(Debug, Clone, Copy, Default)]
pub struct Checkpoints<'a> {
    /// Run directory: `model.safetensors` receives the best model after every improvement and
    /// `resume/` the full training state after every epoch. `None` = keep nothing on disk.
    pub dir: Option<&'a Path>,
    /// Continue from `dir/resume/` instead of starting over.
    pub resume: bool,
}

/// Trains SASRec with the configured loss and early stopping on the validation split.
#[allow(clippy::too_many_arguments)]
pub fn train_sasrec<B: AutodiffBackend>(
    model_config: &SasRecConfig,
    config: &TrainConfig,
    eval: &EvalConfig,
    split: &LeaveOneOut,
    seed: u64,
    device: &B::Device,
    checkpoints: Checkpoints,
    log: &mut dyn FnMut(&str),
) -> Result<Trained<SasRec<B::InnerBackend>>, String> {
    model_config.validate()?;
    let model: SasRec<B> = model_config.init_seeded(split.n_items, split.max_history, seed, device);
    let data = examples(split);
    let sampler = NegativeSampler::new(&split.train_item_counts());
    if data.is_empty() {
        return Err("no user has 2 training items: nothing to train on".into());
    }
    let loss = |model: &SasRec<B>, batch: &[usize], rng: &mut ChaCha8Rng| {
        let inputs: Vec<&[ItemId]> = batch.iter().map(|&i| data[i].0.as_slice()).collect();
        let targets: Vec<&[ItemId]> = batch.iter().map(|&i| data[i].1.as_slice()).collect();
        batch_loss(model, model_config, &inputs, &targets, split, &sampler, rng, device)
    };
    let valid = validation_sample(split, config.valid_users, seed);
    let validate = |model: &SasRec<B::InnerBackend>| {
        let rec = SasRecRecommender { model: model.clone() };
        Ok(evaluate(&rec, &valid, None, eval, seed)?.metrics[&config.metric])
    };
    let task = Task {
        examples: data.len(),
        loss: &loss,
        validate: &validate,
        model_config: serde_json::to_value(model_config).map_err(|e| e.to_string())?,
    };
    train_model(model, task, config, eval, seed, device, checkpoints, log)
}

/// The validation cases used during training: all of them (`users = 0` or more than there are),
/// or a seeded sample of `users`, in their original order.
pub fn validation_sample(split: &LeaveOneOut, users: usize, seed: u64) -> Vec<EvalCase> {
    if users == 0 || users >= split.valid.len() {
        return split.valid.clone();
    }
    let mut picked: Vec<usize> = (0..split.valid.len()).collect();
    picked.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x5A11_DA7E));
    picked.truncate(users);
    picked.sort_unstable();
    picked.into_iter().map(|i| split.valid[i].clone()).collect()
}

/// Mean loss of a batch of example indices, drawing from the loop's seeded stream.
pub type BatchLoss<'a, B, M> = dyn Fn(&M, &[usize], &mut ChaCha8Rng) -> Tensor<B, 1> + 'a;

/// What [`train_model`] needs to know about a model besides its parameters.
pub struct Task<'a, B: AutodiffBackend, M: AutodiffModule<B>> {
    /// Training examples per epoch; the loop shuffles `0..examples` and hands batches of indices
    /// to `loss`.
    pub examples: usize,
    /// Mean loss of a batch of example indices; draws (dropout, negatives) come from the loop's
    /// seeded stream so a resumed run continues exactly.
    pub loss: &'a BatchLoss<'a, B, M>,
    /// The validation value of `train.metric` for the inference model (higher is better).
    pub validate: &'a dyn Fn(&M::InnerModule) -> Result<f64, String>,
    /// The model's config as JSON: `--resume` refuses a run whose config differs.
    pub model_config: serde_json::Value,
}

/// The shared loop: AdamW with the configured schedule and clipping, seeded shuffling, NaN/inf
/// detection, validation every `eval_every` epochs with early stopping, the best model kept (and
/// written atomically to `model.safetensors`), and a `resume/` state after every epoch.
#[allow(clippy::too_many_arguments)]
pub fn train_model<B: AutodiffBackend, M: AutodiffModule<B>>(
    mut model: M,
    task: Task<B, M>,
    config: &TrainConfig,
    eval: &EvalConfig,
    seed: u64,
    device: &B::Device,
    checkpoints: Checkpoints,
    log: &mut dyn FnMut(&str),
) -> Result<Trained<M::InnerModule>, String> {
    config.validate(eval)?;
    if task.examples == 0 {
        return Err("no training examples: nothing to train on".into());
    }
    let mut optim = AdamWConfig::new()
        .with_epsilon(config.eps as f32)
        .with_weight_decay(config.weight_decay as f32)
        .with_grad_clipping(
            (config.grad_clip > 0.0).then_some(burn::grad_clipping::GradientClippingConfig::Norm(
                config.grad_clip as f32,
            )),
        )
        .init();
    let steps_per_epoch = task.examples.div_ceil(config.batch_size);
    let total = steps_per_epoch * config.epochs;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..task.examples).collect();
    let (mut best, mut best_epoch, mut best_valid, mut waited) = (None, 0, f64::NEG_INFINITY, 0);
    let mut curves: Vec<CurvePoint> = Vec::new();
    let mut step = 0;
    let mut first_epoch = 1;
    if let (Some(dir), true) = (checkpoints.dir, checkpoints.resume) {
        let path = dir.join("resume");
        let err = |e: &dyn std::fmt::Display| format!("resuming from {}: {e}", path.display());
        let text = std::fs::read_to_string(path.join("state.json")).map_err(|e| err(&e))?;
        let state: ResumeState = serde_json::from_str(&text).map_err(|e| err(&e))?;
        if state.model != task.model_config {
            return Err(err(&format!(
                "the [model] table differs from the interrupted run's ({})",
                state.model
            )));
        }
        if state.batch_size != config.batch_size {
            return Err(err(&format!(
                "train.batch_size = {} differs from the interrupted run's {}",
                config.batch_size, state.batch_size
            )));
        }
        if state.order.len() != task.examples {
            return Err(err(
                &"the saved state is for a different dataset (training-example count differs)",
            ));
        }
        if path.join("best.bin").exists() {
            let inner = model.valid();
            best = Some(inner.load_record(recorder().load(path.join("best"), device).map_err(|e| err(&e))?));
        }
        model = model.load_record(recorder().load(path.join("model"), device).map_err(|e| err(&e))?);
        optim = optim.load_record(recorder().load(path.join("optim"), device).map_err(|e| err(&e))?);
        rng = ChaCha8Rng::from_seed(state.rng_seed);
        rng.set_word_pos(state.rng_word_pos.parse().map_err(|e| err(&e))?);
        order = state.order;
        (best_epoch, waited, step, curves) = (state.best_epoch, state.waited, state.step, state.curves);
        best_valid = state.best_valid.unwrap_or(f64::NEG_INFINITY);
        first_epoch = state.epoch + 1;
        log(&format!("resumed after epoch {} (step {step})", state.epoch));
    }
    // Wall-clock seconds continue from the resumed run's last curve point.
    let offset = curves.last().map_or(0.0, |p| p.seconds);
    let started = Instant::now();
    // A run that had already stopped early trains no further epochs.
    let last_epoch = if waited >= config.patience { 0 } else { config.epochs };
    for epoch in first_epoch..=last_epoch {
        order.shuffle(&mut rng);
        let bar = ProgressBar::new(steps_per_epoch as u64);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} {bar:30} {pos}/{len} {msg} [{elapsed}<{eta}]").unwrap(),
        );
        bar.set_prefix(epoch.to_string());
        let mut loss_sum = 0.0;
        for chunk in order.chunks(config.batch_size) {
            let loss = (task.loss)(&model, chunk, &mut rng);
            let value: f64 = loss.clone().into_scalar().elem::<f64>();
            if !value.is_finite() {
                bar.abandon();
                return Err(format!("loss became {value} at epoch {epoch}, step {step}: stopping (lower train.lr or enable train.grad_clip)"));
            }
            loss_sum += value;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(config.lr_at(step, total), model, grads);
            step += 1;
            bar.inc(1);
            bar.set_message(format!("loss {:.4}", loss_sum / bar.position() as f64));
        }
        bar.finish_and_clear();
        let loss = loss_sum / steps_per_epoch as f64;
        let mut point = CurvePoint {
            epoch,
            step,
            loss,
            valid: None,
            seconds: offset + started.elapsed().as_secs_f64(),
        };
        if epoch % config.eval_every == 0 || epoch == config.epochs {
            let inner = model.valid();
            let v = (task.validate)(&inner)?;
            point.valid = Some(v);
            log(&format!(
                "epoch {epoch}: loss {loss:.4}, valid {} {v:.4} ({:.0}s)",
                config.metric, point.seconds
            ));
            if v > best_valid {
                (best_valid, best_epoch, waited) = (v, epoch, 0);
                if let Some(dir) = checkpoints.dir {
                    save_checkpoint::<B::InnerBackend, _>(&inner, &dir.join("model.safetensors"))?;
                }
                best = Some(inner);
            } else {
                waited += 1;
            }
        } else {
            log(&format!("epoch {epoch}: loss {loss:.4} ({:.0}s)", point.seconds));
        }
        curves.push(point);
        if let Some(dir) = checkpoints.dir {
            let state = ResumeState {
                model: task.model_config.clone(),
                batch_size: config.batch_size,
                epoch,
                step,
                rng_seed: rng.get_seed(),
                rng_word_pos: rng.get_word_pos().to_string(),
                order: order.clone(),
                best_epoch,
                best_valid: best.as_ref().map(|_| best_valid),
                waited,
                curves: curves.clone(),
            };
            save_resume(dir, &model, &optim, best.as_ref(), &state)?;
        }
        if waited >= config.patience {
            log(&format!(
                "early stop: no improvement of valid {} in {} validations",
                config.metric, config.patience
            ));
            break;
        }
    }
    Ok(Trained {
        model: best.ok_or("no validation ran: nothing to select a model from")?,
        best_epoch,
        best_valid,
        curves,
    })
}

use burn::tensor::ElementConversion;

#[cfg(test)]
mod tests {
    use super::*;
    use genrec_data::synthetic::SyntheticConfig;
    use genrec_data::SplitConfig;

    #[test]
    fn schedule_by_hand() {
        let c = TrainConfig {
            lr: 1.0,
            warmup_steps: 2,
            schedule: Schedule::Cosine,
            ..TrainConfig::default()
        };
        assert_eq!(c.lr_at(0, 10), 0.5);
        assert_eq!(c.lr_at(1, 10), 1.0);
        assert!((c.lr_at(2, 10) - 1.0).abs() < 1e-12);
        assert!((c.lr_at(6, 10) - 0.5).abs() < 1e-12);
        let inv = TrainConfig {
            schedule: Schedule::InverseSqrt,
            ..c.clone()
        };
        // Warm-up to 1 at step 1, then sqrt(2 / (step + 1)): 1/2 at step 7.
        assert_eq!(inv.lr_at(1, 10), 1.0);
        assert!((inv.lr_at(7, 10) - 0.5).abs() < 1e-12);
        let e = EvalConfig::default();
        assert!(TrainConfig {
            metric: "ndcg@7".into(),
            ..TrainConfig::default()
        }
        .validate(&e)
        .unwrap_err()
        .contains("train.metric"));
        assert!(TrainConfig {
            lr: -1.0,
            ..TrainConfig::default()
        }
        .validate(&e)
        .unwrap_err()
        .contains("train.lr"));
    }

    #[test]
    fn learns_topic_transitions_and_is_deterministic() {
        type B = burn::backend::Autodiff<burn::backend::Flex>;
        let device = Default::default();
        let data = SyntheticConfig {
            users: 400,
            items: 60,
            topics: 6,
            stay: 0.2,
            ..SyntheticConfig::default()
        }
        .generate();
        let split = LeaveOneOut::new(&data, &SplitConfig { max_history: 10 });
        let model = SasRecConfig {
            d_model: 32,
            n_layers: 1,
            n_heads: 2,
            dropout: 0.1,
            ..SasRecConfig::default()
        };
        let train = TrainConfig {
            epochs: 8,
            batch_size: 64,
            lr: 5e-3,
            eval_every: 4,
            ..TrainConfig::default()
        };
        let eval = EvalConfig {
            ks: vec![10],
            ..EvalConfig::default()
        };
        let train_with = |cfg: &SasRecConfig| {
            train_sasrec::<B>(
                cfg,
                &train,
                &eval,
                &split,
                1,
                &device,
                Checkpoints::default(),
                &mut |_| {},
            )
            .unwrap()
        };
        let run = || train_with(&model);
        let a = run();
        let b = run();
        assert_eq!(a.best_valid, b.best_valid, "same seed, same backend, same metrics");
        let rec = SasRecRecommender { model: a.model };
        let sas = evaluate(&rec, &split.test, None, &eval, 0).unwrap().metrics["ndcg@10"];
        let pop = crate::pop::Popularity::fit(&split);
        let pop = evaluate(&pop, &split.test, None, &eval, 0).unwrap().metrics["ndcg@10"];
        // Topics change 80% of the time along a fixed cycle: the sequence model must beat popularity.
        assert!(sas > pop * 1.3, "sasrec {sas} vs pop {pop}");

        // The cheaper losses learn the same structure.
        for loss in [Loss::Sampled, Loss::Bce] {
            let cfg = SasRecConfig {
                loss,
                negatives: 20,
                ..model.clone()
            };
            let t = train_with(&cfg);
            let v = evaluate(&SasRecRecommender { model: t.model }, &split.test, None, &eval, 0)
                .unwrap()
                .metrics["ndcg@10"];
            assert!(v > pop * 1.3, "{loss:?}: {v} vs pop {pop}");
        }
    }

    #[test]
    fn resume_continues_exactly() {
        type B = burn::backend::Autodiff<burn::backend::Flex>;
        let device = Default::default();
        let data = SyntheticConfig::small().generate();
        let split = LeaveOneOut::new(&data, &SplitConfig { max_history: 8 });
        let model = SasRecConfig {
            d_model: 16,
            n_layers: 1,
            ..SasRecConfig::default()
        };
        let eval = EvalConfig {
            ks: vec![10],
            ..EvalConfig::default()
        };
        let train = |epochs| TrainConfig {
            epochs,
            batch_size: 32,
            lr: 5e-3,
            patience: 100,
            ..TrainConfig::default()
        };
        let run = |epochs, dir: &Path, resume| {
            let checkpoints = Checkpoints { dir: Some(dir), resume };
            train_sasrec::<B>(
                &model,
                &train(epochs),
                &eval,
                &split,
                3,
                &device,
                checkpoints,
                &mut |_| {},
            )
            .unwrap()
        };
        let straight = tempfile::tempdir().unwrap();
        let whole = run(4, straight.path(), false);
        let parts = tempfile::tempdir().unwrap();
        run(2, parts.path(), false);
        let resumed = run(4, parts.path(), true);
        let losses = |t: &Trained<_>| t.curves.iter().map(|p| (p.epoch, p.loss, p.valid)).collect::<Vec<_>>();
        assert_eq!(losses(&whole), losses(&resumed));
        assert_eq!(whole.best_valid, resumed.best_valid);
        assert!(parts.path().join("resume/state.json").exists());
        assert!(!parts.path().join("resume.tmp").exists());
        // A resumed run that has nothing left to do returns its best model unchanged.
        let again = run(4, parts.path(), true);
        assert_eq!(again.best_valid, whole.best_valid);
        // A different model or batch size cannot continue these weights.
        let other = SasRecConfig {
            d_model: 32,
            ..model.clone()
        };
        let checkpoints = Checkpoints {
            dir: Some(parts.path()),
            resume: true,
        };
        let err = train_sasrec::<B>(&other, &train(4), &eval, &split, 3, &device, checkpoints, &mut |_| {})
            .err()
            .unwrap();
        assert!(err.contains("[model] table differs"), "{err}");
    }
}
