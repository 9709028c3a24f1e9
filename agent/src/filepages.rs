//! Pages of the files the agent maps only to read them (executables and
//! libraries of the processes it profiles, mapped whole by its unwinder and
//! by blazesym) are handed back after each window.
//!
//! Reading rustc's 150 MB driver library for its unwind tables and symbols
//! touches tens of MiB of it; those pages count in the agent's resident
//! memory as long as they stay mapped, though the kernel could drop them at
//! any time (they are clean, and in the page cache). `MADV_DONTNEED` drops
//! them from the agent's mappings now; the next read faults them back from
//! the page cache, without I/O. Only whole-file, read-only
//! mappings of files the process does not also execute are touched: never
//! the segments the dynamic loader mapped (a library's relocated read-only
//! data is private dirty memory, which this would discard).

use hashbrown::HashSet;

/// One line of `/proc/self/maps`.
struct MapLine<'a> {
    start: u64,
    end: u64,
    perms: &'a str,
    offset: u64,
    inode: (&'a str, u64),
    path: &'a str,
}

fn parse(line: &str) -> Option<MapLine<'_>> {
    let mut f = line.split_ascii_whitespace();
    let (start, end) = f.next()?.split_once('-')?;
    let perms = f.next()?;
    let offset = u64::from_str_radix(f.next()?, 16).ok()?;
    let dev = f.next()?;
    let inode = f.next()?.parse().ok()?;
    let path = f.next().unwrap_or("");
    Some(MapLine {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        perms,
        offset,
        inode: (dev, inode),
        path,
    })
}

/// The ranges of `maps` (the text of `/proc/self/maps`) this would drop,
/// given each path's file size.
fn droppable(maps: &str, file_len: impl Fn(&str) -> Option<u64>) -> Vec<(u64, u64)> {
    let lines: Vec<MapLine<'_>> = maps.lines().filter_map(parse).collect();
    let executed: HashSet<(&str, u64)> = lines
        .iter()
        .filter(|m| m.perms.contains('x'))
        .map(|m| m.inode)
        .collect();
    lines
        .iter()
        .filter(|m| {
            // Shared or private: read-only either way (a shared mapping's
            // pages are the page cache's own).
            (m.perms == "r--p" || m.perms == "r--s")
                && m.offset == 0
                && m.inode.1 != 0
                && m.path.starts_with('/')
                && !executed.contains(&m.inode)
                && file_len(m.path).is_some_and(|len| len > 0 && m.end - m.start >= len)
        })
        .map(|m| (m.start, m.end - m.start))
        .collect()
}

/// Drops this process's pages of whole files it maps only to read them;
/// returns the bytes of the ranges advised.
pub fn drop_read_only_file_pages() -> u64 {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return 0;
    };
    let ranges = droppable(&maps, |path| std::fs::metadata(path).ok().map(|m| m.len()));
    let mut bytes = 0;
    for (start, len) in ranges {
        // A whole read-only file mapping of this process (never written
        // privately, so nothing is lost: its pages come back from the
        // file), not one the dynamic loader made.
        if crate::sys::drop_file_pages(start, len) {
            bytes += len;
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_read_only_files_not_executed() {
        let maps = "\
7f0000000000-7f0000003000 r--p 00000000 fe:00 11 /data/whole.so
7f0000010000-7f0000011000 r--p 00000000 fe:00 12 /usr/lib/libc.so.6
7f0000011000-7f0000020000 r-xp 00001000 fe:00 12 /usr/lib/libc.so.6
7f0000030000-7f0000031000 r--p 00000000 fe:00 13 /data/part.so
7f0000040000-7f0000041000 rw-p 00000000 fe:00 14 /data/written
7f0000050000-7f0000051000 r--p 00000000 00:00 0 [vvar]
7f0000060000-7f0000061000 r--s 00000000 fe:00 15 /data/shared.map
";
        let len = |path: &str| match path {
            "/data/whole.so" => Some(0x2800),
            "/usr/lib/libc.so.6" => Some(0x900),
            "/data/part.so" => Some(0x5000),
            _ => Some(0x1000),
        };
        assert_eq!(
            droppable(maps, len),
            vec![(0x7f00_0000_0000, 0x3000), (0x7f00_0006_0000, 0x1000)]
        );
    }

    /// `Rss` of the mapping starting at `start`, from `/proc/self/smaps`.
    fn resident_kib(start: u64) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let head = format!("{start:x}-");
        let block = smaps.split_once(&head).map(|(_, rest)| rest).unwrap_or("");
        block
            .lines()
            .find_map(|l| l.strip_prefix("Rss:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn dropped_pages_read_back_unchanged() {
        let path = std::env::temp_dir().join(format!("fw-filepages-{}", std::process::id()));
        let data: Vec<u8> = (0..(256u32 << 10)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: a read-only map of a file this test owns.
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        assert_eq!(&map[..], &data[..]);
        let before = resident_kib(map.as_ptr() as u64);
        assert!(drop_read_only_file_pages() >= data.len() as u64);
        let after = resident_kib(map.as_ptr() as u64);
        assert!(
            before >= 200 && after < before / 2,
            "{before} KiB -> {after} KiB"
        );
        assert_eq!(&map[..], &data[..]);
        drop(map);
        std::fs::remove_file(&path).unwrap();
    }
}
