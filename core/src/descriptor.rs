//! Reading and validating a plugin descriptor.
//!
//! Everything a plugin declares is checked here before any of it is used:
//! the magic block first (and nothing else is read if it is wrong), then the
//! descriptor size, names, semver version, methods and dependencies. The
//! result, [`PluginInfo`], is an owned copy, so later code never walks plugin
//! memory again except to call the function pointers it validated.

use std::collections::HashSet;
use std::ffi::{c_char, CStr};

use hotmod_abi as abi;
use semver::{Version, VersionReq};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result, Status};

/// Upper bound on methods and dependencies, to refuse garbage counts quickly.
const MAX_ENTRIES: usize = 65_536;

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

/// Reads a NUL-terminated UTF-8 string field.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string.
unsafe fn read_str(p: *const c_char, field: &str, file: &str, required: bool) -> Result<String> {
    if p.is_null() {
        if required {
            return Err(invalid(file, format!("expected a string for {field}, found NULL")));
        }
        return Ok(String::new());
    }
    // SAFETY: the caller guarantees a NUL-terminated string.
    let c = unsafe { CStr::from_ptr(p) };
    let s = c.to_str().map_err(|e| {
        invalid(file, format!("expected UTF-8 for {field}, found invalid byte at offset {}", e.valid_up_to()))
    })?;
    if required && s.is_empty() {
        return Err(invalid(file, format!("expected a non-empty {field}, found an empty string")));
    }
    Ok(s.to_owned())
}

/// Validates the descriptor at `desc`, read from plugin `file`.
///
/// # Safety
/// `desc` must be NULL or point to at least [`abi::HOTMOD_MAGIC_BLOCK_SIZE`]
/// readable bytes; if the magic block is valid it must point to a descriptor
/// of the size it declares, whose pointers are valid as the ABI requires.
pub(crate) unsafe fn read_descriptor(desc: *const abi::hotmod_plugin_descriptor, file: &str) -> Result<PluginInfo> {
    if desc.is_null() {
        return Err(invalid(file, "expected a descriptor pointer from hotmod_plugin_v1, found NULL".into()));
    }
    // The magic block is read field by field and unaligned, before anything
    // else, so a foreign symbol of the same name cannot make us chase pointers.
    let base = desc as *const u8;
    // SAFETY: the caller guarantees the magic block is readable.
    let (magic, major, minor, size) = unsafe {
        (
            (base as *const u32).read_unaligned(),
            (base.add(4) as *const u16).read_unaligned(),
            (base.add(6) as *const u16).read_unaligned(),
            (base.add(8) as *const u32).read_unaligned(),
        )
    };
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
    // SAFETY: magic, ABI and size are checked; the descriptor is at least as
    // large as the v1 struct, so reading the v1 fields is in bounds.
    let d = unsafe { &*desc };
    // SAFETY: string fields are NULL or NUL-terminated per the ABI.
    let name = unsafe { read_str(d.name, "the module name", file, true)? };
    // SAFETY: as above.
    let version_str = unsafe { read_str(d.version, "the version", file, true)? };
    let version = Version::parse(&version_str).map_err(|e| {
        invalid(file, format!("expected a semver version (like \"1.2.0\"), found \"{version_str}\": {e}"))
    })?;
    // SAFETY: as above.
    let description = unsafe { read_str(d.description, "the description", file, false)? };

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
    for i in 0..d.method_count {
        // SAFETY: methods points to method_count entries (checked non-NULL).
        let m = unsafe { &*d.methods.add(i) };
        // SAFETY: string fields are NULL or NUL-terminated per the ABI.
        let mname = unsafe { read_str(m.name, &format!("the name of method #{i}"), file, true)? };
        // SAFETY: as above.
        let signature = unsafe { read_str(m.signature, &format!("the signature of method '{mname}'"), file, false)? };
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
    for i in 0..d.dependency_count {
        // SAFETY: dependencies points to dependency_count entries.
        let dep = unsafe { &*d.dependencies.add(i) };
        // SAFETY: string fields are NULL or NUL-terminated per the ABI.
        let dname = unsafe { read_str(dep.name, &format!("the name of dependency #{i}"), file, true)? };
        // SAFETY: as above.
        let req_str =
            unsafe { read_str(dep.version_req, &format!("the version range of dependency '{dname}'"), file, false)? };
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

    fn read(d: &abi::hotmod_plugin_descriptor) -> Result<PluginInfo> {
        // SAFETY: d is a live descriptor built above with valid pointers.
        unsafe { read_descriptor(d, "/plugins/demo.so") }
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
    fn signature_hash_depends_on_name_and_signature() {
        assert_eq!(signature_hash("a", "x"), signature_hash("a", "x"));
        assert_ne!(signature_hash("a", "x"), signature_hash("a", "y"));
        assert_ne!(signature_hash("ax", ""), signature_hash("a", "x"));
    }
}
