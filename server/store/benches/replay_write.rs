//! Placeholder replaced by the write benchmark in a later commit.
fn main() {}
