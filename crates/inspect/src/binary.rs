//! Executables as the Go readers need them: ELF, Mach-O and PE (32- and 64-bit, either byte
//! order where the format has both), parsed with gimli-rs/object. What this adds on top is the
//! two questions Go's own readers (debug/buildinfo, cmd/internal/objfile) ask of an executable:
//! the bytes of a named section, and the bytes at a virtual address (the loaded image's address
//! mapped back to the file through the segments, or the sections where a format's segments say
//! less).

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};

/// The first bytes of every format [`Executable::parse`] reads: ELF, Mach-O (32/64-bit, either
/// byte order, and universal "fat" files), and PE's `MZ` DOS stub.
const MAGICS: &[&[u8]] = &[
    b"\x7fELF",
    &[0xfe, 0xed, 0xfa, 0xce],
    &[0xce, 0xfa, 0xed, 0xfe],
    &[0xfe, 0xed, 0xfa, 0xcf],
    &[0xcf, 0xfa, 0xed, 0xfe],
    &[0xca, 0xfe, 0xba, 0xbe],
    b"MZ",
];

/// Whether a file whose first bytes are `head` may be an executable worth reading whole: ELF,
/// Mach-O or PE by its magic number. Needs only the first 4 bytes; a cheap test for the layer
/// walker before it buffers a file. `0xcafebabe` is also a Java class file's magic, so a `true`
/// here is a maybe; [`Executable::parse`] decides.
pub fn looks_executable(head: &[u8]) -> bool {
    MAGICS.iter().any(|magic| head.starts_with(magic))
}

/// The executable formats [`Executable::parse`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutableFormat {
    Elf,
    MachO,
    Pe,
}

/// Why bytes could not be read as an executable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecutableError {
    #[error("not an ELF, Mach-O or PE executable")]
    UnknownFormat,
    #[error("malformed {format:?} executable: {reason}")]
    Malformed {
        format: ExecutableFormat,
        reason: String,
    },
}

/// A parsed executable, borrowing its bytes.
pub struct Executable<'data> {
    file: object::File<'data>,
    format: ExecutableFormat,
}

impl std::fmt::Debug for Executable<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executable")
            .field("format", &self.format)
            .field("is_64", &self.file.is_64())
            .field("little_endian", &self.file.is_little_endian())
            .finish()
    }
}

impl<'data> Executable<'data> {
    /// Parses the headers of an ELF, Mach-O or PE file. Errors: `UnknownFormat` for other bytes
    /// (including COFF objects, XCOFF, Wasm and universal Mach-O files, which hold several
    /// executables), `Malformed` where the headers do not hold together.
    pub fn parse(bytes: &'data [u8]) -> Result<Self, ExecutableError> {
        use object::FileKind;
        let format = match FileKind::parse(bytes).map_err(|_| ExecutableError::UnknownFormat)? {
            FileKind::Elf32 | FileKind::Elf64 => ExecutableFormat::Elf,
            FileKind::MachO32 | FileKind::MachO64 => ExecutableFormat::MachO,
            FileKind::Pe32 | FileKind::Pe64 => ExecutableFormat::Pe,
            _ => return Err(ExecutableError::UnknownFormat),
        };
        let file = object::File::parse(bytes).map_err(|e| ExecutableError::Malformed {
            format,
            reason: e.to_string(),
        })?;
        Ok(Executable { file, format })
    }

    /// Which of the three formats the file is.
    pub fn format(&self) -> ExecutableFormat {
        self.format
    }

    /// 64-bit (ELFCLASS64, Mach-O 64, PE32+), else 32-bit.
    pub fn is_64(&self) -> bool {
        self.file.is_64()
    }

    /// The byte order of the headers (and of Go's tables in the file).
    pub fn is_little_endian(&self) -> bool {
        self.file.is_little_endian()
    }

    /// The file bytes of the first section named `name` (ELF `.gopclntab`, Mach-O
    /// `__gopclntab`), if it has any in the file.
    pub fn section(&self, name: &str) -> Option<&'data [u8]> {
        self.file
            .sections()
            .find(|s| s.name() == Ok(name))
            .and_then(|s| s.data().ok())
            .filter(|data| !data.is_empty())
    }

    /// The file bytes of every section with contents in the file, in header order.
    pub fn sections(&self) -> impl Iterator<Item = &'data [u8]> + '_ {
        self.file
            .sections()
            .filter_map(|s| s.data().ok())
            .filter(|data| !data.is_empty())
    }

    /// The file bytes of the writable data sections (ELF `.data`, `.go.buildinfo`; PE `.data`;
    /// Mach-O `__DATA,__data`…), in header order: where Go's build info header lives, and
    /// where a copy of its magic string in read-only data (any program that reads build info
    /// carries one) is not.
    pub fn writable_data_sections(&self) -> impl Iterator<Item = &'data [u8]> + '_ {
        self.file
            .sections()
            .filter(|s| s.kind() == object::SectionKind::Data)
            .filter_map(|s| s.data().ok())
            .filter(|data| !data.is_empty())
    }

    /// The virtual address of `bytes`, which must be a slice of one of this file's sections'
    /// bytes (as [`Executable::section`] and [`Executable::sections`] give them): that
    /// section's address plus the slice's place in it. `None` for other bytes.
    pub fn address_of(&self, bytes: &[u8]) -> Option<u64> {
        let start = bytes.as_ptr() as usize;
        self.file.sections().find_map(|s| {
            let data = s.data().ok()?;
            let offset = start.checked_sub(data.as_ptr() as usize)?;
            (offset < data.len() || (offset == 0 && data.is_empty()))
                .then(|| s.address().checked_add(offset as u64))
                .flatten()
        })
    }

    /// The address of the symbol named `name` in the symbol table (PE addresses include the
    /// image base), if the file has a symbol table holding it.
    pub fn symbol_address(&self, name: &str) -> Option<u64> {
        self.file
            .symbols()
            .find(|s| s.name() == Ok(name))
            .map(|s| s.address())
    }

    /// The `size` bytes at virtual address `address` of the loaded image (PE addresses include
    /// the image base, as Go's pointers do), if all of them are backed by the file: looked up
    /// in the segments (ELF `PT_LOAD`, Mach-O segments), then in the sections. `None` for an
    /// address outside both, or a range running past the end of its segment's file bytes.
    pub fn read_at(&self, address: u64, size: u64) -> Option<&'data [u8]> {
        let in_segments = self
            .file
            .segments()
            .find_map(|s| s.data_range(address, size).ok().flatten());
        in_segments.or_else(|| {
            self.file
                .sections()
                .find_map(|s| s.data_range(address, size).ok().flatten())
        })
    }
}

/// Writes a small ELF executable (for tests): one `PT_LOAD` segment per section, each section's
/// bytes mapped at its address, so that [`Executable::read_at`] can follow pointers into them;
/// `.data`, `.noptrdata` and `.go.buildinfo` writable, as Go's are.
#[cfg(test)]
pub(crate) fn write_test_elf(
    is_64: bool,
    little_endian: bool,
    sections: &[(&'static str, u64, &[u8])],
) -> Vec<u8> {
    use object::write::elf::{FileHeader, ProgramHeader, SectionHeader, Writer};
    let endian = if little_endian {
        object::Endianness::Little
    } else {
        object::Endianness::Big
    };
    let mut out = Vec::new();
    let mut writer = Writer::new(endian, is_64, &mut out);
    writer.reserve_file_header();
    writer.reserve_program_headers(sections.len() as u32);
    writer.reserve_null_section_index();
    let names: Vec<_> = sections
        .iter()
        .map(|(name, _, _)| {
            let id = writer.add_section_name(name.as_bytes());
            writer.reserve_section_index();
            id
        })
        .collect();
    writer.reserve_shstrtab_section_index();
    let offsets: Vec<usize> = sections
        .iter()
        .map(|(_, _, data)| writer.reserve(data.len(), 8))
        .collect();
    writer.reserve_shstrtab();
    writer.reserve_section_headers();
    writer
        .write_file_header(&FileHeader {
            os_abi: 0,
            abi_version: 0,
            e_type: object::elf::ET_EXEC,
            e_machine: if is_64 {
                object::elf::EM_X86_64
            } else {
                object::elf::EM_PPC
            },
            e_entry: 0,
            e_flags: 0,
        })
        .unwrap();
    writer.write_align_program_headers();
    for ((_, address, data), offset) in sections.iter().zip(&offsets) {
        writer.write_program_header(&ProgramHeader {
            p_type: object::elf::PT_LOAD,
            p_flags: object::elf::PF_R,
            p_offset: *offset as u64,
            p_vaddr: *address,
            p_paddr: *address,
            p_filesz: data.len() as u64,
            p_memsz: data.len() as u64,
            p_align: 1,
        });
    }
    for (_, _, data) in sections {
        writer.write_align(8);
        writer.write(data);
    }
    writer.write_shstrtab();
    writer.write_null_section_header();
    const WRITABLE: [&str; 3] = [".data", ".noptrdata", ".go.buildinfo"];
    for (((name_str, address, data), offset), name) in sections.iter().zip(&offsets).zip(names) {
        writer.write_section_header(&SectionHeader {
            name: Some(name),
            sh_type: object::elf::SHT_PROGBITS,
            // Writable where Go's are (the runtime and the build info header live there).
            sh_flags: u64::from(if WRITABLE.contains(name_str) {
                object::elf::SHF_ALLOC | object::elf::SHF_WRITE
            } else {
                object::elf::SHF_ALLOC
            }),
            sh_addr: *address,
            sh_offset: *offset as u64,
            sh_size: data.len() as u64,
            sh_link: 0,
            sh_info: 0,
            sh_addralign: 1,
            sh_entsize: 0,
        });
    }
    writer.write_shstrtab_section_header();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_numbers_of_the_three_formats_look_executable() {
        for head in [
            &b"\x7fELF\x02\x01"[..],
            &[0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1],
            &[0xfe, 0xed, 0xfa, 0xce],
            b"MZ\x90\x00",
        ] {
            assert!(looks_executable(head), "{head:?}");
        }
        for head in [
            &b"#!/bin/sh"[..],
            b"\x7fEL",
            b"",
            b"PK\x03\x04",
            b"\x1f\x8b",
        ] {
            assert!(!looks_executable(head), "{head:?}");
        }
    }

    #[test]
    fn the_test_runner_itself_parses_and_maps_its_addresses() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let exe = Executable::parse(&me).unwrap();
        assert_eq!(exe.format(), ExecutableFormat::Elf);
        assert!(exe.section(".text").is_some());
        assert_eq!(exe.section(".no-such-section"), None);
        // The ELF header is mapped by the first PT_LOAD segment of a Rust executable.
        let file = object::File::parse(&*me).unwrap();
        let first = file.segments().next().unwrap();
        let (offset, _) = first.file_range();
        let bytes = exe.read_at(first.address(), 4).unwrap();
        assert_eq!(bytes, &me[offset as usize..offset as usize + 4]);
        assert_eq!(exe.read_at(u64::MAX - 2, 4), None);
    }

    #[test]
    fn addresses_map_through_the_segments_in_both_widths_and_byte_orders() {
        for (is_64, little_endian) in [(true, true), (true, false), (false, true), (false, false)] {
            let elf = write_test_elf(
                is_64,
                little_endian,
                &[
                    (".rodata", 0x1000, b"hello, world"),
                    (".data", 0x8000, b"0123"),
                ],
            );
            let exe = Executable::parse(&elf).unwrap();
            assert_eq!(
                (exe.is_64(), exe.is_little_endian()),
                (is_64, little_endian)
            );
            assert_eq!(exe.read_at(0x1007, 5), Some(&b"world"[..]));
            assert_eq!(exe.read_at(0x8000, 4), Some(&b"0123"[..]));
            assert_eq!(exe.read_at(0x8002, 4), None, "runs past the segment");
            assert_eq!(exe.read_at(0x4000, 1), None, "unmapped");
            assert_eq!(exe.section(".data"), Some(&b"0123"[..]));
        }
    }

    #[test]
    fn what_is_not_an_executable_is_refused_with_its_reason() {
        assert_eq!(
            Executable::parse(b"#!/bin/sh\n").unwrap_err(),
            ExecutableError::UnknownFormat
        );
        let truncated =
            Executable::parse(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0").unwrap_err();
        assert!(
            matches!(
                truncated,
                ExecutableError::Malformed {
                    format: ExecutableFormat::Elf,
                    ..
                }
            ),
            "{truncated:?}"
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_after_a_magic_never_panic(
            magic in 0..MAGICS.len(),
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
            address in proptest::num::u64::ANY,
        ) {
            let mut bytes = MAGICS[magic].to_vec();
            bytes.extend(tail);
            if let Ok(exe) = Executable::parse(&bytes) {
                let _ = exe.section(".gopclntab");
                let _ = exe.sections().count();
                let _ = exe.read_at(address, 16);
            }
        }
    }
}
