//! A faulty-link TCP proxy for tests: added delay, a bandwidth cap, stalls (per direction, at
//! run time), a reset in the middle of the stream, a one-way half-close, a corrupted byte at a
//! chosen offset, and a dribble of one byte at a time.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A direction through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// From the dialling side to the target.
    Up,
    /// From the target back to the dialling side.
    Down,
}

/// What goes wrong on the link (fixed when the proxy starts; stalls and resets also at run time).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Added before each forwarded piece.
    pub delay: Duration,
    /// Bytes per second in each direction.
    pub bytes_per_sec: Option<u64>,
    /// Reset both sockets once this many bytes went this way (the rest of that read is lost).
    pub rst_after: Option<(Dir, u64)>,
    /// Half-close this direction (FIN to the receiving side) after this many bytes.
    pub half_close_after: Option<(Dir, u64)>,
    /// Flip the byte at this offset of this direction.
    pub corrupt_at: Option<(Dir, u64)>,
    /// Forward this direction one byte at a time, this long apart, after the first `u64` bytes.
    pub dribble: Option<(Dir, u64, Duration)>,
}

/// Run-time controls of one proxy.
#[derive(Default)]
pub struct Controls {
    stall_up: AtomicBool,
    stall_down: AtomicBool,
    reset: CancellationToken,
    /// Bytes forwarded up.
    pub up: AtomicU64,
    /// Bytes forwarded down.
    pub down: AtomicU64,
}

impl Controls {
    /// Stops (or resumes) forwarding one way: nothing is read from that side meanwhile, so its
    /// sender's TCP window closes.
    pub fn stall(&self, dir: Dir, on: bool) {
        match dir {
            Dir::Up => self.stall_up.store(on, Ordering::SeqCst),
            Dir::Down => self.stall_down.store(on, Ordering::SeqCst),
        }
    }

    /// Resets every connection through the proxy now.
    pub fn reset_now(&self) {
        self.reset.cancel();
    }

    fn stalled(&self, dir: Dir) -> bool {
        match dir {
            Dir::Up => self.stall_up.load(Ordering::SeqCst),
            Dir::Down => self.stall_down.load(Ordering::SeqCst),
        }
    }
}

/// A running proxy in front of `target`.
pub struct Proxy {
    /// Dial this instead of the target.
    pub addr: SocketAddr,
    /// Its run-time controls.
    pub controls: Arc<Controls>,
}

fn reset(s: &TcpStream) {
    // SO_LINGER 0: closing sends a RST instead of a FIN.
    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
}

impl Proxy {
    /// Starts forwarding connections to `target` through `faults`.
    pub async fn start(target: SocketAddr, faults: Faults) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let controls = Arc::new(Controls::default());
        let c = controls.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else { continue };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (faults, c) = (faults.clone(), c.clone());
                tokio::spawn(async move { run(client, server, faults, c).await });
            }
        });
        Self { addr, controls }
    }
}

async fn run(client: TcpStream, server: TcpStream, faults: Faults, c: Arc<Controls>) {
    let (client, server) = (Arc::new(client), Arc::new(server));
    let broken = CancellationToken::new();
    let up = pump(client.clone(), server.clone(), Dir::Up, faults.clone(), c.clone(), broken.clone());
    let down = pump(server.clone(), client.clone(), Dir::Down, faults, c.clone(), broken.clone());
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        () = c.reset.cancelled() => broken.cancel(),
    }
    if broken.is_cancelled() {
        reset(&client);
        reset(&server);
    }
}

/// Forwards `src` to `dst` one way, applying the faults; `broken` is cancelled on a reset.
async fn pump(
    src: Arc<TcpStream>,
    dst: Arc<TcpStream>,
    dir: Dir,
    f: Faults,
    c: Arc<Controls>,
    broken: CancellationToken,
) {
    let mut done: u64 = 0;
    let mut buf = vec![0u8; 16 * 1024];
    let counter = if dir == Dir::Up { &c.up } else { &c.down };
    loop {
        if broken.is_cancelled() {
            return;
        }
        while c.stalled(dir) {
            if broken.is_cancelled() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let dribbling = f.dribble.filter(|(d, after, _)| *d == dir && done >= *after);
        // Reads never cross the byte where dribbling starts, however the sender coalesced.
        let max = match f.dribble {
            Some((d, after, _)) if d == dir && done < after => buf.len().min((after - done) as usize),
            _ if dribbling.is_some() => 1,
            _ => buf.len(),
        };
        src.readable().await.ok();
        let n = match src.try_read(&mut buf[..max]) {
            Ok(0) => {
                // EOF one way: pass it on as a half-close, keep the other way.
                let _ = socket2::SockRef::from(&*dst).shutdown(std::net::Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => {
                broken.cancel();
                return;
            }
        };
        let mut piece = buf[..n].to_vec();
        if let Some((d, at)) = f.corrupt_at {
            if d == dir && at >= done && at < done + n as u64 {
                piece[(at - done) as usize] ^= 0x01;
            }
        }
        if let Some((d, after)) = f.rst_after {
            if d == dir && done + n as u64 > after {
                let keep = (after - done.min(after)) as usize;
                let _ = write_all(&dst, &piece[..keep]).await;
                broken.cancel();
                c.reset.cancel();
                return;
            }
        }
        if let Some((d, after)) = f.half_close_after {
            if d == dir && done + n as u64 >= after {
                let keep = (after - done.min(after)) as usize;
                let _ = write_all(&dst, &piece[..keep]).await;
                let _ = socket2::SockRef::from(&*dst).shutdown(std::net::Shutdown::Write);
                return;
            }
        }
        if !f.delay.is_zero() {
            tokio::time::sleep(f.delay).await;
        }
        if let Some(rate) = f.bytes_per_sec {
            tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate.max(1) as f64)).await;
        }
        if let Some((_, _, gap)) = dribbling {
            tokio::time::sleep(gap).await;
        }
        if write_all(&dst, &piece).await.is_err() {
            broken.cancel();
            return;
        }
        done += n as u64;
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

async fn write_all(dst: &TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        dst.writable().await?;
        match dst.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
