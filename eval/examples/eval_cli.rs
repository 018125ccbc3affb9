//! `pvt eval ...` as a standalone binary, for trying the command before it is wired into the
//! `pvt` CLI: `cargo run --release -p pvt-eval --example eval_cli -- coco --gt ... --dt ...`.
//! It compiles crates/cli/src/eval_cmd.rs as it is.

#[path = "../../crates/cli/src/eval_cmd.rs"]
#[allow(dead_code)]
mod eval_cmd;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "pvt-eval",
    about = "COCO AP and ADE20K mIoU (the `pvt eval` commands)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: eval_cmd::EvalCmd,
}

fn main() -> anyhow::Result<()> {
    eval_cmd::run(Cli::parse().cmd)
}
