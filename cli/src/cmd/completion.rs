//! `herd completion SHELL`: a completion script for the shell.

use clap::Args;
use clap_complete::Shell;

#[derive(Args, Debug)]
#[command(after_help = "\
Load it for the current shell, or save it where the shell looks:
  bash:        source <(herd completion bash)
  zsh:         herd completion zsh > \"${fpath[1]}/_herd\"
  fish:        herd completion fish > ~/.config/fish/completions/herd.fish
  powershell:  herd completion powershell | Out-String | Invoke-Expression")]
pub struct CompletionArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Writes the script for `command` (the whole `herd` CLI) to stdout.
pub fn run(args: CompletionArgs, mut command: clap::Command) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "herd", &mut script);
    crate::ctl::output::emit(&String::from_utf8_lossy(&script))
}
