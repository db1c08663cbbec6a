//! The controller: every node of a replicated cluster runs one beside its name server (port + 2),
//! and together they form a Raft group (raft-rs) that owns, per replica set, the master, its epoch
//! and the in-sync set (`state.rs`). The leader watches the replicas' heartbeats and elects a new
//! master from the in-sync set when one is lost (`policy.rs`); replicas learn their role from the
//! answers to their heartbeats (`crate::replication::agent`).
//!
//! Runs on the name server's executor; `node.rs` is the sans-IO Raft member, `service.rs` its
//! network and persistence.

pub mod log;
pub mod node;
pub mod policy;
pub mod service;
pub mod state;
#[cfg(test)]
mod tests_sim;
