//! Shortened policy times for the test suite. A debug build reads
//! `PMTR_TEST_TIMES` (`rapid_restart=300,kill_after=300,…`, milliseconds)
//! so that end-to-end tests of 10 s rules take a fraction of a second; a
//! release build — what operators run — never looks at it.

use pmtr_core::supervise::policy::Policy;

/// The times the daemon runs with: the supervisor's and the control
/// server's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Times {
    pub policy: Policy,
    /// How long a control client may take to send its request and to read
    /// the answer.
    pub client_deadline_millis: u64,
    /// How long a reexec's new binary may take to check the state.
    pub reexec_check_millis: u64,
    /// How long after a spell of work its memory is given back.
    pub release_after_millis: u64,
}

impl Default for Times {
    fn default() -> Times {
        Times {
            policy: Policy::default(),
            client_deadline_millis: 5_000,
            reexec_check_millis: 10_000,
            release_after_millis: 1_000,
        }
    }
}

pub const VARIABLE: &str = "PMTR_TEST_TIMES";

/// The defaults, or in a debug build what `PMTR_TEST_TIMES` says; the
/// names it held that mean nothing are returned for a warning.
pub fn from_environment() -> (Times, Vec<String>) {
    if !cfg!(debug_assertions) {
        return (Times::default(), Vec::new());
    }
    match std::env::var(VARIABLE) {
        Ok(text) => parse(&text),
        Err(_) => (Times::default(), Vec::new()),
    }
}

fn parse(text: &str) -> (Times, Vec<String>) {
    let mut times = Times::default();
    let mut unknown = Vec::new();
    for item in text.split(',').filter(|item| !item.is_empty()) {
        let parsed = item
            .split_once('=')
            .and_then(|(name, value)| Some((name, value.parse::<u64>().ok()?)));
        let Some((name, millis)) = parsed else {
            unknown.push(item.to_string());
            continue;
        };
        let policy = &mut times.policy;
        let slot = match name {
            "rapid_restart" => &mut policy.rapid_restart_millis,
            "kill_after" => &mut policy.kill_after_millis,
            "spawn_retry" => &mut policy.spawn_retry_millis,
            "reprobe" => &mut policy.reprobe_millis,
            "settle" => &mut policy.settle_millis,
            "settle_max" => &mut policy.settle_max_millis,
            "report_every" => &mut policy.report_every_millis,
            "report_soon" => &mut policy.report_soon_millis,
            "client_deadline" => &mut times.client_deadline_millis,
            "reexec_check" => &mut times.reexec_check_millis,
            "release_after" => &mut times.release_after_millis,
            _ => {
                unknown.push(item.to_string());
                continue;
            }
        };
        *slot = millis;
    }
    (times, unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_set_their_time_and_the_rest_keep_the_default() {
        let (times, unknown) = parse("rapid_restart=300,kill_after=250,client_deadline=900");
        assert_eq!(times.policy.rapid_restart_millis, 300);
        assert_eq!(times.policy.kill_after_millis, 250);
        assert_eq!(times.client_deadline_millis, 900);
        assert_eq!(times.policy.settle_millis, Policy::default().settle_millis);
        assert!(unknown.is_empty());
    }

    #[test]
    fn nonsense_is_returned_and_changes_nothing() {
        let (times, unknown) = parse("rapid=1,kill_after=soon,settle");
        assert_eq!(times, Times::default());
        assert_eq!(unknown, ["rapid=1", "kill_after=soon", "settle"]);
    }
}
