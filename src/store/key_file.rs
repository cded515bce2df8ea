//! The signing key ring file (`keys`): a store header plus one framed record holding the
//! engine's serialised key ring, replaced atomically with mode 0600.
//!
//! Keys are kept out of the journal and snapshots so that those can be copied for debugging
//! or backup without handing over the ability to mint session tokens.

use std::fs;
use std::io::{self, Cursor};
use std::path::Path;

use zeroize::Zeroizing;

use super::atomic_file::write_atomic;
use super::frame::{
    corrupt_error, encode_frame, encode_header, parse_header, scan_frames, FileKind, ScanEnd,
    HEADER_LEN,
};
use crate::error::{Error, ErrorKind, Result};

/// Name of the key file inside the data directory.
pub(crate) const KEY_FILE: &str = "keys";

/// Replaces the key file with `key_ring` (already serialised by the engine).
pub(crate) fn write_key_file(path: &Path, key_ring: &[u8]) -> Result<()> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(HEADER_LEN + 8 + key_ring.len()));
    bytes.extend_from_slice(&encode_header(FileKind::KeyRing, 0));
    encode_frame(&mut bytes, key_ring)?;
    write_atomic(path, &bytes)
}

/// The serialised key ring, or `None` when no key file exists yet.
pub(crate) fn read_key_file(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>> {
    let bytes = match fs::read(path) {
        Ok(b) => Zeroizing::new(b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&format!("reading {}", path.display()), e)),
    };
    parse_header(path, FileKind::KeyRing, &bytes)?;
    let mut records = Vec::new();
    let end = scan_frames(
        &mut Cursor::new(&bytes[..]),
        HEADER_LEN as u64,
        bytes.len() as u64,
        |_, payload| {
            records.push(Zeroizing::new(payload.to_vec()));
            Ok(())
        },
        path,
    )?;
    match end {
        ScanEnd::Clean if records.len() == 1 => Ok(records.pop()),
        ScanEnd::Corrupt { offset, reason } => Err(corrupt_error(path, offset, reason)),
        // The file is replaced atomically, so even a cut-off end is damage, not a crash.
        _ => Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "{}: key file is truncated or holds extra data",
                path.display()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::atomic_file::test_dir::TestDir;

    #[test]
    fn key_file_round_trips_is_private_and_refuses_damage() {
        let dir = TestDir::new("keys");
        let path = dir.path().join(KEY_FILE);
        assert!(read_key_file(&path).unwrap().is_none());
        write_key_file(&path, b"secret ring v1").unwrap();
        write_key_file(&path, b"secret ring v2").unwrap();
        assert_eq!(
            &read_key_file(&path).unwrap().unwrap()[..],
            b"secret ring v2"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert_eq!(read_key_file(&path).unwrap_err().kind(), ErrorKind::Corrupt);
        bytes.truncate(last);
        fs::write(&path, &bytes).unwrap();
        assert_eq!(read_key_file(&path).unwrap_err().kind(), ErrorKind::Corrupt);
    }
}
