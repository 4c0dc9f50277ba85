//! What an ELF binary says about itself: whether it is statically linked (no program
//! interpreter, no dynamic section) and whether its symbol table was stripped. Enough to check
//! that a Go binary will run on `scratch`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfFacts {
    /// No `PT_INTERP` and no `PT_DYNAMIC`: runs without a dynamic loader or libc.
    pub static_linked: bool,
    /// No `.symtab` section.
    pub stripped: bool,
    /// `e_machine`: 62 x86-64, 183 AArch64, 40 ARM.
    pub machine: u16,
}

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const SHT_SYMTAB: u32 = 2;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Reads a little-endian ELF64 header and its program and section headers; `None` for
/// anything else (not ELF, 32-bit, big-endian, truncated).
pub fn facts(b: &[u8]) -> Option<ElfFacts> {
    if b.get(..4)? != b"\x7fELF" || *b.get(4)? != 2 || *b.get(5)? != 1 {
        return None;
    }
    let machine = u16_at(b, 18)?;
    let phoff = usize::try_from(u64_at(b, 32)?).ok()?;
    let shoff = usize::try_from(u64_at(b, 40)?).ok()?;
    let phentsize = usize::from(u16_at(b, 54)?);
    let phnum = usize::from(u16_at(b, 56)?);
    let shentsize = usize::from(u16_at(b, 58)?);
    let shnum = usize::from(u16_at(b, 60)?);
    let mut static_linked = true;
    for i in 0..phnum {
        let p_type = u32_at(b, phoff.checked_add(i.checked_mul(phentsize)?)?)?;
        if p_type == PT_INTERP || p_type == PT_DYNAMIC {
            static_linked = false;
        }
    }
    let mut stripped = true;
    for i in 0..shnum {
        let sh_type = u32_at(
            b,
            shoff
                .checked_add(i.checked_mul(shentsize)?)?
                .checked_add(4)?,
        )?;
        if sh_type == SHT_SYMTAB {
            stripped = false;
        }
    }
    Some(ElfFacts {
        static_linked,
        stripped,
        machine,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_runner_itself_is_a_dynamic_elf() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let f = facts(&me).unwrap();
        assert!(
            !f.static_linked,
            "cargo test binaries link libc dynamically"
        );
        assert!(f.machine == 62 || f.machine == 183);
    }

    #[test]
    fn refuses_what_is_not_elf64_le() {
        assert_eq!(facts(b"#!/bin/sh\n"), None);
        assert_eq!(facts(b"\x7fELF\x01\x01"), None);
        assert_eq!(facts(b"\x7fELF\x02\x01\x01"), None, "truncated");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let mut b = b"\x7fELF\x02\x01".to_vec();
            b.extend(tail);
            let _ = facts(&b);
        }
    }
}
