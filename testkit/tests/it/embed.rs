//! Embeddings: deterministic, normalised, right shapes.

use herd_testkit::embedding_vector;
use serde_json::{Value, json};

use crate::helpers::{bounded, fake, json_of, post};

fn floats(v: &Value) -> Vec<f32> {
    #[allow(clippy::cast_possible_truncation)]
    v.as_array()
        .expect("vector")
        .iter()
        .map(|x| x.as_f64().expect("float") as f32)
        .collect()
}

#[tokio::test]
async fn embed_returns_deterministic_unit_vectors() {
    bounded(async {
        let f = fake().start().await;
        let v = json_of(
            post(
                &f,
                "/api/embed",
                json!({"model": "nomic-embed-text", "input": ["hello", "world", "hello"]}),
            )
            .await,
        )
        .await;
        assert_eq!(v["model"], "nomic-embed-text");
        let e = v["embeddings"].as_array().expect("embeddings");
        assert_eq!(e.len(), 3);
        let a = floats(&e[0]);
        assert_eq!(a.len(), 384);
        assert_eq!(a, floats(&e[2]));
        assert_ne!(a, floats(&e[1]));
        assert_eq!(a, embedding_vector("hello", 384));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3);
        assert!(v["total_duration"].as_u64().is_some());
        assert!(v["prompt_eval_count"].as_u64().expect("count") >= 3);

        let one = json_of(
            post(
                &f,
                "/api/embed",
                json!({"model": "nomic-embed-text", "input": "hello", "dimensions": 8}),
            )
            .await,
        )
        .await;
        assert_eq!(floats(&one["embeddings"][0]), embedding_vector("hello", 8));

        let empty = json_of(
            post(
                &f,
                "/api/embed",
                json!({"model": "nomic-embed-text", "input": []}),
            )
            .await,
        )
        .await;
        assert_eq!(
            empty,
            json!({"model": "nomic-embed-text", "embeddings": []})
        );

        let bad = post(
            &f,
            "/api/embed",
            json!({"model": "nomic-embed-text", "input": [1]}),
        )
        .await;
        assert_eq!(bad.status(), 400);
        assert_eq!(json_of(bad).await["error"], "invalid input type");

        let old = json_of(
            post(
                &f,
                "/api/embeddings",
                json!({"model": "llama3.2:1b", "prompt": "hello"}),
            )
            .await,
        )
        .await;
        assert_eq!(floats(&old["embedding"]), embedding_vector("hello", 384));
    })
    .await;
}
