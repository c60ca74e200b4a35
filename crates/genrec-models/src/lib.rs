//! # genrec-models
//!
//! Recommenders behind the [`genrec_eval::Recommender`] trait. Today: [`pop::Popularity`], the
//! baseline every table starts from. The learned models (SASRec, TIGER, …) are not built yet and
//! are listed as absent in the README.

pub mod pop;
pub mod sasrec;
pub mod train;
