//! Video survives a lossy network: 5 % of RTP is dropped on the way into the SFU (from
//! the publisher) and 5 % on the way out (to the subscriber). The SFU asks the publisher
//! to resend what it lost and answers the subscriber's NACKs from its packet cache; the
//! subscriber's Chromium keeps decoding without long freezes. The subscriber's resends
//! arrive in their own RTX stream.

use std::time::Duration;

use confer_e2e::browser::{Browser, Driver};
use confer_e2e::room::{join, open_join_link, wait_for_remote_video};
use confer_e2e::server::{Options, TestServer, metric};
use confer_e2e::video::{START_SAMPLER, VideoWindow, page_now, window_since};
use confer_sfu::{Impairment, SfuConfig};

/// What the publisher's Chromium resent in answer to NACKs.
const RESENT: &str = r#"
const stats = await window.conferClient.pc.getStats();
let nacks = 0, resent = 0;
stats.forEach((s) => {
  if (s.type === 'outbound-rtp' && s.kind === 'video') {
    nacks += s.nackCount || 0;
    resent += s.retransmittedPacketsSent || 0;
  }
});
return {nacks, resent};
"#;

/// What the subscriber's Chromium received in RTX streams, and the codecs it decoded.
const RTX_RECEIVED: &str = r#"
const stats = await window.conferClient.pc.getStats();
let rtx = 0, received = 0;
const codecs = [];
stats.forEach((s) => {
  if (s.type === 'inbound-rtp' && s.kind === 'video' && s.packetsReceived > 0) {
    rtx += s.retransmittedPacketsReceived || 0;
    received += s.packetsReceived || 0;
    const codec = stats.get(s.codecId);
    if (codec) codecs.push(codec.mimeType);
  }
});
return {rtx, received, codecs};
"#;

fn lossy_server_options() -> Options {
    Options {
        sfu: SfuConfig {
            impairment: Impairment {
                inbound_rtp_loss: 0.05,
                outbound_rtp_loss: 0.05,
                seed: 4,
            },
            ..SfuConfig::default()
        },
        ..Options::default()
    }
}

/// A call through the lossy SFU, and what its subscriber saw.
struct LossyCall {
    server: TestServer,
    _driver: Driver,
    ada: Browser,
    bob: Browser,
    window: VideoWindow,
}

/// The subscriber decoded most of 10 s of video (about 20 pictures a second here),
/// with few and short freezes.
fn assert_kept_decoding(window: &VideoWindow) {
    assert!(
        window.frames_decoded >= 80,
        "the subscriber kept decoding: {window:?}"
    );
    assert!(
        window.freezes <= 3 && window.freeze_seconds < 1.5,
        "few and short freezes: {window:?}"
    );
}

/// Ada publishes with `query` added to her join link, Bob watches; returns once Bob has
/// watched for 10 s.
async fn lossy_call(room: &str, query: &str) -> anyhow::Result<LossyCall> {
    let server = TestServer::start_with(lossy_server_options()).await?;
    let driver = Driver::start().await?;
    let ada = driver.browser().await?;
    let bob = driver.browser().await?;
    let link = server.url(&format!("/r/{room}?name=Ada{query}"));
    open_join_link(&ada, &link, "Ada").await?;
    join(&bob, &server, room, "Bob").await?;
    wait_for_remote_video(&bob).await?;
    bob.eval(START_SAMPLER).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let since = page_now(&bob).await?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let window = window_since(&bob, since).await?;
    Ok(LossyCall {
        server,
        _driver: driver,
        ada,
        bob,
        window,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_keeps_decoding_with_five_percent_loss_each_way() -> anyhow::Result<()> {
    let LossyCall {
        server,
        _driver,
        ada,
        bob,
        window,
    } = lossy_call("lossy", "").await?;
    let stats = server.sfu.stats().snapshot();
    let resent = ada.eval(RESENT).await?;
    let rtx = bob.eval(RTX_RECEIVED).await?;
    eprintln!(
        "10 s at 5 % loss each way: {window:?}; publisher {resent}; subscriber {rtx}; {stats:?}"
    );

    assert_kept_decoding(&window);
    assert!(stats.impaired_dropped > 0, "loss was injected: {stats:?}");
    assert!(
        stats.nacks_sent > 0,
        "the SFU asked the publisher to resend: {stats:?}"
    );
    assert!(
        resent["resent"].as_u64() > Some(0),
        "the publisher resent packets: {resent}"
    );
    assert!(
        stats.rtx_received > 0,
        "the publisher resent (and probed) in its RTX streams: {stats:?}"
    );
    assert!(
        stats.nacks_received > 0 && stats.retransmissions_sent > 0,
        "the SFU answered the subscriber's NACKs from its cache: {stats:?}"
    );
    assert!(
        rtx["rtx"].as_u64() > Some(0),
        "the subscriber's Chromium took the resends from their RTX stream: {rtx}"
    );
    let metrics = server.metrics().await?;
    for name in [
        "confer_sfu_nacks_sent_total",
        "confer_sfu_nacks_received_total",
        "confer_sfu_retransmissions_total",
        "confer_sfu_bytes_forwarded_total",
        // From the subscriber's reception reports.
        "confer_sfu_subscriber_rtt_seconds_count",
        "confer_sfu_subscriber_jitter_seconds_count",
    ] {
        assert!(
            metric(&metrics, name) > Some(0),
            "{name} is counted on /metrics"
        );
    }
    for browser in [ada, bob] {
        browser.close().await?;
    }
    Ok(())
}

/// A camera sent in H.264 reaches a subscriber as H.264 through the same loss, as
/// smoothly as VP8, and the resends of its packets travel under the RTX payload type
/// bound to H.264's (a slot may carry any negotiated codec, so the RTX type is chosen
/// per packet). H.264 says nothing of which pictures depend on which, and Chromium
/// orders its pictures by sequence number alone: every hole in the stream it is sent
/// holds up decoding until it is filled or a keyframe comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_video_keeps_decoding_with_its_resends_in_rtx() -> anyhow::Result<()> {
    let LossyCall {
        server,
        _driver,
        ada,
        bob,
        window,
    } = lossy_call("lossy-h264", "&codec=h264").await?;
    let rtx = bob.eval(RTX_RECEIVED).await?;
    let stats = server.sfu.stats().snapshot();
    eprintln!("H.264, 10 s at 5 % loss each way: {window:?}; subscriber {rtx}; {stats:?}");

    assert_eq!(
        rtx["codecs"],
        serde_json::json!(["video/H264"]),
        "the subscriber decodes H.264: {rtx}"
    );
    assert_kept_decoding(&window);
    assert!(
        stats.retransmissions_sent > 0 && rtx["rtx"].as_u64() > Some(0),
        "resends reached the subscriber in its RTX stream, as H.264: {rtx}; {stats:?}"
    );
    for browser in [ada, bob] {
        browser.close().await?;
    }
    Ok(())
}
