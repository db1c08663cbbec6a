//! Append-buffer chunks, recycled: a chunk the tail cache has let go of is written again instead of
//! a fresh allocation. The tail cache holds frozen slices of the chunks appends were encoded into,
//! so a chunk's memory is free only once the cache evicted (and every reader dropped) all of them;
//! until then it waits here. A fresh 1 MiB chunk costs 256 first-touch page faults (~3.4 µs each on
//! the development VM; `clear_page_erms` was the largest single item, ~10 % of broker CPU, in the
//! unbatched send profile of 2026-12-07, docs/BENCHMARKS.md), and the allocator hands large
//! blocks back to the kernel soon after they are freed. Lives in the shard's commit log.

use bytes::BytesMut;
use std::collections::VecDeque;

/// Allocation unit of the append buffer: one allocation per MiB appended.
pub(super) const APPEND_CHUNK_BYTES: usize = 1 << 20;

/// Chunks left behind by the append buffer, oldest first (the tail cache evicts in that order).
#[derive(Default)]
pub(super) struct ChunkPool {
    retired: VecDeque<BytesMut>,
    /// Chunks taken from the pool instead of allocated (`ringmq_commitlog_total{counter=...}`).
    pub(super) reused: u64,
}

impl ChunkPool {
    /// A chunk with room for `want` bytes: the oldest retired one when nothing else refers to it
    /// any more, else a fresh allocation.
    pub(super) fn take(&mut self, want: usize) -> BytesMut {
        if want <= APPEND_CHUNK_BYTES
            && let Some(front) = self.retired.front_mut()
            && front.try_reclaim(APPEND_CHUNK_BYTES)
            && let Some(chunk) = self.retired.pop_front()
        {
            self.reused += 1;
            return chunk;
        }
        BytesMut::with_capacity(want.max(APPEND_CHUNK_BYTES))
    }

    /// Keeps a chunk the append buffer moved off (every chunk is at least [`APPEND_CHUNK_BYTES`])
    /// for reuse once the tail cache lets go of it. At most `limit_bytes` of chunks wait, the tail
    /// cache's size plus slack: a chunk pushed out beyond that is left to the allocator.
    pub(super) fn retire(&mut self, mut chunk: BytesMut, limit_bytes: usize) {
        chunk.clear();
        self.retired.push_back(chunk);
        while self.retired.len() * APPEND_CHUNK_BYTES > limit_bytes + 4 * APPEND_CHUNK_BYTES {
            self.retired.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_is_reused_only_once_nothing_else_holds_it() {
        let mut pool = ChunkPool::default();
        let mut chunk = pool.take(100);
        chunk.extend_from_slice(&[7u8; 8192]);
        let held = chunk.split_to(4096).freeze(); // the tail cache's slice
        let ptr = chunk.as_ptr() as usize - 4096;
        pool.retire(chunk, 64 << 20);
        let other = pool.take(100);
        assert_ne!(other.as_ptr() as usize, ptr, "a chunk still held is not reused");
        assert_eq!(pool.reused, 0);
        drop(held);
        let mut pool2 = ChunkPool::default();
        let mut c = pool2.take(10);
        c.extend_from_slice(b"x");
        let p = c.as_ptr() as usize;
        pool2.retire(c, 64 << 20);
        let again = pool2.take(10);
        assert_eq!((again.as_ptr() as usize, again.len(), pool2.reused), (p, 0, 1));
        assert!(again.capacity() >= APPEND_CHUNK_BYTES);
    }

    /// Through the commit log: many chunks' worth of records, each flushed, a tiny tail cache so
    /// chunks come free early, and one record's bytes held by a reader across it all. Chunks are
    /// reused, the held bytes are never written over, and every record reads back as appended.
    #[test]
    fn reused_chunks_never_change_appended_or_held_bytes() {
        use crate::store::fake_disk::FakeDisk;
        use crate::store::log::{CommitLog, FlushMode, LogConfig, RecoveredTail};
        use bytes::BufMut;
        use futures_lite::future::block_on;
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            dir: dir.path().into(),
            segment_bytes: 16 << 20,
            flush: FlushMode::Sync,
            tail_cache_bytes: 64 << 10,
            read_cache_bytes: 64 << 10,
        };
        let tail = RecoveredTail { write_pos: 0, partial_block: vec![0; crate::store::io::BLOCK_BYTES as usize] };
        let log = block_on(CommitLog::open(FakeDisk::new(), cfg, tail)).unwrap();
        block_on(async {
            const SIZE: usize = 60 << 10;
            let mut at = Vec::new();
            let mut held = None;
            for i in 0..160u32 {
                let fill = (i % 251) as u8;
                let (pos, _) = log.append(&[SIZE], |b, _, _| b.put_bytes(fill, SIZE)).await.unwrap();
                assert!(log.flush_once().await.unwrap());
                at.push((pos, fill));
                if i == 3 {
                    held = Some(log.read(pos, SIZE).await.unwrap()); // a reader keeps it meanwhile
                }
            }
            assert!(log.stats().chunks_reused > 0, "no chunk was reused");
            assert!(held.unwrap().iter().all(|&b| b == 3), "a held record was written over");
            for (pos, fill) in at {
                let got = log.read(pos, SIZE).await.unwrap();
                assert!(got.iter().all(|&b| b == fill), "record at {pos} changed");
            }
        });
    }

    #[test]
    fn retired_chunks_are_bounded_by_the_limit() {
        let mut pool = ChunkPool::default();
        let held: Vec<bytes::Bytes> = (0..20)
            .map(|_| {
                let mut c = pool.take(1);
                c.extend_from_slice(b"abc");
                let slice = c.split_to(3).freeze();
                pool.retire(c, 8 * APPEND_CHUNK_BYTES);
                slice
            })
            .collect();
        assert_eq!(pool.retired.len(), 12);
        drop(held);
    }
}
