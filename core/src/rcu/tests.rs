use super::*;
use std::sync::atomic::AtomicBool;

/// A value whose drop is observable: the oracle of every test here.
struct Tracked(Arc<AtomicBool>, u64);
impl Drop for Tracked {
    fn drop(&mut self) {
        assert!(!self.0.swap(true, Ordering::SeqCst), "dropped twice");
    }
}

fn tracked(v: u64) -> (Arc<AtomicBool>, Arc<Tracked>) {
    let f = Arc::new(AtomicBool::new(false));
    (f.clone(), Arc::new(Tracked(f, v)))
}

fn wait_flag(f: &AtomicBool) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while !f.load(Ordering::SeqCst) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(2));
    }
    f.load(Ordering::SeqCst)
}

#[test]
fn a_retired_value_outlives_the_read_sections_that_saw_it() {
    let (dropped, v) = tracked(7);
    let cell = Arc::new(RcuCell::new(Some(v)));
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
    let (dropped, v) = tracked(1);
    let cell = RcuCell::new(Some(v));
    let outer = read();
    let inner = read();
    drop(inner);
    assert!(in_read_section());
    let retired = cell.replace(None).unwrap();
    assert!(!retired.release(Duration::from_secs(1)), "must not wait on itself");
    assert!(!dropped.load(Ordering::SeqCst));
    drop(outer);
    assert!(!in_read_section());
    assert!(wait_flag(&dropped), "the reclaimer released it");
}

#[test]
fn a_pinned_value_holds_back_only_itself() {
    let (a_dropped, a) = tracked(1);
    let (b_dropped, b) = tracked(2);
    let ca = Arc::new(RcuCell::new(Some(a)));
    let cb = RcuCell::new(Some(b));
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let (leave_tx, leave_rx) = std::sync::mpsc::channel::<()>();
    let c = ca.clone();
    let parked = std::thread::spawn(move || {
        let g = read();
        let v = c.load(&g).unwrap();
        let s = suspend(&v);
        entered_tx.send(()).unwrap();
        leave_rx.recv().unwrap();
        drop(s);
        v.1
    });
    entered_rx.recv().unwrap();
    // Unrelated: ends at once although a section older than it is parked.
    let rb = cb.replace(None).unwrap();
    assert!(rb.release(Duration::from_secs(10)), "an unrelated value waits for nobody");
    assert!(b_dropped.load(Ordering::SeqCst));
    // The pinned one waits, then goes to the reclaimer, freed when the call returns.
    let ra = ca.replace(None).unwrap();
    assert!(!ra.release(Duration::from_millis(20)));
    assert!(!a_dropped.load(Ordering::SeqCst), "freed under a pin");
    leave_tx.send(()).unwrap();
    assert_eq!(parked.join().unwrap(), 1);
    assert!(wait_flag(&a_dropped), "the reclaimer was woken and freed it");
}

#[test]
fn a_thread_that_exits_inside_a_section_releases_its_record() {
    let (dropped, v) = tracked(3);
    let cell = Arc::new(RcuCell::new(Some(v)));
    let c = cell.clone();
    std::thread::spawn(move || {
        // A section never left (as after a plugin's pthread_exit).
        let g = read();
        let v = c.load(&g).unwrap();
        let s = suspend(&v);
        std::mem::forget(s);
        std::mem::forget(g);
    })
    .join()
    .unwrap();
    let r = cell.replace(None).unwrap();
    assert!(r.release(Duration::from_secs(10)), "the exited thread's record no longer counts");
    assert!(dropped.load(Ordering::SeqCst));
}

#[test]
fn section_word_holds_generation_and_depth() {
    let g1 = read();
    // SAFETY: this thread's record, alive as long as the thread.
    let r = unsafe { &*g1.reader };
    let s1 = r.state.load(Ordering::Relaxed);
    assert_eq!(s1 & DEPTH_MASK, 1);
    let g2 = read();
    assert_eq!(r.state.load(Ordering::Relaxed), s1 + 1, "nesting keeps the generation, one store");
    drop(g2);
    assert_eq!(r.state.load(Ordering::Relaxed), s1);
    drop(g1);
    assert_eq!(r.state.load(Ordering::Relaxed), 0);
}

/// Readers race a writer that replaces the value thousands of times; each
/// value's drop flag is checked by the readers while they hold it (a freed
/// value would have its flag set), and every value is dropped exactly once.
#[test]
fn readers_racing_a_writer_never_see_freed_values() {
    struct Checked(Arc<AtomicBool>);
    impl Drop for Checked {
        fn drop(&mut self) {
            assert!(!self.0.swap(true, Ordering::SeqCst), "dropped twice");
        }
    }
    let flags: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
    let make = |flags: &Mutex<Vec<Arc<AtomicBool>>>| {
        let f = Arc::new(AtomicBool::new(false));
        flags.lock().unwrap().push(f.clone());
        Arc::new(Checked(f))
    };
    let cell = Arc::new(RcuCell::new(Some(make(&flags))));
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    // More threads than cores, some short-lived (start and exit mid-test).
    let readers: Vec<_> = (0..8)
        .map(|i| {
            let (cell, stop, reads) = (cell.clone(), stop.clone(), reads.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let run = |n: u32| {
                        for _ in 0..n {
                            let g = read();
                            let v = cell.load(&g).unwrap();
                            let s = if i % 2 == 0 { Some(suspend(&v)) } else { None };
                            assert!(!v.0.load(Ordering::SeqCst), "read a dropped value");
                            std::hint::spin_loop();
                            assert!(!v.0.load(Ordering::SeqCst), "value dropped under a reader");
                            drop(s);
                            reads.fetch_add(1, Ordering::Relaxed);
                        }
                    };
                    if i < 4 {
                        run(1000);
                    } else {
                        std::thread::scope(|sc| sc.spawn(|| run(200)).join().unwrap());
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    while (n < 2000 || reads.load(Ordering::Relaxed) < 100_000) && Instant::now() < deadline {
        if let Some(r) = cell.replace(Some(make(&flags))) {
            let _ = r.release(Duration::from_millis(if n % 2 == 0 { 0 } else { 10 }));
        }
        n += 1;
    }
    stop.store(true, Ordering::Relaxed);
    readers.into_iter().for_each(|r| r.join().unwrap());
    assert!(reads.load(Ordering::Relaxed) >= 100_000, "readers ran alongside the writer");
    drop(cell.replace(None));
    let flags = flags.lock().unwrap().clone();
    let end = Instant::now() + Duration::from_secs(10);
    while flags.iter().any(|f| !f.load(Ordering::SeqCst)) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(flags.iter().all(|f| f.load(Ordering::SeqCst)), "every retired value was dropped (none leaked)");
}

#[test]
fn one_reclaimer_thread() {
    let (dropped, v) = tracked(9);
    let cell = RcuCell::new(Some(v));
    let g = read();
    for _ in 0..20 {
        let (_, v) = tracked(0);
        let r = cell.replace(Some(v)).unwrap();
        assert!(!r.release(Duration::ZERO));
    }
    drop(g);
    assert!(wait_flag(&dropped));
    #[cfg(target_os = "linux")]
    assert!(reclaim_threads() <= 1, "found {} hotmod-reclaim threads", reclaim_threads());
}

#[cfg(target_os = "linux")]
fn reclaim_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.trim() == "hotmod-reclaim")
        .count()
}
