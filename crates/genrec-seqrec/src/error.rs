//! Errors of genrec-seqrec, each naming the field or file at fault.

use std::path::PathBuf;

use genrec_train::TrainError;

#[derive(Debug, thiserror::Error)]
pub enum SeqRecError {
    /// A `[model]` field out of range: `field` is its dotted name (`model.d_model`), `message`
    /// the rest of the sentence.
    #[error("{field} {message}")]
    Config { field: &'static str, message: String },
    #[error("no user has 2 training items: nothing to train on")]
    NoSequences,
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error(transparent)]
    Train(#[from] TrainError),
}

impl SeqRecError {
    pub(crate) fn config(field: &'static str, message: impl Into<String>) -> Self {
        SeqRecError::Config {
            field,
            message: message.into(),
        }
    }
}
