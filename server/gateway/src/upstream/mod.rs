//! Backends of every logical model: their URLs and credentials, load balancing (weights,
//! `lb_policy`), passive outlier ejection (`consecutive_5xx`, `base_ejection_time`,
//! `max_ejection_percent`) and the health state the active checker (`health.rs`) updates.
//!
//! State survives a config reload for backends whose name and URL did not change, so a reload
//! does not forget that a backend is down.

pub mod client;
pub mod h1;
pub(crate) mod health;
pub mod plain;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use vllm_sr_config::model::{Backend, LbPolicy, ModelId, Reliability, RouterConfig};

/// Health as the active checker last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not checked yet (no check configured, or the first check is pending).
    Unknown = 0,
    /// The last check passed.
    Healthy = 1,
    /// The last check failed.
    Unhealthy = 2,
}

/// One concrete backend and its runtime state.
#[derive(Debug)]
pub struct BackendState {
    /// `<model>_<ref>`.
    pub name: String,
    /// The logical model it serves.
    pub model: String,
    /// Full chat-completions URL.
    pub chat_url: String,
    /// The same, parsed once.
    pub chat_uri: http::Uri,
    /// `scheme://host:port` + base path (health checks are relative to it).
    pub base_url: String,
    /// The configured backend.
    pub config: Backend,
    health: AtomicU8,
    has_check: bool,
    consecutive_5xx: AtomicU32,
    ejected_until: Mutex<Option<Instant>>,
    ejections: AtomicU64,
    inflight: AtomicU32,
}

impl BackendState {
    fn new(model: &str, b: &Backend, has_check: bool) -> Result<Self, String> {
        let base_url = format!("{}://{}:{}{}", b.scheme, b.host, b.port, b.base_path);
        let chat_url = format!("{base_url}{}", b.chat_path);
        Ok(Self {
            name: b.name.clone(),
            model: model.to_string(),
            chat_uri: chat_url.parse().map_err(|e| format!("{chat_url}: {e}"))?,
            chat_url,
            base_url,
            config: b.clone(),
            health: AtomicU8::new(Health::Unknown as u8),
            has_check,
            consecutive_5xx: AtomicU32::new(0),
            ejected_until: Mutex::new(None),
            ejections: AtomicU64::new(0),
            inflight: AtomicU32::new(0),
        })
    }

    /// Health from the active checker.
    pub fn health(&self) -> Health {
        match self.health.load(Ordering::Relaxed) {
            1 => Health::Healthy,
            2 => Health::Unhealthy,
            _ => Health::Unknown,
        }
    }

    pub(crate) fn set_health(&self, h: Health) {
        self.health.store(h as u8, Ordering::Relaxed);
    }

    /// Ejected by outlier detection right now.
    pub fn is_ejected(&self, now: Instant) -> bool {
        self.ejected_until.lock().is_some_and(|t| t > now)
    }

    /// Can take traffic: not ejected and not failing its health check.
    pub fn is_available(&self, now: Instant) -> bool {
        self.health() != Health::Unhealthy && !self.is_ejected(now)
    }

    /// Counts for `/ready`: healthy by check, or presumed healthy without one.
    pub fn is_ready(&self, now: Instant) -> bool {
        let h = self.health();
        let by_check = if self.has_check {
            h == Health::Healthy
        } else {
            h != Health::Unhealthy
        };
        by_check && !self.is_ejected(now)
    }

    /// Times this backend was ejected.
    pub fn ejections(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }

    /// Requests in flight.
    pub fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Marks one request in flight until the guard drops.
    pub(crate) fn start(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard(self.clone())
    }

    fn key(&self) -> (String, String) {
        (self.name.clone(), self.chat_url.clone())
    }
}

/// Decrements the in-flight count on drop.
#[derive(Debug)]
pub(crate) struct InflightGuard(Arc<BackendState>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The backends of one logical model.
#[derive(Debug)]
pub struct Pool {
    /// Logical model name.
    pub model: String,
    /// Its backends in declaration order.
    pub backends: Vec<Arc<BackendState>>,
    /// Reliability knobs.
    pub reliability: Reliability,
    rr: AtomicUsize,
}

/// What outlier detection did with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ejection {
    /// Nothing.
    None,
    /// The backend was ejected for this long.
    Ejected(Duration),
}

impl Pool {
    /// Picks a backend not in `tried`, preferring available ones; when every untried backend
    /// is down, picks among them anyway (a request is better tried than refused).
    pub fn pick(&self, tried: &[usize]) -> Option<usize> {
        // One backend (the common model lane): the only choice unless it was tried, whether
        // available or not.
        if self.backends.len() == 1 {
            return (!tried.contains(&0)).then_some(0);
        }
        let now = Instant::now();
        let untried: Vec<usize> = (0..self.backends.len())
            .filter(|i| !tried.contains(i))
            .collect();
        let available: Vec<usize> = untried
            .iter()
            .copied()
            .filter(|i| self.backends[*i].is_available(now))
            .collect();
        let candidates = if available.is_empty() {
            untried
        } else {
            available
        };
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0]),
            _ => Some(self.choose(&candidates)),
        }
    }

    fn weight(&self, i: usize) -> u64 {
        u64::from(self.backends[i].config.weight.max(1))
    }

    fn choose(&self, c: &[usize]) -> usize {
        let total: u64 = c.iter().map(|i| self.weight(*i)).sum();
        let by_ticket = |mut t: u64| {
            for i in c {
                let w = self.weight(*i);
                if t < w {
                    return *i;
                }
                t -= w;
            }
            c[c.len() - 1]
        };
        match self.reliability.lb_policy {
            LbPolicy::RoundRobin => {
                let n = self.rr.fetch_add(1, Ordering::Relaxed) as u64;
                by_ticket(n % total)
            }
            LbPolicy::Random => by_ticket(fastrand::u64(0..total)),
            LbPolicy::LeastRequest => {
                // Fewest requests in flight per unit of weight; ties broken by weight. Pools
                // are small (a handful of backends), so a full scan beats sampling two.
                let load =
                    |i: usize| f64::from(self.backends[i].inflight()) / self.weight(i) as f64;
                let min = c.iter().map(|i| load(*i)).fold(f64::INFINITY, f64::min);
                let tied: Vec<usize> = c.iter().copied().filter(|i| load(*i) <= min).collect();
                let total: u64 = tied.iter().map(|i| self.weight(*i)).sum();
                let mut t = fastrand::u64(0..total.max(1));
                for i in &tied {
                    let w = self.weight(*i);
                    if t < w {
                        return *i;
                    }
                    t -= w;
                }
                tied[0]
            }
        }
    }

    /// Records a response status (or a connection failure as `None`) for outlier detection.
    pub fn observe(&self, i: usize, status: Option<u16>) -> Ejection {
        let b = &self.backends[i];
        let failed = status.is_none_or(|s| s >= 500);
        if !failed {
            b.consecutive_5xx.store(0, Ordering::Relaxed);
            return Ejection::None;
        }
        let n = b.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
        let limit = self.reliability.consecutive_5xx;
        if limit == 0 || n < limit {
            return Ejection::None;
        }
        let now = Instant::now();
        let ejected = self.backends.iter().filter(|x| x.is_ejected(now)).count();
        let total = self.backends.len();
        // Envoy's rule: max_ejection_percent caps ejections, but one may always be ejected.
        let allowed = ejected == 0
            || (ejected + 1) * 100 <= total * self.reliability.max_ejection_percent as usize;
        if !allowed || b.is_ejected(now) {
            return Ejection::None;
        }
        let times = b.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let secs = self.reliability.base_ejection_secs.max(0.0) * times.min(10) as f64;
        let d = Duration::from_secs_f64(secs);
        *b.ejected_until.lock() = Some(now + d);
        b.consecutive_5xx.store(0, Ordering::Relaxed);
        Ejection::Ejected(d)
    }
}

/// Every model's pool.
#[derive(Debug, Default)]
pub struct Upstreams {
    pools: Vec<Option<Pool>>,
}

impl Upstreams {
    /// Builds pools from a config, carrying over the state of unchanged backends of `previous`.
    pub fn build(config: &RouterConfig, previous: Option<&Upstreams>) -> Self {
        let mut old: HashMap<(String, String), Arc<BackendState>> = HashMap::new();
        if let Some(p) = previous {
            for b in p.all() {
                old.insert(b.key(), b.clone());
            }
        }
        let pools = config
            .models
            .iter()
            .map(|m| {
                let provider = m.provider.as_ref()?;
                if provider.backends.is_empty() {
                    return None;
                }
                let has_check = provider.reliability.health_check_path.is_some();
                let backends = provider
                    .backends
                    .iter()
                    .filter_map(|b| {
                        let fresh = match BackendState::new(&m.card.name, b, has_check) {
                            Ok(f) => f,
                            Err(e) => {
                                tracing::error!(backend = %b.name, "invalid backend URL, backend skipped: {e}");
                                return None;
                            }
                        };
                        Some(match old.get(&fresh.key()) {
                            Some(prev) if prev.config == *b && prev.has_check == has_check => {
                                prev.clone()
                            }
                            _ => Arc::new(fresh),
                        })
                    })
                    .collect();
                Some(Pool {
                    model: m.card.name.clone(),
                    backends,
                    reliability: provider.reliability.clone(),
                    rr: AtomicUsize::new(0),
                })
            })
            .collect();
        Self { pools }
    }

    /// The pool of a model (`None`: the model has no backends).
    pub fn pool(&self, id: ModelId) -> Option<&Pool> {
        self.pools.get(id.0 as usize).and_then(Option::as_ref)
    }

    /// Every pool.
    pub fn pools(&self) -> impl Iterator<Item = &Pool> {
        self.pools.iter().flatten()
    }

    /// Every backend.
    pub fn all(&self) -> impl Iterator<Item = &Arc<BackendState>> {
        self.pools().flat_map(|p| p.backends.iter())
    }

    /// At least one backend can take traffic (the `/ready` rule).
    pub fn any_ready(&self) -> bool {
        let now = Instant::now();
        self.all().any(|b| b.is_ready(now))
    }
}
