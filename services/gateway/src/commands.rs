//! Commands from the room service for this gateway's participants: room events to
//! relay, admissions, host mutes and removals. The watch is re-established whenever
//! it breaks (room service restart, Redis failover), after the last command it got.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use confer_room::api::{GatewayCommand, RoomEvent, WatchFrom};
use futures_util::StreamExt as _;
use tracing::{info, warn};

use crate::AppState;
use crate::convert;
use crate::group::GroupUpdate;
use crate::rooms::message;
use crate::session::SessionEvent;

pub(crate) async fn watch_room_service(state: Arc<AppState>) {
    let gateway = state.config.gateway_id.clone();
    // The first watch says this gateway has just started, so participants left over
    // from its last run (under the same id) leave. After that, where the stream stood
    // when it broke: the next watch takes up from there, so a command made meanwhile
    // (a host's removal, a room setting) is not lost.
    let mut from = WatchFrom::Start;
    loop {
        match state.room.watch(gateway.clone(), from.clone()).await {
            Ok(mut commands) => {
                state.metrics.command_watches.fetch_add(1, Relaxed);
                info!(gateway = %gateway, from = ?from, "watching room-service commands");
                while let Some(watched) = commands.next().await {
                    from = WatchFrom::After(watched.cursor);
                    state
                        .commands_watched
                        .send_if_modified(|watched| !std::mem::replace(watched, true));
                    if let Some(command) = watched.command {
                        apply(&state, command);
                    }
                }
                warn!("room-service command stream ended; re-watching");
            }
            // A cursor the room service does not know (it was replaced by one that
            // keeps no commands): watch from now rather than never.
            Err(err) if err.code == "invalid_cursor" => {
                warn!(%err, "the room service refused the last cursor; watching from now");
                from = WatchFrom::Now;
            }
            Err(err) => warn!(%err, "cannot watch room-service commands"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn apply(state: &AppState, command: GatewayCommand) {
    match command {
        GatewayCommand::Notify {
            recipients,
            event:
                RoomEvent::ParticipantsChanged {
                    change,
                    participants,
                },
        } => {
            let update = Arc::new(GroupUpdate::new(change, &participants));
            for recipient in recipients {
                state
                    .rooms
                    .deliver(&recipient, SessionEvent::Group(update.clone()));
            }
        }
        GatewayCommand::Notify { recipients, event } => {
            let msg = message(convert::room_event(event));
            for recipient in recipients {
                state.rooms.push(&recipient, msg.clone());
            }
        }
        GatewayCommand::Admitted {
            participant,
            admission,
        } => {
            state
                .rooms
                .deliver(&participant, SessionEvent::Admitted(Box::new(admission)));
        }
        GatewayCommand::Denied { participant } => {
            state.rooms.deliver(&participant, SessionEvent::Denied);
        }
        GatewayCommand::BlockTrack {
            participant,
            kind,
            blocked,
        } => {
            state
                .rooms
                .deliver(&participant, SessionEvent::Block(kind, blocked));
        }
        GatewayCommand::Remove {
            participant,
            reason,
            code,
        } => {
            state
                .rooms
                .deliver(&participant, SessionEvent::Removed(code, reason));
        }
        GatewayCommand::Move { participant } => {
            state.rooms.deliver(&participant, SessionEvent::Moved);
        }
        GatewayCommand::Reconnect { participant } => {
            state.rooms.deliver(&participant, SessionEvent::Reconnect);
        }
    }
}
