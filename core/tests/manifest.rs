//! Manifests against real plugins: load, edit (upgrade), disable (unload),
//! pinned hashes, invalid files, relative paths.
//!
//! Needs the plugins built by `make plugins` (HOTMOD_PLUGIN_DIR, or
//! build/plugins beside the workspace).

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hotmod_core::{load_manifest, sha256_hex, Event, EventKind, LoadOptions, ManifestState, Runtime, Status};
use sha2::{Digest, Sha256};

fn plugin_dir() -> PathBuf {
    common::plugin_dir_with(&["libchecksum.so", "libchecksum-v2.so", "libtext.so", "libdependent.so"])
}

/// A private directory (mode 0700) with copies of the named plugins.
fn plugins_copied(names: &[&str]) -> tempfile::TempDir {
    common::plugins_copied(&plugin_dir(), names)
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn sha_of(path: &Path) -> String {
    let d: [u8; 32] = Sha256::digest(std::fs::read(path).unwrap()).into();
    sha256_hex(&d)
}

/// A runtime whose events are recorded.
fn recorded_runtime() -> (Runtime, Arc<Mutex<Vec<Event>>>) {
    let rt = Runtime::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    rt.set_event_handler(Some(Arc::new(move |e: &Event| sink.lock().unwrap().push(e.clone()))));
    (rt, events)
}

fn version(rt: &Runtime) -> String {
    String::from_utf8(rt.call("checksum", "version", b"").unwrap().to_vec()).unwrap()
}

#[test]
fn loads_both_plugins_with_their_config() {
    let dir = plugins_copied(&["libchecksum.so", "libtext.so"]);
    let manifest = dir.path().join("plugins.toml");
    write(
        &manifest,
        "[[plugin]]\npath = \"libchecksum.so\"\n\n[[plugin]]\npath = \"libtext.so\"\nconfig = \"greeting=hi\"\nisolation = \"in-process\"\n",
    );
    let (rt, events) = recorded_runtime();
    let mut state = ManifestState::new();
    let report = load_manifest(&rt, &manifest, &mut state).unwrap();
    let mut loaded = report.loaded.clone();
    loaded.sort();
    assert_eq!(loaded, ["checksum", "text"]);
    assert_eq!(state.modules(), ["checksum", "text"]);
    assert_eq!(state.path_of("text"), Some(dir.path().join("libtext.so").as_path()));
    assert_eq!(version(&rt), "1.0.0");
    assert_eq!(&*rt.call("text", "upper", b"abc").unwrap(), b"ABC");
    // The text plugin logs the config its init received.
    let logs: Vec<String> =
        events.lock().unwrap().iter().filter(|e| e.kind == EventKind::Log).map(|e| e.message.clone()).collect();
    assert!(logs.iter().any(|l| l.contains("config greeting=hi")), "{logs:?}");

    // Applying the same manifest again changes nothing.
    let again = load_manifest(&rt, &manifest, &mut state).unwrap();
    assert!(again.loaded.is_empty() && again.upgraded.is_empty() && again.unloaded.is_empty(), "{again:?}");
    let mut unchanged = again.unchanged;
    unchanged.sort();
    assert_eq!(unchanged, ["checksum", "text"]);
}

#[test]
fn edits_upgrade_and_disabled_entries_unload() {
    let dir = plugins_copied(&["libchecksum.so", "libchecksum-v2.so", "libtext.so"]);
    let manifest = dir.path().join("plugins.toml");
    let with = |checksum: &str, text_enabled: bool| {
        write(
            &manifest,
            &format!(
                "[[plugin]]\npath = \"{checksum}\"\n\n[[plugin]]\npath = \"libtext.so\"\nenabled = {text_enabled}\n"
            ),
        )
    };
    let rt = Runtime::new();
    let mut state = ManifestState::new();
    with("libchecksum.so", true);
    load_manifest(&rt, &manifest, &mut state).unwrap();
    let handle = rt.method("checksum", "version").unwrap();
    rt.call("checksum", "crc32", b"x").unwrap();
    assert_eq!(&*handle.call(b"").unwrap(), b"1.0.0");

    // The entry now points to another build of the same module: upgraded in
    // place, handles follow, state is handed over.
    with("libchecksum-v2.so", true);
    let report = load_manifest(&rt, &manifest, &mut state).unwrap();
    assert_eq!(report.upgraded, ["checksum"]);
    assert_eq!(report.unchanged, ["text"]);
    assert!(report.loaded.is_empty() && report.unloaded.is_empty(), "{report:?}");
    assert_eq!(&*handle.call(b"").unwrap(), b"2.0.0");
    assert_eq!(rt.module("checksum").unwrap().info().path, dir.path().join("libchecksum-v2.so"));
    let calls = u64::from_le_bytes(rt.call("checksum", "calls", b"").unwrap()[..8].try_into().unwrap());
    assert!(calls >= 3, "the call counter was handed over: {calls}");

    // Back to v1 at the same path, but with new bytes written over it.
    with("libchecksum.so", true);
    assert_eq!(load_manifest(&rt, &manifest, &mut state).unwrap().upgraded, ["checksum"]);
    assert_eq!(version(&rt), "1.0.0");
    std::fs::copy(dir.path().join("libchecksum-v2.so"), dir.path().join("libchecksum.so")).unwrap();
    assert_eq!(load_manifest(&rt, &manifest, &mut state).unwrap().upgraded, ["checksum"]);
    assert_eq!(version(&rt), "2.0.0");

    // Disabled: unloaded, and no longer the manifest's.
    with("libchecksum.so", false);
    let report = load_manifest(&rt, &manifest, &mut state).unwrap();
    assert_eq!(report.unloaded, ["text"]);
    assert_eq!(rt.module("text").unwrap_err().status(), Status::ModuleNotFound);
    assert_eq!(state.modules(), ["checksum"]);

    // Re-enabled: loaded again. Removed from the file: unloaded.
    with("libchecksum.so", true);
    assert_eq!(load_manifest(&rt, &manifest, &mut state).unwrap().loaded, ["text"]);
    write(&manifest, "[[plugin]]\npath = \"libtext.so\"\n");
    let report = load_manifest(&rt, &manifest, &mut state).unwrap();
    assert_eq!(report.unloaded, ["checksum"]);
    assert_eq!(rt.modules().len(), 1);
}

#[test]
fn config_change_restarts_the_module_with_the_new_config() {
    let dir = plugins_copied(&["libtext.so"]);
    let manifest = dir.path().join("plugins.toml");
    let (rt, events) = recorded_runtime();
    let mut state = ManifestState::new();
    write(&manifest, "[[plugin]]\npath = \"libtext.so\"\nconfig = \"one\"\n");
    load_manifest(&rt, &manifest, &mut state).unwrap();
    write(&manifest, "[[plugin]]\npath = \"libtext.so\"\nconfig = \"two\"\n");
    assert_eq!(load_manifest(&rt, &manifest, &mut state).unwrap().upgraded, ["text"]);
    let logs: Vec<String> =
        events.lock().unwrap().iter().filter(|e| e.kind == EventKind::Log).map(|e| e.message.clone()).collect();
    assert!(logs.iter().any(|l| l.contains("config one")) && logs.iter().any(|l| l.contains("config two")), "{logs:?}");
}

#[test]
fn a_wrong_sha256_is_refused_before_any_plugin_code_runs() {
    let dir = plugins_copied(&["libchecksum.so", "libchecksum-v2.so", "libtext.so"]);
    let manifest = dir.path().join("plugins.toml");
    let v2_sha = sha_of(&dir.path().join("libchecksum-v2.so"));
    // text is fine, checksum is pinned to v2's bytes but points at v1.
    write(
        &manifest,
        &format!("[[plugin]]\npath = \"libtext.so\"\n\n[[plugin]]\npath = \"libchecksum.so\"\nsha256 = \"{v2_sha}\"\n"),
    );
    let (rt, events) = recorded_runtime();
    let mut state = ManifestState::new();
    let e = load_manifest(&rt, &manifest, &mut state).unwrap_err();
    assert_eq!(e.status(), Status::HashMismatch, "{e:?}");
    assert!(e.message().contains("line 4"), "{e:?}");
    assert!(e.message().contains(&*manifest.display().to_string()), "{e:?}");
    assert!(e.message().contains(&*dir.path().join("libchecksum.so").display().to_string()), "{e:?}");
    assert!(e.message().contains(&v2_sha), "{e:?}");
    // Nothing was mapped (no Loaded event), nothing loaded, nothing owned:
    // every entry is checked before the runtime changes.
    let kinds: Vec<EventKind> = events.lock().unwrap().iter().map(|e| e.kind).collect();
    assert!(!kinds.contains(&EventKind::Loaded), "{kinds:?}");
    assert!(rt.modules().is_empty());
    assert!(state.modules().is_empty());

    // The right hash loads.
    let v1_sha = sha_of(&dir.path().join("libchecksum.so"));
    write(&manifest, &format!("[[plugin]]\npath = \"libchecksum.so\"\nsha256 = \"{}\"\n", v1_sha.to_uppercase()));
    assert_eq!(load_manifest(&rt, &manifest, &mut state).unwrap().loaded, ["checksum"]);
    assert_eq!(rt.module("checksum").unwrap().info().sha256, v1_sha);

    // A pinned file swapped on disk is refused too, and v1 keeps serving.
    std::fs::copy(dir.path().join("libchecksum-v2.so"), dir.path().join("libchecksum.so")).unwrap();
    let e = load_manifest(&rt, &manifest, &mut state).unwrap_err();
    assert_eq!(e.status(), Status::HashMismatch, "{e:?}");
    assert_eq!(version(&rt), "1.0.0");
}

#[test]
fn invalid_toml_and_unknown_keys_are_bad_manifests_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("plugins.toml");
    let rt = Runtime::new();
    let mut state = ManifestState::new();
    let shown = manifest.display().to_string();

    write(&manifest, "[[plugin]]\npath = \"libtext.so\"\nisolaton = \"in-process\"\n");
    let e = load_manifest(&rt, &manifest, &mut state).unwrap_err();
    assert_eq!(e.status(), Status::BadManifest);
    assert_eq!(e.status().code(), 1014);
    assert!(e.message().contains(&shown) && e.message().contains("line 3"), "{e:?}");
    assert!(e.message().contains("unknown key `isolaton`") && e.message().contains("`isolation`"), "{e:?}");

    write(&manifest, "# plugins\n\n[[plugin]\npath = \"libtext.so\"\n");
    let e = load_manifest(&rt, &manifest, &mut state).unwrap_err();
    assert_eq!(e.status(), Status::BadManifest);
    assert!(e.message().contains(&shown) && e.message().contains("line 3"), "{e:?}");

    write(&manifest, "[[plugin]]\npath = \"libtext.so\"\nsha256 = \"not-a-hash\"\n");
    let e = load_manifest(&rt, &manifest, &mut state).unwrap_err();
    assert_eq!(e.status(), Status::BadManifest);
    assert!(e.message().contains("line 3") && e.message().contains("not-a-hash"), "{e:?}");

    write(&manifest, "[[plugin]]\npath = \"libtext.so\"\nisolation = \"out-of-process\"\n");
    let e = load_manifest(&rt, &manifest, &mut state).unwrap_err();
    assert_eq!(e.status(), Status::BadManifest);
    assert!(e.message().contains("line 3") && e.message().contains("out-of-process"), "{e:?}");

    let missing = dir.path().join("nope.toml");
    let e = load_manifest(&rt, &missing, &mut state).unwrap_err();
    assert_eq!(e.status(), Status::BadManifest);
    assert!(e.message().contains(&*missing.display().to_string()), "{e:?}");
    assert!(rt.modules().is_empty());
}

#[test]
fn relative_paths_resolve_against_the_manifest_directory() {
    let dir = plugins_copied(&[]);
    std::fs::create_dir(dir.path().join("plugins")).unwrap();
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    std::fs::copy(plugin_dir().join("libtext.so"), dir.path().join("plugins/libtext.so")).unwrap();
    let manifest = dir.path().join("etc/plugins.toml");
    write(&manifest, "[[plugin]]\npath = \"../plugins/libtext.so\"\n");
    // The current directory is the crate's, not the manifest's.
    assert!(!std::env::current_dir().unwrap().starts_with(dir.path()));
    let rt = Runtime::new();
    let mut state = ManifestState::new();
    assert_eq!(load_manifest(&rt, &manifest, &mut state).unwrap().loaded, ["text"]);
    let loaded_from = rt.module("text").unwrap().info().path.clone();
    assert_eq!(
        std::fs::canonicalize(loaded_from).unwrap(),
        std::fs::canonicalize(dir.path().join("plugins/libtext.so")).unwrap()
    );

    write(&manifest, "[[plugin]]\npath = \"libmissing.so\"\n");
    let e = load_manifest(&rt, &manifest, &mut state).unwrap_err();
    assert_eq!(e.status(), Status::FileMissing);
    assert!(e.message().contains(&*dir.path().join("etc/libmissing.so").display().to_string()), "{e:?}");
    assert!(rt.module("text").is_ok(), "a failed application changes nothing");
}

#[test]
fn modules_loaded_by_other_means_are_left_alone() {
    let dir = plugins_copied(&["libchecksum.so", "libtext.so"]);
    let manifest = dir.path().join("plugins.toml");
    let rt = Runtime::new();
    rt.load(dir.path().join("libtext.so"), &LoadOptions::default()).unwrap();
    let mut state = ManifestState::new();

    // Claiming it is refused, before anything changes.
    write(&manifest, "[[plugin]]\npath = \"libchecksum.so\"\n[[plugin]]\npath = \"libtext.so\"\n");
    let e = load_manifest(&rt, &manifest, &mut state).unwrap_err();
    assert_eq!(e.status(), Status::NameConflict, "{e:?}");
    assert!(e.message().contains("line 3") && e.message().contains("other means"), "{e:?}");
    assert!(rt.module("checksum").is_err());

    // Not listing it leaves it running.
    write(&manifest, "[[plugin]]\npath = \"libchecksum.so\"\n");
    let report = load_manifest(&rt, &manifest, &mut state).unwrap();
    assert_eq!(report.loaded, ["checksum"]);
    write(&manifest, "");
    let report = load_manifest(&rt, &manifest, &mut state).unwrap();
    assert_eq!(report.unloaded, ["checksum"]);
    assert!(rt.module("text").is_ok());
}

#[test]
fn a_corrupt_new_build_is_refused_and_the_old_version_keeps_serving() {
    let dir = plugins_copied(&["libchecksum.so"]);
    let manifest = dir.path().join("plugins.toml");
    let rt = Runtime::new();
    let mut state = ManifestState::new();
    write(&manifest, "[[plugin]]\npath = \"libchecksum.so\"\n");
    load_manifest(&rt, &manifest, &mut state).unwrap();

    // A truncated build at a new path: identified (and refused) before any change.
    let bytes = std::fs::read(plugin_dir().join("libchecksum-v2.so")).unwrap();
    std::fs::write(dir.path().join("libbroken.so"), &bytes[..bytes.len() / 3]).unwrap();
    write(&manifest, "[[plugin]]\npath = \"libbroken.so\"\n");
    let e = load_manifest(&rt, &manifest, &mut state).unwrap_err();
    assert_eq!(e.status(), Status::NotALibrary, "{e:?}");
    assert!(e.message().contains("line 1") && e.message().contains("libbroken.so"), "{e:?}");
    assert_eq!(version(&rt), "1.0.0");
    assert_eq!(state.modules(), ["checksum"]);

    // The same garbage written over the running file: the upgrade fails, v1 serves.
    std::fs::write(dir.path().join("libchecksum.so"), b"not a library").unwrap();
    write(&manifest, "[[plugin]]\npath = \"libchecksum.so\"\n");
    let e = load_manifest(&rt, &manifest, &mut state).unwrap_err();
    assert_eq!(e.status(), Status::NotALibrary, "{e:?}");
    assert_eq!(version(&rt), "1.0.0");
}

#[test]
fn entries_load_in_dependency_order_and_unload_dependents_first() {
    // "dependent" needs "checksum" ^1 and is listed first.
    let dir = plugins_copied(&["libdependent.so", "libchecksum.so"]);
    let manifest = dir.path().join("plugins.toml");
    let rt = Runtime::new();
    let mut state = ManifestState::new();
    write(&manifest, "[[plugin]]\npath = \"libdependent.so\"\n[[plugin]]\npath = \"libchecksum.so\"\n");
    assert_eq!(load_manifest(&rt, &manifest, &mut state).unwrap().loaded, ["checksum", "dependent"]);
    assert_eq!(&*rt.call("dependent", "checksum_version", b"").unwrap(), b"1.0.0");

    // Disabling only the dependency is refused (a dependent needs it); the
    // error names the manifest and the module.
    write(
        &manifest,
        "[[plugin]]\npath = \"libdependent.so\"\n[[plugin]]\npath = \"libchecksum.so\"\nenabled = false\n",
    );
    let e = load_manifest(&rt, &manifest, &mut state).unwrap_err();
    assert_eq!(e.status(), Status::ModuleInUse, "{e:?}");
    assert!(e.message().contains("checksum") && e.message().contains("dependent"), "{e:?}");
    assert_eq!(state.modules(), ["checksum", "dependent"]);

    // Removing both unloads the dependent first.
    write(&manifest, "");
    assert_eq!(load_manifest(&rt, &manifest, &mut state).unwrap().unloaded, ["dependent", "checksum"]);
    assert!(rt.modules().is_empty());
}

#[test]
fn the_runtime_keeps_one_state_per_manifest_file_however_it_is_named() {
    let dir = plugins_copied(&["libchecksum.so", "libchecksum-v2.so"]);
    let manifest = dir.path().join("plugins.toml");
    write(&manifest, "[[plugin]]\npath = \"libchecksum.so\"\n");
    let rt = Runtime::new();
    assert_eq!(rt.apply_manifest(&manifest).unwrap().loaded, ["checksum"]);
    // Another spelling of the same file reaches the same state: nothing to do.
    let other = dir.path().join(".").join("plugins.toml");
    assert_eq!(rt.apply_manifest(&other).unwrap().unchanged, ["checksum"]);
    write(&manifest, "[[plugin]]\npath = \"libchecksum-v2.so\"\n");
    assert_eq!(rt.apply_manifest(&other).unwrap().upgraded, ["checksum"]);
    assert_eq!(version(&rt), "2.0.0");
    write(&manifest, "");
    assert_eq!(rt.apply_manifest(&manifest).unwrap().unloaded, ["checksum"]);
}
