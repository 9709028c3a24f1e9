//! Aligned text tables: numbers right-aligned under their headers, the
//! function name last and left as is (names are long and vary the most).

use std::io::{self, Write};

/// Writes `header` and `rows`, two spaces between columns; every column is
/// right-aligned to its widest cell except the last, which is not padded.
pub(crate) fn write(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths
            .iter_mut()
            .zip(row.iter().take(columns.saturating_sub(1)))
        {
            // Counted in chars, as `{:>w$}` pads, so "µs" aligns like "ms".
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            if i + 1 == columns {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:>w$}", w = widths[i]));
            }
        }
        s
    };
    writeln!(out, "{}", line(&mut header.iter().copied()))?;
    for row in rows {
        writeln!(out, "{}", line(&mut row.iter().map(String::as_str)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn aligns_all_but_the_last_column() {
        let mut out = Vec::new();
        let rows = vec![
            vec!["1".to_owned(), "10.00%".to_owned(), "main".to_owned()],
            vec!["250 µs".to_owned(), "5%".to_owned(), "x".to_owned()],
        ];
        super::write(&mut out, &["self", "self%", "function"], &rows).expect("written");
        assert_eq!(
            String::from_utf8(out).expect("UTF-8"),
            "  self   self%  function\n     1  10.00%  main\n250 µs      5%  x\n"
        );
    }
}
