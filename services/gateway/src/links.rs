//! Relay links between the SFUs of a room that spans regions.
//!
//! The room service places a room once per region its participants come from and
//! hands each joiner the room's SFUs elsewhere. Once the joiner's peer exists, the
//! gateway links its SFU with each of them: it asks both ends where they receive
//! (`relay_endpoint`, idempotent), then tells each where to send (`connect_relay`).
//! Every join does this again, so a link an SFU dropped is set up anew by the next
//! join; gateways linking the same pair at once get the same answers.

use std::sync::Arc;

use confer_room::model::Placement;
use confer_sfu::{RoomId, SfuError};
use tracing::{debug, warn};

use crate::AppState;

/// Links `here` with each SFU in `others`; failures are logged and counted, the join
/// goes on (its own region's media is unaffected).
pub(crate) async fn link_regions(
    state: Arc<AppState>,
    room: RoomId,
    here: Placement,
    others: Vec<Placement>,
) {
    for there in others {
        if there.sfu == here.sfu {
            continue;
        }
        let outcome = link(&state, &room, &here, &there).await;
        state.metrics.relay_link(outcome.is_ok());
        match outcome {
            Ok(()) => debug!(%room, from = %here.sfu, to = %there.sfu, "relay linked"),
            Err(err) => {
                warn!(%room, from = %here.sfu, to = %there.sfu, %err, "relay link failed");
            }
        }
    }
}

async fn link(
    state: &Arc<AppState>,
    room: &RoomId,
    here: &Placement,
    there: &Placement,
) -> Result<(), SfuError> {
    let near = state.sfus.get(here, state).await?;
    let far = state.sfus.get(there, state).await?;
    let at_near = near.relay_endpoint(room.clone(), there.sfu.clone()).await?;
    let at_far = far.relay_endpoint(room.clone(), here.sfu.clone()).await?;
    near.connect_relay(room.clone(), there.sfu.clone(), at_far)
        .await?;
    far.connect_relay(room.clone(), here.sfu.clone(), at_near)
        .await
}
