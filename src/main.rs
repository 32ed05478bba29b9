//! The `epitaph` binary: a thin edge over the library; everything happens in `cli`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
