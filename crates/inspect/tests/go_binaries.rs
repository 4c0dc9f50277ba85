//! Real Go executables, built offline by gantry-gofixtures with Go 1.19 and Go 1.27 for linux,
//! darwin and windows, stripped or not, PIE or not, read by `buildinfo` and `gobinary` and
//! checked against Go's own tools: the modules and settings against `go version -m`, the
//! symbols against `go tool nm` (and a stripped binary's against its unstripped twin's).

use std::collections::{BTreeMap, BTreeSet};

use gantry_gofixtures::{
    build, Fixture, Goos, Options, Toolchain, INLINED_EVERYWHERE, MAIN_PATH, PACKAGES, VERSION_FLAG,
};
use gantry_inspect::binary::Executable;
use gantry_inspect::buildinfo::{self, BuildInfo, Module};
use gantry_inspect::gobinary::{read_go_binary, symbols_by_package};
use gantry_inspect::pclntab::{self, PclntabVersion};

/// A module as `go version -m` prints it: path, version, sum, and its replacement.
type PrintedModule = (String, String, String, Option<(String, String, String)>);

/// What `go version -m` prints, parsed independently of the reader under test.
#[derive(Debug, PartialEq, Eq)]
struct Printed {
    go_version: String,
    path: String,
    main: Option<PrintedModule>,
    deps: Vec<PrintedModule>,
    settings: Vec<(String, String)>,
}

/// Parses `go version -m` output: `FILE: goVERSION`, then tab-indented, tab-separated `path`,
/// `mod`, `dep`, `=>` and `build` lines (a setting's value in Go quotes when it holds spaces or
/// quotes; the fixture's escape only `"` and `\`).
fn parse_printed(text: &str) -> Printed {
    let mut lines = text.lines();
    let first = lines.next().expect("a first line");
    let go_version = first
        .rsplit_once(": ")
        .expect("FILE: VERSION")
        .1
        .to_string();
    let mut printed = Printed {
        go_version,
        path: String::new(),
        main: None,
        deps: Vec::new(),
        settings: Vec::new(),
    };
    let module = |fields: &[&str]| -> PrintedModule {
        let field = |i: usize| fields.get(i).copied().unwrap_or_default().to_string();
        (field(0), field(1), field(2), None)
    };
    for line in lines {
        let fields: Vec<&str> = line
            .strip_prefix('\t')
            .unwrap_or(line)
            .split('\t')
            .collect();
        match fields.as_slice() {
            ["path", path] => printed.path = path.to_string(),
            ["mod", rest @ ..] => printed.main = Some(module(rest)),
            ["dep", rest @ ..] => printed.deps.push(module(rest)),
            ["=>", rest @ ..] => {
                let (p, v, s, _) = module(rest);
                printed.deps.last_mut().expect("a dep before =>").3 = Some((p, v, s));
            }
            ["build", setting] => {
                let (key, value) = setting.split_once('=').expect("key=value");
                let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                    Some(quoted) => quoted.replace("\\\"", "\"").replace("\\\\", "\\"),
                    None => value.to_string(),
                };
                printed.settings.push((key.to_string(), value));
            }
            [""] => {}
            other => panic!("unexpected go version -m line {other:?}"),
        }
    }
    printed
}

fn as_printed(info: &BuildInfo) -> Printed {
    let module = |m: &Module| (m.path.clone(), m.version.clone(), m.sum.clone());
    Printed {
        go_version: info.go_version.clone(),
        path: info.path.clone(),
        main: info.main.as_ref().map(|m| {
            let (p, v, s) = module(m);
            (p, v, s, None)
        }),
        deps: info
            .deps
            .iter()
            .map(|m| {
                let (p, v, s) = module(m);
                (p, v, s, m.replacement.as_deref().map(module))
            })
            .collect(),
        settings: info.settings.clone(),
    }
}

fn pclntab_version(toolchain: Toolchain) -> PclntabVersion {
    match toolchain {
        Toolchain::Go119 => PclntabVersion::Go118,
        Toolchain::Go127 => PclntabVersion::Go120,
    }
}

/// The fixture packages' symbols in `go tool nm`'s listing of the text symbols, normalized as
/// the reader normalizes the function table's names.
fn nm_symbols(fixture: &Fixture) -> BTreeMap<String, BTreeSet<String>> {
    let listing = fixture.go_on_binary(&["tool", "nm"]);
    let names: Vec<String> = listing
        .lines()
        .filter_map(|line| {
            // `ADDRESS KIND NAME`; a name may hold spaces (`type:.eq.struct { … }`).
            let (_address, rest) = line.trim_start().split_once(' ')?;
            let (kind, name) = rest.trim_start().split_once(' ')?;
            ["T", "t"].contains(&kind).then(|| name.trim().to_string())
        })
        .collect();
    only_fixture_packages(symbols_by_package(
        &names,
        pclntab_version(fixture.options.toolchain),
        MAIN_PATH,
    ))
}

/// The fixture packages' functions in the function table alone (no inline trees), normalized.
fn table_functions(fixture: &Fixture) -> BTreeMap<String, BTreeSet<String>> {
    let exe = Executable::parse(&fixture.bytes).unwrap();
    let table = pclntab::locate_and_read(&exe).unwrap();
    only_fixture_packages(symbols_by_package(&table.names, table.version, MAIN_PATH))
}

fn only_fixture_packages(
    mut symbols: BTreeMap<String, BTreeSet<String>>,
) -> BTreeMap<String, BTreeSet<String>> {
    symbols.retain(|package, _| PACKAGES.contains(&package.as_str()));
    symbols
}

/// The oracle checks for one build configuration.
fn check(options: Options) {
    let Some(fixture) = build(options) else {
        return;
    };
    // Build info: exactly what `go version -m` prints.
    let printed = parse_printed(&fixture.go_on_binary(&["version", "-m"]));
    let info = buildinfo::parse(&fixture.bytes).unwrap_or_else(|e| panic!("{options}: {e}"));
    assert_eq!(as_printed(&info), printed, "{options}");
    assert!(printed
        .go_version
        .starts_with(options.toolchain.version_prefix()));
    assert_eq!(info.path, MAIN_PATH);
    let ldflags = info.setting("-ldflags").expect("-ldflags is recorded");
    assert!(
        ldflags.contains(&format!("-X \"main.version={VERSION_FLAG}\"")),
        "{ldflags}"
    );
    let replaced = info
        .deps
        .iter()
        .find(|m| m.path == "example.com/greet")
        .unwrap();
    assert_eq!(
        replaced.replacement.as_deref().map(|r| r.to_string()),
        Some("example.com/greet-fork@v1.4.0".to_string())
    );

    // Symbols: readable from every build, stripped or not.
    let binary = read_go_binary(&fixture.bytes).unwrap_or_else(|e| panic!("{options}: {e}"));
    assert_eq!(binary.info, info);
    assert_eq!(binary.inlined_error, None, "{options}: inline trees unread");
    let symbols = binary
        .symbols
        .unwrap_or_else(|| panic!("{options}: symbols unknown: {:?}", binary.symbols_error));
    assert!(
        symbols["golang.org/x/text/language"].contains("Parse"),
        "{options}: {:?}",
        symbols.get("golang.org/x/text/language")
    );
    assert!(symbols["golang.org/x/net/html"].contains("Tokenizer.Next"));
    assert!(symbols[MAIN_PATH].contains("main"));
    assert!(!symbols.contains_key("main"));
    // Every function of the table is a symbol; so is the function inlined everywhere, which
    // has no function of its own (its callers' inline trees name it).
    let functions = table_functions(&fixture);
    for (package, names) in &functions {
        assert!(symbols[package].is_superset(names), "{options}: {package}");
    }
    let (package, inlined) = INLINED_EVERYWHERE;
    assert!(
        !functions[package].contains(inlined),
        "{options}: {package}.{inlined} was not inlined everywhere"
    );
    assert!(
        symbols[package].contains(inlined),
        "{options}: {package}.{inlined} is not found in the inline trees: {:?}",
        symbols[package]
    );
    if options.stripped {
        let twin = build(Options {
            stripped: false,
            ..options
        })
        .expect("the toolchain that built the stripped twin");
        let unstripped = read_go_binary(&twin.bytes).unwrap().symbols.unwrap();
        assert_eq!(
            symbols, unstripped,
            "{options}: stripped and unstripped differ"
        );
    } else {
        let listed = nm_symbols(&fixture);
        assert_eq!(
            listed.keys().collect::<Vec<_>>().len(),
            PACKAGES.len(),
            "{options}: go tool nm lists every fixture package: {listed:?}"
        );
        assert_eq!(
            functions, listed,
            "{options}: the function table and go tool nm differ"
        );
    }
}

macro_rules! oracle_tests {
    ($($name:ident: $toolchain:ident $goos:ident stripped $stripped:literal pie $pie:literal;)*) => {
        $(
            #[test]
            fn $name() {
                check(Options {
                    toolchain: Toolchain::$toolchain,
                    goos: Goos::$goos,
                    stripped: $stripped,
                    pie: $pie,
                    no_inlining: false,
                });
            }
        )*
    };
}

oracle_tests! {
    go119_linux: Go119 Linux stripped false pie false;
    go119_linux_stripped: Go119 Linux stripped true pie false;
    go119_linux_pie: Go119 Linux stripped false pie true;
    go119_linux_pie_stripped: Go119 Linux stripped true pie true;
    go119_darwin: Go119 Darwin stripped false pie false;
    go119_darwin_stripped: Go119 Darwin stripped true pie false;
    go119_darwin_pie: Go119 Darwin stripped false pie true;
    go119_darwin_pie_stripped: Go119 Darwin stripped true pie true;
    go119_windows: Go119 Windows stripped false pie false;
    go119_windows_stripped: Go119 Windows stripped true pie false;
    go119_windows_pie: Go119 Windows stripped false pie true;
    go119_windows_pie_stripped: Go119 Windows stripped true pie true;
    go127_linux: Go127 Linux stripped false pie false;
    go127_linux_stripped: Go127 Linux stripped true pie false;
    go127_linux_pie: Go127 Linux stripped false pie true;
    go127_linux_pie_stripped: Go127 Linux stripped true pie true;
    go127_darwin: Go127 Darwin stripped false pie false;
    go127_darwin_stripped: Go127 Darwin stripped true pie false;
    go127_darwin_pie: Go127 Darwin stripped false pie true;
    go127_darwin_pie_stripped: Go127 Darwin stripped true pie true;
    go127_windows: Go127 Windows stripped false pie false;
    go127_windows_stripped: Go127 Windows stripped true pie false;
    go127_windows_pie: Go127 Windows stripped false pie true;
    go127_windows_pie_stripped: Go127 Windows stripped true pie true;
}

#[test]
fn a_build_without_inlining_records_its_gcflags_and_lists_its_functions() {
    for toolchain in [Toolchain::Go119, Toolchain::Go127] {
        let options = Options {
            no_inlining: true,
            ..Options::new(toolchain)
        };
        let Some(fixture) = build(options) else {
            continue;
        };
        let info = buildinfo::parse(&fixture.bytes).unwrap();
        assert_eq!(
            as_printed(&info),
            parse_printed(&fixture.go_on_binary(&["version", "-m"]))
        );
        assert_eq!(info.setting("-gcflags"), Some("all=-l"));
        let symbols = read_go_binary(&fixture.bytes).unwrap().symbols.unwrap();
        assert_eq!(only_fixture_packages(symbols.clone()), nm_symbols(&fixture));
        // Nothing inlined: even main's small method is a function of its own.
        assert!(
            symbols[MAIN_PATH].contains("report.add"),
            "{:?}",
            symbols[MAIN_PATH]
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Real binaries with bytes overwritten anywhere (headers, build info, function table)
    /// read or fail with an error, never a panic.
    #[test]
    fn mutated_real_binaries_never_panic(
        goos in proptest::sample::select(vec![Goos::Linux, Goos::Darwin, Goos::Windows]),
        flips in proptest::collection::vec((proptest::num::usize::ANY, proptest::num::u8::ANY), 1..32),
        near_start in proptest::bool::ANY,
    ) {
        let Some(fixture) = build(Options { goos, ..Options::new(Toolchain::Go119) }) else {
            return Ok(());
        };
        let mut bytes = fixture.bytes.clone();
        let len = if near_start { 4096.min(bytes.len()) } else { bytes.len() };
        for (at, byte) in flips {
            bytes[at % len] = byte;
        }
        let _ = read_go_binary(&bytes);
        let _ = buildinfo::parse(&bytes);
    }
}
