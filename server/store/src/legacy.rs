//! Reading the row-per-record table of schema versions 1–4, for the migration to segments
//! only: records of [`crate::RECORD_SCHEMA_VERSION`] 1 and 2 and their columns, made whole.

use crate::rows::{ReplayRecord, Usage};

/// The column list [`whole_record`] expects, in order: the key, the [`Columns`], `record`.
pub(crate) const RECORD_COLUMNS: &str = "seq, id, decision, final_model, session_hash, status, \
    prompt_tokens, cached_prompt_tokens, completion_tokens, cache_hit, record";

/// The fields of a record that its row's own columns held, which records of version 2 left
/// out of their JSON (version 1 repeated them).
#[derive(Debug)]
struct Columns {
    id: String,
    decision: Option<String>,
    final_model: Option<String>,
    session_hash: Option<String>,
    status: Option<u16>,
    usage: Option<Usage>,
    cache_hit: bool,
}

impl Columns {
    /// Puts the fields back into the record.
    fn restore(self, record: &mut ReplayRecord) {
        record.id = self.id;
        record.decision = self.decision;
        record.final_model = self.final_model;
        record.session_hash = self.session_hash;
        record.status = self.status;
        record.usage = self.usage;
        record.cache_hit = self.cache_hit;
    }
}

fn nonneg(v: Option<i64>) -> u64 {
    v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0)
}

/// A row selected with [`RECORD_COLUMNS`]: its key, id and the whole record's JSON. A
/// record whose JSON does not decode keeps its stored text (readers report it as corrupt,
/// as they did before).
pub(crate) fn whole_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, String, Vec<u8>)> {
    let key: i64 = row.get(0)?;
    let tokens: [Option<i64>; 3] = [row.get(6)?, row.get(7)?, row.get(8)?];
    let columns = Columns {
        id: row.get(1)?,
        decision: row.get(2)?,
        final_model: row.get(3)?,
        session_hash: row.get(4)?,
        status: row
            .get::<_, Option<i64>>(5)?
            .and_then(|s| u16::try_from(s).ok()),
        usage: tokens[0].map(|prompt| Usage {
            prompt_tokens: nonneg(Some(prompt)),
            cached_prompt_tokens: nonneg(tokens[1]),
            completion_tokens: nonneg(tokens[2]),
        }),
        cache_hit: row.get(9)?,
    };
    let text: String = row.get(10)?;
    let Ok(mut record) = serde_json::from_str::<ReplayRecord>(&text) else {
        return Ok((key, columns.id, text.into_bytes()));
    };
    let id = columns.id.clone();
    columns.restore(&mut record);
    record.schema_version = crate::rows::RECORD_SCHEMA_VERSION;
    let mut json = Vec::with_capacity(text.len() + 128);
    crate::record_json::write(&mut json, &record)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    Ok((key, id, json))
}
