//! Everything the vulnerability scanner reads out of a Go executable: its build info (Go
//! version, modules) and, per package, the symbols compiled into it, named as OSV's
//! `affected[].ecosystem_specific.imports[].symbols` name them, so that a finding can say
//! whether the vulnerable code is in the binary at all.

use std::collections::{BTreeMap, BTreeSet};

use crate::binary::{Executable, ExecutableError};
use crate::buildinfo::{self, BuildInfo, BuildInfoError};
use crate::pclntab::{self, InlineTreeError, PclntabError, PclntabVersion};

/// What a Go executable says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoBinary {
    /// The Go version, modules and build settings (what `go version -m` prints).
    pub info: BuildInfo,
    /// Per package import path (`golang.org/x/text/language`; the main package under its real
    /// path, [`BuildInfo::path`], not `main`), the functions compiled into the binary and those
    /// inlined into them (read from their inline trees, [`pclntab::read_inlined`]), in OSV's
    /// notation (`Parse`, `Tokenizer.Next`); see [`osv_symbol`]. `None` when the function table
    /// could not be read: reachability is then unknown, not "nothing".
    pub symbols: Option<BTreeMap<String, BTreeSet<String>>>,
    /// Why `symbols` is `None`.
    pub symbols_error: Option<PclntabError>,
    /// Why `symbols` holds the function table's functions but not the functions inlined into
    /// them (Go before 1.18, or the trees' region not found): a function missing from
    /// `symbols` may then still be in the binary, inlined. `None` when they were read (or
    /// `symbols` is `None`).
    pub inlined_error: Option<InlineTreeError>,
}

/// Why a file is not a readable Go executable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GoBinaryError {
    #[error(transparent)]
    Executable(#[from] ExecutableError),
    #[error(transparent)]
    BuildInfo(#[from] BuildInfoError),
}

/// Reads a Go executable (ELF, Mach-O or PE): its build info, which must be there, and its
/// symbols, which may not be readable (then `symbols` is `None` with the reason beside it).
/// Errors: `Executable` for bytes that are not an executable, `BuildInfo` for an executable
/// without readable Go build info (not Go, or Go before 1.13).
pub fn read_go_binary(bytes: &[u8]) -> Result<GoBinary, GoBinaryError> {
    let exe = Executable::parse(bytes)?;
    let info = buildinfo::parse(bytes)?;
    let (symbols, symbols_error, inlined_error) = match pclntab::locate(&exe) {
        Ok((table_bytes, table)) => {
            let mut names = table.names;
            let inlined_error = match pclntab::read_inlined(&exe, table_bytes) {
                Ok(inlined) => {
                    names.extend(inlined);
                    None
                }
                Err(e) => Some(e),
            };
            let symbols = symbols_by_package(&names, table.version, &info.path);
            (Some(symbols), None, inlined_error)
        }
        Err(e) => (None, Some(e), None),
    };
    Ok(GoBinary {
        info,
        symbols,
        symbols_error,
        inlined_error,
    })
}

/// Groups function names (as the pclntab holds them) by package in OSV's notation, the `main`
/// package under `main_path` (as govulncheck's binary mode does, internal/vulncheck/binary.go
/// `packagesAndSymbols`), where that is known.
pub fn symbols_by_package(
    names: &[String],
    version: PclntabVersion,
    main_path: &str,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for name in names {
        if let Some((package, symbol)) = osv_symbol(name, version) {
            let package = if package == "main" && !main_path.is_empty() {
                main_path.to_string()
            } else {
                package
            };
            out.entry(package).or_default().insert(symbol);
        }
    }
    out
}

/// The package and OSV symbol of a linker symbol name, or `None` for what no OSV record can
/// name. Follows govulncheck's binary mode (golang.org/x/vuln internal/buildinfo
/// additions_scan.go `parseName`, with internal/gosym's `PackageName`, `ReceiverName` and
/// `BaseName`): the package is the name up to the first `.` after the last `/`, its
/// `%`-escapes undone (`gopkg.in/yaml%2ev3` → `gopkg.in/yaml.v3`); the symbol is the base name,
/// after the receiver with `(*`…`)` trimmed when there is one (`net/http.(*Client).Do` →
/// `net/http`, `Client.Do`). Then, on top of x/vuln, what makes no difference to matching but
/// keeps the sets clean:
///
/// - generic instantiations lose their brackets: `pkg.Map[...]` → `Map`,
///   `pkg.(*List[...]).Push` → `List.Push` (OSV names generic symbols without them; x/vuln keeps
///   `Map[...]`, which never equals an OSV symbol);
/// - closures, `go`/`defer` wrappers and their nested literals are dropped (`F.func1`,
///   `F.func1.2`, `F.gowrap1`, `F.deferwrap1`: x/vuln keeps them, and no OSV symbol names one);
/// - compiler-generated names belong to no package: `go:`/`type:` prefixes since Go 1.20, `go.`
///   and `type.` before (x/vuln's rule), except that a pre-1.20 name whose first path element
///   is a host name (`go.uber.org/zap.New`) is a package, which x/vuln's prefix test misses.
pub fn osv_symbol(name: &str, version: PclntabVersion) -> Option<(String, String)> {
    let name = without_instantiations(name);
    if is_compiler_generated(&name, version) {
        return None;
    }
    let path_end = name.rfind('/').unwrap_or(0);
    let first_dot = path_end + name[path_end..].find('.')?;
    let last_dot = path_end + name[path_end..].rfind('.')?;
    let package = percent_decode(&name[..first_dot])?;
    let base = &name[last_dot + 1..];
    let symbol = if first_dot == last_dot {
        base.to_string()
    } else {
        let receiver = name[first_dot + 1..last_dot].trim_matches(['(', '*', ')']);
        format!("{receiver}.{base}")
    };
    if package.is_empty() || symbol.split('.').any(is_function_literal) {
        return None;
    }
    Some((package, symbol))
}

/// `name` with every bracketed part (type arguments, nested ones included) removed.
fn without_instantiations(name: &str) -> String {
    let mut depth = 0usize;
    name.chars()
        .filter(|&c| {
            match c {
                '[' => depth += 1,
                ']' => depth = depth.saturating_sub(1),
                _ => return depth == 0,
            }
            false
        })
        .collect()
}

fn is_compiler_generated(name: &str, version: PclntabVersion) -> bool {
    if name.starts_with("go:") || name.starts_with("type:") {
        return true;
    }
    if version >= PclntabVersion::Go120 || !(name.starts_with("go.") || name.starts_with("type.")) {
        return false;
    }
    let host = name.split('/').next().unwrap_or_default();
    let is_host = name.contains('/')
        && !host.contains("..")
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    !is_host
}

/// A function literal's or wrapper's name part: `func1`, `gowrap2`, `deferwrap1`, or the bare
/// number of a nested literal.
fn is_function_literal(part: &str) -> bool {
    let digits = ["func", "gowrap", "deferwrap"]
        .iter()
        .find_map(|prefix| part.strip_prefix(prefix))
        .unwrap_or(part);
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
}

/// Undoes `%XX` escapes (Go's url.PathUnescape); `None` for a malformed escape.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn symbol(name: &str) -> Option<(String, String)> {
        osv_symbol(name, PclntabVersion::Go120)
    }

    fn pair(package: &str, symbol: &str) -> Option<(String, String)> {
        Some((package.to_string(), symbol.to_string()))
    }

    #[test]
    fn functions_and_methods_are_named_as_osv_names_them() {
        assert_eq!(
            symbol("golang.org/x/text/language.Parse"),
            pair("golang.org/x/text/language", "Parse")
        );
        assert_eq!(
            symbol("net/http.(*Client).Do"),
            pair("net/http", "Client.Do")
        );
        assert_eq!(
            symbol("golang.org/x/net/html.(*Tokenizer).Next"),
            pair("golang.org/x/net/html", "Tokenizer.Next")
        );
        assert_eq!(
            symbol("encoding/json.Number.String"),
            pair("encoding/json", "Number.String")
        );
        assert_eq!(symbol("main.main"), pair("main", "main"));
        assert_eq!(
            symbol("gopkg.in/yaml%2ev3.Unmarshal"),
            pair("gopkg.in/yaml.v3", "Unmarshal")
        );
    }

    #[test]
    fn generic_instantiations_lose_their_type_arguments() {
        assert_eq!(
            symbol("example.com/m/p.Map[...]"),
            pair("example.com/m/p", "Map")
        );
        assert_eq!(
            symbol("example.com/m/p.(*List[go.shape.*net/http.Client]).Push"),
            pair("example.com/m/p", "List.Push")
        );
        assert_eq!(
            symbol("slices.Sort[go.shape.[]int,go.shape.int]"),
            pair("slices", "Sort")
        );
    }

    #[test]
    fn closures_wrappers_and_compiler_generated_code_are_dropped() {
        for name in [
            "main.main.func1",
            "net/http.(*Server).Serve.func1.2",
            "example.com/p.F.gowrap1",
            "example.com/p.F.deferwrap2",
            "go:buildid",
            "type:.eq.[2]interface {}",
            "runtime",
            "gopkg.in/x%zz.F",
        ] {
            assert_eq!(symbol(name), None, "{name}");
        }
        assert_eq!(osv_symbol("type..eq.main.T", PclntabVersion::Go118), None);
        assert_eq!(
            osv_symbol("go.itab.*os.File,io.Writer", PclntabVersion::Go118),
            None
        );
        assert_eq!(
            osv_symbol("go.uber.org/zap.New", PclntabVersion::Go118),
            pair("go.uber.org/zap", "New")
        );
        // Since 1.20 `go.` is an ordinary host name's start.
        assert_eq!(
            symbol("go.uber.org/zap.New"),
            pair("go.uber.org/zap", "New")
        );
    }

    #[test]
    fn the_main_package_goes_by_its_path() {
        let names: Vec<String> = ["main.main", "main.helper", "fmt.Println", "main.main.func1"]
            .map(String::from)
            .to_vec();
        let grouped = symbols_by_package(&names, PclntabVersion::Go120, "example.com/app");
        assert_eq!(
            grouped["example.com/app"],
            BTreeSet::from(["main".to_string(), "helper".to_string()])
        );
        assert!(!grouped.contains_key("main"));
        assert_eq!(grouped["fmt"], BTreeSet::from(["Println".to_string()]));
    }

    #[test]
    fn bytes_that_are_no_executable_or_have_no_build_info_say_so() {
        assert!(matches!(
            read_go_binary(b"#!/bin/sh\necho hi\n"),
            Err(GoBinaryError::Executable(ExecutableError::UnknownFormat))
        ));
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(
            read_go_binary(&me),
            Err(GoBinaryError::BuildInfo(BuildInfoError::Missing))
        );
    }

    proptest::proptest! {
        #[test]
        fn any_name_normalizes_without_panicking(name in "\\PC{0,40}", version in 0..4usize) {
            let version = [PclntabVersion::Go12, PclntabVersion::Go116, PclntabVersion::Go118,
                           PclntabVersion::Go120][version];
            let _ = osv_symbol(&name, version);
        }
    }
}
