fn main() -> std::process::ExitCode {
    builder::cli::main()
}
