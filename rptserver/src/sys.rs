//! The collector's one call outside safe Rust: the only place `unsafe`
//! is allowed in it.
#![allow(unsafe_code)]

/// Gives freed heap back to the system. A whole-fleet answer (the view,
/// its JSON, its gzip: tens of MB at 20 000 hosts) is freed once sent, but
/// the allocator would keep it resident for the collector's whole life.
pub fn release_free_memory() {
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it
    // touches no memory in use.
    unsafe { nix::libc::malloc_trim(0) };
}
