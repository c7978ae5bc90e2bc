//! Keeps the recordings directory: a finished recording older than the deployment's
//! `--recordings-keep-days` is removed, and a file an SFU left half-written (it
//! stopped without finishing it: a crash, a node lost) is finished under its final
//! name once nothing has written to it for [`ABANDONED_AFTER`], as far as it was
//! written (cut after its last whole block, its duration filled in: players show its
//! length and seek in it), so a recording is never lost with the SFU that made it. Every gateway
//! sweeps the shared volume; two removing the same file is harmless.

use std::path::Path;
use std::sync::Weak;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

use crate::AppState;

/// How often the directory is swept.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// A recording being written gets a write every few seconds while its track sends
/// (the writer's buffer fills with its frames), and is marked alive by its SFU every
/// [`confer_sfu::record::MARK_ALIVE_EVERY`] while it does not; one untouched this long
/// has no writer left.
pub(crate) const ABANDONED_AFTER: Duration = Duration::from_secs(3600);

// An SFU that writes a file marks it alive several times before the sweep would take
// it for abandoned.
const _: () =
    assert!(ABANDONED_AFTER.as_secs() >= 4 * confer_sfu::record::MARK_ALIVE_EVERY.as_secs());

/// What one sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Swept {
    /// Finished recordings older than the keep, removed.
    pub(crate) expired: u64,
    /// Half-written files with no writer left, finished under their final names.
    pub(crate) recovered: u64,
}

/// Sweeps every [`SWEEP_EVERY`] while the gateway lives, when it serves recordings.
pub(crate) async fn run(state: Weak<AppState>) {
    loop {
        let Some(state) = state.upgrade() else { return };
        let Some(dir) = state.config.recordings.clone() else {
            return;
        };
        let keep = state.config.recordings_keep;
        let swept = tokio::task::spawn_blocking(move || sweep(&dir, keep, SystemTime::now())).await;
        match swept {
            Ok(Ok(swept)) => {
                state
                    .metrics
                    .recordings_expired
                    .fetch_add(swept.expired, Relaxed);
                state
                    .metrics
                    .recordings_recovered
                    .fetch_add(swept.recovered, Relaxed);
                if swept != Swept::default() {
                    tracing::info!(
                        expired = swept.expired,
                        recovered = swept.recovered,
                        "swept the recordings directory"
                    );
                }
            }
            Ok(Err(err)) => tracing::warn!(error = %err, "cannot sweep the recordings directory"),
            Err(err) => tracing::warn!(error = %err, "the recordings sweep stopped"),
        }
        drop(state);
        tokio::time::sleep(SWEEP_EVERY).await;
    }
}

/// One pass over every room's directory under `dir` at `now`: finished files last
/// written more than `keep` ago removed (none without one), abandoned ones finished,
/// and room directories left empty (and not new) removed.
pub(crate) fn sweep(dir: &Path, keep: Option<Duration>, now: SystemTime) -> std::io::Result<Swept> {
    let mut swept = Swept::default();
    let rooms = match std::fs::read_dir(dir) {
        Ok(rooms) => rooms,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(swept),
        Err(err) => return Err(err),
    };
    for room in rooms {
        let room = room?;
        if !room.file_type()?.is_dir() {
            continue;
        }
        let room_dir = room.path();
        for recorded in confer_sfu::record::list_in(&room_dir)? {
            let path = room_dir.join(&recorded.file);
            let Some(age) = age(&path, now) else {
                continue; // gone meanwhile
            };
            if recorded.in_progress {
                if age >= ABANDONED_AFTER {
                    // Its SFU stopped mid-recording: cut after the last whole block,
                    // the duration filled in. One that cannot be read is finished as
                    // it is (it was ours to keep, not to judge).
                    match confer_sfu::record::recover(&path) {
                        Ok(recovered) => tracing::info!(
                            file = %path.display(),
                            duration_ms = recovered.duration_ms,
                            cut = recovered.cut,
                            "finished an abandoned recording"
                        ),
                        Err(err) => tracing::warn!(
                            file = %path.display(),
                            error = %err,
                            "an abandoned recording could not be read; finished as it is"
                        ),
                    }
                    if std::fs::rename(&path, room_dir.join(recorded.finished_name())).is_ok() {
                        swept.recovered += 1;
                    }
                }
            } else if keep.is_some_and(|keep| age >= keep) && std::fs::remove_file(&path).is_ok() {
                swept.expired += 1;
            }
        }
        // An SFU starting a room's first recording makes its directory just before
        // the file: only one empty for a while goes.
        if age(&room_dir, now).is_some_and(|age| age >= ABANDONED_AFTER) {
            let _ = std::fs::remove_dir(&room_dir); // fails while it holds anything
        }
    }
    Ok(swept)
}

/// How long ago `path` was last modified; `None` when it is gone.
fn age(path: &Path, now: SystemTime) -> Option<Duration> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(now.duration_since(modified).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    /// A file `name` under `room_dir`, last written `ago`.
    fn file(room_dir: &Path, name: &str, ago: Duration) {
        let path = room_dir.join(name);
        std::fs::write(&path, b"\x1a\x45\xdf\xa3").unwrap();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(SystemTime::now() - ago)
            .unwrap();
    }

    /// A recording `name` as an SFU that stopped mid-write leaves it: Opus frames up to
    /// 1,960 ms, never finished, and half of one more block; last written `ago`.
    fn unfinished(room_dir: &Path, name: &str, ago: Duration) {
        use confer_sfu::record::{TrackFormat, Webm};
        let path = room_dir.join(name);
        let mut webm = Webm::start(
            File::create(&path).unwrap(),
            TrackFormat::Opus,
            1_700_000_000_000,
        )
        .unwrap();
        for i in 0..50 {
            webm.frame(i * 40, true, &[0xfc; 40]).unwrap();
        }
        drop(webm);
        let mut file = File::options().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut file, &[0xA3, 0x40, 0x80, 0x81]).unwrap();
        file.set_modified(SystemTime::now() - ago).unwrap();
    }

    fn names(room_dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(room_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn old_recordings_go_abandoned_ones_are_finished_and_the_rest_stay() {
        let dir = std::env::temp_dir().join(format!("confer-sweep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let room = dir.join("acme%2Fboard");
        std::fs::create_dir_all(&room).unwrap();
        file(&room, "ada.camera.1000.webm", 8 * DAY);
        file(&room, "ada.microphone.1000.webm", 6 * DAY);
        // Half-written: two an SFU left long ago (one of them not a WebM file at
        // all), one being written now.
        unfinished(&room, "bob.microphone.2000.webm.part", 2 * ABANDONED_AFTER);
        file(&room, "bob.camera.2000.webm.part", 2 * ABANDONED_AFTER);
        file(&room, "cy.camera.3000.webm.part", Duration::from_secs(5));
        // Not a recording: never touched, however old.
        file(&room, "notes.txt", 30 * DAY);
        // A room whose recordings are all gone, its directory long unchanged.
        let empty = dir.join("acme%2Fold");
        std::fs::create_dir_all(&empty).unwrap();
        file(&empty, "eve.camera.1.webm", 9 * DAY);

        let swept = sweep(&dir, Some(7 * DAY), SystemTime::now()).unwrap();

        assert_eq!(
            swept,
            Swept {
                expired: 2,
                recovered: 2
            }
        );
        assert_eq!(
            names(&room),
            [
                "ada.microphone.1000.webm",
                "bob.camera.2000.webm",
                "bob.microphone.2000.webm",
                "cy.camera.3000.webm.part",
                "notes.txt"
            ]
        );
        // The real one, cut after its last whole block, lists its length.
        let listed = confer_sfu::record::list_in(&room).unwrap();
        let bob = listed
            .iter()
            .find(|r| r.file == "bob.microphone.2000.webm")
            .unwrap();
        assert_eq!(bob.duration_ms, Some(1_960));
        assert!(!bob.in_progress);
        // Its directory was just changed by the removal: it goes on a later sweep.
        assert!(empty.exists());
        let later = SystemTime::now() + ABANDONED_AFTER;
        assert_eq!(
            sweep(&dir, Some(7 * DAY), later).unwrap(),
            Swept {
                expired: 0,
                recovered: 1
            },
            "the file written to a moment ago, an hour on"
        );
        assert!(!empty.exists(), "an empty room directory goes");
        assert!(room.exists(), "one holding files stays");

        // Without a keep, nothing finished is removed, however old.
        let kept = sweep(&dir, None, SystemTime::now() + 365 * DAY).unwrap();
        assert_eq!(kept, Swept::default());
        assert_eq!(names(&room).len(), 5);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_directory_is_nothing_to_sweep() {
        let missing = std::env::temp_dir().join("confer-sweep-none-here");
        assert_eq!(
            sweep(&missing, Some(DAY), SystemTime::now()).unwrap(),
            Swept::default()
        );
    }
}
