//! The `[train]` table: optimiser, schedule, early stopping.

use serde::{Deserialize, Serialize};

use crate::TrainError;

/// Learning-rate shape after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    Constant,
    /// Cosine decay to 0 over the remaining steps.
    Cosine,
    /// `lr · sqrt(w / (step + 1))` after `w` warm-up steps, steps counted from 0 (the Transformer
    /// / T5 schedule); with no warm-up, `lr / sqrt(step + 1)`.
    InverseSqrt,
    /// TIGER's: `lr` held (no ramp) for the `w` warm-up steps, then `lr · sqrt(w / (step + 1))`.
    HeldInverseSqrt,
}

/// The `[train]` table of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Maximum epochs (default 200).
    pub epochs: usize,
    /// Examples per step (default 128).
    pub batch_size: usize,
    /// Peak learning rate (default 1e-3).
    pub lr: f64,
    /// AdamW decoupled weight decay (default 0; Burn's own default is 1e-4).
    pub weight_decay: f64,
    /// AdamW epsilon (default 1e-8, PyTorch's; Burn's own default is 1e-5).
    pub eps: f64,
    /// Clip the global gradient norm to this value; 0 = off (default 1.0).
    pub grad_clip: f64,
    /// Warm-up steps (default 0): a linear ramp to `lr`, or `lr` held (`held_inverse_sqrt`).
    pub warmup_steps: usize,
    /// `constant` (default), `cosine` (decay to 0 over all steps), `inverse_sqrt` or
    /// `held_inverse_sqrt` (TIGER's: `lr` held through the warm-up, then inverse-sqrt decay).
    pub schedule: Schedule,
    /// Validate every this many epochs (default 1).
    pub eval_every: usize,
    /// Stop after this many validations without improvement (default 5).
    pub patience: usize,
    /// Validation metric for early stopping and model selection (default `ndcg@10`).
    pub metric: String,
    /// Validate during training on this many validation users, a fixed seeded sample (default 0:
    /// all). A budget knob for slow decoders; the reported valid/test metrics always use all users.
    pub valid_users: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 200,
            batch_size: 128,
            lr: 1e-3,
            weight_decay: 0.0,
            eps: 1e-8,
            grad_clip: 1.0,
            warmup_steps: 0,
            schedule: Schedule::Constant,
            eval_every: 1,
            patience: 5,
            metric: "ndcg@10".into(),
            valid_users: 0,
        }
    }
}

impl TrainConfig {
    /// Every field, with `train.metric` checked to be `recall`, `ndcg` or `mrr` at one of `ks`
    /// (the evaluation's cut-offs).
    pub fn validate(&self, ks: &[usize]) -> Result<(), TrainError> {
        self.validate_loop()?;
        let bad = |why: String| TrainError::config("train.metric", format!("`{}` {why}", self.metric));
        let (name, k) = self.metric.split_once('@').ok_or_else(|| bad("is not name@K".into()))?;
        let k: usize = k.parse().map_err(|_| bad("has a K that is not a number".into()))?;
        if !["recall", "ndcg", "mrr"].contains(&name) || !ks.contains(&k) {
            return Err(bad(format!("must be recall/ndcg/mrr at one of eval.ks {ks:?}")));
        }
        Ok(())
    }

    /// The fields the loop itself uses (everything but `metric`, which only the model's
    /// validation can interpret).
    pub fn validate_loop(&self) -> Result<(), TrainError> {
        for (field, value) in [
            ("train.epochs", self.epochs),
            ("train.batch_size", self.batch_size),
            ("train.eval_every", self.eval_every),
            ("train.patience", self.patience),
        ] {
            if value == 0 {
                return Err(TrainError::config(field, "must be positive"));
            }
        }
        // Written so NaN and infinity fail too.
        for (field, value) in [("train.lr", self.lr), ("train.eps", self.eps)] {
            if !value.is_finite() || value <= 0.0 {
                return Err(TrainError::config(
                    field,
                    format!("= {value} must be a positive number"),
                ));
            }
        }
        for (field, value, note) in [
            ("train.weight_decay", self.weight_decay, ""),
            ("train.grad_clip", self.grad_clip, " (0 = off)"),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(TrainError::config(
                    field,
                    format!("= {value} must be a number ≥ 0{note}"),
                ));
            }
        }
        Ok(())
    }

    /// Learning rate at optimisation step `step` (0-based) of `total`.
    pub fn lr_at(&self, step: usize, total: usize) -> f64 {
        if step < self.warmup_steps {
            if self.schedule == Schedule::HeldInverseSqrt {
                return self.lr;
            }
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                let span = total.saturating_sub(self.warmup_steps).max(1) as f64;
                let t = (step - self.warmup_steps) as f64 / span;
                self.lr * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
            }
            Schedule::InverseSqrt | Schedule::HeldInverseSqrt => {
                self.lr * (self.warmup_steps.max(1) as f64 / (step + 1) as f64).sqrt()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_by_hand() {
        let c = TrainConfig {
            lr: 1.0,
            warmup_steps: 2,
            schedule: Schedule::Cosine,
            ..TrainConfig::default()
        };
        assert_eq!(c.lr_at(0, 10), 0.5);
        assert_eq!(c.lr_at(1, 10), 1.0);
        assert!((c.lr_at(2, 10) - 1.0).abs() < 1e-12);
        assert!((c.lr_at(6, 10) - 0.5).abs() < 1e-12);
        let inv = TrainConfig {
            schedule: Schedule::InverseSqrt,
            ..c.clone()
        };
        // Warm-up to 1 at step 1, then sqrt(2 / (step + 1)): 1/2 at step 7.
        assert_eq!(inv.lr_at(1, 10), 1.0);
        assert!((inv.lr_at(7, 10) - 0.5).abs() < 1e-12);
        // TIGER's: held at lr through the warm-up (no ramp), then the same decay.
        let held = TrainConfig {
            schedule: Schedule::HeldInverseSqrt,
            ..c.clone()
        };
        assert_eq!(held.lr_at(0, 10), 1.0);
        assert_eq!(held.lr_at(1, 10), 1.0);
        assert!((held.lr_at(7, 10) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn checks_name_the_field() {
        let ks = [5, 10];
        let err = |c: TrainConfig| c.validate(&ks).unwrap_err().to_string();
        let metric = TrainConfig {
            metric: "ndcg@7".into(),
            ..TrainConfig::default()
        };
        assert_eq!(
            err(metric),
            "train.metric `ndcg@7` must be recall/ndcg/mrr at one of eval.ks [5, 10]"
        );
        assert!(err(TrainConfig {
            metric: "auc".into(),
            ..TrainConfig::default()
        })
        .contains("not name@K"));
        assert!(err(TrainConfig {
            lr: -1.0,
            ..TrainConfig::default()
        })
        .starts_with("train.lr = -1"));
        assert!(err(TrainConfig {
            eval_every: 0,
            ..TrainConfig::default()
        })
        .starts_with("train.eval_every must be positive"));
        assert!(err(TrainConfig {
            eps: f64::NAN,
            ..TrainConfig::default()
        })
        .starts_with("train.eps = NaN"));
        assert!(err(TrainConfig {
            grad_clip: f64::NAN,
            ..TrainConfig::default()
        })
        .starts_with("train.grad_clip = NaN"));
        assert!(err(TrainConfig {
            weight_decay: f64::INFINITY,
            ..TrainConfig::default()
        })
        .starts_with("train.weight_decay = inf"));
        assert!(err(TrainConfig {
            patience: 0,
            ..TrainConfig::default()
        })
        .starts_with("train.patience must be positive"));
        assert!(TrainConfig::default().validate(&ks).is_ok());
    }

    /// `#[serde(default)]` fills every missing field from `Default`, and the two agree.
    #[test]
    fn an_empty_table_is_the_default() {
        let parsed: TrainConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, TrainConfig::default());
        assert!(serde_json::from_str::<TrainConfig>(r#"{"momentum": 0.9}"#)
            .unwrap_err()
            .to_string()
            .contains("unknown field `momentum`"));
    }
}
