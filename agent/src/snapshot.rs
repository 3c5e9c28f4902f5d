//! Verified v3 snapshots of the local member.
//!
//! etcd's snapshot stream is the bbolt database followed by the sha256 of
//! that database (32 bytes). The file keeps the trailer, as `etcdctl
//! snapshot save` does, so the same [`verify_file`] can check any copy later:
//! a database is a whole number of 512-byte sectors, so a valid file's size
//! is `512 * n + 32`, and its last 32 bytes are the sha256 of the rest.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use steward_proto::bolt::{LeafCounter, LeafCounts};
use steward_proto::trailer::{Batches, Hashed, HashingWriter, TrailerHasher, WriterError};

use crate::error::AgentError;
use crate::fsutil::{self, io_err};
use crate::member::LocalMember;

/// Length of the sha256 trailer.
const TRAILER: u64 = steward_proto::trailer::TRAILER_LEN as u64;
/// bbolt files are whole sectors of this size.
const SECTOR: u64 = 512;
/// The reads of [`read_in_order`]: few enough system calls per GiB, and
/// small next to the agent's memory.
const READ_IN_ORDER_BUFFER: usize = 1 << 20;

/// Why a snapshot file is not valid.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The size cannot be a database plus trailer (truncated or padded).
    #[error("size {size} is not a database plus a 32-byte sha256 trailer (truncated or not a snapshot)")]
    NoTrailer {
        /// The file size.
        size: u64,
    },
    /// The content does not hash to the trailer.
    #[error("content sha256 {actual} does not match the trailer {trailer} (corrupted)")]
    Mismatch {
        /// The trailer's value.
        trailer: String,
        /// What the content hashes to.
        actual: String,
    },
    /// The file is intact but is not the snapshot that was recorded.
    #[error("content sha256 {actual} differs from the sha256 recorded when the snapshot was taken ({recorded})")]
    NotRecorded {
        /// The sha256 in the metadata.
        recorded: String,
        /// The file's (self-consistent) sha256.
        actual: String,
    },
    /// The file is intact but is not the snapshot the caller declared.
    #[error("content sha256 {actual} differs from the declared sha256 {declared}")]
    NotDeclared {
        /// The sha256 the caller declared.
        declared: String,
        /// The file's (self-consistent) sha256.
        actual: String,
    },
    /// The file's size is not the size recorded when it was taken.
    #[error("the file has {actual} bytes, {recorded} were recorded when the snapshot was taken")]
    SizeNotRecorded {
        /// The size in the metadata.
        recorded: u64,
        /// The file's size now.
        actual: u64,
    },
    /// The size is not the declared size.
    #[error("{actual} bytes arrived, {declared} were declared")]
    SizeNotDeclared {
        /// The declared size.
        declared: u64,
        /// What arrived.
        actual: u64,
    },
    /// The file holds no readable bbolt database (the integrity check of
    /// `snapshot status`, or reading the recorded cluster version, failed).
    #[error("not an etcd database: {0}")]
    NotADatabase(String),
    /// The file cannot be read.
    #[error("cannot read the file")]
    Io(#[source] std::io::Error),
}

/// What a successful verification found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// sha256 of the database (the trailer's value), hex.
    pub sha256: String,
    /// File size including the trailer.
    pub size: u64,
}

/// Checks a snapshot file's sha256 trailer.
pub fn verify_file(path: &Path) -> Result<Verified, VerifyError> {
    let mut file = std::fs::File::open(path).map_err(VerifyError::Io)?;
    let size = file.metadata().map_err(VerifyError::Io)?.len();
    if !is_database_and_trailer(size) {
        return Err(VerifyError::NoTrailer { size });
    }
    verdict(steward_proto::trailer::hash_reader(&mut file).map_err(VerifyError::Io)?)
}

/// The verdict on a hashed snapshot, the same whether it was hashed from a
/// file or as it streamed by: a size that can hold a database and a
/// trailer, and a trailer that is the content's sha256.
///
/// # Errors
/// [`VerifyError::NoTrailer`] or [`VerifyError::Mismatch`].
pub fn verdict(hashed: Hashed) -> Result<Verified, VerifyError> {
    let size = hashed.size;
    if !is_database_and_trailer(size) {
        return Err(VerifyError::NoTrailer { size });
    }
    if !hashed.trailer_matches() {
        return Err(VerifyError::Mismatch {
            trailer: hashed.trailer.unwrap_or_default(),
            actual: hashed.content_sha256,
        });
    }
    Ok(Verified {
        sha256: hashed.content_sha256,
        size,
    })
}

/// A whole number of bbolt sectors followed by the trailer.
const fn is_database_and_trailer(size: u64) -> bool {
    size >= SECTOR + TRAILER && size % SECTOR == TRAILER
}

/// Where a snapshot's chunks go too, as they arrive from etcd: the caller
/// of a take that also sends. It waits for them (the snapshot goes at the
/// caller's pace); one that goes away stops getting them, and the snapshot
/// is still stored.
pub type Tee = tokio::sync::mpsc::Sender<bytes::Bytes>;

/// The metadata stored next to each snapshot (`<id>.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// The id (file stem).
    pub id: String,
    /// The snapshot file.
    pub path: PathBuf,
    /// File size including the trailer.
    pub size: u64,
    /// sha256 of the content.
    pub sha256: String,
    /// Store revision in the snapshot.
    pub revision: i64,
    /// Keys in the snapshot (0 when no etcdctl/etcdutl was staged to count).
    pub total_keys: u64,
    /// Member binary version at the time.
    pub etcd_version: String,
    /// Cluster version at the time.
    pub cluster_version: String,
    /// Creation time, ms since the epoch.
    pub created_at_ms: i64,
    /// The member's name.
    pub member_name: String,
    /// The member's id.
    pub member_id: u64,
    /// The cluster version recorded inside the database ("3.5.0"); empty
    /// when it could not be read.
    #[serde(default)]
    pub db_cluster_version: String,
    /// Uploaded to this agent rather than taken from its member.
    #[serde(default)]
    pub uploaded: bool,
    /// The label it is pinned under; empty when not pinned. Retention
    /// neither counts nor removes a pinned snapshot.
    #[serde(default)]
    pub pin: String,
    /// The role of the caller that had it taken (`admin`, `operator`,
    /// `backup`); empty for an upload and for snapshots of older agents.
    /// Retention counts each owner's snapshots apart.
    #[serde(default)]
    pub owner: String,
}

impl SnapshotMeta {
    /// The retention bucket it counts in: uploads, or its owner's taken
    /// snapshots.
    #[must_use]
    pub fn bucket(&self) -> &str {
        if self.uploaded { "upload" } else { &self.owner }
    }
}

/// The snapshot directory of the agent.
#[derive(Debug)]
pub struct SnapshotDir {
    dir: PathBuf,
    retain: usize,
    /// Held while metadata changes (a new snapshot described, retention,
    /// a pin): a pin must not land on a snapshot retention is removing.
    metadata: std::sync::Mutex<()>,
    /// Bytes the uploads running now have declared and not yet written:
    /// the space they will take.
    reserved: std::sync::Arc<std::sync::Mutex<u64>>,
    /// Removes the files retention drops, in the background; the bytes
    /// it holds are space the file system gives back in a moment.
    remover: Remover,
    /// Where retention's removals are recorded, once the API serves.
    audit: std::sync::OnceLock<std::sync::Arc<crate::audit::AuditLog>>,
    /// The databases a status tool has read whole and passed, by content
    /// sha256 and tool: see [`Self::check_database_of`].
    checked: std::sync::Mutex<std::collections::HashSet<(String, PathBuf)>>,
    /// Files whose bytes this agent hashed (as it wrote them, or read them
    /// back), with their stamp then and the sha256 found: see
    /// [`Self::get_verified`].
    hashed: std::sync::Mutex<std::collections::HashMap<PathBuf, (FileStamp, String)>>,
}

/// What tells a file's bytes apart without reading them. A write through
/// the file system sets the change time, which no caller can set back; a
/// file put in its place has another inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    device: u64,
    inode: u64,
    size: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

/// How long after a file's last change its stamp tells a further change
/// apart: a change within the same tick of the kernel's coarse clock (a
/// few ms) leaves the change time as it was.
const STAMP_SETTLED: std::time::Duration = std::time::Duration::from_millis(50);

impl FileStamp {
    /// Whether a stamp read at `read_at` would show any later change.
    fn settled(&self, read_at: std::time::SystemTime) -> bool {
        let changed = std::time::UNIX_EPOCH
            + std::time::Duration::new(
                u64::try_from(self.changed.0).unwrap_or(0),
                u32::try_from(self.changed.1).unwrap_or(0),
            );
        read_at.duration_since(changed).is_ok_and(|d| d >= STAMP_SETTLED)
    }

    fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(Self {
            device: m.dev(),
            inode: m.ino(),
            size: m.len(),
            modified: (m.mtime(), m.mtime_nsec()),
            changed: (m.ctime(), m.ctime_nsec()),
        })
    }
}

/// Free space an upload leaves untouched, beyond what the uploads running
/// now will take: etcd's own snapshots and the agent's state share the disk.
pub const UPLOAD_HEADROOM: u64 = 64 * 1024 * 1024;

/// What `etcdctl/etcdutl snapshot status -w json` prints.
#[derive(Debug, Deserialize)]
pub struct ToolStatus {
    /// The store revision.
    pub revision: i64,
    /// Keys in the database.
    #[serde(rename = "totalKey")]
    pub total_key: u64,
}

impl SnapshotDir {
    /// Opens (creating, 0700) the snapshot dir.
    pub fn open(dir: PathBuf, retain: usize) -> Result<Self, AgentError> {
        fsutil::ensure_dir(&dir, 0o700)?;
        // A .part file is a snapshot whose stream an earlier agent never
        // finished; a .db without its .json was stored but never described
        // (a crash in between, or a retention half done). Neither is a
        // snapshot.
        for entry in std::fs::read_dir(&dir)
            .map_err(io_err("read directory", &dir))?
            .flatten()
        {
            let path = entry.path();
            let unfinished = path.extension().is_some_and(|e| e == "part");
            let undescribed = path.extension().is_some_and(|e| e == "db") && !path.with_extension("json").exists();
            if unfinished || undescribed {
                tracing::info!(path = %path.display(), "removing an unfinished snapshot");
                let _ = std::fs::remove_file(&path);
            }
        }
        let remover = Remover::start().map_err(io_err("start the removing thread for", &dir))?;
        Ok(Self {
            dir,
            retain,
            metadata: std::sync::Mutex::new(()),
            reserved: std::sync::Arc::default(),
            remover,
            audit: std::sync::OnceLock::new(),
            checked: std::sync::Mutex::default(),
            hashed: std::sync::Mutex::default(),
        })
    }

    /// Records every removal retention makes in `log` from now on.
    pub fn audit_to(&self, log: std::sync::Arc<crate::audit::AuditLog>) {
        let _ = self.audit.set(log);
    }

    /// Streams a snapshot from the member into `<id>.db`, verifies it, reads
    /// its revision, key count and cluster version from the file's bbolt
    /// pages, writes the metadata and applies the retention count. With a
    /// `tee`, every chunk also goes there as it arrives (see [`Tee`]).
    pub async fn take(
        &self,
        member: &LocalMember,
        member_name: &str,
        protected: &[String],
        tee: Option<Tee>,
        owner: &str,
    ) -> Result<SnapshotMeta, AgentError> {
        let (mut client, snapshots) = member.snapshot_client().await?;
        let status = client.status().await.map_err(|error| AgentError::EtcdUnavailable {
            endpoint: member.endpoint().to_owned(),
            reason: crate::member::describe_etcd_error(&error),
        })?;
        // A snapshot is about the size of the member's database: refused
        // before it starts when the disk cannot take it (and the uploads
        // running now), rather than failing half-written.
        let _room = self.reserve(u64::try_from(status.db_size()).unwrap_or(0))?;
        let header = status.header().cloned();
        let cluster_version = member.cluster_version().await.unwrap_or_default();
        let created_at_ms = now_ms();
        let id = format!(
            "{}-{}",
            sanitize(member_name),
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(created_at_ms) * 1_000_000).map_or_else(
                |_| created_at_ms.to_string(),
                |t| format!(
                    "{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z",
                    t.year(),
                    u8::from(t.month()),
                    t.day(),
                    t.hour(),
                    t.minute(),
                    t.second(),
                    t.millisecond()
                )
            )
        );
        // Ids come from the wall clock; a clock that stepped back must not
        // give a new snapshot an existing one's name.
        let base = id;
        let mut id = base.clone();
        let mut n = 1;
        while self.dir.join(format!("{id}.db")).exists() || self.dir.join(format!("{id}.json")).exists() {
            n += 1;
            id = format!("{base}-{n}");
        }
        let part = self.dir.join(format!("{id}.db.part"));
        let path = self.dir.join(format!("{id}.db"));
        // One pass: the stream is written and its trailer checked as it
        // arrives; the file is not read again.
        let began = std::time::Instant::now();
        let (checked, leaves, file) = match self.stream_into(&snapshots, member.endpoint(), &part, tee).await {
            Ok(written) => written,
            Err(error) => {
                let _ = std::fs::remove_file(&part);
                return Err(error);
            }
        };
        let verified = match verdict(checked) {
            Ok(v) => v,
            Err(source) => {
                let _ = std::fs::remove_file(&part);
                return Err(AgentError::SnapshotInvalid { path: part, source });
            }
        };
        let streamed = began.elapsed();
        // The file goes to disk while its revision and keys are read from
        // it: neither waits for the other. The trailer already proved the
        // bytes are etcd's, and the leaf counts were noted as they went
        // by, so this reads only the branch pages and a leaf per bucket (a
        // few MiB of a GiB database, whatever the size of its values)
        // where etcd's `snapshot status` would hash every key and value
        // again in a second process. Read back, the leaves of small values
        // are every third page of the file, from disk: the whole file
        // again, and a disk kept busy under the member's etcd.
        let syncing = tokio::task::spawn_blocking(move || file.sync_all().map(|()| file));
        let reading = part.clone();
        let counted =
            tokio::task::spawn_blocking(move || steward_proto::bolt::summary_counted(&reading, &leaves)).await;
        let synced = match syncing.await {
            Ok(synced) => synced.map_err(io_err("fsync", &part)).map(|file| {
                // Nothing reads the file soon (a restore verifies it from
                // disk anyway): its last pages leave the page cache too,
                // instead of pushing out the WAL and database pages the
                // member's etcd reads when it restarts, which on a large
                // database is the next thing an upgrade does.
                steward_proto::trailer::leave_page_cache(&file);
            }),
            Err(join) => Err(io_err("fsync", &part)(std::io::Error::other(join))),
        };
        if let Err(error) = synced.and_then(|()| fsutil::rename_durable(&part, &path)) {
            let _ = std::fs::remove_file(&part);
            return Err(error);
        }
        let database = match counted {
            Ok(Ok(database)) => database,
            Ok(Err(error)) => {
                // etcd sent a file with a good trailer that is not a bbolt
                // database: nothing to restore from.
                let _ = std::fs::remove_file(&path);
                return Err(AgentError::SnapshotInvalid {
                    path,
                    source: VerifyError::NotADatabase(error.to_string()),
                });
            }
            Err(join) => return Err(io_err("read", &path)(std::io::Error::other(join))),
        };
        self.remember_hashed(&path, FileStamp::of(&path), &verified.sha256);
        let meta = SnapshotMeta {
            id: id.clone(),
            path: path.clone(),
            size: verified.size,
            sha256: verified.sha256,
            revision: database.revision,
            total_keys: database.total_keys,
            etcd_version: status.version().to_owned(),
            cluster_version,
            created_at_ms,
            member_name: member_name.to_owned(),
            member_id: header.as_ref().map_or(0, etcd_client::ResponseHeader::member_id),
            db_cluster_version: database.cluster_version.unwrap_or_default(),
            uploaded: false,
            pin: String::new(),
            owner: owner.to_owned(),
        };
        self.describe(&meta, protected)?;
        tracing::info!(
            %id,
            revision = meta.revision,
            size = meta.size,
            streamed_ms = streamed.as_millis(),
            total_ms = began.elapsed().as_millis(),
            "snapshot stored"
        );
        Ok(meta)
    }

    /// Writes the metadata that makes a stored file a snapshot, then applies
    /// the retention count.
    fn describe(&self, meta: &SnapshotMeta, protected: &[String]) -> Result<(), AgentError> {
        let path = self.dir.join(format!("{}.json", meta.id));
        let bytes = serde_json::to_vec_pretty(meta).map_err(|source| AgentError::CorruptState {
            path: path.clone(),
            source,
        })?;
        let _held = self.metadata.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        fsutil::write_atomic(&path, &bytes, 0o600)?;
        let mut keep: Vec<&str> = protected.iter().map(String::as_str).collect();
        keep.push(&meta.id);
        self.apply_retention(&keep)
    }

    /// Pins snapshot `id` under `label` (releasing the label from any other
    /// snapshot here), or unpins it when `label` is empty. Returns the
    /// snapshot and the ids the label was released from; retention then
    /// applies to those as to any unpinned snapshot.
    pub fn pin(&self, id: &str, label: &str, protected: &[String]) -> Result<(SnapshotMeta, Vec<String>), AgentError> {
        check_id(id)?;
        if !label.is_empty() && !is_safe_name(label, 64) {
            return Err(AgentError::InvalidArgument {
                field: "pin",
                reason: format!("{label:?} is not a pin label (1 to 64 of letters, digits, '-', '_', '.')"),
            });
        }
        let _held = self.metadata.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let all = self.list()?;
        let mut meta = all
            .iter()
            .find(|m| m.id == id)
            .cloned()
            .ok_or_else(|| AgentError::SnapshotNotFound { id: id.to_owned() })?;
        let mut released = Vec::new();
        if !label.is_empty() {
            for other in all.iter().filter(|m| m.id != id && m.pin == label) {
                let mut other = other.clone();
                other.pin.clear();
                self.write_meta(&other)?;
                released.push(other.id);
            }
        }
        if meta.pin != label {
            label.clone_into(&mut meta.pin);
            self.write_meta(&meta)?;
        }
        let mut keep: Vec<&str> = protected.iter().map(String::as_str).collect();
        keep.push(id);
        self.apply_retention(&keep)?;
        tracing::info!(%id, pin = %label, ?released, "snapshot pin set");
        Ok((meta, released))
    }

    fn write_meta(&self, meta: &SnapshotMeta) -> Result<(), AgentError> {
        let path = self.dir.join(format!("{}.json", meta.id));
        let bytes = serde_json::to_vec_pretty(meta).map_err(|source| AgentError::CorruptState {
            path: path.clone(),
            source,
        })?;
        fsutil::write_atomic(&path, &bytes, 0o600)
    }

    /// Starts receiving an uploaded snapshot for `id` into `<id>.db.part`,
    /// `size` bytes as declared. A second upload of the same id at the same
    /// time is refused (the part file exists), and so is one the disk has
    /// no room for: the free space must hold `size`, what the uploads
    /// running now have declared, and [`UPLOAD_HEADROOM`]. The upload's
    /// space is reserved until it ends.
    pub fn begin_upload(&self, id: &str, size: u64) -> Result<SnapshotUpload, AgentError> {
        check_id(id)?;
        let reservation = self.reserve(size)?;
        let part = self.dir.join(format!("{id}.db.part"));
        let file = std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(&part)
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::AlreadyExists {
                    AgentError::Precondition {
                        operation: crate::state::Operation::UploadSnapshot,
                        reason: format!("an upload of snapshot {id} is in progress"),
                    }
                } else {
                    AgentError::Io {
                        action: "create",
                        path: part.clone(),
                        source,
                    }
                }
            })?;
        let part = PartGuard(part);
        set_mode(&part.0, 0o600)?;
        let writer = HashingWriter::start(Some(file)).map_err(io_err("start the writing thread for", &part.0))?;
        Ok(SnapshotUpload {
            part,
            writer,
            size: 0,
            _reservation: reservation,
        })
    }

    /// Reserves `size` bytes of the snapshot dir's disk for an upload or a
    /// snapshot being taken.
    fn reserve(&self, size: u64) -> Result<Reservation, AgentError> {
        let free = nix::sys::statvfs::statvfs(&self.dir)
            .map(|s| s.blocks_available().saturating_mul(s.fragment_size()))
            .map_err(|e| AgentError::Io {
                action: "statvfs",
                path: self.dir.clone(),
                source: std::io::Error::from(e),
            })?
            .saturating_add(self.remover.bytes());
        let mut reserved = self.reserved.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let needed = size.saturating_add(*reserved).saturating_add(UPLOAD_HEADROOM);
        if needed > free {
            return Err(AgentError::NoSpace {
                path: self.dir.clone(),
                free,
                needed: size,
                reserved: *reserved,
                headroom: UPLOAD_HEADROOM,
            });
        }
        *reserved += size;
        Ok(Reservation {
            reserved: std::sync::Arc::clone(&self.reserved),
            size,
        })
    }

    /// Verifies an uploaded snapshot against what was declared and stores
    /// it under its id. The same content under the same id changes nothing
    /// (`true`); other content under an existing id is refused.
    pub async fn finish_upload(
        &self,
        upload: SnapshotUpload,
        declared: &UploadDeclared,
        status_tool: Option<(PathBuf, &'static str)>,
        protected: &[String],
    ) -> Result<(SnapshotMeta, bool), AgentError> {
        // The part file is removed whatever goes wrong below.
        // Its reservation stays until the file is stored, at the end.
        let SnapshotUpload {
            part: guard,
            writer,
            size,
            ..
        } = upload;
        let part = guard.0.clone();
        let refused = |source: VerifyError| AgentError::SnapshotRefused {
            id: declared.id.clone(),
            source,
        };
        // Written and hashed as it arrived: the file is not read again.
        let written = writer.finish().await.map_err(|e| match e {
            WriterError::Io(source) => io_err("write", &part)(source),
            WriterError::Stopped => io_err("write", &part)(std::io::Error::other(e)),
        })?;
        // The file goes to disk while the checks below read it (from the
        // page cache): the status tool's read of a GiB takes about as long
        // as the disk's writing of it.
        let syncing = written
            .file
            .map(|file| tokio::task::spawn_blocking(move || file.sync_all()));
        if size != declared.size {
            return Err(refused(VerifyError::SizeNotDeclared {
                declared: declared.size,
                actual: size,
            }));
        }
        let verified = verdict(written.hashed).map_err(refused)?;
        if verified.sha256 != declared.sha256 {
            return Err(refused(VerifyError::NotDeclared {
                declared: declared.sha256.clone(),
                actual: verified.sha256,
            }));
        }
        if let Some(existing) = self.list()?.into_iter().find(|m| m.id == declared.id) {
            if existing.sha256 == verified.sha256 {
                return Ok((existing, true));
            }
            return Err(AgentError::SnapshotExists {
                id: declared.id.clone(),
                existing: existing.sha256,
                new: verified.sha256,
            });
        }
        let db_cluster_version = db_cluster_version(&part).map_err(refused)?;
        let (revision, total_keys) = match status_tool {
            Some((tool, name)) => {
                let status = check_database(&tool, name, &part).await.map_err(refused)?;
                self.passed(&verified.sha256, &tool);
                (status.revision, status.total_key)
            }
            None => (0, 0),
        };
        if let Some(syncing) = syncing {
            syncing
                .await
                .unwrap_or_else(|join| Err(std::io::Error::other(join)))
                .map_err(io_err("fsync", &part))?;
        }
        let path = self.dir.join(format!("{}.db", declared.id));
        fsutil::rename_durable(&part, &path)?;
        guard.disarm();
        self.remember_hashed(&path, FileStamp::of(&path), &verified.sha256);
        let meta = SnapshotMeta {
            id: declared.id.clone(),
            path,
            size: verified.size,
            sha256: verified.sha256,
            revision,
            total_keys,
            etcd_version: declared.etcd_version.clone(),
            cluster_version: declared.cluster_version.clone(),
            created_at_ms: declared.created_at_ms.unwrap_or_else(now_ms),
            member_name: declared.member_name.clone(),
            member_id: 0,
            db_cluster_version,
            uploaded: true,
            pin: String::new(),
            owner: String::new(),
        };
        self.describe(&meta, protected)?;
        tracing::info!(id = %meta.id, revision, size = meta.size, "uploaded snapshot stored");
        Ok((meta, false))
    }

    /// Hands the member's snapshot stream to a thread that writes it into
    /// `part` and hashes it, so that receiving goes on meanwhile. The file
    /// comes back written, not yet synced.
    async fn stream_into(
        &self,
        snapshots: &crate::etcd_snapshot::EtcdSnapshots,
        endpoint: &str,
        part: &Path,
        mut tee: Option<Tee>,
    ) -> Result<(Hashed, LeafCounts, std::fs::File), AgentError> {
        let stream_err = |reason: String| AgentError::SnapshotStream {
            endpoint: endpoint.to_owned(),
            reason,
        };
        let file = std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(part)
            .map_err(io_err("create", part))?;
        set_mode(part, 0o600)?;
        let broke = |status: tonic::Status| stream_err(steward_proto::error_text::status_with_causes(&status));
        let mut stream = snapshots.open().await.map_err(broke)?;
        // Written past the page cache as it streams: a snapshot of several
        // GiB would otherwise push out the pages the member's etcd reads
        // (its WAL and database), and the only read that follows, the
        // bucket trees' summary, takes a few MiB with the leaf counts
        // noted on the way.
        let mut writer = HashingWriter::start_uncached_with(file, (TrailerHasher::default(), LeafCounter::default()))
            .map_err(io_err("start the writing thread for", part))?;
        let written = |e: WriterError| match e {
            WriterError::Io(source) => io_err("write", part)(source),
            WriterError::Stopped => stream_err(e.to_string()),
        };
        // One batch goes to the caller and to the writing thread alike.
        let mut batches = Batches::default();
        let mut ended = false;
        while !ended {
            let batch = match stream.message().await.map_err(broke)? {
                Some(piece) => match batches.push(piece.blob) {
                    Some(batch) => batch,
                    None => continue,
                },
                None => {
                    ended = true;
                    match batches.rest() {
                        Some(rest) => rest,
                        None => break,
                    }
                }
            };
            if let Some(receiver) = &tee
                && receiver.send(batch.clone()).await.is_err()
            {
                tracing::info!("the caller of the snapshot went away; storing it all the same");
                tee = None;
            }
            if writer.update(batch).await.is_err() {
                // The thread stopped: finish says why.
                break;
            }
        }
        // The caller has every byte; the verdict follows.
        drop(tee);
        let done = writer.finish().await.map_err(written)?;
        let file = done
            .file
            .ok_or_else(|| stream_err("the writing thread kept no file".into()))?;
        let (hashed, leaves) = done.hashed;
        Ok((hashed, leaves, file))
    }

    /// All snapshots, newest first.
    pub fn list(&self) -> Result<Vec<SnapshotMeta>, AgentError> {
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(io_err("read directory", &self.dir))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                let bytes = std::fs::read(&path).map_err(io_err("read", &path))?;
                match serde_json::from_slice::<SnapshotMeta>(&bytes) {
                    Ok(mut meta) => {
                        if meta.db_cluster_version.is_empty() {
                            meta.db_cluster_version = db_cluster_version(&meta.path).unwrap_or_default();
                        }
                        out.push(meta);
                    }
                    Err(error) => {
                        tracing::warn!(path = %path.display(), %error, "ignoring unreadable snapshot metadata")
                    }
                }
            }
        }
        out.sort_by(|a, b| b.created_at_ms.cmp(&a.created_at_ms).then_with(|| b.id.cmp(&a.id)));
        Ok(out)
    }

    /// One snapshot's record by id.
    fn find(&self, id: &str) -> Result<SnapshotMeta, AgentError> {
        check_id(id)?;
        self.list()?
            .into_iter()
            .find(|m| m.id == id)
            .ok_or_else(|| AgentError::SnapshotNotFound { id: id.to_owned() })
    }

    /// One snapshot by id, as recorded, with its file still of the
    /// recorded size (a cheap check; the content is verified by whoever
    /// reads it, see [`TrailerCheck`]).
    ///
    /// # Errors
    /// No such snapshot, or its file is missing or of another size.
    pub fn get(&self, id: &str) -> Result<SnapshotMeta, AgentError> {
        let meta = self.find(id)?;
        let size = std::fs::metadata(&meta.path)
            .map_err(|source| AgentError::SnapshotInvalid {
                path: meta.path.clone(),
                source: VerifyError::Io(source),
            })?
            .len();
        if size != meta.size {
            return Err(AgentError::SnapshotInvalid {
                path: meta.path.clone(),
                source: VerifyError::SizeNotRecorded {
                    recorded: meta.size,
                    actual: size,
                },
            });
        }
        Ok(meta)
    }

    /// One snapshot by id, its file's content checked against its trailer
    /// and its record. Bytes this agent hashed before (as it stored them,
    /// or in an earlier check) are not read again while the file is
    /// unchanged since: the same inode, size, modification and change
    /// time. A restore asks in its dry run and again before it replaces
    /// anything, right after the upload hashed the file, and each read of
    /// a GiB takes a second of the restore (the second one while the
    /// members are down). Reading it again would prove nothing the stamp
    /// does not: it comes from the page cache, not the disk, and the
    /// restore tool checks the trailer once more as it reads the file.
    pub fn get_verified(&self, id: &str) -> Result<SnapshotMeta, AgentError> {
        let meta = self.find(id)?;
        let read_at = std::time::SystemTime::now();
        let before = FileStamp::of(&meta.path);
        let hashed_before = before.is_some_and(|stamp| {
            self.hashed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&meta.path)
                .is_some_and(|(was, sha256)| *was == stamp && *sha256 == meta.sha256)
        });
        if hashed_before {
            return Ok(meta);
        }
        let verified = verify_file(&meta.path).map_err(|source| AgentError::SnapshotInvalid {
            path: meta.path.clone(),
            source,
        })?;
        if verified.sha256 != meta.sha256 {
            return Err(AgentError::SnapshotInvalid {
                path: meta.path.clone(),
                source: VerifyError::NotRecorded {
                    recorded: meta.sha256.clone(),
                    actual: verified.sha256,
                },
            });
        }
        // Only when nothing changed the file while it was read, and any
        // change after it would show.
        if let Some(stamp) = before
            && stamp.settled(read_at)
            && FileStamp::of(&meta.path) == before
        {
            self.remember_hashed(&meta.path, before, &verified.sha256);
        }
        Ok(meta)
    }

    /// Records the sha256 of `path`'s bytes as of `stamp` (forgets it
    /// when the file could not be stamped). The agent's own snapshots are
    /// recorded as it renames them into place, in its private dir: nothing
    /// else writes there in the instant before the stamp.
    fn remember_hashed(&self, path: &Path, stamp: Option<FileStamp>, sha256: &str) {
        match stamp {
            Some(stamp) => {
                self.hashed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(path.to_owned(), (stamp, sha256.to_owned()));
            }
            None => self.forget_hashed(path),
        }
    }

    fn forget_hashed(&self, path: &Path) {
        self.hashed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(path);
    }

    /// The integrity check of `snapshot status` by `tool` on the stored
    /// snapshot `meta`, whose content the caller has just verified against
    /// its recorded sha256 ([`Self::get_verified`]). The check's verdict
    /// depends only on the bytes and the tool, so a content this tool has
    /// passed before is not read whole again: a restore checks in its dry
    /// run and again before it replaces anything, after the upload checked
    /// the same file, and each such read of a GiB database takes seconds.
    ///
    /// # Errors
    /// The tool fails on the database.
    pub async fn check_database_of(
        &self,
        tool: &Path,
        name: &'static str,
        meta: &SnapshotMeta,
    ) -> Result<(), VerifyError> {
        let key = (meta.sha256.clone(), tool.to_owned());
        if self
            .checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&key)
        {
            return Ok(());
        }
        check_database(tool, name, &meta.path).await?;
        self.passed(&meta.sha256, tool);
        Ok(())
    }

    /// Records that `tool` passed the database whose content is `sha256`.
    fn passed(&self, sha256: &str, tool: &Path) {
        self.checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((sha256.to_owned(), tool.to_owned()));
    }

    /// Keeps the `retain` newest unpinned snapshots of each bucket (see
    /// [`SnapshotMeta::bucket`]): a backup job's snapshots never push out an
    /// operator's, an admin's or an upload, nor the other way round. The
    /// ones in `keep` (the one just stored, one an unfinished restore needs)
    /// are never removed, even when a clock that stepped back sorts them
    /// oldest, and pinned ones are neither removed nor counted. Every
    /// removal is written to the audit log.
    fn apply_retention(&self, keep: &[&str]) -> Result<(), AgentError> {
        let unpinned: Vec<SnapshotMeta> = self.list()?.into_iter().filter(|m| m.pin.is_empty()).collect();
        let mut buckets: Vec<&str> = unpinned.iter().map(SnapshotMeta::bucket).collect();
        buckets.sort_unstable();
        buckets.dedup();
        let mut doomed = Vec::new();
        for bucket in buckets {
            let mine: Vec<&SnapshotMeta> = unpinned.iter().filter(|m| m.bucket() == bucket).collect();
            let kept = mine.iter().filter(|m| keep.contains(&m.id.as_str())).count();
            let others = mine.into_iter().filter(|m| !keep.contains(&m.id.as_str()));
            for old in others.skip(self.retain.saturating_sub(kept)) {
                tracing::info!(id = %old.id, bucket, "removing snapshot beyond the retention count");
                // Metadata first: a crash in between leaves an undescribed
                // file, which the next start removes, never a listed
                // snapshot without its file.
                let meta = self.dir.join(format!("{}.json", old.id));
                std::fs::remove_file(&meta).map_err(io_err("remove", &meta))?;
                self.forget_hashed(&old.path);
                self.audit_removal(old, bucket);
                doomed.push((old.path.clone(), old.size));
            }
        }
        fsutil::fsync_dir(&self.dir)?;
        // Undescribed now, so no longer snapshots. Giving a GiB file's
        // blocks back takes the file system about half a second (more on
        // one mounted with discard): the call that took a new snapshot
        // does not wait for it.
        self.remover.remove(doomed);
        Ok(())
    }

    /// Waits until the files retention removes in the background are gone.
    #[cfg(test)]
    fn removals_done(&self) {
        self.remover.wait();
    }

    fn audit_removal(&self, old: &SnapshotMeta, bucket: &str) {
        let Some(log) = self.audit.get() else { return };
        let agent = crate::access::Caller {
            subject: "steward-agent (snapshot retention)".into(),
            role: None,
        };
        let mut entry = crate::audit::Pending::start(log, Some(&agent), "RemoveSnapshot", 0);
        entry.arg("id", old.id.clone());
        entry.arg("bucket", if bucket.is_empty() { "unowned" } else { bucket }.to_owned());
        entry.arg("retain", self.retain);
        let _ = entry.finish(Ok::<(), tonic::Status>(()));
    }
}

/// Removes snapshot files on a thread of its own, and counts the bytes
/// they hold until they are gone. A removal that fails leaves an
/// undescribed file, which the next start removes.
#[derive(Debug)]
struct Remover {
    queue: std::sync::mpsc::Sender<(PathBuf, u64)>,
    freeing: std::sync::Arc<Freeing>,
}

/// The files queued for removal, and their bytes.
#[derive(Debug, Default)]
struct Freeing {
    queued: std::sync::Mutex<Queued>,
    gone: std::sync::Condvar,
}

#[derive(Debug, Default)]
struct Queued {
    files: usize,
    bytes: u64,
}

impl Freeing {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queued> {
        self.queued.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn removed(&self, path: &Path, size: u64) {
        if let Err(error) = std::fs::remove_file(path) {
            tracing::warn!(path = %path.display(), %error, "cannot remove a snapshot file beyond the retention count");
        }
        let mut queued = self.lock();
        queued.files = queued.files.saturating_sub(1);
        queued.bytes = queued.bytes.saturating_sub(size);
        self.gone.notify_all();
    }
}

impl Remover {
    /// Starts the thread; it ends when the remover is dropped.
    fn start() -> std::io::Result<Self> {
        let (queue, files) = std::sync::mpsc::channel::<(PathBuf, u64)>();
        let freeing = std::sync::Arc::new(Freeing::default());
        let removing = std::sync::Arc::clone(&freeing);
        std::thread::Builder::new()
            .name("snapshot-remove".into())
            .spawn(move || {
                for (path, size) in files {
                    removing.removed(&path, size);
                }
            })?;
        Ok(Self { queue, freeing })
    }

    /// Bytes queued or being removed now.
    fn bytes(&self) -> u64 {
        self.freeing.lock().bytes
    }

    /// Queues `files` (path and size); removed here when the thread is
    /// gone.
    fn remove(&self, files: Vec<(PathBuf, u64)>) {
        for (path, size) in files {
            {
                let mut queued = self.freeing.lock();
                queued.files += 1;
                queued.bytes += size;
            }
            if let Err(unsent) = self.queue.send((path, size)) {
                let (path, size) = unsent.0;
                self.freeing.removed(&path, size);
            }
        }
    }

    /// Blocks until nothing is queued or being removed.
    #[cfg(test)]
    fn wait(&self) {
        let queued = self.freeing.lock();
        drop(
            self.freeing
                .gone
                .wait_while(queued, |queued| queued.files > 0)
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
    }
}

/// A snapshot being uploaded; dropped unfinished, its part file goes.
#[derive(Debug)]
pub struct SnapshotUpload {
    part: PartGuard,
    /// Writes the part file and hashes it on a thread of its own.
    writer: HashingWriter,
    size: u64,
    _reservation: Reservation,
}

/// Space reserved for an upload, given back when it ends.
#[derive(Debug)]
struct Reservation {
    reserved: std::sync::Arc<std::sync::Mutex<u64>>,
    size: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut reserved = self.reserved.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *reserved = reserved.saturating_sub(self.size);
    }
}

impl SnapshotUpload {
    /// Appends a chunk; refuses more bytes than `limit`.
    pub async fn append(&mut self, chunk: bytes::Bytes, limit: u64) -> Result<(), AgentError> {
        let size = self.size + chunk.len() as u64;
        if size > limit {
            return Err(AgentError::InvalidArgument {
                field: "chunk",
                reason: format!("more than the {limit} bytes declared in header.size"),
            });
        }
        // A stopped thread (a failed write) is reported by finish_upload;
        // the caller stops sending when this fails.
        self.writer.update(chunk).await.map_err(|_| AgentError::Io {
            action: "write",
            path: self.part.0.clone(),
            source: std::io::Error::other("the writing thread stopped"),
        })?;
        self.size = size;
        Ok(())
    }
}

/// Removes an unfinished part file when dropped.
#[derive(Debug)]
struct PartGuard(PathBuf);

impl Drop for PartGuard {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

impl PartGuard {
    /// The file got its final name: nothing to remove any more.
    fn disarm(mut self) {
        self.0 = PathBuf::new();
    }
}

/// What the uploader declares about a snapshot.
#[derive(Clone, Debug, Default)]
pub struct UploadDeclared {
    /// The id to store it under.
    pub id: String,
    /// sha256 of the content, lower-case hex.
    pub sha256: String,
    /// The file size, trailer included.
    pub size: u64,
    /// Where it was taken.
    pub member_name: String,
    /// That member's etcd version.
    pub etcd_version: String,
    /// The cluster version then.
    pub cluster_version: String,
    /// When it was taken, ms since the epoch.
    pub created_at_ms: Option<i64>,
}

/// True for a name that is safe as a file name and on a command line: at
/// most `max` letters, digits, '-', '_' or '.', not empty and not starting
/// with '.' (no path, no hidden file).
#[must_use]
pub fn is_safe_name(text: &str, max: usize) -> bool {
    !text.is_empty()
        && text.len() <= max
        && !text.starts_with('.')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Refuses what cannot be a snapshot id (a path, an empty or hidden name).
pub fn check_id(id: &str) -> Result<(), AgentError> {
    if !is_safe_name(id, 200) {
        return Err(AgentError::InvalidArgument {
            field: "id",
            reason: format!("{id:?} is not a snapshot id (letters, digits, '-', '_', '.')"),
        });
    }
    Ok(())
}

/// The cluster version etcd recorded in the database of a snapshot file.
pub fn db_cluster_version(path: &Path) -> Result<String, VerifyError> {
    match steward_proto::bolt::cluster_version(path) {
        Ok(version) => Ok(version.unwrap_or_default()),
        Err(steward_proto::bolt::BoltError::Io(e)) => Err(VerifyError::Io(e)),
        Err(e @ steward_proto::bolt::BoltError::Malformed(_)) => Err(VerifyError::NotADatabase(e.to_string())),
    }
}

/// The integrity check of `snapshot status` by `tool` (etcdutl, or etcdctl
/// before 3.5): it walks every bucket of the database.
///
/// The file is read once from start to end first. The tool maps the
/// database and walks its trees, and bbolt asks the kernel for random
/// access, so each page it touches is a fault and a read of its own: on a
/// file that is not in the page cache, a 4 KiB read for every page
/// (measured on a 1.2 GB snapshot: 10 s, and 20 s for three at once on one
/// disk). Read in order first, the same checks took 1.5 s and 3.3 s. A
/// file still in the page cache, as one written just now usually is, costs
/// a copy in memory (about 0.1 s per GiB).
pub async fn check_database(tool: &Path, name: &'static str, file: &Path) -> Result<ToolStatus, VerifyError> {
    let path = file.to_owned();
    tokio::task::spawn_blocking(move || read_in_order(&path))
        .await
        .unwrap_or_else(|join| Err(std::io::Error::other(join)))
        .map_err(VerifyError::Io)?;
    tool_status(tool, name, file)
        .await
        .map_err(|e| VerifyError::NotADatabase(crate::error::error_chain(&e)))
}

/// Reads `path` from start to end, in large reads, and drops what it
/// read: its pages end up in the page cache. Returns the bytes read.
fn read_in_order(path: &Path) -> std::io::Result<u64> {
    let file = std::fs::File::open(path)?;
    std::io::copy(
        &mut std::io::BufReader::with_capacity(READ_IN_ORDER_BUFFER, file),
        &mut std::io::sink(),
    )
}

async fn tool_status(tool: &Path, name: &'static str, file: &Path) -> Result<ToolStatus, AgentError> {
    let output = tokio::process::Command::new(tool)
        .args(["snapshot", "status", "--write-out", "json"])
        .arg(file)
        .env("ETCDCTL_API", "3")
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| AgentError::Tool {
            tool: name.to_owned(),
            reason: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(AgentError::Tool {
            tool: format!("{name} snapshot status"),
            reason: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    serde_json::from_slice(&output.stdout).map_err(|e| AgentError::Tool {
        tool: format!("{name} snapshot status"),
        reason: format!("unexpected output: {e}"),
    })
}

fn set_mode(path: &Path, mode: u32) -> Result<(), AgentError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io_err("chmod", path))
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Now, in ms since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use steward_proto::trailer::TrailerHasher;

    fn snapshot_bytes(db: &[u8]) -> Vec<u8> {
        let mut bytes = db.to_vec();
        bytes.extend_from_slice(&Sha256::digest(db));
        bytes
    }

    #[test]
    fn a_file_is_read_in_order_to_its_end_before_the_tool_walks_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        // More than two of its reads, and not a whole number of them.
        let size = 2 * READ_IN_ORDER_BUFFER + 4096 + 32;
        std::fs::write(&path, vec![7_u8; size]).unwrap();
        assert_eq!(read_in_order(&path).unwrap(), size as u64);
        let missing = read_in_order(&dir.path().join("gone.db")).unwrap_err();
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn verifies_a_good_file_and_catches_flips_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let db: Vec<u8> = (0..4096_u32).map(|i| (i % 251) as u8).collect();
        let good = snapshot_bytes(&db);
        std::fs::write(&path, &good).unwrap();
        let verified = verify_file(&path).unwrap();
        assert_eq!(verified.size, 4096 + 32);
        assert_eq!(verified.sha256, hex::encode(Sha256::digest(&db)));

        let mut flipped = good.clone();
        flipped[100] ^= 0x01;
        std::fs::write(&path, &flipped).unwrap();
        assert!(matches!(verify_file(&path), Err(VerifyError::Mismatch { .. })));

        std::fs::write(&path, &good[..good.len() - 1]).unwrap();
        assert!(matches!(verify_file(&path), Err(VerifyError::NoTrailer { .. })));

        std::fs::write(&path, &db).unwrap();
        assert!(matches!(verify_file(&path), Err(VerifyError::NoTrailer { .. })));
    }

    #[test]
    fn the_streamed_check_agrees_with_the_file_check_at_any_chunking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let db: Vec<u8> = (0..8192_u32).map(|i| (i % 251) as u8).collect();
        let good = snapshot_bytes(&db);
        let mut flipped = good.clone();
        flipped[5000] ^= 0x01;
        let cases: [(&[u8], &str); 4] = [
            (&good, "good"),
            (&flipped, "flipped"),
            (&good[..good.len() - 1], "truncated"),
            (&db, "no trailer"),
        ];
        for (bytes, name) in cases {
            std::fs::write(&path, bytes).unwrap();
            let from_file = verify_file(&path).map_err(|e| e.to_string());
            for chunk in [1, 7, 32, 33, 512, 4096, 100_000] {
                let mut hasher = TrailerHasher::default();
                bytes.chunks(chunk).for_each(|c| hasher.update(c));
                assert_eq!(
                    verdict(hasher.finish()).map_err(|e| e.to_string()),
                    from_file,
                    "{name} in chunks of {chunk}"
                );
            }
        }
    }

    fn write_meta(dir: &std::path::Path, id: &str, created_at_ms: i64) {
        write_owned(dir, id, created_at_ms, "", false);
    }

    fn write_owned(dir: &std::path::Path, id: &str, created_at_ms: i64, owner: &str, uploaded: bool) {
        let meta = SnapshotMeta {
            id: id.into(),
            path: dir.join(format!("{id}.db")),
            size: 0,
            sha256: String::new(),
            revision: 1,
            total_keys: 0,
            etcd_version: "3.5.16".into(),
            cluster_version: "3.5.0".into(),
            created_at_ms,
            member_name: "m0".into(),
            member_id: 1,
            db_cluster_version: String::new(),
            uploaded,
            pin: String::new(),
            owner: owner.into(),
        };
        std::fs::write(dir.join(format!("{id}.db")), b"x").unwrap();
        std::fs::write(dir.join(format!("{id}.json")), serde_json::to_vec(&meta).unwrap()).unwrap();
    }

    /// A status tool that counts its runs in `runs` and passes every file.
    fn counting_tool(dir: &std::path::Path) -> (PathBuf, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let runs = dir.join("runs");
        let tool = dir.join("etcdutl");
        std::fs::write(
            &tool,
            format!(
                "#!/bin/sh\necho run >> {}\necho '{{\"hash\":1,\"revision\":7,\"totalKey\":3,\"totalSize\":4096}}'\n",
                runs.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        (tool, runs)
    }

    #[tokio::test]
    async fn a_content_the_tool_passed_is_not_read_again_and_another_is() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = SnapshotDir::open(dir.path().join("snapshots"), 2).unwrap();
        let (tool, runs) = counting_tool(dir.path());
        // The file is read in order before the tool runs: it must exist.
        std::fs::write(dir.path().join("a.db"), b"x").unwrap();
        let mut meta: SnapshotMeta = serde_json::from_value(serde_json::json!({
            "id": "a", "path": dir.path().join("a.db"), "size": 1, "sha256": "aa", "revision": 1,
            "total_keys": 1, "etcd_version": "3.5.0", "cluster_version": "3.5.0", "created_at_ms": 1,
            "member_name": "m0", "member_id": 1
        }))
        .unwrap();
        let count = || std::fs::read_to_string(&runs).unwrap_or_default().lines().count();
        snapshots.check_database_of(&tool, "etcdutl", &meta).await.unwrap();
        snapshots.check_database_of(&tool, "etcdutl", &meta).await.unwrap();
        assert_eq!(count(), 1, "the same content and tool: read once");
        meta.sha256 = "bb".into();
        snapshots.check_database_of(&tool, "etcdutl", &meta).await.unwrap();
        assert_eq!(count(), 2, "another content is read");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let (other, other_runs) = counting_tool(&elsewhere);
        snapshots.check_database_of(&other, "etcdutl", &meta).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(other_runs).unwrap().lines().count(),
            1,
            "another tool reads it again"
        );
    }

    /// Stores etcd's snapshot of `proto/testdata` as an upload; its bytes.
    async fn store_an_upload(snapshots: &SnapshotDir, id: &str) -> Vec<u8> {
        let source = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../proto/testdata/snapshot-3.5.30.db"
        ));
        let bytes = std::fs::read(source).unwrap();
        let declared = UploadDeclared {
            id: id.into(),
            sha256: verify_file(source).unwrap().sha256,
            size: bytes.len() as u64,
            ..UploadDeclared::default()
        };
        let mut upload = snapshots.begin_upload(id, declared.size).unwrap();
        upload
            .append(bytes::Bytes::from(bytes.clone()), declared.size)
            .await
            .unwrap();
        snapshots.finish_upload(upload, &declared, None, &[]).await.unwrap();
        bytes
    }

    #[tokio::test]
    async fn bytes_hashed_before_are_not_read_again_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = SnapshotDir::open(dir.path().join("snapshots"), 2).unwrap();
        let bytes = store_an_upload(&snapshots, "up").await;
        let path = dir.path().join("snapshots/up.db");
        let recorded =
            |snapshots: &SnapshotDir| snapshots.hashed.lock().unwrap().get(&path).map(|(_, sha)| sha.clone());
        let sha256 = snapshots.get("up").unwrap().sha256;
        assert_eq!(recorded(&snapshots), Some(sha256.clone()), "hashed as it was stored");
        assert_eq!(snapshots.get_verified("up").unwrap().sha256, sha256);

        // One byte changed in place, the size kept: read again, and refused.
        tokio::time::sleep(STAMP_SETTLED).await;
        let mut flipped = bytes.clone();
        flipped[600] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        assert!(matches!(
            snapshots.get_verified("up"),
            Err(AgentError::SnapshotInvalid {
                source: VerifyError::Mismatch { .. },
                ..
            })
        ));
        // Put back: read again and passed, then remembered once settled.
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(snapshots.get_verified("up").unwrap().sha256, sha256);
        tokio::time::sleep(STAMP_SETTLED).await;
        snapshots.hashed.lock().unwrap().clear();
        assert_eq!(snapshots.get_verified("up").unwrap().sha256, sha256);
        assert_eq!(
            recorded(&snapshots),
            Some(sha256.clone()),
            "remembered after a settled read"
        );

        // Another file put in its place, bad, with the same size.
        tokio::time::sleep(STAMP_SETTLED).await;
        let other = dir.path().join("other.db");
        std::fs::write(&other, &flipped).unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert!(snapshots.get_verified("up").is_err());
    }

    #[test]
    fn retention_never_removes_the_snapshot_just_taken() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = SnapshotDir::open(dir.path().to_owned(), 2).unwrap();
        write_meta(dir.path(), "a", 3000);
        write_meta(dir.path(), "b", 2000);
        // Taken after a clock step back: it sorts oldest, and stays.
        write_meta(dir.path(), "new", 1000);
        snapshots.apply_retention(&["new"]).unwrap();
        let ids: Vec<String> = snapshots.list().unwrap().into_iter().map(|m| m.id).collect();
        assert_eq!(ids, ["a", "new"]);
        assert!(!dir.path().join("b.json").exists());
        snapshots.removals_done();
        assert!(!dir.path().join("b.db").exists());
    }

    #[test]
    fn files_beyond_retention_are_removed_in_the_background_and_count_as_free_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<(PathBuf, u64)> = (0..3)
            .map(|i| {
                let path = dir.path().join(format!("{i}.db"));
                std::fs::write(&path, vec![0_u8; 4096]).unwrap();
                (path, 4096)
            })
            .collect();

        // Queued and not yet taken: their bytes count as soon to be free.
        let (queue, taken) = std::sync::mpsc::channel();
        let held = Remover {
            queue,
            freeing: std::sync::Arc::default(),
        };
        held.remove(files.clone());
        assert_eq!(held.bytes(), 3 * 4096);
        assert!(files.iter().all(|(path, _)| path.exists()));
        for (path, size) in taken.try_iter() {
            held.freeing.removed(&path, size);
        }
        assert_eq!(held.bytes(), 0);
        assert!(files.iter().all(|(path, _)| !path.exists()));

        // The thread removes them; a file already gone counts as removed.
        let remover = Remover::start().unwrap();
        let path = dir.path().join("late.db");
        std::fs::write(&path, b"x").unwrap();
        remover.remove(vec![(dir.path().join("missing.db"), 10), (path.clone(), 1)]);
        remover.wait();
        assert_eq!(remover.bytes(), 0);
        assert!(!path.exists());

        // With the thread gone (nothing takes from the queue), a removal
        // is made on the spot.
        let (queue, _) = std::sync::mpsc::channel();
        let stopped = Remover {
            queue,
            freeing: std::sync::Arc::default(),
        };
        std::fs::write(&path, b"x").unwrap();
        stopped.remove(vec![(path.clone(), 1)]);
        assert!(!path.exists());
        assert_eq!(stopped.bytes(), 0);
    }

    #[test]
    fn each_owner_and_the_uploads_keep_their_own_count_and_removals_are_audited() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = SnapshotDir::open(dir.path().join("snapshots"), 2).unwrap();
        let audit = std::sync::Arc::new(crate::audit::AuditLog::open(dir.path()).unwrap());
        snapshots.audit_to(std::sync::Arc::clone(&audit));
        let at = dir.path().join("snapshots");
        write_owned(&at, "uploaded-1", 1000, "", true);
        write_owned(&at, "uploaded-2", 1100, "", true);
        write_owned(&at, "admin-1", 1200, "admin", false);
        // A backup job takes five in a row: only its own oldest go.
        for i in 0..5 {
            let id = format!("backup-{i}");
            write_owned(&at, &id, 2000 + i, "backup", false);
            snapshots.apply_retention(&[&id]).unwrap();
        }
        let mut left: Vec<String> = snapshots.list().unwrap().into_iter().map(|m| m.id).collect();
        left.sort();
        assert_eq!(left, ["admin-1", "backup-3", "backup-4", "uploaded-1", "uploaded-2"]);
        let lines = std::fs::read_to_string(dir.path().join(crate::audit::FILE_NAME)).unwrap();
        let removed: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(removed.len(), 3, "{lines}");
        assert!(
            removed
                .iter()
                .all(|e| e["rpc"] == "RemoveSnapshot" && e["args"]["bucket"] == "backup")
        );
        assert_eq!(removed[0]["args"]["id"], "backup-0");
    }

    fn ids(snapshots: &SnapshotDir) -> Vec<(String, String)> {
        snapshots.list().unwrap().into_iter().map(|m| (m.id, m.pin)).collect()
    }

    #[test]
    fn a_pinned_snapshot_is_neither_counted_nor_removed_until_its_label_moves() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = SnapshotDir::open(dir.path().to_owned(), 2).unwrap();
        write_meta(dir.path(), "pre-change", 1000);
        let (pinned, released) = snapshots.pin("pre-change", "last-change", &[]).unwrap();
        assert_eq!(pinned.pin, "last-change");
        assert!(released.is_empty());
        for (i, id) in ["b", "c", "d", "e"].into_iter().enumerate() {
            write_meta(dir.path(), id, 2000 + i as i64);
            snapshots.apply_retention(&[id]).unwrap();
        }
        // Two unpinned kept, and the pinned one besides.
        assert_eq!(
            ids(&snapshots),
            [
                ("e".into(), String::new()),
                ("d".into(), String::new()),
                ("pre-change".into(), "last-change".into())
            ]
        );
        // A later change pins its own: the label moves, and retention
        // counts the old one again (the oldest, it goes with the next).
        let (_, released) = snapshots.pin("e", "last-change", &[]).unwrap();
        assert_eq!(released, ["pre-change"]);
        assert_eq!(
            ids(&snapshots),
            [
                ("e".into(), "last-change".into()),
                ("d".into(), String::new()),
                ("pre-change".into(), String::new())
            ]
        );
        write_meta(dir.path(), "f", 3000);
        snapshots.apply_retention(&["f"]).unwrap();
        assert_eq!(
            ids(&snapshots),
            [
                ("f".into(), String::new()),
                ("e".into(), "last-change".into()),
                ("d".into(), String::new())
            ]
        );
        // Unpinning with an empty label.
        let (unpinned, _) = snapshots.pin("e", "", &[]).unwrap();
        assert!(unpinned.pin.is_empty());
    }

    #[test]
    fn pins_name_a_stored_snapshot_with_a_safe_label() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = SnapshotDir::open(dir.path().to_owned(), 2).unwrap();
        write_meta(dir.path(), "a", 1000);
        assert!(matches!(
            snapshots.pin("missing", "last-change", &[]),
            Err(AgentError::SnapshotNotFound { .. })
        ));
        for label in ["../x", "with space", &"x".repeat(65)] {
            let refused = snapshots.pin("a", label, &[]).unwrap_err();
            assert!(
                matches!(refused, AgentError::InvalidArgument { field: "pin", .. }),
                "{label}: {refused}"
            );
        }
        assert!(matches!(
            snapshots.pin("../a", "x", &[]),
            Err(AgentError::InvalidArgument { field: "id", .. })
        ));
    }

    #[test]
    fn undescribed_and_unfinished_files_are_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        write_meta(dir.path(), "kept", 1000);
        std::fs::write(dir.path().join("orphan.db"), b"x").unwrap();
        std::fs::write(dir.path().join("broken.db.part"), b"x").unwrap();
        SnapshotDir::open(dir.path().to_owned(), 5).unwrap();
        assert!(dir.path().join("kept.db").exists());
        assert!(!dir.path().join("orphan.db").exists());
        assert!(!dir.path().join("broken.db.part").exists());
    }
}
