//! The build information the Go linker embeds in every binary (Go 1.18+): the Go version, the
//! main module, every dependency module with its version and checksum, and the build settings.
//! `go version -m` prints the same; this reads it without a Go toolchain, from the bytes of a
//! binary, so that images can be inspected anywhere.

use std::fmt;

/// `\xff Go buildinf:`, which starts the `.go.buildinfo` section.
const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
/// Header length before the inline strings.
const HEADER: usize = 32;
/// Flag bit: version and module info are stored inline as length-prefixed strings.
const FLAG_INLINE: u8 = 0x2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildInfoError {
    #[error("no Go build information found: not a Go binary, or built by Go older than 1.18")]
    Missing,
    #[error("Go build information uses the pre-1.18 pointer format, which is not supported")]
    OldFormat,
    #[error("Go build information is truncated or malformed")]
    Malformed,
}

/// A module as the build info lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub path: String,
    pub version: String,
    /// `h1:` checksum; empty for the main module and replaced modules without one.
    pub sum: String,
    /// The module that replaced this one (a `=>` line), if any.
    pub replacement: Option<Box<Module>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildInfo {
    /// e.g. `go1.19.8`
    pub go_version: String,
    /// The main package's import path.
    pub path: String,
    pub main: Option<Module>,
    pub deps: Vec<Module>,
    /// `build` lines: `-trimpath=true`, `CGO_ENABLED=0`, `GOARCH=amd64`, `vcs.revision=…`.
    pub settings: Vec<(String, String)>,
}

impl BuildInfo {
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
        let byte = *data.get(*pos).ok_or(BuildInfoError::Malformed)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(BuildInfoError::Malformed)
}

fn inline_string<'a>(data: &'a [u8], pos: &mut usize) -> Result<&'a [u8], BuildInfoError> {
    let len = usize::try_from(uvarint(data, pos)?).map_err(|_| BuildInfoError::Malformed)?;
    let end = pos.checked_add(len).ok_or(BuildInfoError::Malformed)?;
    let s = data.get(*pos..end).ok_or(BuildInfoError::Malformed)?;
    *pos = end;
    Ok(s)
}

/// Finds and parses the build info in a binary's bytes.
pub fn parse(binary: &[u8]) -> Result<BuildInfo, BuildInfoError> {
    let start = binary
        .windows(MAGIC.len())
        .position(|w| w == MAGIC)
        .ok_or(BuildInfoError::Missing)?;
    let data = &binary[start..];
    if data.len() < HEADER {
        return Err(BuildInfoError::Malformed);
    }
    if data[15] & FLAG_INLINE == 0 {
        return Err(BuildInfoError::OldFormat);
    }
    let mut pos = HEADER;
    let version = inline_string(data, &mut pos)?;
    let modinfo = inline_string(data, &mut pos)?;
    let mut info = parse_modinfo(&String::from_utf8_lossy(strip_sentinels(modinfo)));
    info.go_version = String::from_utf8_lossy(version).into_owned();
    Ok(info)
}

/// Module info is framed by 16-byte sentinels on both sides.
fn strip_sentinels(modinfo: &[u8]) -> &[u8] {
    if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        &modinfo[16..modinfo.len() - 16]
    } else {
        modinfo
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
            ["build", setting, ..] => {
                let (key, value) = setting.split_once('=').unwrap_or((setting, ""));
                info.settings
                    .push((key.to_string(), value.trim_matches('"').to_string()));
            }
            _ => {}
        }
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut old = binary("go1.17", MODINFO);
        old[115] = 0; // clear the inline flag
        assert_eq!(parse(&old), Err(BuildInfoError::OldFormat));
        let full = binary("go1.19.8", MODINFO);
        assert_eq!(parse(&full[..140]), Err(BuildInfoError::Malformed));
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
    }
}
