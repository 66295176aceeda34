//! How fast this client writes to an index: a token bucket whose rate adapts
//! to the service's answers (additive increase, multiplicative decrease, as
//! TCP shares a link).
//!
//! S3 Vectors allows 2,500 vectors and 1,000 write requests a second per
//! index, shared by every writer of that index. One writer alone runs at the
//! configured ceiling; when the service answers 429, the rate is halved (once
//! per [`CUT_SPACING`], however many requests in flight were refused
//! together) and then climbs back by [`RECOVERY_PER_SECOND`] of the ceiling
//! for each second without a refusal. Two or three writers that share an
//! index thus settle at about their share of it, slower but without running
//! out of retries.

use std::time::{Duration, Instant};

/// Shortest time between two cuts: the requests refused together are one
/// signal, not many.
pub const CUT_SPACING: Duration = Duration::from_millis(250);
/// Share of the ceiling the rate regains per second without a refusal.
pub const RECOVERY_PER_SECOND: f64 = 0.05;
/// The rate never goes below this share of the ceiling (at 2,400 vectors a
/// second: 37.5), so a run always moves.
pub const FLOOR_SHARE: f64 = 1.0 / 64.0;
/// Write requests a second per index that the service allows.
pub const MAX_WRITE_REQUESTS_PER_SECOND: f64 = 1_000.0;

/// The rate and tokens of one client's writes, as plain arithmetic on the
/// times it is given (so it is tested without a clock).
#[derive(Debug, Clone)]
pub struct AdaptiveRate {
    ceiling: f64,
    /// Rate right after the last cut (the ceiling when there was none).
    base: f64,
    last_cut: Option<Instant>,
    tokens: f64,
    refilled: Instant,
}

impl AdaptiveRate {
    /// A full bucket at `ceiling` vectors a second.
    pub fn new(ceiling: f64, now: Instant) -> Self {
        Self { ceiling, base: ceiling, last_cut: None, tokens: ceiling, refilled: now }
    }

    /// Vectors a second allowed at `now`.
    pub fn rate(&self, now: Instant) -> f64 {
        match self.last_cut {
            None => self.ceiling,
            Some(cut) => {
                let since = now.saturating_duration_since(cut).as_secs_f64();
                (self.base + self.ceiling * RECOVERY_PER_SECOND * since).min(self.ceiling)
            }
        }
    }

    /// What a request of `vectors` costs: its vectors, and at least its share
    /// of the request limit.
    pub fn cost(&self, vectors: usize) -> f64 {
        (vectors as f64).max(self.ceiling / MAX_WRITE_REQUESTS_PER_SECOND)
    }

    /// Takes the tokens of a request of `vectors` if they are there at `now`
    /// (`None`), or says how long to wait before asking again. A request
    /// larger than a second's budget goes when the bucket is full and leaves
    /// it in debt.
    pub fn try_take(&mut self, vectors: usize, now: Instant) -> Option<Duration> {
        let rate = self.rate(now);
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.refilled = now;
        let want = self.cost(vectors);
        let needed = want.min(rate);
        if self.tokens >= needed {
            self.tokens -= want;
            None
        } else {
            Some(Duration::from_secs_f64((needed - self.tokens) / rate))
        }
    }

    /// The service refused a write for its rate at `now`: halve the rate
    /// (unless it was cut within [`CUT_SPACING`]) and empty the bucket, so
    /// the retries wait their turn.
    pub fn throttled(&mut self, now: Instant) {
        if self.last_cut.is_some_and(|cut| now.saturating_duration_since(cut) < CUT_SPACING) {
            return;
        }
        let floor = self.ceiling * FLOOR_SHARE;
        self.base = (self.rate(now) / 2.0).max(floor);
        self.last_cut = Some(now);
        self.tokens = self.tokens.min(0.0);
        self.refilled = now;
    }
}

/// [`AdaptiveRate`] on the clock, shared by every write of a backend.
#[derive(Debug)]
pub struct RateLimiter {
    state: Option<tokio::sync::Mutex<AdaptiveRate>>,
}

impl RateLimiter {
    /// A limiter at most `per_second` vectors a second; zero, negative or
    /// infinite is no limit.
    pub fn new(per_second: f64) -> Self {
        let usable = per_second.is_finite() && per_second > 0.0;
        Self { state: usable.then(|| tokio::sync::Mutex::new(AdaptiveRate::new(per_second, Instant::now()))) }
    }

    /// Waits until a request of `vectors` may be sent.
    pub async fn acquire(&self, vectors: usize) {
        let Some(state) = &self.state else { return };
        loop {
            let wait = state.lock().await.try_take(vectors, Instant::now());
            match wait {
                None => return,
                Some(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// The service said the index is written too fast.
    pub async fn throttled(&self) {
        if let Some(state) = &self.state {
            let mut state = state.lock().await;
            state.throttled(Instant::now());
            tracing::debug!(rate = state.rate(Instant::now()), "S3 Vectors throttled a write; slowing down");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, seconds: f64) -> Instant {
        start + Duration::from_secs_f64(seconds)
    }

    fn assert_close(actual: f64, expected: f64) {
        assert!((actual - expected).abs() < 1e-6, "{actual} is not {expected}");
    }

    #[test]
    fn a_full_bucket_spends_then_waits_in_proportion() {
        let t0 = Instant::now();
        let mut rate = AdaptiveRate::new(1_000.0, t0);
        assert_eq!(rate.try_take(500, t0), None);
        assert_eq!(rate.try_take(500, t0), None);
        // Empty: 500 more take half a second at 1,000 a second.
        assert_close(rate.try_take(500, t0).unwrap().as_secs_f64(), 0.5);
        assert_eq!(rate.try_take(500, at(t0, 0.5)), None);
    }

    #[test]
    fn a_request_costs_at_least_its_share_of_the_request_limit() {
        let t0 = Instant::now();
        let mut rate = AdaptiveRate::new(2_500.0, t0);
        assert_eq!(rate.cost(1), 2.5);
        assert_eq!(rate.cost(500), 500.0);
        // 1,000 one-key deletes empty a second's budget: no more than the service takes.
        for _ in 0..1_000 {
            assert_eq!(rate.try_take(1, t0), None);
        }
        assert!(rate.try_take(1, t0).is_some());
    }

    #[test]
    fn a_refusal_halves_the_rate_once_per_spacing_and_the_rate_climbs_back() {
        let t0 = Instant::now();
        let mut rate = AdaptiveRate::new(2_000.0, t0);
        rate.throttled(t0);
        assert_close(rate.rate(t0), 1_000.0);
        // Eight requests refused together are one signal.
        for _ in 0..8 {
            rate.throttled(at(t0, 0.01));
        }
        assert_close(rate.rate(at(t0, 0.01)), 1_000.0 + 2_000.0 * RECOVERY_PER_SECOND * 0.01);
        // Refused again later: halved again, from where it had climbed.
        rate.throttled(at(t0, 1.0));
        assert_close(rate.rate(at(t0, 1.0)), (1_000.0 + 100.0) / 2.0);
        // Ten quiet seconds later: 550 + 10 x 100.
        assert_close(rate.rate(at(t0, 11.0)), 1_550.0);
        // Never above the ceiling.
        assert_close(rate.rate(at(t0, 1_000.0)), 2_000.0);
    }

    #[test]
    fn the_rate_has_a_floor_and_a_refusal_empties_the_bucket() {
        let t0 = Instant::now();
        let mut rate = AdaptiveRate::new(640.0, t0);
        // Refused every 0.3 s: it would settle near 9.6 a second without a floor.
        for i in 0..40 {
            rate.throttled(at(t0, f64::from(i) * 0.3));
        }
        let now = at(t0, 39.0 * 0.3);
        assert_close(rate.rate(now), 640.0 * FLOOR_SHARE);
        // The bucket was full before the refusals; now a request waits.
        assert!(rate.try_take(10, now).is_some());
    }

    #[test]
    fn the_rate_under_steady_refusals_stays_below_the_limit_it_meets() {
        // A service that takes 600 a second from this client: every second
        // this client asks for more, it is refused and cut.
        let t0 = Instant::now();
        let mut rate = AdaptiveRate::new(2_400.0, t0);
        let mut sent_in_last_second: std::collections::VecDeque<(f64, usize)> = Default::default();
        let mut refused = 0;
        let mut sent = 0;
        let mut now = 0.0;
        while now < 60.0 {
            match rate.try_take(100, at(t0, now)) {
                Some(wait) => now += wait.as_secs_f64(),
                None => {
                    while sent_in_last_second.front().is_some_and(|(t, _)| now - t >= 1.0) {
                        sent_in_last_second.pop_front();
                    }
                    let recent: usize = sent_in_last_second.iter().map(|(_, n)| n).sum();
                    if recent + 100 > 600 {
                        refused += 1;
                        rate.throttled(at(t0, now));
                    } else {
                        sent += 100;
                        sent_in_last_second.push_back((now, 100));
                    }
                }
            }
        }
        // Most of the limit is used and few requests are refused.
        let (accepted, per_second) = (sent / 100, sent as f64 / 60.0);
        eprintln!("{per_second} vectors a second, {refused} refused, {accepted} accepted");
        assert!(per_second > 300.0, "{sent} vectors in 60 s");
        assert!(refused * 4 < accepted, "{refused} refused of {accepted} accepted");
    }
}
