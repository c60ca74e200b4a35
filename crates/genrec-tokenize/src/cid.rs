//! Collaborative indexing (CID) of P5 "How to Index Item IDs for Recommendation Foundation
//! Models" (Hua et al., 2023): items that users consume together should share leading tokens, so
//! the model can reuse what it learnt about one item for its neighbours.
//!
//! 1. [`cooccurrence`]: an item–item graph from the training sequences.
//! 2. [`spectral_clustering`]: Ng–Jordan–Weiss spectral clustering of a (sub)graph into `N`
//!    clusters.
//! 3. [`cid_codes`]: cluster all items into `N` clusters, recurse into every cluster larger than
//!    `k` (`max_leaf`) on its induced subgraph, and end every code with the item's position in its
//!    final (≤ `k`) cluster. An item's code is its root-to-leaf path in that tree, so codes have
//!    variable length, are distinct, and no code is a prefix of another.
//!
//! What differs from the reference:
//! - Co-occurrence is counted between items at most `window` positions apart in a user's training
//!   sequence (window 1 = adjacent pairs) rather than over the whole history: it keeps the graph
//!   sparse (`O(window · length)` edges per user instead of `O(length²)`) and weights pairs by
//!   how close in time they were consumed.
//! - The eigenvectors come from a seeded subspace iteration (a few matrix–block products per
//!   iteration, no eigensolver library) and k-means is a single seeded k-means++ run, so the
//!   whole index is a deterministic function of the seed.
//! - When a recursion step fails to split a cluster at all, the cluster is cut into contiguous
//!   chunks by item id (see [`cid_codes`]) instead of recursing forever.

use crate::TokenizeError;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::kmeans::kmeans;

/// Stop the subspace iteration once the subspace moves less than this (sum of squared sines of
/// the principal angles between two iterates, per column): eigenvectors to ~1e-5, far finer than
/// k-means needs.
const TOLERANCE: f64 = 1e-10;
/// A column whose norm falls below this after orthogonalisation lies in the span of the previous
/// ones (the operator has fewer independent directions than asked for): it is zeroed rather than
/// normalised, which would blow noise up into NaN-prone garbage.
const COLLAPSED: f64 = 1e-10;
/// Lloyd iterations for the k-means on the embedding (row-normalised embeddings of well-separated
/// clusters converge in a handful).
const KMEANS_ITERATIONS: usize = 100;

/// Settings of collaborative indexing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CidConfig {
    /// `N`: clusters per recursion step; every non-leaf token is below this.
    pub n_clusters: usize,
    /// `k`: clusters with more items than this are split again; leaf tokens are below this.
    pub max_leaf: usize,
    /// Items at most this many positions apart in a training sequence co-occur.
    pub window: usize,
    /// Cap on subspace iterations per spectral clustering.
    pub iterations: usize,
    pub seed: u64,
}

impl Default for CidConfig {
    /// N = k = 20, adjacent pairs, 100 subspace iterations, seed 0.
    fn default() -> Self {
        CidConfig {
            n_clusters: 20,
            max_leaf: 20,
            window: 1,
            iterations: 100,
            seed: 0,
        }
    }
}

impl CidConfig {
    /// Rejects settings under which the recursion could not split or the graph would be empty;
    /// the error names the offending field.
    pub fn validate(&self) -> Result<(), TokenizeError> {
        if self.n_clusters < 2 {
            return Err(TokenizeError::Cid(format!(
                "cid.n_clusters = {} must be at least 2",
                self.n_clusters
            )));
        }
        if self.max_leaf < 1 {
            return Err(TokenizeError::Cid(format!(
                "cid.max_leaf = {} must be at least 1",
                self.max_leaf
            )));
        }
        if self.window < 1 {
            return Err(TokenizeError::Cid(format!(
                "cid.window = {} must be at least 1",
                self.window
            )));
        }
        if self.iterations < 1 {
            return Err(TokenizeError::Cid(format!(
                "cid.iterations = {} must be at least 1",
                self.iterations
            )));
        }
        Ok(())
    }
}

/// Symmetric item–item co-occurrence counts.
///
/// `sequences` are the training sequences (e.g. `LeaveOneOut::train`), items in `0..n_items`. Two
/// items co-occur when they are at most `window` positions apart in one sequence — P5's
/// co-appearance in a user's history, restricted to a sliding window; `window = 1` counts adjacent
/// pairs. Every such pair of positions adds 1 in both directions; pairs of one item with itself
/// are skipped (a self-loop says nothing about which items belong together).
///
/// Returns one adjacency list per item, `(neighbour, count)`, sorted by neighbour id; items that
/// never co-occur have an empty list.
///
/// # Panics
/// If a sequence holds an item outside `0..n_items`.
pub fn cooccurrence(sequences: &[Vec<u32>], n_items: usize, window: usize) -> Vec<Vec<(u32, f32)>> {
    // Collect neighbours with repetition, then sort and run-length count each list: simpler and
    // leaner than a hash map per item.
    let mut neighbours: Vec<Vec<u32>> = vec![Vec::new(); n_items];
    for seq in sequences {
        for (i, &a) in seq.iter().enumerate() {
            assert!((a as usize) < n_items, "item {a} is outside 0..{n_items}");
            for &b in seq.iter().skip(i + 1).take(window) {
                if a != b {
                    neighbours[a as usize].push(b);
                    neighbours[b as usize].push(a);
                }
            }
        }
    }
    neighbours
        .into_par_iter()
        .map(|mut list| {
            list.sort_unstable();
            let mut counted: Vec<(u32, f32)> = Vec::new();
            for b in list {
                match counted.last_mut() {
                    Some((last, count)) if *last == b => *count += 1.0,
                    _ => counted.push((b, 1.0)),
                }
            }
            counted
        })
        .collect()
}

/// Spectral clustering (Ng, Jordan & Weiss, 2001) of the subgraph of `graph` induced by `members`.
///
/// `graph` is a symmetric weighted adjacency list as [`cooccurrence`] returns; `members` are
/// strictly increasing item ids. Embeds every member by the top-`n_clusters` eigenvectors of the
/// normalised adjacency `D^-1/2 A D^-1/2` of the induced subgraph (the bottom eigenvectors of the
/// normalised Laplacian), row-normalises the embedding and runs k-means with `k = n_clusters` on
/// it. Eigenvectors come from [`subspace_iteration`] with at most `iterations` steps, seeded by
/// `seed`.
///
/// Members without a neighbour inside the subgraph get an all-zero embedding row (normalising it
/// would divide by zero), so they tend to land in one cluster together. With at most `n_clusters`
/// members each member is its own cluster.
///
/// Returns the cluster (`< n_clusters`) of every member, in the order of `members`. Clusters may
/// be empty; labels are k-means' and carry no order.
///
/// # Panics
/// If `members` is not strictly increasing, or an id is outside `graph`.
pub fn spectral_clustering(
    graph: &[Vec<(u32, f32)>],
    members: &[u32],
    n_clusters: usize,
    iterations: usize,
    seed: u64,
) -> Vec<u32> {
    assert!(
        members.windows(2).all(|w| w[0] < w[1]),
        "members must be strictly increasing"
    );
    let m = members.len();
    if m <= n_clusters {
        return (0..m as u32).collect();
    }
    // Induced subgraph in local indices (members are sorted, so a binary search finds them).
    let local: Vec<Vec<(usize, f64)>> = members
        .par_iter()
        .map(|&item| {
            graph[item as usize]
                .iter()
                .filter(|&&(_, w)| w > 0.0)
                .filter_map(|&(nb, w)| members.binary_search(&nb).ok().map(|j| (j, w as f64)))
                .collect()
        })
        .collect();
    let degree: Vec<f64> = local.iter().map(|row| row.iter().map(|&(_, w)| w).sum()).collect();
    // Only connected members enter the eigenproblem: an isolated member would add an eigenvector of
    // its own (eigenvalue 0) that could crowd out the informative ones. A neighbour of a connected
    // member is connected too, so the reduced graph is closed.
    let connected: Vec<usize> = (0..m).filter(|&i| degree[i] > 0.0).collect();
    let mut position = vec![usize::MAX; m];
    for (p, &i) in connected.iter().enumerate() {
        position[i] = p;
    }
    let normalised: Vec<Vec<(usize, f64)>> = connected
        .iter()
        .map(|&i| {
            local[i]
                .iter()
                .map(|&(j, w)| (position[j], w / (degree[i] * degree[j]).sqrt()))
                .collect()
        })
        .collect();
    let dim = n_clusters.min(connected.len());
    if dim == 0 {
        // No edges at all: nothing to tell the members apart.
        return vec![0; m];
    }
    let embedding = subspace_iteration(&normalised, dim, iterations, seed);
    // Row-normalise (NJW): members of one well-separated cluster then map to nearly one point on
    // the unit sphere whatever their degree.
    let mut rows = vec![0f32; m * dim];
    for (p, &i) in connected.iter().enumerate() {
        let row = &embedding[p * dim..(p + 1) * dim];
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm > COLLAPSED {
            for (out, v) in rows[i * dim..(i + 1) * dim].iter_mut().zip(row) {
                *out = (v / norm) as f32;
            }
        }
    }
    kmeans(&rows, dim, n_clusters, KMEANS_ITERATIONS, mix(seed, u64::MAX)).assignments
}

/// Orthonormal basis (row-major `n × dim`, `n = matrix.len()`) of the eigenvectors of the
/// symmetric `matrix` (sparse rows of `(column, value)`) with the `dim` largest eigenvalues.
///
/// The matrix is `D^-1/2 A D^-1/2`, whose spectrum lies in `[-1, 1]`. Plain power iteration would
/// converge to the eigenvalues largest in *magnitude*, which includes the near `-1` ones of
/// bipartite-like structure; iterating on the shifted `(M + I) / 2` instead (spectrum in `[0, 1]`,
/// same eigenvectors, same order) converges to the largest *algebraic* ones, the ones spectral
/// clustering wants. Each step multiplies the block by the shifted matrix and re-orthonormalises
/// it by modified Gram–Schmidt; it stops after `iterations` steps or once the subspace stops
/// moving ([`TOLERANCE`]). The start block is uniform noise from `seed`.
fn subspace_iteration(matrix: &[Vec<(usize, f64)>], dim: usize, iterations: usize, seed: u64) -> Vec<f64> {
    let n = matrix.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut q: Vec<f64> = (0..n * dim).map(|_| rng.random::<f64>() - 0.5).collect();
    orthonormalise(&mut q, dim);
    for _ in 0..iterations {
        // Rows are independent, so the parallel product is bit-identical to the serial one.
        let mut next = vec![0f64; n * dim];
        next.par_chunks_mut(dim).enumerate().for_each(|(i, out)| {
            for (o, &v) in out.iter_mut().zip(&q[i * dim..(i + 1) * dim]) {
                *o = 0.5 * v;
            }
            for &(k, w) in &matrix[i] {
                for (o, &v) in out.iter_mut().zip(&q[k * dim..(k + 1) * dim]) {
                    *o += 0.5 * w * v;
                }
            }
        });
        orthonormalise(&mut next, dim);
        let moved = subspace_change(&q, &next, dim);
        q = next;
        if moved < TOLERANCE {
            break;
        }
    }
    q
}

/// Modified Gram–Schmidt on the columns of the row-major `n × dim` block, in place. A column that
/// collapses into the span of the previous ones is set to zero (see [`COLLAPSED`]).
fn orthonormalise(block: &mut [f64], dim: usize) {
    let n = block.len() / dim;
    for j in 0..dim {
        for p in 0..j {
            let r: f64 = (0..n).map(|i| block[i * dim + p] * block[i * dim + j]).sum();
            for i in 0..n {
                block[i * dim + j] -= r * block[i * dim + p];
            }
        }
        let norm = (0..n).map(|i| block[i * dim + j].powi(2)).sum::<f64>().sqrt();
        let scale = if norm > COLLAPSED { 1.0 / norm } else { 0.0 };
        for i in 0..n {
            block[i * dim + j] *= scale;
        }
    }
}

/// How far the span of `new` is from the span of `old` (both orthonormal, row-major `n × dim`):
/// the largest, over the non-zero columns of `new`, of the squared norm of the part outside
/// `old`. Comparing spans, not columns, lets vectors rotate freely inside a repeated eigenvalue
/// (e.g. one eigenvalue 1 per connected component) without counting as movement.
fn subspace_change(old: &[f64], new: &[f64], dim: usize) -> f64 {
    let n = old.len() / dim;
    let mut worst = 0f64;
    for j in 0..dim {
        let norm2: f64 = (0..n).map(|i| new[i * dim + j].powi(2)).sum();
        if norm2 == 0.0 {
            continue;
        }
        let inside: f64 = (0..dim)
            .map(|p| (0..n).map(|i| old[i * dim + p] * new[i * dim + j]).sum::<f64>().powi(2))
            .sum();
        worst = worst.max(norm2 - inside);
    }
    worst
}

/// SplitMix64 finaliser of `seed` and `x`: derives an independent seed per tree node from the root
/// seed and the node's path, so results do not depend on the order rayon visits nodes in.
fn mix(seed: u64, x: u64) -> u64 {
    let mut z = seed ^ x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Collaborative-indexing codes of every item.
///
/// `train` are the training sequences (`LeaveOneOut::train`), items in `0..n_items`. Builds the
/// [`cooccurrence`] graph with `config.window`, then recursively:
/// - a set of at most `max_leaf` items is a leaf: each item's last token is its position in the
///   set, members sorted by item id;
/// - a larger set is split by [`spectral_clustering`] of its induced subgraph into at most
///   `n_clusters` non-empty clusters, numbered in order of their smallest item id, and each
///   cluster's index is appended to its members' codes before recursing into it.
///
/// If a step leaves every member in one cluster (e.g. a subgraph without edges, such as items
/// absent from training), the step would repeat forever; instead the set is cut into contiguous
/// chunks by item id of `max(max_leaf, ⌈size / n_clusters⌉)` items — chunks of `max_leaf`, i.e.
/// leaves, when that needs at most `n_clusters` of them — and larger chunks are recursed into as
/// usual. Every step thus shrinks the set and keeps its tokens below `n_clusters`.
///
/// Returns `codes[item]`: variable-length tuples, non-leaf tokens `< n_clusters`, the leaf token
/// `< max_leaf`; so a codebook of `max(n_clusters, max_leaf)` per level covers every code. Codes
/// are distinct and prefix-free (they are paths to distinct leaves) and a function of
/// `config.seed`. Fails on an invalid config or an item outside `0..n_items`.
pub fn cid_codes(train: &[Vec<u32>], n_items: usize, config: &CidConfig) -> Result<Vec<Vec<u32>>, TokenizeError> {
    config.validate()?;
    if let Some(&item) = train.iter().flatten().find(|&&item| item as usize >= n_items) {
        return Err(TokenizeError::Cid(format!(
            "item {item} in the training sequences is outside 0..{n_items}"
        )));
    }
    let graph = cooccurrence(train, n_items, config.window);
    let all: Vec<u32> = (0..n_items as u32).collect();
    let mut codes = vec![Vec::new(); n_items];
    for (item, code) in codes_below(&graph, &all, Vec::new(), config) {
        codes[item as usize] = code;
    }
    Ok(codes)
}

/// Codes of `members` (sorted item ids) under the tree node reached by `path`, as
/// `(item, full code)` pairs.
fn codes_below(graph: &[Vec<(u32, f32)>], members: &[u32], path: Vec<u32>, config: &CidConfig) -> Vec<(u32, Vec<u32>)> {
    if members.len() <= config.max_leaf {
        return members
            .iter()
            .enumerate()
            .map(|(position, &item)| {
                let mut code = path.clone();
                code.push(position as u32);
                (item, code)
            })
            .collect();
    }
    let seed = path.iter().fold(config.seed, |s, &token| mix(s, token as u64));
    let labels = spectral_clustering(graph, members, config.n_clusters, config.iterations, seed);
    // Renumber clusters by first appearance: members are sorted, so cluster 0 holds the smallest
    // id, and members stay sorted inside each cluster.
    let mut renumber = vec![usize::MAX; config.n_clusters];
    let mut clusters: Vec<Vec<u32>> = Vec::new();
    for (&item, &label) in members.iter().zip(&labels) {
        let slot = &mut renumber[label as usize];
        if *slot == usize::MAX {
            *slot = clusters.len();
            clusters.push(Vec::new());
        }
        clusters[*slot].push(item);
    }
    if clusters.len() == 1 {
        let chunk = config.max_leaf.max(members.len().div_ceil(config.n_clusters));
        clusters = members.chunks(chunk).map(<[u32]>::to_vec).collect();
    }
    // Sibling subtrees are independent and seeded by their path, and `collect` keeps their order,
    // so the parallel recursion gives the serial result.
    clusters
        .into_par_iter()
        .enumerate()
        .map(|(c, cluster)| {
            let mut child = path.clone();
            child.push(c as u32);
            codes_below(graph, &cluster, child, config)
        })
        .collect::<Vec<_>>()
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCKS: u32 = 4;
    const PER_BLOCK: u32 = 10;

    /// Item `i` belongs to block `i % 4` (interleaved, so no split by id order could pass for the
    /// blocks). 200 users, each a seeded random walk of 8 items inside one block: co-occurrence
    /// never crosses blocks.
    fn block_sequences(seed: u64) -> Vec<Vec<u32>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..200)
            .map(|_| {
                let block = rng.random_range(0..BLOCKS);
                (0..8)
                    .map(|_| block + BLOCKS * rng.random_range(0..PER_BLOCK))
                    .collect()
            })
            .collect()
    }

    fn n_items() -> usize {
        (BLOCKS * PER_BLOCK) as usize
    }

    /// Labels equal `i % 4` up to a relabelling.
    fn assert_blocks(labels: &[u32]) {
        for i in 0..labels.len() {
            for j in 0..labels.len() {
                let same_block = i % BLOCKS as usize == j % BLOCKS as usize;
                assert_eq!(same_block, labels[i] == labels[j], "items {i} and {j}: {labels:?}");
            }
        }
    }

    /// Distinct, and no code a prefix of another.
    fn assert_prefix_free(codes: &[Vec<u32>]) {
        let mut sorted: Vec<&Vec<u32>> = codes.iter().collect();
        sorted.sort();
        assert!(codes.iter().all(|c| !c.is_empty()));
        for w in sorted.windows(2) {
            assert!(!w[1].starts_with(w[0]), "{:?} is a prefix of {:?}", w[0], w[1]);
        }
    }

    #[test]
    fn cooccurrence_counts_adjacent_pairs_both_ways() {
        // Pairs by hand: 0-1, 1-2 in the first sequence, 2-1 in the second.
        let graph = cooccurrence(&[vec![0, 1, 2], vec![2, 1]], 3, 1);
        assert_eq!(graph[0], vec![(1, 1.0)]);
        assert_eq!(graph[1], vec![(0, 1.0), (2, 2.0)]);
        assert_eq!(graph[2], vec![(1, 2.0)]);
    }

    #[test]
    fn cooccurrence_window_and_self_pairs() {
        // Window 2 adds 0-2; the repeated 3 adds no self-loop but still links to its neighbours.
        let graph = cooccurrence(&[vec![0, 1, 2], vec![3, 3, 0]], 4, 2);
        assert_eq!(graph[0], vec![(1, 1.0), (2, 1.0), (3, 2.0)]);
        assert_eq!(graph[1], vec![(0, 1.0), (2, 1.0)]);
        assert_eq!(graph[2], vec![(0, 1.0), (1, 1.0)]);
        assert_eq!(graph[3], vec![(0, 2.0)]);
    }

    #[test]
    fn spectral_clustering_recovers_disconnected_blocks() {
        let graph = cooccurrence(&block_sequences(1), n_items(), 1);
        let members: Vec<u32> = (0..n_items() as u32).collect();
        let labels = spectral_clustering(&graph, &members, BLOCKS as usize, 100, 7);
        assert_blocks(&labels);
        assert_eq!(labels, spectral_clustering(&graph, &members, BLOCKS as usize, 100, 7));
    }

    #[test]
    fn spectral_clustering_small_and_edgeless_subgraphs() {
        let graph = cooccurrence(&[vec![0, 1]], 6, 1);
        // At most N members: one cluster each.
        assert_eq!(spectral_clustering(&graph, &[0, 1, 5], 3, 10, 0), vec![0, 1, 2]);
        // No edges among the members: all in one cluster, no NaN panic in k-means.
        assert_eq!(spectral_clustering(&graph, &[2, 3, 4, 5], 2, 10, 0), vec![0; 4]);
        // One edge plus isolated members: the pair is separated from the zero rows.
        let labels = spectral_clustering(&graph, &[0, 1, 2, 3], 2, 10, 0);
        assert_eq!(labels[0], labels[1]);
        assert_eq!(labels[2], labels[3]);
        assert_ne!(labels[0], labels[2]);
    }

    #[test]
    fn cid_first_token_is_the_block() {
        let train = block_sequences(2);
        let config = CidConfig {
            n_clusters: 4,
            max_leaf: 10,
            seed: 3,
            ..CidConfig::default()
        };
        let codes = cid_codes(&train, n_items(), &config).unwrap();
        // Four leaves of ten: [cluster, position].
        assert!(codes.iter().all(|c| c.len() == 2 && c[0] < 4 && c[1] < 10), "{codes:?}");
        assert_blocks(&codes.iter().map(|c| c[0]).collect::<Vec<_>>());
        assert_prefix_free(&codes);
        // Item 0 has the smallest id, so its cluster is numbered 0 and it comes first in it.
        assert_eq!(codes[0], vec![0, 0]);
        assert_eq!(
            cid_codes(&train, n_items(), &config).unwrap(),
            codes,
            "same seed, same codes"
        );
    }

    #[test]
    fn cid_recurses_into_clusters_above_max_leaf() {
        let train = block_sequences(2);
        let config = CidConfig {
            n_clusters: 4,
            max_leaf: 3,
            seed: 3,
            ..CidConfig::default()
        };
        let codes = cid_codes(&train, n_items(), &config).unwrap();
        // Blocks of 10 > 3 are split at least once more: [block, sub-cluster, ..., position].
        assert!(codes.iter().all(|c| c.len() >= 3), "{codes:?}");
        assert!(codes
            .iter()
            .all(|c| c[..c.len() - 1].iter().all(|&t| t < 4) && c[c.len() - 1] < 3));
        assert_blocks(&codes.iter().map(|c| c[0]).collect::<Vec<_>>());
        assert_prefix_free(&codes);
        assert_eq!(
            cid_codes(&train, n_items(), &config).unwrap(),
            codes,
            "same seed, same codes"
        );
    }

    #[test]
    fn cid_without_cooccurrence_falls_back_to_id_chunks() {
        // Sequences of one item have no pairs: every split fails and chunking takes over.
        let train: Vec<Vec<u32>> = (0..50).map(|i| vec![i]).collect();
        let config = CidConfig {
            n_clusters: 4,
            max_leaf: 10,
            ..CidConfig::default()
        };
        let codes = cid_codes(&train, 50, &config).unwrap();
        // 50 → four chunks of ⌈50/4⌉ = 13 (the last 11) → each into a chunk of 10 and the rest.
        assert_eq!(codes[0], vec![0, 0, 0]);
        assert_eq!(codes[12], vec![0, 1, 2]);
        assert_eq!(codes[13], vec![1, 0, 0]);
        assert_eq!(codes[49], vec![3, 1, 0]);
        assert_prefix_free(&codes);
    }

    #[test]
    fn cid_small_and_empty_item_sets() {
        let config = CidConfig::default();
        assert_eq!(cid_codes(&[], 0, &config).unwrap(), Vec::<Vec<u32>>::new());
        assert_eq!(
            cid_codes(&[vec![2, 0]], 3, &config).unwrap(),
            vec![vec![0], vec![1], vec![2]]
        );
        let err = cid_codes(&[vec![3]], 3, &config).unwrap_err().to_string();
        assert!(err.contains("item 3"), "{err}");
    }

    #[test]
    fn config_errors_name_the_field() {
        let base = CidConfig::default();
        assert!(base.validate().is_ok());
        for (config, field) in [
            (
                CidConfig {
                    n_clusters: 1,
                    ..base.clone()
                },
                "cid.n_clusters",
            ),
            (
                CidConfig {
                    max_leaf: 0,
                    ..base.clone()
                },
                "cid.max_leaf",
            ),
            (
                CidConfig {
                    window: 0,
                    ..base.clone()
                },
                "cid.window",
            ),
            (
                CidConfig {
                    iterations: 0,
                    ..base.clone()
                },
                "cid.iterations",
            ),
        ] {
            let err = cid_codes(&[vec![0, 1]], 2, &config).unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
    }
}
