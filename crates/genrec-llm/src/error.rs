//! Errors of genrec-llm besides the GGUF reader's own [`GgufError`](crate::GgufError); each
//! message names the file, key, tensor or field at fault.

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// A model configuration that cannot be built (the message names the field).
    #[error("{0}")]
    Config(String),
    /// Weights that are missing, mis-shaped or unreadable (GGUF or safetensors; names file and tensor).
    #[error("{0}")]
    Weights(String),
    /// Layer surgery with impossible indices.
    #[error("{0}")]
    Layers(String),
    /// Building the tokenizer from the GGUF vocabulary, encoding or decoding.
    #[error("{0}")]
    Tokenizer(String),
    #[error(transparent)]
    Gguf(#[from] crate::GgufError),
}
