//! The `steward` command line: every subcommand, flag and help text, and
//! the value parsers that check each input before any call is made (so a
//! malformed flag is a usage error, exit code 2, naming the flag).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use steward_proto::EtcdVersion;
use steward_proto::v1 as pb;

use crate::engine::connect::agent::AgentAddress;
use crate::engine::report::RunContext;
use crate::engine::roll::plan::Direction;
use crate::engine::roll::{Change, RollOptions, RollRequest};
use crate::local::ports::PortRange;
use crate::local::releases::VersionSpec;
use crate::output::OutputFormat;

const LONG_ABOUT: &str = "\
steward upgrades, downgrades and backs up etcd clusters through the
steward-agent that runs next to every etcd member.

`steward agent ...` talks to one agent directly: its status, the etcd
binaries it has staged, the flags a version would run with, version
switches, lifecycle, snapshots and etcd's logs.

`steward local up|down` starts and stops a cluster of real etcd members on
this machine, each under its own steward-agent, for trying steward out.

Results go to stdout (-w table|json); logs go to stderr (RUST_LOG, default
warn).";

/// The `steward` command line.
#[derive(Debug, Parser)]
#[command(name = "steward", version, about = "Upgrade, downgrade and back up etcd clusters", long_about = LONG_ABOUT, after_long_help = crate::cli::exit::HELP)]
pub struct Cli {
    /// Mutual TLS towards the agents.
    #[command(flatten)]
    pub agent_tls: AgentTlsArgs,
    /// Credentials towards etcd.
    #[command(flatten)]
    pub etcd_auth: EtcdAuthArgs,
    /// TLS towards etcd.
    #[command(flatten)]
    pub etcd_tls: EtcdTlsArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The `--out` value that means standard output.
pub const STDOUT: &str = "-";

impl Cli {
    /// True when the command writes data (a snapshot) to standard output,
    /// so that its report, and any error object, go to stderr instead.
    #[must_use]
    pub fn stdout_carries_data(&self) -> bool {
        matches!(&self.command, Command::Backup(args) if args.out.as_deref() == Some(std::path::Path::new(STDOUT)))
    }
}

/// TLS towards etcd's client API, as etcdctl takes it. Without these, a
/// cluster file's `[etcd]` is used.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "etcd TLS (any position)")]
pub struct EtcdTlsArgs {
    /// The CA of the etcd members' certificates.
    #[arg(long, global = true, env = "ETCDCTL_CACERT", value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// A client certificate for etcd (members with --client-cert-auth).
    #[arg(long, global = true, env = "ETCDCTL_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Its private key.
    #[arg(long, global = true, env = "ETCDCTL_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
}

impl EtcdTlsArgs {
    /// The files given.
    #[must_use]
    pub fn files(&self) -> crate::engine::connect::etcd::EtcdTlsFiles {
        crate::engine::connect::etcd::EtcdTlsFiles {
            cacert: self.cacert.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

/// An etcd user for clusters with auth enabled, as etcdctl takes it.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "etcd credentials (any position)")]
pub struct EtcdAuthArgs {
    /// The etcd user, USER or USER:PASSWORD, for clusters with auth enabled.
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_USER",
        value_name = "USER[:PASSWORD]",
        hide_env_values = true
    )]
    pub user: Option<String>,
    /// The etcd user's password (never printed or logged).
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
}

impl EtcdAuthArgs {
    /// The credentials, if a user was given.
    ///
    /// # Errors
    /// A message for a user without a password, an empty user, or a
    /// password without a user.
    pub fn credentials(&self) -> Result<Option<crate::engine::connect::etcd::Credentials>, String> {
        let Some(user) = &self.user else {
            return match self.password {
                Some(_) => Err("--password (or ETCDCTL_PASSWORD) needs --user (or ETCDCTL_USER)".into()),
                None => Ok(None),
            };
        };
        let (name, inline) = match user.split_once(':') {
            Some((name, password)) => (name, Some(password)),
            None => (user.as_str(), None),
        };
        if name.is_empty() {
            return Err("--user needs a user name".into());
        }
        let password = match (inline, &self.password) {
            (Some(_), Some(_)) => {
                return Err("give the password once: as --user USER:PASSWORD or as --password, not both".into());
            }
            (Some(password), None) => password.to_owned(),
            (None, Some(password)) => password.clone(),
            (None, None) => {
                return Err(format!(
                    "--user {name} needs a password: --password, ETCDCTL_PASSWORD or --user {name}:PASSWORD"
                ));
            }
        };
        Ok(Some(crate::engine::connect::etcd::Credentials::new(
            name.to_owned(),
            password,
        )))
    }
}

/// This caller's identity towards agents that serve mutual TLS. All three
/// or none; without them, a cluster file's `[agent_tls]` is used, and
/// without that, plaintext (agents in insecure development mode).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Agent TLS (any position)")]
pub struct AgentTlsArgs {
    /// The CA that signed the agents' certificates.
    #[arg(long, global = true, env = "STEWARD_AGENT_CACERT", value_name = "FILE", requires_all = ["agent_cert", "agent_key"])]
    pub agent_cacert: Option<PathBuf>,
    /// This caller's certificate, carrying its role (see `steward certs issue`).
    #[arg(long, global = true, env = "STEWARD_AGENT_CERT", value_name = "FILE", requires_all = ["agent_cacert", "agent_key"])]
    pub agent_cert: Option<PathBuf>,
    /// This caller's private key.
    #[arg(long, global = true, env = "STEWARD_AGENT_KEY", value_name = "FILE", requires_all = ["agent_cacert", "agent_cert"])]
    pub agent_key: Option<PathBuf>,
}

impl AgentTlsArgs {
    /// The files, when all three were given.
    #[must_use]
    pub fn files(&self) -> Option<crate::engine::connect::agent::AgentTlsFiles> {
        Some(crate::engine::connect::agent::AgentTlsFiles {
            cacert: self.agent_cacert.clone()?,
            cert: self.agent_cert.clone()?,
            key: self.agent_key.clone()?,
        })
    }
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Talk to one steward-agent directly (status, binaries, version switches, snapshots, logs).
    #[command(after_long_help = crate::cli::exit::HELP)]
    Agent(AgentArgs),
    /// Start or stop a cluster of real etcd members on this machine, each under its own steward-agent.
    #[command(after_long_help = crate::cli::exit::HELP)]
    Local(LocalArgs),
    /// Create the certificate authority of steward's mutual TLS, and issue agent and client certificates.
    #[command(after_long_help = crate::cli::exit::HELP)]
    Certs(CertsArgs),
    /// Show every member: versions, leader, raft, database, alarms, agent (exit 1 when not healthy).
    #[command(after_long_help = crate::cli::exit::HELP)]
    Status(StatusArgs),
    /// Show what an upgrade or downgrade to a version would do, and every check; changes nothing.
    #[command(after_long_help = crate::cli::exit::HELP)]
    Plan(PlanArgs),
    /// Upgrade the cluster to a version, one member at a time, the leader last.
    #[command(after_long_help = crate::cli::exit::HELP)]
    Upgrade(RollArgs),
    /// Downgrade the cluster to a version, one member at a time, the leader last.
    #[command(after_long_help = crate::cli::exit::HELP)]
    Downgrade(RollArgs),
    /// Take a verified snapshot through the leader's agent (or --member's), and copy it here with --out.
    #[command(after_long_help = crate::cli::exit::HELP)]
    Backup(BackupArgs),
    /// List the snapshots every agent keeps, newest first.
    #[command(after_long_help = crate::cli::exit::HELP)]
    Backups(BackupsArgs),
    /// Restore every member from one verified snapshot (an agent's or a file): stop, replace the data
    /// dirs (the old ones are kept), start, wait until healthy. Asks first; --yes for automation.
    #[command(after_long_help = crate::cli::exit::HELP)]
    Restore(RestoreArgs),
    /// Return the members a partial upgrade already changed to their previous version (before the
    /// cluster version flips), one at a time, the leader last; with --to-snapshot, bring a finished
    /// minor upgrade back from its pre-upgrade snapshot.
    #[command(after_long_help = crate::cli::exit::HELP)]
    Rollback(RollbackArgs),
    /// Many clusters at once from an inventory file: status, plan, upgrade, downgrade, backup; a canary
    /// first, waves by label, --parallel clusters at a time, stop at the first failure.
    #[command(after_long_help = crate::cli::exit::FLEET_HELP)]
    Fleet(FleetArgs),
    /// Read a snapshot file on this machine, without etcd or an agent: revision, keys, the etcd that wrote
    /// it, size, and its sha256 trailer checked.
    #[command(after_long_help = crate::cli::exit::HELP)]
    Snapshot(SnapshotArgs),
    /// This CLI's version and, given a cluster, every agent's, with a warning for each that differs.
    Version(VersionArgs),
    /// Print a shell completion script: `source <(steward completion bash)`, or save it where the
    /// shell loads completions from.
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (steward.1 and one per subcommand) into a directory.
    Man {
        /// Where the pages go (created if missing), e.g. /usr/local/share/man/man1.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

/// `steward fleet`.
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// What to do on every cluster.
    #[command(subcommand)]
    pub command: FleetCommand,
}

/// The fleet subcommands.
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// One line per cluster: health, versions, leader, cluster version, last change (exit 1 when one is
    /// not healthy or cannot be reached).
    #[command(after_long_help = crate::cli::exit::FLEET_HELP)]
    Status {
        /// The etcd key prefix of the cluster lock and the journal.
        #[arg(long, value_name = "PREFIX", default_value = crate::engine::cluster::lock::DEFAULT_PREFIX)]
        lock_prefix: String,
        /// The inventory and how to go through it.
        #[command(flatten)]
        fleet: FleetSelection,
        /// Output format.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// What an upgrade (or, with --downgrade, a downgrade) to a version would do on every cluster, and
    /// every check that would refuse it; changes nothing.
    #[command(after_long_help = crate::cli::exit::FLEET_HELP)]
    Plan {
        /// The target version.
        #[arg(long, value_name = "VERSION", value_parser = parse_version)]
        to: EtcdVersion,
        /// Plan a downgrade.
        #[arg(long)]
        downgrade: bool,
        /// The binaries.
        #[command(flatten)]
        source: BinarySourceArgs,
        /// The inventory and how to go through it.
        #[command(flatten)]
        fleet: FleetSelection,
        /// Output format.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Upgrade every cluster to a version, each as `steward upgrade` does, under its own lock; a rerun
    /// skips the clusters already done and resumes the interrupted one.
    #[command(after_long_help = crate::cli::exit::FLEET_HELP)]
    Upgrade(FleetRollArgs),
    /// Downgrade every cluster to a version, each as `steward downgrade` does.
    #[command(after_long_help = crate::cli::exit::FLEET_HELP)]
    Downgrade(FleetRollArgs),
    /// A verified snapshot of every cluster through its leader's agent, copied to
    /// DIR/<cluster>-<run>.db.
    #[command(after_long_help = crate::cli::exit::FLEET_HELP)]
    Backup {
        /// Where the copies go (an existing directory).
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
        /// The inventory and how to go through it.
        #[command(flatten)]
        fleet: FleetSelection,
        /// Output format.
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// The inventory, and in which order and how many at once.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Fleet")]
pub struct FleetSelection {
    /// The inventory: TOML listing each cluster by name, cluster file and labels [env: STEWARD_INVENTORY].
    #[arg(long, value_name = "FILE", env = "STEWARD_INVENTORY", hide_env_values = true)]
    pub inventory: PathBuf,
    /// How many clusters at once inside a wave.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallel: u16,
    /// Clusters (by name or label) that go first, one at a time, before any other; comma-separated.
    #[arg(long, value_name = "NAME|LABEL,...", value_delimiter = ',')]
    pub canary: Vec<String>,
    /// Labels, one wave each in this order after the canaries; the clusters left go last.
    #[arg(long, value_name = "LABEL,...", value_delimiter = ',')]
    pub waves: Vec<String>,
    /// Failed or refused clusters tolerated before the fleet stops starting new ones (0: stop at the first).
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub max_failures: usize,
}

/// `steward fleet upgrade|downgrade`.
#[derive(Debug, Args)]
pub struct FleetRollArgs {
    /// The target version, e.g. 3.5.16.
    #[arg(long, value_name = "VERSION", value_parser = parse_version)]
    pub to: EtcdVersion,
    /// The binaries.
    #[command(flatten)]
    pub source: BinarySourceArgs,
    /// How long each agent waits for its member on the new version before reverting it (default: the
    /// agent's activate_timeout).
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub activate_timeout: Option<Duration>,
    /// How each change runs and reports.
    #[command(flatten)]
    pub run: RunArgs,
    /// The inventory and how to go through it.
    #[command(flatten)]
    pub fleet: FleetSelection,
}

/// `steward restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The snapshot: an id `steward backups` lists, or a snapshot file on this machine (a path: it
    /// contains a '/' or names an existing file).
    #[arg(long, value_name = "ID|FILE")]
    pub snapshot: String,
    /// The version every member restores with and then runs (staged on every agent, with its restore
    /// tool); default: the version each member runs now.
    #[arg(long, value_name = "VERSION")]
    pub version: Option<EtcdVersion>,
    /// Do not ask: the restore goes ahead once its checks pass (for automation).
    #[arg(long)]
    pub yes: bool,
    /// Run every check, the agents' own included (the snapshot is sent to those that lack it and kept),
    /// then stop before any member is stopped; exit 0 when the restore would go ahead, 3 when refused.
    #[arg(long)]
    pub dry_run: bool,
    /// How long the restored cluster may take to be healthy, in HashKV agreement, at the snapshot's
    /// revision or later.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// The etcd key prefix of the cluster lock.
    #[arg(long, value_name = "PREFIX", default_value = crate::engine::cluster::lock::DEFAULT_PREFIX)]
    pub lock_prefix: String,
    /// Stream every step as NDJSON on stdout (the report follows as one JSON line).
    #[arg(long)]
    pub events: bool,
    /// The cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Output format of the final report.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `steward backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Take it through this member's agent instead of the leader's.
    #[arg(long, value_name = "NAME")]
    pub member: Option<String>,
    /// Also copy it to this local file (never overwritten), verified against its sha256 trailer; `-` writes
    /// it to standard output as it arrives (for a pipe; the report then goes to stderr, and a snapshot that
    /// fails its check at the end makes steward exit 1).
    #[arg(long, value_name = "FILE", conflicts_with = "out_dir")]
    pub out: Option<PathBuf>,
    /// Also copy it into this existing directory as <cluster>-<UTC time>-r<revision>.db (for scheduled
    /// backups; <cluster> is the cluster file's name, else etcd's cluster id).
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// With --out-dir: keep the newest N backups of this cluster there and remove older ones (0: keep
    /// all). Other files are never touched.
    #[arg(long, value_name = "N", default_value_t = 0, requires = "out_dir")]
    pub keep: usize,
    /// The cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `steward backups`.
#[derive(Debug, Args)]
pub struct BackupsArgs {
    /// The cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `steward certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: CertsCommand,
}

/// The `steward certs` subcommands.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create a certificate authority: DIR/ca.crt and DIR/ca.key (0600; never overwritten).
    Init {
        /// The directory of the CA (created 0700 if missing).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The CA's common name.
        #[arg(long, value_name = "NAME", default_value = "steward CA")]
        name: String,
        /// Days the CA is valid.
        #[arg(long, value_name = "DAYS", default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=36500))]
        days: u32,
        /// Output format.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Issue a certificate signed by DIR's CA: DIR/NAME.crt and DIR/NAME.key (0600; never overwritten).
    Issue {
        /// The directory of the CA; the new files go there too.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// agent: an agent's server certificate (needs --san); admin, operator, reader, backup: a
        /// client certificate with that role.
        #[arg(long, value_name = "ROLE", value_parser = parse_role)]
        role: steward_proto::Role,
        /// The certificate's name (its CN and file name): letters, digits, '.', '_', '-'.
        #[arg(long, value_name = "NAME", value_parser = parse_cert_name)]
        name: String,
        /// A host name or IP address the agent is reached by (repeat for several).
        #[arg(long = "san", value_name = "NAME_OR_IP", required_if_eq("role", "agent"))]
        sans: Vec<String>,
        /// Days the certificate is valid.
        #[arg(long, value_name = "DAYS", default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36500))]
        days: u32,
        /// Output format.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List every certificate in DIR, or every agent's served certificate and this caller's own, with
    /// its expiry, soonest first; exit 1 when one expires within --within or has expired (or, with a
    /// cluster, cannot be checked), naming them.
    Check {
        /// The directory of the certificates (every *.crt in it).
        #[arg(long, value_name = "DIR", conflicts_with_all = ["cluster", "agents"])]
        dir: Option<PathBuf>,
        /// The cluster whose agents to ask, instead of --dir.
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The warning threshold.
        #[arg(long, value_name = "DURATION", default_value = "30days", value_parser = parse_timeout)]
        within: Duration,
        /// Output format.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// A new key and certificate for DIR/NAME.crt, signed by DIR's CA with the same role and names; the
    /// old pair is kept as NAME.crt.replaced-<UTC time> (and .key). An agent serves it from its next restart.
    Renew {
        /// The directory of the CA and the certificate.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The certificate's name: DIR/NAME.crt (made by `steward certs issue`).
        #[arg(long, value_name = "NAME", value_parser = parse_cert_name)]
        name: String,
        /// Days the new certificate is valid.
        #[arg(long, value_name = "DAYS", default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36500))]
        days: u32,
        /// Output format.
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// `--role`.
///
/// # Errors
/// The roles there are.
pub fn parse_role(text: &str) -> Result<steward_proto::Role, String> {
    text.parse()
        .map_err(|e: steward_proto::role::UnknownRole| e.to_string())
}

/// `--name` of a certificate: a safe file name.
///
/// # Errors
/// When it is empty, too long, or holds other characters.
pub fn parse_cert_name(text: &str) -> Result<String, String> {
    let fine = !text.is_empty()
        && text.len() <= 64
        && !text.starts_with('.')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if fine && text != "ca" {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not a certificate name: 1 to 64 letters, digits, '.', '_' or '-', not starting with '.', not \"ca\""
        ))
    }
}

/// `steward rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// After a finished minor upgrade (the cluster version flipped): restore every member from the
    /// upgrade's pre-upgrade snapshot with the version it upgraded from. Everything written since the
    /// snapshot is lost; asks first.
    #[arg(long)]
    pub to_snapshot: bool,
    /// With --to-snapshot: do not ask (for automation).
    #[arg(long, requires = "to_snapshot")]
    pub yes: bool,
    /// How the change runs and reports (with --to-snapshot, --gate-timeout is how long the restored
    /// cluster may take to be healthy).
    #[command(flatten)]
    pub run: RunArgs,
    /// The cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// What every changing command (upgrade, downgrade, rollback) takes besides
/// its target: gates, the lock, the probe, and how to report.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// How long a member may take, after its agent switched it, to be healthy, caught up and in HashKV
    /// agreement with the others; the gate gets 10s more per GiB of the largest member database.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_timeout)]
    pub gate_timeout: Duration,
    /// Compare HashKV at each gate only while every member's database is at most this many MiB (0: never).
    /// HashKV stops a member's writes while it reads the whole database.
    #[arg(long, value_name = "MIB", default_value_t = crate::engine::roll::large_db::DEFAULT_HASH_KV_MAX_DB_MIB)]
    pub hash_kv_max_db_mib: u64,
    /// The etcd key prefix of the cluster lock (one coordinator at a time), the journal and the probe keys.
    #[arg(long, value_name = "PREFIX", default_value = crate::engine::cluster::lock::DEFAULT_PREFIX)]
    pub lock_prefix: String,
    /// Run the availability probe: write a probe key through every endpoint in turn during the change and
    /// report, per member step, the writes, the failed attempts and the longest stall (keys removed after).
    #[arg(long)]
    pub probe: bool,
    /// Stream every step as NDJSON on stdout (the report follows as one JSON line).
    #[arg(long)]
    pub events: bool,
    /// Output format of the final report.
    #[command(flatten)]
    pub output: OutputArgs,
}

impl RunArgs {
    /// Roll options for `request` as these flags say, for the run `context`.
    #[must_use]
    pub fn options(&self, request: RollRequest, context: RunContext) -> RollOptions {
        RollOptions {
            gate_timeout: self.gate_timeout,
            hash_kv_max_db_mib: self.hash_kv_max_db_mib,
            lock_prefix: self.lock_prefix.clone(),
            probe: self.probe,
            context,
            ..RollOptions::for_request(request)
        }
    }
}

/// `steward status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The etcd key prefix of the cluster lock and the journal (where the last change is recorded).
    #[arg(long, value_name = "PREFIX", default_value = crate::engine::cluster::lock::DEFAULT_PREFIX)]
    pub lock_prefix: String,
    /// The cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `steward snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

/// The `steward snapshot` subcommands.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Revision, total keys (as etcdutl counts them), the cluster version that wrote it, size, sha256
    /// and whether its trailer matches; exit 1 when the trailer does not match or the database cannot
    /// be read.
    Status {
        /// The snapshot file (`steward backup --out`, `etcdctl snapshot save`, or a copied `member/snap/db`).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Output format.
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// `steward version`.
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// The cluster whose agents to ask (none: this CLI's version only).
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Where the target binaries come from (plan, upgrade, downgrade).
#[derive(Debug, Clone, Args)]
pub struct BinarySourceArgs {
    /// A directory laid out as DIR/<version>/{etcd,etcdctl,etcdutl}, as scripts/setup-etcd fills it; a binary
    /// for every pass is taken from it (default: the setup script's cache dir).
    #[arg(long, value_name = "DIR")]
    pub binaries: Option<PathBuf>,
    /// One etcd binary for the target version (etcdctl/etcdutl next to it go along).
    #[arg(long, value_name = "PATH", conflicts_with = "binaries")]
    pub binary: Option<PathBuf>,
    /// The sha256 the --binary file must have (64 hex digits, as in the release's SHA256SUMS); a mismatch
    /// refuses the change before anything is staged.
    #[arg(long, value_name = "HEX", requires = "binary", value_parser = parse_sha256)]
    pub sha256: Option<String>,
    /// Proceed where a rule says "unless forced" (a 3.5.0-3.5.2 target); the reason is printed.
    #[arg(long)]
    pub force: bool,
}

impl BinarySourceArgs {
    /// The change to `to` these flags ask for: binaries from `--binaries`,
    /// or the setup script's cache dir when neither `--binaries` nor
    /// `--binary` is given.
    #[must_use]
    pub fn change(&self, direction: Direction, to: EtcdVersion) -> Change {
        Change {
            direction,
            target: to,
            binaries: self
                .binaries
                .clone()
                .or_else(|| self.binary.is_none().then(crate::local::releases::default_dir)),
            binary: self.binary.clone(),
            binary_sha256: self.sha256.clone(),
            force: self.force,
        }
    }
}

/// `steward plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The target version, e.g. 3.5.16.
    #[arg(long, value_name = "VERSION", value_parser = parse_version)]
    pub to: EtcdVersion,
    /// Plan a downgrade instead of an upgrade.
    #[arg(long)]
    pub downgrade: bool,
    /// The binaries.
    #[command(flatten)]
    pub source: BinarySourceArgs,
    /// The cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `steward upgrade` and `steward downgrade`.
#[derive(Debug, Args)]
pub struct RollArgs {
    /// The target version, e.g. 3.5.16.
    #[arg(long, value_name = "VERSION", value_parser = parse_version)]
    pub to: EtcdVersion,
    /// The binaries.
    #[command(flatten)]
    pub source: BinarySourceArgs,
    /// How long each agent waits for its member on the new version before reverting it (default: the
    /// agent's activate_timeout).
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub activate_timeout: Option<Duration>,
    /// How the change runs and reports.
    #[command(flatten)]
    pub run: RunArgs,
    /// The cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// `steward agent`: low-level calls to one agent.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The call to make.
    #[command(subcommand)]
    pub command: AgentCommand,
}

/// Which agent to talk to. Every agent subcommand takes it.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Agent")]
pub struct AgentTarget {
    /// The agent's gRPC address: host:port, https://host:port (mutual TLS) or http://host:port (plaintext).
    #[arg(long, env = "STEWARD_AGENT", value_name = "ADDR", value_parser = parse_address)]
    pub agent: AgentAddress,
}

/// Which cluster a cluster-wide command works on: a cluster description
/// file, or the members' agents. A flag wins over the environment; with
/// neither flag, `STEWARD_CLUSTER` or `STEWARD_AGENTS` is used (see
/// [`crate::engine::cluster::file::ClusterTarget::resolve`]).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Cluster")]
pub struct ClusterArgs {
    /// The cluster description file (TOML: the members, their agents and client URLs), such as the
    /// cluster.toml that `steward local up` writes [env: STEWARD_CLUSTER].
    #[arg(long, value_name = "FILE", conflicts_with = "agents")]
    pub cluster: Option<PathBuf>,
    /// The members' agents, comma-separated host:port, instead of a cluster file [env: STEWARD_AGENTS].
    #[arg(long, value_name = "ADDR,ADDR,...", value_delimiter = ',', value_parser = parse_address)]
    pub agents: Option<Vec<AgentAddress>>,
}

/// How to print the result.
#[derive(Debug, Clone, Copy, Args)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// Output format: a table for people, or stable JSON for scripts.
    #[arg(short = 'w', long = "write-out", value_enum, default_value_t = OutputFormat::Table, value_name = "FORMAT")]
    pub format: OutputFormat,
}

/// The agent subcommands, one per agent RPC.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Show the agent's state, the etcd process, versions, the member's raft status, data dir and disk.
    Status {
        #[command(flatten)]
        target: AgentTarget,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List the staged etcd versions with their files and checksums.
    Binaries {
        #[command(flatten)]
        target: AgentTarget,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Stage a binary that is already on the agent's host (inside one of its import directories).
    Import {
        /// Absolute path of the binary on the agent's host (not this machine).
        #[arg(long, value_name = "PATH", value_parser = parse_remote_path)]
        path: PathBuf,
        /// The version the binary must report, e.g. 3.5.16.
        #[arg(long, value_name = "VERSION", value_parser = parse_version)]
        version: EtcdVersion,
        /// Which program of the release the file is.
        #[arg(long, value_enum, default_value_t = ToolArg::Etcd)]
        tool: ToolArg,
        /// Expected sha256 of the file (64 hex digits); the agent refuses a mismatch.
        #[arg(long, value_name = "HEX", value_parser = parse_sha256)]
        sha256: Option<String>,
        #[command(flatten)]
        target: AgentTarget,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Send a local binary to the agent and stage it (sha256 computed here, checked there).
    Upload {
        /// The local file to send; it must be a regular file.
        #[arg(long, value_name = "FILE", value_parser = parse_local_file)]
        file: PathBuf,
        /// The version the binary must report, e.g. 3.5.16.
        #[arg(long, value_name = "VERSION", value_parser = parse_version)]
        version: EtcdVersion,
        /// Which program of the release the file is.
        #[arg(long, value_enum, default_value_t = ToolArg::Etcd)]
        tool: ToolArg,
        #[command(flatten)]
        target: AgentTarget,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show the etcd flags a target version would run with and what changes (changes nothing).
    Flags {
        /// The target etcd version, e.g. 3.5.16.
        #[arg(long, value_name = "VERSION", value_parser = parse_version)]
        to: EtcdVersion,
        #[command(flatten)]
        target: AgentTarget,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Switch the member to a staged version; the agent reverts on failure. Refused (quorum-safety)
    /// when the other members might not carry quorum without it; a leader hands leadership over first.
    Activate {
        /// Take the member down even when the others might not carry quorum without it (the
        /// quorum-safety check is skipped).
        #[arg(long)]
        force: bool,

        /// The staged version to switch to, e.g. 3.5.16.
        #[arg(long, value_name = "VERSION", value_parser = parse_version)]
        to: EtcdVersion,
        /// How long the agent waits for the member to be healthy before reverting, e.g. 60s
        /// [default: the agent's activate_timeout].
        #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
        timeout: Option<Duration>,
        #[command(flatten)]
        target: AgentTarget,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Switch the member back to the version active before the last activate (checked like activate).
    Rollback {
        /// Take the member down even when the others might not carry quorum without it (the
        /// quorum-safety check is skipped).
        #[arg(long)]
        force: bool,

        /// How long the agent waits for the member to be healthy before reverting, e.g. 60s
        /// [default: the agent's activate_timeout].
        #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
        timeout: Option<Duration>,
        #[command(flatten)]
        target: AgentTarget,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Start etcd with the active version (after stop, or to leave the failed state).
    Start {
        #[command(flatten)]
        target: AgentTarget,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Stop etcd gracefully (SIGTERM, grace period, SIGKILL); the agent keeps running (checked like
    /// activate).
    Stop {
        /// Take the member down even when the others might not carry quorum without it (the
        /// quorum-safety check is skipped).
        #[arg(long)]
        force: bool,

        #[command(flatten)]
        target: AgentTarget,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Stop then start etcd with the active version (checked like activate).
    Restart {
        /// Take the member down even when the others might not carry quorum without it (the
        /// quorum-safety check is skipped).
        #[arg(long)]
        force: bool,

        #[command(flatten)]
        target: AgentTarget,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Take a verified snapshot of the local member and keep it on the agent's host.
    Snapshot {
        #[command(flatten)]
        target: AgentTarget,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List the snapshots the agent keeps, newest first.
    Snapshots {
        #[command(flatten)]
        target: AgentTarget,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Download a stored snapshot to a local file and verify its sha256 trailer.
    Download {
        /// The snapshot id (see `steward agent snapshots`).
        #[arg(long, value_name = "ID", value_parser = parse_snapshot_id)]
        id: String,
        /// The local file to write; it must not exist (steward never overwrites a snapshot).
        #[arg(long, value_name = "FILE", value_parser = parse_new_file)]
        out: PathBuf,
        #[command(flatten)]
        target: AgentTarget,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Print etcd's last output lines as the agent keeps them, and with --follow new ones.
    Logs {
        /// How many of the last lines to print first (at most the agent's
        /// log_tail_lines; default: the agent's default, 100 or its whole tail if smaller).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        lines: Option<u32>,
        /// Keep printing new lines as etcd writes them, until interrupted.
        #[arg(long)]
        follow: bool,
        /// Output format: table (the lines as etcd wrote them) or json (NDJSON: one object per
        /// line, {"agent":"HOST:PORT","line":"TEXT"}, flushed as it comes, also with --follow).
        #[arg(
            short = 'w',
            long = "write-out",
            value_enum,
            default_value_t = OutputFormat::Table,
            value_name = "FORMAT",
            hide_possible_values = true
        )]
        format: OutputFormat,
        #[command(flatten)]
        target: AgentTarget,
    },
}

/// `steward local`: a cluster on this machine.
#[derive(Debug, Args)]
pub struct LocalArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: LocalCommand,
}

const LOCAL_UP_LONG_ABOUT: &str = "\
Start a cluster of real etcd members on loopback, each owned by its own
steward-agent running in the background (it outlives this command).

DIR gets one m<i>/ per member (agent.toml, agent.log, the agent's state dir
with etcd's log in state/logs/etcd.log, etcd's data dir), the record of the
agent processes (local-processes.toml) and, once every member answers and
all agree on a leader, the cluster description cluster.toml, which the
cluster-wide commands take with --cluster. Stop it with `steward local down
--dir DIR`.";

/// The `steward local` subcommands.
#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Start a cluster of real etcd members on loopback, each under its own steward-agent, in the background.
    #[command(long_about = LOCAL_UP_LONG_ABOUT)]
    Up(LocalUpArgs),
    /// Stop a cluster made by `steward local up`: etcd through its agents, then the agents; keep the files.
    Down(LocalDownArgs),
}

/// `steward local up`.
#[derive(Debug, Clone, Args)]
pub struct LocalUpArgs {
    /// The cluster's directory: it must not exist or be empty (steward never writes into a used one).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// How many members (1 to 7).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=7))]
    pub members: u8,
    /// The etcd version: exact (3.4.23), or a minor (3.4) for its newest release in the binaries
    /// directory; a minor never picks 3.5.0-3.5.2 (known data-inconsistency bug).
    #[arg(long, value_name = "VERSION", value_parser = parse_version_spec)]
    pub version: VersionSpec,
    /// The etcd release directory as scripts/setup-etcd lays it out (`DIR/<version>/etcd`)
    /// [default: $STEWARD_ETCD_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/steward/etcd].
    #[arg(long, value_name = "DIR")]
    pub binaries: Option<PathBuf>,
    /// Run the agents in plaintext development mode (no certificates) instead of mutual TLS with a CA
    /// made for this cluster in DIR/pki.
    #[arg(long)]
    pub insecure: bool,
    /// etcd serves TLS on its client and peer URLs and requires client certificates on both, with a CA
    /// made for this cluster in DIR/etcd-pki; the cluster file's [etcd] names steward's client
    /// certificate.
    #[arg(long)]
    pub etcd_tls: bool,
    /// etcd's --initial-cluster-token [default: one unique to this cluster].
    #[arg(long, value_name = "TOKEN", value_parser = parse_token)]
    pub token: Option<String>,
    /// Take the ports only from this range, e.g. 40000-40999 [default: free ports the kernel picks].
    #[arg(long, value_name = "FIRST-LAST", value_parser = parse_port_range)]
    pub port_range: Option<PortRange>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `steward local down`.
#[derive(Debug, Clone, Args)]
pub struct LocalDownArgs {
    /// The cluster's directory, as given to `steward local up`.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Also remove the directory (configs, data, logs) once everything is stopped.
    #[arg(long)]
    pub purge: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Which program of an etcd release a binary is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ToolArg {
    /// The server.
    Etcd,
    /// The client.
    Etcdctl,
    /// The offline utility (etcd >= 3.5).
    Etcdutl,
}

impl ToolArg {
    /// The contract's value for this tool.
    #[must_use]
    pub const fn to_pb(self) -> pb::Tool {
        match self {
            Self::Etcd => pb::Tool::Etcd,
            Self::Etcdctl => pb::Tool::Etcdctl,
            Self::Etcdutl => pb::Tool::Etcdutl,
        }
    }
}

/// `--agent`: `host:port`, `https://host:port` or `http://host:port`.
///
/// # Errors
/// A message for clap when the address is not usable.
pub fn parse_address(text: &str) -> Result<AgentAddress, String> {
    text.parse()
        .map_err(|e: crate::engine::connect::agent::AddressError| e.to_string())
}

/// `--to` and `--version`: an etcd version such as `3.5.16` (or `v3.5.16`).
///
/// # Errors
/// A message for clap when the text is not `MAJOR.MINOR.PATCH`.
pub fn parse_version(text: &str) -> Result<EtcdVersion, String> {
    text.parse().map_err(|e: steward_proto::VersionError| e.to_string())
}

/// `--version` of `local up`: an exact version (`3.4.23`) or a minor (`3.4`).
///
/// # Errors
/// A message for clap when the text is neither.
pub fn parse_version_spec(text: &str) -> Result<VersionSpec, String> {
    text.parse()
}

/// `--port-range`: `FIRST-LAST`.
///
/// # Errors
/// A message for clap when the text is not a range of ports.
pub fn parse_port_range(text: &str) -> Result<PortRange, String> {
    text.parse()
}

/// `--token`: not empty, without whitespace.
///
/// # Errors
/// A message for clap when the token is empty or has whitespace.
pub fn parse_token(text: &str) -> Result<String, String> {
    if text.is_empty() || text.chars().any(char::is_whitespace) {
        Err(format!("{text:?} must be non-empty without whitespace"))
    } else {
        Ok(text.to_owned())
    }
}

/// `--sha256`: exactly 64 hex digits, returned in lowercase.
///
/// # Errors
/// A message for clap when the text is not 64 hex digits.
pub fn parse_sha256(text: &str) -> Result<String, String> {
    if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(format!("{text:?} is not a sha256 (64 hex digits)"))
    }
}

/// `--timeout`: a humantime duration (`60s`, `2m`, `1m30s`) above zero.
///
/// # Errors
/// A message for clap when the duration is malformed or zero.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration like 60s: {e}"))?;
    if duration.is_zero() {
        return Err("must be longer than zero".to_owned());
    }
    Ok(duration)
}

/// `--file` of upload: an existing regular file on this machine.
///
/// # Errors
/// A message for clap when the file is missing or not a regular file.
pub fn parse_local_file(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    // metadata() follows symlinks: a link to a regular file is fine.
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_file() => Ok(path),
        Ok(_) => Err(format!("{text} is not a regular file")),
        Err(e) => Err(format!("cannot use {text}: {e}")),
    }
}

/// `--path` of import: absolute, because it names a file on the agent's
/// host and there is no working directory it could be relative to.
///
/// # Errors
/// A message for clap when the path is relative.
pub fn parse_remote_path(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(format!("{text} is not absolute (it names a file on the agent's host)"))
    }
}

/// `--id` of download: not empty.
///
/// # Errors
/// A message for clap when the id is empty.
pub fn parse_snapshot_id(text: &str) -> Result<String, String> {
    let id = text.trim();
    if id.is_empty() {
        Err("the snapshot id is empty".to_owned())
    } else {
        Ok(id.to_owned())
    }
}

/// `--out` of download: a file that does not exist yet, in a directory that
/// does. The download checks again when it puts the file in place, so a file
/// created in between is not overwritten either.
///
/// # Errors
/// A message for clap when the file exists or its directory does not.
pub fn parse_new_file(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    if path.file_name().is_none() {
        return Err(format!("{text} does not name a file"));
    }
    // symlink_metadata: a dangling symlink is an existing name too.
    if std::fs::symlink_metadata(&path).is_ok() {
        return Err(format!(
            "{text} already exists; steward never overwrites a snapshot file"
        ));
    }
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(format!("directory {} does not exist", parent.display()));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {

    /// Subcommand paths named in the first column of the README's command
    /// tables: `steward backup ...` gives `backup`, `steward agent stop\|restart`
    /// gives `agent stop` and `agent restart`.
    fn readme_commands() -> std::collections::BTreeSet<String> {
        let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
        let groups = ["agent", "local", "certs", "fleet", "snapshot"];
        let mut found = std::collections::BTreeSet::new();
        for line in readme.lines() {
            let Some(cell) = line.strip_prefix("| `steward ") else {
                continue;
            };
            let words: Vec<&str> = cell.split(['`', ' ']).collect();
            for first in words[0].split("\\|") {
                if groups.contains(&first) {
                    for second in words[1].split("\\|") {
                        found.insert(format!("{first} {second}"));
                    }
                } else {
                    found.insert(first.to_owned());
                }
            }
        }
        found
    }

    #[test]
    fn the_readme_names_every_subcommand_and_no_other() {
        let command = Cli::command();
        let mut defined = std::collections::BTreeSet::new();
        for sub in command.get_subcommands() {
            let subs: Vec<_> = sub.get_subcommands().filter(|s| s.get_name() != "help").collect();
            if subs.is_empty() {
                defined.insert(sub.get_name().to_owned());
            }
            for inner in subs {
                defined.insert(format!("{} {}", sub.get_name(), inner.get_name()));
            }
        }
        assert_eq!(readme_commands(), defined);
    }
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn versions_parse_with_or_without_v() {
        assert_eq!(parse_version("v3.5.16").unwrap(), EtcdVersion::new(3, 5, 16));
        assert!(parse_version("3.5").unwrap_err().contains("MAJOR.MINOR.PATCH"));
    }

    #[test]
    fn sha256_must_be_64_hex_digits() {
        let upper = "AB".repeat(32);
        assert_eq!(parse_sha256(&upper).unwrap(), "ab".repeat(32));
        assert!(parse_sha256("abc").is_err());
        assert!(parse_sha256(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn timeouts_are_humantime_and_positive() {
        assert_eq!(parse_timeout("1m30s").unwrap(), Duration::from_secs(90));
        assert!(parse_timeout("0s").is_err());
        assert!(parse_timeout("60").is_err());
    }

    #[test]
    fn local_files_must_be_regular() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("etcd");
        std::fs::write(&file, b"x").unwrap();
        assert!(parse_local_file(file.to_str().unwrap()).is_ok());
        assert!(
            parse_local_file(dir.path().to_str().unwrap())
                .unwrap_err()
                .contains("regular")
        );
        assert!(parse_local_file(dir.path().join("missing").to_str().unwrap()).is_err());
    }

    #[test]
    fn download_targets_must_be_new() {
        let dir = tempfile::tempdir().unwrap();
        let existing = dir.path().join("snap.db");
        std::fs::write(&existing, b"x").unwrap();
        assert!(
            parse_new_file(existing.to_str().unwrap())
                .unwrap_err()
                .contains("already exists")
        );
        assert!(parse_new_file(dir.path().join("new.db").to_str().unwrap()).is_ok());
        assert!(parse_new_file(dir.path().join("no/such/dir.db").to_str().unwrap()).is_err());
    }

    #[test]
    fn import_paths_must_be_absolute() {
        assert!(parse_remote_path("/opt/etcd/etcd").is_ok());
        assert!(parse_remote_path("etcd").is_err());
    }

    #[test]
    fn local_up_takes_a_version_or_a_minor_and_bounds_members() {
        let cli = Cli::try_parse_from(["steward", "local", "up", "--dir", "/tmp/x", "--version", "3.4"]).unwrap();
        let Command::Local(LocalArgs {
            command: LocalCommand::Up(up),
        }) = cli.command
        else {
            panic!("not local up");
        };
        assert_eq!(up.version, VersionSpec::Minor(3, 4));
        assert_eq!(up.members, 3);
        assert_eq!(up.port_range, None);
        for bad in [
            &["--members", "0"][..],
            &["--members", "8"],
            &["--port-range", "5-1"],
            &["--token", "a b"],
        ] {
            let mut args = vec!["steward", "local", "up", "--dir", "/tmp/x", "--version", "3.4"];
            args.extend_from_slice(bad);
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
            assert!(err.to_string().contains(bad[0]), "{err}");
        }
        let err = Cli::try_parse_from(["steward", "local", "up", "--dir", "/x", "--version", "3"]).unwrap_err();
        assert!(err.to_string().contains("--version"), "{err}");
    }

    /// A command that takes a cluster, as status, plan and upgrade will.
    #[derive(Debug, Parser)]
    struct WithCluster {
        #[command(flatten)]
        cluster: ClusterArgs,
    }

    #[test]
    fn cluster_and_agents_are_exclusive_and_agents_are_a_list() {
        let parsed = WithCluster::try_parse_from(["x", "--agents", "h:1,h:2"]).unwrap();
        let agents = parsed.cluster.agents.unwrap();
        assert_eq!(agents.len(), 2);
        assert_eq!(agents[1].to_string(), "h:2");
        let parsed = WithCluster::try_parse_from(["x", "--cluster", "c.toml"]).unwrap();
        assert_eq!(parsed.cluster.cluster, Some(PathBuf::from("c.toml")));
        let err = WithCluster::try_parse_from(["x", "--cluster", "c.toml", "--agents", "h:1"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = WithCluster::try_parse_from(["x", "--agents", "h:1,h"]).unwrap_err();
        assert!(err.to_string().contains("no port"), "{err}");
        // Neither is a clap error only when the environment has neither
        // either; that is decided when the target is resolved.
        assert!(WithCluster::try_parse_from(["x"]).is_ok());
    }

    #[test]
    fn logs_lines_must_be_positive() {
        let err =
            Cli::try_parse_from(["steward", "agent", "logs", "--agent", "127.0.0.1:1", "--lines", "0"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--lines"), "{err}");
    }

    #[test]
    fn every_agent_command_takes_write_out() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("snap.db");
        let out = out.to_str().unwrap();
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let commands: [&[&str]; 14] = [
            &["status"],
            &["binaries"],
            &["import", "--path", "/opt/etcd/etcd", "--version", "3.5.16"],
            &["upload", "--file", file, "--version", "3.5.16"],
            &["flags", "--to", "3.5.16"],
            &["activate", "--to", "3.5.16"],
            &["rollback"],
            &["start"],
            &["stop"],
            &["restart"],
            &["snapshot"],
            &["snapshots"],
            &["download", "--id", "m0-1", "--out", out],
            &["logs", "--follow"],
        ];
        for command in commands {
            let mut args = vec!["steward", "agent"];
            args.extend_from_slice(command);
            args.extend_from_slice(&["--agent", "127.0.0.1:1", "-w", "json"]);
            if let Err(err) = Cli::try_parse_from(&args) {
                panic!("{args:?}: {err}");
            }
        }
        let cli = Cli::try_parse_from(["steward", "agent", "logs", "--agent", "127.0.0.1:1", "-w", "json"]).unwrap();
        let Command::Agent(AgentArgs {
            command: AgentCommand::Logs { format, follow, .. },
        }) = cli.command
        else {
            panic!("not agent logs");
        };
        assert_eq!(format, OutputFormat::Json);
        assert!(!follow);
    }

    #[test]
    fn etcd_credentials_come_as_etcdctl_takes_them() {
        let args = |user: Option<&str>, password: Option<&str>| EtcdAuthArgs {
            user: user.map(str::to_owned),
            password: password.map(str::to_owned),
        };
        let root = |password: &str| {
            Some(crate::engine::connect::etcd::Credentials::new(
                "root".into(),
                password.into(),
            ))
        };
        assert_eq!(args(None, None).credentials(), Ok(None));
        assert_eq!(args(Some("root"), Some("s3cret")).credentials(), Ok(root("s3cret")));
        assert_eq!(args(Some("root:s3:cret"), None).credentials(), Ok(root("s3:cret")));
        assert!(
            args(Some("root"), None)
                .credentials()
                .unwrap_err()
                .contains("needs a password")
        );
        assert!(
            args(None, Some("x"))
                .credentials()
                .unwrap_err()
                .contains("needs --user")
        );
        assert!(args(Some(":x"), None).credentials().is_err());
        assert!(
            args(Some("root:a"), Some("b"))
                .credentials()
                .unwrap_err()
                .contains("not both")
        );
        let shown = format!("{:?}", root("s3cret"));
        assert!(shown.contains("root") && !shown.contains("s3cret"), "{shown}");
    }
}
