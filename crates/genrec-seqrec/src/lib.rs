//! # genrec-seqrec
//!
//! Sequential recommenders that score every item, behind genrec-eval's
//! [`Recommender`](genrec_eval::Recommender): the popularity baseline ([`Popularity`]) and SASRec
//! ([`SasRec`], with full-softmax, sampled-softmax and BCE losses), trained by genrec-train's loop
//! ([`train_sasrec`]). Generative models (TIGER and the ones that generate item codes) live in
//! genrec-generative.

mod error;
pub mod pop;
pub mod sasrec;

pub use error::SeqRecError;
pub use pop::Popularity;
pub use sasrec::train::{train_sasrec, SasRecRecommender};
pub use sasrec::{Loss, SasRec, SasRecConfig};
