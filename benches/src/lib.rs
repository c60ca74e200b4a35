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
