//! Storage benchmark: the store against the raw limits of the same disk, measured in the same run.
//!
//! - raw: sequential 1 MiB O_DIRECT writes (MB/s), 4 KiB overwrite + fdatasync latency, and
//!   sequential 1 MiB O_DIRECT reads (MB/s);
//! - append of 1 KiB records with `flush = async` (target ≥ 0.8 × raw write bandwidth);
//! - `flush = sync` with 1, 16 and 256 concurrent appenders: throughput and ack latency (targets: 256
//!   appenders ≥ 0.5 × raw bandwidth; 1 appender p99 ≤ 2 × raw fdatasync p99);
//! - reads of 1 KiB records from the tail cache and from disk, MB/s against raw reads.
//!
//! `benches/store.rs` runs it in full; a test runs the quick form so it cannot rot.

use crate::protocol::message::{MessageToStore, properties_encode};
use crate::rt::executor::{LocalExecutorBuilder, Placement};
use crate::store::io::{DiskFile, DmaDisk};
use crate::store::{FlushMode, Store, StoreConfig};
use bytes::Bytes;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Latency {
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        Latency {
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncRun {
    pub appenders: usize,
    pub msgs_per_sec: f64,
    pub mb_per_sec: f64,
    pub ack: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct StorageReport {
    pub raw_write_mb_per_sec: f64,
    pub raw_read_mb_per_sec: f64,
    pub raw_fdatasync: Latency,
    pub async_append_mb_per_sec: f64,
    pub sync: Vec<SyncRun>,
    pub tail_read_mb_per_sec: f64,
    pub disk_read_mb_per_sec: f64,
}

/// How much to measure.
#[derive(Debug, Clone)]
pub struct StorageBenchConfig {
    pub dir: PathBuf,
    pub volume_bytes: u64,
    pub sync_run: Duration,
    pub fsync_samples: usize,
}

impl StorageBenchConfig {
    pub fn quick(dir: &Path) -> StorageBenchConfig {
        StorageBenchConfig {
            dir: dir.into(),
            volume_bytes: 16 << 20,
            sync_run: Duration::from_millis(300),
            fsync_samples: 100,
        }
    }

    pub fn full(dir: &Path) -> StorageBenchConfig {
        StorageBenchConfig {
            dir: dir.into(),
            volume_bytes: 512 << 20,
            sync_run: Duration::from_secs(5),
            fsync_samples: 2000,
        }
    }
}

const MIB: usize = 1 << 20;

fn mb_per_sec(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64().max(1e-9)
}

async fn raw_limits(cfg: &StorageBenchConfig) -> std::io::Result<(f64, f64, Latency)> {
    use crate::store::io::Disk;
    let path = cfg.dir.join("raw.dat");
    let f = DmaDisk::default().open(&path).await?;
    let chunk = vec![7u8; MIB];
    let mut pos = 0;
    while pos < cfg.volume_bytes {
        DiskFile::write_at(f.as_ref(), &chunk, pos).await?; // pre-write: later writes overwrite, as the log's do
        pos += MIB as u64;
    }
    DiskFile::sync(f.as_ref()).await?;
    let start = Instant::now();
    let mut pos = 0;
    while pos < cfg.volume_bytes {
        DiskFile::write_at(f.as_ref(), &chunk, pos).await?;
        pos += MIB as u64;
    }
    DiskFile::sync(f.as_ref()).await?;
    let write = mb_per_sec(cfg.volume_bytes, start.elapsed());
    let mut h = Histogram::<u64>::new(3).map_err(std::io::Error::other)?;
    let block = vec![1u8; 4096];
    for i in 0..cfg.fsync_samples {
        let t = Instant::now();
        DiskFile::write_at(f.as_ref(), &block, (i as u64 * 4096) % cfg.volume_bytes).await?;
        DiskFile::sync(f.as_ref()).await?;
        let _ = h.record(t.elapsed().as_micros() as u64);
    }
    let start = Instant::now();
    let mut pos = 0;
    while pos < cfg.volume_bytes {
        DiskFile::read_at(f.as_ref(), pos, MIB).await?;
        pos += MIB as u64;
    }
    let read = mb_per_sec(cfg.volume_bytes, start.elapsed());
    let _ = std::fs::remove_file(&path);
    Ok((write, read, Latency::of(&h)))
}

fn record(i: usize) -> MessageToStore {
    let props = properties_encode([("TAGS", "bench")]);
    MessageToStore::simple("BenchTopic", (i % 16) as i32, Bytes::from(vec![b'x'; 1024 - 120]), props)
}

async fn open_store(dir: &Path, flush: FlushMode, segment_bytes: u64) -> Result<Rc<Store<DmaDisk>>, String> {
    let _ = std::fs::remove_dir_all(dir);
    let mut c = StoreConfig::new(dir);
    c.flush = flush;
    c.segment_bytes = segment_bytes;
    let s = Rc::new(Store::open(DmaDisk::default(), c).await.map_err(|e| e.to_string())?);
    // Measure the steady state: the active segment's lead and the next segment are pre-written
    // before the clock starts.
    s.log().run_prewrite().await.map_err(|e| e.to_string())?;
    s.log().prepare_next().await.map_err(|e| e.to_string())?;
    let bg = s.clone();
    crate::rt::spawn(async move {
        loop {
            bg.log().wait_for_work().await;
            if bg.log().flush_once().await.is_err() {
                return;
            }
        }
    })
    .detach();
    let pw = s.clone();
    crate::rt::spawn(async move {
        loop {
            if pw.log().prewrite_due() {
                let _ = pw.log().run_prewrite().await;
            }
            crate::rt::sleep(Duration::from_millis(5)).await;
        }
    })
    .detach();
    Ok(s)
}

async fn async_append(cfg: &StorageBenchConfig) -> Result<f64, String> {
    let s = open_store(&cfg.dir.join("async"), FlushMode::Async, 256 << 20).await?;
    let n = (cfg.volume_bytes / 1024) as usize;
    let batch: Vec<MessageToStore> = (0..16).map(record).collect();
    let start = Instant::now();
    for _ in 0..n / 16 {
        s.put(&batch, false).await.map_err(|e| e.to_string())?;
    }
    while s.log().flushed_pos() < s.log().write_pos() {
        crate::rt::sleep(Duration::from_micros(200)).await;
    }
    Ok(mb_per_sec(s.log().write_pos(), start.elapsed()))
}

async fn sync_run(cfg: &StorageBenchConfig, appenders: usize) -> Result<SyncRun, String> {
    let s = open_store(&cfg.dir.join(format!("sync{appenders}")), FlushMode::Sync, 256 << 20).await?;
    let hist = Rc::new(std::cell::RefCell::new(Histogram::<u64>::new(3).map_err(|e| e.to_string())?));
    let count = Rc::new(std::cell::Cell::new(0u64));
    let deadline = Instant::now() + cfg.sync_run;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for a in 0..appenders {
        let (s, hist, count) = (s.clone(), hist.clone(), count.clone());
        tasks.push(crate::rt::spawn(async move {
            let msg = [record(a)];
            while Instant::now() < deadline {
                let t = Instant::now();
                if s.put(&msg, true).await.is_err() {
                    return;
                }
                let _ = hist.borrow_mut().record(t.elapsed().as_micros() as u64);
                count.set(count.get() + 1);
            }
        }));
    }
    for t in tasks {
        t.await;
    }
    let secs = start.elapsed();
    let n = count.get();
    Ok(SyncRun {
        appenders,
        msgs_per_sec: n as f64 / secs.as_secs_f64(),
        mb_per_sec: mb_per_sec(n * 1024, secs),
        ack: Latency::of(&hist.borrow()),
    })
}

async fn reads(cfg: &StorageBenchConfig) -> Result<(f64, f64), String> {
    let dir = cfg.dir.join("reads");
    let n = ((cfg.volume_bytes / 4) / 1024) as usize;
    {
        let s = open_store(&dir, FlushMode::Async, 256 << 20).await?;
        let batch: Vec<MessageToStore> = (0..16).map(|_| record(0)).collect();
        for _ in 0..n / 16 {
            s.put(&batch, false).await.map_err(|e| e.to_string())?;
        }
        while s.log().flushed_pos() < s.log().write_pos() {
            crate::rt::sleep(Duration::from_micros(200)).await;
        }
        // Tail reads: only what the tail cache (64 MiB by default) still holds.
        let cached = (s.config().tail_cache_bytes as u64 / 2 / 1024) as usize;
        let tail = read_from(&s, n.saturating_sub(cached) as u64, n).await;
        s.checkpoint_now().map_err(|e| e.to_string())?;
        let mut c = StoreConfig::new(&dir);
        c.flush = FlushMode::Async;
        c.segment_bytes = 256 << 20;
        c.read_cache_bytes = 8 << 20;
        drop(s);
        let cold = Store::open(DmaDisk::default(), c).await.map_err(|e| e.to_string())?;
        let disk = read_all(&cold, n).await;
        Ok((tail, disk))
    }
}

async fn read_all(s: &Store<DmaDisk>, n: usize) -> f64 {
    read_from(s, 0, n).await
}

async fn read_from(s: &Store<DmaDisk>, from: u64, n: usize) -> f64 {
    let start = Instant::now();
    let mut bytes = 0u64;
    let mut off = from;
    while (off as usize) < n {
        let r = s.get("BenchTopic", 0, off, 32, 1 << 20, &|_| true, &|_| true).await;
        if r.records.is_empty() {
            break;
        }
        bytes += r.records.iter().map(|b| b.len() as u64).sum::<u64>();
        off = r.next_offset;
    }
    mb_per_sec(bytes, start.elapsed())
}

async fn run_all(cfg: StorageBenchConfig) -> Result<StorageReport, String> {
    std::fs::create_dir_all(&cfg.dir).map_err(|e| e.to_string())?;
    let (raw_write, raw_read, fsync) = raw_limits(&cfg).await.map_err(|e| e.to_string())?;
    let async_mb = async_append(&cfg).await?;
    let mut sync = Vec::new();
    for n in [1, 16, 256] {
        sync.push(sync_run(&cfg, n).await?);
    }
    let (tail, disk) = reads(&cfg).await?;
    Ok(StorageReport {
        raw_write_mb_per_sec: raw_write,
        raw_read_mb_per_sec: raw_read,
        raw_fdatasync: fsync,
        async_append_mb_per_sec: async_mb,
        sync,
        tail_read_mb_per_sec: tail,
        disk_read_mb_per_sec: disk,
    })
}

/// Runs the benchmark on one pinned executor.
pub fn run(cfg: StorageBenchConfig) -> Result<StorageReport, String> {
    let dir = cfg.dir.clone();
    let h = LocalExecutorBuilder::new(Placement::Fixed(0))
        .io_memory(crate::shard::startup::IO_MEMORY_BYTES)
        .spawn(move || run_all(cfg))
        .map_err(|e| e.to_string())?;
    let r = h.join().map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(dir);
    r
}

/// Human-readable report with the ratios the targets are stated in.
pub fn describe(r: &StorageReport) -> String {
    let mut out = format!(
        "raw: write {:.0} MB/s, read {:.0} MB/s, 4 KiB overwrite+fdatasync p50 {} us p99 {} us\n",
        r.raw_write_mb_per_sec, r.raw_read_mb_per_sec, r.raw_fdatasync.p50_us, r.raw_fdatasync.p99_us
    );
    out += &format!(
        "async append 1 KiB: {:.0} MB/s = {:.2} x raw write (target >= 0.8)\n",
        r.async_append_mb_per_sec,
        r.async_append_mb_per_sec / r.raw_write_mb_per_sec
    );
    for s in &r.sync {
        out += &format!(
            "sync, {:>3} appenders: {:>8.0} msgs/s {:>6.1} MB/s ({:.2} x raw) ack p50 {} us p99 {} us p99.9 {} us\n",
            s.appenders,
            s.msgs_per_sec,
            s.mb_per_sec,
            s.mb_per_sec / r.raw_write_mb_per_sec,
            s.ack.p50_us,
            s.ack.p99_us,
            s.ack.p999_us
        );
    }
    if let Some(one) = r.sync.first() {
        out += &format!(
            "1-appender ack p99 / raw fdatasync p99 = {:.2} (target <= 2)\n",
            one.ack.p99_us as f64 / r.raw_fdatasync.p99_us.max(1) as f64
        );
    }
    out += &format!(
        "reads: tail {:.0} MB/s ({:.2} x raw read), disk {:.0} MB/s ({:.2} x raw read)\n",
        r.tail_read_mb_per_sec,
        r.tail_read_mb_per_sec / r.raw_read_mb_per_sec,
        r.disk_read_mb_per_sec,
        r.disk_read_mb_per_sec / r.raw_read_mb_per_sec
    );
    out
}
