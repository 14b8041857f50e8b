//! Per-target circuit breaker: `threshold` consecutive failures open it for
//! `cooldown`; then exactly one half-open probe decides whether it closes or re-opens.
//! Time is passed in, so tests never sleep.

use std::time::{Duration, Instant};

/// What the breaker says about attempting a delivery now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead; `probe` marks the single half-open trial.
    Attempt {
        /// Whether this attempt is the half-open probe.
        probe: bool,
    },
    /// Do not attempt before this instant; no retry budget is spent.
    DeferUntil(Instant),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_since: Instant },
}

/// The breaker of one target.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    state: State,
    threshold: u32,
    cooldown: Duration,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(threshold: u32, cooldown: Duration) -> CircuitBreaker {
        CircuitBreaker {
            state: State::Closed { failures: 0 },
            threshold: threshold.max(1),
            cooldown,
        }
    }

    /// Whether an attempt may start at `now`. `probe_wait` is how long a deferred delivery
    /// waits while a half-open probe is out (a little longer than the probe can take).
    pub fn admit(&mut self, now: Instant, probe_wait: Duration) -> Admission {
        if let Some(until) = self.held_back(now, probe_wait) {
            return Admission::DeferUntil(until);
        }
        match self.state {
            State::Closed { .. } => Admission::Attempt { probe: false },
            // The cooldown is over, or a probe never reported (a lost exchange must not
            // wedge the breaker): this attempt is the probe.
            State::Open { .. } | State::HalfOpen { .. } => {
                self.state = State::HalfOpen { probe_since: now };
                Admission::Attempt { probe: true }
            }
        }
    }

    /// Until when attempts are held back at `now`, without changing state; `None` when
    /// [`admit`](Self::admit) would let one through.
    pub fn held_back(&self, now: Instant, probe_wait: Duration) -> Option<Instant> {
        match self.state {
            State::Open { until } if now < until => Some(until),
            State::HalfOpen { probe_since } if now < probe_since + probe_wait => {
                Some(probe_since + probe_wait)
            }
            _ => None,
        }
    }

    /// Records an attempt's result. Results of non-probe attempts that finish while the
    /// breaker is open or half-open are ignored: only the probe decides.
    pub fn record(&mut self, success: bool, probe: bool, now: Instant) {
        self.state = match (self.state, success) {
            (State::Closed { .. }, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 >= self.threshold => State::Open {
                until: now + self.cooldown,
            },
            (State::Closed { failures }, false) => State::Closed {
                failures: failures + 1,
            },
            (State::HalfOpen { .. }, true) if probe => State::Closed { failures: 0 },
            (State::HalfOpen { .. }, false) if probe => State::Open {
                until: now + self.cooldown,
            },
            (other, _) => other,
        };
    }

    /// Whether attempts flow freely.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed { .. })
    }

    /// Until when it stays open (`None`: closed or half-open), for display.
    pub fn open_until(&self) -> Option<Instant> {
        match self.state {
            State::Open { until } => Some(until),
            _ => None,
        }
    }

    /// A number for metrics: 0 closed, 1 open, 2 half-open.
    pub fn gauge(&self) -> f64 {
        match self.state {
            State::Closed { .. } => 0.0,
            State::Open { .. } => 1.0,
            State::HalfOpen { .. } => 2.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(30);
    const WAIT: Duration = Duration::from_secs(10);

    #[test]
    fn opens_after_threshold_then_probes_once() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(5, COOL);
        for _ in 0..4 {
            assert_eq!(b.admit(t0, WAIT), Admission::Attempt { probe: false });
            b.record(false, false, t0);
        }
        assert_eq!(b.admit(t0, WAIT), Admission::Attempt { probe: false });
        b.record(false, false, t0);
        assert_eq!(b.admit(t0, WAIT), Admission::DeferUntil(t0 + COOL));
        let t1 = t0 + COOL;
        assert_eq!(b.admit(t1, WAIT), Admission::Attempt { probe: true });
        // While the probe is out, everything else waits.
        assert_eq!(b.admit(t1, WAIT), Admission::DeferUntil(t1 + WAIT));
        b.record(false, true, t1);
        assert_eq!(b.admit(t1, WAIT), Admission::DeferUntil(t1 + COOL));
        let t2 = t1 + COOL;
        assert_eq!(b.admit(t2, WAIT), Admission::Attempt { probe: true });
        b.record(true, true, t2);
        assert_eq!(b.admit(t2, WAIT), Admission::Attempt { probe: false });
    }

    #[test]
    fn success_resets_the_count() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(3, COOL);
        b.record(false, false, t0);
        b.record(false, false, t0);
        b.record(true, false, t0);
        b.record(false, false, t0);
        b.record(false, false, t0);
        assert_eq!(b.admit(t0, WAIT), Admission::Attempt { probe: false });
    }

    #[test]
    fn late_results_do_not_close_an_open_breaker() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(1, COOL);
        b.record(false, false, t0);
        b.record(true, false, t0);
        assert_eq!(b.admit(t0, WAIT), Admission::DeferUntil(t0 + COOL));
    }
}
