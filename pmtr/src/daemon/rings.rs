//! The last lines each job wrote to its captured output, kept in a
//! bounded ring per job for `pmtr-ctl logs`. Lines are kept as written,
//! in one buffer per job, and made harmless only when asked for: keeping
//! a line costs a copy of its bytes, not an allocation, however fast the
//! job writes.

use std::collections::{HashMap, VecDeque};

use super::log::sanitize;

/// Lines kept per job...
pub const MAX_LINES: usize = 1000;
/// ...and bytes, whichever limit comes first.
pub const MAX_BYTES: usize = 256 * 1024;

/// One job's last lines. Offsets count every byte ever kept, so that
/// dropping the oldest bytes of `data` moves no offset.
#[derive(Default)]
pub struct Ring {
    /// The bytes from offset `base` on; the kept lines start at `start`.
    data: Vec<u8>,
    base: u64,
    start: u64,
    /// (pid, end offset) of each kept line, oldest first.
    lines: VecDeque<(i32, u64)>,
}

impl Ring {
    pub fn push(&mut self, pid: i32, line: &[u8]) {
        self.data.extend_from_slice(line);
        let end = self.base + self.data.len() as u64;
        self.lines.push_back((pid, end));
        while self.lines.len() > MAX_LINES || end - self.start > MAX_BYTES as u64 {
            match self.lines.pop_front() {
                Some((_, old_end)) => self.start = old_end,
                None => break,
            }
        }
        // Drop the bytes no line needs once they outweigh the kept ones:
        // each byte is moved at most once more, the buffer stays under
        // twice the kept bytes.
        let dead = (self.start - self.base) as usize;
        if dead >= 4096 && dead > self.data.len() - dead {
            self.data.drain(..dead);
            self.base = self.start;
        }
    }

    /// The last `count` lines, oldest first, made harmless.
    fn last(&self, count: usize) -> Vec<(i32, String)> {
        let skip = self.lines.len().saturating_sub(count);
        let mut begin = match skip {
            0 => self.start,
            n => self.lines[n - 1].1,
        };
        let mut lines = Vec::with_capacity(self.lines.len() - skip);
        for &(pid, end) in self.lines.iter().skip(skip) {
            let from = (begin - self.base) as usize;
            let to = (end - self.base) as usize;
            lines.push((pid, sanitize(&self.data[from..to])));
            begin = end;
        }
        lines
    }
}

#[derive(Default)]
pub struct Rings {
    jobs: HashMap<String, Ring>,
}

impl Rings {
    /// The ring of `job`, made on first use: look it up once per read,
    /// not per line.
    pub fn of(&mut self, job: &str) -> &mut Ring {
        self.jobs.entry(job.to_string()).or_default()
    }

    /// The last `count` lines of `job`, oldest first.
    pub fn last(&self, job: &str, count: usize) -> Vec<(i32, String)> {
        self.jobs
            .get(job)
            .map_or_else(Vec::new, |ring| ring.last(count))
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
            rings.of("a").push(1, format!("line {i}").as_bytes());
        }
        let last = rings.last("a", 3);
        assert_eq!(
            last.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>(),
            ["line 1007", "line 1008", "line 1009"]
        );
        assert_eq!(rings.last("a", usize::MAX).len(), MAX_LINES);
        assert_eq!(rings.last("a", usize::MAX)[0].1, "line 10");
        assert!(rings.last("b", 5).is_empty());
        let big = "x".repeat(100 * 1024);
        for _ in 0..5 {
            rings.of("big").push(2, big.as_bytes());
        }
        assert_eq!(rings.last("big", 10).len(), 2, "bounded by bytes");
        rings.retain(|name| name == "a");
        assert!(rings.last("big", 10).is_empty());
    }

    /// Many more bytes than the ring keeps: the buffer stays bounded and
    /// the lines read back are the last ones, whole, made harmless.
    #[test]
    fn the_buffer_stays_bounded_and_lines_whole() {
        let mut ring = Ring::default();
        for i in 0..100_000u32 {
            let line = format!("{i:06} \x1b[31m{}", "y".repeat((i % 300) as usize));
            ring.push(7, line.as_bytes());
            assert!(
                ring.data.len() <= 2 * MAX_BYTES + 4096,
                "{}",
                ring.data.len()
            );
        }
        let last = ring.last(2);
        assert_eq!(last[1].0, 7);
        assert!(last[1].1.starts_with("099999 ?[31m"), "{}", last[1].1);
        assert_eq!(last[1].1.len(), 12 + (99_999 % 300));
        assert!(last[0].1.starts_with("099998 "), "{}", last[0].1);
    }
}
