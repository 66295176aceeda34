//! Zip containers read with a bound on what they may expand to, and the
//! refusal of encrypted ones.

use std::io::{Cursor, Read};

use super::{MAX_UNCOMPRESSED, PASSWORD_PROTECTED};

/// A zip file read with a bound on what it may expand to.
pub(super) struct Archive<'a> {
    pub(super) zip: zip::ZipArchive<Cursor<&'a [u8]>>,
}

impl<'a> Archive<'a> {
    pub(super) fn open(bytes: &'a [u8], limit: u64) -> Result<Self, String> {
        let mut zip =
            zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| format!("not a valid zip container ({e})"))?;
        let mut total = 0u64;
        for i in 0..zip.len() {
            let entry = zip.by_index_raw(i).map_err(|e| format!("damaged zip entry ({e})"))?;
            if entry.encrypted() {
                return Err(PASSWORD_PROTECTED.into());
            }
            total = total.saturating_add(entry.size());
        }
        if total > limit {
            return Err(format!("it would expand to {total} bytes, over the limit of {limit} (a zip bomb?)"));
        }
        Ok(Self { zip })
    }

    /// OpenDocument files saved with a password keep their entries
    /// encrypted with keys listed in the manifest (`manifest:encryption-data`);
    /// the zip itself carries no encryption flag.
    pub(super) fn refuse_opendocument_encryption(&mut self) -> Result<(), String> {
        match self.text("META-INF/manifest.xml") {
            Ok(manifest) if manifest.contains("encryption-data") => Err(PASSWORD_PROTECTED.into()),
            _ => Ok(()),
        }
    }

    pub(super) fn names(&self) -> Vec<String> {
        self.zip.file_names().filter_map(Result::ok).map(|n| n.into_owned()).collect()
    }

    pub(super) fn text(&mut self, name: &str) -> Result<String, String> {
        let mut entry = self.zip.by_name(name).map_err(|_| format!("{name} is missing"))?;
        let mut bytes = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
        // The declared size was checked; never read past it.
        entry
            .by_ref()
            .take(MAX_UNCOMPRESSED)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot unpack {name}: {e}"))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}
