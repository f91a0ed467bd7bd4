//! `tezos-p2p codec`: the library's [`tezos_p2p::codec`] on the command line.

use std::path::Path;
use std::process::ExitCode;

use tezos_p2p::codec;

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    // One line, whatever the message (a JSON error may quote input).
    eprintln!("error: {}", msg.to_string().replace('\n', " "));
    ExitCode::FAILURE
}

/// `ARG` itself, or the contents of `FILE` for `@FILE`.
fn input(arg: &str) -> Result<Vec<u8>, String> {
    match arg.strip_prefix('@') {
        Some(path) => std::fs::read(Path::new(path)).map_err(|e| format!("cannot read {path}: {e}")),
        None => Ok(arg.as_bytes().to_vec()),
    }
}

/// Hex text (whitespace and a `0x` prefix allowed), or, from a file that is not hex text, the
/// raw bytes themselves.
fn binary(arg: &str) -> Result<Vec<u8>, String> {
    let raw = input(arg)?;
    let from_file = arg.starts_with('@');
    let text: String = match std::str::from_utf8(&raw) {
        Ok(t) => t.split_whitespace().collect(),
        Err(_) if from_file => return Ok(raw),
        Err(_) => return Err("invalid hex: not text".into()),
    };
    let text = text.strip_prefix("0x").unwrap_or(&text);
    match hex::decode(text) {
        Ok(b) => Ok(b),
        Err(_) if from_file && !text.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(raw),
        Err(hex::FromHexError::OddLength) => Err(format!(
            "invalid hex: an odd number of digits ({}): the byte at offset {} is incomplete",
            text.len(),
            text.len() / 2
        )),
        Err(hex::FromHexError::InvalidHexCharacter { c, index }) => {
            Err(format!("invalid hex: {c:?} is not a hex digit (digit {index}, byte at offset {})", index / 2))
        }
        Err(e) => Err(format!("invalid hex: {e}")),
    }
}

pub(crate) fn list() -> ExitCode {
    for c in codec::CODECS {
        println!("{:<20} {}", c.name, c.description);
    }
    ExitCode::SUCCESS
}

pub(crate) fn decode(encoding: &str, arg: &str) -> ExitCode {
    let bytes = match binary(arg) {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    match codec::decode(encoding, &bytes) {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

pub(crate) fn encode(encoding: &str, arg: &str) -> ExitCode {
    let text = match input(arg) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let value: serde_json::Value = match serde_json::from_slice(&text) {
        Ok(v) => v,
        Err(e) => return fail(format!("invalid JSON: {e}")),
    };
    match codec::encode(encoding, &value) {
        Ok(bytes) => {
            println!("{}", hex::encode(bytes));
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
