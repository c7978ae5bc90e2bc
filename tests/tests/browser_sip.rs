//! A phone caller (sipp for SIP, this test's socket for its RTP) and a headless
//! Chromium in one room: the browser shows the caller as a participant dialled in by
//! phone and receives
//! its audio; the caller hears the browser's microphone (real Opus from Chromium, as
//! one stream); a caller who talks is the room's active speaker, outlined in the web
//! app; the browser's host removes the caller and the bridge hangs up (BYE).

use std::time::Duration;

use anyhow::Context as _;
use confer_e2e::audio::write_tone_wav;
use confer_e2e::browser::Driver;
use confer_e2e::server::{TestServer, assert_metrics};
use confer_e2e::sip::{Bridge, Offer, Script, listen, opus_speech, run_sipp, scenario, send_voice};
use tokio::net::UdpSocket;

/// The caller's participant id, once the browser knows it.
const CALLER_ID: &str = r#"
const c = window.conferClient;
if (!c || !c.participants) return null;
const p = [...c.participants.values()].find((p) => p.name === 'Dial Tester');
return p ? p.id : null;
"#;

/// Whether the browser received `n` audio packets on the slot the caller's audio is
/// assigned to.
fn caller_audio_at_least(caller: &str, n: u64) -> String {
    format!(
        r#"
const c = window.conferClient;
const mid = [...c.assignments.entries()].find(([, a]) => a.participantId === '{caller}' && a.kind === 'audio');
if (!mid) return false;
const stats = await c.pc.getStats();
let packets = 0;
stats.forEach((s) => {{
  if (s.type === 'inbound-rtp' && s.kind === 'audio' && s.mid === mid[0]) packets = s.packetsReceived;
}});
return packets >= {n};
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_caller_and_a_browser_hear_each_other() -> anyhow::Result<()> {
    let server = TestServer::start(false).await?;
    let bridge = Bridge::start(&server).await?;
    let driver = Driver::start().await?;
    let wav = std::env::temp_dir().join(format!("confer-sip-voice-{}.wav", std::process::id()));
    write_tone_wav(&wav, 60)?;
    let ada = driver
        .browser_with(&[format!(
            "--use-file-for-fake-audio-capture={}",
            wav.display()
        )])
        .await?;
    ada.goto(&server.url("/r/phone?name=Ada")).await?;
    ada.wait_for(
        "Ada connected",
        "return document.getElementById('status').textContent === 'Connected';",
        Duration::from_secs(10),
    )
    .await?;

    let ear = UdpSocket::bind("127.0.0.1:0").await?;
    let offer = Offer::Listen {
        port: ear.local_addr()?.port(),
        pt: 111,
    };
    let scenario = scenario(offer, Script::AwaitBye);
    let addr = bridge.addr;
    let call = tokio::spawn(async move { run_sipp(addr, "phone", &scenario).await });
    ada.wait_for(
        "the caller in Ada's room",
        "const c = window.conferClient;
         return !!c && !!c.participants && [...c.participants.values()].some((p) => p.name === 'Dial Tester');",
        Duration::from_secs(15),
    )
    .await?;
    let caller = ada.eval(CALLER_ID).await?;
    let caller = caller
        .as_str()
        .context("Ada's client does not list the caller")?
        .to_owned();
    // The page shows the caller as one: a phone on the tile and in the list.
    ada.wait_for(
        "the caller shown as dialled in",
        &format!(
            "const tile = document.querySelector('.tile[data-participant=\"{caller}\"] .label');
             const item = document.querySelector('#participants li[data-participant=\"{caller}\"]');
             return !!tile && tile.textContent === '📞 Dial Tester'
               && !!item && item.textContent.includes('by phone');"
        ),
        Duration::from_secs(5),
    )
    .await?;

    // Ada's microphone reaches the caller as one Opus stream.
    let heard = listen(&ear, Duration::from_secs(3)).await;
    assert!(heard.packets >= 50, "the caller heard {heard:?}");
    assert_eq!(heard.payload_types, [111], "{heard:?}");
    assert_eq!(heard.ssrcs.len(), 1, "{heard:?}");
    assert!(
        heard.payload.len() > 10,
        "a tone is more than Opus silence: {heard:?}"
    );
    // Ada mutes; the caller speaks back to where the bridge's RTP comes from, and is
    // the room's active speaker (the bridge sends the caller's level with each packet).
    ada.eval("document.getElementById('toggle-mic').click();")
        .await?;
    let bridge_rtp = heard.from.context("no RTP from the bridge")?;
    let speech = opus_speech();
    let speaking = send_voice(&ear, bridge_rtp, 111, 250, &speech);
    let caller_speaking = format!(
        "const t = document.querySelector('.tile.speaking');
         return !!t && t.dataset.participant === '{caller}';"
    );
    let outlined = ada.wait_for(
        "the caller outlined as the speaker",
        &caller_speaking,
        Duration::from_secs(5),
    );
    let (sent, outlined) = tokio::join!(speaking, outlined);
    sent?;
    outlined?;
    ada.wait_for(
        "the caller's audio in Ada's browser",
        &caller_audio_at_least(&caller, 100),
        Duration::from_secs(10),
    )
    .await?;

    // Ada, the host, removes the caller: the bridge hangs up.
    ada.eval(&format!(
        "await window.conferClient.host('remove', '{caller}'); return true;"
    ))
    .await?;
    let run = tokio::time::timeout(Duration::from_secs(30), call).await???;
    assert!(run.success, "the caller got no BYE:\n{}", run.output);
    let metrics = bridge.metrics();
    assert_metrics(
        &metrics,
        &[
            ("confer_sip_calls_total{outcome=\"answered\"}", 1),
            ("confer_sip_call_ends_total{reason=\"room_closed\"}", 1),
        ],
    );
    ada.close().await?;
    let _ = std::fs::remove_file(&wav);
    Ok(())
}
