//! [`Backoff`]: the reconnect schedule of a client (docs/protocol.md): 100 ms doubling to 10 s, each wait
//! jittered by ±50 % so many clients cut off together do not come back together.

use std::time::Duration;

/// Jittered exponential backoff.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(10);

    /// A schedule starting at 100 ms.
    pub fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    /// The next wait (jittered), doubling the base for the one after.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next.mul_f64(rand::random_range(0.5..1.5));
        self.next = (self.next * 2).min(Self::MAX);
        wait
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_the_cap() {
        let mut b = Backoff::new();
        let first = b.next_wait();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(150));
        for _ in 0..20 {
            b.next_wait();
        }
        let late = b.next_wait();
        assert!(late >= Duration::from_secs(5) && late <= Duration::from_secs(15));
    }
}
