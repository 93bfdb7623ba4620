fn main() {
    eprintln!("capsulec: not ready yet");
    std::process::exit(125);
}
