fn main() -> std::process::ExitCode {
    imgctl::cli::main()
}
