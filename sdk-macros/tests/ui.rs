//! Compile tests of `#[task]`: what it accepts (`ui/pass`, compiled and run) and the errors it
//! reports (`ui/fail`, each with the expected compiler output in a `.stderr` file). After a
//! change, regenerate the `.stderr` files with
//! `TRYBUILD=overwrite cargo test -p owlclaw-macros --test ui` and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
