//! The raw-limit probe: the same bytes a workload would carry, pushed through a plain loopback TCP
//! socket into an O_DIRECT file in 1 MiB writes, with no protocol. Its rate is this machine's
//! ceiling for the workload; the broker's rate is reported as a fraction of it.

use crate::store::io::{Disk, DiskFile, DmaDisk};
use futures_lite::AsyncReadExt;
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    pub mb_per_sec: f64,
    pub msgs_per_sec: f64,
    /// Whether each 1 MiB write was followed by fdatasync.
    pub synced: bool,
}

const CHUNK: usize = 1 << 20;

/// Pushes `total_bytes` through loopback into a file in `dir`.
pub fn run(dir: &Path, total_bytes: u64, message_size: usize, synced: bool) -> Result<ProbeResult, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    drop(listener);
    let path = dir.join("probe.dat");
    let p2 = path.clone();
    let receiver = crate::rt::executor::LocalExecutorBuilder::new(crate::rt::executor::Placement::Unbound)
        .io_memory(crate::shard::startup::IO_MEMORY_BYTES)
        .spawn(move || async move { receive(addr, &p2, total_bytes, synced).await })
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut stream = loop {
        match std::net::TcpStream::connect(addr) {
            Ok(s) => break s,
            Err(_) if start.elapsed() < Duration::from_secs(5) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(e.to_string()),
        }
    };
    let start = Instant::now();
    let buf = vec![b'x'; message_size.max(1) * (CHUNK / message_size.max(1)).max(1)];
    let mut sent = 0u64;
    while sent < total_bytes {
        let n = buf.len().min((total_bytes - sent) as usize);
        stream.write_all(&buf[..n]).map_err(|e| e.to_string())?;
        sent += n as u64;
    }
    drop(stream);
    receiver.join().map_err(|e| e.to_string())??;
    let secs = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    Ok(ProbeResult {
        mb_per_sec: total_bytes as f64 / (1 << 20) as f64 / secs,
        msgs_per_sec: (total_bytes / message_size.max(1) as u64) as f64 / secs,
        synced,
    })
}

async fn receive(addr: std::net::SocketAddr, path: &Path, total: u64, synced: bool) -> Result<(), String> {
    let listener = crate::rt::TcpListener::bind(addr).map_err(|e| e.to_string())?;
    let mut stream = listener.accept().await.map_err(|e| e.to_string())?;
    let file = DmaDisk::default().open(path).await.map_err(|e| e.to_string())?;
    let mut chunk = vec![0u8; CHUNK];
    let (mut fill, mut pos, mut got) = (0usize, 0u64, 0u64);
    while got < total {
        let n = stream.read(&mut chunk[fill..]).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        fill += n;
        got += n as u64;
        if fill == CHUNK || got >= total {
            let len = fill.div_ceil(4096) * 4096;
            chunk[fill..len].fill(0);
            DiskFile::write_at(file.as_ref(), &chunk[..len], pos).await.map_err(|e| e.to_string())?;
            if synced {
                DiskFile::sync(file.as_ref()).await.map_err(|e| e.to_string())?;
            }
            pos += len as u64;
            fill = 0;
        }
    }
    DiskFile::sync(file.as_ref()).await.map_err(|e| e.to_string())
}
