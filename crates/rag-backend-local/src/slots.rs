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
        Ok(self.len()? / self.stride)
    }

    /// The file's length in bytes.
    pub(crate) fn len(&self) -> Result<u64, LocalStoreError> {
        Ok(self.file.metadata().map_err(io(&self.path))?.len())
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

/// The little-endian `f32`s of `bytes` (as the vector file holds them) into
/// `out`, one a four bytes, as many as both hold.
pub(crate) fn decode_floats(bytes: &[u8], out: &mut [f32]) {
    for (value, bytes) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *value = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
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

/// Whether a read may wait on the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Only what the page cache holds is read.
    No,
    /// Read whatever it takes.
    Yes,
}

/// Reads `bytes` at `offset`; with [`Wait::No`], only when the page cache
/// holds all of them: `Ok(false)` then says the read would wait on the disk
/// (Linux's `RWF_NOWAIT`; a kernel without it, or another system, says so
/// or reads as with [`Wait::Yes`]).
pub(crate) fn read_at_if(file: &File, bytes: &mut [u8], offset: u64, wait: Wait) -> std::io::Result<bool> {
    #[cfg(target_os = "linux")]
    if wait == Wait::No {
        use std::os::fd::AsRawFd;
        let Ok(at) = libc::off_t::try_from(offset) else { return Ok(false) };
        let iov = libc::iovec { iov_base: bytes.as_mut_ptr().cast(), iov_len: bytes.len() };
        // SAFETY: one iovec over `bytes`, writable for its whole length during the call.
        let read = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, at, libc::RWF_NOWAIT) };
        // Not cached, partly cached or not supported: the waiting read decides.
        return Ok(usize::try_from(read).is_ok_and(|n| n == bytes.len()));
    }
    let _ = wait;
    read_at(file, bytes, offset).map(|()| true)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_that_may_not_wait_read_what_the_cache_holds_or_say_they_would_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slots");
        let bytes: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let file = File::open(&path).unwrap();
        let mut read = vec![0u8; 100];
        assert!(read_at_if(&file, &mut read, 5_000, Wait::No).unwrap(), "just written: cached");
        assert_eq!(read, bytes[5_000..5_100]);
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            file.sync_all().unwrap();
            // SAFETY: advice on an open descriptor; no memory is touched.
            unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            let mut again = vec![0u8; 100];
            // Evicted pages (not on tmpfs, which keeps them) are not read.
            if !read_at_if(&file, &mut again, 40_000, Wait::No).unwrap() {
                assert!(again.iter().all(|&b| b == 0), "nothing read");
            } else {
                assert_eq!(again, bytes[40_000..40_100]);
            }
        }
        let mut waited = vec![0u8; 100];
        assert!(read_at_if(&file, &mut waited, 40_000, Wait::Yes).unwrap());
        assert_eq!(waited, bytes[40_000..40_100]);
        assert!(read_at_if(&file, &mut waited, 64 * 1024 - 50, Wait::Yes).is_err(), "past the end");
        assert!(
            !read_at_if(&file, &mut waited, 64 * 1024 - 50, Wait::No).unwrap(),
            "a short read is left to the waiting one"
        );
    }
}
