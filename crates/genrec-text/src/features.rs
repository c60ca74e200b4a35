//! [`build_features`]: an item-vector matrix for a dataset (row `i` = item `i` in the dataset's
//! load order) — MiniLM over each item's rendered text (cached), multi-hot / TF-IDF attribute
//! vectors, or a matrix imported from a file — what `genrec features build`, TIGER's `[index]`
//! and RLMRec's text profiles all use.

use std::path::PathBuf;
use std::str::FromStr;

use burn::tensor::backend::Backend;
use genrec_data::SequenceDataset;

use crate::{
    attribute_features, default_template, render, AttributeConfig, Matrix, RenderReport, TextEncoder, TextError,
};

/// What the vectors are made from.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureKind {
    /// MiniLM over the item text.
    Text,
    /// Multi-hot / TF-IDF over attribute ids (brand, categories, genres).
    Attributes,
    /// A `.npy` / `.safetensors` matrix computed elsewhere.
    File(PathBuf),
}

impl FeatureKind {
    /// `text`, `attributes` or `file:PATH`, as parsed.
    pub fn label(&self) -> String {
        match self {
            FeatureKind::Text => "text".into(),
            FeatureKind::Attributes => "attributes".into(),
            FeatureKind::File(path) => format!("file:{}", path.display()),
        }
    }
}

impl FromStr for FeatureKind {
    type Err = TextError;

    fn from_str(s: &str) -> Result<Self, TextError> {
        match s {
            "text" => Ok(FeatureKind::Text),
            "attributes" => Ok(FeatureKind::Attributes),
            _ => match s.strip_prefix("file:") {
                Some(p) if !p.is_empty() => Ok(FeatureKind::File(PathBuf::from(p))),
                _ => Err(TextError::Kind(s.to_string())),
            },
        }
    }
}

/// How to build them.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureOptions {
    /// Text template (default: the dataset's, see [`default_template`]).
    pub template: Option<String>,
    /// Attribute features: reduce to this many dimensions (default 0: one per attribute).
    pub dim: usize,
    /// Attribute features: TF-IDF weights (default true) instead of plain multi-hot.
    pub tfidf: bool,
    /// Texts per encoder batch (default 64).
    pub batch_size: usize,
    /// Reuse (and fill) the text-vector cache under `GENREC_HOME/features` (default true).
    pub cache: bool,
    /// Seed of the attribute reduction (default 0).
    pub seed: u64,
}

impl Default for FeatureOptions {
    fn default() -> Self {
        FeatureOptions {
            template: None,
            dim: 0,
            tfidf: true,
            batch_size: 64,
            cache: true,
            seed: 0,
        }
    }
}

/// Item vectors and how they were made.
pub struct ItemFeatures {
    pub matrix: Matrix,
    /// Text kind: the encoded texts, how they were rendered, the template used and the cache file.
    pub texts: Option<Vec<String>>,
    pub render: Option<RenderReport>,
    pub template: Option<String>,
    pub cache: Option<PathBuf>,
    /// `text`, `attributes` or `file:PATH`.
    pub kind: String,
}

/// MiniLM vectors of `texts` on `device`, through the text-vector cache when `cache` (keyed by
/// `label` and the texts' content); returns the cache file too.
pub fn encode_texts<B: Backend>(
    texts: &[String],
    label: &str,
    batch_size: usize,
    cache: bool,
    device: &B::Device,
) -> Result<(Matrix, Option<PathBuf>), TextError> {
    let encoder = TextEncoder::<B>::minilm(device)?;
    if !cache {
        return Ok((encoder.encode(texts, batch_size, true)?, None));
    }
    let (m, path) = encoder.encode_cached(label, texts, batch_size)?;
    Ok((m, Some(path)))
}

/// The `kind` vectors of `data`'s items (MiniLM on `device`); `dataset` labels the text cache.
pub fn build_features<B: Backend>(
    dataset: &str,
    data: &SequenceDataset,
    kind: &FeatureKind,
    options: &FeatureOptions,
    device: &B::Device,
) -> Result<ItemFeatures, TextError> {
    Ok(match kind {
        FeatureKind::Text => {
            let template = match &options.template {
                Some(t) => t.clone(),
                None => default_template(data)?.to_string(),
            };
            let (texts, report) = render(data, &template)?;
            let label = format!("{dataset}-minilm");
            let (matrix, cache) = encode_texts::<B>(&texts, &label, options.batch_size, options.cache, device)?;
            ItemFeatures {
                matrix,
                texts: Some(texts),
                render: Some(report),
                template: Some(template),
                cache,
                kind: kind.label(),
            }
        }
        FeatureKind::Attributes => {
            let config = AttributeConfig {
                tfidf: options.tfidf,
                dim: options.dim,
                seed: options.seed,
                ..AttributeConfig::default()
            };
            ItemFeatures {
                matrix: attribute_features(data, &config)?,
                texts: None,
                render: None,
                template: None,
                cache: None,
                kind: kind.label(),
            }
        }
        FeatureKind::File(path) => ItemFeatures {
            matrix: Matrix::load_checked(path, data.n_items(), None)?,
            texts: None,
            render: None,
            template: None,
            cache: None,
            kind: kind.label(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use genrec_data::synthetic::SyntheticConfig;

    #[test]
    fn kinds_parse_and_bad_ones_are_named() {
        assert_eq!("text".parse::<FeatureKind>().unwrap(), FeatureKind::Text);
        assert_eq!(
            "file:v.npy".parse::<FeatureKind>().unwrap(),
            FeatureKind::File(PathBuf::from("v.npy"))
        );
        let err = "pixels".parse::<FeatureKind>().unwrap_err().to_string();
        assert!(err.contains("expected text, attributes or file:PATH"), "{err}");
        assert!("file:".parse::<FeatureKind>().is_err());
    }

    #[test]
    fn a_file_of_the_wrong_shape_is_refused_with_both_counts() {
        let data = SyntheticConfig::small().generate();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.npy");
        Matrix::new(3, 2, vec![0.0; 6]).save(&path).unwrap();
        let kind = FeatureKind::File(path);
        let err =
            build_features::<burn::backend::Flex>("s", &data, &kind, &FeatureOptions::default(), &Default::default())
                .err()
                .unwrap()
                .to_string();
        assert!(err.contains("3 rows"), "{err}");
    }
}
