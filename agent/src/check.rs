//! `steward-agent --check-config`: checks what the agent would use at start,
//! without starting it.
//!
//! The config is loaded and validated by the agent's own loader; the TLS
//! files by the agent's TLS loading code; `initial_binary` by the binary
//! store's import check; the member's TLS files and password file by the
//! code that reads them for the agent's own calls to its member. On top,
//! each directory the agent or etcd writes into is tried with a probe file,
//! as the user running the check (run it as the agent's user), and each IP
//! address the agent or etcd listens on is bound with port 0 (is it an
//! address of this host?).
//!
//! The check takes no lock, starts nothing, and leaves nothing behind: the
//! probe files are removed at once, and files the agent appends to are
//! opened for appending but not written.

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::config::{Config, MemberSpec};
use crate::error::error_chain;

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// What was checked, e.g. `state_dir`.
    pub name: String,
    /// What was found, or why it is not good.
    pub outcome: Result<String, String>,
}

impl Check {
    fn new(name: impl Into<String>, outcome: Result<String, String>) -> Self {
        Self {
            name: name.into(),
            outcome,
        }
    }
}

/// Runs every check of the config at `path` (with `insecure` as the
/// agent's `--insecure`). A config that cannot be loaded is the only check.
#[must_use]
pub fn run(path: &Path, insecure: bool) -> Vec<Check> {
    let config = match Config::load_with(path, insecure) {
        Ok(config) => config,
        Err(error) => return vec![Check::new("config", Err(error_chain(&error)))],
    };
    let mut checks = vec![Check::new(
        "config",
        Ok(format!("{} loads and is valid", path.display())),
    )];
    checks.push(Check::new("listen", listen(&config)));
    if let Some(metrics) = &config.metrics {
        checks.push(Check::new("metrics.listen", metrics_listen(metrics)));
    }
    if let Some(tls) = &config.tls {
        checks.push(Check::new("tls", agent_tls(tls)));
    }
    checks.extend(import(&config));
    checks.push(Check::new("state_dir", state_dir(&config.state_dir)));
    checks.push(Check::new("state", state(&config.state_dir)));
    for (name, file) in [
        ("audit_log", config.state_dir.join(crate::audit::FILE_NAME)),
        ("etcd_log", config.state_dir.join("logs").join("etcd.log")),
    ] {
        checks.push(Check::new(name, appendable(&file)));
    }
    checks.push(Check::new(
        "member.data_dir",
        writable_dir(&config.member.data_dir, "etcd"),
    ));
    if let Some(wal) = flag_value(&config.member, "--wal-dir") {
        checks.push(Check::new("member.wal_dir", writable_dir(Path::new(wal), "etcd")));
    }
    checks.extend(member_tls(&config.member));
    checks.push(Check::new("member.client", member_client(&config.member)));
    if let Some(auth) = &config.member.auth {
        checks.push(Check::new(
            "member.auth",
            crate::member::MemberCredentials::read(auth)
                .map(|_| format!("user {}; {} holds a password", auth.user, auth.password_file.display()))
                .map_err(|e| error_chain(&e)),
        ));
    }
    for (field, urls) in [
        ("member.listen_client_urls", &config.member.listen_client_urls),
        ("member.listen_peer_urls", &config.member.listen_peer_urls),
    ] {
        checks.push(Check::new(field, listen_urls(urls)));
    }
    checks
}

/// Prints one line per check (`ok      name: detail` or `FAILED  name:
/// reason`) and a summary; true when every check passed.
///
/// # Errors
/// Writing to `out` failed.
pub fn report(checks: &[Check], out: &mut impl Write) -> std::io::Result<bool> {
    let mut failed = 0;
    for check in checks {
        match &check.outcome {
            Ok(detail) => writeln!(out, "ok      {}: {detail}", check.name)?,
            Err(reason) => {
                failed += 1;
                writeln!(out, "FAILED  {}: {reason}", check.name)?;
            }
        }
    }
    if failed == 0 {
        writeln!(out, "all {} checks passed", checks.len())?;
    } else {
        writeln!(out, "{failed} of {} checks FAILED", checks.len())?;
    }
    Ok(failed == 0)
}

fn listen(config: &Config) -> Result<String, String> {
    let mode = if config.tls.is_some() {
        "mutual TLS"
    } else {
        "INSECURE: plaintext without authentication"
    };
    local_ip(config.listen.ip())?;
    Ok(format!(
        "{} ({mode}); {} is an address of this host",
        config.listen,
        config.listen.ip()
    ))
}

fn metrics_listen(metrics: &crate::config::MetricsSettings) -> Result<String, String> {
    let scheme = if metrics.tls { "https" } else { "http" };
    local_ip(metrics.listen.ip())?;
    Ok(format!(
        "{scheme}://{}/metrics and /healthz; {} is an address of this host",
        metrics.listen,
        metrics.listen.ip()
    ))
}

/// Binds `ip` with port 0, which fails when the address is not one of
/// this host's; the port the agent or etcd will use is left alone.
fn local_ip(ip: IpAddr) -> Result<(), String> {
    TcpListener::bind(SocketAddr::new(ip, 0))
        .map(drop)
        .map_err(|e| format!("{ip} is not an address of this host: {e}"))
}

fn agent_tls(tls: &crate::config::AgentTls) -> Result<String, String> {
    crate::tls::load(tls).map_err(|e| error_chain(&e))?;
    let validity = valid_now(&tls.cert_file)?;
    Ok(format!(
        "certificate {} matches key {}, {validity}; client CA {}",
        tls.cert_file.display(),
        tls.key_file.display(),
        tls.client_ca_file.display()
    ))
}

/// Whether the first certificate of `path` is valid now; says until when.
fn valid_now(path: &Path) -> Result<String, String> {
    let chain = crate::tls::certificates("the certificate", path).map_err(|e| error_chain(&e))?;
    let (_, cert) = x509_parser::parse_x509_certificate(chain[0].as_ref())
        .map_err(|e| format!("cannot parse the certificate in {}: {e}", path.display()))?;
    let validity = cert.validity();
    let (from, until) = (validity.not_before, validity.not_after);
    if validity.is_valid() {
        Ok(format!("valid until {until}"))
    } else {
        Err(format!(
            "certificate {} is not valid now: valid from {from} until {until}",
            path.display()
        ))
    }
}

fn import(config: &Config) -> Vec<Check> {
    let mut checks: Vec<Check> = config
        .import_dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| {
            let outcome = std::fs::read_dir(dir)
                .map(|_| format!("{} is a readable directory", dir.display()))
                .map_err(|e| format!("cannot read the directory {}: {e}", dir.display()));
            Check::new(format!("import_dirs[{i}]"), outcome)
        })
        .collect();
    if let Some(binary) = &config.initial_binary {
        checks.push(Check::new("initial_binary", initial_binary(config, binary)));
    }
    checks
}

fn initial_binary(config: &Config, binary: &Path) -> Result<String, String> {
    let (file, resolved) = crate::store::BinaryStore::open_import(&config.import_dirs, &binary.display().to_string())
        .map_err(|e| error_chain(&e))?;
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    let max = config.limits.max_binary_bytes;
    if size > max {
        return Err(format!(
            "{} has {size} bytes, more than limits.max_binary_bytes ({max})",
            resolved.display()
        ));
    }
    Ok(format!("{} is readable ({size} bytes)", resolved.display()))
}

/// The state dir: owned by the user running the check (the agent sets its
/// mode at every start, which only the owner can), and writable; or, when
/// it does not exist yet, creatable.
fn state_dir(dir: &Path) -> Result<String, String> {
    if let Ok(metadata) = std::fs::metadata(dir) {
        let user = nix::unistd::geteuid().as_raw();
        if metadata.is_dir() && metadata.uid() != user {
            return Err(format!(
                "{} is owned by uid {}, not by uid {user} who runs the check: the agent sets its mode at every \
                 start, which only the owner can",
                dir.display(),
                metadata.uid()
            ));
        }
    }
    writable_dir(dir, "the agent")
}

/// `state.json`, read (not locked) as the agent reads it.
fn state(dir: &Path) -> Result<String, String> {
    if !dir.join("state.json").exists() {
        return Ok("no state.json yet: a first start".into());
    }
    let store = crate::state::StateStore::open(dir).map_err(|e| error_chain(&e))?;
    let state = store.get();
    Ok(format!(
        "state.json: {}, active version {}",
        state.state,
        state.active_version.as_deref().unwrap_or("none")
    ))
}

/// A file the agent appends to: if it exists, it can be opened for
/// appending (nothing is written).
fn appendable(file: &Path) -> Result<String, String> {
    match std::fs::OpenOptions::new().append(true).open(file) {
        Ok(_) => Ok(format!("{} can be appended to", file.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(format!("{} does not exist yet", file.display())),
        Err(e) => Err(format!("cannot open {} for appending: {e}", file.display())),
    }
}

/// A directory that `who` writes into: the directory itself when it
/// exists, else the nearest existing parent, where it will be created.
fn writable_dir(dir: &Path, who: &str) -> Result<String, String> {
    match std::fs::metadata(dir) {
        Ok(metadata) if !metadata.is_dir() => Err(format!("{} is not a directory", dir.display())),
        Ok(_) => probe(dir).map(|()| format!("{} is writable", dir.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = dir
                .ancestors()
                .skip(1)
                .find(|p| p.exists())
                .unwrap_or_else(|| Path::new("/"));
            probe(parent).map(|()| {
                format!(
                    "{} does not exist; {who} creates it in {}, which is writable",
                    dir.display(),
                    parent.display()
                )
            })
        }
        Err(e) => Err(format!("cannot look at {}: {e}", dir.display())),
    }
}

/// Creates and removes a file in `dir`.
fn probe(dir: &Path) -> Result<(), String> {
    tempfile::Builder::new()
        .prefix(".steward-check-")
        .tempfile_in(dir)
        .map(drop)
        .map_err(|e| {
            format!(
                "{} is not writable by uid {}: {e}",
                dir.display(),
                nix::unistd::geteuid()
            )
        })
}

/// The value of `--name=value` in `extra_flags`.
fn flag_value<'a>(member: &'a MemberSpec, name: &str) -> Option<&'a str> {
    member
        .extra_flags
        .iter()
        .find_map(|flag| flag.split_once('=').filter(|(n, _)| *n == name).map(|(_, v)| v))
}

fn member_tls(member: &MemberSpec) -> Vec<Check> {
    let tls = &member.tls;
    let mut checks = Vec::new();
    for (name, cert, key) in [
        ("member.tls.cert_file", &tls.cert_file, &tls.key_file),
        ("member.tls.peer_cert_file", &tls.peer_cert_file, &tls.peer_key_file),
    ] {
        let outcome = match (cert, key) {
            (None, None) => continue,
            (Some(cert), Some(key)) => crate::tls::check_pair("the member certificate", "the member key", cert, key)
                .map(|()| format!("{} matches key {}", cert.display(), key.display()))
                .map_err(|e| error_chain(&e)),
            (Some(_), None) | (None, Some(_)) => {
                Err("a certificate and its key go together: set both or neither".into())
            }
        };
        checks.push(Check::new(name, outcome));
    }
    for (name, ca) in [
        ("member.tls.trusted_ca_file", &tls.trusted_ca_file),
        ("member.tls.peer_trusted_ca_file", &tls.peer_trusted_ca_file),
    ] {
        if let Some(ca) = ca {
            let outcome = crate::tls::check_ca("the member CA", ca)
                .map(|()| format!("{} holds usable CA certificates", ca.display()))
                .map_err(|e| error_chain(&e));
            checks.push(Check::new(name, outcome));
        }
    }
    checks
}

/// The agent's own connection to its member, set up as at start.
fn member_client(member: &MemberSpec) -> Result<String, String> {
    let url = member.local_client_url();
    let tls = crate::member::MemberClientTls::read(&member.tls).map_err(|e| error_chain(&e))?;
    let mode = match &tls {
        Some(tls) if tls.identity.is_some() => "TLS with the member's certificate as client certificate",
        Some(_) => "TLS",
        None => "plaintext",
    };
    crate::member::LocalMember::new(url.to_owned(), tls).map_err(|e| error_chain(&e))?;
    Ok(format!("the agent reaches its member at {url} ({mode})"))
}

/// Each IP address of `urls` is one of this host's; host names are left
/// to etcd.
fn listen_urls(urls: &[String]) -> Result<String, String> {
    let mut hosts = Vec::new();
    for url in urls {
        let host = url
            .split_once("://")
            .map_or(url.as_str(), |(_, rest)| rest)
            .rsplit_once(':')
            .map_or("", |(host, _)| host);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match host.parse::<IpAddr>() {
            Ok(ip) => {
                local_ip(ip)?;
                hosts.push(ip.to_string());
            }
            Err(_) => hosts.push(format!("{host} (a host name: not checked)")),
        }
    }
    Ok(format!("addresses of this host: {}", hosts.join(", ")))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    struct Setup {
        dir: tempfile::TempDir,
        config: PathBuf,
    }

    fn write(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
    }

    /// A valid config with mutual TLS, member TLS and an initial binary,
    /// all in a temp dir; `edit` changes the TOML text before it is written.
    fn setup(edit: impl FnOnce(String) -> String) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        for name in ["agent", "member", "other"] {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            write(&root.join(format!("{name}.crt")), &cert.pem());
            write(&root.join(format!("{name}.key")), &key.serialize_pem());
        }
        write(&root.join("ca.crt"), &ca.pem());
        std::fs::create_dir(root.join("releases")).unwrap();
        write(&root.join("releases/etcd"), "#!/bin/sh\n");
        let r = root.display();
        let text = format!(
            r#"
            listen = "127.0.0.1:7400"
            state_dir = "{r}/state"
            import_dirs = ["{r}/releases"]
            initial_binary = "{r}/releases/etcd"
            [tls]
            cert_file = "{r}/agent.crt"
            key_file = "{r}/agent.key"
            client_ca_file = "{r}/ca.crt"
            [member]
            name = "m1"
            data_dir = "{r}/data"
            listen_client_urls = ["https://127.0.0.1:2379"]
            advertise_client_urls = ["https://127.0.0.1:2379"]
            listen_peer_urls = ["http://127.0.0.1:2380"]
            initial_advertise_peer_urls = ["http://127.0.0.1:2380"]
            initial_cluster = "m1=http://127.0.0.1:2380"
            [member.tls]
            cert_file = "{r}/member.crt"
            key_file = "{r}/member.key"
            trusted_ca_file = "{r}/ca.crt"
            "#
        );
        let config = root.join("agent.toml");
        write(&config, &edit(text));
        Setup { dir, config }
    }

    fn outcome<'a>(checks: &'a [Check], name: &str) -> &'a Result<String, String> {
        &checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check {name}: {checks:?}"))
            .outcome
    }

    fn printed(checks: &[Check]) -> (bool, String) {
        let mut out = Vec::new();
        let ok = report(checks, &mut out).unwrap();
        (ok, String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_good_config_passes_every_check_and_leaves_nothing_behind() {
        let setup = setup(|text| text);
        let checks = run(&setup.config, false);
        let (ok, text) = printed(&checks);
        assert!(ok, "{text}");
        assert!(
            text.lines().all(|l| l.starts_with("ok      ") || l.starts_with("all ")),
            "{text}"
        );
        for name in [
            "config",
            "listen",
            "tls",
            "import_dirs[0]",
            "initial_binary",
            "state_dir",
            "state",
            "member.data_dir",
            "member.tls.cert_file",
            "member.tls.trusted_ca_file",
            "member.client",
            "member.listen_client_urls",
        ] {
            assert!(outcome(&checks, name).is_ok(), "{name}");
        }
        assert!(text.contains("ok      state_dir: "), "{text}");
        assert!(outcome(&checks, "tls").as_ref().unwrap().contains("valid until"));
        // Nothing was created: no state dir, no data dir, no probe files.
        let mut left: Vec<String> = std::fs::read_dir(setup.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "agent.crt",
                "agent.key",
                "agent.toml",
                "ca.crt",
                "member.crt",
                "member.key",
                "other.crt",
                "other.key",
                "releases"
            ]
        );
    }

    #[test]
    fn a_config_that_does_not_load_is_one_failed_check() {
        let setup = setup(|text| text.replace("name = \"m1\"", "name = \"\""));
        let checks = run(&setup.config, false);
        let (ok, text) = printed(&checks);
        assert!(!ok);
        assert_eq!(checks.len(), 1);
        assert!(text.starts_with("FAILED  config: config field member.name: "), "{text}");
        assert!(text.ends_with("1 of 1 checks FAILED\n"), "{text}");
    }

    #[test]
    fn a_key_of_another_certificate_fails() {
        let setup = setup(|text| {
            text.replace("/agent.key", "/other.key")
                .replace("/member.key", "/other.key")
        });
        let checks = run(&setup.config, false);
        let tls = outcome(&checks, "tls").as_ref().unwrap_err();
        assert!(
            tls.contains("cannot read the agent key from ")
                && tls.contains("other.key: it is not the key of the certificate"),
            "{tls}"
        );
        let member = outcome(&checks, "member.tls.cert_file").as_ref().unwrap_err();
        assert!(
            member.contains("other.key") && member.contains("member.crt"),
            "{member}"
        );
        let (ok, text) = printed(&checks);
        assert!(!ok);
        assert!(text.contains("FAILED  tls: "), "{text}");
    }

    #[test]
    fn missing_files_and_unwritable_dirs_fail() {
        let setup = setup(|text| {
            text.replace(
                "/ca.crt\"\n            [member]",
                "/missing-ca.crt\"\n            [member]",
            )
            .replace("/data\"", "/proc-like\"")
        });
        // A data dir whose parent cannot take files, even for root.
        let text = std::fs::read_to_string(&setup.config).unwrap().replace(
            &format!("{}/proc-like", setup.dir.path().display()),
            "/proc/steward-no-such-dir",
        );
        write(&setup.config, &text);
        let checks = run(&setup.config, false);
        let tls = outcome(&checks, "tls").as_ref().unwrap_err();
        assert!(tls.contains("missing-ca.crt"), "{tls}");
        let data = outcome(&checks, "member.data_dir").as_ref().unwrap_err();
        assert!(data.contains("/proc is not writable"), "{data}");
    }

    #[test]
    fn an_address_of_another_host_fails() {
        let setup = setup(|text| text.replace("listen = \"127.0.0.1:7400\"", "listen = \"192.0.2.1:7400\""));
        let checks = run(&setup.config, false);
        let listen = outcome(&checks, "listen").as_ref().unwrap_err();
        assert!(listen.contains("192.0.2.1 is not an address of this host"), "{listen}");
    }

    #[test]
    fn a_state_dir_and_data_dir_that_exist_are_probed() {
        let setup = setup(|text| text);
        let root = setup.dir.path();
        std::fs::create_dir_all(root.join("state/logs")).unwrap();
        std::fs::create_dir(root.join("data")).unwrap();
        write(
            &root.join("state/state.json"),
            "{\"state\": \"running\", \"active_version\": \"3.5.30\", \"previous_version\": null}",
        );
        let checks = run(&setup.config, false);
        let state = outcome(&checks, "state").as_ref().unwrap();
        assert!(state.contains("RUNNING") && state.contains("3.5.30"), "{state}");
        assert!(
            outcome(&checks, "member.data_dir")
                .as_ref()
                .unwrap()
                .ends_with("is writable")
        );

        write(&root.join("state/state.json"), "{not json");
        let checks = run(&setup.config, false);
        assert!(outcome(&checks, "state").is_err());
    }
}
