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
    /// A line read up to the current end of input without its newline yet (tailing).
    partial: Option<Partial>,
    /// Lines cut at the cap so far.
    pub cut_lines: u64,
}

struct Partial {
    start: u64,
    buf: Vec<u8>,
    cut: bool,
}

/// What to do with a last line that has no newline (yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtEnd {
    /// The input is complete: return the last line as it is.
    Complete,
    /// The input may grow (a tailed file): keep the partial line until its newline comes.
    Wait,
}

impl<R: BufRead> LineReader<R> {
    /// `offset` is the position `reader` starts at.
    pub fn new(reader: R, offset: u64, max_line_bytes: usize) -> Self {
        LineReader { reader, offset, max_line_bytes: max_line_bytes.max(1), partial: None, cut_lines: 0 }
    }

    /// Position after the last line returned, where a reader must resume to lose nothing (a
    /// partial line being held is not yet consumed).
    pub fn offset(&self) -> u64 {
        self.partial.as_ref().map_or(self.offset, |p| p.start)
    }

    /// Bytes consumed from the input, a held partial line included.
    pub fn position(&self) -> u64 {
        self.offset
    }

    /// The next complete line, without its `\n` (or `\r\n`); a last line without a newline is
    /// returned too. `None` at end of input.
    pub fn next_line(&mut self) -> io::Result<Option<Line>> {
        self.read_line(AtEnd::Complete)
    }

    /// The next line; at the end of input, `at_end` says whether a line without its newline is
    /// returned or held until the rest of it is appended.
    pub fn read_line(&mut self, at_end: AtEnd) -> io::Result<Option<Line>> {
        let Partial { start, mut buf, mut cut } =
            self.partial.take().unwrap_or(Partial { start: self.offset, buf: Vec::new(), cut: false });
        loop {
            let available = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.partial = Some(Partial { start, buf, cut });
                    return Err(e);
                }
            };
            if available.is_empty() {
                if self.offset == start {
                    return Ok(None);
                }
                if at_end == AtEnd::Wait {
                    self.partial = Some(Partial { start, buf, cut });
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

    /// The underlying reader.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.reader
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
        let identity = identity(&mut file, true).map_err(read_err)?.unwrap_or_default();
        let start = cursor
            .and_then(Checkpoint::parse)
            .filter(|c| c.identity == identity && c.offset <= len)
            .map_or(0, |c| c.offset);
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
        Checkpoint { identity: self.identity.clone(), offset, dev: 0, ino: 0 }.to_string()
    }
}

/// Where reading a file resumes: which file (a digest of its first line, and its device and
/// inode when known) and the offset of the first byte not yet stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub identity: String,
    pub offset: u64,
    /// Device and inode of the file; 0 when not recorded.
    pub dev: u64,
    pub ino: u64,
}

impl Checkpoint {
    /// Reads `<identity>:<offset>` or `<identity>:<offset>:<dev>:<ino>`.
    pub fn parse(cursor: &str) -> Option<Checkpoint> {
        let mut parts = cursor.split(':');
        let identity = parts.next()?.to_owned();
        let offset = parts.next()?.parse().ok()?;
        let (dev, ino) = match (parts.next(), parts.next()) {
            (Some(d), Some(i)) => (d.parse().ok()?, i.parse().ok()?),
            (None, None) => (0, 0),
            _ => return None,
        };
        if parts.next().is_some() || identity.is_empty() {
            return None;
        }
        Some(Checkpoint { identity, offset, dev, ino })
    }
}

impl std::fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.identity, self.offset)?;
        if self.dev != 0 || self.ino != 0 {
            write!(f, ":{}:{}", self.dev, self.ino)?;
        }
        Ok(())
    }
}

/// The external id of the event whose first line starts at `offset` in the file `identity`:
/// the same for every reader of the file, so a file ingested once and then tailed stores
/// nothing twice.
pub fn external_id(identity: &str, offset: u64) -> String {
    format!("{identity}:{offset:012}")
}

/// The source id of the file at `path`: `file:<canonical path>`.
pub fn source_id(path: &Path) -> Result<String, FileError> {
    let canonical =
        path.canonicalize().map_err(|error| FileError::Open { path: path.display().to_string(), error })?;
    Ok(format!("file:{}", canonical.display()))
}

/// A digest of the file's first line (at most its first 256 bytes), read from the current
/// position. `None` while the first line is incomplete and shorter than that, unless `complete`
/// says the file will not grow (its identity could still change).
pub(crate) fn identity(file: &mut impl Read, complete: bool) -> io::Result<Option<String>> {
    let mut head = Vec::with_capacity(IDENTITY_BYTES);
    file.by_ref().take(IDENTITY_BYTES as u64).read_to_end(&mut head)?;
    let first_line = match memchr::memchr(b'\n', &head) {
        Some(i) => &head[..i],
        None if complete || head.len() >= IDENTITY_BYTES => &head[..],
        None => return Ok(None),
    };
    let digest = Sha256::digest(first_line);
    Ok(Some(hex::encode(&digest[..8])))
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
    fn a_partial_last_line_waits_for_its_newline() {
        let mut input: &[u8] = b"one\ntw";
        let mut r = LineReader::new(&mut input, 0, 100);
        assert_eq!(r.read_line(AtEnd::Wait).expect("read").map(|l| l.text), Some("one".into()));
        assert_eq!(r.read_line(AtEnd::Wait).expect("read"), None);
        assert_eq!((r.offset(), r.position()), (4, 6));
        assert_eq!(
            r.read_line(AtEnd::Complete).expect("read").map(|l| (l.offset, l.text)),
            Some((4, "tw".into()))
        );
    }

    #[test]
    fn checkpoints_read_both_forms() {
        let short = Checkpoint::parse("abc:12").expect("short form");
        assert_eq!((short.offset, short.dev, short.ino), (12, 0, 0));
        let full = Checkpoint { identity: "abc".into(), offset: 7, dev: 2049, ino: 99 };
        assert_eq!(Checkpoint::parse(&full.to_string()), Some(full));
        for bad in ["", "abc", "abc:x", "abc:1:2", ":1", "abc:1:2:3:4"] {
            assert_eq!(Checkpoint::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = OpenedFile::open(Path::new("/no/such/file.log"), None, 10).err().expect("error");
        assert!(err.to_string().starts_with("cannot open /no/such/file.log: "), "{err}");
    }
}
