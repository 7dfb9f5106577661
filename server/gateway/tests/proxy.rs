//! End-to-end tests of the data plane through real listeners: a keyword-only recipe (no model
//! needed) in front of mock OpenAI backends that speak the real protocol.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "tests"
)]

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use vllm_sr_gateway::Limits;

#[tokio::test]
async fn routes_by_decision_and_rewrites_the_body() {
    let s = setup().await;
    let r = s
        .chat(ask("auto", "Please prove that sqrt(2) is irrational"))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-vsr-selected-decision"), "reasoning");
    assert_eq!(header(&r, "x-vsr-selected-model"), "thinker");
    assert_eq!(header(&r, "x-vsr-selected-reasoning"), "on");
    assert_eq!(header(&r, "x-vsr-injected-system-prompt"), "true");
    assert!(!header(&r, "x-request-id").is_empty());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert!(body["usage"]["total_tokens"].as_u64().unwrap() > 0);

    let sent = s
        .think_a
        .last()
        .or_else(|| s.think_b.last())
        .expect("a thinker backend got it");
    assert_eq!(sent.body["model"], "Qwen/Qwen3-8B");
    assert_eq!(sent.body["chat_template_kwargs"]["enable_thinking"], true);
    assert_eq!(
        sent.body["messages"][0],
        json!({"role": "system", "content": "You are careful."})
    );
    assert_eq!(sent.body["temperature"], 0.2);
    assert_eq!(
        sent.body["x_vendor_field"],
        json!({"keep": true}),
        "unknown fields pass through"
    );
    assert_eq!(sent.header("x-lane"), Some("reasoning"));
    assert_eq!(sent.header("x-selected-model"), Some("thinker"));
    assert!(s.fast.last().is_none());

    let r = s.chat(ask("MoM", "what is the capital of France?")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-vsr-selected-decision"), "everyday");
    assert_eq!(header(&r, "x-vsr-selected-reasoning"), "off");
    assert_eq!(header(&r, "x-vsr-injected-system-prompt"), "false");
    let sent = s.fast.last().unwrap();
    assert_eq!(sent.body["model"], "Qwen/Qwen3-1.7B");
    assert!(sent.body.get("chat_template_kwargs").is_none());
}

#[tokio::test]
async fn explicit_model_bypasses_routing_and_debug_headers_list_signals() {
    let s = setup().await;
    let r = s.chat(ask("fast", "please prove it")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-vsr-selected-model"), "fast");
    assert_eq!(header(&r, "x-vsr-selected-decision"), "");
    assert_eq!(s.fast.last().unwrap().body["model"], "Qwen/Qwen3-1.7B");

    let r = s
        .chat_with(
            ask("auto", "step by step please"),
            &[("x-vsr-debug", "true"), ("x-request-id", "req-42")],
        )
        .await;
    assert_eq!(header(&r, "x-vsr-matched-keywords"), "reasoning_kw");
    assert_eq!(header(&r, "x-request-id"), "req-42");
    assert!(!header(&r, "x-vsr-context-token-count").is_empty());
    assert_eq!(
        s.think_a
            .last()
            .or_else(|| s.think_b.last())
            .unwrap()
            .header("x-request-id"),
        Some("req-42")
    );
}

#[tokio::test]
async fn streaming_relays_every_chunk_in_order_with_headers_first() {
    let s = setup().await;
    s.fast.set(|b| {
        b.chunks = 6;
        b.chunk_delay = Duration::from_millis(20);
    });
    let mut body = ask("auto", "hello there");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = s.chat(body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/event-stream");
    assert_eq!(header(&r, "x-vsr-selected-decision"), "everyday");
    let mut stream = r.bytes_stream();
    let mut text = String::new();
    let mut pieces = 0;
    while let Some(chunk) = stream.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        pieces += 1;
    }
    assert!(
        pieces > 1,
        "chunks arrive separately, not buffered ({pieces})"
    );
    let frames: Vec<&str> = text.split("\n\n").filter(|f| !f.is_empty()).collect();
    assert_eq!(frames.last(), Some(&"data: [DONE]"));
    let content: String = frames
        .iter()
        .filter_map(|f| f.strip_prefix("data: "))
        .filter(|f| *f != "[DONE]")
        .map(|f| serde_json::from_str::<Value>(f).unwrap())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(content, "fast-0 fast-1 fast-2 fast-3 fast-4 fast-5 ");
    assert!(
        frames.iter().any(|f| f.contains("\"usage\"")),
        "final usage chunk relayed"
    );
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_stream() {
    let s = setup().await;
    s.fast.set(|b| {
        b.chunks = 50;
        b.chunk_delay = Duration::from_millis(50);
    });
    let r = s.chat_stream("hello").await;
    let mut stream = r.bytes_stream();
    let _first = stream.next().await;
    drop(stream);
    let mut aborted = false;
    for _ in 0..40 {
        if s.fast.aborted_streams() == 1 {
            aborted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(aborted, "the backend saw the stream abandoned");
}

#[tokio::test]
async fn error_cases_are_openai_shaped_with_the_right_status() {
    let s = setup_with(Limits {
        max_concurrency: Some(1),
        ..limits()
    })
    .await;
    let raw = s
        .client
        .post(s.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(raw).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_json");

    let (status, body) = error_of(s.chat(json!({"model": "auto"})).await).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "messages");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("messages"));

    let (status, body) = error_of(s.chat(ask("gpt-9", "hi")).await).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "model_not_found");
    assert!(body["error"]["message"].as_str().unwrap().contains("auto"));

    let (status, _) = error_of(s.client.get(s.url("/v1/embeddings")).send().await.unwrap()).await;
    assert_eq!(status, 404);

    let big = "x".repeat(70 * 1024);
    let too_large = s.chat(ask("auto", &big)).await;
    // Its body was not read: the connection ends with this response, and says so.
    assert_eq!(header(&too_large, "connection"), "close");
    let (status, body) = error_of(too_large).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "request_too_large");

    // One slow request holds the only permit; the next is refused with 429. The second is
    // sent once the backend has the first (so the first holds the permit, however loaded
    // the machine), while the first still waits for its answer.
    s.fast.set(|b| b.latency = Duration::from_millis(1000));
    let before = s.fast.recorded().len();
    let slow = s.chat(ask("auto", "hi"));
    let second = async {
        assert!(
            s.fast
                .received_more_than(before, Duration::from_secs(5))
                .await
        );
        s.chat(ask("auto", "hi")).await
    };
    let (first, second) = tokio::join!(slow, second);
    assert_eq!(first.status(), 200);
    let (status, body) = error_of(second).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["type"], "rate_limit_error");

    // Listener timeout is 2 s: a backend slower than that is a 504 naming the backend.
    s.fast.set(|b| b.latency = Duration::from_secs(3));
    let (status, body) = error_of(s.chat(ask("auto", "hi")).await).await;
    assert_eq!(status, 504);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fast_primary"),
        "{body}"
    );
}

#[tokio::test]
async fn the_chat_path_is_matched_as_the_router_matches_it() {
    // Chat completions skip the router (`DataPlane`); every other request goes through it.
    let s = setup().await;
    let routed = s
        .client
        .post(s.url("/v1/chat/completions?trace=1"))
        .json(&ask("auto", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(routed.status(), 200);
    assert!(!header(&routed, "x-vsr-selected-model").is_empty());

    let get = s
        .client
        .get(s.url("/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);

    for path in [
        "/v1/chat/completions/",
        "/v1/chat/completionsx",
        "/V1/chat/completions",
    ] {
        let raw = s
            .client
            .post(s.url(path))
            .json(&ask("auto", "hi"))
            .send()
            .await
            .unwrap();
        let (status, body) = error_of(raw).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{path}");
    }
}

#[tokio::test]
async fn fast_response_answers_without_a_backend() {
    let s = setup().await;
    let r = s.chat(ask("auto", "ping the router please")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-vsr-fast-response"), "true");
    assert_eq!(header(&r, "x-vsr-selected-decision"), "canned");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "pong");
    assert_eq!(s.fast.served(), 0);
}

#[tokio::test]
async fn dead_backend_is_retried_then_ejected_and_a_502_names_the_backend() {
    let s = setup().await;
    // Backend a fails every request; round robin alternates, retries go to b.
    s.think_a.set(|b| {
        b.fail_status = 503;
        b.fail_count = 1000;
    });
    for _ in 0..6 {
        let r = s.chat(ask("auto", "prove it")).await;
        assert_eq!(r.status(), 200, "a retry on b hides a's failure");
    }
    let a_before = s.think_a.served();
    assert!(
        a_before <= 3,
        "a is ejected after 2 consecutive 5xx (served {a_before})"
    );
    for _ in 0..4 {
        assert_eq!(s.chat(ask("auto", "prove it")).await.status(), 200);
    }
    assert_eq!(
        s.think_a.served(),
        a_before,
        "no traffic to an ejected backend"
    );

    // With both down, the answer is a 502 that names the backend and the cause.
    s.think_b.set(|b| {
        b.fail_status = 500;
        b.fail_count = 1000;
    });
    let (status, body) = error_of(s.chat(ask("auto", "prove it")).await).await;
    assert_eq!(status, 502);
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("thinker_"), "{msg}");
    assert!(msg.contains("HTTP 50"), "{msg}");

    let metrics = s.metrics().await;
    assert!(
        metrics.contains("vsr_backend_ejections_total{backend=\"thinker_a\"} 1"),
        "{metrics}"
    );
    assert!(metrics
        .contains("vsr_requests_total{decision=\"reasoning\",model=\"thinker\",status=\"200\"}"));
    assert!(metrics.contains("llm_model_routing_latency_seconds_bucket"));
}

#[tokio::test]
async fn a_refused_connection_is_a_502_naming_the_backend() {
    let s = setup().await;
    // Stop the fast backend: its port now refuses connections.
    let Setup {
        gw, fast, client, ..
    } = s;
    fast.shutdown().await;
    let r = client
        .post(format!(
            "http://{}/v1/chat/completions",
            gw.listeners()[0].addr
        ))
        .json(&ask("auto", "hello"))
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(r).await;
    assert_eq!(status, 502);
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("fast_primary") && msg.contains("connection"),
        "{msg}"
    );
}

#[tokio::test]
async fn models_health_and_ready() {
    let s = setup().await;
    let models: Value = s
        .client
        .get(s.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    for want in ["auto", "MoM", "vllm-sr/auto", "fast", "thinker"] {
        assert!(ids.contains(&want), "{want} in {ids:?}");
    }
    assert_eq!(
        s.client
            .get(s.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        s.client.get(s.url("/ready")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn hot_reload_applies_a_valid_file_and_keeps_the_old_one_on_errors() {
    let s = setup().await;
    assert_eq!(
        s.chat(ask("auto", "use a whiteboard")).await.headers()["x-vsr-selected-decision"],
        "everyday"
    );
    std::fs::write(
        &s.path,
        recipe(
            &s.fast.endpoint(),
            &s.think_a.endpoint(),
            &s.think_b.endpoint(),
            ", whiteboard",
        ),
    )
    .unwrap();
    let mut generation = 1;
    for _ in 0..50 {
        generation = s.gw.live().generation;
        if generation == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(generation, 2, "the watcher reloaded the changed file");
    assert_eq!(
        s.chat(ask("auto", "use a whiteboard")).await.headers()["x-vsr-selected-decision"],
        "reasoning"
    );

    std::fs::write(&s.path, "version: v0.3\nrouting: [this is not valid\n").unwrap();
    let err =
        s.gw.reload()
            .await
            .expect_err("an invalid file is rejected");
    assert!(err.to_string().contains("not a valid recipe"), "{err}");
    assert_eq!(s.gw.live().generation, 2, "the old config keeps serving");
    assert_eq!(s.chat(ask("auto", "use a whiteboard")).await.status(), 200);
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let s = setup().await;
    s.fast.set(|b| b.latency = Duration::from_millis(500));
    let url = s.url("/v1/chat/completions");
    let client = s.client.clone();
    let before = s.fast.recorded().len();
    let in_flight =
        tokio::spawn(async move { client.post(url).json(&ask("auto", "hi")).send().await });
    // Shut down once the request is in flight (the backend has it), however loaded the
    // machine.
    assert!(
        s.fast
            .received_more_than(before, Duration::from_secs(5))
            .await
    );
    let Setup { gw, .. } = s;
    let addr = gw.listeners()[0].addr;
    assert!(
        gw.shutdown(Duration::from_secs(5)).await,
        "drained within the grace period"
    );
    let r = in_flight.await.unwrap().unwrap();
    assert_eq!(r.status(), 200, "the in-flight request completed");
    assert!(
        reqwest::get(format!("http://{addr}/health")).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn a_stream_cut_upstream_ends_the_client_stream_without_done() {
    let s = setup().await;
    s.fast.set(|b| {
        b.chunks = 6;
        b.chunk_delay = Duration::from_millis(20);
        b.cut_after = Some(2);
    });
    let r = s.chat_stream("hello").await;
    assert_eq!(r.status(), 200, "the head was already relayed");
    let (text, errored) = read_stream(r, Duration::from_secs(5)).await;
    assert!(
        text.contains("fast-0"),
        "chunks before the cut arrive: {text}"
    );
    assert!(!text.contains("[DONE]"), "no [DONE] after a cut");
    assert!(errored, "the client sees the stream fail, not a clean end");
}

#[tokio::test]
async fn every_io_thread_serves_its_share_of_connections() {
    let mock = mocks(1).await.remove(0);
    let yaml = one_model(
        "{}",
        &format!("[{{name: a, endpoint: \"{}\"}}]", mock.endpoint()),
        "",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("recipe.yaml");
    std::fs::write(&path, yaml).unwrap();
    let gw = vllm_sr_gateway::Gateway::start(vllm_sr_gateway::ServeOptions {
        listen: Some(vec!["127.0.0.1:0".parse().unwrap()]),
        io_threads: 3,
        ..vllm_sr_gateway::ServeOptions::new(path, limits())
    })
    .await
    .unwrap();
    assert_eq!(gw.io_threads(), 3);
    let addr = gw.listeners()[0].addr;
    // Nine connections dealt round robin: three per thread, all answered, concurrently.
    let calls = (0..9).map(|_| async move {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        post(&client, addr, &hello()).await.status()
    });
    let statuses = tokio::time::timeout(
        Duration::from_secs(10),
        futures_util::future::join_all(calls),
    )
    .await
    .expect("every I/O thread answers its connections");
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(mock.served(), 9);
    assert!(gw.shutdown(Duration::from_secs(5)).await, "drains cleanly");
}

/// A client that opens with the HTTP/2 preface (prior knowledge) is served over h2: routed
/// chat completions with their headers, streaming, and the router's other paths.
#[tokio::test]
async fn an_h2_prior_knowledge_client_is_served() {
    let s = setup().await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2
        .post(s.url("/v1/chat/completions"))
        .json(&ask("auto", "Please prove that sqrt(2) is irrational"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-vsr-selected-decision"), "reasoning");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");

    let mut streamed = ask("auto", "what is the capital of France?");
    streamed["stream"] = json!(true);
    let r = h2
        .post(s.url("/v1/chat/completions"))
        .json(&streamed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-vsr-selected-decision"), "everyday");
    let text = r.text().await.unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");

    let r = h2.get(s.url("/v1/models")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let r = h2.get(s.url("/v1/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn roles_from_identity_headers_route_and_other_headers_do_not() {
    let m = mocks(2).await;
    let yaml = format!(
        r#"
version: v0.3
providers:
  defaults: {{default_model: general}}
  models:
    - name: general
      backend_refs: [{{name: a, endpoint: "{}"}}]
    - name: premium
      backend_refs: [{{name: b, endpoint: "{}"}}]
routing:
  modelCards: [{{name: general}}, {{name: premium}}]
  signals:
    role_bindings:
      - name: staff
        role: premium_user
        subjects: [{{kind: User, name: alice}}, {{kind: Group, name: research}}]
  decisions:
    - name: premium_lane
      priority: 200
      rules: {{operator: OR, conditions: [{{type: authz, name: premium_user}}]}}
      modelRefs: [{{model: premium}}]
    - name: everyone
      priority: 100
      rules: {{operator: AND, conditions: []}}
      modelRefs: [{{model: general}}]
"#,
        m[0].endpoint(),
        m[1].endpoint()
    );
    let (gw, _dir) = start_yaml(&yaml).await;
    let client = reqwest::Client::new();
    let addr = gw.listeners()[0].addr;
    let send = |headers: &'static [(&'static str, &'static str)]| {
        let mut req = client
            .post(format!("http://{addr}/v1/chat/completions"))
            .json(&ask("auto", "hello"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send()
    };
    for (headers, decision) in [
        (&[("x-authz-user-id", "alice")][..], "premium_lane"),
        (
            &[
                ("X-Authz-User-Id", "bob"),
                ("x-authz-user-groups", "ops, research"),
            ][..],
            "premium_lane",
        ),
        (&[("x-authz-user-id", "bob")][..], "everyone"),
        // A header of the same value under another name grants nothing.
        (
            &[("x-authz-user-id", "bob"), ("x-user-id", "alice")][..],
            "everyone",
        ),
    ] {
        let r = send(headers).await.unwrap();
        assert_eq!(r.status(), 200, "{headers:?}");
        assert_eq!(
            header(&r, "x-vsr-selected-decision"),
            decision,
            "{headers:?}"
        );
    }
    // Bindings are declared and the user id is missing: the family fails closed.
    let r = send(&[]).await.unwrap();
    assert_eq!(header(&r, "x-vsr-selected-decision"), "everyone");
}

#[tokio::test]
async fn answers_are_counted_once_each_when_they_end() {
    let s = setup().await;
    let r = s.chat(ask("auto", "hello there")).await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let r = s.chat_stream("hello again").await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let counted = [
        "vsr_requests_total{decision=\"everyday\",model=\"fast\",status=\"200\"} 2",
        "llm_model_requests_total{model=\"fast\"} 2",
    ];
    // Counted when the answer ends, which is just after the client has read it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = s.metrics().await;
        if counted.iter().all(|c| metrics.contains(c)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_backends_own_headers_reach_the_client_but_hop_by_hop_and_replaced_ones_do_not() {
    let s = setup().await;
    s.fast.set(|b| {
        b.response_headers = vec![
            ("x-request-id".into(), "backend-id".into()),
            ("openai-processing-ms".into(), "12".into()),
            ("keep-alive".into(), "timeout=5".into()),
            ("x-vsr-selected-model".into(), "spoofed".into()),
        ];
    });
    for stream in [false, true] {
        let mut body = ask("auto", "hello there");
        body["stream"] = json!(stream);
        let r = s.chat_with(body, &[("x-request-id", "client-id")]).await;
        assert_eq!(r.status(), 200);
        let all = |name: &str| {
            r.headers()
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(all("openai-processing-ms"), ["12"], "stream {stream}");
        assert_eq!(all("x-request-id"), ["client-id"], "the router's, once");
        assert_eq!(all("x-vsr-selected-model"), ["fast"], "the router's, once");
        assert!(all("keep-alive").is_empty(), "hop-by-hop");
        assert_eq!(all("date").len(), 1, "one date");
        r.bytes().await.unwrap();
    }
}
