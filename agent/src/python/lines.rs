//! Which source line a bytecode offset is on, from a code object's line
//! table: 3.8 and 3.9's `co_lnotab`, 3.10's `co_linetable` (PEP 626), and
//! 3.11+'s location table (CPython's `Objects/locations.md`). Each reads
//! at most the table and says `None` rather than guess.

/// 3.8, 3.9: the line of the instruction at byte offset `offset`.
pub fn lnotab_line(table: &[u8], first_line: i32, offset: u32) -> Option<u32> {
    let mut line = i64::from(first_line);
    let mut addr: u64 = 0;
    for pair in table.chunks_exact(2) {
        addr += u64::from(pair[0]);
        if addr > u64::from(offset) {
            break;
        }
        line += i64::from(pair[1] as i8);
    }
    u32::try_from(line).ok()
}

/// 3.10: the line of the instruction at byte offset `offset`.
pub fn pep626_line(table: &[u8], first_line: i32, offset: u32) -> Option<u32> {
    let mut computed = i64::from(first_line);
    let (mut end, mut line): (u64, Option<i64>) = (0, None);
    let mut pairs = table.chunks_exact(2);
    while end <= u64::from(offset) {
        let pair = pairs.next()?;
        end += u64::from(pair[0]);
        let delta = pair[1] as i8;
        line = match delta {
            -128 => None,
            d => {
                computed += i64::from(d);
                Some(computed)
            }
        };
    }
    line.and_then(|l| u32::try_from(l).ok())
}

/// 3.11+: the line of code unit `index`, starting from `first_line`; `None` when
/// the table has no line for it (or ends first). Reads at most the table.
pub fn line_of(table: &[u8], first_line: i32, index: u32) -> Option<u32> {
    let mut line = i64::from(first_line);
    let mut unit: u64 = 0;
    let mut i = 0;
    while let Some(&head) = table.get(i) {
        i += 1;
        if head & 0x80 == 0 {
            // Not the start of an entry: the table is not one we know.
            return None;
        }
        let code = (head >> 3) & 0xf;
        let length = u64::from(head & 7) + 1;
        let mut has_line = true;
        match code {
            // Short forms: same line, one byte of columns.
            0..=9 => i += 1,
            // One-line forms: the line moves by 0 to 2, two column bytes.
            10..=12 => {
                line += i64::from(code - 10);
                i += 2;
            }
            // No columns: a signed line delta.
            13 => line += signed(table, &mut i)?,
            // Long form: line delta, end line, start and end columns.
            14 => {
                line += signed(table, &mut i)?;
                for _ in 0..3 {
                    varint(table, &mut i)?;
                }
            }
            // No location at all.
            _ => has_line = false,
        }
        if u64::from(index) < unit + length {
            return match has_line {
                true => u32::try_from(line).ok(),
                false => None,
            };
        }
        unit += length;
    }
    None
}

fn varint(table: &[u8], i: &mut usize) -> Option<u64> {
    let mut value: u64 = 0;
    let mut shift = 0;
    loop {
        let b = *table.get(*i)?;
        *i += 1;
        value |= u64::from(b & 0x3f) << shift;
        if b & 0x40 == 0 {
            return Some(value);
        }
        shift += 6;
        if shift > 60 {
            return None;
        }
    }
}

fn signed(table: &[u8], i: &mut usize) -> Option<i64> {
    let v = varint(table, i)?;
    let magnitude = i64::try_from(v >> 1).ok()?;
    Some(if v & 1 == 1 { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_entry_form() {
        let table = [
            // 2 units, one-line form, line +1 (cols 0..4).
            0x80 | (11 << 3) | 1,
            0,
            4,
            // 1 unit, short form (same line).
            0x80,
            0x10,
            // 3 units, no-column form, line +5 (svarint 10).
            0x80 | (13 << 3) | 2,
            10,
            // 1 unit, long form, line -2 (svarint 5), then three varints.
            0x80 | (14 << 3),
            5,
            0,
            1,
            2,
            // 1 unit without a location.
            0x80 | (15 << 3),
        ];
        let at = |i| line_of(&table, 10, i);
        assert_eq!(at(0), Some(11));
        assert_eq!(at(1), Some(11));
        assert_eq!(at(2), Some(11));
        assert_eq!(at(3), Some(16));
        assert_eq!(at(5), Some(16));
        assert_eq!(at(6), Some(14));
        assert_eq!(at(7), None);
        assert_eq!(at(8), None);
    }

    #[test]
    fn reads_the_older_tables() {
        // lnotab: +6 bytes +1 line, +4 bytes -2 lines (signed).
        let lnotab = [6, 1, 4, 0xfe];
        assert_eq!(lnotab_line(&lnotab, 10, 0), Some(10));
        assert_eq!(lnotab_line(&lnotab, 10, 6), Some(11));
        assert_eq!(lnotab_line(&lnotab, 10, 9), Some(11));
        assert_eq!(lnotab_line(&lnotab, 10, 10), Some(9));
        // PEP 626: 4 bytes on +1, 2 bytes with no line, 6 bytes on +2.
        let pep626 = [4, 1, 2, 0x80, 6, 2];
        assert_eq!(pep626_line(&pep626, 10, 0), Some(11));
        assert_eq!(pep626_line(&pep626, 10, 3), Some(11));
        assert_eq!(pep626_line(&pep626, 10, 4), None);
        assert_eq!(pep626_line(&pep626, 10, 6), Some(13));
        assert_eq!(pep626_line(&pep626, 10, 12), None);
    }

    #[test]
    fn never_reads_past_a_cut_table() {
        assert_eq!(line_of(&[0x80 | (14 << 3), 0x7f], 1, 0), None);
        assert_eq!(line_of(&[0x12], 1, 0), None);
        assert_eq!(line_of(&[], 1, 0), None);
    }
}
