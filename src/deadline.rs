//! Coarse deadlines for socket operations: one timer wheel per worker thread, turned every
//! `TICK` by one task, instead of one runtime timer per operation.
//!
//! A request takes four or five bounded operations; with a runtime timer each, arming and
//! disarming them (a B-tree insert and remove, a clock read) was ~6 % of ringlb's CPU in scenario
//! (a). Here arming is a slab slot, a read of the coarse monotonic clock (vDSO, no system call)
//! and a push onto one of the wheel's buckets, and disarming frees the slot.
//!
//! Owns: this thread's wheel. Must never: fire a deadline early (an operation gets at least its
//! limit; it may get up to three ticks more, plus however late the turning task runs). A deadline
//! is armed from the clock, not from the wheel's own count of turned ticks: that count lags when
//! the turning task runs late, and a deadline armed from it would fire early at the next turn.
//! Invariant: the buckets hold exactly the armed, unfired deadlines (disarming removes its
//! entry), so a finished operation is never woken; the slots a burst grew stay until `trim` (run
//! when a burst of parking has passed, `core::release_when_quiet`).
//! A loop that reads towards one deadline asks `left` before each read (`stream::read_more_by`
//! does it for a `Stream`) and stops once it has passed (a single write after it, such as a last
//! flush, may still be tried).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// The wheel's resolution.
pub const TICK: Duration = Duration::from_millis(50);
/// Buckets in the wheel (51.2 s); longer deadlines wait for the wheel to come round again.
const BUCKETS: usize = 1024;
/// Capacity a bucket keeps when trimmed (`trim`): 1,024 of them.
const BUCKET_KEEP: usize = 4;

/// The operation did not finish within its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

struct Slot {
    /// Tick at which it fires.
    due: u64,
    fired: bool,
    waker: Option<Waker>,
    /// Where the slot's index sits in `buckets` while it has not fired.
    pos: u32,
}

struct Wheel {
    /// The coarse clock's reading (ns) when the wheel was made.
    started: u64,
    /// Ticks turned so far.
    now: u64,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Indices of armed, unfired slots, by due tick modulo `BUCKETS`.
    buckets: Vec<Vec<u32>>,
    /// A spare bucket, swapped in while one is turned.
    scratch: Vec<u32>,
}

thread_local! {
    static WHEEL: RefCell<Wheel> = RefCell::new(Wheel {
        started: coarse_ns(),
        now: 0,
        slots: Vec::new(),
        free: Vec::new(),
        buckets: (0..BUCKETS).map(|_| Vec::new()).collect(),
        scratch: Vec::new(),
    });
}

/// The coarse monotonic clock, in ns (resolution of a jiffy, a few ms: far below `TICK`).
fn coarse_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// `TICK` in ns.
const TICK_NS: u64 = TICK.as_nanos() as u64;
/// `TICK` in ms.
const TICK_MS: u64 = TICK.as_millis() as u64;

/// `limit` in whole ms (what is under a ms dropped, as `as_millis` does), in ticks rounded up.
/// In u64: `as_millis` is a u128, whose division was a third of arming's instructions. Saturates
/// only past 584 million years (configured limits are at most a year).
fn limit_ticks(limit: Duration) -> u64 {
    let ms = limit
        .as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from(limit.subsec_millis()));
    ms.div_ceil(TICK_MS)
}

impl Wheel {
    /// The tick the clock is in at `now` (ns of the coarse clock).
    fn tick_of(&self, now: u64) -> u64 {
        now.saturating_sub(self.started) / TICK_NS
    }

    fn arm(&mut self, limit: Duration) -> u32 {
        let now = self.tick_of(coarse_ns());
        self.arm_at(limit, now)
    }

    /// Arms a deadline `limit` after a moment in tick `now` (read from the clock).
    fn arm_at(&mut self, limit: Duration, now: u64) -> u32 {
        // Fires once the clock reaches tick `due`: at least `limit_ticks` whole ticks after the
        // end of the arming tick, and one more tick of margin for the coarse clock's jitter.
        let due = now
            .max(self.now)
            .saturating_add(limit_ticks(limit))
            .saturating_add(2);
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot {
                due: 0,
                fired: false,
                waker: None,
                pos: 0,
            });
            (self.slots.len() - 1) as u32
        });
        let bucket = &mut self.buckets[due as usize % BUCKETS];
        let slot = &mut self.slots[index as usize];
        slot.due = due;
        slot.fired = false;
        slot.pos = bucket.len() as u32;
        bucket.push(index);
        index
    }

    fn disarm(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        slot.waker = None;
        if !slot.fired {
            let (pos, bucket) = (slot.pos as usize, slot.due as usize % BUCKETS);
            let bucket = &mut self.buckets[bucket];
            bucket.swap_remove(pos);
            if let Some(&moved) = bucket.get(pos) {
                self.slots[moved as usize].pos = pos as u32;
            }
        }
        self.free.push(index);
    }

    /// Turns the wheel to `now`, firing every deadline that is due.
    fn turn(&mut self, now: u64) {
        let target = self.tick_of(now);
        while self.now < target {
            self.now += 1;
            let tick = self.now;
            let b = tick as usize % BUCKETS;
            let due_here =
                std::mem::replace(&mut self.buckets[b], std::mem::take(&mut self.scratch));
            for &index in &due_here {
                let slot = &mut self.slots[index as usize];
                if slot.due > tick {
                    // A later round of the wheel.
                    slot.pos = self.buckets[b].len() as u32;
                    self.buckets[b].push(index);
                } else {
                    slot.fired = true;
                    if let Some(w) = slot.waker.take() {
                        w.wake();
                    }
                }
            }
            self.scratch = due_here;
            self.scratch.clear();
        }
    }

    /// Gives back the slots and bucket capacity a burst left (`slab::trim`).
    fn trim(&mut self) {
        crate::slab::trim(&mut self.slots, &mut self.free, |i| i as usize);
        for b in self.buckets.iter_mut().chain([&mut self.scratch]) {
            crate::slab::shrink(b, BUCKET_KEEP);
        }
    }

    #[cfg(test)]
    fn armed(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum()
    }
}

/// Completes once `limit` has passed (measured by this thread's wheel).
struct Expiry {
    index: u32,
}

impl Expiry {
    fn new(limit: Duration) -> Expiry {
        Expiry {
            index: WHEEL.with_borrow_mut(|w| w.arm(limit)),
        }
    }
}

impl Future for Expiry {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        WHEEL.with_borrow_mut(|w| {
            let slot = &mut w.slots[self.index as usize];
            if slot.fired {
                return Poll::Ready(());
            }
            match &mut slot.waker {
                Some(existing) if existing.will_wake(cx.waker()) => {}
                waker => *waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
    }
}

impl Drop for Expiry {
    fn drop(&mut self) {
        // During thread teardown the wheel may already be gone; then there is nothing to free.
        let _ = WHEEL.try_with(|w| {
            if let Ok(mut w) = w.try_borrow_mut() {
                w.disarm(self.index);
            }
        });
    }
}

/// Runs `op` for at most `limit`, counted from this call; when the limit passes first, `op` is
/// dropped (a compio operation is then cancelled in the kernel). Await it where it is made.
pub fn timeout<F: Future>(limit: Duration, op: F) -> Timeout<F> {
    Timeout {
        op,
        expiry: Expiry::new(limit),
    }
}

pin_project_lite::pin_project! {
    /// `timeout`'s future: the operation, polled first, and its deadline. A plain struct rather
    /// than an `async fn` over `select`: the operation is moved once (into it), not three times,
    /// and no state machine wraps the two (~80 instructions less per operation; a small request
    /// makes about four).
    #[must_use = "armed when made: await it at once"]
    pub struct Timeout<F> {
        #[pin]
        op: F,
        expiry: Expiry,
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.op.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        Pin::new(this.expiry).poll(cx).map(|()| Err(Elapsed))
    }
}

/// Gives back what a burst of deadlines left in this thread's wheel (O(slots + buckets): for a
/// core that has gone quiet, never on the request path).
pub fn trim() {
    WHEEL.with_borrow_mut(Wheel::trim);
}

/// What is left until `until`, or `None` once it has passed: for loops that read piece by piece
/// towards one deadline. Such a loop must stop at `None` rather than read once more with a zero
/// limit, which this wheel rounds up to two ticks: a peer sending a piece every tick could then
/// keep it reading for ever.
pub fn left(until: std::time::Instant) -> Option<Duration> {
    let left = until.saturating_duration_since(std::time::Instant::now());
    (!left.is_zero()).then_some(left)
}

/// Completes once `limit` has passed, counted from this call.
pub fn sleep(limit: Duration) -> impl Future<Output = ()> {
    Expiry::new(limit)
}

/// Turns this thread's wheel every `TICK`, forever: spawn it once on every worker.
pub async fn turn_wheel() {
    loop {
        compio::time::sleep(TICK).await;
        WHEEL.with_borrow_mut(|w| w.turn(coarse_ns()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fired(index: u32) -> bool {
        WHEEL.with_borrow(|w| w.slots[index as usize].fired)
    }

    /// Arms as if the clock were where the wheel's count is (the tests turn the wheel by hand).
    fn arm(limit: Duration) -> u32 {
        WHEEL.with_borrow_mut(|w| {
            let now = w.now;
            w.arm_at(limit, now)
        })
    }

    fn disarm(index: u32) {
        WHEEL.with_borrow_mut(|w| w.disarm(index))
    }

    fn turn_by(d: Duration) {
        WHEEL.with_borrow_mut(|w| {
            let now = w.started + TICK_NS * w.now + d.as_nanos() as u64;
            w.turn(now)
        });
    }

    #[test]
    fn a_timeout_gives_the_operation_s_output_first_and_elapsed_once_its_limit_passed() {
        use std::cell::Cell;
        use std::rc::Rc;
        let mut cx = Context::from_waker(Waker::noop());
        let armed = || WHEEL.with_borrow(|w| w.armed());
        // Ready at once: its output, and nothing left armed once it is dropped.
        let mut t = Box::pin(timeout(Duration::from_secs(1), std::future::ready(7)));
        assert_eq!(t.as_mut().poll(&mut cx), Poll::Ready(Ok(7)));
        drop(t);
        assert_eq!(armed(), 0);
        // Never ready: `Elapsed` once the limit passed, not before; the operation is dropped with
        // the timeout.
        struct Dropped(Rc<Cell<bool>>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                self.0.set(true);
            }
        }
        let dropped = Rc::new(Cell::new(false));
        let guard = Dropped(dropped.clone());
        let op = async move {
            let _guard = guard;
            std::future::pending::<()>().await
        };
        let mut t = Box::pin(timeout(Duration::from_millis(200), op));
        assert!(t.as_mut().poll(&mut cx).is_pending());
        turn_by(Duration::from_millis(199));
        assert!(
            t.as_mut().poll(&mut cx).is_pending(),
            "not before its limit"
        );
        turn_by(Duration::from_secs(2));
        assert_eq!(t.as_mut().poll(&mut cx), Poll::Ready(Err(Elapsed)));
        assert!(!dropped.get());
        drop(t);
        assert!(dropped.get() && armed() == 0);
        // Both ready: the operation comes first.
        let mut t = Box::pin(timeout(Duration::from_millis(50), std::future::ready(1)));
        turn_by(Duration::from_millis(500));
        assert_eq!(t.as_mut().poll(&mut cx), Poll::Ready(Ok(1)));
    }

    #[test]
    fn limits_become_the_ticks_a_u128_division_gives() {
        let old = |d: Duration| u64::try_from(d.as_millis().div_ceil(TICK.as_millis())).unwrap();
        let edges = [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_micros(999),
            Duration::from_nanos(49_999_999),
            TICK,
            TICK + Duration::from_nanos(1),
            Duration::from_secs(365 * 24 * 3600),
            Duration::from_secs(u64::MAX / 1000),
        ];
        let mut rng = crate::test_rng::Rng(0x2545_f491_4f6c_dd1d);
        let random = (0..5000).map(|_| {
            let secs = rng.next() >> rng.below(64);
            Duration::new(secs % (u64::MAX / 1000), rng.below(1_000_000_000) as u32)
        });
        for d in edges.into_iter().chain(random) {
            assert_eq!(limit_ticks(d), old(d), "{d:?}");
        }
        // Past that, it saturates (the old formula did not): never reached from a configuration.
        assert!(limit_ticks(Duration::MAX) >= u64::MAX / 1000 / TICK_MS);
    }

    #[test]
    fn a_deadline_fires_after_its_limit_and_never_before() {
        let index = arm(Duration::from_millis(120));
        turn_by(Duration::from_millis(100));
        assert!(!fired(index), "fired early");
        turn_by(Duration::from_millis(150));
        assert!(fired(index), "not fired within three ticks of its limit");
        disarm(index);
    }

    /// Defect 13 of issue 9: a wheel whose turning task ran late (its count of turned ticks lags
    /// the clock) armed deadlines from that stale count, and fired them early at the next turn.
    #[test]
    fn a_late_wheel_never_fires_early() {
        WHEEL.with_borrow_mut(|w| {
            let lagging = w.now;
            // The clock is 20 ticks (1 s) ahead of the wheel when a 100 ms deadline is armed.
            let index = w.arm_at(Duration::from_millis(100), lagging + 20);
            let start = w.started;
            // The late turn catches up to the clock, then 50 ms (one tick) more pass.
            w.turn(start + TICK_NS * (lagging + 21));
            assert!(
                !w.slots[index as usize].fired,
                "fired 50 ms into a 100 ms limit"
            );
            w.turn(start + TICK_NS * (lagging + 22) + 49_000_000);
            assert!(
                !w.slots[index as usize].fired,
                "fired 99 ms into a 100 ms limit"
            );
            w.turn(start + TICK_NS * (lagging + 25));
            assert!(
                w.slots[index as usize].fired,
                "not fired within three ticks"
            );
            w.disarm(index);
        });
    }

    #[test]
    fn a_trimmed_wheel_gives_a_burst_back_and_still_fires_what_is_armed() {
        let burst: Vec<u32> = (0..10_000).map(|_| arm(Duration::from_secs(10))).collect();
        // One deadline armed during the burst, at a high index, outlives it.
        let kept = arm(Duration::from_millis(120));
        for &i in &burst {
            disarm(i);
        }
        trim();
        WHEEL.with_borrow(|w| {
            assert_eq!(
                w.slots.len(),
                kept as usize + 1,
                "only the slots up to the armed one"
            );
            let spare: usize = w.buckets.iter().map(|b| b.capacity()).sum();
            assert!(
                spare <= BUCKETS * BUCKET_KEEP + 4,
                "buckets kept {spare} entries"
            );
        });
        // The next deadline takes the lowest free slot, not one next to `kept`.
        let next = arm(Duration::from_secs(1));
        assert_eq!(next, burst.iter().copied().min().unwrap());
        turn_by(Duration::from_millis(250));
        assert!(fired(kept), "the armed deadline fired after the trim");
        assert!(!fired(next));
        disarm(kept);
        disarm(next);
        trim();
        assert!(WHEEL.with_borrow(|w| w.slots.capacity()) <= 64);
    }

    #[test]
    fn a_disarmed_deadline_never_fires_even_when_its_slot_is_reused() {
        let first = arm(Duration::from_millis(50));
        disarm(first);
        let second = arm(Duration::from_secs(5));
        assert_eq!(first, second, "the slot is reused");
        turn_by(Duration::from_millis(500));
        assert!(!fired(second), "the old entry fired the new deadline");
        disarm(second);
    }

    #[test]
    fn disarming_removes_the_entry_so_memory_follows_what_is_armed() {
        let many: Vec<u32> = (0..1000)
            .map(|i| arm(Duration::from_millis(i % 300)))
            .collect();
        assert_eq!(WHEEL.with_borrow(Wheel::armed), 1000);
        // Disarm in an order that moves entries inside the buckets.
        for &i in many.iter().step_by(2).chain(many.iter().skip(1).step_by(2)) {
            disarm(i);
        }
        assert_eq!(WHEEL.with_borrow(Wheel::armed), 0);
        let keep = arm(Duration::from_millis(100));
        let gone = arm(Duration::from_millis(100));
        disarm(gone);
        turn_by(Duration::from_millis(300));
        assert!(fired(keep), "an entry moved by a removal still fires");
        disarm(keep);
    }

    #[test]
    fn deadlines_beyond_one_turn_of_the_wheel_wait_for_their_round() {
        let index = arm(TICK * (BUCKETS as u32 + 10));
        turn_by(TICK * (BUCKETS as u32));
        assert!(!fired(index), "fired a round early");
        turn_by(TICK * 20);
        assert!(fired(index));
        disarm(index);
    }
}
