use std::path::{Path, PathBuf};

/// Every failure names the file, and where it applies the line and field, so a user can fix the input.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A malformed line. `line` is 1-based, as an editor shows it.
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path}: the file has no data rows")]
    Empty { path: PathBuf },
    #[error("unknown dataset `{name}`; known: {known}")]
    UnknownDataset { name: String, known: String },
    #[error("{0}")]
    Invalid(String),
    #[error("fetching {asset}: {message}")]
    Fetch { asset: String, message: String },
    #[error("{path}: sha256 mismatch (expected {expected}, found {found}); delete the file and fetch again")]
    Checksum {
        path: PathBuf,
        expected: String,
        found: String,
    },
}

pub type Result<T> = std::result::Result<T, DataError>;

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn parse(path: &Path, line: usize, message: impl Into<String>) -> Self {
        DataError::Parse {
            path: path.to_path_buf(),
            line,
            message: message.into(),
        }
    }

    pub(crate) fn format(path: &Path, message: impl Into<String>) -> Self {
        DataError::Format {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// Reads a whole text file, naming the path on failure and rejecting non-UTF-8 content clearly.
/// The file as UTF-8 text, without a leading byte-order mark (spreadsheet exports add one; left
/// in, it would become part of the first user id or header name).
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        DataError::format(
            path,
            format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    Ok(match text.strip_prefix('\u{FEFF}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// Iterates `(1-based line number, line without its line ending)`: LF and CRLF files, and files
/// with old Mac CR-only endings (which would otherwise read as one long line).
pub(crate) fn lines(text: &str) -> Box<dyn Iterator<Item = (usize, &str)> + '_> {
    if !text.contains('\n') && text.contains('\r') {
        return Box::new(text.split_terminator('\r').enumerate().map(|(i, l)| (i + 1, l)));
    }
    Box::new(
        text.lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l))),
    )
}
