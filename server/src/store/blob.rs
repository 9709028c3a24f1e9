//! The stored form of one block: stack ids and values as compact columns.
//!
//! ```text
//! byte 0      0 = plain, 1 = zstd-compressed remainder
//! varint      version (1)
//! varint      n columns; per column: varint index into the series' sample types
//! varint      n entries
//! n varints   stack (leaf node) ids, ascending, delta-encoded
//! per column: varint gcd, then n zigzag varints of value / gcd
//! ```
//! Dividing by the column's gcd turns `cpu/nanoseconds` (a multiple of the
//! sampling period) into small sample counts; delta-encoded sorted ids take
//! one or two bytes each.

use prost::encoding::{decode_varint, encode_varint};

const VERSION: u64 = 1;
/// A decoded block never holds more entries than this (guards corrupt data).
const MAX_ENTRIES: u64 = 1 << 26;
/// A block never decompresses past this.
const MAX_PLAIN_BYTES: usize = 1 << 30;

/// One block's contents: per stack, one value per column.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Block {
    /// Series column index of each value column.
    pub columns: Vec<u32>,
    /// Leaf node ids, strictly ascending.
    pub stacks: Vec<u32>,
    /// `values[c][i]`: column `c` of stack `i`.
    pub values: Vec<Vec<i64>>,
}

/// Why stored bytes could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BlobError(String);

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Block {
    /// Encodes the block, zstd-compressing a large one (a rollup) when that
    /// saves at least a tenth.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.stacks.len() * 4);
        out.push(0);
        encode_varint(VERSION, &mut out);
        encode_varint(self.columns.len() as u64, &mut out);
        for &c in &self.columns {
            encode_varint(u64::from(c), &mut out);
        }
        encode_varint(self.stacks.len() as u64, &mut out);
        let mut prev = 0u32;
        for &s in &self.stacks {
            encode_varint(u64::from(s - prev), &mut out);
            prev = s;
        }
        for column in &self.values {
            let g = column.iter().fold(0u64, |g, v| gcd(g, v.unsigned_abs()));
            encode_varint(g, &mut out);
            for &v in column {
                let scaled = if g == 0 { 0 } else { v / g as i64 };
                encode_varint(zigzag(scaled), &mut out);
            }
        }
        // Small blocks (single profiles) are mostly varints zstd cannot shrink
        // much; trying costs more CPU at ingest than it saves on disk.
        if out.len() > 4096
            && let Ok(compressed) = zstd::bulk::compress(&out[1..], 3)
            && compressed.len() + 1 < out.len() * 9 / 10
        {
            let mut z = Vec::with_capacity(compressed.len() + 1);
            z.push(1);
            z.extend_from_slice(&compressed);
            return z;
        }
        out
    }

    /// Decodes what [`Block::encode`] wrote; any inconsistency is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Block, BlobError> {
        let err = |m: &str| BlobError(m.to_owned());
        let plain;
        let mut buf: &[u8] = match bytes.first() {
            Some(0) => &bytes[1..],
            Some(1) => {
                plain = firewatch_profile::decompress(&bytes[1..], MAX_PLAIN_BYTES)
                    .map_err(|e| BlobError(e.to_string()))?;
                &plain
            }
            _ => return Err(err("unknown block encoding")),
        };
        let mut next = |what: &str| {
            decode_varint(&mut buf).map_err(|_| BlobError(format!("truncated at {what}")))
        };
        if next("version")? != VERSION {
            return Err(err("unsupported block version"));
        }
        let ncols = next("column count")?;
        if ncols > 64 {
            return Err(err("too many columns"));
        }
        let mut columns = Vec::with_capacity(ncols as usize);
        for _ in 0..ncols {
            columns.push(u32::try_from(next("column")?).map_err(|_| err("column out of range"))?);
        }
        let n = next("entry count")?;
        if n > MAX_ENTRIES {
            return Err(err("too many entries"));
        }
        let mut stacks = Vec::with_capacity(n as usize);
        let mut prev = 0u64;
        for _ in 0..n {
            prev += next("stack id")?;
            stacks.push(u32::try_from(prev).map_err(|_| err("stack id out of range"))?);
        }
        let mut values = Vec::with_capacity(ncols as usize);
        for _ in 0..ncols {
            let g = next("gcd")? as i64;
            let mut column = Vec::with_capacity(n as usize);
            for _ in 0..n {
                column.push(unzigzag(next("value")?).saturating_mul(g));
            }
            values.push(column);
        }
        Ok(Block {
            columns,
            stacks,
            values,
        })
    }
}

/// Totals per series column, as stored beside a block for timelines.
pub fn encode_totals(totals: &[(u32, i64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(totals.len() * 6);
    for &(c, v) in totals {
        encode_varint(u64::from(c), &mut out);
        encode_varint(zigzag(v), &mut out);
    }
    out
}

/// Reads [`encode_totals`]: the total of `column`, `None` if the block
/// has no such column. Stops quietly at the first malformed byte.
pub fn total_of(mut bytes: &[u8], column: u32) -> Option<i64> {
    while !bytes.is_empty() {
        let (Ok(c), Ok(v)) = (decode_varint(&mut bytes), decode_varint(&mut bytes)) else {
            break;
        };
        if c == u64::from(column) {
            return Some(unzigzag(v));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_plain_and_compressed() {
        let small = Block {
            columns: vec![0, 1],
            stacks: vec![3, 7, 8],
            values: vec![vec![1, 2, 3], vec![10_101_010, 20_202_020, -30_303_030]],
        };
        let bytes = small.encode();
        assert_eq!(bytes[0], 0);
        assert_eq!(Block::decode(&bytes).unwrap(), small);
        let big = Block {
            columns: vec![0],
            stacks: (0..5000).map(|i| i * 3).collect(),
            values: vec![(0..5000).map(|i| (i % 7) * 5).collect()],
        };
        let bytes = big.encode();
        assert_eq!(bytes[0], 1);
        assert_eq!(Block::decode(&bytes).unwrap(), big);
    }

    #[test]
    fn gcd_scaling_keeps_values_small() {
        let b = Block {
            columns: vec![1],
            stacks: (1..=300).collect(),
            values: vec![(1..=300).map(|i| (i % 5 + 1) * 10_101_010).collect()],
        };
        // 300 ids (1 byte each) + 300 values (1 byte each) + header.
        assert!(b.encode().len() < 620, "{}", b.encode().len());
    }

    #[test]
    fn corrupt_bytes_are_errors() {
        for bad in [&[][..], &[2], &[0, 9], &[0, 1, 1, 0, 200]] {
            assert!(Block::decode(bad).is_err());
        }
    }

    #[test]
    fn totals_round_trip() {
        let t = encode_totals(&[(0, 5), (2, -9)]);
        assert_eq!(
            (total_of(&t, 0), total_of(&t, 2), total_of(&t, 1)),
            (Some(5), Some(-9), None)
        );
    }
}
