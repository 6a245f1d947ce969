//! The order in which queued image jobs start: round-robin between owners, first in first out
//! within one owner. One person's ten large requests then delay everyone else by at most the
//! job already running, instead of by all ten.
//!
//! The policy is a pure function of the queue (so positions can be computed, shown and tested):
//! the owner whose turn it is, is the one served least recently (never served first, ties broken
//! by who has waited longest); that owner's oldest queued job starts.

use std::collections::{BTreeMap, HashMap};

/// A queued job as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub id: String,
    pub owner: String,
    /// Order of arrival (the job's queue sequence number): FIFO within one owner.
    pub seq: i64,
}

/// When each owner last had a job start (a sequence, larger is later); owners never served are
/// absent and go first.
pub type LastServed = HashMap<String, i64>;

/// The jobs in the order they will start, if nothing else arrives.
pub fn order(waiting: &[Waiting], last_served: &LastServed) -> Vec<Waiting> {
    // Each owner's own queue, oldest first.
    let mut queues: BTreeMap<&str, Vec<&Waiting>> = BTreeMap::new();
    for job in waiting {
        queues.entry(job.owner.as_str()).or_default().push(job);
    }
    for queue in queues.values_mut() {
        queue.sort_by_key(|j| j.seq);
        queue.reverse(); // pop() takes the oldest
    }
    // Turn order key: (last served, first waiting seq); never served sorts first.
    let mut served: HashMap<&str, (i64, i64)> = queues
        .iter()
        .map(|(owner, queue)| {
            let first = queue.last().map(|j| j.seq).unwrap_or(i64::MAX);
            (
                *owner,
                (last_served.get(*owner).copied().unwrap_or(i64::MIN), first),
            )
        })
        .collect();
    let mut tick = served.values().map(|(s, _)| *s).max().unwrap_or(0).max(0);
    let mut out = Vec::with_capacity(waiting.len());
    while let Some((&owner, _)) = served
        .iter()
        .filter(|(o, _)| queues.get(**o).is_some_and(|q| !q.is_empty()))
        .min_by_key(|(o, key)| (**key, **o))
    {
        let queue = queues.get_mut(owner).expect("owner has a queue");
        let job = queue.pop().expect("queue is not empty");
        out.push(job.clone());
        tick += 1;
        served.insert(
            owner,
            (tick, queue.last().map(|j| j.seq).unwrap_or(i64::MAX)),
        );
    }
    out
}

/// The job that starts next, if any.
pub fn next(waiting: &[Waiting], last_served: &LastServed) -> Option<Waiting> {
    order(waiting, last_served).into_iter().next()
}

/// How many jobs are ahead of each queued job: those running plus those that start before it.
pub fn positions(
    waiting: &[Waiting],
    last_served: &LastServed,
    running: usize,
) -> HashMap<String, usize> {
    order(waiting, last_served)
        .into_iter()
        .enumerate()
        .map(|(k, job)| (job.id, running + k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, owner: &str, seq: i64) -> Waiting {
        Waiting {
            id: id.into(),
            owner: owner.into(),
            seq,
        }
    }

    fn ids(jobs: &[Waiting]) -> Vec<&str> {
        jobs.iter().map(|j| j.id.as_str()).collect()
    }

    #[test]
    fn one_owner_is_first_in_first_out() {
        let q = [job("c", "a", 3), job("a", "a", 1), job("b", "a", 2)];
        assert_eq!(ids(&order(&q, &LastServed::new())), ["a", "b", "c"]);
    }

    #[test]
    fn owners_take_turns_and_a_newcomer_goes_next() {
        // Alice's first job is running (served at 10); four more are queued; Bob arrives last.
        let mut q: Vec<Waiting> = (2..=5).map(|i| job(&format!("a{i}"), "alice", i)).collect();
        q.push(job("b1", "bob", 6));
        let served = LastServed::from([("alice".to_string(), 10)]);
        assert_eq!(ids(&order(&q, &served)), ["b1", "a2", "a3", "a4", "a5"]);
        let p = positions(&q, &served, 1);
        assert_eq!(p["b1"], 1);
        assert_eq!(p["a5"], 5);
    }

    #[test]
    fn interleaves_several_owners_round_robin() {
        let q = [
            job("a1", "a", 1),
            job("a2", "a", 2),
            job("a3", "a", 3),
            job("b1", "b", 4),
            job("b2", "b", 5),
            job("c1", "c", 6),
        ];
        assert_eq!(
            ids(&order(&q, &LastServed::new())),
            ["a1", "b1", "c1", "a2", "b2", "a3"]
        );
        // b was served most recently, a before it, c never: c, a, b, …
        let served = LastServed::from([("a".to_string(), 1), ("b".to_string(), 2)]);
        assert_eq!(
            ids(&order(&q, &served)),
            ["c1", "a1", "b1", "a2", "b2", "a3"]
        );
    }

    #[test]
    fn empty_queue_has_no_next() {
        assert_eq!(next(&[], &LastServed::new()), None);
    }
}
