//! The broker tables a master's stream carries to its slaves ([`super::Metadata`] for a shard's
//! broker): the topic table (a topic created on the master exists on its slaves before any of its
//! records arrive), the consumer offsets (a new master resumes consumers where they committed) and
//! the subscription groups (retry and consumption settings), and the delivery progress of delay
//! levels and timers — which a slave takes only once its log holds every delivery that progress
//! counts (a progress ahead of the log would skip a message on a new master), and forgets when its
//! log is truncated. Transaction state needs no table: it is rebuilt from the op queue, which is in
//! the log, when the slave becomes the master.

use super::Metadata;
use super::wire::{KIND_DELAY, KIND_GROUPS, KIND_OFFSETS, KIND_TIMER, KIND_TOPICS};
use crate::broker::Broker;
use crate::broker::groups::GroupConfig;
use crate::broker::topics::TopicConfig;
use crate::store::io::Disk;
use std::collections::BTreeMap;

impl<D: Disk> Metadata for Broker<D> {
    fn version(&self, kind: u16) -> u64 {
        match kind {
            KIND_TOPICS => self.topics.borrow().version.counter,
            KIND_OFFSETS => self.offsets.borrow().version(),
            KIND_GROUPS => self.groups.borrow().version(),
            KIND_DELAY => self.schedule.borrow().version(),
            KIND_TIMER => self.timer.borrow().version(),
            _ => 0,
        }
    }

    fn encode(&self, kind: u16) -> Vec<u8> {
        let r = match kind {
            KIND_TOPICS => serde_json::to_vec(&self.topics.borrow().topics),
            KIND_OFFSETS => serde_json::to_vec(self.offsets.borrow().table()),
            KIND_GROUPS => serde_json::to_vec(&self.groups.borrow().groups),
            // Every delivery the progress counts was made durable below the log's end now.
            KIND_DELAY | KIND_TIMER => {
                let table = match kind {
                    KIND_DELAY => serde_json::to_vec(self.schedule.borrow().levels()),
                    _ => self.timer.borrow().progress_json(),
                };
                table.map(|t| [&self.store.log().write_pos().to_be_bytes()[..], &t].concat())
            }
            _ => Ok(Vec::new()),
        };
        r.unwrap_or_default()
    }

    fn apply(&self, kind: u16, body: &[u8]) -> Result<(), String> {
        match kind {
            KIND_TOPICS => {
                let topics: BTreeMap<String, TopicConfig> =
                    serde_json::from_slice(body).map_err(|e| format!("master's topic table: {e}"))?;
                if self.topics.borrow_mut().replace(topics) {
                    self.publish_registration();
                }
            }
            KIND_OFFSETS => {
                let table: BTreeMap<String, BTreeMap<i32, u64>> =
                    serde_json::from_slice(body).map_err(|e| format!("master's consumer offsets: {e}"))?;
                self.offsets.borrow_mut().replace(table);
            }
            KIND_GROUPS => {
                let groups: BTreeMap<String, GroupConfig> =
                    serde_json::from_slice(body).map_err(|e| format!("master's subscription groups: {e}"))?;
                self.groups.borrow_mut().replace(groups);
            }
            KIND_DELAY | KIND_TIMER => {
                let covers = body.get(..8).ok_or("master's progress table without its log offset")?;
                let covers = u64::from_be_bytes(covers.try_into().unwrap_or_default());
                self.held_progress.borrow_mut().insert(kind, (covers, body[8..].to_vec()));
                self.log_reached(self.store.log().write_pos());
            }
            other => return Err(format!("unknown metadata kind {other}")),
        }
        Ok(())
    }

    fn log_reached(&self, end: u64) {
        let due: Vec<(u16, Vec<u8>)> = {
            let mut held = self.held_progress.borrow_mut();
            let kinds: Vec<u16> = held.iter().filter(|(_, (covers, _))| *covers <= end).map(|(k, _)| *k).collect();
            kinds.into_iter().filter_map(|k| held.remove(&k).map(|(_, t)| (k, t))).collect()
        };
        for (kind, table) in due {
            let r = match kind {
                KIND_DELAY => serde_json::from_slice::<BTreeMap<u32, u64>>(&table)
                    .map(|t| self.schedule.borrow_mut().replace(t))
                    .map_err(|e| format!("master's delay progress: {e}")),
                _ => self.timer.borrow_mut().adopt(Some(&table)),
            };
            if let Err(e) = r {
                tracing::warn!(error = %e, "master's progress table not taken");
            }
        }
    }

    fn truncated(&self) {
        self.held_progress.borrow_mut().clear();
        self.schedule.borrow_mut().replace(BTreeMap::new());
        if let Err(e) = self.timer.borrow_mut().adopt(None) {
            tracing::warn!(error = %e, "timer progress not reset");
        }
    }
}
