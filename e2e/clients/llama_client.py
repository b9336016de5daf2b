"""Drives the official ollama, openai and anthropic Python libraries against
herd in front of real llama.cpp `llama-server` nodes.

Usage: python llama_client.py BASE_URL MODEL EMBED_MODEL   (BASE_URL like http://HOST:PORT)

Prints one JSON object with what each call generated (real text, so only
its shape is checked). Exits non-zero if a call raised.
"""

import json
import sys

import anthropic
import ollama
import openai

LIMIT = 16


def main() -> None:
    base, model, embed_model = sys.argv[1], sys.argv[2], sys.argv[3]
    out = {}
    prompt = "Write one sentence about the sea."
    messages = [{"role": "user", "content": prompt}]

    o = ollama.Client(host=base, timeout=60)
    r = o.chat(model=model, messages=messages, options={"num_predict": LIMIT, "temperature": 0.7})
    out["ollama_chat"] = {"content": r.message.content, "done": r.done, "eval_count": r.eval_count}
    parts = list(o.chat(model=model, messages=messages, stream=True, options={"num_predict": LIMIT}))
    out["ollama_chat_stream"] = {"content": "".join(p.message.content for p in parts),
                                 "chunks": len(parts), "last_done": parts[-1].done}
    r = o.generate(model=model, prompt=prompt, options={"num_predict": LIMIT})
    out["ollama_generate"] = {"response": r.response, "done": r.done}
    parts = list(o.generate(model=model, prompt=prompt, stream=True, options={"num_predict": LIMIT}))
    out["ollama_generate_stream"] = {"response": "".join(p.response for p in parts),
                                     "chunks": len(parts), "last_done": parts[-1].done}

    c = openai.OpenAI(base_url=f"{base}/v1", api_key="sk-client", max_retries=0, timeout=60)
    r = c.chat.completions.create(model=model, messages=messages, max_tokens=LIMIT)
    out["openai_chat"] = {"content": r.choices[0].message.content,
                          "completion_tokens": r.usage.completion_tokens}
    chunks = list(c.chat.completions.create(model=model, messages=messages, max_tokens=LIMIT, stream=True))
    out["openai_chat_stream"] = {
        "content": "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices),
        "chunks": len(chunks)}
    r = c.embeddings.create(model=embed_model, input=["hello", "world"])
    out["openai_embeddings"] = {"count": len(r.data), "dim": len(r.data[0].embedding)}
    r = c.responses.create(model=model, input=prompt, max_output_tokens=LIMIT)
    out["openai_responses"] = {"text": r.output_text, "status": r.status}
    events = list(c.responses.create(model=model, input=prompt, max_output_tokens=LIMIT, stream=True))
    out["openai_responses_stream"] = {
        "text": "".join(e.delta for e in events if e.type == "response.output_text.delta"),
        "last": events[-1].type}

    a = anthropic.Anthropic(base_url=base, api_key="sk-ant-client", max_retries=0, timeout=60)
    r = a.messages.create(model=model, max_tokens=LIMIT, messages=messages)
    out["anthropic_messages"] = {"text": "".join(b.text for b in r.content if b.type == "text"),
                                 "stop_reason": r.stop_reason, "output_tokens": r.usage.output_tokens}
    with a.messages.stream(model=model, max_tokens=LIMIT, messages=messages) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    out["anthropic_stream"] = {"text": text, "stop_reason": final.stop_reason}

    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
