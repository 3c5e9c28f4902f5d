//! One coordinator at a time: a lease-based lock in the cluster itself.
//!
//! The lock is a key under a configurable prefix, created in a transaction
//! only if it does not exist, attached to a lease the holder keeps alive.
//! The revision that created it is the fencing token: it only grows, every
//! mutating agent call carries it, and an agent refuses a token lower than
//! one it has seen, so a coordinator that lost its lock (a pause longer
//! than the lease) cannot act any more. A holder that died leaves a lease
//! that nobody renews: the next coordinator waits for it to expire instead
//! of being refused. A journal of the run's events is kept under the same
//! prefix.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use serde::{Deserialize, Serialize};
use steward_proto::EtcdVersion;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::engine::check::{Check, Verdict, ids};
use crate::engine::connect::Connector;
use crate::engine::connect::etcd;
use crate::engine::events::{Event, EventSink};

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/steward";
/// Lease time-to-live: a dead holder blocks others at most this long.
pub const TTL_SECONDS: i64 = 10;
/// How often the holder renews its lease.
const KEEPALIVE: Duration = Duration::from_secs(1);
/// How many runs' journals are kept; older ones are deleted when a run
/// takes the lock.
pub const JOURNALS_KEPT: usize = 20;
/// How long to watch a holder's lease to see whether it is renewed.
const OBSERVE_HOLDER: Duration = Duration::from_secs(6);
/// Without renewals a lease loses the whole watch (6 s, 5 after rounding
/// to etcd's whole seconds); a holder renewing every second loses at most
/// 2 plus however late its renewal is. A fall below this means alive.
const DEAD_HOLDER_FALL: i64 = 5;

/// How long renewals may keep failing (a member restarting under the
/// keepalive stream) before the holder warns.
const RENEWAL_WARN_AFTER: Duration = Duration::from_secs(4);

/// Who holds the lock (its value).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// The command it runs ("upgrade to 3.5.16").
    pub command: String,
    /// When it took the lock (RFC 3339).
    pub since: String,
    /// The process's start time in clock ticks since boot: with the boot
    /// id and the pid namespace, it tells whether the holder still runs
    /// (a pid alone could be reused). 0 when unknown.
    #[serde(default)]
    pub start_ticks: u64,
    /// The kernel's boot id of the holder's host.
    #[serde(default)]
    pub boot_id: String,
    /// The holder's pid namespace ("pid:[4026531836]").
    #[serde(default)]
    pub pid_namespace: String,
}

/// What a coordinator waiting for the lock is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockWait {
    /// Another coordinator holds it: watching whether it renews its lease.
    Watching {
        /// The holder, in words.
        holder: String,
        /// Seconds left on its lease.
        expires_in: i64,
        /// How long the watch lasts.
        watch: Duration,
    },
    /// The holder does not renew: waiting for its lease to expire.
    Expiring {
        /// The holder, in words.
        holder: String,
        /// Seconds left on its lease.
        expires_in: i64,
        /// When it expires (RFC 3339).
        at: String,
    },
    /// The holder was a process of this host that no longer runs: its
    /// lease was revoked at once.
    Revoked {
        /// The holder, in words.
        holder: String,
    },
}

impl LockWait {
    /// The event that tells a coordinator's operator about this wait.
    #[must_use]
    pub fn event(&self) -> Event {
        let up_to_seconds = match self {
            Self::Watching { watch, .. } => watch.as_secs(),
            Self::Expiring { expires_in, .. } => expires_in.unsigned_abs(),
            Self::Revoked { .. } => 0,
        };
        Event::WaitingFor {
            member: None,
            check: "one-coordinator".into(),
            reason: self.to_string(),
            up_to_seconds,
        }
    }
}

impl std::fmt::Display for LockWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Watching {
                holder,
                expires_in,
                watch,
            } => write!(
                f,
                "the cluster lock is held by {holder}; its lease expires in {expires_in}s unless renewed: \
                 watching {}s whether it is",
                watch.as_secs()
            ),
            Self::Expiring { holder, expires_in, at } => write!(
                f,
                "the cluster lock's holder {holder} does not renew its lease: waiting {expires_in}s for it to \
                 expire (at {at})"
            ),
            Self::Revoked { holder } => write!(
                f,
                "the cluster lock's holder {holder} no longer runs on this host: its lease was revoked"
            ),
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (pid {} on {}, since {})",
            self.command, self.pid, self.host, self.since
        )
    }
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another coordinator holds it and renews it.
    #[error("another coordinator holds the cluster lock {key}: {holder}")]
    Held {
        /// The lock key.
        key: String,
        /// Who.
        holder: String,
    },
    /// etcd did not answer.
    #[error("cannot take the cluster lock {key}: {reason}")]
    Etcd {
        /// The lock key.
        key: String,
        /// What etcd said.
        reason: String,
    },
}

/// A held lock; release it when done. Dropping it stops renewing the lease
/// without revoking it, like [`ClusterLock::abandon`]: a run that is
/// dropped half way (cancelled, or a panic) holds the lock for one more
/// TTL at most, never until the process exits.
pub struct ClusterLock {
    client: Client,
    /// How the members are reached.
    connector: Connector,
    /// The members it was taken through, asked one at a time.
    endpoints: Vec<String>,
    key: String,
    prefix: String,
    lease: i64,
    token: i64,
    keepalive: JoinHandle<()>,
    /// Set once the lease is gone or could not be renewed for a whole TTL.
    lost: Arc<OnceLock<Loss>>,
    /// When the keepalive task sent its latest renewal that etcd accepted.
    renewals: watch::Receiver<Instant>,
    /// The member the keepalive stream must not stay on (one about to be
    /// stopped).
    avoid: watch::Sender<Option<String>>,
    /// The member the keepalive stream is open on, if one is.
    stream_on: watch::Receiver<Option<String>>,
}

/// Why the holder may not act any more.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the cluster lock {key} was lost: {loss}; stopped before changing anything more (run the same command again)")]
pub struct LockLost {
    /// The lock key.
    pub key: String,
    /// What happened to the lease.
    pub loss: Loss,
}

/// What happened to the lock's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Loss {
    /// etcd answered a renewal that the lease is gone, although an earlier
    /// renewal, within one TTL, had been accepted: etcd revoked a lease its
    /// holder kept alive.
    #[error(
        "etcd revoked its lease although steward had renewed it {:.1}s before, within its TTL of {TTL_SECONDS}s",
        .since_renewal.as_secs_f32()
    )]
    RevokedWhileRenewed {
        /// From the last accepted renewal to the answer that it is gone.
        since_renewal: Duration,
    },
    /// No renewal reached etcd for a whole TTL (no quorum, or steward
    /// could not reach any member).
    #[error("no renewal of its lease was accepted for a whole TTL ({TTL_SECONDS}s)")]
    NotRenewed,
    /// A member answered that the lease is gone, and no renewal was
    /// accepted for one TTL after the question.
    #[error("etcd reports its lease expired or revoked")]
    Gone,
}

impl std::fmt::Debug for ClusterLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterLock")
            .field("key", &self.key)
            .field("lease", &self.lease)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl Holder {
    /// This process, running `command`.
    #[must_use]
    pub fn this_process(command: &str) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        let since = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let pid = std::process::id();
        Self {
            host,
            pid,
            command: command.to_owned(),
            since,
            start_ticks: crate::engine::process_id::ProcessId::of(pid).map_or(0, |id| id.start_ticks),
            boot_id: boot_id(),
            pid_namespace: pid_namespace(),
        }
    }

    /// True only when the holder was a process of this very host, boot and
    /// pid namespace that no longer runs (its pid is free or belongs to a
    /// process started at another time). Anything unknown is "maybe alive".
    #[must_use]
    pub fn is_gone_from_this_host(&self) -> bool {
        if self.start_ticks == 0 || self.boot_id.is_empty() || self.pid_namespace.is_empty() {
            return false;
        }
        if self.boot_id != boot_id() || self.pid_namespace != pid_namespace() {
            return false;
        }
        crate::engine::process_id::ProcessId::of(self.pid).is_none_or(|now| now.start_ticks != self.start_ticks)
    }
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_owned())
        .unwrap_or_default()
}

fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .map(|link| link.display().to_string())
        .unwrap_or_default()
}

fn etcd_error(key: &str) -> impl Fn(etcd_client::Error) -> LockError + '_ {
    move |e| LockError::Etcd {
        key: key.to_owned(),
        reason: etcd::describe(&e),
    }
}

/// Takes the lock for a run of `command` (roll, rollback, restore): as
/// [`acquire`], with this process as the holder and every wait said to
/// `events`. What a failure means for the run is the run's to decide.
///
/// # Errors
/// As [`acquire`].
pub async fn take_for_run(
    connector: &Connector,
    endpoints: &[String],
    prefix: &str,
    command: &str,
    events: &mut dyn EventSink,
) -> Result<ClusterLock, LockError> {
    let mut on_wait = |wait: &LockWait| events.emit(&wait.event());
    acquire(
        connector,
        endpoints,
        prefix,
        &Holder::this_process(command),
        &mut on_wait,
    )
    .await
}

/// The `one-coordinator` check of a run with `verdict` and `message`.
#[must_use]
pub fn one_coordinator(verdict: Verdict, message: impl Into<String>) -> Check {
    Check {
        rule: ids::ONE_COORDINATOR,
        verdict,
        message: message.into(),
        source: "steward",
    }
}

/// The `one-coordinator` check when the lock could not be taken: another
/// live coordinator holds it (always a refusal), or etcd could not give it
/// (`unavailable` says how the run takes that).
#[must_use]
pub fn refusal(error: &LockError, unavailable: Verdict) -> Check {
    match error {
        LockError::Held { key, holder } => {
            one_coordinator(Verdict::Fail, format!("another coordinator holds {key}: {holder}"))
        }
        LockError::Etcd { .. } => one_coordinator(unavailable, error.to_string()),
    }
}

/// Takes the lock under `prefix`, waiting out a holder whose lease is not
/// renewed (it died), refusing one that is alive; `on_wait` hears what
/// the wait is for. A holder that was a process of this host and no longer
/// runs has its lease revoked at once: nothing can renew it, and the
/// fencing token would refuse it anyway.
pub async fn acquire(
    connector: &Connector,
    endpoints: &[String],
    prefix: &str,
    holder: &Holder,
    on_wait: &mut dyn FnMut(&LockWait),
) -> Result<ClusterLock, LockError> {
    let prefix = prefix.trim_end_matches('/').to_owned();
    let key = format!("{prefix}/lock");
    let mut client = etcd::connect(connector, endpoints, "the cluster lock")
        .await
        .map_err(|e| LockError::Etcd {
            key: key.clone(),
            reason: e.reason,
        })?;
    let value = serde_json::to_string(holder).unwrap_or_default();
    // A dead holder's lease expires within TTL; a few rounds are enough.
    for _ in 0..4 {
        let lease = client
            .lease_grant(TTL_SECONDS, None)
            .await
            .map_err(etcd_error(&key))?
            .id();
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.as_str(),
                value.as_str(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let answer = client.txn(txn).await.map_err(etcd_error(&key))?;
        if answer.succeeded() {
            let token = answer.header().map_or(0, etcd_client::ResponseHeader::revision);
            let lost = Arc::new(OnceLock::new());
            let (renewed, renewals) = watch::channel(Instant::now());
            let (avoid, avoided) = watch::channel(None);
            let (open_on, stream_on) = watch::channel(None);
            let keepalive = tokio::spawn(keep_alive(
                connector.clone(),
                endpoints.to_vec(),
                lease,
                Arc::clone(&lost),
                renewed,
                (avoided, open_on),
            ));
            tracing::info!(%key, token, "took the cluster lock");
            return Ok(ClusterLock {
                client,
                connector: connector.clone(),
                endpoints: endpoints.to_vec(),
                key,
                prefix,
                lease,
                token,
                keepalive,
                lost,
                renewals,
                avoid,
                stream_on,
            });
        }
        let _ = client.lease_revoke(lease).await;
        let Some((held_by, held_lease)) = answer.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(get) => get
                .kvs()
                .first()
                .map(|kv| (String::from_utf8_lossy(kv.value()).into_owned(), kv.lease())),
            _ => None,
        }) else {
            continue; // gone in between: try again
        };
        let parsed = serde_json::from_str::<Holder>(&held_by).ok();
        let holder_text = parsed.as_ref().map_or(held_by, ToString::to_string);
        if parsed.as_ref().is_some_and(Holder::is_gone_from_this_host) {
            // Revoking a lease that expired meanwhile is fine too.
            let _ = client.lease_revoke(held_lease).await;
            on_wait(&LockWait::Revoked { holder: holder_text });
            continue;
        }
        let before = ttl(&mut client, held_lease).await;
        on_wait(&LockWait::Watching {
            holder: holder_text.clone(),
            expires_in: before.unwrap_or(0),
            watch: OBSERVE_HOLDER,
        });
        tokio::time::sleep(OBSERVE_HOLDER).await;
        let after = ttl(&mut client, held_lease).await;
        match (before, after) {
            (Some(before), Some(after)) if before - after < DEAD_HOLDER_FALL => {
                return Err(LockError::Held {
                    key,
                    holder: holder_text,
                });
            }
            (_, Some(after)) => {
                let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(after);
                on_wait(&LockWait::Expiring {
                    holder: holder_text,
                    expires_in: after,
                    at: at
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                });
                tokio::time::sleep(Duration::from_secs(u64::try_from(after).unwrap_or(0) + 1)).await;
            }
            (_, None) => {}
        }
    }
    Err(LockError::Etcd {
        key,
        reason: "the lock stayed taken after its holder's lease should have expired".into(),
    })
}

async fn ttl(client: &mut Client, lease: i64) -> Option<i64> {
    client
        .lease_time_to_live(lease, None)
        .await
        .ok()
        .map(|r| r.ttl())
        .filter(|ttl| *ttl > 0)
}

/// Renews the lease every second for as long as the lock is held. A
/// keepalive stream dies with its connection (the member it went to may be
/// the one being restarted) or stalls with it (a frozen member, or a
/// follower waiting for a frozen leader to be replaced), so when a renewal
/// through the open stream fails, the next one goes out at once through
/// every member together, and the first answer wins: one member that cannot
/// answer costs one attempt, not one attempt per member in turn. Only a
/// lease etcd reports gone, or no renewal for a whole TTL, marks the lock
/// lost. The stream leaves a member named in `avoid` before the next
/// renewal: etcd 3.5 and later wait up to 7 s for open streams to end when
/// they stop, so a stream left on a member being stopped holds its restart
/// back.
async fn keep_alive(
    connector: Connector,
    endpoints: Vec<String>,
    lease: i64,
    lost: Arc<OnceLock<Loss>>,
    renewed_at: watch::Sender<Instant>,
    (mut avoid, open_on): (watch::Receiver<Option<String>>, watch::Sender<Option<String>>),
) {
    let ttl = Duration::from_secs(TTL_SECONDS.unsigned_abs());
    let mut stream: Option<(KeepAlive, String)> = None;
    let mut renewed = Instant::now();
    // A renewal that fails once is normal (the member under the stream
    // restarts during a roll); only failures that last are worth a warning.
    let mut warned = false;
    let mut pause = true;
    loop {
        if pause {
            // A member to avoid is acted on at once, not after the pause.
            tokio::select! {
                () = tokio::time::sleep(KEEPALIVE) => {}
                changed = avoid.changed() => if changed.is_err() {
                    // The lock is gone; the task is about to be stopped.
                    tokio::time::sleep(KEEPALIVE).await;
                },
            }
        }
        // etcd counts the TTL from when it got the renewal: count from when
        // it was sent, never later. Taken before the member to avoid is
        // read, so that a renewal sent after `move_off` asked went
        // elsewhere.
        let sent = Instant::now();
        let avoided = avoid.borrow_and_update().clone();
        if stream.as_ref().is_some_and(|(_, on)| Some(on) == avoided.as_ref()) {
            stream = None;
            open_on.send_replace(None);
        }
        let others: Vec<String> = endpoints
            .iter()
            .filter(|e| Some(*e) != avoided.as_ref())
            .cloned()
            .collect();
        let candidates = if others.is_empty() { &endpoints } else { &others };
        let answer = match stream.as_mut() {
            Some((open, _)) => tokio::time::timeout(KEEPALIVE * 2, renew(open, lease))
                .await
                .unwrap_or_else(|_| {
                    Err(RenewError::Timeout {
                        endpoint: "the keepalive stream".into(),
                        waited: KEEPALIVE * 2,
                    })
                }),
            None => renew_through_any(&connector, candidates, lease)
                .await
                .map(|(remaining, open, on)| {
                    open_on.send_replace(Some(on.clone()));
                    stream = Some((open, on));
                    remaining
                }),
        };
        match answer {
            Ok(remaining) if remaining > 0 => {
                if warned {
                    tracing::info!(lease, "the cluster lock is renewed again");
                    warned = false;
                }
                renewed = sent;
                renewed_at.send_replace(sent);
                pause = true;
            }
            Ok(_) => {
                // The last accepted renewal was within one TTL (else the
                // loop had ended below): etcd revoked a lease kept alive.
                let since_renewal = renewed.elapsed();
                tracing::error!(
                    lease,
                    ?since_renewal,
                    "etcd revoked the cluster lock's lease although it was renewed"
                );
                let _ = lost.set(Loss::RevokedWhileRenewed { since_renewal });
                return;
            }
            Err(error) => {
                // Straight on through every member, unless that is what
                // just failed.
                pause = stream.is_none();
                stream = None;
                open_on.send_replace(None);
                let failing_for = renewed.elapsed();
                if failing_for >= RENEWAL_WARN_AFTER && !warned {
                    tracing::warn!(%error, ?failing_for, "cannot renew the cluster lock; retrying until its lease would expire");
                    warned = true;
                } else {
                    tracing::debug!(%error, "a renewal of the cluster lock failed; retrying");
                }
            }
        }
        if renewed.elapsed() >= ttl {
            tracing::error!(lease, "the cluster lock was not renewed for a whole TTL");
            let _ = lost.set(Loss::NotRenewed);
            return;
        }
    }
}

/// An open keepalive stream.
type KeepAlive = (etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream);

/// Opens a keepalive stream through every member at once and renews through
/// each; the first to answer (the remaining TTL, 0 for a lease etcd no
/// longer knows) wins and keeps its stream, returned with its member.
async fn renew_through_any(
    connector: &Connector,
    endpoints: &[String],
    lease: i64,
) -> Result<(i64, KeepAlive, String), RenewError> {
    let attempts = endpoints.iter().map(|endpoint| {
        Box::pin(async move {
            let attempt = async {
                let client = etcd::connect_member(connector, endpoint, "the cluster lock")
                    .await
                    .map_err(|e| RenewError::Member {
                        endpoint: endpoint.clone(),
                        reason: e.to_string(),
                    })?;
                let mut open = client
                    .clone()
                    .lease_keep_alive(lease)
                    .await
                    .map_err(|e| RenewError::Member {
                        endpoint: endpoint.clone(),
                        reason: e.to_string(),
                    })?;
                let remaining = renew(&mut open, lease).await?;
                Ok::<_, RenewError>((remaining, open, endpoint.clone()))
            };
            Box::pin(tokio::time::timeout(KEEPALIVE * 2, attempt))
                .await
                .unwrap_or_else(|_| {
                    Err(RenewError::Timeout {
                        endpoint: endpoint.clone(),
                        waited: KEEPALIVE * 2,
                    })
                })
        })
    });
    futures::future::select_ok(attempts)
        .await
        .map(|(answer, _others)| answer)
        .map_err(|last| RenewError::NoMember(Box::new(last)))
}

/// Why the lock's lease could not be renewed.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// A member could not be reached or refused the keepalive stream.
    #[error("{endpoint}: {reason}")]
    Member {
        /// The member's client URL.
        endpoint: String,
        /// What the client said.
        reason: String,
    },
    /// A member did not answer in time.
    #[error("{endpoint}: no answer within {waited:?}")]
    Timeout {
        /// The member's client URL.
        endpoint: String,
        /// How long it had.
        waited: Duration,
    },
    /// The renewal itself failed.
    #[error("lease {lease}: {reason}")]
    KeepAlive {
        /// The lease.
        lease: i64,
        /// What the client said.
        reason: String,
    },
    /// etcd closed the keepalive stream.
    #[error("the keepalive stream ended")]
    StreamEnded,
    /// No member renewed it; the last member's error.
    #[error("no member renewed the lease (last: {0})")]
    NoMember(Box<RenewError>),
}

/// One renewal through an open keepalive stream: the lease's remaining TTL
/// in seconds.
async fn renew(open: &mut KeepAlive, lease: i64) -> Result<i64, RenewError> {
    let (keeper, responses) = open;
    let failed = |e: etcd_client::Error| RenewError::KeepAlive {
        lease,
        reason: e.to_string(),
    };
    keeper.keep_alive().await.map_err(failed)?;
    match responses.message().await.map_err(failed)? {
        Some(answer) => Ok(answer.ttl()),
        None => Err(RenewError::StreamEnded),
    }
}

impl ClusterLock {
    /// The fencing token every mutating agent call carries.
    #[must_use]
    pub const fn token(&self) -> i64 {
        self.token
    }

    /// An event sink that appends every event to the journal under
    /// `<prefix>/journal/<token>/`, in order, without slowing the run.
    #[must_use]
    pub fn journal(&self) -> Journal {
        let (sender, mut receiver) = mpsc::unbounded_channel::<String>();
        let mut client = self.client.clone();
        let base = format!("{}/journal/{:020}", self.prefix, self.token);
        let writer = tokio::spawn(async move {
            let mut seq = 0_u64;
            while let Some(line) = receiver.recv().await {
                let key = format!("{base}/{seq:06}");
                if let Err(error) = client.put(key, line, None).await {
                    tracing::warn!(error = %etcd::describe(&error), "cannot write the journal");
                }
                seq += 1;
            }
        });
        Journal {
            sender: Some(sender),
            writer: Some(writer),
        }
    }

    /// Whether this holder may still act: the keepalive has not given up,
    /// and etcd still reports the lease alive. An etcd that cannot be asked
    /// right now (a member restarting) leaves the answer to the keepalive.
    ///
    /// # Errors
    /// [`LockLost`] when the lease is gone.
    pub async fn ensure_held(&mut self) -> Result<(), LockLost> {
        let lost = |loss: Loss| LockLost {
            key: self.key.clone(),
            loss,
        };
        if let Some(loss) = self.lost.get() {
            return Err(lost(*loss));
        }
        let lease = self.lease;
        let asked = Instant::now();
        let answer = etcd::through_any(
            &self.connector,
            &self.endpoints,
            "the cluster lock",
            |mut client| async move { client.lease_time_to_live(lease, None).await },
        )
        .await;
        match answer {
            // While a leader is frozen, a member has been seen to answer
            // that the lease is gone although the leader renews it. A lease
            // etcd revoked never comes back, and a renewal of an expired
            // one is refused: a renewal accepted after this question proves
            // the lease alive.
            Ok(answer) if answer.ttl() <= 0 && self.renewed_since(asked).await => {
                tracing::debug!(
                    lease,
                    "a member said the lock's lease is gone, but it was renewed since"
                );
                Ok(())
            }
            Ok(answer) if answer.ttl() <= 0 => {
                // The keepalive may have found out first, and more exactly.
                Err(lost(*self.lost.get_or_init(|| Loss::Gone)))
            }
            Ok(_) => Ok(()),
            Err(error) => {
                tracing::debug!(%error, "cannot ask for the lock's lease; trusting the keepalive");
                Ok(())
            }
        }
    }

    /// True once the keepalive task has a renewal accepted that it sent
    /// after `asked`, within one lease TTL. Waiting that long is safe: no
    /// step is taken meanwhile, and a lease that no renewal reaches within
    /// its TTL has expired anyway. A shorter wait lost the lock while a
    /// frozen leader's successor was still being elected.
    async fn renewed_since(&self, asked: Instant) -> bool {
        let mut renewals = self.renewals.clone();
        let ttl = Duration::from_secs(TTL_SECONDS.unsigned_abs());
        tokio::time::timeout(ttl, renewals.wait_for(|sent| *sent > asked))
            .await
            .is_ok_and(|renewed| renewed.is_ok())
    }

    /// Moves the keepalive stream off the member at `endpoint` before it is
    /// stopped, and waits (a few seconds at most) for a renewal through
    /// another member. etcd 3.5 and later wait up to 7 s for open streams
    /// to end when they stop; the renewals must not hold a restart back.
    /// False when no renewal came through another member in time: the stop
    /// then only takes longer.
    pub async fn move_off(&self, endpoint: &str) -> bool {
        if !self.endpoints.iter().any(|e| e != endpoint) {
            return false; // no other member to renew through
        }
        self.avoid.send_replace(Some(endpoint.to_owned()));
        let mut stream_on = self.stream_on.clone();
        // Nothing to wait for unless the stream is on that member now.
        tokio::time::timeout(
            KEEPALIVE * 4,
            stream_on.wait_for(|on| on.as_deref().is_some_and(|on| on != endpoint)),
        )
        .await
        .is_ok_and(|moved| moved.is_ok())
    }

    /// Deletes the journals of all but the newest `keep` runs (this one
    /// included). Best effort: a failure is logged, the run goes on.
    pub async fn prune_journals(&mut self, keep: usize) {
        let base = format!("{}/journal/", self.prefix);
        let listed = self
            .client
            .get(
                base.as_str(),
                Some(etcd_client::GetOptions::new().with_prefix().with_keys_only()),
            )
            .await;
        let keys: Vec<String> = match listed {
            Ok(answer) => answer
                .kvs()
                .iter()
                .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
                .collect(),
            Err(error) => {
                tracing::warn!(error = %etcd::describe(&error), "cannot list the journals");
                return;
            }
        };
        for run in journals_to_prune(&base, &keys, keep) {
            let prefix = format!("{base}{run}/");
            if let Err(error) = self
                .client
                .delete(prefix.as_str(), Some(etcd_client::DeleteOptions::new().with_prefix()))
                .await
            {
                tracing::warn!(error = %etcd::describe(&error), %prefix, "cannot delete an old journal");
            }
        }
    }

    /// Stops renewing the lease without revoking it: the cluster the lock
    /// lives in is being replaced (a restore), so there is nothing to
    /// release and nobody to renew it with.
    pub fn abandon(self) {
        self.keepalive.abort();
    }

    /// Releases the lock (revokes the lease, deleting the key).
    pub async fn release(mut self) {
        self.keepalive.abort();
        if let Err(error) = self.client.lease_revoke(self.lease).await {
            tracing::warn!(error = %etcd::describe(&error), key = %self.key, "cannot release the cluster lock; it expires by itself");
        }
    }
}

impl Drop for ClusterLock {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

/// Writes events to the journal (see [`ClusterLock::journal`]).
#[derive(Debug)]
pub struct Journal {
    sender: Option<mpsc::UnboundedSender<String>>,
    writer: Option<JoinHandle<()>>,
}

impl Journal {
    /// Waits until every event is written.
    pub async fn flush(mut self) {
        self.sender.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.await;
        }
    }
}

impl EventSink for Journal {
    fn emit(&mut self, event: &Event) {
        if let (Some(sender), Ok(line)) = (&self.sender, serde_json::to_string(event)) {
            let _ = sender.send(line);
        }
    }
}

/// The run directories (zero-padded tokens) under `base` beyond the newest
/// `keep`, oldest first.
fn journals_to_prune(base: &str, keys: &[String], keep: usize) -> Vec<String> {
    let mut runs: Vec<&str> = keys
        .iter()
        .filter_map(|key| key.strip_prefix(base)?.split('/').next())
        .filter(|run| !run.is_empty())
        .collect();
    runs.sort_unstable();
    runs.dedup();
    let excess = runs.len().saturating_sub(keep);
    runs[..excess].iter().map(|run| (*run).to_owned()).collect()
}

/// Whether a leader on this etcd release, stalled long enough for the
/// others to elect a new one (a slow disk, a starved CPU, a paused VM),
/// revokes every lease it thinks expired as it wakes: its revocations are
/// forwarded to the new leader and applied, although their holders kept
/// renewing them there. etcd fixed it in 3.4.31 and 3.5.13.
#[must_use]
pub fn revokes_leases_after_a_stall(version: &EtcdVersion) -> bool {
    match version.minor_version() {
        (3, minor) if minor < 4 => true,
        (3, 4) => version.patch() < 31,
        (3, 5) => version.patch() < 13,
        (major, _) => major < 3,
    }
}

/// What a lost lock's message adds when etcd itself ended the lease: why
/// etcd does that, naming the members whose release does it after any
/// leader stall. Nothing when no renewal got through (a lease nobody can
/// renew expires; there is nothing more to explain).
///
/// etcd's guard against a stale leader's revocations (3.4.31, 3.5.13) skips
/// its leadership check while the member's clock ticks, and a paused
/// process ticks again the moment it resumes, before it learns it lost its
/// leadership: a leader whose whole process was paused revokes, on every
/// release, the leases it thinks expired as it resumes.
#[must_use]
pub fn revocation_hint(loss: Loss, members: &[(String, EtcdVersion)]) -> Option<String> {
    if loss == Loss::NotRenewed {
        return None;
    }
    let mut hint = "an etcd leader whose process was paused (a stopped process, a paused VM) revokes, as it \
                    resumes, every lease it thinks expired, in every etcd release"
        .to_owned();
    let affected: Vec<String> = members
        .iter()
        .filter(|(_, version)| revokes_leases_after_a_stall(version))
        .map(|(name, version)| format!("{name} {version}"))
        .collect();
    if !affected.is_empty() {
        hint.push_str(&format!(
            "; etcd before 3.4.31 and 3.5.13 ({}) does so after any leader stall (a slow disk, a starved CPU)",
            affected.join(", ")
        ));
    }
    Some(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_before_the_fix_revoke_leases_after_a_leader_stall() {
        let affected = ["3.3.25", "3.4.0", "3.4.23", "3.4.30", "3.5.0", "3.5.12"];
        let fixed = ["3.4.31", "3.4.40", "3.5.13", "3.5.36", "3.6.0", "3.7.3"];
        for text in affected {
            let version: EtcdVersion = text.parse().expect("a version");
            assert!(revokes_leases_after_a_stall(&version), "{text}");
        }
        for text in fixed {
            let version: EtcdVersion = text.parse().expect("a version");
            assert!(!revokes_leases_after_a_stall(&version), "{text}");
        }
    }

    #[test]
    fn the_hint_explains_a_revocation_and_names_only_the_members_on_affected_releases() {
        let member = |name: &str, text: &str| (name.to_owned(), text.parse::<EtcdVersion>().expect("a version"));
        let revoked = Loss::RevokedWhileRenewed {
            since_renewal: Duration::from_millis(900),
        };
        let mixed = [member("m0", "3.5.36"), member("m1", "3.4.23"), member("m2", "3.4.23")];
        let hint = revocation_hint(revoked, &mixed).expect("a hint");
        assert!(
            hint.contains("(m1 3.4.23, m2 3.4.23) does so after any leader stall"),
            "{hint}"
        );
        assert!(!hint.contains("m0"), "{hint}");
        let fixed = [member("m0", "3.5.36"), member("m1", "3.6.17")];
        let hint = revocation_hint(Loss::Gone, &fixed).expect("a hint");
        assert!(hint.contains("paused"), "{hint}");
        assert!(!hint.contains("3.4.31"), "{hint}");
        assert_eq!(revocation_hint(Loss::NotRenewed, &mixed), None);
    }

    #[test]
    fn a_lost_lock_says_how_the_lease_was_lost() {
        let lost = LockLost {
            key: "/steward/lock".into(),
            loss: Loss::RevokedWhileRenewed {
                since_renewal: Duration::from_millis(1500),
            },
        };
        assert_eq!(
            lost.to_string(),
            "the cluster lock /steward/lock was lost: etcd revoked its lease although steward had renewed it 1.5s \
             before, within its TTL of 10s; stopped before changing anything more (run the same command again)"
        );
    }

    #[test]
    fn only_the_oldest_runs_beyond_the_kept_ones_are_pruned() {
        let base = "/steward/journal/";
        let keys: Vec<String> = [3, 1, 2, 3, 4]
            .iter()
            .enumerate()
            .map(|(seq, token)| format!("{base}{token:020}/{seq:06}"))
            .collect();
        assert_eq!(
            journals_to_prune(base, &keys, 2),
            [format!("{:020}", 1), format!("{:020}", 2)]
        );
        assert!(journals_to_prune(base, &keys, 4).is_empty());
        assert!(journals_to_prune(base, &[], 1).is_empty());
    }
}
