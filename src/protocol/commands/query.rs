//! Message queries: QUERY_MESSAGE (12) by key or unique key within a store-time range, and
//! VIEW_MESSAGE_BY_ID (33) by physical offset (decoded by the client from an offset msgId).
//!
//! QUERY_MESSAGE `extFields`: `topic`, `key`, `maxNum`, `beginTimestamp`, `endTimestamp`, and
//! `_UNIQUE_KEY_QUERY` (`true`: `key` is a UNIQ_KEY). The answer carries `indexLastUpdateTimestamp`
//! and `indexLastUpdatePhyoffset`, and the matching stored records as its body.

use super::{Checked, header};

header! {
    /// QUERY_MESSAGE.
    pub struct QueryMessageRequest {
        pub topic: String = "topic",
        pub key: String = "key",
        pub max_num: Option<i64> = "maxNum",
        pub begin_timestamp: Option<i64> = "beginTimestamp",
        pub end_timestamp: Option<i64> = "endTimestamp",
        pub unique_key_query: Option<bool> = "_UNIQUE_KEY_QUERY",
    }
}
impl Checked for QueryMessageRequest {}

impl QueryMessageRequest {
    pub fn unique(&self) -> bool {
        self.unique_key_query.unwrap_or(false)
    }
}

header! {
    /// The answer to QUERY_MESSAGE.
    pub struct QueryMessageResponse {
        pub index_last_update_timestamp: i64 = "indexLastUpdateTimestamp",
        pub index_last_update_phyoffset: u64 = "indexLastUpdatePhyoffset",
    }
}
impl Checked for QueryMessageResponse {}

header! {
    /// VIEW_MESSAGE_BY_ID.
    pub struct ViewMessageRequest {
        pub offset: u64 = "offset",
    }
}
impl Checked for ViewMessageRequest {}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::protocol::codes::request as rq;

    #[test]
    fn round_trips_required_fields_and_garbage() {
        let q = QueryMessageRequest {
            topic: "T".into(),
            key: "k".into(),
            max_num: Some(32),
            begin_timestamp: Some(0),
            end_timestamp: Some(i64::MAX),
            unique_key_query: Some(true),
        };
        let c = q.request(rq::QUERY_MESSAGE);
        assert_eq!(QueryMessageRequest::decode(&over_the_wire(&c)), Ok(q));
        each_required_field_is_checked(&c, &["topic", "key"], QueryMessageRequest::decode);
        garbage_never_panics(&c, QueryMessageRequest::decode);
        let v = ViewMessageRequest { offset: 4096 };
        assert_eq!(ViewMessageRequest::decode(&over_the_wire(&v.request(rq::VIEW_MESSAGE_BY_ID))), Ok(v));
    }
}
