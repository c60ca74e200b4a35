//! The loop every learned model trains with: AdamW with the configured schedule and clipping,
//! seeded shuffling, NaN/inf detection, validation every `eval_every` epochs with early stopping,
//! the best model kept (and written atomically to `model.safetensors`), and a `resume/` state
//! after every epoch.

use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::record::Recorder;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{recorder, resume_state_dir, save_checkpoint, save_resume, ResumeState};
use crate::{Checkpoints, TrainConfig, TrainError, ValidationError};

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

impl<M> Trained<M> {
    /// The same training record around another value (a model wrapped with its index, say).
    pub fn map<N>(self, f: impl FnOnce(M) -> N) -> Trained<N> {
        Trained {
            model: f(self.model),
            best_epoch: self.best_epoch,
            best_valid: self.best_valid,
            curves: self.curves,
        }
    }
}

/// Mean loss of a batch of example indices, drawing from the loop's seeded stream.
pub type BatchLoss<'a, B, M> = dyn Fn(&M, &[usize], &mut ChaCha8Rng) -> Tensor<B, 1> + 'a;

/// The validation value of `train.metric` for the inference model (higher is better).
pub type Validate<'a, M> = dyn Fn(&M) -> Result<f64, ValidationError> + 'a;

/// What [`train_model`] needs to know about a model besides its parameters.
pub struct Task<'a, B: AutodiffBackend, M: AutodiffModule<B>> {
    /// Training examples per epoch; the loop shuffles `0..examples` and hands batches of indices
    /// to `loss`.
    pub examples: usize,
    /// Mean loss of a batch of example indices; draws (dropout, negatives) come from the loop's
    /// seeded stream so a resumed run continues exactly.
    pub loss: &'a BatchLoss<'a, B, M>,
    /// The validation value of `train.metric` for the inference model (higher is better).
    pub validate: &'a Validate<'a, M::InnerModule>,
    /// The model's config as JSON: `--resume` refuses a run whose config differs.
    pub model_config: serde_json::Value,
}

/// One training run's seed, files and log line sink: what a model's `train_*` function passes
/// through to [`train_model`] untouched.
pub struct Run<'a> {
    /// Seeds the loop's stream (shuffling, dropout, negatives) and the validation sample.
    pub seed: u64,
    pub checkpoints: Checkpoints<'a>,
    /// Receives one line per epoch (and the resume / early-stop notices).
    pub log: Box<dyn FnMut(&str) + 'a>,
}

impl<'a> Run<'a> {
    /// A run that keeps nothing on disk and logs nowhere (tests, notebooks).
    pub fn quiet(seed: u64) -> Run<'static> {
        Run {
            seed,
            checkpoints: Checkpoints::default(),
            log: Box::new(|_| {}),
        }
    }

    /// A run that logs each line to `log` and keeps files as `checkpoints` says.
    pub fn new(seed: u64, checkpoints: Checkpoints<'a>, log: impl FnMut(&str) + 'a) -> Self {
        Run {
            seed,
            checkpoints,
            log: Box::new(log),
        }
    }
}

/// Trains `model` on `task` as `config` says and returns the best model by validation.
pub fn train_model<B: AutodiffBackend, M: AutodiffModule<B>>(
    mut model: M,
    task: Task<B, M>,
    config: &TrainConfig,
    device: &B::Device,
    run: Run,
) -> Result<Trained<M::InnerModule>, TrainError> {
    let Run {
        seed,
        checkpoints,
        mut log,
    } = run;
    config.validate_loop()?;
    if task.examples == 0 {
        return Err(TrainError::NoExamples);
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
        let path = resume_state_dir(dir)?.unwrap_or_else(|| dir.join("resume"));
        let err = |file: &str, e: &dyn std::fmt::Display| TrainError::Resume {
            path: path.join(file),
            message: e.to_string(),
        };
        let text = std::fs::read_to_string(path.join("state.json")).map_err(|e| err("state.json", &e))?;
        let state: ResumeState = serde_json::from_str(&text).map_err(|e| err("state.json", &e))?;
        if state.model != task.model_config {
            return Err(err(
                "state.json",
                &format!("the [model] table differs from the interrupted run's ({})", state.model),
            ));
        }
        if state.batch_size != config.batch_size {
            return Err(err(
                "state.json",
                &format!(
                    "train.batch_size = {} differs from the interrupted run's {}",
                    config.batch_size, state.batch_size
                ),
            ));
        }
        state
            .check(task.examples, steps_per_epoch)
            .map_err(|e| err("state.json", &e))?;
        state.verify_files(&path).map_err(|(file, e)| err(&file, &e))?;
        if path.join("best.bin").exists() {
            let inner = model.valid();
            best = Some(
                inner.load_record(
                    recorder()
                        .load(path.join("best"), device)
                        .map_err(|e| err("best.bin", &e))?,
                ),
            );
        }
        model = model.load_record(
            recorder()
                .load(path.join("model"), device)
                .map_err(|e| err("model.bin", &e))?,
        );
        optim = optim.load_record(
            recorder()
                .load(path.join("optim"), device)
                .map_err(|e| err("optim.bin", &e))?,
        );
        rng = ChaCha8Rng::from_seed(state.rng_seed);
        rng.set_word_pos(state.rng_word_pos.parse().map_err(|e| err("state.json", &e))?);
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
            ProgressStyle::with_template("epoch {prefix} {bar:30} {pos}/{len} {msg} [{elapsed}<{eta}]")
                .expect("a valid progress template"),
        );
        bar.set_prefix(epoch.to_string());
        let mut loss_sum = 0.0;
        for chunk in order.chunks(config.batch_size) {
            let loss = (task.loss)(&model, chunk, &mut rng);
            let value: f64 = loss.clone().into_scalar().elem::<f64>();
            if !value.is_finite() {
                bar.abandon();
                return Err(TrainError::NonFinite { value, epoch, step });
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
                checksums: Default::default(),
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
        model: best.ok_or(TrainError::NoValidation)?,
        best_epoch,
        best_valid,
        curves,
    })
}
