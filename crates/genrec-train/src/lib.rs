//! # genrec-train
//!
//! The training loop every learned genrec model uses ([`train_model`]): a model is any Burn
//! module plus a [`Task`] — how many examples an epoch has, the loss of a batch of example indices,
//! and the validation value of the selection metric. The loop owns what every model needs the same
//! way: AdamW with explicit eps and weight decay, warm-up then constant / cosine / inverse-sqrt
//! learning rate ([`TrainConfig`]), gradient-norm clipping, seeded shuffling, validation every N
//! epochs with early stopping on the *validation* split, the best model restored, NaN/inf stop,
//! atomic safetensors checkpoints and an exact `--resume` from the last completed epoch
//! ([`Checkpoints`]), progress bars and the curves a run plots.
//!
//! It knows nothing of datasets or metrics (no genrec-eval dependency): a model's own `train_*`
//! function builds the task (genrec-seqrec's `train_sasrec`, genrec-generative's `train_tiger`,
//! genrec-graph's `train_graph_cf`).

mod checkpoint;
mod config;
mod error;
mod fit;

pub use checkpoint::{resume_state_dir, save_checkpoint, Checkpoints};
pub use config::{Schedule, TrainConfig};
pub use error::{TrainError, ValidationError};
pub use fit::{train_model, BatchLoss, CurvePoint, Run, Task, Trained, Validate};

#[cfg(test)]
mod tests;
