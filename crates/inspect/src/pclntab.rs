//! The Go function table (pclntab): the runtime's map from program counters to functions, which
//! the linker writes into every Go executable (and keeps in those stripped with `-s -w`, since
//! the runtime needs it for stack traces). From it come the names of all functions compiled into
//! the binary (not the ones inlined into others), for every layout since Go 1.2. The layouts
//! follow Go's debug/gosym (src/debug/gosym/pclntab.go):
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

/// Reads the function names of the pclntab starting at `table[0]` (it may run on past the
/// table's end: every offset is checked). Errors: `NotFound` when the prefix is not a pclntab's,
/// `Malformed` when an offset or count points outside `table` or a name is not terminated.
pub fn read(table: &[u8]) -> Result<FunctionTable, PclntabError> {
    let (version, big_endian) = prefix(table).ok_or(PclntabError::NotFound)?;
    let pointer_size = usize::from(table[7]);
    let word = |index: usize| -> Result<usize, PclntabError> {
        let at = 8 + index * pointer_size;
        let bytes = table
            .get(at..at + pointer_size)
            .ok_or(PclntabError::Malformed("the header is cut off"))?;
        usize::try_from(read_uint(bytes, pointer_size, big_endian))
            .map_err(|_| PclntabError::Malformed("a header word does not fit in memory"))
    };
    let from = |offset: usize| -> Result<&[u8], PclntabError> {
        table.get(offset..).ok_or(PclntabError::Malformed(
            "a header offset points past the end",
        ))
    };
    let function_count = word(0)?;
    // Where the function table starts, where function records' offsets count from, where name
    // offsets count from, and how wide the table's fields and a record's entry field are.
    let (functab, records, names, field, entry) = match version {
        PclntabVersion::Go12 => {
            let functab = from(8 + pointer_size)?;
            (functab, table, table, pointer_size, pointer_size)
        }
        PclntabVersion::Go116 => (
            from(word(6)?)?,
            from(word(6)?)?,
            from(word(2)?)?,
            pointer_size,
            pointer_size,
        ),
        PclntabVersion::Go118 | PclntabVersion::Go120 => {
            (from(word(7)?)?, from(word(7)?)?, from(word(3)?)?, 4, 4)
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
    let functab = &functab[..functab_len];
    let mut out = Vec::with_capacity(function_count);
    for i in 0..function_count {
        let record_offset = usize::try_from(read_uint(
            &functab[(2 * i + 1) * field..],
            field,
            big_endian,
        ))
        .map_err(|_| PclntabError::Malformed("a function offset does not fit in memory"))?;
        // A record: the entry (pc or offset), then 4-byte fields; the name offset comes first.
        let name_field = record_offset
            .checked_add(entry)
            .and_then(|at| records.get(at..at.checked_add(4)?))
            .ok_or(PclntabError::Malformed(
                "a function record points past the end",
            ))?;
        let name_offset = usize::try_from(read_uint(name_field, 4, big_endian))
            .map_err(|_| PclntabError::Malformed("a name offset does not fit in memory"))?;
        let name = names
            .get(name_offset..)
            .and_then(|rest| rest.split(|&b| b == 0).next().filter(|_| rest.contains(&0)))
            .ok_or(PclntabError::Malformed(
                "a function name points past the end",
            ))?;
        out.push(String::from_utf8_lossy(name).into_owned());
    }
    Ok(FunctionTable {
        version,
        names: out,
    })
}

/// Finds and reads an executable's function table: its own section where the format gives it
/// one (ELF `.gopclntab`, Mach-O `__gopclntab`), else, as Go's tools fall back when the section
/// is gone (PIE and externally linked ELF put the table in `.data.rel.ro`; PE has no such
/// section), the first place in any section where a pclntab prefix starts a table that reads
/// whole and lists functions. Errors: `NotFound`, or the section's `Malformed`.
pub fn locate_and_read(exe: &Executable<'_>) -> Result<FunctionTable, PclntabError> {
    for name in [".gopclntab", "__gopclntab"] {
        if let Some(section) = exe.section(name) {
            return read(section);
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
                    return Ok(table);
                }
            }
        }
    }
    Err(PclntabError::NotFound)
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
    }
}
