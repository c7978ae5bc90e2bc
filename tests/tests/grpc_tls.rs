//! The internal gRPC APIs over mutual TLS: gateway, room service, chat service and SFU
//! as separate services whose every call is over TLS, each side checking the other's
//! certificate against the deployment's CA. A client without a certificate, with one
//! another CA signed, or expecting another name, gets nothing from a service.

use std::time::Duration;

use confer_e2e::pki::TestCa;
use confer_e2e::signal::{SignalClient, client_offer};
use confer_proto::tls::{DEFAULT_NAME, GrpcTls, TlsFiles};
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

/// A CA rotated as cert-manager and trust-manager do it, on files the services keep
/// open: the bundle gains the new CA, certificates are renewed under it, the old CA
/// leaves the bundle. Each step holds from the next connection, on the servers' side
/// (which clients they accept) and on the clients' (which servers they believe).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_rotated_through_a_bundle_is_followed_without_a_restart() -> anyhow::Result<()> {
    let (old, new) = (TestCa::new()?, TestCa::new()?);
    let bundle = [old.pem(), new.pem()].concat();
    // The services: a certificate from the old CA, trusting only it.
    let services_files = trusting(old.issue("services", DEFAULT_NAME)?, &old.pem())?;
    let tls = GrpcTls::load_rechecking_every(&services_files, Duration::ZERO)?;
    let services = confer_e2e::split::SplitServices::start_with(Some(tls)).await?;
    let room_addr = services.room_addr.to_string();
    let answered = |tls: &GrpcTls| {
        let client = GrpcRoom::connect(&room_addr, Some(tls));
        async move {
            client?
                .list_rooms("dev".into())
                .await
                .map_err(anyhow::Error::from)
        }
    };

    // A client renewed early (the new CA's certificate, the bundle): the services do
    // not know its CA yet.
    let renewed = GrpcTls::load(&trusting(new.issue("renewed", DEFAULT_NAME)?, &bundle)?)?;
    assert!(
        answered(&renewed).await.is_err(),
        "the new CA is not trusted yet"
    );
    // A client of the new CA that trusts only it, its CA file rewritten later in place.
    let late_files = trusting(new.issue("late", DEFAULT_NAME)?, &new.pem())?;
    let late = GrpcTls::load_rechecking_every(&late_files, Duration::ZERO)?;

    // 1. The bundle reaches the services: the new CA's clients are answered.
    std::fs::write(&services_files.ca, &bundle)?;
    assert!(
        answered(&renewed).await.is_ok(),
        "the services trust the new CA"
    );
    // The client trusting only the new CA does not believe the services' certificate
    // from the old one, until its own CA file holds the bundle.
    assert!(answered(&late).await.is_err(), "the old CA is not its own");
    std::fs::write(&late_files.ca, &bundle)?;
    assert!(
        answered(&late).await.is_ok(),
        "the client trusts the bundle it was given"
    );

    // 2. The services are renewed under the new CA, and the old CA leaves their
    // bundle: a client still holding the old CA's certificate is refused.
    let stale = GrpcTls::load(&trusting(old.issue("stale", DEFAULT_NAME)?, &bundle)?)?;
    assert!(answered(&stale).await.is_ok());
    let reissued = new.issue("services-new", DEFAULT_NAME)?;
    std::fs::copy(&reissued.key, &services_files.key)?;
    std::fs::copy(&reissued.cert, &services_files.cert)?;
    std::fs::write(&services_files.ca, new.pem())?;
    assert!(
        answered(&stale).await.is_err(),
        "the old CA is no longer trusted"
    );
    assert!(answered(&renewed).await.is_ok());
    assert!(answered(&late).await.is_ok());

    // 3. A CA file that cannot be used keeps the last good roots.
    std::fs::write(&services_files.ca, "no certificate here")?;
    assert!(answered(&renewed).await.is_ok());
    assert!(answered(&stale).await.is_err());
    Ok(())
}

/// `files` with a CA file of their own, holding `pem`.
fn trusting(files: TlsFiles, pem: &str) -> anyhow::Result<TlsFiles> {
    let ca = files.cert.with_extension("ca.crt");
    std::fs::write(&ca, pem)?;
    Ok(TlsFiles { ca, ..files })
}
