//! Client registration and membership: HEART_BEAT (34, JSON body `HeartbeatData`), UNREGISTER_CLIENT
//! (35), GET_CONSUMER_LIST_BY_GROUP (38), NOTIFY_CONSUMER_IDS_CHANGED (40, broker → consumer), and the
//! queue locks of orderly consumers LOCK_BATCH_MQ / UNLOCK_BATCH_MQ (41, 42, JSON body
//! `{consumerGroup, clientId, mqSet}`).

use super::{Checked, header};

header! {
    /// UNREGISTER_CLIENT.
    pub struct UnregisterClientRequest {
        pub client_id: String = "clientID",
        pub producer_group: Option<String> = "producerGroup",
        pub consumer_group: Option<String> = "consumerGroup",
    }
}
impl Checked for UnregisterClientRequest {}

header! {
    /// GET_CONSUMER_LIST_BY_GROUP, and the NOTIFY_CONSUMER_IDS_CHANGED push.
    pub struct ConsumerGroupRequest {
        pub consumer_group: String = "consumerGroup",
    }
}
impl Checked for ConsumerGroupRequest {}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::protocol::codes::request as rq;

    #[test]
    fn round_trips_and_required_fields() {
        let u =
            UnregisterClientRequest { client_id: "c@1".into(), producer_group: None, consumer_group: Some("G".into()) };
        let c = u.request(rq::UNREGISTER_CLIENT);
        assert_eq!(UnregisterClientRequest::decode(&over_the_wire(&c)), Ok(u));
        each_required_field_is_checked(&c, &["clientID"], UnregisterClientRequest::decode);
        let g = ConsumerGroupRequest { consumer_group: "G".into() };
        let c = g.request(rq::GET_CONSUMER_LIST_BY_GROUP);
        assert_eq!(ConsumerGroupRequest::decode(&over_the_wire(&c)), Ok(g));
        garbage_never_panics(&c, ConsumerGroupRequest::decode);
    }
}
