//! The last lines each job wrote to its captured output, kept in a
//! bounded ring per job for `pmtr-ctl logs`.

use std::collections::{HashMap, VecDeque};

/// Lines kept per job...
pub const MAX_LINES: usize = 1000;
/// ...and bytes, whichever limit comes first.
pub const MAX_BYTES: usize = 256 * 1024;

#[derive(Default)]
struct Ring {
    lines: VecDeque<(i32, String)>,
    bytes: usize,
}

#[derive(Default)]
pub struct Rings {
    jobs: HashMap<String, Ring>,
}

impl Rings {
    pub fn push(&mut self, job: &str, pid: i32, line: &str) {
        let ring = match self.jobs.get_mut(job) {
            Some(ring) => ring,
            None => self.jobs.entry(job.to_string()).or_default(),
        };
        ring.bytes += line.len();
        ring.lines.push_back((pid, line.to_string()));
        while ring.lines.len() > MAX_LINES || ring.bytes > MAX_BYTES {
            match ring.lines.pop_front() {
                Some((_, old)) => ring.bytes -= old.len(),
                None => break,
            }
        }
    }

    /// The last `count` lines of `job`, oldest first.
    pub fn last(&self, job: &str, count: usize) -> Vec<(i32, String)> {
        self.jobs.get(job).map_or_else(Vec::new, |ring| {
            let skip = ring.lines.len().saturating_sub(count);
            ring.lines.iter().skip(skip).cloned().collect()
        })
    }

    /// Forgets jobs that no longer exist.
    pub fn retain(&mut self, exists: impl Fn(&str) -> bool) {
        self.jobs.retain(|name, _| exists(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines_within_bounds() {
        let mut rings = Rings::default();
        for i in 0..(MAX_LINES + 10) {
            rings.push("a", 1, &format!("line {i}"));
        }
        let last = rings.last("a", 3);
        assert_eq!(
            last.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>(),
            ["line 1007", "line 1008", "line 1009"]
        );
        assert_eq!(rings.last("a", usize::MAX).len(), MAX_LINES);
        assert!(rings.last("b", 5).is_empty());
        let big = "x".repeat(100 * 1024);
        for _ in 0..5 {
            rings.push("big", 2, &big);
        }
        assert_eq!(rings.last("big", 10).len(), 2, "bounded by bytes");
        rings.retain(|name| name == "a");
        assert!(rings.last("big", 10).is_empty());
    }
}
