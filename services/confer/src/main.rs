//! `confer <role>`: every Confer service and tool in one binary.

mod cli;
mod roles;

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    roles::init_logging(cli.log_json);
    roles::run(cli.command)
}
