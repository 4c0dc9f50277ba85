//! Builds the benchmarks' large Go binary (bench/scan.sh): a program vendoring COUNT stand-in
//! modules under real module paths, each at a version the Go vulnerability database snapshot
//! lists as vulnerable, calling a vulnerable symbol of each
//! ([`gantry_gofixtures::many::vulnerable_stand_ins`]), built offline with the `go` on PATH
//! (or `GO`) and not stripped, so that Debian's govulncheck of 2023 reads it too.
//!
//!     cargo run -p gantry-gofixtures --example many_modules -- OUT_DIR [COUNT=200]
//!
//! Writes the sources to OUT_DIR/src and the binary to OUT_DIR/many-modules; prints the
//! number of modules.

use std::path::PathBuf;

use gantry_gofixtures::many::{build_many_modules_program, vulnerable_stand_ins};
use gantry_gofixtures::write_many_modules_program;
use gantry_osv::testdata::go_snapshot;
use serde_json::Value;

fn main() {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().expect("usage: many_modules OUT_DIR [COUNT]"));
    let count: usize = args
        .next()
        .map_or(200, |n| n.parse().expect("COUNT is a number"));
    let records: Vec<Value> = gantry_osv::source::open(&go_snapshot())
        .expect("the snapshot")
        .filter_map(|item| match item {
            Ok(gantry_osv::Item::Record(record)) => serde_json::from_str(&record.json).ok(),
            _ => None,
        })
        .collect();
    let chosen = vulnerable_stand_ins(&records, count);
    let src = out.join("src");
    std::fs::create_dir_all(&src).expect("creating OUT_DIR/src");
    write_many_modules_program(&src, &chosen).expect("writing the program");
    let go = std::env::var_os("GO").unwrap_or_else(|| "go".into());
    build_many_modules_program(go.as_ref(), &src, &out.join("many-modules"));
    println!("{}", chosen.len());
}
