//! Why a request failed, and the one place each reason maps to a RocketMQ response code.
//!
//! Handlers return `Result<Command, BrokerError>`; the dispatcher turns an error into the response
//! (code + remark) the client expects. The codes are RocketMQ's, so its clients react as they do to a
//! Java broker (retry another broker on SYSTEM_BUSY, recreate a route on TOPIC_NOT_EXIST, …).

use crate::protocol::Command;
use crate::protocol::codes::response as rs;
use crate::protocol::commands::HeaderError;
use crate::store::StoreError;

#[derive(Debug)]
pub enum BrokerError {
    /// A header field is missing, malformed or out of range.
    BadHeader(HeaderError),
    /// A message (header or body) that cannot be stored: bad flags, properties too large, …
    MessageIllegal(String),
    /// The topic is not on this broker.
    TopicNotExist { topic: String, broker: String },
    /// The topic's permission (or, later, the ACL) forbids the request.
    NoPermission(String),
    /// A value in range for its type but not for this broker (a queue id past the topic's queues).
    InvalidParameter(String),
    /// The group has no subscription to the topic here (no heartbeat yet).
    SubscriptionNotExist(String),
    /// The subscription expression does not parse.
    SubscriptionParseFailed(String),
    /// Nothing stored for what was asked (no committed offset, no message at an offset).
    NotFound(String),
    /// The client that must answer is not connected.
    ConsumerNotOnline(String),
    /// The client that must answer did not, in time.
    ClientTimeout(String),
    /// A request code this broker does not serve (or not at run time).
    NotSupported(String),
    /// The store refused or failed.
    Store(StoreError),
    /// Anything else, with its reason.
    System(String),
}

impl BrokerError {
    /// RocketMQ's response code for this error.
    pub fn code(&self) -> i32 {
        match self {
            BrokerError::BadHeader(_) | BrokerError::System(_) => rs::SYSTEM_ERROR,
            BrokerError::MessageIllegal(_) => rs::MESSAGE_ILLEGAL,
            BrokerError::TopicNotExist { .. } => rs::TOPIC_NOT_EXIST,
            BrokerError::NoPermission(_) => rs::NO_PERMISSION,
            BrokerError::InvalidParameter(_) => rs::INVALID_PARAMETER,
            BrokerError::SubscriptionNotExist(_) => rs::SUBSCRIPTION_NOT_EXIST,
            BrokerError::SubscriptionParseFailed(_) => rs::SUBSCRIPTION_PARSE_FAILED,
            BrokerError::NotFound(_) => rs::QUERY_NOT_FOUND,
            BrokerError::ConsumerNotOnline(_) => rs::CONSUMER_NOT_ONLINE,
            BrokerError::ClientTimeout(_) => rs::CONSUME_MSG_TIMEOUT,
            BrokerError::NotSupported(_) => rs::REQUEST_CODE_NOT_SUPPORTED,
            BrokerError::Store(e) => match e {
                StoreError::DiskFull { .. }
                | StoreError::NoSpace { .. }
                | StoreError::Poisoned(_)
                | StoreError::NotMaster => rs::SERVICE_NOT_AVAILABLE,
                StoreError::TooLarge { .. } | StoreError::Invalid(_) => rs::MESSAGE_ILLEGAL,
                StoreError::SlaveTimeout => rs::FLUSH_SLAVE_TIMEOUT,
                _ => rs::SYSTEM_ERROR,
            },
        }
    }

    /// The answer to `req`: this error's code and its reason as the remark.
    pub fn respond(&self, req: &Command) -> Command {
        req.response_to(self.code()).with_remark(self.to_string())
    }

    /// A header error on a send: RocketMQ answers MESSAGE_ILLEGAL there rather than SYSTEM_ERROR.
    pub fn illegal_message(e: HeaderError) -> BrokerError {
        BrokerError::MessageIllegal(e.to_string())
    }
}

impl std::fmt::Display for BrokerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrokerError::BadHeader(e) => write!(f, "{e}"),
            BrokerError::TopicNotExist { topic, broker } => {
                write!(f, "topic[{topic}] not exist on {broker}, apply first please!")
            }
            BrokerError::Store(e) => write!(f, "{e}"),
            BrokerError::MessageIllegal(s)
            | BrokerError::NoPermission(s)
            | BrokerError::InvalidParameter(s)
            | BrokerError::SubscriptionNotExist(s)
            | BrokerError::SubscriptionParseFailed(s)
            | BrokerError::NotFound(s)
            | BrokerError::ConsumerNotOnline(s)
            | BrokerError::ClientTimeout(s)
            | BrokerError::NotSupported(s)
            | BrokerError::System(s) => f.write_str(s),
        }
    }
}

impl From<HeaderError> for BrokerError {
    fn from(e: HeaderError) -> BrokerError {
        BrokerError::BadHeader(e)
    }
}

impl From<StoreError> for BrokerError {
    fn from(e: StoreError) -> BrokerError {
        BrokerError::Store(e)
    }
}

/// What a handler returns: its answer, or why it failed.
pub type Reply = Result<Command, BrokerError>;

/// Answers `req` with the handler's result, an error becoming its code and remark.
pub fn answer(req: &Command, r: Reply) -> Command {
    r.unwrap_or_else(|e| e.respond(req))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codes::request as rq;

    #[test]
    fn enospc_answers_the_disk_full_code() {
        let e = StoreError::io("/data/0/commitlog/x", &std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(matches!(e, StoreError::NoSpace { .. }), "{e:?}");
        let req = Command::request(rq::SEND_MESSAGE_V2);
        assert_eq!(BrokerError::Store(e).respond(&req).code, rs::SERVICE_NOT_AVAILABLE);
        let other = StoreError::io("/x", &std::io::Error::from_raw_os_error(libc::EIO));
        assert_eq!(BrokerError::from(other).respond(&req).code, rs::SYSTEM_ERROR);
    }

    #[test]
    fn header_errors_name_the_field() {
        let req = Command::request(rq::PULL_MESSAGE);
        let r = BrokerError::from(HeaderError::new("queueId", "is required but missing")).respond(&req);
        assert_eq!(r.code, rs::SYSTEM_ERROR);
        assert_eq!(r.remark.as_deref(), Some("header field 'queueId' is required but missing"));
        let t = BrokerError::TopicNotExist { topic: "T".into(), broker: "b-0".into() }.respond(&req);
        assert_eq!(
            (t.code, t.remark.as_deref()),
            (rs::TOPIC_NOT_EXIST, Some("topic[T] not exist on b-0, apply first please!"))
        );
    }
}
