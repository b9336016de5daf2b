//! herd end to end: the specification's user stories, faults, real client
//! libraries, a soak and the README quick start, each against real `herd`
//! processes. See docs/e2e.md for what each test proves.

mod clients;
mod faults;
mod keys;
mod llama;
mod quickstart;
mod several;
mod soak;
mod stories;
mod support;
mod tls;
