//! The internal gRPC APIs over mutual TLS: gateway, room service, chat service and SFU
//! as separate services whose every call is over TLS, each side checking the other's
//! certificate against the deployment's CA. A client without a certificate, with one
//! another CA signed, or expecting another name, gets nothing from a service.

use std::time::Duration;

use confer_e2e::pki::TestCa;
use confer_e2e::signal::{SignalClient, client_offer};
use confer_proto::tls::{DEFAULT_NAME, GrpcTls};
use confer_room::api::RoomApi as _;
use confer_room::error::ErrorKind;
use confer_room::grpc::GrpcRoom;
use confer_sfu::core::TrackSource;
use confer_sfu::{ParticipantId, SfuApi as _, SfuError, grpc::GrpcSfu};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_and_its_chat_go_over_mutual_tls_between_the_services() -> anyhow::Result<()> {
    let ca = TestCa::new()?;
    let tls = GrpcTls::load(&ca.issue("services", DEFAULT_NAME)?)?;
    let services = confer_e2e::split::SplitServices::start_with(Some(tls)).await?;

    // Joining asks the room service, which places the room on the SFU; the gateway
    // then drives the SFU: each hop over TLS.
    let offer = client_offer(1)?;
    let mut clients = Vec::new();
    for name in ["Ada", "Bob"] {
        let mut client = SignalClient::connect(&services.signal_url).await?;
        client
            .send(&json!({"request_id": "j", "join": {"room": "tls", "name": name, "offer": {"type": "offer", "sdp": offer}}}))
            .await?;
        let joined = client.recv_kind("joined", WAIT).await?;
        let answer = joined["joined"]["answer"]["sdp"]
            .as_str()
            .unwrap_or_default();
        assert!(
            answer.contains(&format!(" {} typ host", services.sfu.media_addr().port())),
            "the answer comes from the SFU: {answer}"
        );
        clients.push(client);
    }
    assert_eq!(services.sfu.occupancy().await?.peers, 2);

    // Chat goes through the chat service's API, over TLS too.
    clients[0]
        .send(&json!({"request_id": "c", "chat": {"text": "over TLS", "client_id": "c1"}}))
        .await?;
    let entry = clients[1].recv_kind("chat", WAIT).await?;
    assert_eq!(entry["chat"]["text"], "over TLS", "{entry}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_client_the_ca_signed_for_the_name_is_answered() -> anyhow::Result<()> {
    let ca = TestCa::new()?;
    let tls = GrpcTls::load(&ca.issue("services", DEFAULT_NAME)?)?;
    let services = confer_e2e::split::SplitServices::start_with(Some(tls.clone())).await?;
    let room_addr = services.room_addr.to_string();

    // A client with the deployment's certificate is answered.
    let trusted = GrpcRoom::connect(&room_addr, Some(&tls))?;
    assert!(trusted.list_rooms("dev".into()).await.is_ok());

    // Plaintext, a certificate from another CA, a certificate for another name from
    // the same CA (the server's does not carry the name that client checks): refused.
    let stranger = TestCa::new()?;
    let other_ca = GrpcTls::load(&stranger.issue("other-ca", DEFAULT_NAME)?)?;
    let other_name = GrpcTls::load(&ca.issue("other-name", "other.internal")?)?;
    for (who, client_tls) in [
        ("plaintext", None),
        ("another CA", Some(&other_ca)),
        ("another name", Some(&other_name)),
    ] {
        let client = GrpcRoom::connect(&room_addr, client_tls)?;
        let refused = client.list_rooms("dev".into()).await.expect_err("refused");
        assert_eq!(refused.kind, ErrorKind::Unavailable, "{who}: {refused}");

        let sfu_refused = GrpcSfu::connect(services.sfu_control, client_tls)?
            .set_blocked(ParticipantId::new("nobody"), TrackSource::ScreenShare, true)
            .await;
        // Not the SFU's answer (no such peer): the call never reached it.
        assert!(
            sfu_refused.is_err() && sfu_refused != Err(SfuError::UnknownPeer),
            "{who}: {sfu_refused:?}"
        );
    }

    // The SFU's control API answers the deployment's certificate (here: no such peer).
    let sfu = GrpcSfu::connect(services.sfu_control, Some(&tls))?;
    assert_eq!(
        sfu.set_blocked(ParticipantId::new("nobody"), TrackSource::ScreenShare, true)
            .await,
        Err(SfuError::UnknownPeer)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_renewed_in_place_is_presented_without_a_restart() -> anyhow::Result<()> {
    let ca = TestCa::new()?;
    let files = ca.issue("services", DEFAULT_NAME)?;
    let tls = GrpcTls::load_rechecking_every(&files, Duration::ZERO)?;
    let services = confer_e2e::split::SplitServices::start_with(Some(tls)).await?;
    let room_addr = services.room_addr.to_string();
    // A client expecting the old name, and one expecting the renewed certificate's.
    let old_name = GrpcTls::load(&ca.issue("old-name", DEFAULT_NAME)?)?;
    let new_name = GrpcTls::load(&ca.issue("new-name", "renewed.internal")?)?;
    let answered = |tls: GrpcTls| {
        let addr = room_addr.clone();
        async move {
            GrpcRoom::connect(&addr, Some(&tls))?
                .list_rooms("dev".into())
                .await
                .map_err(anyhow::Error::from)
        }
    };
    assert!(answered(old_name.clone()).await.is_ok());
    assert!(answered(new_name.clone()).await.is_err());

    // Renewed in place, as cert-manager and the kubelet do: new files, same paths.
    ca.issue("services", "renewed.internal")?;
    assert!(
        answered(new_name).await.is_ok(),
        "the renewed certificate is presented"
    );
    assert!(
        answered(old_name).await.is_err(),
        "the old one is no longer presented"
    );

    // A renewal that cannot be used (a key that is not one) keeps the last good pair.
    std::fs::write(
        &files.key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )?;
    let renewed = GrpcTls::load(&ca.issue("renewed", "renewed.internal")?)?;
    assert!(answered(renewed).await.is_ok());
    Ok(())
}
