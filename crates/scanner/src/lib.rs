//! The vulnerability scanner. `inventory` lists an image's packages from one walk of its
//! layers: the Go modules and standard library of every Go executable, and the Alpine and
//! Debian packages of its package databases. `assess` matches them against OSV advisories,
//! with reachability from the Go function table; `report` renders the result (JSON, SARIF,
//! table); `sbom` writes SPDX 2.3 and CycloneDX 1.5 documents of the same package list.

pub mod assess;
pub mod gate;
pub mod inventory;
pub mod report;
pub mod sbom;

pub use assess::{assess, Finding, KnownAdvisory};
pub use inventory::{inventory, GoBinary, Inventory, Package, PackageType};
pub use report::ScanReport;
