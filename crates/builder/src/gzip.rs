//! The builder's gzip encoder (RFC 1952): miniz_oxide's raw deflate at a fixed level between a
//! fixed header (no name, mtime 0, OS 255) and the CRC-32 and size trailer. Layer bytes depend
//! only on the pinned miniz_oxide, whatever backend flate2 uses to read gzip elsewhere in the
//! workspace (chosen for speed of reading). The bytes are those flate2's
//! `GzBuilder::new().mtime(0).operating_system(255)` wrote over its miniz_oxide backend, so
//! images built before this encoder keep their digests; a test pins them.

use std::io::{self, Write};

use miniz_oxide::deflate::core::CompressorOxide;
use miniz_oxide::deflate::stream::deflate;
use miniz_oxide::{DataFormat, MZFlush, MZStatus};

/// Output produced per call into miniz_oxide, written to the inner writer after each.
const OUTPUT_CHUNK: usize = 32 * 1024;

/// A gzip stream written to `W`. [`GzipWriter::finish`] ends it; dropping it unfinished leaves
/// a truncated stream.
pub struct GzipWriter<W: Write> {
    inner: W,
    compressor: Box<CompressorOxide>,
    crc: crc32fast::Hasher,
    /// Input bytes modulo 2³², as the trailer's ISIZE holds them.
    size: u32,
    output: Vec<u8>,
}

impl<W: Write> GzipWriter<W> {
    /// Starts a stream at `level` (0–10, miniz_oxide's scale; 9 is zlib's best), writing the
    /// header. Errors: the inner writer's.
    pub fn new(mut inner: W, level: u8) -> io::Result<GzipWriter<W>> {
        // XFL 2 marks the slowest, best compression (levels 9 and up), 4 the fastest (1),
        // as flate2 sets it.
        let extra_flags = match level {
            9.. => 2,
            0 | 1 => 4,
            _ => 0,
        };
        inner.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, extra_flags, 255])?;
        let mut compressor: Box<CompressorOxide> = Box::default();
        compressor.set_format_and_level(DataFormat::Raw, level);
        Ok(GzipWriter {
            inner,
            compressor,
            crc: crc32fast::Hasher::new(),
            size: 0,
            output: vec![0; OUTPUT_CHUNK],
        })
    }

    /// Runs the compressor over `input` with `flush`, writing what it produces; returns
    /// whether the stream ended.
    fn deflate(&mut self, mut input: &[u8], flush: MZFlush) -> io::Result<bool> {
        loop {
            let step = deflate(&mut self.compressor, input, &mut self.output, flush);
            self.inner.write_all(&self.output[..step.bytes_written])?;
            input = &input[step.bytes_consumed..];
            match step.status {
                Ok(MZStatus::StreamEnd) => return Ok(true),
                Ok(_) if input.is_empty() && flush == MZFlush::None => return Ok(false),
                Ok(_) => {}
                // No progress possible: everything given was taken and all output written.
                Err(miniz_oxide::MZError::Buf) if input.is_empty() => return Ok(false),
                Err(e) => return Err(io::Error::other(format!("deflate failed: {e:?}"))),
            }
        }
    }

    /// Ends the stream (the rest of the deflate data, then the trailer); the inner writer.
    /// Errors: the inner writer's.
    pub fn finish(mut self) -> io::Result<W> {
        while !self.deflate(&[], MZFlush::Finish)? {}
        let crc = std::mem::take(&mut self.crc).finalize();
        self.inner.write_all(&crc.to_le_bytes())?;
        self.inner.write_all(&self.size.to_le_bytes())?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for GzipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.deflate(buf, MZFlush::None)?;
        self.crc.update(buf);
        self.size = self.size.wrapping_add(buf.len() as u32);
        Ok(buf.len())
    }

    /// Flushes the inner writer only: a deflate flush point would change the bytes.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use sha2::{Digest, Sha256};

    use super::*;

    fn input() -> Vec<u8> {
        let mut data: Vec<u8> = (0u32..1_000_000)
            .map(|i| (i.wrapping_mul(i) % 251) as u8)
            .collect();
        for n in 0..20_000u32 {
            data.extend_from_slice(
                format!("line {n}: the builder's layers are reproducible\n").as_bytes(),
            );
        }
        data
    }

    /// The builder once gzipped through flate2 over miniz_oxide; flate2 now reads through
    /// zlib-rs, and layers are written here. The bytes must not have changed: this digest is
    /// what flate2 1.1.5 over miniz_oxide 0.8.9 wrote for the same input at level 9, whatever
    /// size the pieces were written in.
    #[test]
    fn the_builders_gzip_bytes_are_what_flate2_over_miniz_oxide_wrote() {
        let data = input();
        for piece in [1, 512, 8192, 1 << 20] {
            let mut gzip = GzipWriter::new(Vec::new(), 9).unwrap();
            for chunk in data.chunks(piece) {
                gzip.write_all(chunk).unwrap();
            }
            let written = gzip.finish().unwrap();
            assert_eq!(
                hex::encode(Sha256::digest(&written)),
                "02a04f1a5e18c824df10e19a07e4a23b5b0fa40b90b377a4f6306d4dc85bd6fa",
                "pieces of {piece}"
            );
            let mut read = Vec::new();
            flate2::read::GzDecoder::new(written.as_slice())
                .read_to_end(&mut read)
                .unwrap();
            assert!(read == data, "pieces of {piece}: reads back");
        }
    }

    #[test]
    fn an_empty_stream_is_valid_gzip() {
        let written = GzipWriter::new(Vec::new(), 9).unwrap().finish().unwrap();
        let mut read = Vec::new();
        flate2::read::GzDecoder::new(written.as_slice())
            .read_to_end(&mut read)
            .unwrap();
        assert!(read.is_empty());
    }
}
