//! Two real softphones (baresip, its own SIP stack and Opus codec) call one room
//! through the SIP bridge, each sending its own tone; each hears the other's tone,
//! decoded by its own Opus decoder, after the trip caller → bridge → SFU → bridge →
//! caller. Neither hears itself.

use confer_e2e::server::{TestServer, assert_metrics};
use confer_e2e::sip::{Bridge, create_room};
use confer_e2e::softphone::{call, tone_hz};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_softphones_hear_each_other() -> anyhow::Result<()> {
    let server = TestServer::start(false).await?;
    let bridge = Bridge::start(&server).await?;
    create_room(&server, "duet", false).await?;
    let (low, high) = tokio::join!(
        call(bridge.addr, "duet", 440, 8),
        call(bridge.addr, "duet", 1000, 8),
    );
    let (low, high) = (low?, high?);
    let heard_by_low = tone_hz(&low.heard, low.sample_rate);
    let heard_by_high = tone_hz(&high.heard, high.sample_rate);
    eprintln!(
        "heard: by the 440 Hz phone {heard_by_low:?} Hz, by the 1000 Hz phone {heard_by_high:?} Hz"
    );
    let near =
        |heard: Option<f64>, tone: f64| heard.is_some_and(|hz| (hz - tone).abs() < tone * 0.05);
    assert!(
        near(heard_by_low, 1000.0),
        "the 440 Hz phone heard {heard_by_low:?} Hz, not the other's 1000 Hz:\n{}",
        low.log
    );
    assert!(
        near(heard_by_high, 440.0),
        "the 1000 Hz phone heard {heard_by_high:?} Hz, not the other's 440 Hz:\n{}",
        high.log
    );
    let metrics = bridge.metrics();
    assert_metrics(
        &metrics,
        &[
            ("confer_sip_calls_total{outcome=\"answered\"}", 2),
            ("confer_sip_call_ends_total{reason=\"caller_hangup\"}", 2),
        ],
    );
    Ok(())
}
