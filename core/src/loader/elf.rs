//! ELF validation before `dlopen`, and the facts about a library that decide
//! whether it can ever really be unmapped.
//!
//! The dynamic loader trusts the file it maps: a program header past the
//! end of the file, a dynamic table pointing outside every segment, or a
//! file built for another machine crash or confuse it inside `ld.so`, in
//! the host. So every byte the loader will follow is checked first, with
//! the `object` crate: the header (magic, class, byte order, machine, type),
//! every program header, every `PT_LOAD` and the `PT_DYNAMIC` segment in the
//! file's bounds, the dynamic table parsable and the tables it points to
//! inside the mapped segments, and the entry symbol `hotmod_plugin_v1`
//! exported in `.dynsym` as a defined function in an executable segment.
//!
//! The same pass reads the [`ElfFacts`]: `DF_1_NODELETE`, static TLS
//! (`DF_STATIC_TLS`), `STB_GNU_UNIQUE` symbols and a Go runtime each make a
//! library impossible to unmap for real (`dlclose` leaves it mapped, or
//! unmapping it would leave dangling thread-local or runtime state), so a
//! version with any of them is kept mapped whatever its
//! `SAFE_TO_UNLOAD` flag says, and reported as kept.

use std::path::Path;

use object::elf;
use object::read::elf::{Dyn as _, FileHeader, ProgramHeader as _, Sym as _};
use object::read::StringTable;

use crate::error::{Error, Result, Status};

/// Offsets in `e_ident`, and its size.
const EI_CLASS: usize = 4;
const EI_DATA: usize = 5;
const EI_NIDENT: u64 = 16;

/// What the loader read from a plugin's ELF headers before mapping it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElfFacts {
    /// The machine the file is built for (`"x86_64"`, `"aarch64"`, …);
    /// empty for a file that is not ELF (macOS and Windows builds).
    pub machine: String,
    /// The ELF header's `e_machine` number (`EM_X86_64` = 62, `EM_AARCH64`
    /// = 183, …); 0 for a file that is not ELF.
    pub e_machine: u16,
    /// ELF class: 32 or 64 (0 if not ELF).
    pub class: u8,
    /// `DF_1_NODELETE`: the dynamic loader never unmaps it.
    pub nodelete: bool,
    /// A `PT_TLS` segment: the library has thread-local variables.
    pub tls: bool,
    /// `DF_STATIC_TLS`: its thread-local storage uses the static model,
    /// whose space cannot be given back once the library is loaded.
    pub static_tls: bool,
    /// Exported `STB_GNU_UNIQUE` symbols (the first few names): the
    /// dynamic loader keeps such a library loaded for the process.
    pub gnu_unique: Vec<String>,
    /// A Go runtime is linked in (`-buildmode=c-shared`): Go cannot be
    /// unloaded, its threads and signal handlers outlive any `dlclose`.
    pub go_runtime: bool,
    /// Constructors run by `dlopen`: `DT_INIT` plus the `DT_INIT_ARRAY`
    /// entries.
    pub constructors: usize,
    /// Whether the entry symbol was found and checked in `.dynsym` (false
    /// for a library without section headers, or not ELF: the symbol is
    /// then only looked up after mapping).
    pub entry_checked: bool,
}

impl ElfFacts {
    /// Why this library cannot really be unmapped (empty if it can).
    ///
    /// Thread-local variables alone (`tls` without `static_tls`) are not a
    /// reason: glibc gives dynamic TLS back at `dlclose` and itself defers
    /// unmapping a library whose thread-local destructors are still
    /// pending; the runtime then sees the library still listed after
    /// `dlclose` and reports it as kept mapped.
    pub fn unmap_blockers(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.nodelete {
            out.push("it is marked DF_1_NODELETE".to_owned());
        }
        if self.static_tls {
            out.push("it uses static TLS (DF_STATIC_TLS)".to_owned());
        }
        if !self.gnu_unique.is_empty() {
            out.push(format!("it exports STB_GNU_UNIQUE symbols ({})", self.gnu_unique.join(", ")));
        }
        if self.go_runtime {
            out.push("it contains a Go runtime".to_owned());
        }
        out
    }

    /// Whether nothing in the file prevents unmapping it.
    pub fn can_unmap(&self) -> bool {
        !self.nodelete && !self.static_tls && self.gnu_unique.is_empty() && !self.go_runtime
    }
}

/// The ELF identity of this process: machine number, name, class, whether
/// little-endian.
fn host() -> (u16, &'static str, u8, bool) {
    let (machine, name) = if cfg!(target_arch = "x86_64") {
        (elf::EM_X86_64, "x86_64")
    } else if cfg!(target_arch = "aarch64") {
        (elf::EM_AARCH64, "aarch64")
    } else if cfg!(target_arch = "x86") {
        (elf::EM_386, "x86")
    } else if cfg!(target_arch = "arm") {
        (elf::EM_ARM, "arm")
    } else if cfg!(target_arch = "riscv64") || cfg!(target_arch = "riscv32") {
        (elf::EM_RISCV, "riscv")
    } else if cfg!(target_arch = "powerpc64") {
        (elf::EM_PPC64, "powerpc64")
    } else if cfg!(target_arch = "s390x") {
        (elf::EM_S390, "s390x")
    } else if cfg!(target_arch = "loongarch64") {
        (elf::EM_LOONGARCH, "loongarch64")
    } else {
        (0, std::env::consts::ARCH)
    };
    let class = if cfg!(target_pointer_width = "64") { 64 } else { 32 };
    (machine, name, class, cfg!(target_endian = "little"))
}

fn machine_name(m: u16) -> String {
    match m {
        elf::EM_X86_64 => "x86_64".into(),
        elf::EM_AARCH64 => "aarch64".into(),
        elf::EM_386 => "x86".into(),
        elf::EM_ARM => "arm".into(),
        elf::EM_RISCV => "riscv".into(),
        elf::EM_PPC64 => "powerpc64".into(),
        elf::EM_PPC => "powerpc".into(),
        elf::EM_S390 => "s390x".into(),
        elf::EM_MIPS => "mips".into(),
        elf::EM_SPARCV9 => "sparc64".into(),
        elf::EM_LOONGARCH => "loongarch64".into(),
        elf::EM_BPF => "bpf".into(),
        other => format!("ELF machine {other}"),
    }
}

fn type_name(t: u8) -> &'static str {
    match t {
        elf::STT_NOTYPE => "STT_NOTYPE (no type)",
        elf::STT_OBJECT => "STT_OBJECT (a data object)",
        elf::STT_FUNC => "STT_FUNC (a function)",
        elf::STT_SECTION => "STT_SECTION",
        elf::STT_FILE => "STT_FILE",
        elf::STT_COMMON => "STT_COMMON (a common data object)",
        elf::STT_TLS => "STT_TLS (a thread-local variable)",
        elf::STT_GNU_IFUNC => "STT_GNU_IFUNC (an indirect function)",
        _ => "an unknown symbol type",
    }
}

/// Whether `bytes` start like an ELF file.
pub(crate) fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(&elf::ELFMAG)
}

/// The refusal of a file that is not a loadable library, in the words the
/// C API's callers rely on: the file, its size, what was wrong.
pub(crate) fn not_a_library(path: &Path, len: usize, why: impl std::fmt::Display) -> Error {
    Error::new(
        Status::NotALibrary,
        format!("'{}' is not a loadable shared library for this platform ({len} bytes): {why}", path.display()),
    )
}

fn truncated(path: &Path, len: usize, needed: u64) -> Error {
    not_a_library(
        path,
        len,
        format!("it is a truncated shared library: its headers need {needed} bytes, found {len}; is it still being written?"),
    )
}

/// Checks the structure of a plugin file before it is mapped and reads its
/// facts. A file that is not ELF is refused on ELF platforms and passed
/// (with empty facts) elsewhere, where the platform loader checks it.
pub(crate) fn validate(path: &Path, bytes: &[u8]) -> Result<ElfFacts> {
    if !cfg!(all(unix, not(target_vendor = "apple"))) && !is_elf(bytes) {
        return Ok(ElfFacts::default());
    }
    if !is_elf(bytes) {
        let found = if bytes.is_empty() { "an empty file".to_owned() } else { "no ELF magic number".to_owned() };
        return Err(not_a_library(path, bytes.len(), format!("expected an ELF file, found {found}")));
    }
    let (want_machine, want_name, want_class, want_little) = host();
    let header_size = if bytes.get(EI_CLASS) == Some(&elf::ELFCLASS32) { 52 } else { 64 };
    if bytes.len() < header_size {
        return Err(truncated(path, bytes.len(), header_size as u64));
    }
    let class = match bytes.get(EI_CLASS) {
        Some(&elf::ELFCLASS32) => 32,
        Some(&elf::ELFCLASS64) => 64,
        Some(&c) => return Err(not_a_library(path, bytes.len(), format!("expected ELF class 1 or 2, found {c}"))),
        None => return Err(truncated(path, bytes.len(), EI_NIDENT)),
    };
    let little = match bytes.get(EI_DATA) {
        Some(&elf::ELFDATA2LSB) => true,
        Some(&elf::ELFDATA2MSB) => false,
        Some(&d) => return Err(not_a_library(path, bytes.len(), format!("expected ELF byte order 1 or 2, found {d}"))),
        None => return Err(truncated(path, bytes.len(), EI_NIDENT)),
    };
    let facts = if class == 64 {
        check::<elf::FileHeader64<object::Endianness>>(path, bytes)?
    } else {
        check::<elf::FileHeader32<object::Endianness>>(path, bytes)?
    };
    let (machine, facts) = facts;
    if machine != want_machine || class != want_class || little != want_little {
        let order = |l: bool| if l { "little-endian" } else { "big-endian" };
        return Err(not_a_library(
            path,
            bytes.len(),
            format!(
                "it is built for {} ({class}-bit, {}), expected {want_name} ({want_class}-bit, {}) like this process",
                machine_name(machine),
                order(little),
                order(want_little)
            ),
        ));
    }
    Ok(facts)
}

/// One PT_LOAD segment: its address range in memory and in the file.
struct Load {
    vaddr: u64,
    memsz: u64,
    offset: u64,
    filesz: u64,
    exec: bool,
}

impl Load {
    fn holds(&self, addr: u64, size: u64) -> bool {
        addr >= self.vaddr && addr.checked_add(size).is_some_and(|end| end <= self.vaddr.saturating_add(self.memsz))
    }
}

/// The file bytes at virtual address `addr`, `size` long, if a loaded
/// segment backs all of them from the file.
fn file_bytes<'a>(loads: &[Load], bytes: &'a [u8], addr: u64, size: u64) -> Option<&'a [u8]> {
    let l = loads.iter().find(|l| l.holds(addr, size))?;
    let rel = addr - l.vaddr;
    if rel.checked_add(size)? > l.filesz {
        return None;
    }
    let start = usize::try_from(l.offset.checked_add(rel)?).ok()?;
    bytes.get(start..start.checked_add(usize::try_from(size).ok()?)?)
}

fn check<Elf: FileHeader<Endian = object::Endianness>>(path: &Path, bytes: &[u8]) -> Result<(u16, ElfFacts)> {
    let len = bytes.len();
    let corrupt = |what: String| not_a_library(path, len, what);
    let header = match Elf::parse(bytes) {
        Ok(h) => h,
        Err(_) => return Err(truncated(path, len, std::mem::size_of::<Elf>() as u64)),
    };
    let endian = header.endian().map_err(|e| corrupt(format!("its ELF header is invalid: {e}")))?;
    let machine = header.e_machine(endian);
    let mut facts = ElfFacts {
        machine: machine_name(machine),
        e_machine: machine,
        class: if header.is_type_64() { 64 } else { 32 },
        ..Default::default()
    };
    let (want_machine, _, want_class, want_little) = host();
    if machine != want_machine || facts.class != want_class || header.is_little_endian() != want_little {
        // The caller names both architectures; nothing more is read.
        return Ok((machine, facts));
    }
    let e_type = header.e_type(endian);
    if e_type != elf::ET_DYN {
        let found = match e_type {
            elf::ET_EXEC => "an executable (ET_EXEC)".to_owned(),
            elf::ET_REL => "a relocatable object file (ET_REL)".to_owned(),
            elf::ET_CORE => "a core dump (ET_CORE)".to_owned(),
            t => format!("ELF type {t}"),
        };
        return Err(corrupt(format!("expected a shared library (ELF type ET_DYN), found {found}")));
    }
    let phoff: u64 = header.e_phoff(endian).into();
    let phsize = u64::from(header.e_phentsize(endian)).saturating_mul(u64::from(header.e_phnum(endian)));
    let ph_end = phoff.saturating_add(phsize);
    if ph_end > len as u64 {
        return Err(truncated(path, len, ph_end));
    }
    let phdrs =
        header.program_headers(endian, bytes).map_err(|e| corrupt(format!("its program headers are invalid: {e}")))?;
    let mut loads = Vec::new();
    let mut dynamic = None;
    let mut needed = ph_end;
    for ph in phdrs {
        let offset: u64 = ph.p_offset(endian).into();
        let filesz: u64 = ph.p_filesz(endian).into();
        let end = offset.checked_add(filesz).ok_or_else(|| corrupt("a segment's offset + size overflows".into()))?;
        let p_type = ph.p_type(endian);
        if filesz > 0 && matches!(p_type, elf::PT_LOAD | elf::PT_DYNAMIC | elf::PT_TLS | elf::PT_INTERP) {
            needed = needed.max(end);
        }
        match p_type {
            elf::PT_LOAD => {
                let memsz: u64 = ph.p_memsz(endian).into();
                let align: u64 = ph.p_align(endian).into();
                let vaddr: u64 = ph.p_vaddr(endian).into();
                if memsz < filesz {
                    return Err(corrupt(format!(
                        "a PT_LOAD segment at offset {offset:#x} has a memory size ({memsz}) below its file size ({filesz})"
                    )));
                }
                if align > 1 && (!align.is_power_of_two() || vaddr % align != offset % align) {
                    return Err(corrupt(format!(
                        "a PT_LOAD segment at offset {offset:#x} is not aligned as it declares (alignment {align})"
                    )));
                }
                vaddr
                    .checked_add(memsz)
                    .ok_or_else(|| corrupt("a PT_LOAD segment's address + size overflows".into()))?;
                loads.push(Load { vaddr, memsz, offset, filesz, exec: ph.p_flags(endian) & elf::PF_X != 0 });
            }
            elf::PT_DYNAMIC => dynamic = Some(ph),
            elf::PT_TLS => facts.tls = true,
            _ => {}
        }
    }
    let shoff: u64 = header.e_shoff(endian).into();
    if shoff != 0 {
        let shsize = u64::from(header.e_shentsize(endian)).saturating_mul(u64::from(header.e_shnum(endian)));
        needed = needed.max(shoff.saturating_add(shsize));
    }
    if needed > len as u64 {
        return Err(truncated(path, len, needed));
    }
    if loads.is_empty() {
        return Err(corrupt("expected PT_LOAD segments, found none".into()));
    }
    let Some(dynamic) = dynamic else {
        return Err(corrupt("expected a dynamic segment (PT_DYNAMIC), found none: not a shared library".into()));
    };
    let dyn_vaddr: u64 = dynamic.p_vaddr(endian).into();
    let dyn_size: u64 = dynamic.p_filesz(endian).into();
    if file_bytes(&loads, bytes, dyn_vaddr, dyn_size).is_none() {
        return Err(corrupt("its dynamic segment lies outside the loaded segments".into()));
    }
    let entries = dynamic
        .dynamic(endian, bytes)
        .map_err(|e| corrupt(format!("its dynamic segment cannot be parsed: {e}")))?
        .unwrap_or(&[]);
    let mut strtab = None;
    let mut strsz = None;
    let mut init_array_size = 0u64;
    let mut terminated = false;
    let mut tables: Vec<(u32, u64, Option<u32>)> = Vec::new();
    let word = if facts.class == 64 { 8 } else { 4 };
    let mut sizes = std::collections::HashMap::new();
    for d in entries {
        let tag: u64 = d.d_tag(endian).into();
        let val: u64 = d.d_val(endian).into();
        let Ok(tag) = u32::try_from(tag) else { continue };
        match tag {
            elf::DT_NULL => {
                terminated = true;
                break;
            }
            elf::DT_FLAGS_1 => facts.nodelete |= val & u64::from(elf::DF_1_NODELETE) != 0,
            elf::DT_FLAGS => facts.static_tls |= val & u64::from(elf::DF_STATIC_TLS) != 0,
            elf::DT_INIT => {
                facts.constructors += 1;
                tables.push((tag, val, None));
            }
            elf::DT_INIT_ARRAYSZ => init_array_size = val,
            elf::DT_STRTAB => strtab = Some(val),
            elf::DT_STRSZ => strsz = Some(val),
            elf::DT_SYMTAB | elf::DT_HASH | elf::DT_GNU_HASH | elf::DT_VERSYM | elf::DT_VERDEF | elf::DT_VERNEED => {
                tables.push((tag, val, None))
            }
            elf::DT_RELA => tables.push((tag, val, Some(elf::DT_RELASZ))),
            elf::DT_REL => tables.push((tag, val, Some(elf::DT_RELSZ))),
            elf::DT_JMPREL => tables.push((tag, val, Some(elf::DT_PLTRELSZ))),
            elf::DT_INIT_ARRAY => tables.push((tag, val, Some(elf::DT_INIT_ARRAYSZ))),
            elf::DT_FINI_ARRAY => tables.push((tag, val, Some(elf::DT_FINI_ARRAYSZ))),
            elf::DT_RELASZ | elf::DT_RELSZ | elf::DT_PLTRELSZ | elf::DT_FINI_ARRAYSZ => {}
            _ => {}
        }
        if matches!(
            tag,
            elf::DT_RELASZ | elf::DT_RELSZ | elf::DT_PLTRELSZ | elf::DT_INIT_ARRAYSZ | elf::DT_FINI_ARRAYSZ
        ) {
            sizes.insert(tag, val);
        }
    }
    if !terminated {
        return Err(corrupt("its dynamic table has no DT_NULL terminator".into()));
    }
    facts.constructors += usize::try_from(init_array_size / word).unwrap_or(usize::MAX);
    let (Some(strtab), Some(strsz)) = (strtab, strsz) else {
        return Err(corrupt("its dynamic table has no string table (DT_STRTAB, DT_STRSZ)".into()));
    };
    if file_bytes(&loads, bytes, strtab, strsz).is_none() {
        return Err(corrupt(format!(
            "its dynamic string table ({strsz} bytes at {strtab:#x}) lies outside the loaded segments"
        )));
    }
    for (tag, addr, size_tag) in tables {
        let size = size_tag.and_then(|t| sizes.get(&t).copied()).unwrap_or(1);
        // Arrays and relocation tables must be backed by the file; the
        // other tables at least lie inside a loaded segment.
        let ok = if size_tag.is_some() {
            size == 0 || file_bytes(&loads, bytes, addr, size).is_some()
        } else {
            loads.iter().any(|l| l.holds(addr, 1))
        };
        if !ok {
            return Err(corrupt(format!(
                "its dynamic table entry {tag:#x} points to {size} bytes at {addr:#x}, outside the loaded segments"
            )));
        }
    }
    check_sections::<Elf>(path, bytes, header, endian, &loads, &mut facts)?;
    Ok((machine, facts))
}

/// Reads `.dynsym` and the section names: the entry symbol, unique
/// symbols, a Go runtime.
fn check_sections<Elf: FileHeader<Endian = object::Endianness>>(
    path: &Path,
    bytes: &[u8],
    header: &Elf,
    endian: object::Endianness,
    loads: &[Load],
    facts: &mut ElfFacts,
) -> Result<()> {
    let len = bytes.len();
    let corrupt = |what: String| not_a_library(path, len, what);
    let sections =
        header.sections(endian, bytes).map_err(|e| corrupt(format!("its section headers are invalid: {e}")))?;
    if sections.is_empty() {
        return Ok(()); // stripped of sections: the entry is looked up after mapping
    }
    for s in sections.iter() {
        if let Ok(name) = sections.section_name(endian, s) {
            if matches!(name, b".go.buildinfo" | b".gopclntab" | b".note.go.buildid") {
                facts.go_runtime = true;
            }
        }
    }
    let symbols = sections
        .symbols(endian, bytes, elf::SHT_DYNSYM)
        .map_err(|e| corrupt(format!("its dynamic symbol table is invalid: {e}")))?;
    if symbols.is_empty() {
        return Ok(());
    }
    let strings: StringTable<'_> = symbols.strings();
    let entry_name = hotmod_abi::HOTMOD_PLUGIN_ENTRY_SYMBOL.as_bytes();
    let mut entry = None;
    for sym in symbols.iter().skip(1) {
        let Ok(name) = sym.name(endian, strings) else { continue };
        let defined = sym.st_shndx(endian) != elf::SHN_UNDEF;
        if defined && sym.st_bind() == elf::STB_GNU_UNIQUE && facts.gnu_unique.len() < 4 {
            facts.gnu_unique.push(String::from_utf8_lossy(name).into_owned());
        }
        if name.starts_with(b"_cgo_") || name == b"runtime.goexit" || name.starts_with(b"go:buildinfo") {
            facts.go_runtime = true;
        }
        if name == entry_name && (defined || entry.is_none()) {
            let value: u64 = sym.st_value(endian).into();
            entry = Some((defined, sym.st_type(), value));
        }
    }
    let shown = path.display();
    let entry_str = hotmod_abi::HOTMOD_PLUGIN_ENTRY_SYMBOL;
    match entry {
        None | Some((false, _, _)) => Err(Error::new(
            Status::EntrySymbolMissing,
            format!(
                "'{shown}' is a shared library but not a hotmod plugin: expected it to export '{entry_str}', found no such symbol"
            ),
        )),
        Some((true, t, _)) if t != elf::STT_FUNC => Err(Error::new(
            Status::EntrySymbolMissing,
            format!(
                "'{shown}' is not a hotmod plugin: expected '{entry_str}' to be a function (STT_FUNC), found {}; it is never called",
                type_name(t)
            ),
        )),
        Some((true, _, addr)) => {
            if !loads.iter().any(|l| l.exec && l.holds(addr, 1)) {
                return Err(Error::new(
                    Status::EntrySymbolMissing,
                    format!(
                        "'{shown}' is not a hotmod plugin: expected '{entry_str}' in an executable segment, found it at {addr:#x}, outside every one; it is never called"
                    ),
                ));
            }
            facts.entry_checked = true;
            Ok(())
        }
    }
}

/// Reads the file at `path` with the loader's file checks (default
/// [`LoadOptions`](super::LoadOptions)) and runs the ELF checks on its
/// bytes, without mapping anything: what a load would refuse before
/// `dlopen`, and the facts it would read. For tools and tests.
pub fn check_file(path: &Path) -> Result<ElfFacts> {
    let checks = super::LoadOptions::default().checks();
    let mut opened = super::open_checked(path, checks)?;
    let bytes = super::read_capped(&mut opened, checks)?;
    validate(&opened.path, &bytes)
}

/// How many leading bytes of a validated ELF file the dynamic loader reads:
/// the headers and every segment's file contents. What follows (debug
/// information, the section headers) is never mapped, so the private copy
/// can be cut there, which keeps a version kept mapped from pinning it.
/// `None` if `bytes` is not an ELF file this process can read.
pub(crate) fn loaded_len(bytes: &[u8]) -> Option<u64> {
    fn of<Elf: FileHeader<Endian = object::Endianness>>(bytes: &[u8]) -> Option<u64> {
        let header = Elf::parse(bytes).ok()?;
        let endian = header.endian().ok()?;
        let phoff: u64 = header.e_phoff(endian).into();
        let phsize = u64::from(header.e_phentsize(endian)).checked_mul(u64::from(header.e_phnum(endian)))?;
        let mut end = phoff.checked_add(phsize)?.max(std::mem::size_of::<Elf>() as u64);
        for ph in header.program_headers(endian, bytes).ok()? {
            let offset: u64 = ph.p_offset(endian).into();
            let filesz: u64 = ph.p_filesz(endian).into();
            if filesz > 0 {
                end = end.max(offset.checked_add(filesz)?);
            }
        }
        Some(end.min(bytes.len() as u64))
    }
    match bytes.get(EI_CLASS) {
        _ if !is_elf(bytes) => None,
        Some(&elf::ELFCLASS64) => of::<elf::FileHeader64<object::Endianness>>(bytes),
        Some(&elf::ELFCLASS32) => of::<elf::FileHeader32<object::Endianness>>(bytes),
        _ => None,
    }
}
