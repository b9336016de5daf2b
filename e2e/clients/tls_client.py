"""Drives the official `ollama` and `openai` Python libraries against an https
router, trusting its CA explicitly (httpx's `verify=` for ollama, an
`http_client` for openai), and checks that without the CA both refuse it.

Usage: python tls_client.py BASE_URL CA_FILE MODEL   (BASE_URL like https://HOST:PORT)

Prints one JSON object.
"""

import json
import ssl
import sys

import ollama
import openai


def refused_certificate(call) -> bool:
    """Whether `call` fails because the server's certificate is not trusted."""
    try:
        call()
    except Exception as e:  # the libraries wrap the TLS error in their own types
        seen = e
        while seen is not None:
            if "CERTIFICATE_VERIFY_FAILED" in str(seen) or isinstance(seen, ssl.SSLCertVerificationError):
                return True
            seen = seen.__cause__ or seen.__context__
        raise
    return False


def main() -> None:
    base, ca, model = sys.argv[1], sys.argv[2], sys.argv[3]
    trusted = ssl.create_default_context(cafile=ca)
    messages = [{"role": "user", "content": "Why is the sky blue?"}]
    out = {}

    client = ollama.Client(host=base, verify=trusted)
    r = client.chat(model=model, messages=messages)
    out["ollama_chat"] = {"content": r.message.content, "done": r.done}
    r = client.generate(model=model, prompt="Say hi")
    out["ollama_generate"] = {"response": r.response, "done": r.done}

    oa = openai.OpenAI(base_url=f"{base}/v1", api_key="ollama", max_retries=0, timeout=30,
                       http_client=openai.DefaultHttpxClient(verify=trusted))
    r = oa.chat.completions.create(model=model, messages=messages)
    out["openai_chat"] = {"content": r.choices[0].message.content, "finish_reason": r.choices[0].finish_reason}

    out["ollama_without_ca_refused"] = refused_certificate(
        lambda: ollama.Client(host=base).chat(model=model, messages=messages))
    out["openai_without_ca_refused"] = refused_certificate(
        lambda: openai.OpenAI(base_url=f"{base}/v1", api_key="ollama", max_retries=0, timeout=30)
        .chat.completions.create(model=model, messages=messages))

    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
