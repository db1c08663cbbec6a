//! The native client: a remoting connection, and the producer and consumers built on it. Speaks only
//! the RocketMQ protocol, so it works against any RocketMQ broker.

pub mod connection;
