//! Security: RocketMQ ACL 1.0 (accounts, permissions, signed requests) and TLS.
//!
//! - [`sign`]: the request signature, shared by the clients (which sign) and the servers (which
//!   verify), so both compute the same bytes.
//! - [`acl`]: `plain_acl.yml`, its reload, and the check of one request; a guard per shard and one
//!   on the name server.
//! - [`tls`]: rustls configurations for the listeners (with certificate reload) and for the clients.
//!
//! Sits beside `protocol` (it reads commands) and below the client, the listeners and the broker.

pub mod acl;
pub mod sign;
pub mod tls;
