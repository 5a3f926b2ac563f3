//! Model check (loom) of the read-section protocol of `core/src/rcu`: the
//! section word (generation | depth, one store per entry and exit), the pin
//! that a call keeps while its section is suspended, the per-value grace
//! period, the waiter flag that wakes a sleeping writer, and a thread that
//! exits inside a section. Every interleaving loom explores (bounded
//! preemptions) must keep the oracle: a reader never sees the drop flag of
//! a value it holds set, and the writer never sleeps through the wake-up it
//! waits for (loom reports that as a deadlock). (It found one: a reader
//! that loads the generation just before the writer's barrier and stores
//! its section word just after is seen only by the writer's second look,
//! unflagged; the writer now flags and looks again until no reader in the
//! way is new.)
//!
//! This is a test-only copy of the algorithm, kept line for line with the
//! real code (`read`, `ReadGuard::drop`, `suspend`, `Suspended::drop`,
//! `GracePeriod::check`, `reclaim::wait_until`). loom knows neither
//! `membarrier` nor the full store-load ordering of SeqCst fences (it
//! treats SeqCst as AcqRel), so each barrier, the readers' light one and
//! the writer's heavy one, is modelled as an AcqRel read-modify-write of
//! one shared word: of any reader barrier and writer barrier, one comes
//! first and the other sees everything before it — the guarantee a full
//! fence on each side gives (readers without membarrier) and the one
//! membarrier gives against the readers' compiler fences.

use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

const GEN_ONE: u64 = 1 << 16;
const DEPTH_MASK: u64 = GEN_ONE - 1;
const READERS: usize = 2;

struct Reader {
    state: AtomicU64,
    pin: AtomicUsize,
    waiter: AtomicBool,
    /// False once the thread exited (its record removed under `list`).
    alive: AtomicBool,
}

struct World {
    /// See the module docs: every barrier is an RMW of this word.
    barrier: AtomicUsize,
    generation: AtomicU64,
    /// The published value: an index into `dropped` (0 = none).
    cell: AtomicUsize,
    dropped: [AtomicBool; 4],
    readers: [Reader; READERS],
    /// The record list's lock.
    list: Mutex<()>,
    wake: Mutex<u64>,
    cv: Condvar,
}

impl World {
    fn new() -> Arc<World> {
        let r = || Reader {
            state: AtomicU64::new(0),
            pin: AtomicUsize::new(0),
            waiter: AtomicBool::new(false),
            alive: AtomicBool::new(true),
        };
        Arc::new(World {
            barrier: AtomicUsize::new(0),
            generation: AtomicU64::new(GEN_ONE),
            cell: AtomicUsize::new(1),
            dropped: std::array::from_fn(|_| AtomicBool::new(false)),
            readers: [r(), r()],
            list: Mutex::new(()),
            wake: Mutex::new(0),
            cv: Condvar::new(),
        })
    }

    fn fence(&self) {
        self.barrier.fetch_add(1, AcqRel);
    }

    fn wake(&self) {
        let mut e = self.wake.lock().unwrap();
        *e += 1;
        self.cv.notify_all();
    }

    // --- reader side ---------------------------------------------------

    fn enter(&self, r: &Reader) {
        let s = r.state.load(Relaxed);
        if s != 0 {
            r.state.store(s + 1, Relaxed);
        } else {
            r.state.store(self.generation.load(Acquire) | 1, Relaxed);
            self.fence(); // membarrier::light
        }
    }

    fn exit(&self, r: &Reader) {
        let s = r.state.load(Relaxed);
        if s & DEPTH_MASK > 1 {
            r.state.store(s - 1, Relaxed);
            return;
        }
        r.state.store(0, Release);
        r.pin.store(0, Release);
        self.fence(); // membarrier::light
        if r.waiter.load(Relaxed) {
            r.waiter.store(false, Relaxed);
            self.wake();
        }
    }

    fn suspend(&self, r: &Reader, v: usize) -> u64 {
        let s = r.state.load(Relaxed);
        r.pin.store(v, Relaxed);
        r.state.store(0, Release);
        self.fence(); // membarrier::light
        if r.waiter.load(Relaxed) {
            r.waiter.store(false, Relaxed);
            self.wake();
        }
        s
    }

    fn resume(&self, r: &Reader, s: u64) {
        r.state.store(s, Relaxed);
        self.fence(); // membarrier::light
    }

    fn read_value(&self) -> usize {
        let v = self.cell.load(Acquire);
        assert!(!self.dropped[v].load(SeqCst), "read a value already dropped");
        v
    }

    fn check_held(&self, v: usize) {
        assert!(!self.dropped[v].load(SeqCst), "value {v} dropped under a reader");
    }

    /// A thread's exit: its record leaves the list, writers are woken.
    fn thread_exit(&self, r: &Reader) {
        {
            let _l = self.list.lock().unwrap();
            r.alive.store(false, SeqCst);
        }
        self.wake();
    }

    // --- writer side ---------------------------------------------------

    /// Replaces the value and drops the old one after its grace period.
    fn replace_and_reclaim(&self, new: usize) {
        let old = self.cell.swap(new, SeqCst);
        let generation = self.generation.fetch_add(GEN_ONE, SeqCst) + GEN_ONE;
        self.fence(); // membarrier::heavy
                      // GracePeriod::check: flags each reader in the way; says whether
                      // one was not flagged before in this pass.
        let check = |flagged: &mut [bool; READERS]| {
            let _l = self.list.lock().unwrap();
            let (mut done, mut new) = (true, false);
            for (i, r) in self.readers.iter().enumerate() {
                if !r.alive.load(SeqCst) {
                    continue;
                }
                let s = r.state.load(Acquire);
                let blocked = (s != 0 && s & !DEPTH_MASK < generation) || r.pin.load(Acquire) == old;
                if blocked {
                    done = false;
                    r.waiter.store(true, Relaxed);
                    new |= !flagged[i];
                    flagged[i] = true;
                }
            }
            (done, new)
        };
        // GracePeriod::ready_or_armed inside reclaim::wait_until.
        loop {
            let epoch = *self.wake.lock().unwrap();
            let mut flagged = [false; READERS];
            let done = loop {
                let (done, new) = check(&mut flagged);
                if done || !new {
                    break done;
                }
                self.fence(); // membarrier::heavy
            };
            if done {
                break;
            }
            let mut e = self.wake.lock().unwrap();
            while *e == epoch {
                e = self.cv.wait(e).unwrap();
            }
        }
        self.dropped[old].store(true, SeqCst);
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    // Two preemptions by default (about a second); LOOM_MAX_PREEMPTIONS=3
    // explores more (about a minute here).
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    b.check(f);
}

/// A call (suspended section with a pin) and a plain section race a writer.
#[test]
fn a_writer_racing_a_call_and_a_section() {
    model(|| {
        let w = World::new();
        let w1 = w.clone();
        let call = thread::spawn(move || {
            let r = &w1.readers[0];
            w1.enter(r);
            let v = w1.read_value();
            let s = w1.suspend(r, v);
            w1.check_held(v); // the plugin runs
            w1.resume(r, s);
            w1.check_held(v);
            w1.exit(r);
        });
        let w2 = w.clone();
        let section = thread::spawn(move || {
            let r = &w2.readers[1];
            w2.enter(r);
            let v = w2.read_value();
            w2.check_held(v);
            w2.exit(r);
        });
        w.replace_and_reclaim(2);
        call.join().unwrap();
        section.join().unwrap();
    });
}

/// Nested sections: the inner exit must not end the outer protection.
#[test]
fn nested_sections() {
    model(|| {
        let w = World::new();
        let w1 = w.clone();
        let reader = thread::spawn(move || {
            let r = &w1.readers[0];
            w1.enter(r);
            w1.enter(r);
            let v = w1.read_value();
            w1.exit(r);
            w1.check_held(v);
            w1.exit(r);
        });
        w.replace_and_reclaim(2);
        reader.join().unwrap();
    });
}

/// A thread that exits inside a section (its guard never dropped) no longer
/// holds up the writer, which is woken by the exit.
#[test]
fn a_thread_exiting_inside_a_section() {
    model(|| {
        let w = World::new();
        let w1 = w.clone();
        let reader = thread::spawn(move || {
            let r = &w1.readers[0];
            w1.enter(r);
            let v = w1.read_value();
            let _ = w1.suspend(r, v);
            w1.check_held(v);
            w1.thread_exit(r);
        });
        w.replace_and_reclaim(2);
        reader.join().unwrap();
    });
}
