//! Errors of genrec-text's feature building, by stage; each message names the file, field or
//! dataset at fault (the stages' own messages do).

#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// `--kind` / `index.features` is none of the kinds.
    #[error("--kind `{0}`: expected text, attributes or file:PATH")]
    Kind(String),
    /// Rendering item text (no template for the dataset, a field no item has).
    #[error("{0}")]
    Render(String),
    /// Loading MiniLM or encoding with it (including the vector cache).
    #[error("{0}")]
    Encoder(String),
    /// Attribute features.
    #[error("{0}")]
    Attributes(String),
    /// Reading an imported matrix (wrong shape, unreadable file).
    #[error("{0}")]
    File(String),
}
