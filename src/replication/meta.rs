//! The broker tables a master's stream carries to its slaves ([`super::Metadata`] for a shard's
//! broker): the topic table (a topic created on the master exists on its slaves before any of its
//! records arrive), the consumer offsets (a new master resumes consumers where they committed) and
//! the subscription groups (retry and consumption settings).

use super::Metadata;
use super::wire::{KIND_GROUPS, KIND_OFFSETS, KIND_TOPICS};
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
            _ => 0,
        }
    }

    fn encode(&self, kind: u16) -> Vec<u8> {
        let r = match kind {
            KIND_TOPICS => serde_json::to_vec(&self.topics.borrow().topics),
            KIND_OFFSETS => serde_json::to_vec(self.offsets.borrow().table()),
            KIND_GROUPS => serde_json::to_vec(&self.groups.borrow().groups),
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
            other => return Err(format!("unknown metadata kind {other}")),
        }
        Ok(())
    }
}
