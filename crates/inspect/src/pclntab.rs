//! The Go function table (pclntab): the runtime's map from program counters to functions, which
//! the linker writes into every Go executable (and keeps in those stripped with `-s -w`, since
//! the runtime needs it for stack traces). From it come the names of all functions compiled into
//! the binary, for every layout since Go 1.2, and ([`read_inlined`], Go 1.18+) of the functions
//! inlined into them, from their inline trees. The layouts follow Go's debug/gosym
//! (src/debug/gosym/pclntab.go):
//!
//! | magic        | Go          | header words after the 8-byte prefix            | functab fields |
//! |--------------|-------------|-------------------------------------------------|----------------|
//! | `0xfffffffb` | 1.2 – 1.15  | nfunctab, then the functab itself               | pointer-sized  |
//! | `0xfffffffa` | 1.16 – 1.17 | nfunctab, nfiletab, funcname, cu, file, pc, pcln offsets | pointer-sized |
//! | `0xfffffff0` | 1.18 – 1.19 | nfunctab, nfiletab, text start, then as 1.16     | 4 bytes        |
//! | `0xfffffff1` | 1.20 +      | as 1.18                                          | 4 bytes        |
//!
//! The prefix is the magic (in the binary's byte order), two zero bytes, the instruction size
//! quantum (1, 2 or 4) and the pointer size (4 or 8).

use std::collections::BTreeSet;

use crate::binary::Executable;
use crate::buildinfo::read_uint;

/// The pclntab layouts, by the Go release that introduced each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PclntabVersion {
    Go12,
    Go116,
    Go118,
    Go120,
}

/// Why a function table could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PclntabError {
    #[error("no Go function table (pclntab) found in the executable")]
    NotFound,
    #[error("the Go function table (pclntab) is malformed: {0}")]
    Malformed(&'static str),
}

/// The functions a function table lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionTable {
    /// The layout the table was written in (which Go release wrote it, roughly).
    pub version: PclntabVersion,
    /// Function names as the linker wrote them (`net/http.(*Client).Do`,
    /// `golang.org/x/text/language.Parse`, `main.main.func1`), in table (address) order.
    pub names: Vec<String>,
}

const MAGICS: [(u32, PclntabVersion); 4] = [
    (0xfffffffb, PclntabVersion::Go12),
    (0xfffffffa, PclntabVersion::Go116),
    (0xfffffff0, PclntabVersion::Go118),
    (0xfffffff1, PclntabVersion::Go120),
];

/// The layout and byte order a table's first 8 bytes announce, if they are a pclntab prefix.
fn prefix(table: &[u8]) -> Option<(PclntabVersion, bool)> {
    let head: [u8; 4] = table.get(..4)?.try_into().ok()?;
    if table.get(4..6)? != [0, 0] || ![1, 2, 4].contains(table.get(6)?) {
        return None;
    }
    if ![4, 8].contains(table.get(7)?) {
        return None;
    }
    MAGICS.iter().find_map(|&(magic, version)| {
        if u32::from_le_bytes(head) == magic {
            Some((version, false))
        } else if u32::from_be_bytes(head) == magic {
            Some((version, true))
        } else {
            None
        }
    })
}

/// A table's header, read and checked: where its parts start and how wide its fields are.
struct Layout<'a> {
    version: PclntabVersion,
    big_endian: bool,
    pointer_size: usize,
    function_count: usize,
    /// The function table: `function_count` (entry, record offset) pairs, then the end entry,
    /// each field `field` bytes wide (checked to fit).
    functab: &'a [u8],
    /// Where function records' offsets count from.
    records: &'a [u8],
    /// Where name offsets count from (funcnametab since 1.16).
    names: &'a [u8],
    /// The header words (pointer-sized, after the 8-byte prefix); index 0 is nfunctab.
    words: Vec<usize>,
    field: usize,
    /// The width of a record's entry field (a pc before 1.18, an offset since).
    entry: usize,
}

impl<'a> Layout<'a> {
    fn parse(table: &'a [u8]) -> Result<Self, PclntabError> {
        let (version, big_endian) = prefix(table).ok_or(PclntabError::NotFound)?;
        let pointer_size = usize::from(table[7]);
        let word_count = match version {
            PclntabVersion::Go12 => 1,
            PclntabVersion::Go116 => 7,
            PclntabVersion::Go118 | PclntabVersion::Go120 => 8,
        };
        let words = (0..word_count)
            .map(|index| {
                let at = 8 + index * pointer_size;
                let bytes = table
                    .get(at..at + pointer_size)
                    .ok_or(PclntabError::Malformed("the header is cut off"))?;
                usize::try_from(read_uint(bytes, pointer_size, big_endian))
                    .map_err(|_| PclntabError::Malformed("a header word does not fit in memory"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let from = |offset: usize| -> Result<&[u8], PclntabError> {
            table.get(offset..).ok_or(PclntabError::Malformed(
                "a header offset points past the end",
            ))
        };
        let function_count = words[0];
        // Where the function table starts, where function records' offsets count from, where
        // name offsets count from, and how wide the table's fields and a record's entry field
        // are.
        let (functab, records, names, field, entry) = match version {
            PclntabVersion::Go12 => {
                let functab = from(8 + pointer_size)?;
                (functab, table, table, pointer_size, pointer_size)
            }
            PclntabVersion::Go116 => (
                from(words[6])?,
                from(words[6])?,
                from(words[2])?,
                pointer_size,
                pointer_size,
            ),
            PclntabVersion::Go118 | PclntabVersion::Go120 => {
                (from(words[7])?, from(words[7])?, from(words[3])?, 4, 4)
            }
        };
        // nfunctab (pc, record offset) pairs, then the end pc.
        let functab_len = function_count
            .checked_mul(2)
            .and_then(|n| n.checked_add(1))
            .and_then(|n| n.checked_mul(field))
            .filter(|&len| len <= functab.len())
            .ok_or(PclntabError::Malformed(
                "the function count runs past the end",
            ))?;
        Ok(Layout {
            version,
            big_endian,
            pointer_size,
            function_count,
            functab: &functab[..functab_len],
            records,
            names,
            words,
            field,
            entry,
        })
    }

    fn uint(&self, bytes: &[u8], width: usize) -> u64 {
        read_uint(bytes, width, self.big_endian)
    }

    /// Function `index`'s record (from its start to the end of the table).
    fn record(&self, index: usize) -> Result<&'a [u8], PclntabError> {
        let at = (2 * index + 1) * self.field;
        let record_offset = usize::try_from(self.uint(&self.functab[at..], self.field))
            .map_err(|_| PclntabError::Malformed("a function offset does not fit in memory"))?;
        self.records
            .get(record_offset..)
            .filter(|record| record.len() >= self.entry + 4)
            .ok_or(PclntabError::Malformed(
                "a function record points past the end",
            ))
    }

    /// The NUL-terminated name at `offset` in the name table.
    fn name(&self, offset: u64) -> Result<&'a [u8], PclntabError> {
        usize::try_from(offset)
            .ok()
            .and_then(|offset| self.names.get(offset..))
            .and_then(|rest| rest.split(|&b| b == 0).next().filter(|_| rest.contains(&0)))
            .ok_or(PclntabError::Malformed(
                "a function name points past the end",
            ))
    }
}

/// Reads the function names of the pclntab starting at `table[0]` (it may run on past the
/// table's end: every offset is checked). Errors: `NotFound` when the prefix is not a pclntab's,
/// `Malformed` when an offset or count points outside `table` or a name is not terminated.
pub fn read(table: &[u8]) -> Result<FunctionTable, PclntabError> {
    let layout = Layout::parse(table)?;
    let mut out = Vec::with_capacity(layout.function_count);
    for i in 0..layout.function_count {
        // A record: the entry (pc or offset), then 4-byte fields; the name offset comes first.
        let record = layout.record(i)?;
        let name_offset = layout.uint(&record[layout.entry..], 4);
        let name = layout.name(name_offset)?;
        out.push(String::from_utf8_lossy(name).into_owned());
    }
    Ok(FunctionTable {
        version: layout.version,
        names: out,
    })
}

/// Finds and reads an executable's function table: its own section where the format gives it
/// one (ELF `.gopclntab`, Mach-O `__gopclntab`), else, as Go's tools fall back when the section
/// is gone (PIE and externally linked ELF put the table in `.data.rel.ro`; PE has no such
/// section), the first place in any section where a pclntab prefix starts a table that reads
/// whole and lists functions. Errors: `NotFound`, or the section's `Malformed`.
pub fn locate_and_read(exe: &Executable<'_>) -> Result<FunctionTable, PclntabError> {
    locate(exe).map(|(_, table)| table)
}

/// As [`locate_and_read`], also returning the table's bytes (from its first byte to the end of
/// its section), which [`read_inlined`] reads again.
pub fn locate<'data>(
    exe: &Executable<'data>,
) -> Result<(&'data [u8], FunctionTable), PclntabError> {
    for name in [".gopclntab", "__gopclntab"] {
        if let Some(section) = exe.section(name) {
            return read(section).map(|table| (section, table));
        }
    }
    for section in exe.sections() {
        for at in 0..section.len().saturating_sub(16) {
            // The magic's last three bytes are 0xff in either byte order: a cheap first test.
            if section[at + 1] != 0xff || section[at + 2] != 0xff {
                continue;
            }
            if let Ok(table) = read(&section[at..]) {
                if !table.names.is_empty() {
                    return Ok((&section[at..], table));
                }
            }
        }
    }
    Err(PclntabError::NotFound)
}

// ---- inline trees ---------------------------------------------------------------------------
//
// A function the compiler inlined into every caller has no record of its own; each caller
// lists it in its inline tree instead, which is what the runtime unwinds to print it in stack
// traces, and what govulncheck's binary mode reads to count it as called (golang.org/x/vuln
// vulncheck/internal/gosym/additions.go `InlineTree`, vulncheck/internal/binscan/scan.go at
// 4c848ed). Since Go 1.18 (runtime/runtime2.go `_func`, runtime/symtab.go):
//
// - a record is `entryoff, nameoff, args, deferreturn, pcsp, pcfile, pcln, npcdata, cuOffset`
//   (4 bytes each), `startLine` (4, since 1.20), then `funcID, flag, _, nfuncdata` (1 each): 40
//   bytes in 1.18/1.19, 44 since; then `pcdata [npcdata]uint32` (offsets into the pc-value
//   tables, header word 6; 0 = none) and `funcdata [nfuncdata]uint32` (offsets past the
//   `go:func.*` region, `moduledata.gofunc`; `^0` = none);
// - `pcdata[PCDATA_InlTreeIndex = 2]` maps pcs to tree indexes: the tree holds the maximum
//   value + 1 entries (its only length); `funcdata[FUNCDATA_InlTree = 3]` is where it starts;
// - an entry (`runtime.inlinedCall`) is, in 1.18/1.19, `parent int16, funcID uint8, _ byte,
//   file, line, func_ int32 (name offset), parentPc int32` (20 bytes); since 1.20 `funcID uint8,
//   _ [3]byte, nameOff, parentPc, startLine int32` (16 bytes). Its name is the inlined
//   function's full linker name, in the name table.
//
// Before 1.18 funcdata were pointers and the pc-value tables lay elsewhere; those layouts are
// not read (see [`read_inlined`]).

/// `PCDATA_InlTreeIndex` (cmd/internal/objabi/funcdata.go, internal/abi/symtab.go).
const PCDATA_INL_TREE_INDEX: usize = 2;
/// `FUNCDATA_InlTree`.
const FUNCDATA_INL_TREE: usize = 3;
/// More entries than any function's tree holds (a bound on what a file can make us read).
const MAX_TREE_ENTRIES: u64 = 1 << 20;

/// Where one function's inline tree lies: `offset` bytes past the start of the `go:func.*`
/// region, `count` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TreeRef {
    offset: u64,
    count: u64,
}

impl Layout<'_> {
    /// The size of a record's fixed part and the offset of its `nfuncdata` byte.
    fn record_shape(&self) -> (usize, usize) {
        if self.version >= PclntabVersion::Go120 {
            (44, 43)
        } else {
            (40, 39)
        }
    }

    /// The size of an inline tree entry and the offset of its name offset.
    fn entry_shape(&self) -> (u64, usize) {
        if self.version >= PclntabVersion::Go120 {
            (16, 4)
        } else {
            (20, 12)
        }
    }

    /// Every function's inline tree (1.18+ tables; functions without one are left out).
    fn inline_trees(&self, table: &[u8]) -> Result<Vec<TreeRef>, PclntabError> {
        let pctab = table.get(self.words[6]..).ok_or(PclntabError::Malformed(
            "the pc-value tables point past the end",
        ))?;
        let (fixed, nfuncdata_at) = self.record_shape();
        let field = |record: &[u8], at: usize| -> Result<u64, PclntabError> {
            record
                .get(at..at + 4)
                .map(|bytes| self.uint(bytes, 4))
                .ok_or(PclntabError::Malformed("a function record is cut off"))
        };
        let mut trees = Vec::new();
        for i in 0..self.function_count {
            let record = self.record(i)?;
            let npcdata = field(record, 28)?;
            let nfuncdata = u64::from(
                *record
                    .get(nfuncdata_at)
                    .ok_or(PclntabError::Malformed("a function record is cut off"))?,
            );
            if npcdata <= PCDATA_INL_TREE_INDEX as u64 || nfuncdata <= FUNCDATA_INL_TREE as u64 {
                continue;
            }
            let pcdata = field(record, fixed + 4 * PCDATA_INL_TREE_INDEX)?;
            // npcdata is at most 2^32: the offset fits.
            let funcdata_at = usize::try_from(npcdata * 4)
                .ok()
                .and_then(|n| n.checked_add(fixed + 4 * FUNCDATA_INL_TREE))
                .ok_or(PclntabError::Malformed("a function record is cut off"))?;
            let offset = field(record, funcdata_at)?;
            if pcdata == 0 || offset == u64::from(u32::MAX) {
                continue;
            }
            let values = usize::try_from(pcdata)
                .ok()
                .and_then(|at| pctab.get(at..))
                .ok_or(PclntabError::Malformed(
                    "a pc-value table points past the end",
                ))?;
            if let Some(max) = max_pc_value(values) {
                let count = u64::try_from(max)
                    .ok()
                    .and_then(|max| max.checked_add(1))
                    .filter(|&n| n <= MAX_TREE_ENTRIES)
                    .ok_or(PclntabError::Malformed("an inline tree is too large"))?;
                trees.push(TreeRef { offset, count });
            }
        }
        Ok(trees)
    }

    /// The names of the functions inlined in `trees`, reading each tree from `read_at`
    /// (`go:func.*` region offset, length → bytes), if every tree reads whole, every entry's
    /// padding is zero and its name offset the start of a name, and not every one is 0 (zeros
    /// read as entries): what tells the true `gofunc` from other addresses.
    fn inlined_names<'r>(
        &self,
        trees: &[TreeRef],
        read_at: impl Fn(u64, u64) -> Option<&'r [u8]>,
    ) -> Option<BTreeSet<String>> {
        let (size, name_at) = self.entry_shape();
        // Name offsets first: most trees name the same few functions.
        let mut offsets = BTreeSet::new();
        for tree in trees {
            let bytes = read_at(tree.offset, tree.count * size)?;
            for entry in bytes.chunks_exact(size as usize) {
                let offset = self.uint(&entry[name_at..], 4);
                // The padding byte(s) after funcID are zero in both layouts.
                let padded = if self.version >= PclntabVersion::Go120 {
                    entry[1..4] == [0, 0, 0]
                } else {
                    entry[3] == 0
                };
                let starts_a_name = offset == 0
                    || usize::try_from(offset - 1)
                        .ok()
                        .and_then(|before| self.names.get(before))
                        == Some(&0);
                if !(padded && starts_a_name) {
                    return None;
                }
                offsets.insert(offset);
            }
        }
        // Zeros read as entries naming the first name: a zero-filled region, not the trees.
        if offsets.iter().all(|&offset| offset == 0) {
            return None;
        }
        offsets
            .into_iter()
            .map(|offset| {
                let name = self.name(offset).ok()?;
                Some(String::from_utf8_lossy(name).into_owned())
            })
            .collect()
    }
}

/// The largest value of a pc-value table (runtime/symtab.go `pcvalue`: from -1, pairs of a
/// zig-zag varint value delta and a varint pc delta, ended by a zero value delta after the
/// first pair), or `None` when it never reaches 0 or is cut off before its end.
fn max_pc_value(mut table: &[u8]) -> Option<i64> {
    let mut value: i64 = -1;
    let mut max: i64 = -1;
    let mut first = true;
    loop {
        let delta = read_varint(&mut table)?;
        if delta == 0 && !first {
            break;
        }
        first = false;
        let delta = if delta & 1 != 0 {
            -((delta >> 1) as i64) - 1
        } else {
            (delta >> 1) as i64
        };
        // The runtime's values are int32: wrap as it does.
        value = i64::from((value.wrapping_add(delta)) as i32);
        read_varint(&mut table)?;
        max = max.max(value);
    }
    (max >= 0).then_some(max)
}

/// A little-endian base-128 varint of at most 32 bits, consumed from the front of `bytes`.
fn read_varint(bytes: &mut &[u8]) -> Option<u32> {
    let mut value: u32 = 0;
    for (i, &byte) in bytes.iter().enumerate().take(5) {
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Some(value);
        }
    }
    None
}

/// Why the functions inlined into a binary's functions could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InlineTreeError {
    #[error(transparent)]
    Table(#[from] PclntabError),
    #[error("inline trees are read from Go 1.18 function tables on; this one is {0:?}")]
    UnsupportedLayout(PclntabVersion),
    #[error("the go:func.* region the inline trees lie in was not found (no go:func.* symbol, and no readable moduledata pointing at it)")]
    RegionNotFound,
}

/// The full linker names (`golang.org/x/net/html.Render`, `main.(*report).add`) of the
/// functions inlined into the functions of `table` (the bytes [`locate`] returned, inside
/// `exe`), each once, sorted. The trees lie in the `go:func.*` region, found through the
/// `go:func.*` (`go.func.*` before 1.20) symbol where the symbol table is there, else through
/// the runtime's `moduledata`, whose first word points at the table and one of whose later
/// words (`gofunc`; its place moved across releases) at the region: each candidate word must
/// make every tree read whole with names that start names (Go's own linker writes
/// moduledata's pointers into the file even for PIE, where they are also relocated; a linker
/// that left them to relocations alone would give `RegionNotFound` once stripped).
///
/// Errors: `UnsupportedLayout` for tables before Go 1.18, `Table` for a malformed table,
/// `RegionNotFound` when no candidate region reads.
pub fn read_inlined(exe: &Executable<'_>, table: &[u8]) -> Result<Vec<String>, InlineTreeError> {
    let layout = Layout::parse(table)?;
    if layout.version < PclntabVersion::Go118 {
        return Err(InlineTreeError::UnsupportedLayout(layout.version));
    }
    let trees = layout.inline_trees(table)?;
    if trees.is_empty() {
        return Ok(Vec::new());
    }
    let names_at = |gofunc: u64| {
        layout.inlined_names(&trees, |offset, len| {
            exe.read_at(gofunc.checked_add(offset)?, len)
        })
    };
    // Mach-O symbol names carry a leading underscore.
    let from_symbol = ["go:func.*", "go.func.*", "_go:func.*", "_go.func.*"]
        .iter()
        .filter_map(|name| exe.symbol_address(name))
        .find_map(names_at);
    let found = from_symbol.or_else(|| {
        moduledata_words(exe, &layout, table)
            .into_iter()
            .find_map(names_at)
    });
    found
        .map(|names| names.into_iter().collect())
        .ok_or(InlineTreeError::RegionNotFound)
}

/// The words after `text` of every `moduledata` found in the file's writable data (its first
/// word is the table's address, its second the name table's), as candidates for `gofunc`.
fn moduledata_words(exe: &Executable<'_>, layout: &Layout<'_>, table: &[u8]) -> Vec<u64> {
    /// `text`'s index: `pcHeader`, six slices of three words, `findfunctab, minpc, maxpc`.
    const TEXT: usize = 22;
    /// Past the last index `gofunc` has had (43 in Go 1.27), with room for more fields.
    const END: usize = 56;
    let Some(address) = exe.address_of(table) else {
        return Vec::new();
    };
    let size = layout.pointer_size;
    let Ok(names_offset) = u64::try_from(layout.words[3]) else {
        return Vec::new();
    };
    let search = |section: &[u8], candidates: &mut Vec<u64>| {
        let mut at = 0;
        while at + END * size <= section.len() {
            let word = |index: usize| layout.uint(&section[at + index * size..], size);
            if word(0) == address && Some(word(1)) == address.checked_add(names_offset) {
                // Where `gofunc` has been first (1.18–1.19: 38; 1.20: 40; 1.27: 43, fields
                // having been added before it in between), then every other word.
                let known: &[usize] = match layout.version {
                    PclntabVersion::Go118 => &[38],
                    _ => &[40, 41, 42, 43],
                };
                candidates.extend(known.iter().map(|&index| word(index)));
                candidates.extend(
                    (TEXT + 1..END)
                        .filter(|index| !known.contains(index))
                        .map(word),
                );
            }
            at += size;
        }
    };
    // moduledata is written by the runtime (its `next` link): writable data first (ELF
    // `.noptrdata`, PE `.data`); where the format's section kinds do not say so (Mach-O's
    // `__noptrdata`), every section.
    let mut candidates = Vec::new();
    for section in exe.writable_data_sections() {
        search(section, &mut candidates);
    }
    if candidates.is_empty() {
        for section in exe.sections() {
            search(section, &mut candidates);
        }
    }
    candidates
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a pclntab of `version`'s layout listing `names` (pointer size 8 unless
    /// `pointer_size` says otherwise).
    pub(crate) fn write_table(
        version: PclntabVersion,
        big_endian: bool,
        pointer_size: usize,
        names: &[&str],
    ) -> Vec<u8> {
        let magic = MAGICS.iter().find(|(_, v)| *v == version).unwrap().0;
        let uint = |value: usize, width: usize| -> Vec<u8> {
            let bytes = if big_endian {
                (value as u64).to_be_bytes()
            } else {
                (value as u64).to_le_bytes()
            };
            if big_endian {
                bytes[8 - width..].to_vec()
            } else {
                bytes[..width].to_vec()
            }
        };
        let mut out = uint(magic as usize, 4);
        out.extend([0, 0, 1, pointer_size as u8]);
        let (field, entry) = match version {
            PclntabVersion::Go12 | PclntabVersion::Go116 => (pointer_size, pointer_size),
            _ => (4, 4),
        };
        let record_len = entry + 4 * 9;
        let mut name_table = Vec::new();
        let mut name_offsets = Vec::new();
        for name in names {
            name_offsets.push(name_table.len());
            name_table.extend(name.as_bytes());
            name_table.push(0);
        }
        let functab_len = (2 * names.len() + 1) * field;
        // Where (in the table) the function table, the records and the names go, and what the
        // header words say.
        let (functab_at, records_at, names_at, words) = if version == PclntabVersion::Go12 {
            // The function table follows nfunctab; after it, a 4-byte file table offset.
            let functab_at = 8 + pointer_size;
            let records_at = functab_at + functab_len + 4;
            let names_at = records_at + names.len() * record_len;
            (functab_at, records_at, names_at, vec![names.len()])
        } else {
            let header_words = if version == PclntabVersion::Go116 {
                7
            } else {
                8
            };
            let names_at = 8 + header_words * pointer_size;
            let functab_at = names_at + name_table.len();
            let records_at = functab_at + functab_len;
            let words = if version == PclntabVersion::Go116 {
                vec![names.len(), 0, names_at, 0, 0, 0, functab_at]
            } else {
                vec![names.len(), 0, 0x1000, names_at, 0, 0, 0, functab_at]
            };
            (functab_at, records_at, names_at, words)
        };
        // Offsets of records and names count from the table in 1.2, from the function table
        // and the name table since.
        let (record_base, name_base) = match version {
            PclntabVersion::Go12 => (0, names_at),
            _ => (functab_at, 0),
        };
        let mut functab = Vec::new();
        let mut records = Vec::new();
        for (i, offset) in name_offsets.iter().enumerate() {
            functab.extend(uint(0x1000 + 16 * i, field));
            functab.extend(uint(records_at + i * record_len - record_base, field));
            records.extend(uint(0x1000 + 16 * i, entry));
            records.extend(uint(name_base + offset, 4));
            records.extend(vec![0; 4 * 8]);
        }
        functab.extend(uint(0x1000 + 16 * names.len(), field));
        for w in words {
            out.extend(uint(w, pointer_size));
        }
        if version == PclntabVersion::Go12 {
            out.extend(functab);
            out.extend(uint(0, 4));
            out.extend(records);
            out.extend(name_table);
        } else {
            out.extend(name_table);
            out.extend(functab);
            out.extend(records);
        }
        out
    }

    const NAMES: [&str; 4] = [
        "runtime.main",
        "main.main",
        "golang.org/x/text/language.Parse",
        "net/http.(*Client).Do",
    ];

    #[test]
    fn every_layout_in_both_byte_orders_and_widths_lists_its_functions() {
        for version in [
            PclntabVersion::Go12,
            PclntabVersion::Go116,
            PclntabVersion::Go118,
            PclntabVersion::Go120,
        ] {
            for big_endian in [false, true] {
                for pointer_size in [4, 8] {
                    let table = write_table(version, big_endian, pointer_size, &NAMES);
                    let read = read(&table).unwrap_or_else(|e| {
                        panic!("{version:?} big-endian {big_endian} {pointer_size}: {e}")
                    });
                    assert_eq!(read.version, version);
                    assert_eq!(read.names, NAMES);
                }
            }
        }
    }

    #[test]
    fn a_table_cut_short_is_malformed_and_other_bytes_are_no_table() {
        let table = write_table(PclntabVersion::Go120, false, 8, &NAMES);
        // Into the header, the names, the function table, the last record's name offset.
        for cut in [10, 40, 120, table.len() - 34] {
            assert!(
                matches!(read(&table[..cut]), Err(PclntabError::Malformed(_))),
                "cut at {cut}"
            );
        }
        assert_eq!(
            read(b"\xf1\xff\xff\xff\0\0\x03\x08"),
            Err(PclntabError::NotFound)
        );
        assert_eq!(read(b"\x7fELF\x02\x01\x01\0"), Err(PclntabError::NotFound));
    }

    #[test]
    fn a_table_without_its_section_is_found_inside_another() {
        let table = write_table(PclntabVersion::Go118, false, 8, &NAMES);
        let mut rodata = vec![0xffu8; 37];
        rodata.extend(&table);
        let elf = crate::binary::write_test_elf(true, true, &[(".data.rel.ro", 0x1000, &rodata)]);
        let exe = Executable::parse(&elf).unwrap();
        assert_eq!(locate_and_read(&exe).unwrap().names, NAMES);
        let elf = crate::binary::write_test_elf(true, true, &[(".data", 0x1000, b"no table here")]);
        let exe = Executable::parse(&elf).unwrap();
        assert_eq!(locate_and_read(&exe), Err(PclntabError::NotFound));
    }

    /// The inlined functions [`write_inline_table`]'s one function names in its tree (sorted).
    const INLINED: [&str; 2] = ["example.com/p.(*T).M", "example.com/p.Small"];
    /// Where the tree lies past the start of the `go:func.*` region.
    const TREE_OFFSET: usize = 8;

    /// Writes a pclntab of `version`'s layout (1.18 or 1.20; pointer size 8) with one function,
    /// `main.main`, whose inline tree (two entries, naming [`INLINED`]) lies [`TREE_OFFSET`]
    /// bytes into the returned `go:func.*` region.
    pub(crate) fn write_inline_table(
        version: PclntabVersion,
        big_endian: bool,
    ) -> (Vec<u8>, Vec<u8>) {
        let u32_bytes = |v: u32| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let u64_bytes = |v: u64| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let magic = MAGICS.iter().find(|(_, v)| *v == version).unwrap().0;
        let names = format!("main.main\0{}\0{}\0", INLINED[0], INLINED[1]);
        let names_at = 8 + 8 * 8;
        // A pc-value table at offset 1 (0 means none): -1 → 0 → 1, then the end.
        let pctab = [0u8, 2, 4, 2, 4, 0];
        let pctab_at = names_at + names.len();
        let functab_at = pctab_at + pctab.len();
        let mut out = u32_bytes(magic).to_vec();
        out.extend([0, 0, 1, 8]);
        for word in [1, 0, 0x1000, names_at, 0, 0, pctab_at, functab_at] {
            out.extend(u64_bytes(word as u64));
        }
        out.extend(names.as_bytes());
        out.extend(pctab);
        // The function table: main.main at entry offset 0, its record after the end entry.
        for word in [0, 12, 0x40] {
            out.extend(u32_bytes(word));
        }
        let fixed = if version >= PclntabVersion::Go120 {
            44
        } else {
            40
        };
        let mut record = vec![0u8; fixed];
        record[28..32].copy_from_slice(&u32_bytes(3));
        record[fixed - 1] = 4;
        out.extend(record);
        for pcdata in [0, 0, 1] {
            out.extend(u32_bytes(pcdata));
        }
        for funcdata in [u32::MAX, u32::MAX, u32::MAX, TREE_OFFSET as u32] {
            out.extend(u32_bytes(funcdata));
        }
        // The tree: each entry's name offset, in its layout.
        let mut region = vec![0xeeu8; TREE_OFFSET];
        for name in INLINED {
            let offset = names.find(name).unwrap() as u32;
            if version >= PclntabVersion::Go120 {
                region.extend([0, 0, 0, 0]);
                region.extend(u32_bytes(offset));
                region.extend([0; 8]);
            } else {
                region.extend([0xff, 0xff, 0, 0]);
                region.extend([0; 8]);
                region.extend(u32_bytes(offset));
                region.extend([0; 4]);
            }
        }
        (out, region)
    }

    /// Reads `len` bytes at `offset` of `region`, as [`Executable::read_at`] reads the file.
    fn reader<'r>(region: &'r [u8]) -> impl Fn(u64, u64) -> Option<&'r [u8]> + 'r {
        move |offset, len| {
            let at = usize::try_from(offset).ok()?;
            region.get(at..at.checked_add(usize::try_from(len).ok()?)?)
        }
    }

    #[test]
    fn inline_trees_of_both_layouts_name_the_inlined_functions() {
        for version in [PclntabVersion::Go118, PclntabVersion::Go120] {
            for big_endian in [false, true] {
                let (table, region) = write_inline_table(version, big_endian);
                let layout = Layout::parse(&table).unwrap();
                assert_eq!(read(&table).unwrap().names, ["main.main"]);
                let trees = layout.inline_trees(&table).unwrap();
                assert_eq!(
                    trees,
                    [TreeRef {
                        offset: TREE_OFFSET as u64,
                        count: 2
                    }]
                );
                let names = layout.inlined_names(&trees, reader(&region)).unwrap();
                assert_eq!(names, INLINED.iter().map(|n| n.to_string()).collect());
                // A name offset into the middle of a name: not the tree (a wrong region).
                let name_at = TREE_OFFSET
                    + if version >= PclntabVersion::Go120 {
                        4
                    } else {
                        12
                    };
                let mut wrong = region.clone();
                wrong[name_at..name_at + 4].copy_from_slice(&if big_endian {
                    3u32.to_be_bytes()
                } else {
                    3u32.to_le_bytes()
                });
                assert_eq!(layout.inlined_names(&trees, reader(&wrong)), None);
                // Zeros read as entries: each names the first name, but this is no tree.
                let zeros = vec![0u8; region.len()];
                assert_eq!(layout.inlined_names(&trees, reader(&zeros)), None);
                // A tree running past the region's end.
                assert_eq!(
                    layout.inlined_names(&trees, reader(&region[..region.len() - 1])),
                    None
                );
            }
        }
    }

    #[test]
    fn a_stripped_binarys_inline_trees_are_found_through_moduledata() {
        for big_endian in [false, true] {
            let (table, region) = write_inline_table(PclntabVersion::Go120, big_endian);
            // moduledata: the table, its name table, then `gofunc` at Go 1.20's index 40
            // among other addresses (earlier candidates make no tree read).
            let mut moduledata = Vec::new();
            for index in 0..64u64 {
                let word = match index {
                    0 => 0x1000,
                    1 => 0x1000 + 72,
                    40 => 0x8000,
                    _ => 0x7ff0 + index,
                };
                moduledata.extend(if big_endian {
                    word.to_be_bytes()
                } else {
                    word.to_le_bytes()
                });
            }
            let elf = crate::binary::write_test_elf(
                true,
                !big_endian,
                &[
                    (".gopclntab", 0x1000, &table),
                    (".rodata", 0x8000, &region),
                    (".noptrdata", 0x10000, &moduledata),
                ],
            );
            let exe = Executable::parse(&elf).unwrap();
            let (bytes, _) = locate(&exe).unwrap();
            assert_eq!(read_inlined(&exe, bytes).unwrap(), INLINED);
            // Without moduledata the region is not found.
            let elf = crate::binary::write_test_elf(
                true,
                !big_endian,
                &[(".gopclntab", 0x1000, &table), (".rodata", 0x8000, &region)],
            );
            let exe = Executable::parse(&elf).unwrap();
            let (bytes, _) = locate(&exe).unwrap();
            assert_eq!(
                read_inlined(&exe, bytes),
                Err(InlineTreeError::RegionNotFound)
            );
        }
        // Before 1.18 the trees are not read.
        let table = write_table(PclntabVersion::Go116, false, 8, &NAMES);
        let elf = crate::binary::write_test_elf(true, true, &[(".gopclntab", 0x1000, &table)]);
        let exe = Executable::parse(&elf).unwrap();
        assert_eq!(
            read_inlined(&exe, &table),
            Err(InlineTreeError::UnsupportedLayout(PclntabVersion::Go116))
        );
    }

    #[test]
    fn pc_value_tables_give_their_largest_value() {
        assert_eq!(max_pc_value(&[2, 4, 2, 4, 0]), Some(1));
        // Up to 5, back to 2: the largest, not the last.
        assert_eq!(max_pc_value(&[12, 1, 5, 1, 0]), Some(5));
        // Never above -1, cut off, or a varint running past 32 bits.
        assert_eq!(max_pc_value(&[0, 4, 0]), None);
        assert_eq!(max_pc_value(&[2, 4, 2]), None);
        assert_eq!(max_pc_value(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_after_a_prefix_never_panic(
            magic in 0..4usize,
            big_endian in proptest::bool::ANY,
            pointer_size in proptest::sample::select(vec![4u8, 8]),
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
        ) {
            let magic = MAGICS[magic].0;
            let mut table = if big_endian { magic.to_be_bytes() } else { magic.to_le_bytes() }.to_vec();
            table.extend([0, 0, 1, pointer_size]);
            table.extend(tail);
            let _ = read(&table);
        }

        #[test]
        fn a_mutated_table_never_panics(
            flips in proptest::collection::vec((0usize..4096, proptest::num::u8::ANY), 1..8),
            version in 0..4usize,
            big_endian in proptest::bool::ANY,
        ) {
            let mut table = write_table(MAGICS[version].1, big_endian, 8, &NAMES);
            for (at, byte) in flips {
                let len = table.len();
                table[at % len] = byte;
            }
            let _ = read(&table);
        }

        #[test]
        fn mutated_inline_trees_never_panic(
            flips in proptest::collection::vec((0usize..4096, proptest::num::u8::ANY), 1..8),
            in_region in proptest::bool::ANY,
            go120 in proptest::bool::ANY,
            big_endian in proptest::bool::ANY,
        ) {
            let version = if go120 { PclntabVersion::Go120 } else { PclntabVersion::Go118 };
            let (mut table, mut region) = write_inline_table(version, big_endian);
            let target = if in_region { &mut region } else { &mut table };
            for (at, byte) in flips {
                let len = target.len();
                target[at % len] = byte;
            }
            if let Ok(layout) = Layout::parse(&table) {
                if let Ok(trees) = layout.inline_trees(&table) {
                    let _ = layout.inlined_names(&trees, reader(&region));
                }
            }
        }

        #[test]
        fn arbitrary_pc_value_tables_never_panic(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            let _ = max_pc_value(&bytes);
        }
    }
}
