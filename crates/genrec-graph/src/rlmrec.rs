//! RLMRec (Ren et al., "Representation Learning with Large Language Models for Recommendation",
//! WWW 2024): align a graph CF model's embeddings with semantic embeddings of user and item
//! profiles, as an extra loss on any backbone.
//!
//! - **Con** (`*_plus.py` in the reference): an MLP `d_s → (d_s + d)/2 → d` (LeakyReLU 0.01)
//!   projects the profiles; InfoNCE with the CF embedding as anchor and its projected profile as
//!   positive — users against all users' projected profiles, positives and negatives each
//!   against the batch's own. Summed, divided by the batch size, times `weight`.
//! - **Gen** (`*_gene.py`): a fraction `mask_ratio` of all user + item nodes is replaced by a
//!   learnable mask token (zeros at start) before propagation; an MLP `d → (d_s + d)/2 → d_s`
//!   maps the masked nodes' final embeddings back, and an InfoNCE over the masked nodes
//!   (`ssl_con_loss`, a mean) scores the reconstruction of their profiles, times `weight`.
//!
//! Defaults are the reference's Amazon-book LightGCN settings: Con weight 1e-2, τ 0.2; Gen
//! weight 0.1, τ 0.5, mask ratio 0.15. `weight = 0` trains the plain backbone with the same
//! settings — the baseline the alignment gain is measured against.

use crate::GraphError;
use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::activation::leaky_relu;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use rand::seq::index::sample;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::losses::{info_nce_sum, reconstruction_nce};
use crate::model::{param, xavier, Picked, Triples};

/// Contrastive or generative alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlignMethod {
    Con,
    Gen,
}

/// The `[model.align]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlignConfig {
    /// `con` or `gen`.
    pub method: AlignMethod,
    /// Weight of the alignment loss (default 1e-2 for Con, 0.1 for Gen; 0 = the plain backbone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// InfoNCE temperature (default 0.2 for Con, 0.5 for Gen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Gen only: fraction of all nodes masked per batch (default 0.15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_ratio: Option<f64>,
}

/// [`AlignConfig`] with its defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlignSettings {
    pub method: AlignMethod,
    pub weight: f64,
    pub temperature: f64,
    pub mask_ratio: f64,
}

impl AlignConfig {
    pub fn resolve(&self) -> Result<AlignSettings, GraphError> {
        let con = self.method == AlignMethod::Con;
        if con && self.mask_ratio.is_some() {
            return Err(GraphError::Config(
                "model.align.mask_ratio: only method = \"gen\" masks nodes".into(),
            ));
        }
        let s = AlignSettings {
            method: self.method,
            weight: self.weight.unwrap_or(if con { 1e-2 } else { 0.1 }),
            temperature: self.temperature.unwrap_or(if con { 0.2 } else { 0.5 }),
            mask_ratio: self.mask_ratio.unwrap_or(0.15),
        };
        if !(s.weight >= 0.0 && s.weight.is_finite()) {
            return Err(GraphError::Config(format!(
                "model.align.weight = {} must be a finite number ≥ 0",
                s.weight
            )));
        }
        if !(s.temperature > 0.0 && s.temperature.is_finite()) {
            return Err(GraphError::Config(format!(
                "model.align.temperature = {} must be positive",
                s.temperature
            )));
        }
        if !(s.mask_ratio > 0.0 && s.mask_ratio < 1.0) {
            return Err(GraphError::Config(format!(
                "model.align.mask_ratio = {} must be in (0, 1)",
                s.mask_ratio
            )));
        }
        Ok(s)
    }
}

/// Semantic profile vectors on the device, one row per user / item.
#[derive(Debug, Clone)]
pub struct Profiles<B: Backend> {
    /// `[n_users, d_s]`
    pub user: Tensor<B, 2>,
    /// `[n_items, d_s]`
    pub item: Tensor<B, 2>,
}

impl<B: Backend> Profiles<B> {
    /// Row-major host matrices of width `dim`; errors name which side has the wrong row count.
    pub fn new(
        user: Vec<f32>,
        item: Vec<f32>,
        dim: usize,
        n_users: usize,
        n_items: usize,
        device: &B::Device,
    ) -> Result<Self, GraphError> {
        for (side, values, rows) in [("user", &user, n_users), ("item", &item, n_items)] {
            if dim == 0 || values.len() != rows * dim {
                return Err(GraphError::Profiles(format!(
                    "{side} profiles: {} values are not {rows} rows of width {dim}",
                    values.len()
                )));
            }
            if let Some(k) = values.iter().position(|v| !v.is_finite()) {
                return Err(GraphError::Profiles(format!(
                    "{side} profiles: row {} holds a non-finite value",
                    k / dim
                )));
            }
        }
        Ok(Profiles {
            user: Tensor::from_data(TensorData::new(user, [n_users, dim]), device),
            item: Tensor::from_data(TensorData::new(item, [n_items, dim]), device),
        })
    }

    pub fn dim(&self) -> usize {
        self.user.dims()[1]
    }
}

/// The alignment head: a two-layer MLP and, for Gen, the mask token.
#[derive(Module, Debug)]
pub struct Align<B: Backend> {
    first: Linear<B>,
    second: Linear<B>,
    /// `[1, dim]`, Gen only.
    mask_token: Option<Param<Tensor<B, 2>>>,
}

/// A linear layer with the reference's initialisation: Xavier-uniform weights, PyTorch's default
/// `U(±1/√in)` bias.
fn linear<B: Backend>(d_in: usize, d_out: usize, rng: &mut ChaCha8Rng, device: &B::Device) -> Linear<B> {
    // Burn stores the weight as [in, out]; the Xavier bound is symmetric in the fans.
    let weight = param(xavier(d_in, d_out, rng), [d_in, d_out], device);
    let bound = 1.0 / (d_in as f64).sqrt();
    let bias = (0..d_out).map(|_| rng.random_range(-bound..bound) as f32).collect();
    Linear {
        weight,
        bias: Some(param(bias, [d_out], device)),
    }
}

impl<B: Backend> Align<B> {
    /// `profile_dim` = `d_s`; `out_dim` = the backbone's final width; `dim` = its table width.
    pub fn new(
        settings: &AlignSettings,
        profile_dim: usize,
        out_dim: usize,
        dim: usize,
        rng: &mut ChaCha8Rng,
        device: &B::Device,
    ) -> Self {
        let hidden = (profile_dim + out_dim) / 2;
        let (d_in, d_out) = match settings.method {
            AlignMethod::Con => (profile_dim, out_dim),
            AlignMethod::Gen => (out_dim, profile_dim),
        };
        let first = linear(d_in, hidden, rng, device);
        let second = linear(hidden, d_out, rng, device);
        let mask_token = (settings.method == AlignMethod::Gen).then(|| param(vec![0.0; dim], [1, dim], device));
        Align {
            first,
            second,
            mask_token,
        }
    }

    /// # Shapes
    /// - `x`: `[n, d_in]`, output `[n, d_out]`
    pub fn mlp(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.second.forward(leaky_relu(self.first.forward(x), 0.01))
    }

    /// Replaces `max(1, ⌊n · ratio⌋)` distinct random rows of `ego` by the mask token; returns the
    /// masked embeddings and the masked row ids.
    ///
    /// # Shapes
    /// - `ego`: `[n_nodes, dim]`, output `([n_nodes, dim], [masked])`
    pub fn mask_nodes(&self, ego: Tensor<B, 2>, ratio: f64, rng: &mut ChaCha8Rng) -> (Tensor<B, 2>, Tensor<B, 1, Int>) {
        let [n, dim] = ego.dims();
        let count = ((n as f64 * ratio) as usize).max(1);
        let seeds: Vec<i64> = sample(rng, n, count).into_iter().map(|i| i as i64).collect();
        let mut keep = vec![1.0f32; n];
        for &s in &seeds {
            keep[s as usize] = 0.0;
        }
        let device = ego.device();
        let keep = Tensor::<B, 2>::from_data(TensorData::new(keep, [n, 1]), &device);
        let token = self.mask_token.as_ref().expect("Gen has a mask token").val();
        let masked = ego * keep.clone() + token.expand([n, dim]) * (keep.neg() + 1.0);
        (masked, Tensor::from_data(TensorData::new(seeds, [count]), &device))
    }
}

/// The alignment losses use the fused log-sum-exp, which needs the autodiff backend.
impl<B: AutodiffBackend> Align<B> {
    /// Con's summed InfoNCE (the caller divides by the batch size and weights it).
    pub fn contrastive(
        &self,
        profiles: &Profiles<B>,
        picked: &Picked<B>,
        batch: &Triples<B>,
        temperature: f64,
    ) -> Tensor<B, 1> {
        let users = self.mlp(profiles.user.clone());
        let anchor_profiles = users.clone().select(0, batch.users.clone());
        let pos_profiles = self.mlp(profiles.item.clone().select(0, batch.pos.clone()));
        let neg_profiles = self.mlp(profiles.item.clone().select(0, batch.neg.clone()));
        info_nce_sum(picked.anchor.clone(), anchor_profiles, users, temperature)
            + info_nce_sum(picked.pos.clone(), pos_profiles.clone(), pos_profiles, temperature)
            + info_nce_sum(picked.neg.clone(), neg_profiles.clone(), neg_profiles, temperature)
    }

    /// Gen's reconstruction loss of the masked nodes' profiles from their final embeddings.
    ///
    /// # Shapes
    /// - `nodes`: `[n_nodes, out_dim]` (users first); `seeds`: `[masked]`
    pub fn reconstruction(
        &self,
        nodes: &Tensor<B, 2>,
        profiles: &Profiles<B>,
        seeds: Tensor<B, 1, Int>,
        temperature: f64,
    ) -> Tensor<B, 1> {
        let all = Tensor::cat(vec![profiles.user.clone(), profiles.item.clone()], 0);
        let target = all.select(0, seeds.clone());
        let recon = self.mlp(nodes.clone().select(0, seeds));
        reconstruction_nce(recon, target, temperature)
    }
}
