//! Call inputs and outputs on the command line: where the input bytes come
//! from (an argument, a file, standard input, hexadecimal) and how output
//! bytes are shown (raw, hexadecimal, or as the method's signature suggests).

use std::io::{Read, Write};
use std::path::PathBuf;

use hotmod_core::{Error, Status};

/// Where a call's input comes from. At most one source is given; none
/// means empty input.
#[derive(clap::Args, Debug, Default)]
pub struct InputArgs {
    /// The input as text (its UTF-8 bytes).
    pub input: Option<String>,
    /// Read the input from this file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["input", "stdin", "hex"])]
    pub input_file: Option<PathBuf>,
    /// Read the input from standard input.
    #[arg(long, conflicts_with_all = ["input", "hex"])]
    pub stdin: bool,
    /// The input as hexadecimal digits (spaces allowed), for example `de ad be ef`.
    #[arg(long, value_name = "HEX", conflicts_with = "input")]
    pub hex: Option<String>,
}

impl InputArgs {
    /// The input bytes.
    pub fn read(&self) -> Result<Vec<u8>, Error> {
        if let Some(f) = &self.input_file {
            return std::fs::read(f)
                .map_err(|e| Error::new(Status::Io, format!("cannot read the input file '{}': {e}", f.display())));
        }
        if self.stdin {
            let mut v = Vec::new();
            std::io::stdin()
                .read_to_end(&mut v)
                .map_err(|e| Error::new(Status::Io, format!("cannot read the input from standard input: {e}")))?;
            return Ok(v);
        }
        if let Some(h) = &self.hex {
            return parse_hex(h);
        }
        Ok(self.input.clone().unwrap_or_default().into_bytes())
    }
}

/// Parses hexadecimal digits, ignoring whitespace.
pub fn parse_hex(h: &str) -> Result<Vec<u8>, Error> {
    let digits: Vec<u8> = h.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let bad = |what: String| Error::new(Status::InvalidArgument, format!("expected hexadecimal input, found {what}"));
    if digits.len() % 2 != 0 {
        return Err(bad(format!("an odd number of digits ({})", digits.len())));
    }
    digits
        .chunks(2)
        .enumerate()
        .map(|(i, pair)| {
            let s = std::str::from_utf8(pair).map_err(|_| bad(format!("a non-ASCII byte near digit {}", 2 * i)))?;
            u8::from_str_radix(s, 16).map_err(|_| bad(format!("\"{s}\" at digit {}", 2 * i)))
        })
        .collect()
}

/// How output bytes are shown.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// As the method's signature suggests: `u32le`/`u64le` as a number,
    /// text types as text, anything else as text if it is printable UTF-8
    /// and as hexadecimal otherwise.
    Auto,
    /// The bytes exactly as returned.
    Raw,
    /// Hexadecimal digits.
    Hex,
}

/// The result type a signature string declares: what follows `->`.
fn result_type(signature: &str) -> &str {
    signature.split("->").nth(1).map(str::trim).unwrap_or("")
}

/// Renders `bytes` for display as text (everything but `Raw`).
pub fn render(bytes: &[u8], signature: &str, format: OutputFormat) -> String {
    let hex = || bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    match format {
        OutputFormat::Hex => hex(),
        OutputFormat::Raw => String::from_utf8_lossy(bytes).into_owned(),
        OutputFormat::Auto => {
            let ty = result_type(signature);
            let word = ty.split_whitespace().next().unwrap_or("");
            match (word, bytes.len()) {
                ("u32le", 4) => u32::from_le_bytes(bytes.try_into().expect("4 bytes")).to_string(),
                ("u64le", 8) => u64::from_le_bytes(bytes.try_into().expect("8 bytes")).to_string(),
                _ => match std::str::from_utf8(bytes) {
                    Ok(s) if s.chars().all(|c| !c.is_control() || c == '\n' || c == '\t') => s.to_owned(),
                    _ => hex(),
                },
            }
        }
    }
}

/// Writes the output: raw bytes as they are, everything else as a line.
pub fn emit(bytes: &[u8], signature: &str, format: OutputFormat) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if format == OutputFormat::Raw {
        out.write_all(bytes)?;
    } else {
        writeln!(out, "{}", render(bytes, signature, format))?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_input_parses_and_names_bad_digits() {
        assert_eq!(parse_hex("de ad\nBE ef").unwrap(), vec![0xde, 0xad, 0xbe, 0xef]);
        assert!(parse_hex("abc").unwrap_err().message().contains("odd number"));
        assert!(parse_hex("zz").unwrap_err().message().contains("\"zz\""));
    }

    #[test]
    fn auto_output_follows_the_signature() {
        assert_eq!(render(&5u32.to_le_bytes(), "bytes -> u32le", OutputFormat::Auto), "5");
        assert_eq!(render(&7u64.to_le_bytes(), "bytes -> u64le", OutputFormat::Auto), "7");
        assert_eq!(render(b"HELLO", "bytes -> bytes", OutputFormat::Auto), "HELLO");
        assert_eq!(render(&[0, 1, 255], "bytes -> bytes", OutputFormat::Auto), "0001ff");
        assert_eq!(render(b"hi", "", OutputFormat::Hex), "6869");
        // A u32le signature with the wrong length is not misread.
        assert_eq!(render(&[1, 2], "bytes -> u32le", OutputFormat::Auto), "0102");
    }
}
