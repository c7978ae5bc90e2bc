//! baresip (Debian `baresip-core`) as a real softphone: it calls a SIP address, sends
//! a sine tone encoded by its own Opus encoder, and records what it hears (its decoded
//! audio, through the `sndfile` module) to a WAV file this test reads back.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

/// One finished softphone call.
#[derive(Debug)]
pub struct SoftphoneCall {
    /// baresip's own log (SIP progress, codecs, errors).
    pub log: String,
    /// What it heard: 16-bit samples of the first channel, and their rate.
    pub heard: Vec<i16>,
    pub sample_rate: u32,
}

/// Calls `sip:<room>@<bridge>` sending a `tone_hz` sine, hangs up after `seconds`.
pub async fn call(
    bridge: SocketAddr,
    room: &str,
    tone_hz: u32,
    seconds: u32,
) -> anyhow::Result<SoftphoneCall> {
    let dir = std::env::temp_dir().join(format!("confer-baresip-{:016x}", rand::random::<u64>()));
    let dump = dir.join("dump");
    std::fs::create_dir_all(&dump)?;
    let sip_port = crate::backing::free_udp_port()?;
    std::fs::write(dir.join("config"), config(sip_port, tone_hz, &dump))?;
    std::fs::write(
        dir.join("accounts"),
        "<sip:softphone@127.0.0.1>;regint=0;audio_codecs=opus/48000/2\n",
    )?;
    let output = tokio::process::Command::new("baresip")
        .arg("-f")
        .arg(&dir)
        .args(["-e", &format!("/dial sip:{room}@{bridge}")])
        .args(["-t", &seconds.to_string()])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(u64::from(seconds) + 30), output)
        .await
        .context("baresip did not finish")?
        .context("failed to run baresip (Debian baresip-core; scripts/test.sh installs it)")?;
    let mut log = String::from_utf8_lossy(&output.stdout).into_owned();
    log.push_str(&String::from_utf8_lossy(&output.stderr));
    let recording =
        decoded_recording(&dump).with_context(|| format!("no recording; baresip said:\n{log}"))?;
    let (heard, sample_rate) = read_wav(&recording)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(SoftphoneCall {
        log,
        heard,
        sample_rate,
    })
}

fn config(sip_port: u16, tone_hz: u32, dump: &Path) -> String {
    format!(
        "poll_method epoll\n\
         sip_listen 127.0.0.1:{sip_port}\n\
         audio_player aubridge,speaker\n\
         audio_alert aubridge,speaker\n\
         audio_source ausine,{tone_hz}\n\
         audio_srate 48000\n\
         module_path /usr/lib/baresip/modules\n\
         module opus.so\n\
         module ausine.so\n\
         module aubridge.so\n\
         module sndfile.so\n\
         module_app account.so\n\
         module_app menu.so\n\
         snd_path {}\n\
         opus_bitrate 32000\n",
        dump.display()
    )
}

/// The `sndfile` dump of the decoded (received) audio.
fn decoded_recording(dump: &Path) -> anyhow::Result<PathBuf> {
    std::fs::read_dir(dump)?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.to_string_lossy().ends_with("-dec.wav"))
        .context("baresip recorded no decoded audio")
}

/// The first channel of a 16-bit PCM WAV file, and its sample rate.
fn read_wav(path: &Path) -> anyhow::Result<(Vec<i16>, u32)> {
    let bytes = std::fs::read(path)?;
    anyhow::ensure!(
        bytes.len() >= 44 && &bytes[..4] == b"RIFF",
        "not a WAV file"
    );
    let channels = usize::from(u16::from_le_bytes([bytes[22], bytes[23]])).max(1);
    let rate = u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]);
    let data = bytes
        .windows(4)
        .position(|w| w == b"data")
        .context("no data chunk")?
        + 8;
    let samples = bytes[data..]
        .chunks_exact(2 * channels)
        .map(|frame| i16::from_le_bytes([frame[0], frame[1]]))
        .collect();
    Ok((samples, rate))
}

/// The dominant frequency of `samples` (Hz), from zero crossings within the 20 ms
/// frames that carry sound: good enough to tell two pure tones apart. `None` when
/// under half a second of the recording carries sound.
pub fn tone_hz(samples: &[i16], sample_rate: u32) -> Option<f64> {
    let frame = (sample_rate / 50) as usize;
    let (mut crossings, mut frames) = (0usize, 0usize);
    for chunk in samples.chunks_exact(frame) {
        let energy: f64 = chunk.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / frame as f64;
        if energy.sqrt() < 1000.0 {
            continue;
        }
        frames += 1;
        crossings += chunk
            .windows(2)
            .filter(|pair| (pair[0] < 0) != (pair[1] < 0))
            .count();
    }
    if frames < 25 {
        return None;
    }
    Some(crossings as f64 / 2.0 / (frames as f64 * 0.02))
}
