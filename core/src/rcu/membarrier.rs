//! Process-wide memory barriers: the writer's half of the asymmetric fence
//! that lets readers enter and leave sections with plain stores. (The
//! `membarrier` crate would fit, but it links `windows-sys` unconditionally,
//! which fails to link on Linux.)

use std::sync::atomic::{compiler_fence, fence, AtomicU8, Ordering};

const UNKNOWN: u8 = 0;
const EXPEDITED: u8 = 1;
const FENCES: u8 = 2;
static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);

#[cfg(target_os = "linux")]
const PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
#[cfg(target_os = "linux")]
const REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

#[cfg(target_os = "linux")]
fn probe() -> u8 {
    // From <linux/membarrier.h>.
    const QUERY: libc::c_long = 0;
    // SAFETY: membarrier takes (cmd, flags[, cpu_id]) and touches no memory of ours.
    let supported = unsafe { libc::syscall(libc::SYS_membarrier, QUERY, 0, 0) };
    let needed = PRIVATE_EXPEDITED | REGISTER_PRIVATE_EXPEDITED;
    if supported >= 0 && supported & needed == needed && register() {
        EXPEDITED
    } else {
        FENCES
    }
}

#[cfg(target_os = "linux")]
fn register() -> bool {
    // SAFETY: as in probe.
    unsafe { libc::syscall(libc::SYS_membarrier, REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn probe() -> u8 {
    FENCES
}

#[inline(always)]
fn mode() -> u8 {
    match MODE.load(Ordering::Relaxed) {
        UNKNOWN => init(),
        m => m,
    }
}

#[cold]
fn init() -> u8 {
    let m = probe();
    // Several threads may probe at once; they all reach the same answer.
    MODE.store(m, Ordering::Relaxed);
    m
}

/// Reader side: a compiler fence when writers can issue [`heavy`], else a
/// full fence.
#[inline(always)]
pub(crate) fn light() {
    if mode() == EXPEDITED {
        compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
}

/// Writer side: a full barrier on every running thread of the process.
pub(crate) fn heavy() {
    #[cfg(target_os = "linux")]
    if mode() == EXPEDITED {
        // SAFETY: as in probe; the process registered there.
        if unsafe { libc::syscall(libc::SYS_membarrier, PRIVATE_EXPEDITED, 0, 0) } == 0 {
            return;
        }
        // Documented never to fail after registration; if it does, no
        // reader can be trusted to have fenced, so nothing may be freed.
        // Readers switch to full fences from their next section; until
        // every reader has left its current one the caller's grace check
        // still sees it (the reader's own store is what it checks).
        MODE.store(FENCES, Ordering::SeqCst);
    }
    fence(Ordering::SeqCst);
}

/// In a forked child: the registration belongs to the parent's address
/// space on some kernels; register again, or fall back to fences (the child
/// has one thread, so no reader can be mid-section on another thread).
pub(crate) fn after_fork_in_child() {
    #[cfg(target_os = "linux")]
    if MODE.load(Ordering::Relaxed) == EXPEDITED && !register() {
        MODE.store(FENCES, Ordering::Relaxed);
    }
}
