//! # genrec-decode
//!
//! One beam search for every generative model: TIGER's T5 and SmolLM2 (LLaMA) today, the
//! models that generate item codes next (P5, LC-Rec). A model plugs in through [`StepDecoder`]
//! (its KV caches stay inside it); what may be generated is a [`Constraint`] per sequence: any
//! token up to a stop token, one token range per position (unconstrained semantic IDs), or the
//! paths of a [`PrefixTree`] (trie-constrained item IDs). Greedy decoding is a beam of 1.
//!
//! The search is exact given its beam (no length penalty, no sampling) and deterministic: ties
//! are broken by lower beam, then lower token. Several sequences ("groups": users, prompts) are
//! searched together, each with `beam` slots, so the model sees one rectangular batch of
//! `groups × beam` rows per step.
//!
//! Per step and group: every allowed extension of every live hypothesis is ranked by summed
//! log-probability; walking down that ranking, an extension that ends its sequence joins the
//! group's finished list (which keeps the best `beam`), any other becomes a live hypothesis,
//! until `beam` are live. A group stops when nothing is live, or when its `beam` finished
//! sequences all score above its best live one (log-probabilities only fall as sequences grow).
//! This is the finishing rule of Hugging Face's beam search: finished sequences do not take the
//! slots of live ones.
//!
//! Lives below the model crates (it needs nothing from them) so both genrec-llm and
//! genrec-generative decode through it.

use std::ops::Range;

/// A model that extends a batch of sequences one token at a time.
///
/// Rows are laid out group-major: row `g * width + slot`. The first call is [`start`] (one row
/// per group, `width = 1`), every later call [`step`] (`width = beam`).
///
/// [`start`]: StepDecoder::start
/// [`step`]: StepDecoder::step
pub trait StepDecoder {
    /// Vocabulary size: the length of each row of log-probabilities.
    fn vocab(&self) -> usize;

    /// Log-probabilities of the first generated token of each group.
    ///
    /// # Shapes
    /// - output: `[groups * vocab]`, row-major
    fn start(&mut self) -> Vec<f32>;

    /// Row `g * width + s` of the new layout continues row `g * previous_width + parents[g *
    /// width + s]` of the previous one with token `tokens[g * width + s]`; returns the
    /// log-probabilities of the token after it. Slots a group does not use repeat its slot 0
    /// with token 0; their outputs are never read.
    ///
    /// # Shapes
    /// - `parents`, `tokens`: `[groups * width]`
    /// - output: `[groups * width * vocab]`, row-major
    fn step(&mut self, parents: &[usize], tokens: &[u32], width: usize) -> Vec<f32>;
}

/// A tree of allowed token sequences (e.g. every item's code tokens); a leaf ends a sequence.
pub trait PrefixTree {
    /// The root node.
    fn root(&self) -> u32;
    /// Tokens that may follow the path to `node`, ascending.
    fn children(&self, node: u32) -> &[u32];
    /// The node reached from `node` by `token`, if allowed.
    fn child(&self, node: u32, token: u32) -> Option<u32>;
    /// Whether the path to `node` is a complete sequence.
    fn is_leaf(&self, node: u32) -> bool;
}

/// What one group may generate.
#[derive(Clone, Copy)]
pub enum Constraint<'a> {
    /// Any token of the vocabulary. A sequence ends at `stop` (scored, not kept in the output)
    /// or after `max_len` tokens.
    Free { stop: Option<u32>, max_len: usize },
    /// Token `t` of a sequence comes from `ranges[t]`; a sequence ends after the last range.
    Ranges(&'a [Range<u32>]),
    /// The paths of a prefix tree; a sequence ends at a leaf.
    Tree(&'a dyn PrefixTree),
}

/// A finished sequence: its tokens and summed log-probability.
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    pub tokens: Vec<u32>,
    pub score: f32,
}

/// A live hypothesis and its node in the prefix tree (unused by the other constraints).
#[derive(Clone)]
struct Live {
    tokens: Vec<u32>,
    score: f32,
    node: u32,
}

impl Constraint<'_> {
    fn root(&self) -> u32 {
        match self {
            Constraint::Tree(tree) => tree.root(),
            _ => 0,
        }
    }

    /// The candidate extensions `(score, slot, token)` of live hypothesis `slot` at position
    /// `len` given its next-token log-probabilities `row`.
    fn extend(&self, hyp: &Live, slot: usize, row: &[f32], beam: usize, out: &mut Vec<(f32, usize, u32)>) {
        let len = hyp.tokens.len();
        match self {
            Constraint::Free { .. } => {
                // Only a hypothesis' best 2·beam tokens can be among the group's best extensions
                // (at most one per hypothesis ends at `stop` instead of taking a live slot), so
                // the rest of the vocabulary is not ranked.
                let k = (2 * beam).min(row.len());
                let mut best: Vec<u32> = (0..row.len() as u32).collect();
                if k < row.len() {
                    best.select_nth_unstable_by(k - 1, |&x, &y| {
                        row[y as usize].total_cmp(&row[x as usize]).then(x.cmp(&y))
                    });
                    best.truncate(k);
                }
                out.extend(best.into_iter().map(|t| (hyp.score + row[t as usize], slot, t)));
            }
            Constraint::Ranges(ranges) => {
                out.extend(ranges[len].clone().map(|t| (hyp.score + row[t as usize], slot, t)));
            }
            Constraint::Tree(tree) => {
                out.extend(
                    tree.children(hyp.node)
                        .iter()
                        .map(|&t| (hyp.score + row[t as usize], slot, t)),
                );
            }
        }
    }

    /// `hyp` extended by `token`, and whether that ends the sequence.
    fn advance(&self, hyp: &Live, token: u32, score: f32) -> (Live, bool) {
        let mut tokens = hyp.tokens.clone();
        let (node, ends) = match self {
            Constraint::Free { stop, max_len } => {
                if Some(token) == *stop {
                    return (Live { tokens, score, node: 0 }, true);
                }
                (0, tokens.len() + 1 >= *max_len)
            }
            Constraint::Ranges(ranges) => (0, tokens.len() + 1 == ranges.len()),
            Constraint::Tree(tree) => {
                let node = tree
                    .child(hyp.node, token)
                    .expect("extensions come from the node's children");
                (node, tree.is_leaf(node))
            }
        };
        tokens.push(token);
        (Live { tokens, score, node }, ends)
    }

    /// Whether a group with this constraint generates nothing at all.
    fn is_empty(&self) -> bool {
        match self {
            Constraint::Free { max_len, .. } => *max_len == 0,
            Constraint::Ranges(ranges) => ranges.is_empty(),
            Constraint::Tree(tree) => tree.children(tree.root()).is_empty(),
        }
    }
}

/// Best first; equal scores by tokens, so the order is total and deterministic.
fn by_score(a: &Hypothesis, b: &Hypothesis) -> std::cmp::Ordering {
    b.score.total_cmp(&a.score).then_with(|| a.tokens.cmp(&b.tokens))
}

/// Beam search over `constraints.len()` groups (one constraint per group) with `beam` slots
/// each: up to `beam` finished sequences per group, best first.
///
/// # Panics
/// If `beam` is 0, or the decoder returns rows of another length than it says.
pub fn beam_search(decoder: &mut dyn StepDecoder, constraints: &[Constraint], beam: usize) -> Vec<Vec<Hypothesis>> {
    assert!(beam > 0, "beam must be at least 1");
    let groups = constraints.len();
    let vocab = decoder.vocab();
    let mut finished: Vec<Vec<Hypothesis>> = vec![Vec::new(); groups];
    let mut live: Vec<Vec<Live>> = constraints
        .iter()
        .map(|c| {
            if c.is_empty() {
                Vec::new()
            } else {
                vec![Live {
                    tokens: Vec::new(),
                    score: 0.0,
                    node: c.root(),
                }]
            }
        })
        .collect();
    if live.iter().all(Vec::is_empty) {
        return finished;
    }
    let mut logp = decoder.start();
    let mut width = 1;
    loop {
        assert_eq!(logp.len(), groups * width * vocab, "decoder rows");
        let mut parents = vec![0usize; groups * beam];
        let mut tokens = vec![0u32; groups * beam];
        let mut candidates: Vec<(f32, usize, u32)> = Vec::new();
        for (g, constraint) in constraints.iter().enumerate() {
            candidates.clear();
            for (slot, hyp) in live[g].iter().enumerate() {
                let row = &logp[(g * width + slot) * vocab..(g * width + slot + 1) * vocab];
                constraint.extend(hyp, slot, row, beam, &mut candidates);
            }
            // Best first; ties by lower slot, then lower token.
            candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
            let mut next: Vec<Live> = Vec::with_capacity(beam);
            for &(score, slot, token) in &candidates {
                if next.len() == beam {
                    break;
                }
                let (hyp, ends) = constraint.advance(&live[g][slot], token, score);
                if ends {
                    finished[g].push(Hypothesis {
                        tokens: hyp.tokens,
                        score,
                    });
                    continue;
                }
                parents[g * beam + next.len()] = slot;
                tokens[g * beam + next.len()] = token;
                next.push(hyp);
            }
            finished[g].sort_by(by_score);
            finished[g].truncate(beam);
            // Nothing live can still beat the worst of `beam` finished sequences.
            let full = finished[g].len() == beam;
            if full && next.first().is_some_and(|h| h.score < finished[g][beam - 1].score) {
                next.clear();
            }
            live[g] = next;
        }
        if live.iter().all(Vec::is_empty) {
            return finished;
        }
        logp = decoder.step(&parents, &tokens, beam);
        width = beam;
    }
}

/// Greedy decoding: the single best continuation of each group (a beam of 1).
pub fn greedy(decoder: &mut dyn StepDecoder, constraints: &[Constraint]) -> Vec<Option<Hypothesis>> {
    beam_search(decoder, constraints, 1)
        .into_iter()
        .map(|mut f| f.pop())
        .collect()
}

#[cfg(test)]
mod tests;
