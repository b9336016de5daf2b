//! Integration tests: the host serving any router (`host`), and the whole
//! assembly on 127.0.0.1:0 over a temporary SQLite store (`assembly`).

mod assembly;
mod host;
