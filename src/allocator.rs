//! The one call ringlb makes into its allocator (mimalloc, set as the global allocator in
//! `main.rs`): hand pages freed by this thread back to the operating system.
//!
//! mimalloc returns free pages lazily, on later allocator activity; a worker whose connections
//! have all gone idle (parked) makes none, so the memory they freed would stay resident.

/// Returns this thread's free allocator pages to the operating system (forced: without `force`
/// mimalloc keeps pages it has not yet aged out, and a quiet worker never ages them).
#[allow(unsafe_code)]
pub fn release_free_pages() {
    // SAFETY: `mi_collect` takes no pointers and only walks the calling thread's own heap; it
    // frees nothing still in use. Harmless if mimalloc is not the global allocator (its heap is
    // then empty).
    unsafe { libmimalloc_sys::mi_collect(true) }
}
