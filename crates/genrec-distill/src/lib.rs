//! # genrec-distill
//!
//! Distillation of LLM recommenders into small ones. [`slmrec`]: SLMRec (Xu et al., ICLR 2025) —
//! an E4SRec-style LLM sequential recommender on SmolLM2 ([`model::LlmRec`], the teacher) and a
//! student made of a few of its blocks, trained with block-wise feature distillation and
//! multiple supervision.
//!
//! `cargo test -p genrec-distill` (the SmolLM2 tests need `genrec assets fetch smollm2`).

mod error;
pub mod model;
pub mod slmrec;

pub use error::DistillError;
pub use model::{ItemBatch, LlmRec, LlmRecRecommender};
pub use slmrec::{
    build_student, load_teacher, split_fingerprint, train_student, train_teacher, Pick, Plan, Student, StudentConfig,
    StudentInit, TeacherConfig, TeacherRecord, Tuning,
};
