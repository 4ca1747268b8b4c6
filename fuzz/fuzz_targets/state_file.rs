//! Fuzzes the state file a pmtr takes jobs over from (SPEC 11.8): any
//! bytes are a state or a refusal, never a panic; a state that is read
//! says the same once written again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmtr_core::proto::state::State;

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = State::decode(data) {
        let bytes = state.encode();
        assert_eq!(State::decode(&bytes).as_ref(), Ok(&state));
    }
});
