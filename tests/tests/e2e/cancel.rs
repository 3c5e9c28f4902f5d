//! Cancelling a roll: a run cancelled after its first member stops at the
//! next safe point with the outcome `cancelled`, leaves the other members
//! untouched, frees the cluster lock at once (well within one lease TTL),
//! and the same request run again finishes the job from where it stopped.

use std::time::{Duration, Instant};

use steward_coordinator::engine::cluster::lock::{self, DEFAULT_PREFIX, Holder, TTL_SECONDS};
use steward_coordinator::engine::events::{Event, EventSink, Lines, Recorder};
use steward_coordinator::engine::roll::plan::Direction;
use steward_coordinator::engine::roll::{self, CANCELLED, Outcome, RollOptions};
use steward_tests::rolling::{agents, assert_all_on};
use steward_tests::{ClusterBuilder, Writer, binaries::binaries_dir, lost_writes, newest};
use tokio_util::sync::CancellationToken;

/// Cancels the run as soon as its first member is done, as an operator's
/// Ctrl-C would.
struct CancelAfterFirstMember {
    cancel: CancellationToken,
    inner: Recorder<Lines<std::io::Stderr>>,
}

impl EventSink for CancelAfterFirstMember {
    fn emit(&mut self, event: &Event) {
        if matches!(event, Event::MemberDone { .. }) {
            self.cancel.cancel();
        }
        self.inner.emit(event);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roll_cancelled_after_its_first_member_frees_the_lock_and_a_rerun_finishes() {
    let old = newest(3, 4);
    let new = newest(3, 5);
    let cluster = ClusterBuilder::new(3, old.clone()).start().await;
    let writer = Writer::start(cluster.all_client_urls(), "cancel/").await;
    writer.wait_for_more(10, Duration::from_secs(30)).await;

    let options = RollOptions::new(Direction::Upgrade, new.version.clone(), Some(binaries_dir()));
    let cancel = options.cancel.clone();
    let mut sink = CancelAfterFirstMember {
        cancel,
        inner: Recorder {
            events: Vec::new(),
            inner: Lines(std::io::stderr()),
        },
    };
    let report = roll::run(cluster.connector(), agents(&cluster), options, &mut sink).await;
    let stopped = Instant::now();

    assert_eq!(
        report.result,
        Outcome::Cancelled,
        "{report:#?}; {}",
        cluster.logs_hint()
    );
    let failure = report.failure.as_ref().expect("where it stopped");
    assert_eq!(failure.gate, CANCELLED, "{failure:?}");
    let changed: Vec<&str> = report
        .members
        .iter()
        .filter(|m| m.to.is_some())
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(
        changed.len(),
        1,
        "exactly the first member changed: {:?}",
        report.members
    );
    let events = &sink.inner.events;
    assert_eq!(
        events.iter().filter(|e| matches!(e, Event::Activated { .. })).count(),
        1,
        "no second member was touched: {events:#?}"
    );
    let mut on_new = 0;
    for i in 0..cluster.members.len() {
        let version = cluster.status(i).await.member.unwrap_or_default().version;
        if version == new.version.to_string() {
            on_new += 1;
        } else {
            assert_eq!(version, old.version.to_string(), "{}", cluster.members[i].name);
        }
    }
    assert_eq!(
        on_new, 1,
        "one member on {} and the others on {}",
        new.version, old.version
    );

    // The lock is free: another coordinator takes it right away.
    let taken = lock::acquire(
        cluster.connector(),
        &cluster.all_client_urls(),
        DEFAULT_PREFIX,
        &Holder::this_process("cancel test"),
        &mut |_| {},
    )
    .await
    .expect("the cancelled run released the cluster lock");
    let waited = stopped.elapsed();
    assert!(
        waited < Duration::from_secs(TTL_SECONDS.unsigned_abs()),
        "the lock was free only after {waited:?}"
    );
    taken.release().await;

    // The same request again finishes the job, keeping the first run's
    // snapshot (the backup of the old version).
    let options = RollOptions::new(Direction::Upgrade, new.version.clone(), Some(binaries_dir()));
    let mut events = Recorder {
        events: Vec::new(),
        inner: Lines(std::io::stderr()),
    };
    let rerun = roll::run(cluster.connector(), agents(&cluster), options, &mut events).await;
    assert_eq!(rerun.result, Outcome::Succeeded, "{rerun:#?}; {}", cluster.logs_hint());
    assert_all_on(&cluster, &new.version, "3.5.0").await;
    assert!(
        events
            .events
            .iter()
            .any(|e| matches!(e, Event::Snapshot { earlier_run: true, .. })),
        "the rerun keeps the first run's snapshot: {:#?}",
        events.events
    );
    assert_eq!(
        rerun.snapshot.as_ref().map(|s| &s.id),
        report.snapshot.as_ref().map(|s| &s.id)
    );
    writer.wait_for_more(10, Duration::from_secs(30)).await;
    let writes = writer.stop().await;
    let mut client = cluster.etcd(&[0, 1, 2]).await;
    let lost = lost_writes(&mut client, "cancel/", &writes).await;
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
}
