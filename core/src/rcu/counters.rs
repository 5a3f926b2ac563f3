//! Per-thread call counters: the call path counts in its own thread's
//! record, with a plain load and store of a cell no other thread writes
//! (no locked instruction, no shared cache line), and [`sum`] adds the cells
//! of every thread.
//!
//! Each method slot gets a counter id, an index into every thread's table
//! of cells; a table grows (on its own thread, under the record list's
//! lock) the first time the thread counts an id beyond it. When a thread
//! exits its cells are folded into the slots' [`Totals`]; when a slot is
//! freed its id's cells are zeroed in every table before the id is reused.
//! Summing, folding, zeroing and growing all hold the record list's lock,
//! so a sum never misses or double-counts an exiting thread.
//!
//! The one inexactness: a call made from a signal handler that interrupts
//! its own thread between the load and the store of the same cell loses
//! one count (the price of not using a locked instruction). A thread's
//! first call of a method grows its table under a lock, which a signal
//! handler must not interrupt: a handler should only call methods its
//! thread has called before.

use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use super::Reader;

/// Counts of threads that have exited (and of calls made on threads being
/// torn down), per counter id.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    calls: AtomicU64,
    errors: AtomicU64,
    panics: AtomicU64,
}

#[derive(Default)]
struct Cells {
    calls: AtomicU64,
    errors: AtomicU64,
    panics: AtomicU64,
}

/// One thread's cells, indexed by counter id.
pub(crate) struct Table {
    ptr: AtomicPtr<Cells>,
    len: AtomicUsize,
}

impl Table {
    pub(super) fn new() -> Table {
        Table { ptr: AtomicPtr::new(std::ptr::null_mut()), len: AtomicUsize::new(0) }
    }

    /// The cells, for the owning thread or a holder of the record list's lock.
    #[inline(always)]
    fn cells(&self) -> &[Cells] {
        let p = self.ptr.load(Relaxed);
        if p.is_null() {
            return &[];
        }
        // SAFETY: ptr/len describe a boxed slice replaced (and freed) only by
        // the owning thread under the record list's lock; callers are that
        // thread or hold that lock.
        unsafe { std::slice::from_raw_parts(p, self.len.load(Relaxed)) }
    }

    /// Replaces the cells with a copy at least `want` long. Caller: the
    /// owning thread, holding the record list's lock.
    fn grow(&self, want: usize) {
        let old = self.cells();
        let len = want.max(old.len() * 2).max(8);
        let new: Box<[Cells]> = (0..len)
            .map(|i| {
                let c = Cells::default();
                if let Some(o) = old.get(i) {
                    c.calls.store(o.calls.load(Relaxed), Relaxed);
                    c.errors.store(o.errors.load(Relaxed), Relaxed);
                    c.panics.store(o.panics.load(Relaxed), Relaxed);
                }
                c
            })
            .collect();
        let old_ptr = self.ptr.load(Relaxed);
        let old_len = old.len();
        self.ptr.store(Box::into_raw(new) as *mut Cells, Relaxed);
        self.len.store(len, Relaxed);
        if !old_ptr.is_null() {
            // SAFETY: the previous boxed slice, no longer reachable; other
            // readers of it hold the lock we hold.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(old_ptr, old_len)) });
        }
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        let p = *self.ptr.get_mut();
        if !p.is_null() {
            // SAFETY: our boxed slice; nobody else can reach a dropped record.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, *self.len.get_mut())) });
        }
    }
}

/// Counter ids in use and free.
pub(crate) struct Ids {
    totals: Vec<Option<Arc<Totals>>>,
    free: Vec<u32>,
}

impl Ids {
    pub(super) const fn new() -> Ids {
        Ids { totals: Vec::new(), free: Vec::new() }
    }

    /// Adds an exiting (or, in a forked child, vanished) thread's cells to
    /// the totals.
    pub(super) fn fold(&mut self, r: &Reader) {
        for (id, c) in r.cells.cells().iter().enumerate() {
            if let Some(Some(t)) = self.totals.get(id) {
                t.calls.fetch_add(c.calls.load(Relaxed), Relaxed);
                t.errors.fetch_add(c.errors.load(Relaxed), Relaxed);
                t.panics.fetch_add(c.panics.load(Relaxed), Relaxed);
            }
        }
    }
}

/// A counter id and its totals, for a new method slot.
pub(crate) fn register() -> (u32, Arc<Totals>) {
    let mut t = super::threads();
    let totals = Arc::new(Totals::default());
    let id = match t.counters.free.pop() {
        Some(id) => {
            t.counters.totals[id as usize] = Some(totals.clone());
            id
        }
        None => {
            t.counters.totals.push(Some(totals.clone()));
            u32::try_from(t.counters.totals.len() - 1).expect("fewer than 2^32 method slots")
        }
    };
    (id, totals)
}

/// Frees a counter id (its slot is gone: no call can be counting on it),
/// zeroing its cells in every thread first.
pub(crate) fn unregister(id: u32) {
    let mut t = super::threads();
    for r in &t.readers {
        if let Some(c) = r.cells.cells().get(id as usize) {
            c.calls.store(0, Relaxed);
            c.errors.store(0, Relaxed);
            c.panics.store(0, Relaxed);
        }
    }
    t.counters.totals[id as usize] = None;
    t.counters.free.push(id);
}

/// Calls, errors and panics counted for `id` by every thread, live or gone.
pub(crate) fn sum(id: u32, totals: &Totals) -> [u64; 3] {
    let t = super::threads();
    let mut s = [totals.calls.load(Relaxed), totals.errors.load(Relaxed), totals.panics.load(Relaxed)];
    for r in &t.readers {
        if let Some(c) = r.cells.cells().get(id as usize) {
            s[0] += c.calls.load(Relaxed);
            s[1] += c.errors.load(Relaxed);
            s[2] += c.panics.load(Relaxed);
        }
    }
    s
}

/// Adds one to a cell written only by its own thread: a plain load and
/// store, which a concurrent [`sum`] reads whole (it is an atomic word).
#[inline(always)]
fn bump(c: &AtomicU64) -> u64 {
    let n = c.load(Relaxed);
    c.store(n.wrapping_add(1), Relaxed);
    n
}

/// Counts a call on thread record `r` (None: a thread being torn down);
/// returns whether to sample its latency: the first call of each method on
/// each thread, then one in `every`, read off the thread's own call count of
/// that method (so a method called a few times on a thread busy with others
/// is still sampled, and no extra state is touched).
#[inline(always)]
pub(crate) fn count_call(r: Option<&Reader>, id: u32, totals: &Totals, every: u32) -> bool {
    let Some(r) = r else { return count_call_unregistered(totals) };
    let before = match r.cells.cells().get(id as usize) {
        Some(c) => bump(&c.calls),
        None => grow_and(r, id, |c| bump(&c.calls)),
    };
    before % u64::from(every) == 0
}

#[cold]
fn count_call_unregistered(totals: &Totals) -> bool {
    totals.calls.fetch_add(1, Relaxed);
    false
}

#[cold]
#[inline(never)]
fn grow_and<R>(r: &Reader, id: u32, f: impl FnOnce(&Cells) -> R) -> R {
    let _t = super::threads();
    r.cells.grow(id as usize + 1);
    f(&r.cells.cells()[id as usize])
}

/// Counts a failed call on the calling thread.
#[cold]
pub(crate) fn count_error(id: u32, totals: &Totals, panicked: bool) {
    let p = super::current();
    // SAFETY: see `super::read`.
    let Some(r) = (unsafe { p.as_ref() }) else {
        totals.errors.fetch_add(1, Relaxed);
        if panicked {
            totals.panics.fetch_add(1, Relaxed);
        }
        return;
    };
    let f = |c: &Cells| {
        bump(&c.errors);
        if panicked {
            bump(&c.panics);
        }
    };
    match r.cells.cells().get(id as usize) {
        Some(c) => f(c),
        None => grow_and(r, id, f),
    }
}
