//! Fuzzes every decoder of bytes from the network or a socket: UDP control
//! datagrams, their signature frame, reports, local control requests. Any
//! input must be refused or read, never panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pmtr_core::proto::{auth, control, local, report};

fn key() -> &'static auth::Key {
    static KEY: OnceLock<auth::Key> = OnceLock::new();
    KEY.get_or_init(|| auth::Key::new(b"fuzzing key of enough length").expect("a valid key"))
}

fuzz_target!(|data: &[u8]| {
    let _ = control::decode(data);
    let _ = report::decode(data);
    let _ = local::Request::decode(data);
    let mut guard = auth::ReplayGuard::default();
    for kind in [auth::Kind::Control, auth::Kind::Report] {
        if let Ok(verified) = auth::verify(key(), kind, data) {
            let _ = guard.admit(&verified, verified.unix_secs);
            let _ = control::decode(verified.payload);
        }
    }
    // Signed payloads of fuzzed content go through the whole path too.
    let signed = auth::sign(key(), auth::Kind::Control, 1_700_000_000, 1, data);
    if let Ok(verified) = auth::verify(key(), auth::Kind::Control, &signed) {
        let _ = guard.admit(&verified, 1_700_000_000);
        let _ = control::decode(verified.payload);
    }
});
