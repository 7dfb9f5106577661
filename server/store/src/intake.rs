//! The intake: where [`crate::ReplaySink::record`] puts a record, on the caller's thread.
//!
//! Each calling thread writes its records, already framed and packed (see `segment`),
//! into its own shard: a byte buffer and an index of `(key, offset)`, behind a lock only the
//! writer thread ever contends for (once per poll, to swap the buffers). Nothing is
//! allocated per record once the buffers have grown, and nothing the request path allocated
//! is freed on another thread: the writer hands each shard back an empty buffer it owns
//! and recycles the full one. Handing over boxed records instead cost the I/O threads
//! several µs per request (remote frees, and records going cold in the queue), more than
//! serialising them there.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::rows::ReplayRecord;
use crate::segment::push_frame;

/// Shards: more than the I/O threads of a typical deployment, so two threads rarely share
/// one (sharing is correct, only slower).
const SHARDS: usize = 16;

/// A shard's buffers: framed records and where each starts, with its key.
#[derive(Debug, Default)]
pub(crate) struct Shard {
    /// Framed records, back to back.
    pub frames: Vec<u8>,
    /// `(key, offset of the frame in frames)`, in arrival order.
    pub index: Vec<(i64, u32)>,
}

impl Shard {
    pub(crate) fn clear(&mut self) {
        self.frames.clear();
        self.index.clear();
    }

    /// The frame bytes of entry `i` of the index.
    pub(crate) fn frame(&self, i: usize) -> &[u8] {
        let start = self.index.get(i).map_or(0, |&(_, s)| s as usize);
        let end = self
            .index
            .get(i + 1)
            .map_or(self.frames.len(), |&(_, s)| s as usize);
        self.frames.get(start..end).unwrap_or_default()
    }
}

/// A shard padded to its own cache lines, so two threads' shards never share one.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded(Mutex<Shard>);

/// Every shard.
#[derive(Debug)]
pub(crate) struct Intake {
    shards: Box<[Padded]>,
}

impl Default for Intake {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Padded::default()).collect(),
        }
    }
}

/// This thread's shard number, assigned round-robin on first use.
fn shard_of_this_thread() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local!(static SHARD: Cell<Option<usize>> = const { Cell::new(None) });
    SHARD.with(|s| {
        s.get().unwrap_or_else(|| {
            let n = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
            s.set(Some(n));
            n
        })
    })
}

impl Intake {
    /// Frames `record` (stored under `key`) into this thread's shard.
    ///
    /// # Errors
    /// A nested value serde_json refuses (none of the record's types can fail today); the
    /// shard is left as it was.
    pub(crate) fn push(&self, key: i64, record: &ReplayRecord) -> Result<(), serde_json::Error> {
        let Some(padded) = self.shards.get(shard_of_this_thread()) else {
            return Ok(());
        };
        let mut shard = padded.0.lock();
        let Shard { frames, index } = &mut *shard;
        let start = frames.len();
        // The frame's payload length is patched in once the record is packed.
        push_frame(frames, key, &record.id, b"");
        let payload_start = frames.len();
        if let Err(e) = crate::record_json::pack(frames, record) {
            frames.truncate(start);
            return Err(e);
        }
        let payload_len = u32::try_from(frames.len() - payload_start).unwrap_or(u32::MAX);
        if let Some(len) = frames.get_mut(payload_start - 4..payload_start) {
            len.copy_from_slice(&payload_len.to_le_bytes());
        }
        index.push((key, u32::try_from(start).unwrap_or(u32::MAX)));
        Ok(())
    }

    /// Moves every non-empty shard's contents into `out`, giving each an empty buffer from
    /// `spares` (or a new one) in exchange. Returns how many records were taken.
    pub(crate) fn take(&self, out: &mut Vec<Shard>, spares: &mut Vec<Shard>) -> usize {
        let mut taken = 0;
        for padded in &self.shards {
            let mut shard = padded.0.lock();
            if shard.index.is_empty() {
                continue;
            }
            taken += shard.index.len();
            let empty = spares.pop().unwrap_or_default();
            out.push(std::mem::replace(&mut *shard, empty));
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::{frames, Format};

    #[test]
    fn pushed_records_come_out_framed_and_packed() {
        let intake = Intake::default();
        let a = ReplayRecord::new(1_000);
        let mut b = ReplayRecord::new(2_000);
        b.decision = Some("math".into());
        intake.push(5, &a).unwrap();
        intake.push(3, &b).unwrap();
        let (mut out, mut spares) = (Vec::new(), Vec::new());
        assert_eq!(intake.take(&mut out, &mut spares), 2);
        assert_eq!(out.len(), 1);
        let shard = &out[0];
        assert_eq!(shard.index.iter().map(|e| e.0).collect::<Vec<_>>(), [5, 3]);
        for (i, want) in [&a, &b].into_iter().enumerate() {
            let frame = frames(0, Format::Packed, shard.frame(i))
                .next()
                .unwrap()
                .unwrap();
            assert_eq!(frame.id, want.id);
            let back: ReplayRecord = serde_json::from_slice(&frame.json().unwrap()).unwrap();
            assert_eq!(&back, want);
        }
        // Emptied: nothing more to take, and the buffer handed in is what it holds now.
        assert_eq!(intake.take(&mut out, &mut spares), 0);
    }
}
