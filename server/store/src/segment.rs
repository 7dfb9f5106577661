//! The segment format: how a batch of records is stored as one row.
//!
//! A segment is the records of one writer batch, sorted by key, each framed as
//! `key: i64 LE | id length: u8 | id | JSON length: u32 LE | JSON` (the record's whole JSON,
//! see `record_json`), and the frames compressed together as one LZ4 block with its size
//! prepended. Records of one batch share most of their text (field names, decisions, models,
//! the eval trace's shape), so a segment of a few hundred records is 10–20× smaller than
//! their JSON, and the writer pays for one row and a few pages instead of a row and an
//! index entry per record.
//!
//! Framing keeps the key and id outside the JSON so lookups, pagination, retention and
//! de-duplication never parse a record they do not return.

use crate::error::{Result, StoreError};

/// The `format` column of segments written in this layout.
pub(crate) const FORMAT_LZ4_FRAMES: i64 = 1;

/// Largest uncompressed segment a reader accepts: a corrupt size prefix must not make it
/// allocate gigabytes. A segment holds at most a batch of records capped at their body limits.
const MAX_RAW_BYTES: usize = 1 << 30;

/// Appends one framed record to `out`. Ids longer than 255 bytes cannot be framed; the
/// caller refuses them before (record ids are 32 hex digits).
pub(crate) fn push_frame(out: &mut Vec<u8>, key: i64, id: &str, json: &[u8]) {
    let id_len = u8::try_from(id.len()).unwrap_or(u8::MAX);
    let json_len = u32::try_from(json.len()).unwrap_or(u32::MAX);
    out.reserve(8 + 1 + id.len() + 4 + json.len());
    out.extend_from_slice(&key.to_le_bytes());
    out.push(id_len);
    out.extend_from_slice(id.as_bytes().get(..usize::from(id_len)).unwrap_or_default());
    out.extend_from_slice(&json_len.to_le_bytes());
    out.extend_from_slice(json.get(..json_len as usize).unwrap_or_default());
}

/// Compresses framed records into a segment blob.
pub(crate) fn compress(frames: &[u8]) -> Vec<u8> {
    lz4_flex::block::compress_prepend_size(frames)
}

/// Decompresses a segment blob back to its frames; `seg` names it in errors.
pub(crate) fn decompress(seg: i64, blob: &[u8]) -> Result<Vec<u8>> {
    let corrupt = |reason: String| StoreError::CorruptSegment { seg, reason };
    let size = blob
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| corrupt("shorter than its size prefix".into()))?;
    if size as usize > MAX_RAW_BYTES {
        return Err(corrupt(format!("claims {size} bytes uncompressed")));
    }
    lz4_flex::block::decompress_size_prepended(blob).map_err(|e| corrupt(e.to_string()))
}

/// One framed record, borrowed from decompressed frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    /// The record's key (`rows::record_key` of its id, or the key a migration gave it).
    pub key: i64,
    /// The record id.
    pub id: &'a str,
    /// The record's JSON.
    pub json: &'a [u8],
}

/// The frames of decompressed segment bytes, in stored (key) order.
pub(crate) struct Frames<'a> {
    seg: i64,
    rest: &'a [u8],
}

/// Iterates `raw` (from [`decompress`]); a malformed frame ends the iteration with an error.
pub(crate) fn frames(seg: i64, raw: &[u8]) -> Frames<'_> {
    Frames { seg, rest: raw }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let parsed = parse_frame(self.rest);
        match parsed {
            Some((frame, rest)) => {
                self.rest = rest;
                Some(Ok(frame))
            }
            None => {
                self.rest = &[];
                Some(Err(StoreError::CorruptSegment {
                    seg: self.seg,
                    reason: "a record frame is cut short or its id is not UTF-8".into(),
                }))
            }
        }
    }
}

fn parse_frame(bytes: &[u8]) -> Option<(Frame<'_>, &[u8])> {
    let (key, rest) = bytes.split_first_chunk::<8>()?;
    let (&id_len, rest) = rest.split_first()?;
    let (id, rest) = rest.split_at_checked(usize::from(id_len))?;
    let (json_len, rest) = rest.split_first_chunk::<4>()?;
    let (json, rest) = rest.split_at_checked(u32::from_le_bytes(*json_len) as usize)?;
    let frame = Frame {
        key: i64::from_le_bytes(*key),
        id: std::str::from_utf8(id).ok()?,
        json,
    };
    Some((frame, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_compression() {
        let mut raw = Vec::new();
        let records: Vec<(i64, String, String)> = (0..300)
            .map(|i| {
                (
                    i * 7,
                    format!("{i:032x}"),
                    format!("{{\"n\":{i},\"decision\":\"math\"}}"),
                )
            })
            .collect();
        for (key, id, json) in &records {
            push_frame(&mut raw, *key, id, json.as_bytes());
        }
        let blob = compress(&raw);
        assert!(
            blob.len() * 4 < raw.len(),
            "{} of {}",
            blob.len(),
            raw.len()
        );
        let back = decompress(1, &blob).unwrap();
        assert_eq!(back, raw);
        let got: Vec<(i64, String, String)> = frames(1, &back)
            .map(|f| {
                let f = f.unwrap();
                (
                    f.key,
                    f.id.to_owned(),
                    String::from_utf8(f.json.to_vec()).unwrap(),
                )
            })
            .collect();
        assert_eq!(got, records);
    }

    #[test]
    fn damaged_segments_are_errors_not_panics() {
        let mut raw = Vec::new();
        push_frame(&mut raw, -5, "abc", b"{}");
        push_frame(&mut raw, 9, "", b"");
        let blob = compress(&raw);
        // Every truncation of the frames ends in an error, never a panic or a bogus frame.
        for cut in 0..raw.len() {
            let all: Vec<_> = frames(3, &raw[..cut]).collect();
            let ok = all.iter().filter(|f| f.is_ok()).count();
            assert!(ok <= 2, "{cut}");
            if cut != 0 && cut != 18 {
                assert!(all.last().unwrap().is_err(), "{cut}");
            }
        }
        assert!(matches!(
            decompress(3, &[1, 0]),
            Err(StoreError::CorruptSegment { seg: 3, .. })
        ));
        assert!(decompress(3, &[0xFF, 0xFF, 0xFF, 0x7F, 0]).is_err());
        let mut bad = blob.clone();
        bad.truncate(blob.len() - 1);
        assert!(decompress(3, &bad).is_err());
        let mut not_utf8 = Vec::new();
        push_frame(&mut not_utf8, 1, "ok", b"{}");
        not_utf8[9] = 0xFF;
        assert!(frames(3, &not_utf8).next().unwrap().is_err());
    }
}
