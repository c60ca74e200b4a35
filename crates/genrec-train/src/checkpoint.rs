//! Files a run keeps: the best model as safetensors (atomic), and the `resume/` state that lets
//! `--resume` continue exactly where the last completed epoch left off.

use std::path::Path;

use burn::module::{AutodiffModule, Module};
use burn::optim::Optimizer;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn_store::{ModuleSnapshot, SafetensorsStore};
use serde::{Deserialize, Serialize};

use crate::{CurvePoint, TrainError};

/// Where and how a training run keeps its files.
#[derive(Debug, Clone, Copy, Default)]
pub struct Checkpoints<'a> {
    /// Run directory: `model.safetensors` receives the best model after every improvement and
    /// `resume/` the full training state after every epoch. `None` = keep nothing on disk.
    pub dir: Option<&'a Path>,
    /// Continue from `dir/resume/` instead of starting over.
    pub resume: bool,
}

/// Saves `model` to `path` atomically (temporary file, then rename).
pub fn save_checkpoint<B: Backend, M: Module<B>>(model: &M, path: &Path) -> Result<(), TrainError> {
    let tmp = path.with_extension("safetensors.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut store = SafetensorsStore::from_file(&tmp);
    model.save_into(&mut store).map_err(|e| TrainError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}

/// Everything but the weights that `--resume` needs to continue a run exactly where its last
/// completed epoch left it: same batches, same dropout masks, same early-stopping state. The model
/// config and batch size must match the interrupted run's; `train.epochs` may change (a cosine
/// schedule then follows the new total from that point on).
#[derive(Serialize, Deserialize)]
pub(crate) struct ResumeState {
    /// The model config as JSON (any model's).
    pub model: serde_json::Value,
    pub batch_size: usize,
    /// Epochs completed.
    pub epoch: usize,
    pub step: usize,
    /// The loop's ChaCha8 stream (seed + word position; u128 as a decimal string for JSON).
    pub rng_seed: [u8; 32],
    pub rng_word_pos: String,
    pub order: Vec<usize>,
    pub best_epoch: usize,
    /// `None` before the first validation.
    pub best_valid: Option<f64>,
    pub waited: usize,
    pub curves: Vec<CurvePoint>,
}

pub(crate) fn recorder() -> BinFileRecorder<FullPrecisionSettings> {
    BinFileRecorder::<FullPrecisionSettings>::new()
}

/// Writes `dir/resume/` (model and optimizer records with their parameter ids, the best model,
/// state.json) through a temporary directory and renames, so a crash mid-write leaves the previous
/// epoch's state intact.
pub(crate) fn save_resume<B: AutodiffBackend, M: AutodiffModule<B>, O: Optimizer<M, B>>(
    dir: &Path,
    model: &M,
    optim: &O,
    best: Option<&M::InnerModule>,
    state: &ResumeState,
) -> Result<(), TrainError> {
    let tmp = dir.join("resume.tmp");
    let err = |e: &dyn std::fmt::Display| TrainError::io(&tmp, e);
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
