//! Large raw payloads compressed in SQLite. A Sentry event's raw JSON is 5–50 KB (frames with
//! source context and local variables), most of an entry's bytes; SQLite writes each byte
//! three times (the write-ahead log, then the checkpoint's read and write), so the writer's time
//! follows the bytes. From [`PACK_FROM`] bytes on, `entries.raw` holds the text as a zstd
//! frame in a BLOB (SQLite keeps a BLOB as given in a TEXT column); shorter text, and text
//! that does not shrink, stays TEXT, so a database holds both and readers tell them apart by
//! type. PostgreSQL compresses large values itself (TOAST), so its store keeps the text.
//!
//! The raw text is scrubbed before it is compressed: no secret is kept in either form.

use std::sync::Mutex;

/// Raw text of at least this many bytes is compressed.
pub const PACK_FROM: usize = 2048;

/// zstd's level: its fastest standard level, which keeps most of the size saved by higher ones
/// on JSON at a fraction of their time.
const LEVEL: i32 = 1;

/// The compressed form of `raw`, when it is long enough and shrinks by a quarter or more.
pub fn pack(raw: &str) -> Option<Vec<u8>> {
    if raw.len() < PACK_FROM {
        return None;
    }
    // A compression context takes a few hundred KiB to set up: contexts are kept for reuse,
    // as many as have been in use at once (not one per thread of the blocking pool).
    static IDLE: Mutex<Vec<zstd::bulk::Compressor<'static>>> = Mutex::new(Vec::new());
    let idle = IDLE.lock().unwrap_or_else(|e| e.into_inner()).pop();
    let mut compressor = match idle {
        Some(c) => c,
        None => zstd::bulk::Compressor::new(LEVEL).ok()?,
    };
    let packed = compressor.compress(raw.as_bytes()).ok();
    IDLE.lock().unwrap_or_else(|e| e.into_inner()).push(compressor);
    let packed = packed?;
    (packed.len() <= raw.len() / 4 * 3).then_some(packed)
}

/// The text [`pack`] compressed; a BLOB that is not a zstd frame of UTF-8 text is an error
/// naming it rather than text made up.
pub fn unpack(packed: &[u8]) -> Result<String, String> {
    let bytes = zstd::stream::decode_all(packed).map_err(|e| format!("raw payload not readable: {e}"))?;
    String::from_utf8(bytes).map_err(|_| "raw payload not UTF-8 once decompressed".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_comes_back_as_it_went_in_and_short_text_is_left_alone() {
        let long: String =
            (0..400).map(|i| format!("{{\"frame\":{i},\"function\":\"handle_é_{}\"}}", i % 7)).collect();
        let packed = pack(&long).expect("repetitive JSON shrinks");
        assert!(packed.len() < long.len() / 4, "{} of {}", packed.len(), long.len());
        assert_eq!(unpack(&packed).unwrap(), long);
        assert_eq!(pack("a short line"), None);
        // Text that does not shrink by a quarter is kept as it is.
        let mut state = 7u64;
        let noise: String = (0..4000)
            .map(|_| {
                // splitmix64: bytes with nothing for a compressor to find.
                state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                char::from(b'!' + ((z ^ (z >> 31)) % 90) as u8)
            })
            .collect();
        assert_eq!(pack(&noise), None);
        assert!(unpack(b"not a zstd frame").unwrap_err().contains("not readable"));
    }
}
