//! Uploaded profile images: accepted only as PNG or JPEG (by magic number), stored
//! content-addressed by SHA-256.

use sha2::{Digest, Sha256};
use std::fmt::Write;

use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};

/// The two accepted image formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ImageFormat {
    /// PNG (`89 50 4E 47 0D 0A 1A 0A`).
    Png,
    /// JPEG (`FF D8 FF`).
    Jpeg,
}

impl ImageFormat {
    /// The MIME type.
    pub fn content_type(self) -> &'static str {
        match self {
            ImageFormat::Png => "image/png",
            ImageFormat::Jpeg => "image/jpeg",
        }
    }

    /// The file extension used in engine URLs.
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpg",
        }
    }

    /// Recognises the format from the first bytes, whatever the caller claims it is.
    pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
        const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
        if bytes.starts_with(PNG) {
            Some(ImageFormat::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(ImageFormat::Jpeg)
        } else {
            None
        }
    }
}

/// A stored profile image.
#[derive(Clone, PartialEq, Eq)]
pub struct ProfileImage {
    /// Format.
    pub format: ImageFormat,
    /// SHA-256 of the bytes, lowercase hex: the content address.
    pub sha256_hex: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for ProfileImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileImage")
            .field("format", &self.format)
            .field("sha256_hex", &self.sha256_hex)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Checks uploaded bytes and returns their format and SHA-256.
pub(crate) fn inspect(config: &Config, bytes: &[u8]) -> Result<(ImageFormat, [u8; 32])> {
    if bytes.len() > config.profile_image_max_bytes {
        return Err(Error::new(
            ErrorKind::ImageTooLarge,
            format!(
                "image is {} bytes; the limit is {}",
                bytes.len(),
                config.profile_image_max_bytes
            ),
        ));
    }
    let format = ImageFormat::sniff(bytes).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidImage,
            "image bytes are not a PNG or JPEG file",
        )
    })?;
    Ok((format, Sha256::digest(bytes).into()))
}

/// Lowercase hex of a digest.
pub(crate) fn hex(digest: &[u8; 32]) -> String {
    let mut s = String::with_capacity(64);
    for b in digest {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Parses 64 lowercase or uppercase hex digits.
pub(crate) fn parse_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hi = (chunk[0] as char).to_digit(16)?;
        let lo = (chunk[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// The stable engine URL of an image.
pub(crate) fn url(config: &Config, format: ImageFormat, digest: &[u8; 32]) -> String {
    format!(
        "{}{}.{}",
        config.image_url_base,
        hex(digest),
        format.extension()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG_1X1: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[test]
    fn sniffs_png_and_jpeg_only() {
        assert_eq!(ImageFormat::sniff(PNG_1X1), Some(ImageFormat::Png));
        assert_eq!(
            ImageFormat::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Some(ImageFormat::Jpeg)
        );
        for bad in [
            &b"GIF89a"[..],
            b"",
            b"\x89PNG",
            b"\xFF\xD8",
            b"RIFF....WEBP",
        ] {
            assert_eq!(ImageFormat::sniff(bad), None);
        }
    }

    #[test]
    fn size_limit_at_edge() {
        let c = Config {
            profile_image_max_bytes: 64,
            ..Config::default()
        };
        let mut bytes = PNG_1X1.to_vec();
        bytes.resize(64, 0);
        assert!(inspect(&c, &bytes).is_ok());
        bytes.push(0);
        assert_eq!(
            inspect(&c, &bytes).unwrap_err().kind(),
            ErrorKind::ImageTooLarge
        );
        assert_eq!(
            inspect(&c, b"GIF89a").unwrap_err().kind(),
            ErrorKind::InvalidImage
        );
    }

    #[test]
    fn hex_round_trip_and_url() {
        let (_, d) = inspect(&Config::default(), PNG_1X1).unwrap();
        let h = hex(&d);
        assert_eq!(h.len(), 64);
        assert_eq!(parse_hex(&h), Some(d));
        assert_eq!(parse_hex(&h.to_uppercase()), Some(d));
        assert_eq!(parse_hex("zz"), None);
        assert_eq!(
            url(&Config::default(), ImageFormat::Png, &d),
            format!("tessera://images/{h}.png")
        );
    }
}
