//! Fuzzes the configuration parser: any bytes must give a Config or
//! diagnostics that render, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmtr_core::config::{parse, render_all, Source};

fuzz_target!(|data: &[u8]| {
    if let Err(errors) = parse(data) {
        let _ = render_all(&errors, &[Source::new("fuzz.conf", data)], usize::MAX);
    }
});
