//! Errors of genrec-eval; each message names the field, file and line, or model at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// An `[eval]` setting that cannot work for this data (the message starts with the field:
    /// `eval.ks: K = 100 is larger than the 30 items`).
    #[error("{0}")]
    Config(String),
    /// A model that broke the `Recommender` contract (wrong number of lists or scores, …).
    #[error("{0}")]
    Model(String),
    /// A ranked-lists file that cannot be evaluated (`lists.jsonl:3: missing field `ranked``).
    #[error("{0}")]
    Lists(String),
    /// A file that cannot be read or is not what it should be.
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    /// A paired test whose inputs do not pair up.
    #[error("{0}")]
    Stats(String),
}
