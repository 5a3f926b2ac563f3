//! The worker side: what `hotmod-worker` runs. It answers the host's
//! control messages, sandboxes itself, maps the plugin with the core's own
//! loader and validation, and serves method calls from the lanes — one
//! thread per lane, each calling the plugin through the core's call path.
//!
//! The plugin's host services reach the host through the lane of the call
//! in progress: `log` and host functions become lane callbacks that the
//! waiting host thread serves; `set_error` is kept by the worker's core and
//! returned with the failed call's response. Log lines written outside a
//! call (during `init`) go over the control socket.
//!
//! The worker exits when its control socket closes (host gone) — and the
//! kernel kills it if its host dies first (`PR_SET_PDEATHSIG`, set at spawn).

use std::cell::Cell;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock};

use super::channel::{Region, WorkerLane, CB_CALL_HOST, CB_LOG};
use super::wire::{self, Message, Received, WireMethod, PROTOCOL_VERSION};
use crate::error::Status;
use crate::events::{Event, EventKind};
use crate::host::{HostFunction, OutputWriter};
use crate::{LoadOptions, MethodHandle, Runtime};

thread_local! {
    /// The lane of the call this thread is serving, for host services.
    static CURRENT_LANE: Cell<*const WorkerLane<'static>> = const { Cell::new(std::ptr::null()) };
}

/// Log lines written outside a call, sent with the next control reply.
static PENDING_LOGS: Mutex<Vec<(i32, String)>> = Mutex::new(Vec::new());

fn with_lane<R>(f: impl FnOnce(&WorkerLane<'static>) -> R) -> Option<R> {
    let p = CURRENT_LANE.with(|c| c.get());
    // SAFETY: set only for the duration of a call by the lane's own thread,
    // to a lane that lives for the whole process.
    unsafe { p.as_ref() }.map(f)
}

/// A host function the host program registered: forwarded to the host
/// through the current call's lane.
struct Forwarded(String);

impl HostFunction for Forwarded {
    fn call(&self, input: &[u8], out: &mut OutputWriter<'_>) -> std::result::Result<(), String> {
        let name = self.0.as_bytes();
        let r = with_lane(|l| l.callback(CB_CALL_HOST, 0, name, input));
        match r {
            None => Err(format!("host function '{}' called outside a method call", self.0)),
            Some((0, bytes)) => {
                out.give(bytes);
                Ok(())
            }
            Some((code, msg)) => Err(format!("{} (status {code})", String::from_utf8_lossy(&msg))),
        }
    }
}

fn on_event(ev: &Event) {
    if ev.kind != EventKind::Log {
        return;
    }
    let sent = with_lane(|l| l.callback(CB_LOG, ev.code, b"", ev.message.as_bytes()));
    if sent.is_none() {
        PENDING_LOGS.lock().unwrap_or_else(|e| e.into_inner()).push((ev.code, ev.message.clone()));
    }
}

fn parse_fd(args: &[String], flag: &str, default: i32) -> i32 {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn reply(sock: BorrowedFd<'_>, msg: &Message) -> bool {
    let logs = std::mem::take(&mut *PENDING_LOGS.lock().unwrap_or_else(|e| e.into_inner()));
    for (level, line) in logs {
        let _ = wire::send(sock, &Message::Log { level, line }, None);
    }
    wire::send(sock, msg, None).is_ok()
}

fn failed(e: &crate::Error) -> Message {
    Message::Failed { status: e.status().code(), message: e.message().to_owned() }
}

/// Runs the worker; returns its exit code. `args` are the command-line
/// arguments after the program name.
pub fn worker_main(args: &[String]) -> i32 {
    let sock_fd = parse_fd(args, "--socket-fd", super::spawn::WORKER_SOCKET_FD);
    let region_fd = parse_fd(args, "--region-fd", super::spawn::WORKER_REGION_FD);
    // SAFETY: the host handed these descriptors over at exec; nothing
    // else in this process owns them.
    let (sock, region_fd) = unsafe { (OwnedFd::from_raw_fd(sock_fd), OwnedFd::from_raw_fd(region_fd)) };
    // 70 (EX_SOFTWARE): the worker itself panicked.
    catch_unwind(AssertUnwindSafe(|| serve(sock, region_fd))).unwrap_or(70)
}

fn serve(sock: OwnedFd, region_fd: OwnedFd) -> i32 {
    let s = sock.as_fd();
    let layout = match wire::recv(s, Some(std::time::Duration::from_secs(30))) {
        Ok(Received::Message(Message::Hello { version, layout }, _)) if version == PROTOCOL_VERSION => layout,
        Ok(Received::Message(Message::Hello { version, .. }, _)) => {
            let msg = format!("expected control protocol {PROTOCOL_VERSION}, found {version}");
            reply(s, &Message::Failed { status: Status::WorkerUnavailable.code(), message: msg });
            return 2;
        }
        _ => return 2,
    };
    let region: &'static Region = match Region::open(region_fd.as_fd(), layout) {
        Ok(r) => Box::leak(Box::new(r)),
        Err(e) => {
            reply(s, &failed(&e));
            return 2;
        }
    };
    drop(region_fd);
    if !reply(s, &Message::HelloAck { version: PROTOCOL_VERSION, pid: std::process::id() }) {
        return 2;
    }
    let mut plugin_fd: Option<OwnedFd> = None;
    let mut runtime: Option<Runtime> = None;
    let handles: Arc<OnceLock<Vec<MethodHandle>>> = Arc::new(OnceLock::new());
    let identity = fd_identity(s);
    loop {
        let (msg, fd) = match wire::recv(s, Some(std::time::Duration::from_secs(1))) {
            Ok(Received::Message(m, fd)) => (m, fd),
            Ok(Received::Closed) => return 0,
            // Closing a descriptor does not wake a poll on it: check now
            // and then that the socket is still ours (a plugin may have
            // closed it, and its number been reused).
            Err(e) if e.status() == Status::Timeout => {
                if fd_identity(s) != identity || identity.is_none() {
                    return 3;
                }
                continue;
            }
            Err(e) if e.status() == Status::InvalidArgument => {
                reply(s, &failed(&e));
                continue;
            }
            // The socket is unusable (closed under us): the host is gone
            // or cannot reach us any more.
            Err(_) => return 3,
        };
        let answer = match msg {
            Message::Load { origin: _ } => match fd {
                Some(fd) => {
                    plugin_fd = Some(fd);
                    Message::Ok
                }
                None => Message::Failed {
                    status: Status::InvalidArgument.code(),
                    message: "expected the plugin's memfd with the Load message, found no descriptor".into(),
                },
            },
            // Landlock restricts the calling thread and the threads it starts
            // later: applied after Init, it would miss the lane threads
            // (and the plugin's constructors would have run unsandboxed).
            Message::Sandbox(_) if runtime.is_some() => Message::Failed {
                status: Status::InvalidArgument.code(),
                message: "expected the sandbox before Init, found it after the plugin was mapped".into(),
            },
            Message::Sandbox(spec) => match super::sandbox::apply(&spec, plugin_fd.as_ref().map(|f| f.as_fd())) {
                Ok(report) => {
                    for n in report.notes {
                        PENDING_LOGS.lock().unwrap_or_else(|e| e.into_inner()).push((abi_warn(), n));
                    }
                    Message::Ok
                }
                Err(e) => failed(&e),
            },
            Message::Init { config, host_functions } => match (&plugin_fd, &runtime) {
                (_, Some(_)) => Message::Failed {
                    status: Status::Busy.code(),
                    message: "expected one Init per worker, found a second".into(),
                },
                (None, _) => Message::Failed {
                    status: Status::InvalidArgument.code(),
                    message: "expected Load (with the plugin's memfd) before Init".into(),
                },
                (Some(fd), None) => match init(fd.as_fd(), config, &host_functions) {
                    Ok((rt, list, msg)) => {
                        runtime = Some(rt);
                        if handles.set(list).is_ok() {
                            start_lanes(region, handles.clone());
                        }
                        msg
                    }
                    Err(e) => failed(&e),
                },
            },
            Message::ExportState | Message::ImportState { .. } => Message::Failed {
                status: Status::InvalidArgument.code(),
                message: "state hand-over between workers is not supported by this worker yet".into(),
            },
            Message::Shutdown => {
                if let Some(rt) = runtime.take() {
                    for m in rt.modules() {
                        let _ = rt.unload(m.name(), true);
                    }
                }
                reply(s, &Message::Ok);
                return 0;
            }
            other => Message::Failed {
                status: Status::InvalidArgument.code(),
                message: format!("unexpected control message for a worker: {other:?}"),
            },
        };
        if !reply(s, &answer) {
            return 3;
        }
    }
}

/// (device, inode) of a descriptor, None if it is not open.
fn fd_identity(fd: BorrowedFd<'_>) -> Option<(u64, u64)> {
    // SAFETY: fstat into a zeroed struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    (unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == 0).then_some((st.st_dev, st.st_ino))
}

fn abi_warn() -> i32 {
    crate::abi::HOTMOD_LOG_WARN
}

fn init(
    fd: BorrowedFd<'_>,
    config: Vec<u8>,
    host_functions: &[String],
) -> crate::Result<(Runtime, Vec<MethodHandle>, Message)> {
    let rt = Runtime::new();
    rt.set_event_handler(Some(Arc::new(on_event)));
    for f in host_functions {
        rt.register_host_function(f, Arc::new(Forwarded(f.clone())))?;
    }
    // The memfd is sealed and private to the worker; its mode bits are not
    // a statement about who may write to it.
    let opts = LoadOptions { config, allow_world_writable: true, ..Default::default() };
    let module = rt.load(format!("/proc/self/fd/{}", fd.as_raw_fd()), &opts)?;
    let info = module.info().clone();
    let mut handles = Vec::with_capacity(info.methods.len());
    for m in &info.methods {
        handles.push(module.method(&m.name)?);
    }
    let methods =
        info.methods.iter().map(|m| WireMethod { name: m.name.clone(), signature: m.signature.clone() }).collect();
    Ok((rt, handles, Message::Loaded { name: info.name, version: info.version, methods }))
}

fn start_lanes(region: &'static Region, handles: Arc<OnceLock<Vec<MethodHandle>>>) {
    for lane in 0..region.layout().lanes {
        let handles = handles.clone();
        let started = std::thread::Builder::new()
            .name(format!("hotmod-lane-{lane}"))
            .spawn(move || serve_lane(WorkerLane::new(region, lane), handles));
        if started.is_err() {
            // Fewer lanes served: the host's calls on the others time out.
            break;
        }
    }
}

fn serve_lane(lane: WorkerLane<'static>, handles: Arc<OnceLock<Vec<MethodHandle>>>) {
    let lane: &'static WorkerLane<'static> = Box::leak(Box::new(lane));
    let Some(handles) = handles.get() else { return };
    loop {
        let r = lane.next_request();
        let Some(h) = handles.get(r.method as usize) else {
            let msg = format!("expected a method index below {}, found {}", handles.len(), r.method);
            lane.respond(Status::MethodNotFound.code(), 0, 0, &msg);
            continue;
        };
        // SAFETY: next_request checked [out, out + out_cap) against the
        // payload area; the host does not touch it until the response.
        let dst = unsafe { std::slice::from_raw_parts_mut(r.out, r.out_cap) };
        CURRENT_LANE.with(|c| c.set(lane));
        let res = catch_unwind(AssertUnwindSafe(|| h.call_into(r.input, dst)));
        CURRENT_LANE.with(|c| c.set(std::ptr::null()));
        match res {
            Ok(Ok(n)) => lane.respond(0, r.out_off, n as u64, ""),
            Ok(Err(e)) => lane.respond(e.status().code(), 0, 0, e.message()),
            Err(_) => lane.respond(Status::Internal.code(), 0, 0, "the worker panicked while serving the call"),
        };
    }
}
