//! Reading a browser's received video from `getStats()`: a sampler the page runs every
//! 50 ms, and what the tests ask of its samples (picture width, freezes).

use std::time::Duration;

use serde_json::Value;

use crate::browser::Browser;

/// Starts sampling the busiest inbound video stream of `window.conferClient.pc`:
/// `[ms, framesDecoded, frameWidth, freezeCount, totalFreezesDuration]` every 50 ms.
pub const START_SAMPLER: &str = r#"
if (window.__video) clearInterval(window.__video.timer);
const pc = window.conferClient.pc;
window.__video = { samples: [] };
window.__video.timer = setInterval(async () => {
  const stats = await pc.getStats();
  let best = null;
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video' && s.framesDecoded > 0
        && (!best || s.framesDecoded > best.framesDecoded)) best = s;
  });
  if (best) window.__video.samples.push([performance.now(), best.framesDecoded,
    best.frameWidth || 0, best.freezeCount || 0, best.totalFreezesDuration || 0]);
}, 50);
return true;
"#;

/// What the samples since `since_ms` (page clock) say.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoWindow {
    pub frames_decoded: u64,
    /// The longest time between samples that showed a newly decoded frame. The sampler
    /// runs on the page's main thread, so a busy page stretches this; for freezes ask
    /// `freezes` and `freeze_seconds`, which Chromium measures as frames render.
    pub longest_stall: Duration,
    pub last_width: u64,
    /// Chromium's own freeze count and total freeze time, grown over the window.
    pub freezes: u64,
    pub freeze_seconds: f64,
}

/// Samples each browser's received video over the same `span` (starting each page's
/// sampler on its current connection) and returns their windows, in order.
pub async fn sample_together(
    browsers: &[&Browser],
    span: Duration,
) -> anyhow::Result<Vec<VideoWindow>> {
    let mut since = Vec::with_capacity(browsers.len());
    for browser in browsers {
        browser.eval(START_SAMPLER).await?;
        since.push(page_now(browser).await?);
    }
    tokio::time::sleep(span).await;
    let mut windows = Vec::with_capacity(browsers.len());
    for (browser, since) in browsers.iter().zip(since) {
        windows.push(window_since(browser, since).await?);
    }
    Ok(windows)
}

/// The page's clock, to mark the start of a window.
pub async fn page_now(browser: &Browser) -> anyhow::Result<f64> {
    Ok(browser
        .eval("return performance.now();")
        .await?
        .as_f64()
        .unwrap_or_default())
}

pub async fn window_since(browser: &Browser, since_ms: f64) -> anyhow::Result<VideoWindow> {
    let samples = browser.eval("return window.__video.samples;").await?;
    let rows: Vec<[f64; 5]> = samples
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| {
            let cells: Vec<f64> = row.as_array()?.iter().filter_map(Value::as_f64).collect();
            <[f64; 5]>::try_from(cells).ok()
        })
        .filter(|row| row[0] >= since_ms)
        .collect();
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        anyhow::bail!("no video samples since {since_ms} ms");
    };
    let mut longest_ms: f64 = 0.0;
    let mut last_progress = first[0];
    let mut frames = first[1];
    for row in &rows {
        if row[1] > frames {
            longest_ms = longest_ms.max(row[0] - last_progress);
            last_progress = row[0];
            frames = row[1];
        }
    }
    longest_ms = longest_ms.max(last[0] - last_progress);
    Ok(VideoWindow {
        frames_decoded: (last[1] - first[1]) as u64,
        longest_stall: Duration::from_millis(longest_ms as u64),
        last_width: last[2] as u64,
        freezes: (last[3] - first[3]) as u64,
        freeze_seconds: last[4] - first[4],
    })
}
