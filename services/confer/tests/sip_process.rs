//! `confer sip` as its own process next to `confer dev`: sipp calls in, the bridge's
//! `/metrics` counts exactly those calls in the Prometheus text format (`promtool check
//! metrics`) and in OpenMetrics (the reference parser), and on SIGTERM the bridge hangs
//! up the calls still up with BYE before it exits.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use confer_e2e::checkers::{OPENMETRICS_PARSE, check};
use confer_e2e::server::metric;
use confer_e2e::sip::{Offer, Script, run_sipp, scenario};
use support::{SipDeployment, http_get};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sip_role_counts_its_calls_in_both_metric_formats() -> anyhow::Result<()> {
    let deployment = SipDeployment::start(&[])?;
    deployment.open_room("standup").await?;
    let answered = run_sipp(
        deployment.sip_addr,
        "standup",
        &scenario(Offer::Speak, Script::HangUpAfter { ms: 1500 }),
    )
    .await?;
    assert!(answered.success, "{}", answered.output);
    let refused = run_sipp(
        deployment.sip_addr,
        "standup",
        &scenario(Offer::PcmuOnly, Script::Refused { status: 488 }),
    )
    .await?;
    assert!(refused.success, "{}", refused.output);

    let text = http_get(&deployment.metrics, "/metrics")?;
    for (name, value) in [
        ("confer_sip_calls_total{outcome=\"answered\"}", 1),
        ("confer_sip_calls_total{outcome=\"not_acceptable\"}", 1),
        ("confer_sip_call_ends_total{reason=\"caller_hangup\"}", 1),
        ("confer_sip_calls_active", 0),
        ("confer_sip_call_setup_seconds_count", 1),
        ("confer_sip_call_duration_seconds_count", 1),
        ("confer_sip_requests_total{method=\"INVITE\"}", 2),
        ("confer_sip_requests_total{method=\"ACK\"}", 2),
        ("confer_sip_requests_total{method=\"BYE\"}", 1),
    ] {
        assert_eq!(metric(&text, name), Some(value), "{name} in\n{text}");
    }
    let from_caller = metric(
        &text,
        "confer_sip_rtp_packets_total{direction=\"from_caller\"}",
    );
    assert!(
        from_caller >= Some(50),
        "the caller's voice was not bridged:\n{text}"
    );
    let promtool = std::env::var("CONFER_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    check(&promtool, &["check", "metrics"], &text)?;

    let open = confer_http::client()?
        .get(format!("http://{}/metrics", deployment.metrics))
        .header("accept", "application/openmetrics-text;version=1.0.0")
        .send()
        .await?
        .text()
        .await?;
    assert!(open.ends_with("# EOF\n"), "{open}");
    let families = check("python3", &["-c", OPENMETRICS_PARSE], &open)?;
    for family in [
        "confer_sip_calls:counter",
        "confer_sip_calls_active:gauge",
        "confer_sip_call_ends:counter",
        "confer_sip_call_setup_seconds:histogram",
        "confer_sip_call_duration_seconds:histogram",
        "confer_sip_requests:counter",
        "confer_sip_rtp_packets:counter",
    ] {
        assert!(families.contains(family), "{family} not in {families}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sigterm_the_bridge_hangs_up_its_calls_and_exits() -> anyhow::Result<()> {
    let mut deployment = SipDeployment::start(&[])?;
    deployment.open_room("late-night").await?;
    let addr = deployment.sip_addr;
    let call = tokio::spawn(async move {
        run_sipp(
            addr,
            "late-night",
            &scenario(Offer::Speak, Script::AwaitBye),
        )
        .await
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = http_get(&deployment.metrics, "/metrics")?;
        if metric(&text, "confer_sip_calls_active") == Some(1) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the call never came up:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = Command::new("kill")
        .args(["-TERM", &deployment.sip.id().to_string()])
        .status()?;
    assert!(status.success());
    let run = tokio::time::timeout(Duration::from_secs(20), call).await???;
    assert!(
        run.success,
        "the caller got no BYE on shutdown:\n{}",
        run.output
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = deployment.sip.try_wait()? {
            break exit;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the bridge did not exit on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(exit.success(), "{exit:?}");
    Ok(())
}
