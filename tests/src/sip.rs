//! SIP callers for the dial-in suites: the bridge started next to a [`TestServer`],
//! sipp (Debian `sip-tester`) scenarios written per test, and the pcap of Opus packets
//! sipp plays as a caller's voice.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::backing::free_udp_port;
use crate::server::{DEV_TENANT, TOKEN_SECRET, TestServer};
use serde_json::json;

/// A 20 ms Opus frame of silence (CELT, full band, one frame): valid for any decoder.
pub const OPUS_SILENCE: [u8; 3] = [0xf8, 0xff, 0xfe];
/// Packets in the voice a speaking caller plays: 5 s.
pub const VOICE_PACKETS: u16 = 250;

/// The SIP bridge on a loopback port, joining rooms of the server's `dev` tenant.
pub struct Bridge {
    pub addr: SocketAddr,
    pub stats: confer_sip::SipStats,
    _stop: watch::Sender<bool>,
}

impl Bridge {
    pub async fn start(server: &TestServer) -> anyhow::Result<Self> {
        Self::joining_through(server.signal_url()).await
    }

    /// A bridge that plays callers only the prompts of `prompts`.
    pub async fn with_prompts(
        server: &TestServer,
        prompts: confer_sip::prompt::PromptSet,
    ) -> anyhow::Result<Self> {
        Self::start_with(server.signal_url(), prompts).await
    }

    /// A bridge that joins through the gateway at `signal_url` (whose room service
    /// knows the `dev` tenant's key).
    pub async fn joining_through(signal_url: String) -> anyhow::Result<Self> {
        Self::start_with(signal_url, confer_sip::prompt::PromptSet::All).await
    }

    async fn start_with(
        signal_url: String,
        prompts: confer_sip::prompt::PromptSet,
    ) -> anyhow::Result<Self> {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let config = confer_sip::SipConfig {
            signal_url,
            token_key: Arc::new(confer_auth::TokenKey::new(
                DEV_TENANT,
                TOKEN_SECRET.as_bytes(),
            )),
            media_ip: addr.ip(),
            advertise_ip: addr.ip(),
            rtp_ports: None,
            allow: Vec::new(),
            max_calls: 20,
            media_timeout: Duration::from_secs(30),
            prompts,
        };
        let stats = confer_sip::SipStats::default();
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(confer_sip::serve(socket, config, stats.clone(), stopped));
        Ok(Self {
            addr,
            stats,
            _stop: stop,
        })
    }

    /// Waits up to 20 s until `n` calls are answered and up.
    pub async fn until_active(&self, n: i64) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.stats.active() != n {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} calls up, not {n}",
                self.stats.active()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// The bridge's `/metrics` families as text.
    pub fn metrics(&self) -> String {
        let mut out = confer_metrics::Exposition::new(confer_metrics::Format::Prometheus);
        self.stats.render(&mut out);
        out.finish()
    }
}

/// Creates `room` through the tenant API.
pub async fn create_room(
    server: &TestServer,
    room: &str,
    waiting_room: bool,
) -> anyhow::Result<()> {
    crate::tenant::create_room(
        &confer_http::client()?,
        &server.url(""),
        ("dev", TOKEN_SECRET),
        json!({"name": room, "settings": {"waiting_room": waiting_room}}),
    )
    .await
}

/// What a scripted caller offers as its audio.
#[derive(Debug, Clone, Copy)]
pub enum Offer {
    /// Opus with payload type `pt` at `port` (a socket the test reads), no voice sent.
    Listen { port: u16, pt: u8 },
    /// Opus (111) and keys (`telephone-event`, 101) at `port`: a socket the test reads
    /// and sends the caller's RTP from.
    Keypad { port: u16 },
    /// Opus (111) at sipp's media port, playing `voice.pcap` once answered.
    Speak,
    /// Only PCMU: nothing the bridge can take.
    PcmuOnly,
}

/// How a scripted call goes after the INVITE.
#[derive(Debug, Clone, Copy)]
pub enum Script {
    /// Answered; the caller hangs up after `ms`.
    HangUpAfter { ms: u32 },
    /// Answered; the room's side hangs up (the caller answers the BYE).
    AwaitBye,
    /// Refused with `status` (then ACKed).
    Refused { status: u16 },
    /// Rings (a waiting room), then the caller cancels: 200 for the CANCEL, 487.
    CancelWhileRinging,
}

/// The INVITE with its SDP offer; `{port}`, `{formats}` and `{rtpmaps}` filled in.
const INVITE: &str = r#"  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: "Dial Tester" <sip:+15550100@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=tester 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio {port} RTP/AVP {formats}
{rtpmaps}
      a=sendrecv

    ]]>
  </send>
"#;

/// A request in the dialog (ACK, BYE) with CSeq `{cseq}`.
const IN_DIALOG: &str = r#"  <send{retrans}>
    <![CDATA[
      {method} sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Dial Tester" <sip:+15550100@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} {method}
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"#;

/// CANCEL of the INVITE: its Via (same branch), no To tag.
const CANCEL: &str = r#"  <send>
    <![CDATA[
      CANCEL sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: "Dial Tester" <sip:+15550100@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 CANCEL
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"#;

/// 200 OK to the BYE just received.
const BYE_OK: &str = r#"  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
"#;

fn in_dialog(method: &str, cseq: u32, retransmit: bool) -> String {
    IN_DIALOG
        .replace(
            "{retrans}",
            if retransmit { " retrans=\"500\"" } else { "" },
        )
        .replace("{method}", method)
        .replace("{cseq}", &cseq.to_string())
}

/// A sipp user agent client scenario for one call.
pub fn scenario(offer: Offer, script: Script) -> String {
    let (port, formats, rtpmaps) = match offer {
        Offer::Listen { port, pt } => (
            port.to_string(),
            pt.to_string(),
            format!("a=rtpmap:{pt} opus/48000/2"),
        ),
        Offer::Keypad { port } => (
            port.to_string(),
            "111 101".into(),
            "a=rtpmap:111 opus/48000/2\na=rtpmap:101 telephone-event/8000".into(),
        ),
        Offer::Speak => (
            "[media_port]".into(),
            "111 101".into(),
            "a=rtpmap:111 opus/48000/2\na=rtpmap:101 telephone-event/8000".into(),
        ),
        Offer::PcmuOnly => (
            "[media_port]".into(),
            "0".into(),
            "a=rtpmap:0 PCMU/8000".into(),
        ),
    };
    let rtpmaps: Vec<String> = rtpmaps.lines().map(|l| format!("      {l}")).collect();
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"dial-in\">\n",
    );
    xml.push_str(
        &INVITE
            .replace("{port}", &port)
            .replace("{formats}", &formats)
            .replace("{rtpmaps}", &rtpmaps.join("\n")),
    );
    xml.push_str("  <recv response=\"100\" optional=\"true\"/>\n");
    match script {
        Script::HangUpAfter { .. } | Script::AwaitBye => {
            xml.push_str("  <recv response=\"180\" optional=\"true\"/>\n  <recv response=\"200\" rtd=\"true\"/>\n");
            xml.push_str(&in_dialog("ACK", 1, false));
            if matches!(offer, Offer::Speak) {
                xml.push_str(
                    "  <nop><action><exec play_pcap_audio=\"voice.pcap\"/></action></nop>\n",
                );
            }
        }
        Script::Refused { status } => {
            xml.push_str(&format!("  <recv response=\"{status}\"/>\n"));
            xml.push_str(&in_dialog("ACK", 1, false));
        }
        Script::CancelWhileRinging => {
            xml.push_str("  <recv response=\"180\"/>\n");
            xml.push_str(CANCEL);
            xml.push_str("  <recv response=\"200\"/>\n  <recv response=\"487\"/>\n");
            xml.push_str(&in_dialog("ACK", 1, false));
        }
    }
    match script {
        Script::HangUpAfter { ms } => {
            xml.push_str(&format!("  <pause milliseconds=\"{ms}\"/>\n"));
            xml.push_str(&in_dialog("BYE", 2, true));
            xml.push_str("  <recv response=\"200\"/>\n");
        }
        Script::AwaitBye => {
            xml.push_str("  <recv request=\"BYE\" timeout=\"60000\"/>\n");
            xml.push_str(BYE_OK);
        }
        Script::Refused { .. } | Script::CancelWhileRinging => {}
    }
    xml.push_str("</scenario>\n");
    xml
}

/// Writes `packets` Opus packets (payload type 111, 20 ms apart) as an Ethernet pcap
/// sipp can play.
pub fn write_voice_pcap(path: &Path, packets: u16) -> std::io::Result<()> {
    write_pcap(path, &voice_with_keys(packets, &[]))
}

/// A caller's voice: `packets` RTP packets 20 ms apart, Opus silence (payload type
/// 111), except where a key is pressed: at packet `at`, each key of `keys` (`0`–`9`,
/// `*`, `#`) as a phone sends it (RFC 4733, payload type 101): three packets while it is
/// held, its end three times, then one packet of voice before the next key.
pub fn voice_with_keys(packets: u16, keys: &[(u16, &str)]) -> Vec<Vec<u8>> {
    let mut slots: Vec<Option<(u8, bool, u16, u32)>> = vec![None; usize::from(packets)];
    for (at, pressed) in keys {
        let mut slot = usize::from(*at);
        for key in pressed.chars() {
            let event = match key {
                '*' => 10,
                '#' => 11,
                digit => u8::try_from(digit.to_digit(10).unwrap_or(0)).unwrap_or(0),
            };
            // The event's timestamp: where it starts.
            let start = u32::try_from(slot).unwrap_or(0) * 960;
            for n in 0..6u16 {
                if let Some(free) = slots.get_mut(slot) {
                    *free = Some((event, n >= 3, 160 * (n.min(3) + 1), start));
                }
                slot += 1;
            }
            slot += 1;
        }
    }
    slots
        .iter()
        .enumerate()
        .map(|(i, slot)| {
            let i = u16::try_from(i).unwrap_or(u16::MAX);
            let (pt, timestamp, payload) = match slot {
                Some((event, end, duration, start)) => {
                    let mut payload = vec![*event, if *end { 0x80 | 10 } else { 10 }];
                    payload.extend_from_slice(&duration.to_be_bytes());
                    (101, *start, payload)
                }
                None => (111, u32::from(i) * 960, OPUS_SILENCE.to_vec()),
            };
            let mut rtp = vec![0x80, pt];
            rtp.extend_from_slice(&(1000u16.wrapping_add(i)).to_be_bytes());
            rtp.extend_from_slice(&timestamp.to_be_bytes());
            rtp.extend_from_slice(&0x5151_5151u32.to_be_bytes());
            rtp.extend_from_slice(&payload);
            rtp
        })
        .collect()
}

/// Writes RTP `packets`, 20 ms apart, as an Ethernet pcap sipp can play.
pub fn write_pcap(path: &Path, packets: &[Vec<u8>]) -> std::io::Result<()> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    for value in [0u32, 0, 65_535, 1] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    for (i, rtp) in packets.iter().enumerate() {
        let udp_len = 8 + rtp.len() as u16;
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&[0x45, 0]);
        frame.extend_from_slice(&(20 + udp_len).to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        frame.extend_from_slice(&4000u16.to_be_bytes());
        frame.extend_from_slice(&4002u16.to_be_bytes());
        frame.extend_from_slice(&udp_len.to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(rtp);
        let micros = u32::try_from(i).unwrap_or(u32::MAX).saturating_mul(20_000);
        for value in [
            micros / 1_000_000,
            micros % 1_000_000,
            frame.len() as u32,
            frame.len() as u32,
        ] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.extend_from_slice(&frame);
    }
    std::fs::write(path, out)
}

/// What a caller's media socket received: packets, payload types, SSRCs, and whether
/// sequence numbers only ever moved forward by one.
#[derive(Debug, Default)]
pub struct Heard {
    pub packets: usize,
    pub payload_types: Vec<u8>,
    pub ssrcs: Vec<u32>,
    pub contiguous: bool,
    pub payload: Vec<u8>,
    pub from: Option<SocketAddr>,
}

pub async fn listen(socket: &UdpSocket, duration: Duration) -> Heard {
    let mut heard = Heard {
        contiguous: true,
        ..Heard::default()
    };
    let mut last: Option<u16> = None;
    let mut buf = [0u8; 2048];
    let until = Instant::now() + duration;
    while let Ok(Ok((len, from))) =
        tokio::time::timeout_at(until.into(), socket.recv_from(&mut buf)).await
    {
        let packet = &buf[..len];
        if len < 12 {
            continue;
        }
        heard.packets += 1;
        heard.from = Some(from);
        let pt = packet[1] & 0x7f;
        if !heard.payload_types.contains(&pt) {
            heard.payload_types.push(pt);
        }
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        if !heard.ssrcs.contains(&ssrc) {
            heard.ssrcs.push(ssrc);
        }
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        if last.is_some_and(|l| seq != l.wrapping_add(1)) {
            heard.contiguous = false;
        }
        last = Some(seq);
        heard.payload = packet[12..].to_vec();
    }
    heard
}

/// A 20 ms Opus frame the size of speech (SILK wideband, 80 bytes): the bridge reads
/// a caller sending these as talking.
pub fn opus_speech() -> Vec<u8> {
    let mut frame = vec![0x48];
    frame.resize(80, 0x55);
    frame
}

/// Sends `packets` Opus packets with `frame` as payload (payload type `pt`, 20 ms
/// apart) from `socket` to `to`.
pub async fn send_voice(
    socket: &UdpSocket,
    to: SocketAddr,
    pt: u8,
    packets: u16,
    frame: &[u8],
) -> anyhow::Result<()> {
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    for i in 0..packets {
        ticker.tick().await;
        let mut rtp = vec![0x80, pt];
        rtp.extend_from_slice(&i.to_be_bytes());
        rtp.extend_from_slice(&(u32::from(i) * 960).to_be_bytes());
        rtp.extend_from_slice(&0x0a0b_0c0du32.to_be_bytes());
        rtp.extend_from_slice(frame);
        socket.send_to(&rtp, to).await?;
    }
    Ok(())
}

/// One sipp run's end.
#[derive(Debug)]
pub struct SippRun {
    pub success: bool,
    pub output: String,
}

/// Runs sipp with `scenario` against the bridge at `bridge` for `room` (one call),
/// in a directory of its own (with the voice pcap). Fails when sipp is missing.
pub async fn run_sipp(bridge: SocketAddr, room: &str, scenario: &str) -> anyhow::Result<SippRun> {
    run_sipp_speaking(bridge, room, scenario, VOICE_PACKETS).await
}

/// [`run_sipp`] with `voice_packets` 20 ms packets in a speaking caller's voice.
pub async fn run_sipp_speaking(
    bridge: SocketAddr,
    room: &str,
    scenario: &str,
    voice_packets: u16,
) -> anyhow::Result<SippRun> {
    run_sipp_from("127.0.0.1", bridge, room, scenario, voice_packets).await
}

/// [`run_sipp_speaking`] from the loopback address `caller_ip` (any of 127.0.0.0/8):
/// callers at different addresses.
pub async fn run_sipp_from(
    caller_ip: &str,
    bridge: SocketAddr,
    room: &str,
    scenario: &str,
    voice_packets: u16,
) -> anyhow::Result<SippRun> {
    let voice = voice_with_keys(voice_packets, &[]);
    run_sipp_playing(caller_ip, bridge, room, scenario, &voice).await
}

/// [`run_sipp_from`], the caller playing `voice` (RTP packets 20 ms apart: see
/// [`voice_with_keys`]).
pub async fn run_sipp_playing(
    caller_ip: &str,
    bridge: SocketAddr,
    room: &str,
    scenario: &str,
    voice: &[Vec<u8>],
) -> anyhow::Result<SippRun> {
    let dir = scratch_dir()?;
    std::fs::write(dir.join("call.xml"), scenario)?;
    write_pcap(&dir.join("voice.pcap"), voice)?;
    let (sip_port, media_port) = (free_udp_port()?, free_udp_port()?);
    let output = tokio::process::Command::new("sipp")
        .current_dir(&dir)
        .arg(bridge.to_string())
        .args([
            "-sf", "call.xml", "-s", room, "-m", "1", "-i", caller_ip, "-nostdin",
        ])
        .args(["-p", &sip_port.to_string(), "-mp", &media_port.to_string()])
        .args(["-timeout", "90s", "-timeout_error", "-trace_err"])
        .kill_on_drop(true)
        .output()
        .await
        .context("failed to run sipp (Debian package sip-tester; scripts/test.sh installs it)")?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    if let Ok(errors) = std::fs::read_dir(&dir) {
        for entry in errors.flatten() {
            if entry.file_name().to_string_lossy().contains("errors") {
                text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(SippRun {
        success: output.status.success(),
        output: text,
    })
}

fn scratch_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("confer-sipp-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
