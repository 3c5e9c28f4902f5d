//! Reading etcd's backend database, a bbolt file, without etcd: one value,
//! or a summary of every bucket.
//!
//! A restore must know which etcd wrote a snapshot before it stops anything:
//! a 3.5 database given to a 3.4 binary is refused, not discovered by a
//! member that cannot start. etcd keeps the cluster version in its own
//! database (bucket `cluster`, key `clusterVersion`, since 3.3), so the
//! snapshot says itself; its `snapshot status` does not print it. No
//! maintained Rust crate reads bbolt, and a lookup needs only the read path
//! of the format: the two meta pages, branch and leaf pages, overflow
//! pages, and inline buckets. Pages are read on demand, so a snapshot of
//! gigabytes costs a few pages of memory.
//!
//! Every offset read from the file is bounds-checked: a damaged file is an
//! error, never a panic.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

mod leaf_counts;

pub use leaf_counts::{LeafCounter, LeafCounts};

/// bbolt's magic number, in both meta pages.
const MAGIC: u32 = 0xED0C_DAED;
/// Page header: id u64, flags u16, count u16, overflow u32.
const PAGE_HEADER: usize = 16;
/// Branch and leaf elements are both 16 bytes.
const ELEMENT: usize = 16;
/// A bucket value starts with its header: root page id u64, sequence u64.
const BUCKET_HEADER: usize = 16;
/// The meta fields covered by the checksum (everything before it).
const META_CHECKED: usize = 56;
const BRANCH_PAGE: u16 = 0x01;
const LEAF_PAGE: u16 = 0x02;
const BUCKET_LEAF: u32 = 0x01;
/// A tree deeper than this is a loop in a damaged file.
const MAX_DEPTH: usize = 64;
/// The most the pages of one root-to-leaf path may hold at once: a walk
/// keeps each level's page while it reads the next, and a damaged file
/// must not make that a gigabyte (64 levels of 16 MiB pages).
const MAX_PATH_BYTES: u64 = 64 * 1024 * 1024;
/// The pages a lookup reads hold bucket headers and small keys; a page
/// (with its overflow) claiming more is damage, not data, and must not
/// make the agent allocate it.
const MAX_PAGE_BYTES: u64 = 16 * 1024 * 1024;
/// The page sizes bbolt uses (the OS page size when the file was created):
/// where the second meta page may be when the first is damaged.
const PAGE_SIZES: [u64; 7] = [1024, 2048, 4096, 8192, 16_384, 32_768, 65_536];

/// Why a value could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BoltError {
    /// The file could not be read.
    #[error("cannot read the file")]
    Io(#[from] std::io::Error),
    /// The file is not a bbolt database, or a damaged one.
    #[error("not a bbolt database: {0}")]
    Malformed(String),
}

fn malformed(what: impl Into<String>) -> BoltError {
    BoltError::Malformed(what.into())
}

/// A bbolt file opened for lookups.
#[derive(Debug)]
pub struct BoltFile {
    file: File,
    len: u64,
    page_size: u64,
    root: u64,
}

/// One page's bytes (with its overflow pages).
struct Page {
    bytes: Vec<u8>,
}

impl Page {
    /// Bytes it holds.
    fn held(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn flags(&self) -> u16 {
        u16::from_le_bytes([self.bytes[8], self.bytes[9]])
    }

    fn count(&self) -> usize {
        usize::from(u16::from_le_bytes([self.bytes[10], self.bytes[11]]))
    }

    /// Element `i`'s header fields as four u32 (a branch element reads its
    /// page id from the last two).
    fn element(&self, i: usize) -> Result<(usize, [u32; 4]), BoltError> {
        let at = PAGE_HEADER + i * ELEMENT;
        let raw = self
            .bytes
            .get(at..at + ELEMENT)
            .ok_or_else(|| malformed("an element lies outside its page"))?;
        let word = |n: usize| u32::from_le_bytes([raw[n * 4], raw[n * 4 + 1], raw[n * 4 + 2], raw[n * 4 + 3]]);
        Ok((at, [word(0), word(1), word(2), word(3)]))
    }

    fn slice(&self, at: usize, len: usize) -> Result<&[u8], BoltError> {
        at.checked_add(len)
            .and_then(|end| self.bytes.get(at..end))
            .ok_or_else(|| malformed("a key or value lies outside its page"))
    }

    /// Branch element `i`: its key and child page.
    fn branch(&self, i: usize) -> Result<(&[u8], u64), BoltError> {
        let (at, [pos, ksize, lo, hi]) = self.element(i)?;
        let key = self.slice(at + pos as usize, ksize as usize)?;
        Ok((key, u64::from(lo) | (u64::from(hi) << 32)))
    }

    /// Leaf element `i`: flags, key and value.
    fn leaf(&self, i: usize) -> Result<(u32, &[u8], &[u8]), BoltError> {
        let (at, [flags, pos, ksize, vsize]) = self.element(i)?;
        let key = self.slice(at + pos as usize, ksize as usize)?;
        let value = self.slice(at + pos as usize + ksize as usize, vsize as usize)?;
        Ok((flags, key, value))
    }
}

impl BoltFile {
    /// Opens `path` and picks the newer valid meta page.
    ///
    /// # Errors
    /// The file cannot be read or has no valid meta page.
    pub fn open(path: &Path) -> Result<Self, BoltError> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let first = read_meta(&file, 0)?;
        let second = match &first {
            Some(meta) => read_meta(&file, meta.page_size)?,
            // The first meta page is damaged: look for the second one at
            // every page size bbolt may have used.
            None => {
                let mut found = None;
                for size in PAGE_SIZES {
                    if let Some(meta) = read_meta(&file, size)?.filter(|m| m.page_size == size) {
                        found = Some(meta);
                        break;
                    }
                }
                found
            }
        };
        let meta = match (first, second) {
            (Some(a), Some(b)) => {
                if b.txid > a.txid {
                    b
                } else {
                    a
                }
            }
            (Some(m), None) | (None, Some(m)) => m,
            (None, None) => return Err(malformed("neither meta page is valid")),
        };
        Ok(Self {
            file,
            len,
            page_size: meta.page_size,
            root: meta.root,
        })
    }

    /// The value of `key` in the top-level bucket `bucket`, if both exist.
    ///
    /// # Errors
    /// The file cannot be read or is damaged.
    pub fn get(&self, bucket: &[u8], key: &[u8]) -> Result<Option<Vec<u8>>, BoltError> {
        let root = self.page(self.root, 0)?;
        let Some((flags, value)) = self.find(&root, bucket, &mut vec![self.root], root.held())? else {
            return Ok(None);
        };
        if flags & BUCKET_LEAF == 0 {
            return Err(malformed("a top-level key is not a bucket"));
        }
        let (page, mut path) = self.bucket_page(&value)?;
        match self.find(&page, key, &mut path, page.held())? {
            Some((flags, _)) if flags & BUCKET_LEAF != 0 => Ok(None),
            Some((_, value)) => Ok(Some(value)),
            None => Ok(None),
        }
    }

    /// Every top-level bucket in key order, as bbolt's `ForEach` sees it:
    /// its name, its number of entries (a nested bucket counts as one) and
    /// its last key. Reads every page of the trees but the leaves `counts`
    /// noted (and one leaf per bucket, for its last key).
    ///
    /// # Errors
    /// The file cannot be read or is damaged.
    pub fn buckets(&self, counts: &LeafCounts) -> Result<Vec<BucketSummary>, BoltError> {
        let mut tops = Vec::new();
        let root = self.page(self.root, 0)?;
        self.walk(&root, &mut vec![self.root], root.held(), &mut |flags, key, value| {
            if flags & BUCKET_LEAF == 0 {
                return Err(malformed("a top-level key is not a bucket"));
            }
            tops.push((key.to_vec(), value.to_vec()));
            Ok(())
        })?;
        let mut summaries = Vec::with_capacity(tops.len());
        for (name, value) in tops {
            let mut entries = 0_u64;
            let mut last_key = Vec::new();
            match bucket_root(&value)? {
                // An inline bucket's page is in its value, already read.
                0 => {
                    let (page, mut path) = self.bucket_page(&value)?;
                    self.walk(&page, &mut path, page.held(), &mut |_, key, _| {
                        entries += 1;
                        key.clone_into(&mut last_key);
                        Ok(())
                    })?;
                }
                root => {
                    let mut tally = Tally::default();
                    self.tally(root, &mut Vec::new(), 0, counts, &mut tally)?;
                    entries = tally.entries;
                    if let Some(leaf) = tally.last_leaf {
                        last_key = self.last_key(leaf)?;
                    }
                }
            }
            summaries.push(BucketSummary {
                name,
                entries,
                last_key,
            });
        }
        Ok(summaries)
    }

    /// Counts the entries of the tree under page `id` into `tally`, and
    /// notes its last leaf that has any. A leaf `counts` noted is not read;
    /// of any other only the header is: the values (etcd's, in the `key`
    /// bucket, are most of the file and may be larger than any page this
    /// reader holds) are never read. `path` and `held` are as in
    /// [`Self::walk`].
    fn tally(
        &self,
        id: u64,
        path: &mut Vec<u64>,
        held: u64,
        counts: &LeafCounts,
        tally: &mut Tally,
    ) -> Result<(), BoltError> {
        check_descent(id, path)?;
        let count = match counts.of(id, self.page_size) {
            Some(count) => count,
            None => {
                let (_, header) = self.header(id)?;
                match header.flags {
                    BRANCH_PAGE => {
                        let page = self.page(id, held)?;
                        path.push(id);
                        let mut tallied = Ok(());
                        for i in 0..page.count() {
                            tallied = page
                                .branch(i)
                                .and_then(|(_, child)| self.tally(child, path, held + page.held(), counts, tally));
                            if tallied.is_err() {
                                break;
                            }
                        }
                        path.pop();
                        return tallied;
                    }
                    LEAF_PAGE => u64::from(header.count),
                    other => return Err(malformed(format!("page type {other:#x} where a tree page belongs"))),
                }
            }
        };
        tally.entries += count;
        if count > 0 {
            tally.last_leaf = Some(id);
        }
        Ok(())
    }

    /// The last key of leaf page `id`, reading of the page only that key
    /// and its element header.
    fn last_key(&self, id: u64) -> Result<Vec<u8>, BoltError> {
        let (offset, header) = self.header(id)?;
        if header.flags != LEAF_PAGE {
            return Err(malformed(format!("page {id} is not the leaf it was counted as")));
        }
        let Some(last) = u64::from(header.count).checked_sub(1) else {
            return Ok(Vec::new());
        };
        let overflow = u64::from(header.overflow);
        let extent = (overflow + 1).saturating_mul(self.page_size).min(self.len - offset);
        // The last element's header: flags, pos, ksize, vsize; its key
        // lies `pos` bytes after the header.
        let at = PAGE_HEADER as u64 + last * ELEMENT as u64;
        if at + ELEMENT as u64 > extent {
            return Err(malformed("an element lies outside its page"));
        }
        let mut element = [0_u8; ELEMENT];
        self.file.read_exact_at(&mut element, offset + at)?;
        let word = |n: usize| {
            u64::from(u32::from_le_bytes(
                element[n * 4..n * 4 + 4].try_into().unwrap_or_default(),
            ))
        };
        let (pos, ksize) = (word(1), word(2));
        let key_at = at + pos;
        if key_at + ksize > extent || ksize > MAX_PAGE_BYTES {
            return Err(malformed("a key or value lies outside its page"));
        }
        let mut key = vec![0_u8; usize::try_from(ksize).map_err(|_| malformed("a key larger than memory"))?];
        self.file.read_exact_at(&mut key, offset + key_at)?;
        Ok(key)
    }

    /// The offset and header of page `id`.
    fn header(&self, id: u64) -> Result<(u64, PageHeader), BoltError> {
        let offset = id
            .checked_mul(self.page_size)
            .filter(|o| o.saturating_add(PAGE_HEADER as u64) <= self.len)
            .ok_or_else(|| malformed(format!("page {id} lies beyond the end of the file")))?;
        let mut header = [0_u8; PAGE_HEADER];
        self.file.read_exact_at(&mut header, offset)?;
        Ok((offset, PageHeader::parse(&header)))
    }

    /// The root page of the bucket whose value (header and, for an inline
    /// bucket, its page) is `value`.
    fn bucket_page(&self, value: &[u8]) -> Result<(Page, Vec<u64>), BoltError> {
        let bucket_root = bucket_root(value)?;
        if bucket_root == 0 {
            // An inline bucket: its page follows the header in the value.
            let bytes = value[BUCKET_HEADER..].to_vec();
            if bytes.len() < PAGE_HEADER {
                return Err(malformed("an inline bucket is shorter than a page header"));
            }
            Ok((Page { bytes }, Vec::new()))
        } else {
            Ok((self.page(bucket_root, 0)?, vec![bucket_root]))
        }
    }

    /// Calls `visit` with every leaf element of the tree rooted at `page`,
    /// in key order.
    /// `path` holds the ids of the pages above (and `held` their bytes).
    fn walk(&self, page: &Page, path: &mut Vec<u64>, held: u64, visit: &mut Visit<'_>) -> Result<(), BoltError> {
        match page.flags() {
            BRANCH_PAGE => {
                for i in 0..page.count() {
                    let (_, child) = page.branch(i)?;
                    let next = self.child(child, path, held)?;
                    path.push(child);
                    let walked = self.walk(&next, path, held + next.held(), visit);
                    path.pop();
                    walked?;
                }
                Ok(())
            }
            LEAF_PAGE => {
                for i in 0..page.count() {
                    let (flags, key, value) = page.leaf(i)?;
                    visit(flags, key, value)?;
                }
                Ok(())
            }
            other => Err(malformed(format!("page type {other:#x} where a tree page belongs"))),
        }
    }

    /// Looks `key` up in the tree rooted at `page`: its leaf flags and value.
    fn find(
        &self,
        page: &Page,
        key: &[u8],
        path: &mut Vec<u64>,
        held: u64,
    ) -> Result<Option<(u32, Vec<u8>)>, BoltError> {
        match page.flags() {
            BRANCH_PAGE => {
                // The last child whose first key is not after `key`.
                let mut child = None;
                for i in 0..page.count() {
                    let (first, id) = page.branch(i)?;
                    if first > key {
                        break;
                    }
                    child = Some(id);
                }
                let Some(child) = child.or(if page.count() > 0 {
                    Some(page.branch(0)?.1)
                } else {
                    None
                }) else {
                    return Ok(None);
                };
                let next = self.child(child, path, held)?;
                path.push(child);
                self.find(&next, key, path, held + next.held())
            }
            LEAF_PAGE => {
                for i in 0..page.count() {
                    let (flags, k, v) = page.leaf(i)?;
                    if k == key {
                        return Ok(Some((flags, v.to_vec())));
                    }
                }
                Ok(None)
            }
            other => Err(malformed(format!("page type {other:#x} where a tree page belongs"))),
        }
    }

    /// Page `id`, a child of the pages on `path` (which hold `held`
    /// bytes): refused when it is one of them (a loop), when the path is
    /// deeper than any real tree, or when the path would hold more than
    /// [`MAX_PATH_BYTES`], before it is read.
    fn child(&self, id: u64, path: &[u64], held: u64) -> Result<Page, BoltError> {
        check_descent(id, path)?;
        self.page(id, held)
    }

    /// Page `id` with its overflow pages, when the pages already held
    /// (`held` bytes) leave room for it.
    fn page(&self, id: u64, held: u64) -> Result<Page, BoltError> {
        let (offset, header) = self.header(id)?;
        let overflow = u64::from(header.overflow);
        let size = (overflow + 1)
            .checked_mul(self.page_size)
            .filter(|s| *s <= MAX_PAGE_BYTES)
            .map(|s| s.min(self.len - offset))
            .ok_or_else(|| malformed(format!("page {id} claims {overflow} overflow pages")))?;
        if held.saturating_add(size) > MAX_PATH_BYTES {
            return Err(malformed(format!(
                "the pages down to page {id} hold more than {} MiB, more than any real tree",
                MAX_PATH_BYTES >> 20
            )));
        }
        let mut bytes = vec![0_u8; usize::try_from(size).map_err(|_| malformed("a page larger than memory"))?];
        self.file.read_exact_at(&mut bytes, offset)?;
        Ok(Page { bytes })
    }
}

/// Refuses to go down to page `id` from the pages on `path` when it is one
/// of them (a loop in a damaged file) or the path is already deeper than
/// any real tree.
fn check_descent(id: u64, path: &[u64]) -> Result<(), BoltError> {
    if path.contains(&id) {
        return Err(malformed(format!(
            "page {id} points back at itself through its children"
        )));
    }
    if path.len() > MAX_DEPTH {
        return Err(malformed("the tree is deeper than any real database"));
    }
    Ok(())
}

/// The root page id in a bucket's value (0 for an inline bucket).
fn bucket_root(value: &[u8]) -> Result<u64, BoltError> {
    let header = value
        .get(..BUCKET_HEADER)
        .ok_or_else(|| malformed("a bucket value is shorter than its header"))?;
    Ok(u64::from_le_bytes(header[..8].try_into().unwrap_or_default()))
}

/// A page's header, as it starts the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PageHeader {
    /// The id the page was written with.
    id: u64,
    flags: u16,
    /// Its elements.
    count: u16,
    /// The pages after it that it spans.
    overflow: u32,
}

impl PageHeader {
    fn parse(bytes: &[u8; PAGE_HEADER]) -> Self {
        Self {
            id: u64::from_le_bytes([
                bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
            ]),
            flags: u16::from_le_bytes([bytes[8], bytes[9]]),
            count: u16::from_le_bytes([bytes[10], bytes[11]]),
            overflow: u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]),
        }
    }
}

/// What [`BoltFile::tally`] counts over a tree.
#[derive(Debug, Default)]
struct Tally {
    entries: u64,
    /// The last leaf with any entry, in key order.
    last_leaf: Option<u64>,
}

/// What a tree walk calls for each leaf element: its flags, key and value.
type Visit<'a> = dyn FnMut(u32, &[u8], &[u8]) -> Result<(), BoltError> + 'a;

/// One top-level bucket: see [`BoltFile::buckets`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketSummary {
    /// The bucket's name.
    pub name: Vec<u8>,
    /// Its entries, a nested bucket counting as one.
    pub entries: u64,
    /// Its last key (empty when it has none).
    pub last_key: Vec<u8>,
}

/// What etcd's `snapshot status` reports of a database, read without etcd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseSummary {
    /// The store's revision: the newest in the `key` bucket.
    pub revision: i64,
    /// Entries in every top-level bucket, as etcdutl counts its total keys.
    pub total_keys: u64,
    /// The cluster version etcd recorded, if any.
    pub cluster_version: Option<String>,
}

/// Summarises the database at `path` as etcd's `snapshot status` does.
///
/// # Errors
/// The file cannot be read or is damaged.
pub fn summary(path: &Path) -> Result<DatabaseSummary, BoltError> {
    summarise(&BoltFile::open(path)?, &LeafCounts::default())
}

/// [`summary`] of a file whose leaf pages `counts` noted as it was
/// written: it reads only the branch pages and a leaf per bucket, each
/// page on its own, so the reads stay a few MiB of a GiB database whatever
/// the size of its values (see [`LeafCounts`]).
///
/// # Errors
/// The file cannot be read or is damaged.
pub fn summary_counted(path: &Path, counts: &LeafCounts) -> Result<DatabaseSummary, BoltError> {
    let db = BoltFile::open(path)?;
    // No read ahead: the pages left to read lie far apart, and reading
    // what lies between them would read the file again.
    let _ = nix::fcntl::posix_fadvise(&db.file, 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_RANDOM);
    summarise(&db, counts)
}

fn summarise(db: &BoltFile, counts: &LeafCounts) -> Result<DatabaseSummary, BoltError> {
    let buckets = db.buckets(counts)?;
    let total_keys = buckets.iter().map(|b| b.entries).sum();
    // etcd's revision keys: 8 bytes of main revision, big-endian, '_', and
    // the sub revision.
    let revision = buckets
        .iter()
        .find(|b| b.name == b"key")
        .and_then(|b| b.last_key.get(..8))
        .map_or(0, |main| i64::from_be_bytes(main.try_into().unwrap_or_default()));
    Ok(DatabaseSummary {
        revision,
        total_keys,
        cluster_version: recorded_cluster_version(db)?,
    })
}

fn recorded_cluster_version(db: &BoltFile) -> Result<Option<String>, BoltError> {
    db.get(b"cluster", b"clusterVersion")?
        .map(|v| String::from_utf8(v).map_err(|_| malformed("the recorded cluster version is not text")))
        .transpose()
}

struct Meta {
    page_size: u64,
    root: u64,
    txid: u64,
}

/// The bytes of a meta page that [`parse_meta`] reads.
const META_PAGE_BYTES: usize = PAGE_HEADER + META_CHECKED + 8;

/// The meta page at `offset`, if its magic and checksum are right.
fn read_meta(file: &File, offset: u64) -> Result<Option<Meta>, BoltError> {
    let mut bytes = [0_u8; META_PAGE_BYTES];
    match file.read_exact_at(&mut bytes, offset) {
        Ok(()) => Ok(parse_meta(&bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The meta page whose first bytes are `bytes`, if its magic and checksum
/// are right.
fn parse_meta(bytes: &[u8; META_PAGE_BYTES]) -> Option<Meta> {
    let meta = &bytes[PAGE_HEADER..];
    let u32_at = |at: usize| u32::from_le_bytes(meta[at..at + 4].try_into().unwrap_or_default());
    let u64_at = |at: usize| u64::from_le_bytes(meta[at..at + 8].try_into().unwrap_or_default());
    // Format version 2 is the only one bbolt has written.
    if u32_at(0) != MAGIC || u32_at(4) != 2 || fnv64a(&meta[..META_CHECKED]) != u64_at(META_CHECKED) {
        return None;
    }
    let page_size = u64::from(u32_at(8));
    if !(512..=1 << 20).contains(&page_size) {
        return None;
    }
    Some(Meta {
        page_size,
        root: u64_at(16),
        txid: u64_at(48),
    })
}

/// FNV-1a, 64 bits: bbolt's meta checksum.
fn fnv64a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The cluster version etcd recorded in the database at `path` ("3.5.0"),
/// or `None` when it recorded none.
///
/// # Errors
/// The file cannot be read or is not a bbolt database.
pub fn cluster_version(path: &Path) -> Result<Option<String>, BoltError> {
    recorded_cluster_version(&BoltFile::open(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name)
    }

    #[test]
    fn reads_the_cluster_version_of_real_snapshots() {
        for (file, version) in [
            ("snapshot-3.3.25.db", "3.3.0"),
            ("snapshot-3.4.23.db", "3.4.0"),
            ("snapshot-3.5.30.db", "3.5.0"),
        ] {
            assert_eq!(
                cluster_version(&testdata(file)).unwrap().as_deref(),
                Some(version),
                "{file}"
            );
        }
    }

    #[test]
    fn summarises_real_snapshots_as_etcdutl_does() {
        // Revision and total keys as `etcdutl snapshot status` printed them
        // for these files.
        for (file, revision, total_keys, version) in [
            ("snapshot-3.3.25.db", 2, 5, "3.3.0"),
            ("snapshot-3.4.23.db", 2, 5, "3.4.0"),
            ("snapshot-3.5.30.db", 2, 7, "3.5.0"),
        ] {
            let summary = summary(&testdata(file)).unwrap();
            assert_eq!(summary.revision, revision, "{file}");
            assert_eq!(summary.total_keys, total_keys, "{file}");
            assert_eq!(summary.cluster_version.as_deref(), Some(version), "{file}");
        }
    }

    #[test]
    fn finds_keys_and_misses_absent_ones() {
        let db = BoltFile::open(&testdata("snapshot-3.5.30.db")).unwrap();
        // The member list is a bucket of its own; a key that is not there.
        assert!(db.get(b"cluster", b"noSuchKey").unwrap().is_none());
        assert!(db.get(b"noSuchBucket", b"clusterVersion").unwrap().is_none());
        // A key in another bucket: the meta bucket's consistent index.
        assert_eq!(db.get(b"meta", b"consistent_index").unwrap().map(|v| v.len()), Some(8));
    }

    #[test]
    fn damaged_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, vec![0x5a_u8; 16 * 1024]).unwrap();
        assert!(matches!(cluster_version(&garbage), Err(BoltError::Malformed(_))));

        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert!(matches!(cluster_version(&empty), Err(BoltError::Malformed(_))));

        // A real file cut after its meta pages: the tree pages are gone.
        let real = std::fs::read(testdata("snapshot-3.4.23.db")).unwrap();
        let cut = dir.path().join("cut");
        std::fs::write(&cut, &real[..8192]).unwrap();
        assert!(cluster_version(&cut).is_err());

        // Every byte of the tree pages flipped in turn never panics.
        for at in (8192..real.len()).step_by(97) {
            let mut bytes = real.clone();
            bytes[at] ^= 0xff;
            let flipped = dir.path().join("flipped");
            std::fs::write(&flipped, &bytes).unwrap();
            let _ = cluster_version(&flipped);
            let _ = summary(&flipped);
        }
    }

    /// A root page that is its own child, 16 MiB with its overflow: each
    /// level used to keep its copy alive, up to 64 levels (a gigabyte).
    #[test]
    fn a_page_that_is_its_own_child_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let real = testdata("snapshot-3.4.23.db");
        let db = BoltFile::open(&real).unwrap();
        let (root, page_size) = (db.root, db.page_size);
        let mut bytes = std::fs::read(&real).unwrap();
        let at = usize::try_from(root * page_size).unwrap();
        let size = 16 * 1024 * 1024;
        bytes.resize(bytes.len().max(at + size), 0);
        let overflow = u32::try_from(size as u64 / page_size - 1).unwrap();
        bytes[at + 8..at + 10].copy_from_slice(&BRANCH_PAGE.to_le_bytes());
        bytes[at + 10..at + 12].copy_from_slice(&1_u16.to_le_bytes());
        bytes[at + 12..at + 16].copy_from_slice(&overflow.to_le_bytes());
        // One element: an empty first key, and the page itself as child.
        let element = at + PAGE_HEADER;
        bytes[element..element + 4].copy_from_slice(&16_u32.to_le_bytes());
        bytes[element + 4..element + 8].copy_from_slice(&0_u32.to_le_bytes());
        bytes[element + 8..element + 16].copy_from_slice(&root.to_le_bytes());
        let looped = dir.path().join("looped");
        std::fs::write(&looped, &bytes).unwrap();
        let error = cluster_version(&looped).unwrap_err().to_string();
        assert!(error.contains("points back at itself"), "{error}");
        let error = summary(&looped).unwrap_err().to_string();
        assert!(error.contains("points back at itself"), "{error}");
    }

    #[test]
    fn a_damaged_first_meta_page_falls_back_to_the_second() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = std::fs::read(testdata("snapshot-3.4.23.db")).unwrap();
        bytes[16] ^= 0xff; // the first meta page's magic
        let path = dir.path().join("first-meta-damaged");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(cluster_version(&path).unwrap().as_deref(), Some("3.4.0"));
    }

    #[test]
    fn fnv_matches_the_reference_values() {
        assert_eq!(fnv64a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv64a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
