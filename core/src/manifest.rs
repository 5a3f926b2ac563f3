//! Manifests: a TOML file that lists the plugins a runtime should run, and
//! [`load_manifest`], which brings a runtime to that state.
//!
//! ```toml
//! [[plugin]]
//! path = "libchecksum.so"      # relative paths resolve against the manifest's directory
//! sha256 = "9f86d081…"         # optional: refuse any other bytes, before any plugin code runs
//! config = "level=3"           # optional: the bytes handed to the plugin's init hook
//! enabled = true               # optional, default true; false unloads it
//! isolation = "in-process"     # optional; the only mode this runtime offers yet
//!
//! [[plugin]]
//! path = "/opt/plugins/libtext.so"
//! ```
//!
//! Any other key is refused with [`Status::BadManifest`], naming the key and
//! its line, so a typo never silently turns a setting off.
//!
//! Applying a manifest — first, or again after it was edited:
//! - loads the entries whose module is not loaded yet, together and in
//!   dependency order ([`Runtime::load_all`]: all of them or none);
//! - upgrades in place ([`Runtime::upgrade`], state handed over, no failed
//!   call) a module whose file content (its SHA-256 against
//!   [`ModuleInfo::sha256`](crate::ModuleInfo::sha256)) or config changed,
//!   including when the entry now points to another file that declares the
//!   same module (say `libchecksum.so` → `libchecksum-v2.so`);
//! - unloads the modules an earlier application loaded whose entry is now
//!   removed or disabled (dependents first).
//!
//! Upgrades run first, then loads, then unloads, so a module may switch its
//! dependencies in the same edit. Everything that can be checked without
//! changing the runtime is checked before anything changes: the TOML, every
//! enabled file (present, readable, its pinned SHA-256), and that no entry
//! claims a module loaded by other means. If a step fails after that, the
//! steps before it stand, the failed one leaves its module as it was (the
//! old version keeps serving), and the error says which entry failed.
//!
//! Which modules a manifest owns is kept in a [`ManifestState`], one per
//! manifest file: [`Runtime::apply_manifest`] keeps them in the runtime (the
//! C, Python and Node APIs use it); [`load_manifest`] takes one the host
//! holds. Modules loaded by other means are never upgraded or unloaded by a
//! manifest.
//!
//! Entries are matched to modules by module name, which only the plugin's
//! descriptor tells. For a path the manifest already loaded, the name is
//! known; a new path is *identified* first: read, checked (mode, pinned
//! SHA-256 — before anything is mapped), mapped from a private copy and its
//! descriptor read, then unmapped. That runs what any load runs before the
//! plugin's `init` (the library's constructors and its entry symbol), and
//! no more.
//!
//! Events from the loads, upgrades and unloads go to the runtime's handler
//! on the thread that called [`load_manifest`]; a manifest's own errors are
//! returned, not sent as events.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::deps;
use crate::descriptor;
use crate::error::{Error, Result, Status};
use crate::loader::{self, sha256_hex, LoadOptions};
use crate::runtime::{Runtime, UpgradeOptions};

/// The largest manifest accepted: 1 MiB (a manifest listing a thousand
/// plugins is about 100 KiB).
pub const MAX_MANIFEST_SIZE: u64 = 1 << 20;

/// How a plugin runs.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Isolation {
    /// In the host process (`isolation = "in-process"`, the default).
    #[default]
    InProcess,
}

/// One `[[plugin]]` entry of a manifest.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestEntry {
    /// The plugin file, absolute (a relative `path` is resolved against the
    /// manifest's directory).
    pub path: PathBuf,
    /// Whether the plugin should run (`enabled`, default true).
    pub enabled: bool,
    /// The SHA-256 the file must have (`sha256`, 64 hexadecimal digits).
    pub sha256: Option<[u8; 32]>,
    /// The bytes handed to the plugin's init hook (`config`, default empty).
    pub config: Vec<u8>,
    /// How it runs (`isolation`).
    pub isolation: Isolation,
    /// Line of the manifest where the entry starts (1-based).
    pub line: usize,
}

impl ManifestEntry {
    /// The options a load or upgrade of this entry uses.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions { expected_sha256: self.sha256, config: self.config.clone(), ..LoadOptions::default() }
    }
}

/// A parsed and validated manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The manifest file, absolute.
    pub path: PathBuf,
    /// Its entries, in file order.
    pub plugins: Vec<ManifestEntry>,
}

/// Which modules a manifest loaded, kept by the host between applications
/// of that manifest (one state per manifest file).
///
/// A fresh state owns nothing: applying a manifest with it loads every
/// enabled entry. Keep the state and pass it to the next
/// [`load_manifest`] of the same file, so that entries removed from the
/// file are unloaded and changed ones upgraded.
#[derive(Clone, Debug, Default)]
pub struct ManifestState {
    owned: BTreeMap<String, Owned>,
}

#[derive(Clone, Debug)]
struct Owned {
    path: PathBuf,
    config: Vec<u8>,
}

impl ManifestState {
    /// A state that owns no module.
    pub fn new() -> ManifestState {
        ManifestState::default()
    }

    /// Names of the modules the manifest owns, sorted.
    pub fn modules(&self) -> Vec<String> {
        self.owned.keys().cloned().collect()
    }

    /// The file the manifest loaded module `name` from, if it owns it.
    pub fn path_of(&self, name: &str) -> Option<&Path> {
        self.owned.get(name).map(|o| o.path.as_path())
    }
}

/// What an application of a manifest changed (module names, in the order
/// the changes were made).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManifestReport {
    /// Modules loaded.
    pub loaded: Vec<String>,
    /// Modules upgraded in place.
    pub upgraded: Vec<String>,
    /// Modules unloaded (entry removed or disabled).
    pub unloaded: Vec<String>,
    /// Enabled entries already running with the same content and config.
    pub unchanged: Vec<String>,
}

/// Reads the manifest at `path` and brings `rt` to the state it describes;
/// `state` records which modules the manifest owns (see the
/// [module documentation](self) for what is loaded, upgraded and unloaded,
/// and in which order).
///
/// Errors: [`Status::BadManifest`] if the file cannot be read or is not a
/// valid manifest (the message names the file, line and column); otherwise
/// the code of the load, upgrade or unload that failed
/// ([`Status::HashMismatch`], [`Status::FileMissing`], [`Status::InitFailed`],
/// [`Status::NameConflict`], …), with the manifest's file and line prefixed
/// to the message.
pub fn load_manifest(rt: &Runtime, path: impl AsRef<Path>, state: &mut ManifestState) -> Result<ManifestReport> {
    Manifest::from_file(path)?.apply(rt, state)
}

impl Runtime {
    /// Applies the manifest at `path` with a [`ManifestState`] the runtime
    /// keeps for that file (one per canonical path, however the file is
    /// named), so applying the edited file again upgrades, loads and unloads
    /// what changed. See [`load_manifest`] for errors; to keep the state
    /// yourself, call that instead.
    ///
    /// Applications are serialised; an event handler must not call this.
    pub fn apply_manifest(&self, path: impl AsRef<Path>) -> Result<ManifestReport> {
        let path = path.as_ref();
        let key = crate::loader::identity_path(path);
        let mut states = self.inner().manifests.lock().unwrap_or_else(|e| e.into_inner());
        load_manifest(self, path, states.entry(key).or_default())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default)]
    plugin: Vec<Spanned<RawEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    path: Spanned<String>,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
    sha256: Option<Spanned<String>>,
    config: Option<String>,
    isolation: Option<Spanned<String>>,
}

fn enabled_by_default() -> bool {
    true
}

/// 1-based line and column of byte offset `at` in `text`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(before.len(), |nl| before.len() - nl - 1) + 1;
    (line, col)
}

impl Manifest {
    /// Reads and validates the manifest at `path`.
    ///
    /// The file gets the checks a plugin file gets: opened once without
    /// blocking, refused unless a regular file ([`Status::BadManifest`]:
    /// a FIFO or `/dev/zero` is never waited on or read), refused if it or
    /// a directory on its resolved path is writable by anyone
    /// ([`Status::UnsafeFile`]), refused from its size if larger than
    /// [`MAX_MANIFEST_SIZE`] ([`Status::FileTooLarge`]), and read from the
    /// descriptor that was checked, never past the cap.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Manifest> {
        let checks =
            loader::Checks { kind: loader::Kind::Manifest, allow_world_writable: false, max_size: MAX_MANIFEST_SIZE };
        let cannot = |e: Error| Error::new(e.status(), format!("cannot read manifest: {}", e.message()));
        let mut opened = loader::open_checked(path.as_ref(), checks).map_err(cannot)?;
        let bytes = loader::read_capped(&mut opened, checks).map_err(cannot)?;
        let path = opened.path;
        let text = String::from_utf8(bytes).map_err(|e| {
            Error::new(
                Status::BadManifest,
                format!(
                    "cannot read manifest '{}': expected UTF-8 TOML, found a byte that is not UTF-8 at offset {}",
                    path.display(),
                    e.utf8_error().valid_up_to()
                ),
            )
        })?;
        Manifest::parse(&text, &path)
    }

    /// Parses and validates manifest text; `path` is where it came from
    /// (relative plugin paths resolve against its directory, and errors
    /// name it).
    pub fn parse(text: &str, path: impl AsRef<Path>) -> Result<Manifest> {
        let path = loader::absolute(path.as_ref()).map_err(|e| Error::new(Status::BadManifest, e.message()))?;
        let bad = |at: Option<usize>, msg: &str| {
            let place = match at {
                Some(at) => {
                    let (line, col) = line_col(text, at);
                    format!(", line {line}, column {col}")
                }
                None => String::new(),
            };
            Error::new(Status::BadManifest, format!("invalid manifest '{}'{place}: {msg}", path.display()))
        };
        let raw: RawManifest = toml::from_str(text).map_err(|e| {
            // serde's wording is "field"; in a TOML file it is a key.
            let msg =
                e.message().trim_end().replace("unknown field", "unknown key").replace("missing field", "missing key");
            bad(e.span().map(|s| s.start), &msg)
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut plugins: Vec<ManifestEntry> = Vec::with_capacity(raw.plugin.len());
        for spanned in raw.plugin {
            let line = line_col(text, spanned.span().start).0;
            let raw = spanned.into_inner();
            let given = raw.path.get_ref();
            if given.trim().is_empty() {
                return Err(bad(
                    Some(raw.path.span().start),
                    "expected a plugin file in `path`, found an empty string",
                ));
            }
            let p = Path::new(given);
            let resolved = if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
            let sha256 = match &raw.sha256 {
                None => None,
                Some(s) => {
                    Some(loader::parse_sha256_hex(s.get_ref()).map_err(|e| bad(Some(s.span().start), e.message()))?)
                }
            };
            let isolation = match &raw.isolation {
                None => Isolation::InProcess,
                Some(s) => match s.get_ref().as_str() {
                    "in-process" => Isolation::InProcess,
                    "out-of-process" => {
                        return Err(bad(
                            Some(s.span().start),
                            "`isolation = \"out-of-process\"` is not available in this runtime yet; expected \"in-process\"",
                        ))
                    }
                    other => {
                        return Err(bad(
                            Some(s.span().start),
                            &format!("expected `isolation` to be \"in-process\" or \"out-of-process\", found \"{other}\""),
                        ))
                    }
                },
            };
            if let Some(first) = plugins.iter().find(|e| e.path == resolved) {
                return Err(bad(
                    Some(raw.path.span().start),
                    &format!("'{}' is already listed by the entry on line {}", resolved.display(), first.line),
                ));
            }
            plugins.push(ManifestEntry {
                path: resolved,
                enabled: raw.enabled,
                sha256,
                config: raw.config.map(String::into_bytes).unwrap_or_default(),
                isolation,
                line,
            });
        }
        Ok(Manifest { path, plugins })
    }

    /// Brings `rt` to the state this manifest describes; see
    /// [`load_manifest`].
    pub fn apply(&self, rt: &Runtime, state: &mut ManifestState) -> Result<ManifestReport> {
        // Modules the host unloaded since (or that went with a dependency)
        // are no longer the manifest's.
        state.owned.retain(|name, _| rt.module(name).is_ok());

        // Check every enabled entry and learn its module, changing nothing.
        let mut wants: Vec<Want<'_>> = Vec::new();
        for entry in self.plugins.iter().filter(|e| e.enabled) {
            let known = state.owned.iter().find(|(_, o)| o.path == entry.path).map(|(n, _)| n.clone());
            let (name, sha256) = match known {
                Some(name) => {
                    let image =
                        loader::read_image(&entry.path, &entry.load_options()).map_err(|e| self.at(entry, e))?;
                    (name, image.sha256)
                }
                None => {
                    let id = identify(&entry.path, &entry.load_options()).map_err(|e| self.at(entry, e))?;
                    (id.name, id.sha256)
                }
            };
            if let Some(other) = wants.iter().find(|w| w.name == name) {
                return Err(self.at(
                    entry,
                    Error::new(
                        Status::BadManifest,
                        format!(
                            "'{}' declares module '{name}', which the entry on line {} ('{}') already provides; list each module once",
                            entry.path.display(),
                            other.entry.line,
                            other.entry.path.display()
                        ),
                    ),
                ));
            }
            if !state.owned.contains_key(&name) {
                if let Ok(m) = rt.module(&name) {
                    return Err(self.at(
                        entry,
                        Error::new(
                            Status::NameConflict,
                            format!(
                                "'{}' declares module '{name}', which is already loaded from '{}' by other means than this manifest; unload it first",
                                entry.path.display(),
                                m.info().path.display()
                            ),
                        ),
                    ));
                }
            }
            wants.push(Want { entry, name, sha256 });
        }

        let mut report = ManifestReport::default();

        // Upgrades and unchanged entries, dependencies first.
        let kept: Vec<&Want<'_>> = wants.iter().filter(|w| state.owned.contains_key(&w.name)).collect();
        for i in running_order(rt, kept.iter().map(|w| w.name.clone()).collect()) {
            let w = kept[i];
            let running = rt.module(&w.name).map_err(|e| self.at(w.entry, e))?;
            let owned = &state.owned[&w.name];
            if running.info().sha256 == sha256_hex(&w.sha256) && owned.config == w.entry.config {
                report.unchanged.push(w.name.clone());
            } else {
                let opts = UpgradeOptions { load: w.entry.load_options(), force: false };
                rt.upgrade(&w.name, &w.entry.path, &opts).map_err(|e| self.at(w.entry, e))?;
                report.upgraded.push(w.name.clone());
            }
            state.owned.insert(w.name.clone(), Owned { path: w.entry.path.clone(), config: w.entry.config.clone() });
        }

        // New modules, together, in dependency order.
        let new: Vec<&Want<'_>> = wants.iter().filter(|w| !state.owned.contains_key(&w.name)).collect();
        if !new.is_empty() {
            let files: Vec<(PathBuf, LoadOptions)> =
                new.iter().map(|w| (w.entry.path.clone(), w.entry.load_options())).collect();
            let loaded = rt
                .load_all(&files)
                .map_err(|e| Error::new(e.status(), format!("manifest '{}': {}", self.path.display(), e.message())))?;
            for m in loaded {
                let info = m.info();
                let config = new.iter().find(|w| w.entry.path == info.path).map(|w| w.entry.config.clone());
                state
                    .owned
                    .insert(info.name.clone(), Owned { path: info.path.clone(), config: config.unwrap_or_default() });
                report.loaded.push(info.name.clone());
            }
        }

        // Modules whose entry is gone or disabled, dependents first.
        let wanted: BTreeSet<&str> = wants.iter().map(|w| w.name.as_str()).collect();
        let gone: Vec<String> = state.owned.keys().filter(|n| !wanted.contains(n.as_str())).cloned().collect();
        for i in running_order(rt, gone.clone()).into_iter().rev() {
            let name = &gone[i];
            let path = state.owned[name].path.clone();
            rt.unload(name, false).map_err(|e| {
                Error::new(
                    e.status(),
                    format!(
                        "manifest '{}' no longer enables '{}' (module '{name}'), but it cannot be unloaded: {}",
                        self.path.display(),
                        path.display(),
                        e.message()
                    ),
                )
            })?;
            state.owned.remove(name);
            report.unloaded.push(name.clone());
        }
        Ok(report)
    }

    /// Prefixes an entry's error with the manifest file and line, keeping
    /// its status.
    fn at(&self, entry: &ManifestEntry, e: Error) -> Error {
        Error::new(e.status(), format!("manifest '{}' line {}: {}", self.path.display(), entry.line, e.message()))
    }
}

/// An enabled entry and the module it provides.
struct Want<'a> {
    entry: &'a ManifestEntry,
    name: String,
    sha256: [u8; 32],
}

/// Indices of `names` in dependency order of their running versions
/// (dependencies first); modules not loaded, or in a cycle, keep their
/// place.
fn running_order(rt: &Runtime, names: Vec<String>) -> Vec<usize> {
    let nodes: Vec<(String, Vec<String>)> = names
        .into_iter()
        .map(|n| {
            let deps = rt
                .module(&n)
                .map(|m| m.info().dependencies.iter().map(|d| d.name.clone()).collect())
                .unwrap_or_default();
            (n, deps)
        })
        .collect();
    deps::order_or_as_given(&nodes)
}

/// What a plugin file declares, learned without starting it.
pub(crate) struct Identity {
    /// Module name.
    pub name: String,
    /// Names of the modules it depends on (optional ones included).
    pub dependencies: Vec<String>,
    /// SHA-256 of the bytes that were read.
    pub sha256: [u8; 32],
}

/// Identifies a plugin file: reads and checks it exactly as a load would
/// (mode, `opts.expected_sha256` before anything is mapped), maps it from a
/// private copy, reads its descriptor and unmaps it again. Runs the
/// library's constructors and its entry symbol, never its hooks. A plugin
/// that did not declare itself safe to unload stays mapped, as it would
/// after an unload.
pub(crate) fn identify(path: &Path, opts: &LoadOptions) -> Result<Identity> {
    let image = loader::read_image(path, opts)?;
    let mapped = loader::map(&image)?;
    let desc = mapped.descriptor(&image.path)?;
    // SAFETY: the pointer came from the plugin's entry symbol, which by the
    // ABI returns a static descriptor; read_descriptor checks the magic
    // block before trusting anything else. Nothing read from it is used
    // after the library is unmapped: names are copied into owned strings.
    let info = unsafe { descriptor::read_descriptor(desc, &image.path.display().to_string()) };
    match info {
        Ok(info) => {
            let id = Identity {
                name: info.name.clone(),
                dependencies: info.dependencies.iter().map(|d| d.name.clone()).collect(),
                sha256: image.sha256,
            };
            if info.safe_to_unload() && mapped.facts().can_unmap() {
                mapped.unmap();
            } else {
                mapped.keep_mapped();
            }
            Ok(id)
        }
        Err(e) => {
            mapped.unmap();
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest> {
        Manifest::parse(text, "/etc/hotmod/plugins.toml")
    }

    #[test]
    fn parses_entries_and_resolves_relative_paths() {
        let m = parse(
            "# plugins\n[[plugin]]\npath = \"libchecksum.so\"\nconfig = \"x=1\"\n\n[[plugin]]\npath = \"/opt/libtext.so\"\nenabled = false\nisolation = \"in-process\"\n",
        )
        .unwrap();
        assert_eq!(m.plugins.len(), 2);
        assert_eq!(m.plugins[0].path, Path::new("/etc/hotmod/libchecksum.so"));
        assert_eq!(m.plugins[0].config, b"x=1");
        assert!(m.plugins[0].enabled);
        assert_eq!(m.plugins[0].line, 2);
        assert_eq!(m.plugins[1].path, Path::new("/opt/libtext.so"));
        assert!(!m.plugins[1].enabled);
        assert_eq!(m.plugins[1].line, 6);
        assert_eq!(parse("").unwrap().plugins, vec![]);
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        let e = parse("[[plugin]]\npath = \"a.so\"\nisolaton = \"in-process\"\n").unwrap_err();
        assert_eq!(e.status(), Status::BadManifest);
        assert!(e.message().contains("line 3"), "{e:?}");
        assert!(e.message().contains("isolaton"), "{e:?}");
        assert!(e.message().contains("/etc/hotmod/plugins.toml"), "{e:?}");
        let e = parse("plugins = []\n").unwrap_err();
        assert!(e.message().contains("line 1") && e.message().contains("plugins"), "{e:?}");
    }

    #[test]
    fn invalid_values_name_their_line() {
        let e = parse("[[plugin]]\npath = \"a.so\"\n\n\nsha256 = \"abc\"\n").unwrap_err();
        assert_eq!(e.status(), Status::BadManifest);
        assert!(e.message().contains("line 5") && e.message().contains("64 hexadecimal"), "{e:?}");
        let e = parse("[[plugin]]\npath = \"a.so\"\nisolation = \"out-of-process\"\n").unwrap_err();
        assert!(e.message().contains("line 3") && e.message().contains("not available"), "{e:?}");
        let e = parse("[[plugin]]\npath = \"a.so\"\nisolation = \"sideways\"\n").unwrap_err();
        assert!(e.message().contains("sideways"), "{e:?}");
        let e = parse("[[plugin]]\npath = \"\"\n").unwrap_err();
        assert!(e.message().contains("line 2") && e.message().contains("empty"), "{e:?}");
        let e = parse("[[plugin]]\nenabled = true\n").unwrap_err();
        assert!(e.message().contains("missing key") && e.message().contains("path"), "{e:?}");
        let e = parse("[[plugin]]\npath = \"a.so\"\nenabled = \"yes\"\n").unwrap_err();
        assert!(e.message().contains("line 3"), "{e:?}");
        let e = parse("[[plugin]]\npath = \"a.so\"\n[[plugin]]\npath = \"/etc/hotmod/a.so\"\n").unwrap_err();
        assert!(e.message().contains("line 4") && e.message().contains("line 1"), "{e:?}");
        let e = parse("[[plugin]\npath = 1\n").unwrap_err();
        assert!(e.message().contains("line 1"), "{e:?}");
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab\ncd", 99), (2, 3));
    }
}
