//! # genrec-generative
//!
//! Recommenders that *generate* the next item's ID as a token sequence, behind genrec-eval's
//! [`Recommender`](genrec_eval::Recommender): [`tiger`] (Rajput et al., NeurIPS 2023) on the
//! [`t5`] encoder–decoder. Decoding goes through genrec-decode's one batched beam search
//! ([`genrec_decode::beam_search`]), constrained by the item index's prefix trie; training
//! through genrec-train's loop. RPG, P5, LC-Rec and SETRec are not built yet (listed as absent in
//! the README); each will get its own module here.

mod error;
pub mod t5;
pub mod tiger;

pub use error::GenerativeError;
pub use t5::{T5Config, T5};
pub use tiger::{check_index_config, train_tiger, Tiger, TigerConfig};
