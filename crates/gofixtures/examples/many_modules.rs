//! Builds the benchmarks' large Go binary (bench/scan.sh): a program vendoring COUNT stand-in
//! modules under real module paths, each at a version the Go vulnerability database snapshot
//! lists as vulnerable (an `introduced` version), calling a vulnerable symbol of each, built
//! offline with the `go` on PATH (or `GO`) and not stripped, so that Debian's govulncheck of
//! 2023 reads it too.
//!
//!     cargo run -p gantry-gofixtures --example many_modules -- OUT_DIR [COUNT=200]
//!
//! Writes the sources to OUT_DIR/src and the binary to OUT_DIR/many-modules; prints the
//! number of modules.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use gantry_gofixtures::{offline_env, write_many_modules_program, StandIn};
use gantry_osv::testdata::go_snapshot;
use serde_json::Value;

/// An exported Go identifier.
fn exported(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `version` is a semantic version `module` may have (its major version suffix
/// `/vN` or `.vN` matched, none meaning v0 or v1).
fn fits_major(module: &str, version: &str) -> bool {
    let major = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .unwrap_or_default();
    match major_suffix(module) {
        Some(n) => major == n,
        None => (major == "0" || major == "1") && !module.starts_with("gopkg.in/"),
    }
}

/// The major version a module path's suffix (`/v2`, `.v3`) names.
fn major_suffix(module: &str) -> Option<&str> {
    module
        .rsplit_once("/v")
        .or_else(|| module.rsplit_once(".v"))
        .map(|(_, n)| n)
        .filter(|n| n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty())
}

/// A stand-in for each module of `affected` with a usable introduced version and symbol.
fn stand_in(affected: &Value) -> Option<StandIn> {
    let module = affected["package"]["name"].as_str()?;
    if module == "stdlib" || module == "toolchain" || !module.contains('.') {
        return None;
    }
    let introduced: Vec<&str> = affected["ranges"]
        .as_array()?
        .iter()
        .flat_map(|r| r["events"].as_array().into_iter().flatten())
        .filter_map(|e| e["introduced"].as_str())
        .filter(|v| !v.contains('+'))
        .collect();
    // A release that introduced it; else, affected from the beginning, a pseudo-version
    // before every release of the module's major version.
    let version = match introduced.iter().find(|v| **v != "0") {
        Some(v) => format!("v{v}"),
        None if introduced.contains(&"0") => format!(
            "v{}.0.0-20200101000000-000000000000",
            major_suffix(module).unwrap_or("0")
        ),
        None => return None,
    };
    if !fits_major(module, &version) {
        return None;
    }
    // A package main may import: inside the module, not internal.
    let (package, symbol) = affected["ecosystem_specific"]["imports"]
        .as_array()?
        .iter()
        .find_map(|import| {
            let package = import["path"].as_str()?;
            let inside = package == module || package.starts_with(&format!("{module}/"));
            if !inside
                || package
                    .split('/')
                    .any(|part| part == "internal" || part == "vendor")
            {
                return None;
            }
            let symbol = import["symbols"]
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .find(|s| s.split('.').count() <= 2 && s.split('.').all(exported))?;
            Some((package, symbol))
        })?;
    Some(StandIn {
        module: module.to_string(),
        version,
        package: package.to_string(),
        symbol: symbol.to_string(),
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().expect("usage: many_modules OUT_DIR [COUNT]"));
    let count: usize = args
        .next()
        .map_or(200, |n| n.parse().expect("COUNT is a number"));

    let mut by_module: BTreeMap<String, StandIn> = BTreeMap::new();
    for item in gantry_osv::source::open(&go_snapshot()).expect("the snapshot") {
        let Ok(gantry_osv::Item::Record(record)) = item else {
            continue;
        };
        let json: Value = serde_json::from_str(&record.json).expect("a record is JSON");
        for affected in json["affected"].as_array().into_iter().flatten() {
            if let Some(s) = stand_in(affected) {
                by_module.entry(s.module.clone()).or_insert(s);
            }
        }
    }
    // No module inside another's directory: each package directory belongs to one module.
    let modules: Vec<String> = by_module.keys().cloned().collect();
    let chosen: Vec<StandIn> = by_module
        .into_values()
        .filter(|s| {
            !modules.iter().any(|m| {
                m != &s.module
                    && (s.module.starts_with(&format!("{m}/"))
                        || m.starts_with(&format!("{}/", s.module)))
            })
        })
        .take(count)
        .collect();

    let src = out.join("src");
    std::fs::create_dir_all(&src).expect("creating OUT_DIR/src");
    write_many_modules_program(&src, &chosen).expect("writing the program");
    let go = std::env::var_os("GO").unwrap_or_else(|| "go".into());
    let status = Command::new(go)
        .current_dir(&src)
        .args(["build", "-o"])
        .arg(out.join("many-modules"))
        .arg(".")
        .envs(offline_env())
        .env("CGO_ENABLED", "0")
        .status()
        .expect("running go");
    assert!(status.success(), "go build failed");
    println!("{}", chosen.len());
}
