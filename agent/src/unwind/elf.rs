//! Executable files as the unwinder reads them: each is memory-mapped once
//! ([`ElfImage`]); its `.eh_frame`/`.eh_frame_hdr` sections are handed to
//! framehop as slices of that mapping, never copied. The image also knows
//! where its thread and process entry functions are (a stack that ends
//! there is complete) and reads its own code to tell a return address from
//! data (the byte before it ends a call instruction).

use std::fs::File;
use std::ops::{Deref, Range};
use std::sync::Arc;

use framehop::ExplicitModuleSectionInfo;
use object::read::elf::ElfFile64;
use object::{Object, ObjectSection, ObjectSegment};

use super::large::{LargeFrames, LargeRule};

/// The bytes of an ELF image: a read-only file mapping, or a copy (the vDSO).
pub enum Backing {
    /// A private read-only mapping of the file.
    Map(memmap2::Mmap),
    /// Bytes copied from memory.
    Owned(Box<[u8]>),
}

impl Deref for Backing {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Backing::Map(m) => m,
            Backing::Owned(b) => b,
        }
    }
}

/// A section of an [`ElfImage`], as framehop wants it: cheap to clone, derefs to bytes.
#[derive(Clone)]
pub struct SectionBytes {
    backing: Arc<Backing>,
    range: Range<usize>,
}

impl Deref for SectionBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.backing.get(self.range.clone()).unwrap_or(&[])
    }
}

#[derive(Clone, Debug)]
struct Section {
    svma: Range<u64>,
    file: Range<usize>,
}

/// A loadable segment: where its bytes sit in the file and in the file's
/// own virtual address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadSegment {
    /// File offset of its first byte (`p_offset`).
    pub offset: u64,
    /// Virtual address of its first byte as the file states it (`p_vaddr`).
    pub vaddr: u64,
    /// Bytes it takes in the file (`p_filesz`).
    pub filesz: u64,
    exec: bool,
}

/// Mappings start on page boundaries; segments need not.
const PAGE: u64 = 4096;

/// What the unwinder needs from one executable file, parsed once per file.
pub struct ElfImage {
    backing: Arc<Backing>,
    eh_frame: Option<Section>,
    eh_frame_hdr: Option<Section>,
    debug_frame: Option<Section>,
    got: Option<Range<u64>>,
    text: Option<Range<u64>>,
    segments: Vec<LoadSegment>,
    /// Virtual address ranges of the functions a thread or process starts
    /// in, sorted: nothing calls them, so a stack that reaches one is whole.
    entries: Vec<Range<u64>>,
    /// Functions whose frames framehop's rules cannot hold.
    large: LargeFrames,
    /// The GNU build ID, if the file has one.
    pub build_id: Option<Vec<u8>>,
    /// Size of the DWARF sections, uncompressed.
    pub debug_bytes: u64,
}

impl ElfImage {
    /// Maps and parses a file; `None` if it is not a 64-bit ELF file.
    pub fn from_file(file: &File) -> Option<ElfImage> {
        // SAFETY: the mapping is read-only and private. A file truncated
        // underneath us could fault; executables are replaced, not rewritten,
        // by package managers and linkers, which is the risk every profiler
        // and debugger reading mapped executables takes.
        let map = unsafe { memmap2::Mmap::map(file) }.ok()?;
        ElfImage::parse(Arc::new(Backing::Map(map)))
    }

    /// Parses an image already in memory (the vDSO).
    pub fn from_bytes(bytes: Box<[u8]>) -> Option<ElfImage> {
        ElfImage::parse(Arc::new(Backing::Owned(bytes)))
    }

    fn parse(backing: Arc<Backing>) -> Option<ElfImage> {
        let elf = ElfFile64::<object::Endianness>::parse(&**backing).ok()?;
        let section = |name: &str| {
            let s = elf.section_by_name(name)?;
            let (offset, size) = s.file_range()?;
            let start = usize::try_from(offset).ok()?;
            let end = start.checked_add(usize::try_from(size).ok()?)?;
            (end <= backing.len()).then_some(Section {
                svma: s.address()..s.address().saturating_add(s.size()),
                file: start..end,
            })
        };
        let svma = |name: &str| {
            elf.section_by_name(name)
                .map(|s| s.address()..s.address().saturating_add(s.size()))
        };
        let segments = elf
            .segments()
            .map(|s| {
                let (offset, filesz) = s.file_range();
                let exec = match s.flags() {
                    object::SegmentFlags::Elf { p_flags } => p_flags & object::elf::PF_X != 0,
                    _ => false,
                };
                LoadSegment {
                    offset,
                    vaddr: s.address(),
                    filesz,
                    exec,
                }
            })
            .collect();
        let build_id = elf.build_id().ok().flatten().map(<[u8]>::to_vec);
        let debug_bytes = elf
            .sections()
            .filter(|s| {
                s.name()
                    .is_ok_and(|n| n.starts_with(".debug_") || n.starts_with(".zdebug_"))
            })
            .map(|s| {
                s.compressed_file_range()
                    .map(|r| r.uncompressed_size)
                    .unwrap_or_else(|_| s.size())
            })
            .fold(0u64, u64::saturating_add);
        let eh_frame_hdr = section(".eh_frame_hdr");
        let entries = entry_ranges(
            &elf,
            eh_frame_hdr
                .as_ref()
                .and_then(|h| Some((h.svma.start, backing.get(h.file.clone())?))),
        );
        let eh_frame = section(".eh_frame");
        let text = svma(".text");
        let large = eh_frame
            .as_ref()
            .and_then(|s| Some((s.svma.start, backing.get(s.file.clone())?)))
            .map(|(at, bytes)| LargeFrames::scan(bytes, at, text.as_ref().map(|t| t.start)))
            .unwrap_or_default();
        if let Backing::Map(map) = &*backing {
            // Parsing read the symbol table and the scan all of `.eh_frame`;
            // the walks need few of those pages again.
            // SAFETY: the mapping is read-only: dropping its pages loses
            // nothing, they are read back from the file when needed.
            let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        }
        Some(ElfImage {
            eh_frame,
            eh_frame_hdr,
            debug_frame: section(".debug_frame"),
            got: svma(".got"),
            text,
            segments,
            entries,
            large,
            build_id,
            debug_bytes,
            backing,
        })
    }

    /// The image's bytes (for symbolizing the vDSO from memory).
    pub fn bytes(&self) -> &[u8] {
        &self.backing
    }

    /// The file's loadable segments, in file order.
    pub fn load_segments(&self) -> &[LoadSegment] {
        &self.segments
    }

    /// The virtual address (as stated in the file) of a file offset.
    pub fn offset_to_svma(&self, offset: u64) -> u64 {
        self.segments
            .iter()
            .find(|s| offset >= s.offset && offset < s.offset.saturating_add(s.filesz))
            .map(|s| s.vaddr.wrapping_add(offset - s.offset))
            .unwrap_or(offset)
    }

    /// True when the code at `offset` (a file offset) belongs to a function
    /// a thread or process starts in: `_start` (the executable's entry, or
    /// the dynamic loader's, which has no unwind information), `clone`,
    /// `clone3`, `start_thread`.
    pub fn is_entry(&self, offset: u64) -> bool {
        let svma = self.offset_to_svma(offset);
        let i = self.entries.partition_point(|r| r.start <= svma);
        i.checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .is_some_and(|r| svma < r.end)
    }

    /// The rule of the frame at `offset` (a file offset) when its function's
    /// frame is too large for framehop's rules ([`super::large`]).
    pub fn large_frame_rule(&self, offset: u64) -> Option<LargeRule> {
        if self.large.is_empty() {
            return None;
        }
        let eh = self.eh_frame.as_ref()?;
        let bytes = self.backing.get(eh.file.clone())?;
        let text = self.text.as_ref().map(|t| t.start);
        self.large
            .rule(bytes, eh.svma.start, text, self.offset_to_svma(offset))
    }

    /// True when the bytes right before `offset` (a file offset, where a
    /// return address points) end a call instruction: a direct `call rel32`
    /// or an indirect `call r/m64`, with or without a prefix. A value that
    /// fails this is not a return address, whatever the stack says.
    pub fn follows_call(&self, offset: u64) -> bool {
        let Ok(end) = usize::try_from(offset) else {
            return false;
        };
        let Some(code) = end.checked_sub(8).and_then(|s| self.backing.get(s..end)) else {
            return false;
        };
        ends_with_call(code)
    }

    /// Function symbols (dynamic and static): start address, size, name;
    /// sorted by address. Used for the vDSO, which has no file to hand to
    /// the symbolizer.
    pub fn function_symbols(&self) -> Vec<(u64, u64, String)> {
        use object::{ObjectSymbol, SymbolKind};
        let Ok(elf) = ElfFile64::<object::Endianness>::parse(&**self.backing) else {
            return Vec::new();
        };
        let mut out: Vec<(u64, u64, String)> = elf
            .dynamic_symbols()
            .chain(elf.symbols())
            .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
            .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_owned())))
            .collect();
        out.sort();
        out.dedup_by_key(|s| s.0);
        out
    }

    /// The file offset of a function the dynamic symbol table exports
    /// (`malloc` in libc): where a uprobe goes. The symbol's address minus
    /// its segment's address, plus the segment's file offset.
    pub fn exported_function_offset(&self, name: &str) -> Option<u64> {
        use object::{ObjectSymbol, SymbolKind};
        let elf = ElfFile64::<object::Endianness>::parse(&**self.backing).ok()?;
        let addr = elf
            .dynamic_symbols()
            .find(|s| s.is_definition() && s.kind() == SymbolKind::Text && s.name() == Ok(name))?
            .address();
        let segment = self
            .segments
            .iter()
            .find(|s| s.exec && addr >= s.vaddr && addr - s.vaddr < s.filesz)?;
        Some(addr - segment.vaddr + segment.offset)
    }

    /// The load bias of a mapping of this file: the address where virtual
    /// address 0 of the file would be, given the mapping's start and file offset.
    pub fn bias(&self, start: u64, pgoff: u64) -> u64 {
        // The segment this mapping was made for: its page-aligned file range
        // covers `pgoff`; executable segments first, as the agent only
        // tracks executable mappings.
        let covers = |s: &&LoadSegment| {
            pgoff >= s.offset & !(PAGE - 1) && pgoff < s.offset.saturating_add(s.filesz.max(1))
        };
        let segment = self
            .segments
            .iter()
            .filter(covers)
            .find(|s| s.exec)
            .or_else(|| self.segments.iter().find(covers));
        // Virtual address of the mapping's first byte; p_vaddr and p_offset
        // are congruent modulo the page size, so this is exact.
        let svma = match segment {
            Some(s) => s.vaddr.wrapping_sub(s.offset).wrapping_add(pgoff),
            None => pgoff,
        };
        start.wrapping_sub(svma)
    }

    /// A framehop module for a mapping `start..end` at file offset `pgoff`.
    pub fn module(
        &self,
        name: &str,
        start: u64,
        end: u64,
        pgoff: u64,
    ) -> framehop::Module<SectionBytes> {
        let bytes = |s: &Option<Section>| {
            s.as_ref().map(|s| SectionBytes {
                backing: Arc::clone(&self.backing),
                range: s.file.clone(),
            })
        };
        let info = ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: self.text.clone(),
            got_svma: self.got.clone(),
            eh_frame_svma: self.eh_frame.as_ref().map(|s| s.svma.clone()),
            eh_frame: bytes(&self.eh_frame),
            eh_frame_hdr_svma: self.eh_frame_hdr.as_ref().map(|s| s.svma.clone()),
            eh_frame_hdr: bytes(&self.eh_frame_hdr),
            debug_frame: bytes(&self.debug_frame),
            stubs_svma: None,
            stub_helper_svma: None,
            text: None,
            unwind_info: None,
            text_segment_svma: None,
            text_segment: None,
        };
        framehop::Module::new(name.to_owned(), start..end, self.bias(start, pgoff), info)
    }
}

/// Symbols of the functions threads and processes start in, as glibc, musl
/// and the dynamic loader name them.
const ENTRY_SYMBOLS: &[&str] = &[
    "_start",
    "__clone",
    "clone",
    "__clone3",
    "clone3",
    "start_thread",
    "_dl_start_user",
];

/// The longest an entry function found without a symbol or an unwind
/// table entry is taken to be.
const MAX_ENTRY_BYTES: u64 = 256;

/// The ranges of the entry functions: those named by [`ENTRY_SYMBOLS`], and
/// the function at the ELF entry point, which ends where the next function
/// starts (the next symbol or unwind table entry; the dynamic loader's
/// `_start` has neither a symbol nor an unwind entry of its own).
fn entry_ranges(
    elf: &ElfFile64<'_, object::Endianness>,
    eh_frame_hdr: Option<(u64, &[u8])>,
) -> Vec<Range<u64>> {
    use object::{ObjectSymbol, SymbolKind};
    let mut starts: Vec<u64> = Vec::new();
    let mut out: Vec<Range<u64>> = Vec::new();
    for s in elf.symbols().chain(elf.dynamic_symbols()) {
        if s.kind() != SymbolKind::Text || s.address() == 0 {
            continue;
        }
        starts.push(s.address());
        if s.size() > 0 && s.name().is_ok_and(|n| ENTRY_SYMBOLS.contains(&n)) {
            out.push(s.address()..s.address().saturating_add(s.size()));
        }
    }
    let entry = elf.entry();
    if entry != 0 {
        let next_symbol = starts.iter().copied().filter(|&a| a > entry).min();
        let next_fde = eh_frame_hdr.and_then(|(svma, bytes)| next_fde_start(svma, bytes, entry));
        let end = [
            next_symbol,
            next_fde,
            Some(entry.saturating_add(MAX_ENTRY_BYTES)),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(entry);
        out.push(entry..end);
    }
    out.sort_by_key(|r| r.start);
    out
}

/// The first function start after `addr` in an `.eh_frame_hdr` search table
/// at virtual address `svma`, for the encoding every toolchain writes
/// (4-byte entries relative to the section); `None` for any other.
fn next_fde_start(svma: u64, hdr: &[u8], addr: u64) -> Option<u64> {
    const UDATA4: u8 = 0x03;
    const SDATA4: u8 = 0x0b;
    const DATAREL_SDATA4: u8 = 0x3b;
    let (&version, rest) = hdr.split_first()?;
    let [ptr_enc, count_enc, table_enc] = *rest.first_chunk::<3>()?;
    if version != 1 || table_enc != DATAREL_SDATA4 || count_enc != UDATA4 {
        return None;
    }
    // The eh_frame pointer is 4 bytes in every encoding accepted here.
    if ptr_enc & 0x0f != UDATA4 && ptr_enc & 0x0f != SDATA4 {
        return None;
    }
    let word = |at: usize| -> Option<[u8; 4]> { hdr.get(at..at + 4)?.try_into().ok() };
    let count = usize::try_from(u32::from_le_bytes(word(8)?)).ok()?;
    let table = hdr.get(12..12usize.checked_add(count.checked_mul(8)?)?)?;
    let start_of = |i: usize| -> Option<u64> {
        let rel = i32::from_le_bytes(table.get(i * 8..i * 8 + 4)?.try_into().ok()?);
        Some(svma.wrapping_add_signed(i64::from(rel)))
    };
    // The table is sorted by start address.
    let (mut lo, mut hi) = (0, count);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if start_of(mid)? <= addr {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    (lo < count).then(|| start_of(lo)).flatten()
}

/// True when `code` (the bytes before a return address, at most 8) ends
/// with `call rel32` (`E8`) or `call r/m64` (`FF /2`, any addressing form).
fn ends_with_call(code: &[u8]) -> bool {
    let n = code.len();
    if n >= 5 && code[n - 5] == 0xe8 {
        return true;
    }
    (2..=7.min(n)).any(|len| {
        let at = n - len;
        code[at] == 0xff
            && code.get(at + 1).is_some_and(|&m| (m >> 3) & 7 == 2)
            && indirect_call_len(&code[at + 1..]) == Some(len)
    })
}

/// The length of `FF /2` given the bytes after the opcode (ModRM, SIB, ...).
fn indirect_call_len(rest: &[u8]) -> Option<usize> {
    let modrm = *rest.first()?;
    let (mode, rm) = (modrm >> 6, modrm & 7);
    let sib_base_is_disp32 = || rest.get(1).is_some_and(|sib| sib & 7 == 5);
    Some(match (mode, rm) {
        (3, _) => 2,
        (0, 4) if sib_base_is_disp32() => 7,
        (0, 4) => 3,
        (0, 5) => 6,
        (0, _) => 2,
        (1, 4) => 4,
        (1, _) => 3,
        (2, 4) => 7,
        (2, _) => 6,
        _ => return None,
    })
}

/// Copies this process's vDSO: every process on the host maps the same image.
pub fn read_own_vdso() -> Option<ElfImage> {
    let base = crate::sys::vdso_base()?;
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let line = maps.lines().find(|l| l.ends_with("[vdso]"))?;
    let (range, _) = line.split_once(' ')?;
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    if start != base || end <= start || end - start > 1 << 20 {
        return None;
    }
    let len = usize::try_from(end - start).ok()?;
    // SAFETY: [start, end) is the vDSO mapping of this process, readable for
    // its whole lifetime, as /proc/self/maps and AT_SYSINFO_EHDR agree.
    let bytes = unsafe { std::slice::from_raw_parts(start as *const u8, len) };
    ElfImage::from_bytes(bytes.to_vec().into_boxed_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_executable_parses_with_unwind_sections() {
        let exe = std::env::current_exe().expect("current exe");
        let file = File::open(exe).expect("open own executable");
        let image = ElfImage::from_file(&file).expect("an ELF file");
        assert!(image.eh_frame.is_some() && image.eh_frame_hdr.is_some());
        assert!(!image.segments.is_empty());
    }

    #[test]
    fn exported_functions_have_file_offsets_in_an_executable_segment() {
        let vdso = read_own_vdso().expect("a vDSO");
        let offset = vdso
            .exported_function_offset("__vdso_clock_gettime")
            .expect("the vDSO exports clock_gettime");
        assert!(
            vdso.segments
                .iter()
                .any(|s| s.exec && offset >= s.offset && offset < s.offset + s.filesz)
        );
        assert_eq!(vdso.exported_function_offset("no_such_function"), None);
    }

    #[test]
    fn vdso_is_readable() {
        let vdso = read_own_vdso().expect("a vDSO");
        assert!(vdso.eh_frame.is_some());
        assert_eq!(&vdso.bytes()[..4], b"\x7fELF");
    }

    fn image_with(segments: Vec<LoadSegment>) -> ElfImage {
        ElfImage {
            backing: Arc::new(Backing::Owned(Box::new([]))),
            eh_frame: None,
            eh_frame_hdr: None,
            debug_frame: None,
            got: None,
            text: None,
            segments,
            entries: Vec::new(),
            large: LargeFrames::default(),
            build_id: None,
            debug_bytes: 0,
        }
    }

    #[test]
    fn bias_of_a_typical_pie_text_mapping() {
        let image = image_with(vec![
            LoadSegment {
                offset: 0,
                vaddr: 0,
                filesz: 0x1000,
                exec: false,
            },
            LoadSegment {
                offset: 0x1000,
                vaddr: 0x1000,
                filesz: 0x5000,
                exec: true,
            },
        ]);
        // Text mapped at 0x5555_5555_5000 from file offset 0x1000.
        assert_eq!(image.bias(0x5555_5555_5000, 0x1000), 0x5555_5555_4000);
    }

    #[test]
    fn bias_when_the_text_segment_is_not_page_aligned_in_the_file() {
        // As rustc/lld lay out: r-- segment [0, 0x4b90), r-x segment at file
        // offset 0x4b90, vaddr 0x5b90; the kernel maps it from page 0x4000.
        let image = image_with(vec![
            LoadSegment {
                offset: 0,
                vaddr: 0,
                filesz: 0x4b90,
                exec: false,
            },
            LoadSegment {
                offset: 0x4b90,
                vaddr: 0x5b90,
                filesz: 0x9000,
                exec: true,
            },
        ]);
        let start = 0x5555_5555_9000;
        let bias = image.bias(start, 0x4000);
        // The byte at file offset 0x4b90 is at start + 0xb90 and has vaddr 0x5b90.
        assert_eq!(start + 0xb90 - bias, 0x5b90);
    }
}
