//! Fuzzes the collector from the outside in: reports (any bytes) taken
//! into a fleet within small limits, the clock moved on, and HTTP requests
//! (any path, query and validator) answered from it. Nothing may panic,
//! and the fleet never holds more than its limits.
#![no_main]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use pmtr_core::proto::report;
use pmtr_rptserver::fleet::{Fleet, Limits};
use pmtr_rptserver::views::Query;
use pmtr_rptserver::web::{answer, Options, Request};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_hosts: 4,
        max_jobs: 16,
    };
    let mut fleet = Fleet::starting_at(1_000).with_limits(limits);
    // Records split at 0xff: reports, then (after 0xfe) request lines.
    let (reports, requests) = match data.iter().position(|&b| b == 0xfe) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let mut now = 0.0;
    for chunk in reports.split(|&b| b == 0xff) {
        if let Ok(parsed) = report::decode(chunk) {
            fleet.record(parsed, "127.0.0.1:1", now);
        }
        now += f64::from(chunk.len() as u8) / 4.0;
        fleet.settle(now);
        let summary = fleet.summary();
        assert!(summary.hosts <= limits.max_hosts && summary.jobs <= limits.max_jobs);
    }
    let generation = fleet.generation();
    let _ = fleet.view(now, &Query { since: Some(generation.saturating_sub(2)), problems: true });
    let fleet = Mutex::new(fleet);
    for line in requests.split(|&b| b == b'\n') {
        let Ok(url) = std::str::from_utf8(line) else {
            continue;
        };
        let (url, tag) = url.split_once(' ').unwrap_or((url, ""));
        let request = Request {
            url,
            if_none_match: (!tag.is_empty()).then_some(tag),
            accepts_gzip: line.len() % 2 == 0,
        };
        let response = answer(&fleet, &request, now, Options::default());
        assert!((200..600).contains(&response.status));
    }
});
