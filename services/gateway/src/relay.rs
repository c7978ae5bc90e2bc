//! Carries SFU events to the clients they concern.

use std::sync::Arc;

use confer_proto::signal::{self, server_message::Msg};
use confer_sfu::SfuEvent;
use tokio::sync::broadcast::error::RecvError;
use tracing::warn;

use crate::AppState;
use crate::rooms::message;

pub(crate) async fn relay_sfu_events(state: Arc<AppState>) {
    let mut events = state.sfu.subscribe();
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(missed)) => {
                warn!(missed, "gateway fell behind the sfu event stream");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        match event {
            SfuEvent::TrackAssigned {
                subscriber,
                mid,
                publisher,
                kind,
            } => {
                let msg = message(Msg::TrackAssigned(signal::TrackAssigned {
                    mid,
                    participant_id: publisher.to_string(),
                    kind: kind.as_str().to_owned(),
                }));
                state.rooms.send_to(&subscriber, msg);
            }
            SfuEvent::TrackUnassigned { subscriber, mid } => {
                let msg = message(Msg::TrackUnassigned(signal::TrackUnassigned { mid }));
                state.rooms.send_to(&subscriber, msg);
            }
            SfuEvent::PeerDisconnected {
                participant,
                reason,
            } => {
                let msg = message(Msg::Error(signal::Error {
                    code: "media_disconnected".into(),
                    message: format!("media connection lost: {reason}"),
                }));
                state.rooms.send_to(&participant, msg);
                state.rooms.leave(&participant);
            }
        }
    }
}
