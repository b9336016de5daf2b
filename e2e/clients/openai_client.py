"""Drives the official `openai` Python library against an Ollama-compatible
server's /v1 endpoints.

Usage: python openai_client.py BASE_URL MODEL   (BASE_URL like http://HOST:PORT)

Prints one JSON object with the timing-independent part of each answer.
"""

import json
import sys

import openai


def main() -> None:
    base, model = sys.argv[1], sys.argv[2]
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="ollama", max_retries=0, timeout=30)
    messages = [{"role": "user", "content": "Why is the sky blue?"}]
    out = {}

    r = client.chat.completions.create(model=model, messages=messages)
    c = r.choices[0]
    out["chat"] = {"object": r.object, "model": r.model, "role": c.message.role, "content": c.message.content,
                   "finish_reason": c.finish_reason, "completion_tokens": r.usage.completion_tokens,
                   "id_prefix": r.id.split("-")[0]}

    chunks = list(client.chat.completions.create(model=model, messages=messages, stream=True))
    out["chat_stream"] = {
        "object": chunks[0].object,
        "first_role": chunks[0].choices[0].delta.role,
        "content": "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices),
        "finish_reason": [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1],
    }

    out["models"] = sorted(m.id for m in client.models.list())
    out["model"] = client.models.retrieve(model).id

    r = client.embeddings.create(model=model, input=["hello", "world"])
    out["embeddings"] = {"object": r.object, "count": len(r.data), "dim": len(r.data[0].embedding),
                         "head": [round(x, 6) for x in r.data[0].embedding[:4]]}

    try:
        client.chat.completions.create(model="no-such-model:7b", messages=messages)
        out["missing_model"] = "no error"
    except openai.NotFoundError as e:
        out["missing_model"] = {"status": e.status_code, "type": type(e).__name__}

    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
