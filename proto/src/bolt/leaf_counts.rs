//! The element count of every leaf page of a bbolt file, noted as the file
//! streams by, so that a summary of the file afterwards need not read its
//! leaves back.
//!
//! Counting a bucket's entries means visiting every leaf of its tree. When
//! values are small next to a page (etcd's 8 KiB values take a leaf each),
//! that is a read of every third page of the file: in practice the whole
//! file again, from disk once the pages have left the page cache. The
//! stream passes every page header on its way to the file; a header holds
//! the page's type and count. Noting them costs two bytes a page (1 MiB a
//! GiB of 4 KiB pages), and the summary then reads only branch pages and
//! one leaf per bucket.
//!
//! A header is noted only where a page starts, and only when its id is the
//! page's own: the bytes of an overflow page are a value's, and a value
//! that happens to look like a leaf header there is not taken for one.
//! Freed pages keep the header they had; no tree reaches them, so their
//! notes are never asked for.

use super::{LEAF_PAGE, META_PAGE_BYTES, PAGE_HEADER, PageHeader, parse_meta};
use crate::trailer::Summing;

/// A count [`LeafCounts`] does not know: the page is not a leaf, was not
/// seen, or holds this many elements (the summary reads it then).
const UNKNOWN: u16 = u16::MAX;

/// Notes the leaf headers of a bbolt file fed to it in order, in chunks of
/// any size (the trailer that follows the database is fed too, and
/// ignored).
#[derive(Debug, Default)]
pub struct LeafCounter {
    /// Bytes fed so far.
    fed: u64,
    /// Known once the first meta page has gone by, if it is valid.
    page_size: Option<u64>,
    /// The first meta page, while it arrives.
    meta: Vec<u8>,
    /// Where the next page header starts.
    next_header: u64,
    /// The next page header, while it arrives.
    header: Vec<u8>,
    counts: Vec<u16>,
}

/// What a [`LeafCounter`] noted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeafCounts {
    page_size: u64,
    counts: Vec<u16>,
}

impl LeafCounts {
    /// The element count of leaf page `id` of a file with pages of
    /// `page_size` bytes, when it was noted.
    #[must_use]
    pub fn of(&self, id: u64, page_size: u64) -> Option<u64> {
        if page_size != self.page_size {
            return None;
        }
        let count = *self.counts.get(usize::try_from(id).ok()?)?;
        (count != UNKNOWN).then_some(u64::from(count))
    }

    /// Leaf pages noted.
    #[must_use]
    pub fn leaves(&self) -> usize {
        self.counts.iter().filter(|c| **c != UNKNOWN).count()
    }
}

impl LeafCounter {
    /// Feeds the next bytes of the file.
    pub fn update(&mut self, mut bytes: &[u8]) {
        let page_size = match self.page_size {
            Some(size) => size,
            None => {
                if self.fed >= META_PAGE_BYTES as u64 {
                    // The first meta page was not valid: nothing is noted.
                    self.fed += bytes.len() as u64;
                    return;
                }
                let take = (META_PAGE_BYTES - self.meta.len()).min(bytes.len());
                self.meta.extend_from_slice(&bytes[..take]);
                self.fed += take as u64;
                bytes = &bytes[take..];
                let Ok(meta) = <&[u8; META_PAGE_BYTES]>::try_from(self.meta.as_slice()) else {
                    return;
                };
                let Some(meta) = parse_meta(meta) else {
                    self.fed += bytes.len() as u64;
                    return;
                };
                self.page_size = Some(meta.page_size);
                // Pages 0 and 1 are the meta pages.
                self.next_header = 2 * meta.page_size;
                self.meta = Vec::new();
                meta.page_size
            }
        };
        let end = self.fed + bytes.len() as u64;
        while self.next_header < end {
            let from = self.next_header + self.header.len() as u64;
            let Ok(at) = usize::try_from(from - self.fed) else {
                break;
            };
            let take = (PAGE_HEADER - self.header.len()).min(bytes.len() - at);
            self.header.extend_from_slice(&bytes[at..at + take]);
            if self.header.len() < PAGE_HEADER {
                break;
            }
            self.note(self.next_header / page_size);
            self.header.clear();
            self.next_header += page_size;
        }
        self.fed = end;
    }

    /// Notes the header just gathered, of page `id`.
    fn note(&mut self, id: u64) {
        let Ok(bytes) = <&[u8; PAGE_HEADER]>::try_from(self.header.as_slice()) else {
            return;
        };
        let header = PageHeader::parse(bytes);
        if header.id != id || header.flags != LEAF_PAGE {
            return;
        }
        let Ok(index) = usize::try_from(id) else {
            return;
        };
        if self.counts.len() <= index {
            self.counts.resize(index + 1, UNKNOWN);
        }
        self.counts[index] = header.count;
    }

    /// What was noted.
    #[must_use]
    pub fn finish(self) -> LeafCounts {
        LeafCounts {
            page_size: self.page_size.unwrap_or(0),
            counts: self.counts,
        }
    }
}

impl Summing for LeafCounter {
    type Summary = LeafCounts;

    fn update(&mut self, bytes: &[u8]) {
        Self::update(self, bytes);
    }

    fn finish(self) -> LeafCounts {
        Self::finish(self)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{
        BRANCH_PAGE, BUCKET_HEADER, BUCKET_LEAF, ELEMENT, MAGIC, META_CHECKED, fnv64a, summary, summary_counted,
    };
    use super::*;

    const PAGE: usize = 4096;

    fn header(bytes: &mut [u8], id: u64, flags: u16, count: u16, overflow: u32) {
        bytes[..8].copy_from_slice(&id.to_le_bytes());
        bytes[8..10].copy_from_slice(&flags.to_le_bytes());
        bytes[10..12].copy_from_slice(&count.to_le_bytes());
        bytes[12..16].copy_from_slice(&overflow.to_le_bytes());
    }

    fn meta(bytes: &mut [u8], id: u64, root: u64, txid: u64) {
        header(bytes, id, 0x04, 0, 0);
        let meta = &mut bytes[PAGE_HEADER..];
        meta[..4].copy_from_slice(&MAGIC.to_le_bytes());
        meta[4..8].copy_from_slice(&2_u32.to_le_bytes());
        meta[8..12].copy_from_slice(&(PAGE as u32).to_le_bytes());
        meta[16..24].copy_from_slice(&root.to_le_bytes());
        meta[48..56].copy_from_slice(&txid.to_le_bytes());
        let checksum = fnv64a(&meta[..META_CHECKED]);
        meta[META_CHECKED..META_CHECKED + 8].copy_from_slice(&checksum.to_le_bytes());
    }

    /// A leaf page's elements, each `(flags, key, value)`.
    fn leaf(bytes: &mut [u8], id: u64, overflow: u32, elements: &[(u32, Vec<u8>, Vec<u8>)]) {
        header(bytes, id, LEAF_PAGE, u16::try_from(elements.len()).unwrap(), overflow);
        let mut data = PAGE_HEADER + elements.len() * ELEMENT;
        for (i, (flags, key, value)) in elements.iter().enumerate() {
            let at = PAGE_HEADER + i * ELEMENT;
            let words = [*flags, (data - at) as u32, key.len() as u32, value.len() as u32];
            for (n, word) in words.iter().enumerate() {
                bytes[at + n * 4..at + n * 4 + 4].copy_from_slice(&word.to_le_bytes());
            }
            bytes[data..data + key.len()].copy_from_slice(key);
            bytes[data + key.len()..data + key.len() + value.len()].copy_from_slice(value);
            data += key.len() + value.len();
        }
    }

    fn branch(bytes: &mut [u8], id: u64, children: &[(Vec<u8>, u64)]) {
        header(bytes, id, BRANCH_PAGE, u16::try_from(children.len()).unwrap(), 0);
        let mut data = PAGE_HEADER + children.len() * ELEMENT;
        for (i, (key, child)) in children.iter().enumerate() {
            let at = PAGE_HEADER + i * ELEMENT;
            bytes[at..at + 4].copy_from_slice(&((data - at) as u32).to_le_bytes());
            bytes[at + 4..at + 8].copy_from_slice(&(key.len() as u32).to_le_bytes());
            bytes[at + 8..at + 16].copy_from_slice(&child.to_le_bytes());
            bytes[data..data + key.len()].copy_from_slice(key);
            data += key.len();
        }
    }

    /// etcd's revision key: main revision big-endian, '_', sub revision.
    fn revision(main: u64) -> Vec<u8> {
        let mut key = main.to_be_bytes().to_vec();
        key.push(b'_');
        key.extend_from_slice(&0_u64.to_be_bytes());
        key
    }

    /// A database whose `key` bucket is a branch over two leaves, the
    /// first with an overflow page, followed by a snapshot's trailer:
    /// revisions 1 to 5, in leaves 5 (with overflow page 6) and 7.
    fn database() -> Vec<u8> {
        let mut bytes = vec![0_u8; 8 * PAGE + 32];
        meta(&mut bytes[..PAGE], 0, 3, 1);
        meta(&mut bytes[PAGE..], 1, 3, 2);
        header(&mut bytes[2 * PAGE..], 2, 0x10, 0, 0);
        let mut bucket = vec![0_u8; BUCKET_HEADER];
        bucket[..8].copy_from_slice(&4_u64.to_le_bytes());
        leaf(&mut bytes[3 * PAGE..], 3, 0, &[(BUCKET_LEAF, b"key".to_vec(), bucket)]);
        branch(&mut bytes[4 * PAGE..], 4, &[(revision(1), 5), (revision(4), 7)]);
        let value = vec![0x5a_u8; 3000];
        let first: Vec<_> = (1..=3).map(|r| (0, revision(r), value.clone())).collect();
        leaf(&mut bytes[5 * PAGE..], 5, 1, &first);
        // Page 6 is the value bytes of page 5; some look like a leaf
        // header of another page.
        header(&mut bytes[6 * PAGE..], 99, LEAF_PAGE, 7, 0);
        leaf(
            &mut bytes[7 * PAGE..],
            7,
            0,
            &[(0, revision(4), vec![1]), (0, revision(5), vec![2])],
        );
        bytes
    }

    fn counted_in_chunks(bytes: &[u8], chunk: usize) -> LeafCounts {
        let mut counter = LeafCounter::default();
        bytes.chunks(chunk).for_each(|c| counter.update(c));
        counter.finish()
    }

    #[test]
    fn notes_every_leaf_header_at_any_chunking_and_nothing_else() {
        let bytes = database();
        let whole = counted_in_chunks(&bytes, bytes.len());
        // The root tree's leaf, and the key bucket's two.
        assert_eq!(whole.leaves(), 3);
        assert_eq!(whole.of(3, PAGE as u64), Some(1));
        for (page, count) in [(5, Some(3)), (7, Some(2)), (4, None), (6, None), (2, None), (0, None)] {
            assert_eq!(whole.of(page, PAGE as u64), count, "page {page}");
        }
        assert_eq!(whole.of(5, 8192), None, "another page size");
        for chunk in [1, 7, 16, 81, 4095, 4096, 4097, 10_000] {
            assert_eq!(counted_in_chunks(&bytes, chunk), whole, "chunks of {chunk}");
        }
    }

    #[test]
    fn a_counted_summary_agrees_with_a_read_one_and_reads_no_counted_leaf() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let bytes = database();
        std::fs::write(&path, &bytes).unwrap();
        let counts = counted_in_chunks(&bytes, 1000);
        let read = summary(&path).unwrap();
        assert_eq!((read.revision, read.total_keys), (5, 5));
        assert_eq!(summary_counted(&path, &counts).unwrap(), read);

        // The first leaf's count changed on disk after it was noted: a
        // counted summary does not read that leaf (only the last one, for
        // its last key).
        let mut changed = bytes.clone();
        changed[5 * PAGE + 10..5 * PAGE + 12].copy_from_slice(&1_u16.to_le_bytes());
        std::fs::write(&path, &changed).unwrap();
        assert_eq!(summary(&path).unwrap().total_keys, 3);
        assert_eq!(summary_counted(&path, &counts).unwrap().total_keys, 5);
        // Counts noted of nothing (or of another file's pages): read.
        assert_eq!(summary_counted(&path, &LeafCounts::default()).unwrap().total_keys, 3);
    }

    #[test]
    fn a_stream_without_a_valid_first_meta_page_notes_nothing() {
        let mut bytes = database();
        bytes[PAGE_HEADER] ^= 0xff;
        let counts = counted_in_chunks(&bytes, 333);
        assert_eq!(counts.leaves(), 0);
        assert_eq!(counts.of(5, PAGE as u64), None);
        assert_eq!(counted_in_chunks(&bytes[..40], 7).leaves(), 0, "a stream cut short");
    }
}
