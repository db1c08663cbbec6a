//! The store's append entry points: what readers may see (`visible_limit`), and `put` — through the
//! replication gate, into the commit log, dispatched to the consume queues and the key index.

use super::*;

impl<D: Disk> Store<D> {
    /// End of the log that readers may see: durable data for `flush = sync` (a consumer never sees a
    /// record a crash could take back), everything written for `flush = async`.
    /// Replicated, it is also capped at the confirm offset (`replicas.rs`): what the in-sync set holds.
    pub fn visible_limit(&self) -> u64 {
        let local = if self.cfg.flush == FlushMode::Async && !self.replicas.caps_visibility() {
            self.log.write_pos()
        } else {
            self.log.flushed_pos()
        };
        self.replicas.confirm(local)
    }

    /// Appends messages contiguously; queue offsets are assigned densely per (topic, queue) at append.
    /// With `flush = sync` and `wait_durable`, returns once an fdatasync covers them.
    /// Replicated, also waits for the slaves `--in-sync-replicas` asks for.
    pub async fn put(&self, msgs: &[MessageToStore], wait_durable: bool) -> Result<Vec<Placement>, StoreError> {
        let (placed, replicated) = self.put_acked(msgs, wait_durable).await?;
        replicated.map(|()| placed)
    }

    /// [`Store::put`], with the slaves' answer apart: the records are stored on this master even when
    /// too few slaves acknowledged them in time (a send answers FLUSH_SLAVE_TIMEOUT with its offsets).
    pub async fn put_acked(
        &self,
        msgs: &[MessageToStore],
        wait_durable: bool,
    ) -> Result<(Vec<Placement>, Result<(), StoreError>), StoreError> {
        self.replicas.check_writable()?;
        let placed = self.put_local(msgs, wait_durable).await?;
        let end = placed.last().map_or(0, |p| p.physical_offset + p.size as u64);
        let replicated = if wait_durable { self.replicas.wait_replicated(end).await } else { Ok(()) };
        Ok((placed, replicated))
    }

    async fn put_local(&self, msgs: &[MessageToStore], wait_durable: bool) -> Result<Vec<Placement>, StoreError> {
        if let Some(pct) = self.disk_full.get() {
            return Err(StoreError::DiskFull {
                used_percent: pct,
                limit_percent: (self.cfg.disk_full_ratio * 100.0) as u32,
            });
        }
        let sizes: Vec<usize> = msgs.iter().map(MessageToStore::encoded_len).collect();
        let mut placed = Vec::with_capacity(msgs.len());
        // One clock read per request, a batch sharing it, taken when its first record is placed (not
        // before `append` waits for a segment): store times never decrease in log order, which
        // `offset_by_time` relies on.
        let mut placed_at = None;
        let (_, durable) = self
            .log
            .append(&sizes, |buf, phys, i| {
                let m = &msgs[i];
                let store_ms = *placed_at.get_or_insert_with(|| self.next_store_ms());
                let to_queue = enters_queue(m.sys_flag);
                let qoff = if to_queue {
                    let queues = self.queues.borrow();
                    queues.get(&m.topic).and_then(|t| t.get(&m.queue_id)).map_or(0, |q| q.next_offset())
                } else {
                    0
                };
                let start = buf.len();
                m.encode_into(buf, phys, qoff, store_ms);
                if to_queue {
                    let crc = crc32fast::hash(&buf[start..]);
                    let tags = self.cfg.rules.tag_code(&m.topic, &m.properties, store_ms);
                    let mut queues = self.queues.borrow_mut();
                    if !queues.contains_key(&m.topic) {
                        queues.insert(m.topic.clone(), HashMap::new()); // no allocation per record
                    }
                    let q = queues.get_mut(&m.topic).expect("inserted above").entry(m.queue_id).or_default();
                    q.push(CqEntry { physical_offset: phys, size: sizes[i] as u32, tags_code: tags, crc });
                }
                let mut index = self.index.borrow_mut();
                for key in if self.cfg.rules.indexed(&m.topic) { index_keys(&m.properties) } else { Vec::new() } {
                    index.add(&m.topic, key, phys, store_ms);
                }
                placed.push(Placement { physical_offset: phys, queue_offset: qoff, size: sizes[i] as u32 });
            })
            .await?;
        if let Some(durable) = durable.filter(|_| wait_durable) {
            durable.await?;
        }
        Ok(placed)
    }
}
