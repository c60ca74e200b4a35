//! Shared set-up of the criterion benches.

extern "C" {
    /// mimalloc's option setter (linked in by the `mimalloc` crate; option 15 is
    /// `mi_option_purge_delay` in the bundled mimalloc 2.x and 3.x headers).
    fn mi_option_set(option: i32, value: std::os::raw::c_long);
}

/// As the `genrec` binary does at start (see its main.rs): mimalloc keeps freed pages instead of
/// returning them to the OS, so large tensor buffers are not zeroed by the kernel again each step.
pub fn keep_freed_memory() {
    // SAFETY: sets a plain integer option; valid at any time.
    unsafe { mi_option_set(15, -1) }
}

/// The TIGER benches' items and users: `items` random 3 × 256 semantic IDs made unique by a dedup
/// digit, and `users` histories of `history` random items with a random next item each.
pub fn random_tiger_setup(
    items: usize,
    users: usize,
    history: usize,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> (genrec_tokenize::ItemIndex, Vec<Vec<u32>>, Vec<u32>) {
    use rand::Rng;
    let codes: Vec<Vec<u32>> = (0..items)
        .map(|_| (0..3).map(|_| rng.random_range(0..256)).collect())
        .collect();
    let (codes, extra) = genrec_tokenize::collision::dedup_digit(&codes);
    let index = genrec_tokenize::ItemIndex::new("random+dedup", vec![256, 256, 256, extra], codes).unwrap();
    let histories = (0..users)
        .map(|_| (0..history).map(|_| rng.random_range(0..items as u32)).collect())
        .collect();
    let targets = (0..users).map(|_| rng.random_range(0..items as u32)).collect();
    (index, histories, targets)
}
