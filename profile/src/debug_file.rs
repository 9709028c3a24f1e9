//! Debug files as the server files them: an ELF file's GNU build id, and
//! whether it can name functions (a symbol table or DWARF). Read through
//! a `Read + Seek` the caller opens, a page at a time: a debug file can be
//! hundreds of megabytes and only its headers and notes are read.

use std::io::{Read, Seek};

use object::read::ReadCache;
use object::{Object, ObjectSection};

/// Why a file is no debug file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DebugFileError {
    /// Not a readable ELF file.
    #[error("not an ELF file: {0}")]
    NotElf(String),
    /// The file has no GNU build id note.
    #[error("the file has no GNU build id (.note.gnu.build-id): debug files are filed by build id")]
    NoBuildId,
    /// Nothing in the file names functions.
    #[error("the file has neither a symbol table (.symtab) nor DWARF (.debug_info)")]
    NoSymbols,
}

/// The GNU build id (lowercase hex) of an ELF file that can name
/// functions: a debug file, or a binary that was not stripped.
pub fn build_id<R: Read + Seek>(file: R) -> Result<String, DebugFileError> {
    let cache = ReadCache::new(file);
    let elf = object::File::parse(&cache).map_err(|e| DebugFileError::NotElf(e.to_string()))?;
    let id = elf
        .build_id()
        .map_err(|e| DebugFileError::NotElf(format!("unreadable build id note: {e}")))?
        .ok_or(DebugFileError::NoBuildId)?;
    let names = elf.sections().any(|s| {
        s.name()
            .is_ok_and(|n| matches!(n, ".symtab" | ".debug_info" | ".zdebug_info"))
    });
    if !names {
        return Err(DebugFileError::NoSymbols);
    }
    Ok(id.iter().map(|b| format!("{b:02x}")).collect())
}
