//! Keeping the files a query scans whole in 2 MiB pages of the page cache.
//!
//! A fresh process maps the code file it scans (208 MB at 1M chunks of 768
//! dimensions). Cached in 4 KiB pages, the kernel maps them 16 a fault:
//! about 13 ms of a query at 1M spent mapping. Cached in 2 MiB folios (on
//! Linux, where the file system caches large folios and transparent huge
//! pages are not off), each fault maps 2 MiB with one page-table entry.
//!
//! Two things decide which pages the cache holds: how a file is read back
//! after the kernel dropped it, and how it was written. Readers ask for
//! huge pages on the mapping they scan ([`advise_scanned_whole`]), so a
//! cold file is read back in 2 MiB folios. A writer appends a slot at a
//! time, which the cache keeps in small folios; so once it has synced a
//! whole 2 MiB block it wrote, it drops that block from the cache and reads
//! it back the same way ([`recache`]). Both are advice: elsewhere, or where
//! the kernel declines, files are read as before.

use std::fs::File;
use std::ops::Range;

use memmap2::Mmap;

/// The size of a huge page on x86-64 and arm64 with 4 KiB pages, and the
/// unit in which a writer re-caches a file.
pub(crate) const BLOCK: u64 = 2 << 20;

/// Asks that `map`, a file every query scans whole, be read into and
/// mapped from huge pages. Never fails: without the advice, pages are read
/// as the kernel's readahead sizes them.
pub(crate) fn advise_scanned_whole(map: &Mmap) {
    #[cfg(target_os = "linux")]
    if let Err(err) = map.advise(memmap2::Advice::HugePage) {
        tracing::debug!("no huge pages for a scanned file: {err}");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = map;
}

/// The whole blocks of a file `len` bytes long that lie at or after
/// `from` (a block boundary).
pub(crate) fn whole_blocks(from: u64, len: u64) -> Range<u64> {
    let end = len / BLOCK * BLOCK;
    from..end.max(from)
}

/// Drops `range` (whole blocks of `file`, already synced) from the page
/// cache and reads it back into huge pages, as a reader's cold scan would.
/// Pages another process has mapped stay as they are.
#[cfg(target_os = "linux")]
pub(crate) fn recache(file: &File, range: Range<u64>) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    if range.is_empty() {
        return Ok(());
    }
    let (Ok(start), Ok(len)) = (libc::off_t::try_from(range.start), libc::off_t::try_from(range.end - range.start))
    else {
        return Ok(());
    };
    // SAFETY: advice on an open descriptor; no memory is touched. Only clean
    // pages are dropped, and the caller synced the range.
    let dropped = unsafe { libc::posix_fadvise(file.as_raw_fd(), start, len, libc::POSIX_FADV_DONTNEED) };
    if dropped != 0 {
        return Err(std::io::Error::from_raw_os_error(dropped));
    }
    // The whole file is mapped so the mapping is aligned as the kernel
    // aligns a reader's; only the range is read. Huge folios are placed by
    // file offset, which the blocks' boundaries are.
    // SAFETY: the mapping is never read from this process: it only carries
    // the advice that reads the range into the page cache.
    let map = unsafe { memmap2::MmapOptions::new().map(file)? };
    let offset = usize::try_from(range.start).map_err(std::io::Error::other)?;
    let length = usize::try_from(range.end - range.start).map_err(std::io::Error::other)?;
    map.advise_range(memmap2::Advice::HugePage, offset, length)?;
    map.advise_range(memmap2::Advice::PopulateRead, offset, length)
}

/// Elsewhere the cache is left as it is.
#[cfg(not(target_os = "linux"))]
pub(crate) fn recache(_file: &File, _range: Range<u64>) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Whether and how much the kernel maps in huge pages, for tests.
    #[cfg(target_os = "linux")]
    pub(crate) mod probe {
        use std::fs::File;
        use std::path::Path;

        use memmap2::Mmap;

        use super::super::{BLOCK, advise_scanned_whole};

        /// KiB of the mapping at `map` that the kernel maps in huge pages.
        pub(crate) fn huge_mapped_kib(map: &[u8]) -> u64 {
            let start = map.as_ptr() as usize;
            let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
            let mut ours = false;
            for line in smaps.lines() {
                if let Some((range, _)) = line.split_once(' ')
                    && let Some((from, _)) = range.split_once('-')
                    && let Ok(from) = usize::from_str_radix(from, 16)
                {
                    ours = from == start;
                } else if ours && let Some(kib) = line.strip_prefix("FilePmdMapped:") {
                    return kib.trim().trim_end_matches("kB").trim().parse().unwrap();
                }
            }
            0
        }

        /// Touches every page of `map` and says how much of it the kernel
        /// mapped in huge pages.
        pub(crate) fn scanned_in_huge_pages(map: &[u8]) -> u64 {
            let sum: u64 = map.iter().step_by(4096).map(|&b| u64::from(b)).sum();
            std::hint::black_box(sum);
            huge_mapped_kib(map)
        }

        /// Maps `path` as a reader does and scans it.
        pub(crate) fn file_scanned_in_huge_pages(path: &Path) -> u64 {
            // SAFETY: a test's own file, not changed while mapped.
            let map = unsafe { Mmap::map(&File::open(path).unwrap()) }.unwrap();
            advise_scanned_whole(&map);
            scanned_in_huge_pages(&map)
        }

        /// Whether the kernel caches files of `dir`'s file system in huge
        /// pages: a file written in whole blocks is mapped in them.
        pub(crate) fn supported_in(dir: &Path) -> bool {
            let path = dir.join("huge-page-probe");
            std::fs::write(&path, vec![7u8; (2 * BLOCK) as usize]).unwrap();
            let supported = file_scanned_in_huge_pages(&path) > 0;
            std::fs::remove_file(&path).unwrap();
            supported
        }
    }

    #[test]
    fn only_whole_blocks_from_the_start_are_taken() {
        assert_eq!(whole_blocks(0, BLOCK - 1), 0..0);
        assert_eq!(whole_blocks(0, BLOCK), 0..BLOCK);
        assert_eq!(whole_blocks(BLOCK, 3 * BLOCK + 5), BLOCK..3 * BLOCK);
        assert!(whole_blocks(2 * BLOCK, BLOCK).is_empty(), "a file shorter than the start");
    }

    /// Where the kernel caches this file system's files in huge pages, a
    /// file written a slot at a time is scanned in small pages until it is
    /// re-cached, and in huge pages after.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_written_in_small_pieces_is_scanned_in_huge_pages_once_recached() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..(4 * BLOCK) as usize).map(|i| (i % 251) as u8).collect();
        let supported = probe::supported_in(dir.path());
        let path = dir.path().join("codes");
        let file = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path).unwrap();
        for (i, slot) in bytes.chunks(208).enumerate() {
            file.write_all_at(slot, i as u64 * 208).unwrap();
        }
        file.sync_all().unwrap();
        assert_eq!(probe::file_scanned_in_huge_pages(&path), 0, "written a slot at a time: small pages");
        recache(&file, whole_blocks(BLOCK, bytes.len() as u64)).unwrap();
        let huge = probe::file_scanned_in_huge_pages(&path);
        if supported {
            assert_eq!(huge, 3 * BLOCK / 1024, "the three re-cached blocks, not the first");
        } else {
            eprintln!("this kernel or file system caches no huge pages here: checked the bytes only");
        }
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }
}
