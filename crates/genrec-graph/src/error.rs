//! Errors of genrec-graph's profile building (the backbones' checks still return messages; see
//! the README's note on typed errors).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// Reading or writing a profile file.
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    /// Profile matrices or item text that do not fit the data (the message names file and counts).
    #[error("{0}")]
    Profiles(String),
    /// Loading SmolLM2 or generating with it.
    #[error("SmolLM2: {0}")]
    Llm(String),
}
