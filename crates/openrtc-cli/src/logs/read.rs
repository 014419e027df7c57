//! Reading log files as a stream of whole-line chunks: plain or gzip (recognised by its magic
//! bytes, whatever the name), a large buffer refilled in place so no file is ever held whole,
//! and `--follow` on the last file, like `tail -F`: poll for growth, finish the old file and
//! open the new one when the path is rotated (its inode changes), start over when the file is
//! truncated (it shrinks below what was read).
//!
//! A file's last line without a line end is a line like the others when the file is read to
//! its end (a record cut short is then a bad line); when following, it is held until the rest
//! is written.

use std::fs::File;
use std::io::{self, Read, Seek as _, SeekFrom};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flate2::read::MultiGzDecoder;
use memchr::memrchr;

use super::scan::Scan;

/// How much of a file is read at a time (a longer line grows the buffer).
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// How often `--follow` looks at the file for growth, rotation and truncation.
pub const FOLLOW_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Why reading stopped short.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// A file could not be opened.
    #[error("cannot open {}: {error}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        error: io::Error,
    },
    /// A file could not be read to its end (an I/O error, corrupt gzip data).
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        error: io::Error,
    },
    /// `--follow` was asked of a gzip file, which is never appended to.
    #[error("cannot follow {}: it is gzip-compressed; follow the plain file it was rotated from", path.display())]
    FollowGzip {
        /// The file.
        path: PathBuf,
    },
    /// Standard output failed (its reader went away, for one).
    #[error("cannot write the output: {0}")]
    Output(#[source] io::Error),
}

/// A file's bytes: plain, or gzip decoded on the fly.
enum Source {
    /// A plain file (the only kind that can be followed).
    Plain(File),
    /// A gzip file, every member in turn.
    Gzip(Box<MultiGzDecoder<File>>),
}

impl Source {
    /// Opens a file, gzip when it starts with the gzip magic bytes.
    fn open(path: &Path) -> io::Result<Self> {
        let mut file = File::open(path)?;
        let mut magic = [0_u8; 2];
        let mut magic_len = 0;
        while magic_len < magic.len() {
            match file.read(&mut magic[magic_len..]) {
                Ok(0) => break,
                Ok(read) => magic_len += read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        file.seek(SeekFrom::Start(0))?;
        if magic_len == 2 && magic == [0x1f, 0x8b] {
            Ok(Self::Gzip(Box::new(MultiGzDecoder::new(file))))
        } else {
            Ok(Self::Plain(file))
        }
    }
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(file) => file.read(buf),
            Self::Gzip(decoder) => decoder.read(buf),
        }
    }
}

/// Cuts a byte stream into chunks of whole lines, keeping the unfinished last line for later.
struct Chunker {
    source: Source,
    buffer: Vec<u8>,
    /// Bytes in `buffer` holding data.
    filled: usize,
    /// Bytes at the start of `buffer` already handed out.
    handed_out: usize,
    /// Bytes read from the source so far (for a plain file, the read position).
    read_bytes: u64,
}

impl Chunker {
    fn new(source: Source) -> Self {
        Self {
            source,
            buffer: vec![0; CHUNK_BYTES],
            filled: 0,
            handed_out: 0,
            read_bytes: 0,
        }
    }

    /// The next chunk of whole lines; `None` at the (current) end of the source.
    fn next_chunk(&mut self) -> io::Result<Option<&[u8]>> {
        self.buffer.copy_within(self.handed_out..self.filled, 0);
        self.filled -= self.handed_out;
        self.handed_out = 0;
        loop {
            if self.filled == self.buffer.len() {
                // One line longer than the buffer: make room for the rest of it.
                self.buffer.resize(self.buffer.len() * 2, 0);
            }
            let read = match self.source.read(&mut self.buffer[self.filled..]) {
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            if read == 0 {
                return Ok(None);
            }
            self.read_bytes += read as u64;
            let scan_from = self.filled;
            self.filled += read;
            if let Some(newline) = memrchr(b'\n', &self.buffer[scan_from..self.filled]) {
                self.handed_out = scan_from + newline + 1;
                return Ok(Some(&self.buffer[..self.handed_out]));
            }
        }
    }

    /// The unfinished last line read so far (empty when the data ended with a line end).
    fn rest(&self) -> &[u8] {
        &self.buffer[self.handed_out..self.filled]
    }

    /// Forgets the unfinished last line; returns whether there was one.
    fn drop_rest(&mut self) -> bool {
        let had_rest = self.filled > self.handed_out;
        self.filled = self.handed_out;
        had_rest
    }
}

/// Reads every chunk the chunker has now into the scan.
fn drain<W: io::Write>(
    chunker: &mut Chunker,
    scan: &mut Scan<W>,
    path: &Path,
    stop: Option<&AtomicBool>,
) -> Result<(), ReadError> {
    loop {
        if stop.is_some_and(|stop| stop.load(Ordering::Relaxed)) {
            return Ok(());
        }
        let chunk = chunker.next_chunk().map_err(|error| ReadError::Read {
            path: path.to_owned(),
            error,
        })?;
        match chunk {
            Some(chunk) => scan.chunk(chunk).map_err(ReadError::Output)?,
            None => return Ok(()),
        }
    }
}

/// Reads one file from start to end; its unfinished last line is a line too.
///
/// # Errors
///
/// The file cannot be opened or read, or the output fails.
pub fn read_file<W: io::Write>(path: &Path, scan: &mut Scan<W>) -> Result<(), ReadError> {
    let source = Source::open(path).map_err(|error| ReadError::Open {
        path: path.to_owned(),
        error,
    })?;
    let mut chunker = Chunker::new(source);
    drain(&mut chunker, scan, path, None)?;
    scan.line(chunker.rest()).map_err(ReadError::Output)
}

/// Reads a file to its end, then follows it until `stop` is set, like `tail -F`.
///
/// # Errors
///
/// The file cannot be opened or is gzip, the open file cannot be read, or the output fails.
/// A path that is missing for a while (between a rotation's rename and the new file) is
/// waited for.
pub fn follow_file<W: io::Write>(
    path: &Path,
    scan: &mut Scan<W>,
    stop: &AtomicBool,
    poll_interval: Duration,
) -> Result<(), ReadError> {
    let open = |path: &Path| -> Result<(Chunker, (u64, u64)), ReadError> {
        let source = Source::open(path).map_err(|error| ReadError::Open {
            path: path.to_owned(),
            error,
        })?;
        let Source::Plain(file) = &source else {
            return Err(ReadError::FollowGzip {
                path: path.to_owned(),
            });
        };
        let metadata = file.metadata().map_err(|error| ReadError::Open {
            path: path.to_owned(),
            error,
        })?;
        Ok((Chunker::new(source), (metadata.dev(), metadata.ino())))
    };
    let (mut chunker, mut identity) = open(path)?;
    loop {
        drain(&mut chunker, scan, path, Some(stop))?;
        scan.flush().map_err(ReadError::Output)?;
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        std::thread::sleep(poll_interval);
        let Ok(metadata) = std::fs::metadata(path) else {
            // Renamed away, the new file not there yet: keep reading the old one meanwhile.
            continue;
        };
        if (metadata.dev(), metadata.ino()) != identity {
            // Rotated: finish the old file, whose unfinished line will never be finished,
            // then read the new one from its start.
            drain(&mut chunker, scan, path, Some(stop))?;
            if chunker.drop_rest() {
                scan.count_bad_line();
            }
            match open(path) {
                Ok((next, next_identity)) => {
                    chunker = next;
                    identity = next_identity;
                }
                // Gone again before it could be opened: wait for the next one.
                Err(ReadError::Open { error, .. }) if error.kind() == io::ErrorKind::NotFound => {}
                Err(other) => return Err(other),
            }
        } else if metadata.len() < chunker.read_bytes {
            // Truncated: what was read is gone; start over.
            let Source::Plain(file) = &mut chunker.source else {
                continue;
            };
            file.seek(SeekFrom::Start(0))
                .map_err(|error| ReadError::Read {
                    path: path.to_owned(),
                    error,
                })?;
            chunker.read_bytes = 0;
            if chunker.drop_rest() {
                scan.count_bad_line();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::logs::filter::Filter;

    fn record(message: &str) -> String {
        format!(r#"{{"ts":"2026-12-06T23:51:13Z","level":"INFO","message":"{message}"}}"#)
    }

    fn read(path: &Path) -> (String, u64, u64) {
        let mut scan = Scan::new(Filter::default(), true, Vec::new());
        read_file(path, &mut scan).expect("readable");
        let counts = (scan.matched_count(), scan.bad_count());
        (
            String::from_utf8(scan.into_output()).expect("UTF-8"),
            counts.0,
            counts.1,
        )
    }

    #[test]
    fn lines_longer_than_the_buffer_and_across_chunks_are_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("big.jsonl");
        let long = "x".repeat(CHUNK_BYTES * 2 + 17);
        let mut expected = String::new();
        for index in 0..20_000 {
            let message = if index == 7_000 {
                long.clone()
            } else {
                format!("m{index}")
            };
            expected.push_str(&record(&message));
            expected.push('\n');
        }
        std::fs::write(&path, &expected).expect("write");
        let (output, matched, bad) = read(&path);
        assert_eq!((matched, bad), (20_000, 0));
        assert!(output == expected, "every line, whole and in order");
    }

    #[test]
    fn gzip_is_recognised_by_its_magic_bytes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("rotated.1");
        let text = format!("{}\n{}\n", record("a"), record("b"));
        let mut encoder =
            flate2::write::GzEncoder::new(File::create(&path).expect("create"), Default::default());
        encoder.write_all(text.as_bytes()).expect("compress");
        encoder.finish().expect("finish");
        assert_eq!(read(&path), (text, 2, 0));
    }

    #[test]
    fn an_unfinished_last_line_is_a_bad_line_and_an_empty_file_is_fine() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cut = dir.path().join("cut.jsonl");
        std::fs::write(&cut, format!("{}\n{{\"ts\":\"2026", record("a"))).expect("write");
        assert_eq!(read(&cut), (format!("{}\n", record("a")), 1, 1));
        let whole = dir.path().join("whole.jsonl");
        std::fs::write(&whole, record("a")).expect("write");
        assert_eq!(read(&whole), (format!("{}\n", record("a")), 1, 0));
        let empty = dir.path().join("empty.jsonl");
        std::fs::write(&empty, "").expect("write");
        assert_eq!(read(&empty), (String::new(), 0, 0));
    }

    #[test]
    fn a_corrupt_gzip_file_is_a_read_error_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("broken.gz");
        std::fs::write(&path, [0x1f, 0x8b, 0x08, 0x00, 0xff, 0xff]).expect("write");
        let mut scan = Scan::new(Filter::default(), true, Vec::new());
        let error = read_file(&path, &mut scan).expect_err("corrupt");
        assert!(matches!(error, ReadError::Read { .. }), "{error:?}");
        assert!(error.to_string().contains("broken.gz"), "{error}");
    }
}
