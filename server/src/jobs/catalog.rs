//! Which models the cluster paints (several processes on one database): this process tells
//! the others what it paints and on which execution provider, and learns what they paint, so
//! `/api/models`, the tool's schema and request checks offer exactly the models some live
//! worker serves.

use std::time::Duration;

use super::JobService;
use crate::imaging::catalog::ModelDescription;

/// How often the live nodes' models are read again.
const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// Publishes this process's models (none when it does not paint).
pub(super) async fn advertise(service: &JobService) {
    let inner = &service.inner;
    let paints = inner.settings.run_jobs;
    let models = if paints {
        inner.engine.describe_local()
    } else {
        Vec::new()
    };
    let provider = inner.engine.health().execution_provider;
    let json = serde_json::to_string(&models).unwrap_or_else(|_| "[]".into());
    inner
        .cluster
        .advertise(paints && !models.is_empty(), provider, json)
        .await;
    // Wakes the other nodes' `follow` (and idle workers, who find nothing new): a worker that
    // just started is offered at once, not at the next refresh.
    inner.cluster.announce_work().await;
}

/// Keeps the engine's list of models painted elsewhere current, until the service stops: read
/// again every few seconds (nodes that stop heartbeating drop out) and whenever a node
/// announces itself. When this process's models folder changes, the others are told again.
pub(super) async fn follow(service: JobService) {
    let inner = &service.inner;
    let mut announced = inner.cluster.work_signal();
    let mut scans = inner.engine.scans();
    loop {
        match inner.cluster.live_nodes().await {
            Ok(nodes) => {
                let models: Vec<ModelDescription> = nodes
                    .iter()
                    .filter(|n| n.paints != 0 && n.id != inner.cluster.node_id())
                    .flat_map(|n| {
                        serde_json::from_str::<Vec<ModelDescription>>(&n.models).unwrap_or_default()
                    })
                    .collect();
                inner.engine.set_elsewhere(models);
            }
            Err(e) => tracing::warn!("cannot read which models other nodes paint: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(REFRESH_EVERY) => {}
            changed = announced.changed() => if changed.is_err() {
                tokio::time::sleep(REFRESH_EVERY).await;
            },
            changed = scans.changed() => match changed {
                Ok(()) => advertise(&service).await,
                Err(_) => tokio::time::sleep(REFRESH_EVERY).await,
            },
            _ = inner.stopping.cancelled() => return,
        }
    }
}
