//! The kernel's function symbols, from `/proc/kallsyms`.
//!
//! Read once per symbolizer, keeping only function symbols, as sorted
//! addresses and one buffer of names: the kernel formats its 120 k lines
//! whoever reads them (that part of the cost is fixed), but a line-by-line
//! reader with a string per symbol doubled it. The table remembers which
//! modules were loaded where, so that the symbolizer reads it again when a
//! module comes or goes (their symbols move).

use std::io::Read;

/// Longest symbol name the kernel prints (`KSYM_NAME_LEN`); longer ones mark
/// a file that is not kallsyms.
const MAX_NAME: usize = 512;
/// Most symbols kept: a kernel has a few hundred thousand with modules.
const MAX_SYMBOLS: usize = 4 << 20;
/// Bytes read per `read` call.
const CHUNK: usize = 256 << 10;

/// Kernel function symbols sorted by address.
pub struct Kallsyms {
    addrs: Vec<u64>,
    // Ends of each name in `names` (the start is the previous end).
    ends: Vec<u32>,
    // Checked as UTF-8 when looked up, not for every symbol read.
    names: Vec<u8>,
    modules: u64,
}

impl Kallsyms {
    /// Reads `/proc/kallsyms`; `None` when it cannot be read or shows no
    /// addresses (`kernel.kptr_restrict`, or a reader without CAP_SYSLOG).
    pub fn load() -> Option<Kallsyms> {
        // Before the symbols: a module loaded in between makes the table
        // look stale, not current.
        let modules = loaded_modules();
        let file = match std::fs::File::open("/proc/kallsyms") {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read /proc/kallsyms");
                return None;
            }
        };
        let k = Kallsyms::read(file).map(|k| Kallsyms { modules, ..k });
        if k.is_none() {
            tracing::debug!("/proc/kallsyms shows no kernel addresses");
        }
        k
    }

    /// Parses kallsyms text from `r`; `None` if it holds no function with a
    /// non-zero address.
    fn read(mut r: impl Read) -> Option<Kallsyms> {
        let mut k = Kallsyms {
            addrs: Vec::new(),
            ends: Vec::new(),
            names: Vec::new(),
            modules: 0,
        };
        let mut buf = vec![0u8; CHUNK];
        let mut filled = 0;
        let mut sorted = true;
        loop {
            let n = match r.read(&mut buf[filled..]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "reading /proc/kallsyms");
                    break;
                }
            };
            let eof = n == 0;
            filled += n;
            let upto = match eof {
                true => filled,
                false => memchr::memrchr(b'\n', &buf[..filled]).map_or(0, |i| i + 1),
            };
            let mut rest = &buf[..upto];
            while !rest.is_empty() {
                // One search finds the end of the name: a tab before the
                // module, or the end of the line.
                let (name_end, line_end) = match memchr::memchr2(b'\t', b'\n', rest) {
                    Some(i) if rest[i] == b'\t' => (
                        i,
                        memchr::memchr(b'\n', &rest[i..]).map_or(rest.len(), |j| i + j),
                    ),
                    Some(i) => (i, i),
                    None => (rest.len(), rest.len()),
                };
                sorted &= k.push(&rest[..name_end]);
                rest = rest.get(line_end + 1..).unwrap_or_default();
            }
            if eof || k.addrs.len() >= MAX_SYMBOLS {
                break;
            }
            buf.copy_within(upto..filled, 0);
            filled -= upto;
            if filled == buf.len() {
                // A line longer than a chunk: not kallsyms.
                return None;
            }
        }
        if k.addrs.is_empty() {
            return None;
        }
        if !sorted {
            k.sort();
        }
        k.addrs.shrink_to_fit();
        k.ends.shrink_to_fit();
        k.names.shrink_to_fit();
        Some(k)
    }

    /// Adds one `ADDR TYPE NAME` (a line without its module) if it is a
    /// function; returns false if it breaks the address order.
    fn push(&mut self, line: &[u8]) -> bool {
        // 64-bit kernels print 16 digits; anything else takes the search.
        let sp = match line.get(16) {
            Some(b' ') => 16,
            _ => match memchr::memchr(b' ', line) {
                Some(i) => i,
                None => return true,
            },
        };
        let (Some(addr), Some([b't' | b'T' | b'w' | b'W', b' ', name @ ..])) =
            (hex(&line[..sp]), line.get(sp + 1..))
        else {
            return true;
        };
        if addr == 0 || name.is_empty() || name.len() > MAX_NAME || self.addrs.len() >= MAX_SYMBOLS
        {
            return true;
        }
        let Ok(end) = u32::try_from(self.names.len() + name.len()) else {
            return true;
        };
        let in_order = self.addrs.last().is_none_or(|&last| last <= addr);
        self.names.extend_from_slice(name);
        self.ends.push(end);
        self.addrs.push(addr);
        in_order
    }

    /// Module symbols follow the kernel's own, each module in address order
    /// but the modules in load order.
    fn sort(&mut self) {
        let mut order: Vec<u32> = (0..self.addrs.len() as u32).collect();
        order.sort_by_key(|&i| self.addrs[i as usize]);
        let mut names = Vec::with_capacity(self.names.len());
        let mut ends = Vec::with_capacity(self.ends.len());
        let mut addrs = Vec::with_capacity(self.addrs.len());
        for i in order {
            names.extend_from_slice(self.name(i as usize));
            ends.push(names.len() as u32);
            addrs.push(self.addrs[i as usize]);
        }
        (self.addrs, self.ends, self.names) = (addrs, ends, names);
    }

    fn name(&self, i: usize) -> &[u8] {
        let start = match i.checked_sub(1) {
            Some(p) => self.ends.get(p).copied().unwrap_or(0),
            None => 0,
        };
        let end = self.ends.get(i).copied().unwrap_or(start);
        self.names
            .get(start as usize..end as usize)
            .unwrap_or_default()
    }

    /// The function containing `addr`: the nearest symbol at or below it
    /// (kallsyms gives no sizes).
    pub fn find(&self, addr: u64) -> Option<&str> {
        let i = self.addrs.partition_point(|&a| a <= addr).checked_sub(1)?;
        std::str::from_utf8(self.name(i)).ok()
    }

    /// Whether modules were loaded or unloaded since the table was read.
    pub fn stale(&self) -> bool {
        loaded_modules() != self.modules
    }
}

/// Most of `/proc/modules` read: a few hundred modules take 20 KiB.
const MAX_MODULES_BYTES: u64 = 1 << 20;

/// Which modules are loaded at which addresses, as a hash of
/// `/proc/modules` without the fields that change while a module stays
/// (reference counts, users); 0 without modules.
fn loaded_modules() -> u64 {
    let mut text = Vec::new();
    if let Ok(f) = std::fs::File::open("/proc/modules") {
        let _ = f.take(MAX_MODULES_BYTES).read_to_end(&mut text);
    }
    modules_hash(&text)
}

fn modules_hash(text: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    if text.is_empty() {
        return 0;
    }
    // `NAME SIZE REFS USERS STATE ADDRESS [TAINT]`: the name and address.
    let mut h = std::hash::DefaultHasher::new();
    for line in text.split(|&b| b == b'\n') {
        let mut fields = line.split(|&b| b == b' ');
        fields.next().hash(&mut h);
        fields.nth(4).hash(&mut h);
    }
    h.finish()
}

/// Values of hexadecimal digits; 0xff for any other byte.
const HEX: [u8; 256] = {
    let mut t = [0xff; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// A hexadecimal number of 1 to 16 digits, without a branch per digit.
fn hex(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let (mut n, mut bad) = (0u64, 0u8);
    for &d in digits {
        let v = HEX[usize::from(d)];
        bad |= v;
        n = n << 4 | u64::from(v & 0xf);
    }
    (bad & 0xf0 == 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "ffffffff81000000 T _stext\n\
        ffffffff81000080 T entry_SYSCALL_64\n\
        ffffffff81000100 d some_data\n\
        ffffffff81000200 t helper\n\
        ffffffffc0201000 t ftrace_trampoline\t[__builtin__ftrace]\n\
        ffffffffc0100000 t ext4_read\t[ext4]\n\
        ffffffff81000300 W weak_fn\n";

    #[test]
    fn keeps_functions_sorted_by_address() {
        let k = Kallsyms::read(TEXT.as_bytes()).expect("symbols");
        assert_eq!(k.addrs.len(), 6);
        assert_eq!(k.find(0xffff_ffff_8100_0090), Some("entry_SYSCALL_64"));
        // Data symbols are not boundaries of functions.
        assert_eq!(k.find(0xffff_ffff_8100_0150), Some("entry_SYSCALL_64"));
        assert_eq!(k.find(0xffff_ffff_8100_0300), Some("weak_fn"));
        assert_eq!(k.find(0xffff_ffff_c010_0010), Some("ext4_read"));
        assert_eq!(k.find(0xffff_ffff_c020_1000), Some("ftrace_trampoline"));
        assert_eq!(k.find(0xffff_ffff_8000_0000), None);
    }

    #[test]
    fn modules_are_told_by_name_and_address() {
        let a = b"ext4 1069056 2 - Live 0xffffffffc0500000\nvirtio_net 65536 0 - Live 0xffffffffc0100000\n";
        let busier = b"ext4 1069056 9 - Live 0xffffffffc0500000\nvirtio_net 65536 3 - Live 0xffffffffc0100000\n";
        let moved = b"ext4 1069056 2 - Live 0xffffffffc0600000\nvirtio_net 65536 0 - Live 0xffffffffc0100000\n";
        let fewer = b"ext4 1069056 2 - Live 0xffffffffc0500000\n";
        assert_eq!(modules_hash(a), modules_hash(busier));
        assert_ne!(modules_hash(a), modules_hash(moved));
        assert_ne!(modules_hash(a), modules_hash(fewer));
        assert_eq!(modules_hash(b""), 0);
    }

    #[test]
    fn hex_digits() {
        assert_eq!(hex(b"ffffffff81000000"), Some(0xffff_ffff_8100_0000));
        assert_eq!(hex(b"0A"), Some(10));
        assert_eq!(hex(b"0g"), None);
        assert_eq!(hex(b""), None);
        assert_eq!(hex(b"11111111111111111"), None);
    }

    #[test]
    fn hidden_addresses_give_nothing() {
        let text = "0000000000000000 T _stext\n0000000000000000 t helper\n";
        assert!(Kallsyms::read(text.as_bytes()).is_none());
        assert!(Kallsyms::read(&b""[..]).is_none());
    }

    #[test]
    fn survives_garbage() {
        let mut text = b"zz T x\nffffffff81000000 T ok\n\xff\xfe t \xff\n".to_vec();
        text.extend(std::iter::repeat_n(b'a', 3 * CHUNK));
        assert!(Kallsyms::read(&text[..]).is_none());
        let k = Kallsyms::read(&text[..60]).expect("the valid line");
        assert_eq!(k.find(0xffff_ffff_8100_0001), Some("ok"));
    }

    #[test]
    fn lines_split_across_reads() {
        // A reader that returns a few bytes at a time.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(out.len()).min(7);
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let k = Kallsyms::read(Trickle(TEXT.as_bytes())).expect("symbols");
        assert_eq!(k.addrs.len(), 6);
        assert_eq!(k.find(0xffff_ffff_8100_0201), Some("helper"));
    }

    #[test]
    fn reads_this_kernel() {
        // Addresses show to root unless kptr_restrict is 2.
        let restrict =
            std::fs::read_to_string("/proc/sys/kernel/kptr_restrict").unwrap_or_default();
        if !crate::sys::is_root() || restrict.trim() == "2" {
            assert!(Kallsyms::load().is_none_or(|k| !k.addrs.is_empty()));
            return;
        }
        let k = Kallsyms::load().expect("root reads kallsyms");
        assert!(k.addrs.len() > 1000, "{} symbols", k.addrs.len());
        assert!(k.addrs.windows(2).all(|w| w[0] <= w[1]));
        // The same names as blazesym's kallsyms reader, for functions alone
        // at their address (aliases may be told apart differently).
        let step = k.addrs.len() / 200;
        let picks: Vec<usize> = (1..k.addrs.len() - 1)
            .step_by(step)
            .filter(|&i| k.addrs[i - 1] < k.addrs[i] && k.addrs[i] < k.addrs[i + 1])
            .collect();
        let addrs: Vec<u64> = picks.iter().map(|&i| k.addrs[i] + 1).collect();
        let blaze = blazesym::symbolize::Symbolizer::new();
        let src =
            blazesym::symbolize::source::Source::Kernel(blazesym::symbolize::source::Kernel {
                vmlinux: blazesym::MaybeDefault::None,
                debug_syms: false,
                ..Default::default()
            });
        let theirs = blaze
            .symbolize(&src, blazesym::symbolize::Input::AbsAddr(&addrs))
            .expect("blazesym reads kallsyms");
        let mut same = 0;
        for (addr, s) in addrs.iter().zip(theirs) {
            if let Some(sym) = s.as_sym() {
                assert_eq!(k.find(*addr), Some(&*sym.name), "at {addr:#x}");
                same += 1;
            }
        }
        assert!(
            same * 10 >= addrs.len() * 9,
            "{same} of {} compared",
            addrs.len()
        );
    }
}
