//! The shared-memory channel between a host and its worker: one region (a
//! memfd mapped in both processes) cut into lanes, one per concurrently
//! calling host thread.
//!
//! ```text
//! region:  [region header, 4 KiB][lane 0][lane 1]…
//! lane:    [lane header, 4 KiB: state word, request, response, callback, error text]
//!          [callback area: arguments and results of calls back into the host]
//!          [payload area: the call's input, then the space offered for its output]
//! ```
//!
//! A call is a handshake on the lane's state word:
//!
//! ```text
//! host:   IDLE ──write request──▶ REQUEST ─────────────────────────────┐
//! worker:          (runs the method; may ask the host for a service:)  │
//!                  REQUEST ──write callback──▶ CALLBACK                │
//! host:            CALLBACK ──serve it, write result──▶ CALLBACK_DONE  │
//! worker:          CALLBACK_DONE ──read result──▶ REQUEST (running)    │
//! worker:  REQUEST ──write response──▶ RESPONSE ◀──────────────────────┘
//! host:    RESPONSE ──read, release the lane──▶ IDLE
//! ```
//!
//! Whoever waits spins briefly first (a round trip with both sides running
//! never enters the kernel), then sleeps on the state word with
//! `FUTEX_WAIT` — the shared (not `FUTEX_PRIVATE`) kind, since the word is in
//! a mapping shared by two processes. The waker only issues `FUTEX_WAKE` when
//! the other side said it is sleeping (`host_waiting` / `worker_waiting`).
//! The waiting host thread serves callbacks itself, so a host function that
//! calls another plugin method needs no extra thread.
//!
//! The worker may be hostile or corrupt: every value the host reads from the
//! region (state, offsets, lengths, status, text) is copied out once and
//! checked against the layout the host chose before use; an impossible value
//! is an error, never an out-of-bounds access. The region's size is sealed
//! (`F_SEAL_SHRINK | F_SEAL_GROW`), so a worker cannot truncate it under the
//! host's mapping (which would turn host reads into `SIGBUS`). Lane
//! ownership is kept in host-private memory, out of the worker's reach.

use std::cell::Cell;
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{fence, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result, Status};

/// Magic number at the start of a region: `"HMODLANE"`.
pub const REGION_MAGIC: u64 = u64::from_le_bytes(*b"HMODLANE");
/// Size of the region header, and of each lane header.
pub const HEADER_SIZE: u64 = 4096;
/// Bytes of error text a worker can return with a failed call.
pub const ERROR_CAPACITY: usize = 2048;
/// Most lanes a region may have.
pub const MAX_LANES: u32 = 256;
/// Largest payload area per lane.
pub const MAX_PAYLOAD: u64 = 1 << 30;
/// Largest callback area per lane.
pub const MAX_CALLBACK: u64 = 16 << 20;

/// Lane state: free, no call.
pub const IDLE: u32 = 0;
/// Lane state: a request is written (host → worker), or the worker runs it.
pub const REQUEST: u32 = 1;
/// Lane state: the response is written (worker → host).
pub const RESPONSE: u32 = 2;
/// Lane state: the worker asks the host for a service during the call.
pub const CALLBACK: u32 = 3;
/// Lane state: the host answered the callback.
pub const CALLBACK_DONE: u32 = 4;
/// Lane state: written by the host's supervisor when the worker died, to
/// wake a waiting host thread.
pub const DEAD: u32 = 5;

/// Callback kind: a log line (`arg` = level, text in the callback area).
pub const CB_LOG: u32 = 1;
/// Callback kind: a host function call (name, then input, in the callback area).
pub const CB_CALL_HOST: u32 = 2;

/// How long a waiter spins before it sleeps on the futex, by default.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);
/// Longest single futex sleep of a host thread: it then checks again
/// whether the worker is alive, so a worker that clears `host_waiting`
/// cannot make a host thread sleep past a crash or its deadline.
const MAX_SLEEP: Duration = Duration::from_millis(50);

/// The shape of a region, chosen by the host and sent to the worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Number of lanes (concurrent calls).
    pub lanes: u32,
    /// Bytes of callback area per lane.
    pub callback_capacity: u64,
    /// Bytes of payload area per lane (input plus output).
    pub payload_capacity: u64,
}

fn round_up(v: u64, to: u64) -> Option<u64> {
    v.checked_add(to - 1).map(|x| x / to * to)
}

impl Layout {
    /// Checks the limits; every size computation below relies on it.
    pub fn validate(&self) -> Result<()> {
        let ok = (1..=MAX_LANES).contains(&self.lanes)
            && (1..=MAX_PAYLOAD).contains(&self.payload_capacity)
            && (256..=MAX_CALLBACK).contains(&self.callback_capacity);
        if !ok {
            return Err(Error::new(
                Status::InvalidArgument,
                format!(
                    "shared-memory layout: expected 1..={MAX_LANES} lanes, a payload area of 1..={MAX_PAYLOAD} bytes \
                     and a callback area of 256..={MAX_CALLBACK} bytes, found {} lanes, {} and {} bytes",
                    self.lanes, self.payload_capacity, self.callback_capacity
                ),
            ));
        }
        Ok(())
    }

    /// Bytes from one lane to the next (page aligned).
    pub fn lane_stride(&self) -> u64 {
        // Cannot overflow within the validated limits.
        round_up(HEADER_SIZE + self.callback_capacity + self.payload_capacity, HEADER_SIZE).unwrap_or(u64::MAX)
    }

    /// Total size of the region.
    pub fn region_len(&self) -> u64 {
        HEADER_SIZE + self.lane_stride() * self.lanes as u64
    }

    fn lane_offset(&self, lane: u32) -> u64 {
        HEADER_SIZE + self.lane_stride() * lane as u64
    }
}

/// The region header, written by the host before the worker starts.
#[repr(C)]
struct RegionHeader {
    magic: AtomicU64,
    lanes: AtomicU32,
    _pad: AtomicU32,
    callback_capacity: AtomicU64,
    payload_capacity: AtomicU64,
}

/// The fixed part of a lane. Every field is an atomic: both processes read
/// and write them concurrently.
#[repr(C)]
pub(crate) struct LaneHeader {
    /// The futex word (`IDLE`, `REQUEST`, …).
    pub state: AtomicU32,
    /// Non-zero while the host thread is (about to be) asleep on `state`.
    pub host_waiting: AtomicU32,
    /// Non-zero while the worker thread is (about to be) asleep on `state`.
    pub worker_waiting: AtomicU32,
    /// Call sequence number, written by the host with each request.
    pub seq: AtomicU32,
    // Request (host → worker).
    pub method: AtomicU32,
    pub _pad0: AtomicU32,
    pub input_off: AtomicU64,
    pub input_len: AtomicU64,
    pub out_off: AtomicU64,
    pub out_cap: AtomicU64,
    // Response (worker → host).
    pub resp_seq: AtomicU32,
    pub status: AtomicI32,
    pub resp_off: AtomicU64,
    pub resp_len: AtomicU64,
    pub err_len: AtomicU32,
    // Callback (worker → host, then host → worker).
    pub cb_kind: AtomicU32,
    pub cb_arg: AtomicI32,
    pub cb_name_len: AtomicU32,
    pub cb_in_len: AtomicU64,
    pub cb_status: AtomicI32,
    pub _pad1: AtomicU32,
    pub cb_out_len: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<LaneHeader>() + ERROR_CAPACITY <= HEADER_SIZE as usize);
const ERR_OFFSET: usize = 512;
const _: () = assert!(std::mem::size_of::<LaneHeader>() <= ERR_OFFSET);

/// A mapped region, in either process. Unmapped on drop.
pub struct Region {
    base: *mut u8,
    len: usize,
    layout: Layout,
}

// SAFETY: the mapping is plain shared memory; every access to it goes
// through atomics or through copies whose results are validated.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: base/len describe a mapping this value owns.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

fn os_error(what: &str) -> Error {
    let e = std::io::Error::last_os_error();
    Error::new(Status::Io, format!("{what}: {e}"))
}

fn map(fd: BorrowedFd<'_>, len: u64) -> Result<*mut u8> {
    let len = usize::try_from(len).map_err(|_| Error::new(Status::InvalidArgument, "region too large"))?;
    // SAFETY: a fresh shared mapping of a descriptor we hold; the kernel
    // checks the arguments.
    let p = unsafe {
        libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd.as_raw_fd(), 0)
    };
    if p == libc::MAP_FAILED {
        return Err(os_error("mmap of the shared region"));
    }
    Ok(p as *mut u8)
}

impl Region {
    /// Creates a region of `layout` in a new memfd, size sealed; returns it
    /// with the descriptor to hand to the worker.
    pub fn create(layout: Layout) -> Result<(Region, OwnedFd)> {
        layout.validate()?;
        let name = CString::new("hotmod-lanes").unwrap_or_default();
        // SAFETY: plain syscall with a valid NUL-terminated name.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
        if fd < 0 {
            return Err(os_error("memfd_create for the shared region"));
        }
        // SAFETY: fd is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let len = layout.region_len();
        // SAFETY: plain syscalls on our descriptor.
        let sized = unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } == 0
            && unsafe {
                libc::fcntl(
                    fd.as_raw_fd(),
                    libc::F_ADD_SEALS,
                    libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
                )
            } == 0;
        if !sized {
            return Err(os_error("sizing and sealing the shared region"));
        }
        let base = map(fd.as_fd_borrowed(), len)?;
        let region = Region { base, len: len as usize, layout };
        let h = region.region_header();
        h.lanes.store(layout.lanes, Ordering::Relaxed);
        h.callback_capacity.store(layout.callback_capacity, Ordering::Relaxed);
        h.payload_capacity.store(layout.payload_capacity, Ordering::Relaxed);
        h.magic.store(REGION_MAGIC, Ordering::Release);
        Ok((region, fd))
    }

    /// Maps a region the host created (worker side), checking that the
    /// descriptor is exactly as large as `layout` says and that the header
    /// agrees.
    pub fn open(fd: BorrowedFd<'_>, layout: Layout) -> Result<Region> {
        layout.validate()?;
        // SAFETY: fstat into a zeroed struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return Err(os_error("fstat of the shared region"));
        }
        let len = layout.region_len();
        if st.st_size as u64 != len {
            return Err(Error::new(
                Status::InvalidArgument,
                format!("shared region: expected {len} bytes for {layout:?}, found {}", st.st_size),
            ));
        }
        let region = Region { base: map(fd, len)?, len: len as usize, layout };
        let h = region.region_header();
        let same = h.magic.load(Ordering::Acquire) == REGION_MAGIC
            && h.lanes.load(Ordering::Relaxed) == layout.lanes
            && h.callback_capacity.load(Ordering::Relaxed) == layout.callback_capacity
            && h.payload_capacity.load(Ordering::Relaxed) == layout.payload_capacity;
        if !same {
            return Err(Error::new(
                Status::InvalidArgument,
                "shared region: header does not match the announced layout",
            ));
        }
        Ok(region)
    }

    /// The layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    fn region_header(&self) -> &RegionHeader {
        // SAFETY: the region starts with a header page; all fields are atomics.
        unsafe { &*(self.base as *const RegionHeader) }
    }

    fn lane_base(&self, lane: u32) -> *mut u8 {
        debug_assert!(lane < self.layout.lanes);
        // SAFETY: within the mapping for every lane < lanes (validated layout).
        unsafe { self.base.add(self.layout.lane_offset(lane) as usize) }
    }

    pub(crate) fn lane(&self, lane: u32) -> &LaneHeader {
        // SAFETY: each lane starts with a header page of atomics.
        unsafe { &*(self.lane_base(lane) as *const LaneHeader) }
    }

    fn err_area(&self, lane: u32) -> *mut u8 {
        // SAFETY: the error area lies inside the lane header page.
        unsafe { self.lane_base(lane).add(ERR_OFFSET) }
    }

    fn callback_area(&self, lane: u32) -> *mut u8 {
        // SAFETY: the callback area follows the lane header.
        unsafe { self.lane_base(lane).add(HEADER_SIZE as usize) }
    }

    /// Start of a lane's payload area (`payload_capacity` bytes).
    pub fn payload(&self, lane: u32) -> *mut u8 {
        // SAFETY: the payload area follows the callback area.
        unsafe { self.callback_area(lane).add(self.layout.callback_capacity as usize) }
    }

    /// The lane whose payload area holds `[ptr, ptr + len)`, with the offset
    /// of `ptr` in it.
    pub fn payload_lane_of(&self, ptr: *const u8, len: usize) -> Option<(u32, u64)> {
        let addr = ptr as usize;
        let first = self.payload(0) as usize;
        if addr < first {
            return None;
        }
        let stride = self.layout.lane_stride() as usize;
        let lane = (addr - first) / stride;
        if lane >= self.layout.lanes as usize {
            return None;
        }
        let off = (addr - self.payload(lane as u32) as usize) as u64;
        let end = off.checked_add(len as u64)?;
        (end <= self.layout.payload_capacity).then_some((lane as u32, off))
    }

    /// Whether `[off, off + len)` lies inside the payload area.
    fn payload_range_ok(&self, off: u64, len: u64) -> bool {
        off.checked_add(len).is_some_and(|end| end <= self.layout.payload_capacity)
    }

    /// Copies bytes out of shared memory (which the other side may change
    /// meanwhile: only the copy is used).
    ///
    /// # Safety
    /// `[src, src + len)` must lie inside the mapping.
    unsafe fn copy_out(src: *const u8, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len);
        // SAFETY: caller guarantees the source range; v has room for len.
        unsafe {
            std::ptr::copy_nonoverlapping(src, v.as_mut_ptr(), len);
            v.set_len(len);
        }
        v
    }

    /// Writes bytes into shared memory.
    ///
    /// # Safety
    /// `[dst, dst + bytes.len())` must lie inside the mapping.
    unsafe fn copy_in(dst: *mut u8, bytes: &[u8]) {
        // SAFETY: caller guarantees the destination range.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len()) };
    }
}

trait AsFdBorrowed {
    fn as_fd_borrowed(&self) -> BorrowedFd<'_>;
}
impl AsFdBorrowed for OwnedFd {
    fn as_fd_borrowed(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.as_fd()
    }
}

/// `FUTEX_WAIT` on a word of a shared mapping (not `FUTEX_PRIVATE_FLAG`).
fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let tsp = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: the word is a live, aligned u32 in a mapping; the kernel
    // only reads it. EAGAIN/EINTR/ETIMEDOUT are all "look again".
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, expected, tsp, 0usize, 0u32) };
}

/// `FUTEX_WAKE` of every waiter on a word of a shared mapping.
pub(crate) fn futex_wake(word: &AtomicU32) {
    // SAFETY: as in futex_wait; waking has no memory effect.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX, 0usize, 0usize, 0u32) };
}

/// Sets the state word and wakes the other side if it sleeps.
fn publish(state: &AtomicU32, other_waiting: &AtomicU32, value: u32) {
    // SeqCst store then SeqCst load, against the sleeper's SeqCst store of
    // its waiting flag then SeqCst load of the state: one of the two sees
    // the other, so a wake-up is never lost.
    state.store(value, Ordering::SeqCst);
    if other_waiting.load(Ordering::SeqCst) != 0 {
        futex_wake(state);
    }
}

/// Why a host-side wait ended without a response.
#[derive(Debug)]
pub enum WaitFailure {
    /// The deadline passed.
    Timeout,
    /// The worker is gone (the `alive` check said so, or the state is `DEAD`).
    Dead,
}

/// Waits while `busy(state)` holds: spins for `spin`, then sleeps on the
/// futex in slices of at most [`MAX_SLEEP`], checking `alive` and the
/// deadline between them. Returns the state that ended the wait.
fn host_wait(
    h: &LaneHeader,
    busy: impl Fn(u32) -> bool,
    spin: Duration,
    deadline: Option<Instant>,
    alive: &dyn Fn() -> bool,
) -> Result<u32, WaitFailure> {
    let s = h.state.load(Ordering::Acquire);
    if !busy(s) {
        return Ok(s);
    }
    let spin_end = Instant::now() + spin;
    let mut n = 0u32;
    loop {
        std::hint::spin_loop();
        let s = h.state.load(Ordering::Acquire);
        if !busy(s) {
            return Ok(s);
        }
        n = n.wrapping_add(1);
        if n & 63 == 0 && Instant::now() >= spin_end {
            break;
        }
    }
    loop {
        h.host_waiting.store(1, Ordering::SeqCst);
        let s = h.state.load(Ordering::SeqCst);
        if !busy(s) {
            h.host_waiting.store(0, Ordering::Relaxed);
            fence(Ordering::Acquire);
            return Ok(s);
        }
        if !alive() {
            h.host_waiting.store(0, Ordering::Relaxed);
            return Err(WaitFailure::Dead);
        }
        let mut slice = MAX_SLEEP;
        if let Some(d) = deadline {
            let now = Instant::now();
            if now >= d {
                h.host_waiting.store(0, Ordering::Relaxed);
                return Err(WaitFailure::Timeout);
            }
            slice = slice.min(d - now);
        }
        futex_wait(&h.state, s, Some(slice));
    }
}

/// A request, as the host writes it.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    /// Method index in the plugin's declaration order.
    pub method: u32,
    /// Input bytes: offset in the payload area.
    pub input_off: u64,
    /// Input length.
    pub input_len: u64,
    /// Where the worker may write the output: offset in the payload area.
    pub out_off: u64,
    /// How many bytes it may write there.
    pub out_cap: u64,
}

/// A validated response, as the host reads it.
#[derive(Debug)]
pub struct Response {
    /// Worker status: 0, or a hotmod status code.
    pub status: i32,
    /// Output offset in the payload area (inside the offered range).
    pub out_off: u64,
    /// Output length.
    pub out_len: u64,
    /// Error text sent with a failure.
    pub message: String,
}

/// What a host offers to a worker's callbacks during a call.
pub trait HostServices: Send + Sync {
    /// A log line from the plugin (`HOTMOD_LOG_*` level).
    fn log(&self, level: i32, line: &str);
    /// Calls a host function; an error is a hotmod status code and a message.
    fn call_host(&self, name: &str, input: &[u8]) -> std::result::Result<Vec<u8>, (i32, String)>;
}

/// Host services that log nowhere and know no host function.
pub struct NoServices;

impl HostServices for NoServices {
    fn log(&self, _level: i32, _line: &str) {}
    fn call_host(&self, name: &str, _input: &[u8]) -> std::result::Result<Vec<u8>, (i32, String)> {
        Err((Status::MethodNotFound.code(), format!("no host function '{name}' is registered")))
    }
}

/// Why a call on a lane failed on the host side.
#[derive(Debug)]
pub enum LaneFailure {
    /// The deadline passed.
    Timeout,
    /// The worker died.
    Dead,
    /// The worker wrote something impossible into the lane.
    Garbage(String),
}

/// The host side of the channel: the region plus host-private lane owners.
pub struct HostChannel {
    region: Region,
    /// 0 = free, 1 = taken by a call, 2 = held by a buffer. Host-private, so
    /// the worker cannot make two host threads share a lane.
    owners: Box<[AtomicU32]>,
    /// Spin time before sleeping.
    pub spin: Duration,
}

thread_local! {
    /// The lane this thread used last: tried first, so a thread usually
    /// gets the same lane with one uncontended compare-and-swap.
    static LANE_HINT: Cell<u32> = const { Cell::new(u32::MAX) };
}

static NEXT_HINT: AtomicU32 = AtomicU32::new(0);

/// A lane owned by one host thread for one call (or by a buffer).
pub struct LaneGuard<'c> {
    ch: &'c HostChannel,
    /// The lane index.
    pub lane: u32,
}

impl Drop for LaneGuard<'_> {
    fn drop(&mut self) {
        self.ch.owners[self.lane as usize].store(0, Ordering::Release);
    }
}

impl HostChannel {
    /// Wraps a region the host created.
    pub fn new(region: Region) -> HostChannel {
        let owners = (0..region.layout.lanes).map(|_| AtomicU32::new(0)).collect();
        HostChannel { region, owners, spin: DEFAULT_SPIN }
    }

    /// The region.
    pub fn region(&self) -> &Region {
        &self.region
    }

    fn try_take(&self, lane: u32, tag: u32) -> bool {
        self.owners[lane as usize].compare_exchange(0, tag, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    /// Takes a free lane: the thread's last lane first (one CAS), then a
    /// scan; if every lane is busy, yields and tries again until `deadline`.
    pub fn acquire(&self, deadline: Option<Instant>) -> Result<LaneGuard<'_>, LaneFailure> {
        self.acquire_tagged(1, deadline)
    }

    /// Like [`acquire`](Self::acquire), for a lane held by a buffer.
    pub fn acquire_for_buffer(&self, deadline: Option<Instant>) -> Result<LaneGuard<'_>, LaneFailure> {
        self.acquire_tagged(2, deadline)
    }

    fn acquire_tagged(&self, tag: u32, deadline: Option<Instant>) -> Result<LaneGuard<'_>, LaneFailure> {
        let n = self.region.layout.lanes;
        let hint = LANE_HINT.with(|h| h.get());
        if hint < n && self.try_take(hint, tag) {
            return Ok(LaneGuard { ch: self, lane: hint });
        }
        let start = NEXT_HINT.fetch_add(1, Ordering::Relaxed) % n;
        loop {
            for k in 0..n {
                let lane = (start + k) % n;
                if self.try_take(lane, tag) {
                    LANE_HINT.with(|h| h.set(lane));
                    return Ok(LaneGuard { ch: self, lane });
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(LaneFailure::Timeout);
            }
            std::thread::yield_now();
        }
    }

    /// A guard for a lane the caller already owns (a buffer's): dropping
    /// it frees the lane.
    pub fn adopt(&self, lane: u32) -> LaneGuard<'_> {
        LaneGuard { ch: self, lane }
    }

    /// Whether `lane` is held by a buffer.
    pub fn held_by_buffer(&self, lane: u32) -> bool {
        self.owners.get(lane as usize).is_some_and(|o| o.load(Ordering::Acquire) == 2)
    }

    /// Copies `input` into the lane's payload area at offset 0.
    pub fn write_input(&self, lane: &LaneGuard<'_>, input: &[u8]) -> Result<(), LaneFailure> {
        if input.len() as u64 > self.region.layout.payload_capacity {
            return Err(LaneFailure::Garbage(String::new()));
        }
        // SAFETY: the range fits in the lane's payload area (checked).
        unsafe { Region::copy_in(self.region.payload(lane.lane), input) };
        Ok(())
    }

    /// Runs one call on an owned lane: writes `req`, wakes the worker,
    /// serves its callbacks, and returns the validated response.
    pub fn round_trip(
        &self,
        lane: &LaneGuard<'_>,
        req: Request,
        services: &dyn HostServices,
        deadline: Option<Instant>,
        alive: &dyn Fn() -> bool,
    ) -> Result<Response, LaneFailure> {
        let r = &self.region;
        let i = lane.lane;
        let h = r.lane(i);
        let seq = h.seq.load(Ordering::Relaxed).wrapping_add(1);
        h.seq.store(seq, Ordering::Relaxed);
        h.method.store(req.method, Ordering::Relaxed);
        h.input_off.store(req.input_off, Ordering::Relaxed);
        h.input_len.store(req.input_len, Ordering::Relaxed);
        h.out_off.store(req.out_off, Ordering::Relaxed);
        h.out_cap.store(req.out_cap, Ordering::Relaxed);
        publish(&h.state, &h.worker_waiting, REQUEST);
        loop {
            let s =
                host_wait(h, |s| s == REQUEST || s == CALLBACK_DONE, self.spin, deadline, alive).map_err(
                    |f| match f {
                        WaitFailure::Timeout => LaneFailure::Timeout,
                        WaitFailure::Dead => LaneFailure::Dead,
                    },
                )?;
            match s {
                RESPONSE => break,
                CALLBACK => {
                    // A worker answering every callback with another must
                    // not hold the thread past its deadline.
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(LaneFailure::Timeout);
                    }
                    self.serve_callback(i, services);
                    publish(&h.state, &h.worker_waiting, CALLBACK_DONE);
                }
                DEAD => return Err(LaneFailure::Dead),
                other => {
                    return Err(LaneFailure::Garbage(format!(
                        "lane {i}: expected state RESPONSE or CALLBACK, found {other:#x}"
                    )))
                }
            }
        }
        let resp = self.read_response(i, seq, req);
        h.state.store(IDLE, Ordering::Release);
        resp
    }

    fn read_response(&self, i: u32, seq: u32, req: Request) -> Result<Response, LaneFailure> {
        let r = &self.region;
        let h = r.lane(i);
        // One load per field: a worker changing them now changes nothing.
        let resp_seq = h.resp_seq.load(Ordering::Relaxed);
        let status = h.status.load(Ordering::Relaxed);
        let off = h.resp_off.load(Ordering::Relaxed);
        let len = h.resp_len.load(Ordering::Relaxed);
        let err_len = h.err_len.load(Ordering::Relaxed) as usize;
        let garbage = |what: String| Err(LaneFailure::Garbage(format!("lane {i}: {what}")));
        if resp_seq != seq {
            return garbage(format!("expected the response to call {seq}, found one to call {resp_seq}"));
        }
        if status != 0 && Status::from_code(status).is_none() {
            return garbage(format!("expected a hotmod status code, found {status}"));
        }
        if err_len > ERROR_CAPACITY {
            return garbage(format!("expected at most {ERROR_CAPACITY} bytes of error text, found {err_len}"));
        }
        let within_offer = off >= req.out_off
            && off.checked_add(len).is_some_and(|end| end <= req.out_off + req.out_cap)
            && r.payload_range_ok(off, len);
        if status == 0 && !within_offer {
            return garbage(format!(
                "expected output within [{}, {}) of the payload area, found {len} bytes at {off}",
                req.out_off,
                req.out_off + req.out_cap
            ));
        }
        // SAFETY: err_len <= ERROR_CAPACITY, inside the lane header page.
        let text = unsafe { Region::copy_out(r.err_area(i), err_len) };
        Ok(Response { status, out_off: off, out_len: len, message: String::from_utf8_lossy(&text).into_owned() })
    }

    /// The bytes of a validated response's output, in place.
    ///
    /// The worker could still change them while the host reads; the host
    /// treats them as plain bytes, so that changes values, not safety.
    pub fn output<'a>(&'a self, lane: &'a LaneGuard<'_>, resp: &Response) -> &'a [u8] {
        debug_assert!(self.region.payload_range_ok(resp.out_off, resp.out_len));
        // SAFETY: read_response checked the range against the payload area.
        unsafe {
            std::slice::from_raw_parts(self.region.payload(lane.lane).add(resp.out_off as usize), resp.out_len as usize)
        }
    }

    fn serve_callback(&self, i: u32, services: &dyn HostServices) {
        let r = &self.region;
        let h = r.lane(i);
        let cap = r.layout.callback_capacity;
        let kind = h.cb_kind.load(Ordering::Relaxed);
        let arg = h.cb_arg.load(Ordering::Relaxed);
        let name_len = h.cb_name_len.load(Ordering::Relaxed) as u64;
        let in_len = h.cb_in_len.load(Ordering::Relaxed);
        let area = r.callback_area(i);
        let reply = |status: i32, bytes: &[u8]| {
            let n = bytes.len().min(cap as usize);
            // SAFETY: n <= the callback area's size.
            unsafe { Region::copy_in(area, &bytes[..n]) };
            h.cb_out_len.store(n as u64, Ordering::Relaxed);
            h.cb_status.store(status, Ordering::Relaxed);
        };
        if name_len.checked_add(in_len).is_none_or(|t| t > cap) {
            return reply(
                Status::InvalidArgument.code(),
                format!("callback arguments of {name_len}+{in_len} bytes exceed the {cap}-byte callback area")
                    .as_bytes(),
            );
        }
        // SAFETY: both ranges lie in the callback area (checked above).
        let (name, input) = unsafe {
            (Region::copy_out(area, name_len as usize), Region::copy_out(area.add(name_len as usize), in_len as usize))
        };
        match kind {
            CB_LOG => {
                let line = String::from_utf8_lossy(&input);
                // A panicking service must not leave the lane mid-callback.
                let _ = catch_unwind(AssertUnwindSafe(|| services.log(arg, &line)));
                reply(0, &[]);
            }
            CB_CALL_HOST => {
                let Ok(name) = std::str::from_utf8(&name) else {
                    return reply(Status::InvalidArgument.code(), b"host function name is not UTF-8");
                };
                let result = catch_unwind(AssertUnwindSafe(|| services.call_host(name, &input)))
                    .unwrap_or_else(|_| Err((Status::Internal.code(), format!("host function '{name}' panicked"))));
                match result {
                    Ok(out) if out.len() as u64 > cap => reply(
                        Status::OutputTooLarge.code(),
                        format!(
                            "host function '{name}' returned {} bytes, more than the {cap}-byte callback area",
                            out.len()
                        )
                        .as_bytes(),
                    ),
                    Ok(out) => reply(0, &out),
                    Err((code, msg)) => {
                        reply(if code == 0 { Status::PluginError.code() } else { code }, msg.as_bytes())
                    }
                }
            }
            other => reply(Status::InvalidArgument.code(), format!("unknown callback kind {other}").as_bytes()),
        }
    }

    /// Marks every lane `DEAD` and wakes its waiter (the worker died).
    pub fn wake_all_dead(&self) {
        for i in 0..self.region.layout.lanes {
            let h = self.region.lane(i);
            h.state.store(DEAD, Ordering::SeqCst);
            futex_wake(&h.state);
        }
    }
}

/// The worker side of one lane.
pub struct WorkerLane<'r> {
    region: &'r Region,
    /// The lane index.
    pub lane: u32,
    seq: Cell<u32>,
    spin: Duration,
}

/// A request as the worker sees it, checked against the layout.
pub struct ServedRequest<'r> {
    /// Method index.
    pub method: u32,
    /// The input bytes, in shared memory.
    pub input: &'r [u8],
    /// Where to write the output.
    pub out: *mut u8,
    /// Bytes available at `out`.
    pub out_cap: usize,
    /// `out` as an offset in the payload area.
    pub out_off: u64,
}

impl<'r> WorkerLane<'r> {
    /// The worker side of lane `lane`.
    pub fn new(region: &'r Region, lane: u32) -> WorkerLane<'r> {
        WorkerLane { region, lane, seq: Cell::new(0), spin: DEFAULT_SPIN }
    }

    fn header(&self) -> &LaneHeader {
        self.region.lane(self.lane)
    }

    /// Waits for the next request (forever: the worker exits when its host
    /// goes away). A request whose ranges do not fit is answered with an
    /// error and the wait goes on.
    pub fn next_request(&self) -> ServedRequest<'r> {
        loop {
            let h = self.header();
            self.wait_for(|s| s == REQUEST);
            self.seq.set(h.seq.load(Ordering::Relaxed));
            let method = h.method.load(Ordering::Relaxed);
            let (ioff, ilen) = (h.input_off.load(Ordering::Relaxed), h.input_len.load(Ordering::Relaxed));
            let (ooff, ocap) = (h.out_off.load(Ordering::Relaxed), h.out_cap.load(Ordering::Relaxed));
            if !self.region.payload_range_ok(ioff, ilen) || !self.region.payload_range_ok(ooff, ocap) {
                self.respond(Status::InvalidArgument.code(), 0, 0, "request ranges outside the payload area");
                continue;
            }
            let base = self.region.payload(self.lane);
            // SAFETY: ranges checked against the payload area; the host does
            // not touch the lane until the response.
            return unsafe {
                ServedRequest {
                    method,
                    input: std::slice::from_raw_parts(base.add(ioff as usize), ilen as usize),
                    out: base.add(ooff as usize),
                    out_cap: ocap as usize,
                    out_off: ooff,
                }
            };
        }
    }

    fn wait_for(&self, ready: impl Fn(u32) -> bool) -> u32 {
        let h = self.header();
        let spin_end = Instant::now() + self.spin;
        let mut n = 0u32;
        loop {
            let s = h.state.load(Ordering::Acquire);
            if ready(s) {
                return s;
            }
            n = n.wrapping_add(1);
            if n & 63 == 0 && Instant::now() >= spin_end {
                break;
            }
            std::hint::spin_loop();
        }
        loop {
            h.worker_waiting.store(1, Ordering::SeqCst);
            let s = h.state.load(Ordering::SeqCst);
            if ready(s) {
                h.worker_waiting.store(0, Ordering::Relaxed);
                fence(Ordering::Acquire);
                return s;
            }
            futex_wait(&h.state, s, Some(Duration::from_secs(1)));
        }
    }

    /// Answers the current request. Returns false if the lane's state was
    /// not `REQUEST` any more: something overwrote the shared region during
    /// the call, and the status sent is then `PLUGIN_CRASHED` instead.
    pub fn respond(&self, status: i32, out_off: u64, out_len: u64, message: &str) -> bool {
        let h = self.header();
        let intact = h.state.load(Ordering::Acquire) == REQUEST;
        let (status, message) = if intact {
            (status, message)
        } else {
            (Status::PluginCrashed.code(), "the worker's shared region was overwritten during the call")
        };
        let mut n = message.len().min(ERROR_CAPACITY);
        while !message.is_char_boundary(n) {
            n -= 1;
        }
        // SAFETY: n <= ERROR_CAPACITY, inside the lane header page.
        unsafe { Region::copy_in(self.region.err_area(self.lane), &message.as_bytes()[..n]) };
        h.err_len.store(n as u32, Ordering::Relaxed);
        h.status.store(status, Ordering::Relaxed);
        h.resp_off.store(out_off, Ordering::Relaxed);
        h.resp_len.store(out_len, Ordering::Relaxed);
        h.resp_seq.store(self.seq.get(), Ordering::Relaxed);
        publish(&h.state, &h.host_waiting, RESPONSE);
        intact
    }

    /// Asks the waiting host thread for a service during the current call
    /// and waits for its answer: (status, result bytes).
    pub fn callback(&self, kind: u32, arg: i32, name: &[u8], input: &[u8]) -> (i32, Vec<u8>) {
        let h = self.header();
        let cap = self.region.layout.callback_capacity as usize;
        if name.len().saturating_add(input.len()) > cap {
            let msg =
                format!("callback arguments of {} bytes exceed the {cap}-byte callback area", name.len() + input.len());
            return (Status::InvalidArgument.code(), msg.into_bytes());
        }
        let area = self.region.callback_area(self.lane);
        // SAFETY: both ranges fit in the callback area (checked above).
        unsafe {
            Region::copy_in(area, name);
            Region::copy_in(area.add(name.len()), input);
        }
        h.cb_kind.store(kind, Ordering::Relaxed);
        h.cb_arg.store(arg, Ordering::Relaxed);
        h.cb_name_len.store(name.len() as u32, Ordering::Relaxed);
        h.cb_in_len.store(input.len() as u64, Ordering::Relaxed);
        publish(&h.state, &h.host_waiting, CALLBACK);
        let s = self.wait_for(|s| s != CALLBACK);
        if s != CALLBACK_DONE {
            return (Status::PluginCrashed.code(), b"the host abandoned the call".to_vec());
        }
        let status = h.cb_status.load(Ordering::Relaxed);
        let len = (h.cb_out_len.load(Ordering::Relaxed) as usize).min(cap);
        // SAFETY: len <= the callback area's size.
        let out = unsafe { Region::copy_out(area, len) };
        h.state.store(REQUEST, Ordering::Release);
        (status, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::sync::Arc;

    fn layout() -> Layout {
        Layout { lanes: 4, callback_capacity: 4096, payload_capacity: 64 * 1024 }
    }

    /// A host channel and a second mapping of the same memfd for a
    /// simulated worker.
    fn pair() -> (Arc<HostChannel>, Arc<Region>) {
        let (region, fd) = Region::create(layout()).unwrap();
        let worker = Region::open(fd.as_fd(), layout()).unwrap();
        (Arc::new(HostChannel::new(region)), Arc::new(worker))
    }

    fn req(input_len: u64) -> Request {
        let out_off = input_len.div_ceil(64) * 64;
        Request { method: 0, input_off: 0, input_len, out_off, out_cap: layout().payload_capacity - out_off }
    }

    struct Recorder(std::sync::Mutex<Vec<String>>);
    impl HostServices for Recorder {
        fn log(&self, level: i32, line: &str) {
            self.0.lock().unwrap().push(format!("{level}:{line}"));
        }
        fn call_host(&self, name: &str, input: &[u8]) -> std::result::Result<Vec<u8>, (i32, String)> {
            let mut v = name.as_bytes().to_vec();
            v.extend_from_slice(input);
            Ok(v)
        }
    }

    /// An echo worker on one lane: output = reversed input, after a log
    /// callback and a host call when the input starts with "cb".
    fn echo_workers(region: &Arc<Region>) {
        for lane in 0..region.layout().lanes {
            let region = region.clone();
            std::thread::spawn(move || echo_lane(&region, lane));
        }
    }

    fn echo_lane(region: &Region, lane: u32) {
        {
            let w = WorkerLane::new(region, lane);
            loop {
                let r = w.next_request();
                let mut out: Vec<u8> = r.input.iter().rev().copied().collect();
                if r.input.starts_with(b"cb") {
                    assert_eq!(w.callback(CB_LOG, 3, b"", b"hello"), (0, vec![]));
                    let (st, got) = w.callback(CB_CALL_HOST, 0, b"fn:", b"xy");
                    assert_eq!(st, 0);
                    out = got;
                }
                // SAFETY: out_cap bytes at r.out (checked by next_request).
                unsafe { std::ptr::copy_nonoverlapping(out.as_ptr(), r.out, out.len().min(r.out_cap)) };
                w.respond(0, r.out_off, out.len() as u64, "");
            }
        }
    }

    #[test]
    fn round_trip_and_callbacks() {
        let (host, worker) = pair();
        echo_workers(&worker);
        let lane = host.acquire(None).unwrap();
        host.write_input(&lane, b"abc").unwrap();
        let rec = Recorder(Default::default());
        let resp = host.round_trip(&lane, req(3), &rec, None, &|| true).unwrap();
        assert_eq!((resp.status, host.output(&lane, &resp)), (0, &b"cba"[..]));
        host.write_input(&lane, b"cb").unwrap();
        let resp = host.round_trip(&lane, req(2), &rec, None, &|| true).unwrap();
        assert_eq!(host.output(&lane, &resp), b"fn:xy");
        assert_eq!(*rec.0.lock().unwrap(), vec!["3:hello".to_string()]);
    }

    #[test]
    fn lanes_are_exclusive_and_reused() {
        let (host, _w) = pair();
        let a = host.acquire(None).unwrap();
        let la = a.lane;
        drop(a);
        let a = host.acquire(None).unwrap();
        assert_eq!(a.lane, la, "a thread gets its last lane back");
        let b = host.acquire(None).unwrap();
        assert_ne!(a.lane, b.lane);
        let _c = host.acquire(None).unwrap();
        let _d = host.acquire(None).unwrap();
        // All four taken: a bounded acquire times out instead of sharing.
        assert!(matches!(host.acquire(Some(Instant::now())), Err(LaneFailure::Timeout)));
        drop(b);
        assert!(host.acquire(Some(Instant::now())).is_ok());
    }

    #[test]
    fn many_threads_share_few_lanes() {
        let (host, worker) = pair();
        echo_workers(&worker);
        let total = Arc::new(AtomicU32::new(0));
        let ts: Vec<_> = (0..8u8)
            .map(|t| {
                let (host, total) = (host.clone(), total.clone());
                std::thread::spawn(move || {
                    for k in 0..50u8 {
                        let lane = host.acquire(None).unwrap();
                        let input = [t, k, 7];
                        host.write_input(&lane, &input).unwrap();
                        let resp = host.round_trip(&lane, req(3), &NoServices, None, &|| true).unwrap();
                        assert_eq!(host.output(&lane, &resp), [7, k, t]);
                        total.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(total.load(Ordering::Relaxed), 400);
    }

    #[test]
    fn a_silent_worker_times_out_and_a_dead_one_is_noticed() {
        let (host, _w) = pair();
        let lane = host.acquire(None).unwrap();
        let d = Some(Instant::now() + Duration::from_millis(20));
        assert!(matches!(host.round_trip(&lane, req(0), &NoServices, d, &|| true), Err(LaneFailure::Timeout)));
        assert!(matches!(host.round_trip(&lane, req(0), &NoServices, None, &|| false), Err(LaneFailure::Dead)));
        let h2 = host.clone();
        let waker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            h2.wake_all_dead();
        });
        assert!(matches!(host.round_trip(&lane, req(0), &NoServices, None, &|| true), Err(LaneFailure::Dead)));
        waker.join().unwrap();
    }

    /// A hostile worker that answers with garbage in every response field:
    /// each must become an error, never an out-of-bounds read in the host.
    #[test]
    fn garbage_responses_are_errors() {
        let (host, worker) = pair();
        let lane = host.acquire(None).unwrap();
        let i = lane.lane;
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut errors = 0;
        for round in 0..2000u32 {
            let w = worker.clone();
            let vals: Vec<u64> = (0..8).map(|_| rnd()).collect();
            let t = std::thread::spawn(move || {
                let h = w.lane(i);
                while h.state.load(Ordering::Acquire) != REQUEST {
                    std::hint::spin_loop();
                }
                let seq = h.seq.load(Ordering::Relaxed);
                let pick = |v: u64, small: u64| if v & 1 == 0 { v >> 1 } else { (v >> 1) % small };
                h.resp_seq.store(if vals[0] & 3 == 0 { vals[0] as u32 } else { seq }, Ordering::Relaxed);
                h.status.store(if vals[1] & 3 == 0 { vals[1] as i32 } else { 0 }, Ordering::Relaxed);
                h.resp_off.store(pick(vals[2], 70_000), Ordering::Relaxed);
                h.resp_len.store(pick(vals[3], 70_000), Ordering::Relaxed);
                h.err_len.store(pick(vals[4], 3000) as u32, Ordering::Relaxed);
                let st = if vals[5] & 7 == 0 { vals[5] as u32 | 8 } else { RESPONSE };
                h.state.store(st, Ordering::SeqCst);
                futex_wake(&h.state);
            });
            let d = Some(Instant::now() + Duration::from_secs(5));
            match host.round_trip(&lane, req(round as u64 % 100), &NoServices, d, &|| true) {
                Ok(resp) => {
                    // Whatever was accepted lies inside the payload area.
                    let out = host.output(&lane, &resp);
                    assert!(resp.out_off + out.len() as u64 <= layout().payload_capacity);
                }
                Err(LaneFailure::Garbage(_)) => errors += 1,
                Err(e) => panic!("unexpected {e:?}"),
            }
            t.join().unwrap();
            host.region().lane(i).state.store(IDLE, Ordering::SeqCst);
        }
        assert!(errors > 1000, "most garbage responses must be refused, {errors} were");
    }

    struct Panicky;
    impl HostServices for Panicky {
        fn log(&self, _level: i32, _line: &str) {
            panic!("log service panicked");
        }
        fn call_host(&self, _name: &str, _input: &[u8]) -> std::result::Result<Vec<u8>, (i32, String)> {
            panic!("host function panicked");
        }
    }

    /// A worker whose every answer is another callback is cut off at the
    /// deadline; a panicking host service becomes an error status for the
    /// plugin, and the lane keeps working.
    #[test]
    fn callback_floods_and_panicking_services_are_contained() {
        let (host, worker) = pair();
        let lane = host.acquire(None).unwrap();
        let i = lane.lane;
        let w = worker.clone();
        let t = std::thread::spawn(move || {
            let wl = WorkerLane::new(&w, i);
            let _ = wl.next_request();
            let mut statuses = Vec::new();
            for _ in 0..3 {
                statuses.push(wl.callback(CB_CALL_HOST, 0, b"f", b"").0);
            }
            statuses.push(wl.callback(CB_LOG, 1, b"", b"x").0);
            wl.respond(0, 64, 0, "");
            // Then flood: callbacks until the host gives up on the call.
            let _ = wl.next_request();
            while wl.callback(CB_LOG, 1, b"", b"again").0 == 0 {}
            statuses
        });
        let resp = host.round_trip(&lane, req(1), &Panicky, None, &|| true).unwrap();
        assert_eq!(resp.status, 0);
        let d = Some(Instant::now() + Duration::from_millis(50));
        assert!(matches!(host.round_trip(&lane, req(1), &NoServices, d, &|| true), Err(LaneFailure::Timeout)));
        host.wake_all_dead(); // ends the flooding thread's last wait
        let statuses = t.join().unwrap();
        assert_eq!(statuses[..3], [Status::Internal.code(); 3]);
        assert_eq!(statuses[3], 0, "a panicking log service still answers");
    }

    #[test]
    fn layouts_out_of_range_are_refused() {
        assert!(Layout { lanes: 0, ..layout() }.validate().is_err());
        assert!(Layout { payload_capacity: MAX_PAYLOAD + 1, ..layout() }.validate().is_err());
        let (_r, fd) = Region::create(layout()).unwrap();
        let e = Region::open(fd.as_fd(), Layout { lanes: 5, ..layout() }).err().unwrap();
        assert!(e.message().contains("expected"), "{e:?}");
        // The size is sealed: a worker cannot shrink it under the host.
        // SAFETY: plain syscall on our descriptor.
        assert_ne!(unsafe { libc::ftruncate(fd.as_raw_fd(), 0) }, 0);
    }

    #[test]
    fn payload_lane_of_finds_buffers() {
        let (host, _w) = pair();
        let r = host.region();
        assert_eq!(r.payload_lane_of(r.payload(2), 10), Some((2, 0)));
        // SAFETY: pointer arithmetic inside the mapping.
        let p = unsafe { r.payload(1).add(100) };
        assert_eq!(r.payload_lane_of(p, 10), Some((1, 100)));
        assert_eq!(r.payload_lane_of(p, 64 * 1024), None);
        assert_eq!(r.payload_lane_of(b"x".as_ptr(), 1), None);
    }
}
