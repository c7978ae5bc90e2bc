//! Relay links between the SFUs of a room that spans regions.
//!
//! The room service places a room once per region its participants come from and
//! hands each joiner the room's SFUs elsewhere. Once the joiner's peer exists, the
//! gateway links its SFU with each of them: it asks both ends where they receive
//! (`relay_endpoint`, idempotent), then tells each where to send (`connect_relay`).
//! Every join does this again, so a link an SFU dropped is set up anew by the next
//! join; gateways linking the same pair at once get the same answers. A set-up that
//! fails because an SFU cannot be reached is tried again a few times, waits doubling.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use confer_room::model::Placement;
use confer_sfu::{RoomId, SfuError};
use tracing::{debug, warn};

use crate::AppState;

/// Attempts per link before giving up until the next join.
const ATTEMPTS: u32 = 5;
/// The wait before the second attempt; it doubles after each.
const FIRST_WAIT: Duration = Duration::from_millis(250);

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
        let (outcome, attempts) =
            retrying(ATTEMPTS, FIRST_WAIT, || link(&state, &room, &here, &there)).await;
        if attempts > 1 {
            debug!(%room, to = %there.sfu, attempts, "relay link needed more than one attempt");
        }
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

/// Runs `op` until it succeeds, fails for good, or `attempts` are spent; the outcome
/// and the attempts made. Only an SFU that cannot be reached (or failed inside) is
/// worth asking again.
async fn retrying<F, Fut>(
    attempts: u32,
    first_wait: Duration,
    mut op: F,
) -> (Result<(), SfuError>, u32)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), SfuError>>,
{
    let mut wait = first_wait;
    let mut made = 0;
    loop {
        made += 1;
        match op().await {
            Err(SfuError::Unavailable(_) | SfuError::Internal(_)) if made < attempts => {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            outcome => return (outcome, made),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    async fn run(fails: u32, error: SfuError) -> (Result<(), SfuError>, u32) {
        let calls = AtomicU32::new(0);
        retrying(5, Duration::from_millis(1), || {
            let call = calls.fetch_add(1, Ordering::Relaxed);
            let error = error.clone();
            async move { if call < fails { Err(error) } else { Ok(()) } }
        })
        .await
    }

    #[tokio::test]
    async fn an_unreachable_sfu_is_asked_again_until_it_answers_or_attempts_run_out() {
        let unavailable = SfuError::Unavailable("connection refused".into());
        assert_eq!(run(0, unavailable.clone()).await, (Ok(()), 1));
        assert_eq!(run(2, unavailable.clone()).await, (Ok(()), 3));
        assert_eq!(run(9, unavailable.clone()).await, (Err(unavailable), 5));
    }

    #[tokio::test]
    async fn a_refusal_is_not_asked_again() {
        let refused = SfuError::InvalidOffer("no".into());
        assert_eq!(run(9, refused.clone()).await, (Err(refused), 1));
    }
}
