//! `herd tray`: an icon in the Windows task bar or the macOS menu bar whose colour
//! shows the fleet (green: every node Ready; amber: some not; red: the router cannot
//! be reached), with a menu to open the dashboard, cordon or uncordon this machine
//! with the CLI's key, start or stop this machine's nodelet, and quit. Built with the
//! cargo feature `tray` on Windows and macOS (the release binaries there); Linux
//! stays a command line.

// Only the platform shell uses it; it is compiled and tested on every platform.
#[cfg_attr(
    not(all(feature = "tray", any(windows, target_os = "macos"))),
    allow(dead_code)
)]
pub mod state;

#[cfg(all(feature = "tray", any(windows, target_os = "macos")))]
mod app;

use clap::Args;

use crate::ctl::args::ConnectArgs;

#[derive(Args, Debug)]
#[command(after_help = "\
The router and key are the CLI's (--server, --token, or what `herd login` stored).
Flags after `--` are for the nodelet the menu starts, e.g.
  herd tray -- --server https://router:8080 --token-file C:\\herd\\node.key")]
pub struct TrayArgs {
    /// This machine's node name, for cordon and uncordon [default: the hostname, as
    /// the nodelet names it].
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Flags for `herd nodelet`, after `--`.
    #[arg(last = true, value_name = "NODELET FLAGS")]
    pub nodelet_args: Vec<String>,
}

#[cfg(all(feature = "tray", any(windows, target_os = "macos")))]
pub fn run(args: TrayArgs, connect: &ConnectArgs) -> anyhow::Result<()> {
    app::run(args, connect)
}

#[cfg(not(all(feature = "tray", any(windows, target_os = "macos"))))]
pub fn run(args: TrayArgs, connect: &ConnectArgs) -> anyhow::Result<()> {
    let _ = (args, connect);
    anyhow::bail!(
        "this herd was built without the tray icon; it is part of the Windows and macOS \
         release builds (cargo feature `tray`)"
    )
}
