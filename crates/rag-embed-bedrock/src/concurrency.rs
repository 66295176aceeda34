//! How many calls are in flight: a bound that halves when the service
//! throttles and grows by one after as many successes in a row as it allows
//! (additive increase, multiplicative decrease), so a run settles at what the
//! account's quota takes instead of spending its retries.

use std::sync::Mutex;

use tokio::sync::Notify;

/// The bound and the calls holding it.
#[derive(Debug)]
pub struct AdaptiveConcurrency {
    ceiling: usize,
    state: Mutex<State>,
    freed: Notify,
}

#[derive(Debug)]
struct State {
    limit: usize,
    in_flight: usize,
    successes: usize,
    /// Calls started so far.
    started: u64,
    /// `started` at the last cut: calls begun before it were sent under the
    /// old bound, and their refusals are the same signal.
    cut_at: u64,
}

/// A call's place; gives it back when dropped.
#[derive(Debug)]
pub struct Slot<'a>(&'a AdaptiveConcurrency, u64);

impl Slot<'_> {
    /// When the call started, for [`AdaptiveConcurrency::throttled`].
    pub fn started(&self) -> u64 {
        self.1
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.lock().in_flight -= 1;
        self.0.freed.notify_waiters();
    }
}

impl AdaptiveConcurrency {
    /// Up to `ceiling` calls at once, starting there.
    pub fn new(ceiling: usize) -> Self {
        let ceiling = ceiling.max(1);
        let state = State { limit: ceiling, in_flight: 0, successes: 0, started: 0, cut_at: 0 };
        Self { ceiling, state: Mutex::new(state), freed: Notify::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Calls allowed at once now.
    pub fn limit(&self) -> usize {
        self.lock().limit
    }

    /// Waits for a place under the bound.
    pub async fn acquire(&self) -> Slot<'_> {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut state = self.lock();
                if state.in_flight < state.limit {
                    state.in_flight += 1;
                    state.started += 1;
                    return Slot(self, state.started);
                }
            }
            freed.await;
        }
    }

    /// A call succeeded: after `limit` in a row, one more is allowed.
    pub fn succeeded(&self) {
        let mut state = self.lock();
        state.successes += 1;
        if state.successes >= state.limit && state.limit < self.ceiling {
            state.limit += 1;
            state.successes = 0;
            drop(state);
            self.freed.notify_waiters();
        }
    }

    /// The service throttled the call that started at `started` ([`Slot::started`]):
    /// half as many at once (at least one). Calls sent before the last cut
    /// were refused for the same crowd, and do not cut again.
    pub fn throttled(&self, started: u64) {
        let mut state = self.lock();
        if started > state.cut_at {
            state.limit = (state.limit / 2).max(1);
            state.cut_at = state.started;
        }
        state.successes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_bound_halves_on_throttling_and_grows_back_one_at_a_time() {
        let gate = AdaptiveConcurrency::new(8);
        let slots: Vec<Slot<'_>> = futures::future::join_all((0..8).map(|_| gate.acquire())).await;
        let started: Vec<u64> = slots.iter().map(Slot::started).collect();
        drop(slots);
        // Eight refused together: one cut, not eight.
        for s in &started {
            gate.throttled(*s);
        }
        assert_eq!(gate.limit(), 4);
        // A call sent after the cut and refused too: cut again.
        let later = gate.acquire().await.started();
        gate.throttled(later);
        assert_eq!(gate.limit(), 2);
        for _ in 0..2 {
            gate.succeeded();
        }
        assert_eq!(gate.limit(), 3);
        for _ in 0..3 {
            gate.succeeded();
        }
        assert_eq!(gate.limit(), 4);
        for _ in 0..100 {
            gate.succeeded();
        }
        assert_eq!(gate.limit(), 8, "never above the ceiling");
    }

    #[tokio::test]
    async fn a_caller_waits_until_a_place_is_free() {
        let gate = std::sync::Arc::new(AdaptiveConcurrency::new(1));
        let first = gate.acquire().await;
        let waiting = {
            let gate = gate.clone();
            tokio::spawn(async move {
                let _slot = gate.acquire().await;
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        drop(first);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await.unwrap().unwrap();
    }
}
