//! A service's local state: sled behind a small API of our own.
//!
//! All of a service's state lives in one sled tree, split into named tables by key prefix, so
//! that one [`Commit`] can change several tables atomically (`apply_batch` on one tree). Every
//! commit goes through the store's committer thread, which applies it to sled, appends it to the
//! store's redo journal ([`journal`]) and makes every durable commit queued meanwhile durable
//! with one `fdatasync` of the journal (group commit); sled itself is flushed by its own
//! background flusher and at the journal's checkpoints. A commit of one write, or one made with
//! [`Commit::in_order`], skips the batch: sled 0.34 seals and writes two extra log buffers for
//! every batch (the buffer before it and the batch's manifest, each a disk write and a wake-up
//! of sled's I/O threads), which on a hot path costs more CPU than the work itself. The
//! engine's rule is "commit, then ack": a consumer builds a `Commit` with its state changes and
//! the ids of the events it handled (the [`Ledger`]), awaits [`Store::commit`], and only then
//! acks the messages.
//!
//! The state is a projection: every table can be rebuilt by replaying the streams (plus reading
//! DUELL/WooCommerce where they are the truth), so [`Store::clear`] is safe.
#![forbid(unsafe_code)]

mod journal;

use std::collections::BTreeMap;
use std::fs::File;
use std::marker::PhantomData;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What went wrong with local state. None of these are retryable by waiting: the disk or the
/// data is bad, so the service should stop and let its supervisor restart it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("state database error: {0}")]
    Sled(#[from] sled::Error),
    #[error("state table {table}: cannot decode value: {source}")]
    Decode {
        table: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("state table {table}: cannot decode key")]
    Key { table: String },
    #[error("state database at {path} is locked by another process")]
    Locked { path: PathBuf },
    #[error("state committer stopped; the state database can no longer be written")]
    CommitterStopped,
    #[error("state journal error: {0}")]
    Journal(#[source] std::io::Error),
    #[error("an earlier write to the state failed; the service must restart to recover its state")]
    Failed,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the database is held by another process (the service still runs). sled 0.34
    /// reports its lock failure as an `Other` I/O error ("could not acquire lock on …"), not as
    /// `WouldBlock`, so [`Error::Locked`] alone does not catch it.
    pub fn is_locked(&self) -> bool {
        match self {
            Error::Locked { .. } => true,
            Error::Sled(sled::Error::Io(io)) => {
                io.kind() == std::io::ErrorKind::WouldBlock
                    || io.to_string().contains("could not acquire lock")
            }
            _ => false,
        }
    }
}

/// How long opening waits for a lock that is about to be released (see [`Store::open_with`]).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub path: PathBuf,
    /// sled's page cache. sled's default is 1 GiB; a small cache keeps a service with 100k
    /// products of state under its memory target at the cost of some reads from disk (the
    /// services' hot rows are few). sled holds more than this in memory: 16 MB left the
    /// publisher and the poller ~13 MB larger than 4 MB did (BENCHMARKS.md, "Memory").
    pub cache_capacity_bytes: u64,
}

impl StoreOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StoreOptions {
            path: path.into(),
            cache_capacity_bytes: 4 * 1024 * 1024,
        }
    }
}

/// A service's sled database.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    tree: sled::Tree,
    path: Option<PathBuf>,
    committer: Arc<Committer>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (or creates) the store at `path` with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(StoreOptions::new(path.as_ref()))
    }

    /// Opens the store, applying again what its journal holds beyond sled's state (the commits
    /// of a process that stopped before sled flushed them; see [`journal`]).
    pub fn open_with(options: StoreOptions) -> Result<Store> {
        // sled lets go of its file lock when the last of its internal handles is dropped, and its
        // I/O threads may still hold one for a moment after the previous `Store` is gone (a
        // restart within one process, a test reopening): wait for that briefly before calling
        // the database locked by someone else.
        let give_up = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            match sled::Config::new()
                .path(&options.path)
                .cache_capacity(options.cache_capacity_bytes)
                .mode(sled::Mode::LowSpace)
                .open()
            {
                Ok(db) => break db,
                Err(e) => {
                    let e = Error::Sled(e);
                    if !e.is_locked() {
                        return Err(e);
                    }
                    if std::time::Instant::now() >= give_up {
                        return Err(Error::Locked {
                            path: options.path.clone(),
                        });
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        };
        let tree = db.open_tree("state")?;
        // sled's lock on its directory is held: no other process writes these files.
        let files = open_journal(&options.path)?;
        Store::start(db, tree, files, Some(options.path), None)
    }

    fn start(
        db: sled::Db,
        tree: sled::Tree,
        files: [File; 2],
        path: Option<PathBuf>,
        temp: Option<tempfile::TempDir>,
    ) -> Result<Store> {
        let batches = Arc::new(AtomicU64::new(0));
        let next_lsn = recover(&db, &tree, &files, &batches)?;
        let journal = Journal {
            db: db.clone(),
            tree: tree.clone(),
            files,
            next_lsn,
            active: 0,
            offset: 0,
            dirty: false,
            failed: false,
            group: Vec::new(),
            record: Vec::new(),
            batches: batches.clone(),
            _temp: temp,
        };
        let committer = Arc::new(Committer::start(journal, batches)?);
        Ok(Store {
            db,
            tree,
            path,
            committer,
        })
    }

    /// A store that lives in a temporary directory and is deleted on drop (tests).
    pub fn temporary() -> Result<Store> {
        let db = sled::Config::new().temporary(true).open()?;
        let tree = db.open_tree("state")?;
        let dir = tempfile::tempdir().map_err(Error::Journal)?;
        let files = open_journal(dir.path())?;
        Store::start(db, tree, files, None, Some(dir))
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// A typed table. Tables are cheap handles; create them wherever needed.
    pub fn table<K: Key, V: Serialize + DeserializeOwned>(
        &self,
        name: &'static str,
    ) -> Table<K, V> {
        Table {
            tree: self.tree.clone(),
            name,
            prefix: table_prefix(name),
            _types: PhantomData,
        }
    }

    /// The processed-event ledger.
    pub fn ledger(&self) -> Ledger {
        Ledger {
            table: self.table("ledger"),
        }
    }

    /// Named checkpoints (poll watermarks, cursors).
    pub fn checkpoints<V: Serialize + DeserializeOwned>(&self) -> Table<String, V> {
        self.table("checkpoint")
    }

    /// Applies `commit` atomically and waits until it is on disk.
    ///
    /// Commits from concurrent tasks are grouped: the store's committer thread applies every
    /// commit queued so far, writes their journal records at once and makes them durable with
    /// one `fdatasync`.
    pub async fn commit(&self, commit: Commit) -> Result<()> {
        if commit.is_empty() {
            return Ok(());
        }
        self.committer
            .call(|reply| Job::Commit(commit, reply))
            .await
    }

    /// Queues `commit` as [`Store::commit`] does and returns at once: the answer says when it is
    /// on disk. A commit queued afterwards (by anyone) is applied after this one, so a task can
    /// go on with work that needs the commit's order but not yet its sync, and wait before the
    /// point that does.
    pub fn commit_queued(&self, commit: Commit) -> Result<Synced> {
        if commit.is_empty() {
            return Ok(Synced(None));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.committer.send(Job::Commit(commit, Reply::Async(tx)))?;
        Ok(Synced(Some(rx)))
    }

    /// Applies `commit` atomically and returns once it is visible to reads, without waiting for
    /// a sync of its own: its journal record is written at once (a crash of the process alone
    /// loses nothing) and reaches the disk with the next sync for any commit, or the committer's
    /// own within [`BACKGROUND_SYNC`]. For writes whose loss in a power cut only repeats an
    /// idempotent step; everything else uses [`Store::commit`].
    pub async fn commit_unflushed(&self, commit: Commit) -> Result<()> {
        if commit.is_empty() {
            return Ok(());
        }
        self.committer.call(|reply| Job::Apply(commit, reply)).await
    }

    /// How many syncs for durable commits this store has made so far (the costly part of a
    /// commit): what tests count to prove how many durable commits a flow needs.
    pub fn flushes(&self) -> FlushCounter {
        FlushCounter(self.committer.flushes.clone())
    }

    /// How many atomic batches of several writes this store has applied so far (each costs
    /// sled two log writes of its own; see the module docs).
    pub fn batches(&self) -> FlushCounter {
        FlushCounter(self.committer.batches.clone())
    }

    /// Blocking variant of [`Store::commit`], for start-up and tools.
    pub fn commit_blocking(&self, commit: Commit) -> Result<()> {
        if commit.is_empty() {
            return Ok(());
        }
        self.committer
            .call_blocking(|reply| Job::Commit(commit, reply))
    }

    /// Waits until everything written so far is on disk.
    pub async fn flush(&self) -> Result<()> {
        self.committer.call(Job::Flush).await
    }

    /// Drops every table (state rebuild).
    pub fn clear(&self) -> Result<()> {
        self.committer.call_blocking(Job::Clear)
    }

    /// Bytes used on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }

    /// Removes every row of `group` (a store id) from every table keyed by a [`GroupKey`], and
    /// returns how many rows went, by table. This drops one store's share of the state (state
    /// rebuild, moving a store to another shard) while the other stores' rows stay.
    ///
    /// Tables keyed by a plain string or number (the [`Ledger`], checkpoints) are not grouped
    /// and are left alone: their keys hold no NUL after the group, so they never match. A
    /// group that is empty or holds a NUL byte cannot be a store id and matches nothing.
    pub fn remove_group(&self, group: &str) -> Result<BTreeMap<String, usize>> {
        let mut removed: BTreeMap<String, usize> = BTreeMap::new();
        if group.is_empty() || group.as_bytes().contains(&0) {
            return Ok(removed);
        }
        let mut needle = group.as_bytes().to_vec();
        needle.push(0);
        let mut batch = Commit::new();
        for row in self.tree.iter().keys() {
            let key = row?;
            let Some(nul) = key.iter().position(|b| *b == 0) else {
                continue;
            };
            if key[nul + 1..].starts_with(&needle) {
                let table = String::from_utf8_lossy(&key[..nul]).into_owned();
                *removed.entry(table).or_default() += 1;
                batch.push(key.to_vec(), Write::Remove);
            }
        }
        if !removed.is_empty() {
            self.committer
                .call_blocking(|reply| Job::Commit(batch, reply))?;
        }
        Ok(removed)
    }
}

/// Opens (creating them if needed) the two journal files in `dir`, and makes their names
/// durable in the directory.
fn open_journal(dir: &Path) -> Result<[File; 2]> {
    let open = |name: &str| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(name))
    };
    let files = [
        open(journal::FILE_NAMES[0]).map_err(Error::Journal)?,
        open(journal::FILE_NAMES[1]).map_err(Error::Journal)?,
    ];
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::Journal)?;
    Ok(files)
}

/// Applies again the journal's records beyond sled's marker, makes sled durable, and returns
/// the number of the next record.
fn recover(
    db: &sled::Db,
    tree: &sled::Tree,
    files: &[File; 2],
    batches: &AtomicU64,
) -> Result<u64> {
    let marker = match tree.get(journal::MARKER_KEY)? {
        Some(v) => u64::from_be_bytes(v.as_ref().try_into().map_err(|_| Error::Key {
            table: "journal marker".into(),
        })?),
        None => 0,
    };
    let a = journal::read_file(&files[0]).map_err(Error::Journal)?;
    let b = journal::read_file(&files[1]).map_err(Error::Journal)?;
    let found = journal::recover(marker, [&a, &b]);
    let replayed = found.replay.len();
    let mut last = marker;
    for (lsn, commit) in found.replay {
        commit.apply(tree, batches, lsn)?;
        last = lsn;
    }
    if found.unreachable > 0 {
        // Only a lost disk write (power loss) leaves a hole; what follows it cannot be applied
        // without what it built on, so the state stays a consistent earlier one.
        tracing::error!(
            applied = replayed,
            skipped = found.unreachable,
            "the state journal misses a record: the commits after it are not applied"
        );
    } else if replayed > 0 {
        tracing::info!(
            applied = replayed,
            "applied the state journal's commits that sled did not hold"
        );
    }
    // Every record in the files is now at or below the marker (stale); new ones number above.
    let next = last.max(found.highest).saturating_add(1);
    tree.insert(journal::MARKER_KEY, &(next - 1).to_be_bytes())?;
    db.flush()?;
    Ok(next)
}

/// The largest record buffer kept between groups (one large commit, a full sync's batch, may
/// grow it far beyond; the services' memory budget is tight).
const KEEP_RECORD_BUFFER: usize = 64 * 1024;

/// Journal writes not yet synced for a durable commit are synced at least this often, like
/// sled's own background flush.
pub const BACKGROUND_SYNC: std::time::Duration = std::time::Duration::from_millis(500);

/// The journal's writing end and the tree it covers, owned by the committer thread: the tree's
/// only writer, so a conditional removal is decided without a race and the records are in the
/// order the commits were applied.
struct Journal {
    db: sled::Db,
    tree: sled::Tree,
    files: [File; 2],
    next_lsn: u64,
    /// The file being appended to, and where.
    active: usize,
    offset: u64,
    /// Records written since the last sync.
    dirty: bool,
    /// A write failed: the journal and sled may disagree until the store is opened again.
    failed: bool,
    /// The records of the commits applied in the current group, written with one `pwrite`.
    group: Vec<u8>,
    record: Vec<u8>,
    batches: Arc<AtomicU64>,
    /// A temporary store's directory, deleted with the store.
    _temp: Option<tempfile::TempDir>,
}

impl Journal {
    /// Applies `commit` to sled and adds its record to the group.
    ///
    /// sled first: if the process dies before the group is written, sled may hold the commit
    /// without the journal (its marker says so, and nothing is applied twice), but the journal
    /// never holds a commit that was reported failed and would reappear at the next opening.
    fn apply(&mut self, commit: Commit) -> Result<()> {
        if self.failed {
            return Err(Error::Failed);
        }
        let lsn = self.next_lsn;
        journal::encode(lsn, &commit, &mut self.record).map_err(Error::Journal)?;
        if let Err(e) = commit.apply(&self.tree, &self.batches, lsn) {
            // sled applies a batch whole or not at all, but an in-order commit may have left a
            // prefix without its record: only a restart (replay from sled's flushed state)
            // brings the two back in step.
            self.failed = true;
            return Err(Error::Sled(e));
        }
        self.group.extend_from_slice(&self.record);
        self.next_lsn += 1;
        Ok(())
    }

    /// Writes the group's records to the active file.
    fn write_group(&mut self) -> Result<()> {
        if self.group.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.files[self.active].write_all_at(&self.group, self.offset) {
            self.failed = true;
            return Err(Error::Journal(e));
        }
        self.offset += self.group.len() as u64;
        self.dirty = true;
        self.group.clear();
        if self.group.capacity() > KEEP_RECORD_BUFFER {
            self.group = Vec::new();
        }
        if self.record.capacity() > KEEP_RECORD_BUFFER {
            self.record = Vec::new();
        }
        Ok(())
    }

    /// Syncs the active file (the other one's records are all in sled's flushed state).
    fn sync(&mut self) -> Result<()> {
        if self.failed {
            return Err(Error::Failed);
        }
        if let Err(e) = self.files[self.active].sync_data() {
            self.failed = true;
            return Err(Error::Journal(e));
        }
        self.dirty = false;
        Ok(())
    }

    /// Once the active file is full: flushes sled, after which no record of either file is
    /// needed, and moves to the other file. sled's flush is the costly step the journal exists
    /// to make rare (once per [`journal::SWITCH_AT`] bytes of records).
    fn maybe_checkpoint(&mut self) {
        if self.failed || self.offset < journal::SWITCH_AT {
            return;
        }
        match self.db.flush() {
            Ok(_) => {
                self.active = 1 - self.active;
                self.offset = 0;
            }
            Err(e) => {
                tracing::error!(error = %e, "state checkpoint failed: sled could not flush");
                self.failed = true;
            }
        }
    }

    /// Drops every row. The journal is emptied first (after a sled flush makes it redundant),
    /// so that a crash during the clear cannot bring cleared rows back from it.
    fn clear(&mut self) -> Result<()> {
        if self.failed {
            return Err(Error::Failed);
        }
        self.db.flush()?;
        for f in &self.files {
            f.set_len(0)
                .and_then(|_| f.sync_all())
                .map_err(Error::Journal)?;
        }
        self.active = 0;
        self.offset = 0;
        self.dirty = false;
        self.tree.clear()?;
        self.tree
            .insert(journal::MARKER_KEY, &(self.next_lsn - 1).to_be_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// Closing (every group is written by then): sled holding all the records, so that opening
    /// the store again has nothing to apply.
    fn close(&mut self) {
        if !self.failed {
            let _ = self.db.flush();
        }
    }
}

/// The one thread that writes to a store and makes it durable.
///
/// sled 0.34 deadlocks when several `flush_async` calls run while other threads apply batches
/// (spacejam/sled#1308, fixed upstream but never released): with 16 imports committing at once
/// on a 2-worker runtime both workers stopped inside `apply_batch` for good. Funnelling every
/// commit through one thread rules that out, and lets one sync cover every commit that queued
/// up while the previous one ran (group commit). The sync is the journal's `fdatasync`, not
/// sled's flush: sled 0.34 makes each flush a job on its I/O thread pool, and each job wakes all
/// seven idle pool threads, which on the order importer's hot path cost a fifth of its CPU.
struct Committer {
    /// Taken on drop, which ends the thread once the queue is empty.
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    flushes: Arc<AtomicU64>,
    batches: Arc<AtomicU64>,
}

/// A handle on one of a store's counters ([`Store::flushes`], [`Store::batches`]) that does not
/// keep the database open.
#[derive(Clone, Debug)]
pub struct FlushCounter(Arc<AtomicU64>);

impl FlushCounter {
    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

enum Job {
    /// Apply, then answer after the sync.
    Commit(Commit, Reply),
    /// Apply and answer once its record is written; the next sync covers it.
    Apply(Commit, Reply),
    /// Answer once everything applied so far is on disk.
    Flush(Reply),
    /// Drop every row.
    Clear(Reply),
}

enum Reply {
    Async(tokio::sync::oneshot::Sender<Result<()>>),
    Blocking(mpsc::SyncSender<Result<()>>),
}

impl Reply {
    fn send(self, result: Result<()>) {
        // A caller that stopped waiting (its task was cancelled) needs no answer.
        match self {
            Reply::Async(tx) => {
                let _ = tx.send(result);
            }
            Reply::Blocking(tx) => {
                let _ = tx.send(result);
            }
        }
    }
}

/// A commit queued by [`Store::commit_queued`]: resolves once it is on disk.
#[must_use = "a queued commit is only known to be on disk once waited for"]
pub struct Synced(Option<tokio::sync::oneshot::Receiver<Result<()>>>);

impl Synced {
    pub async fn wait(self) -> Result<()> {
        match self.0 {
            None => Ok(()),
            Some(rx) => rx.await.map_err(|_| Error::CommitterStopped)?,
        }
    }
}

/// Commits grouped under one sync at most; bounds the latency of the first in a long queue.
const MAX_GROUP: usize = 1024;

/// The one answer for a whole group (the error is re-made for each: it is not `Clone`).
fn same(result: &Result<()>) -> Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(Error::Journal(e)) => Err(Error::Journal(std::io::Error::new(e.kind(), e.to_string()))),
        Err(_) => Err(Error::Failed),
    }
}

impl Committer {
    fn start(journal: Journal, batches: Arc<AtomicU64>) -> Result<Committer> {
        let (tx, rx) = mpsc::channel::<Job>();
        let flushes = Arc::new(AtomicU64::new(0));
        let f = flushes.clone();
        let thread = std::thread::Builder::new()
            .name("state-commit".into())
            .spawn(move || Committer::run(journal, &rx, &f))
            .map_err(Error::Journal)?;
        Ok(Committer {
            tx: Some(tx),
            thread: Some(thread),
            flushes,
            batches,
        })
    }

    fn send(&self, job: Job) -> Result<()> {
        let tx = self.tx.as_ref().ok_or(Error::CommitterStopped)?;
        tx.send(job).map_err(|_| Error::CommitterStopped)
    }

    /// Queues a job and waits for its answer.
    async fn call(&self, job: impl FnOnce(Reply) -> Job) -> Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(job(Reply::Async(tx)))?;
        rx.await.map_err(|_| Error::CommitterStopped)?
    }

    /// Same, from synchronous code (a tokio oneshot cannot be waited for blockingly inside a
    /// runtime, where some synchronous callers run).
    fn call_blocking(&self, job: impl FnOnce(Reply) -> Job) -> Result<()> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(job(Reply::Blocking(tx)))?;
        rx.recv().map_err(|_| Error::CommitterStopped)?
    }

    fn run(mut journal: Journal, rx: &mpsc::Receiver<Job>, flushes: &AtomicU64) {
        let mut durable: Vec<Reply> = Vec::new();
        let mut applied: Vec<Reply> = Vec::new();
        loop {
            let first = match rx.recv_timeout(BACKGROUND_SYNC) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if journal.dirty {
                        let _ = journal.sync();
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    Job::Commit(commit, reply) => match journal.apply(commit) {
                        Ok(()) => durable.push(reply),
                        Err(e) => reply.send(Err(e)),
                    },
                    Job::Apply(commit, reply) => match journal.apply(commit) {
                        Ok(()) => applied.push(reply),
                        Err(e) => reply.send(Err(e)),
                    },
                    Job::Flush(reply) => durable.push(reply),
                    Job::Clear(reply) => {
                        // Everything before it in the queue is applied and written first.
                        let written = journal.write_group();
                        reply.send(written.and_then(|()| journal.clear()));
                    }
                }
                if durable.len() + applied.len() < MAX_GROUP {
                    next = rx.try_recv().ok();
                }
            }
            let written = journal.write_group();
            for reply in applied.drain(..) {
                reply.send(same(&written));
            }
            if !durable.is_empty() {
                let synced = written.and_then(|()| journal.sync());
                flushes.fetch_add(1, Ordering::SeqCst);
                for reply in durable.drain(..) {
                    reply.send(same(&synced));
                }
            }
            // After the answers: a checkpoint takes a while and holds no answered commit back.
            journal.maybe_checkpoint();
        }
        journal.close();
    }
}

impl Drop for Committer {
    /// Finishes the queued commits and lets go of the database before the last handle is gone,
    /// so that the store can be opened again right away (a restart in the same process).
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn table_prefix(name: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(name.len() + 1);
    p.extend_from_slice(name.as_bytes());
    p.push(0);
    p
}

/// A set of writes applied atomically by [`Store::commit`], in the order they were staged
/// (unless made with [`Commit::in_order`]).
#[derive(Default)]
pub struct Commit {
    writes: Vec<(Vec<u8>, Write)>,
    /// Whether any write is a [`Write::RemoveIf`], which must be decided when applied.
    conditional: bool,
    /// Applied write by write, not as one batch.
    in_order: bool,
}

enum Write {
    Put(Vec<u8>),
    Remove,
    /// Remove if the value at that point of the commit (stored, or written earlier in the same
    /// commit) is exactly these bytes.
    RemoveIf(Vec<u8>),
}

impl std::fmt::Debug for Commit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commit")
            .field("writes", &self.len())
            .finish()
    }
}

impl Commit {
    pub fn new() -> Self {
        Self::default()
    }

    /// A commit whose writes are applied one by one in the order they are staged, not as one
    /// atomic batch: after a crash any prefix of them may have survived, but never a later write
    /// without an earlier one (sled recovers a contiguous prefix of its log, and the committer
    /// thread is the tree's only writer). Flushing and grouping work as for any commit.
    ///
    /// Use it only where every prefix is a state the readers handle (typically: index entries
    /// put before the record they point to, removed after it), and where the commit is on a
    /// hot path: it saves the two log writes sled makes for every batch.
    pub fn in_order() -> Self {
        Commit {
            in_order: true,
            ..Self::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.writes.len()
    }

    fn push(&mut self, key: Vec<u8>, write: Write) {
        self.conditional |= matches!(write, Write::RemoveIf(_));
        self.writes.push((key, write));
    }

    /// Runs on the committer thread, the only writer of the tree: a conditional removal is
    /// decided against the value as this commit finds it, and no other commit can come between
    /// that check and the write. The journal's marker (`lsn`) is written last, or in the same
    /// batch.
    fn apply(self, tree: &sled::Tree, batches: &AtomicU64, lsn: u64) -> sled::Result<()> {
        let marker = lsn.to_be_bytes();
        if self.in_order || self.writes.len() == 1 {
            // One write is atomic on its own; an in-order commit is atomic write by write.
            for (key, write) in self.writes {
                match write {
                    Write::Put(value) => {
                        tree.insert(key, value)?;
                    }
                    Write::Remove => {
                        tree.remove(key)?;
                    }
                    Write::RemoveIf(expected) => {
                        if tree.get(&key)?.is_some_and(|v| v == expected[..]) {
                            tree.remove(key)?;
                        }
                    }
                }
            }
            tree.insert(journal::MARKER_KEY, &marker)?;
            return Ok(());
        }
        batches.fetch_add(1, Ordering::Relaxed);
        let mut batch = sled::Batch::default();
        if !self.conditional {
            for (key, write) in self.writes {
                match write {
                    Write::Put(value) => batch.insert(key, value),
                    Write::Remove | Write::RemoveIf(_) => batch.remove(key),
                }
            }
            batch.insert(journal::MARKER_KEY, &marker);
            return tree.apply_batch(batch);
        }
        let mut after: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for (key, write) in self.writes {
            match write {
                Write::Put(value) => {
                    after.insert(key, Some(value));
                }
                Write::Remove => {
                    after.insert(key, None);
                }
                Write::RemoveIf(expected) => {
                    let matches = match after.get(&key) {
                        Some(current) => current.as_deref() == Some(&expected[..]),
                        None => tree.get(&key)?.is_some_and(|v| v == expected[..]),
                    };
                    if matches {
                        after.insert(key, None);
                    }
                }
            }
        }
        for (key, value) in after {
            match value {
                Some(value) => batch.insert(key, value),
                None => batch.remove(key),
            }
        }
        batch.insert(journal::MARKER_KEY, &marker);
        tree.apply_batch(batch)
    }
}

/// Keys of a table, encoded so that byte order equals the natural order.
pub trait Key: Sized {
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(bytes: &[u8]) -> Option<Self>;
}

impl Key for String {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        String::from_utf8(bytes.to_vec()).ok()
    }
}

impl Key for i64 {
    fn encode(&self, out: &mut Vec<u8>) {
        // Flipping the sign bit makes negative numbers sort before positive ones.
        out.extend_from_slice(&((*self as u64) ^ (1 << 63)).to_be_bytes());
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let arr: [u8; 8] = bytes.try_into().ok()?;
        Some((u64::from_be_bytes(arr) ^ (1 << 63)) as i64)
    }
}

impl Key for u64 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_be_bytes());
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(u64::from_be_bytes(bytes.try_into().ok()?))
    }
}

impl Key for (i64, i64) {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
        self.1.encode(out);
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 16 {
            return None;
        }
        Some((i64::decode(&bytes[..8])?, i64::decode(&bytes[8..])?))
    }
}

/// Keys `(group, id)`: the group is a string (a store id) that may not contain NUL; rows of one
/// group can be listed with [`Table::iter_group`].
impl Key for (String, i64) {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.0.as_bytes());
        out.push(0);
        self.1.encode(out);
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let nul = bytes.iter().position(|b| *b == 0)?;
        let group = String::from_utf8(bytes[..nul].to_vec()).ok()?;
        Some((group, i64::decode(&bytes[nul + 1..])?))
    }
}

impl Key for (String, String) {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.0.as_bytes());
        out.push(0);
        out.extend_from_slice(self.1.as_bytes());
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let nul = bytes.iter().position(|b| *b == 0)?;
        Some((
            String::from_utf8(bytes[..nul].to_vec()).ok()?,
            String::from_utf8(bytes[nul + 1..].to_vec()).ok()?,
        ))
    }
}

/// Keys whose first part is a group (a store id).
pub trait GroupKey: Key {}
impl GroupKey for (String, i64) {}
impl GroupKey for (String, String) {}

/// A typed view of one table.
pub struct Table<K, V> {
    tree: sled::Tree,
    name: &'static str,
    prefix: Vec<u8>,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for Table<K, V> {
    fn clone(&self) -> Self {
        Table {
            tree: self.tree.clone(),
            name: self.name,
            prefix: self.prefix.clone(),
            _types: PhantomData,
        }
    }
}

impl<K, V> std::fmt::Debug for Table<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("name", &self.name).finish()
    }
}

impl<K: Key, V: Serialize + DeserializeOwned> Table<K, V> {
    fn full_key(&self, key: &K) -> Vec<u8> {
        let mut k = self.prefix.clone();
        key.encode(&mut k);
        k
    }

    fn decode_value(&self, bytes: &[u8]) -> Result<V> {
        serde_json::from_slice(bytes).map_err(|source| Error::Decode {
            table: self.name.to_owned(),
            source,
        })
    }

    pub fn get(&self, key: &K) -> Result<Option<V>> {
        match self.tree.get(self.full_key(key))? {
            Some(bytes) => Ok(Some(self.decode_value(&bytes)?)),
            None => Ok(None),
        }
    }

    pub fn contains(&self, key: &K) -> Result<bool> {
        Ok(self.tree.contains_key(self.full_key(key))?)
    }

    /// Stages a write in `commit`.
    pub fn put(&self, commit: &mut Commit, key: &K, value: &V) {
        let bytes = serde_json::to_vec(value).expect("state values are plain data and serialise");
        commit.push(self.full_key(key), Write::Put(bytes));
    }

    /// Stages a removal in `commit`.
    pub fn remove(&self, commit: &mut Commit, key: &K) {
        commit.push(self.full_key(key), Write::Remove);
    }

    /// Stages a removal that happens only if the row still holds `expected` when the commit is
    /// applied (compare-and-delete): a task that read a value, worked on it and now retires it
    /// must not retire a newer value another task wrote meanwhile.
    pub fn remove_if(&self, commit: &mut Commit, key: &K, expected: &V) {
        let bytes =
            serde_json::to_vec(expected).expect("state values are plain data and serialise");
        commit.push(self.full_key(key), Write::RemoveIf(bytes));
    }

    /// Writes one value and flushes right away (tools and tests; services use [`Commit`]).
    pub async fn put_now(&self, store: &Store, key: &K, value: &V) -> Result<()> {
        let mut c = Commit::new();
        self.put(&mut c, key, value);
        store.commit(c).await
    }

    /// Writes one value and flushes right away, from synchronous code.
    pub fn put_now_blocking(&self, store: &Store, key: &K, value: &V) -> Result<()> {
        let mut c = Commit::new();
        self.put(&mut c, key, value);
        store.commit_blocking(c)
    }

    /// All rows in key order.
    pub fn iter(&self) -> impl Iterator<Item = Result<(K, V)>> + '_ {
        self.iter_from_raw(self.prefix.clone())
    }

    /// Rows with key >= `from`, in key order.
    pub fn iter_from(&self, from: &K) -> impl Iterator<Item = Result<(K, V)>> + '_ {
        self.iter_from_raw(self.full_key(from))
    }

    fn iter_from_raw(&self, start: Vec<u8>) -> impl Iterator<Item = Result<(K, V)>> + '_ {
        let plen = self.prefix.len();
        self.tree
            .range(start..)
            .take_while(move |r| match r {
                Ok((k, _)) => k.starts_with(&self.prefix),
                Err(_) => true,
            })
            .map(move |r| {
                let (k, v) = r?;
                let key = K::decode(&k[plen..]).ok_or_else(|| Error::Key {
                    table: self.name.to_owned(),
                })?;
                Ok((key, self.decode_value(&v)?))
            })
    }

    /// Rows of one group, in key order.
    pub fn iter_group(&self, group: &str) -> impl Iterator<Item = Result<(K, V)>> + '_
    where
        K: GroupKey,
    {
        let mut start = self.prefix.clone();
        start.extend_from_slice(group.as_bytes());
        start.push(0);
        let plen = self.prefix.len();
        self.tree.scan_prefix(start).map(move |r| {
            let (k, v) = r?;
            let key = K::decode(&k[plen..]).ok_or_else(|| Error::Key {
                table: self.name.to_owned(),
            })?;
            Ok((key, self.decode_value(&v)?))
        })
    }

    /// Number of rows (walks the table).
    pub fn count(&self) -> usize {
        self.tree.scan_prefix(&self.prefix).count()
    }
}

/// What the ledger remembers about a handled event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Unix ms when the event was handled.
    pub at_ms: i64,
}

/// Ids of events a consumer has handled, so that a redelivered or republished event has no
/// second effect. Entries are written in the same [`Commit`] as the state change they caused.
#[derive(Clone, Debug)]
pub struct Ledger {
    table: Table<String, LedgerEntry>,
}

impl Ledger {
    pub fn seen(&self, event_id: &str) -> Result<bool> {
        self.table.contains(&event_id.to_owned())
    }

    pub fn record(&self, commit: &mut Commit, event_id: &str) {
        let at_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        self.table
            .put(commit, &event_id.to_owned(), &LedgerEntry { at_ms });
    }

    /// Stages forgetting one event, so that its redelivery is handled again (state rebuild:
    /// the rebuilt projection must not skip the events it is rebuilt from).
    pub fn forget(&self, commit: &mut Commit, event_id: &str) {
        self.table.remove(commit, &event_id.to_owned());
    }

    /// Forgets entries older than `max_age_ms`. Events older than the streams' retention cannot
    /// be redelivered, so their entries are dead weight.
    pub async fn prune(&self, store: &Store, max_age_ms: i64) -> Result<usize> {
        let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        let mut c = Commit::new();
        let mut n = 0;
        for row in self.table.iter() {
            let (id, entry) = row?;
            if now - entry.at_ms > max_age_ms {
                self.table.remove(&mut c, &id);
                n += 1;
            }
        }
        store.commit(c).await?;
        Ok(n)
    }

    pub fn len(&self) -> usize {
        self.table.count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Link {
        woo_id: i64,
        sku: String,
    }

    /// The race this guards: a writer reads a mark at generation 1, works, and retires it with
    /// a commit staged while the mark was still 1; meanwhile another commit set it to 2. Only a
    /// check made when the commit is applied sees the 2.
    #[tokio::test]
    async fn a_conditional_removal_is_decided_when_the_commit_is_applied() {
        let store = Store::temporary().unwrap();
        let marks: Table<i64, u64> = store.table("marks");
        marks.put_now(&store, &1, &1).await.unwrap();
        marks.put_now(&store, &2, &1).await.unwrap();

        let mut retire = Commit::new();
        marks.remove_if(&mut retire, &1, &1);
        marks.remove_if(&mut retire, &2, &1);
        // Staged above while both were at 1; product 1 is marked again before it is applied.
        marks.put_now(&store, &1, &2).await.unwrap();
        store.commit(retire).await.unwrap();

        assert_eq!(marks.get(&1).unwrap(), Some(2), "the newer mark stays");
        assert_eq!(
            marks.get(&2).unwrap(),
            None,
            "the unchanged mark is retired"
        );
    }

    /// Marks 1 and 2 at 5, and a table to stage [`stage_ordered_writes`] on.
    async fn marks_at_five(store: &Store) -> Table<i64, u64> {
        let marks: Table<i64, u64> = store.table("marks");
        marks.put_now(store, &1, &5).await.unwrap();
        marks.put_now(store, &2, &5).await.unwrap();
        marks
    }

    /// Writes whose outcome depends on their order within the commit; see
    /// [`assert_ordered_writes_applied`].
    fn stage_ordered_writes(marks: &Table<i64, u64>, c: &mut Commit) {
        // Retired, then marked again by the same commit: the later write wins.
        marks.remove_if(c, &1, &5);
        marks.put(c, &1, &6);
        // Written by this commit, then retired at the value it wrote.
        marks.put(c, &2, &7);
        marks.remove_if(c, &2, &7);
        // A removal conditional on a value the row does not hold changes nothing.
        marks.put(c, &3, &1);
        marks.remove_if(c, &3, &9);
    }

    fn assert_ordered_writes_applied(marks: &Table<i64, u64>) {
        assert_eq!(marks.get(&1).unwrap(), Some(6));
        assert_eq!(marks.get(&2).unwrap(), None);
        assert_eq!(marks.get(&3).unwrap(), Some(1));
    }

    #[tokio::test]
    async fn a_queued_commit_keeps_its_place_and_is_synced_when_its_answer_comes() {
        let store = Store::temporary().unwrap();
        let marks: Table<i64, u64> = store.table("marks");
        let flushes = store.flushes();
        let f0 = flushes.get();
        let mut first = Commit::new();
        marks.put(&mut first, &1, &1);
        let synced = store.commit_queued(first).unwrap();
        // Queued after it, so applied after it, without waiting for its sync.
        let mut second = Commit::new();
        marks.put(&mut second, &1, &2);
        store.commit_unflushed(second).await.unwrap();
        synced.wait().await.unwrap();
        assert_eq!(marks.get(&1).unwrap(), Some(2), "the later commit wins");
        assert_eq!(flushes.get(), f0 + 1, "the queued commit was synced");
        // Nothing to commit: nothing queued, nothing to wait for.
        store
            .commit_queued(Commit::new())
            .unwrap()
            .wait()
            .await
            .unwrap();
        assert_eq!(flushes.get(), f0 + 1);
    }

    #[tokio::test]
    async fn writes_of_one_commit_apply_in_the_order_they_were_staged() {
        let store = Store::temporary().unwrap();
        let marks = marks_at_five(&store).await;
        let mut c = Commit::new();
        stage_ordered_writes(&marks, &mut c);
        assert_eq!(c.len(), 6);
        store.commit_unflushed(c).await.unwrap();
        assert_ordered_writes_applied(&marks);
    }

    #[tokio::test]
    async fn an_in_order_commit_applies_the_same_writes_without_a_batch() {
        let store = Store::temporary().unwrap();
        let marks = marks_at_five(&store).await;
        let index: Table<i64, String> = store.table("index");
        let batches = store.batches();
        let flushes = store.flushes();
        let (b0, f0) = (batches.get(), flushes.get());

        let mut c = Commit::in_order();
        index.put(&mut c, &1, &"one".to_owned());
        stage_ordered_writes(&marks, &mut c);
        marks.remove(&mut c, &4);
        store.commit(c).await.unwrap();

        assert_eq!(index.get(&1).unwrap().as_deref(), Some("one"));
        assert_ordered_writes_applied(&marks);
        assert_eq!(batches.get(), b0, "no batch for an in-order commit");
        assert_eq!(flushes.get(), f0 + 1, "and still made durable");

        // A commit of one write needs no batch either; several writes in a plain commit do.
        marks.put_now(&store, &9, &9).await.unwrap();
        assert_eq!(batches.get(), b0);
        let mut c = Commit::new();
        marks.put(&mut c, &10, &1);
        index.put(&mut c, &10, &"ten".to_owned());
        store.commit(c).await.unwrap();
        assert_eq!(batches.get(), b0 + 1);
    }

    #[tokio::test]
    async fn in_order_writes_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        {
            let store = Store::open(&path).unwrap();
            let t: Table<i64, i64> = store.table("t");
            let mut c = Commit::in_order();
            t.put(&mut c, &1, &1);
            t.put(&mut c, &2, &2);
            t.remove(&mut c, &1);
            store.commit(c).await.unwrap();
        }
        let store = Store::open(&path).unwrap();
        let t: Table<i64, i64> = store.table("t");
        assert_eq!(t.get(&1).unwrap(), None);
        assert_eq!(t.get(&2).unwrap(), Some(2));
    }

    #[tokio::test]
    async fn commit_applies_writes_to_several_tables_at_once() {
        let store = Store::temporary().unwrap();
        let links: Table<i64, Link> = store.table("links");
        let marks: Table<String, u64> = store.table("marks");
        let mut c = Commit::new();
        links.put(
            &mut c,
            &7,
            &Link {
                woo_id: 70,
                sku: "A".into(),
            },
        );
        marks.put(&mut c, &"poll".to_owned(), &5);
        store.ledger().record(&mut c, "ev1");
        assert!(
            links.get(&7).unwrap().is_none(),
            "nothing visible before commit"
        );
        store.commit(c).await.unwrap();
        assert_eq!(links.get(&7).unwrap().unwrap().woo_id, 70);
        assert_eq!(marks.get(&"poll".to_owned()).unwrap(), Some(5));
        assert!(store.ledger().seen("ev1").unwrap());
        assert!(!store.ledger().seen("ev2").unwrap());
    }

    #[tokio::test]
    async fn tables_do_not_see_each_others_rows() {
        let store = Store::temporary().unwrap();
        let a: Table<String, u64> = store.table("a");
        let ab: Table<String, u64> = store.table("ab");
        a.put_now(&store, &"x".into(), &1).await.unwrap();
        ab.put_now(&store, &"y".into(), &2).await.unwrap();
        assert_eq!(a.iter().count(), 1);
        assert_eq!(ab.iter().count(), 1);
        assert_eq!(a.count(), 1);
    }

    #[tokio::test]
    async fn state_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path().join("db")).unwrap();
            let t: Table<i64, u64> = store.table("t");
            t.put_now(&store, &-3, &9).await.unwrap();
        }
        let store = Store::open(dir.path().join("db")).unwrap();
        let t: Table<i64, u64> = store.table("t");
        assert_eq!(t.get(&-3).unwrap(), Some(9));
    }

    #[test]
    fn a_database_open_in_another_handle_is_reported_as_locked() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path().join("db")).unwrap();
        // sled locks the files per process; a second open in another process fails. Within one
        // process sled may share the database, so run the check in a child when possible.
        let exe = std::env::current_exe().unwrap();
        if std::env::var_os("STORE_LOCK_CHILD").is_some() {
            return;
        }
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "tests::open_the_locked_database_in_a_child",
                "--nocapture",
            ])
            .env("STORE_LOCK_PATH", dir.path().join("db"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("LOCKED"), "{text}");
    }

    #[test]
    fn open_the_locked_database_in_a_child() {
        if let Some(path) = std::env::var_os("STORE_LOCK_PATH") {
            match Store::open(&path) {
                Err(e @ Error::Locked { .. }) => println!("LOCKED {e}"),
                other => println!("NOT LOCKED {other:?}"),
            }
        }
    }

    /// Rows the crash child commits: about 3 MB of journal, so the writer moves between the
    /// two files (making checkpoints) several times before the process dies.
    const CRASH_ROWS: i64 = 3000;

    fn crash_payload(i: i64) -> String {
        format!("{i:08}").repeat(128)
    }

    /// A process that dies without closing its store (what sled holds in memory never reaches
    /// disk) loses no commit, durable or not, and none is half there: opening the store again
    /// applies the journal's records that sled lacks.
    #[test]
    fn a_process_that_dies_loses_no_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "tests::commit_then_die_in_a_child",
                "--nocapture",
            ])
            .env("STORE_CRASH_PATH", &path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("COMMITTED"), "{text}");
        assert!(
            !out.status.success(),
            "the child dies without closing the store"
        );

        let store = Store::open(&path).unwrap();
        let rows: Table<i64, String> = store.table("rows");
        let marks: Table<i64, u64> = store.table("marks");
        for i in 0..CRASH_ROWS {
            assert_eq!(rows.get(&i).unwrap(), Some(crash_payload(i)), "row {i}");
        }
        let left: Vec<i64> = marks.iter().map(|r| r.unwrap().0).collect();
        assert_eq!(left, (CRASH_ROWS - 10..CRASH_ROWS).collect::<Vec<_>>());
        // And the store goes on from there.
        marks.put_now_blocking(&store, &-1, &1).unwrap();
        drop((rows, marks, store));
        let store = Store::open(&path).unwrap();
        let marks: Table<i64, u64> = store.table("marks");
        assert_eq!(marks.get(&-1).unwrap(), Some(1));
        assert_eq!(marks.count(), 11);
    }

    #[test]
    fn commit_then_die_in_a_child() {
        let Some(path) = std::env::var_os("STORE_CRASH_PATH") else {
            return;
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let store = Store::open(&path).unwrap();
        rt.block_on(async {
            let rows: Table<i64, String> = store.table("rows");
            let marks: Table<i64, u64> = store.table("marks");
            for i in 0..CRASH_ROWS {
                let mut c = if i % 3 == 0 {
                    Commit::in_order()
                } else {
                    Commit::new()
                };
                rows.put(&mut c, &i, &crash_payload(i));
                marks.put(&mut c, &i, &(i as u64));
                if i >= 10 {
                    marks.remove_if(&mut c, &(i - 10), &((i - 10) as u64));
                }
                if i % 2 == 0 {
                    store.commit(c).await.unwrap();
                } else {
                    store.commit_unflushed(c).await.unwrap();
                }
            }
            println!("COMMITTED");
        });
        // Dies holding the store: no close, no flush.
        let _held = store;
        std::process::abort();
    }

    #[tokio::test]
    async fn clear_drops_everything() {
        let store = Store::temporary().unwrap();
        let t: Table<i64, u64> = store.table("t");
        t.put_now(&store, &1, &1).await.unwrap();
        store.clear().unwrap();
        assert_eq!(t.get(&1).unwrap(), None);
    }

    /// Cleared rows stay cleared when the store is opened again: the journal that still held
    /// them is emptied by the clear.
    #[tokio::test]
    async fn cleared_rows_do_not_come_back_from_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = Store::open(&path).unwrap();
            let t: Table<i64, u64> = store.table("t");
            for i in 0..50 {
                t.put_now(&store, &i, &1).await.unwrap();
            }
            store.clear().unwrap();
            t.put_now(&store, &100, &2).await.unwrap();
        }
        let store = Store::open(&path).unwrap();
        let t: Table<i64, u64> = store.table("t");
        let rows: Vec<(i64, u64)> = t.iter().map(|r| r.unwrap()).collect();
        assert_eq!(rows, vec![(100, 2)]);
    }

    #[tokio::test]
    async fn prune_forgets_old_ledger_entries_only() {
        let store = Store::temporary().unwrap();
        let ledger = store.ledger();
        let raw: Table<String, LedgerEntry> = store.table("ledger");
        raw.put_now(&store, &"old".into(), &LedgerEntry { at_ms: 0 })
            .await
            .unwrap();
        let mut c = Commit::new();
        ledger.record(&mut c, "new");
        store.commit(c).await.unwrap();
        assert_eq!(ledger.prune(&store, 60_000).await.unwrap(), 1);
        assert!(!ledger.seen("old").unwrap());
        assert!(ledger.seen("new").unwrap());
    }

    #[test]
    fn iter_from_starts_at_the_key() {
        let store = Store::temporary().unwrap();
        let t: Table<i64, i64> = store.table("t");
        let mut c = Commit::new();
        for k in [-5, 0, 3, 10] {
            t.put(&mut c, &k, &k);
        }
        store.commit_blocking(c).unwrap();
        let keys: Vec<i64> = t.iter_from(&0).map(|r| r.unwrap().0).collect();
        assert_eq!(keys, vec![0, 3, 10]);
    }

    #[test]
    fn groups_keep_their_rows_apart() {
        let store = Store::temporary().unwrap();
        let t: Table<(String, i64), i64> = store.table("t");
        let mut c = Commit::new();
        for (g, k) in [("s1", 2), ("s1", -1), ("s10", 1), ("s2", 5)] {
            t.put(&mut c, &(g.to_owned(), k), &k);
        }
        store.commit_blocking(c).unwrap();
        let s1: Vec<i64> = t.iter_group("s1").map(|r| r.unwrap().0 .1).collect();
        assert_eq!(s1, vec![-1, 2]);
        assert_eq!(t.iter_group("s10").count(), 1);
        assert_eq!(t.get(&("s2".into(), 5)).unwrap(), Some(5));
    }

    #[tokio::test]
    async fn remove_group_drops_one_groups_rows_in_every_table_and_keeps_the_rest() {
        let store = Store::temporary().unwrap();
        let a: Table<(String, i64), i64> = store.table("a");
        let b: Table<(String, String), i64> = store.table("b");
        let plain: Table<String, i64> = store.table("plain");
        let mut c = Commit::new();
        for (g, k) in [("s1", 1), ("s1", 2), ("s10", 1), ("s2", 1)] {
            a.put(&mut c, &(g.to_owned(), k), &k);
        }
        b.put(&mut c, &("s1".to_owned(), "x".to_owned()), &1);
        b.put(&mut c, &("s1-x".to_owned(), "x".to_owned()), &1);
        plain.put(&mut c, &"s1".to_owned(), &1);
        store.ledger().record(&mut c, "ev-of-s1");
        store.commit(c).await.unwrap();

        let removed = store.remove_group("s1").unwrap();
        assert_eq!(removed.get("a"), Some(&2));
        assert_eq!(removed.get("b"), Some(&1));
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert_eq!(a.iter_group("s1").count(), 0);
        assert_eq!(a.iter_group("s10").count(), 1);
        assert_eq!(a.iter_group("s2").count(), 1);
        assert_eq!(b.iter_group("s1-x").count(), 1);
        assert_eq!(plain.get(&"s1".to_owned()).unwrap(), Some(1));
        assert!(store.ledger().seen("ev-of-s1").unwrap());
        assert!(
            store.remove_group("s1").unwrap().is_empty(),
            "a second run finds nothing"
        );
        assert!(store.remove_group("").unwrap().is_empty());
        assert!(store.remove_group("s\0").unwrap().is_empty());
    }

    #[test]
    fn a_database_held_by_another_opener_is_reported_as_locked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let held = Store::open(&path).unwrap();
        // sled locks the file per open handle (flock), so a second open in this process fails
        // the way one from another process does while the service runs.
        let err = Store::open(&path).expect_err("the database is held");
        assert!(err.is_locked(), "{err}");
        drop(held);
        assert!(!Error::Key { table: "t".into() }.is_locked());
    }

    /// sled 0.34 alone locks up here (16 tasks each applying a batch and awaiting
    /// `flush_async`, on 2 workers); the committer thread must carry every commit through. The
    /// timeout only turns a lock-up into a failure instead of a hung test run.
    #[test]
    fn many_tasks_committing_at_once_all_get_through() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("state")).unwrap();
        // The runtime runs on its own thread: a lock-up stops both workers and the timer with
        // them, so only a waiter outside the runtime can tell.
        let (done_tx, done_rx) = mpsc::channel();
        let writer = store.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut tasks = Vec::new();
                for task in 0..16i64 {
                    let store = writer.clone();
                    tasks.push(tokio::spawn(async move {
                        let rows: Table<(i64, i64), String> = store.table("rows");
                        for n in 0..100i64 {
                            let mut c = Commit::new();
                            rows.put(&mut c, &(task, n), &format!("{task}/{n}"));
                            store.ledger().record(&mut c, &format!("e-{task}-{n}"));
                            store.commit(c).await.unwrap();
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            });
            drop(writer);
            let _ = done_tx.send(());
        });
        done_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("concurrent commits locked up (or a committing task failed)");
        let rows: Table<(i64, i64), String> = store.table("rows");
        assert_eq!(rows.count(), 1600);
        assert_eq!(rows.get(&(15, 99)).unwrap().as_deref(), Some("15/99"));
        assert!(store.ledger().seen("e-7-42").unwrap());
        drop(rows);
        drop(store);
        // Every commit was flushed and the last handle let go of the files: it opens again.
        let again = Store::open(dir.path().join("state")).unwrap();
        let rows: Table<(i64, i64), String> = again.table("rows");
        assert_eq!(rows.count(), 1600);
    }

    #[test]
    fn a_blocking_commit_and_an_async_commit_see_each_others_writes() {
        let store = Store::temporary().unwrap();
        let t: Table<String, i64> = store.table("t");
        t.put_now_blocking(&store, &"a".into(), &1).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(t.put_now(&store, &"b".into(), &2)).unwrap();
        rt.block_on(store.flush()).unwrap();
        assert_eq!(t.get(&"a".into()).unwrap(), Some(1));
        assert_eq!(t.get(&"b".into()).unwrap(), Some(2));
    }

    #[tokio::test]
    async fn an_unflushed_commit_is_visible_at_once_and_made_durable_by_the_next_flush() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path().join("db")).unwrap();
            let flushes = store.flushes();
            let t: Table<String, i64> = store.table("t");
            let mut c = Commit::new();
            t.put(&mut c, &"lazy".into(), &1);
            store.commit_unflushed(c).await.unwrap();
            assert_eq!(t.get(&"lazy".into()).unwrap(), Some(1), "readable at once");
            assert_eq!(flushes.get(), 0, "no flush of its own");
            t.put_now(&store, &"durable".into(), &2).await.unwrap();
            assert_eq!(flushes.get(), 1);
        }
        let store = Store::open(dir.path().join("db")).unwrap();
        let t: Table<String, i64> = store.table("t");
        assert_eq!(
            t.get(&"lazy".into()).unwrap(),
            Some(1),
            "carried by the flush"
        );
        assert_eq!(t.get(&"durable".into()).unwrap(), Some(2));
    }

    #[test]
    fn concurrent_commits_share_flushes() {
        let store = Store::temporary().unwrap();
        let flushes = store.flushes();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        rt.block_on(async {
            let mut tasks = Vec::new();
            for task in 0..32i64 {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    let t: Table<i64, i64> = store.table("t");
                    for n in 0..10 {
                        t.put_now(&store, &(task * 100 + n), &n).await.unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
        // 320 commits, but those queued while a flush ran are made durable by the next one.
        let made = flushes.get();
        assert!(
            (1..320).contains(&made),
            "{made} flushes for 320 concurrent commits"
        );
        let t: Table<i64, i64> = store.table("t");
        assert_eq!(t.count(), 320);
    }

    #[tokio::test]
    async fn a_forgotten_event_is_no_longer_seen() {
        let store = Store::temporary().unwrap();
        let ledger = store.ledger();
        let mut c = Commit::new();
        ledger.record(&mut c, "a");
        ledger.record(&mut c, "b");
        store.commit(c).await.unwrap();
        let mut c = Commit::new();
        ledger.forget(&mut c, "a");
        ledger.forget(&mut c, "never-seen");
        store.commit(c).await.unwrap();
        assert!(!ledger.seen("a").unwrap());
        assert!(ledger.seen("b").unwrap());
    }

    proptest! {
        #[test]
        fn integer_keys_sort_like_integers(mut xs in proptest::collection::vec(any::<i64>(), 1..50)) {
            let mut enc: Vec<(Vec<u8>, i64)> = xs.iter().map(|x| { let mut v = Vec::new(); x.encode(&mut v); (v, *x) }).collect();
            enc.sort();
            xs.sort();
            let decoded: Vec<i64> = enc.iter().map(|(b, _)| i64::decode(b).unwrap()).collect();
            prop_assert_eq!(decoded, xs);
        }
    }
}
