//! Monotonic time as the core sees it: milliseconds since an arbitrary
//! start, handed in by the shell with every event. The core never reads a
//! clock, so tests drive it with any `now` they like.

use std::fmt;

/// A point on the monotonic clock, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mono(u64);

impl Mono {
    pub const ZERO: Mono = Mono(0);

    pub const fn from_millis(ms: u64) -> Mono {
        Mono(ms)
    }

    pub const fn from_secs(secs: u64) -> Mono {
        Mono(secs.saturating_mul(1000))
    }

    pub const fn millis(self) -> u64 {
        self.0
    }

    pub const fn plus_millis(self, ms: u64) -> Mono {
        Mono(self.0.saturating_add(ms))
    }

    pub const fn plus_secs(self, secs: u64) -> Mono {
        self.plus_millis(secs.saturating_mul(1000))
    }

    /// Milliseconds from `earlier` to `self`; zero if `earlier` is later.
    pub const fn millis_since(self, earlier: Mono) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Mono {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}s", self.0 / 1000, self.0 % 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Mono::from_secs(10);
        assert_eq!(t.plus_secs(5).millis(), 15_000);
        assert_eq!(t.millis_since(Mono::from_secs(4)), 6_000);
        assert_eq!(Mono::ZERO.millis_since(t), 0);
        assert_eq!(
            Mono::from_millis(u64::MAX).plus_millis(1).millis(),
            u64::MAX
        );
        assert_eq!(Mono::from_millis(1500).to_string(), "1.500s");
    }
}
