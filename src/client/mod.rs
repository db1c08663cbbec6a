//! The native client: a remoting connection, routes, and the producer and consumers built on them.
//! Speaks only the RocketMQ protocol, so it works against any RocketMQ broker. Two faces: an async
//! producer and pull consumer for code on glommio executors (`async_client`, over `async_conn`:
//! io_uring sockets, one client per executor, one executor per core — what `ringmq bench` runs on),
//! and a blocking façade on plain threads (a reader thread per connection) so tests, tools and
//! examples can use it from anywhere, with the push consumer, transactions and request-reply.
//! Both pipeline requests on one connection per broker.

pub mod async_client;
pub mod async_conn;
pub mod connection;
pub mod consumer;
pub mod lookup;
pub mod options;
pub mod producer;
pub mod push;
pub mod request;
pub mod route;
pub mod transaction;
pub mod wire;

/// Largest frame either client connection (blocking `connection.rs`, glommio `async_conn.rs`)
/// accepts from a broker: a pull answer is capped at 8 MiB of records (`broker/pull.rs`) and a
/// message at its configured maximum (4 MiB by default), so 64 MiB admits every answer a broker
/// configured within reason sends, and stops a corrupt length prefix from making the client
/// reserve gigabytes.
pub(crate) const MAX_FRAME_FROM_BROKER: usize = 64 << 20;

pub use crate::security::sign::Credentials;
pub use async_client::{AsyncClient, AsyncProducer, AsyncPullConsumer};
pub use connection::{ClientError, ClientSecurity, Connection};
pub use consumer::PullConsumer;
pub use options::SecurityArgs;
pub use producer::{Message, Producer, SendResult};
pub use push::{PushConsumer, StartFrom};
pub use request::Reply;
pub use route::MessageQueue;
pub use transaction::TxState;
