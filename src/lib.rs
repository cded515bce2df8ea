//! Tessera: an embedded identity and token engine for chat servers.
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod clock;
mod config;
mod error;
pub mod ffi;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Config, UserIdCase, UserIdPolicy, DAY_MS};
pub use error::{Error, ErrorKind, Result};
