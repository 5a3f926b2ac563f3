//! Reading and validating a plugin descriptor.
//!
//! Everything a plugin declares is checked here before any of it is used:
//! the magic block first (and nothing else is read if it is wrong), then the
//! descriptor size, names, semver version, methods and dependencies. The
//! result, [`PluginInfo`], is an owned copy, so later code never walks plugin
//! memory again except to call the function pointers it validated.
//!
//! Plugin memory is never trusted to be there: the descriptor, the method
//! and dependency arrays and every string must lie inside the readable
//! `PT_LOAD` segments of the loaded object the descriptor is in (found with
//! `dl_iterate_phdr`), pointers must be aligned for what they point to, and
//! every read is a copy that cannot fault (`process_vm_readv` on this
//! process: a page the plugin unmapped or protected gives an error, not a
//! SIGSEGV). String scans stop at the segment's end and at a length cap, and
//! names are restricted to a charset that is safe to print in events, logs
//! and Prometheus labels. On platforms without `dl_iterate_phdr` the caps
//! still bound every scan.

use std::collections::HashSet;
#[cfg(test)]
use std::ffi::CStr;
use std::ffi::{c_char, c_int, c_void};

use hotmod_abi as abi;
use semver::{Version, VersionReq};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result, Status};

/// Upper bound on methods and dependencies, to refuse garbage counts quickly.
const MAX_ENTRIES: usize = 65_536;

/// Longest module, method or dependency name, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Longest version string, in bytes.
pub const MAX_VERSION_LEN: usize = 64;
/// Longest dependency version range, in bytes.
pub const MAX_VERSION_REQ_LEN: usize = 256;
/// Longest method signature, in bytes.
pub const MAX_SIGNATURE_LEN: usize = 1024;
/// Longest description, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 4096;

/// The raw signature of a plugin method.
pub(crate) type MethodFn =
    unsafe extern "C" fn(*mut std::ffi::c_void, abi::hotmod_slice, *mut abi::hotmod_output) -> i32;

/// A validated method declaration.
#[derive(Clone, Debug)]
pub struct MethodDecl {
    /// Method name.
    pub name: String,
    /// Signature string as declared (empty if the plugin gave none).
    pub signature: String,
    /// Hash of name and signature; changes when the contract changes.
    pub signature_hash: u64,
    pub(crate) func: MethodFn,
}

/// A validated dependency declaration.
#[derive(Clone, Debug)]
pub struct DependencyDecl {
    /// Name of the needed module.
    pub name: String,
    /// Required version range.
    pub requirement: VersionReq,
    /// Whether the plugin can run without it.
    pub optional: bool,
}

/// Lifecycle hooks, copied out of the descriptor.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Hooks {
    pub init: abi::hotmod_init_fn,
    pub activate: abi::hotmod_activate_fn,
    pub deactivate: abi::hotmod_deactivate_fn,
    pub destroy: abi::hotmod_destroy_fn,
    pub export_state: abi::hotmod_export_state_fn,
    pub import_state: abi::hotmod_import_state_fn,
}

/// An owned, validated copy of a plugin descriptor.
#[derive(Clone, Debug)]
pub struct PluginInfo {
    /// Module name.
    pub name: String,
    /// Module version.
    pub version: Version,
    /// Description (empty if none).
    pub description: String,
    /// `HOTMOD_PLUGIN_FLAG_*` bits.
    pub flags: u32,
    /// ABI minor the plugin was built against.
    pub abi_minor: u16,
    /// Declared methods, in declaration order.
    pub methods: Vec<MethodDecl>,
    /// Declared dependencies.
    pub dependencies: Vec<DependencyDecl>,
    pub(crate) hooks: Hooks,
}

impl PluginInfo {
    /// Whether the plugin declared itself safe to unmap.
    pub fn safe_to_unload(&self) -> bool {
        self.flags & abi::HOTMOD_PLUGIN_FLAG_SAFE_TO_UNLOAD != 0
    }
}

/// The signature hash of a method: the first 8 bytes of
/// SHA-256(name NUL signature), little-endian.
pub fn signature_hash(name: &str, signature: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0u8]);
    h.update(signature.as_bytes());
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().expect("sha256 has 32 bytes"))
}

fn invalid(file: &str, what: String) -> Error {
    Error::new(Status::InvalidDescriptor, format!("invalid plugin descriptor in '{file}': {what}"))
}

/// Readable address ranges, `[start, end)`, that a descriptor and what it
/// points to must lie in.
#[derive(Clone, Debug, Default)]
pub(crate) struct Regions {
    ranges: Vec<(usize, usize)>,
}

impl Regions {
    /// The readable `PT_LOAD` segments of the loaded object whose segments
    /// contain `addr`, or None if no loaded object's do.
    ///
    /// Where reads of plugin memory cannot fault ([`fault_safe_reads`]),
    /// memory outside the object's segments is accepted too: a plugin may
    /// build its descriptor at run time in memory it never frees (the Go
    /// SDK does, from the methods registered at init), and every read is
    /// still bounded by the length caps and refused where unmapped.
    #[cfg(target_os = "linux")]
    pub(crate) fn of_object_containing(addr: usize) -> Option<Regions> {
        if fault_safe_reads() {
            return Some(Regions { ranges: vec![(1, usize::MAX)] });
        }
        Regions::segments_of_object_containing(addr)
    }

    /// The readable `PT_LOAD` segments of the loaded object whose segments
    /// contain `addr`, or None if no loaded object's do.
    #[cfg(target_os = "linux")]
    pub(crate) fn segments_of_object_containing(addr: usize) -> Option<Regions> {
        struct Search {
            addr: usize,
            found: Option<Regions>,
        }
        unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _size: libc::size_t, data: *mut c_void) -> c_int {
            // SAFETY: dl_iterate_phdr passes a valid info for the duration of
            // the callback, and `data` is the Search below.
            let (info, search) = unsafe { (&*info, &mut *(data as *mut Search)) };
            let mut ranges = Vec::new();
            let mut hit = false;
            for i in 0..info.dlpi_phnum as usize {
                // SAFETY: dlpi_phdr has dlpi_phnum entries.
                let ph = unsafe { &*info.dlpi_phdr.add(i) };
                if ph.p_type != libc::PT_LOAD || ph.p_flags & libc::PF_R == 0 {
                    continue;
                }
                let start = (info.dlpi_addr as usize).wrapping_add(ph.p_vaddr as usize);
                let end = start.saturating_add(ph.p_memsz as usize);
                hit |= (start..end).contains(&search.addr);
                ranges.push((start, end));
            }
            if hit {
                search.found = Some(Regions { ranges });
                return 1;
            }
            0
        }
        let mut search = Search { addr, found: None };
        // SAFETY: the callback only reads what it is given and writes `search`.
        unsafe { libc::dl_iterate_phdr(Some(visit), &mut search as *mut Search as *mut c_void) };
        search.found
    }

    /// Without `dl_iterate_phdr`, the whole address space: scans are then
    /// bounded by the length caps only.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn of_object_containing(_addr: usize) -> Option<Regions> {
        Some(Regions { ranges: vec![(1, usize::MAX)] })
    }

    /// As [`of_object_containing`](Self::of_object_containing).
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn segments_of_object_containing(addr: usize) -> Option<Regions> {
        Regions::of_object_containing(addr)
    }

    /// Adds a range (tests build descriptors outside any object's segments).
    #[cfg(test)]
    pub(crate) fn add(&mut self, start: usize, len: usize) {
        self.ranges.push((start, start + len));
    }

    /// The end of the range holding `p`, if any does.
    fn end_of(&self, p: usize) -> Option<usize> {
        self.ranges.iter().find(|(s, e)| (*s..*e).contains(&p)).map(|r| r.1)
    }

    /// Whether `[p, p+len)` lies inside one range.
    fn holds(&self, p: usize, len: usize) -> bool {
        match (self.end_of(p), p.checked_add(len)) {
            (Some(end), Some(last)) => last <= end,
            _ => false,
        }
    }
}

/// Copies `dst.len()` bytes from address `src` of this process; false if any
/// of them is not readable. Never faults where the kernel can check.
fn copy_in(src: usize, dst: &mut [u8]) -> bool {
    if dst.is_empty() {
        return true;
    }
    #[cfg(target_os = "linux")]
    {
        let local = libc::iovec { iov_base: dst.as_mut_ptr() as *mut c_void, iov_len: dst.len() };
        let remote = libc::iovec { iov_base: src as *mut c_void, iov_len: dst.len() };
        // SAFETY: reads this process's memory through the kernel, which
        // reports unreadable pages as EFAULT instead of faulting; `local`
        // is our own buffer.
        let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        if n >= 0 {
            return n as usize == dst.len();
        }
        let err = std::io::Error::last_os_error().raw_os_error();
        if err != Some(libc::ENOSYS) && err != Some(libc::EPERM) || fault_safe_reads() {
            // (Once reads were found fault-safe, ranges are no longer
            // bounded by segments: never fall back on a plain read then.)
            return false;
        }
        // Not available (old kernel, or a seccomp filter): fall back on the
        // segment bounds checked by the caller.
    }
    // SAFETY: the caller checked that the range lies inside a readable
    // segment of a loaded object.
    unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst.as_mut_ptr(), dst.len()) };
    true
}

/// Whether reads of plugin memory go through `process_vm_readv`, which
/// reports an unmapped or protected page as an error instead of faulting
/// (probed once; a seccomp filter or an old kernel may refuse it).
#[cfg(target_os = "linux")]
pub(crate) fn fault_safe_reads() -> bool {
    static PROBE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PROBE.get_or_init(|| {
        let src = 0x5au8;
        let mut dst = 0u8;
        let local = libc::iovec { iov_base: &mut dst as *mut u8 as *mut c_void, iov_len: 1 };
        let remote = libc::iovec { iov_base: &src as *const u8 as *mut c_void, iov_len: 1 };
        // SAFETY: reads one byte of our own stack into another.
        let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        n == 1 && dst == 0x5a
    })
}

/// Without `process_vm_readv`, reads are bounded by segments instead.
#[cfg(not(target_os = "linux"))]
pub(crate) fn fault_safe_reads() -> bool {
    false
}

/// Copies a `T` from plugin memory at `p` after checking alignment and
/// bounds. `T` must be valid for any bit pattern (the ABI's plain structs
/// of integers, raw pointers and optional function pointers are, and have
/// no destructor).
fn copy_struct<T>(p: usize, regions: &Regions) -> std::result::Result<T, String> {
    let size = std::mem::size_of::<T>();
    if p & (std::mem::align_of::<T>() - 1) != 0 {
        return Err(format!("expected an address aligned to {} bytes, found {p:#x}", std::mem::align_of::<T>()));
    }
    if !regions.holds(p, size) {
        return Err(format!("expected {size} bytes at {p:#x} inside the plugin's loaded segments, found them outside"));
    }
    let mut v = std::mem::MaybeUninit::<T>::uninit();
    // SAFETY: a MaybeUninit<T> is size_of::<T>() writable bytes.
    let bytes = unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, size) };
    if !copy_in(p, bytes) {
        return Err(format!("expected {size} readable bytes at {p:#x}, found unreadable memory"));
    }
    // SAFETY: fully written above; T accepts any bit pattern (see above).
    Ok(unsafe { v.assume_init() })
}

/// What a string field may contain.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Charset {
    /// Letters, digits, `_`, `-` and `.` (module, method and dependency names).
    Name,
    /// Any UTF-8 text without control characters (tab allowed).
    Text,
}

fn invalid_char(s: &str, charset: Charset) -> Option<(usize, char)> {
    s.char_indices().find(|&(_, c)| match charset {
        Charset::Name => !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')),
        Charset::Text => (c.is_control() && c != '\t') || matches!(c, '\u{2028}' | '\u{2029}'),
    })
}

/// Reads a NUL-terminated UTF-8 string field of at most `cap` bytes, from
/// inside `regions` only.
fn read_str(
    p: *const c_char,
    field: &str,
    file: &str,
    required: bool,
    cap: usize,
    charset: Charset,
    regions: &Regions,
) -> Result<String> {
    if p.is_null() {
        if required {
            return Err(invalid(file, format!("expected a string for {field}, found NULL")));
        }
        return Ok(String::new());
    }
    let start = p as usize;
    let Some(seg_end) = regions.end_of(start) else {
        return Err(invalid(
            file,
            format!("expected {field} inside the plugin's loaded segments, found a pointer outside them ({p:p})"),
        ));
    };
    // Scan page by page (a copy never spans an unreadable page), up to the
    // cap (plus one byte for the NUL) and never past the segment's end.
    let limit = start.saturating_add(cap + 1).min(seg_end);
    let mut bytes: Vec<u8> = Vec::new();
    let mut at = start;
    let mut terminated = false;
    while at < limit {
        let page_end = (at | 4095).saturating_add(1).min(limit);
        let mut chunk = vec![0u8; page_end - at];
        if !copy_in(at, &mut chunk) {
            return Err(invalid(
                file,
                format!("expected {field} to be readable, found unreadable memory at {at:#x} before its NUL"),
            ));
        }
        if let Some(i) = chunk.iter().position(|&b| b == 0) {
            bytes.extend_from_slice(&chunk[..i]);
            terminated = true;
            break;
        }
        bytes.extend_from_slice(&chunk);
        at = page_end;
    }
    if !terminated {
        if bytes.len() > cap {
            return Err(invalid(file, format!("expected {field} of at most {cap} bytes, found a longer one")));
        }
        return Err(invalid(
            file,
            format!("expected a NUL-terminated {field}, found none before the end of its segment at {seg_end:#x}"),
        ));
    }
    let s = String::from_utf8(bytes).map_err(|e| {
        invalid(
            file,
            format!("expected UTF-8 for {field}, found invalid byte at offset {}", e.utf8_error().valid_up_to()),
        )
    })?;
    if required && s.is_empty() {
        return Err(invalid(file, format!("expected a non-empty {field}, found an empty string")));
    }
    if let Some((at, c)) = invalid_char(&s, charset) {
        let allowed = match charset {
            Charset::Name => "only letters, digits, '_', '-' and '.'",
            Charset::Text => "text without control characters",
        };
        return Err(invalid(file, format!("expected {allowed} in {field}, found {c:?} at byte {at}")));
    }
    Ok(s)
}

/// Validates the descriptor at `desc`, read from plugin `file`. Every read
/// is checked first: where reads cannot fault ([`fault_safe_reads`]) any
/// readable memory is accepted, else the descriptor and everything it points
/// to must lie in the readable segments of the loaded object the descriptor
/// itself is in.
///
/// # Safety
/// `desc` must be what the plugin's entry symbol returned; it is otherwise
/// checked (alignment, segment bounds, readability) before any read.
pub(crate) unsafe fn read_descriptor(desc: *const abi::hotmod_plugin_descriptor, file: &str) -> Result<PluginInfo> {
    if desc.is_null() {
        return Err(invalid(file, "expected a descriptor pointer from hotmod_plugin_v1, found NULL".into()));
    }
    let Some(regions) = Regions::of_object_containing(desc as usize) else {
        return Err(invalid(
            file,
            format!(
                "expected hotmod_plugin_v1 to return a pointer to static data of a loaded library, found {desc:p}, which lies in none"
            ),
        ));
    };
    read_descriptor_in(desc, file, &regions)
}

/// [`read_descriptor`] within explicit `regions`.
pub(crate) fn read_descriptor_in(
    desc: *const abi::hotmod_plugin_descriptor,
    file: &str,
    regions: &Regions,
) -> Result<PluginInfo> {
    if desc.is_null() {
        return Err(invalid(file, "expected a descriptor pointer from hotmod_plugin_v1, found NULL".into()));
    }
    let base = desc as usize;
    let align = std::mem::align_of::<abi::hotmod_plugin_descriptor>();
    if base & (align - 1) != 0 {
        return Err(invalid(file, format!("expected the descriptor pointer aligned to {align} bytes, found {desc:p}")));
    }
    // The magic block is read before anything else, so a foreign symbol of
    // the same name cannot make us chase pointers.
    let mut block = [0u8; abi::HOTMOD_MAGIC_BLOCK_SIZE];
    if !regions.holds(base, block.len()) || !copy_in(base, &mut block) {
        return Err(invalid(
            file,
            format!("expected a readable descriptor at {desc:p} inside the plugin's loaded segments, found none"),
        ));
    }
    let magic = u32::from_ne_bytes(block[0..4].try_into().expect("4 bytes"));
    let major = u16::from_ne_bytes(block[4..6].try_into().expect("2 bytes"));
    let minor = u16::from_ne_bytes(block[6..8].try_into().expect("2 bytes"));
    let size = u32::from_ne_bytes(block[8..12].try_into().expect("4 bytes"));
    if magic != abi::HOTMOD_PLUGIN_MAGIC {
        return Err(Error::new(
            Status::NotAPlugin,
            format!(
                "'{file}' is not a hotmod plugin: expected magic 0x{:08X} (\"HMOD\") at the start of its descriptor, found 0x{magic:08X}",
                abi::HOTMOD_PLUGIN_MAGIC
            ),
        ));
    }
    if major != abi::HOTMOD_ABI_MAJOR {
        return Err(Error::new(
            Status::AbiUnsupported,
            format!(
                "'{file}' was built for hotmod plugin ABI {major}.{minor}; this runtime speaks ABI {}.{}",
                abi::HOTMOD_ABI_MAJOR,
                abi::HOTMOD_ABI_MINOR
            ),
        ));
    }
    let need = std::mem::size_of::<abi::hotmod_plugin_descriptor>();
    if (size as usize) < need {
        return Err(invalid(
            file,
            format!("expected descriptor_size of at least {need} bytes for ABI 1.0, found {size}"),
        ));
    }
    let d: abi::hotmod_plugin_descriptor =
        copy_struct(base, regions).map_err(|e| invalid(file, format!("the descriptor: {e}")))?;
    let rs = |p, field: &str, required, cap, charset| read_str(p, field, file, required, cap, charset, regions);
    let name = rs(d.name, "the module name", true, MAX_NAME_LEN, Charset::Name)?;
    let version_str = rs(d.version, "the version", true, MAX_VERSION_LEN, Charset::Text)?;
    let version = Version::parse(&version_str).map_err(|e| {
        invalid(file, format!("expected a semver version (like \"1.2.0\"), found \"{version_str}\": {e}"))
    })?;
    let description = rs(d.description, "the description", false, MAX_DESCRIPTION_LEN, Charset::Text)?;

    if d.method_count > MAX_ENTRIES || (d.method_count > 0 && d.methods.is_null()) {
        return Err(invalid(
            file,
            format!(
                "expected a methods array of method_count entries, found count {} and pointer {:p}",
                d.method_count, d.methods
            ),
        ));
    }
    let mut methods = Vec::with_capacity(d.method_count);
    let mut seen = HashSet::new();
    let msize = std::mem::size_of::<abi::hotmod_method_def>();
    for i in 0..d.method_count {
        let at = (d.methods as usize).wrapping_add(i * msize);
        let m: abi::hotmod_method_def =
            copy_struct(at, regions).map_err(|e| invalid(file, format!("method #{i} of the methods array: {e}")))?;
        let mname = rs(m.name, &format!("the name of method #{i}"), true, MAX_NAME_LEN, Charset::Name)?;
        let signature =
            rs(m.signature, &format!("the signature of method '{mname}'"), false, MAX_SIGNATURE_LEN, Charset::Text)?;
        let Some(func) = m.func else {
            return Err(invalid(file, format!("expected a function pointer for method '{mname}', found NULL")));
        };
        if !seen.insert(mname.clone()) {
            return Err(invalid(file, format!("expected unique method names, found '{mname}' declared twice")));
        }
        methods.push(MethodDecl { signature_hash: signature_hash(&mname, &signature), name: mname, signature, func });
    }

    if d.dependency_count > MAX_ENTRIES || (d.dependency_count > 0 && d.dependencies.is_null()) {
        return Err(invalid(
            file,
            format!(
                "expected a dependencies array of dependency_count entries, found count {} and pointer {:p}",
                d.dependency_count, d.dependencies
            ),
        ));
    }
    let mut dependencies = Vec::with_capacity(d.dependency_count);
    let dsize = std::mem::size_of::<abi::hotmod_dependency_def>();
    for i in 0..d.dependency_count {
        let at = (d.dependencies as usize).wrapping_add(i * dsize);
        let dep: abi::hotmod_dependency_def = copy_struct(at, regions)
            .map_err(|e| invalid(file, format!("dependency #{i} of the dependencies array: {e}")))?;
        let dname = rs(dep.name, &format!("the name of dependency #{i}"), true, MAX_NAME_LEN, Charset::Name)?;
        let req_str = rs(
            dep.version_req,
            &format!("the version range of dependency '{dname}'"),
            false,
            MAX_VERSION_REQ_LEN,
            Charset::Text,
        )?;
        let req_str = if req_str.is_empty() { "*".to_string() } else { req_str };
        let requirement = VersionReq::parse(&req_str).map_err(|e| {
            invalid(
                file,
                format!("expected a semver range for dependency '{dname}' (like \"^1.2\"), found \"{req_str}\": {e}"),
            )
        })?;
        if dname == name {
            return Err(Error::new(
                Status::DependencyCycle,
                format!("dependency cycle in '{file}': module '{name}' depends on itself ({name} -> {name})"),
            ));
        }
        dependencies.push(DependencyDecl {
            name: dname,
            requirement,
            optional: dep.flags & abi::HOTMOD_DEPENDENCY_OPTIONAL != 0,
        });
    }

    Ok(PluginInfo {
        name,
        version,
        description,
        flags: d.flags,
        abi_minor: minor,
        methods,
        dependencies,
        hooks: Hooks {
            init: d.init,
            activate: d.activate,
            deactivate: d.deactivate,
            destroy: d.destroy,
            export_state: d.export_state,
            import_state: d.import_state,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of_val;
    use std::ptr;

    unsafe extern "C" fn noop(_: *mut std::ffi::c_void, _: abi::hotmod_slice, _: *mut abi::hotmod_output) -> i32 {
        0
    }

    fn method(name: &'static CStr) -> abi::hotmod_method_def {
        abi::hotmod_method_def { name: name.as_ptr(), signature: c"bytes -> bytes".as_ptr(), func: Some(noop) }
    }

    fn desc(methods: &[abi::hotmod_method_def]) -> abi::hotmod_plugin_descriptor {
        abi::hotmod_plugin_descriptor {
            magic: abi::HOTMOD_PLUGIN_MAGIC,
            abi_major: abi::HOTMOD_ABI_MAJOR,
            abi_minor: abi::HOTMOD_ABI_MINOR,
            descriptor_size: std::mem::size_of::<abi::hotmod_plugin_descriptor>() as u32,
            flags: 0,
            name: c"demo".as_ptr(),
            version: c"1.2.3".as_ptr(),
            description: ptr::null(),
            dependencies: ptr::null(),
            dependency_count: 0,
            methods: methods.as_ptr(),
            method_count: methods.len(),
            init: None,
            activate: None,
            deactivate: None,
            destroy: None,
            export_state: None,
            import_state: None,
        }
    }

    /// The test binary's segments (string literals, statics), plus the
    /// stack objects the tests build.
    fn regions(extra: &[(usize, usize)]) -> Regions {
        // The segment-bounded mode (what runs where reads could fault), so
        // that pointers outside the segments are seen refused.
        let mut r =
            Regions::segments_of_object_containing(c"demo".as_ptr() as usize).expect("the test binary is loaded");
        for &(p, n) in extra {
            r.add(p, n);
        }
        r
    }

    fn span<T>(s: &[T]) -> (usize, usize) {
        (s.as_ptr() as usize, std::mem::size_of_val(s))
    }

    fn read_with(d: &abi::hotmod_plugin_descriptor, extra: &[(usize, usize)]) -> Result<PluginInfo> {
        let mut all = extra.to_vec();
        all.push(span(std::slice::from_ref(d)));
        read_descriptor_in(d, "/plugins/demo.so", &regions(&all))
    }

    fn read(d: &abi::hotmod_plugin_descriptor) -> Result<PluginInfo> {
        // Every test keeps its methods array in the descriptor's reach.
        let ms = if d.methods.is_null() {
            (0, 0)
        } else {
            (d.methods as usize, d.method_count.min(16) * std::mem::size_of::<abi::hotmod_method_def>())
        };
        let deps = if d.dependencies.is_null() {
            (0, 0)
        } else {
            (d.dependencies as usize, d.dependency_count.min(16) * std::mem::size_of::<abi::hotmod_dependency_def>())
        };
        read_with(d, &[ms, deps])
    }

    #[test]
    fn valid_descriptor_is_read() {
        let ms = [method(c"a"), method(c"b")];
        let info = read(&desc(&ms)).unwrap();
        assert_eq!(info.name, "demo");
        assert_eq!(info.version, Version::new(1, 2, 3));
        assert_eq!(info.methods.len(), 2);
        assert_eq!(info.methods[1].name, "b");
        assert_ne!(info.methods[0].signature_hash, info.methods[1].signature_hash);
    }

    #[test]
    fn each_defect_gives_its_status_and_names_the_file() {
        let ms = [method(c"a"), method(c"a")];
        type Mutation = Box<dyn Fn(&mut abi::hotmod_plugin_descriptor)>;
        let cases: Vec<(Mutation, Status, &str)> = vec![
            (Box::new(|d| d.magic = 0xDEADBEEF), Status::NotAPlugin, "found 0xDEADBEEF"),
            (Box::new(|d| d.abi_major = 2), Status::AbiUnsupported, "ABI 2.0"),
            (Box::new(|d| d.descriptor_size = 8), Status::InvalidDescriptor, "found 8"),
            (Box::new(|d| d.name = ptr::null()), Status::InvalidDescriptor, "found NULL"),
            (Box::new(|d| d.name = c"".as_ptr()), Status::InvalidDescriptor, "non-empty"),
            (Box::new(|d| d.name = c"\xff".as_ptr()), Status::InvalidDescriptor, "UTF-8"),
            (Box::new(|d| d.version = c"one".as_ptr()), Status::InvalidDescriptor, "\"one\""),
            (Box::new(|d| d.method_count = 2), Status::InvalidDescriptor, "'a' declared twice"),
            (Box::new(|d| d.methods = ptr::null()), Status::InvalidDescriptor, "method_count"),
        ];
        for (mutate, status, needle) in cases {
            let mut d = desc(&ms[..1]);
            d.methods = ms.as_ptr();
            mutate(&mut d);
            let e = read(&d).unwrap_err();
            assert_eq!(e.status(), status, "{e:?}");
            assert!(e.message().contains("/plugins/demo.so"), "{e:?}");
            assert!(e.message().contains(needle), "{e:?} should contain {needle}");
        }
    }

    #[test]
    fn null_function_pointer_is_refused() {
        let ms = [abi::hotmod_method_def { name: c"x".as_ptr(), signature: ptr::null(), func: None }];
        let e = read(&desc(&ms)).unwrap_err();
        assert_eq!(e.status(), Status::InvalidDescriptor);
        assert!(e.message().contains("method 'x'"));
    }

    #[test]
    fn bad_dependency_range_and_self_dependency() {
        let ms = [method(c"a")];
        let deps = [abi::hotmod_dependency_def { name: c"base".as_ptr(), version_req: c">>1".as_ptr(), flags: 0 }];
        let mut d = desc(&ms);
        d.dependencies = deps.as_ptr();
        d.dependency_count = 1;
        assert_eq!(read(&d).unwrap_err().status(), Status::InvalidDescriptor);
        let deps = [abi::hotmod_dependency_def { name: c"demo".as_ptr(), version_req: c"^1".as_ptr(), flags: 0 }];
        d.dependencies = deps.as_ptr();
        let e = read(&d).unwrap_err();
        assert_eq!(e.status(), Status::DependencyCycle);
        assert!(e.message().contains("demo -> demo"));
    }

    #[test]
    fn misaligned_descriptor_and_arrays_are_refused_before_any_read() {
        let ms = [method(c"a")];
        let d = desc(&ms);
        // A copy of the descriptor one byte off its alignment.
        let mut raw = vec![0u8; std::mem::size_of_val(&d) + 16];
        let off = (raw.as_ptr() as usize).next_multiple_of(8) - raw.as_ptr() as usize + 1;
        // SAFETY: raw has room for the descriptor at `off`.
        unsafe {
            std::ptr::copy_nonoverlapping(&d as *const _ as *const u8, raw.as_mut_ptr().add(off), size_of_val(&d))
        };
        let p = raw[off..].as_ptr() as *const abi::hotmod_plugin_descriptor;
        let e = read_descriptor_in(p, "/plugins/demo.so", &regions(&[span(&raw)])).unwrap_err();
        assert_eq!(e.status(), Status::InvalidDescriptor);
        assert!(e.message().contains("aligned to 8 bytes"), "{e}");

        let mut d = desc(&ms);
        d.methods = (ms.as_ptr() as usize + 4) as *const abi::hotmod_method_def;
        let e = read_with(&d, &[span(&ms)]).unwrap_err();
        assert!(e.message().contains("method #0") && e.message().contains("aligned"), "{e}");
    }

    #[test]
    fn pointers_outside_the_segments_are_refused() {
        let ms = [method(c"a")];
        let mut d = desc(&ms);
        let heap_name = std::ffi::CString::new("heap").unwrap();
        d.name = heap_name.as_ptr();
        let e = read(&d).unwrap_err();
        assert!(e.message().contains("module name inside the plugin's loaded segments"), "{e}");
        // A descriptor no loaded object holds: refused where reads could
        // fault; where they cannot, read like any other (the Go SDK builds
        // its descriptor at run time), with the same checks.
        let boxed = Box::new(desc(&ms));
        // SAFETY: read_descriptor checks the pointer before reading.
        let r = unsafe { read_descriptor(&*boxed, "/plugins/demo.so") };
        if fault_safe_reads() {
            assert_eq!(r.unwrap().methods[0].name, "a");
        } else {
            assert!(r.unwrap_err().message().contains("lies in none"));
        }
        // The methods array running past its segment.
        let mut d = desc(&ms);
        d.method_count = 1;
        let e = read_with(&d, &[(ms.as_ptr() as usize, 8)]).unwrap_err();
        assert!(e.message().contains("method #0"), "{e}");
    }

    #[test]
    fn a_string_running_into_an_unreadable_page_is_refused_not_read() {
        // Two pages: the first readable, filled with 'a' (no NUL), the
        // second PROT_NONE. The regions claim both are readable, as a
        // segment whose page a constructor protected would.
        // SAFETY: a fresh anonymous mapping, unmapped at the end.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        // SAFETY: the first page is ours and writable; then protect the second.
        unsafe {
            std::ptr::write_bytes(base as *mut u8, b'a', 4096);
            assert_eq!(libc::mprotect((base as *mut u8).add(4096) as *mut c_void, 4096, libc::PROT_NONE), 0);
        }
        let ms = [method(c"a")];
        let mut d = desc(&ms);
        // SAFETY: inside the mapping.
        d.name = unsafe { (base as *const c_char).add(4096 - 8) };
        let e = read_with(&d, &[span(&ms), (base as usize, 8192)]).unwrap_err();
        assert!(e.message().contains("unreadable memory"), "{e}");
        // Bounded by its segment instead: refused at the segment's end.
        let e = read_with(&d, &[span(&ms), (base as usize, 4096)]).unwrap_err();
        assert!(e.message().contains("before the end of its segment"), "{e}");
        // SAFETY: our mapping, no longer used.
        unsafe { libc::munmap(base, 8192) };
    }

    #[test]
    fn long_names_and_unprintable_characters_are_refused() {
        let ms = [method(c"a")];
        let long = vec![b'n'; 1 << 20];
        let long = std::ffi::CString::new(long).unwrap();
        type Case = (Box<dyn Fn(&mut abi::hotmod_plugin_descriptor)>, &'static str);
        let long_ptr = long.as_ptr() as usize;
        let cases: Vec<Case> = vec![
            (Box::new(move |d| d.name = long_ptr as *const c_char), "at most 128 bytes"),
            (Box::new(|d| d.name = c"two\nlines".as_ptr()), "'\\n' at byte 3"),
            (Box::new(|d| d.name = c"say\"hi\"".as_ptr()), "'\"' at byte 3"),
            (Box::new(|d| d.name = c"a b".as_ptr()), "' ' at byte 1"),
            (Box::new(move |d| d.description = long_ptr as *const c_char), "at most 4096 bytes"),
            (Box::new(|d| d.description = c"bell\x07".as_ptr()), "'\\u{7}'"),
        ];
        for (mutate, needle) in cases {
            let mut d = desc(&ms);
            mutate(&mut d);
            let e = read_with(&d, &[span(&ms), (long_ptr, (1 << 20) + 1)]).unwrap_err();
            assert_eq!(e.status(), Status::InvalidDescriptor, "{e}");
            assert!(e.message().contains(needle), "{e} should contain {needle}");
        }
        let bad_method = [abi::hotmod_method_def { name: c"m\r".as_ptr(), signature: ptr::null(), func: Some(noop) }];
        let e = read(&desc(&bad_method)).unwrap_err();
        assert!(e.message().contains("name of method #0"), "{e}");
        let bad_sig =
            [abi::hotmod_method_def { name: c"m".as_ptr(), signature: c"a\n-> b".as_ptr(), func: Some(noop) }];
        let e = read(&desc(&bad_sig)).unwrap_err();
        assert!(e.message().contains("signature of method 'm'"), "{e}");
        // Tabs and non-ASCII text are fine in descriptions and signatures.
        let mut d = desc(&ms);
        d.description = c"caf\xc3\xa9\tbar".as_ptr();
        assert_eq!(read(&d).unwrap().description, "café\tbar");
    }

    #[test]
    fn signature_hash_depends_on_name_and_signature() {
        assert_eq!(signature_hash("a", "x"), signature_hash("a", "x"));
        assert_ne!(signature_hash("a", "x"), signature_hash("a", "y"));
        assert_ne!(signature_hash("ax", ""), signature_hash("a", "x"));
    }
}
