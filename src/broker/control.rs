//! The control plane shared by all shards: topic changes to fan out, each shard's registration data
//! for the name servers, and the shutdown flag. Control traffic only — nothing per message crosses
//! cores; shards poll it every `CONTROL_POLL` (a lock held for microseconds, off the data path).

use crate::broker::topics::TopicConfig;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How often shards look at the control plane: topic changes reach other shards within this time.
pub const CONTROL_POLL: Duration = Duration::from_millis(50);

/// A topic change made on one shard, applied by the others.
#[derive(Debug, Clone)]
pub struct TopicEvent {
    pub origin: usize,
    pub upsert: Option<TopicConfig>,
    pub delete: Option<String>,
}

/// Builds a REGISTER_BROKER body. Encoding a large topic table takes milliseconds, so the shard
/// hands over a snapshot and the registrar thread encodes it, off the data path.
pub type RegistrationBody = std::sync::Arc<dyn Fn() -> String + Send + Sync>;

/// What the registrar sends to the name servers for one shard.
#[derive(Clone)]
pub struct Registration {
    pub broker_name: String,
    /// 0 for a master (or a single node), the node id for a slave (RocketMQ's brokerId).
    pub broker_id: i64,
    pub addr: SocketAddr,
    pub body: RegistrationBody,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration").field("broker_name", &self.broker_name).field("addr", &self.addr).finish()
    }
}

#[derive(Default)]
struct State {
    /// Topic events some shard has not seen yet; `events[0]` has the absolute index `first_event`.
    /// Events every shard has read are dropped, so this holds at most what was published since the
    /// slowest shard's last poll (every `CONTROL_POLL`), not every change since start.
    events: std::collections::VecDeque<TopicEvent>,
    first_event: usize,
    /// Per shard, the absolute index of the first event it has not read.
    cursors: Vec<usize>,
    registrations: Vec<Option<Registration>>,
    dirty: bool,
}

#[derive(Default)]
pub struct ControlPlane {
    /// Per-shard metric snapshots, read by the metrics endpoint.
    pub metrics: Arc<crate::metrics::MetricsHub>,
    state: Mutex<State>,
    changed: Condvar,
    shutdown: AtomicBool,
}

impl ControlPlane {
    pub fn new(shards: usize) -> ControlPlane {
        let cp = ControlPlane { metrics: Arc::new(crate::metrics::MetricsHub::new(shards)), ..Default::default() };
        if let Ok(mut s) = cp.state.lock() {
            s.registrations = vec![None; shards];
            s.cursors = vec![0; shards];
        }
        cp
    }

    pub fn publish_topic(&self, origin: usize, upsert: Option<TopicConfig>, delete: Option<String>) {
        if let Ok(mut s) = self.state.lock() {
            s.events.push_back(TopicEvent { origin, upsert, delete });
        }
    }

    /// Topic events after `cursor` that did not come from `shard`; advances the cursor, and drops
    /// the events every shard has now read.
    pub fn topic_events(&self, shard: usize, cursor: &mut usize) -> Vec<TopicEvent> {
        let Ok(mut s) = self.state.lock() else {
            return Vec::new();
        };
        let end = s.first_event + s.events.len();
        let skip = (*cursor).clamp(s.first_event, end) - s.first_event;
        let new: Vec<TopicEvent> = s.events.iter().skip(skip).filter(|e| e.origin != shard).cloned().collect();
        *cursor = end;
        if let Some(c) = s.cursors.get_mut(shard) {
            *c = end;
        }
        let read_by_all = s.cursors.iter().min().copied().unwrap_or(end);
        while s.first_event < read_by_all && s.events.pop_front().is_some() {
            s.first_event += 1;
        }
        new
    }

    /// Topic events held for shards that have not read them.
    #[cfg(test)]
    pub fn events_held(&self) -> usize {
        self.state.lock().map(|s| s.events.len()).unwrap_or(0)
    }

    pub fn set_registration(
        &self,
        shard: usize,
        (broker_name, broker_id): (String, i64),
        addr: SocketAddr,
        body: RegistrationBody,
    ) {
        if let Ok(mut s) = self.state.lock() {
            if let Some(slot) = s.registrations.get_mut(shard) {
                *slot = Some(Registration { broker_name, broker_id, addr, body });
            }
            s.dirty = true;
        }
        self.changed.notify_all();
    }

    /// Waits up to `timeout` for a registration change; true when one happened.
    pub fn wait_changed(&self, timeout: Duration) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        if !s.dirty && !self.is_shutdown() {
            s = match self.changed.wait_timeout(s, timeout) {
                Ok((s, _)) => s,
                Err(_) => return false,
            };
        }
        std::mem::replace(&mut s.dirty, false)
    }

    /// Every shard's current registration.
    pub fn registrations(&self) -> Vec<Registration> {
        self.state.lock().map(|s| s.registrations.iter().flatten().cloned().collect()).unwrap_or_default()
    }

    pub fn shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.changed.notify_all();
    }

    pub fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_events_reach_every_other_shard_once_and_are_dropped_when_all_have_read_them() {
        let cp = ControlPlane::new(3);
        let mut cursors = [0usize; 3];
        cp.publish_topic(0, None, Some("A".into()));
        cp.publish_topic(1, None, Some("B".into()));
        let names = |evs: Vec<TopicEvent>| evs.into_iter().filter_map(|e| e.delete).collect::<Vec<_>>();
        assert_eq!(names(cp.topic_events(0, &mut cursors[0])), ["B"], "not its own");
        assert_eq!(names(cp.topic_events(1, &mut cursors[1])), ["A"]);
        assert_eq!(cp.events_held(), 2, "shard 2 has not read them yet");
        assert_eq!(names(cp.topic_events(2, &mut cursors[2])), ["A", "B"]);
        assert_eq!(cp.events_held(), 0, "read by all: dropped");
        cp.publish_topic(2, None, Some("C".into()));
        assert_eq!(names(cp.topic_events(0, &mut cursors[0])), ["C"]);
        assert!(cp.topic_events(0, &mut cursors[0]).is_empty(), "each event once");
        assert_eq!(names(cp.topic_events(1, &mut cursors[1])), ["C"]);
        cp.topic_events(2, &mut cursors[2]);
        assert_eq!(cp.events_held(), 0);
    }
}
