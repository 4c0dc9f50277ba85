//! Lays out an OSV source in govulncheck's legacy database format, for bench/scan.sh's
//! side-by-side runs with Debian's govulncheck (see
//! [`gantry_osv::testdata::write_legacy_govulndb`]):
//!
//!     cargo run -p gantry-osv --features test-support --example legacy_govulndb -- SOURCE DIR

fn main() -> std::io::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(source), Some(dir)) = (args.next(), args.next()) else {
        eprintln!("usage: legacy_govulndb SOURCE DIR");
        std::process::exit(2);
    };
    gantry_osv::testdata::write_legacy_govulndb(source.as_ref(), dir.as_ref())
}
