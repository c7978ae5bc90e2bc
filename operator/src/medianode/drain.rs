//! Which pods drain, when the StatefulSet may shrink, and when rooms must move.
//! Pure: the snapshot, the recorded drain, the cordoned pods and `now` in, a plan out.
//!
//! A StatefulSet removes its highest ordinals first, so scaling from `current` to
//! `desired` pods drains pods `desired..current`. A pod annotated
//! `confer.dev/drain: "true"` (cordoned) drains too, and stays. Draining pods are told
//! to take no new rooms; the StatefulSet keeps the leaving ones until discovery
//! reports no rooms on any draining pod, or the MediaNode's drain deadline passes;
//! rooms still there at the deadline are moved (evacuated) first; only then does it
//! shrink. A cordoned pod stays draining, empty, until the annotation goes.

use confer_discovery::{NodeId, Snapshot};

use crate::crd::DrainStatus;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainPlan {
    /// Replicas to give the StatefulSet now.
    pub replicas: i32,
    /// The drain to record (and keep draining), if one is in progress.
    pub drain: Option<DrainStatus>,
    /// Pods whose rooms must be moved elsewhere before the StatefulSet shrinks (the
    /// deadline passed with rooms left on them).
    pub evacuate: Vec<String>,
    /// Pods that take no new rooms, drained or not: the leaving and the cordoned.
    pub no_new_rooms: Vec<String>,
}

pub fn pod_name(node: &str, ordinal: i32) -> String {
    format!("{node}-sfu-{ordinal}")
}

/// The ordinal of a StatefulSet pod name (`eu-sfu-2` → 2).
pub fn ordinal(pod: &str) -> Option<i32> {
    pod.rsplit_once('-')?.1.parse().ok()
}

/// `current` is the StatefulSet's replicas now (`None`: it does not exist yet);
/// `cordoned` the pods annotated to drain.
#[allow(clippy::too_many_arguments)]
pub fn plan(
    node: &str,
    desired: i32,
    current: Option<i32>,
    cordoned: &[String],
    recorded: Option<&DrainStatus>,
    snapshot: &Snapshot,
    deadline_seconds: i64,
    now_ms: i64,
) -> DrainPlan {
    let current = current.unwrap_or(desired).max(desired);
    let leaving: Vec<String> = (desired..current).map(|i| pod_name(node, i)).collect();
    let mut pods = leaving.clone();
    pods.extend(cordoned.iter().filter(|p| !leaving.contains(p)).cloned());
    let no_new_rooms = pods.clone();
    if pods.is_empty() {
        return DrainPlan {
            replicas: desired,
            drain: None,
            evacuate: Vec::new(),
            no_new_rooms,
        };
    }
    let rooms_left: i64 = pods
        .iter()
        .filter_map(|pod| snapshot.member(&NodeId(pod.clone())))
        .filter_map(|member| member.report.as_ref())
        .map(|report| i64::from(report.rooms))
        .sum();
    let (started_at_ms, deadline_ms) = match recorded {
        // The same drain (or one it grew from) keeps its start and deadline.
        Some(drain) if pods.iter().all(|p| drain.pods.contains(p)) => {
            (drain.started_at_ms, drain.deadline_ms)
        }
        _ => (now_ms, now_ms + deadline_seconds * 1_000),
    };
    // Rooms are read from the registry, which may lag a report: before pods are let
    // go, empty only counts once the drain has been recorded (a reconcile earlier).
    let empty = rooms_left == 0 && (recorded.is_some() || leaving.is_empty());
    if empty || now_ms >= deadline_ms {
        // Past the deadline, the rooms still there move (an empty pod moves nothing).
        let evacuate = if empty { Vec::new() } else { pods };
        return DrainPlan {
            replicas: desired,
            drain: None,
            evacuate,
            no_new_rooms,
        };
    }
    DrainPlan {
        replicas: current,
        drain: Some(DrainStatus {
            pods,
            started_at_ms,
            deadline_ms,
            rooms_left,
        }),
        evacuate: Vec::new(),
        no_new_rooms,
    }
}

#[cfg(test)]
mod tests {
    use confer_discovery::{Health, Member, NodeReport, NodeState, Registration};

    use super::*;

    fn snapshot(rooms: &[(&str, u32)]) -> Snapshot {
        Snapshot {
            members: rooms
                .iter()
                .map(|(id, rooms)| Member {
                    registration: Registration {
                        id: NodeId::from(*id),
                        region: "eu".into(),
                        zone: String::new(),
                        control: "x:1".into(),
                        capacity: 100,
                    },
                    health: Health::Draining,
                    report: Some(NodeReport {
                        id: NodeId::from(*id),
                        region: "eu".into(),
                        zone: String::new(),
                        state: NodeState::Draining,
                        capacity: 100,
                        participants: rooms * 3,
                        rooms: *rooms,
                        reported_at_ms: 0,
                    }),
                })
                .collect(),
            stale: false,
            refreshed_at_ms: 0,
        }
    }

    #[test]
    fn scaling_up_or_creating_needs_no_drain() {
        let none = snapshot(&[]);
        assert_eq!(plan("eu", 3, None, &[], None, &none, 600, 0).replicas, 3);
        assert_eq!(plan("eu", 3, Some(2), &[], None, &none, 600, 0).drain, None);
    }

    #[test]
    fn a_shrink_waits_for_the_rooms_on_the_highest_ordinals() {
        let busy = snapshot(&[("eu-sfu-0", 5), ("eu-sfu-1", 2), ("eu-sfu-2", 1)]);
        let first = plan("eu", 1, Some(3), &[], None, &busy, 600, 1_000);
        assert_eq!(first.replicas, 3, "pods stay while they hold rooms");
        let drain = first.drain.expect("draining");
        assert_eq!(drain.pods, vec!["eu-sfu-1", "eu-sfu-2"]);
        assert_eq!(
            (drain.started_at_ms, drain.deadline_ms, drain.rooms_left),
            (1_000, 601_000, 3)
        );

        let later = plan("eu", 1, Some(3), &[], Some(&drain), &busy, 600, 60_000);
        assert_eq!(
            later.drain.as_ref().map(|d| d.started_at_ms),
            Some(1_000),
            "same drain"
        );

        let empty = snapshot(&[("eu-sfu-0", 5), ("eu-sfu-1", 0), ("eu-sfu-2", 0)]);
        let done = plan("eu", 1, Some(3), &[], Some(&drain), &empty, 600, 61_000);
        assert_eq!(
            done,
            DrainPlan {
                replicas: 1,
                drain: None,
                evacuate: Vec::new(),
                no_new_rooms: vec!["eu-sfu-1".into(), "eu-sfu-2".into()],
            }
        );
    }

    #[test]
    fn the_deadline_ends_a_drain_whatever_is_left() {
        let busy = snapshot(&[("eu-sfu-1", 4)]);
        let drain = plan("eu", 1, Some(2), &[], None, &busy, 10, 0)
            .drain
            .expect("draining");
        assert_eq!(
            plan("eu", 1, Some(2), &[], Some(&drain), &busy, 10, 9_999).replicas,
            2
        );
        assert_eq!(
            plan("eu", 1, Some(2), &[], Some(&drain), &busy, 10, 10_000).replicas,
            1
        );
    }

    #[test]
    fn an_unrecorded_drain_never_ends_on_its_first_look() {
        let empty = snapshot(&[("eu-sfu-1", 0)]);
        let first = plan("eu", 1, Some(2), &[], None, &empty, 600, 0);
        assert_eq!(
            first.replicas, 2,
            "the pods are told to drain before they go"
        );
    }

    #[test]
    fn a_cordoned_pod_drains_and_stays() {
        let cordoned = vec!["eu-sfu-0".to_owned()];
        let busy = snapshot(&[("eu-sfu-0", 2), ("eu-sfu-1", 1)]);
        let first = plan("eu", 2, Some(2), &cordoned, None, &busy, 60, 0);
        assert_eq!(first.replicas, 2, "a cordon never shrinks the pool");
        assert_eq!(first.no_new_rooms, cordoned);
        let drain = first.drain.expect("waiting for its rooms");
        assert_eq!(
            (drain.pods.clone(), drain.rooms_left),
            (cordoned.clone(), 2)
        );

        let late = plan("eu", 2, Some(2), &cordoned, Some(&drain), &busy, 60, 60_000);
        assert_eq!(late.evacuate, cordoned, "its rooms move at the deadline");

        // Empty afterwards: nothing to wait for, and it still takes no new rooms.
        let empty = snapshot(&[("eu-sfu-0", 0), ("eu-sfu-1", 1)]);
        let after = plan("eu", 2, Some(2), &cordoned, None, &empty, 60, 61_000);
        assert_eq!((after.drain, after.evacuate.len()), (None, 0));
        assert_eq!(after.no_new_rooms, cordoned);
    }
}
