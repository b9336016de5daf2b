//! Integration tests of herd-nodelet: the real install path against local HTTP servers.

mod install;
mod proxy;
mod support;
