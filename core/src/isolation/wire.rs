//! Control messages between a host and its worker, over a Unix
//! `SOCK_SEQPACKET` socketpair the worker inherits.
//!
//! The socket carries only control: the handshake, the plugin's sealed
//! memfd (as `SCM_RIGHTS`), the sandbox settings, init and its config,
//! state hand-over, shutdown. Payloads travel through the shared region
//! ([`super::channel`]); state bytes through a memfd passed alongside.
//!
//! Framing: one datagram per message, `[u32 body length][u16 kind][u16 0]`
//! then the body, little-endian. A body is at most [`MAX_FRAME`] bytes, every
//! string and list in it has a length prefix that is checked against what
//! is left, and a message that does not decode exactly is refused — from
//! either side.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::channel::Layout;
use crate::error::{Error, Result, Status};

/// Control protocol version; the handshake refuses another.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest message body.
pub const MAX_FRAME: usize = 64 * 1024;
/// Largest string in a message.
pub const MAX_STRING: usize = 8 * 1024;
/// Most entries in a list (methods, host function names).
pub const MAX_LIST: usize = 4096;
const FRAME_HEADER: usize = 8;

/// Sandbox settings sent to the worker (applied before the plugin is mapped).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SandboxSpec {
    /// Install the seccomp filter.
    pub seccomp: bool,
    /// Install Landlock path rules.
    pub landlock: bool,
    /// Proceed when seccomp or Landlock is unavailable on this kernel.
    pub allow_unavailable: bool,
    /// `RLIMIT_AS` in bytes (0: unchanged).
    pub address_space: u64,
    /// `RLIMIT_CPU` in seconds (0: unchanged).
    pub cpu_seconds: u64,
    /// `RLIMIT_NOFILE` (0: unchanged).
    pub open_files: u64,
    /// `RLIMIT_NPROC` (0: unchanged).
    pub processes: u64,
    /// Paths the plugin may read beneath (Landlock).
    pub read_paths: Vec<String>,
}

/// One method as the worker found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireMethod {
    /// Name.
    pub name: String,
    /// Declared signature.
    pub signature: String,
}

/// A control message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Host → worker, first: protocol version and the region layout.
    Hello {
        /// Protocol version.
        version: u32,
        /// Layout of the region the worker inherited.
        layout: Layout,
    },
    /// Worker → host: accepted, with its pid.
    HelloAck {
        /// Protocol version.
        version: u32,
        /// The worker's process id.
        pid: u32,
    },
    /// Host → worker: the plugin's sealed memfd comes with this message.
    Load {
        /// Where the bytes came from, for messages.
        origin: String,
    },
    /// Host → worker: apply this sandbox now.
    Sandbox(SandboxSpec),
    /// Host → worker: map the plugin, run its init with this config.
    Init {
        /// Config bytes for the plugin's `init` (small; capped by the frame).
        config: Vec<u8>,
        /// Host functions the plugin may call.
        host_functions: Vec<String>,
    },
    /// Worker → host: the plugin is initialised.
    Loaded {
        /// Module name.
        name: String,
        /// Module version.
        version: String,
        /// Methods in declaration order (the index used in lane requests).
        methods: Vec<WireMethod>,
    },
    /// Host → worker: export the plugin's state.
    ExportState,
    /// Host → worker: import state (a memfd of `len` bytes comes with it).
    ImportState {
        /// Bytes of state in the memfd.
        len: u64,
    },
    /// Worker → host: exported state (a memfd of `len` bytes comes with it).
    State {
        /// Bytes of state in the memfd.
        len: u64,
    },
    /// A log line outside a call (worker → host).
    Log {
        /// `HOTMOD_LOG_*` level.
        level: i32,
        /// The line.
        line: String,
    },
    /// Host → worker: deactivate, destroy, exit.
    Shutdown,
    /// Success reply.
    Ok,
    /// Failure reply: a hotmod status code and a message.
    Failed {
        /// Status code.
        status: i32,
        /// What was expected, what was found, where.
        message: String,
    },
}

mod kind {
    pub const HELLO: u16 = 1;
    pub const HELLO_ACK: u16 = 2;
    pub const LOAD: u16 = 3;
    pub const SANDBOX: u16 = 4;
    pub const INIT: u16 = 5;
    pub const LOADED: u16 = 6;
    pub const EXPORT: u16 = 7;
    pub const IMPORT: u16 = 8;
    pub const STATE: u16 = 9;
    pub const LOG: u16 = 10;
    pub const SHUTDOWN: u16 = 11;
    pub const OK: u16 = 12;
    pub const FAILED: u16 = 13;
}

struct W(Vec<u8>);

impl W {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        // Truncated at a character boundary to the decoder's cap.
        let mut n = s.len().min(MAX_STRING);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.bytes(&s.as_bytes()[..n]);
    }
}

struct R<'a> {
    b: &'a [u8],
    what: &'static str,
}

impl<'a> R<'a> {
    fn bad(&self, detail: String) -> Error {
        Error::new(Status::InvalidArgument, format!("control message {}: {detail}", self.what))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.b.len() {
            return Err(self.bad(format!("expected {n} more bytes, found {}", self.b.len())));
        }
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }
    fn bytes(&mut self, cap: usize) -> Result<Vec<u8>> {
        let n = self.u32()? as usize;
        if n > cap {
            return Err(self.bad(format!("expected at most {cap} bytes in a field, found a length of {n}")));
        }
        Ok(self.take(n)?.to_vec())
    }
    fn str(&mut self) -> Result<String> {
        let b = self.bytes(MAX_STRING)?;
        String::from_utf8(b).map_err(|_| self.bad("expected UTF-8 text".into()))
    }
    fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> Result<T>) -> Result<Vec<T>> {
        let n = self.u32()? as usize;
        if n > MAX_LIST {
            return Err(self.bad(format!("expected at most {MAX_LIST} entries, found {n}")));
        }
        (0..n).map(|_| item(self)).collect()
    }
    fn end(&self) -> Result<()> {
        if !self.b.is_empty() {
            return Err(self.bad(format!("{} bytes left over", self.b.len())));
        }
        Ok(())
    }
}

impl Message {
    /// Encodes a frame (header and body).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = W(vec![0; FRAME_HEADER]);
        let k = match self {
            Message::Hello { version, layout } => {
                w.u32(*version);
                w.u32(layout.lanes);
                w.u64(layout.callback_capacity);
                w.u64(layout.payload_capacity);
                kind::HELLO
            }
            Message::HelloAck { version, pid } => {
                w.u32(*version);
                w.u32(*pid);
                kind::HELLO_ACK
            }
            Message::Load { origin } => {
                w.str(origin);
                kind::LOAD
            }
            Message::Sandbox(s) => {
                let flags = s.seccomp as u32 | (s.landlock as u32) << 1 | (s.allow_unavailable as u32) << 2;
                w.u32(flags);
                for v in [s.address_space, s.cpu_seconds, s.open_files, s.processes] {
                    w.u64(v);
                }
                w.u32(s.read_paths.len() as u32);
                for p in &s.read_paths {
                    w.str(p);
                }
                kind::SANDBOX
            }
            Message::Init { config, host_functions } => {
                w.bytes(config);
                w.u32(host_functions.len() as u32);
                for f in host_functions {
                    w.str(f);
                }
                kind::INIT
            }
            Message::Loaded { name, version, methods } => {
                w.str(name);
                w.str(version);
                w.u32(methods.len() as u32);
                for m in methods {
                    w.str(&m.name);
                    w.str(&m.signature);
                }
                kind::LOADED
            }
            Message::ExportState => kind::EXPORT,
            Message::ImportState { len } => {
                w.u64(*len);
                kind::IMPORT
            }
            Message::State { len } => {
                w.u64(*len);
                kind::STATE
            }
            Message::Log { level, line } => {
                w.u32(*level as u32);
                w.str(line);
                kind::LOG
            }
            Message::Shutdown => kind::SHUTDOWN,
            Message::Ok => kind::OK,
            Message::Failed { status, message } => {
                w.u32(*status as u32);
                w.str(message);
                kind::FAILED
            }
        };
        let body = (w.0.len() - FRAME_HEADER) as u32;
        w.0[..4].copy_from_slice(&body.to_le_bytes());
        w.0[4..6].copy_from_slice(&k.to_le_bytes());
        w.0
    }

    /// Decodes one frame, refusing anything that is not exactly a message.
    pub fn decode(frame: &[u8]) -> Result<Message> {
        let mut r = R { b: frame, what: "header" };
        let len = r.u32()? as usize;
        let k = u16::from_le_bytes(r.take(2)?.try_into().unwrap_or_default());
        let reserved = r.take(2)?;
        if len != r.b.len() || len > MAX_FRAME || reserved != [0, 0] {
            return Err(r.bad(format!(
                "expected a body of {len} bytes (at most {MAX_FRAME}) and a zero reserved field, found {} bytes",
                r.b.len()
            )));
        }
        let mut r = R { b: r.b, what: "body" };
        let m = match k {
            kind::HELLO => Message::Hello {
                version: r.u32()?,
                layout: Layout { lanes: r.u32()?, callback_capacity: r.u64()?, payload_capacity: r.u64()? },
            },
            kind::HELLO_ACK => Message::HelloAck { version: r.u32()?, pid: r.u32()? },
            kind::LOAD => Message::Load { origin: r.str()? },
            kind::SANDBOX => {
                let flags = r.u32()?;
                if flags & !7 != 0 {
                    return Err(r.bad(format!("unknown sandbox flags {flags:#x}")));
                }
                Message::Sandbox(SandboxSpec {
                    seccomp: flags & 1 != 0,
                    landlock: flags & 2 != 0,
                    allow_unavailable: flags & 4 != 0,
                    address_space: r.u64()?,
                    cpu_seconds: r.u64()?,
                    open_files: r.u64()?,
                    processes: r.u64()?,
                    read_paths: r.list(|r| r.str())?,
                })
            }
            kind::INIT => Message::Init { config: r.bytes(MAX_FRAME)?, host_functions: r.list(|r| r.str())? },
            kind::LOADED => Message::Loaded {
                name: r.str()?,
                version: r.str()?,
                methods: r.list(|r| Ok(WireMethod { name: r.str()?, signature: r.str()? }))?,
            },
            kind::EXPORT => Message::ExportState,
            kind::IMPORT => Message::ImportState { len: r.u64()? },
            kind::STATE => Message::State { len: r.u64()? },
            kind::LOG => Message::Log { level: r.u32()? as i32, line: r.str()? },
            kind::SHUTDOWN => Message::Shutdown,
            kind::OK => Message::Ok,
            kind::FAILED => Message::Failed { status: r.u32()? as i32, message: r.str()? },
            other => return Err(r.bad(format!("unknown message kind {other}"))),
        };
        r.end()?;
        Ok(m)
    }
}

fn io_err(what: &str) -> Error {
    Error::new(Status::Io, format!("{what}: {}", std::io::Error::last_os_error()))
}

/// A `SOCK_SEQPACKET` socketpair, both ends close-on-exec.
pub fn socketpair() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) } != 0 {
        return Err(io_err("socketpair for the worker's control socket"));
    }
    // SAFETY: two new descriptors nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sends one message, with at most one descriptor.
pub fn send(sock: BorrowedFd<'_>, msg: &Message, fd: Option<BorrowedFd<'_>>) -> Result<()> {
    let frame = msg.encode();
    if frame.len() > FRAME_HEADER + MAX_FRAME {
        return Err(Error::new(
            Status::InvalidArgument,
            format!("control message of {} bytes exceeds the {MAX_FRAME}-byte cap", frame.len()),
        ));
    }
    let mut iov = libc::iovec { iov_base: frame.as_ptr() as *mut libc::c_void, iov_len: frame.len() };
    // Room for one descriptor, aligned for cmsghdr.
    let mut cbuf = [0u64; 4];
    // SAFETY: zeroed msghdr; the fields set below point at live buffers.
    let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
    mh.msg_iov = &mut iov;
    mh.msg_iovlen = 1;
    if let Some(fd) = fd {
        // SAFETY: CMSG_SPACE is a pure computation.
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
        mh.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
        mh.msg_controllen = space;
        // SAFETY: the control buffer is large enough for one cmsghdr with
        // one descriptor (space <= 32 bytes).
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&mh);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut RawFd, fd.as_raw_fd());
        }
    }
    loop {
        // SAFETY: mh describes live buffers; MSG_NOSIGNAL avoids SIGPIPE.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &mh, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return Err(io_err("sending a control message"));
        }
    }
}

/// What [`recv`] got.
pub enum Received {
    /// A message and the descriptor that came with it, if any.
    Message(Message, Option<OwnedFd>),
    /// The other side closed the socket.
    Closed,
}

/// Receives one message, waiting at most `timeout` (None: forever).
/// Descriptors beyond the first are closed; all arrive close-on-exec.
pub fn recv(sock: BorrowedFd<'_>, timeout: Option<Duration>) -> Result<Received> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let ms = match deadline {
            None => -1,
            Some(d) => d.saturating_duration_since(Instant::now()).as_millis().min(i32::MAX as u128) as i32,
        };
        let mut p = libc::pollfd { fd: sock.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if r < 0 {
            return Err(io_err("waiting for a control message"));
        }
        if r == 0 {
            return Err(Error::new(
                Status::Timeout,
                format!("expected a control message within {} ms, found none", timeout.unwrap_or_default().as_millis()),
            ));
        }
        break;
    }
    let mut buf = vec![0u8; FRAME_HEADER + MAX_FRAME + 1];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr() as *mut libc::c_void, iov_len: buf.len() };
    let mut cbuf = [0u64; 16];
    // SAFETY: zeroed msghdr pointing at live buffers.
    let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
    mh.msg_iov = &mut iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
    mh.msg_controllen = std::mem::size_of_val(&cbuf);
    let n = loop {
        // SAFETY: as above; descriptors arrive close-on-exec.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut mh, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::ConnectionReset {
            return Ok(Received::Closed);
        }
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(Error::new(Status::Io, format!("receiving a control message: {e}")));
        }
    };
    let mut fds = Vec::new();
    // SAFETY: walking the control messages the kernel wrote into cbuf.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&mh);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c) as *const RawFd;
                let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<RawFd>();
                for k in 0..count {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(k))));
                }
            }
            c = libc::CMSG_NXTHDR(&mh, c);
        }
    }
    if n == 0 && fds.is_empty() {
        return Ok(Received::Closed);
    }
    if mh.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
        return Err(Error::new(Status::InvalidArgument, "control message truncated: larger than the frame cap"));
    }
    let msg = Message::decode(&buf[..n])?;
    Ok(Received::Message(msg, fds.into_iter().next()))
}

/// Sends `msg` and waits for the reply (a `Failed` reply becomes an error).
pub fn request(
    sock: BorrowedFd<'_>,
    msg: &Message,
    fd: Option<BorrowedFd<'_>>,
    timeout: Duration,
    mut on_log: impl FnMut(i32, String),
) -> Result<(Message, Option<OwnedFd>)> {
    send(sock, msg, fd)?;
    let deadline = Instant::now() + timeout;
    loop {
        // Log lines do not extend the deadline: a peer that only logs
        // still times out.
        let left = deadline.saturating_duration_since(Instant::now());
        match recv(sock, Some(left))? {
            Received::Closed => {
                return Err(Error::new(Status::PluginCrashed, "the worker closed its control socket"));
            }
            Received::Message(Message::Log { level, line }, _) => on_log(level, line),
            Received::Message(Message::Failed { status, message }, _) => {
                let st = Status::from_code(status).unwrap_or(Status::Internal);
                return Err(Error::new(st, message));
            }
            Received::Message(m, fd) => return Ok((m, fd)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn samples() -> Vec<Message> {
        vec![
            Message::Hello {
                version: 1,
                layout: Layout { lanes: 3, callback_capacity: 4096, payload_capacity: 1 << 20 },
            },
            Message::HelloAck { version: 1, pid: 42 },
            Message::Load { origin: "/p/libx.so".into() },
            Message::Sandbox(SandboxSpec {
                seccomp: true,
                landlock: false,
                allow_unavailable: true,
                address_space: 1 << 30,
                cpu_seconds: 5,
                open_files: 64,
                processes: 0,
                read_paths: vec!["/usr/lib".into()],
            }),
            Message::Init { config: b"k=v".to_vec(), host_functions: vec!["a".into(), "bé".into()] },
            Message::Loaded {
                name: "m".into(),
                version: "1.0.0".into(),
                methods: vec![WireMethod { name: "crc".into(), signature: "bytes -> u32".into() }],
            },
            Message::ExportState,
            Message::ImportState { len: 9 },
            Message::State { len: 9 },
            Message::Log { level: 3, line: "hi".into() },
            Message::Shutdown,
            Message::Ok,
            Message::Failed { status: 2005, message: "boom".into() },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in samples() {
            assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn truncated_padded_or_mangled_frames_are_refused_without_panicking() {
        let mut x: u32 = 12345;
        for m in samples() {
            let f = m.encode();
            for cut in 0..f.len() {
                assert!(Message::decode(&f[..cut]).is_err());
            }
            let mut longer = f.clone();
            longer.push(0);
            assert!(Message::decode(&longer).is_err());
            for _ in 0..500 {
                let mut g = f.clone();
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let i = (x as usize >> 8) % g.len();
                g[i] = (x >> 3) as u8;
                let _ = Message::decode(&g); // any result but a panic
            }
        }
        // A list length far beyond the cap is refused before allocating.
        let mut f = Message::Init { config: vec![], host_functions: vec![] }.encode();
        let n = f.len();
        f[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Message::decode(&f).unwrap_err().message().contains("at most"));
    }

    #[test]
    fn messages_and_descriptors_cross_a_socketpair() {
        let (a, b) = socketpair().unwrap();
        let file = tempfile::tempfile().unwrap();
        send(a.as_fd(), &Message::Load { origin: "x".into() }, Some(file.as_fd())).unwrap();
        match recv(b.as_fd(), Some(Duration::from_secs(5))).unwrap() {
            Received::Message(Message::Load { origin }, Some(fd)) => {
                assert_eq!(origin, "x");
                assert!(fd.as_raw_fd() >= 0);
            }
            _ => panic!("expected Load with a descriptor"),
        }
        let e = recv(b.as_fd(), Some(Duration::from_millis(10))).err().unwrap();
        assert_eq!(e.status(), Status::Timeout);
        drop(a);
        assert!(matches!(recv(b.as_fd(), Some(Duration::from_secs(5))).unwrap(), Received::Closed));
    }
}
