//! Files a run keeps: the best model as safetensors (atomic), and the `resume/` state that lets
//! `--resume` continue exactly where the last completed epoch left off.

use std::path::{Path, PathBuf};

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
    /// SHA-256 of each record file written with this state (`model.bin`, `optim.bin`,
    /// `best.bin`), checked before loading; empty in states written before checksums existed.
    #[serde(default)]
    pub checksums: std::collections::BTreeMap<String, String>,
}

/// Hex SHA-256 of a file's bytes.
fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path)?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}

impl ResumeState {
    /// Checks every record file against the checksum this state holds for it; `Err((file,
    /// message))` names the file that is missing, unreadable or changed since it was saved.
    pub(crate) fn verify_files(&self, dir: &Path) -> Result<(), (String, String)> {
        for (file, want) in &self.checksums {
            let got = sha256_file(&dir.join(file)).map_err(|e| (file.clone(), e.to_string()))?;
            if &got != want {
                return Err((
                    file.clone(),
                    "does not match the checksum in state.json: the file was changed or damaged after it was saved"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// Checks that the state can belong to a run of `examples` examples in batches of
    /// `steps_per_epoch` steps: `order` a permutation of `0..examples`, counters consistent with
    /// each other. A state that fails was not written by this loop (or was edited).
    pub(crate) fn check(&self, examples: usize, steps_per_epoch: usize) -> Result<(), String> {
        if self.order.len() != examples {
            return Err("the saved state is for a different dataset (training-example count differs)".into());
        }
        let mut seen = vec![false; examples];
        for &i in &self.order {
            match seen.get_mut(i) {
                Some(s) if !*s => *s = true,
                _ => return Err(format!("`order` is not a permutation of 0..{examples} (index {i})")),
            }
        }
        if self.epoch.checked_mul(steps_per_epoch) != Some(self.step) {
            return Err(format!(
                "`step` = {} does not match {} completed epochs of {steps_per_epoch} steps",
                self.step, self.epoch
            ));
        }
        if self.curves.len() != self.epoch || self.best_epoch > self.epoch || self.waited > self.epoch {
            return Err(format!(
                "counters disagree: epoch {}, {} curve points, best epoch {}, {} validations without improvement",
                self.epoch,
                self.curves.len(),
                self.best_epoch,
                self.waited
            ));
        }
        self.rng_word_pos
            .parse::<u128>()
            .map_err(|e| format!("`rng_word_pos` = {:?}: {e}", self.rng_word_pos))?;
        Ok(())
    }
}

/// The directory holding `dir`'s resume state, repairing an interrupted save first: the state is
/// written to `resume.tmp/` (its `state.json` last), then `resume/` becomes `resume.old/` and
/// `resume.tmp/` becomes `resume/`. A crash between those two renames leaves no `resume/`; the
/// complete `resume.tmp/` (or, failing that, `resume.old/`) is then renamed into place. `None`
/// when the run has no saved state at all.
pub fn resume_state_dir(dir: &Path) -> Result<Option<PathBuf>, TrainError> {
    let target = dir.join("resume");
    if target.join("state.json").exists() {
        return Ok(Some(target));
    }
    for candidate in ["resume.tmp", "resume.old"] {
        let from = dir.join(candidate);
        // `resume.tmp/` counts only in the rename window, when `resume.old/` proves it was complete.
        let complete =
            from.join("state.json").exists() && (candidate == "resume.old" || dir.join("resume.old").exists());
        if complete {
            let _ = std::fs::remove_dir_all(&target);
            std::fs::rename(&from, &target).map_err(|e| TrainError::io(&from, e))?;
            return Ok(Some(target));
        }
    }
    Ok(None)
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
    let mut checksums = std::collections::BTreeMap::new();
    for file in ["model.bin", "optim.bin", "best.bin"] {
        let path = tmp.join(file);
        if path.exists() {
            checksums.insert(file.to_string(), sha256_file(&path).map_err(|e| err(&e))?);
        }
    }
    // The state as given, with the checksums of the files just written.
    let text = serde_json::to_value(state)
        .and_then(|mut value| {
            value["checksums"] = serde_json::to_value(&checksums)?;
            serde_json::to_string(&value)
        })
        .map_err(|e| err(&e))?;
    std::fs::write(tmp.join("state.json"), text).map_err(|e| err(&e))?;
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
