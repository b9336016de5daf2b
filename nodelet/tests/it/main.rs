//! Integration tests of herd-nodelet: the real install path against local HTTP servers,
//! and the whole agent against the real apiserver and a fake Ollama.

mod agent;
mod drain;
mod harness;
mod install;
mod keys;
mod proxy;
mod support;
