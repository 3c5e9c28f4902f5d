//! ImportBinary and UploadBinary refuse every bad input with a clear error
//! naming the check, and leave nothing behind in the store.

use std::path::Path;

use sha2::{Digest, Sha256};
use steward_proto::v1 as pb;
use steward_tests::{Cluster, ClusterBuilder, fake, newest};
use tonic::Code;

/// Everything under the store dir: each staged version's files, and any
/// leftover (temp dirs of a refused staging would show here).
fn store_listing(cluster: &Cluster) -> Vec<String> {
    let root = cluster.members[0].state_dir.join("binaries");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&root).expect("binaries dir").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() {
            for file in std::fs::read_dir(entry.path()).expect("version dir").flatten() {
                out.push(format!("{name}/{}", file.file_name().to_string_lossy()));
            }
        } else {
            out.push(name);
        }
    }
    out.sort();
    out
}

async fn import(
    cluster: &Cluster,
    path: &str,
    version: &str,
    sha256: &str,
) -> Result<pb::ImportBinaryResponse, tonic::Status> {
    cluster
        .binaries(0)
        .await
        .import_binary(pb::ImportBinaryRequest {
            path: path.to_owned(),
            tool: pb::Tool::Etcd.into(),
            version: version.to_owned(),
            sha256: sha256.to_owned(),
            fencing_token: 0,
        })
        .await
        .map(tonic::Response::into_inner)
}

fn assert_refused(result: Result<impl std::fmt::Debug, tonic::Status>, code: Code, needle: &str) {
    let status = result.expect_err(needle);
    assert_eq!(status.code(), code, "{status}");
    assert!(
        status.message().contains(needle),
        "expected {needle:?} in {:?}",
        status.message()
    );
}

fn sha256_hex(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("read binary")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_are_refused_and_leave_nothing_behind() {
    let cluster = ClusterBuilder::new(1, newest(3, 4)).start().await;
    let real = newest(3, 5);
    let version = real.version.to_string();
    let import_dir = cluster.import_dir();
    let before = store_listing(&cluster);

    // A copy of a real 3.5 binary inside the import dir, and a link to it.
    let copy = import_dir.join("etcd-copy");
    std::fs::copy(real.etcd(), &copy).expect("copy etcd");
    let outside = cluster.dir().join("outside-etcd");
    std::fs::copy(real.etcd(), &outside).expect("copy etcd outside");
    std::os::unix::fs::symlink(&outside, import_dir.join("link-out")).expect("symlink");
    let text = import_dir.join("notes.txt");
    std::fs::write(&text, "not a program\n").expect("write text");
    let script = fake::not_etcd(&import_dir);
    let copy_str = copy.display().to_string();

    assert_refused(
        import(&cluster, &copy_str, &version, &"0".repeat(64)).await,
        Code::InvalidArgument,
        "sha256 mismatch",
    );
    assert_refused(
        import(&cluster, &copy_str, "3.5.99", "").await,
        Code::InvalidArgument,
        "version mismatch: declared 3.5.99",
    );
    assert_refused(
        import(&cluster, &script.display().to_string(), &version, "").await,
        Code::InvalidArgument,
        "not an etcd binary",
    );
    assert_refused(
        import(&cluster, &text.display().to_string(), &version, "").await,
        Code::InvalidArgument,
        "not an etcd binary",
    );
    assert_refused(
        import(&cluster, &outside.display().to_string(), &version, "").await,
        Code::InvalidArgument,
        "outside the import dirs",
    );
    assert_refused(
        import(
            &cluster,
            &format!("{}/../outside-etcd", import_dir.display()),
            &version,
            "",
        )
        .await,
        Code::InvalidArgument,
        "'..'",
    );
    assert_refused(
        import(
            &cluster,
            &import_dir.join("link-out").display().to_string(),
            &version,
            "",
        )
        .await,
        Code::InvalidArgument,
        "leads outside the import dir",
    );
    assert_refused(
        import(&cluster, &format!("{copy_str}\0x"), &version, "").await,
        Code::InvalidArgument,
        "NUL",
    );
    assert_refused(
        import(&cluster, "etcd", &version, "").await,
        Code::InvalidArgument,
        "must be absolute",
    );
    assert_refused(
        import(&cluster, &copy_str, "3.5", "").await,
        Code::InvalidArgument,
        "version",
    );
    assert_refused(
        import(&cluster, &copy_str, &version, "xyz").await,
        Code::InvalidArgument,
        "sha256",
    );
    assert_eq!(store_listing(&cluster), before, "nothing staged, nothing left behind");

    // The same file with the right answers is accepted, and again is a no-op.
    let sha = sha256_hex(&copy);
    let staged = import(&cluster, &copy_str, &version, &sha)
        .await
        .expect("a valid import");
    assert!(!staged.already_present);
    assert!(
        import(&cluster, &copy_str, &version, &sha)
            .await
            .expect("again")
            .already_present
    );
    // Other content for a staged version is refused.
    let other = fake::exits_at_once(&import_dir, &version);
    assert_refused(
        import(&cluster, &other.display().to_string(), &version, "").await,
        Code::AlreadyExists,
        "already staged",
    );
    let listing = store_listing(&cluster);
    assert_eq!(
        listing.len(),
        before.len() + 2,
        "one new version dir (etcd + manifest): {listing:?}"
    );
    cluster.cleanup();
}

async fn upload(
    cluster: &Cluster,
    messages: Vec<pb::UploadBinaryRequest>,
) -> Result<pb::ImportBinaryResponse, tonic::Status> {
    cluster
        .binaries(0)
        .await
        .upload_binary(tokio_stream::iter(messages))
        .await
        .map(tonic::Response::into_inner)
}

fn header(version: &str, sha256: &str, size: u64) -> pb::UploadBinaryRequest {
    pb::UploadBinaryRequest {
        part: Some(pb::upload_binary_request::Part::Header(pb::UploadHeader {
            tool: pb::Tool::Etcd.into(),
            version: version.to_owned(),
            sha256: sha256.to_owned(),
            size,
            fencing_token: 0,
        })),
    }
}

fn chunks(bytes: &[u8]) -> Vec<pb::UploadBinaryRequest> {
    bytes
        .chunks(64 * 1024)
        .map(|c| pb::UploadBinaryRequest {
            part: Some(pb::upload_binary_request::Part::Chunk(c.to_vec())),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_refused_and_leave_nothing_behind() {
    let cluster = ClusterBuilder::new(1, newest(3, 4)).start().await;
    let real = newest(3, 5);
    let version = real.version.to_string();
    let bytes = std::fs::read(real.etcd()).expect("read etcd");
    let sha = hex::encode(Sha256::digest(&bytes));
    let size = bytes.len() as u64;
    let before = store_listing(&cluster);

    let with = |first: pb::UploadBinaryRequest, body: &[u8]| {
        let mut messages = vec![first];
        messages.extend(chunks(body));
        messages
    };
    assert_refused(
        upload(&cluster, with(header(&version, &"0".repeat(64), size), &bytes)).await,
        Code::InvalidArgument,
        "sha256 mismatch",
    );
    assert_refused(
        upload(&cluster, with(header("3.5.99", &sha, size), &bytes)).await,
        Code::InvalidArgument,
        "version mismatch",
    );
    let script = b"#!/bin/sh\necho not etcd\n";
    let script_sha = hex::encode(Sha256::digest(script));
    assert_refused(
        upload(
            &cluster,
            with(header(&version, &script_sha, script.len() as u64), script),
        )
        .await,
        Code::InvalidArgument,
        "not an etcd binary",
    );
    assert_refused(
        upload(&cluster, with(header(&version, &sha, size + 10), &bytes)).await,
        Code::InvalidArgument,
        "size mismatch",
    );
    assert_refused(
        upload(&cluster, with(header(&version, &sha, size - 10), &bytes)).await,
        Code::InvalidArgument,
        "size mismatch",
    );
    assert_refused(
        upload(&cluster, chunks(&bytes[..1024])).await,
        Code::InvalidArgument,
        "UploadHeader",
    );
    assert_refused(
        upload(&cluster, with(header(&version, "abc", size), &bytes)).await,
        Code::InvalidArgument,
        "header.sha256",
    );
    assert_refused(
        upload(&cluster, with(header(&version, &sha, 0), &[])).await,
        Code::InvalidArgument,
        "header.size",
    );
    assert_eq!(store_listing(&cluster), before, "nothing staged, nothing left behind");

    let staged = upload(&cluster, with(header(&version, &sha, size), &bytes))
        .await
        .expect("a valid upload");
    let staged = staged.staged.expect("staged version");
    assert_eq!(staged.version, version);
    assert_eq!(staged.files[0].sha256, sha);
    let listed = cluster
        .binaries(0)
        .await
        .list_binaries(pb::ListBinariesRequest {})
        .await
        .expect("list")
        .into_inner();
    assert!(listed.versions.iter().any(|v| v.version == version));
    cluster.cleanup();
}
