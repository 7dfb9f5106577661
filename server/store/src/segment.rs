//! The segment format: how a batch of records is stored as one row.
//!
//! A segment is the records of one writer batch, sorted by key, each framed as
//! `key: i64 LE | id length: u8 | id | payload length: u32 LE | payload`, and the frames
//! compressed together as one LZ4 block with its size prepended. The segment's `format`
//! column says what a payload is ([`Format`]): the record packed (what the writer stores) or
//! its JSON text (segments that migrations made). Records of one batch share most of their
//! bytes (decisions, models, the eval trace's shape), so a segment of a few hundred records
//! is many times smaller than their JSON, and the writer pays for one row and a few pages
//! instead of a row and an index entry per record.
//!
//! Framing keeps the key and id outside the payload so lookups, pagination, retention and
//! de-duplication never decode a record they do not return.

use std::borrow::Cow;

use crate::error::{Result, StoreError};

/// What the payloads of a segment are: its `format` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `1`: each record's JSON text (`record_json::write`).
    Json,
    /// `2`: each record packed (`record_json::pack`, see `packed`).
    Packed,
}

impl Format {
    /// The value stored in the `format` column.
    pub(crate) fn column(self) -> i64 {
        match self {
            Self::Json => 1,
            Self::Packed => 2,
        }
    }

    /// The format a `format` column names; segment `seg` is named in the error.
    ///
    /// # Errors
    /// [`StoreError::CorruptSegment`] for a format this build does not know.
    pub(crate) fn of_column(seg: i64, value: i64) -> Result<Self> {
        match value {
            1 => Ok(Self::Json),
            2 => Ok(Self::Packed),
            _ => Err(StoreError::CorruptSegment {
                seg,
                reason: format!("unknown segment format {value}"),
            }),
        }
    }
}

/// Largest uncompressed segment a reader accepts: a corrupt size prefix must not make it
/// allocate gigabytes. A segment holds at most a batch of records capped at their body limits.
const MAX_RAW_BYTES: usize = 1 << 30;

/// Appends one framed record to `out`. Ids longer than 255 bytes cannot be framed; the
/// caller refuses them before (record ids are 32 hex digits).
pub(crate) fn push_frame(out: &mut Vec<u8>, key: i64, id: &str, payload: &[u8]) {
    let id_len = u8::try_from(id.len()).unwrap_or(u8::MAX);
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.reserve(8 + 1 + id.len() + 4 + payload.len());
    out.extend_from_slice(&key.to_le_bytes());
    out.push(id_len);
    out.extend_from_slice(id.as_bytes().get(..usize::from(id_len)).unwrap_or_default());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload.get(..len as usize).unwrap_or_default());
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
    /// The record, in its segment's format.
    pub payload: &'a [u8],
    /// The segment's row id, for errors.
    pub seg: i64,
    /// The segment's format.
    pub format: Format,
}

impl<'a> Frame<'a> {
    /// The record's JSON text: the payload itself, or the payload unpacked.
    ///
    /// # Errors
    /// [`StoreError::CorruptSegment`] naming the record when a packed payload is damaged.
    pub(crate) fn json(&self) -> Result<Cow<'a, [u8]>> {
        match self.format {
            Format::Json => Ok(Cow::Borrowed(self.payload)),
            Format::Packed => {
                let mut json = Vec::with_capacity(self.payload.len() * 2);
                crate::packed::unpack(self.payload, &mut json).map_err(|e| {
                    StoreError::CorruptSegment {
                        seg: self.seg,
                        reason: format!("record {}: {e}", self.id),
                    }
                })?;
                Ok(Cow::Owned(json))
            }
        }
    }
}

/// The frames of decompressed segment bytes, in stored (key) order.
pub(crate) struct Frames<'a> {
    seg: i64,
    format: Format,
    rest: &'a [u8],
}

/// Iterates `raw` (from [`decompress`]) of segment `seg`, stored in `format`; a malformed
/// frame ends the iteration with an error.
pub(crate) fn frames(seg: i64, format: Format, raw: &[u8]) -> Frames<'_> {
    Frames {
        seg,
        format,
        rest: raw,
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let parsed = parse_frame(self.seg, self.format, self.rest);
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

/// The first frame of `bytes` (of segment `seg`, in `format`) and the bytes after it.
fn parse_frame(seg: i64, format: Format, bytes: &[u8]) -> Option<(Frame<'_>, &[u8])> {
    let (key, rest) = bytes.split_first_chunk::<8>()?;
    let (&id_len, rest) = rest.split_first()?;
    let (id, rest) = rest.split_at_checked(usize::from(id_len))?;
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let (payload, rest) = rest.split_at_checked(u32::from_le_bytes(*len) as usize)?;
    let frame = Frame {
        key: i64::from_le_bytes(*key),
        id: std::str::from_utf8(id).ok()?,
        payload,
        seg,
        format,
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
        let got: Vec<(i64, String, String)> = frames(1, Format::Json, &back)
            .map(|f| {
                let f = f.unwrap();
                (
                    f.key,
                    f.id.to_owned(),
                    String::from_utf8(f.json().unwrap().into_owned()).unwrap(),
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
            let all: Vec<_> = frames(3, Format::Json, &raw[..cut]).collect();
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
        assert!(frames(3, Format::Json, &not_utf8).next().unwrap().is_err());
    }

    #[test]
    fn packed_payloads_unpack_and_damaged_ones_name_their_record() {
        let record = crate::rows::ReplayRecord::new(1_795_000_000_000);
        let mut packed = Vec::new();
        crate::record_json::pack(&mut packed, &record).unwrap();
        let mut raw = Vec::new();
        push_frame(&mut raw, 4, &record.id, &packed);
        push_frame(&mut raw, 5, "bad", &packed[..packed.len() - 1]);
        let all: Vec<Frame<'_>> = frames(8, Format::Packed, &raw)
            .map(Result::unwrap)
            .collect();
        assert_eq!(all[0].json().unwrap(), serde_json::to_vec(&record).unwrap());
        let err = all[1].json().unwrap_err().to_string();
        assert!(
            err.contains("segment 8") && err.contains("record bad"),
            "{err}"
        );
        assert_eq!(Format::of_column(1, 2).unwrap(), Format::Packed);
        assert_eq!(
            Format::of_column(1, Format::Json.column()).unwrap(),
            Format::Json
        );
        let err = Format::of_column(6, 3).unwrap_err().to_string();
        assert!(err.contains("unknown segment format 3"), "{err}");
    }
}
