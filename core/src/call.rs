//! The call path: method handles, calls by handle and by name, and outputs.
//!
//! A call by handle is: entering a read section (two plain thread-local
//! stores, see [`crate::rcu`]), one load of the module's active version, an
//! index into its method table, a signature-hash compare, one relaxed
//! counter increment, the entry's function pointer with the entry's context
//! (`(func)(ctx, input, output)`), a few compares that check the output
//! landed in the space offered, and one load of the version's count of
//! pending error messages (normally zero). Everything else (error
//! messages, latency samples, retries, plugin memory) is off the fast path.
//!
//! Outputs follow the [`hotmod_abi::hotmod_output`] protocol, checked
//! against the space offered: a `data` pointer inside `[buf, buf+capacity)`
//! is host space and must end inside it (the bytes may start at an offset);
//! a pointer entirely outside is plugin memory; one that straddles the
//! offered space is invalid output. When the plugin hands back memory of its
//! own, the [`Output`] keeps the plugin version alive (mapped, not
//! destroyed) until the output is dropped, and then calls the plugin's
//! release callback exactly once. A callback a failed call set is called at
//! once, exactly once.
//!
//! A method that needs more than the space offered answers
//! `HOTMOD_PLUGIN_OUTPUT_TOO_SMALL` with the size it needs: the call is
//! retried once with that much (bounded by the runtime's `max_output_size`,
//! allocated with `try_reserve`), counted as one call and no error, and the
//! size is remembered per method so later calls offer it at once.
//!
//! Plugin error messages (`host->set_error`) belong to the call that set
//! them: a failure takes the message its own module set during it (a
//! message of another module is never reported); a call that succeeds
//! drops whatever its module left, found without a thread-local access
//! through a per-version count of pending messages; hooks and calls made
//! through host services keep the message of the call around them aside
//! while they run.

use std::cell::RefCell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hotmod_abi as abi;

use crate::error::{Error, Result, Status};
use crate::rcu::{self, Pinned};
use crate::registry::{MethodEntry, ModuleSlot, SlotShared, Version};

/// Space offered to a method by [`MethodHandle::call`] before it must ask
/// for more with `HOTMOD_PLUGIN_OUTPUT_TOO_SMALL` (unless the method asked
/// for more before: then what it asked for). Offers up to this size are
/// made from the stack.
pub const DEFAULT_OUTPUT_OFFER: usize = 256;

/// Results up to this many bytes are kept inside the [`Output`] itself, so
/// a small result costs no allocation.
pub const INLINE_OUTPUT: usize = 64;

/// Status a method entry that is not plugin code (an out-of-process proxy)
/// returns when the process serving the call died: reported as
/// [`Status::PluginCrashed`]. Outside the `HOTMOD_PLUGIN_*` range.
#[allow(dead_code)]
pub(crate) const RC_PROXY_CRASHED: i32 = -2005;
/// Status a proxy entry returns when the call exceeded its deadline:
/// reported as [`Status::Timeout`].
#[allow(dead_code)]
pub(crate) const RC_PROXY_TIMEOUT: i32 = -2006;

/// Per version, how many threads hold a message its plugin (or a host
/// service on its behalf) set and no call has taken yet. The call path's
/// success check reads it from the method entry: a plain load of a line
/// nobody writes while no message is pending, and no thread-local access.
pub(crate) type PendingErrors = Arc<AtomicUsize>;

/// A message set with `host->set_error`, with the version it belongs to.
/// Counted in that version's [`PendingErrors`] while it exists.
struct PluginMessage {
    text: String,
    owner: PendingErrors,
}

impl PluginMessage {
    fn new(owner: &PendingErrors, text: String) -> PluginMessage {
        owner.fetch_add(1, Ordering::Relaxed);
        PluginMessage { text, owner: owner.clone() }
    }

    fn into_text(mut self) -> String {
        std::mem::take(&mut self.text)
    }
}

impl Drop for PluginMessage {
    fn drop(&mut self) {
        self.owner.fetch_sub(1, Ordering::Relaxed);
    }
}

thread_local! {
    /// The message set during the call in progress on this thread.
    static PLUGIN_ERROR: RefCell<Option<PluginMessage>> = const { RefCell::new(None) };
}

/// Puts `new` in this thread's message slot; returns what was there.
/// During thread teardown (thread-locals gone) nothing is stored.
fn swap_message(new: Option<PluginMessage>) -> Option<PluginMessage> {
    let mut new = new;
    PLUGIN_ERROR
        .try_with(|e| match e.try_borrow_mut() {
            Ok(mut e) => std::mem::replace(&mut *e, new.take()),
            Err(_) => None,
        })
        .ok()
        .flatten()
}

/// Stores the error message of the call in progress on this thread, on
/// behalf of the version whose counter `owner` is.
pub(crate) fn set_plugin_error(owner: &PendingErrors, msg: String) {
    drop(swap_message(Some(PluginMessage::new(owner, msg))));
}

/// Takes whatever message is pending on this thread.
fn take_any_error() -> Option<String> {
    swap_message(None).map(PluginMessage::into_text)
}

/// Takes the pending message if it belongs to the version counted by
/// `owner`; a message of any other module is dropped, never reported.
fn take_error_of(owner: &PendingErrors) -> Option<String> {
    swap_message(None).filter(|m| Arc::ptr_eq(&m.owner, owner)).map(PluginMessage::into_text)
}

/// A call of `e` returned successfully: whatever its plugin said through
/// `set_error` is not for any later failure.
#[inline(always)]
fn end_call_ok(e: &MethodEntry) {
    if e.pending.load(Ordering::Relaxed) != 0 {
        drop_stale_error();
    }
}

#[cold]
#[inline(never)]
fn drop_stale_error() {
    drop(swap_message(None));
}

/// The error state of one hook or one call made through a host service
/// (nested inside another plugin call on this thread): entering keeps the
/// outer call's message aside; leaving drops whatever was said inside and
/// puts the outer message back.
pub(crate) struct ErrorScope {
    outer: Option<PluginMessage>,
}

impl ErrorScope {
    /// Starts a scope with no message.
    pub(crate) fn enter() -> ErrorScope {
        ErrorScope { outer: swap_message(None) }
    }

    /// Describes the failure of the hook this scope covers, with the
    /// message it set.
    #[cold]
    pub(crate) fn failure(&self, rc: i32) -> String {
        describe_status(rc, take_any_error())
    }
}

impl Drop for ErrorScope {
    fn drop(&mut self) {
        drop(swap_message(self.outer.take()));
    }
}

/// Describes a non-zero plugin status, with the message the plugin set.
#[cold]
fn describe_status(rc: i32, msg: Option<String>) -> String {
    let what = match rc {
        abi::HOTMOD_PLUGIN_ERROR => "error",
        abi::HOTMOD_PLUGIN_INVALID_INPUT => "invalid input",
        abi::HOTMOD_PLUGIN_OUTPUT_TOO_SMALL => "output too small",
        abi::HOTMOD_PLUGIN_PANICKED => "panicked",
        RC_PROXY_CRASHED => "the process serving the plugin crashed",
        RC_PROXY_TIMEOUT => "timed out",
        _ => "unknown status",
    };
    match msg {
        Some(msg) => format!("{msg} (plugin status {rc}: {what})"),
        None => format!("plugin returned status {rc} ({what}) without a message"),
    }
}

/// Calls the release callback a slot holds, if any, exactly once (it is
/// cleared), with the values the callee stored.
pub(crate) fn release_now(out: &mut abi::hotmod_output) {
    if let Some(release) = out.release.take() {
        // SAFETY: the callee set this callback for these values; taking it
        // out of the slot makes this the only call.
        unsafe { release(out.release_ctx, out.data, out.len) };
    }
}

/// Where the bytes of a filled slot are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placed {
    /// In the offered space, starting this many bytes into `buf`.
    Host(usize),
    /// Memory of the callee's own, entirely outside the offered space.
    Plugin,
    /// Neither: missing, straddling the offered space, or past its end.
    Invalid,
}

/// The space a slot offers (none when `buf` is NULL, whatever `capacity` says).
#[inline(always)]
fn offered(out: &abi::hotmod_output) -> usize {
    if out.buf.is_null() {
        0
    } else {
        out.capacity
    }
}

/// Classifies a filled slot. On the usual path (`data == buf`, `len` within
/// `capacity`) this is a subtraction and two compares.
#[inline(always)]
fn place(out: &abi::hotmod_output) -> Placed {
    let cap = offered(out);
    let off = (out.data as usize).wrapping_sub(out.buf as usize);
    if off <= cap {
        // Inside the offered space (or at its very end): host space.
        return if out.len <= cap - off { Placed::Host(off) } else { Placed::Invalid };
    }
    place_outside(out, cap)
}

#[cold]
#[inline(never)]
fn place_outside(out: &abi::hotmod_output, cap: usize) -> Placed {
    if out.len == 0 {
        return Placed::Plugin;
    }
    let data = out.data as usize;
    let Some(end) = data.checked_add(out.len) else { return Placed::Invalid };
    let buf = out.buf as usize;
    let outside = cap == 0 || end <= buf || data >= buf.saturating_add(cap);
    if data == 0 || !outside {
        return Placed::Invalid;
    }
    Placed::Plugin
}

#[cold]
fn describe_bad_output(out: &abi::hotmod_output) -> String {
    let cap = offered(out);
    let off = (out.data as usize).wrapping_sub(out.buf as usize);
    if out.len > 0 && out.data.is_null() {
        return format!("expected output data for {} bytes, found a NULL data pointer", out.len);
    }
    if off <= cap {
        return format!(
            "expected output within the {cap}-byte buffer offered at {:p}, found {} bytes at offset {off} (data={:p}), which end {} bytes past it",
            out.buf,
            out.len,
            out.data,
            out.len - (cap - off)
        );
    }
    format!(
        "expected output entirely within the {cap}-byte buffer offered at {:p} or entirely in plugin memory, found {} bytes at data={:p}, overlapping the buffer",
        out.buf, out.len, out.data
    )
}

/// Copies the bytes out of a filled slot and releases plugin memory
/// (exactly once, also when the slot is invalid).
///
/// # Safety
/// `out` must have been filled by a callee following the output protocol
/// (plugin memory, if any, readable for `len` bytes), and `buf` (if not
/// NULL) must hold `capacity` bytes.
pub(crate) unsafe fn take_output_bytes(out: &mut abi::hotmod_output) -> Result<Vec<u8>, String> {
    let bytes = match place(out) {
        Placed::Invalid => {
            let msg = describe_bad_output(out);
            release_now(out);
            return Err(msg);
        }
        // SAFETY: the bytes lie inside the offered space (checked).
        Placed::Host(off) => unsafe { abi::hotmod_slice { ptr: out.buf.add(off), len: out.len }.as_bytes() }.to_vec(),
        // SAFETY: per the protocol `data` holds `len` readable bytes.
        Placed::Plugin => unsafe { abi::hotmod_slice { ptr: out.data, len: out.len }.as_bytes() }.to_vec(),
    };
    release_now(out);
    Ok(bytes)
}

/// The bytes a call produced.
///
/// Either bytes the host owns — small results (up to [`INLINE_OUTPUT`])
/// inside this value, larger ones in a vector — or memory the plugin handed
/// over (zero-copy), which keeps the plugin version alive and is released
/// through the plugin's callback exactly once when this value is dropped.
/// An `Output` may be sent to and dropped on any thread.
pub struct Output {
    /// Start of plugin memory (unused for host-owned bytes).
    data: *const u8,
    len: usize,
    owner: OutputOwner,
}

enum OutputOwner {
    /// The first `len` bytes are initialised.
    Inline(std::mem::MaybeUninit<[u8; INLINE_OUTPUT]>),
    Host(Vec<u8>),
    Plugin {
        release: abi::hotmod_release_fn,
        ctx: *mut c_void,
        _version: Arc<Version>,
    },
}
// SAFETY: host memory is a Vec; plugin memory may be read from and released
// on any thread per the plugin contract.
unsafe impl Send for Output {}
// SAFETY: the bytes are immutable while shared.
unsafe impl Sync for Output {}

impl Output {
    /// An output holding bytes the host owns.
    pub fn from_vec(v: Vec<u8>) -> Output {
        Output { data: std::ptr::null(), len: v.len(), owner: OutputOwner::Host(v) }
    }

    /// An output holding a copy of `bytes` (inline when small).
    pub fn copy_from(bytes: &[u8]) -> Output {
        if bytes.len() > INLINE_OUTPUT {
            return Output::from_vec(bytes.to_vec());
        }
        let mut inline = std::mem::MaybeUninit::<[u8; INLINE_OUTPUT]>::uninit();
        // SAFETY: `bytes` fits (checked above) and cannot overlap a new local.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), inline.as_mut_ptr() as *mut u8, bytes.len()) };
        Output { data: std::ptr::null(), len: bytes.len(), owner: OutputOwner::Inline(inline) }
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.owner {
            // SAFETY: the first `len` bytes were written by `copy_from`.
            OutputOwner::Inline(b) => unsafe { std::slice::from_raw_parts(b.as_ptr() as *const u8, self.len) },
            OutputOwner::Host(v) => v,
            // SAFETY: data/len describe plugin memory kept alive (and not
            // released) for our lifetime.
            OutputOwner::Plugin { .. } => unsafe { abi::hotmod_slice { ptr: self.data, len: self.len }.as_bytes() },
        }
    }

    /// Address of the first byte. Plugin and vector memory never moves;
    /// small results live inside this value, so their address is stable
    /// once the `Output` is in its final place (boxed, or stored in a
    /// binding's object) and changes if the value itself is moved.
    pub fn as_ptr(&self) -> *const u8 {
        self.as_bytes().as_ptr()
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the bytes are the plugin's own memory (the zero-copy path).
    pub fn is_plugin_memory(&self) -> bool {
        matches!(self.owner, OutputOwner::Plugin { .. })
    }

    /// The bytes as a vector (no copy when the host owns them; plugin
    /// memory is copied and released).
    pub fn into_vec(mut self) -> Vec<u8> {
        match &mut self.owner {
            // Taking the vector leaves an empty one for Drop, which has
            // nothing to release for host memory.
            OutputOwner::Host(v) => std::mem::take(v),
            _ => self.as_bytes().to_vec(),
        }
    }
}

impl std::ops::Deref for Output {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output").field("len", &self.len).field("plugin_memory", &self.is_plugin_memory()).finish()
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let OutputOwner::Plugin { release: Some(release), ctx, .. } = self.owner {
            // SAFETY: exactly once, with the values the plugin stored; the
            // version (and so the release function's code) is still alive.
            unsafe { release(ctx, self.data, self.len) };
        }
    }
}

/// Runs the method of an entry once on `out`. Counts nothing.
#[inline(always)]
fn run(e: &MethodEntry, input: &[u8], out: &mut abi::hotmod_output) -> i32 {
    // SAFETY: `func` was validated non-NULL from this version's descriptor
    // and `ctx` is what it expects (the instance in process); the version is
    // alive for the call (the caller holds it in a read section or an Arc).
    unsafe { (e.func)(e.ctx, abi::hotmod_slice::from_bytes(input), out) }
}

/// Runs `f` as one counted call of `e` (one call, latency sampled 1 in N).
///
/// The call is counted in the thread record the read section already holds
/// (no second thread-local lookup, no shared write), and while the plugin
/// runs only this version is held (pinned): a call parked in a plugin
/// delays nothing else's reclamation. `f` may use only what the version
/// owns (its entries, their shared slot data), never other values read in
/// the section.
#[inline(always)]
fn counted<R>(v: &Pinned<'_, Version>, e: &MethodEntry, f: impl FnOnce() -> R) -> R {
    let counters = &e.shared.counters;
    let sample = counters.begin_on(v.thread());
    let suspended = rcu::suspend(v);
    let r = if sample {
        let t0 = Instant::now();
        let r = f();
        counters.record_latency(t0.elapsed().as_nanos() as u64);
        r
    } else {
        f()
    };
    drop(suspended);
    r
}

/// What a call with one possible retry came to.
enum Outcome {
    /// The plugin's status for the last run.
    Rc(i32),
    /// The method asked for more than the runtime's `max_output_size`.
    OverCap { need: usize },
    /// The space the method asked for could not be allocated.
    NoMemory { need: usize },
}

/// Runs the method and, if it answers `OUTPUT_TOO_SMALL` asking for more
/// than was offered, once more with what it asked for (in `heap`).
#[inline(always)]
fn run_sized(e: &MethodEntry, input: &[u8], out: &mut abi::hotmod_output, heap: &mut Vec<u8>) -> Outcome {
    let rc = run(e, input, out);
    if rc == abi::HOTMOD_PLUGIN_OUTPUT_TOO_SMALL {
        return retry(e, input, out, heap);
    }
    Outcome::Rc(rc)
}

/// The retry after `OUTPUT_TOO_SMALL`: part of the same call, not an error,
/// and formats no message.
#[cold]
#[inline(never)]
fn retry(e: &MethodEntry, input: &[u8], out: &mut abi::hotmod_output, heap: &mut Vec<u8>) -> Outcome {
    let need = out.len;
    let had = offered(out);
    release_now(out);
    if need <= had {
        // Asked for no more than it had: retrying cannot help.
        return Outcome::Rc(abi::HOTMOD_PLUGIN_OUTPUT_TOO_SMALL);
    }
    if need > e.max_output {
        return Outcome::OverCap { need };
    }
    heap.clear();
    if heap.try_reserve_exact(need).is_err() {
        return Outcome::NoMemory { need };
    }
    e.shared.note_size(need);
    *out = abi::hotmod_output::offering(heap.as_mut_ptr(), heap.capacity());
    let rc = run(e, input, out);
    note_asked(e, rc, out);
    Outcome::Rc(rc)
}

/// Remembers the size a method asked for with `OUTPUT_TOO_SMALL`, when it is
/// more than it was offered and within the cap, so later calls offer it at once.
fn note_asked(e: &MethodEntry, rc: i32, out: &abi::hotmod_output) {
    if rc == abi::HOTMOD_PLUGIN_OUTPUT_TOO_SMALL && out.len > out.capacity && out.len <= e.max_output {
        e.shared.note_size(out.len);
    }
}

/// The space to offer first: what the caller asked for, or more if the
/// method needed more before.
#[inline(always)]
fn first_offer(shared: &SlotShared, offer: usize) -> usize {
    offer.max(shared.size_hint.load(Ordering::Relaxed))
}

/// Reserves `n` bytes in `heap` for an offer, or says why not.
#[cold]
fn reserve_offer(v: &Version, e: &MethodEntry, heap: &mut Vec<u8>, n: usize) -> Result<()> {
    heap.try_reserve_exact(n).map_err(|_| {
        Error::new(
            Status::OutputTooLarge,
            format!("{}: could not allocate the {n}-byte output buffer to offer", where_(v, e)),
        )
    })
}

fn where_(v: &Version, e: &MethodEntry) -> String {
    format!("{}@{} method '{}' ({})", v.info.name, v.info.version, e.shared.name, v.path.display())
}

/// Turns a failed outcome into its error: counts it (once), releases what
/// the plugin handed over, takes the message the call set.
#[cold]
#[inline(never)]
fn failed(v: &Version, e: &MethodEntry, outcome: Outcome, out: &mut abi::hotmod_output) -> Error {
    release_now(out);
    let rc = match outcome {
        Outcome::Rc(rc) => rc,
        Outcome::OverCap { need } => {
            e.shared.counters.error(false);
            drop(swap_message(None));
            return Error::new(
                Status::OutputTooLarge,
                format!(
                    "{}: expected an output of at most {} bytes (max_output_size), the method asked for {need}",
                    where_(v, e),
                    e.max_output
                ),
            );
        }
        Outcome::NoMemory { need } => {
            e.shared.counters.error(false);
            drop(swap_message(None));
            return Error::new(
                Status::OutputTooLarge,
                format!(
                    "{}: the method asked for {need} bytes of output (within max_output_size {}), which could not be allocated",
                    where_(v, e),
                    e.max_output
                ),
            );
        }
    };
    e.shared.counters.error(rc == abi::HOTMOD_PLUGIN_PANICKED);
    let status = match rc {
        abi::HOTMOD_PLUGIN_PANICKED => Status::PluginPanicked,
        abi::HOTMOD_PLUGIN_OUTPUT_TOO_SMALL => Status::OutputTooLarge,
        RC_PROXY_CRASHED => Status::PluginCrashed,
        RC_PROXY_TIMEOUT => Status::Timeout,
        _ => Status::PluginError,
    };
    let mut detail = describe_status(rc, take_error_of(&e.pending));
    if rc == abi::HOTMOD_PLUGIN_OUTPUT_TOO_SMALL {
        let had = offered(out);
        detail = format!("expected at most {had} bytes of output, the method needs {}; {detail}", out.len);
    }
    Error::new(status, format!("{}: {detail}", where_(v, e)))
}

/// A successful run whose slot broke the protocol: counted as an error,
/// plugin memory (if a callback was set) released.
#[cold]
#[inline(never)]
fn bad_output(v: &Version, e: &MethodEntry, out: &mut abi::hotmod_output) -> Error {
    e.shared.counters.error(false);
    drop(swap_message(None));
    let detail = describe_bad_output(out);
    release_now(out);
    Error::new(Status::InvalidOutput, format!("{}: {detail}", where_(v, e)))
}

/// Runs a call and turns a filled slot into an [`Output`].
///
/// Offers up to [`DEFAULT_OUTPUT_OFFER`] bytes come from the stack: a small
/// result is then copied into the `Output` without allocating, and plugin
/// memory costs no allocation at all. A method that asked for more before
/// is offered that much at once.
pub(crate) fn call_owned(v: &Pinned<'_, Version>, e: &MethodEntry, input: &[u8], offer: usize) -> Result<Output> {
    let offer = first_offer(&e.shared, offer);
    let mut stack = std::mem::MaybeUninit::<[u8; DEFAULT_OUTPUT_OFFER]>::uninit();
    let mut heap: Vec<u8> = Vec::new();
    let base = if offer <= DEFAULT_OUTPUT_OFFER {
        stack.as_mut_ptr() as *mut u8
    } else {
        reserve_offer(v, e, &mut heap, offer)?;
        heap.as_mut_ptr()
    };
    let mut out = abi::hotmod_output::offering(base, offer);
    match counted(v, e, || run_sized(e, input, &mut out, &mut heap)) {
        Outcome::Rc(abi::HOTMOD_PLUGIN_OK) => {}
        outcome => return Err(failed(v, e, outcome, &mut out)),
    }
    let off = match place(&out) {
        Placed::Host(off) => off,
        Placed::Plugin => {
            end_call_ok(e);
            return Ok(plugin_output(v, &out));
        }
        Placed::Invalid => return Err(bad_output(v, e, &mut out)),
    };
    end_call_ok(e);
    // Bytes in host space: a callback set anyway is called now, once.
    release_now(&mut out);
    if heap.capacity() == 0 || out.buf != heap.as_mut_ptr() {
        // SAFETY: the plugin wrote `len` bytes at buf+off, inside the
        // offered space (checked by `place`): the stack buffer, which is
        // the only other space offered.
        return Ok(Output::copy_from(unsafe { std::slice::from_raw_parts(out.buf.add(off), out.len) }));
    }
    // SAFETY: buf+off..buf+off+len lies inside heap's allocation (checked by
    // `place`) and was written by the plugin; `copy` allows the overlap.
    unsafe {
        std::ptr::copy(out.buf.add(off), out.buf, out.len);
        heap.set_len(out.len);
    }
    Ok(Output::from_vec(heap))
}

fn plugin_output(v: &Pinned<'_, Version>, out: &abi::hotmod_output) -> Output {
    Output {
        data: out.data,
        len: out.len,
        owner: OutputOwner::Plugin { release: out.release, ctx: out.release_ctx, _version: v.to_arc() },
    }
}

/// Runs a call whose output must land in `dst`; returns the length written.
/// Bytes written at an offset into `dst` are moved to its start; plugin
/// memory is copied into `dst` and released. Inlined into the C API's and
/// bindings' call functions: it is the whole fast path.
#[inline(always)]
pub(crate) fn call_into(v: &Pinned<'_, Version>, e: &MethodEntry, input: &[u8], dst: &mut [u8]) -> Result<usize> {
    let mut out = abi::hotmod_output::offering(dst.as_mut_ptr(), dst.len());
    let rc = counted(v, e, || run(e, input, &mut out));
    if rc != abi::HOTMOD_PLUGIN_OK {
        return Err(into_failed(v, e, rc, &mut out));
    }
    end_call_ok(e);
    if std::ptr::eq(out.data, out.buf) && out.len <= dst.len() && out.release.is_none() {
        return Ok(out.len);
    }
    into_slow(v, e, &mut out, dst)
}

#[cold]
#[inline(never)]
fn into_failed(v: &Version, e: &MethodEntry, rc: i32, out: &mut abi::hotmod_output) -> Error {
    // The caller's buffer is fixed, but later owned calls can offer enough.
    note_asked(e, rc, out);
    failed(v, e, Outcome::Rc(rc), out)
}

/// `call_into` for everything but bytes at the start of `dst`.
#[cold]
#[inline(never)]
fn into_slow(v: &Version, e: &MethodEntry, out: &mut abi::hotmod_output, dst: &mut [u8]) -> Result<usize> {
    match place(out) {
        Placed::Host(off) => {
            release_now(out);
            // SAFETY: off+len <= dst.len() (checked by `place`); `copy`
            // has memmove semantics.
            unsafe { std::ptr::copy(dst.as_ptr().add(off), dst.as_mut_ptr(), out.len) };
            Ok(out.len)
        }
        Placed::Invalid => Err(bad_output(v, e, out)),
        Placed::Plugin => {
            let len = out.len;
            let fits = len <= dst.len();
            if fits && len > 0 {
                // SAFETY: plugin memory holds `len` bytes, entirely outside
                // dst (checked by `place`); dst has room (checked).
                unsafe { std::ptr::copy_nonoverlapping(out.data, dst.as_mut_ptr(), len) };
            }
            release_now(out);
            if !fits {
                e.shared.counters.error(false);
                return Err(Error::new(
                    Status::OutputTooLarge,
                    format!("{}: expected at most {} bytes of output, found {len}", where_(v, e), dst.len()),
                ));
            }
            Ok(len)
        }
    }
}

/// Runs a call on behalf of a plugin (`host->call_module`), with the result
/// in the slot that plugin offered: written into its buffer if it fits,
/// otherwise handed over in host memory it must release, or the callee's
/// own memory forwarded. Returns the callee version to keep alive while the
/// calling plugin holds callee memory. A callee that needs more than the
/// caller offered is retried within the runtime's cap, so the calling
/// plugin never has to.
pub(crate) fn call_for_plugin(
    v: &Pinned<'_, Version>,
    e: &MethodEntry,
    input: &[u8],
    slot: &mut abi::hotmod_output,
) -> Result<Option<Arc<Version>>> {
    let caller_cap = offered(slot);
    let hint = e.shared.size_hint.load(Ordering::Relaxed);
    let mut heap: Vec<u8> = Vec::new();
    let mut out = if hint > caller_cap {
        reserve_offer(v, e, &mut heap, hint)?;
        abi::hotmod_output::offering(heap.as_mut_ptr(), heap.capacity())
    } else {
        abi::hotmod_output::offering(slot.buf, caller_cap)
    };
    match counted(v, e, || run_sized(e, input, &mut out, &mut heap)) {
        Outcome::Rc(abi::HOTMOD_PLUGIN_OK) => {}
        outcome => return Err(failed(v, e, outcome, &mut out)),
    }
    let off = match place(&out) {
        Placed::Host(off) => off,
        Placed::Plugin => {
            end_call_ok(e);
            slot.data = out.data;
            slot.len = out.len;
            slot.release = out.release;
            slot.release_ctx = out.release_ctx;
            return Ok(Some(v.to_arc()));
        }
        Placed::Invalid => return Err(bad_output(v, e, &mut out)),
    };
    end_call_ok(e);
    release_now(&mut out);
    if heap.capacity() == 0 || out.buf != heap.as_mut_ptr() {
        if out.len > 0 {
            // SAFETY: off+len lies within the caller's buffer (checked by
            // `place`); `copy` allows the overlap.
            unsafe { std::ptr::copy(out.buf.add(off), slot.buf, out.len) };
        }
        slot.data = slot.buf;
        slot.len = out.len;
        return Ok(None);
    }
    // SAFETY: as in call_owned: inside heap's allocation, written by the callee.
    unsafe {
        std::ptr::copy(out.buf.add(off), out.buf, out.len);
        heap.set_len(out.len);
    }
    if heap.len() <= caller_cap && !heap.is_empty() {
        // SAFETY: the caller's buffer holds caller_cap bytes.
        unsafe { std::ptr::copy_nonoverlapping(heap.as_ptr(), slot.buf, heap.len()) };
        slot.data = slot.buf;
        slot.len = heap.len();
        return Ok(None);
    }
    give_vec(slot, heap);
    Ok(None)
}

unsafe extern "C" fn release_vec(ctx: *mut c_void, _data: *const u8, _len: usize) {
    // SAFETY: ctx is the Box<Vec<u8>> that `give_vec` leaked, released once.
    drop(unsafe { Box::from_raw(ctx as *mut Vec<u8>) });
}

/// Hands `v` over through `slot` as host memory the receiver releases.
pub(crate) fn give_vec(slot: &mut abi::hotmod_output, v: Vec<u8>) {
    let boxed = Box::new(v);
    slot.data = boxed.as_ptr();
    slot.len = boxed.len();
    slot.release = Some(release_vec);
    slot.release_ctx = Box::into_raw(boxed) as *mut c_void;
}

/// A resolved method: the fast way to call it, again and again.
///
/// A handle follows upgrades of its module (it always reaches the active
/// version). After the module is unloaded it answers [`Status::StaleHandle`];
/// after a forced upgrade that changed its method's signature it answers
/// [`Status::SignatureChanged`]. Handles are `Send + Sync` and cheap to clone.
pub struct MethodHandle {
    slot: Arc<ModuleSlot>,
    id: usize,
    signature_hash: u64,
    shared: Arc<SlotShared>,
    /// The declared signature matching `signature_hash`.
    signature: Arc<str>,
}

impl Clone for MethodHandle {
    fn clone(&self) -> Self {
        self.shared.handles.fetch_add(1, Ordering::Relaxed);
        MethodHandle {
            slot: self.slot.clone(),
            id: self.id,
            signature_hash: self.signature_hash,
            shared: self.shared.clone(),
            signature: self.signature.clone(),
        }
    }
}

impl Drop for MethodHandle {
    fn drop(&mut self) {
        self.shared.handles.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for MethodHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MethodHandle({}.{})", self.slot.name, self.shared.name)
    }
}

impl MethodHandle {
    pub(crate) fn resolve(slot: &Arc<ModuleSlot>, v: &Version, method: &str) -> Result<MethodHandle> {
        let Some(&id) = v.by_name.get(method) else {
            return Err(method_not_found(v, method));
        };
        let e = v.entry(id).expect("by_name points at a present entry");
        let signature = v.info.methods.iter().find(|m| m.name == method).map_or("", |m| m.signature.as_str());
        e.shared.handles.fetch_add(1, Ordering::Relaxed);
        Ok(MethodHandle {
            slot: slot.clone(),
            id,
            signature_hash: e.signature_hash,
            shared: e.shared.clone(),
            signature: signature.into(),
        })
    }

    /// Module name.
    pub fn module_name(&self) -> &str {
        &self.slot.name
    }

    /// Method name.
    pub fn method_name(&self) -> &str {
        &self.shared.name
    }

    /// The signature hash this handle was resolved with.
    pub fn signature_hash(&self) -> u64 {
        self.signature_hash
    }

    /// The declared signature this handle was resolved with (for example
    /// `"bytes -> u32le"`; empty if the plugin declared none).
    pub fn signature(&self) -> &str {
        &self.signature
    }

    /// Loads the active version and this handle's entry in it, inside a
    /// read section that lasts for `f`.
    #[inline(always)]
    fn with_entry<R>(&self, f: impl FnOnce(&Pinned<'_, Version>, &MethodEntry) -> Result<R>) -> Result<R> {
        let g = rcu::read();
        let Some(v) = self.slot.active.load(&g) else { return Err(self.stale()) };
        match v.entry(self.id) {
            Some(e) if e.signature_hash == self.signature_hash => f(&v, e),
            Some(_) => Err(self.changed(&v)),
            None => Err(self.removed(&v)),
        }
    }

    /// Calls the method, writing its output into `dst`; returns the number of
    /// bytes written. The fastest path: no allocation.
    #[inline]
    pub fn call_into(&self, input: &[u8], dst: &mut [u8]) -> Result<usize> {
        self.with_entry(|v, e| call_into(v, e, input, dst))
    }

    /// Calls the method; the output is zero-copy when the plugin returns its
    /// own memory.
    pub fn call(&self, input: &[u8]) -> Result<Output> {
        self.call_with_offer(input, DEFAULT_OUTPUT_OFFER)
    }

    /// Like [`call`](Self::call), offering `offer` bytes of host space first.
    pub fn call_with_offer(&self, input: &[u8], offer: usize) -> Result<Output> {
        self.with_entry(|v, e| call_owned(v, e, input, offer))
    }

    #[cold]
    fn stale(&self) -> Error {
        Error::new(
            Status::StaleHandle,
            format!(
                "stale handle: method '{}' of module '{}' was resolved, but the module is no longer loaded",
                self.shared.name, self.slot.name
            ),
        )
    }

    #[cold]
    fn changed(&self, v: &Version) -> Error {
        Error::new(
            Status::SignatureChanged,
            format!(
                "method '{}' of module '{}' changed its signature in {} ({}) by a forced upgrade: expected signature hash {:016x}; resolve it again",
                self.shared.name,
                self.slot.name,
                v.info.version,
                v.path.display(),
                self.signature_hash
            ),
        )
    }

    #[cold]
    fn removed(&self, v: &Version) -> Error {
        Error::new(
            Status::StaleHandle,
            format!(
                "stale handle: method '{}' no longer exists in module '{}' {} ({}), removed by a forced upgrade",
                self.shared.name,
                self.slot.name,
                v.info.version,
                v.path.display()
            ),
        )
    }
}

/// Looks up `method` in the slot's active version within read section `g`
/// and runs `f` on it; `unloaded` makes the error for an empty slot.
#[inline(always)]
pub(crate) fn with_named<'g, R>(
    slot: &ModuleSlot,
    g: &'g rcu::ReadGuard,
    method: &str,
    unloaded: impl FnOnce() -> Error,
    f: impl FnOnce(&Pinned<'g, Version>, &MethodEntry) -> Result<R>,
) -> Result<R> {
    let Some(v) = slot.active.load(g) else { return Err(unloaded()) };
    let Some(e) = v.by_name.get(method).and_then(|&id| v.entry(id)) else {
        return Err(method_not_found(&v, method));
    };
    f(&v, e)
}

#[cold]
pub(crate) fn method_not_found(v: &Version, method: &str) -> Error {
    let mut names: Vec<&str> = v.info.methods.iter().map(|m| m.name.as_str()).collect();
    names.sort_unstable();
    Error::new(
        Status::MethodNotFound,
        format!(
            "method '{method}' not found in module '{}' {} ({}); it has: {}",
            v.info.name,
            v.info.version,
            v.path.display(),
            names.join(", ")
        ),
    )
}
