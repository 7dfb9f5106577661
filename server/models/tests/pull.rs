//! `ModelRegistry::pull` against a local HTTP server that mimics the hub's
//! `/{repo}/resolve/{revision}/{file}` layout (no network needed).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;

use vllm_sr_models::{EmbeddingModel, LoadOptions, ModelError, ModelRegistry, PullOptions};

/// Serves `files` (URL path → body) until the test process ends; 401 for `/gated/...`.
fn serve(files: HashMap<String, Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let files = Arc::new(files);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(200) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                    break;
                }
            }
            let (status, body) = if path.starts_with("/gated/") {
                ("401 Unauthorized", Vec::new())
            } else {
                match files.get(&path) {
                    Some(b) => ("200 OK", b.clone()),
                    None => ("404 Not Found", Vec::new()),
                }
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    format!("http://{addr}")
}

#[test]
fn pull_downloads_a_loadable_model_and_skips_missing_optional_files() {
    let src = tempfile::tempdir().unwrap();
    let dir = common::write_tiny_bert(src.path(), &[], false);
    common::write_sentence_transformers(&dir, true, 32);
    let mut files = HashMap::new();
    for name in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    ] {
        files.insert(
            format!("/acme/tiny/resolve/main/{name}"),
            std::fs::read(dir.join(name)).unwrap(),
        );
    }
    let endpoint = serve(files);
    let models = tempfile::tempdir().unwrap();
    let registry = ModelRegistry::new(models.path().to_path_buf(), vec![]);
    assert!(matches!(
        registry.resolve("acme/tiny"),
        Err(ModelError::NotFound { .. })
    ));
    let options = PullOptions {
        endpoint: endpoint.clone(),
        revision: "main".into(),
        token: None,
        progress: false,
    };
    let pulled = registry.pull("acme/tiny", &options).unwrap();
    assert_eq!(pulled.dir, models.path().join("acme/tiny"));
    assert!(pulled.dir.join("1_Pooling/config.json").is_file());
    assert!(
        !pulled.dir.join("vocab.txt").exists(),
        "404 optional files are skipped"
    );
    assert!(!pulled.dir.join("model.part").exists());
    let resolved = registry.resolve("acme/tiny").unwrap();
    let model = EmbeddingModel::load(&resolved.id, &resolved.dir, &LoadOptions::default()).unwrap();
    assert_eq!(model.max_seq_length(), 32);
    assert_eq!(model.embed(&["the cat"]).unwrap()[0].dims(), common::HIDDEN);
    // Pulling again is a no-op that still succeeds.
    registry.pull("acme/tiny", &options).unwrap();

    let err = registry.pull("acme/absent", &options).unwrap_err();
    assert!(err.to_string().contains("config.json not found"), "{err}");
    let err = registry.pull("gated/model", &options).unwrap_err();
    assert!(err.to_string().contains("HF_TOKEN"), "{err}");
    assert!(registry.pull("../escape", &options).is_err());
}
