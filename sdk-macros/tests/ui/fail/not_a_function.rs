use owlclaw::task;

#[task]
struct NotAFunction;

fn main() {}
