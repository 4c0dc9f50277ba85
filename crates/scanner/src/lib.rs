//! The vulnerability scanner. `inventory` lists an image's packages from one walk of its
//! layers: the Go modules and standard library of every Go executable, and the Alpine and
//! Debian packages of its package databases.

pub mod inventory;
pub mod sbom;

pub use inventory::{inventory, GoBinary, Inventory, Package, PackageType};
