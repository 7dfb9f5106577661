//! `mock-openai`: the test backend as a standalone server, for benchmarks and the README
//! quick start when no real OpenAI-compatible backend is at hand.
//!
//! Usage: `mock-openai [--listen 127.0.0.1:8090] [--latency-ms N] [--chunks N] [--chunk-delay-ms N] [--name NAME]`

#![expect(clippy::print_stdout, clippy::print_stderr, reason = "a tiny CLI")]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use vllm_sr_testkit::{Behavior, MockBackend};

const USAGE: &str =
    "usage: mock-openai [--listen ADDR] [--latency-ms N] [--chunks N] [--chunk-delay-ms N] [--name NAME]";

fn parse() -> Result<(SocketAddr, Behavior), String> {
    let mut listen = "127.0.0.1:8090".to_string();
    let mut b = Behavior::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = || {
            value
                .parse::<u64>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--listen" => listen = value.clone(),
            "--latency-ms" => b.latency = Duration::from_millis(num()?),
            "--chunk-delay-ms" => b.chunk_delay = Duration::from_millis(num()?),
            "--chunks" => b.chunks = num()? as usize,
            "--name" => b.name = value.clone(),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    let addr = listen
        .parse()
        .map_err(|e| format!("--listen {listen}: {e}"))?;
    Ok((addr, b))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let (addr, behavior) = match parse() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("mock-openai: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mock = match MockBackend::start_on(addr, behavior, false).await {
        Ok(m) => m,
        Err(e) => {
            eprintln!("mock-openai: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    println!("mock-openai listening on http://{}", mock.addr());
    let _ = tokio::signal::ctrl_c().await;
    mock.shutdown().await;
    ExitCode::SUCCESS
}
