//! The worker's sandbox, applied by the worker to itself before the plugin
//! is mapped (`dlopen` runs constructors, so nothing of the plugin runs
//! unsandboxed): resource limits, `no_new_privs`, Landlock path rules and a
//! seccomp filter.
//!
//! - **Resource limits**: `RLIMIT_AS` (memory: an allocation past it fails,
//!   and a plugin that aborts on it stops the worker, which the host reports
//!   as `PLUGIN_CRASHED` naming the signal), `RLIMIT_CPU`, `RLIMIT_NOFILE`,
//!   `RLIMIT_NPROC` (not enforced for root).
//! - **Landlock**: every filesystem access right this kernel knows is
//!   handled; reading is allowed only beneath the configured paths (by
//!   default the system library directories, so `dlopen` can resolve a
//!   plugin's dependencies) and of the plugin's own memfd. Reading
//!   `/etc/passwd` is refused with `EACCES`.
//! - **seccomp** (`seccompiler`): a deny list, so that whatever `dlopen`,
//!   the C library and the Rust runtime need keeps working: creating
//!   sockets, `connect`/`bind`/`listen`/`accept`, `execve`, `fork`/`vfork`
//!   (a `clone` without `CLONE_THREAD`), `ptrace`, `process_vm_*`, mounts,
//!   namespaces, kernel modules, `bpf`, `perf_event_open`, keyrings and
//!   `kexec` fail with `EPERM`; `clone3` fails with `ENOSYS` (its flags sit
//!   in memory a filter cannot read; the C library then falls back to
//!   `clone`, which the filter can check). The filter is installed for all
//!   threads (`SECCOMP_FILTER_FLAG_TSYNC`).
//!
//! Where the kernel lacks Landlock or seccomp the result is
//! `SANDBOX_UNAVAILABLE`, unless the host allowed running without it.

use std::collections::BTreeMap;
use std::os::fd::BorrowedFd;

use super::wire::SandboxSpec;
use crate::error::{Error, Result, Status};

/// Directories a sandboxed plugin may read beneath by default.
pub const DEFAULT_READ_PATHS: &[&str] = &["/lib", "/lib64", "/usr/lib", "/usr/lib64", "/etc/ld.so.cache"];

/// What was put in force.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SandboxReport {
    /// Landlock rules are enforced (fully or partially).
    pub landlock: bool,
    /// The seccomp filter is installed.
    pub seccomp: bool,
    /// Notes on what could not be applied.
    pub notes: Vec<String>,
}

fn unavailable(what: String) -> Error {
    Error::new(Status::SandboxUnavailable, what)
}

fn set_limit(resource: libc::__rlimit_resource_t, name: &str, value: u64) -> Result<()> {
    if value == 0 {
        return Ok(());
    }
    let lim = libc::rlimit { rlim_cur: value as libc::rlim_t, rlim_max: value as libc::rlim_t };
    // SAFETY: plain syscall with a valid struct.
    if unsafe { libc::setrlimit(resource, &lim) } != 0 {
        return Err(unavailable(format!("setrlimit({name}, {value}): {}", std::io::Error::last_os_error())));
    }
    Ok(())
}

/// Applies `spec` to the calling process; `plugin` is the memfd the plugin
/// will be mapped from (readable under Landlock).
pub fn apply(spec: &SandboxSpec, plugin: Option<BorrowedFd<'_>>) -> Result<SandboxReport> {
    let mut report = SandboxReport::default();
    set_limit(libc::RLIMIT_AS, "RLIMIT_AS", spec.address_space)?;
    set_limit(libc::RLIMIT_CPU, "RLIMIT_CPU", spec.cpu_seconds)?;
    set_limit(libc::RLIMIT_NOFILE, "RLIMIT_NOFILE", spec.open_files)?;
    set_limit(libc::RLIMIT_NPROC, "RLIMIT_NPROC", spec.processes)?;
    // SAFETY: plain prctl.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(unavailable(format!("PR_SET_NO_NEW_PRIVS: {}", std::io::Error::last_os_error())));
    }
    if spec.landlock {
        match landlock_rules(spec, plugin) {
            Ok(true) => report.landlock = true,
            Ok(false) if spec.allow_unavailable => report.notes.push("Landlock is not supported by this kernel".into()),
            Ok(false) => {
                return Err(unavailable(
                    "expected Landlock path rules for the sandbox, found a kernel without Landlock; \
                     allow running without it or turn the rules off"
                        .into(),
                ))
            }
            Err(e) if spec.allow_unavailable => report.notes.push(e.message().to_owned()),
            Err(e) => return Err(e),
        }
    }
    if spec.seccomp {
        match seccomp_filter() {
            Ok(()) => report.seccomp = true,
            Err(e) if spec.allow_unavailable => report.notes.push(e.message().to_owned()),
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

fn landlock_rules(spec: &SandboxSpec, plugin: Option<BorrowedFd<'_>>) -> Result<bool> {
    use landlock::{
        Access, AccessFs, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, ABI,
    };
    let err = |e: &dyn std::fmt::Display| unavailable(format!("Landlock: {e}"));
    let abi = ABI::V5;
    let read = AccessFs::from_read(abi);
    let mut rs = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(|e| err(&e))?
        .create()
        .map_err(|e| err(&e))?;
    let paths: Vec<String> = if spec.read_paths.is_empty() {
        DEFAULT_READ_PATHS.iter().map(|s| s.to_string()).collect()
    } else {
        spec.read_paths.clone()
    };
    for p in &paths {
        // Paths missing on this system are skipped, not errors.
        if let Ok(fd) = PathFd::new(p) {
            rs = rs.add_rule(PathBeneath::new(fd, read)).map_err(|e| err(&e))?;
        }
    }
    if let Some(fd) = plugin {
        rs = rs.add_rule(PathBeneath::new(fd, AccessFs::ReadFile | AccessFs::Execute)).map_err(|e| err(&e))?;
    }
    let st = rs.restrict_self().map_err(|e| err(&e))?;
    Ok(st.ruleset != RulesetStatus::NotEnforced)
}

fn seccomp_filter() -> Result<()> {
    use seccompiler::{
        apply_filter_all_threads, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
        SeccompFilter, SeccompRule, TargetArch,
    };
    let err = |e: &dyn std::fmt::Display| unavailable(format!("seccomp: {e}"));
    let arch: TargetArch = std::env::consts::ARCH.try_into().map_err(|e| err(&e))?;
    let mut deny: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in denied_syscalls() {
        deny.insert(nr, vec![]);
    }
    // fork and vfork are clone without CLONE_THREAD; threads stay allowed.
    let not_thread =
        SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64), 0)
            .map_err(|e| err(&e))?;
    deny.insert(libc::SYS_clone, vec![SeccompRule::new(vec![not_thread]).map_err(|e| err(&e))?]);
    let eperm = SeccompAction::Errno(libc::EPERM as u32);
    let main: BpfProgram = SeccompFilter::new(deny, SeccompAction::Allow, eperm, arch)
        .map_err(|e| err(&e))?
        .try_into()
        .map_err(|e| err(&e))?;
    let mut c3: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    c3.insert(libc::SYS_clone3, vec![]);
    let clone3: BpfProgram =
        SeccompFilter::new(c3, SeccompAction::Allow, SeccompAction::Errno(libc::ENOSYS as u32), arch)
            .map_err(|e| err(&e))?
            .try_into()
            .map_err(|e| err(&e))?;
    apply_filter_all_threads(&clone3).map_err(|e| err(&e))?;
    apply_filter_all_threads(&main).map_err(|e| err(&e))?;
    Ok(())
}

fn denied_syscalls() -> Vec<i64> {
    let mut v = vec![
        libc::SYS_socket,
        libc::SYS_socketpair,
        libc::SYS_connect,
        libc::SYS_bind,
        libc::SYS_listen,
        libc::SYS_accept,
        libc::SYS_accept4,
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_reboot,
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([libc::SYS_fork, libc::SYS_vfork]);
    v
}
