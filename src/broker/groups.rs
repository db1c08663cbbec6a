//! Subscription-group configuration of one shard (RocketMQ's `subscriptionGroup.json`): created on
//! first heartbeat of a consumer group, persisted to `config/groups.json`, survives restart, served by
//! GET_ALL_SUBSCRIPTIONGROUP_CONFIG. `retryMaxTimes` is the reconsume limit of CONSUMER_SEND_MSG_BACK
//! when a client does not send its own.

use super::config_file::ConfigFile;
use crate::store::files::SharedFiles;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// RocketMQ's SubscriptionGroupConfig (the settings ringmq honours, with RocketMQ's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GroupConfig {
    pub group_name: String,
    pub consume_enable: bool,
    pub consume_broadcast_enable: bool,
    pub retry_queue_nums: u32,
    pub retry_max_times: i32,
    pub broker_id: u64,
    pub notify_consumer_ids_changed_enable: bool,
}

impl Default for GroupConfig {
    fn default() -> GroupConfig {
        GroupConfig {
            group_name: String::new(),
            consume_enable: true,
            consume_broadcast_enable: true,
            retry_queue_nums: 1,
            retry_max_times: super::retry::DEFAULT_MAX_RECONSUME,
            broker_id: 0,
            notify_consumer_ids_changed_enable: true,
        }
    }
}

#[derive(Debug)]
pub struct GroupTable {
    pub groups: BTreeMap<String, GroupConfig>,
    file: ConfigFile,
    /// Moves with every write of the table (a master's replication stream sends it when it moved).
    version: std::cell::Cell<u64>,
}

impl GroupTable {
    pub fn load(files: &SharedFiles, dir: &Path) -> GroupTable {
        let file = ConfigFile::new(files, dir, "groups.json");
        let groups = file.load(None);
        GroupTable { groups, file, version: std::cell::Cell::new(0) }
    }

    /// Adds the groups not known yet with one write of the file; true when any was added.
    pub fn ensure_many<'a>(&mut self, groups: impl IntoIterator<Item = &'a str>) -> bool {
        let added = self.insert_missing(groups);
        if added {
            self.persist();
        }
        added
    }

    /// Creates the configurations that are missing without writing the file (a caller adding many
    /// in turns writes it once with [`GroupTable::persist`]); true when any was created.
    pub fn insert_missing<'a>(&mut self, groups: impl IntoIterator<Item = &'a str>) -> bool {
        let mut added = false;
        for group in groups {
            if !self.groups.contains_key(group) {
                let cfg = GroupConfig { group_name: group.to_string(), ..Default::default() };
                self.groups.insert(group.to_string(), cfg);
                added = true;
            }
        }
        added
    }

    /// Replaces (or creates) a group's configuration (UPDATE_AND_CREATE_SUBSCRIPTIONGROUP).
    pub fn upsert(&mut self, cfg: GroupConfig) {
        self.groups.insert(cfg.group_name.clone(), cfg);
        self.persist();
    }

    /// Removes a group's configuration; false when there was none (DELETE_SUBSCRIPTIONGROUP).
    pub fn remove(&mut self, group: &str) -> bool {
        let had = self.groups.remove(group).is_some();
        if had {
            self.persist();
        }
        had
    }

    pub fn retry_max_times(&self, group: &str) -> i32 {
        self.groups.get(group).map_or(super::retry::DEFAULT_MAX_RECONSUME, |g| g.retry_max_times)
    }

    pub fn persist(&self) {
        self.version.set(self.version.get() + 1);
        self.file.save(None, &self.groups);
    }

    pub fn version(&self) -> u64 {
        self.version.get()
    }

    /// Takes the master's table (on a slave): one write when it differs.
    pub fn replace(&mut self, groups: BTreeMap<String, GroupConfig>) {
        if groups != self.groups {
            self.groups = groups;
            self.persist();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_persist_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = GroupTable::load(&crate::store::files::OsFiles::shared(), dir.path());
        assert!(t.ensure_many(["G1"]));
        assert!(!t.ensure_many(["G1"]));
        let again = GroupTable::load(&crate::store::files::OsFiles::shared(), dir.path());
        assert_eq!(again.groups["G1"].retry_max_times, 16);
        let v = serde_json::to_value(&again.groups["G1"]).unwrap();
        assert_eq!(v["groupName"], "G1");
        assert_eq!(v["retryQueueNums"], 1);
    }
}
