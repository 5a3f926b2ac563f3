//! `hotmod`: the command-line tool for hotmod plugins.
//!
//! Subcommands: `inspect` (what a file declares, read in a child process),
//! `verify` (every load check, the exit status naming the one that failed),
//! `call` (one call from the shell), `bench` (ns per call against a raw
//! function pointer), `manifest check`, `watch` (lifecycle events as they
//! happen) and `exit-codes`. Tables for people by default, `--json` for
//! programs; exit codes derive from hotmod's status codes ([`exit`]).

mod bench;
mod exit;
mod inspect;
mod io;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use hotmod_core::{Error, Event, LoadOptions, Manifest, Runtime, Status, WatchOptions};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(
    name = "hotmod",
    version,
    about = "Inspect, verify, call and benchmark hotmod plugins; check manifests; watch plugin directories.",
    after_help = "Exit status: 0 on success; 2 for a bad command line; \
                  otherwise derived from the hotmod status (1xxx -> 10+xxx, 2xxx -> 40+xxx, 3xxx -> 60+xxx, \
                  9xxx -> 70+xxx). `hotmod exit-codes` prints the table."
)]
struct Cli {
    /// Print JSON instead of tables (one object; errors as {"error": {...}}).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show what a plugin file declares and is: name, version, ABI, methods
    /// with signatures and signature hashes, dependencies, flags, SHA-256.
    /// The file is mapped in a child process, never in this one.
    Inspect {
        /// The plugin file.
        file: PathBuf,
        /// Accept a file or directory that anyone may write to.
        #[arg(long)]
        allow_world_writable: bool,
        /// Give up on the child process after this many seconds.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
    },
    /// Run every check a load makes (file, mode, size, hash, ELF, descriptor)
    /// without loading the plugin as a module; the exit status says which
    /// check failed.
    Verify {
        /// The plugin file.
        file: PathBuf,
        /// Require this SHA-256 (64 hexadecimal digits).
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
        /// Accept a file or directory that anyone may write to.
        #[arg(long)]
        allow_world_writable: bool,
        /// Give up on the child process after this many seconds.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
    },
    /// Load a plugin file (or apply a manifest, for a `.toml` target) and
    /// call one method once.
    Call {
        /// A plugin file, or a manifest (`.toml`) that loads the module.
        target: PathBuf,
        /// The method, as MODULE.METHOD.
        method: String,
        #[command(flatten)]
        input: io::InputArgs,
        /// How to show the output.
        #[arg(long, value_enum, default_value = "auto")]
        output: io::OutputFormat,
        /// Bytes handed to the plugin's init (as text), for a plugin file.
        #[arg(long)]
        config: Option<String>,
    },
    /// Measure ns per call by handle and by name against a raw
    /// function-pointer call into the same method, in one run.
    Bench {
        /// The plugin file.
        file: PathBuf,
        /// The method, as MODULE.METHOD.
        method: String,
        #[command(flatten)]
        input: io::InputArgs,
        /// Calls per round (default: about 100 ms worth).
        #[arg(long)]
        iterations: Option<u64>,
        /// Bytes handed to the plugin's init (as text).
        #[arg(long)]
        config: Option<String>,
    },
    /// Manifest files.
    Manifest {
        #[command(subcommand)]
        command: ManifestCommand,
    },
    /// Load the plugins of a directory and follow it: new files are loaded,
    /// replaced ones upgraded; every lifecycle event is printed as it happens.
    Watch {
        /// The directory.
        dir: PathBuf,
        /// Unload a module when its file is removed.
        #[arg(long)]
        unload_on_remove: bool,
        /// Stop after this many seconds (default: run until interrupted).
        #[arg(long)]
        seconds: Option<f64>,
    },
    /// Print the exit status of every hotmod status code.
    ExitCodes,
    /// The child side of `inspect` and `verify` (internal).
    #[command(name = "__inspect-child", hide = true)]
    InspectChild {
        file: PathBuf,
        #[arg(long)]
        sha256: Option<String>,
        #[arg(long)]
        allow_world_writable: bool,
    },
}

#[derive(Subcommand)]
enum ManifestCommand {
    /// Parse a manifest and check every enabled entry's file as `verify`
    /// does (in a child process), without loading anything.
    Check {
        /// The manifest file.
        file: PathBuf,
    },
}

/// What a subcommand produced: JSON for `--json`, and how to show it to people.
struct Report {
    json: Value,
    human: Box<dyn FnOnce(&Value)>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::InspectChild { file, sha256, allow_world_writable } = &cli.command {
        return ExitCode::from(inspect::child_main(file, sha256.as_deref(), *allow_world_writable));
    }
    match run(cli.command, cli.json) {
        Ok(Some(report)) => {
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&report.json).expect("JSON values serialise"));
            } else {
                (report.human)(&report.json);
            }
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            if cli.json {
                println!("{}", inspect::error_json(&e));
            } else {
                eprintln!("hotmod: {} ({}): {}", e.status().describe(), e.status().code(), e.message());
            }
            ExitCode::from(exit::for_status(e.status()))
        }
    }
}

fn timeout(secs: f64) -> Result<Duration, Error> {
    Duration::try_from_secs_f64(secs).map_err(|_| {
        Error::new(Status::InvalidArgument, format!("expected --timeout as a number of seconds >= 0, found {secs}"))
    })
}

fn split_method(s: &str) -> Result<(&str, &str), Error> {
    s.rsplit_once('.').filter(|(m, f)| !m.is_empty() && !f.is_empty()).ok_or_else(|| {
        Error::new(Status::InvalidArgument, format!("expected a method as MODULE.METHOD, found \"{s}\""))
    })
}

fn is_manifest(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "toml")
}

fn run(command: Command, json_mode: bool) -> Result<Option<Report>, Error> {
    match command {
        Command::Inspect { file, allow_world_writable, timeout: t } => {
            let req = inspect::Request { file: &file, sha256: None, allow_world_writable, timeout: timeout(t)? };
            let v = inspect::in_child(&req)?;
            Ok(Some(Report { json: v, human: Box::new(inspect::print_info) }))
        }
        Command::Verify { file, sha256, allow_world_writable, timeout: t } => {
            let req =
                inspect::Request { file: &file, sha256: sha256.as_deref(), allow_world_writable, timeout: timeout(t)? };
            let v = inspect::in_child(&req)?;
            let summary = json!({
                "file": v["path"],
                "ok": true,
                "module": v["name"],
                "version": v["version"],
                "sha256": v["sha256"],
                "sha256_checked": sha256.is_some(),
            });
            Ok(Some(Report {
                json: summary,
                human: Box::new(|v| {
                    println!(
                        "ok: {} {} ({}), sha256 {}{}",
                        v["module"].as_str().unwrap_or(""),
                        v["version"].as_str().unwrap_or(""),
                        v["file"].as_str().unwrap_or(""),
                        v["sha256"].as_str().unwrap_or(""),
                        if v["sha256_checked"].as_bool() == Some(true) { " (as expected)" } else { "" }
                    )
                }),
            }))
        }
        Command::Call { target, method, input, output, config } => {
            let (module, name) = split_method(&method)?;
            let bytes = input.read()?;
            let rt = Runtime::new();
            if is_manifest(&target) {
                rt.apply_manifest(&target)?;
            } else {
                let opts = LoadOptions { config: config.unwrap_or_default().into_bytes(), ..LoadOptions::default() };
                rt.load(&target, &opts)?;
            }
            let handle = rt.method(module, name)?;
            let out = handle.call(&bytes)?;
            if json_mode {
                let v = json!({
                    "module": module,
                    "method": name,
                    "signature": handle.signature(),
                    "output_hex": io::render(&out, "", io::OutputFormat::Hex),
                    "output": io::render(&out, handle.signature(), io::OutputFormat::Auto),
                    "output_bytes": out.len(),
                });
                return Ok(Some(Report { json: v, human: Box::new(|_| {}) }));
            }
            io::emit(&out, handle.signature(), output)
                .map_err(|e| Error::new(Status::Io, format!("cannot write the output: {e}")))?;
            Ok(None)
        }
        Command::Bench { file, method, input, iterations, config } => {
            let (module, name) = split_method(&method)?;
            let bytes = input.read()?;
            let config = config.unwrap_or_default().into_bytes();
            let req = bench::Request {
                file: &file,
                module,
                method: name,
                input: &bytes,
                iterations,
                config: &config,
                progress: !json_mode,
            };
            let v = bench::run(&req)?;
            Ok(Some(Report { json: v, human: Box::new(bench::print) }))
        }
        Command::Manifest { command: ManifestCommand::Check { file } } => {
            let m = Manifest::from_file(&file)?;
            let mut entries = Vec::new();
            for e in &m.plugins {
                let mut row = json!({
                    "path": e.path.display().to_string(),
                    "line": e.line,
                    "enabled": e.enabled,
                });
                if e.enabled {
                    let hex = e.sha256.map(|d| hotmod_core::sha256_hex(&d));
                    let req = inspect::Request {
                        file: &e.path,
                        sha256: hex.as_deref(),
                        allow_world_writable: false,
                        timeout: Duration::from_secs(30),
                    };
                    let v = inspect::in_child(&req).map_err(|err| {
                        Error::new(err.status(), format!("{}:{}: {}", m.path.display(), e.line, err.message()))
                    })?;
                    row["module"] = v["name"].clone();
                    row["version"] = v["version"].clone();
                    row["sha256"] = v["sha256"].clone();
                }
                entries.push(row);
            }
            let v = json!({"manifest": m.path.display().to_string(), "ok": true, "plugins": entries});
            Ok(Some(Report {
                json: v,
                human: Box::new(|v| {
                    println!("ok: {}", v["manifest"].as_str().unwrap_or(""));
                    for p in v["plugins"].as_array().into_iter().flatten() {
                        let line = p["line"].as_u64().unwrap_or(0);
                        if p["enabled"].as_bool() == Some(true) {
                            println!(
                                "  line {line:<4} {} {}  {}",
                                p["module"].as_str().unwrap_or(""),
                                p["version"].as_str().unwrap_or(""),
                                p["path"].as_str().unwrap_or("")
                            );
                        } else {
                            println!("  line {line:<4} (disabled)  {}", p["path"].as_str().unwrap_or(""));
                        }
                    }
                }),
            }))
        }
        Command::Watch { dir, unload_on_remove, seconds } => {
            let rt = Arc::new(Runtime::new());
            rt.set_event_handler(Some(Arc::new(move |ev: &Event| print_event(ev, json_mode))));
            let opts = WatchOptions { unload_on_remove, ..WatchOptions::default() };
            let watcher = hotmod_core::watch_dir(&rt, &dir, opts)?;
            if !json_mode {
                eprintln!("watching {} (Ctrl-C to stop)", watcher.dir().display());
            }
            match seconds {
                Some(s) => std::thread::sleep(timeout(s)?),
                None => loop {
                    std::thread::park();
                },
            }
            drop(watcher);
            Ok(None)
        }
        Command::ExitCodes => {
            let rows: Vec<Value> = exit::table()
                .into_iter()
                .map(|(s, e)| json!({"status": format!("{s:?}"), "code": s.code(), "exit": e, "description": s.describe()}))
                .collect();
            Ok(Some(Report {
                json: Value::Array(rows),
                human: Box::new(|v| {
                    println!("{:>5}  {:>4}  {:<22} description", "exit", "code", "status");
                    for r in v.as_array().into_iter().flatten() {
                        println!(
                            "{:>5}  {:>4}  {:<22} {}",
                            r["exit"],
                            r["code"],
                            r["status"].as_str().unwrap_or(""),
                            r["description"].as_str().unwrap_or("")
                        );
                    }
                }),
            }))
        }
        Command::InspectChild { .. } => unreachable!("handled in main"),
    }
}

/// One lifecycle event as a line (a JSON object per line with `--json`).
fn print_event(ev: &Event, json_mode: bool) {
    if json_mode {
        let v = json!({
            "kind": format!("{:?}", ev.kind),
            "module": ev.module,
            "version": ev.version,
            "path": ev.path,
            "message": ev.message,
            "code": ev.code,
        });
        println!("{v}");
    } else {
        let who = if ev.version.is_empty() { ev.module.clone() } else { format!("{}@{}", ev.module, ev.version) };
        let code = if ev.code != 0 { format!(" [{}]", ev.code) } else { String::new() };
        println!("{:<13} {:<24} {}{code}  {}", format!("{:?}", ev.kind), who, ev.message, ev.path);
    }
}
