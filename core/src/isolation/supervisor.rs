//! The host side of a worker: start it, load a plugin into it, call its
//! methods through the lanes, and supervise it — crash detection, restart
//! with exponential backoff, the "failed" state, events.
//!
//! A crash is told from a slow call by the worker's pidfd (readable once the
//! process exited) and by its control socket (closed, or half-closed). A
//! call's deadline is enforced by the thread waiting for it: past it, the
//! worker is killed (`TIMEOUT` for that call, `PLUGIN_CRASHED` for every
//! other call in flight). A worker that writes something impossible into
//! its lane is killed the same way. After a death the supervisor thread
//! reaps the process (no zombie), wakes every waiting caller, emits an
//! event naming the exit code or signal and the last log line, and starts a
//! new worker after a backoff that doubles with each crash in the window;
//! past `max_crashes` in `window` the worker is marked failed and no longer
//! restarted. The new worker gets the same plugin bytes and config.

use std::ffi::c_void;
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hotmod_abi as abi;

use super::channel::{HostChannel, HostServices, LaneFailure, LaneGuard, Layout, NoServices, Region, Request};
use super::spawn::{self, Exit};
use super::wire::{self, Message, SandboxSpec, WireMethod, PROTOCOL_VERSION};
use crate::error::{Error, Result, Status};

/// When and how often a crashed worker is restarted.
#[derive(Clone, Debug)]
pub struct RestartPolicy {
    /// Wait before the first restart after a crash.
    pub initial_backoff: Duration,
    /// Longest wait between restarts.
    pub max_backoff: Duration,
    /// Crashes within `window` after which the worker is marked failed.
    pub max_crashes: u32,
    /// The window crashes are counted in.
    pub window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_secs(5),
            max_crashes: 5,
            window: Duration::from_secs(60),
        }
    }
}

/// Default deadline of an out-of-process call.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Options for [`Worker::spawn`].
#[derive(Clone)]
pub struct WorkerOptions {
    /// Path of `hotmod-worker`; see [`super::spawn`] for the search order
    /// when unset.
    pub worker_path: Option<PathBuf>,
    /// Concurrent calls (lanes in the shared region).
    pub lanes: u32,
    /// Bytes of input plus output per call.
    pub payload_capacity: u64,
    /// Bytes of callback arguments/results per call.
    pub callback_capacity: u64,
    /// Deadline of each call (None: no deadline).
    pub call_timeout: Option<Duration>,
    /// Deadline of the handshake, load and init.
    pub start_timeout: Duration,
    /// Restart behaviour.
    pub restart: RestartPolicy,
    /// Sandbox the worker applies before mapping the plugin.
    pub sandbox: Option<SandboxSpec>,
    /// Host functions the plugin may call, by name.
    pub host_functions: Vec<String>,
    /// Serves the plugin's log lines and host function calls.
    pub services: Arc<dyn HostServices>,
    /// Receives supervision events, on the supervisor's thread.
    pub on_event: Option<WorkerEventHandler>,
    /// How long a waiting thread spins before it sleeps.
    pub spin: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            worker_path: None,
            lanes: 8,
            payload_capacity: 4 << 20,
            callback_capacity: 64 << 10,
            call_timeout: Some(DEFAULT_CALL_TIMEOUT),
            start_timeout: Duration::from_secs(10),
            restart: RestartPolicy::default(),
            sandbox: None,
            host_functions: Vec::new(),
            services: Arc::new(NoServices),
            on_event: None,
            spin: super::channel::DEFAULT_SPIN,
        }
    }
}

/// What happened to a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerEventKind {
    /// The worker died (crash, exit, or killed after a timeout or garbage).
    Crashed,
    /// A new worker serves the plugin again.
    Restarted,
    /// Too many crashes in the window: not restarted any more.
    Failed,
    /// A restart attempt failed; another follows after the backoff.
    RestartFailed,
}

/// A supervision event.
#[derive(Clone, Debug)]
pub struct WorkerEvent {
    /// What happened.
    pub kind: WorkerEventKind,
    /// The worker's pid (the new one for `Restarted`).
    pub pid: u32,
    /// Exit code, if it exited.
    pub exit_code: Option<i32>,
    /// Signal, if one killed it.
    pub signal: Option<i32>,
    /// The plugin's last log line before the event.
    pub last_log: Option<String>,
    /// What happened, in words.
    pub message: String,
}

/// Receives [`WorkerEvent`]s.
pub type WorkerEventHandler = Arc<dyn Fn(&WorkerEvent) + Send + Sync>;

/// State of a supervised worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerState {
    /// Serving calls (or ready to, once a plugin is loaded).
    Running,
    /// Dead, a restart is pending.
    Restarting,
    /// Crashed too often; calls fail with `PLUGIN_CRASHED`.
    Failed,
    /// Shut down.
    Stopped,
}

/// The plugin a worker serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginDescription {
    /// Module name.
    pub name: String,
    /// Module version.
    pub version: String,
    /// Methods in declaration order: the index is the method number.
    pub methods: Vec<WireMethod>,
}

/// One worker process and what the host keeps for it.
struct Instance {
    pid: u32,
    pidfd: OwnedFd,
    control: Mutex<OwnedFd>,
    channel: HostChannel,
    dead: AtomicBool,
    /// Why the host killed it, if it did.
    kill_reason: Mutex<Option<String>>,
    /// How it ended, once reaped.
    death: Mutex<Option<String>>,
}

impl Instance {
    /// Kills the process. The instance counts as dead at once: every call
    /// waiting on it is woken with `PLUGIN_CRASHED`, new calls fail fast,
    /// and the supervisor reaps and replaces it.
    fn kill(&self, reason: String) {
        {
            let mut r = self.kill_reason.lock().unwrap_or_else(|e| e.into_inner());
            if r.is_none() {
                *r = Some(reason);
            }
        }
        spawn::kill(self.pidfd.as_fd());
        self.dead.store(true, Ordering::Release);
        self.channel.wake_all_dead();
    }

    fn death(&self) -> String {
        if let Some(d) = self.death.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return d;
        }
        match self.kill_reason.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            Some(r) => format!("worker pid {} {r}", self.pid),
            None => format!("worker pid {} died", self.pid),
        }
    }
}

struct Plugin {
    memfd: OwnedFd,
    origin: String,
    config: Vec<u8>,
    description: PluginDescription,
}

struct Inner {
    opts: WorkerOptions,
    current: RwLock<Option<Arc<Instance>>>,
    state: AtomicU8,
    plugin: Mutex<Option<Plugin>>,
    /// Serialises load and restart.
    admin: Mutex<()>,
    last_log: Mutex<Option<String>>,
    stop: AtomicBool,
    /// An eventfd that wakes the supervisor's poll.
    stop_fd: OwnedFd,
    crashes: AtomicU64,
}

const RUNNING: u8 = 0;
const RESTARTING: u8 = 1;
const FAILED: u8 = 2;
const STOPPED: u8 = 3;

/// A supervised worker process serving one plugin.
///
/// Calls may come from many threads at once (up to `lanes` run in
/// parallel; more wait for a free lane). Dropping the `Worker` shuts the
/// worker down and reaps it.
pub struct Worker {
    inner: Arc<Inner>,
    supervisor: Option<std::thread::JoinHandle<()>>,
}

/// Records the last log line while forwarding services.
struct Recording<'a> {
    inner: &'a Inner,
}

impl HostServices for Recording<'_> {
    fn log(&self, level: i32, line: &str) {
        *self.inner.last_log.lock().unwrap_or_else(|e| e.into_inner()) = Some(line.to_owned());
        self.inner.opts.services.log(level, line);
    }
    fn call_host(&self, name: &str, input: &[u8]) -> std::result::Result<Vec<u8>, (i32, String)> {
        self.inner.opts.services.call_host(name, input)
    }
}

fn eventfd() -> Result<OwnedFd> {
    // SAFETY: plain syscall.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(Error::new(Status::Io, format!("eventfd: {}", std::io::Error::last_os_error())));
    }
    // SAFETY: a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Inner {
    fn layout(&self) -> Layout {
        Layout {
            lanes: self.opts.lanes,
            callback_capacity: self.opts.callback_capacity,
            payload_capacity: self.opts.payload_capacity,
        }
    }

    fn on_log(&self, level: i32, line: String) {
        *self.last_log.lock().unwrap_or_else(|e| e.into_inner()) = Some(line.clone());
        self.opts.services.log(level, &line);
    }

    fn emit(&self, ev: WorkerEvent) {
        if let Some(h) = &self.opts.on_event {
            let _ = catch_unwind(AssertUnwindSafe(|| h(&ev)));
        }
    }

    /// Starts a worker process and completes the handshake.
    fn start_instance(&self) -> Result<Arc<Instance>> {
        let layout = self.layout();
        let (region, region_fd) = Region::create(layout)?;
        let path = spawn::find_worker(self.opts.worker_path.as_deref())?;
        let child = spawn::spawn(&path, region_fd.as_fd())?;
        drop(region_fd);
        let mut channel = HostChannel::new(region);
        channel.spin = self.opts.spin;
        let inst = Arc::new(Instance {
            pid: child.pid,
            pidfd: child.pidfd,
            control: Mutex::new(child.sock),
            channel,
            dead: AtomicBool::new(false),
            kill_reason: Mutex::new(None),
            death: Mutex::new(None),
        });
        let hello = Message::Hello { version: PROTOCOL_VERSION, layout };
        match self.control(&inst, &hello, None) {
            Ok((Message::HelloAck { version: PROTOCOL_VERSION, .. }, _)) => Ok(inst),
            other => {
                let found = match other {
                    Ok((m, _)) => format!("{m:?}"),
                    Err(e) => e.message().to_owned(),
                };
                self.discard(&inst);
                Err(Error::new(
                    Status::WorkerUnavailable,
                    format!(
                        "worker '{}' (pid {}): expected a handshake for control protocol {PROTOCOL_VERSION}, found: {found}",
                        path.display(),
                        inst.pid
                    ),
                ))
            }
        }
    }

    /// Kills and reaps an instance that never served.
    fn discard(&self, inst: &Instance) {
        spawn::kill(inst.pidfd.as_fd());
        spawn::reap(inst.pidfd.as_fd());
    }

    fn control(
        &self,
        inst: &Instance,
        msg: &Message,
        fd: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> Result<(Message, Option<OwnedFd>)> {
        let sock = inst.control.lock().unwrap_or_else(|e| e.into_inner());
        wire::request(sock.as_fd(), msg, fd, self.opts.start_timeout, |l, s| self.on_log(l, s))
    }

    /// Load, sandbox and init of a plugin in an instance.
    fn load_into(&self, inst: &Instance, memfd: &OwnedFd, origin: &str, config: &[u8]) -> Result<PluginDescription> {
        let in_worker =
            |e: Error| Error::new(e.status(), format!("'{origin}' in worker pid {}: {}", inst.pid, e.message()));
        self.control(inst, &Message::Load { origin: origin.to_owned() }, Some(memfd.as_fd())).map_err(in_worker)?;
        if let Some(sb) = &self.opts.sandbox {
            self.control(inst, &Message::Sandbox(sb.clone()), None).map_err(in_worker)?;
        }
        let init = Message::Init { config: config.to_vec(), host_functions: self.opts.host_functions.clone() };
        match self.control(inst, &init, None).map_err(in_worker)? {
            (Message::Loaded { name, version, methods }, _) => Ok(PluginDescription { name, version, methods }),
            (other, _) => Err(Error::new(
                Status::WorkerUnavailable,
                format!("'{origin}' in worker pid {}: expected Loaded after Init, found {other:?}", inst.pid),
            )),
        }
    }

    fn state(&self) -> WorkerState {
        match self.state.load(Ordering::Acquire) {
            RUNNING => WorkerState::Running,
            RESTARTING => WorkerState::Restarting,
            FAILED => WorkerState::Failed,
            _ => WorkerState::Stopped,
        }
    }

    fn method_name(&self, method: u32) -> String {
        let p = self.plugin.lock().unwrap_or_else(|e| e.into_inner());
        match p.as_ref() {
            Some(p) => match p.description.methods.get(method as usize) {
                Some(m) => format!("{} method '{}'", p.description.name, m.name),
                None => format!("{} method #{method}", p.description.name),
            },
            None => format!("method #{method}"),
        }
    }

    fn unavailable(&self, method: u32) -> Error {
        let why = match self.state() {
            WorkerState::Failed => "the worker crashed too often and is marked failed".to_string(),
            WorkerState::Stopped => "the worker was shut down".to_string(),
            _ => {
                let cur = self.current.read().unwrap_or_else(|e| e.into_inner());
                match cur.as_ref() {
                    Some(i) if i.dead.load(Ordering::Acquire) => i.death(),
                    _ => "the worker is restarting after a crash".to_string(),
                }
            }
        };
        Error::new(Status::PluginCrashed, format!("{}: {why}", self.method_name(method)))
    }

    fn current(&self) -> Option<Arc<Instance>> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// One call through a lane the caller owns (input already in place).
    fn call_on(
        &self,
        inst: &Instance,
        lane: &LaneGuard<'_>,
        method: u32,
        input_len: usize,
        out: &mut abi::hotmod_output,
        (timeout, deadline): (Option<Duration>, Option<Instant>),
    ) -> Result<()> {
        let ch = &inst.channel;
        let cap = ch.region().layout().payload_capacity;
        let out_off = (input_len as u64).div_ceil(64) * 64;
        if out_off >= cap {
            return Err(Error::new(
                Status::InvalidArgument,
                format!(
                    "{}: expected an input below the {cap}-byte payload area of the worker's lanes (room for output included), found {input_len} bytes",
                    self.method_name(method)
                ),
            ));
        }
        let req = Request { method, input_off: 0, input_len: input_len as u64, out_off, out_cap: cap - out_off };
        let services = Recording { inner: self };
        let alive = || !inst.dead.load(Ordering::Acquire);
        let resp = match ch.round_trip(lane, req, &services, deadline, &alive) {
            Ok(r) => r,
            Err(LaneFailure::Timeout) => {
                let t = timeout.unwrap_or_default();
                let msg = format!(
                    "{}: expected a response within {} ms, found none; worker pid {} killed",
                    self.method_name(method),
                    t.as_millis(),
                    inst.pid
                );
                inst.kill(format!("killed by hotmod: a call to {} timed out", self.method_name(method)));
                return Err(Error::new(Status::Timeout, msg));
            }
            Err(LaneFailure::Dead) => {
                return Err(Error::new(
                    Status::PluginCrashed,
                    format!("{}: {}", self.method_name(method), inst.death()),
                ))
            }
            Err(LaneFailure::Garbage(what)) => {
                inst.kill(format!("killed by hotmod: it wrote garbage into its shared region ({what})"));
                return Err(Error::new(
                    Status::PluginCrashed,
                    format!(
                        "{}: the worker returned garbage: {what}; worker pid {} killed",
                        self.method_name(method),
                        inst.pid
                    ),
                ));
            }
        };
        if resp.status == Status::PluginCrashed.code() {
            inst.kill(format!("killed by hotmod: {}", resp.message));
            return Err(Error::new(
                Status::PluginCrashed,
                format!("{}: {}; worker pid {} killed", self.method_name(method), resp.message, inst.pid),
            ));
        }
        if resp.status != 0 {
            let st = Status::from_code(resp.status).unwrap_or(Status::Internal);
            return Err(Error::new(st, resp.message));
        }
        deliver(ch.output(lane, &resp), out);
        Ok(())
    }

    fn call_raw(
        &self,
        method: u32,
        input: &[u8],
        out: &mut abi::hotmod_output,
        timeout: Option<Duration>,
    ) -> Result<()> {
        let Some(inst) = self.current() else { return Err(self.unavailable(method)) };
        if inst.dead.load(Ordering::Acquire) || self.state.load(Ordering::Acquire) != RUNNING {
            return Err(self.unavailable(method));
        }
        let timeout = timeout.or(self.opts.call_timeout);
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let ch = &inst.channel;
        // An input already in one of this region's lanes, held by a buffer:
        // only its length crosses.
        if let Some((lane, 0)) = ch.region().payload_lane_of(input.as_ptr(), input.len()) {
            if ch.held_by_buffer(lane) && !input.is_empty() {
                let g = ManuallyDrop::new(ch.adopt(lane));
                return self.call_on(&inst, &g, method, input.len(), out, (timeout, deadline));
            }
        }
        let lane = ch.acquire(deadline).map_err(|_| {
            Error::new(
                Status::Timeout,
                format!(
                    "{}: all {} lanes of the worker stayed busy until the deadline",
                    self.method_name(method),
                    self.opts.lanes
                ),
            )
        })?;
        if ch.write_input(&lane, input).is_err() {
            return Err(Error::new(
                Status::InvalidArgument,
                format!(
                    "{}: expected an input of at most {} bytes (the worker's payload area), found {}",
                    self.method_name(method),
                    ch.region().layout().payload_capacity,
                    input.len()
                ),
            ));
        }
        self.call_on(&inst, &lane, method, input.len(), out, (timeout, deadline))
    }
}

unsafe extern "C" fn release_vec(ctx: *mut c_void, _data: *const u8, _len: usize) {
    // SAFETY: ctx is the Box<Vec<u8>> leaked by deliver, released once.
    drop(unsafe { Box::from_raw(ctx as *mut Vec<u8>) });
}

/// The bytes `deliver` put in a slot, releasing host memory it handed over.
fn take_delivered(out: &mut abi::hotmod_output) -> Vec<u8> {
    // SAFETY: deliver set data/len to `len` readable bytes (the offered
    // buffer or a boxed vector).
    let v = unsafe { abi::hotmod_slice { ptr: out.data, len: out.len }.as_bytes() }.to_vec();
    if let Some(release) = out.release.take() {
        // SAFETY: exactly once, with the values deliver stored.
        unsafe { release(out.release_ctx, out.data, out.len) };
    }
    v
}

/// Hands output bytes to the caller's slot: into its buffer when they fit,
/// else as host memory with a release callback.
fn deliver(bytes: &[u8], out: &mut abi::hotmod_output) {
    if bytes.len() <= out.capacity && !out.buf.is_null() {
        // SAFETY: the slot offers `capacity` writable bytes at buf.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), out.buf, bytes.len()) };
        out.data = out.buf;
        out.len = bytes.len();
        return;
    }
    let v = Box::new(bytes.to_vec());
    out.data = v.as_ptr();
    out.len = v.len();
    out.release = Some(release_vec);
    out.release_ctx = Box::into_raw(v) as *mut c_void;
}

impl Worker {
    /// Starts a worker (no plugin yet) and its supervisor.
    pub fn spawn(opts: WorkerOptions) -> Result<Worker> {
        let inner = Arc::new(Inner {
            opts,
            current: RwLock::new(None),
            state: AtomicU8::new(RUNNING),
            plugin: Mutex::new(None),
            admin: Mutex::new(()),
            last_log: Mutex::new(None),
            stop: AtomicBool::new(false),
            stop_fd: eventfd()?,
            crashes: AtomicU64::new(0),
        });
        inner.layout().validate()?;
        let inst = inner.start_instance()?;
        *inner.current.write().unwrap_or_else(|e| e.into_inner()) = Some(inst);
        let sup = inner.clone();
        let supervisor = std::thread::Builder::new()
            .name("hotmod-supervisor".into())
            .spawn(move || supervise(&sup))
            .map_err(|e| Error::new(Status::WorkerUnavailable, format!("cannot start the supervisor thread: {e}")))?;
        Ok(Worker { inner, supervisor: Some(supervisor) })
    }

    /// Loads a plugin into the worker from a sealed memfd of its checked
    /// bytes; `origin` names it in messages. The worker maps it with the
    /// core's loader and validation and runs its `init` with `config`.
    pub fn load_memfd(&self, memfd: OwnedFd, origin: &str, config: &[u8]) -> Result<PluginDescription> {
        let _admin = self.inner.admin.lock().unwrap_or_else(|e| e.into_inner());
        let inst = self.inner.current().ok_or_else(|| self.inner.unavailable(0))?;
        let desc = self.inner.load_into(&inst, &memfd, origin, config)?;
        *self.inner.plugin.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Plugin { memfd, origin: origin.to_owned(), config: config.to_vec(), description: desc.clone() });
        Ok(desc)
    }

    /// Loads a plugin file (copied into a sealed memfd first).
    pub fn load(&self, path: impl AsRef<std::path::Path>, config: &[u8]) -> Result<PluginDescription> {
        let path = path.as_ref();
        let fd = spawn::sealed_copy(path)?;
        self.load_memfd(fd, &path.display().to_string(), config)
    }

    /// The plugin served, once loaded.
    pub fn plugin(&self) -> Option<PluginDescription> {
        self.inner.plugin.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|p| p.description.clone())
    }

    /// Index of a method by name.
    pub fn method_index(&self, name: &str) -> Option<u32> {
        self.plugin()?.methods.iter().position(|m| m.name == name).map(|i| i as u32)
    }

    /// Calls method `method`, filling `out` per the output protocol (the
    /// result goes into the offered buffer when it fits, else into host
    /// memory with a release callback). `timeout` overrides the worker's.
    pub fn call_raw(
        &self,
        method: u32,
        input: &[u8],
        out: &mut abi::hotmod_output,
        timeout: Option<Duration>,
    ) -> Result<()> {
        self.inner.call_raw(method, input, out, timeout)
    }

    /// Calls method `method` and returns its output.
    pub fn call(&self, method: u32, input: &[u8]) -> Result<Vec<u8>> {
        let mut out = abi::hotmod_output::offering(std::ptr::null_mut(), 0);
        self.inner.call_raw(method, input, &mut out, None)?;
        Ok(take_delivered(&mut out))
    }

    /// Calls method `method`, writing its output into `dst`.
    pub fn call_into(&self, method: u32, input: &[u8], dst: &mut [u8]) -> Result<usize> {
        let mut out = abi::hotmod_output::offering(dst.as_mut_ptr(), dst.len());
        self.inner.call_raw(method, input, &mut out, None)?;
        if out.release.is_some() {
            let n = out.len;
            take_delivered(&mut out);
            return Err(Error::new(
                Status::OutputTooLarge,
                format!(
                    "{}: expected at most {} bytes of output, found {n}",
                    self.inner.method_name(method),
                    dst.len()
                ),
            ));
        }
        Ok(out.len)
    }

    /// A buffer in the shared region: an input built in it crosses to the
    /// worker without a copy (pass [`LaneBuffer::input`] as the input).
    pub fn buffer(&self) -> Result<LaneBuffer> {
        let inst = self.inner.current().ok_or_else(|| self.inner.unavailable(0))?;
        let deadline = Instant::now().checked_add(self.inner.opts.start_timeout);
        let lane = inst.channel.acquire_for_buffer(deadline).map_err(|_| {
            Error::new(
                Status::Busy,
                format!("expected a free lane for a buffer, found all {} busy", self.inner.opts.lanes),
            )
        })?;
        let lane = ManuallyDrop::new(lane).lane;
        Ok(LaneBuffer { inst, lane, len: 0 })
    }

    /// A proxy entry for method `method`: `(proxy_call, ctx)` behaves like
    /// the plugin's own method (the context must outlive its use).
    pub fn proxy(&self, method: u32) -> Box<ProxyMethod> {
        Box::new(ProxyMethod { inner: self.inner.clone(), method, pending: Arc::default() })
    }

    /// The supervision state.
    pub fn state(&self) -> WorkerState {
        self.inner.state()
    }

    /// The current worker's pid (None while restarting).
    pub fn pid(&self) -> Option<u32> {
        self.inner.current().filter(|i| !i.dead.load(Ordering::Acquire)).map(|i| i.pid)
    }

    /// Crashes seen so far.
    pub fn crashes(&self) -> u64 {
        self.inner.crashes.load(Ordering::Relaxed)
    }

    /// Kills the current worker (as a crash would); for tests and drills.
    pub fn kill(&self) {
        if let Some(i) = self.inner.current() {
            i.kill("killed by hotmod on request".into());
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        let one: u64 = 1;
        // SAFETY: an 8-byte write to our eventfd.
        unsafe { libc::write(self.inner.stop_fd.as_raw_fd(), &one as *const u64 as *const c_void, 8) };
        if let Some(t) = self.supervisor.take() {
            let _ = t.join();
        }
    }
}

/// A lane's payload area held for building an input in place.
pub struct LaneBuffer {
    inst: Arc<Instance>,
    lane: u32,
    len: usize,
}

// SAFETY: the lane is owned by this value alone; the region outlives it
// (the Arc keeps the instance, and so the mapping, alive).
unsafe impl Send for LaneBuffer {}

impl LaneBuffer {
    /// The whole payload area (input, then room for output).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let cap = self.inst.channel.region().layout().payload_capacity as usize;
        // SAFETY: the lane's payload area, owned by this buffer.
        unsafe { std::slice::from_raw_parts_mut(self.inst.channel.region().payload(self.lane), cap) }
    }

    /// Sets how many bytes of the area are the input.
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(self.inst.channel.region().layout().payload_capacity as usize);
    }

    /// The input, to pass to a call: recognised as already in shared memory.
    pub fn input(&self) -> &[u8] {
        // SAFETY: as in as_mut_slice; len <= capacity.
        unsafe { std::slice::from_raw_parts(self.inst.channel.region().payload(self.lane), self.len) }
    }
}

impl Drop for LaneBuffer {
    fn drop(&mut self) {
        drop(self.inst.channel.adopt(self.lane));
    }
}

/// The context of a proxied method entry.
pub struct ProxyMethod {
    inner: Arc<Inner>,
    method: u32,
    /// Whose error messages this proxy's failures are (the version the
    /// proxy entry belongs to, once it is one; its own until then), so
    /// they stay scoped to the call that failed like any plugin's.
    pending: crate::call::PendingErrors,
}

/// Private return codes of [`proxy_call`] for failures that are not the
/// plugin's own: the negated hotmod status (`-2005` crashed, `-2006`
/// timeout, …). [`proxy_status`] maps them back.
pub fn proxy_status(rc: i32) -> Option<Status> {
    if rc < 0 {
        rc.checked_neg().and_then(Status::from_code)
    } else {
        None
    }
}

/// A method entry's function for an out-of-process method: same signature
/// as a plugin method, `ctx` a [`ProxyMethod`]. Returns `HOTMOD_PLUGIN_*`
/// codes for the plugin's own outcomes (with the message set for the call)
/// and negative private codes (see [`proxy_status`]) for the rest.
///
/// # Safety
/// `ctx` must point to a live `ProxyMethod`; `input` must be a valid view
/// and `out` a valid output slot, as for any plugin method.
pub unsafe extern "C" fn proxy_call(ctx: *mut c_void, input: abi::hotmod_slice, out: *mut abi::hotmod_output) -> i32 {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: per the contract above.
        let (Some(p), Some(out)) = (unsafe { (ctx as *const ProxyMethod).as_ref() }, unsafe { out.as_mut() }) else {
            return -Status::NullArgument.code();
        };
        // SAFETY: per the contract above.
        let input = unsafe { input.as_bytes() };
        match p.inner.call_raw(p.method, input, out, None) {
            Ok(()) => abi::HOTMOD_PLUGIN_OK,
            Err(e) => {
                let rc = match e.status() {
                    Status::PluginError => abi::HOTMOD_PLUGIN_ERROR,
                    Status::PluginPanicked => abi::HOTMOD_PLUGIN_PANICKED,
                    s => -s.code(),
                };
                crate::call::set_plugin_error(&p.pending, e.message().to_owned());
                rc
            }
        }
    }))
    .unwrap_or(-Status::Internal.code())
}

fn poll_fds(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> i32 {
    let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
    // SAFETY: a valid array of pollfds.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) }
}

/// Sleeps up to `d`, waking early on stop; true if stopping.
fn sleep_or_stop(inner: &Inner, d: Duration) -> bool {
    let mut p = [libc::pollfd { fd: inner.stop_fd.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
    let end = Instant::now().checked_add(d);
    while !inner.stop.load(Ordering::SeqCst) {
        let left = match end {
            Some(end) => end.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(3600),
        };
        if left.is_zero() {
            return false;
        }
        poll_fds(&mut p, Some(left));
    }
    true
}

fn shutdown(inner: &Inner) {
    inner.state.store(STOPPED, Ordering::Release);
    let Some(inst) = inner.current.write().unwrap_or_else(|e| e.into_inner()).take() else { return };
    if !inst.dead.load(Ordering::Acquire) {
        let sock = inst.control.lock().unwrap_or_else(|e| e.into_inner());
        let _ = wire::request(sock.as_fd(), &Message::Shutdown, None, Duration::from_secs(1), |_, _| {});
    }
    let mut p = [libc::pollfd { fd: inst.pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
    if poll_fds(&mut p, Some(Duration::from_secs(1))) <= 0 {
        spawn::kill(inst.pidfd.as_fd());
    }
    spawn::reap(inst.pidfd.as_fd());
    inst.dead.store(true, Ordering::Release);
    inst.channel.wake_all_dead();
}

/// The supervisor thread's loop.
fn supervise(inner: &Inner) {
    let mut recent: Vec<Instant> = Vec::new();
    loop {
        if inner.stop.load(Ordering::SeqCst) {
            return shutdown(inner);
        }
        let Some(inst) = inner.current() else {
            if sleep_or_stop(inner, Duration::from_secs(3600)) {
                return shutdown(inner);
            }
            continue;
        };
        let sock = inst.control.lock().unwrap_or_else(|e| e.into_inner()).as_raw_fd();
        let mut fds = [
            libc::pollfd { fd: inst.pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: sock, events: libc::POLLRDHUP, revents: 0 },
            libc::pollfd { fd: inner.stop_fd.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        if poll_fds(&mut fds, None) <= 0 || fds[2].revents != 0 {
            continue;
        }
        if fds[0].revents == 0 {
            // The socket closes while a crashing process exits, a moment
            // before its pidfd turns readable: give it that moment.
            let mut p = [libc::pollfd { fd: inst.pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
            if poll_fds(&mut p, Some(Duration::from_millis(200))) <= 0 {
                // The control socket closed but the process lives on: it
                // can no longer be managed, so it is ended.
                inst.kill("killed by hotmod: its control socket closed".into());
            }
        }
        let exit = spawn::reap(inst.pidfd.as_fd());
        let reason = inst.kill_reason.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let how = match exit {
            Some(e) => format!("worker pid {} {e}", inst.pid),
            None => format!("worker pid {} ended", inst.pid),
        };
        let last_log = inner.last_log.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut desc = match &reason {
            Some(r) => format!("{how}, {r}"),
            None => how,
        };
        if let Some(l) = &last_log {
            desc.push_str(&format!("; last log line: {l}"));
        }
        *inst.death.lock().unwrap_or_else(|e| e.into_inner()) = Some(desc.clone());
        inner.state.store(RESTARTING, Ordering::Release);
        inst.dead.store(true, Ordering::Release);
        inst.channel.wake_all_dead();
        inner.crashes.fetch_add(1, Ordering::Relaxed);
        let (exit_code, signal) = match exit {
            Some(Exit::Code(c)) => (Some(c), None),
            Some(Exit::Signal(s)) => (None, Some(s)),
            None => (None, None),
        };
        inner.emit(WorkerEvent {
            kind: WorkerEventKind::Crashed,
            pid: inst.pid,
            exit_code,
            signal,
            last_log: last_log.clone(),
            message: desc,
        });
        let now = Instant::now();
        recent.retain(|t| now.duration_since(*t) < inner.opts.restart.window);
        recent.push(now);
        if restart(inner, &mut recent) {
            return shutdown(inner);
        }
    }
}

/// Restarts after backoff until a worker serves again, the policy gives
/// up (failed state) or the worker is stopped (returns true).
fn restart(inner: &Inner, recent: &mut Vec<Instant>) -> bool {
    let policy = &inner.opts.restart;
    loop {
        if recent.len() as u32 >= policy.max_crashes {
            inner.state.store(FAILED, Ordering::Release);
            inner.emit(WorkerEvent {
                kind: WorkerEventKind::Failed,
                pid: 0,
                exit_code: None,
                signal: None,
                last_log: None,
                message: format!(
                    "{} crashes within {} s: the worker is marked failed and not restarted",
                    recent.len(),
                    policy.window.as_secs()
                ),
            });
            return sleep_or_stop(inner, Duration::MAX);
        }
        let shift = recent.len().saturating_sub(1).min(20) as u32;
        let backoff = policy.initial_backoff.saturating_mul(1 << shift).min(policy.max_backoff);
        if sleep_or_stop(inner, backoff) {
            return true;
        }
        let _admin = inner.admin.lock().unwrap_or_else(|e| e.into_inner());
        match start_and_replay(inner) {
            Ok(inst) => {
                let pid = inst.pid;
                *inner.current.write().unwrap_or_else(|e| e.into_inner()) = Some(inst);
                inner.state.store(RUNNING, Ordering::Release);
                inner.emit(WorkerEvent {
                    kind: WorkerEventKind::Restarted,
                    pid,
                    exit_code: None,
                    signal: None,
                    last_log: None,
                    message: format!("worker restarted as pid {pid} after {} ms of backoff", backoff.as_millis()),
                });
                return false;
            }
            Err(e) => {
                recent.push(Instant::now());
                inner.emit(WorkerEvent {
                    kind: WorkerEventKind::RestartFailed,
                    pid: 0,
                    exit_code: None,
                    signal: None,
                    last_log: None,
                    message: e.message().to_owned(),
                });
            }
        }
    }
}

fn start_and_replay(inner: &Inner) -> Result<Arc<Instance>> {
    let inst = inner.start_instance()?;
    let plugin = inner.plugin.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = plugin.as_ref() {
        match inner.load_into(&inst, &p.memfd, &p.origin, &p.config) {
            Ok(d) if d == p.description => {}
            Ok(d) => {
                inner.discard(&inst);
                return Err(Error::new(
                    Status::WorkerUnavailable,
                    format!("'{}' described itself differently after a restart: {d:?}", p.origin),
                ));
            }
            Err(e) => {
                inner.discard(&inst);
                return Err(e);
            }
        }
    }
    Ok(inst)
}
