//! Removes shared files' bytes once their chat entries are gone. The chat service
//! queues a file whenever its entry goes (a delete, the room's retention, the room's
//! deletion); any gateway may remove the bytes (the files volume is shared), and only
//! then is the file taken off the queue, so a crash between the two repeats a removal
//! rather than leaking a file. Uploads that never finished (`.part`) are removed too.

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use confer_chat::ChatResult;
use tokio::sync::Notify;

use crate::AppState;
use crate::files::stored_path;

/// Files listed per call to the chat service.
const BATCH: u32 = 200;
/// An unfinished upload older than this was abandoned (grants last five minutes).
const ABANDONED_AFTER: Duration = Duration::from_secs(3600);

/// Wakes the sweeper before its next tick (after a delete this gateway handled).
#[derive(Default)]
pub(crate) struct SweepNow(Notify);

impl SweepNow {
    pub(crate) fn wake(&self) {
        self.0.notify_one();
    }
}

/// Sweeps every `config.files.sweep_every`, and whenever woken, while the gateway lives.
pub(crate) async fn run(state: Weak<AppState>, wake: Arc<SweepNow>) {
    loop {
        let every = match state.upgrade() {
            Some(state) => {
                match sweep(&state).await {
                    Ok(0) => {}
                    Ok(removed) => tracing::info!(removed, "removed shared files of gone messages"),
                    Err(err) => tracing::warn!(error = %err, "cannot sweep shared files"),
                }
                remove_abandoned(&state.config.files.dir).await;
                state.config.files.sweep_every
            }
            None => return,
        };
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = wake.0.notified() => {}
        }
    }
}

/// Removes the bytes of every queued file, then dequeues them; returns how many.
pub(crate) async fn sweep(state: &AppState) -> ChatResult<usize> {
    let mut total = 0;
    loop {
        let queued = state.chat.api.files_to_remove(BATCH).await?;
        let full = queued.len() == BATCH as usize;
        let mut removed = Vec::with_capacity(queued.len());
        for file in queued {
            if remove(state, &file).await {
                removed.push(file);
            }
        }
        if removed.is_empty() {
            return Ok(total);
        }
        total += removed.len();
        state.chat.api.files_removed(removed).await?;
        if !full {
            return Ok(total);
        }
    }
}

/// Whether `file`'s bytes are gone now (removed, never stored, or not ours to name).
async fn remove(state: &AppState, file: &str) -> bool {
    let Ok(path) = stored_path(&state.config.files, file) else {
        return true;
    };
    match tokio::fs::remove_file(&path).await {
        Ok(()) => true,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => true,
        Err(err) => {
            tracing::warn!(%err, path = %path.display(), "cannot remove a shared file");
            false
        }
    }
}

/// Removes unfinished uploads older than [`ABANDONED_AFTER`].
async fn remove_abandoned(dir: &Path) {
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let path = entry.path();
        if path.extension().is_none_or(|ext| ext != "part") {
            continue;
        }
        let old = entry
            .metadata()
            .await
            .and_then(|m| m.modified())
            .ok()
            .and_then(|at| SystemTime::now().duration_since(at).ok())
            .is_some_and(|age| age > ABANDONED_AFTER);
        if old {
            let _ = tokio::fs::remove_file(&path).await;
        }
    }
}
