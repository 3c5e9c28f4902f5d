//! The table form of every view: key/value tables for one thing, one row
//! per item for lists. Values are formatted for people here (human bytes and
//! durations); the JSON form keeps raw numbers.

use comfy_table::{Cell, Table, presets};

use crate::format::{self, human_bytes, or_dash, yes_no};
use crate::output::view::{
    BackupView, BinariesView, DownloadView, FlagChangeView, FlagsView, LifecycleView, SnapshotView, SnapshotsView,
    StagedView, StatusView, SwitchView,
};

/// A view that can be printed as one or more tables.
pub trait Tabular {
    /// The tables, in printing order.
    fn tables(&self) -> Vec<Table>;

    /// The tables with every column, for `-w wide`; the same as
    /// [`Self::tables`] where those show everything already.
    fn wide_tables(&self) -> Vec<Table> {
        self.tables()
    }
}

/// The width the default tables of a wide view keep to: long cells wrap.
pub const NARROW_WIDTH: u16 = 120;

/// `table` made to fit [`NARROW_WIDTH`] columns, wrapping long cells.
pub fn narrow(mut table: Table) -> Table {
    table.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
    table.set_width(NARROW_WIDTH);
    table
}

/// An empty table in the house style.
pub fn table() -> Table {
    let mut table = Table::new();
    // ASCII so the output survives any terminal, pager or log file; no
    // dynamic arrangement so the layout does not depend on the terminal.
    table.load_style(presets::ASCII_FULL_CONDENSED);
    table
}

/// A table with a header row in the house style.
pub fn with_header(header: &[&str]) -> Table {
    let mut table = table();
    table.set_header(header.iter().map(comfy_table::Cell::new).collect::<Vec<_>>());
    table
}

/// A two-column table of `(key, value)` rows.
fn key_values<K: Into<String>>(rows: impl IntoIterator<Item = (K, String)>) -> Table {
    let mut table = table();
    for (key, value) in rows {
        table.add_row(vec![Cell::new(key.into()), Cell::new(value)]);
    }
    table
}

fn opt_num<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn opt_bytes(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), human_bytes)
}

fn list(values: &[String]) -> String {
    if values.is_empty() {
        "-".to_owned()
    } else {
        values.join(", ")
    }
}

/// Arguments one per line, so long command lines stay readable in a cell.
fn args(values: &[String]) -> String {
    if values.is_empty() {
        "-".to_owned()
    } else {
        values.join("\n")
    }
}

impl Tabular for StatusView {
    fn tables(&self) -> Vec<Table> {
        let (agent, process, versions, member) = (&self.agent, &self.process, &self.versions, &self.member);
        let reachable = if member.reachable {
            "yes".to_owned()
        } else {
            format!("no: {}", or_dash(member.error.as_deref()))
        };
        let restore = self.restore.as_ref().map_or_else(
            || "-".to_owned(),
            |r| {
                format!(
                    "{} {} of snapshot {} (revision {}) with {}; old data dir {}",
                    r.restore_id,
                    r.phase,
                    r.snapshot_id,
                    r.snapshot_revision,
                    r.version,
                    r.moved_aside_to.as_deref().unwrap_or("(none)")
                )
            },
        );
        vec![key_values([
            ("agent", self.agent_address.clone()),
            ("agent version", agent.version.clone()),
            ("agent state", agent.state.clone()),
            ("state reason", or_dash(agent.state_reason.as_deref())),
            ("agent started", or_dash(agent.started_at.as_deref())),
            (
                "served certificate",
                agent.tls_certificate.as_ref().map_or_else(
                    || "- (plaintext)".to_owned(),
                    |c| format!("{}, until {}", c.subject, c.not_after.as_deref().unwrap_or("?")),
                ),
            ),
            ("member name", agent.member_name.clone()),
            ("member id", or_dash(member.member_id.as_deref())),
            ("cluster id", or_dash(member.cluster_id.as_deref())),
            ("client urls", list(&agent.client_urls)),
            ("peer urls", list(&agent.peer_urls)),
            ("etcd running", yes_no(process.running).to_owned()),
            ("etcd pid", opt_num(process.pid)),
            ("etcd started", or_dash(process.started_at.as_deref())),
            (
                "etcd uptime",
                process
                    .uptime
                    .map_or_else(|| "-".to_owned(), format::human_duration_secs),
            ),
            ("restart count", process.restart_count.to_string()),
            ("last exit", or_dash(process.last_exit.as_deref())),
            ("adopted", yes_no(process.adopted).to_owned()),
            ("executable", or_dash(process.executable.as_deref())),
            ("active version", or_dash(versions.active.as_deref())),
            ("previous version", or_dash(versions.previous.as_deref())),
            ("staged versions", list(&versions.staged)),
            ("member reachable", reachable),
            ("leader", yes_no(member.is_leader).to_owned()),
            ("leader id", or_dash(member.leader_id.as_deref())),
            ("learner", yes_no(member.is_learner).to_owned()),
            ("binary version", or_dash(member.version.as_deref())),
            ("cluster version", or_dash(member.cluster_version.as_deref())),
            ("raft term", opt_num(member.raft_term)),
            ("raft index", opt_num(member.raft_index)),
            ("raft applied index", opt_num(member.raft_applied_index)),
            ("revision", opt_num(member.revision)),
            ("db size", opt_bytes(member.db_size_bytes)),
            ("db size in use", opt_bytes(member.db_size_in_use_bytes)),
            ("errors", list(&member.errors)),
            ("data dir", self.data_dir.path.clone()),
            ("data dir initialised", yes_no(self.data_dir.initialised).to_owned()),
            ("v3 db present", yes_no(self.data_dir.v3_db_present).to_owned()),
            ("v2 .snap present", yes_no(self.data_dir.v2_snap_present).to_owned()),
            ("newest v2 .snap size", human_bytes(self.data_dir.newest_v2_snap_bytes)),
            ("state dir free", human_bytes(self.disk.state_dir_free_bytes)),
            ("data dir free", human_bytes(self.disk.data_dir_free_bytes)),
            ("last restore", restore),
        ])]
    }
}

impl Tabular for BinariesView {
    fn tables(&self) -> Vec<Table> {
        let mut table = table();
        table.set_header(["VERSION", "ACTIVE", "PREVIOUS", "TOOL", "SIZE", "SHA256", "STAGED AT"]);
        for version in &self.versions {
            for file in &version.files {
                table.add_row([
                    version.version.clone(),
                    yes_no(version.active).to_owned(),
                    yes_no(version.previous).to_owned(),
                    file.tool.clone(),
                    human_bytes(file.size_bytes),
                    file.sha256.clone(),
                    or_dash(version.staged_at.as_deref()),
                ]);
            }
        }
        vec![table]
    }
}

impl Tabular for StagedView {
    fn tables(&self) -> Vec<Table> {
        let mut rows = vec![("already present", yes_no(self.already_present).to_owned())];
        if let Some(staged) = &self.staged {
            rows.push(("version", staged.version.clone()));
            rows.push(("active", yes_no(staged.active).to_owned()));
            rows.push(("staged at", or_dash(staged.staged_at.as_deref())));
        }
        let mut tables = vec![key_values(rows)];
        if let Some(staged) = &self.staged {
            let mut files = table();
            files.set_header(["TOOL", "SIZE", "SHA256"]);
            for file in &staged.files {
                files.add_row([file.tool.clone(), human_bytes(file.size_bytes), file.sha256.clone()]);
            }
            tables.push(files);
        }
        tables
    }
}

fn changes_table(changes: &[FlagChangeView]) -> Table {
    let mut table = table();
    table.set_header(["KIND", "FLAG", "NEW FLAG", "OLD VALUE", "NEW VALUE", "RULE", "REASON"]);
    for change in changes {
        table.add_row([
            change.kind.clone(),
            change.flag.clone(),
            or_dash(change.new_flag.as_deref()),
            or_dash(change.old_value.as_deref()),
            or_dash(change.new_value.as_deref()),
            change.rule.clone(),
            change.reason.clone(),
        ]);
    }
    table
}

impl Tabular for FlagsView {
    fn tables(&self) -> Vec<Table> {
        let refused = if self.refused {
            "yes: activating this version will be refused".to_owned()
        } else {
            "no".to_owned()
        };
        let mut tables = vec![key_values([
            ("current version", or_dash(self.current_version.as_deref())),
            ("target version", self.target_version.clone()),
            ("refused", refused),
            ("changes", self.changes.len().to_string()),
            ("current args", args(&self.current_args)),
            ("target args", args(&self.target_args)),
        ])];
        if !self.changes.is_empty() {
            tables.push(changes_table(&self.changes));
        }
        tables
    }
}

impl Tabular for SwitchView {
    fn tables(&self) -> Vec<Table> {
        let mut tables = vec![key_values([
            ("active version", self.active_version.clone()),
            ("previous version", or_dash(self.previous_version.as_deref())),
            ("etcd pid", self.pid.to_string()),
            (
                "took",
                self.took.map_or_else(|| "-".to_owned(), format::human_duration_millis),
            ),
            ("args", args(&self.args)),
        ])];
        if !self.changes.is_empty() {
            tables.push(changes_table(&self.changes));
        }
        tables
    }
}

impl Tabular for LifecycleView {
    fn tables(&self) -> Vec<Table> {
        vec![key_values([("state", self.state.clone()), ("pid", opt_num(self.pid))])]
    }
}

fn snapshot_rows(snapshot: &SnapshotView) -> Vec<(&'static str, String)> {
    vec![
        ("id", snapshot.id.clone()),
        ("created at", or_dash(snapshot.created_at.as_deref())),
        ("revision", snapshot.revision.to_string()),
        ("total keys", snapshot.total_keys.to_string()),
        (
            "size",
            format!("{} ({} bytes)", human_bytes(snapshot.size_bytes), snapshot.size_bytes),
        ),
        ("sha256", snapshot.sha256.clone()),
        ("etcd version", snapshot.etcd_version.clone()),
        ("cluster version", or_dash(snapshot.cluster_version.as_deref())),
        ("member name", snapshot.member_name.clone()),
        ("member id", or_dash(snapshot.member_id.as_deref())),
        ("path on agent", snapshot.path.clone()),
        (
            "pinned",
            snapshot.pin.as_ref().map_or_else(
                || "no (retention may remove it)".to_owned(),
                |pin| format!("{pin} (retention keeps it)"),
            ),
        ),
    ]
}

impl Tabular for BackupView {
    fn tables(&self) -> Vec<Table> {
        let mut rows = snapshot_rows(&self.snapshot);
        rows.push(("agent", self.agent.clone()));
        rows.push((
            "downloaded to",
            self.downloaded_to.as_ref().map_or_else(
                || "- (kept on the agent's host; --out FILE copies it here)".to_owned(),
                |f| format!("{f} (sha256 trailer verified)"),
            ),
        ));
        if !self.removed.is_empty() {
            rows.push(("removed (beyond --keep)", self.removed.join("\n")));
        }
        vec![key_values(rows)]
    }
}

impl Tabular for SnapshotView {
    fn tables(&self) -> Vec<Table> {
        vec![key_values(snapshot_rows(self))]
    }
}

impl Tabular for SnapshotsView {
    fn tables(&self) -> Vec<Table> {
        let mut table = table();
        table.set_header([
            "ID",
            "CREATED AT",
            "REVISION",
            "KEYS",
            "SIZE",
            "ETCD",
            "CLUSTER",
            "MEMBER",
            "PIN",
            "SHA256",
        ]);
        for snapshot in &self.snapshots {
            table.add_row([
                snapshot.id.clone(),
                or_dash(snapshot.created_at.as_deref()),
                snapshot.revision.to_string(),
                snapshot.total_keys.to_string(),
                human_bytes(snapshot.size_bytes),
                snapshot.etcd_version.clone(),
                or_dash(snapshot.cluster_version.as_deref()),
                snapshot.member_name.clone(),
                or_dash(snapshot.pin.as_deref()),
                snapshot.sha256.clone(),
            ]);
        }
        vec![table]
    }
}

impl Tabular for DownloadView {
    fn tables(&self) -> Vec<Table> {
        let mut rows = vec![
            ("file", self.file.clone()),
            (
                "verified",
                format!(
                    "{} (sha256 trailer matches the content and the agent's record)",
                    yes_no(self.verified)
                ),
            ),
        ];
        rows.extend(snapshot_rows(&self.snapshot));
        vec![key_values(rows)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::view::{StagedFileView, StagedVersionView};

    fn render(view: &impl Tabular) -> String {
        view.tables()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n\n")
    }

    #[test]
    fn binaries_list_one_row_per_file() {
        let view = BinariesView {
            versions: vec![StagedVersionView {
                version: "3.5.16".into(),
                active: true,
                previous: false,
                staged_at: None,
                files: vec![
                    StagedFileView {
                        tool: "etcd".into(),
                        sha256: "ab".repeat(32),
                        size_bytes: 2048,
                    },
                    StagedFileView {
                        tool: "etcdutl".into(),
                        sha256: "cd".repeat(32),
                        size_bytes: 1024,
                    },
                ],
            }],
        };
        let text = render(&view);
        assert_eq!(text.lines().filter(|l| l.contains("3.5.16")).count(), 2, "{text}");
        assert!(text.contains("2.0 KiB"), "{text}");
    }

    #[test]
    fn flags_show_refusal_and_changes() {
        let view = FlagsView {
            current_version: Some("3.4.23".into()),
            target_version: "3.5.16".into(),
            refused: true,
            current_args: vec!["--name=m1".into()],
            target_args: vec!["--name=m1".into()],
            changes: vec![FlagChangeView {
                kind: "refused".into(),
                flag: "--x".into(),
                new_flag: None,
                old_value: None,
                new_value: None,
                rule: "r".into(),
                reason: "because".into(),
            }],
        };
        let text = render(&view);
        assert!(text.contains("yes: activating this version will be refused"), "{text}");
        assert!(text.contains("| refused | --x  |"), "{text}");
    }
}
