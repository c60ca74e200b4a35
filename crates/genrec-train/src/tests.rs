//! The loop on a one-weight regression: it learns, it is deterministic, a resumed run continues
//! exactly, and bad runs stop with the error that names the cause.

use std::path::Path;

use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::Rng;

use crate::*;

type B = Autodiff<Flex>;

#[derive(Module, Debug)]
struct Line<B: Backend> {
    layer: Linear<B>,
}

/// `y = 3x − 1` at 40 points in [−1, 1].
fn line_points() -> (Vec<f32>, Vec<f32>) {
    let x: Vec<f32> = (0..40).map(|i| i as f32 / 20.0 - 1.0).collect();
    let y = x.iter().map(|x| 3.0 * x - 1.0).collect();
    (x, y)
}

fn mse<B: Backend>(model: &Line<B>, x: &[f32], y: &[f32]) -> Tensor<B, 1> {
    let device = model.layer.weight.device();
    let n = x.len();
    let xs = Tensor::<B, 2>::from_data(TensorData::new(x.to_vec(), [n, 1]), &device);
    let ys = Tensor::<B, 2>::from_data(TensorData::new(y.to_vec(), [n, 1]), &device);
    (model.layer.forward(xs) - ys).powi_scalar(2).mean()
}

/// Trains the line with a random-jitter loss (so the loop's RNG matters) and `-mse` as validation.
fn fit(
    config: &TrainConfig,
    run: Run,
    model_config: &str,
    nan_at: Option<usize>,
) -> Result<Trained<Line<Flex>>, TrainError> {
    let device = Default::default();
    let model = Line::<B> {
        // Fixed weights: the backend RNG is shared by tests running in parallel.
        layer: LinearConfig::new(1, 1)
            .with_initializer(Initializer::Constant { value: 0.5 })
            .init(&device),
    };
    let (x, y) = line_points();
    let loss = |m: &Line<B>, batch: &[usize], rng: &mut rand_chacha::ChaCha8Rng| {
        let xb: Vec<f32> = batch.iter().map(|&i| x[i] + rng.random_range(-0.01..0.01)).collect();
        let yb: Vec<f32> = batch.iter().map(|&i| y[i]).collect();
        let l = mse(m, &xb, &yb);
        match nan_at {
            Some(i) if batch.contains(&i) => l * f32::NAN,
            _ => l,
        }
    };
    let validate = |m: &Line<Flex>| -> Result<f64, ValidationError> { Ok(-(mse(m, &x, &y).into_scalar() as f64)) };
    let task = Task {
        examples: x.len(),
        loss: &loss,
        validate: &validate,
        model_config: serde_json::json!({ "line": model_config }),
    };
    train_model(model, task, config, &device, run)
}

fn config(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 8,
        lr: 0.05,
        patience: 100,
        ..TrainConfig::default()
    }
}

fn with_dir(dir: &Path, resume: bool) -> Run<'_> {
    Run::new(1, Checkpoints { dir: Some(dir), resume }, |_| {})
}

/// What a run must reproduce: everything but the wall-clock seconds.
fn points(t: &Trained<Line<Flex>>) -> Vec<(usize, usize, f64, Option<f64>)> {
    t.curves.iter().map(|p| (p.epoch, p.step, p.loss, p.valid)).collect()
}

#[test]
fn learns_and_is_deterministic() {
    let a = fit(&config(30), Run::quiet(1), "a", None).unwrap();
    let b = fit(&config(30), Run::quiet(1), "a", None).unwrap();
    let first = a.curves[0].valid.unwrap();
    assert!(
        a.best_valid > 0.5 * first && a.best_valid > -0.05,
        "{first} → {}",
        a.best_valid
    );
    assert_eq!(points(&a), points(&b), "same seed, same curves");
    let c = fit(&config(30), Run::quiet(2), "a", None).unwrap();
    assert_ne!(
        a.curves[0].loss, c.curves[0].loss,
        "another seed shuffles and jitters differently"
    );
}

#[test]
fn resume_continues_exactly() {
    let straight = tempfile::tempdir().unwrap();
    let whole = fit(&config(4), with_dir(straight.path(), false), "a", None).unwrap();
    assert!(straight.path().join("model.safetensors").exists());
    let parts = tempfile::tempdir().unwrap();
    fit(&config(2), with_dir(parts.path(), false), "a", None).unwrap();
    let resumed = fit(&config(4), with_dir(parts.path(), true), "a", None).unwrap();
    assert_eq!(points(&whole), points(&resumed));
    assert!(parts.path().join("resume/state.json").exists());
    assert!(!parts.path().join("resume.tmp").exists());
    // Another model config or batch size cannot continue these weights.
    let err = fit(&config(4), with_dir(parts.path(), true), "b", None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("[model] table differs"), "{err}");
    let bigger = TrainConfig {
        batch_size: 16,
        ..config(4)
    };
    let err = fit(&bigger, with_dir(parts.path(), true), "a", None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("train.batch_size = 16 differs"), "{err}");
}

#[test]
fn bad_runs_stop_with_a_named_cause() {
    let err = fit(&config(3), Run::quiet(1), "a", Some(5)).err().unwrap();
    assert!(matches!(err, TrainError::NonFinite { epoch: 1, .. }), "{err}");
    assert!(err.to_string().contains("loss became NaN at epoch 1"), "{err}");
    let err = fit(&TrainConfig { lr: 0.0, ..config(3) }, Run::quiet(1), "a", None)
        .err()
        .unwrap();
    assert!(err.to_string().starts_with("train.lr = 0 must"), "{err}");
    let missing = tempfile::tempdir().unwrap();
    let err = fit(&config(3), with_dir(missing.path(), true), "a", None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with("resuming from") && err.contains("No such file"),
        "{err}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// A crash between the two renames of a save leaves `resume.old/` (the previous epoch) and a
/// complete `resume.tmp/` (the new one) but no `resume/`: resuming continues from the new one,
/// exactly as an uninterrupted run.
#[test]
fn resume_recovers_from_the_rename_window() {
    let points_of = |t: &Trained<Line<Flex>>| points(t);
    let straight = tempfile::tempdir().unwrap();
    let whole = fit(&config(4), with_dir(straight.path(), false), "a", None).unwrap();
    let parts = tempfile::tempdir().unwrap();
    let d = parts.path();
    fit(&config(2), with_dir(d, false), "a", None).unwrap();
    copy_dir(&d.join("resume"), &d.join("epoch2"));
    fit(&config(3), with_dir(d, true), "a", None).unwrap();
    std::fs::rename(d.join("resume"), d.join("resume.tmp")).unwrap();
    std::fs::rename(d.join("epoch2"), d.join("resume.old")).unwrap();
    assert_eq!(resume_state_dir(d).unwrap(), Some(d.join("resume")));
    assert!(!d.join("resume.tmp").exists());
    let resumed = fit(&config(4), with_dir(d, true), "a", None).unwrap();
    assert_eq!(points_of(&whole), points_of(&resumed));
    // Nothing saved at all: no state to resume from.
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(resume_state_dir(empty.path()).unwrap(), None);
}

/// A state that this loop cannot have written is refused, naming the file.
#[test]
fn resume_refuses_an_inconsistent_state() {
    let dir = tempfile::tempdir().unwrap();
    fit(&config(2), with_dir(dir.path(), false), "a", None).unwrap();
    let path = dir.path().join("resume/state.json");
    let original = std::fs::read_to_string(&path).unwrap();
    let mut state: serde_json::Value = serde_json::from_str(&original).unwrap();
    state["order"][0] = state["order"][1].clone();
    std::fs::write(&path, state.to_string()).unwrap();
    let err = fit(&config(3), with_dir(dir.path(), true), "a", None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("state.json") && err.contains("not a permutation"), "{err}");
    let mut state: serde_json::Value = serde_json::from_str(&original).unwrap();
    state["step"] = serde_json::json!(u64::MAX);
    std::fs::write(&path, state.to_string()).unwrap();
    let err = fit(&config(3), with_dir(dir.path(), true), "a", None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("`step`"), "{err}");
    std::fs::write(&path, "{ torn").unwrap();
    let err = fit(&config(3), with_dir(dir.path(), true), "a", None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("resume/state.json"), "{err}");
    // A record file changed after it was saved fails its checksum, naming the file; a state
    // without checksums (written before they existed) still resumes.
    std::fs::write(&path, &original).unwrap();
    let state: serde_json::Value = serde_json::from_str(&original).unwrap();
    assert_eq!(
        state["checksums"].as_object().unwrap().len(),
        3,
        "model.bin, optim.bin and best.bin"
    );
    let model = dir.path().join("resume/model.bin");
    let saved = std::fs::read(&model).unwrap();
    let mut damaged = saved.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    std::fs::write(&model, &damaged).unwrap();
    let err = fit(&config(3), with_dir(dir.path(), true), "a", None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("resume/model.bin") && err.contains("checksum"), "{err}");
    std::fs::write(&model, &saved).unwrap();
    let mut state: serde_json::Value = serde_json::from_str(&original).unwrap();
    state.as_object_mut().unwrap().remove("checksums");
    std::fs::write(&path, state.to_string()).unwrap();
    fit(&config(3), with_dir(dir.path(), true), "a", None).unwrap();
}

/// Resume-state fuzzing: 1,000 seeded mutations of a real `state.json` (byte flips, truncations,
/// inserted digits, signs, brackets and huge numbers); resuming from each must fail with an error
/// naming `state.json` or resume correctly — never panic.
#[test]
fn resume_survives_mutated_states() {
    use rand::SeedableRng;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    let dir = tempfile::tempdir().unwrap();
    fit(&config(2), with_dir(dir.path(), false), "a", None).unwrap();
    let resume = dir.path().join("resume");
    let pristine: Vec<(std::path::PathBuf, Vec<u8>)> = std::fs::read_dir(&resume)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    let state = std::fs::read(resume.join("state.json")).unwrap();
    let words: [&[u8]; 8] = [
        b"9",
        b"-",
        b"[",
        b"]",
        b"18446744073709551616",
        b"1e400",
        b"null",
        b"\"",
    ];
    let mut panics = Vec::new();
    for case in 0..1_000u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(case);
        let mut bytes = state.clone();
        for _ in 0..rng.random_range(1..=3) {
            let at = rng.random_range(0..=bytes.len());
            match rng.random_range(0..3) {
                0 if at < bytes.len() => bytes[at] ^= 1 << rng.random_range(0..8),
                1 => bytes.truncate(at.max(bytes.len() / 2)),
                _ => {
                    let w = words[rng.random_range(0..words.len())];
                    bytes.splice(at..at, w.iter().copied());
                }
            }
        }
        let _ = std::fs::remove_dir_all(&resume);
        std::fs::create_dir_all(&resume).unwrap();
        for (p, b) in &pristine {
            std::fs::write(p, b).unwrap();
        }
        std::fs::write(resume.join("state.json"), &bytes).unwrap();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            fit(&config(3), with_dir(dir.path(), true), "a", None)
        }));
        match outcome {
            Err(_) => panics.push(case),
            Ok(Err(e)) => {
                let e = e.to_string();
                assert!(
                    e.contains("resume/"),
                    "case {case}: the error names no resume file: {e}"
                );
            }
            Ok(Ok(_)) => {}
        }
    }
    assert!(
        panics.is_empty(),
        "resume panicked on mutated states (cases {panics:?})"
    );
}
