//! Read-copy-update for the call path: readers pay no atomic
//! read-modify-write and no fence; writers (load, upgrade, unload) pay.
//!
//! A call enters a read section by storing the current grace-period
//! generation into its thread's record and leaves it by storing 0. The
//! store-then-load ordering a reader needs (announce, then read the version
//! pointer) is made by the writer instead, with a process-wide barrier
//! (`membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` on Linux; where that is
//! unavailable, readers fall back to a full fence) — the asymmetric-fence
//! technique of userspace RCU. A writer that
//! replaced a pointer starts a [`GracePeriod`] and may free the old value once
//! every thread has been seen outside any read section that began before it.
//!
//! Writers that cannot wait (their own thread is inside a read section, for
//! instance an upgrade requested from a host function called by a plugin, or
//! a call stuck in a plugin) hand the old value to a background thread that
//! frees it when the grace period ends: memory is never freed under a reader.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Process-wide memory barriers. (The `membarrier` crate would fit, but it
/// links `windows-sys` unconditionally, which fails to link on Linux.)
mod membarrier {
    use std::sync::atomic::{compiler_fence, fence, AtomicU8, Ordering};

    const UNKNOWN: u8 = 0;
    const EXPEDITED: u8 = 1;
    const FENCES: u8 = 2;
    static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);

    #[cfg(target_os = "linux")]
    fn probe() -> u8 {
        // From <linux/membarrier.h>.
        const QUERY: libc::c_long = 0;
        const PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
        const REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;
        // SAFETY: membarrier takes (cmd, flags[, cpu_id]) and touches no memory of ours.
        let supported = unsafe { libc::syscall(libc::SYS_membarrier, QUERY, 0, 0) };
        let needed = PRIVATE_EXPEDITED | REGISTER_PRIVATE_EXPEDITED;
        // SAFETY: as above.
        if supported >= 0
            && supported & needed == needed
            && unsafe { libc::syscall(libc::SYS_membarrier, REGISTER_PRIVATE_EXPEDITED, 0, 0) } == 0
        {
            EXPEDITED
        } else {
            FENCES
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn probe() -> u8 {
        FENCES
    }

    #[inline(always)]
    fn mode() -> u8 {
        match MODE.load(Ordering::Relaxed) {
            UNKNOWN => {
                let m = probe();
                MODE.store(m, Ordering::Relaxed);
                m
            }
            m => m,
        }
    }

    /// Reader side: a compiler fence when writers can issue `heavy`, else a
    /// full fence.
    #[inline(always)]
    pub fn light() {
        if mode() == EXPEDITED {
            compiler_fence(Ordering::SeqCst);
        } else {
            fence(Ordering::SeqCst);
        }
    }

    /// Writer side: a full barrier on every thread of the process.
    pub fn heavy() {
        #[cfg(target_os = "linux")]
        if mode() == EXPEDITED {
            const PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
            // SAFETY: as in probe; the process registered there, after which
            // the kernel documents no failure for this command.
            let rc = unsafe { libc::syscall(libc::SYS_membarrier, PRIVATE_EXPEDITED, 0, 0) };
            assert_eq!(rc, 0, "membarrier failed after registration");
            return;
        }
        fence(Ordering::SeqCst);
    }
}

/// The current grace-period generation (never 0: 0 means "not reading").
static GENERATION: AtomicU64 = AtomicU64::new(1);
/// Every thread that has ever read, until it exits.
static READERS: Mutex<Vec<Arc<Reader>>> = Mutex::new(Vec::new());
/// Read sections on threads whose thread-local record is already gone
/// (calls made from other thread-local destructors during thread exit).
static UNREGISTERED: AtomicUsize = AtomicUsize::new(0);

#[repr(align(64))]
struct Reader {
    /// 0 outside read sections; else the generation seen on entry.
    seq: AtomicU64,
}

/// The thread's registration: owns its `Reader` and unregisters it when
/// the thread exits.
struct Registration(Arc<Reader>);

impl Drop for Registration {
    fn drop(&mut self) {
        LOCAL.with(|l| l.reader.set(std::ptr::null()));
        let mut readers = READERS.lock().unwrap_or_else(|e| e.into_inner());
        readers.retain(|r| !Arc::ptr_eq(r, &self.0));
    }
}

/// What the call path touches, in one thread-local (in a shared library
/// each thread-local access can cost a `__tls_get_addr` call).
struct Local {
    /// This thread's reader record (NULL until registered, and again once
    /// its registration is destroyed at thread exit).
    reader: Cell<*const Reader>,
    /// Nesting depth of read sections.
    depth: Cell<u32>,
}

thread_local! {
    // Const-initialised and without a destructor, so the call path reads it
    // with no lazy-initialisation check.
    static LOCAL: Local = const { Local { reader: Cell::new(std::ptr::null()), depth: Cell::new(0) } };
    static REGISTRATION: Registration = {
        let reader = Arc::new(Reader { seq: AtomicU64::new(0) });
        READERS.lock().unwrap_or_else(|e| e.into_inner()).push(reader.clone());
        LOCAL.with(|l| l.reader.set(Arc::as_ptr(&reader)));
        Registration(reader)
    };
}

/// The calling thread's reader record, registering it on first use; None
/// while the thread's thread-locals are being destroyed.
#[inline(always)]
fn current(l: &Local) -> Option<&'static Reader> {
    let p = l.reader.get();
    if p.is_null() {
        return register();
    }
    // SAFETY: `reader` points into the Arc owned by this thread's
    // Registration and is cleared before that is dropped.
    Some(unsafe { &*p })
}

#[cold]
fn register() -> Option<&'static Reader> {
    REGISTRATION
        .try_with(|r| {
            let p = Arc::as_ptr(&r.0);
            // SAFETY: as in `current`.
            unsafe { &*p }
        })
        .ok()
}

/// Proof of being inside a read section; values read through [`RcuCell`]
/// stay valid while it lives. Not `Send`: a section belongs to its thread.
pub(crate) struct ReadGuard {
    /// This thread's `LOCAL`, so that leaving the section needs no second
    /// thread-local lookup (in a shared library each one can be a
    /// `__tls_get_addr` call); NULL for a section on a thread whose
    /// registration is already destroyed (counted in `UNREGISTERED`).
    local: *const Local,
    _thread_bound: PhantomData<*const ()>,
}

/// Enters a read section (nestable).
#[inline(always)]
pub(crate) fn read() -> ReadGuard {
    // Only the address comes out of the thread-local access, so that it is
    // inlined wherever a section starts.
    let l: *const Local = LOCAL.with(|l| l as *const Local);
    // SAFETY: this thread's LOCAL, which has no destructor and lives as
    // long as the thread.
    let local = unsafe { &*l };
    let depth = local.depth.get();
    if depth > 0 {
        local.depth.set(depth + 1);
        return ReadGuard { local: l, _thread_bound: PhantomData };
    }
    let Some(reader) = current(local) else { return unregistered() };
    reader.seq.store(GENERATION.load(Ordering::Acquire), Ordering::Relaxed);
    // Orders the store above before the pointer loads that follow; a
    // compiler fence when writers issue the process-wide barrier.
    membarrier::light();
    local.depth.set(1);
    ReadGuard { local: l, _thread_bound: PhantomData }
}

/// A section on a thread whose registration is already destroyed.
#[cold]
fn unregistered() -> ReadGuard {
    UNREGISTERED.fetch_add(1, Ordering::SeqCst);
    ReadGuard { local: std::ptr::null(), _thread_bound: PhantomData }
}

impl Drop for ReadGuard {
    #[inline(always)]
    fn drop(&mut self) {
        if self.local.is_null() {
            UNREGISTERED.fetch_sub(1, Ordering::Release);
            return;
        }
        // SAFETY: `local` is this thread's LOCAL (the guard is not Send),
        // which has no destructor and outlives every section on the thread.
        let l = unsafe { &*self.local };
        let depth = l.depth.get() - 1;
        l.depth.set(depth);
        if depth == 0 {
            if let Some(reader) = current(l) {
                // Release: everything read in the section happens before
                // a writer that sees 0 frees it.
                reader.seq.store(0, Ordering::Release);
            }
        }
    }
}

/// Whether the calling thread is inside a read section.
pub(crate) fn in_read_section() -> bool {
    LOCAL.with(|l| l.depth.get()) > 0
}

/// A grace period: ends once every read section that might have seen a
/// value replaced before it started has ended.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GracePeriod {
    generation: u64,
}

impl GracePeriod {
    /// Starts a grace period. Call after unpublishing the old value.
    pub fn start() -> GracePeriod {
        let generation = GENERATION.fetch_add(1, Ordering::SeqCst) + 1;
        // Makes every reader's announcement (store of its generation) visible
        // before we look, and our unpublishing visible to every reader.
        membarrier::heavy();
        GracePeriod { generation }
    }

    /// Waits for the grace period to end, until `deadline` if given.
    /// Returns whether it ended.
    pub fn wait(&self, deadline: Option<Instant>) -> bool {
        let readers: Vec<Arc<Reader>> = READERS.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let past = |spins: &mut u32| {
            *spins += 1;
            if *spins < 100 {
                std::hint::spin_loop();
            } else if *spins < 200 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
            deadline.is_some_and(|d| Instant::now() >= d)
        };
        for r in readers {
            let mut spins = 0;
            loop {
                let seq = r.seq.load(Ordering::Acquire);
                if seq == 0 || seq >= self.generation {
                    break;
                }
                if past(&mut spins) {
                    return false;
                }
            }
        }
        let mut spins = 0;
        while UNREGISTERED.load(Ordering::Acquire) != 0 {
            if past(&mut spins) {
                return false;
            }
        }
        true
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
    /// within `timeout` (and this thread is not itself reading), else on a
    /// background thread. Returns whether it was released here.
    pub fn release(mut self, timeout: Duration) -> bool {
        release_after(self.value.take().expect("released only once"), self.grace, timeout)
    }
}

impl<T: Send + Sync + 'static> Drop for Retired<T> {
    fn drop(&mut self) {
        if let Some(value) = self.value.take() {
            release_after(value, self.grace, Duration::from_secs(3600));
        }
    }
}

fn release_after<T: Send + Sync + 'static>(value: Arc<T>, grace: GracePeriod, timeout: Duration) -> bool {
    if !in_read_section() && grace.wait(Some(Instant::now() + timeout)) {
        drop(value);
        return true;
    }
    // If no thread can be started the closure is dropped unrun, and the
    // ManuallyDrop keeps the value forever rather than freeing it under a
    // reader.
    let value = std::mem::ManuallyDrop::new(value);
    let _ = std::thread::Builder::new().name("hotmod-reclaim".into()).spawn(move || {
        grace.wait(None);
        drop(std::mem::ManuallyDrop::into_inner(value));
    });
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

    /// A counted reference, to keep the value beyond the read section.
    pub fn to_arc(&self) -> Arc<T> {
        let raw = self.ptr as *const T;
        // SAFETY: raw came from Arc::into_raw (see RcuCell::replace) and the
        // cell, or a Retired awaiting our read section, still owns a count.
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
    pub fn load<'g>(&self, _guard: &'g ReadGuard) -> Option<Pinned<'g, T>> {
        let p = self.ptr.load(Ordering::Acquire);
        // SAFETY: non-NULL pointers come from Arc::into_raw and are freed
        // only after a grace period, which cannot end while `_guard` lives.
        unsafe { p.as_ref() }.map(|ptr| Pinned { ptr })
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
        let grace = GracePeriod::start();
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    struct Tracked(Arc<AtomicBool>, u64);
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_retired_value_outlives_the_read_sections_that_saw_it() {
        let dropped = Arc::new(AtomicBool::new(false));
        let cell = Arc::new(RcuCell::new(Some(Arc::new(Tracked(dropped.clone(), 7)))));
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        let (leave_tx, leave_rx) = std::sync::mpsc::channel::<()>();
        let c = cell.clone();
        let reader = std::thread::spawn(move || {
            let g = read();
            let v = c.load(&g).unwrap();
            entered_tx.send(()).unwrap();
            leave_rx.recv().unwrap();
            v.1
        });
        entered_rx.recv().unwrap();
        let retired = cell.replace(None).unwrap();
        assert!(!retired.grace.wait(Some(Instant::now() + Duration::from_millis(50))), "the reader is still inside");
        assert!(!dropped.load(Ordering::SeqCst));
        leave_tx.send(()).unwrap();
        assert_eq!(reader.join().unwrap(), 7);
        assert!(retired.release(Duration::from_secs(10)));
        assert!(dropped.load(Ordering::SeqCst));
    }

    #[test]
    fn sections_nest_and_writers_inside_a_section_defer() {
        let dropped = Arc::new(AtomicBool::new(false));
        let cell = RcuCell::new(Some(Arc::new(Tracked(dropped.clone(), 1))));
        let outer = read();
        let inner = read();
        drop(inner);
        assert!(in_read_section());
        let retired = cell.replace(None).unwrap();
        assert!(!retired.release(Duration::from_secs(1)), "must not wait on itself");
        assert!(!dropped.load(Ordering::SeqCst));
        drop(outer);
        assert!(!in_read_section());
        let end = Instant::now() + Duration::from_secs(10);
        while !dropped.load(Ordering::SeqCst) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(dropped.load(Ordering::SeqCst), "the background thread released it");
    }

    #[test]
    fn readers_racing_a_writer_never_see_freed_values() {
        let cell = Arc::new(RcuCell::new(Some(Arc::new(vec![1u64; 16]))));
        let stop = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(AtomicU64::new(0));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (cell, stop, reads) = (cell.clone(), stop.clone(), reads.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let g = read();
                        let v = cell.load(&g).unwrap();
                        assert!(v.iter().all(|&x| x == v[0]), "torn or freed value");
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        // Replace at least 2,000 times, and until the readers have raced the
        // writer many times (threads may start late on a busy machine).
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut i = 2u64;
        while (i < 2000 || reads.load(Ordering::Relaxed) < 100_000) && Instant::now() < deadline {
            if let Some(r) = cell.replace(Some(Arc::new(vec![i; 16]))) {
                let _ = r.release(Duration::from_secs(10));
            }
            i += 1;
        }
        stop.store(true, Ordering::Relaxed);
        readers.into_iter().for_each(|r| r.join().unwrap());
        assert!(reads.load(Ordering::Relaxed) >= 100_000, "readers ran alongside the writer");
    }
}
