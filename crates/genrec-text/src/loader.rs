//! Loads Hugging Face BERT weights (`model.safetensors`, keys without a `bert.` prefix as in
//! sentence-transformers checkpoints) into [`Bert`] through burn-store: a declarative key map,
//! Linear weights transposed by burn-store's `PyTorchToBurnAdapter`, LayerNorm weight/bias renamed
//! to gamma/beta by the key map, and a check that every parameter was loaded and nothing unexpected was left over.

use crate::TextError;
use std::path::Path;

use burn::tensor::backend::Backend;
use burn_store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};

use crate::bert::{Bert, BertConfig};

/// Checkpoint key (regex) → our module path; every matching rule applies, in order. LayerNorm
/// weight/bias are renamed to Burn's gamma/beta here rather than through the adapter's
/// alternative-name lookup, which burn-store 0.21 reports as "unused" tensors.
pub const KEY_MAP: [(&str, &str); 9] = [
    (r"^embeddings\.LayerNorm\.", "embeddings.layer_norm."),
    (
        r"^encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.",
        "layers.$1.$2.",
    ),
    (
        r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.",
        "layers.$1.attention_output.",
    ),
    (
        r"^encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.",
        "layers.$1.attention_norm.",
    ),
    (
        r"^encoder\.layer\.(\d+)\.intermediate\.dense\.",
        "layers.$1.intermediate.",
    ),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", "layers.$1.output."),
    (r"^encoder\.layer\.(\d+)\.output\.LayerNorm\.", "layers.$1.output_norm."),
    (r"(layer_norm|attention_norm|output_norm)\.weight$", "$1.gamma"),
    (r"(layer_norm|attention_norm|output_norm)\.bias$", "$1.beta"),
];

/// Checkpoint tensors deliberately left unused: the position-id buffer and the pooler, which
/// sentence embeddings (mean pooling) do not use.
pub const IGNORED: [&str; 3] = ["embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"];

/// Reads `dir/config.json` and `dir/model.safetensors`.
pub fn load_bert<B: Backend>(dir: &Path, device: &B::Device) -> Result<Bert<B>, TextError> {
    let config = BertConfig::load(&dir.join("config.json"))?;
    let weights = dir.join("model.safetensors");
    if !weights.exists() {
        return Err(TextError::Encoder(format!("{}: not found", weights.display())));
    }
    let mut model = config.init::<B>(device);
    let mut store = SafetensorsStore::from_file(&weights)
        .with_from_adapter(PyTorchToBurnAdapter)
        .allow_partial(true);
    for (from, to) in KEY_MAP {
        store = store.with_key_remapping(from, to);
    }
    let result = model
        .load_from(&mut store)
        .map_err(|e| TextError::Encoder(format!("{}: {e}", weights.display())))?;
    let mut problems = Vec::new();
    if !result.errors.is_empty() {
        problems.push(format!("errors: {:?}", result.errors));
    }
    if !result.missing.is_empty() {
        let missing: Vec<&str> = result.missing.iter().map(|(p, _)| p.as_str()).collect();
        problems.push(format!("parameters missing from the file: {}", missing.join(", ")));
    }
    let unused: Vec<&str> = result
        .unused
        .iter()
        .map(String::as_str)
        .filter(|k| !IGNORED.contains(k))
        .collect();
    if !unused.is_empty() {
        problems.push(format!("unexpected tensors in the file: {}", unused.join(", ")));
    }
    if problems.is_empty() {
        Ok(model)
    } else {
        Err(TextError::Encoder(format!(
            "{}: {}",
            weights.display(),
            problems.join("; ")
        )))
    }
}
