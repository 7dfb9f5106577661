//! Embedding benchmark (run in release): single-text latency p50/p99 at fixed token lengths,
//! throughput at several concurrency levels through the async [`Embedder`] handle, model load
//! time and resident memory. `scripts/bench/embed.sh` runs it next to onnxruntime and
//! PyTorch on the same texts (`--write-texts` shares them).
//!
//! ```text
//! cargo run --release -p vllm-sr-models --example embed_bench -- \
//!     [--model REF] [--precision f32|q8] [--kernel auto|candle|packed|openblas] \
//!     [--no-bucketing] [--iters 40] \
//!     [--lengths 16,64,128,256,512] [--concurrency 1,4,16] [--seconds 4] \
//!     [--write-texts FILE] [--json FILE] [--intra-threads N] [--workers N]
//! ```

#![allow(
    clippy::disallowed_methods,
    reason = "benchmark callers are plain tasks joined before exit"
)]

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use vllm_sr_models::{
    CpuKernel, Embedder, EmbeddingModel, LoadOptions, ModelRegistry, Precision, RuntimeOptions,
    DEFAULT_EMBEDDING_MODEL,
};

const WORDS: &[&str] = &[
    "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven",
    "bright", "students", "read", "about", "history", "science", "and", "music", "in", "old",
    "library", "near", "river", "city", "during", "long", "winter", "night", "with", "friends",
];

struct Args {
    model: String,
    precision: Precision,
    kernel: CpuKernel,
    bucketing: bool,
    iters: usize,
    lengths: Vec<usize>,
    concurrency: Vec<usize>,
    seconds: f64,
    write_texts: Option<String>,
    json: Option<String>,
    intra: Option<usize>,
    workers: usize,
}

fn parse_list(s: &str) -> anyhow::Result<Vec<usize>> {
    s.split(',')
        .map(|x| x.trim().parse::<usize>().context("bad number"))
        .collect()
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        model: DEFAULT_EMBEDDING_MODEL.to_owned(),
        precision: Precision::F32,
        kernel: CpuKernel::Auto,
        bucketing: true,
        iters: 40,
        lengths: vec![16, 64, 128, 256, 512],
        concurrency: vec![1, 4, 16],
        seconds: 4.0,
        write_texts: None,
        json: None,
        intra: None,
        workers: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => a.model = value()?,
            "--precision" => a.precision = value()?.parse()?,
            "--kernel" => a.kernel = value()?.parse()?,
            "--no-bucketing" => a.bucketing = false,
            "--iters" => a.iters = value()?.parse()?,
            "--lengths" => a.lengths = parse_list(&value()?)?,
            "--concurrency" => a.concurrency = parse_list(&value()?)?,
            "--seconds" => a.seconds = value()?.parse()?,
            "--write-texts" => a.write_texts = Some(value()?),
            "--json" => a.json = Some(value()?),
            "--intra-threads" => a.intra = Some(value()?.parse()?),
            "--workers" => a.workers = value()?.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

/// A text of exactly `n` tokens (specials included) for this tokenizer.
fn text_of_len(model: &EmbeddingModel, n: usize, salt: usize) -> anyhow::Result<String> {
    let mut words: Vec<&str> = (0..n.saturating_sub(2))
        .map(|i| WORDS[(i * 7 + salt) % WORDS.len()])
        .collect();
    loop {
        let text = words.join(" ");
        let count = model.tokenizer().count(&text)?;
        if count == n {
            return Ok(text);
        }
        if count > n && !words.is_empty() {
            words.pop();
        } else {
            bail!("cannot build a {n}-token text (got {count})");
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Process CPU time (user + system, all threads) in ms, from `/proc/self/stat` (100 Hz ticks).
fn cpu_ms() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the `(comm)` part; utime and stime are fields 14 and 15 overall.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ut = f.get(11)?.parse::<f64>().ok()?;
            let st = f.get(12)?.parse::<f64>().ok()?;
            Some((ut + st) * 10.0)
        })
        .unwrap_or(f64::NAN)
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let mut out = std::io::stdout().lock();
    let resolved = ModelRegistry::from_env().resolve(&args.model)?;
    let max_len = args.lengths.iter().copied().max().unwrap_or(512).max(64);
    let load = LoadOptions {
        precision: args.precision,
        cpu_kernel: args.kernel,
        length_bucketing: args.bucketing,
        max_seq_length: Some(max_len),
        ..LoadOptions::default()
    };
    let rss_before = rss_mb();
    let t0 = Instant::now();
    let model = EmbeddingModel::load(&resolved.id, &resolved.dir, &load)?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let threads = match args.intra {
        Some(n) => format!("pool:{n}"),
        None => std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into()),
    };
    writeln!(
        out,
        "model {} kernel {:?} precision {:?} bucketing {} threads {threads} load {load_ms:.1} ms, RSS {rss_before:.0} -> {:.0} MB",
        resolved.id,
        args.kernel.resolve(),
        args.precision,
        args.bucketing,
        rss_mb()
    )?;

    let texts: Vec<(usize, String)> = args
        .lengths
        .iter()
        .map(|&n| Ok((n, text_of_len(&model, n, 0)?)))
        .collect::<anyhow::Result<_>>()?;
    let short: Vec<String> = (0..64)
        .map(|i| text_of_len(&model, 12 + (i * 5) % 40, i))
        .collect::<anyhow::Result<_>>()?;
    if let Some(path) = &args.write_texts {
        let json = serde_json::json!({
            "lengths": texts.iter().map(|(n, t)| (n.to_string(), serde_json::Value::from(t.clone()))).collect::<serde_json::Map<String, serde_json::Value>>(),
            "throughput": short,
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)?)?;
    }

    let embedder = Embedder::serve(
        model,
        RuntimeOptions {
            cache_capacity: 0,
            timeout: Duration::from_secs(120),
            intra_op_threads: args.intra,
            workers: args.workers,
            ..RuntimeOptions::default()
        },
    )?;
    let mut latency = Vec::new();
    for (n, text) in &texts {
        let warm = 3;
        let mut ms = Vec::with_capacity(args.iters);
        let mut cpu0 = cpu_ms();
        for i in 0..args.iters + warm {
            if i == warm {
                cpu0 = cpu_ms();
            }
            let t = Instant::now();
            let v = embedder.embed_blocking(vec![text.clone()])?;
            let dt = t.elapsed().as_secs_f64() * 1e3;
            if v.first().map(vllm_sr_models::Embedding::dims) != Some(embedder.dims()) {
                bail!("bad output");
            }
            if i >= warm {
                ms.push(dt);
            }
        }
        #[expect(clippy::cast_precision_loss)]
        let cpu = (cpu_ms() - cpu0) / args.iters.max(1) as f64;
        ms.sort_by(f64::total_cmp);
        let (p50, p99) = (percentile(&ms, 0.5), percentile(&ms, 0.99));
        writeln!(
            out,
            "latency {n:>4} tok: p50 {p50:8.2} ms  p99 {p99:8.2} ms  cpu {cpu:8.2} ms/call"
        )?;
        latency.push(serde_json::json!({"tokens": n, "p50_ms": p50, "p99_ms": p99, "cpu_ms": cpu}));
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut throughput = Vec::new();
    for &c in &args.concurrency {
        let deadline = Duration::from_secs_f64(args.seconds);
        let cpu0 = cpu_ms();
        let done = rt.block_on(async {
            let start = Instant::now();
            let mut tasks = Vec::new();
            for w in 0..c {
                let e = embedder.clone();
                let short = short.clone();
                tasks.push(tokio::task::spawn(async move {
                    let mut n = 0usize;
                    let mut i = w;
                    while start.elapsed() < deadline {
                        let text = short[i % short.len()].clone();
                        if e.embed(vec![text]).await.is_ok() {
                            n += 1;
                        }
                        i += c;
                    }
                    n
                }));
            }
            let mut total = 0;
            for t in tasks {
                total += t.await.unwrap_or(0);
            }
            (total, start.elapsed())
        });
        #[expect(clippy::cast_precision_loss)]
        let (rate, cpu) = (
            done.0 as f64 / done.1.as_secs_f64(),
            (cpu_ms() - cpu0) / done.0.max(1) as f64,
        );
        writeln!(
            out,
            "throughput c={c:>2}: {rate:8.1} texts/s  cpu {cpu:6.2} ms/text (12-51 tokens)"
        )?;
        throughput.push(
            serde_json::json!({"concurrency": c, "texts_per_s": rate, "cpu_ms_per_text": cpu}),
        );
    }
    let rss = rss_mb();
    writeln!(out, "RSS after run {rss:.0} MB")?;
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "backend": format!("candle-{:?}{}", args.precision, if args.bucketing {""} else {"-nobucket"}),
            "kernel": format!("{:?}", args.kernel.resolve()),
            "threads": threads, "load_ms": load_ms, "rss_mb": rss,
            "latency": latency, "throughput": throughput,
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)?)?;
    }
    Ok(())
}
