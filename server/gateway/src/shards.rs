//! The data plane's I/O threads ("shards"), one per core by default.
//!
//! Each shard is an OS thread running a single-threaded tokio runtime with its own pooled
//! upstream client. An acceptor task per listener (on the control runtime) hands each
//! accepted connection to the next shard, round robin; from then on every byte of that
//! connection — the client side, the routing step, the upstream exchange on the shard's own
//! pool, the relay — runs on that one thread. A request never hops between threads (no
//! cross-thread wake-ups, no work stealing), which is what a proxy hop costs least with; the
//! shards share only the live state, the metrics, the learning sessions and the replay queue.
//!
//! CPU-heavy routing (model-backed evaluation) still leaves the shard for the runtime's
//! blocking pool, and inference for the model threads, so a slow request does not stall the
//! other connections of its shard.
//!
//! Shutdown: the control cancellation token stops the acceptors and starts every shard's
//! graceful drain; [`Shards::stop`] ends whatever is left when the grace period is over.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http::{AppState, DataPlane, ListenerState};
use crate::server::StartError;
use crate::upstream::client::UpstreamClient;

/// Accepted connections waiting for their shard (per shard and listener); the acceptor waits
/// when a shard falls this far behind.
const HANDOFF_QUEUE: usize = 256;

/// A bound data-plane listener, before it is served.
#[derive(Debug)]
pub(crate) struct ShardedListener {
    /// Recipe listener name (for logs).
    pub name: String,
    /// The bound socket.
    pub listener: TcpListener,
    /// The listener's upstream timeout.
    pub timeout: Duration,
}

/// The running shards.
#[derive(Debug)]
pub(crate) struct Shards {
    threads: Vec<std::thread::JoinHandle<()>>,
    count: usize,
    hard_stop: CancellationToken,
}

impl Shards {
    /// Starts `n` shard threads (0: one per available core) serving `listeners`.
    ///
    /// The acceptors and a watcher per shard run on `tracker`, so `tracker.wait()` returns
    /// once every shard has drained after `cancel`.
    ///
    /// # Errors
    /// A shard's runtime or upstream client could not be created.
    pub(crate) fn start(
        n: usize,
        listeners: Vec<ShardedListener>,
        app: &Arc<AppState>,
        tracker: &TaskTracker,
        cancel: &CancellationToken,
    ) -> Result<Self, StartError> {
        let n = if n == 0 {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        } else {
            n
        };
        let mut shards = Self {
            threads: Vec::with_capacity(n),
            count: n,
            hard_stop: CancellationToken::new(),
        };
        // senders[listener][shard]
        let mut senders: Vec<Vec<mpsc::Sender<Accepted>>> =
            listeners.iter().map(|_| Vec::with_capacity(n)).collect();
        for k in 0..n {
            let mut served = Vec::with_capacity(listeners.len());
            for (j, l) in listeners.iter().enumerate() {
                let (tx, rx) = mpsc::channel(HANDOFF_QUEUE);
                senders[j].push(tx);
                served.push(ShardServe {
                    incoming: Handoff { rx },
                    timeout: l.timeout,
                });
            }
            let spawned = UpstreamClient::new().and_then(|client| {
                let ctx = ShardCtx {
                    app: app.clone(),
                    client,
                    cancel: cancel.clone(),
                    hard_stop: shards.hard_stop.clone(),
                };
                spawn_shard(k, ctx, served)
            });
            match spawned {
                Ok((thread, done)) => {
                    shards.threads.push(thread);
                    tracker.spawn(async move {
                        let _ = done.await;
                    });
                }
                Err(e) => {
                    // The threads already running would wait forever for connections.
                    shards.stop();
                    return Err(e);
                }
            }
        }
        for (l, senders) in listeners.into_iter().zip(senders) {
            tracker.spawn(accept_loop(l, senders, cancel.clone()));
        }
        tracing::info!(threads = n, "data-plane I/O threads started");
        Ok(shards)
    }

    /// How many I/O threads serve the listeners.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// Ends every shard now (connections still open are closed) and joins the threads.
    pub(crate) fn stop(self) {
        self.hard_stop.cancel();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// An accepted connection on its way to a shard.
type Accepted = (std::net::TcpStream, SocketAddr);

#[derive(Debug)]
struct ShardCtx {
    app: Arc<AppState>,
    client: UpstreamClient,
    cancel: CancellationToken,
    hard_stop: CancellationToken,
}

#[derive(Debug)]
struct ShardServe {
    incoming: Handoff,
    timeout: Duration,
}

/// Starts I/O thread `k` on its own single-threaded runtime; the receiver resolves when the
/// thread has stopped.
fn spawn_shard(
    k: usize,
    ctx: ShardCtx,
    served: Vec<ShardServe>,
) -> Result<
    (
        std::thread::JoinHandle<()>,
        tokio::sync::oneshot::Receiver<()>,
    ),
    StartError,
> {
    let setup = |e: std::io::Error| StartError::Setup(format!("I/O thread {k}: {e}"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name(format!("vllm-sr-io-{k}-blocking"))
        .build()
        .map_err(setup)?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(format!("vllm-sr-io-{k}"))
        .spawn(move || {
            runtime.block_on(run_shard(ctx, served));
            // Dropping the runtime closes whatever the grace period left open.
            drop(runtime);
            let _ = done_tx.send(());
        })
        .map_err(setup)?;
    Ok((thread, done_rx))
}

async fn run_shard(ctx: ShardCtx, served: Vec<ShardServe>) {
    let mut tasks = tokio::task::JoinSet::new();
    for s in served {
        let app = DataPlane::new(ListenerState {
            app: ctx.app.clone(),
            timeout: s.timeout,
            client: ctx.client.clone(),
        });
        tasks.spawn(serve_listener(s.incoming, app, ctx.cancel.clone()));
    }
    // Stores finished replay records after their requests yield (see `replay`).
    let mut drain = tokio::task::JoinSet::new();
    drain.spawn(crate::replay::drain_deferred());
    tokio::select! {
        () = async { while tasks.join_next().await.is_some() {} } => {}
        () = ctx.hard_stop.cancelled() => {}
    }
    // Cancelling the drain task stores what it had not yet.
    drain.abort_all();
    while drain.join_next().await.is_some() {}
}

/// Accepts connections on the control runtime and deals them to the shards in turn.
async fn accept_loop(
    mut l: ShardedListener,
    shards: Vec<mpsc::Sender<Accepted>>,
    cancel: CancellationToken,
) {
    let mut next = 0usize;
    loop {
        let (stream, peer) = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = axum::serve::Listener::accept(&mut l.listener) => accepted,
        };
        // Streamed chunks go out as they are written: with Nagle, each small SSE chunk would
        // wait for the client's ACK of the one before (up to the peer's delayed-ACK timer on
        // a real network).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY on an accepted connection: {e}");
        }
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(listener = %l.name, %peer, "cannot hand a connection to an I/O thread: {e}");
                continue;
            }
        };
        let shard = &shards[next % shards.len()];
        next = next.wrapping_add(1);
        tokio::select! {
            () = cancel.cancelled() => return,
            sent = shard.send((stream, peer)) => {
                if sent.is_err() {
                    tracing::error!(listener = %l.name, "an I/O thread has stopped; no longer accepting");
                    return;
                }
            }
        }
    }
}

/// A shard's side of the hand-off: accepted connections from the acceptor.
#[derive(Debug)]
struct Handoff {
    rx: mpsc::Receiver<Accepted>,
}

/// Serves the connections a shard is handed for one listener until `drain` is cancelled,
/// then waits for them to close (each finishes the request it is serving).
async fn serve_listener(mut incoming: Handoff, app: DataPlane, drain: CancellationToken) {
    let conns = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = drain.cancelled() => break,
            a = incoming.rx.recv() => a,
        };
        // `None`: the acceptor is gone (shutdown); nothing more arrives.
        let Some((stream, peer)) = accepted else {
            break;
        };
        // Registers the socket with this shard's runtime.
        match TcpStream::from_std(stream) {
            Ok(s) => {
                conns.spawn(crate::conn::serve(s, app.clone(), drain.clone()));
            }
            Err(e) => tracing::warn!(%peer, "cannot register an accepted connection: {e}"),
        }
    }
    conns.close();
    conns.wait().await;
}
