//! Carries SFU events to the sessions they concern, and track changes on to the room
//! service (which turns them into webhooks).

use confer_proto::signal::{self, server_message::Msg};
use confer_room::model::Source;
use confer_sfu::SfuEvent;
use confer_sfu::core::{Quality, TrackSource};
use tokio::sync::broadcast::{self, error::RecvError};
use tracing::{debug, warn};

use crate::rooms::message;
use crate::session::SessionEvent;
use crate::sfus::WeakState;

pub(crate) async fn relay_sfu_events(state: WeakState, mut events: broadcast::Receiver<SfuEvent>) {
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(missed)) => {
                warn!(missed, "gateway fell behind the sfu event stream");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let Some(state) = state.upgrade() else {
            return;
        };
        match event {
            SfuEvent::TrackAssigned {
                subscriber,
                mid,
                publisher,
                kind,
                source,
            } => {
                let msg = message(Msg::TrackAssigned(signal::TrackAssigned {
                    mid,
                    participant_id: publisher.to_string(),
                    kind: kind.as_str().to_owned(),
                    source: source.as_str().to_owned(),
                }));
                state.rooms.push(subscriber.as_str(), msg);
            }
            SfuEvent::TrackUnassigned { subscriber, mid } => {
                let msg = message(Msg::TrackUnassigned(signal::TrackUnassigned { mid }));
                state.rooms.push(subscriber.as_str(), msg);
            }
            SfuEvent::TrackPublished {
                participant,
                source,
            } => {
                report_track(&state, participant.as_str(), source, true).await;
            }
            SfuEvent::TrackUnpublished {
                participant,
                source,
            } => {
                report_track(&state, participant.as_str(), source, false).await;
            }
            SfuEvent::ActiveSpeaker { room, participant } => {
                let participant = participant.map(|p| p.to_string());
                state.rooms.set_speaker(room.as_str(), participant.clone());
                let msg = message(Msg::ActiveSpeaker(signal::ActiveSpeaker {
                    participant_id: participant.unwrap_or_default(),
                }));
                state.rooms.push_room(room.as_str(), &msg);
            }
            SfuEvent::ConnectionQuality {
                room,
                participant,
                quality,
            } => {
                let news = state
                    .rooms
                    .set_quality(room.as_str(), participant.as_str(), quality);
                if !news {
                    continue;
                }
                let msg = message(Msg::ConnectionQuality(connection_quality([(
                    participant.to_string(),
                    quality,
                )])));
                state.rooms.push_room(room.as_str(), &msg);
            }
            SfuEvent::PeerDisconnected {
                participant,
                reason,
            } => {
                state
                    .rooms
                    .deliver(participant.as_str(), SessionEvent::MediaLost(reason));
            }
        }
    }
}

/// The `connection_quality` message for some participants' levels.
pub(crate) fn connection_quality(
    rated: impl IntoIterator<Item = (String, Quality)>,
) -> signal::ConnectionQuality {
    signal::ConnectionQuality {
        updates: rated
            .into_iter()
            .map(|(participant_id, quality)| signal::ParticipantQuality {
                participant_id,
                quality: quality.as_str().to_owned(),
            })
            .collect(),
    }
}

/// Tells the room service about a track of one of this gateway's participants (every
/// gateway watching the SFU sees the event; the one holding the participant reports).
async fn report_track(
    state: &crate::AppState,
    participant: &str,
    source: TrackSource,
    published: bool,
) {
    if !state.rooms.is_local(participant) {
        return;
    }
    let source = match source {
        TrackSource::Microphone => Source::Microphone,
        TrackSource::Camera => Source::Camera,
        TrackSource::ScreenShare => Source::ScreenShare,
    };
    if let Err(err) = state
        .room
        .track_event(participant.to_owned(), source, published)
        .await
    {
        debug!(%err, participant, "track event not recorded");
    }
}
