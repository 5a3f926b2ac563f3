//! Read-copy-update for the call path: readers pay no atomic
//! read-modify-write and no fence; writers (load, upgrade, unload) pay.
//!
//! # Read sections
//!
//! Each thread has one record ([`Reader`]) with one word, `state`: the
//! grace-period generation seen on entry in the high bits and the nesting
//! depth in the low [`DEPTH_BITS`], 0 outside any section. Entering and
//! leaving are one plain store each, so a signal handler that calls hotmod
//! between two instructions of an outer section's entry or exit finds a
//! consistent word and restores it on its own exit. The store-then-load
//! ordering a reader needs (announce, then read the pointer) is made by the
//! writer instead, with a process-wide barrier
//! (`membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` on Linux; where that is
//! unavailable, readers fall back to a full fence) — the asymmetric-fence
//! technique of userspace RCU.
//!
//! # Per-value grace periods: pins
//!
//! A plain RCU grace period waits for *every* section older than it, so one
//! call parked in a plugin would stall the reclamation of everything else
//! (another module's unload, the registry map). The call path therefore
//! keeps its section only for the lookup: just before running the plugin it
//! *pins* the version it calls in its record (a small stack of pointers,
//! plain stores) and suspends its section ([`suspend`]); the section resumes
//! when the plugin returns and the pin is dropped when the section ends. A
//! grace period for a value `p` ends once every reader has been seen outside
//! its sections older than the grace period *and* no reader pins `p`: the
//! parked call delays the destruction of its own version only.
//!
//! Why a pin is never missed: the reader stores the pin before the store
//! (release) that suspends or ends its section. A writer that unpublished
//! `p`, then ran the process-wide barrier, and then observes that reader out
//! of its old section (acquire) also observes the pin. A reader whose section
//! began after the barrier cannot have loaded `p` at all.
//!
//! # Waiting without polling
//!
//! A writer that finds a reader in its way sets that reader's `waiter` flag,
//! runs the process-wide barrier, checks again, and sleeps on a condition
//! variable. A reader that leaves its outermost section (or suspends it)
//! stores its state, then (compiler fence) loads its own `waiter` flag and,
//! only if set, wakes the sleepers. This is the store/load pattern on both
//! sides (writer: flag, then state; reader: state, then flag) that needs a
//! full barrier on each side; the writer's `membarrier` supplies the reader's
//! half, exactly as for the section word itself: either the reader's store
//! of its state came before the barrier (and the writer's re-check sees it),
//! or its load of the flag came after it (and sees the flag). So the read
//! path gains one plain load of a line it already owns, no locked
//! instruction and no fence.
//!
//! Writers that cannot wait (their own thread is inside a section or pins
//! the value, for instance an upgrade requested from a host function called
//! by the plugin being upgraded) or that waited their timeout hand the value
//! to the process's single reclaimer thread ([`reclaim`]), which sleeps until
//! a reader it waits on leaves, and frees the value when its grace period
//! ends: memory is never freed under a reader.
//!
//! # Threads that leave, and fork
//!
//! A thread's record is removed when the thread exits; a thread that exits
//! inside a section or with a pin (a plugin that called `pthread_exit`, or
//! `longjmp`ed out of a method) is reported, and its record is released, so
//! grace periods end. A section abandoned on a live thread (a `longjmp` past
//! hotmod's frames) blocks only the values it pins or, if it was left inside
//! a section, the grace periods started after it: writers wait at most their
//! timeout and then defer to the reclaimer, never hang. In a forked child
//! (`pthread_atfork`), the record list is reset to the forking thread's, with
//! the list's lock held across the fork so the child never inherits it
//! locked.

pub(crate) mod counters;
mod membarrier;
mod reclaim;

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub(crate) use reclaim::set_reporter;

/// Bits of the section word that hold the nesting depth.
pub(crate) const DEPTH_BITS: u32 = 16;
const DEPTH_MASK: u64 = (1 << DEPTH_BITS) - 1;
/// One generation step in the section word.
const GEN_ONE: u64 = 1 << DEPTH_BITS;
/// Pins per thread: the depth of plugin → host → plugin call chains that
/// suspend their sections; deeper calls keep theirs (correct, only less
/// independent).
const PINS: usize = 8;

/// The current grace-period generation, pre-shifted (never 0: 0 means "not
/// reading").
static GENERATION: AtomicU64 = AtomicU64::new(GEN_ONE);
/// Read sections on threads whose thread-local record is already gone
/// (calls made from other thread-local destructors during thread exit).
static UNREGISTERED: AtomicUsize = AtomicUsize::new(0);

/// Every thread's record, and the per-thread counter ids (see [`counters`]).
pub(crate) struct Threads {
    readers: Vec<Arc<Reader>>,
    counters: counters::Ids,
}

static THREADS: Mutex<Threads> = Mutex::new(Threads { readers: Vec::new(), counters: counters::Ids::new() });

fn threads() -> MutexGuard<'static, Threads> {
    THREADS.lock().unwrap_or_else(|e| e.into_inner())
}

/// One thread's record. Fields other than `waiter` are written only by the
/// owning thread (with plain relaxed loads and stores); writers read them.
#[repr(align(64))]
pub(crate) struct Reader {
    /// `generation | depth`, 0 outside sections.
    state: AtomicU64,
    /// Set by a writer sleeping until this reader leaves.
    waiter: AtomicBool,
    /// Number of pins in use.
    pin_top: AtomicU32,
    /// Values held across a suspended section (see [`suspend`]).
    pins: [AtomicPtr<()>; PINS],
    /// This thread's counter cells (see [`counters`]).
    cells: counters::Table,
}

impl Reader {
    fn new() -> Reader {
        Reader {
            state: AtomicU64::new(0),
            waiter: AtomicBool::new(false),
            pin_top: AtomicU32::new(0),
            pins: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
            cells: counters::Table::new(),
        }
    }

    /// Wakes writers waiting on this reader, after it left (or suspended)
    /// its section or dropped a pin. Caller: the owning thread, after a
    /// compiler fence ([`membarrier::light`]).
    #[inline(always)]
    fn wake_if_waited(&self) {
        if self.waiter.load(Ordering::Relaxed) {
            self.wake();
        }
    }

    #[cold]
    #[inline(never)]
    fn wake(&self) {
        self.waiter.store(false, Ordering::Relaxed);
        reclaim::wake();
    }

    /// Whether this reader keeps a grace period of `generation` for `ptr`
    /// from ending.
    fn blocks(&self, generation: u64, ptr: *const ()) -> bool {
        let s = self.state.load(Ordering::Acquire);
        if s != 0 && s & !DEPTH_MASK < generation {
            return true;
        }
        !ptr.is_null() && self.pins.iter().any(|p| std::ptr::eq(p.load(Ordering::Acquire), ptr))
    }
}

/// The thread's registration: owns its record and removes it when the
/// thread exits.
struct Registration(Arc<Reader>);

impl Drop for Registration {
    fn drop(&mut self) {
        LOCAL.with(|l| l.set(std::ptr::null()));
        let r = &self.0;
        let open = r.state.load(Ordering::Relaxed) & DEPTH_MASK;
        let pins = r.pins.iter().filter(|p| !p.load(Ordering::Relaxed).is_null()).count();
        {
            let mut t = threads();
            t.counters.fold(r);
            t.readers.retain(|x| !Arc::ptr_eq(x, r));
        }
        if open != 0 || pins != 0 {
            reclaim::report(format!(
                "a thread exited inside hotmod: {open} read section(s) open and {pins} call(s) in progress \
                 (expected every call to return; a plugin called pthread_exit or longjmp'ed out of a method); \
                 its record is released, the versions it was calling are destroyed once unused elsewhere"
            ));
        }
        // Writers may be sleeping on this record.
        reclaim::wake();
    }
}

thread_local! {
    // Const-initialised and without a destructor, so the call path reads it
    // with no lazy-initialisation check: the one thread-local access of a
    // call.
    static LOCAL: Cell<*const Reader> = const { Cell::new(std::ptr::null()) };
    static REGISTRATION: Registration = {
        let reader = Arc::new(Reader::new());
        fork::install();
        threads().readers.push(reader.clone());
        LOCAL.with(|l| l.set(Arc::as_ptr(&reader)));
        Registration(reader)
    };
}

/// This thread's record, registering it on first use; NULL while the
/// thread's thread-locals are being destroyed.
#[inline(always)]
fn current() -> *const Reader {
    let p = LOCAL.with(|l| l.get());
    if p.is_null() {
        return register();
    }
    p
}

#[cold]
fn register() -> *const Reader {
    REGISTRATION.try_with(|r| Arc::as_ptr(&r.0)).unwrap_or(std::ptr::null())
}

/// Proof of being inside a read section; values read through [`RcuCell`]
/// stay valid while it lives. Not `Send`: a section belongs to its thread.
pub(crate) struct ReadGuard {
    /// This thread's record, so that leaving the section (and the call path
    /// inside it) needs no second thread-local access; NULL for a section on
    /// a thread whose registration is already destroyed (counted in
    /// `UNREGISTERED`).
    reader: *const Reader,
    /// Pins in use when the section was entered (outermost sections drop
    /// the pins above this on exit).
    mark: u32,
    _thread_bound: PhantomData<*const ()>,
}

/// Enters a read section (nestable).
#[inline(always)]
pub(crate) fn read() -> ReadGuard {
    let p = current();
    if p.is_null() {
        return unregistered();
    }
    // SAFETY: this thread's record, alive until its registration is
    // destroyed at thread exit, after every section of the thread.
    let r = unsafe { &*p };
    let s = r.state.load(Ordering::Relaxed);
    let mark = r.pin_top.load(Ordering::Relaxed);
    if s != 0 {
        r.state.store(s + 1, Ordering::Relaxed);
    } else {
        r.state.store(GENERATION.load(Ordering::Acquire) | 1, Ordering::Relaxed);
        // Orders the store above before the pointer loads that follow; a
        // compiler fence when writers issue the process-wide barrier.
        membarrier::light();
    }
    ReadGuard { reader: p, mark, _thread_bound: PhantomData }
}

/// A section on a thread whose registration is already destroyed.
#[cold]
fn unregistered() -> ReadGuard {
    UNREGISTERED.fetch_add(1, Ordering::SeqCst);
    ReadGuard { reader: std::ptr::null(), mark: 0, _thread_bound: PhantomData }
}

impl ReadGuard {
    /// This thread's record (NULL on a thread being torn down).
    #[inline(always)]
    pub(crate) fn thread(&self) -> Option<&Reader> {
        // SAFETY: see `read`.
        unsafe { self.reader.as_ref() }
    }
}

impl Drop for ReadGuard {
    #[inline(always)]
    fn drop(&mut self) {
        let Some(r) = self.thread() else {
            UNREGISTERED.fetch_sub(1, Ordering::Release);
            reclaim::wake();
            return;
        };
        let s = r.state.load(Ordering::Relaxed);
        if s & DEPTH_MASK > 1 {
            r.state.store(s - 1, Ordering::Relaxed);
            return;
        }
        // Release: everything read in the section happens before a writer
        // that sees 0 frees it.
        r.state.store(0, Ordering::Release);
        let top = r.pin_top.load(Ordering::Relaxed);
        if top == self.mark + 1 && (self.mark as usize) < PINS {
            // The common case: the one pin of a call.
            r.pins[self.mark as usize].store(std::ptr::null_mut(), Ordering::Release);
            std::sync::atomic::compiler_fence(Ordering::SeqCst);
            r.pin_top.store(self.mark, Ordering::Relaxed);
        } else if top > self.mark {
            unpin(r, self.mark, top);
        }
        membarrier::light();
        r.wake_if_waited();
    }
}

#[inline(never)]
fn unpin(r: &Reader, from: u32, to: u32) {
    for p in &r.pins[from as usize..(to as usize).min(PINS)] {
        p.store(std::ptr::null_mut(), Ordering::Release);
    }
    // Release the slots only once cleared (a signal handler may reuse them).
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
    r.pin_top.store(from, Ordering::Relaxed);
}

/// A section suspended around a call into plugin code (see the module
/// docs); resumes on drop.
pub(crate) struct Suspended<'a> {
    reader: Option<&'a Reader>,
    saved: u64,
}

/// Pins `value` (read in the section `g` belongs to) for the rest of that
/// section and suspends the section until the returned value is dropped, so
/// that a long call holds up the reclamation of `value` only. Only the
/// thread's outermost section is suspended; inside nested sections this is a
/// no-op, as it is when the pins are exhausted.
///
/// While suspended, nothing read in the section other than `value` (and
/// what `value` owns) may be used; the call path uses only the version it
/// calls.
#[inline(always)]
pub(crate) fn suspend<'a, T>(value: &Pinned<'a, T>) -> Suspended<'a> {
    let none = Suspended { reader: None, saved: 0 };
    // SAFETY: see `read`; the record outlives the section `'a`.
    let Some(r) = (unsafe { value.reader.as_ref() }) else { return none };
    let s = r.state.load(Ordering::Relaxed);
    let top = r.pin_top.load(Ordering::Relaxed);
    if s & DEPTH_MASK != 1 || top as usize >= PINS {
        return none;
    }
    let ptr = value.ptr as *const T as *mut ();
    if top == 0 || !std::ptr::eq(r.pins[top as usize - 1].load(Ordering::Relaxed), ptr) {
        // Claim the slot first: a signal handler that calls hotmod between
        // these two stores then pins above it instead of overwriting it.
        r.pin_top.store(top + 1, Ordering::Relaxed);
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        r.pins[top as usize].store(ptr, Ordering::Relaxed);
    }
    // Release: the pin is visible to a writer that sees the section end.
    r.state.store(0, Ordering::Release);
    membarrier::light();
    r.wake_if_waited();
    Suspended { reader: Some(r), saved: s }
}

impl Drop for Suspended<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        if let Some(r) = self.reader {
            // Resuming with the generation of the original entry is
            // conservative (writers may wait for this section a little
            // longer); what the section still uses is pinned.
            r.state.store(self.saved, Ordering::Relaxed);
            membarrier::light();
        }
    }
}

/// Whether the calling thread is inside a read section.
pub(crate) fn in_read_section() -> bool {
    let p = LOCAL.with(|l| l.get());
    // SAFETY: see `read`.
    unsafe { p.as_ref() }.is_some_and(|r| r.state.load(Ordering::Relaxed) != 0)
}

/// Whether the calling thread pins `ptr` (it is calling that version).
fn pinned_here(ptr: *const ()) -> bool {
    let p = LOCAL.with(|l| l.get());
    // SAFETY: see `read`.
    unsafe { p.as_ref() }.is_some_and(|r| r.pins.iter().any(|x| std::ptr::eq(x.load(Ordering::Relaxed), ptr)))
}

/// A grace period for one retired value: ends once every section that
/// might have seen the value has ended and no thread pins it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GracePeriod {
    generation: u64,
    ptr: *const (),
}

// SAFETY: `ptr` is only compared, never dereferenced.
unsafe impl Send for GracePeriod {}

impl GracePeriod {
    /// Starts a grace period for `ptr`. Call after unpublishing it.
    pub fn start(ptr: *const ()) -> GracePeriod {
        let generation = GENERATION.fetch_add(GEN_ONE, Ordering::SeqCst) + GEN_ONE;
        // Makes every reader's announcement (store of its state and pins)
        // visible before we look, and our unpublishing visible to every
        // reader.
        membarrier::heavy();
        GracePeriod { generation, ptr }
    }

    /// Whether the grace period is over; if not, flags every reader in the
    /// way (adding it to `flagged`) and returns whether one of them was not
    /// flagged before.
    fn check(&self, flagged: &mut Vec<usize>) -> (bool, bool) {
        let t = threads();
        let (mut done, mut new) = (true, false);
        for r in &t.readers {
            if r.blocks(self.generation, self.ptr) {
                done = false;
                r.waiter.store(true, Ordering::Relaxed);
                let id = Arc::as_ptr(r) as usize;
                if !flagged.contains(&id) {
                    flagged.push(id);
                    new = true;
                }
            }
        }
        if UNREGISTERED.load(Ordering::Acquire) != 0 {
            // Those sections have no record to flag; they wake every
            // waiter when they end.
            done = false;
        }
        (done, new)
    }

    /// Whether the grace period is over (a cheap look: flags nobody).
    fn done(&self) -> bool {
        let t = threads();
        !t.readers.iter().any(|r| r.blocks(self.generation, self.ptr)) && UNREGISTERED.load(Ordering::Acquire) == 0
    }

    /// True if the grace period is over; false once every reader in its way
    /// has been flagged *before* a process-wide barrier, so that each of
    /// them will see its flag when it leaves and wake the caller, who may
    /// then sleep. (A reader can become visible only after the barrier that
    /// follows a flagging pass: one that loaded the generation just before
    /// the writer's barrier and stored it just after. It is flagged in turn,
    /// and the loop ends because each reader does this at most once.)
    fn ready_or_armed(&self) -> bool {
        let mut flagged = Vec::new();
        loop {
            let (done, new) = self.check(&mut flagged);
            if done {
                return true;
            }
            if !new {
                return false;
            }
            // Pairs with the readers' compiler fence between leaving and
            // loading their flag.
            membarrier::heavy();
        }
    }

    /// Waits for the grace period to end, until `deadline` if given.
    /// Returns whether it ended.
    pub fn wait(&self, deadline: Option<Instant>) -> bool {
        reclaim::wait_until(|| self.done(), || self.ready_or_armed(), deadline)
    }
}

/// A value removed from an [`RcuCell`]: it may still be read by sections
/// that started before its removal, so it is dropped only after a grace
/// period.
#[must_use = "a retired value must be released after its grace period"]
pub(crate) struct Retired<T: Send + Sync + 'static> {
    value: Option<Arc<T>>,
    grace: GracePeriod,
}

impl<T: Send + Sync + 'static> Retired<T> {
    /// The retired value (for reading; it is still alive).
    pub fn value(&self) -> &Arc<T> {
        self.value.as_ref().expect("released only once")
    }

    /// Drops our reference once the grace period is over: here, if it ends
    /// within `timeout` (and this thread is not itself reading or calling
    /// it), else on the reclaimer thread. Returns whether it was released
    /// here.
    pub fn release(mut self, timeout: Duration) -> bool {
        release_after(self.value.take().expect("released only once"), self.grace, timeout)
    }
}

impl<T: Send + Sync + 'static> Drop for Retired<T> {
    fn drop(&mut self) {
        if let Some(value) = self.value.take() {
            reclaim::defer(Box::new(value), self.grace);
        }
    }
}

fn release_after<T: Send + Sync + 'static>(value: Arc<T>, grace: GracePeriod, timeout: Duration) -> bool {
    if !in_read_section() && !pinned_here(grace.ptr) && grace.wait(Instant::now().checked_add(timeout)) {
        drop(value);
        return true;
    }
    reclaim::defer(Box::new(value), grace);
    false
}

/// An `Option<Arc<T>>` read inside read sections without touching its
/// reference count, and replaced by writers.
pub(crate) struct RcuCell<T: Send + Sync + 'static> {
    ptr: AtomicPtr<T>,
}

/// A value read from an [`RcuCell`], valid for the read section `'g`.
pub(crate) struct Pinned<'g, T> {
    ptr: &'g T,
    /// The section's thread record (see [`ReadGuard::thread`]).
    reader: *const Reader,
}

impl<T> std::ops::Deref for Pinned<'_, T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        self.ptr
    }
}

impl<'g, T> Pinned<'g, T> {
    /// The plain reference, valid for the whole read section.
    #[inline(always)]
    pub fn into_ref(self) -> &'g T {
        self.ptr
    }

    /// The record of the thread whose section this value was read in, for
    /// per-thread counting without a second thread-local access.
    #[inline(always)]
    pub fn thread(&self) -> Option<&'g Reader> {
        // SAFETY: see `read`.
        unsafe { self.reader.as_ref() }
    }

    /// A counted reference, to keep the value beyond the read section.
    pub fn to_arc(&self) -> Arc<T> {
        let raw = self.ptr as *const T;
        // SAFETY: raw came from Arc::into_raw (see RcuCell::replace) and the
        // cell, or a Retired awaiting our read section or pin, still owns a
        // count.
        unsafe {
            Arc::increment_strong_count(raw);
            Arc::from_raw(raw)
        }
    }
}

impl<T: Send + Sync + 'static> RcuCell<T> {
    /// A cell holding `value`.
    pub fn new(value: Option<Arc<T>>) -> Self {
        RcuCell { ptr: AtomicPtr::new(value.map_or(std::ptr::null_mut(), |v| Arc::into_raw(v) as *mut T)) }
    }

    /// Reads the value for the duration of the read section.
    #[inline(always)]
    pub fn load<'g>(&self, guard: &'g ReadGuard) -> Option<Pinned<'g, T>> {
        let p = self.ptr.load(Ordering::Acquire);
        // SAFETY: non-NULL pointers come from Arc::into_raw and are freed
        // only after a grace period, which cannot end while `guard` lives.
        unsafe { p.as_ref() }.map(|ptr| Pinned { ptr, reader: guard.reader })
    }

    /// A counted reference to the current value.
    pub fn load_full(&self) -> Option<Arc<T>> {
        let g = read();
        self.load(&g).map(|p| p.to_arc())
    }

    /// Copy-on-write for a cell that always holds a value: clones it,
    /// applies `f`, publishes the copy and releases the old value (waiting
    /// up to `timeout`, see [`Retired::release`]). Writers serialise
    /// among themselves (the caller holds a lock).
    pub fn update<R>(&self, timeout: Duration, f: impl FnOnce(&mut T) -> R) -> R
    where
        T: Clone,
    {
        let mut next = (*self.load_full().expect("an updated cell always holds a value")).clone();
        let r = f(&mut next);
        if let Some(old) = self.replace(Some(Arc::new(next))) {
            let _ = old.release(timeout);
        }
        r
    }

    /// Publishes `value`; the previous value (if any) is retired.
    pub fn replace(&self, value: Option<Arc<T>>) -> Option<Retired<T>> {
        let new = value.map_or(std::ptr::null_mut(), |v| Arc::into_raw(v) as *mut T);
        let old = self.ptr.swap(new, Ordering::SeqCst);
        if old.is_null() {
            return None;
        }
        let grace = GracePeriod::start(old as *const ());
        // SAFETY: old came from Arc::into_raw; the cell's count moves to Retired.
        Some(Retired { value: Some(unsafe { Arc::from_raw(old) }), grace })
    }
}

impl<T: Send + Sync + 'static> Drop for RcuCell<T> {
    fn drop(&mut self) {
        let p = *self.ptr.get_mut();
        if !p.is_null() {
            // SAFETY: the cell owned one count. Nobody can be reading: a
            // reader reaches a cell only through a reference that keeps its
            // owner alive.
            drop(unsafe { Arc::from_raw(p) });
        }
    }
}

/// Fork handling: the record list, the reclaimer's queue and the wake lock
/// are held across `fork()` (so the child never inherits one locked by a
/// thread that does not exist there), and the child keeps only the forking
/// thread's record.
mod fork {
    #[cfg(unix)]
    use std::cell::RefCell;
    #[cfg(unix)]
    use std::sync::MutexGuard;

    #[cfg(unix)]
    type Held = (MutexGuard<'static, super::Threads>, super::reclaim::ForkGuards);

    #[cfg(unix)]
    thread_local! {
        static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
    }

    /// Registers the handlers (once per process).
    pub(super) fn install() {
        #[cfg(unix)]
        {
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                // SAFETY: the handlers are `extern "C"` functions that do not
                // unwind; registering them has no other precondition.
                unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
            });
        }
    }

    #[cfg(unix)]
    extern "C" fn prepare() {
        // Same order as everywhere else: records, then the reclaimer's locks.
        let t = super::threads();
        let r = super::reclaim::lock_for_fork();
        let _ = HELD.try_with(|h| *h.borrow_mut() = Some((t, r)));
    }

    #[cfg(unix)]
    extern "C" fn parent() {
        let _ = HELD.try_with(|h| drop(h.borrow_mut().take()));
    }

    #[cfg(unix)]
    extern "C" fn child() {
        let _ = HELD.try_with(|h| {
            if let Some((mut t, r)) = h.borrow_mut().take() {
                let me = super::LOCAL.with(|l| l.get());
                let (keep, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut t.readers)
                    .into_iter()
                    .partition(|r| std::ptr::eq(std::sync::Arc::as_ptr(r), me));
                // The other threads do not exist here: their counts stay in
                // the totals, their sections and pins are gone.
                for g in &gone {
                    t.counters.fold(g);
                }
                t.readers = keep;
                for r in &t.readers {
                    r.waiter.store(false, std::sync::atomic::Ordering::Relaxed);
                }
                super::membarrier::after_fork_in_child();
                super::reclaim::after_fork_in_child(r);
                drop(t);
                // `gone` records are dropped here; their memory is ours.
                drop(gone);
            }
        });
    }
}

#[cfg(test)]
mod tests;
