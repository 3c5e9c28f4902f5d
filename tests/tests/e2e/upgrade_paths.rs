//! The upgrade-path table of docs/upgrade-paths.md, computed here from the
//! planner and the preflight rules themselves, with the end-to-end tests
//! that prove each path on real etcd. The test fails when the document
//! differs from what the code decides, or when a test it names is gone;
//! `STEWARD_WRITE_DOCS=1` rewrites the table instead.
//!
//! Only the version rules are in play: each row is planned for a healthy
//! three-member cluster without auth or v2 data, with the binaries
//! `scripts/setup-etcd` provides (and the target itself when it is not one
//! of them). The rules that look at the cluster's state (auth, v2 data,
//! alarms, flags) are in the operator guide.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use steward_coordinator::engine::cluster::observed::{Observed, ObservedMember};
use steward_coordinator::engine::roll::plan::{Direction, plan};
use steward_coordinator::engine::roll::rules::{self, Request, Verdict};
use steward_proto::EtcdVersion;

/// The releases `scripts/setup-etcd` installs.
const SETUP_ETCD: &[&str] = &[
    "3.3.25", "3.4.23", "3.5.0", "3.5.1", "3.5.16", "3.5.30", "3.5.36", "3.6.17", "3.7.3",
];

/// Which binaries a row is planned with.
#[derive(Clone, Copy)]
enum Given {
    /// Those of `scripts/setup-etcd` (`--binaries`), and the target.
    SetupEtcd,
    /// Only the target (`--binary`).
    TargetOnly,
}

/// How a row is proven.
#[derive(Clone, Copy)]
enum Proof {
    /// By these end-to-end tests (file in tests/tests, function) on real
    /// etcd and real agents.
    EndToEnd(&'static [(&'static str, &'static str)]),
    /// By unit tests only, and why no real run.
    UnitOnly(&'static str),
}

struct Row {
    from: &'static str,
    to: &'static str,
    direction: Direction,
    given: Given,
    proof: Proof,
}

const fn up(from: &'static str, to: &'static str, given: Given, proof: Proof) -> Row {
    Row {
        from,
        to,
        direction: Direction::Upgrade,
        given,
        proof,
    }
}

const fn down(from: &'static str, to: &'static str, proof: Proof) -> Row {
    Row {
        from,
        to,
        direction: Direction::Downgrade,
        given: Given::SetupEtcd,
        proof,
    }
}

const NO_3_2: &str = "no 3.2 binary can be had here";
const NO_3_4_32: &str = "no 3.4.32 or later can be had here: Debian has 3.4.23, and the Go module proxy does not serve etcd 3.4's release commits";
const NOT_RUN_AS_ONE: &str = "each pass is proven on real etcd by the rows above; not run as one command";

const ROWS: &[Row] = &[
    up("3.2.32", "3.3.25", Given::SetupEtcd, Proof::UnitOnly(NO_3_2)),
    up(
        "3.3.25",
        "3.5.36",
        Given::SetupEtcd,
        Proof::EndToEnd(&[("roll_versions", "from_3_3_to_3_5_in_two_passes_with_a_ca_file_spec")]),
    ),
    up(
        "3.4.23",
        "3.5.36",
        Given::SetupEtcd,
        Proof::EndToEnd(&[
            ("upgrade", "three_members_from_3_4_to_3_5_under_writes"),
            ("roll_versions", "five_members_from_3_4_to_3_5"),
            ("hosts_roll", "an_upgrade_under_the_shipped_unit_loses_no_write"),
        ]),
    ),
    up(
        "3.4.23",
        "3.5.1",
        Given::SetupEtcd,
        Proof::EndToEnd(&[("refusals", "a_3_5_0_to_3_5_2_target")]),
    ),
    up(
        "3.5.16",
        "3.5.36",
        Given::SetupEtcd,
        Proof::EndToEnd(&[("roll_versions", "a_patch_upgrade_then_a_patch_downgrade")]),
    ),
    up(
        "3.5.36",
        "3.6.17",
        Given::SetupEtcd,
        Proof::EndToEnd(&[
            (
                "versions_3_6",
                "the_newest_3_5_goes_to_3_6_and_back_through_the_downgrade_api",
            ),
            ("versions_3_6", "five_members_go_from_the_newest_3_5_to_3_6"),
        ]),
    ),
    up(
        "3.5.16",
        "3.6.17",
        Given::SetupEtcd,
        Proof::EndToEnd(&[(
            "versions_3_6",
            "an_old_3_5_patch_is_refused_for_3_6_and_the_plan_adds_the_patch_pass",
        )]),
    ),
    up(
        "3.5.16",
        "3.6.17",
        Given::TargetOnly,
        Proof::EndToEnd(&[(
            "versions_3_6",
            "an_old_3_5_patch_is_refused_for_3_6_and_the_plan_adds_the_patch_pass",
        )]),
    ),
    up(
        "3.4.23",
        "3.6.17",
        Given::SetupEtcd,
        Proof::EndToEnd(&[("versions_3_6", "a_3_4_cluster_reaches_3_6_in_one_upgrade_of_two_passes")]),
    ),
    up(
        "3.6.17",
        "3.7.3",
        Given::SetupEtcd,
        Proof::EndToEnd(&[(
            "versions_3_7",
            "a_cluster_born_on_3_5_goes_through_3_6_to_3_7_and_back_to_3_6",
        )]),
    ),
    up(
        "3.6.5",
        "3.7.3",
        Given::TargetOnly,
        Proof::UnitOnly("no 3.6 older than 3.6.11 is built here"),
    ),
    up("3.5.36", "3.7.3", Given::SetupEtcd, Proof::UnitOnly(NOT_RUN_AS_ONE)),
    up("3.4.23", "3.7.3", Given::SetupEtcd, Proof::UnitOnly(NOT_RUN_AS_ONE)),
    up(
        "3.4.23",
        "4.0.0",
        Given::TargetOnly,
        Proof::UnitOnly("there is no etcd 4"),
    ),
    down(
        "3.5.36",
        "3.5.16",
        Proof::EndToEnd(&[("roll_versions", "a_patch_upgrade_then_a_patch_downgrade")]),
    ),
    down(
        "3.5.36",
        "3.4.23",
        Proof::EndToEnd(&[("refusals", "a_3_4_downgrade_target_below_3_4_32")]),
    ),
    down("3.5.36", "3.4.45", Proof::UnitOnly(NO_3_4_32)),
    down(
        "3.6.17",
        "3.5.36",
        Proof::EndToEnd(&[
            (
                "versions_3_6",
                "the_newest_3_5_goes_to_3_6_and_back_through_the_downgrade_api",
            ),
            (
                "versions_3_6_undo",
                "rollback_in_the_middle_of_a_3_6_downgrade_cancels_it_and_swaps_back",
            ),
        ]),
    ),
    down(
        "3.7.3",
        "3.6.17",
        Proof::EndToEnd(&[(
            "versions_3_7",
            "a_cluster_born_on_3_5_goes_through_3_6_to_3_7_and_back_to_3_6",
        )]),
    ),
    down("3.7.3", "3.5.36", Proof::UnitOnly("refused before anything runs")),
    down("3.5.36", "3.3.25", Proof::UnitOnly("refused before anything runs")),
];

fn v(text: &str) -> EtcdVersion {
    text.parse().expect("version")
}

/// A healthy three-member cluster on `version`, m0 the leader.
fn cluster(version: &str) -> Observed {
    Observed {
        members: (0..3)
            .map(|i| ObservedMember {
                name: format!("m{i}"),
                id: i + 1,
                agent: Some(format!("10.0.0.{i}:7400")),
                version: Some(v(version)),
                healthy: true,
                is_leader: i == 0,
                applied_index: 100,
                db_size: 1 << 20,
                v3_db_present: true,
                staged: vec![v(version)],
                agent_state: "running".into(),
                state_dir_free_bytes: 10 << 30,
                ..ObservedMember::default()
            })
            .collect(),
        cluster_version: Some(v(&format!("{}.0", &version[..3]))),
        ..Observed::default()
    }
}

/// What the code decides for a row: the verdict and the passes.
fn decide(row: &Row) -> (String, String) {
    let mut available: Vec<EtcdVersion> = match row.given {
        Given::SetupEtcd => SETUP_ETCD.iter().map(|s| v(s)).collect(),
        Given::TargetOnly => Vec::new(),
    };
    if !available.contains(&v(row.to)) {
        available.push(v(row.to));
    }
    let observed = cluster(row.from);
    let request = Request {
        available: available.clone(),
        ..Request::default()
    };
    let planned = plan(&observed, row.direction, &v(row.to), &available);
    let refusals: Vec<&str> = rules::preflight(&observed, &request, &planned)
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .map(|c| c.rule)
        .collect();
    let verdict = if refusals.is_empty() {
        "allowed".to_owned()
    } else {
        format!(
            "refused: {}",
            refusals.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", ")
        )
    };
    let passes = match &planned {
        Ok(plan) => plan
            .passes
            .iter()
            .map(|p| {
                if p.uses_downgrade_api {
                    format!("{} (Downgrade API)", p.target)
                } else {
                    p.target.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(" → "),
        Err(_) => "–".to_owned(),
    };
    (verdict, passes)
}

fn table() -> String {
    let mut out =
        String::from("| from | to | binaries given | verdict | passes | proven by |\n|---|---|---|---|---|---|\n");
    for row in ROWS {
        let (verdict, passes) = decide(row);
        let given = match row.given {
            Given::SetupEtcd => "`--binaries` (setup-etcd's)",
            Given::TargetOnly => "`--binary` of the target",
        };
        let proof = match row.proof {
            Proof::EndToEnd(tests) => format!(
                "end to end: {}",
                tests
                    .iter()
                    .map(|(file, test)| format!("`{file}::{test}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Proof::UnitOnly(why) => format!("unit tests only ({why})"),
        };
        let arrow = match row.direction {
            Direction::Upgrade => "upgrade",
            Direction::Downgrade => "downgrade",
        };
        let _ = writeln!(
            out,
            "| {} | {} ({arrow}) | {given} | {verdict} | {passes} | {proof} |",
            row.from, row.to
        );
    }
    out
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_owned()
}

const BEGIN: &str = "<!-- upgrade-paths: begin (generated by tests/tests/e2e/upgrade_paths.rs) -->\n";
const END: &str = "<!-- upgrade-paths: end -->";

#[test]
fn the_documented_upgrade_paths_are_what_the_code_decides() {
    let doc_path = repo().join("docs/upgrade-paths.md");
    let doc = std::fs::read_to_string(&doc_path).expect("read docs/upgrade-paths.md");
    let (head, rest) = doc.split_once(BEGIN).expect("the begin marker");
    let (_, tail) = rest.split_once(END).expect("the end marker");
    let wanted = format!("{head}{BEGIN}{}{END}{tail}", table());
    if std::env::var_os("STEWARD_WRITE_DOCS").is_some() {
        std::fs::write(&doc_path, &wanted).expect("write docs/upgrade-paths.md");
        return;
    }
    assert!(
        doc == wanted,
        "docs/upgrade-paths.md is out of date; run STEWARD_WRITE_DOCS=1 cargo nextest run -p steward-tests \
         --test e2e upgrade_paths, and review the diff. It should read:\n{}",
        table()
    );
}

#[test]
fn every_test_the_table_names_exists() {
    for row in ROWS {
        let Proof::EndToEnd(tests) = row.proof else { continue };
        for (file, test) in tests {
            let path = repo().join("tests/tests/e2e").join(format!("{file}.rs"));
            let source = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                source.contains(&format!("async fn {test}()")) || source.contains(&format!("fn {test}()")),
                "{} -> {}: {file}::{test} does not exist",
                row.from,
                row.to
            );
        }
    }
}
