//! The build information the Go linker embeds in every binary: the Go version, the main module,
//! every dependency module with its version and checksum, and the build settings. `go version
//! -m` prints the same; this reads it without a Go toolchain, from the bytes of a binary, so that
//! images can be inspected anywhere. Both forms Go has written are read, as Go's own
//! debug/buildinfo reads them (src/debug/buildinfo/buildinfo.go): since Go 1.18 the strings
//! follow the 32-byte header inline; before, the header holds two pointers to Go string headers
//! (runtime.buildVersion and runtime.modinfo), followed here through the executable's address
//! mapping ([`crate::binary::Executable::read_at`]).

use std::fmt;

use crate::binary::{Executable, ExecutableError};

/// `\xff Go buildinf:`, which starts the `.go.buildinfo` section.
const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
/// Header length: magic, pointer size, flags, then two pointer-sized words (zero in the
/// inline form), padded to 32 bytes.
const HEADER: usize = 32;
/// Flag bit: version and module info are stored inline as length-prefixed strings (Go 1.18+).
const FLAG_INLINE: u8 = 0x2;
/// Flag bit, pointer form only: the pointers are big-endian.
const FLAG_BIG_ENDIAN: u8 = 0x1;

/// Why a binary's Go build information could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildInfoError {
    #[error("no Go build information found: not a Go binary, or built by Go older than 1.13")]
    Missing,
    #[error("Go build information is truncated or malformed: {0}")]
    Malformed(&'static str),
    #[error(
        "Go build information (pre-1.18 pointer form) points at address {address:#x}, which the \
         executable does not map to file bytes"
    )]
    UnmappedAddress { address: u64 },
    #[error(
        "Go build information (pre-1.18 pointer form) can only be followed through the \
         executable's headers, which could not be read: {0}"
    )]
    NotExecutable(#[from] ExecutableError),
}

/// A module as the build info lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Module path, e.g. `golang.org/x/text`.
    pub path: String,
    /// e.g. `v0.3.5`, a pseudo-version, `v2.1.0+incompatible`, or `(devel)` for the main
    /// module built from source.
    pub version: String,
    /// `h1:` checksum; empty for the main module and replaced modules without one.
    pub sum: String,
    /// The module that replaced this one (a `=>` line), if any.
    pub replacement: Option<Box<Module>>,
}

/// A Go binary's build information, as `go version -m` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildInfo {
    /// e.g. `go1.19.8`
    pub go_version: String,
    /// The main package's import path.
    pub path: String,
    /// The main module (`mod` line).
    pub main: Option<Module>,
    /// Every dependency module linked in (`dep` lines), in the order Go lists them.
    pub deps: Vec<Module>,
    /// `build` lines: `-trimpath=true`, `CGO_ENABLED=0`, `GOARCH=amd64`, `vcs.revision=…`.
    pub settings: Vec<(String, String)>,
}

impl BuildInfo {
    /// The value of build setting `key` (`GOOS`, `-ldflags`, `vcs.revision`), unquoted.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.path, self.version)
    }
}

/// Reads an unsigned varint (Go's encoding/binary Uvarint) at `pos`.
fn uvarint(data: &[u8], pos: &mut usize) -> Result<u64, BuildInfoError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *data.get(*pos).ok_or(BuildInfoError::Malformed(
            "a string length runs past the end",
        ))?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(BuildInfoError::Malformed("a string length is not a varint"))
}

fn inline_string<'a>(data: &'a [u8], pos: &mut usize) -> Result<&'a [u8], BuildInfoError> {
    const PAST_END: BuildInfoError =
        BuildInfoError::Malformed("an inline string runs past the end");
    let len = usize::try_from(uvarint(data, pos)?).map_err(|_| PAST_END)?;
    let end = pos.checked_add(len).ok_or(PAST_END)?;
    let s = data.get(*pos..end).ok_or(PAST_END)?;
    *pos = end;
    Ok(s)
}

/// Go aligns the build info header to 16 bytes (debug/buildinfo's buildInfoAlign).
const ALIGN: usize = 16;

/// Finds and parses the build info in a Go binary's bytes (ELF, Mach-O or PE; any Go from 1.13
/// on). As Go's debug/buildinfo looks for it: in the executable's `.go.buildinfo` (ELF) or
/// `__go_buildinfo` (Mach-O) section, else at a 16-byte aligned place in its writable data
/// (PE; ELF without section names), taking the first candidate that reads; bytes that are no
/// executable are searched whole. Errors: `Missing` when no header is found or its version is
/// empty (as Go's reader), `Malformed` for a header that is cut off or whose strings run past
/// the end, `UnmappedAddress` and `NotExecutable` for a pointer form whose pointers cannot be
/// followed.
pub fn parse(binary: &[u8]) -> Result<BuildInfo, BuildInfoError> {
    let exe = match Executable::parse(binary) {
        Ok(exe) => exe,
        Err(not_executable) => {
            return first_that_reads(find_all(binary, 1), |header| {
                parse_header(header, Err(not_executable.clone()))
            })
        }
    };
    let exe = &exe;
    for name in [".go.buildinfo", "__go_buildinfo"] {
        if let Some(section) = exe.section(name) {
            if section.starts_with(MAGIC) {
                return parse_header(section, Ok(exe));
            }
        }
    }
    let candidates = exe
        .writable_data_sections()
        .flat_map(|section| find_all(section, ALIGN));
    first_that_reads(candidates, |header| parse_header(header, Ok(exe)))
}

/// Every suffix of `data` starting with [`MAGIC`] at a multiple of `align`.
fn find_all(data: &[u8], align: usize) -> impl Iterator<Item = &[u8]> + '_ {
    (0..data.len())
        .step_by(align)
        .filter(move |&at| data[at..].starts_with(MAGIC))
        .map(move |at| &data[at..])
}

/// The first candidate that reads, or the first error, or `Missing` when there is none.
fn first_that_reads<'a>(
    candidates: impl Iterator<Item = &'a [u8]>,
    read: impl Fn(&'a [u8]) -> Result<BuildInfo, BuildInfoError>,
) -> Result<BuildInfo, BuildInfoError> {
    let mut first_error = None;
    for candidate in candidates {
        match read(candidate) {
            Ok(info) => return Ok(info),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or(BuildInfoError::Missing))
}

/// Reads the header at the start of `data` and the two strings it leads to.
fn parse_header(
    data: &[u8],
    exe: Result<&Executable<'_>, ExecutableError>,
) -> Result<BuildInfo, BuildInfoError> {
    if data.len() < HEADER {
        return Err(BuildInfoError::Malformed("the header is cut off"));
    }
    let pointer_size = data[14];
    let flags = data[15];
    let (version, modinfo) = if flags & FLAG_INLINE != 0 {
        let mut pos = HEADER;
        let version = inline_string(data, &mut pos)?;
        (version, inline_string(data, &mut pos)?)
    } else {
        let exe = exe?;
        let width = match pointer_size {
            4 | 8 => usize::from(pointer_size),
            _ => {
                return Err(BuildInfoError::Malformed(
                    "the pointer size is neither 4 nor 8",
                ))
            }
        };
        let big_endian = flags & FLAG_BIG_ENDIAN != 0;
        let pointer = |bytes: &[u8]| read_uint(bytes, width, big_endian);
        let go_string = |address: u64| -> Result<&[u8], BuildInfoError> {
            let header = exe
                .read_at(address, 2 * width as u64)
                .ok_or(BuildInfoError::UnmappedAddress { address })?;
            let (start, len) = (pointer(header), pointer(&header[width..]));
            exe.read_at(start, len)
                .ok_or(BuildInfoError::UnmappedAddress { address: start })
        };
        (
            go_string(pointer(&data[16..]))?,
            go_string(pointer(&data[16 + width..]))?,
        )
    };
    if version.is_empty() {
        return Err(BuildInfoError::Missing);
    }
    let mut info = parse_modinfo(&String::from_utf8_lossy(strip_sentinels(modinfo)));
    info.go_version = String::from_utf8_lossy(version).into_owned();
    Ok(info)
}

/// An unsigned integer of `width` (4 or 8) bytes at the start of `bytes`, which must hold it.
pub(crate) fn read_uint(bytes: &[u8], width: usize, big_endian: bool) -> u64 {
    let mut buf = [0u8; 8];
    if big_endian {
        buf[8 - width..].copy_from_slice(&bytes[..width]);
        u64::from_be_bytes(buf)
    } else {
        buf[..width].copy_from_slice(&bytes[..width]);
        u64::from_le_bytes(buf)
    }
}

/// Module info is framed by 16-byte sentinels on both sides (cmd/go's modload.infoStart and
/// infoEnd); without them it is not module info, as Go's reader has it.
fn strip_sentinels(modinfo: &[u8]) -> &[u8] {
    if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        &modinfo[16..modinfo.len() - 16]
    } else {
        &[]
    }
}

fn module(fields: &[&str]) -> Module {
    Module {
        path: fields.first().copied().unwrap_or_default().to_string(),
        version: fields.get(1).copied().unwrap_or_default().to_string(),
        sum: fields.get(2).copied().unwrap_or_default().to_string(),
        replacement: None,
    }
}

/// Parses the text `go version -m` shows: tab-separated `path`, `mod`, `dep`, `=>`, `build` lines.
pub fn parse_modinfo(text: &str) -> BuildInfo {
    let mut info = BuildInfo::default();
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["path", path, ..] => info.path = path.to_string(),
            ["mod", rest @ ..] => info.main = Some(module(rest)),
            ["dep", rest @ ..] => info.deps.push(module(rest)),
            ["=>", rest @ ..] => {
                if let Some(last) = info.deps.last_mut() {
                    last.replacement = Some(Box::new(module(rest)));
                }
            }
            ["build", setting, ..] => info.settings.push(build_setting(setting)),
            _ => {}
        }
    }
    info
}

/// A `build` line's `key=value`, either side quoted as Go's strconv.Quote quotes (runtime/debug
/// quotes a key or value holding a space, tab, newline, `"` or backquote).
fn build_setting(setting: &str) -> (String, String) {
    let (key, rest) = if setting.starts_with('"') {
        let (key, len) = unquote(setting);
        (key, &setting[len..])
    } else {
        let at = setting.find('=').unwrap_or(setting.len());
        (setting[..at].to_string(), &setting[at..])
    };
    let value = rest.strip_prefix('=').unwrap_or(rest);
    let value = if value.starts_with('"') {
        unquote(value).0
    } else {
        value.to_string()
    };
    (key, value)
}

/// Reads the Go double-quoted string at the start of `s` (which starts with `"`): its value and
/// the length of its quoted form. An unterminated string runs to the end; an unknown escape
/// stands for itself.
fn unquote(s: &str) -> (String, usize) {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return (out, at + 1),
            '\\' => {
                let Some((_, escaped)) = chars.next() else {
                    break;
                };
                let mut hex = |digits: usize| -> Option<char> {
                    let text: String = (0..digits)
                        .filter_map(|_| chars.next().map(|(_, c)| c))
                        .collect();
                    char::from_u32(u32::from_str_radix(&text, 16).ok()?)
                };
                let decoded = match escaped {
                    'n' => Some('\n'),
                    't' => Some('\t'),
                    'r' => Some('\r'),
                    'a' => Some('\x07'),
                    'b' => Some('\x08'),
                    'f' => Some('\x0c'),
                    'v' => Some('\x0b'),
                    'x' => hex(2),
                    'u' => hex(4),
                    'U' => hex(8),
                    other => Some(other),
                };
                out.extend(decoded);
            }
            c => out.push(c),
        }
    }
    (out, s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).position(|w| w == needle)
    }

    const MODINFO: &str = "path\texample.com/hello\nmod\texample.com/hello\t(devel)\t\n\
        dep\texample.com/greet\tv1.2.3\th1:abc=\ndep\tgolang.org/x/text\tv0.3.0\th1:def=\n\
        =>\t../text\t(devel)\t\nbuild\t-trimpath=true\nbuild\tCGO_ENABLED=0\nbuild\tGOARCH=arm64\n\
        build\t-ldflags=\"-s -w\"\n";

    /// A synthetic binary: junk, the 32-byte header, then the inline strings.
    fn binary(version: &str, modinfo: &str) -> Vec<u8> {
        let mut out = vec![0u8; 100];
        out.extend_from_slice(MAGIC);
        out.push(8);
        out.push(FLAG_INLINE);
        out.resize(out.len() + 16, 0);
        let framed = format!("{}{modinfo}{}", "0".repeat(16), "1".repeat(16));
        for s in [version, framed.as_str()] {
            let mut n = s.len();
            while n >= 0x80 {
                out.push((n as u8) | 0x80);
                n >>= 7;
            }
            out.push(n as u8);
            out.extend_from_slice(s.as_bytes());
        }
        out.extend_from_slice(&[0; 64]);
        out
    }

    #[test]
    fn reads_version_modules_replacements_and_settings() {
        let info = parse(&binary("go1.19.8", MODINFO)).unwrap();
        assert_eq!(info.go_version, "go1.19.8");
        assert_eq!(info.path, "example.com/hello");
        assert_eq!(info.main.as_ref().unwrap().version, "(devel)");
        assert_eq!(info.deps.len(), 2);
        assert_eq!(info.deps[0].to_string(), "example.com/greet@v1.2.3");
        assert_eq!(info.deps[0].sum, "h1:abc=");
        assert_eq!(info.deps[1].replacement.as_ref().unwrap().path, "../text");
        assert_eq!(info.setting("CGO_ENABLED"), Some("0"));
        assert_eq!(info.setting("-ldflags"), Some("-s -w"));
        assert_eq!(info.setting("GOOS"), None);
    }

    #[test]
    fn quoted_build_settings_are_unquoted_as_go_quotes_them() {
        let info = parse_modinfo(
            "build\t-ldflags=\"-s -w -X \\\"main.version=1.2 x\\\"\"\n\
             build\t\"odd key\"=\"tab\\there\"\nbuild\tvcs.modified=true\n",
        );
        assert_eq!(
            info.setting("-ldflags"),
            Some("-s -w -X \"main.version=1.2 x\"")
        );
        assert_eq!(info.setting("odd key"), Some("tab\there"));
        assert_eq!(info.setting("vcs.modified"), Some("true"));
    }

    #[test]
    fn long_module_info_uses_multi_byte_lengths() {
        let many: String = (0..200)
            .map(|i| format!("dep\texample.com/m{i}\tv1.0.{i}\th1:x=\n"))
            .collect();
        let info = parse(&binary("go1.27.3", &many)).unwrap();
        assert_eq!(info.deps.len(), 200);
    }

    #[test]
    fn refuses_what_is_not_build_info() {
        assert_eq!(parse(b"not a go binary"), Err(BuildInfoError::Missing));
        let full = binary("go1.19.8", MODINFO);
        assert_eq!(
            parse(&full[..140]),
            Err(BuildInfoError::Malformed(
                "an inline string runs past the end"
            ))
        );
        assert_eq!(
            parse(&full[..120]),
            Err(BuildInfoError::Malformed("the header is cut off"))
        );
        assert_eq!(parse(&binary("", MODINFO)), Err(BuildInfoError::Missing));
    }

    #[test]
    fn module_info_without_its_sentinels_is_no_module_info() {
        let mut out = binary("go1.19.8", "");
        let at = find(&out, MAGIC).unwrap() + HEADER + 9;
        out[at] = 5; // a five-byte module info: no sentinels
        let info = parse(&out).unwrap();
        assert_eq!((info.go_version.as_str(), info.deps.len()), ("go1.19.8", 0));
    }

    /// A `.go.buildinfo` in the pointer form Go wrote before 1.18: the header's two pointers
    /// lead to Go string headers (pointer, length) in `.data`, which lead to the bytes in
    /// `.rodata`.
    fn pointer_form_elf(is_64: bool, little_endian: bool, version: &str, modinfo: &str) -> Vec<u8> {
        const RODATA: u64 = 0x40_1000;
        const DATA: u64 = 0x50_2000;
        const BUILDINFO: u64 = 0x50_1000;
        let width = if is_64 { 8 } else { 4 };
        let word = |value: u64| -> Vec<u8> {
            let bytes = if little_endian {
                value.to_le_bytes()
            } else {
                value.to_be_bytes()
            };
            if little_endian {
                bytes[..width].to_vec()
            } else {
                bytes[8 - width..].to_vec()
            }
        };
        let framed = format!("{}{modinfo}{}", "0".repeat(16), "1".repeat(16));
        let rodata = [version.as_bytes(), framed.as_bytes()].concat();
        let data = [
            word(RODATA),
            word(version.len() as u64),
            word(RODATA + version.len() as u64),
            word(framed.len() as u64),
        ]
        .concat();
        let mut header = MAGIC.to_vec();
        header.push(width as u8);
        header.push(if little_endian { 0 } else { FLAG_BIG_ENDIAN });
        header.extend(word(DATA));
        header.extend(word(DATA + 2 * width as u64));
        header.resize(HEADER, 0);
        crate::binary::write_test_elf(
            is_64,
            little_endian,
            &[
                (".rodata", RODATA, &rodata),
                (".go.buildinfo", BUILDINFO, &header),
                (".data", DATA, &data),
            ],
        )
    }

    #[test]
    fn the_pre_1_18_pointer_form_is_followed_through_the_address_mapping() {
        for (is_64, little_endian) in [(true, true), (true, false), (false, true), (false, false)] {
            let elf = pointer_form_elf(is_64, little_endian, "go1.17.13", MODINFO);
            let info = parse(&elf).unwrap_or_else(|e| panic!("{is_64} {little_endian}: {e}"));
            assert_eq!(info.go_version, "go1.17.13");
            assert_eq!(info.path, "example.com/hello");
            assert_eq!(info.deps.len(), 2);
            assert_eq!(info.deps[1].replacement.as_ref().unwrap().path, "../text");
        }
    }

    #[test]
    fn a_pointer_form_pointing_nowhere_says_which_address() {
        let mut elf = pointer_form_elf(true, true, "go1.16", MODINFO);
        let at = find(&elf, MAGIC).unwrap();
        elf[at + 16..at + 24].copy_from_slice(&0x7777_0000u64.to_le_bytes());
        assert_eq!(
            parse(&elf),
            Err(BuildInfoError::UnmappedAddress {
                address: 0x7777_0000
            })
        );
        // Without executable headers there is no mapping to follow.
        let bare = elf[at..at + HEADER].to_vec();
        assert!(matches!(
            parse(&bare),
            Err(BuildInfoError::NotExecutable(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(prefix in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
                                           tail in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let mut data = prefix;
            data.extend_from_slice(MAGIC);
            data.extend_from_slice(&tail);
            let _ = parse(&data);
        }

        #[test]
        fn a_mutated_pointer_form_executable_never_panics(
            flips in proptest::collection::vec((0usize..4096, proptest::num::u8::ANY), 1..16),
            is_64 in proptest::bool::ANY,
            little_endian in proptest::bool::ANY,
        ) {
            let mut elf = pointer_form_elf(is_64, little_endian, "go1.17", MODINFO);
            for (at, byte) in flips {
                let len = elf.len();
                elf[at % len] = byte;
            }
            let _ = parse(&elf);
        }
    }
}
