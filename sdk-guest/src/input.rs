//! `Input`: the staged file of a batch app, read in chunks from the host.

use crate::__private::bindings::mysimbdp::ingest::batch_input::Source;
use std::io::{self, BufRead, Read};

/// How much to ask the host for per call: large enough that host calls vanish next to
/// parsing, small enough to stay far below a 64 MiB memory cap.
const CHUNK_BYTES: u32 = 256 * 1024;

/// The file being ingested. It implements [`Read`] and [`BufRead`], so any streaming parser
/// works on it; the whole file is never in memory.
pub struct Input<'a> {
    source: &'a Source,
    chunk: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl<'a> Input<'a> {
    pub(crate) fn new(source: &'a Source) -> Self {
        Self {
            source,
            chunk: Vec::new(),
            pos: 0,
            eof: false,
        }
    }

    /// The file's name as the tenant uploaded it.
    pub fn name(&self) -> String {
        self.source.name()
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.source.size()
    }

    /// The content type given at upload, if any.
    pub fn content_type(&self) -> Option<String> {
        self.source.content_type()
    }

    /// The file's lines (without their line endings); invalid UTF-8 is an error.
    pub fn lines(&mut self) -> std::io::Lines<&mut Self> {
        BufRead::lines(self)
    }

    /// A CSV reader over the file with the given delimiter; the first row is the header.
    pub fn csv(&mut self, delimiter: u8) -> csv::Reader<&mut Self> {
        csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .buffer_capacity(CHUNK_BYTES as usize)
            .from_reader(self)
    }
}

impl Read for Input<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Input<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos >= self.chunk.len() && !self.eof {
            self.chunk = self.source.read(CHUNK_BYTES);
            self.pos = 0;
            self.eof = self.chunk.is_empty();
        }
        Ok(&self.chunk[self.pos..])
    }

    fn consume(&mut self, amount: usize) {
        self.pos = (self.pos + amount).min(self.chunk.len());
    }
}
