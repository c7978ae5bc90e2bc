use std::sync::Arc;

use super::*;

fn placement(sfu: &str) -> Placement {
    Placement {
        region: "eu".into(),
        sfu: sfu.into(),
        control: format!("{sfu}:7881"),
    }
}

#[tokio::test]
async fn the_first_placement_wins_under_a_race() {
    let live = Arc::new(Live::Memory(MemoryLive::default()));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let live = live.clone();
            tokio::spawn(async move { live.place("t/r", placement(&format!("sfu-{i}"))).await })
        })
        .collect();
    let mut winners = std::collections::HashSet::new();
    for task in tasks {
        winners.insert(task.await.expect("task").expect("placed").sfu);
    }
    assert_eq!(winners.len(), 1, "one room, one SFU: {winners:?}");
    let sfu = winners.into_iter().next().expect("one");
    assert_eq!(
        live.rooms_on(std::slice::from_ref(&sfu))
            .await
            .expect("count"),
        [1]
    );
    live.clear_placement("t/r", "eu").await.expect("clear");
    assert_eq!(live.rooms_on(&[sfu]).await.expect("count"), [0]);
}

/// Redis at `CONFER_TEST_REDIS_URL` (which the test script sets).
async fn redis_live() -> Live {
    let url =
        std::env::var("CONFER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    Live::Redis(RedisLive::connect(&url).await.expect("Redis"))
}

fn denied(participant: &str) -> GatewayCommand {
    GatewayCommand::Denied {
        participant: participant.into(),
    }
}

/// The next `n` commands of a watch, with their cursors.
async fn next_commands(
    stream: &mut BoxStream<'static, Watched>,
    n: usize,
) -> Vec<(String, GatewayCommand)> {
    use futures_util::StreamExt as _;
    let mut out = Vec::new();
    while out.len() < n {
        let watched = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
            .await
            .expect("a command within 5 s")
            .expect("the stream goes on");
        out.push((watched.cursor, watched.command.expect("a command")));
    }
    out
}

#[tokio::test]
async fn a_gateways_commands_are_taken_up_after_the_last_cursor_it_got() {
    use futures_util::StreamExt as _;
    let live = redis_live().await;
    let gateway = format!("gw-test-{:08x}", rand::random::<u32>());
    // Made before anyone watched: not part of a watch from now.
    live.publish(&gateway, &denied("old"))
        .await
        .expect("publish");

    let mut watch = live.subscribe(&gateway, None).await.expect("watch");
    let start = watch.next().await.expect("the starting cursor");
    assert_eq!(start.command, None);
    live.publish(&gateway, &denied("a")).await.expect("publish");
    live.publish(&gateway, &denied("b")).await.expect("publish");
    let got = next_commands(&mut watch, 2).await;
    assert_eq!(got[0].1, denied("a"));
    assert_eq!(got[1].1, denied("b"));
    // Stream entry ids, `ms-seq`, in order.
    let id = |cursor: &str| -> (u64, u64) {
        let (ms, seq) = cursor.split_once('-').expect("an entry id");
        (ms.parse().expect("ms"), seq.parse().expect("seq"))
    };
    assert!(id(&got[0].0) > id(&start.cursor), "{got:?} after {start:?}");
    assert!(id(&got[1].0) > id(&got[0].0), "{got:?}");

    // The watch breaks; two commands are made meanwhile.
    drop(watch);
    live.publish(&gateway, &denied("c")).await.expect("publish");
    live.publish(&gateway, &denied("d")).await.expect("publish");
    let last = got[1].0.clone();
    let mut again = live
        .subscribe(&gateway, Some(last.clone()))
        .await
        .expect("watch again");
    let start = again.next().await.expect("the starting cursor");
    assert_eq!((start.cursor, start.command), (last, None));
    let got: Vec<GatewayCommand> = next_commands(&mut again, 2)
        .await
        .into_iter()
        .map(|(_, command)| command)
        .collect();
    assert_eq!(got, [denied("c"), denied("d")]);

    // A cursor this room service never gave is refused, not read from.
    for bad in ["", "42", "x-1", "1-", "1-2-3", "*"] {
        let refused = live.subscribe(&gateway, Some(bad.into())).await.err();
        assert_eq!(
            refused.map(|err| err.code),
            Some("invalid_cursor".to_owned()),
            "{bad:?}"
        );
    }
}

fn departed_participant(id: &str) -> ParticipantInfo {
    ParticipantInfo {
        id: id.into(),
        identity: "ada".into(),
        name: "Ada".into(),
        role: crate::model::Role::Host,
        permissions: crate::model::Permissions::default(),
        metadata: String::new(),
        state: crate::model::ParticipantState::Active,
        audio_muted: false,
        video_muted: false,
        audio_blocked: true,
        video_blocked: false,
        pending_name: None,
        token_expires_at: None,
        tracks: Vec::new(),
        sources: Vec::new(),
        joined_at: 1,
        gateway: "gw".into(),
        region: None,
        kind: confer_auth::ParticipantKind::Standard,
        previous_id: None,
        hand_raised_at: None,
    }
}

/// What is kept of a departed participant is taken once, and not after its time.
async fn departed_participants_are_taken_once_and_in_time(live: Live) {
    let id = format!("p-{:08x}", rand::random::<u32>());
    let ada = departed_participant(&id);
    live.keep_departed("t/r", &ada, std::time::Duration::from_secs(60))
        .await
        .expect("kept");
    let (room, taken) = live.take_departed(&id).await.expect("take").expect("kept");
    assert_eq!(room, "t/r");
    assert_eq!(taken, ada);
    assert_eq!(live.take_departed(&id).await.expect("take"), None);

    live.keep_departed("t/r", &ada, std::time::Duration::from_millis(50))
        .await
        .expect("kept");
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    assert_eq!(live.take_departed(&id).await.expect("take"), None);
    assert_eq!(live.take_departed("p-never").await.expect("take"), None);
}

/// How long a room's kept participants may still come back: the longest, and only
/// theirs, until they are taken or their time runs out.
async fn a_rooms_kept_participants_are_waited_for_until_the_last_goes(live: Live) {
    let room = format!("t/kept-{:08x}", rand::random::<u32>());
    let (ada, bob) = (format!("{room}-ada"), format!("{room}-bob"));
    assert_eq!(live.kept_for(&room).await.expect("kept"), None);
    let minute = std::time::Duration::from_secs(60);
    live.keep_departed(&room, &departed_participant(&ada), minute / 2)
        .await
        .expect("kept");
    live.keep_departed(&room, &departed_participant(&bob), minute)
        .await
        .expect("kept");
    live.keep_departed("t/elsewhere", &departed_participant("p-else"), minute * 2)
        .await
        .expect("kept");
    let left = live.kept_for(&room).await.expect("kept").expect("two kept");
    assert!(left > minute / 2 && left <= minute, "{left:?}");
    assert_eq!(kept_ids(&live, &room).await, [ada.as_str(), bob.as_str()]);
    live.take_departed(&bob).await.expect("take").expect("bob");
    let left = live.kept_for(&room).await.expect("kept").expect("ada kept");
    assert!(left > minute / 4 && left <= minute / 2, "{left:?}");
    assert_eq!(kept_ids(&live, &room).await, [ada.as_str()], "bob taken");
    live.take_departed(&ada).await.expect("take").expect("ada");
    assert_eq!(live.kept_for(&room).await.expect("kept"), None);

    live.keep_departed(
        &room,
        &departed_participant(&ada),
        std::time::Duration::from_millis(50),
    )
    .await
    .expect("kept");
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    assert_eq!(
        live.kept_for(&room).await.expect("kept"),
        None,
        "time ran out"
    );
    assert!(kept_ids(&live, &room).await.is_empty(), "time ran out");
}

/// The ids of the participants kept for `room`, in order.
async fn kept_ids(live: &Live, room: &str) -> Vec<String> {
    let mut ids: Vec<String> = live
        .departed_in(room)
        .await
        .expect("kept")
        .into_iter()
        .map(|p| p.id)
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_rooms_kept_participants_in_memory_are_waited_for_until_the_last_goes() {
    a_rooms_kept_participants_are_waited_for_until_the_last_goes(Live::Memory(
        MemoryLive::default(),
    ))
    .await;
}

#[tokio::test]
async fn a_rooms_kept_participants_in_redis_are_waited_for_until_the_last_goes() {
    a_rooms_kept_participants_are_waited_for_until_the_last_goes(redis_live().await).await;
}

#[tokio::test]
async fn departed_participants_in_memory_are_taken_once_and_in_time() {
    departed_participants_are_taken_once_and_in_time(Live::Memory(MemoryLive::default())).await;
}

#[tokio::test]
async fn departed_participants_in_redis_are_taken_once_and_in_time() {
    departed_participants_are_taken_once_and_in_time(redis_live().await).await;
}

/// A hold of `identity`'s joins to `room` for 300 ms: its token, or `None` while held.
async fn hold(live: &Live, room: &str, identity: &str) -> Option<String> {
    live.hold_identity(room, identity, HOLD_FOR)
        .await
        .expect("hold")
}

async fn release(live: &Live, room: &str, identity: &str, token: &str) {
    live.release_identity(room, identity, token)
        .await
        .expect("release");
}

const HOLD_FOR: Duration = Duration::from_millis(300);

/// One join at a time holds an identity's joins to a room: another waits, a wrong
/// token gives nothing back, the right one does, and a hold runs out by itself.
async fn an_identitys_joins_are_held_one_at_a_time(live: Live) {
    let room = format!("t/hold-{:08x}", rand::random::<u32>());
    let first = hold(&live, &room, "gus")
        .await
        .expect("the first join holds");
    assert_eq!(hold(&live, &room, "gus").await, None);
    let other = hold(&live, &room, "ada")
        .await
        .expect("another identity is its own");
    assert!(
        hold(&live, "t/elsewhere", "gus").await.is_some(),
        "another room is its own"
    );
    release(&live, &room, "gus", "not-the-token").await;
    assert_eq!(
        hold(&live, &room, "gus").await,
        None,
        "a wrong token gives nothing back"
    );
    release(&live, &room, "gus", &first).await;
    let second = hold(&live, &room, "gus")
        .await
        .expect("given back: the next join holds");
    assert_ne!(first, second);
    // Never given back: it runs out, and the late give-back leaves the next one's.
    tokio::time::sleep(HOLD_FOR + Duration::from_millis(100)).await;
    let third = hold(&live, &room, "gus").await.expect("ran out");
    release(&live, &room, "gus", &second).await;
    assert_eq!(
        hold(&live, &room, "gus").await,
        None,
        "the third join's hold stands"
    );
    release(&live, &room, "gus", &third).await;
    release(&live, &room, "ada", &other).await;
}

#[tokio::test]
async fn an_identitys_joins_are_held_one_at_a_time_in_memory() {
    an_identitys_joins_are_held_one_at_a_time(Live::Memory(MemoryLive::default())).await;
}

#[tokio::test]
async fn an_identitys_joins_are_held_one_at_a_time_in_redis() {
    an_identitys_joins_are_held_one_at_a_time(redis_live().await).await;
}

/// Takes `identity`'s slow-mode turn in `room` for `message`, for 300 ms: the time
/// left when another message holds it.
async fn turn(live: &Live, room: &str, identity: &str, message: &str) -> Duration {
    live.take_slow_mode_turn(room, identity, message, HOLD_FOR)
        .await
        .expect("slow-mode turn")
}

/// One message per identity per turn, whichever connection posts it: the message that
/// took the turn may come again (a resend), another waits for the time left, another
/// identity or room is its own, and the turn runs out by itself.
async fn an_identitys_slow_mode_turn_is_one_message(live: Live) {
    let room = format!("t/slow-{:08x}", rand::random::<u32>());
    assert_eq!(turn(&live, &room, "gus", "m-1").await, Duration::ZERO);
    let left = turn(&live, &room, "gus", "m-2").await;
    assert!(
        left > Duration::ZERO && left <= HOLD_FOR,
        "another message waits: {left:?}"
    );
    assert_eq!(
        turn(&live, &room, "gus", "m-1").await,
        Duration::ZERO,
        "a resend of the message that took it"
    );
    assert_eq!(turn(&live, &room, "ada", "m-2").await, Duration::ZERO);
    assert_eq!(
        turn(&live, "t/elsewhere", "gus", "m-2").await,
        Duration::ZERO
    );
    tokio::time::sleep(left + Duration::from_millis(50)).await;
    assert_eq!(
        turn(&live, &room, "gus", "m-2").await,
        Duration::ZERO,
        "ran out: the next message takes it"
    );
    assert!(turn(&live, &room, "gus", "m-1").await > Duration::ZERO);
}

#[tokio::test]
async fn an_identitys_slow_mode_turn_is_one_message_in_memory() {
    an_identitys_slow_mode_turn_is_one_message(Live::Memory(MemoryLive::default())).await;
}

#[tokio::test]
async fn an_identitys_slow_mode_turn_is_one_message_in_redis() {
    an_identitys_slow_mode_turn_is_one_message(redis_live().await).await;
}

/// A turn given back by the message that holds it is free for the next message at
/// once; given back by another message, it stays.
async fn a_slow_mode_turn_given_back_is_free_at_once(live: Live) {
    let room = format!("t/slow-{:08x}", rand::random::<u32>());
    assert_eq!(turn(&live, &room, "gus", "m-1").await, Duration::ZERO);
    live.give_back_slow_mode_turn(&room, "gus", "m-2")
        .await
        .expect("give back");
    assert!(
        turn(&live, &room, "gus", "m-3").await > Duration::ZERO,
        "a message that does not hold the turn cannot give it back"
    );
    live.give_back_slow_mode_turn(&room, "gus", "m-1")
        .await
        .expect("give back");
    assert_eq!(
        turn(&live, &room, "gus", "m-3").await,
        Duration::ZERO,
        "given back by the message that took it: the next message takes it at once"
    );
    assert!(turn(&live, &room, "gus", "m-4").await > Duration::ZERO);
}

#[tokio::test]
async fn a_slow_mode_turn_given_back_is_free_at_once_in_memory() {
    a_slow_mode_turn_given_back_is_free_at_once(Live::Memory(MemoryLive::default())).await;
}

#[tokio::test]
async fn a_slow_mode_turn_given_back_is_free_at_once_in_redis() {
    a_slow_mode_turn_given_back_is_free_at_once(redis_live().await).await;
}
