//! Giving freed heap back to the system. pmtr frees what start-up and a
//! reload used (parsing, plans); the collector, a whole-fleet answer (tens
//! of MB at 20 000 hosts). The allocator would keep either resident for
//! the process's whole life.

/// Returns free heap pages to the kernel.
#[allow(unsafe_code)] // a libc call, with its SAFETY note
pub fn release_free_memory() {
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it
    // touches no memory in use.
    unsafe { libc::malloc_trim(0) };
}
