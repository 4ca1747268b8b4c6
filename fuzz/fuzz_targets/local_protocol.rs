//! Fuzzes the local control protocol both ways: any request line is read
//! or refused, and one that is read says the same once written again;
//! any answer line pmtr-ctl could receive is read or refused, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmtr_core::proto::local::{Request, Response};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = Request::decode(data) {
        let line = request.encode();
        let again = Request::decode(line.trim_end_matches('\n').as_bytes());
        assert_eq!(again.as_ref(), Ok(&request), "{line:?}");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(response) = Response::decode(text) {
            let line = response.encode();
            assert_eq!(Response::decode(line.trim_end()).ok(), Some(response));
        }
    }
});
