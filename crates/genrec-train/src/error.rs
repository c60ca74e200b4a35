//! What can stop a training run, each naming the field, file or step at fault.

use std::path::PathBuf;

/// What a validation closure may fail with (an evaluation's error, whatever its crate's type).
pub type ValidationError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A `[train]` field out of range; `field` is its dotted name (`train.lr`), `message` the
    /// rest of the sentence (`= 0 must be a positive number`).
    #[error("{field} {message}")]
    Config { field: &'static str, message: String },
    #[error("no training examples: nothing to train on")]
    NoExamples,
    /// The loss stopped being a number.
    #[error("loss became {value} at epoch {epoch}, step {step}: stopping (lower train.lr or enable train.grad_clip)")]
    NonFinite { value: f64, epoch: usize, step: usize },
    /// Reading or writing a checkpoint or the resume state.
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    /// `--resume` cannot continue this run.
    #[error("resuming from {}: {message}", path.display())]
    Resume { path: PathBuf, message: String },
    /// The model's validation closure failed.
    #[error("{0}")]
    Validation(#[from] ValidationError),
    #[error("no validation ran: nothing to select a model from")]
    NoValidation,
}

impl TrainError {
    pub(crate) fn config(field: &'static str, message: impl Into<String>) -> Self {
        TrainError::Config {
            field,
            message: message.into(),
        }
    }

    pub(crate) fn io(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        TrainError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}
