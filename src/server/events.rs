//! The event intake loop of `serve` (`[sources.events]`, kind `sqs`): long-polls the queue,
//! reads each message (`sources::events::parse_message`), hides one whose termination has not
//! settled yet until it has, has the pipeline analyse the settled ones, and deletes a message
//! only once its instance's result is stored (or was already). A message whose analysis
//! failed comes back after `retry_after`; an unreadable one is left to the queue's redrive
//! policy (its dead-letter queue). Analyses take the scan lock: an event never races a scan
//! over the same instance, and the scheduled scan, still running, skips what events stored.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use tokio::sync::watch;

use super::AppState;
use crate::pipeline::EventAnalysis;
use crate::sources::events::sqs::{Message, SqsQueue};
use crate::sources::events::{parse_message, Intake};

/// After a failed receive (the queue or the network is down), the next try waits this long.
const RECEIVE_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5);
/// A hidden message is shown again this much after its settle time (clock skew, rounding).
const SETTLE_MARGIN_SECS: i64 = 1;

/// Runs until `stop`.
pub async fn event_loop(
    state: Arc<AppState>,
    queue: Arc<SqsQueue>,
    mut stop: watch::Receiver<bool>,
) {
    tracing::info!(queue = queue.queue_url(), "event intake: polling");
    loop {
        let received = tokio::select! {
            r = queue.receive() => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        match received {
            Ok(messages) if messages.is_empty() => {}
            Ok(messages) => handle(&state, &queue, messages).await,
            Err(e) => {
                state.metrics.error("events");
                tracing::error!(error = %e.message, code = ?e.code, "event intake: cannot receive");
                tokio::select! {
                    _ = tokio::time::sleep(RECEIVE_BACKOFF) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    }
}

/// Deletes a message (its instance is done), logging a failure: it then comes back, and is
/// found already analysed.
async fn acknowledge(state: &AppState, queue: &SqsQueue, m: &Message) {
    if let Err(e) = queue.delete(m).await {
        state.metrics.error("events");
        tracing::warn!(message_id = %m.id, error = %e.message, "event intake: cannot delete a handled message; it comes back and is skipped");
    }
}

async fn hide(state: &AppState, queue: &SqsQueue, m: &Message, secs: i64) {
    if let Err(e) = queue.hide_for(m, secs).await {
        state.metrics.error("events");
        tracing::warn!(message_id = %m.id, error = %e.message, "event intake: cannot change a message's visibility; it comes back after its visibility timeout");
    }
}

async fn handle(state: &Arc<AppState>, queue: &SqsQueue, messages: Vec<Message>) {
    let cfg = &state.pipeline.config().sources.events;
    let now = Utc::now();
    let mut ready = Vec::new();
    for m in messages {
        match parse_message(&m.body) {
            Err(e) => {
                state.metrics.event("unreadable");
                tracing::warn!(message_id = %m.id, receive_count = m.receive_count(), error = %e,
                    "event intake: unreadable message left in the queue (its redrive policy moves it to the dead-letter queue)");
            }
            Ok(Intake::Ignore(why)) => {
                state.metrics.event("ignored");
                tracing::info!(message_id = %m.id, reason = %why, "event intake: nothing to analyse");
                acknowledge(state, queue, &m).await;
            }
            Ok(Intake::Termination(t)) => {
                let due = t.end_time.unwrap_or(t.time) + cfg.settle();
                if due > now {
                    state.metrics.event("deferred");
                    let secs = (due - now).num_seconds() + SETTLE_MARGIN_SECS;
                    tracing::info!(instance_id = %t.instance_id, seconds = secs, "event intake: waiting for the evidence to settle");
                    hide(state, queue, &m, secs).await;
                } else {
                    ready.push((m, *t));
                }
            }
        }
    }
    if ready.is_empty() {
        return;
    }
    let terminations: Vec<_> = ready.iter().map(|(_, t)| t.clone()).collect();
    let outcome = {
        // One analysis at a time with scans (a running scan may be fetching these very
        // instances; once it is done they are found analysed).
        let _scan = state.scan_lock.lock().await;
        state.pipeline.analyse_terminations(&terminations).await
    };
    let retry = cfg.retry_after_secs();
    match outcome {
        Err(e) => {
            state.metrics.error("events");
            tracing::error!(error = %e, "event intake: analysis failed; the messages come back");
            for (m, _) in &ready {
                state.metrics.event("failed");
                hide(state, queue, m, retry).await;
            }
        }
        Ok(results) => {
            let by_id: HashMap<String, EventAnalysis> = results.into_iter().collect();
            for (m, t) in &ready {
                match by_id.get(&t.instance_id) {
                    Some(EventAnalysis::Stored) => {
                        state.metrics.event("analysed");
                        tracing::info!(instance_id = %t.instance_id, "event intake: analysed and stored");
                        acknowledge(state, queue, m).await;
                    }
                    Some(EventAnalysis::AlreadyKnown) => {
                        state.metrics.event("already_analysed");
                        acknowledge(state, queue, m).await;
                    }
                    Some(EventAnalysis::Failed(error)) => {
                        state.metrics.event("failed");
                        tracing::warn!(instance_id = %t.instance_id, %error, "event intake: analysis failed; the message comes back");
                        hide(state, queue, m, retry).await;
                    }
                    None => {
                        // Cannot happen (every termination gets a result); be loud, not silent.
                        state.metrics.event("failed");
                        tracing::error!(instance_id = %t.instance_id, "event intake: no result for the instance; the message comes back");
                        hide(state, queue, m, retry).await;
                    }
                }
            }
        }
    }
}
