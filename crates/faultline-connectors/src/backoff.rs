//! [`Backoff`], the one retry schedule: the Railway requests and live stream, journalctl
//! restarts and the notification outbox each pick their numbers, not their own arithmetic.

use std::time::Duration;

/// Exponential waits: `first`, multiplied by `factor` after each further failure, never above
/// `max`, plus a random part of up to `jitter` × the wait, so several instances that failed
/// together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub first: Duration,
    pub factor: f64,
    pub max: Duration,
    /// 0.0 (none) to 1.0.
    pub jitter: f64,
}

impl Backoff {
    /// The wait after failure number `n` (1 = the first failure).
    pub fn wait(&self, n: u32) -> Duration {
        let grown = self.first.as_secs_f64() * self.factor.powi(n.saturating_sub(1).min(64) as i32);
        let base = Duration::from_secs_f64(grown.min(self.max.as_secs_f64()));
        if self.jitter <= 0.0 {
            return base;
        }
        base + base.mul_f64(self.jitter.min(1.0) * fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_by_its_factor_up_to_its_maximum_and_jitter_only_adds() {
        let b = Backoff {
            first: Duration::from_secs(2),
            factor: 2.0,
            max: Duration::from_secs(900),
            jitter: 0.0,
        };
        let secs: Vec<u64> = [1, 2, 3, 9, 10, 40, u32::MAX].iter().map(|n| b.wait(*n).as_secs()).collect();
        assert_eq!(secs, [2, 4, 8, 512, 900, 900, 900]);
        let jittered = Backoff { jitter: 0.5, ..b };
        for n in 1..12 {
            let w = jittered.wait(n);
            assert!(w >= b.wait(n) && w <= b.wait(n).mul_f64(1.5), "{n}: {w:?}");
        }
    }
}
