//! hotmod plugin ABI, version 1.
//!
//! This crate is data only: the `#[repr(C)]` types and constants that a plugin
//! and the hotmod runtime exchange. It has no dependencies, so the runtime
//! (which reads descriptors), the Rust SDK (which writes them) and cbindgen
//! (which turns this file into `include/hotmod_plugin.h`) all share one source
//! of truth. Changing the layout of anything here is an ABI break; the layout
//! tests at the bottom of this file make such a change fail loudly.
//!
//! # The contract in brief
//!
//! A plugin is a shared library exporting one function,
//! [`HOTMOD_PLUGIN_ENTRY_SYMBOL`] (`hotmod_plugin_v1`), which returns a pointer
//! to a static [`hotmod_plugin_descriptor`]. The descriptor opens with a magic
//! block (magic number, ABI major/minor, the descriptor's own size) that the
//! runtime checks before it reads anything else. Fields are only ever appended,
//! so a runtime can read a shorter descriptor from an older plugin.
//!
//! Methods have the type [`hotmod_method_fn`]: they take the instance pointer
//! that `init` produced, a borrowed input view and an output slot. A method
//! either writes into the space the host offers in the slot, or hands back
//! memory of its own together with a release callback, so output crosses the
//! boundary without a copy.
#![warn(missing_docs)]
#![allow(non_camel_case_types)]
#![no_std]

use core::ffi::{c_char, c_void};

/// Magic number that opens every plugin descriptor: the bytes `"HMOD"` read as
/// a big-endian 32-bit integer.
pub const HOTMOD_PLUGIN_MAGIC: u32 = 0x484D_4F44;
/// Major version of the plugin ABI. A runtime refuses plugins of another major.
pub const HOTMOD_ABI_MAJOR: u16 = 1;
/// Minor version of the plugin ABI. Minor versions only append fields.
pub const HOTMOD_ABI_MINOR: u16 = 0;
/// Name of the entry symbol every plugin exports (type [`hotmod_plugin_entry_fn`]).
pub const HOTMOD_PLUGIN_ENTRY_SYMBOL: &str = "hotmod_plugin_v1";

/// Descriptor flag: the plugin may be unmapped (`dlclose`) once its last call
/// has finished. Leave it unset if the plugin registers thread-local
/// destructors, uses `STB_GNU_UNIQUE` symbols or starts threads that can
/// outlive `destroy`; the runtime then keeps the code mapped after destroy.
pub const HOTMOD_PLUGIN_FLAG_SAFE_TO_UNLOAD: u32 = 1;

/// Dependency flag: the dependency is optional; the plugin loads without it.
pub const HOTMOD_DEPENDENCY_OPTIONAL: u32 = 1;

/// Plugin status: success.
pub const HOTMOD_PLUGIN_OK: i32 = 0;
/// Plugin status: the method failed; details were given through
/// [`hotmod_host_api::set_error`].
pub const HOTMOD_PLUGIN_ERROR: i32 = 1;
/// Plugin status: the input was not what the method accepts.
pub const HOTMOD_PLUGIN_INVALID_INPUT: i32 = 2;
/// Plugin status: the host-offered space was too small; the plugin set
/// `output->len` to the size it needs.
pub const HOTMOD_PLUGIN_OUTPUT_TOO_SMALL: i32 = 3;
/// Plugin status: the plugin caught a panic (set by the Rust SDK).
pub const HOTMOD_PLUGIN_PANICKED: i32 = 4;

/// Log level passed to [`hotmod_host_api::log`]: error.
pub const HOTMOD_LOG_ERROR: i32 = 1;
/// Log level: warning.
pub const HOTMOD_LOG_WARN: i32 = 2;
/// Log level: information.
pub const HOTMOD_LOG_INFO: i32 = 3;
/// Log level: debugging detail.
pub const HOTMOD_LOG_DEBUG: i32 = 4;

/// A borrowed, read-only view of bytes. Valid only for the duration of the
/// call it is passed to; `ptr` may be NULL when `len` is 0.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct hotmod_slice {
    /// First byte of the view.
    pub ptr: *const u8,
    /// Number of bytes in the view.
    pub len: usize,
}

/// Releases memory that a plugin (or the host) handed over through a
/// [`hotmod_output`]. Called exactly once, with the `release_ctx`, `data` and
/// `len` that were stored in the output, from any thread.
pub type hotmod_release_fn = Option<unsafe extern "C" fn(release_ctx: *mut c_void, data: *const u8, len: usize)>;

/// The output slot of a call.
///
/// The caller fills `buf`/`capacity` with space it offers (possibly NULL/0)
/// and zeroes the other fields. The callee then does one of:
///
/// - writes at most `capacity` bytes into `buf` and sets `data = buf` and
///   `len` (no `release`);
/// - points `data`/`len` at memory of its own and sets `release` (and
///   `release_ctx`), which the caller invokes exactly once when it is done with
///   the bytes — the zero-copy path;
/// - returns [`HOTMOD_PLUGIN_OUTPUT_TOO_SMALL`] with `len` set to the size it
///   needs, so the caller may retry with more space.
#[repr(C)]
#[derive(Debug)]
pub struct hotmod_output {
    /// Space offered by the caller, or NULL.
    pub buf: *mut u8,
    /// Size of `buf` in bytes.
    pub capacity: usize,
    /// Result bytes, set by the callee (`buf` or memory of its own).
    pub data: *const u8,
    /// Number of result bytes.
    pub len: usize,
    /// Set by the callee when `data` is its own memory; NULL otherwise.
    pub release: hotmod_release_fn,
    /// Passed back to `release`.
    pub release_ctx: *mut c_void,
}

/// A plugin method.
///
/// `instance` is the pointer `init` produced (NULL if the plugin has no init).
/// `input` is borrowed for the duration of the call. The method fills `output`
/// as described on [`hotmod_output`] and returns a `HOTMOD_PLUGIN_*` status.
/// Methods may be called from many threads at once.
pub type hotmod_method_fn =
    Option<unsafe extern "C" fn(instance: *mut c_void, input: hotmod_slice, output: *mut hotmod_output) -> i32>;

/// One method a plugin offers.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct hotmod_method_def {
    /// Method name: non-empty UTF-8, NUL-terminated, unique within the plugin.
    pub name: *const c_char,
    /// Free-form signature string (for example `"bytes -> u32le"`). The
    /// runtime hashes name and signature; callers holding a handle to the
    /// method are told when an upgrade changes that hash.
    pub signature: *const c_char,
    /// The method itself. Must not be NULL.
    pub func: hotmod_method_fn,
}

/// One module this plugin needs.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct hotmod_dependency_def {
    /// Name of the needed module (NUL-terminated UTF-8).
    pub name: *const c_char,
    /// Semver requirement on its version, for example `"^1.2"` (NUL-terminated).
    pub version_req: *const c_char,
    /// `HOTMOD_DEPENDENCY_*` flags.
    pub flags: u32,
}

/// The table of host services a plugin receives at `init`.
///
/// The table and `ctx` stay valid until the plugin's `destroy` hook returns.
/// All functions may be called from any thread, including from inside a
/// method call.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct hotmod_host_api {
    /// Size of this table in bytes; fields past it are absent.
    pub size: usize,
    /// Opaque context, passed back as the first argument of every function.
    pub ctx: *mut c_void,
    /// Writes a log line (`HOTMOD_LOG_*` level, UTF-8 bytes, not NUL-terminated).
    pub log: Option<unsafe extern "C" fn(ctx: *mut c_void, level: i32, msg: *const u8, len: usize)>,
    /// Sets the error message for the method call in progress on this thread;
    /// the host reports it when the method returns a non-zero status.
    pub set_error: Option<unsafe extern "C" fn(ctx: *mut c_void, msg: *const u8, len: usize)>,
    /// Calls a function the host program registered under `name`
    /// (NUL-terminated). `output` follows the [`hotmod_output`] protocol; if
    /// the result has a `release`, the plugin must call it. Returns 0 or a
    /// hotmod status code (for example 2001 when no such function exists).
    pub call_host: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            name: *const c_char,
            input: hotmod_slice,
            output: *mut hotmod_output,
        ) -> i32,
    >,
    /// Calls `method` of `module`, which must be one of this plugin's declared
    /// dependencies. The call reaches the module's active version, across
    /// upgrades. Returns 0 or a hotmod status code.
    pub call_module: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            module: *const c_char,
            method: *const c_char,
            input: hotmod_slice,
            output: *mut hotmod_output,
        ) -> i32,
    >,
}

/// `init` hook: receives the host table and the per-plugin configuration
/// bytes, stores an instance pointer in `*instance` and returns
/// `HOTMOD_PLUGIN_OK`, or fails (the plugin is then not loaded).
pub type hotmod_init_fn =
    Option<unsafe extern "C" fn(host: *const hotmod_host_api, config: hotmod_slice, instance: *mut *mut c_void) -> i32>;
/// `activate` hook: the version is about to serve calls. Non-zero refuses.
pub type hotmod_activate_fn = Option<unsafe extern "C" fn(instance: *mut c_void) -> i32>;
/// `deactivate` hook: the version has served its last call.
pub type hotmod_deactivate_fn = Option<unsafe extern "C" fn(instance: *mut c_void)>;
/// `destroy` hook: free the instance. Called exactly once, after the last call.
pub type hotmod_destroy_fn = Option<unsafe extern "C" fn(instance: *mut c_void)>;
/// `export_state` hook: called on the old version during an upgrade; fills
/// `output` (same protocol as a method) with state for the new version.
pub type hotmod_export_state_fn =
    Option<unsafe extern "C" fn(instance: *mut c_void, output: *mut hotmod_output) -> i32>;
/// `import_state` hook: called on the new version during an upgrade with the
/// bytes the old version exported, before it is published.
pub type hotmod_import_state_fn = Option<unsafe extern "C" fn(instance: *mut c_void, state: hotmod_slice) -> i32>;

/// The static descriptor a plugin's entry symbol returns.
///
/// Must stay valid (with everything it points to) for as long as the plugin
/// is loaded. Set `descriptor_size` to `sizeof(hotmod_plugin_descriptor)`.
#[repr(C)]
#[derive(Debug)]
pub struct hotmod_plugin_descriptor {
    /// Must be [`HOTMOD_PLUGIN_MAGIC`].
    pub magic: u32,
    /// Must be [`HOTMOD_ABI_MAJOR`].
    pub abi_major: u16,
    /// The ABI minor the plugin was built against.
    pub abi_minor: u16,
    /// `sizeof(hotmod_plugin_descriptor)` as the plugin saw it.
    pub descriptor_size: u32,
    /// `HOTMOD_PLUGIN_FLAG_*` flags.
    pub flags: u32,
    /// Module name: non-empty UTF-8, NUL-terminated.
    pub name: *const c_char,
    /// Semantic version, for example `"1.4.0"`.
    pub version: *const c_char,
    /// One-line description, or NULL.
    pub description: *const c_char,
    /// Array of `dependency_count` dependencies (NULL if none).
    pub dependencies: *const hotmod_dependency_def,
    /// Number of entries in `dependencies`.
    pub dependency_count: usize,
    /// Array of `method_count` methods.
    pub methods: *const hotmod_method_def,
    /// Number of entries in `methods`.
    pub method_count: usize,
    /// Optional hook, see [`hotmod_init_fn`].
    pub init: hotmod_init_fn,
    /// Optional hook, see [`hotmod_activate_fn`].
    pub activate: hotmod_activate_fn,
    /// Optional hook, see [`hotmod_deactivate_fn`].
    pub deactivate: hotmod_deactivate_fn,
    /// Optional hook, see [`hotmod_destroy_fn`].
    pub destroy: hotmod_destroy_fn,
    /// Optional hook, see [`hotmod_export_state_fn`].
    pub export_state: hotmod_export_state_fn,
    /// Optional hook, see [`hotmod_import_state_fn`].
    pub import_state: hotmod_import_state_fn,
}

/// Type of the entry symbol [`HOTMOD_PLUGIN_ENTRY_SYMBOL`].
pub type hotmod_plugin_entry_fn = unsafe extern "C" fn() -> *const hotmod_plugin_descriptor;

/// Size of the magic block that opens every descriptor: magic, ABI major,
/// ABI minor and descriptor size. The runtime reads only these bytes before
/// it has checked them.
pub const HOTMOD_MAGIC_BLOCK_SIZE: usize = 12;

// SAFETY: a descriptor and the tables it points to are immutable static data
// that the plugin promises never to change while loaded; sharing them between
// threads is therefore sound.
unsafe impl Sync for hotmod_plugin_descriptor {}
// SAFETY: as above: method tables are immutable static data.
unsafe impl Sync for hotmod_method_def {}
// SAFETY: as above: dependency tables are immutable static data.
unsafe impl Sync for hotmod_dependency_def {}

impl hotmod_output {
    /// An output slot offering `capacity` bytes at `buf`.
    pub const fn offering(buf: *mut u8, capacity: usize) -> Self {
        hotmod_output {
            buf,
            capacity,
            data: core::ptr::null(),
            len: 0,
            release: None,
            release_ctx: core::ptr::null_mut(),
        }
    }
}

impl hotmod_slice {
    /// A view of `bytes`.
    pub const fn from_bytes(bytes: &[u8]) -> Self {
        hotmod_slice { ptr: bytes.as_ptr(), len: bytes.len() }
    }

    /// The bytes of this view, empty if `ptr` is NULL.
    ///
    /// # Safety
    /// `ptr` must point to `len` readable bytes that stay valid and unchanged
    /// for the lifetime `'a` chosen by the caller.
    pub unsafe fn as_bytes<'a>(&self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            &[]
        } else {
            // SAFETY: the caller guarantees `ptr` is valid for `len` bytes.
            unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

#[cfg(test)]
mod layout {
    //! Layout tests: any change here is an ABI break and needs a new ABI major
    //! (or, for appended fields, a new minor).
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn descriptor_layout_is_frozen() {
        assert_eq!(offset_of!(hotmod_plugin_descriptor, magic), 0);
        assert_eq!(offset_of!(hotmod_plugin_descriptor, abi_major), 4);
        assert_eq!(offset_of!(hotmod_plugin_descriptor, abi_minor), 6);
        assert_eq!(offset_of!(hotmod_plugin_descriptor, descriptor_size), 8);
        assert_eq!(offset_of!(hotmod_plugin_descriptor, flags), 12);
        assert_eq!(offset_of!(hotmod_plugin_descriptor, name), 16);
        assert_eq!(offset_of!(hotmod_plugin_descriptor, version), 24);
        assert_eq!(offset_of!(hotmod_plugin_descriptor, description), 32);
        assert_eq!(offset_of!(hotmod_plugin_descriptor, dependencies), 40);
        assert_eq!(offset_of!(hotmod_plugin_descriptor, dependency_count), 48);
        assert_eq!(offset_of!(hotmod_plugin_descriptor, methods), 56);
        assert_eq!(offset_of!(hotmod_plugin_descriptor, method_count), 64);
        assert_eq!(offset_of!(hotmod_plugin_descriptor, init), 72);
        assert_eq!(offset_of!(hotmod_plugin_descriptor, activate), 80);
        assert_eq!(offset_of!(hotmod_plugin_descriptor, deactivate), 88);
        assert_eq!(offset_of!(hotmod_plugin_descriptor, destroy), 96);
        assert_eq!(offset_of!(hotmod_plugin_descriptor, export_state), 104);
        assert_eq!(offset_of!(hotmod_plugin_descriptor, import_state), 112);
        assert_eq!(size_of::<hotmod_plugin_descriptor>(), 120);
        assert_eq!(align_of::<hotmod_plugin_descriptor>(), 8);
        assert!(HOTMOD_MAGIC_BLOCK_SIZE <= offset_of!(hotmod_plugin_descriptor, flags));
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn table_layouts_are_frozen() {
        assert_eq!(size_of::<hotmod_slice>(), 16);
        assert_eq!(offset_of!(hotmod_slice, len), 8);

        assert_eq!(size_of::<hotmod_output>(), 48);
        assert_eq!(offset_of!(hotmod_output, capacity), 8);
        assert_eq!(offset_of!(hotmod_output, data), 16);
        assert_eq!(offset_of!(hotmod_output, len), 24);
        assert_eq!(offset_of!(hotmod_output, release), 32);
        assert_eq!(offset_of!(hotmod_output, release_ctx), 40);

        assert_eq!(size_of::<hotmod_method_def>(), 24);
        assert_eq!(offset_of!(hotmod_method_def, signature), 8);
        assert_eq!(offset_of!(hotmod_method_def, func), 16);

        assert_eq!(size_of::<hotmod_dependency_def>(), 24);
        assert_eq!(offset_of!(hotmod_dependency_def, version_req), 8);
        assert_eq!(offset_of!(hotmod_dependency_def, flags), 16);

        assert_eq!(size_of::<hotmod_host_api>(), 48);
        assert_eq!(offset_of!(hotmod_host_api, ctx), 8);
        assert_eq!(offset_of!(hotmod_host_api, log), 16);
        assert_eq!(offset_of!(hotmod_host_api, set_error), 24);
        assert_eq!(offset_of!(hotmod_host_api, call_host), 32);
        assert_eq!(offset_of!(hotmod_host_api, call_module), 40);
    }

    #[test]
    fn option_fn_pointers_are_nullable_pointers() {
        assert_eq!(size_of::<hotmod_method_fn>(), size_of::<usize>());
        assert_eq!(size_of::<hotmod_release_fn>(), size_of::<usize>());
    }

    #[test]
    fn magic_spells_hmod() {
        assert_eq!(&HOTMOD_PLUGIN_MAGIC.to_be_bytes(), b"HMOD");
    }
}
