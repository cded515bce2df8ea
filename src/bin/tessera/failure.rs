//! How a command fails: a message on stderr with a stable code, and an exit status derived
//! from that code.
//!
//! The rule (README, docs/ERRORS.md): the exit status is the error's code. Every
//! [`tessera::ErrorKind`] code is 1..=99 (the library's tests hold it there), so it fits an
//! exit status as it is; a code above 125 (none exists) would exit 99 (Internal), clear of the
//! shell's 126..=255. The tool's own two statuses are sysexits' 64 (usage) and 65 (an import
//! that rejected records), which docs/ERRORS.md reserves: no error code will ever take them.

use serde_json::json;
use tessera::{Error, ErrorKind};

use crate::output::Out;

/// Exit status of a usage error (sysexits `EX_USAGE`).
pub const USAGE: u8 = 64;
/// Exit status of an import that rejected records (sysexits `EX_DATAERR`).
pub const REJECTED: u8 = 65;

/// A failed command.
#[derive(Debug)]
pub struct Failure {
    code: u32,
    kind: String,
    message: String,
}

impl Failure {
    /// Records were rejected; the report listing them was printed.
    pub fn rejected(count: usize) -> Failure {
        Failure {
            code: u32::from(REJECTED),
            kind: "Rejected".into(),
            message: format!("{count} record(s) could not be imported (see the report)"),
        }
    }

    pub fn exit_status(&self) -> u8 {
        match u8::try_from(self.code) {
            Ok(c) if (1..=125).contains(&c) => c,
            _ => ErrorKind::Internal.code() as u8,
        }
    }

    pub fn report(&self, out: &Out) {
        if out.json {
            let doc =
                json!({"error": {"code": self.code, "kind": self.kind, "message": self.message}});
            eprintln!("{doc}");
        } else {
            eprintln!(
                "tessera: error[{} {}]: {}",
                self.code, self.kind, self.message
            );
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure {
            code: e.code(),
            kind: format!("{:?}", e.kind()),
            message: e.message().to_owned(),
        }
    }
}

/// An I/O failure outside the engine (reading an input file, writing the output).
pub fn io(context: impl std::fmt::Display, e: std::io::Error) -> Failure {
    Failure::from(Error::new(ErrorKind::Io, format!("{context}: {e}")))
}

/// A malformed argument or input the engine never saw.
pub fn invalid(message: impl Into<String>) -> Failure {
    Failure::from(Error::new(ErrorKind::InvalidArgument, message))
}
