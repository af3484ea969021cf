//! Log files: reading lines as bytes with their offsets, and telling one file from another.
//!
//! Lines are read as bytes and decoded lossily, so invalid UTF-8 is kept (as U+FFFD), never
//! dropped. A line longer than the cap is cut there; the rest of it is skipped and counted.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Bytes of the first line that identify a file (as vector's checksum fingerprint does).
const IDENTITY_BYTES: usize = 256;

/// One physical line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Byte offset of the line's first byte.
    pub offset: u64,
    pub text: String,
    /// True when the line was longer than the cap and was cut.
    pub cut: bool,
}

/// Reads lines from any byte stream, tracking offsets.
pub struct LineReader<R> {
    reader: R,
    offset: u64,
    max_line_bytes: usize,
    /// Lines cut at the cap so far.
    pub cut_lines: u64,
}

impl<R: BufRead> LineReader<R> {
    /// `offset` is the position `reader` starts at.
    pub fn new(reader: R, offset: u64, max_line_bytes: usize) -> Self {
        LineReader { reader, offset, max_line_bytes: max_line_bytes.max(1), cut_lines: 0 }
    }

    /// Position after the last line returned.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next line, without its `\n` (or `\r\n`); a last line without a newline is returned
    /// too. `None` at end of input.
    pub fn next_line(&mut self) -> io::Result<Option<Line>> {
        let start = self.offset;
        let mut buf: Vec<u8> = Vec::new();
        let mut cut = false;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                if self.offset == start {
                    return Ok(None);
                }
                break;
            }
            let (used, done) = match memchr::memchr(b'\n', available) {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            let content = &available[..if done { used - 1 } else { used }];
            let room = self.max_line_bytes.saturating_sub(buf.len());
            if content.len() > room {
                cut = true;
            }
            buf.extend_from_slice(&content[..content.len().min(room)]);
            self.reader.consume(used);
            self.offset += used as u64;
            if done {
                break;
            }
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        if cut {
            self.cut_lines += 1;
        }
        let text = match String::from_utf8(buf) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        Ok(Some(Line { offset: start, text, cut }))
    }
}

/// A file opened for ingestion, with its identity and where to start.
pub struct OpenedFile {
    pub path: PathBuf,
    /// `file:<canonical path>`: the source id entries and cursors are saved under.
    pub source_id: String,
    /// Hex digest of the first line: tells a rotated or replaced file from the old one.
    pub identity: String,
    pub len: u64,
    pub start: u64,
    pub reader: LineReader<BufReader<File>>,
}

/// Errors opening a file, named for the user.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot open {path}: {error}")]
    Open { path: String, error: io::Error },
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: io::Error },
}

impl OpenedFile {
    /// Opens `path` and positions it at the saved `cursor` when the cursor belongs to this
    /// same file (same identity, offset within its length); otherwise at the start.
    pub fn open(path: &Path, cursor: Option<&str>, max_line_bytes: usize) -> Result<OpenedFile, FileError> {
        let shown = path.display().to_string();
        let open_err = |error| FileError::Open { path: shown.clone(), error };
        let read_err = |error| FileError::Read { path: shown.clone(), error };
        let canonical = path.canonicalize().map_err(open_err)?;
        let mut file = File::open(&canonical).map_err(open_err)?;
        let len = file.metadata().map_err(read_err)?.len();
        let identity = identity(&mut file).map_err(read_err)?;
        let start = cursor
            .and_then(|c| c.rsplit_once(':'))
            .filter(|(id, _)| *id == identity)
            .and_then(|(_, off)| off.parse::<u64>().ok())
            .filter(|off| *off <= len)
            .unwrap_or(0);
        file.seek(SeekFrom::Start(start)).map_err(read_err)?;
        Ok(OpenedFile {
            source_id: format!("file:{}", canonical.display()),
            path: canonical,
            identity,
            len,
            start,
            reader: LineReader::new(BufReader::with_capacity(256 * 1024, file), start, max_line_bytes),
        })
    }

    /// The cursor to save once everything before `offset` is stored: `<identity>:<offset>`.
    pub fn cursor_at(&self, offset: u64) -> String {
        format!("{}:{offset}", self.identity)
    }
}

/// The source id of the file at `path`: `file:<canonical path>`.
pub fn source_id(path: &Path) -> Result<String, FileError> {
    let canonical =
        path.canonicalize().map_err(|error| FileError::Open { path: path.display().to_string(), error })?;
    Ok(format!("file:{}", canonical.display()))
}

fn identity(file: &mut File) -> io::Result<String> {
    let mut head = Vec::with_capacity(IDENTITY_BYTES);
    file.by_ref().take(IDENTITY_BYTES as u64).read_to_end(&mut head)?;
    let first_line = match memchr::memchr(b'\n', &head) {
        Some(i) => &head[..i],
        None => &head[..],
    };
    let digest = Sha256::digest(first_line);
    Ok(hex::encode(&digest[..8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], cap: usize) -> (Vec<Line>, u64) {
        let mut r = LineReader::new(input, 0, cap);
        let mut out = Vec::new();
        while let Some(l) = r.next_line().expect("read") {
            out.push(l);
        }
        (out, r.cut_lines)
    }

    #[test]
    fn offsets_crlf_and_a_last_line_without_newline() {
        let (got, _) = lines(b"a\r\nbb\n\nccc", 100);
        let got: Vec<(u64, &str)> = got.iter().map(|l| (l.offset, l.text.as_str())).collect();
        assert_eq!(got, [(0, "a"), (3, "bb"), (6, ""), (7, "ccc")]);
    }

    #[test]
    fn invalid_utf8_is_kept_lossily() {
        let (got, _) = lines(b"bad \xff\xfe bytes\nok\n", 100);
        assert_eq!(got[0].text, "bad \u{FFFD}\u{FFFD} bytes");
        assert_eq!(got[1].offset, 13);
    }

    #[test]
    fn long_lines_are_cut_and_counted_and_offsets_stay_right() {
        let mut input = vec![b'x'; 1000];
        input.extend_from_slice(b"\nnext\n");
        let (got, cut) = lines(&input, 10);
        assert_eq!((got[0].text.len(), got[0].cut, cut), (10, true, 1));
        assert_eq!((got[1].offset, got[1].text.as_str()), (1001, "next"));
    }

    #[test]
    fn resumes_only_in_the_same_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        std::fs::write(&path, "first line\nsecond\n").expect("write");
        let opened = OpenedFile::open(&path, None, 1024).expect("open");
        let cursor = opened.cursor_at(11);
        assert_eq!(OpenedFile::open(&path, Some(&cursor), 1024).expect("open").start, 11);
        std::fs::write(&path, "a different file\n").expect("write");
        assert_eq!(OpenedFile::open(&path, Some(&cursor), 1024).expect("open").start, 0);
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = OpenedFile::open(Path::new("/no/such/file.log"), None, 10).err().expect("error");
        assert!(err.to_string().starts_with("cannot open /no/such/file.log: "), "{err}");
    }
}
