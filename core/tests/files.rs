//! Files as the loader reads them: opened once and checked on the
//! descriptor, directories along the resolved path, size caps, ELF
//! validation and facts, kept-mapped versions and their descriptors.
#![cfg(target_os = "linux")]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{plugin, plugin_dir_with};
use hotmod_core::{EventKind, LoadOptions, Manifest, Runtime, RuntimeOptions, Status, UpgradeOptions};

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo {}", p.display());
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Runs `f` on another thread and fails the test if it does not return
/// within `limit` (a hang is the defect some of these tests guard against).
fn bounded<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).expect("the operation hung")
}

#[test]
fn special_files_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("libfifo.so");
    mkfifo(&fifo);
    let sock_path = dir.path().join("libsock.so");
    let _sock = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let cases: Vec<(PathBuf, &str)> = vec![
        (fifo, "a FIFO"),
        (PathBuf::from("/dev/zero"), "a character device"),
        (dir.path().to_path_buf(), "a directory"),
        (sock_path, "a socket"),
    ];
    for (path, found) in cases {
        let p = path.clone();
        let e = bounded(Duration::from_secs(20), move || Runtime::new().load(&p, &LoadOptions::default()).unwrap_err());
        assert_eq!(e.status(), Status::NotALibrary, "{e}");
        assert!(e.message().contains("expected a regular file") && e.message().contains(found), "{e}");
        assert!(e.message().contains(&*path.display().to_string()), "{e}");
        // A manifest gets the same checks.
        let p = path.clone();
        let e = bounded(Duration::from_secs(20), move || Manifest::from_file(&p).unwrap_err());
        assert_eq!(e.status(), Status::BadManifest, "{e}");
        assert!(e.message().contains("expected a regular file") && e.message().contains(found), "{e}");
    }
}

#[test]
fn a_symlink_flipped_between_files_never_loads_the_unsafe_one_nor_hangs() {
    let src = plugin_dir_with(&["libprobe.so", "libchecksum.so"]);
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.so");
    let bad = dir.path().join("bad.so");
    let fifo = dir.path().join("fifo.so");
    std::fs::copy(src.join("libprobe.so"), &good).unwrap();
    chmod(&good, 0o644);
    std::fs::copy(src.join("libchecksum.so"), &bad).unwrap();
    chmod(&bad, 0o666);
    mkfifo(&fifo);
    let link = dir.path().join("libflip.so");
    std::os::unix::fs::symlink(&good, &link).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let (stop, link, dir) = (stop.clone(), link.clone(), dir.path().to_path_buf());
        std::thread::spawn(move || {
            let targets = [good, bad, fifo];
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let tmp = dir.join("libflip.tmp");
                let _ = std::fs::remove_file(&tmp);
                std::os::unix::fs::symlink(&targets[i % 3], &tmp).unwrap();
                std::fs::rename(&tmp, &link).unwrap();
                i += 1;
            }
        })
    };
    let outcome = bounded(Duration::from_secs(120), move || {
        let rt = Runtime::new();
        let (mut loaded, mut refused) = (0, 0);
        for _ in 0..400 {
            match rt.load(&link, &LoadOptions::default()) {
                Ok(m) => {
                    assert_eq!(m.name(), "probe", "only the 0644 file may load, never the 0666 one");
                    rt.unload("probe", false).unwrap();
                    loaded += 1;
                }
                Err(e) => {
                    assert!(
                        matches!(e.status(), Status::UnsafeFile | Status::NotALibrary | Status::FileMissing),
                        "{e}"
                    );
                    refused += 1;
                }
            }
        }
        (loaded, refused)
    });
    stop.store(true, Ordering::Relaxed);
    flipper.join().unwrap();
    assert!(outcome.0 + outcome.1 == 400, "{outcome:?}");
}

#[test]
fn every_directory_of_the_resolved_path_is_checked() {
    let src = plugin_dir_with(&["libprobe.so"]);
    let root = tempfile::tempdir().unwrap();
    let open = root.path().join("open");
    std::fs::create_dir(&open).unwrap();
    chmod(&open, 0o777);
    let inner = open.join("inner");
    std::fs::create_dir(&inner).unwrap();
    chmod(&inner, 0o755);
    let nested = inner.join("libprobe.so");
    std::fs::copy(src.join("libprobe.so"), &nested).unwrap();
    chmod(&nested, 0o644);
    // A file under a 0755 directory inside a 0777 one.
    let e = Runtime::new().load(&nested, &LoadOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::UnsafeFile, "{e}");
    assert!(e.message().contains(&*open.display().to_string()) && e.message().contains("writable by anyone"), "{e}");
    // A symlink in a safe directory pointing into the 0777 one.
    let safe = root.path().join("safe");
    std::fs::create_dir(&safe).unwrap();
    let link = safe.join("libprobe.so");
    std::os::unix::fs::symlink(&nested, &link).unwrap();
    let e = Runtime::new().load(&link, &LoadOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::UnsafeFile, "{e}");
    assert!(e.message().contains(&*open.display().to_string()) && e.message().contains("resolved to"), "{e}");
    // The opt-out still works, and a sticky directory is fine.
    let ww = LoadOptions { allow_world_writable: true, ..Default::default() };
    Runtime::new().load(&link, &ww).unwrap();
    chmod(&open, 0o1777);
    Runtime::new().load(&link, &LoadOptions::default()).unwrap();
    chmod(&open, 0o777);
    // Through a watched directory too: the file is refused, as an event.
    let rt = Arc::new(Runtime::new());
    let log: Arc<Mutex<Vec<hotmod_core::Event>>> = Arc::default();
    let l2 = log.clone();
    rt.set_event_handler(Some(Arc::new(move |e: &hotmod_core::Event| l2.lock().unwrap().push(e.clone()))));
    let _w = hotmod_core::watch_dir(&rt, &inner, hotmod_core::WatchOptions::default()).unwrap();
    assert!(rt.module("probe").is_err());
    let log = log.lock().unwrap();
    assert!(log.iter().any(|e| e.kind == EventKind::UpgradeFailed && e.code == Status::UnsafeFile.code()), "{log:?}");
}

#[test]
fn sizes_are_capped_from_fstat_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let sparse = dir.path().join("libsparse.so");
    let f = std::fs::File::create(&sparse).unwrap();
    f.set_len(2 << 30).unwrap(); // 2 GiB, no block written
    drop(f);
    let start = Instant::now();
    let e = Runtime::new().load(&sparse, &LoadOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::FileTooLarge, "{e}");
    assert_eq!(e.status().code(), 1017);
    assert!(e.message().contains(&*sparse.display().to_string()), "{e}");
    assert!(e.message().contains("2147483648 bytes") && e.message().contains(&(1u64 << 30).to_string()), "{e}");
    // Refused from its size: far less than reading 2 GiB would take.
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    // A configured cap, on a real plugin.
    let small = LoadOptions { max_file_size: 4096, ..Default::default() };
    let e = Runtime::new().load(plugin("checksum"), &small).unwrap_err();
    assert_eq!(e.status(), Status::FileTooLarge, "{e}");
    assert!(e.message().contains("4096"), "{e}");
    // Manifests: capped at 1 MiB.
    let m = dir.path().join("big.toml");
    let f = std::fs::File::create(&m).unwrap();
    f.set_len(hotmod_core::manifest::MAX_MANIFEST_SIZE + 1).unwrap();
    let e = Manifest::from_file(&m).unwrap_err();
    assert_eq!(e.status(), Status::FileTooLarge, "{e}");
    assert!(e.message().contains("manifest") && e.message().contains(&*m.display().to_string()), "{e}");
    // A world-writable manifest is refused as a world-writable plugin is.
    let w = dir.path().join("ww.toml");
    std::fs::write(&w, "").unwrap();
    chmod(&w, 0o666);
    assert_eq!(Manifest::from_file(&w).unwrap_err().status(), Status::UnsafeFile);
}

/// A copy of a plugin with some bytes patched, in a private directory.
fn patched(dir: &Path, name: &str, patch: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(plugin(name)).unwrap();
    patch(&mut bytes);
    let p = dir.join(format!("lib{name}-patched.so"));
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn foreign_corrupt_and_half_written_files_are_refused_before_mapping() {
    let dir = tempfile::tempdir().unwrap();
    // e_machine = EM_AARCH64 (183).
    let arm = patched(dir.path(), "checksum", |b| b[18..20].copy_from_slice(&183u16.to_le_bytes()));
    let e = Runtime::new().load(&arm, &LoadOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::NotALibrary, "{e}");
    assert!(e.message().contains("aarch64") && e.message().contains("x86_64"), "{e}");
    // A program header pointing past the end (same size, corrupt).
    let bad_ph = patched(dir.path(), "probe", |b| {
        let phoff = u64::from_le_bytes(b[32..40].try_into().unwrap()) as usize;
        // First program header's p_offset (at +8) far past the end.
        b[phoff + 8..phoff + 16].copy_from_slice(&(1u64 << 40).to_le_bytes());
    });
    let e = Runtime::new().load(&bad_ph, &LoadOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::NotALibrary, "{e}");
    // Set to its final size, then half written (zeros after the first half).
    let half = patched(dir.path(), "checksum", |b| {
        let n = b.len();
        b[n / 2..].fill(0);
    });
    let e = Runtime::new().load(&half, &LoadOptions::default()).unwrap_err();
    assert!(matches!(e.status(), Status::NotALibrary | Status::EntrySymbolMissing), "{e}");
    // The entry symbol as a data object is never called.
    let e = Runtime::new().load(plugin("facts_entry_object"), &LoadOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::EntrySymbolMissing, "{e}");
    assert!(
        e.message().contains("STT_OBJECT") && e.message().contains("expected 'hotmod_plugin_v1' to be a function"),
        "{e}"
    );
}

#[test]
fn elf_facts_are_read_and_kept_versions_reported_truthfully() {
    plugin_dir_with(&["libfacts_nodelete.so", "libfacts_go.so"]);
    let info = Runtime::new().load(plugin("checksum"), &LoadOptions::default()).unwrap().info().clone();
    assert_eq!(info.elf.machine, std::env::consts::ARCH);
    assert_eq!(info.elf.class, 64);
    assert!(info.elf.entry_checked && info.elf.can_unmap() && !info.stays_mapped, "{:?}", info.elf);
    let cases = [
        ("facts_nodelete", "DF_1_NODELETE"),
        ("facts_static_tls", "static TLS"),
        ("facts_unique", "STB_GNU_UNIQUE"),
        ("facts_go", "Go runtime"),
    ];
    for (name, why) in cases {
        let rt = Runtime::new();
        let log: Arc<Mutex<Vec<hotmod_core::Event>>> = Arc::default();
        let l2 = log.clone();
        rt.set_event_handler(Some(Arc::new(move |e: &hotmod_core::Event| l2.lock().unwrap().push(e.clone()))));
        let m = rt.load(plugin(name), &LoadOptions::default()).unwrap();
        let info = m.info();
        assert!(info.safe_to_unload, "the fixture claims SAFE_TO_UNLOAD");
        assert!(info.stays_mapped && !info.elf.can_unmap(), "{name}: {:?}", info.elf);
        assert!(info.elf.unmap_blockers().iter().any(|b| b.contains(why)), "{name}: {:?}", info.elf);
        rt.unload("facts", false).unwrap();
        let log = log.lock().unwrap();
        let kept = log.iter().find(|e| e.kind == EventKind::KeptMapped).unwrap_or_else(|| panic!("{name}: {log:?}"));
        assert!(kept.message.contains(why), "{name}: {}", kept.message);
        assert_eq!(rt.kept_mapped(), 1, "{name}");
    }
    let static_tls = Runtime::new().load(plugin("facts_static_tls"), &LoadOptions::default()).unwrap();
    assert!(static_tls.info().elf.tls && static_tls.info().elf.static_tls);
    assert!(Runtime::new().load(plugin("ctor"), &LoadOptions::default()).unwrap().info().elf.constructors >= 1);
}

#[test]
fn reused_descriptor_numbers_never_alias_two_kept_libraries() {
    plugin_dir_with(&["libkeep-v1.so", "libkeep-v2.so"]);
    let rt = Runtime::new();
    rt.load(plugin("keep-v1"), &LoadOptions::default()).unwrap();
    for i in 0..100 {
        let (file, want) = if i % 2 == 0 { ("keep-v2", "2.0.0") } else { ("keep-v1", "1.0.0") };
        // Each kept version's memfd is closed, so the next load gets the
        // same descriptor number: the loader must still see a new library.
        let m = rt.upgrade("keep", plugin(file), &UpgradeOptions::default()).unwrap();
        assert_eq!(m.info().version, want);
        assert_eq!(&rt.call("keep", "version", b"").unwrap()[..], want.as_bytes(), "upgrade {i}");
    }
}

#[test]
fn kept_versions_hold_no_descriptor_and_are_capped() {
    plugin_dir_with(&["libkeep-v1.so"]);
    let rt = Runtime::with_options(RuntimeOptions { max_kept_mapped: 10_000, ..Default::default() });
    rt.load(plugin("keep-v1"), &LoadOptions::default()).unwrap();
    // Warm up (lazily opened descriptors of the process), then count.
    for _ in 0..20 {
        rt.upgrade("keep", plugin("keep-v1"), &UpgradeOptions::default()).unwrap();
    }
    let before = open_fds();
    for _ in 0..2000 {
        rt.upgrade("keep", plugin("keep-v1"), &UpgradeOptions::default()).unwrap();
    }
    let after = open_fds();
    assert!(after <= before + 2, "descriptors grew from {before} to {after} over 2,000 kept versions");
    assert_eq!(rt.kept_mapped(), 2020);

    let rt = Runtime::with_options(RuntimeOptions { max_kept_mapped: 3, ..Default::default() });
    rt.load(plugin("keep-v1"), &LoadOptions::default()).unwrap();
    for _ in 0..3 {
        rt.upgrade("keep", plugin("keep-v1"), &UpgradeOptions::default()).unwrap();
    }
    let e = rt.upgrade("keep", plugin("keep-v1"), &UpgradeOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::KeptMappedLimit, "{e}");
    assert_eq!(e.status().code(), 1019);
    assert!(e.message().contains("found 3") && e.message().contains("SAFE_TO_UNLOAD"), "{e}");
    assert_eq!(&rt.call("keep", "version", b"").unwrap()[..], b"1.0.0", "the old version keeps serving");
    // A plugin that can be unmapped is not refused.
    rt.load(plugin("checksum"), &LoadOptions::default()).unwrap();
}

#[test]
fn no_temporary_directory_is_needed() {
    // With TMPDIR naming nothing, loads still work: memfds need no directory.
    let missing = tempfile::tempdir().unwrap().path().join("gone");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "tmpdir_child", "--include-ignored", "--nocapture"])
        .env("TMPDIR", &missing)
        .env("HOTMOD_FILES_TMPDIR_CHILD", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("1 passed"), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
#[ignore = "run by no_temporary_directory_is_needed with TMPDIR missing"]
fn tmpdir_child() {
    if std::env::var_os("HOTMOD_FILES_TMPDIR_CHILD").is_none() {
        return;
    }
    assert!(!std::env::temp_dir().exists());
    let rt = Runtime::new();
    rt.load(plugin("checksum"), &LoadOptions::default()).unwrap();
    rt.upgrade("checksum", plugin("checksum-v2"), &UpgradeOptions::default()).unwrap();
}

#[test]
fn non_utf8_paths_load() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let name = std::ffi::OsStr::from_bytes(b"lib\xff\xfeprobe.so");
    let p = dir.path().join(name);
    std::fs::copy(plugin("probe"), &p).unwrap();
    let m = Runtime::new().load(&p, &LoadOptions::default()).unwrap();
    assert_eq!(m.info().path, p);
}

#[test]
fn out_of_descriptors_is_an_io_error_not_a_bad_library() {
    // In a child process: lowering RLIMIT_NOFILE would disturb other tests.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "emfile_child", "--include-ignored", "--nocapture"])
        .env("HOTMOD_FILES_EMFILE_CHILD", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("1 passed"), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
#[ignore = "run by out_of_descriptors_is_an_io_error_not_a_bad_library"]
fn emfile_child() {
    if std::env::var_os("HOTMOD_FILES_EMFILE_CHILD").is_none() {
        return;
    }
    let path = plugin("checksum");
    let rt = Runtime::new();
    // Use up every descriptor, then try to load.
    let mut held = Vec::new();
    // SAFETY: lowering this process's own descriptor limit.
    unsafe {
        let lim = libc::rlimit { rlim_cur: 64, rlim_max: 64 };
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    while let Ok(f) = std::fs::File::open("/dev/null") {
        held.push(f);
    }
    let e = rt.load(&path, &LoadOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::Io, "{e}");
    assert!(e.message().contains("out of file descriptors"), "{e}");
    // One descriptor free: open works, the memfd does not.
    held.pop();
    let e = rt.load(&path, &LoadOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::Io, "{e}");
    assert!(e.message().contains("out of file descriptors"), "{e}");
}

/// Deterministic mutations of real plugin files: the ELF checks must never
/// panic or crash on any of them, whatever they answer. Bounded in
/// iterations and time.
#[test]
fn mutated_elf_files_never_crash_the_checks() {
    let seeds: Vec<Vec<u8>> =
        ["checksum", "probe", "facts_unique"].iter().map(|n| std::fs::read(plugin(n)).unwrap()).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("libfuzz.so");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let start = Instant::now();
    let rt = Runtime::new();
    let (mut refused, mut iterations) = (0, 0);
    while iterations < 3000 && start.elapsed() < Duration::from_secs(10) {
        iterations += 1;
        let mut b = seeds[(next() % seeds.len() as u64) as usize].clone();
        // Mutate the headers mostly (where the structure is), sometimes anywhere.
        let span = if next() % 4 == 0 { b.len() } else { 4096.min(b.len()) };
        for _ in 0..1 + next() % 8 {
            let at = (next() % span as u64) as usize;
            match next() % 4 {
                0 => b[at] = next() as u8,
                1 => b[at] ^= 1 << (next() % 8),
                2 => b[at] = [0, 0xff, 0x7f, 0x80][(next() % 4) as usize],
                _ => {
                    let len = (next() % b.len() as u64) as usize;
                    b.truncate(len.max(1));
                    break;
                }
            }
        }
        std::fs::write(&path, &b).unwrap();
        // Only the checks before mapping: a mutation they pass could still
        // crash the dynamic loader, which is what preflight is for.
        if hotmod_core::loader::elf::check_file(&path).is_err() {
            refused += 1;
        }
    }
    let _ = rt;
    assert!(refused > iterations / 2, "{refused} of {iterations} mutated files refused");
}

/// The watcher acts on close-after-write and rename events without waiting
/// for the debounce (kept as the fallback: here a minute, far longer than
/// the test waits).
#[test]
fn watched_files_are_taken_when_closed_or_renamed_not_after_the_debounce() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Arc::new(Runtime::new());
    let opts = hotmod_core::WatchOptions { debounce: Duration::from_secs(60), ..Default::default() };
    let _w = hotmod_core::watch_dir(&rt, dir.path(), opts).unwrap();
    // Written in place: IN_CLOSE_WRITE.
    std::fs::copy(plugin("probe"), dir.path().join("libprobe.so")).unwrap();
    assert!(common::wait_for(Duration::from_secs(20), || rt.module("probe").is_ok()), "loaded on close-write");
    // Written elsewhere and renamed into place: IN_MOVED_TO.
    let tmp = dir.path().join("libchecksum.so.tmp");
    std::fs::copy(plugin("checksum"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.path().join("libchecksum.so")).unwrap();
    assert!(common::wait_for(Duration::from_secs(20), || rt.module("checksum").is_ok()), "loaded on rename");
}
