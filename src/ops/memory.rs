//! Returning memory the allocator holds but no longer uses to the operating system.
//!
//! The initial list of every watch decodes its pages (megabytes of response text for large
//! Secrets) and then frees them; glibc keeps freed heap pages mapped, so without a trim the
//! resident size stays at the peak of the sync long after the caches settled.

/// Makes glibc serve every thread from one heap arena, unless the operator chose otherwise
/// (`MALLOC_ARENA_MAX` or `GLIBC_TUNABLES` in the environment). glibc's default of up to eight
/// arenas per core spreads short-lived decode buffers over several heaps that each keep their
/// own free pages: one arena measured 21 MiB of anonymous memory at 20,000 Secrets against
/// 27-29 MiB, and the controller's threads rarely allocate at the same moment. Call it before
/// the async runtime starts its threads.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none()
        && std::env::var_os("GLIBC_TUNABLES").is_none()
    {
        // SAFETY: mallopt only sets an allocator parameter; called before other threads exist.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// Hands the allocator's free pages back to the kernel (glibc `malloc_trim(0)`); a no-op on
/// other C libraries. Cheap enough to call after each initial list or relist.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallinfo2 and malloc_trim take the allocator's own locks and have no
    // preconditions; malloc_trim only releases pages that hold no live allocation.
    unsafe {
        let before = libc::mallinfo2();
        libc::malloc_trim(0);
        let after = libc::mallinfo2();
        tracing::debug!(
            in_use = before.uordblks,
            free_before = before.fordblks,
            free_after = after.fordblks,
            mmapped = before.hblkhd,
            heap = before.arena,
            heap_after = after.arena,
            "returned free heap pages to the kernel"
        );
    }
}
