//! `/metrics` after a scripted session: the counters say exactly what happened (two
//! joins, one refused with its reason, the join-time histogram, the SFU's peers), in
//! the Prometheus text format that `promtool check metrics` accepts and, when the
//! scraper asks for it, in OpenMetrics that the reference parser
//! (`prometheus_client.openmetrics.parser`) accepts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use confer_auth::{Claims, TokenKey, VideoGrant};
use confer_e2e::checkers::{OPENMETRICS_PARSE, check};
use confer_e2e::server::{TestServer, metric};
use confer_e2e::signal::{SignalClient, client_offer};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

fn forged_token() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    TokenKey::new("dev", b"not the secret").sign(&Claims {
        iss: "dev".into(),
        sub: "mallory".into(),
        name: "Mallory".into(),
        nbf: now,
        exp: now + 600,
        kind: Default::default(),
        video: VideoGrant::join("standup"),
    })
}

async fn join(server: &TestServer, name: &str, token: &str) -> anyhow::Result<SignalClient> {
    let mut client = SignalClient::connect(&server.signal_url()).await?;
    let offer = client_offer(2)?;
    client
        .send(&json!({"request_id": "j", "join": {"room": "standup", "name": name, "token": token, "offer": {"type": "offer", "sdp": offer}}}))
        .await?;
    Ok(client)
}

#[tokio::test]
async fn a_scripted_session_shows_in_metrics_in_both_formats() -> anyhow::Result<()> {
    let server = TestServer::start(false).await?;
    let mut ada = join(&server, "Ada", "").await?;
    ada.recv_kind("joined", WAIT).await?;
    let mut grace = join(&server, "Grace", "").await?;
    grace.recv_kind("joined", WAIT).await?;
    let mut mallory = join(&server, "Mallory", &forged_token()).await?;
    let refused = mallory.recv_kind("error", WAIT).await?;
    assert_eq!(refused["error"]["code"], "token_invalid");

    let text = server.metrics().await?;
    assert_eq!(
        metric(&text, "confer_gateway_joins_total"),
        Some(2),
        "{text}"
    );
    assert!(
        text.contains("confer_gateway_join_failures_total{reason=\"token_invalid\"} 1\n"),
        "{text}"
    );
    assert_eq!(
        metric(&text, "confer_gateway_join_duration_seconds_count"),
        Some(2),
        "{text}"
    );
    assert!(
        text.contains("confer_gateway_join_duration_seconds_bucket{le=\"+Inf\"} 2\n"),
        "{text}"
    );
    assert_eq!(
        metric(&text, "confer_gateway_participants"),
        Some(2),
        "{text}"
    );
    assert_eq!(metric(&text, "confer_sfu_peers"), Some(2), "{text}");
    assert_eq!(
        metric(&text, "confer_sfu_peers_created_total"),
        Some(2),
        "{text}"
    );
    let promtool = std::env::var("CONFER_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    check(&promtool, &["check", "metrics"], &text)?;

    let response = confer_http::client()?
        .get(server.url("/metrics"))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await?;
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let open = response.text().await?;
    assert!(open.ends_with("# EOF\n"), "{open}");
    let families = check("python3", &["-c", OPENMETRICS_PARSE], &open)?;
    for family in [
        "confer_gateway_joins:counter",
        "confer_gateway_join_failures:counter",
        "confer_gateway_join_duration_seconds:histogram",
        "confer_sfu_rtp_forwarded:counter",
        "confer_sfu_peers:gauge",
    ] {
        assert!(families.contains(family), "{family} not in {families}");
    }
    Ok(())
}
