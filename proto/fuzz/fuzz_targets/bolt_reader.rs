//! The snapshot reader on any bytes: it must answer or refuse, never
//! panic, loop or hold more than its bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("db");
    if std::fs::write(&path, bytes).is_err() {
        return;
    }
    let _ = steward_proto::bolt::cluster_version(&path);
    let _ = steward_proto::bolt::summary(&path);
});
