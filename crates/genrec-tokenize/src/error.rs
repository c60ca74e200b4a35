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
}

impl TokenizeError {
    pub(crate) fn config(field: &'static str, message: impl Into<String>) -> Self {
        TokenizeError::Config {
            field,
            message: message.into(),
        }
    }
}
