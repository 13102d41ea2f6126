//! Proves `#[batch_app]` and `#[stream_app]` accept the documented signatures and refuse
//! wrong ones with an error pointing at the offending part (snapshots in `ui/*.stderr`).

#[test]
fn app_attributes() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass-*.rs");
    cases.compile_fail("tests/ui/fail-*.rs");
}
