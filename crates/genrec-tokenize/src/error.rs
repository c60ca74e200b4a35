//! Errors of genrec-tokenize's index building, each naming the field or input at fault.

#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    /// An `[index]` field out of range: `field` is its dotted name, `message` the rest.
    #[error("{field} {message}")]
    Config { field: &'static str, message: String },
    /// A semantic method without item vectors.
    #[error("--method {method} needs --features FILE (item vectors: `genrec features build DATASET --out FILE`)")]
    MissingFeatures { method: &'static str },
    #[error("the item vectors have {rows} rows for {items} items")]
    FeatureRows { rows: usize, items: usize },
    /// A method could not fit (too few items for the codes, bad training data, …).
    #[error("{method}: {message}")]
    Fit { method: &'static str, message: String },
    /// Item codes that do not form an index (out of range, colliding, one a prefix of another).
    #[error("{0}")]
    Index(String),
    /// Reading or writing an index file.
    #[error("{}: {message}", path.display())]
    File { path: std::path::PathBuf, message: String },
    /// The methods' own checks and failures (the message names the setting or item).
    #[error("{0}")]
    Cid(String),
    #[error("{0}")]
    RqKmeans(String),
    #[error("{0}")]
    RqVae(String),
    #[error("{0}")]
    Sinkhorn(String),
    #[error("{0}")]
    Simple(String),
}

impl TokenizeError {
    pub(crate) fn config(field: &'static str, message: impl Into<String>) -> Self {
        TokenizeError::Config {
            field,
            message: message.into(),
        }
    }
}
