//! Integration tests: real sockets on 127.0.0.1, every test bounded in time.

mod binary;
mod embed;
mod errors;
mod faults;
mod helpers;
mod host;
mod lifecycle;
mod models;
mod oai_node;
mod openai;
mod slots;
mod streaming;
