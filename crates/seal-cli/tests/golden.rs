//! Golden tests of the CLI (trycmd): help texts with their examples, error messages, and the offline
//! flows whose output is deterministic. Each `tests/cmd/*.toml` gives the arguments, stdin, expected
//! stdout, stderr and exit status; regenerate after an intended change with `TRYCMD=overwrite`.

#[test]
fn cli_golden() {
    trycmd::TestCases::new().case("tests/cmd/*.toml");
}
