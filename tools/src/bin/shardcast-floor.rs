//! The floor program (work in progress).
fn main() {}
