//! Files of fixed-size slots (the vector files), written and read in place.

use std::fs::File;
use std::path::PathBuf;

use crate::error::{LocalStoreError, io};

/// A file of fixed-size slots, the first four bytes of each an `f32` that is
/// NaN when the slot is free.
#[derive(Debug)]
pub(crate) struct SlotFile {
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    pub(crate) stride: u64,
}

impl SlotFile {
    pub(crate) fn open(path: PathBuf, stride: usize) -> Result<Self, LocalStoreError> {
        let file = crate::files::private_file()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        Ok(Self { file, path, stride: stride as u64 })
    }

    pub(crate) fn slots(&self) -> Result<u64, LocalStoreError> {
        Ok(self.file.metadata().map_err(io(&self.path))?.len() / self.stride)
    }

    pub(crate) fn write(&self, slot: u64, bytes: &[u8]) -> Result<(), LocalStoreError> {
        write_at(&self.file, bytes, slot * self.stride).map_err(io(&self.path))
    }

    pub(crate) fn mark_free(&self, slot: u64) -> Result<(), LocalStoreError> {
        self.write(slot, &f32::NAN.to_le_bytes())
    }

    pub(crate) fn sync(&self) -> Result<(), LocalStoreError> {
        self.file.sync_data().map_err(io(&self.path))
    }
}

#[cfg(unix)]
pub(crate) fn read_at(file: &File, bytes: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, bytes, offset)
}

#[cfg(windows)]
pub(crate) fn read_at(file: &File, mut bytes: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_read(file, bytes, offset)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        bytes = &mut bytes[n..];
        offset += n as u64;
    }
    Ok(())
}

#[cfg(unix)]
pub(crate) fn write_at(file: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
}

#[cfg(windows)]
pub(crate) fn write_at(file: &File, mut bytes: &[u8], mut offset: u64) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_write(file, bytes, offset)?;
        bytes = &bytes[n..];
        offset += n as u64;
    }
    Ok(())
}
