//! Backend handling end to end: active health checks and `/ready`, load-balancing weights and
//! policies, provider credentials, reasoning-effort injection.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use common::*;

#[tokio::test]
async fn health_checks_steer_traffic_and_drive_ready() {
    let m = mocks(2).await;
    let yaml = one_model(
        "{lb_policy: round_robin, health_check_path: /health, health_check_interval: 50ms, health_check_timeout: 1s}",
        &format!("[{{name: a, endpoint: \"{}\"}}, {{name: b, endpoint: \"{}\"}}]", m[0].endpoint(), m[1].endpoint()),
        "",
    );
    let (gw, _dir) = start_yaml(&yaml).await;
    let addr = gw.listeners()[0].addr;
    let client = reqwest::Client::new();
    let ready = |c: reqwest::Client| async move {
        c.get(format!("http://{addr}/ready"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert!(eventually(|| m[0].health_checks() > 0 && m[1].health_checks() > 0).await);
    assert!(eventually(|| gw.live().upstreams.any_ready()).await);
    assert_eq!(ready(client.clone()).await, 200);

    m[0].set(|b| b.health_status = 503);
    let checks = m[0].health_checks();
    assert!(eventually(|| m[0].health_checks() > checks + 1).await);
    let before = m[0].served();
    for _ in 0..6 {
        assert_eq!(post(&client, addr, &hello()).await.status(), 200);
    }
    assert_eq!(
        m[0].served(),
        before,
        "an unhealthy backend gets no traffic"
    );
    assert_eq!(m[1].served(), 6);

    m[1].set(|b| b.health_status = 500);
    let checks = m[1].health_checks();
    assert!(eventually(|| m[1].health_checks() > checks + 1).await);
    assert_eq!(
        ready(client.clone()).await,
        503,
        "no healthy backend: not ready"
    );

    m[0].set(|b| b.health_status = 200);
    let checks = m[0].health_checks();
    assert!(eventually(|| m[0].health_checks() > checks + 1).await);
    assert_eq!(ready(client.clone()).await, 200, "recovered");
}

#[tokio::test]
async fn weights_shape_round_robin_and_random() {
    let m = mocks(2).await;
    let backends = format!(
        "[{{name: a, endpoint: \"{}\", weight: 3}}, {{name: b, endpoint: \"{}\", weight: 1}}]",
        m[0].endpoint(),
        m[1].endpoint()
    );
    let (gw, _dir) = start_yaml(&one_model("{lb_policy: round_robin}", &backends, "")).await;
    let client = reqwest::Client::new();
    for _ in 0..40 {
        post(&client, gw.listeners()[0].addr, &hello()).await;
    }
    assert_eq!(
        (m[0].served(), m[1].served()),
        (30, 10),
        "round robin honours 3:1 weights exactly"
    );

    let (gw, _dir) = start_yaml(&one_model("{lb_policy: random}", &backends, "")).await;
    for _ in 0..200 {
        post(&client, gw.listeners()[0].addr, &hello()).await;
    }
    let a = m[0].served() - 30;
    assert!(
        (120..=180).contains(&a),
        "random picks a about 3/4 of the time ({a}/200)"
    );
}

#[tokio::test]
async fn least_request_prefers_the_idle_backend() {
    let m = mocks(2).await;
    m[0].set(|b| b.latency = std::time::Duration::from_millis(300));
    let backends = format!(
        "[{{name: a, endpoint: \"{}\"}}, {{name: b, endpoint: \"{}\"}}]",
        m[0].endpoint(),
        m[1].endpoint()
    );
    let (gw, _dir) = start_yaml(&one_model("{lb_policy: least_request}", &backends, "")).await;
    let addr = gw.listeners()[0].addr;
    let client = reqwest::Client::new();
    // Keep four slow requests in flight on a, then send more sequentially.
    let body = hello();
    let slow: Vec<_> = (0..4).map(|_| post(&client, addr, &body)).collect();
    let fast = async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        for _ in 0..20 {
            post(&client, addr, &body).await;
        }
    };
    let _ = tokio::join!(futures_util::future::join_all(slow), fast);
    assert!(
        m[1].served() >= 16,
        "the idle backend took most of the later requests (b {})",
        m[1].served()
    );
}

#[tokio::test]
async fn provider_key_replaces_the_client_credential_and_effort_is_injected() {
    let m = mocks(1).await;
    let backends = format!(
        "[{{name: a, endpoint: \"{}\", api_key: sk-backend, extra_headers: {{x-org: acme}}}}]",
        m[0].endpoint()
    );
    let (gw, _dir) = start_yaml(&one_model(
        "{}",
        &backends,
        "      reasoning_family: effort",
    ))
    .await;
    let client = reqwest::Client::new();
    let mut body = hello();
    body["reasoning_effort"] = serde_json::json!("minimal");
    let r = client
        .post(format!(
            "http://{}/v1/chat/completions",
            gw.listeners()[0].addr
        ))
        .header("authorization", "Bearer client-token")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sent = m[0].last().unwrap();
    assert_eq!(sent.header("authorization"), Some("Bearer sk-backend"));
    assert_eq!(sent.header("x-org"), Some("acme"));
    assert_eq!(sent.body["model"], "org/model-m");
    // vLLM dialect: the effort goes into chat_template_kwargs; the client's top-level one is removed.
    assert_eq!(
        sent.body["chat_template_kwargs"]["reasoning_effort"],
        "high"
    );
    assert!(sent.body.get("reasoning_effort").is_none());
}

/// Request bodies a raw backend received, as bytes.
type Bodies = std::sync::Arc<parking_lot::Mutex<Vec<Vec<u8>>>>;

/// A backend on a raw socket that answers every request with `answer`, as written, and
/// keeps the request bodies; it runs on the returned tracker's tasks.
async fn raw_backend(answer: &'static [u8]) -> (String, tokio_util::task::TaskTracker, Bodies) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    let tasks = tokio_util::task::TaskTracker::new();
    let bodies = Bodies::default();
    let (t, seen) = (tasks.clone(), bodies.clone());
    tasks.spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let seen = seen.clone();
            t.spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request: its head, then `content-length` bytes of body.
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    while buf.len() < end + 4 + len {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let request: Vec<u8> = buf.drain(..end + 4 + len).collect();
                    seen.lock().push(request[end + 4..].to_vec());
                    if conn.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (endpoint, tasks, bodies)
}

#[tokio::test]
async fn hop_by_hop_headers_stay_on_their_hop_and_framing_is_the_routers() {
    let completion = r#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}"#;
    let sized: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: keep-alive\r\n\
             keep-alive: timeout=5\r\nx-backend: raw\r\nx-vsr-selected-model: not-the-router\r\n\
             content-length: {}\r\n\r\n{completion}",
            completion.len()
        )
        .into_boxed_str(),
    );
    // The same body chunked, in two chunks, with a trailer.
    let (a, b) = completion.split_at(10);
    let chunked: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\
             trailer: x-t\r\nx-backend: raw\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\nx-t: 1\r\n\r\n",
            a.len(),
            b.len()
        )
        .into_boxed_str(),
    );
    for answer in [sized, chunked] {
        let (endpoint, _tasks, _) = raw_backend(answer.as_bytes()).await;
        let backends = format!("[{{name: a, endpoint: \"{endpoint}\"}}]");
        let (gw, _dir) = start_yaml(&one_model("{}", &backends, "")).await;
        let client = reqwest::Client::new();
        // Twice: the second goes over the pooled connection.
        for _ in 0..2 {
            let r = post(&client, gw.listeners()[0].addr, &hello()).await;
            assert_eq!(r.status(), 200);
            let h = r.headers().clone();
            assert_eq!(h["x-backend"], "raw", "{answer}");
            // The router's header replaces one of the same name from the backend.
            let models: Vec<_> = h.get_all("x-vsr-selected-model").iter().collect();
            assert_eq!(models, ["m"], "{answer}");
            for hop in ["keep-alive", "trailer", "x-t"] {
                assert!(!h.contains_key(hop), "{hop} relayed: {h:?}");
            }
            assert_ne!(
                h.get("connection").map(|v| v.to_str().unwrap()),
                Some("keep-alive")
            );
            let text = r.text().await.unwrap();
            assert_eq!(text, completion, "{answer}");
        }
    }
}

#[tokio::test]
async fn a_long_conversation_goes_on_as_the_client_wrote_it_unless_the_rewrite_changed_it() {
    let answer =
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
    let (endpoint, _tasks, bodies) = raw_backend(answer).await;
    let backends = format!("[{{name: a, endpoint: \"{endpoint}\"}}]");
    let plain = one_model("{}", &backends, "");
    let with_prompt = plain.replace(
        "      modelRefs: [",
        "      plugins:\n        - type: system_prompt\n          configuration: {system_prompt: \"Be careful.\", mode: insert}\n      modelRefs: [",
    );
    // Over 4 KiB, with an escape and spacing that serialising again would not keep.
    let history = "lorem ipsum ".repeat(600);
    let messages = format!(
        "[ {{\"role\": \"user\", \"content\": \"caf\\u00e9 {history}\"}} ,\n  {{\"role\":\"assistant\",\"content\":\"ok\"}}, {{\"role\":\"user\",\"content\":\"next\"}} ]"
    );
    let body = format!("{{\"model\": \"auto\", \"messages\": {messages}, \"temperature\": 0.5}}");
    for (yaml, kept) in [(plain, true), (with_prompt, false)] {
        let (gw, _dir) = start_yaml(&yaml).await;
        let r = reqwest::Client::new()
            .post(format!(
                "http://{}/v1/chat/completions",
                gw.listeners()[0].addr
            ))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let sent = bodies.lock().pop().unwrap();
        let text = String::from_utf8(sent).unwrap();
        assert_eq!(text.contains(&messages), kept, "{}", &text[..200]);
        let forwarded: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(forwarded["model"], "org/model-m");
        assert_eq!(forwarded["temperature"], 0.5);
        let first = &forwarded["messages"][0];
        if kept {
            assert!(first["content"].as_str().unwrap().starts_with("café lorem"));
        } else {
            assert_eq!(first["role"], "system");
            assert_eq!(first["content"], "Be careful.");
            assert!(forwarded["messages"][1]["content"]
                .as_str()
                .unwrap()
                .starts_with("café lorem"));
        }
    }
}
