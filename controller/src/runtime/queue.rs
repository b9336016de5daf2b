//! The work queue: object keys waiting for a reconcile, each with the time
//! it is due.
//!
//! - **Dedup**: a key is in the queue at most once. Asking again keeps the
//!   earlier of the two times, so a burst of watch events for one object
//!   becomes one reconcile, and an event always beats a later requeue.
//! - **Never two at once**: a key handed out by [`WorkQueue::next`] is
//!   *active* until [`WorkQueue::done`]. Asking for an active key does not
//!   hand it out again; it is remembered and queued when the running
//!   reconcile finishes, so the change it announced is not lost.
//!
//! Time is tokio's, so tests drive it with `tokio::time::pause()`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Default)]
struct State {
    /// Waiting keys: when each is due, and the sequence number of its live
    /// heap entry (older entries for the same key are stale and skipped).
    waiting: HashMap<String, (Instant, u64)>,
    heap: BinaryHeap<Reverse<(Instant, u64, String)>>,
    seq: u64,
    /// Keys being reconciled right now.
    active: HashSet<String>,
    /// Asked for while active: queued at this time when the reconcile ends.
    again: HashMap<String, Instant>,
    closed: bool,
}

/// A delay queue of object keys. Meant for one consumer (the runner's
/// dispatch loop) and any number of producers.
#[derive(Default)]
pub struct WorkQueue {
    state: Mutex<State>,
    wake: Notify,
}

impl std::fmt::Debug for WorkQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("WorkQueue")
            .field("waiting", &s.waiting.len())
            .field("active", &s.active.len())
            .finish()
    }
}

impl WorkQueue {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `key` to run now.
    pub fn add(&self, key: &str) {
        self.add_at(key, Instant::now());
    }

    /// Queues `key` to run after `delay`.
    pub fn add_after(&self, key: &str, delay: Duration) {
        self.add_at(key, Instant::now() + delay);
    }

    /// Queues `key` to run at `at`, unless it is already due earlier.
    pub fn add_at(&self, key: &str, at: Instant) {
        let mut s = self.lock();
        if s.closed {
            return;
        }
        if s.active.contains(key) {
            let slot = s.again.entry(key.to_owned()).or_insert(at);
            *slot = (*slot).min(at);
            return;
        }
        if s.waiting.get(key).is_some_and(|(due, _)| *due <= at) {
            return;
        }
        s.seq += 1;
        let seq = s.seq;
        s.waiting.insert(key.to_owned(), (at, seq));
        s.heap.push(Reverse((at, seq, key.to_owned())));
        drop(s);
        self.wake.notify_one();
    }

    /// Waits until a key is due, marks it active and returns it. `None`
    /// once the queue is closed.
    pub async fn next(&self) -> Option<String> {
        loop {
            let wake = self.wake.notified();
            let sleep_until = {
                let mut s = self.lock();
                if s.closed {
                    return None;
                }
                match s.pop_due(Instant::now()) {
                    Ok(key) => return Some(key),
                    Err(next) => next,
                }
            };
            match sleep_until {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = wake => {}
                    }
                }
                None => wake.await,
            }
        }
    }

    /// Ends the reconcile of `key`; queues it again at `next` (the
    /// reconciler's requeue or the error backoff), or earlier if it was asked
    /// for while it ran.
    pub fn done(&self, key: &str, next: Option<Instant>) {
        let again = {
            let mut s = self.lock();
            s.active.remove(key);
            s.again.remove(key)
        };
        let at = match (again, next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(at) = at {
            self.add_at(key, at);
        }
    }

    /// Stops handing out keys: `next` returns `None` from now on.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }

    /// Opens a closed queue again (a controller that took the lease back):
    /// the keys whose reconciles were stopped mid-way are queued, due now.
    pub fn reopen(&self) {
        let keys: Vec<String> = {
            let mut s = self.lock();
            s.closed = false;
            s.again.clear();
            s.active.drain().collect()
        };
        for key in keys {
            self.add(&key);
        }
    }

    /// Keys waiting (not counting active ones).
    pub fn len(&self) -> usize {
        self.lock().waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// When `key` is due, if it is waiting.
    pub fn due(&self, key: &str) -> Option<Instant> {
        self.lock().waiting.get(key).map(|(at, _)| *at)
    }

    pub fn is_active(&self, key: &str) -> bool {
        self.lock().active.contains(key)
    }
}

impl State {
    /// The first due key (now active), or when the first waiting key is due.
    fn pop_due(&mut self, now: Instant) -> Result<String, Option<Instant>> {
        while let Some(Reverse((at, seq, key))) = self.heap.peek() {
            let live = self.waiting.get(key).is_some_and(|(_, s)| s == seq);
            if !live {
                self.heap.pop();
                continue;
            }
            if *at > now {
                return Err(Some(*at));
            }
            let key = key.clone();
            self.heap.pop();
            self.waiting.remove(&key);
            self.active.insert(key.clone());
            return Ok(key);
        }
        Err(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The next key if one is due within `within`.
    async fn next_within(q: &WorkQueue, within: Duration) -> Option<String> {
        tokio::time::timeout(within, q.next()).await.ok().flatten()
    }

    #[tokio::test(start_paused = true)]
    async fn keys_come_out_in_due_order_and_not_before() {
        let q = WorkQueue::new();
        q.add_after("b", ms(200));
        q.add_after("a", ms(100));
        q.add("c");
        let t0 = Instant::now();
        assert_eq!(q.next().await.as_deref(), Some("c"));
        assert_eq!(q.next().await.as_deref(), Some("a"));
        assert_eq!(t0.elapsed(), ms(100));
        assert_eq!(q.next().await.as_deref(), Some("b"));
        assert_eq!(t0.elapsed(), ms(200));
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_waits_once_and_the_earliest_time_wins() {
        let q = WorkQueue::new();
        q.add_after("a", ms(500));
        q.add_after("a", ms(100));
        q.add_after("a", ms(300));
        assert_eq!(q.len(), 1);
        let t0 = Instant::now();
        assert_eq!(q.next().await.as_deref(), Some("a"));
        assert_eq!(t0.elapsed(), ms(100));
        q.done("a", None);
        // The stale heap entries at 300 and 500 ms hand out nothing.
        assert_eq!(next_within(&q, ms(1000)).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_active_key_is_not_handed_out_twice_but_is_not_forgotten() {
        let q = WorkQueue::new();
        q.add("a");
        assert_eq!(q.next().await.as_deref(), Some("a"));
        // Events arrive while "a" is being reconciled.
        q.add("a");
        q.add("a");
        assert!(q.is_active("a"));
        assert_eq!(next_within(&q, ms(50)).await, None, "no second copy");
        // It finishes asking for a requeue in 1 s; the event that came
        // meanwhile wins and it runs again at once.
        let t0 = Instant::now();
        q.done("a", Some(Instant::now() + Duration::from_secs(1)));
        assert_eq!(q.next().await.as_deref(), Some("a"));
        assert_eq!(t0.elapsed(), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_reopened_queue_hands_out_the_keys_stopped_mid_way() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("b");
        let first = q.next().await.expect("a key");
        q.close();
        q.add("c");
        assert!(q.next().await.is_none(), "closed");
        q.reopen();
        let mut got = vec![
            q.next().await.expect("a key"),
            q.next().await.expect("a key"),
        ];
        got.sort();
        let mut want = vec!["a".to_owned(), "b".to_owned()];
        want.retain(|k| *k != first);
        want.push(first);
        want.sort();
        assert_eq!(
            got, want,
            "the active key and the waiting one; not what came while closed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn done_requeues_at_the_requested_time() {
        let q = WorkQueue::new();
        q.add("a");
        assert_eq!(q.next().await.as_deref(), Some("a"));
        let t0 = Instant::now();
        q.done("a", Some(t0 + ms(250)));
        assert_eq!(q.due("a"), Some(t0 + ms(250)));
        assert_eq!(q.next().await.as_deref(), Some("a"));
        assert_eq!(t0.elapsed(), ms(250));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleeping_consumer_wakes_for_an_earlier_key() {
        let q = Arc::new(WorkQueue::new());
        q.add_after("late", Duration::from_secs(10));
        let consumer = {
            let q = q.clone();
            tokio::spawn(async move { q.next().await })
        };
        tokio::time::sleep(ms(10)).await;
        q.add("now");
        let got = consumer.await.expect("join");
        assert_eq!(got.as_deref(), Some("now"));
    }

    #[tokio::test(start_paused = true)]
    async fn close_ends_next() {
        let q = Arc::new(WorkQueue::new());
        let consumer = {
            let q = q.clone();
            tokio::spawn(async move { q.next().await })
        };
        tokio::time::sleep(ms(10)).await;
        q.close();
        assert_eq!(consumer.await.expect("join"), None);
        q.add("x");
        assert!(q.is_empty());
    }
}
