//! `send_data`: a member's data for the others in its room, relayed by the room
//! service (which checks the member may send it) and held to [`DATA_RATE`] here.

use std::time::Instant;

use confer_proto::signal::{self, server_message::Msg};
use confer_room::api::ParticipantData;

use super::{Reject, Session};
use crate::chat_rate::ChatRate;

/// How fast one member may send data: a shared pointer or a reaction burst fits,
/// a flood into a big room does not.
pub(super) const DATA_RATE: ChatRate = ChatRate {
    per_second: 30,
    burst: 60,
};

impl Session {
    pub(super) async fn send_data(
        &mut self,
        request_id: &str,
        data: signal::SendData,
    ) -> Result<(), Reject> {
        let member = self
            .member
            .as_mut()
            .ok_or_else(|| Reject::new("not_joined", "join a room first"))?;
        member
            .data_allowance
            .take(Instant::now())
            .map_err(|over| Reject {
                retry_after_ms: over.retry_after_ms(),
                ..Reject::new(
                    "data_rate_limited",
                    format!(
                        "too many data messages: {} a second, {} at once; try again in {} ms",
                        DATA_RATE.per_second,
                        DATA_RATE.burst,
                        over.retry_after_ms()
                    ),
                )
            })?;
        let id = member.id.clone();
        let data = ParticipantData {
            topic: data.topic,
            payload: data.payload,
            destination: data.destination,
        };
        self.state.room.publish_data(id, data).await?;
        self.send(request_id.to_owned(), Msg::Ack(signal::Ack {}));
        Ok(())
    }
}
