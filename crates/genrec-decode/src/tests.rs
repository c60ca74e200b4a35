//! The search against brute force: a toy decoder whose next-token log-probabilities are a fixed
//! function of (group, prefix), so every sequence's exact score can be enumerated.

use super::*;

/// Log-probabilities that depend on the whole prefix (a hash), so a wrong parent shows.
fn logp(group: usize, prefix: &[u32], vocab: usize) -> Vec<f32> {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15 ^ group as u64;
    for &t in prefix {
        h = (h ^ t as u64).wrapping_mul(0x100_0000_01B3).rotate_left(17);
    }
    let logits: Vec<f32> = (0..vocab)
        .map(|v| {
            let x = (h ^ (v as u64 + 1)).wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
            (x % 1000) as f32 / 250.0
        })
        .collect();
    let max = logits.iter().cloned().fold(f32::MIN, f32::max);
    let lse = max + logits.iter().map(|x| (x - max).exp()).sum::<f32>().ln();
    logits.iter().map(|x| x - lse).collect()
}

/// Keeps each row's prefix and answers with [`logp`]; counts calls.
struct Toy {
    vocab: usize,
    groups: usize,
    rows: Vec<Vec<u32>>,
    width: usize,
    calls: usize,
}

impl Toy {
    fn new(groups: usize, vocab: usize) -> Self {
        Toy {
            vocab,
            groups,
            rows: Vec::new(),
            width: 1,
            calls: 0,
        }
    }

    fn answer(&self) -> Vec<f32> {
        let width = self.rows.len() / self.groups;
        self.rows
            .iter()
            .enumerate()
            .flat_map(|(r, p)| logp(r / width, p, self.vocab))
            .collect()
    }
}

impl StepDecoder for Toy {
    fn vocab(&self) -> usize {
        self.vocab
    }

    fn start(&mut self) -> Vec<f32> {
        self.rows = vec![Vec::new(); self.groups];
        self.width = 1;
        self.calls += 1;
        self.answer()
    }

    fn step(&mut self, parents: &[usize], tokens: &[u32], width: usize) -> Vec<f32> {
        assert_eq!(parents.len(), self.groups * width);
        let rows = (0..self.groups * width)
            .map(|r| {
                let g = r / width;
                let mut p = self.rows[g * self.width + parents[r]].clone();
                p.push(tokens[r]);
                p
            })
            .collect();
        self.rows = rows;
        self.width = width;
        self.calls += 1;
        self.answer()
    }
}

/// A prefix tree over explicit sequences (prefix-free), nodes numbered as they are added.
struct Tree {
    children: Vec<Vec<(u32, u32)>>,
    tokens: Vec<Vec<u32>>,
}

impl Tree {
    fn new(seqs: &[Vec<u32>]) -> Self {
        let mut t = Tree {
            children: vec![Vec::new()],
            tokens: vec![Vec::new()],
        };
        for s in seqs {
            let mut node = 0;
            for &tok in s {
                node = match t.children[node].iter().find(|c| c.0 == tok) {
                    Some(&(_, n)) => n as usize,
                    None => {
                        let n = t.children.len();
                        t.children.push(Vec::new());
                        t.tokens.push(Vec::new());
                        t.children[node].push((tok, n as u32));
                        t.children[node].sort();
                        t.tokens[node] = t.children[node].iter().map(|c| c.0).collect();
                        n
                    }
                };
            }
        }
        t
    }
}

impl PrefixTree for Tree {
    fn root(&self) -> u32 {
        0
    }
    fn children(&self, node: u32) -> &[u32] {
        &self.tokens[node as usize]
    }
    fn child(&self, node: u32, token: u32) -> Option<u32> {
        self.children[node as usize].iter().find(|c| c.0 == token).map(|c| c.1)
    }
    fn is_leaf(&self, node: u32) -> bool {
        self.children[node as usize].is_empty()
    }
}

/// Exact score of a sequence (and of a final stop token, when given).
fn score(group: usize, seq: &[u32], stop: Option<u32>, vocab: usize) -> f32 {
    let mut s = 0.0;
    for i in 0..seq.len() {
        s += logp(group, &seq[..i], vocab)[seq[i] as usize];
    }
    if let Some(stop) = stop {
        s += logp(group, seq, vocab)[stop as usize];
    }
    s
}

fn sorted(mut all: Vec<Hypothesis>) -> Vec<Hypothesis> {
    all.sort_by(by_score);
    all
}

fn close(got: &[Hypothesis], want: &[Hypothesis]) {
    assert_eq!(got.len(), want.len(), "{got:?}\n{want:?}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.tokens, w.tokens, "{got:?}\n{want:?}");
        assert!((g.score - w.score).abs() < 1e-4, "{} vs {}", g.score, w.score);
    }
}

/// Items of different lengths (as CID or dedup-digit indexes have).
fn items() -> Vec<Vec<u32>> {
    vec![
        vec![3, 5],
        vec![3, 6, 1],
        vec![3, 6, 2],
        vec![4, 5],
        vec![4, 7],
        vec![8, 1, 1],
        vec![8, 1, 2],
        vec![8, 2],
        vec![9],
    ]
}

#[test]
fn a_beam_holding_every_item_ranks_them_exactly() {
    let tree = Tree::new(&items());
    let want = sorted(
        items()
            .into_iter()
            .map(|s| Hypothesis {
                score: score(0, &s, None, 10),
                tokens: s,
            })
            .collect(),
    );
    let got = beam_search(&mut Toy::new(1, 10), &[Constraint::Tree(&tree)], 9);
    close(&got[0], &want);
    // A narrower beam returns that many valid items, best first, and its best is never better
    // than the true best.
    let three = beam_search(&mut Toy::new(1, 10), &[Constraint::Tree(&tree)], 3);
    assert_eq!(three[0].len(), 3);
    assert!(three[0].iter().all(|h| items().contains(&h.tokens)));
    assert!(three[0].windows(2).all(|w| w[0].score >= w[1].score));
    assert!(three[0][0].score <= want[0].score + 1e-6);
}

#[test]
fn ranges_enumerate_every_tuple() {
    let ranges = [0..3, 3..5, 5..8];
    let mut all = Vec::new();
    for a in 0..3 {
        for b in 3..5 {
            for c in 5..8 {
                all.push(Hypothesis {
                    tokens: vec![a, b, c],
                    score: score(1, &[a, b, c], None, 8),
                });
            }
        }
    }
    let want = sorted(all);
    // Group 1 of two: the other group (another constraint) must not disturb it.
    let tree = Tree::new(&items());
    let mut toy = Toy::new(2, 10);
    let got = beam_search(&mut toy, &[Constraint::Tree(&tree), Constraint::Ranges(&ranges)], 18);
    // The toy's vocabulary is 10 for both groups; recompute the expected scores with it.
    let want: Vec<Hypothesis> = sorted(
        want.into_iter()
            .map(|h| Hypothesis {
                score: score(1, &h.tokens, None, 10),
                tokens: h.tokens,
            })
            .collect(),
    );
    close(&got[1], &want);
    assert_eq!(got[0].len(), 9, "all items of group 0 fit its 18 slots");
    // Alone, each group gets the same lists.
    let alone = beam_search(&mut Toy::new(1, 10), &[Constraint::Tree(&tree)], 18);
    close(&got[0], &alone[0]);
    assert_eq!(toy.calls, 3, "one start and one step per further position");
}

#[test]
fn free_generation_stops_at_the_stop_token_or_the_length() {
    let (vocab, stop, max_len) = (4usize, 2u32, 3usize);
    // Every sequence: up to 3 tokens, a stop token ends it early.
    let mut all = Vec::new();
    let mut frontier: Vec<Vec<u32>> = vec![Vec::new()];
    for len in 0..max_len {
        let mut next = Vec::new();
        for p in &frontier {
            all.push(Hypothesis {
                tokens: p.clone(),
                score: score(0, p, Some(stop), vocab),
            });
            for t in (0..vocab as u32).filter(|&t| t != stop) {
                let mut s = p.clone();
                s.push(t);
                if len + 1 == max_len {
                    all.push(Hypothesis {
                        score: score(0, &s, None, vocab),
                        tokens: s,
                    });
                } else {
                    next.push(s);
                }
            }
        }
        frontier = next;
    }
    let want = sorted(all);
    let beam = want.len();
    let got = beam_search(
        &mut Toy::new(1, vocab),
        &[Constraint::Free {
            stop: Some(stop),
            max_len,
        }],
        beam,
    );
    close(&got[0], &want);
    // Greedy is the step-by-step arg-max.
    let mut seq = Vec::new();
    let mut total = 0.0;
    while seq.len() < max_len {
        let row = logp(0, &seq, vocab);
        let best = (0..vocab)
            .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
            .unwrap() as u32;
        total += row[best as usize];
        if best == stop {
            break;
        }
        seq.push(best);
    }
    let g = greedy(
        &mut Toy::new(1, vocab),
        &[Constraint::Free {
            stop: Some(stop),
            max_len,
        }],
    );
    let g = g[0].clone().unwrap();
    assert_eq!(g.tokens, seq);
    assert!((g.score - total).abs() < 1e-5);
}

#[test]
fn empty_constraints_generate_nothing() {
    let mut toy = Toy::new(2, 5);
    let none = beam_search(
        &mut toy,
        &[Constraint::Ranges(&[]), Constraint::Free { stop: None, max_len: 0 }],
        4,
    );
    assert_eq!(none, vec![Vec::new(), Vec::new()]);
    assert_eq!(toy.calls, 0, "the model is not run at all");
}
