//! The call path: method handles, calls by handle and by name, and outputs.
//!
//! A call by handle is: entering a read section (two plain thread-local
//! stores, see [`crate::rcu`]), one load of the module's active version, an
//! index into its method table, a signature-hash compare, one relaxed
//! counter increment, and the plugin's function pointer. Everything else
//! (error messages, latency samples, output checks) is off the fast path.
//!
//! Outputs follow the [`hotmod_abi::hotmod_output`] protocol. When the plugin
//! hands back memory of its own, the [`Output`] keeps the plugin version
//! alive (mapped, not destroyed) until the output is dropped, and then calls
//! the plugin's release callback exactly once.

use std::cell::RefCell;
use std::ffi::c_void;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use hotmod_abi as abi;

use crate::error::{Error, Result, Status};
use crate::rcu::{self, Pinned};
use crate::registry::{MethodEntry, ModuleSlot, SlotShared, Version};

/// Space offered to a method by [`MethodHandle::call`] before it must ask
/// for more with `HOTMOD_PLUGIN_OUTPUT_TOO_SMALL`. Offers up to this size
/// are made from the stack.
pub const DEFAULT_OUTPUT_OFFER: usize = 256;

/// Results up to this many bytes are kept inside the [`Output`] itself, so
/// a small result costs no allocation.
pub const INLINE_OUTPUT: usize = 64;

thread_local! {
    /// The message a plugin set with `host->set_error` during the call in
    /// progress on this thread.
    static PLUGIN_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Stores a plugin's error message for the call in progress on this thread.
pub(crate) fn set_plugin_error(msg: String) {
    PLUGIN_ERROR.with(|e| *e.borrow_mut() = Some(msg));
}

/// Describes a non-zero plugin status, with the message the plugin set.
#[cold]
pub(crate) fn plugin_failure(rc: i32) -> String {
    let what = match rc {
        abi::HOTMOD_PLUGIN_ERROR => "error",
        abi::HOTMOD_PLUGIN_INVALID_INPUT => "invalid input",
        abi::HOTMOD_PLUGIN_OUTPUT_TOO_SMALL => "output too small",
        abi::HOTMOD_PLUGIN_PANICKED => "panicked",
        _ => "unknown status",
    };
    match PLUGIN_ERROR.with(|e| e.borrow_mut().take()) {
        Some(msg) => format!("{msg} (plugin status {rc}: {what})"),
        None => format!("plugin returned status {rc} ({what}) without a message"),
    }
}

/// Copies the bytes out of a filled output slot and releases plugin memory.
///
/// # Safety
/// `out` must have been filled by a callee following the output protocol.
pub(crate) unsafe fn take_output_bytes(out: &mut abi::hotmod_output) -> Result<Vec<u8>, String> {
    if !output_is_valid(out) {
        return Err(describe_bad_output(out));
    }
    // SAFETY: per the protocol `data` holds `len` readable bytes.
    let bytes = unsafe { abi::hotmod_slice { ptr: out.data, len: out.len }.as_bytes() }.to_vec();
    if let Some(release) = out.release.take() {
        // SAFETY: called exactly once with what the callee stored.
        unsafe { release(out.release_ctx, out.data, out.len) };
    }
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

/// Calls one entry of a version. The fast path.
#[inline(always)]
pub(crate) fn invoke(
    v: &Pinned<'_, Version>,
    e: &MethodEntry,
    input: &[u8],
    out: &mut abi::hotmod_output,
) -> Result<()> {
    let counters = &e.shared.counters;
    // Counted in the thread record the read section already holds.
    let sample = counters.begin_on(v.thread());
    // While the plugin runs, only this version is held (pinned): a call
    // parked in a plugin delays nothing else's reclamation.
    let suspended = rcu::suspend(v);
    let rc = if sample {
        let t0 = Instant::now();
        // SAFETY: `func` was validated non-NULL from this version's
        // descriptor; the version is alive for the call (pinned).
        let rc = unsafe { (e.func)(v.instance, abi::hotmod_slice::from_bytes(input), out) };
        counters.record_latency(t0.elapsed().as_nanos() as u64);
        rc
    } else {
        // SAFETY: as above.
        unsafe { (e.func)(v.instance, abi::hotmod_slice::from_bytes(input), out) }
    };
    drop(suspended);
    if rc != abi::HOTMOD_PLUGIN_OK {
        return Err(call_failed(v, e, rc, out));
    }
    if !output_is_valid(out) {
        return Err(bad_output(v, e, out));
    }
    Ok(())
}

/// Whether a filled slot follows the protocol: data for any bytes, and no
/// more bytes in the offered space than it holds.
#[inline(always)]
fn output_is_valid(out: &abi::hotmod_output) -> bool {
    let missing = out.len > 0 && out.data.is_null();
    let overflows = std::ptr::eq(out.data, out.buf) && out.len > out.capacity;
    !(missing || overflows)
}

#[cold]
fn describe_bad_output(out: &abi::hotmod_output) -> String {
    format!(
        "expected output within the {}-byte buffer or plugin memory, found data={:p} len={}",
        out.capacity, out.data, out.len
    )
}

#[cold]
#[inline(never)]
fn call_failed(v: &Version, e: &MethodEntry, rc: i32, out: &abi::hotmod_output) -> Error {
    let panicked = rc == abi::HOTMOD_PLUGIN_PANICKED;
    e.shared.counters.error(panicked);
    let status = match rc {
        abi::HOTMOD_PLUGIN_PANICKED => Status::PluginPanicked,
        abi::HOTMOD_PLUGIN_OUTPUT_TOO_SMALL => Status::OutputTooLarge,
        _ => Status::PluginError,
    };
    let mut detail = plugin_failure(rc);
    if rc == abi::HOTMOD_PLUGIN_OUTPUT_TOO_SMALL {
        detail = format!("expected at most {} bytes of output, the method needs {}; {detail}", out.capacity, out.len);
    }
    Error::new(
        status,
        format!("{}@{} method '{}' ({}): {detail}", v.info.name, v.info.version, e.shared.name, v.path.display()),
    )
}

#[cold]
#[inline(never)]
fn bad_output(v: &Version, e: &MethodEntry, out: &abi::hotmod_output) -> Error {
    e.shared.counters.error(false);
    Error::new(
        Status::InvalidOutput,
        format!(
            "{}@{} method '{}' ({}): {}",
            v.info.name,
            v.info.version,
            e.shared.name,
            v.path.display(),
            describe_bad_output(out)
        ),
    )
}

/// Whether a filled slot holds plugin memory (which keeps the version alive
/// and may need releasing) rather than the space the caller offered. An
/// empty result with a release callback is plugin memory too: it must still
/// be released.
#[inline(always)]
pub(crate) fn is_plugin_memory(out: &abi::hotmod_output) -> bool {
    out.release.is_some() || (out.len > 0 && !std::ptr::eq(out.data, out.buf))
}

/// Runs a call and turns a filled slot into an [`Output`], retrying once
/// with the exact size if the method asked for more space.
///
/// Offers up to [`DEFAULT_OUTPUT_OFFER`] bytes come from the stack: a small
/// result is then copied into the `Output` without allocating, and plugin
/// memory costs no allocation at all.
pub(crate) fn call_owned(v: &Pinned<'_, Version>, e: &MethodEntry, input: &[u8], offer: usize) -> Result<Output> {
    if offer > DEFAULT_OUTPUT_OFFER {
        return call_owned_vec(v, e, input, offer);
    }
    let mut stack = std::mem::MaybeUninit::<[u8; DEFAULT_OUTPUT_OFFER]>::uninit();
    let base = stack.as_mut_ptr() as *mut u8;
    let mut out = abi::hotmod_output::offering(base, offer);
    match invoke(v, e, input, &mut out) {
        Err(err) if err.status() == Status::OutputTooLarge && out.len > offer => {
            return call_owned_vec(v, e, input, out.len);
        }
        r => r?,
    }
    if is_plugin_memory(&out) {
        return Ok(plugin_output(v, &out));
    }
    // SAFETY: the plugin wrote `len` (<= offer, checked by invoke) bytes at base.
    Ok(Output::copy_from(unsafe { std::slice::from_raw_parts(base, out.len) }))
}

/// `call_owned` with a vector as the offered space (large offers, and the
/// retry when a method asked for more than the stack offer).
fn call_owned_vec(v: &Pinned<'_, Version>, e: &MethodEntry, input: &[u8], offer: usize) -> Result<Output> {
    let mut buf: Vec<u8> = Vec::with_capacity(offer);
    let mut out = abi::hotmod_output::offering(buf.as_mut_ptr(), buf.capacity());
    match invoke(v, e, input, &mut out) {
        Err(err) if err.status() == Status::OutputTooLarge && out.len > buf.capacity() => {
            buf = Vec::with_capacity(out.len);
            out = abi::hotmod_output::offering(buf.as_mut_ptr(), buf.capacity());
            invoke(v, e, input, &mut out)?;
        }
        r => r?,
    }
    if is_plugin_memory(&out) {
        return Ok(plugin_output(v, &out));
    }
    // SAFETY: the plugin wrote `len` (<= capacity, checked by invoke) bytes into buf.
    unsafe { buf.set_len(out.len) };
    Ok(Output::from_vec(buf))
}

fn plugin_output(v: &Pinned<'_, Version>, out: &abi::hotmod_output) -> Output {
    Output {
        data: out.data,
        len: out.len,
        owner: OutputOwner::Plugin { release: out.release, ctx: out.release_ctx, _version: v.to_arc() },
    }
}

/// Runs a call whose output must land in `dst`; returns the length written.
/// Plugin-owned output is copied into `dst` and released. Inlined into
/// the C API's and bindings' call functions: it is the whole fast path.
#[inline(always)]
pub(crate) fn call_into(v: &Pinned<'_, Version>, e: &MethodEntry, input: &[u8], dst: &mut [u8]) -> Result<usize> {
    let mut out = abi::hotmod_output::offering(dst.as_mut_ptr(), dst.len());
    invoke(v, e, input, &mut out)?;
    if !is_plugin_memory(&out) {
        return Ok(out.len);
    }
    let fits = out.len <= dst.len();
    if fits && out.len > 0 {
        // SAFETY: plugin memory holds `len` bytes; dst has room (checked).
        unsafe { std::ptr::copy_nonoverlapping(out.data, dst.as_mut_ptr(), out.len) };
    }
    if let Some(release) = out.release {
        // SAFETY: exactly once, with the values the plugin stored.
        unsafe { release(out.release_ctx, out.data, out.len) };
    }
    if !fits {
        return Err(Error::new(
            Status::OutputTooLarge,
            format!(
                "{}@{} method '{}': expected at most {} bytes of output, found {}",
                v.info.name,
                v.info.version,
                e.shared.name,
                dst.len(),
                out.len
            ),
        ));
    }
    Ok(out.len)
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
