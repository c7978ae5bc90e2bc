//! Room security through the real signalling path: tokens per tenant, roles, the
//! waiting room, host controls, passwords, locks, raised hands.

use std::time::Duration;

use confer_auth::{Claims, TokenKey, VideoGrant};
use confer_e2e::joins::{
    WAIT, connect, error_of, guest_token, host_control, host_token, join_host, now, reply,
    send_join, sign, you_id,
};
use confer_e2e::server::{Options, TOKEN_SECRET, TestServer};
use confer_e2e::signal::{SignalClient, client_offer};
use confer_room::RoomApi as _;
use confer_room::api::CreateRoom;
use confer_room::model::RoomSettings;
use serde_json::{Value, json};

#[tokio::test]
async fn tokens_are_checked_against_their_tenant_and_grants() -> anyhow::Result<()> {
    let server = TestServer::start(true).await?;
    let acme = server.room.store().create_tenant("Acme").await?;
    let mut client = connect(&server).await?;
    let cases = [
        // A dev token presented for tenant acme.
        (
            json!({"room": "r", "tenant": acme.tenant, "token": guest_token("r", "ada")}),
            "token_wrong_tenant",
        ),
        // Acme's key id, signed with dev's secret.
        (
            json!({"room": "r", "token": sign(&acme.api_key, TOKEN_SECRET, "ada", VideoGrant::join("r"))}),
            "token_invalid",
        ),
        // An issuer nobody knows.
        (
            json!({"room": "r", "token": sign("AKnobody", "x", "ada", VideoGrant::join("r"))}),
            "token_invalid",
        ),
        // No roomJoin grant.
        (
            json!({"room": "r", "token": sign("dev", TOKEN_SECRET, "ada", VideoGrant { room_join: false, ..VideoGrant::join("r") })}),
            "token_missing_grant",
        ),
        // Unknown publish source.
        (
            json!({"room": "r", "token": sign("dev", TOKEN_SECRET, "ada", VideoGrant { can_publish_sources: vec!["hologram".into()], ..VideoGrant::join("r") })}),
            "token_malformed",
        ),
    ];
    for (join, expected) in cases {
        send_join(&mut client, join.clone()).await?;
        assert_eq!(
            error_of(&mut client, "join").await?,
            expected,
            "join {join}"
        );
    }
    // Acme's own token, for acme's tenant, works.
    send_join(&mut client, json!({"room": "r", "name": "Ada", "tenant": acme.tenant,
        "token": sign(&acme.api_key, &acme.api_secret, "ada", VideoGrant { room_admin: true, ..VideoGrant::join("r") })})).await?;
    let joined = reply(&mut client, "join").await?;
    assert_eq!(joined["joined"]["you"]["role"], "host", "{joined}");
    Ok(())
}

#[tokio::test]
async fn guests_wait_until_a_host_admits_and_only_hosts_control() -> anyhow::Result<()> {
    let server = TestServer::start(true).await?;
    let (mut host, host_id) = join_host(&server, "standup").await?;

    let mut guest = connect(&server).await?;
    let offer = client_offer(2)?;
    send_join(&mut guest, json!({"room": "standup", "token": guest_token("standup", "gus"), "offer": {"type": "offer", "sdp": offer}})).await?;
    let waiting = reply(&mut guest, "join").await?;
    assert!(waiting.get("waiting").is_some(), "{waiting}");
    let guest_id = you_id(&waiting, "waiting");
    assert_eq!(
        server.sfu.occupancy().await?.peers,
        1,
        "no peer while waiting"
    );

    let knock = host.recv_kind("knock", WAIT).await?;
    assert_eq!(knock["knock"]["participant"]["id"], guest_id.as_str());

    // A waiting guest controls nothing.
    assert_eq!(
        host_control(&mut guest, "remove", &host_id, "").await?["error"]["code"],
        "not_host"
    );
    let admitted = host_control(&mut host, "admit", &guest_id, "").await?;
    assert!(admitted.get("ack").is_some(), "{admitted}");
    let joined = reply(&mut guest, "join").await?;
    assert_eq!(joined["joined"]["you"]["role"], "participant", "{joined}");
    assert!(
        joined["joined"]["answer"]["sdp"]
            .as_str()
            .unwrap_or_default()
            .contains("a=ice-lite")
    );
    assert_eq!(joined["joined"]["participants"][0]["id"], host_id.as_str());
    let seen = host.recv_kind("participant_joined", WAIT).await?;
    assert_eq!(
        seen["participant_joined"]["participant"]["id"],
        guest_id.as_str()
    );

    // A participant may not mute or remove; the host may.
    assert_eq!(
        host_control(&mut guest, "mute", &host_id, "audio").await?["error"]["code"],
        "not_host"
    );
    assert_eq!(
        host_control(&mut guest, "remove", &host_id, "").await?["error"]["code"],
        "not_host"
    );
    assert!(
        host_control(&mut host, "mute", &guest_id, "audio")
            .await?
            .get("ack")
            .is_some()
    );
    let updated = guest.recv_kind("participant_updated", WAIT).await?;
    assert_eq!(
        updated["participant_updated"]["participant"]["audio_blocked"],
        true
    );
    let tenant_view = server
        .room
        .get_participant("dev".into(), "standup".into(), guest_id.clone())
        .await?;
    assert!(tenant_view.audio_blocked && tenant_view.audio_muted);
    let audit = server.room.store().audit_log("dev", 10).await?;
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["mute_track", "admit"],
        "host actions are audited, newest first"
    );
    assert_eq!(audit[0].actor, "hana");

    assert!(
        host_control(&mut host, "remove", &guest_id, "")
            .await?
            .get("ack")
            .is_some()
    );
    let removed = guest.recv_kind("error", WAIT).await?;
    assert_eq!(removed["error"]["code"], "removed");
    let left = host.recv_kind("participant_left", WAIT).await?;
    assert_eq!(
        left["participant_left"]["participant_id"],
        guest_id.as_str()
    );
    let deadline = std::time::Instant::now() + WAIT;
    while server.sfu.occupancy().await?.peers != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the removed guest's peer is gone"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test]
async fn a_denied_guest_is_told_and_a_locked_room_admits_only_hosts() -> anyhow::Result<()> {
    let server = TestServer::start(true).await?;
    let (mut host, _) = join_host(&server, "board").await?;
    let mut guest = connect(&server).await?;
    send_join(
        &mut guest,
        json!({"room": "board", "token": guest_token("board", "gus")}),
    )
    .await?;
    let waiting = reply(&mut guest, "join").await?;
    let guest_id = you_id(&waiting, "waiting");
    host.recv_kind("knock", WAIT).await?;
    host_control(&mut host, "deny", &guest_id, "").await?;
    assert_eq!(error_of(&mut guest, "join").await?, "admission_denied");

    assert!(
        host_control(&mut host, "lock", "", "")
            .await?
            .get("ack")
            .is_some()
    );
    let mut late = connect(&server).await?;
    send_join(
        &mut late,
        json!({"room": "board", "token": guest_token("board", "lea")}),
    )
    .await?;
    assert_eq!(error_of(&mut late, "join").await?, "room_locked");
    // Another host still gets in.
    send_join(
        &mut late,
        json!({"room": "board", "token": host_token("board", "hugo")}),
    )
    .await?;
    assert!(reply(&mut late, "join").await?.get("joined").is_some());
    Ok(())
}

#[tokio::test]
async fn passwords_are_required_checked_and_rate_limited() -> anyhow::Result<()> {
    let server = TestServer::start(true).await?;
    server
        .room
        .create_room(
            "dev".into(),
            CreateRoom {
                name: "vault".into(),
                settings: RoomSettings {
                    waiting_room: false,
                    ..RoomSettings::default()
                },
                password: Some("open sesame".into()),
            },
        )
        .await?;
    let mut guest = connect(&server).await?;
    let join = |password: &str| json!({"room": "vault", "password": password, "token": guest_token("vault", "gus")});
    send_join(&mut guest, join("")).await?;
    assert_eq!(error_of(&mut guest, "join").await?, "password_required");
    send_join(&mut guest, join("open says me")).await?;
    assert_eq!(error_of(&mut guest, "join").await?, "password_invalid");
    send_join(&mut guest, join("open sesame")).await?;
    assert!(reply(&mut guest, "join").await?.get("joined").is_some());

    // Someone else guessing (Gus's own token would take his place: one place per
    // identity).
    let mut guesser = connect(&server).await?;
    let guess = |password: &str| json!({"room": "vault", "password": password, "token": guest_token("vault", "mallory")});
    let mut codes = Vec::new();
    for attempt in 0..8 {
        send_join(&mut guesser, guess(&format!("guess {attempt}"))).await?;
        codes.push(error_of(&mut guesser, "join").await?);
    }
    assert!(codes.contains(&"password_invalid".to_owned()));
    assert_eq!(
        codes.last().map(String::as_str),
        Some("rate_limited"),
        "{codes:?}"
    );
    Ok(())
}

#[tokio::test]
async fn viewers_join_without_publishing_rights() -> anyhow::Result<()> {
    let server = TestServer::start(true).await?;
    let (mut host, _) = join_host(&server, "webinar").await?;
    let mut viewer = connect(&server).await?;
    let token = sign(
        "dev",
        TOKEN_SECRET,
        "vic",
        VideoGrant {
            can_publish: false,
            ..VideoGrant::join("webinar")
        },
    );
    send_join(&mut viewer, json!({"room": "webinar", "token": token, "offer": {"type": "offer", "sdp": client_offer(2)?}})).await?;
    let waiting = reply(&mut viewer, "join").await?;
    let id = you_id(&waiting, "waiting");
    assert_eq!(waiting["waiting"]["you"]["role"], "viewer");
    assert_eq!(waiting["waiting"]["you"]["can_publish"], false);
    host.recv_kind("knock", WAIT).await?;
    host_control(&mut host, "admit", &id, "").await?;
    let joined = reply(&mut viewer, "join").await?;
    assert_eq!(joined["joined"]["you"]["role"], "viewer");
    Ok(())
}

#[tokio::test]
async fn host_controls_stop_when_the_hosts_token_expires() -> anyhow::Result<()> {
    let server = TestServer::start(true).await?;
    // Accepted at join within the clock-skew leeway, expired two seconds later.
    let expiring = TokenKey::new("dev", TOKEN_SECRET.as_bytes()).sign(&Claims {
        iss: "dev".into(),
        sub: "hana".into(),
        name: "Hana".into(),
        nbf: 0,
        exp: now() - confer_auth::LEEWAY_SECS + 1,
        kind: Default::default(),
        video: VideoGrant {
            room_admin: true,
            ..VideoGrant::join("late")
        },
    });
    let mut host = connect(&server).await?;
    send_join(&mut host, json!({"room": "late", "token": expiring})).await?;
    assert!(reply(&mut host, "join").await?.get("joined").is_some());
    assert!(
        host_control(&mut host, "lock", "", "")
            .await?
            .get("ack")
            .is_some()
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let refused = host_control(&mut host, "unlock", "", "").await?;
    assert_eq!(refused["error"]["code"], "token_expired", "{refused}");
    Ok(())
}

#[tokio::test]
async fn name_changes_wait_for_a_host_when_the_room_says_so() -> anyhow::Result<()> {
    let server = TestServer::start(true).await?;
    server
        .room
        .create_room(
            "dev".into(),
            CreateRoom {
                name: "formal".into(),
                settings: RoomSettings {
                    waiting_room: false,
                    name_changes_need_approval: true,
                    ..RoomSettings::default()
                },
                password: None,
            },
        )
        .await?;
    let (mut host, _) = join_host(&server, "formal").await?;
    let mut guest = connect(&server).await?;
    send_join(
        &mut guest,
        json!({"room": "formal", "token": guest_token("formal", "gus")}),
    )
    .await?;
    let joined = reply(&mut guest, "join").await?;
    let id = you_id(&joined, "joined");
    host.recv_kind("participant_joined", WAIT).await?;

    guest
        .send(&json!({"request_id": "n", "set_name": {"name": "Sir Gus"}}))
        .await?;
    assert!(reply(&mut guest, "n").await?.get("ack").is_some());
    let pending = host.recv_kind("participant_updated", WAIT).await?;
    assert_eq!(
        pending["participant_updated"]["participant"]["pending_name"],
        "Sir Gus"
    );
    assert_eq!(pending["participant_updated"]["participant"]["name"], "gus");

    assert!(
        host_control(&mut host, "approve_name", &id, "")
            .await?
            .get("ack")
            .is_some()
    );
    let renamed = guest.recv_kind("participant_updated", WAIT).await?;
    assert_eq!(
        renamed["participant_updated"]["participant"]["name"],
        "Sir Gus"
    );
    assert_eq!(
        renamed["participant_updated"]["participant"]["pending_name"],
        ""
    );
    Ok(())
}

/// Raises or lowers `client`'s hand: the answer.
async fn raise_hand(client: &mut SignalClient, raised: bool) -> anyhow::Result<Value> {
    client
        .send(&json!({"request_id": "hand", "raise_hand": {"raised": raised}}))
        .await?;
    reply(client, "hand").await
}

/// The next `participant_updated` of `participant` at `client`: its `hand_raised_at`
/// (0 while the hand is down).
async fn hand_of(client: &mut SignalClient, participant: &str) -> anyhow::Result<u64> {
    loop {
        let update = client.recv_kind("participant_updated", WAIT).await?;
        let p = &update["participant_updated"]["participant"];
        if p["id"] == participant {
            return Ok(p["hand_raised_at"].as_u64().unwrap_or_default());
        }
    }
}

/// Hands go up in line (a hand raised again keeps its place), anyone may lower their
/// own, only a host lowers someone else's (or everyone's at once), and a malformed
/// request is refused.
#[tokio::test]
async fn hands_go_up_in_line_and_hosts_lower_them() -> anyhow::Result<()> {
    let server = TestServer::start(true).await?;
    let (mut host, mut gus) = host_and_guest(&server, "townhall", true).await?;
    let gus_id = {
        let update = host.recv_kind("participant_joined", WAIT).await?;
        update["participant_joined"]["participant"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let mut ida = connect(&server).await?;
    send_join(
        &mut ida,
        json!({"room": "townhall", "token": guest_token("townhall", "ida")}),
    )
    .await?;
    let ida_id = you_id(&reply(&mut ida, "join").await?, "joined");

    let raised = raise_hand(&mut gus, true).await?;
    assert!(raised.get("ack").is_some(), "{raised}");
    let gus_at = hand_of(&mut host, &gus_id).await?;
    assert!(gus_at > 0, "Gus's hand is up at the host's");
    assert_eq!(hand_of(&mut ida, &gus_id).await?, gus_at, "and at Ida's");
    assert!(raise_hand(&mut ida, true).await?.get("ack").is_some());
    let ida_at = hand_of(&mut host, &ida_id).await?;
    assert!(ida_at >= gus_at, "Ida after Gus: {ida_at} < {gus_at}");
    // Raised again: the same place, and nothing for the others to hear (the host's
    // next update of Gus is his hand going down).
    assert!(raise_hand(&mut gus, true).await?.get("ack").is_some());

    // Only a host lowers someone else's hand.
    let refused = host_control(&mut ida, "lower_hand", &gus_id, "").await?;
    assert_eq!(refused["error"]["code"], "not_host", "{refused}");
    let needs = host_control(&mut host, "lower_hand", "", "").await?;
    assert_eq!(needs["error"]["code"], "invalid_message", "{needs}");
    assert!(
        host_control(&mut host, "lower_hand", &gus_id, "")
            .await?
            .get("ack")
            .is_some()
    );
    assert_eq!(
        hand_of(&mut gus, &gus_id).await?,
        0,
        "Gus hears his hand went down"
    );
    assert_eq!(hand_of(&mut host, &gus_id).await?, 0);
    // Ida lowers her own.
    assert!(raise_hand(&mut ida, false).await?.get("ack").is_some());
    assert_eq!(hand_of(&mut host, &ida_id).await?, 0);

    // Both up again; only a host lowers them all, at once.
    assert!(raise_hand(&mut gus, true).await?.get("ack").is_some());
    assert!(hand_of(&mut host, &gus_id).await? > 0);
    assert!(raise_hand(&mut ida, true).await?.get("ack").is_some());
    assert!(hand_of(&mut host, &ida_id).await? > 0);
    let refused = host_control(&mut gus, "lower_all_hands", "", "").await?;
    assert_eq!(refused["error"]["code"], "not_host", "{refused}");
    assert!(
        host_control(&mut host, "lower_all_hands", "", "")
            .await?
            .get("ack")
            .is_some()
    );
    let mut lowered = std::collections::HashSet::new();
    while lowered.len() < 2 {
        let update = host.recv_kind("participant_updated", WAIT).await?;
        let p = &update["participant_updated"]["participant"];
        assert!(
            p["hand_raised_at"].as_u64().is_none_or(|at| at == 0),
            "{update}"
        );
        lowered.insert(p["id"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(
        lowered,
        std::collections::HashSet::from([gus_id.clone(), ida_id.clone()])
    );
    // Gus hears his went down (after his own raise, if he has not heard that yet).
    while hand_of(&mut gus, &gus_id).await? != 0 {}
    // Recording is a host's to start too, and only where recordings are kept.
    let refused = host_control(&mut gus, "start_recording", "", "").await?;
    assert_eq!(refused["error"]["code"], "not_host", "{refused}");
    let nowhere = host_control(&mut host, "start_recording", "", "").await?;
    assert_eq!(
        nowhere["error"]["code"], "recording_unavailable",
        "{nowhere}"
    );

    ida.send(&json!({"request_id": "bad", "raise_hand": {"raised": true, "hand": "left"}}))
        .await?;
    let bad = reply(&mut ida, "bad").await?;
    assert_eq!(bad["error"]["code"], "invalid_message", "{bad}");
    Ok(())
}

/// A host mutes everyone at once: every participant but the hosts is muted (and told,
/// and may unmute again as the room allows); only a host may, and it names a kind.
#[tokio::test]
async fn a_host_mutes_everyone_but_the_hosts() -> anyhow::Result<()> {
    let server = TestServer::start(true).await?;
    let (mut host, mut gus) = host_and_guest(&server, "assembly", true).await?;
    let mut ida = connect(&server).await?;
    send_join(
        &mut ida,
        json!({"room": "assembly", "token": guest_token("assembly", "ida")}),
    )
    .await?;
    reply(&mut ida, "join").await?;
    let mut hal = connect(&server).await?;
    send_join(
        &mut hal,
        json!({"room": "assembly", "token": host_token("assembly", "hal")}),
    )
    .await?;
    reply(&mut hal, "join").await?;

    let refused = host_control(&mut ida, "mute_all", "", "audio").await?;
    assert_eq!(refused["error"]["code"], "not_host", "{refused}");
    let kindless = host_control(&mut host, "mute_all", "", "").await?;
    assert_eq!(kindless["error"]["code"], "invalid_message", "{kindless}");
    let reads_before = server.room.member_list_reads();
    let done = host_control(&mut host, "mute_all", "", "audio").await?;
    assert!(done.get("ack").is_some(), "{done}");
    assert_eq!(
        server.room.member_list_reads() - reads_before,
        1,
        "the room told of everyone muted with one read of its members, not one each"
    );

    let blocked: Vec<(String, bool)> = server
        .room
        .list_participants("dev".into(), "assembly".into())
        .await?
        .into_iter()
        .map(|p| (p.identity, p.audio_blocked))
        .collect();
    let mut blocked = blocked;
    blocked.sort();
    assert_eq!(
        blocked,
        [
            ("gus".to_owned(), true),
            ("hal".to_owned(), false),
            ("hana".to_owned(), false),
            ("ida".to_owned(), true)
        ]
    );
    // Each muted participant hears it of itself, and may unmute (the room allows it).
    assert!(
        audio_blocked_of(&mut gus, "gus").await?,
        "Gus told he is muted"
    );
    gus.send(&json!({"request_id": "m", "mute": {"kind": "audio", "muted": false}}))
        .await?;
    assert!(
        !audio_blocked_of(&mut gus, "gus").await?,
        "Gus unmuted himself"
    );
    Ok(())
}

/// The next `participant_updated` of the participant `identity` at `client`: whether
/// its audio is blocked by a host.
async fn audio_blocked_of(client: &mut SignalClient, identity: &str) -> anyhow::Result<bool> {
    loop {
        let update = client.recv_kind("participant_updated", WAIT).await?;
        let p = &update["participant_updated"]["participant"];
        if p["identity"] == identity {
            return Ok(p["audio_blocked"] == true);
        }
    }
}

/// The next `chat` entry whose text is `text`, skipping other pushes.
async fn chat_entry(client: &mut SignalClient, text: &str) -> anyhow::Result<Value> {
    loop {
        let entry = client.recv_kind("chat", WAIT).await?;
        if entry["chat"]["text"] == text {
            return Ok(entry);
        }
    }
}

/// A chat message as a client sends it.
fn chat(request_id: &str, text: &str) -> Value {
    json!({"request_id": request_id, "chat": {"text": text}})
}

/// Creates room `name` without a waiting room, its chat open to all or not.
async fn chat_room(server: &TestServer, name: &str, allow_chat: bool) -> anyhow::Result<()> {
    server
        .room
        .create_room(
            "dev".into(),
            CreateRoom {
                name: name.into(),
                settings: RoomSettings {
                    waiting_room: false,
                    allow_chat,
                    ..RoomSettings::default()
                },
                password: None,
            },
        )
        .await?;
    Ok(())
}

/// A host and then a guest in a new room `name` whose chat is open to all or not, as
/// the guest's join says.
async fn host_and_guest(
    server: &TestServer,
    name: &str,
    allow_chat: bool,
) -> anyhow::Result<(SignalClient, SignalClient)> {
    chat_room(server, name, allow_chat).await?;
    let (host, _) = join_host(server, name).await?;
    let mut guest = connect(server).await?;
    send_join(
        &mut guest,
        json!({"room": name, "token": guest_token(name, "gus")}),
    )
    .await?;
    let joined = reply(&mut guest, "join").await?;
    assert_eq!(
        joined["joined"]["room_state"]["allow_chat"], allow_chat,
        "{joined}"
    );
    Ok((host, guest))
}

#[tokio::test]
async fn hosts_can_keep_the_chat_to_hosts() -> anyhow::Result<()> {
    let server = TestServer::start(true).await?;
    chat_room(&server, "quiet", false).await?;
    let (mut host, mut guest) = host_and_guest(&server, "townhall", true).await?;
    guest.send(&chat("c1", "before")).await?;
    let before = reply(&mut guest, "c1").await?["chat_sent"]["seq"].clone();
    assert!(before.as_u64().is_some_and(|seq| seq > 0), "{before}");

    // Chat for hosts only: everyone is told; a participant may read and delete their
    // own messages, not post, edit or share files.
    let denied = host_control(&mut host, "deny_chat", "", "").await?;
    assert!(denied.get("ack").is_some(), "{denied}");
    let state = guest.recv_kind("room_state", WAIT).await?;
    assert_eq!(state["room_state"]["allow_chat"], false, "{state}");
    guest.send(&chat("c2", "during")).await?;
    assert_eq!(error_of(&mut guest, "c2").await?, "chat_restricted");
    guest
        .send(&json!({"request_id": "e", "chat_edit": {"seq": before, "text": "edited"}}))
        .await?;
    assert_eq!(error_of(&mut guest, "e").await?, "chat_restricted");
    guest
        .send(&json!({"request_id": "f", "file_upload": {"name": "a.txt", "content_type": "text/plain", "size": 3}}))
        .await?;
    assert_eq!(error_of(&mut guest, "f").await?, "chat_restricted");
    host.send(&chat("h1", "hosts only")).await?;
    assert!(reply(&mut host, "h1").await?.get("chat_sent").is_some());
    chat_entry(&mut guest, "hosts only").await?;
    guest
        .send(&json!({"request_id": "d", "chat_delete": {"seq": before}}))
        .await?;
    let deleted = reply(&mut guest, "d").await?;
    assert!(deleted.get("chat_sent").is_some(), "{deleted}");

    // A participant cannot turn it back on; a host can.
    let refused = host_control(&mut guest, "allow_chat", "", "").await?;
    assert_eq!(refused["error"]["code"], "not_host", "{refused}");
    let allowed = host_control(&mut host, "allow_chat", "", "").await?;
    assert!(allowed.get("ack").is_some(), "{allowed}");
    let state = guest.recv_kind("room_state", WAIT).await?;
    assert_eq!(state["room_state"]["allow_chat"], true, "{state}");
    guest.send(&chat("c3", "after")).await?;
    assert!(reply(&mut guest, "c3").await?.get("chat_sent").is_some());
    chat_entry(&mut host, "after").await?;

    // A room created with chat for hosts only says so at the join, and holds to it.
    let mut quiet = connect(&server).await?;
    send_join(
        &mut quiet,
        json!({"room": "quiet", "token": guest_token("quiet", "quin")}),
    )
    .await?;
    let joined = reply(&mut quiet, "join").await?;
    assert_eq!(
        joined["joined"]["room_state"]["allow_chat"], false,
        "{joined}"
    );
    quiet.send(&chat("q", "hello?")).await?;
    assert_eq!(error_of(&mut quiet, "q").await?, "chat_restricted");
    Ok(())
}

/// A guest's session learns of a host's change from the room service's push, which
/// may come after the host's answer (here always, by half a second). A post the guest
/// makes in between is taken: the session's view says closed, and it asks the room
/// service, which has the last word.
#[tokio::test]
async fn a_post_right_after_a_host_opens_the_chat_is_taken() -> anyhow::Result<()> {
    let server = TestServer::start_with(Options {
        require_token: true,
        room_pushes_late_by: Some(Duration::from_millis(500)),
        ..Options::default()
    })
    .await?;
    let (mut host, mut guest) = host_and_guest(&server, "seminar", false).await?;
    guest.send(&chat("c1", "may I?")).await?;
    assert_eq!(error_of(&mut guest, "c1").await?, "chat_restricted");

    let allowed = host_control(&mut host, "allow_chat", "", "").await?;
    assert!(allowed.get("ack").is_some(), "{allowed}");
    guest.send(&chat("c2", "thank you")).await?;
    // The answer comes before the guest hears that the chat is open.
    let answer = loop {
        let message = guest.recv(WAIT).await?;
        assert!(message.get("room_state").is_none(), "told first: {message}");
        if message["request_id"] == "c2" {
            break message;
        }
    };
    assert!(answer.get("chat_sent").is_some(), "{answer}");
    chat_entry(&mut host, "thank you").await?;
    let state = guest.recv_kind("room_state", WAIT).await?;
    assert_eq!(state["room_state"]["allow_chat"], true, "{state}");
    Ok(())
}

/// Slow mode: a host spaces the participants' messages; the room is told, a second
/// message too soon is refused with when to try again (a resend of the last one is
/// not a new message), hosts are never held, and off is off.
#[tokio::test]
async fn slow_mode_spaces_each_participants_messages() -> anyhow::Result<()> {
    let server = TestServer::start(true).await?;
    let (mut host, mut guest) = host_and_guest(&server, "webinar", true).await?;
    guest
        .send(&json!({"request_id": "s", "host": {"action": "slow_mode", "seconds": 2}}))
        .await?;
    assert_eq!(error_of(&mut guest, "s").await?, "not_host");
    host.send(&json!({"request_id": "s", "host": {"action": "slow_mode", "seconds": 7200}}))
        .await?;
    assert_eq!(
        error_of(&mut host, "s").await?,
        "invalid_request",
        "an hour at most"
    );
    host.send(&json!({"request_id": "s", "host": {"action": "slow_mode", "seconds": 2}}))
        .await?;
    assert!(reply(&mut host, "s").await?.get("ack").is_some());
    let state = guest.recv_kind("room_state", WAIT).await?;
    assert_eq!(state["room_state"]["chat_slow_mode_secs"], 2, "{state}");

    let first = json!({"request_id": "g1", "chat": {"text": "first", "client_id": "m-1"}});
    guest.send(&first).await?;
    assert!(reply(&mut guest, "g1").await?.get("chat_sent").is_some());
    guest.send(&chat("g2", "too soon")).await?;
    // (without a client id: no id is the same message as another without one)
    let soon = reply(&mut guest, "g2").await?;
    assert_eq!(soon["error"]["code"], "chat_slow_mode", "{soon}");
    let wait = soon["error"]["retry_after_ms"].as_u64().unwrap_or_default();
    assert!((1..=2000).contains(&wait), "{soon}");
    // The first again (its answer was lost, say): the same message, not a new one.
    guest
        .send(&json!({"request_id": "g1b", "chat": {"text": "first", "client_id": "m-1"}}))
        .await?;
    let again = reply(&mut guest, "g1b").await?;
    assert!(again.get("chat_sent").is_some(), "{again}");
    guest
        .send(&json!({"request_id": "f", "file_upload": {"name": "a.txt", "content_type": "text/plain", "size": 3}}))
        .await?;
    assert_eq!(
        error_of(&mut guest, "f").await?,
        "chat_slow_mode",
        "a file is a message too"
    );
    for n in 0..3 {
        let id = format!("h{n}");
        host.send(&chat(&id, "hosts are not held")).await?;
        assert!(reply(&mut host, &id).await?.get("chat_sent").is_some());
    }
    tokio::time::sleep(Duration::from_millis(wait + 50)).await;
    guest.send(&chat("g3", "in time")).await?;
    let in_time = reply(&mut guest, "g3").await?;
    let in_time_seq = in_time["chat_sent"]["seq"].as_u64().unwrap_or_default();
    assert!(in_time_seq > 0, "{in_time}");
    // A reload (the same identity on a new connection, in its place) posts no
    // sooner: the turn is the identity's, not the connection's.
    let mut guest = connect(&server).await?;
    send_join(
        &mut guest,
        json!({"room": "webinar", "token": guest_token("webinar", "gus")}),
    )
    .await?;
    assert!(reply(&mut guest, "join").await?.get("joined").is_some());
    guest.send(&chat("g4", "after a reload")).await?;
    let reloaded = reply(&mut guest, "g4").await?;
    assert_eq!(reloaded["error"]["code"], "chat_slow_mode", "{reloaded}");
    let reloaded_wait = reloaded["error"]["retry_after_ms"]
        .as_u64()
        .unwrap_or_default();
    assert!((1..=2000).contains(&reloaded_wait), "{reloaded}");

    // Only a message posted spends the turn. Refused for what it is (too long; a file
    // over the limit), a message never takes it ...
    tokio::time::sleep(Duration::from_millis(reloaded_wait + 50)).await;
    guest
        .send(&json!({"request_id": "long", "chat": {"text": "x".repeat(4001), "client_id": "m-long"}}))
        .await?;
    assert_eq!(error_of(&mut guest, "long").await?, "message_too_long");
    guest
        .send(&json!({"request_id": "big", "file_upload": {"name": "a.pdf", "content_type": "application/pdf", "size": 1u64 << 40}}))
        .await?;
    assert_eq!(error_of(&mut guest, "big").await?, "file_too_large");
    // ... and one refused further on (here by the chat rate, spent on quick edits)
    // gives back the turn it took: the next message posts as soon as the rate allows,
    // not a slow-mode period later.
    for n in 0.. {
        anyhow::ensure!(n < 25, "the chat rate never held the edits");
        let id = format!("e{n}");
        guest
            .send(&json!({"request_id": id, "chat_edit": {"seq": in_time_seq, "text": format!("in time, take {n}")}}))
            .await?;
        let edited = reply(&mut guest, &id).await?;
        if edited["error"]["code"] == "chat_rate_limited" {
            break;
        }
        assert!(edited.get("chat_sent").is_some(), "{edited}");
    }
    guest
        .send(&json!({"request_id": "g5", "chat": {"text": "over the rate", "client_id": "m-5"}}))
        .await?;
    let limited = reply(&mut guest, "g5").await?;
    assert_eq!(limited["error"]["code"], "chat_rate_limited", "{limited}");
    let rate_wait = limited["error"]["retry_after_ms"]
        .as_u64()
        .unwrap_or_default();
    assert!(rate_wait < 1000, "{limited}");
    tokio::time::sleep(Duration::from_millis(rate_wait + 50)).await;
    guest
        .send(&json!({"request_id": "g6", "chat": {"text": "my turn still", "client_id": "m-6"}}))
        .await?;
    let posted = reply(&mut guest, "g6").await?;
    assert!(
        posted.get("chat_sent").is_some(),
        "the rate-limited message gave its turn back: {posted}"
    );
    guest.send(&chat("g7", "right after")).await?;
    assert_eq!(
        error_of(&mut guest, "g7").await?,
        "chat_slow_mode",
        "the message posted took the turn"
    );
    // The chat rate the edits spent comes back (two posts' worth, at 5 a second).
    tokio::time::sleep(Duration::from_millis(450)).await;

    host.send(&json!({"request_id": "s", "host": {"action": "slow_mode", "seconds": 0}}))
        .await?;
    assert!(reply(&mut host, "s").await?.get("ack").is_some());
    loop {
        let state = guest.recv_kind("room_state", WAIT).await?;
        if state["room_state"]["chat_slow_mode_secs"]
            .as_u64()
            .unwrap_or(0)
            == 0
        {
            break;
        }
    }
    for n in 0..2 {
        let id = format!("o{n}");
        guest.send(&chat(&id, "off is off")).await?;
        assert!(reply(&mut guest, &id).await?.get("chat_sent").is_some());
    }
    Ok(())
}
