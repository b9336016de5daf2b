//! Tags, ps, show, pull, delete, copy, create, and persistence.

use std::time::Duration;

use herd_testkit::FakeOllama;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::helpers::{
    bounded, client, content_type, fake, get, json_of, ndjson, ndjson_timed, post,
};

fn names(tags: &Value) -> Vec<String> {
    tags["models"]
        .as_array()
        .expect("models")
        .iter()
        .map(|m| m["name"].as_str().expect("name").to_owned())
        .collect()
}

#[tokio::test]
async fn tags_list_models_with_details_and_normalised_names() {
    bounded(async {
        let f = FakeOllama::builder()
            .models(["llama3", "qwen2.5:0.5b"])
            .start()
            .await;
        let resp = get(&f, "/api/tags").await;
        assert_eq!(content_type(&resp), "application/json; charset=utf-8");
        let tags = json_of(resp).await;
        let mut n = names(&tags);
        n.sort();
        assert_eq!(n, vec!["llama3:latest", "qwen2.5:0.5b"]);
        let m = &tags["models"][0];
        for key in ["name", "model", "modified_at", "size", "digest"] {
            assert!(!m[key].is_null(), "{key} missing in {m}");
        }
        assert_eq!(m["digest"].as_str().expect("digest").len(), 64);
        for key in [
            "parent_model",
            "format",
            "family",
            "families",
            "parameter_size",
            "quantization_level",
        ] {
            assert!(!m["details"][key].is_null(), "details.{key} missing in {m}");
        }
        assert_eq!(m["details"]["format"], "gguf");

        // "llama3" and "llama3:latest" are one model.
        let v = json_of(
            post(
                &f,
                "/api/generate",
                json!({"model": "llama3", "prompt": "x", "stream": false}),
            )
            .await,
        )
        .await;
        assert_eq!(v["model"], "llama3", "the model field echoes the request");
    })
    .await;
}

#[tokio::test]
async fn ps_shows_models_loaded_by_recent_requests() {
    bounded(async {
        let f = fake().start().await;
        assert_eq!(
            json_of(get(&f, "/api/ps").await).await,
            json!({"models": []})
        );

        ndjson(
            post(
                &f,
                "/api/generate",
                json!({"model": "qwen2.5:0.5b", "prompt": "x"}),
            )
            .await,
        )
        .await;
        let ps = json_of(get(&f, "/api/ps").await).await;
        let m = &ps["models"][0];
        assert_eq!(m["name"], "qwen2.5:0.5b");
        assert_eq!(m["model"], "qwen2.5:0.5b");
        assert_eq!(m["size_vram"], m["size"]);
        assert!(m["context_length"].as_u64().is_some());
        let expires: jiff::Timestamp = m["expires_at"]
            .as_str()
            .expect("expires_at")
            .parse()
            .expect("timestamp");
        let left = expires.duration_since(jiff::Timestamp::now());
        assert!(
            left > jiff::SignedDuration::from_secs(290)
                && left <= jiff::SignedDuration::from_secs(300),
            "{left:?}"
        );

        // keep_alive on a request changes the expiry; -1 is forever.
        json_of(
            post(
                &f,
                "/api/generate",
                json!({"model": "llama3.2:1b", "keep_alive": -1}),
            )
            .await,
        )
        .await;
        let ps = json_of(get(&f, "/api/ps").await).await;
        assert_eq!(
            names(&ps),
            vec!["llama3.2:1b", "qwen2.5:0.5b"],
            "longest expiry first"
        );
        assert!(
            ps["models"][0]["expires_at"]
                .as_str()
                .expect("ts")
                .starts_with("2"),
            "{ps}"
        );

        // A short keep-alive runs out.
        json_of(
            post(
                &f,
                "/api/generate",
                json!({"model": "qwen2.5:0.5b", "keep_alive": "50ms"}),
            )
            .await,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(f.loaded_models(), vec!["llama3.2:1b".to_owned()]);
    })
    .await;
}

#[tokio::test]
async fn show_describes_a_model() {
    bounded(async {
        let f = fake().start().await;
        for body in [
            json!({"model": "llama3.2:1b"}),
            json!({"name": "llama3.2:1b"}),
        ] {
            let v = json_of(post(&f, "/api/show", body).await).await;
            assert_eq!(v["details"]["family"], "llama");
            assert_eq!(v["model_info"]["general.architecture"], "llama");
            assert!(v["model_info"]["llama.context_length"].as_u64().is_some());
            assert!(
                v["capabilities"]
                    .as_array()
                    .expect("caps")
                    .contains(&json!("completion"))
            );
            assert!(
                v["modelfile"]
                    .as_str()
                    .expect("modelfile")
                    .contains("FROM ")
            );
            for key in ["license", "parameters", "template", "modified_at"] {
                assert!(v[key].is_string(), "{key}");
            }
        }
        let e = json_of(post(&f, "/api/show", json!({"model": "nomic-embed-text"})).await).await;
        assert_eq!(e["capabilities"], json!(["embedding"]));
    })
    .await;
}

#[tokio::test]
async fn pull_streams_progress_then_the_model_is_installed() {
    bounded(async {
        let f = FakeOllama::builder()
            .pull_duration(Duration::from_millis(300))
            .start()
            .await;
        let start = Instant::now();
        let resp = post(&f, "/api/pull", json!({"model": "llama3.2:1b"})).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(content_type(&resp), "application/x-ndjson");
        let lines = ndjson_timed(resp, start).await;
        let statuses: Vec<&str> = lines
            .iter()
            .map(|(_, v)| v["status"].as_str().expect("status"))
            .collect();
        assert_eq!(statuses[0], "pulling manifest");
        assert_eq!(
            &statuses[statuses.len() - 3..],
            ["verifying sha256 digest", "writing manifest", "success"]
        );
        assert!(start.elapsed() >= Duration::from_millis(300));

        let layer: Vec<&Value> = lines[1..]
            .iter()
            .map(|(_, v)| v)
            .take_while(|v| v.get("digest").is_some())
            .collect();
        let digest = layer[0]["digest"].as_str().expect("digest");
        assert!(digest.starts_with("sha256:") && digest.len() == 71);
        assert_eq!(layer[0]["status"], format!("pulling {}", &digest[7..19]));
        let main: Vec<&&Value> = layer.iter().filter(|v| v["digest"] == digest).collect();
        assert!(main.len() >= 5, "about one update per 60 ms: {main:?}");
        assert!(
            main[0].get("completed").is_none(),
            "zero completed is omitted"
        );
        let total = main[0]["total"].as_u64().expect("total");
        let done: Vec<u64> = main[1..]
            .iter()
            .map(|v| v["completed"].as_u64().expect("completed"))
            .collect();
        assert!(done.windows(2).all(|w| w[0] < w[1]), "{done:?}");
        assert_eq!(*done.last().expect("last"), total);
        // Updates are spread over the pull, not sent at once.
        let update_times: Vec<Duration> = lines[1..]
            .iter()
            .filter(|(_, v)| v["digest"] == digest)
            .map(|(t, _)| *t)
            .collect();
        assert!(
            update_times[update_times.len() - 1] - update_times[0] >= Duration::from_millis(240)
        );

        assert_eq!(f.models(), vec!["llama3.2:1b".to_owned()]);
        assert_eq!(
            names(&json_of(get(&f, "/api/tags").await).await),
            vec!["llama3.2:1b"]
        );

        // stream:false waits and answers one object.
        let resp = post(
            &f,
            "/api/pull",
            json!({"name": "qwen2.5:0.5b", "stream": false}),
        )
        .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(json_of(resp).await, json!({"status": "success"}));
        assert_eq!(f.models().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn pulling_an_unknown_model_fails_like_ollama() {
    bounded(async {
        let f = FakeOllama::builder()
            .pullable(["llama3.2:1b"])
            .start()
            .await;
        let resp = post(&f, "/api/pull", json!({"model": "does-not-exist"})).await;
        assert_eq!(
            resp.status(),
            200,
            "the stream has started before the registry answers"
        );
        let lines = ndjson(resp).await;
        assert_eq!(
            lines,
            vec![
                json!({"status": "pulling manifest"}),
                json!({"error": "pull model manifest: file does not exist"})
            ]
        );
        let resp = post(
            &f,
            "/api/pull",
            json!({"model": "does-not-exist", "stream": false}),
        )
        .await;
        assert_eq!(resp.status(), 500);
        assert_eq!(
            json_of(resp).await,
            json!({"error": "pull model manifest: file does not exist"})
        );
        assert!(f.models().is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_pull_cut_short_installs_nothing() {
    bounded(async {
        let f = FakeOllama::builder()
            .pull_duration(Duration::from_millis(400))
            .start()
            .await;
        let resp = post(&f, "/api/pull", json!({"model": "llama3.2:1b"})).await;
        drop(resp);
        f.wait_until(|s| s.cancelled == 1).await;
        assert!(f.models().is_empty());
    })
    .await;
}

#[tokio::test]
async fn delete_copy_and_create() {
    bounded(async {
        let f = fake().start().await;
        let c = client();
        let resp = c
            .post(format!("{}/api/copy", f.url()))
            .json(&json!({"source": "llama3.2:1b", "destination": "mine"}))
            .send()
            .await
            .expect("copy");
        assert_eq!(resp.status(), 200);
        assert!(resp.bytes().await.expect("body").is_empty());
        let tags = json_of(get(&f, "/api/tags").await).await;
        let digest_of = |name: &str| {
            tags["models"]
                .as_array()
                .expect("models")
                .iter()
                .find(|m| m["name"] == name)
                .map(|m| m["digest"].clone())
                .unwrap_or_else(|| panic!("{name} missing from {tags}"))
        };
        assert_eq!(
            digest_of("mine:latest"),
            digest_of("llama3.2:1b"),
            "a copy shares the digest"
        );

        let resp = c
            .delete(format!("{}/api/delete", f.url()))
            .json(&json!({"model": "mine"}))
            .send()
            .await
            .expect("delete");
        assert_eq!(resp.status(), 200);
        assert!(!f.models().contains(&"mine:latest".to_owned()));

        let lines = ndjson(
            post(
                &f,
                "/api/create",
                json!({"model": "custom", "from": "llama3.2:1b", "system": "be brief"}),
            )
            .await,
        )
        .await;
        assert_eq!(
            lines.first().expect("first")["status"],
            "gathering model components"
        );
        assert_eq!(lines.last().expect("last"), &json!({"status": "success"}));
        assert!(f.models().contains(&"custom:latest".to_owned()));
        let resp = post(&f, "/api/create", json!({"model": "x"})).await;
        assert_eq!(resp.status(), 400);
        assert_eq!(
            json_of(resp).await["error"],
            "neither 'from' or 'files' was specified"
        );

        let lines = ndjson(post(&f, "/api/push", json!({"model": "custom"})).await).await;
        assert_eq!(lines.last().expect("last"), &json!({"status": "success"}));
    })
    .await;
}

#[tokio::test]
async fn pulled_models_survive_a_new_fake_on_the_same_models_dir() {
    bounded(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = FakeOllama::builder().models_dir(dir.path()).start().await;
        let resp = post(
            &f,
            "/api/pull",
            json!({"model": "qwen2.5:0.5b", "stream": false}),
        )
        .await;
        assert_eq!(resp.status(), 200);
        f.add_model("llama3");
        f.stop().await;
        drop(f);
        assert!(dir.path().join(herd_testkit::STORE_FILE).exists());

        let g = FakeOllama::builder().models_dir(dir.path()).start().await;
        let mut m = g.models();
        m.sort();
        assert_eq!(m, vec!["llama3:latest", "qwen2.5:0.5b"]);
        assert!(g.remove_model("llama3"));
        let h = FakeOllama::builder().models_dir(dir.path()).start().await;
        assert_eq!(h.models(), vec!["qwen2.5:0.5b".to_owned()]);
    })
    .await;
}
