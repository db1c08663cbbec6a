//! The native client: a remoting connection, routes, and the producer and consumers built on them.
//! Speaks only the RocketMQ protocol, so it works against any RocketMQ broker. Its API is a blocking
//! façade on plain threads (a reader thread per connection) so tests, tools and examples can use it
//! from anywhere; requests pipeline on one connection. `async_conn` is the same connection for code
//! on a glommio executor (the load generator's producers).

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
