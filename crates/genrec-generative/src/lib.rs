//! # genrec-generative
//!
//! Recommenders that *generate* the next item's ID as a token sequence, behind genrec-eval's
//! [`Recommender`](genrec_eval::Recommender): [`tiger`] (Rajput et al., NeurIPS 2023) on the
//! [`t5`] encoder–decoder, and [`rpg`] (Hou et al., KDD 2025: long product-quantised IDs, all digits
//! predicted in parallel by a causal decoder) and [`lcrec`] (Zheng et al., ICDE 2024: SmolLM2 taught
//! the index's code tokens through alignment tasks, LoRA). TIGER's and LC-Rec's decoding goes
//! through genrec-decode's one batched beam search ([`genrec_decode::beam_search`]), constrained
//! by a prefix trie of the items; training through genrec-train's loop. [`p5`] (Hua et al.,
//! 2023: prompts over any index into a T5 with whole-word embeddings) decodes the same way.
//! [`setrec`] (Lin et al., SIGIR 2025: order-agnostic sets of collaborative and semantic
//! continuous tokens, generated in one decoder pass and grounded to items by inner products) runs
//! on the same T5.

mod error;
pub mod lcrec;
pub mod p5;
pub mod rpg;
pub mod setrec;
pub mod t5;
pub mod tiger;

pub use error::GenerativeError;
pub use rpg::{train_rpg, Decode, Rpg, RpgConfig, RpgRecommender};
pub use setrec::{train_setrec, SetRec, SetRecConfig, SetRecItems, SetRecRecommender};
pub use t5::{T5Config, T5};
pub use tiger::{check_index_config, train_tiger, Tiger, TigerConfig};
