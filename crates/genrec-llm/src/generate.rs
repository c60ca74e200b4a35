//! Generation with SmolLM2 (any [`Llama`]) through genrec-decode's shared beam search:
//! [`LlamaSteps`] is the model as a [`StepDecoder`] over a batch of prompts — left-padded into one
//! batch, padding masked, rotary positions counted from each prompt's first real token, the KV
//! cache following the beams — so several prompts are searched at once, each under its own
//! [`Constraint`] (free text up to a stop token, or an item trie for P5 / LC-Rec).

use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use genrec_decode::{beam_search, Constraint, Hypothesis, StepDecoder};

use crate::llama::{KvCache, Llama};

/// A batch of prompts being continued by `model`.
pub struct LlamaSteps<'a, B: Backend> {
    model: &'a Llama<B>,
    prompts: Vec<Vec<u32>>,
    cache: KvCache<B>,
    /// Per prompt: true at its left padding (the prompt width), the same for all its rows.
    pad: Vec<Vec<bool>>,
    /// Tokens fed after the prompts so far.
    generated: usize,
    /// Rows per prompt in the current layout.
    width: usize,
}

impl<'a, B: Backend> LlamaSteps<'a, B> {
    /// # Panics
    /// If a prompt is empty (there is no position to predict from).
    pub fn new(model: &'a Llama<B>, prompts: &[Vec<u32>]) -> Self {
        assert!(
            prompts.iter().all(|p| !p.is_empty()),
            "every prompt needs at least one token"
        );
        let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
        LlamaSteps {
            model,
            pad: prompts
                .iter()
                .map(|p| (0..width).map(|j| j < width - p.len()).collect())
                .collect(),
            prompts: prompts.to_vec(),
            cache: KvCache::new(model.n_layers()),
            generated: 0,
            width: 1,
        }
    }

    /// Runs `tokens` (`[rows, t]`, each prompt's rows consecutive) at `positions` and returns the
    /// log-probabilities after each row's last token, `[rows * vocab]`.
    fn next(&mut self, tokens: Vec<i64>, t: usize, positions: Vec<Vec<usize>>) -> Vec<f32> {
        let device = self.model.devices()[0].clone();
        let rows = positions.len();
        let per_prompt = rows / self.prompts.len();
        let mask: Vec<bool> = (0..rows)
            .flat_map(|r| {
                let pad = &self.pad[r / per_prompt];
                pad.iter().copied().chain(std::iter::repeat_n(false, self.generated))
            })
            .collect();
        let total = mask.len() / rows;
        let mask = Tensor::<B, 2, Bool>::from_data(TensorData::new(mask, [rows, total]), &device);
        let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(tokens, [rows, t]), &device);
        let hidden = self.model.hidden(tokens, &positions, Some(mask), &mut self.cache);
        let d = hidden.dims()[2];
        let last = hidden.slice([0..rows, t - 1..t, 0..d]);
        log_softmax(self.model.logits(last), 2)
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("f32 log-probabilities")
    }
}

impl<B: Backend> StepDecoder for LlamaSteps<'_, B> {
    fn vocab(&self) -> usize {
        self.model.vocab_size()
    }

    fn start(&mut self) -> Vec<f32> {
        let width = self.pad[0].len();
        let mut ids = Vec::with_capacity(self.prompts.len() * width);
        let mut positions = Vec::with_capacity(self.prompts.len());
        for p in &self.prompts {
            let missing = width - p.len();
            ids.extend(std::iter::repeat_n(0i64, missing).chain(p.iter().map(|&t| t as i64)));
            positions.push((0..width).map(|j| j.saturating_sub(missing)).collect());
        }
        self.cache = KvCache::new(self.model.n_layers());
        self.generated = 0;
        self.width = 1;
        self.next(ids, width, positions)
    }

    fn step(&mut self, parents: &[usize], tokens: &[u32], width: usize) -> Vec<f32> {
        let rows: Vec<usize> = parents
            .iter()
            .enumerate()
            .map(|(r, &slot)| (r / width) * self.width + slot)
            .collect();
        self.cache.reorder(&rows);
        self.generated += 1;
        self.width = width;
        let positions = (0..parents.len())
            .map(|r| vec![self.prompts[r / width].len() + self.generated - 1])
            .collect();
        self.next(tokens.iter().map(|&t| t as i64).collect(), 1, positions)
    }
}

impl<B: Backend> Llama<B> {
    /// Beam search over several prompts at once, prompt `i` under `constraints[i]`: up to `beam`
    /// finished continuations per prompt with their summed log-probabilities, best first (no
    /// length penalty). Empty prompts get no continuation.
    ///
    /// # Panics
    /// If `constraints` and `prompts` differ in length, or `beam` is 0.
    pub fn generate_beams(
        &self,
        prompts: &[Vec<u32>],
        constraints: &[Constraint],
        beam: usize,
    ) -> Vec<Vec<Hypothesis>> {
        assert_eq!(prompts.len(), constraints.len(), "one constraint per prompt");
        let (kept, kept_constraints): (Vec<Vec<u32>>, Vec<Constraint>) = prompts
            .iter()
            .zip(constraints)
            .filter(|(p, _)| !p.is_empty())
            .map(|(p, c)| (p.clone(), *c))
            .unzip();
        let mut found = if kept.is_empty() {
            Vec::new()
        } else {
            beam_search(&mut LlamaSteps::new(self, &kept), &kept_constraints, beam)
        }
        .into_iter();
        prompts
            .iter()
            .map(|p| {
                if p.is_empty() {
                    Vec::new()
                } else {
                    found.next().unwrap_or_default()
                }
            })
            .collect()
    }

    /// Beam search over one prompt: up to `beams` continuations of at most `max_new` tokens
    /// with their summed log-probabilities, best first. A beam ends at `stop` (excluded from its
    /// tokens, included in its score). `beams = 1` is greedy decoding.
    pub fn generate_beam(
        &self,
        prompt: &[u32],
        beams: usize,
        max_new: usize,
        stop: Option<u32>,
    ) -> Vec<(Vec<u32>, f32)> {
        let free = Constraint::Free { stop, max_len: max_new };
        self.generate_beams(&[prompt.to_vec()], &[free], beams.max(1))
            .pop()
            .unwrap_or_default()
            .into_iter()
            .map(|h| (h.tokens, h.score))
            .collect()
    }

    /// Greedy continuation of several prompts at once (one batch): the same tokens as
    /// [`generate_greedy`](Self::generate_greedy) on each prompt alone. A row stops at `stop`
    /// (not included) or after `max_new` tokens.
    pub fn generate_greedy_batch(&self, prompts: &[Vec<u32>], max_new: usize, stop: Option<u32>) -> Vec<Vec<u32>> {
        // Greedy decoding is a beam of one.
        let free = Constraint::Free { stop, max_len: max_new };
        self.generate_beams(prompts, &vec![free; prompts.len()], 1)
            .into_iter()
            .map(|mut found| found.pop().map(|h| h.tokens).unwrap_or_default())
            .collect()
    }

    /// Greedy continuation of one prompt with the KV cache: at most `max_new` tokens, stopping
    /// at `stop` (not included).
    pub fn generate_greedy(&self, prompt: &[u32], max_new: usize, stop: Option<u32>) -> Vec<u32> {
        self.generate_greedy_batch(&[prompt.to_vec()], max_new, stop)
            .pop()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llama::RopeStyle;
    use crate::tokenizer::Tokenizer;
    use burn::backend::Flex;

    type B = Flex;

    /// The real checkpoint and its tokenizer; `None` (the test passes vacuously, with a message
    /// from the loader) only outside CI when it cannot be fetched.
    fn smollm2_or_skip<B: Backend>() -> Option<(Llama<B>, Tokenizer)> {
        let f = crate::smollm2_for_tests()?;
        let (model, _) = Llama::<B>::from_gguf(f, RopeStyle::SplitHalf, &Default::default()).unwrap();
        Some((model, Tokenizer::from_gguf(f).unwrap()))
    }

    /// The output of the single-prompt beam search genrec-llm had before the shared decoder
    /// (commit ffa86a1, `generate_beam(ids, beams, 6, Some(eos))`), best first: the shared search
    /// must find the same sequences with the same scores.
    /// (prompt, beams, [(tokens, score)] best first)
    type Expected = (&'static str, usize, &'static [(&'static [u32], f32)]);

    const BEFORE: [Expected; 6] = [
        (
            "The capital of France is",
            1,
            &[(&[7042, 30, 198, 198, 504, 2988], -7.6722775)],
        ),
        (
            "The capital of France is",
            3,
            &[
                (&[7042, 30, 378, 3575, 282, 4649], -5.6847486),
                (&[7042, 30, 378, 3575, 282, 260], -6.430341),
                (&[7042, 30, 198, 29, 378, 1797], -6.4360695),
            ],
        ),
        (
            "The capital of France is",
            5,
            &[
                (&[7042, 30, 7042, 314, 260, 3995], -5.640953),
                (&[7042, 30, 378, 3575, 282, 4649], -5.6847486),
                (&[7042, 30, 7042, 314, 253, 2240], -5.821361),
                (&[7042, 30, 378, 3575, 282, 260], -6.430341),
                (&[7042, 30, 198, 29, 378, 1797], -6.4360695),
            ],
        ),
        (
            "My favourite movie is",
            5,
            &[
                (&[3105, 9901, 12208, 42, 378, 9618], -6.968517),
                (&[3105, 9901, 12208, 42, 378, 8114], -7.016826),
                (&[3105, 9901, 12208, 42, 378, 25500], -7.2284646),
                (&[3105, 9901, 12208, 30, 198, 198], -8.17473),
                (&[3105, 476, 504, 25343, 18, 816], -8.469582),
            ],
        ),
        (
            "A good book to read on holiday is",
            3,
            &[
                (&[253, 1863, 338, 553, 3878, 288], -9.887672),
                (&[253, 1863, 338, 553, 3878, 564], -10.412542),
                (&[253, 1863, 338, 553, 719, 4180], -10.924157),
            ],
        ),
        (
            "A good book to read on holiday is",
            5,
            &[
                (&[253, 1251, 29, 13671, 327, 750], -8.497428),
                (&[253, 1251, 29, 13671, 327, 4325], -8.776635),
                (&[253, 1251, 29, 1040, 327, 4325], -9.1955595),
                (&[253, 1251, 29, 1040, 327, 750], -9.3650675),
                (&[253, 1251, 29, 13671, 30, 198], -9.819418),
            ],
        ),
    ];

    #[test]
    fn shared_beam_search_matches_the_previous_one_and_batches_exactly() {
        let Some((model, tokenizer)) = smollm2_or_skip::<B>() else {
            return;
        };
        let eos = Some(tokenizer.eos_id());
        for (prompt, beams, want) in BEFORE {
            let ids = tokenizer.encode(prompt).unwrap();
            let got = model.generate_beam(&ids, beams, 6, eos);
            assert_eq!(got.len(), want.len(), "{prompt} × {beams}");
            for ((tokens, score), (want_tokens, want_score)) in got.iter().zip(want) {
                assert_eq!(tokens.as_slice(), *want_tokens, "{prompt} × {beams}");
                assert!(
                    (score - want_score).abs() < 1e-3,
                    "{prompt} × {beams}: {score} vs {want_score}"
                );
            }
        }
        // Three prompts of different lengths in one batch: the same beams as one at a time.
        let prompts: Vec<Vec<u32>> = [
            "The capital of France is",
            "My favourite movie is",
            "A good book to read on holiday is",
        ]
        .iter()
        .map(|p| tokenizer.encode(p).unwrap())
        .collect();
        let free = Constraint::Free { stop: eos, max_len: 6 };
        let batched = model.generate_beams(&prompts, &[free; 3], 3);
        for (p, got) in prompts.iter().zip(&batched) {
            let alone = model.generate_beams(std::slice::from_ref(p), &[free], 3).pop().unwrap();
            assert_eq!(got.len(), alone.len());
            for (a, b) in got.iter().zip(&alone) {
                assert_eq!(a.tokens, b.tokens, "prompt {p:?}");
                assert!((a.score - b.score).abs() < 1e-3, "{} vs {}", a.score, b.score);
            }
        }
    }

    /// A per-prompt constraint: one prompt free, the other restricted to a two-item trie of
    /// token sequences (what P5 / LC-Rec decode over).
    #[test]
    fn per_prompt_constraints() {
        let Some((model, tokenizer)) = smollm2_or_skip::<B>() else {
            return;
        };
        let items: Vec<Vec<u32>> = vec![vec![3105, 476], vec![253, 1863, 338]];
        let trie = Trie::new(&items);
        let prompts = vec![
            tokenizer.encode("My favourite movie is").unwrap(),
            tokenizer.encode("The capital of France is").unwrap(),
        ];
        let free = Constraint::Free { stop: None, max_len: 2 };
        let found = model.generate_beams(&prompts, &[Constraint::Tree(&trie), free], 4);
        let mut got: Vec<Vec<u32>> = found[0].iter().map(|h| h.tokens.clone()).collect();
        got.sort();
        let mut want = items.clone();
        want.sort();
        assert_eq!(got, want, "only the trie's sequences, each once");
        assert!(found[0][0].score >= found[0][1].score);
        assert_eq!(
            found[1][0].tokens,
            vec![7042, 30],
            "the free prompt is unaffected: \" Paris.\""
        );
    }

    /// A minimal prefix tree over explicit token sequences (genrec-tokenize's trie is the real
    /// one; genrec-llm does not depend on it).
    struct Trie {
        paths: Vec<Vec<u32>>,
        children: Vec<Vec<u32>>,
    }

    impl Trie {
        fn new(items: &[Vec<u32>]) -> Self {
            let mut paths = vec![Vec::new()];
            for item in items {
                for len in 1..=item.len() {
                    if !paths.contains(&item[..len].to_vec()) {
                        paths.push(item[..len].to_vec());
                    }
                }
            }
            let children = paths
                .iter()
                .map(|p| {
                    let mut c: Vec<u32> = paths
                        .iter()
                        .filter(|q| q.len() == p.len() + 1 && q.starts_with(p))
                        .map(|q| q[p.len()])
                        .collect();
                    c.sort();
                    c
                })
                .collect();
            Trie { paths, children }
        }
    }

    impl genrec_decode::PrefixTree for Trie {
        fn root(&self) -> u32 {
            0
        }
        fn children(&self, node: u32) -> &[u32] {
            &self.children[node as usize]
        }
        fn child(&self, node: u32, token: u32) -> Option<u32> {
            let mut path = self.paths[node as usize].clone();
            path.push(token);
            self.paths.iter().position(|p| *p == path).map(|i| i as u32)
        }
        fn is_leaf(&self, node: u32) -> bool {
            self.children[node as usize].is_empty()
        }
    }
}
