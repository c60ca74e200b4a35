//! Graph collaborative filtering for genrec, on any Burn backend: propagation over the
//! normalised user–item graph ([`graph`]), the LightGCN, GCCF, SGL and SimGCL backbones (one file
//! each), the RLMRec alignment of their embeddings with semantic profiles ([`rlmrec`]; the
//! profiles from item text, files or SmolLM2 in [`profiles`]), and their training and hold-out
//! evaluation ([`train`]).
//!
//! ```text
//! HoldOut ──► Graph (Â as an edge list) ──► GraphCf (user/item tables [+ alignment head])
//!                                             │ batch_loss: BPR + L2 [+ InfoNCE views] [+ RLMRec]
//!                                             ▼
//!                     genrec-train's training loop ──► Scorer ──► genrec-eval hold-out metrics
//! ```

mod error;
pub mod gccf;
pub mod graph;
pub mod lightgcn;
pub mod losses;
pub mod model;
pub mod profiles;
pub mod rlmrec;
pub mod sgl;
pub mod simgcl;
pub mod train;

pub use error::GraphError;
pub use graph::Graph;
pub use model::{Backbone, GraphCf, GraphCfConfig, Settings, Variant};
pub use profiles::{file_profiles, llm_profiles, text_profiles, LlmProfileOptions};
pub use train::{evaluate_graph_cf, train_graph_cf, HostProfiles, Scorer};
