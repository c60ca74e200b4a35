//! Errors of genrec-generative, each naming the field or input at fault.

use genrec_train::TrainError;

#[derive(Debug, thiserror::Error)]
pub enum GenerativeError {
    /// A `[model]` field out of range: `field` is its dotted name (`model.beam`), `message` the
    /// rest of the sentence.
    #[error("{field} {message}")]
    Config { field: String, message: String },
    /// The item index was built for another item set.
    #[error("the item index covers {index} items, the dataset has {dataset}")]
    IndexMismatch { index: usize, dataset: usize },
    #[error(transparent)]
    Train(#[from] TrainError),
}

impl GenerativeError {
    pub(crate) fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        GenerativeError::Config {
            field: field.into(),
            message: message.into(),
        }
    }
}
