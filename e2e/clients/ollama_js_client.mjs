// Drives the official `ollama` npm package against an Ollama-compatible server.
//
// Usage: node ollama_js_client.mjs HOST MODEL   (HOST like http://HOST:PORT)
//
// Prints one JSON object with the timing-independent part of each answer.
import { Ollama } from 'ollama'

const [host, model] = process.argv.slice(2)
const ollama = new Ollama({ host })
const messages = [{ role: 'user', content: 'Why is the sky blue?' }]
const out = {}

let chunks = 0
let content = ''
let lastDone = false
for await (const part of await ollama.chat({ model, messages, stream: true })) {
  chunks += 1
  content += part.message.content
  lastDone = part.done
}
out.chat_stream = { chunks, content, last_done: lastDone }

const r = await ollama.chat({ model, messages })
out.chat = { model: r.model, content: r.message.content, done: r.done }

const list = await ollama.list()
out.list = list.models.map((m) => m.model).sort()

try {
  await ollama.chat({ model: 'no-such-model:7b', messages })
  out.missing_model = 'no error'
} catch (e) {
  out.missing_model = { status: e.status_code, error: e.error }
}

console.log(JSON.stringify(out))
