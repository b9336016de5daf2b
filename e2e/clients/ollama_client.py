"""Drives the official `ollama` Python library against OLLAMA_HOST.

Usage: OLLAMA_HOST=http://HOST:PORT python ollama_client.py MODEL

Prints one JSON object: what each call returned, reduced to the fields that
do not depend on timing, so the output against the router can be compared
with the output against a single Ollama. Exits non-zero if a call raised
unexpectedly.
"""

import json
import sys

import ollama


def main() -> None:
    model = sys.argv[1]
    messages = [{"role": "user", "content": "Why is the sky blue?"}]
    out = {}

    r = ollama.chat(model=model, messages=messages)
    out["chat"] = {"model": r.model, "role": r.message.role, "content": r.message.content,
                   "done": r.done, "done_reason": r.done_reason, "eval_count": r.eval_count}

    parts = list(ollama.chat(model=model, messages=messages, stream=True))
    out["chat_stream"] = {"chunks": len(parts), "content": "".join(p.message.content for p in parts),
                          "last_done": parts[-1].done, "all_but_last_not_done": all(not p.done for p in parts[:-1])}

    r = ollama.generate(model=model, prompt="Say hi")
    out["generate"] = {"model": r.model, "response": r.response, "done": r.done}

    parts = list(ollama.generate(model=model, prompt="Say hi", stream=True))
    out["generate_stream"] = {"chunks": len(parts), "response": "".join(p.response for p in parts),
                              "last_done": parts[-1].done}

    r = ollama.embed(model=model, input=["hello", "world"])
    out["embed"] = {"model": r.model, "count": len(r.embeddings), "dim": len(r.embeddings[0]),
                    "head": [round(x, 6) for x in r.embeddings[0][:4]]}

    r = ollama.list()
    out["list"] = sorted(m.model for m in r.models)

    r = ollama.show(model)
    out["show"] = {"family": r.details.family if r.details else None,
                   "capabilities": sorted(r.capabilities or []), "has_modelfile": bool(r.modelfile)}

    r = ollama.ps()
    out["ps"] = sorted(m.model for m in r.models)

    try:
        ollama.chat(model="no-such-model:7b", messages=messages)
        out["missing_model"] = "no error"
    except ollama.ResponseError as e:
        out["missing_model"] = {"status": e.status_code, "error": e.error}

    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
