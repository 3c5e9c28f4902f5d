//! The gRPC services: request validation, conversion between the contract's
//! messages and the agent's types, and nothing else. Every error goes
//! through `From<AgentError> for Status`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::Stream;
use steward_proto::EtcdVersion;
use steward_proto::trailer::{HashingWriter, WriterError};
use steward_proto::v1 as pb;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::access::Caller;
use crate::audit::{AuditLog, Pending};

use crate::agent::{Agent, RestoreRequest, Switched, TokenAuthority};
use crate::error::{AgentError, BinaryRefusal};
use crate::flags::{ChangeKind, FlagChange};
use crate::input_limits::Limited;
use crate::snapshot::{SnapshotMeta, UploadDeclared};
use crate::state::{AgentState, Operation, RestorePhase, RestoreRecord};
use crate::store::{BinaryStore, Declared, Manifest, Tool};

/// Lines TailLogs sends first when the request does not say.
const DEFAULT_TAIL_LINES: usize = 100;
/// Longest activation timeout a caller may ask for.
const MAX_ACTIVATE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Chunk size of DownloadSnapshot.
const DOWNLOAD_CHUNK: usize = 64 * 1024;
/// How many chunks may wait for the caller to take them.
const DOWNLOAD_QUEUE: usize = 8;
/// Bytes read from an imported snapshot file at a time.
const IMPORT_CHUNK: usize = 1 << 20;
/// How many batches of a snapshot (about a MiB each) may wait for the
/// caller of TakeAndSendSnapshot.
const SEND_QUEUE: usize = 4;

type ServiceStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The three services over one agent.
#[derive(Clone, Debug)]
pub struct AgentService {
    agent: Arc<Agent>,
    /// Every call that changes something is written here.
    audit: Arc<AuditLog>,
    /// Ends open follow streams, which would otherwise hold the graceful
    /// shutdown of the server open forever.
    shutdown: CancellationToken,
    /// The certificate the API is served with (none in insecure mode).
    served: Option<pb::ServedCertificate>,
}

impl AgentService {
    /// Services for `agent`; streams that follow end at `shutdown`; calls
    /// that change something are written to `audit`; `served` is the
    /// certificate the API is served with, for GetStatus.
    #[must_use]
    pub const fn new(
        agent: Arc<Agent>,
        shutdown: CancellationToken,
        audit: Arc<AuditLog>,
        served: Option<pb::ServedCertificate>,
    ) -> Self {
        Self {
            agent,
            audit,
            shutdown,
            served,
        }
    }

    /// Starts the audit line of `rpc` made by `request`'s caller.
    fn audit<T>(&self, request: &Request<T>, rpc: &'static str, fencing_token: i64) -> Pending {
        Pending::start(&self.audit, request.extensions().get::<Caller>(), rpc, fencing_token)
    }
}

/// The retention bucket of the snapshots `request`'s caller has taken: its
/// role (`admin` on an insecure agent).
fn owner<T>(request: &Request<T>) -> &'static str {
    match request.extensions().get::<Caller>() {
        Some(Caller { role: Some(role), .. }) => role.as_str(),
        _ => "admin",
    }
}

/// Whether the caller of `request` may raise the agent's fencing mark:
/// an admin, or anyone on an insecure development agent. A reader, backup
/// or operator certificate never moves it (see `Agent::admit`).
fn authority<T>(request: &Request<T>) -> TokenAuthority {
    match request.extensions().get::<Caller>() {
        Some(Caller {
            role: Some(steward_proto::Role::Admin) | None,
            ..
        }) => TokenAuthority::MayRaise,
        _ => TokenAuthority::CheckOnly,
    }
}

fn timeout_arg(timeout: Option<prost_types::Duration>) -> serde_json::Value {
    timeout.map_or(serde_json::Value::Null, |d| format!("{}s", d.seconds).into())
}

fn invalid(field: &'static str, reason: impl Into<String>) -> AgentError {
    AgentError::InvalidArgument {
        field,
        reason: reason.into(),
    }
}

fn parse_version(field: &'static str, text: &str) -> Result<EtcdVersion, AgentError> {
    if text.is_empty() {
        return Err(invalid(field, "is required"));
    }
    text.parse()
        .map_err(|e: steward_proto::VersionError| invalid(field, e.to_string()))
}

fn parse_sha256(field: &'static str, text: &str) -> Result<String, AgentError> {
    if text.len() != 64 || !text.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(invalid(field, format!("{text:?} is not 64 hex digits")));
    }
    Ok(text.to_ascii_lowercase())
}

fn parse_tool(field: &'static str, value: i32) -> Result<Tool, AgentError> {
    match pb::Tool::try_from(value) {
        Ok(pb::Tool::Etcd) => Ok(Tool::Etcd),
        Ok(pb::Tool::Etcdctl) => Ok(Tool::Etcdctl),
        Ok(pb::Tool::Etcdutl) => Ok(Tool::Etcdutl),
        _ => Err(invalid(field, "must be TOOL_ETCD, TOOL_ETCDCTL or TOOL_ETCDUTL")),
    }
}

fn parse_timeout(field: &'static str, value: Option<prost_types::Duration>) -> Result<Option<Duration>, AgentError> {
    let Some(value) = value else { return Ok(None) };
    let duration = Duration::try_from(value).map_err(|e| invalid(field, e.to_string()))?;
    if duration.is_zero() || duration > MAX_ACTIVATE_TIMEOUT {
        return Err(invalid(
            field,
            format!("must be more than 0s and at most {MAX_ACTIVATE_TIMEOUT:?}"),
        ));
    }
    Ok(Some(duration))
}

fn timestamp(time: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(time)
}

fn timestamp_ms(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(d).unwrap_or_default()
}

fn state_to_pb(state: AgentState) -> pb::AgentState {
    match state {
        AgentState::Empty => pb::AgentState::Empty,
        AgentState::Stopped => pb::AgentState::Stopped,
        AgentState::Running => pb::AgentState::Running,
        AgentState::Activating => pb::AgentState::Activating,
        AgentState::RollingBack => pb::AgentState::RollingBack,
        AgentState::Failed => pb::AgentState::Failed,
        AgentState::Restoring => pb::AgentState::Restoring,
    }
}

fn change_to_pb(change: &FlagChange) -> pb::FlagChange {
    let kind = match change.kind {
        ChangeKind::Added => pb::flag_change::Kind::Added,
        ChangeKind::Removed => pb::flag_change::Kind::Removed,
        ChangeKind::Renamed => pb::flag_change::Kind::Renamed,
        ChangeKind::Changed => pb::flag_change::Kind::Changed,
        ChangeKind::Refused => pb::flag_change::Kind::Refused,
    };
    pb::FlagChange {
        kind: kind.into(),
        flag: change.flag.clone(),
        new_flag: change.new_flag.clone(),
        old_value: change.old_value.clone(),
        new_value: change.new_value.clone(),
        reason: change.reason.clone(),
        rule: change.rule.to_owned(),
    }
}

fn tool_to_pb(tool: Tool) -> pb::Tool {
    match tool {
        Tool::Etcd => pb::Tool::Etcd,
        Tool::Etcdctl => pb::Tool::Etcdctl,
        Tool::Etcdutl => pb::Tool::Etcdutl,
    }
}

impl AgentService {
    fn staged_to_pb(&self, manifest: &Manifest) -> pb::StagedVersion {
        let persisted = self.agent.persisted();
        let version = manifest.version.to_string();
        pb::StagedVersion {
            active: persisted.active_version.as_deref() == Some(version.as_str()),
            previous: persisted.previous_version.as_deref() == Some(version.as_str()),
            version,
            files: manifest
                .files
                .iter()
                .map(|(tool, file)| pb::StagedFile {
                    tool: tool_to_pb(*tool).into(),
                    sha256: file.sha256.clone(),
                    size: file.size,
                })
                .collect(),
            staged_at: Some(timestamp_ms(manifest.staged_at_ms)),
        }
    }
}

fn snapshot_to_pb(meta: &SnapshotMeta) -> pb::SnapshotInfo {
    pb::SnapshotInfo {
        id: meta.id.clone(),
        path: meta.path.display().to_string(),
        size: meta.size,
        sha256: meta.sha256.clone(),
        revision: meta.revision,
        total_keys: meta.total_keys,
        etcd_version: meta.etcd_version.clone(),
        cluster_version: meta.cluster_version.clone(),
        created_at: Some(timestamp_ms(meta.created_at_ms)),
        member_name: meta.member_name.clone(),
        member_id: meta.member_id,
        db_cluster_version: meta.db_cluster_version.clone(),
        uploaded: meta.uploaded,
        pin: meta.pin.clone(),
    }
}

fn restore_to_pb(record: &RestoreRecord) -> pb::RestoreInfo {
    pb::RestoreInfo {
        restore_id: record.id.clone(),
        phase: match record.phase {
            RestorePhase::Restoring => pb::RestorePhase::Restoring,
            RestorePhase::Restored => pb::RestorePhase::Restored,
            RestorePhase::Finished => pb::RestorePhase::Finished,
        }
        .into(),
        snapshot_id: record.snapshot_id.clone(),
        snapshot_sha256: record.snapshot_sha256.clone(),
        snapshot_revision: record.snapshot_revision,
        version: record.version.clone(),
        initial_cluster: record.initial_cluster.clone(),
        initial_cluster_token: record.initial_cluster_token.clone(),
        data_dir: record.data_dir.display().to_string(),
        moved_aside_to: if record.had_data_dir {
            record.moved_aside_to.display().to_string()
        } else {
            String::new()
        },
        started_at: Some(timestamp_ms(record.started_at_ms)),
        updated_at: Some(timestamp_ms(record.updated_at_ms)),
    }
}

/// A restore id or cluster token: what is safe in a file name and on
/// etcd's command line.
fn parse_name(field: &'static str, text: &str) -> Result<String, AgentError> {
    if text.is_empty() {
        return Err(invalid(field, "is required"));
    }
    if !crate::snapshot::is_safe_name(text, 128) {
        return Err(invalid(
            field,
            format!("{text:?} must be at most 128 letters, digits, '-', '_' or '.', not starting with '.'"),
        ));
    }
    Ok(text.to_owned())
}

fn switched_to_pb(switched: Switched) -> pb::ActivateResponse {
    pb::ActivateResponse {
        active_version: switched.active.to_string(),
        previous_version: switched.previous.map(|v| v.to_string()).unwrap_or_default(),
        args: switched.rendered.args,
        pid: switched.pid,
        took: Some(duration(switched.took)),
        changes: switched.rendered.changes.iter().map(change_to_pb).collect(),
    }
}

#[tonic::async_trait]
impl pb::agent_server::Agent for AgentService {
    async fn get_status(&self, _: Request<pb::GetStatusRequest>) -> Result<Response<pb::GetStatusResponse>, Status> {
        let agent = &self.agent;
        let persisted = agent.persisted();
        let process = agent.process();
        let config = agent.config();
        let staged = agent
            .store()
            .list()?
            .into_iter()
            .filter(|m| m.files.contains_key(&Tool::Etcd))
            .map(|m| m.version.to_string())
            .collect();
        let member = agent.member().status().await;
        let process_info = match &process.record {
            Some(record) => pb::ProcessInfo {
                running: true,
                pid: record.pid,
                started_at: Some(timestamp(record.started_at())),
                uptime: Some(duration(
                    SystemTime::now()
                        .duration_since(record.started_at())
                        .unwrap_or_default(),
                )),
                restart_count: process.restart_count,
                last_exit: process.last_exit.clone().unwrap_or_default(),
                executable: record.executable.display().to_string(),
                args: record.args.clone(),
                adopted: process.adopted,
            },
            None => pb::ProcessInfo {
                restart_count: process.restart_count,
                last_exit: process.last_exit.clone().unwrap_or_default(),
                ..pb::ProcessInfo::default()
            },
        };
        Ok(Response::new(pb::GetStatusResponse {
            agent: Some(pb::AgentInfo {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                state: state_to_pb(persisted.state).into(),
                state_reason: persisted.state_reason.clone(),
                member_name: config.member.name.clone(),
                state_dir: config.state_dir.display().to_string(),
                started_at: Some(timestamp(agent.started_at())),
                client_urls: config.member.advertise_client_urls.clone(),
                peer_urls: config.member.initial_advertise_peer_urls.clone(),
                tls_certificate: self.served.clone(),
            }),
            process: Some(process_info),
            versions: Some(pb::Versions {
                active: persisted.active_version.clone().unwrap_or_default(),
                previous: persisted.previous_version.clone().unwrap_or_default(),
                staged,
            }),
            member: Some(member),
            data_dir: Some(crate::datadir::facts(&config.member.data_dir)),
            disk: Some(crate::datadir::disk(&config.state_dir, &config.member.data_dir)),
            restore: persisted.restore.as_ref().map(restore_to_pb),
        }))
    }

    async fn check_flags(
        &self,
        request: Request<pb::CheckFlagsRequest>,
    ) -> Result<Response<pb::CheckFlagsResponse>, Status> {
        request.get_ref().check_lengths()?;
        let target = parse_version("target_version", &request.get_ref().target_version)?;
        let from = match request.get_ref().from_version.as_str() {
            "" => None,
            text => Some(parse_version("from_version", text)?),
        };
        let check = self.agent.check_flags(&target, from.as_ref())?;
        Ok(Response::new(pb::CheckFlagsResponse {
            current_version: check.current_version.map(|v| v.to_string()).unwrap_or_default(),
            current_args: check.current_args,
            refused: check.target.is_refused(),
            changes: check.target.changes.iter().map(change_to_pb).collect(),
            target_args: check.target.args,
        }))
    }

    async fn check_v2_store(
        &self,
        _: Request<pb::CheckV2StoreRequest>,
    ) -> Result<Response<pb::CheckV2StoreResponse>, Status> {
        let (finding, etcdutl) = self.agent.check_v2store().await?;
        Ok(Response::new(pb::CheckV2StoreResponse {
            clean: finding.clean,
            verdict: finding.verdict,
            etcdutl_version: etcdutl.to_string(),
        }))
    }

    async fn activate(&self, request: Request<pb::ActivateRequest>) -> Result<Response<pb::ActivateResponse>, Status> {
        let mut call = self.audit(&request, "Activate", request.get_ref().fencing_token);
        call.arg("version", request.get_ref().version.clone());
        call.arg("timeout", timeout_arg(request.get_ref().timeout));
        let authority = authority(&request);
        call.finish(self.activate_call(authority, request.into_inner()).await)
    }

    async fn rollback(&self, request: Request<pb::RollbackRequest>) -> Result<Response<pb::ActivateResponse>, Status> {
        let mut call = self.audit(&request, "Rollback", request.get_ref().fencing_token);
        call.arg("timeout", timeout_arg(request.get_ref().timeout));
        let authority = authority(&request);
        call.finish(self.rollback_call(authority, request.into_inner()).await)
    }

    async fn start(&self, request: Request<pb::StartRequest>) -> Result<Response<pb::LifecycleResponse>, Status> {
        let call = self.audit(&request, "Start", request.get_ref().fencing_token);
        call.finish(
            self.start_call(authority(&request), request.get_ref().fencing_token)
                .await,
        )
    }

    async fn stop(&self, request: Request<pb::StopRequest>) -> Result<Response<pb::LifecycleResponse>, Status> {
        let call = self.audit(&request, "Stop", request.get_ref().fencing_token);
        call.finish(
            self.stop_call(authority(&request), request.get_ref().fencing_token)
                .await,
        )
    }

    async fn restart(&self, request: Request<pb::RestartRequest>) -> Result<Response<pb::LifecycleResponse>, Status> {
        let call = self.audit(&request, "Restart", request.get_ref().fencing_token);
        call.finish(
            self.restart_call(authority(&request), request.get_ref().fencing_token)
                .await,
        )
    }

    async fn restore_member(
        &self,
        request: Request<pb::RestoreMemberRequest>,
    ) -> Result<Response<pb::RestoreMemberResponse>, Status> {
        let r = request.get_ref();
        let mut call = self.audit(&request, "RestoreMember", r.fencing_token);
        call.arg("restore_id", r.restore_id.clone());
        call.arg("snapshot_id", r.snapshot_id.clone());
        call.arg("version", r.version.clone());
        call.arg("initial_cluster", r.initial_cluster.clone());
        call.arg("initial_cluster_token", r.initial_cluster_token.clone());
        call.arg("dry_run", r.dry_run);
        let authority = authority(&request);
        call.finish(self.restore_call(authority, request.into_inner()).await)
    }

    async fn finish_restore(
        &self,
        request: Request<pb::FinishRestoreRequest>,
    ) -> Result<Response<pb::RestoreMemberResponse>, Status> {
        let mut call = self.audit(&request, "FinishRestore", 0);
        call.arg("restore_id", request.get_ref().restore_id.clone());
        let result = request
            .get_ref()
            .check_lengths()
            .and_then(|()| parse_name("restore_id", &request.get_ref().restore_id))
            .and_then(|id| self.agent.finish_restore(&id))
            .map(|record| {
                Response::new(pb::RestoreMemberResponse {
                    restore: Some(restore_to_pb(&record)),
                })
            })
            .map_err(Status::from);
        call.finish(result)
    }

    type TailLogsStream = ServiceStream<pb::TailLogsResponse>;

    async fn tail_logs(&self, request: Request<pb::TailLogsRequest>) -> Result<Response<Self::TailLogsStream>, Status> {
        let request = request.into_inner();
        let capacity = self.agent.config().supervision.log_tail_lines;
        let lines = if request.lines == 0 {
            capacity.min(DEFAULT_TAIL_LINES)
        } else {
            usize::try_from(request.lines).unwrap_or(usize::MAX)
        };
        if lines > capacity {
            return Err(invalid("lines", format!("at most {capacity} lines are kept")).into());
        }
        // Subscribe before reading the tail so no line falls in between.
        let receiver = self.agent.logs().subscribe();
        let first = pb::TailLogsResponse {
            lines: self.agent.logs().last(lines),
        };
        let head = tokio_stream::once(Ok(first));
        if !request.follow {
            return Ok(Response::new(Box::pin(head)));
        }
        let follow = tokio_stream::wrappers::BroadcastStream::new(receiver).filter_map(|item| match item {
            Ok(line) => Some(Ok(pb::TailLogsResponse { lines: vec![line] })),
            Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                Some(Ok(pb::TailLogsResponse {
                    lines: vec![format!("[steward-agent: {n} lines skipped: the reader fell behind]")],
                }))
            }
        });
        let follow = futures::StreamExt::take_until(follow, Box::pin(self.shutdown.clone().cancelled_owned()));
        Ok(Response::new(Box::pin(head.chain(follow))))
    }
}

impl AgentService {
    async fn activate_call(
        &self,
        authority: TokenAuthority,
        request: pb::ActivateRequest,
    ) -> Result<Response<pb::ActivateResponse>, Status> {
        request.check_lengths()?;
        self.agent.admit(request.fencing_token, authority).await?;
        let version = parse_version("version", &request.version)?;
        let timeout = parse_timeout("timeout", request.timeout)?;
        let switched = Box::pin(self.agent.activate(version, timeout)).await?;
        Ok(Response::new(switched_to_pb(switched)))
    }

    async fn rollback_call(
        &self,
        authority: TokenAuthority,
        request: pb::RollbackRequest,
    ) -> Result<Response<pb::ActivateResponse>, Status> {
        self.agent.admit(request.fencing_token, authority).await?;
        let timeout = parse_timeout("timeout", request.timeout)?;
        let switched = Box::pin(self.agent.rollback(timeout)).await?;
        Ok(Response::new(switched_to_pb(switched)))
    }

    async fn start_call(
        &self,
        authority: TokenAuthority,
        fencing_token: i64,
    ) -> Result<Response<pb::LifecycleResponse>, Status> {
        self.agent.admit(fencing_token, authority).await?;
        let pid = self.agent.start_member().await?;
        Ok(Response::new(self.lifecycle(pid)))
    }

    async fn stop_call(
        &self,
        authority: TokenAuthority,
        fencing_token: i64,
    ) -> Result<Response<pb::LifecycleResponse>, Status> {
        self.agent.admit(fencing_token, authority).await?;
        self.agent.stop_member().await?;
        Ok(Response::new(self.lifecycle(0)))
    }

    async fn restart_call(
        &self,
        authority: TokenAuthority,
        fencing_token: i64,
    ) -> Result<Response<pb::LifecycleResponse>, Status> {
        self.agent.admit(fencing_token, authority).await?;
        let pid = self.agent.restart_member().await?;
        Ok(Response::new(self.lifecycle(pid)))
    }

    fn lifecycle(&self, pid: u32) -> pb::LifecycleResponse {
        pb::LifecycleResponse {
            state: state_to_pb(self.agent.persisted().state).into(),
            pid,
        }
    }
}

#[tonic::async_trait]
impl pb::binaries_server::Binaries for AgentService {
    async fn list_binaries(
        &self,
        _: Request<pb::ListBinariesRequest>,
    ) -> Result<Response<pb::ListBinariesResponse>, Status> {
        let versions = self
            .agent
            .store()
            .list()?
            .iter()
            .map(|m| self.staged_to_pb(m))
            .collect();
        Ok(Response::new(pb::ListBinariesResponse { versions }))
    }

    async fn import_binary(
        &self,
        request: Request<pb::ImportBinaryRequest>,
    ) -> Result<Response<pb::ImportBinaryResponse>, Status> {
        let mut call = self.audit(&request, "ImportBinary", request.get_ref().fencing_token);
        let args = request.get_ref();
        call.arg("path", args.path.clone());
        call.arg("tool", args.tool);
        call.arg("version", args.version.clone());
        call.arg("sha256", args.sha256.clone());
        let authority = authority(&request);
        call.finish(self.import_call(authority, request.into_inner()).await)
    }

    async fn upload_binary(
        &self,
        request: Request<Streaming<pb::UploadBinaryRequest>>,
    ) -> Result<Response<pb::ImportBinaryResponse>, Status> {
        let mut call = self.audit(&request, "UploadBinary", 0);
        let authority = authority(&request);
        let result = self.upload_call(authority, request.into_inner(), &mut call).await;
        call.finish(result)
    }
}

impl AgentService {
    async fn import_call(
        &self,
        authority: TokenAuthority,
        request: pb::ImportBinaryRequest,
    ) -> Result<Response<pb::ImportBinaryResponse>, Status> {
        request.check_lengths()?;
        self.agent.admit(request.fencing_token, authority).await?;
        let tool = parse_tool("tool", request.tool)?;
        let version = parse_version("version", &request.version)?;
        let sha256 = if request.sha256.is_empty() {
            None
        } else {
            Some(parse_sha256("sha256", &request.sha256)?)
        };
        let max = self.agent.config().limits.max_binary_bytes;
        let incoming = self.agent.store().receive_import(&request.path, max).await?;
        let declared = Declared {
            tool,
            version: Some(version),
            sha256,
            size: None,
        };
        let (manifest, already_present) = self.agent.stage(incoming, &declared).await?;
        Ok(Response::new(pb::ImportBinaryResponse {
            staged: Some(self.staged_to_pb(&manifest)),
            already_present,
        }))
    }

    async fn upload_call(
        &self,
        authority: TokenAuthority,
        mut stream: Streaming<pb::UploadBinaryRequest>,
        call: &mut Pending,
    ) -> Result<Response<pb::ImportBinaryResponse>, Status> {
        let header = match stream.message().await? {
            Some(pb::UploadBinaryRequest {
                part: Some(pb::upload_binary_request::Part::Header(header)),
            }) => header,
            _ => return Err(invalid("header", "the first message must be an UploadHeader").into()),
        };
        call.fencing_token(header.fencing_token);
        header.check_lengths()?;
        call.arg("tool", header.tool);
        call.arg("version", header.version.clone());
        call.arg("sha256", header.sha256.clone());
        call.arg("size", header.size);
        self.agent.admit(header.fencing_token, authority).await?;
        let tool = parse_tool("header.tool", header.tool)?;
        let version = parse_version("header.version", &header.version)?;
        let sha256 = parse_sha256("header.sha256", &header.sha256)?;
        let max = self.agent.config().limits.max_binary_bytes;
        if header.size == 0 || header.size > max {
            return Err(invalid("header.size", format!("must be between 1 and {max} bytes")).into());
        }
        let (mut incoming, mut writer) = self.agent.store().receive_upload()?;
        while let Some(message) = self.next_or_stalled(&mut stream).await? {
            match message.part {
                Some(pb::upload_binary_request::Part::Chunk(chunk)) => {
                    if writer.size() + chunk.len() as u64 > header.size {
                        return Err(AgentError::from(BinaryRefusal::SizeMismatch {
                            declared: header.size,
                            actual: writer.size() + chunk.len() as u64,
                        })
                        .into());
                    }
                    writer.append(&chunk)?;
                }
                _ => return Err(invalid("chunk", "only content chunks may follow the header").into()),
            }
        }
        writer.finish(&mut incoming)?;
        let declared = Declared {
            tool,
            version: Some(version),
            sha256: Some(sha256),
            size: Some(header.size),
        };
        let (manifest, already_present) = self.agent.stage(incoming, &declared).await?;
        Ok(Response::new(pb::ImportBinaryResponse {
            staged: Some(self.staged_to_pb(&manifest)),
            already_present,
        }))
    }
}

#[tonic::async_trait]
impl pb::snapshots_server::Snapshots for AgentService {
    async fn take_snapshot(
        &self,
        request: Request<pb::TakeSnapshotRequest>,
    ) -> Result<Response<pb::TakeSnapshotResponse>, Status> {
        let mut call = self.audit(&request, "TakeSnapshot", request.get_ref().fencing_token);
        let result = async {
            self.agent
                .admit(request.get_ref().fencing_token, authority(&request))
                .await?;
            let meta = self.agent.take_snapshot(None, owner(&request)).await?;
            Ok(meta)
        }
        .await;
        if let Ok(meta) = &result {
            call.arg("id", meta.id.clone());
        }
        call.finish(result.map(|meta| {
            Response::new(pb::TakeSnapshotResponse {
                snapshot: Some(snapshot_to_pb(&meta)),
            })
        }))
    }

    type TakeAndSendSnapshotStream = ServiceStream<pb::TakeAndSendSnapshotResponse>;

    async fn take_and_send_snapshot(
        &self,
        request: Request<pb::TakeSnapshotRequest>,
    ) -> Result<Response<Self::TakeAndSendSnapshotStream>, Status> {
        // A copy of every secret stored in etcd leaves the host: audited
        // like a change, when it ends.
        let mut call = self.audit(&request, "TakeAndSendSnapshot", request.get_ref().fencing_token);
        if let Err(refused) = self
            .agent
            .admit(request.get_ref().fencing_token, authority(&request))
            .await
        {
            return call.finish(Err(refused.into()));
        }
        let (tee, chunks) = tokio::sync::mpsc::channel::<bytes::Bytes>(SEND_QUEUE);
        let (stored, outcome) = tokio::sync::oneshot::channel();
        let agent = Arc::clone(&self.agent);
        let owner = owner(&request).to_owned();
        tokio::spawn(async move {
            let result = agent.take_snapshot(Some(tee), &owner).await;
            if let Ok(meta) = &result {
                call.arg("id", meta.id.clone());
            }
            let last = call
                .finish(result.map_err(Status::from))
                .map(|meta| pb::TakeAndSendSnapshotResponse {
                    part: Some(pb::take_and_send_snapshot_response::Part::Stored(snapshot_to_pb(&meta))),
                    chunks_crc32: None,
                });
            let _ = stored.send(last);
        });
        // The CRC of exactly the bytes that went into the response, taken
        // where they go: the caller's copy is checked against it, not
        // hashed a second time (the trailer was checked over these bytes).
        let carried = Arc::new(std::sync::Mutex::new(crc32fast::Hasher::new()));
        let sending = Arc::clone(&carried);
        let sent = tokio_stream::wrappers::ReceiverStream::new(chunks).map(move |chunk| {
            sending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .update(&chunk);
            Ok(pb::TakeAndSendSnapshotResponse {
                part: Some(pb::take_and_send_snapshot_response::Part::Chunk(chunk)),
                chunks_crc32: None,
            })
        });
        let crc_of_all = move || {
            carried
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
                .finalize()
        };
        // Chained after every chunk, so the CRC is complete: an empty chunk
        // that carries it marks the end of the chunks, and the caller makes
        // its copy durable while this side syncs and summarises its own (a
        // caller that does not know the mark writes nothing for it).
        let crc = crc_of_all.clone();
        let mark = futures::stream::once(async move {
            Ok(pb::TakeAndSendSnapshotResponse {
                part: Some(pb::take_and_send_snapshot_response::Part::Chunk(bytes::Bytes::new())),
                chunks_crc32: Some(crc()),
            })
        });
        let last = futures::stream::once(async move {
            let mut last = outcome
                .await
                .unwrap_or_else(|_| Err(Status::internal("the snapshot task ended abnormally")))?;
            last.chunks_crc32 = Some(crc_of_all());
            Ok(last)
        });
        Ok(Response::new(Box::pin(sent.chain(mark).chain(last))))
    }

    async fn pin_snapshot(
        &self,
        request: Request<pb::PinSnapshotRequest>,
    ) -> Result<Response<pb::PinSnapshotResponse>, Status> {
        let mut call = self.audit(&request, "PinSnapshot", request.get_ref().fencing_token);
        let authority = authority(&request);
        let lengths = request.get_ref().check_lengths();
        let pb::PinSnapshotRequest { id, pin, fencing_token } = request.into_inner();
        call.arg("id", id.clone());
        call.arg("pin", pin.clone());
        if let Err(refused) = lengths {
            return call.finish(Err(refused.into()));
        }
        let result = match self.agent.admit(fencing_token, authority).await {
            Ok(()) => self.agent.pin_snapshot(&id, &pin),
            Err(refused) => Err(refused),
        };
        call.finish(result.map_err(Status::from).map(|(meta, released)| {
            Response::new(pb::PinSnapshotResponse {
                snapshot: Some(snapshot_to_pb(&meta)),
                released,
            })
        }))
    }

    async fn list_snapshots(
        &self,
        _: Request<pb::ListSnapshotsRequest>,
    ) -> Result<Response<pb::ListSnapshotsResponse>, Status> {
        let snapshots = self.agent.snapshots().list()?.iter().map(snapshot_to_pb).collect();
        Ok(Response::new(pb::ListSnapshotsResponse { snapshots }))
    }

    async fn upload_snapshot(
        &self,
        request: Request<Streaming<pb::UploadSnapshotRequest>>,
    ) -> Result<Response<pb::UploadSnapshotResponse>, Status> {
        let mut call = self.audit(&request, "UploadSnapshot", 0);
        let authority = authority(&request);
        let result = self
            .upload_snapshot_call(authority, request.into_inner(), &mut call)
            .await;
        call.finish(result)
    }

    async fn import_snapshot(
        &self,
        request: Request<pb::ImportSnapshotRequest>,
    ) -> Result<Response<pb::UploadSnapshotResponse>, Status> {
        let mut call = self.audit(&request, "ImportSnapshot", 0);
        let authority = authority(&request);
        let result = self
            .import_snapshot_call(authority, request.into_inner(), &mut call)
            .await;
        call.finish(result)
    }

    type DownloadSnapshotStream = ServiceStream<pb::DownloadSnapshotResponse>;

    async fn download_snapshot(
        &self,
        request: Request<pb::DownloadSnapshotRequest>,
    ) -> Result<Response<Self::DownloadSnapshotStream>, Status> {
        // A download copies every secret stored in etcd: audited like a
        // change.
        let mut call = self.audit(&request, "DownloadSnapshot", 0);
        call.arg("id", request.get_ref().id.clone());
        if let Err(refused) = request.get_ref().check_lengths() {
            return call.finish(Err(refused.into()));
        }
        call.finish(self.download_call(&request.get_ref().id).await)
    }
}

impl AgentService {
    async fn restore_call(
        &self,
        authority: TokenAuthority,
        request: pb::RestoreMemberRequest,
    ) -> Result<Response<pb::RestoreMemberResponse>, Status> {
        request.check_lengths()?;
        let parsed = RestoreRequest {
            id: parse_name("restore_id", &request.restore_id)?,
            snapshot_id: {
                crate::snapshot::check_id(&request.snapshot_id)
                    .map_err(|_| invalid("snapshot_id", format!("{:?} is not a snapshot id", request.snapshot_id)))?;
                request.snapshot_id.clone()
            },
            version: parse_version("version", &request.version)?,
            initial_cluster: if request.initial_cluster.is_empty() {
                return Err(invalid("initial_cluster", "is required").into());
            } else {
                request.initial_cluster.clone()
            },
            initial_cluster_token: parse_name("initial_cluster_token", &request.initial_cluster_token)?,
        };
        if !request.dry_run {
            self.agent.admit(request.fencing_token, authority).await?;
        }
        let record = self.agent.restore_member(parsed, request.dry_run).await?;
        Ok(Response::new(pb::RestoreMemberResponse {
            restore: Some(restore_to_pb(&record)),
        }))
    }

    async fn upload_snapshot_call(
        &self,
        authority: TokenAuthority,
        mut stream: Streaming<pb::UploadSnapshotRequest>,
        call: &mut Pending,
    ) -> Result<Response<pb::UploadSnapshotResponse>, Status> {
        let header = match stream.message().await? {
            Some(pb::UploadSnapshotRequest {
                part: Some(pb::upload_snapshot_request::Part::Header(header)),
            }) => header,
            _ => return Err(invalid("header", "the first message must be a SnapshotUploadHeader").into()),
        };
        let declared = self.admit_upload(authority, &header, call).await?;
        let mut upload = self.agent.snapshots().begin_upload(&declared.id, header.size)?;
        while let Some(message) = self.next_or_stalled(&mut stream).await? {
            match message.part {
                Some(pb::upload_snapshot_request::Part::Chunk(chunk)) => upload.append(chunk, header.size).await?,
                _ => return Err(invalid("chunk", "only content chunks may follow the header").into()),
            }
        }
        self.store_upload(upload, &declared).await
    }

    /// An upload from a file on this host: the path is checked like an
    /// ImportBinary path, then the file goes through the same checks as a
    /// stream (one read: copied, hashed, then the trailer and the bbolt
    /// check).
    async fn import_snapshot_call(
        &self,
        authority: TokenAuthority,
        request: pb::ImportSnapshotRequest,
        call: &mut Pending,
    ) -> Result<Response<pb::UploadSnapshotResponse>, Status> {
        call.arg("path", request.path.clone());
        request.check_lengths()?;
        let header = request.header.ok_or_else(|| invalid("header", "is required"))?;
        let declared = self.admit_upload(authority, &header, call).await?;
        let import_dirs = self.agent.config().import_dirs.clone();
        let path = request.path.clone();
        let opened = tokio::task::spawn_blocking(move || BinaryStore::open_import(&import_dirs, &path))
            .await
            .map_err(|error| AgentError::TaskFailed {
                operation: Operation::ImportSnapshot,
                reason: error.to_string(),
            })?
            .map_err(|refused| AgentError::Precondition {
                operation: Operation::ImportSnapshot,
                reason: match refused {
                    AgentError::BinaryRefused(reason) => reason.to_string(),
                    other => other.to_string(),
                },
            })?;
        let (file, resolved) = opened;
        let file = tokio::fs::File::from_std(file);
        let mut upload = self.agent.snapshots().begin_upload(&declared.id, header.size)?;
        let mut chunks = tokio_util::io::ReaderStream::with_capacity(file, IMPORT_CHUNK);
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(crate::fsutil::io_err("read", &resolved))?;
            upload.append(chunk, header.size).await?;
        }
        self.store_upload(upload, &declared).await
    }

    /// The next message of an upload, or its end; a stream that sends
    /// nothing for `limits.upload_stall_timeout` is cut (dropping the upload
    /// removes its part file and gives back its space).
    async fn next_or_stalled<M>(&self, stream: &mut Streaming<M>) -> Result<Option<M>, Status> {
        let limit = self.agent.config().limits.upload_stall_timeout;
        match tokio::time::timeout(limit, stream.message()).await {
            Ok(message) => message,
            Err(_) => Err(AgentError::UploadStalled { after: limit }.into()),
        }
    }

    /// Checks and stores what an upload or import received.
    async fn store_upload(
        &self,
        upload: crate::snapshot::SnapshotUpload,
        declared: &UploadDeclared,
    ) -> Result<Response<pb::UploadSnapshotResponse>, Status> {
        let (meta, already_present) = self.agent.upload_snapshot(upload, declared).await?;
        Ok(Response::new(pb::UploadSnapshotResponse {
            snapshot: Some(snapshot_to_pb(&meta)),
            already_present,
        }))
    }

    /// Checks what an upload or import declares, and that its caller still
    /// holds the cluster lock.
    async fn admit_upload(
        &self,
        authority: TokenAuthority,
        header: &pb::SnapshotUploadHeader,
        call: &mut Pending,
    ) -> Result<UploadDeclared, Status> {
        call.fencing_token(header.fencing_token);
        header.check_lengths()?;
        call.arg("id", header.id.clone());
        call.arg("sha256", header.sha256.clone());
        call.arg("size", header.size);
        self.agent.admit(header.fencing_token, authority).await?;
        crate::snapshot::check_id(&header.id).map_err(|_| {
            invalid(
                "header.id",
                format!("{:?} is not a snapshot id (letters, digits, '-', '_', '.')", header.id),
            )
        })?;
        let sha256 = parse_sha256("header.sha256", &header.sha256)?;
        if header.size == 0 {
            return Err(invalid("header.size", "is required").into());
        }
        let free =
            crate::datadir::disk(&self.agent.config().state_dir, &self.agent.config().state_dir).state_dir_free_bytes;
        if header.size > free {
            return Err(invalid(
                "header.size",
                format!(
                    "{} bytes do not fit in the {free} bytes free in the state dir",
                    header.size
                ),
            )
            .into());
        }
        Ok(UploadDeclared {
            id: header.id.clone(),
            sha256,
            size: header.size,
            member_name: header.member_name.clone(),
            etcd_version: header.etcd_version.clone(),
            cluster_version: header.cluster_version.clone(),
            created_at_ms: header
                .created_at
                .map(|t| t.seconds.saturating_mul(1000) + i64::from(t.nanos / 1_000_000)),
        })
    }

    async fn download_call(&self, id: &str) -> Result<Response<ServiceStream<pb::DownloadSnapshotResponse>>, Status> {
        // One read: the file is sent and checked as it goes (trailer, and
        // the sha256 recorded when it was taken), the hashing on a thread of
        // its own; a snapshot that no longer checks out ends the stream
        // with DATA_LOSS after its last chunk, and the caller, which checks
        // what it received too, keeps nothing.
        let meta = self.agent.snapshots().get(id)?;
        let file = tokio::fs::File::open(&meta.path)
            .await
            .map_err(crate::fsutil::io_err("open", &meta.path))
            .map_err(Status::from)?;
        let hashing = HashingWriter::start(None)
            .map_err(crate::fsutil::io_err("start the hashing thread for", &meta.path))
            .map_err(Status::from)?;
        let (sender, receiver) = tokio::sync::mpsc::channel(DOWNLOAD_QUEUE);
        tokio::spawn(send_snapshot(file, meta, hashing, sender));
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(
            receiver,
        ))))
    }
}

/// Streams a stored snapshot to the caller while a thread hashes it; the
/// verdict comes after the last chunk, as an error only.
async fn send_snapshot(
    file: tokio::fs::File,
    meta: SnapshotMeta,
    mut hashing: HashingWriter,
    sender: tokio::sync::mpsc::Sender<Result<pb::DownloadSnapshotResponse, Status>>,
) {
    let invalid = |source: crate::snapshot::VerifyError| {
        Status::from(AgentError::SnapshotInvalid {
            path: meta.path.clone(),
            source,
        })
    };
    let stopped = |e: WriterError| invalid(crate::snapshot::VerifyError::Io(std::io::Error::other(e)));
    let mut chunks = tokio_util::io::ReaderStream::with_capacity(file, DOWNLOAD_CHUNK);
    let mut info = Some(snapshot_to_pb(&meta));
    while let Some(chunk) = chunks.next().await {
        let sent = match chunk {
            Ok(bytes) => match hashing.update(bytes.clone()).await {
                Ok(()) => Ok(pb::DownloadSnapshotResponse {
                    info: info.take(),
                    chunk: bytes,
                }),
                Err(e) => Err(stopped(e)),
            },
            Err(error) => Err(Status::internal(format!("reading the snapshot failed: {error}"))),
        };
        let failed = sent.is_err();
        // A caller that went away ends the stream; nothing to report to.
        if sender.send(sent).await.is_err() || failed {
            return;
        }
    }
    let problem = match hashing.finish().await.map(|done| crate::snapshot::verdict(done.hashed)) {
        Ok(Ok(verified)) if verified.sha256 == meta.sha256 => return,
        Ok(Ok(verified)) => invalid(crate::snapshot::VerifyError::NotRecorded {
            recorded: meta.sha256.clone(),
            actual: verified.sha256,
        }),
        Ok(Err(problem)) => invalid(problem),
        Err(e) => stopped(e),
    };
    let _ = sender.send(Err(problem)).await;
}
