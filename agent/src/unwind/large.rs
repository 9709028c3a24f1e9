//! Frames too large for framehop's rules. framehop packs a frame's size
//! into 16 bits of 8-byte units (at most 524,280 bytes); the `.eh_frame`
//! rules of a larger frame (rustc has functions with 540 KiB of locals)
//! fail to translate and framehop falls back to frame pointers, which such
//! code does not keep: the unwind would go wrong there. These functions
//! are found once per file, by a pass over their call-frame instructions,
//! and their rules evaluated here with gimli when a walk meets them.

use std::ops::Range;

use gimli::{
    BaseAddresses, CallFrameInstruction, CfaRule, EhFrame, EhFrameOffset, LittleEndian,
    RegisterRule, UnwindContext, UnwindSection, X86_64,
};

/// Largest CFA offset framehop's rules can hold.
const FRAMEHOP_MAX_OFFSET: u64 = u16::MAX as u64 * 8;

/// The rule of one large frame at one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LargeRule {
    /// The CFA is BP plus the offset (else SP plus it).
    pub from_bp: bool,
    /// The CFA's offset from SP or BP.
    pub offset: i64,
    /// Where the caller's BP is saved, relative to the CFA, if it is.
    pub bp_at: Option<i64>,
}

/// The functions of one `.eh_frame` whose CFA offset exceeds framehop's
/// limit: their address ranges (file virtual addresses, sorted) and the
/// offsets of their FDEs.
#[derive(Default)]
pub struct LargeFrames {
    fdes: Vec<(Range<u64>, usize)>,
}

fn bases(eh_frame_svma: u64, text_svma: Option<u64>) -> BaseAddresses {
    let b = BaseAddresses::default().set_eh_frame(eh_frame_svma);
    match text_svma {
        Some(t) => b.set_text(t),
        None => b,
    }
}

impl LargeFrames {
    /// Scans `eh_frame` (loaded at `eh_frame_svma`) for large frames.
    pub fn scan(eh_frame: &[u8], eh_frame_svma: u64, text_svma: Option<u64>) -> LargeFrames {
        let section = EhFrame::new(eh_frame, LittleEndian);
        let bases = bases(eh_frame_svma, text_svma);
        let mut fdes = Vec::new();
        let mut entries = section.entries(&bases);
        while let Ok(Some(entry)) = entries.next() {
            let gimli::CieOrFde::Fde(partial) = entry else {
                continue;
            };
            let Ok(fde) = partial.parse(EhFrame::cie_from_offset) else {
                continue;
            };
            let mut instructions = fde.instructions(&section, &bases);
            let mut large = false;
            while let Ok(Some(i)) = instructions.next() {
                let offset = match i {
                    CallFrameInstruction::DefCfa { offset, .. }
                    | CallFrameInstruction::DefCfaOffset { offset } => offset,
                    CallFrameInstruction::DefCfaSf {
                        factored_offset, ..
                    }
                    | CallFrameInstruction::DefCfaOffsetSf { factored_offset } => {
                        factored_offset.unsigned_abs().saturating_mul(8)
                    }
                    _ => 0,
                };
                if offset > FRAMEHOP_MAX_OFFSET {
                    large = true;
                    break;
                }
            }
            let start = fde.initial_address();
            if large {
                fdes.push((start..start.saturating_add(fde.len()), fde.offset()));
            }
        }
        fdes.sort_by_key(|(r, _)| r.start);
        LargeFrames { fdes }
    }

    /// True when no function of the file has a large frame.
    pub fn is_empty(&self) -> bool {
        self.fdes.is_empty()
    }

    /// The rule at `svma` (a file virtual address), when it lies in a
    /// function with a large frame and the rule is one this can apply.
    pub fn rule(
        &self,
        eh_frame: &[u8],
        eh_frame_svma: u64,
        text_svma: Option<u64>,
        svma: u64,
    ) -> Option<LargeRule> {
        let i = self.fdes.partition_point(|(r, _)| r.start <= svma);
        let (range, offset) = self.fdes.get(i.checked_sub(1)?)?;
        if svma >= range.end {
            return None;
        }
        let section = EhFrame::new(eh_frame, LittleEndian);
        let bases = bases(eh_frame_svma, text_svma);
        let fde = section
            .fde_from_offset(&bases, EhFrameOffset(*offset), EhFrame::cie_from_offset)
            .ok()?;
        // Allocates (gimli's row stack): only for frames of these functions.
        let mut ctx = UnwindContext::new();
        let row = fde
            .unwind_info_for_address(&section, &bases, &mut ctx, svma)
            .ok()?;
        let (from_bp, offset) = match *row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } if register == X86_64::RSP => {
                (false, offset)
            }
            CfaRule::RegisterAndOffset { register, offset } if register == X86_64::RBP => {
                (true, offset)
            }
            _ => return None,
        };
        let bp_at = match row.register(X86_64::RBP) {
            Some(RegisterRule::Offset(o)) => Some(o),
            Some(RegisterRule::Undefined | RegisterRule::SameValue) | None => None,
            Some(_) => return None,
        };
        match row.register(X86_64::RA) {
            Some(RegisterRule::Offset(-8)) | None => {}
            Some(_) => return None,
        }
        Some(LargeRule {
            from_bp,
            offset,
            bp_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_frames_are_left_to_framehop() {
        let exe = std::fs::read("/proc/self/exe").expect("own executable");
        let elf = object::read::elf::ElfFile64::<object::Endianness>::parse(&*exe).expect("elf");
        use object::{Object, ObjectSection};
        let s = elf.section_by_name(".eh_frame").expect(".eh_frame");
        let text = elf.section_by_name(".text").map(|t| t.address());
        let data = s.data().expect("bytes");
        let large = LargeFrames::scan(data, s.address(), text);
        assert!(large.is_empty(), "{:?}", large.fdes);
    }
}
