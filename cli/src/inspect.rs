//! `hotmod inspect` and `hotmod verify`: what a plugin file declares, read
//! in a child process.
//!
//! Mapping a library runs its constructors, and reading the descriptor calls
//! its entry symbol, so neither happens in the process the user runs: the
//! command re-executes itself (`hotmod __inspect-child FILE`), the child
//! checks, maps and validates the file with [`Runtime::inspect`] (no hook
//! of the plugin runs) and prints what it found as JSON, and the parent
//! reports it. A file whose constructors crash, exit or hang kills or
//! stalls only the child: the parent reports
//! [`Status::PreflightFailed`] with the signal or exit status.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hotmod_core::{Error, LoadOptions, ModuleInfo, Runtime, Status};
use serde_json::{json, Value};

/// What the child is asked to check.
pub struct Request<'a> {
    /// The plugin file.
    pub file: &'a Path,
    /// Expected SHA-256 (hex), if any.
    pub sha256: Option<&'a str>,
    /// Accept world-writable files and directories.
    pub allow_world_writable: bool,
    /// How long the child may take.
    pub timeout: Duration,
}

/// Runs the checks in a child process and returns the module's description
/// (the JSON the child printed).
pub fn in_child(req: &Request<'_>) -> Result<Value, Error> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::new(Status::Io, format!("cannot find the hotmod executable to re-run: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.arg("__inspect-child").arg(req.file);
    if let Some(h) = req.sha256 {
        cmd.arg("--sha256").arg(h);
    }
    if req.allow_world_writable {
        cmd.arg("--allow-world-writable");
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::new(Status::Io, format!("cannot start the inspecting child process: {e}")))?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    // Read both pipes on their own threads so a chatty constructor cannot
    // block the child on a full pipe while we wait for it.
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.by_ref().take(16 << 20).read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.by_ref().take(1 << 20).read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + req.timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::new(
                    Status::PreflightFailed,
                    format!(
                        "inspecting '{}': expected the child process to finish within {:?}, found it still running (a constructor that hangs?); it was killed",
                        req.file.display(),
                        req.timeout
                    ),
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(Error::new(Status::Io, format!("cannot wait for the inspecting child: {e}"))),
        }
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    let parsed: Option<Value> =
        out.split(|&b| b == b'\n').rev().find(|l| l.starts_with(b"{")).and_then(|l| serde_json::from_slice(l).ok());
    if let Some(v) = parsed {
        if let Some(e) = v.get("error") {
            let code = e.get("code").and_then(Value::as_i64).unwrap_or(9002) as i32;
            let message = e.get("message").and_then(Value::as_str).unwrap_or("").to_owned();
            return Err(Error::new(Status::from_code(code).unwrap_or(Status::Internal), message));
        }
        return Ok(v);
    }
    let last_line = String::from_utf8_lossy(&err).lines().last().unwrap_or("").to_owned();
    Err(Error::new(
        Status::PreflightFailed,
        format!("inspecting '{}': {}", req.file.display(), describe_exit(status, &last_line)),
    ))
}

fn describe_exit(status: std::process::ExitStatus, last_line: &str) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!(
                "expected the child process that mapped the file to report its descriptor, found it killed by signal {sig} (the dynamic loader or a constructor of the plugin crashed){}",
                suffix(last_line)
            );
        }
    }
    format!(
        "expected the child process that mapped the file to report its descriptor, found it exited with {status} without a report (a constructor of the plugin exited?){}",
        suffix(last_line)
    )
}

fn suffix(last_line: &str) -> String {
    if last_line.is_empty() {
        String::new()
    } else {
        format!("; its last output: {last_line}")
    }
}

/// The child's side: check and describe the file, print one JSON line.
/// Returns the process exit code.
pub fn child_main(file: &Path, sha256: Option<&str>, allow_world_writable: bool) -> u8 {
    let r = (|| {
        let mut opts = LoadOptions { allow_world_writable, ..LoadOptions::default() };
        if let Some(h) = sha256 {
            opts.expect_sha256_hex(h)?;
        }
        Runtime::new().inspect(file, &opts)
    })();
    match r {
        Ok(info) => {
            println!("{}", info_json(&info));
            0
        }
        Err(e) => {
            println!("{}", error_json(&e));
            crate::exit::for_status(e.status())
        }
    }
}

/// A module's description as JSON (the `--json` output of `inspect`).
pub fn info_json(info: &ModuleInfo) -> Value {
    json!({
        "name": info.name,
        "version": info.version,
        "description": info.description,
        "path": info.path.display().to_string(),
        "sha256": info.sha256,
        "abi": format!("{}.{}", hotmod_core::abi::HOTMOD_ABI_MAJOR, info.abi_minor),
        "safe_to_unload": info.safe_to_unload,
        "stays_mapped": info.stays_mapped,
        "elf": {
            "machine": info.elf.machine,
            "class": info.elf.class,
            "nodelete": info.elf.nodelete,
            "tls": info.elf.tls,
            "static_tls": info.elf.static_tls,
            "gnu_unique": info.elf.gnu_unique,
            "go_runtime": info.elf.go_runtime,
            "constructors": info.elf.constructors,
            "unmap_blockers": info.elf.unmap_blockers(),
        },
        "methods": info.methods.iter().map(|m| json!({
            "name": m.name,
            "signature": m.signature,
            "signature_hash": format!("{:016x}", m.signature_hash),
        })).collect::<Vec<_>>(),
        "dependencies": info.dependencies.iter().map(|d| json!({
            "name": d.name,
            "requirement": d.requirement,
            "optional": d.optional,
        })).collect::<Vec<_>>(),
    })
}

/// An error as JSON: `{"error": {"status", "code", "message"}}`.
pub fn error_json(e: &Error) -> Value {
    json!({"error": {"status": format!("{:?}", e.status()), "code": e.status().code(), "message": e.message()}})
}

/// The human-readable form of [`info_json`]'s output.
pub fn print_info(v: &Value) {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    println!("{} {}", s("name"), s("version"));
    if !s("description").is_empty() {
        println!("  {}", s("description"));
    }
    println!("  file     {}", s("path"));
    println!("  sha256   {}", s("sha256"));
    println!("  abi      {}", s("abi"));
    let safe = v.get("safe_to_unload").and_then(Value::as_bool).unwrap_or(false);
    let stays = v.get("stays_mapped").and_then(Value::as_bool).unwrap_or(!safe);
    let blockers: Vec<&str> = v
        .pointer("/elf/unmap_blockers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let unload = match (safe, stays) {
        (true, false) => "declared safe to unload, and can be unmapped".to_owned(),
        (true, true) => format!("declared safe to unload, but stays mapped: {}", blockers.join("; ")),
        (false, _) => "stays mapped after unload (not declared safe to unload)".to_owned(),
    };
    println!("  unload   {unload}");
    let elf = |k: &str| v.pointer(&format!("/elf/{k}")).cloned().unwrap_or(Value::Null);
    let flags: Vec<&str> = ["nodelete", "tls", "static_tls", "go_runtime"]
        .into_iter()
        .filter(|k| elf(k).as_bool() == Some(true))
        .collect();
    println!(
        "  elf      {} ({}-bit), {} constructor(s){}{}",
        elf("machine").as_str().unwrap_or("?"),
        elf("class"),
        elf("constructors"),
        if flags.is_empty() { String::new() } else { format!(", {}", flags.join(", ")) },
        match elf("gnu_unique").as_array() {
            Some(u) if !u.is_empty() => format!(", {} GNU-unique symbol(s)", u.len()),
            _ => String::new(),
        }
    );
    let methods = v.get("methods").and_then(Value::as_array).cloned().unwrap_or_default();
    println!("  methods ({}):", methods.len());
    let width = methods.iter().filter_map(|m| m.get("name")?.as_str().map(str::len)).max().unwrap_or(0);
    for m in &methods {
        let f = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        println!("    {:<width$}  {}  {}", f("name"), f("signature_hash"), f("signature"));
    }
    let deps = v.get("dependencies").and_then(Value::as_array).cloned().unwrap_or_default();
    if !deps.is_empty() {
        println!("  dependencies ({}):", deps.len());
        for d in &deps {
            let f = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            let optional = d.get("optional").and_then(Value::as_bool).unwrap_or(false);
            println!("    {} {}{}", f("name"), f("requirement"), if optional { " (optional)" } else { "" });
        }
    }
}
