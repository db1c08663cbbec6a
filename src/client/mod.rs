//! The native client: a remoting connection, routes, and the producer and consumers built on them.
//! Speaks only the RocketMQ protocol, so it works against any RocketMQ broker. It uses plain threads
//! (blocking sockets with a reader thread per connection) so tests, tools and the benchmark can use it
//! from anywhere; requests pipeline on one connection.

pub mod async_conn;
pub mod connection;
pub mod consumer;
pub mod lookup;
pub mod producer;
pub mod push;
pub mod request;
pub mod route;
pub mod transaction;

pub use connection::{ClientError, Connection};
pub use consumer::PullConsumer;
pub use producer::{Message, Producer, SendResult};
pub use push::{PushConsumer, StartFrom};
pub use request::Reply;
pub use route::MessageQueue;
pub use transaction::TxState;
