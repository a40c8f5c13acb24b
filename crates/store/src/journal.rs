//! The store's redo journal: what makes a commit durable.
//!
//! sled 0.34 makes writes durable with `flush`, and each flush is a job on sled's I/O thread
//! pool, whose every job wakes all seven of its idle threads. On the order importer's hot path
//! those wake-ups cost more CPU than the work (BENCHMARKS.md, "Order import against its call
//! ceiling"). So durability comes from this journal instead: the store's committer thread
//! applies every commit to sled and appends it here as one checksummed record; a durable commit
//! waits for one `fdatasync` of the journal (shared by every commit that queued up meanwhile).
//! sled keeps its own background flusher, and the committer flushes sled at a checkpoint once
//! per [`SWITCH_AT`] bytes of journal, after which no record in either file is needed.
//!
//! Two files take turns: the committer appends to one until it holds [`SWITCH_AT`] bytes, makes
//! the checkpoint, and moves to the other. Files are overwritten in place rather than truncated,
//! so a sync does not have to change the file's size; stale records left behind are told apart
//! by their sequence numbers.
//!
//! Every record carries a sequence number (LSN), and every commit also writes its LSN into sled
//! (the marker), in the same atomic batch or after its other writes. On opening, the records
//! after sled's marker are applied again, in order; sled holds at most a prefix of the first of
//! them, and applying a record again over a prefix of itself ends in the same state as applying
//! it once (puts and removals overwrite; a conditional removal finds what it found the first
//! time). Records are found by reading each file from its start while the checksums hold and
//! the numbers follow on: a torn last record, or the older records a file is being overwritten
//! over, end the run.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::{Commit, Write};

/// The two journal files, in the store's directory beside sled's own files.
pub(crate) const FILE_NAMES: [&str; 2] = ["journal.0", "journal.1"];

/// Bytes after which the committer makes a checkpoint and moves to the other file. Small enough
/// that replaying a file at start-up is quick, large enough that sled's flush (the thread-pool
/// wake-ups this journal avoids) is rare: about 250 imported orders.
pub(crate) const SWITCH_AT: u64 = 1 << 20;

/// The key of sled's marker: the LSN of the last commit applied. It holds no NUL byte, so no
/// table and no group matches it (tables are `name\0…`).
pub(crate) const MARKER_KEY: &[u8] = b"\xffjournal-lsn";

/// Length and CRC-32 of the body.
const HEADER: usize = 8;

const PUT: u8 = 0;
const REMOVE: u8 = 1;
const REMOVE_IF: u8 = 2;

/// Encodes `commit` as the record `lsn` into `out` (cleared first).
pub(crate) fn encode(lsn: u64, commit: &Commit, out: &mut Vec<u8>) -> io::Result<()> {
    out.clear();
    out.extend_from_slice(&[0; HEADER]);
    out.extend_from_slice(&lsn.to_le_bytes());
    out.push(u8::from(commit.in_order));
    put_len(out, commit.writes.len())?;
    for (key, write) in &commit.writes {
        let (tag, value) = match write {
            Write::Put(v) => (PUT, Some(v)),
            Write::Remove => (REMOVE, None),
            Write::RemoveIf(v) => (REMOVE_IF, Some(v)),
        };
        out.push(tag);
        put_len(out, key.len())?;
        out.extend_from_slice(key);
        if let Some(v) = value {
            put_len(out, v.len())?;
            out.extend_from_slice(v);
        }
    }
    let body_len = u32::try_from(out.len() - HEADER).map_err(|_| too_large())?;
    let crc = crc32fast::hash(&out[HEADER..]);
    out[..4].copy_from_slice(&body_len.to_le_bytes());
    out[4..HEADER].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

fn too_large() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "commit too large for the journal",
    )
}

fn put_len(out: &mut Vec<u8>, len: usize) -> io::Result<()> {
    let len = u32::try_from(len).map_err(|_| too_large())?;
    out.extend_from_slice(&len.to_le_bytes());
    Ok(())
}

/// The run of records at the start of one journal file: each whole, checksummed, and numbered
/// one after the previous. Whatever follows the run (a torn record, older records, zeros) is
/// not part of it.
pub(crate) fn read_run(bytes: &[u8]) -> Vec<(u64, Commit)> {
    let mut run: Vec<(u64, Commit)> = Vec::new();
    let mut at = 0usize;
    while let Some((lsn, commit, len)) = decode_at(bytes, at) {
        if run
            .last()
            .is_some_and(|(prev, _)| prev.checked_add(1) != Some(lsn))
        {
            break;
        }
        run.push((lsn, commit));
        at += len;
    }
    run
}

/// The record at `at`, and its length with the header.
fn decode_at(bytes: &[u8], at: usize) -> Option<(u64, Commit, usize)> {
    let header = bytes.get(at..at.checked_add(HEADER)?)?;
    let body_len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    let start = at + HEADER;
    let body = bytes.get(start..start.checked_add(body_len)?)?;
    if body_len == 0 || crc32fast::hash(body) != crc {
        return None;
    }
    let mut r = Reader(body);
    let lsn = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
    let in_order = match r.take(1)?[0] {
        0 => false,
        1 => true,
        _ => return None,
    };
    let n = r.len()?;
    let mut commit = if in_order {
        Commit::in_order()
    } else {
        Commit::new()
    };
    for _ in 0..n {
        let tag = r.take(1)?[0];
        let key = r.bytes()?;
        let write = match tag {
            PUT => Write::Put(r.bytes()?),
            REMOVE => Write::Remove,
            REMOVE_IF => Write::RemoveIf(r.bytes()?),
            _ => return None,
        };
        commit.push(key, write);
    }
    if !r.0.is_empty() {
        return None;
    }
    Some((lsn, commit, HEADER + body_len))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn len(&mut self) -> Option<usize> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize)
    }

    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.len()?;
        Some(self.take(n)?.to_vec())
    }
}

/// Reads a whole journal file (a missing or empty file has no records).
pub(crate) fn read_file(file: &File) -> io::Result<Vec<u8>> {
    let len = file.metadata()?.len();
    let mut bytes = vec![0u8; usize::try_from(len).map_err(|_| too_large())?];
    file.read_exact_at(&mut bytes, 0)?;
    Ok(bytes)
}

/// What to apply again at opening: the records numbered from `marker + 1` on, one after the
/// other, from both files; and the highest number either file holds (new records must be
/// numbered above every record left in the files, applied or not).
pub(crate) struct Recovery {
    pub replay: Vec<(u64, Commit)>,
    pub highest: u64,
    /// Records after the marker that cannot be applied because one before them is missing.
    pub unreachable: usize,
}

pub(crate) fn recover(marker: u64, files: [&[u8]; 2]) -> Recovery {
    let mut all: Vec<(u64, Commit)> = files.iter().flat_map(|f| read_run(f)).collect();
    let highest = all.iter().map(|(lsn, _)| *lsn).max().unwrap_or(0);
    all.retain(|(lsn, _)| *lsn > marker);
    all.sort_by_key(|(lsn, _)| *lsn);
    let mut replay = Vec::with_capacity(all.len());
    let mut unreachable = 0;
    let mut expect = marker.saturating_add(1);
    for (lsn, commit) in all {
        if lsn == expect && unreachable == 0 {
            replay.push((lsn, commit));
            expect = expect.saturating_add(1);
        } else if lsn >= expect {
            unreachable += 1;
        }
    }
    Recovery {
        replay,
        highest,
        unreachable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(key: u8, value: u8) -> Commit {
        let mut c = Commit::in_order();
        c.push(vec![b'k', key], Write::Put(vec![value]));
        c.push(vec![b'r', key], Write::Remove);
        c.push(vec![b'c', key], Write::RemoveIf(vec![value, value]));
        c
    }

    fn records(lsns: std::ops::RangeInclusive<u64>) -> Vec<u8> {
        let mut file = Vec::new();
        let mut buf = Vec::new();
        for lsn in lsns {
            encode(lsn, &commit(lsn as u8, 7), &mut buf).unwrap();
            file.extend_from_slice(&buf);
        }
        file
    }

    fn summary(c: &Commit) -> Vec<(Vec<u8>, u8, Vec<u8>)> {
        c.writes
            .iter()
            .map(|(k, w)| match w {
                Write::Put(v) => (k.clone(), PUT, v.clone()),
                Write::Remove => (k.clone(), REMOVE, vec![]),
                Write::RemoveIf(v) => (k.clone(), REMOVE_IF, v.clone()),
            })
            .collect()
    }

    #[test]
    fn a_record_reads_back_as_the_commit_it_was_made_of() {
        let mut buf = Vec::new();
        let mut c = commit(3, 9);
        c.in_order = false;
        encode(42, &c, &mut buf).unwrap();
        let run = read_run(&buf);
        assert_eq!(run.len(), 1);
        assert_eq!(run[0].0, 42);
        assert!(!run[0].1.in_order);
        assert!(run[0].1.conditional, "the conditional flag is restored");
        assert_eq!(summary(&run[0].1), summary(&c));
    }

    #[test]
    fn a_torn_last_record_ends_the_run() {
        let file = records(1..=3);
        for cut in [file.len() - 1, file.len() - 20, file.len() - 30] {
            let run = read_run(&file[..cut]);
            assert_eq!(run.len(), 2, "cut at {cut}");
        }
        let mut flipped = file.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 1;
        assert_eq!(
            read_run(&flipped).len(),
            2,
            "a checksum mismatch ends the run"
        );
    }

    #[test]
    fn older_records_behind_the_newest_ones_are_not_part_of_the_run() {
        // A file being overwritten: 10..=11 new, then the rest of an older cycle's 1..=5.
        let old = records(1..=5);
        let new = records(10..=11);
        let mut file = old.clone();
        file[..new.len()].copy_from_slice(&new);
        let lsns: Vec<u64> = read_run(&file).iter().map(|(l, _)| *l).collect();
        assert_eq!(lsns, vec![10, 11]);
    }

    #[test]
    fn recovery_takes_the_records_after_the_marker_from_both_files_in_order() {
        let a = records(1..=4);
        let b = records(5..=7);
        let r = recover(2, [&b, &a]);
        let lsns: Vec<u64> = r.replay.iter().map(|(l, _)| *l).collect();
        assert_eq!(lsns, vec![3, 4, 5, 6, 7]);
        assert_eq!(r.highest, 7);
        assert_eq!(r.unreachable, 0);

        let none = recover(9, [&a, &b]);
        assert!(none.replay.is_empty(), "sled is ahead of the journal");
        assert_eq!(none.highest, 7);
    }

    #[test]
    fn recovery_stops_at_a_missing_record() {
        let a = records(1..=3);
        let b = records(6..=7);
        let r = recover(1, [&a, &b]);
        let lsns: Vec<u64> = r.replay.iter().map(|(l, _)| *l).collect();
        assert_eq!(lsns, vec![2, 3]);
        assert_eq!(r.unreachable, 2);
        assert_eq!(r.highest, 7);
    }

    proptest::proptest! {
        /// Whatever a torn or foreign file holds, reading it never panics, and what it yields is
        /// a run of numbers that follow on.
        #[test]
        fn any_bytes_read_without_a_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let mut file = records(1..=2);
            file.extend_from_slice(&bytes);
            let run = read_run(&file);
            proptest::prop_assert!(run.len() >= 2);
            for pair in run.windows(2) {
                proptest::prop_assert_eq!(pair[0].0 + 1, pair[1].0);
            }
        }
    }

    #[test]
    fn garbage_is_no_record() {
        assert!(read_run(&[]).is_empty());
        assert!(read_run(&[0; 64]).is_empty());
        assert!(read_run(&[0xff; 64]).is_empty());
    }
}
