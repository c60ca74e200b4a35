//! Errors of genrec-distill, each naming the field or file at fault.

use genrec_train::TrainError;

#[derive(Debug, thiserror::Error)]
pub enum DistillError {
    /// A `[model]` field out of range: `field` is its dotted name (`model.student.layers`),
    /// `message` the rest of the sentence.
    #[error("{field} {message}")]
    Config { field: String, message: String },
    /// A file that cannot be used (teacher checkpoint, item embeddings), and why.
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error(transparent)]
    Train(#[from] TrainError),
}

impl DistillError {
    pub(crate) fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        DistillError::Config {
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn file(path: &std::path::Path, message: impl Into<String>) -> Self {
        DistillError::File {
            path: path.display().to_string(),
            message: message.into(),
        }
    }
}
