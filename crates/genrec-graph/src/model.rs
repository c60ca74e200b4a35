//! The trainable part shared by every backbone — the user and item embedding tables, plus the
//! RLMRec alignment head when one is configured — the backbone settings, and the batch loss that
//! dispatches to the backbone files ([`crate::lightgcn`], [`crate::gccf`], [`crate::sgl`],
//! [`crate::simgcl`]) and the alignment ([`crate::rlmrec`]).
//!
//! Defaults are the RLMRec reference configs for Amazon-book (`encoder/config/modelconf/*.yml`):
//! d 32, 3 layers (GCCF 2), L2 1e-6 (SGL, SimGCL 1e-5), edge keep rate 0.8 for LightGCN and SGL,
//! InfoNCE weight 0.1 and τ 0.2, SimGCL noise ε 0.9.

use crate::GraphError;
use burn::module::{Module, Param};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::graph::Graph;
use crate::losses::{bpr_sum, squared_norm};
use crate::rlmrec::{Align, AlignConfig, AlignMethod, Profiles};
use crate::{lightgcn, rlmrec, sgl, simgcl};

/// Which graph CF model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backbone {
    /// LightGCN (He et al., SIGIR 2020): linear propagation, layers combined.
    LightGcn,
    /// GCCF / LR-GCCF (Chen et al., AAAI 2020): linear propagation, layers concatenated.
    Gccf,
    /// SGL (Wu et al., SIGIR 2021): LightGCN + InfoNCE between two edge-dropped views.
    Sgl,
    /// SimGCL (Yu et al., SIGIR 2022): LightGCN + InfoNCE between two noise-perturbed views.
    SimGcl,
}

impl Backbone {
    pub fn name(self) -> &'static str {
        match self {
            Backbone::LightGcn => "lightgcn",
            Backbone::Gccf => "gccf",
            Backbone::Sgl => "sgl",
            Backbone::SimGcl => "simgcl",
        }
    }
}

/// How closely to follow which source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// As the RLMRec reference code: layer outputs *summed* over layers 0..L, L2 on the full
    /// parameter tables every batch, edge dropout (LightGCN, SGL) without rescaling.
    #[default]
    Reference,
    /// As He et al. 2020: layer outputs *averaged*, L2 (×½, per batch size) on the batch's own
    /// layer-0 embeddings only, no edge dropout unless `keep_rate` is set.
    Paper,
}

/// The `[model]` table of a graph CF experiment. Unset options take the per-backbone defaults
/// listed on each field; [`resolve`](Self::resolve) fills them in and checks every value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphCfConfig {
    /// `reference` (default) or `paper`.
    #[serde(default)]
    pub variant: Variant,
    /// Embedding size (default 32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dim: Option<usize>,
    /// Propagation layers (default 3; GCCF 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<usize>,
    /// Probability of keeping each adjacency entry in training (default 0.8 for LightGCN
    /// `reference` and SGL; 1.0 — no dropout — otherwise; GCCF and SimGCL do not drop edges).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_rate: Option<f64>,
    /// L2 weight (default 1e-6; SGL and SimGCL 1e-5; LightGCN `paper` 1e-4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg: Option<f64>,
    /// Weight of the SGL / SimGCL InfoNCE term (default 0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cl_weight: Option<f64>,
    /// Temperature of the SGL / SimGCL InfoNCE term (default 0.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cl_temperature: Option<f64>,
    /// SimGCL noise magnitude ε (default 0.9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_eps: Option<f64>,
    /// RLMRec alignment with semantic profiles (absent: the plain backbone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub align: Option<AlignConfig>,
}

/// Every setting of a backbone, defaults filled in and checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub backbone: Backbone,
    pub variant: Variant,
    pub dim: usize,
    pub layers: usize,
    pub keep_rate: f64,
    pub reg: f64,
    pub cl_weight: f64,
    pub cl_temperature: f64,
    pub noise_eps: f64,
    pub align: Option<rlmrec::AlignSettings>,
}

/// How the layer outputs `E_0 … E_L` become the final embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    Sum,
    Mean,
    Concat,
}

impl GraphCfConfig {
    /// Fills in `backbone`'s defaults and checks every value; errors name the field.
    pub fn resolve(&self, backbone: Backbone) -> Result<Settings, GraphError> {
        use Backbone::*;
        let paper = self.variant == Variant::Paper;
        let contrastive = matches!(backbone, Sgl | SimGcl);
        let drops_edges = matches!(backbone, LightGcn | Sgl);
        let default_keep = if drops_edges && !paper { 0.8 } else { 1.0 };
        let default_reg = match backbone {
            Sgl | SimGcl => 1e-5,
            LightGcn if paper => 1e-4,
            _ => 1e-6,
        };
        let s = Settings {
            backbone,
            variant: self.variant,
            dim: self.dim.unwrap_or(32),
            layers: self.layers.unwrap_or(if backbone == Gccf { 2 } else { 3 }),
            keep_rate: self.keep_rate.unwrap_or(default_keep),
            reg: self.reg.unwrap_or(default_reg),
            cl_weight: self.cl_weight.unwrap_or(0.1),
            cl_temperature: self.cl_temperature.unwrap_or(0.2),
            noise_eps: self.noise_eps.unwrap_or(0.9),
            align: self.align.as_ref().map(|a| a.resolve()).transpose()?,
        };
        let name = backbone.name();
        if s.dim == 0 {
            return Err(GraphError::Config("model.dim must be at least 1".into()));
        }
        if s.layers == 0 && backbone != LightGcn {
            return Err(GraphError::Config(format!(
                "model.layers must be at least 1 for {name}"
            )));
        }
        if !(s.keep_rate > 0.0 && s.keep_rate <= 1.0) {
            return Err(GraphError::Config(format!(
                "model.keep_rate = {} must be in (0, 1]",
                s.keep_rate
            )));
        }
        if self.keep_rate.is_some_and(|k| k < 1.0) && !drops_edges {
            return Err(GraphError::Config(format!(
                "model.keep_rate: {name} does not drop edges (only lightgcn and sgl do)"
            )));
        }
        if !(s.reg >= 0.0 && s.reg.is_finite()) {
            return Err(GraphError::Config(format!(
                "model.reg = {} must be a finite number ≥ 0",
                s.reg
            )));
        }
        let set = |o: Option<f64>| o.is_some();
        if !contrastive && (set(self.cl_weight) || set(self.cl_temperature)) {
            return Err(GraphError::Config(format!(
                "model.cl_weight / model.cl_temperature: {name} has no contrastive term (sgl and simgcl do)"
            )));
        }
        if backbone != SimGcl && set(self.noise_eps) {
            return Err(GraphError::Config(format!(
                "model.noise_eps: only simgcl perturbs embeddings, not {name}"
            )));
        }
        if !(s.cl_weight >= 0.0 && s.cl_weight.is_finite()) {
            return Err(GraphError::Config(format!(
                "model.cl_weight = {} must be a finite number ≥ 0",
                s.cl_weight
            )));
        }
        if !(s.cl_temperature > 0.0 && s.cl_temperature.is_finite()) {
            return Err(GraphError::Config(format!(
                "model.cl_temperature = {} must be positive",
                s.cl_temperature
            )));
        }
        if !(s.noise_eps >= 0.0 && s.noise_eps.is_finite()) {
            return Err(GraphError::Config(format!(
                "model.noise_eps = {} must be a finite number ≥ 0",
                s.noise_eps
            )));
        }
        Ok(s)
    }
}

impl Settings {
    /// How this backbone combines its layers.
    pub fn combine(&self) -> Combine {
        match (self.backbone, self.variant) {
            (Backbone::Gccf, _) => Combine::Concat,
            (_, Variant::Reference) => Combine::Sum,
            (_, Variant::Paper) => Combine::Mean,
        }
    }

    /// Width of the final embeddings: `dim`, or `dim · (layers + 1)` when concatenated.
    pub fn output_dim(&self) -> usize {
        match self.combine() {
            Combine::Concat => self.dim * (self.layers + 1),
            _ => self.dim,
        }
    }
}

/// The parameters: user and item tables and the optional alignment head.
#[derive(Module, Debug)]
pub struct GraphCf<B: Backend> {
    /// `[n_users, dim]`
    pub user: Param<Tensor<B, 2>>,
    /// `[n_items, dim]`
    pub item: Param<Tensor<B, 2>>,
    pub align: Option<Align<B>>,
}

/// Xavier-uniform values for a `[rows, cols]` table with PyTorch's fans for a 2-d tensor
/// (`fan_in = cols`, `fan_out = rows`), as the reference initialises its tables.
pub(crate) fn xavier(rows: usize, cols: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let bound = (6.0 / (rows + cols) as f64).sqrt();
    (0..rows * cols)
        .map(|_| rng.random_range(-bound..bound) as f32)
        .collect()
}

pub(crate) fn param<B: Backend, const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), device))
}

impl<B: Backend> GraphCf<B> {
    /// Fresh parameters drawn from `ChaCha8Rng(seed)` (host-side, so no backend RNG is involved
    /// and every backend starts from the same values). `profile_dim` is the width of the semantic
    /// profiles when `settings.align` is set.
    pub fn new(
        settings: &Settings,
        n_users: usize,
        n_items: usize,
        profile_dim: Option<usize>,
        seed: u64,
        device: &B::Device,
    ) -> Result<Self, GraphError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let d = settings.dim;
        let user = param(xavier(n_users, d, &mut rng), [n_users, d], device);
        let item = param(xavier(n_items, d, &mut rng), [n_items, d], device);
        let align = match (&settings.align, profile_dim) {
            (None, _) => None,
            (Some(a), Some(ds)) => Some(Align::new(a, ds, settings.output_dim(), d, &mut rng, device)),
            (Some(_), None) => {
                return Err(GraphError::Config(
                    "model.align is set but no profiles were given".into(),
                ))
            }
        };
        Ok(GraphCf { user, item, align })
    }

    /// Layer-0 embeddings of all nodes, users first, `[n_nodes, dim]`.
    pub fn ego(&self) -> Tensor<B, 2> {
        Tensor::cat(vec![self.user.val(), self.item.val()], 0)
    }

    /// Final embeddings for ranking: full adjacency, no dropout, noise or masking.
    ///
    /// # Shapes
    /// - output: `[n_users + n_items, output_dim]`, users first
    pub fn embed(&self, settings: &Settings, graph: &Graph<B>) -> Tensor<B, 2> {
        lightgcn::full_view(graph, self.ego(), settings)
    }
}

/// One batch of BPR triples on the device.
#[derive(Debug, Clone)]
pub struct Triples<B: Backend> {
    /// `[batch]` user ids.
    pub users: Tensor<B, 1, Int>,
    /// `[batch]` positive item ids.
    pub pos: Tensor<B, 1, Int>,
    /// `[batch]` negative item ids.
    pub neg: Tensor<B, 1, Int>,
    pub size: usize,
}

impl<B: Backend> Triples<B> {
    pub fn new(users: Vec<i64>, pos: Vec<i64>, neg: Vec<i64>, device: &B::Device) -> Self {
        let size = users.len();
        let t = |v: Vec<i64>| Tensor::from_data(TensorData::new(v, [size]), device);
        Triples {
            users: t(users),
            pos: t(pos),
            neg: t(neg),
            size,
        }
    }
}

/// The training view's embeddings of a batch, split into anchors / positives / negatives.
pub struct Picked<B: Backend> {
    pub anchor: Tensor<B, 2>,
    pub pos: Tensor<B, 2>,
    pub neg: Tensor<B, 2>,
}

/// `nodes` (`[n_users + n_items, d]`, users first) split into `([n_users, d], [n_items, d])`.
pub fn split_nodes<B: Backend>(nodes: Tensor<B, 2>, n_users: usize) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let [n, d] = nodes.dims();
    (nodes.clone().slice([0..n_users, 0..d]), nodes.slice([n_users..n, 0..d]))
}

/// Rows of `nodes` (`[n_users + n_items, d]`, users first) for the batch's users and items.
pub fn pick<B: Backend>(nodes: &Tensor<B, 2>, n_users: usize, batch: &Triples<B>) -> Picked<B> {
    let (users, items) = split_nodes(nodes.clone(), n_users);
    Picked {
        anchor: users.select(0, batch.users.clone()),
        pos: items.clone().select(0, batch.pos.clone()),
        neg: items.select(0, batch.neg.clone()),
    }
}

/// The mean training loss of one batch: BPR on the backbone's training view, its own
/// contrastive term (SGL, SimGCL), L2, and the RLMRec alignment term when configured. Random
/// draws (edge dropout, noise, node masks) come from `rng`.
pub fn batch_loss<B: AutodiffBackend>(
    model: &GraphCf<B>,
    settings: &Settings,
    graph: &Graph<B>,
    profiles: Option<&Profiles<B>>,
    batch: &Triples<B>,
    rng: &mut ChaCha8Rng,
) -> Tensor<B, 1> {
    let size = batch.size as f64;
    let mut ego = model.ego();
    // RLMRec-Gen replaces a random fraction of the nodes by the mask token before propagation.
    let mut masked = None;
    if let (Some(align), Some(a)) = (&model.align, &settings.align) {
        if a.method == AlignMethod::Gen {
            let (m, seeds) = align.mask_nodes(ego, a.mask_ratio, rng);
            ego = m;
            masked = Some(seeds);
        }
    }
    let (view, contrast) = match settings.backbone {
        Backbone::LightGcn => (lightgcn::training_view(graph, ego, settings, rng), None),
        Backbone::Gccf => (lightgcn::full_view(graph, ego, settings), None),
        // Without their contrastive term SGL and SimGCL train on the clean view alone.
        Backbone::Sgl | Backbone::SimGcl if settings.cl_weight == 0.0 => {
            (lightgcn::full_view(graph, ego, settings), None)
        }
        Backbone::Sgl => {
            let (view, cl) = sgl::views(graph, ego, settings, batch, rng);
            (view, Some(cl))
        }
        Backbone::SimGcl => {
            let (view, cl) = simgcl::views(graph, ego, settings, batch, rng);
            (view, Some(cl))
        }
    };
    let picked = pick(&view, graph.n_users, batch);
    let mut loss = bpr_sum(picked.anchor.clone(), picked.pos.clone(), picked.neg.clone()).div_scalar(size);
    if let Some(cl) = contrast {
        loss = loss + cl.mul_scalar(settings.cl_weight / size);
    }
    if settings.reg > 0.0 {
        let reg = match settings.variant {
            Variant::Reference => squared_norm(model),
            Variant::Paper => {
                let u = model.user.val().select(0, batch.users.clone());
                let p = model.item.val().select(0, batch.pos.clone());
                let n = model.item.val().select(0, batch.neg.clone());
                (u.square().sum() + p.square().sum() + n.square().sum()).mul_scalar(0.5 / size)
            }
        };
        loss = loss + reg.mul_scalar(settings.reg);
    }
    // A zero weight (the ablation baseline) skips the term's work; Gen's masking above stays.
    if let (Some(align), Some(a), Some(profiles)) = (&model.align, &settings.align, profiles) {
        if a.weight == 0.0 {
            return loss;
        }
        let term = match a.method {
            AlignMethod::Con => align
                .contrastive(profiles, &picked, batch, a.temperature)
                .div_scalar(size),
            AlignMethod::Gen => {
                let seeds = masked.expect("Gen drew its masked nodes above");
                align.reconstruction(&view, profiles, seeds, a.temperature)
            }
        };
        loss = loss + term.mul_scalar(a.weight);
    }
    loss
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_reference_configs() {
        let c = GraphCfConfig::default();
        let l = c.resolve(Backbone::LightGcn).unwrap();
        assert_eq!((l.dim, l.layers, l.keep_rate, l.reg), (32, 3, 0.8, 1e-6));
        assert_eq!(l.combine(), Combine::Sum);
        let g = c.resolve(Backbone::Gccf).unwrap();
        assert_eq!((g.layers, g.keep_rate, g.output_dim()), (2, 1.0, 96));
        let s = c.resolve(Backbone::SimGcl).unwrap();
        assert_eq!(
            (s.reg, s.keep_rate, s.noise_eps, s.cl_weight, s.cl_temperature),
            (1e-5, 1.0, 0.9, 0.1, 0.2)
        );
        let p = GraphCfConfig {
            variant: Variant::Paper,
            ..c.clone()
        }
        .resolve(Backbone::LightGcn)
        .unwrap();
        assert_eq!((p.keep_rate, p.reg, p.combine()), (1.0, 1e-4, Combine::Mean));
    }

    #[test]
    fn bad_settings_name_the_field() {
        let err = |c: GraphCfConfig, b| c.resolve(b).unwrap_err().to_string();
        assert!(err(
            GraphCfConfig {
                keep_rate: Some(0.0),
                ..Default::default()
            },
            Backbone::LightGcn
        )
        .contains("model.keep_rate"));
        assert!(err(
            GraphCfConfig {
                keep_rate: Some(0.5),
                ..Default::default()
            },
            Backbone::Gccf
        )
        .contains("does not drop edges"));
        assert!(err(
            GraphCfConfig {
                cl_weight: Some(0.5),
                ..Default::default()
            },
            Backbone::LightGcn
        )
        .contains("model.cl_weight"));
        assert!(err(
            GraphCfConfig {
                noise_eps: Some(0.5),
                ..Default::default()
            },
            Backbone::Sgl
        )
        .contains("model.noise_eps"));
        assert!(err(
            GraphCfConfig {
                reg: Some(f64::NAN),
                ..Default::default()
            },
            Backbone::Sgl
        )
        .contains("model.reg"));
        assert!(err(
            GraphCfConfig {
                dim: Some(0),
                ..Default::default()
            },
            Backbone::Sgl
        )
        .contains("model.dim"));
    }
}
